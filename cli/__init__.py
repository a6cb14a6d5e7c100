"""The `tdb` command line. Each module registers its commands on the one group in `app`."""

# Imported for their side effect of registering commands, in the order of the method.
from taskonomy_db.cli import workspace_commands  # noqa: F401, I001
from taskonomy_db.cli import generate_commands  # noqa: F401
from taskonomy_db.cli import model_commands  # noqa: F401
from taskonomy_db.cli import transfer_commands  # noqa: F401
from taskonomy_db.cli import estimate_commands  # noqa: F401
from taskonomy_db.cli import affinity_commands  # noqa: F401
from taskonomy_db.cli import taxonomy_commands  # noqa: F401
from taskonomy_db.cli import demo_commands  # noqa: F401
from taskonomy_db.cli.app import cli


def main() -> None:
    cli(prog_name="tdb")


__all__ = ["cli", "main"]

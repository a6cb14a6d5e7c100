"""The `tdb` command line. Each module registers its commands on the one group in `app`."""

from taskonomy_db.cli import workspace_commands  # noqa: F401  (registers commands)
from taskonomy_db.cli.app import cli


def main() -> None:
    cli(prog_name="tdb")


__all__ = ["cli", "main"]

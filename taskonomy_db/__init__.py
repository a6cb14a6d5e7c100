"""taskonomy-db: the Taskonomy method as a database-centric toolkit (`tdb`).

From Python: `study = taskonomy_db.open("study")` (see taskonomy_db.study.Study).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from taskonomy_db.study import Study

__version__ = "0.1.0"


def open(path: str | Path | None = None) -> Study:  # noqa: A001 - the API's name, as sqlite3.connect or h5py.File
    """The workspace at `path` as a Study, whose methods return Polars frames (imported here, not at package
    import: the command line starts without Polars)."""
    from taskonomy_db.study import open_study

    return open_study(path)

"""docs/cli.md is every command's current --help, and the command line starts without the heavy libraries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from taskonomy_db.cli import cli
from taskonomy_db.cli.docs import render

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_cli_reference_is_current():
    assert DOCS.read_text() == render(), "docs/cli.md is stale: python -m taskonomy_db.cli.docs > docs/cli.md"
    for name in cli.commands:
        assert f"## `tdb {name}`" in DOCS.read_text()


def test_help_and_query_import_none_of_the_heavy_libraries(tmp_path):
    # In a fresh interpreter: this test process has imported them all already.
    code = f"""
import sys
from click.testing import CliRunner
from taskonomy_db.cli import cli
from taskonomy_db.workspace import Workspace
Workspace.init({str(tmp_path / "study")!r})
for args in (["--help"], ["query", "--help"], ["query", "-w", {str(tmp_path / "study")!r}, "select 42 as answer"]):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
print(sorted(m for m in ("torch", "onnxruntime", "scipy", "matplotlib", "polars") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr

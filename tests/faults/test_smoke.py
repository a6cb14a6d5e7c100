"""The suite's own helpers against a trial whose answer is known: a missing workspace."""

from __future__ import annotations

from tests.faults.conftest import assert_one_line_error, tdb


def test_a_missing_workspace_is_one_line_through_the_real_executable(tmp_path):
    result = tdb("query", "select 1", "-w", tmp_path / "nowhere")
    assert_one_line_error(result, "no workspace at", str(tmp_path / "nowhere"))

"""tdb.toml typed (taskonomy_db.settings): defaults obey their own rules, a bad file is refused at open with a
one-line reason naming the setting, flags' overrides obey the same rules, the file is read once per command,
and the module needs no torch."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from click.testing import CliRunner

from taskonomy_db.cli import cli
from taskonomy_db.errors import WorkspaceError
from taskonomy_db.settings import (
    SECTION_TYPES,
    Settings,
    TransferSettings,
    as_dict,
    parse_settings,
    section_problem,
    with_overrides,
)
from taskonomy_db.workspace import Workspace
from tests.conftest import hand_edit


def test_every_default_obeys_its_own_rule():
    defaults = Settings()
    for section in SECTION_TYPES:
        values = {k: v for k, v in as_dict(getattr(defaults, section)).items() if v is not None}
        assert section_problem(section, values) is None, section


def test_an_empty_file_is_every_default_and_a_partial_section_keeps_the_other_defaults():
    assert parse_settings({}) == Settings()
    parsed = parse_settings({"transfer": {"seeds": 3, "baselines": ["gold"]}})
    assert parsed.transfer == dataclasses.replace(TransferSettings(), seeds=3, baselines=["gold"])


@pytest.mark.parametrize(
    ("loaded", "reason"),
    [
        ({"trian": {}}, "unknown section [trian]; the sections are [study], [split], [train], [transfer],"),
        ({"train": 3}, "top-level key 'train' must be a table ([train])"),
        ({"train": {"epoch": 3}}, "unknown setting [train] epoch; [train] has image_size, epochs, width,"),
        ({"transfer": {"epochs": 3}}, "[transfer] epochs is no longer a setting: readouts now train until"),
        ({"train": {"norm": "layer"}}, "[train] norm must be one of batch, group, got 'layer'"),
        ({"transfer": {"baselines": ["gold", "oracle"]}}, "unknown baseline 'oracle'; expected some of gold,"),
        ({"transfer": {"train_split": "test"}}, "[transfer] train_split must be one of val, train, got 'test'"),
        ({"analysis": {"level": 1.0}}, "[analysis] level must be below 1, got 1.0"),
        ({"study": {"seed": 1.5}}, "[study] seed must be an integer, got 1.5"),
        ({"study": {"seed": 10**400}}, "[study] seed must be below 9223372036854775808, got 1000"),
        # the first bad setting in the section's own order, whatever the file's
        ({"train": {"width": 0, "epochs": 0}}, "[train] epochs must be at least 1, got 0"),
    ],
)
def test_a_bad_file_gets_one_line_naming_the_setting(loaded, reason):
    with pytest.raises(ValueError) as raised:
        parse_settings(loaded)
    assert str(raised.value).startswith(reason) and "\n" not in str(raised.value)


def test_overrides_obey_the_same_rules_and_none_means_not_given():
    base = TransferSettings()
    assert with_overrides(base, {"seeds": None, "beam": 3}, "transfer") == dataclasses.replace(base, beam=3)
    with pytest.raises(ValueError, match=r"^\[transfer\] seeds must be at least 1, got 0$"):
        with_overrides(base, {"seeds": 0}, "transfer")
    with pytest.raises(ValueError, match=r"^unknown setting \[transfer\] beams;"):
        with_overrides(base, {"beams": 3}, "transfer")


def test_a_bad_setting_stops_every_command_at_open_naming_the_file(tmp_path):
    workspace = Workspace.init(tmp_path / "study")
    hand_edit(workspace, "transfer", "max_order", 0)
    result = CliRunner().invoke(cli, ["query", "select 1", "-w", str(workspace.root)])
    assert result.exit_code == 1
    assert result.output == f"Error: {workspace.root / 'tdb.toml'}: [transfer] max_order must be at least 1, got 0\n"


def test_the_file_is_read_once_per_workspace_object(tmp_path):
    workspace = Workspace.init(tmp_path / "study")
    workspace = Workspace.open(workspace.root)
    first = workspace.settings
    hand_edit(workspace, "analysis", "level", 0.5)  # another process edits it mid-command
    assert workspace.settings is first and workspace.settings.analysis.level == 0.95
    assert Workspace.open(workspace.root).settings.analysis.level == 0.5
    workspace.update_settings("analysis", {"bootstrap": 10})  # this one re-reads: its own edit, and the other
    assert (workspace.settings.analysis.bootstrap, workspace.settings.analysis.level) == (10, 0.5)
    assert workspace.db.variables["bootstrap_replicates"] == 10


def test_settings_need_no_torch():
    code = "import sys, taskonomy_db.settings; print(sorted({'torch', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_workspace_keeps_only_what_was_set_of_train_and_transfer(tmp_path):
    workspace = Workspace.init(tmp_path / "study")
    workspace.update_settings("transfer", {"seeds": 2})
    text = (workspace.root / "tdb.toml").read_text()
    assert "[transfer]\nseeds = 2\n" in text and "max_steps" not in text and "[train]" not in text
    with pytest.raises(WorkspaceError, match="unknown setting"):
        workspace.update_settings("transfer", {"seedz": 2})
    assert (workspace.root / "tdb.toml").read_text() == text


def test_the_image_size_rule_is_the_encoders_stride():
    from taskonomy_db.models.networks import ENCODER_STRIDE
    from taskonomy_db.settings import rule_of

    assert rule_of("train", "image_size").multiple_of == ENCODER_STRIDE

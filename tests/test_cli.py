"""The command line as a whole: every command documented with an example, errors as one line."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from taskonomy_db.cli import cli

COMMANDS = sorted(cli.commands)


def test_help_lists_every_command():
    output = CliRunner().invoke(cli, ["--help"]).output
    for name in COMMANDS:
        assert name in output


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_an_example(name):
    command = cli.commands[name]
    assert command.help and len(command.help.split()) > 5
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0
    example = result.output.split("Example:", 1)
    assert len(example) == 2 and f"tdb {name}" in example[1].replace("tdb-", "tdb ")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_workspace_command_reports_a_missing_workspace_in_one_line(tmp_path, name):
    command = cli.commands[name]
    if not any(isinstance(p, click.Option) and "--workspace" in p.opts for p in command.params):
        pytest.skip(f"{name} does not use a workspace")
    existing = tmp_path / "input"  # every required argument or option gets a value that passes its own checks
    existing.write_text("")
    args = [name]
    for param in command.params:
        if param.required:
            if isinstance(param.type, click.Choice):
                value = param.type.choices[0]
            elif isinstance(param.type, click.Path) and not param.type.file_okay:
                value = str(tmp_path)
            else:
                value = str(existing)
            args += [value] if isinstance(param, click.Argument) else [param.opts[0], value]
    args += ["-w", str(tmp_path / "nowhere")]
    result = CliRunner().invoke(cli, args)
    # CliRunner catches every exception: a crash would also exit non-zero. A handled error is a SystemExit(1)
    # after exactly this one line.
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.exception
    missing = tmp_path / "nowhere"
    assert result.output == f"Error: no workspace at {missing} (no tdb.toml); create one with `tdb init {missing}`\n"


def test_cli_never_imports_duckdb():
    import ast

    from tests.conftest import REPO

    for path in (REPO / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(name.split(".")[0] == "duckdb" for name in names), f"{path.name} imports duckdb"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--tiny", "--full"], "choose one"),  # click kept the last flag and ran the half-hour profile
        (["affinity", "--matrix", "--target", "normal"], "does not combine"),  # the filter was silently ignored
        (["affinity", "--matrix", "--order", "2"], "does not combine"),
        (["transfer", "--workers", "-1"], "--workers"),
        (["taxonomy", "--budget", "-1"], "Invalid value for '--budget'"),
        (["no-such-command"], "No such command"),
    ],
)
def test_conflicting_or_out_of_range_options_are_usage_errors(tmp_path, args, message):
    result = CliRunner().invoke(cli, [*args, "-w", str(tmp_path)] if args[0] != "demo" else [*args, str(tmp_path)])
    assert result.exit_code == 2 and message in result.output
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ")  # one line, no usage banner
    assert not any(tmp_path.iterdir())  # refused before anything was created


def test_a_bare_tdb_still_shows_the_help():
    result = CliRunner().invoke(cli, [])
    assert "Commands:" in result.output and "Error" not in result.output


def test_setting_flags_refuse_exactly_what_tdb_toml_refuses():
    # Each [train]/[transfer] flag takes its bounds from the rule tdb.toml is checked against, so a value is
    # either refused by both (flag: exit 2; file: a one-line error naming the key) or by neither.
    import dataclasses

    from taskonomy_db.cli.app import setting_type
    from taskonomy_db.settings import Choice, Number, TrainSettings, TransferSettings

    for section, fields in (("train", TrainSettings), ("transfer", TransferSettings)):
        for spec in dataclasses.fields(fields):
            key, rule = spec.name, spec.metadata["rule"]
            if isinstance(rule, Choice):
                choice = setting_type(section, key)
                assert isinstance(choice, click.Choice) and tuple(choice.choices) == rule.values
                continue
            if not isinstance(rule, Number):
                continue
            kind = setting_type(section, key)
            step = 1 if rule.kind is int else 0.5
            for value in (rule.minimum - step, rule.minimum, rule.minimum + step):
                value = rule.kind(value)
                try:
                    kind.convert(value, None, None)
                    flag_takes_it = True
                except click.BadParameter:
                    flag_takes_it = False
                assert flag_takes_it == (rule.check(key, value) is None), (section, key, value)

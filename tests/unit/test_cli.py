from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ltr_pipeline.cli import app

COMMANDS = [[], ["simulate"], ["run"], ["registry"], ["registry", "list"], ["registry", "show"],
            ["registry", "rollback"], ["registry", "prune"], ["registry", "audit"], ["serve"], ["demo"], ["report"],
            ["import"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "ltr")
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_usage_errors_exit_2() -> None:
    assert CliRunner().invoke(app, ["run", "--date", "not-a-date"]).exit_code == 2
    assert CliRunner().invoke(app, ["no-such-command"]).exit_code == 2


def test_version() -> None:
    from ltr_pipeline import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"ltr-pipeline {__version__}\n"

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ltr_pipeline.cli import app

COMMANDS = [[], ["simulate"], ["run"], ["registry"], ["registry", "list"], ["registry", "show"],
            ["registry", "rollback"], ["registry", "prune"], ["registry", "audit"], ["serve"], ["demo"], ["report"],
            ["import"], ["guard"], ["soak"], ["compare"]]


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


def _ltr(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The real `ltr` entry point (main: error handling included) in a child process, in `tmp_path`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LTR_")}
    return subprocess.run([sys.executable, "-c", "from ltr_pipeline.cli import main; main()", *args], cwd=tmp_path,
                          env={**clean, **env}, capture_output=True, text=True, timeout=120)


def test_an_invalid_setting_is_one_line_naming_the_variable_exit_3(tmp_path: Path) -> None:
    done = _ltr(["run"], tmp_path, LTR_NDCG_MIN="abc")
    assert done.returncode == 3 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "LTR_NDCG_MIN" in done.stderr and "'abc'" in done.stderr


def test_a_bad_home_or_version_is_a_usage_error_exit_2(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("not a folder")
    for args in (["demo", "--home", "README.md"], ["registry", "show", "latest-please"],
                 ["registry", "rollback", "2026-11-25"]):
        done = _ltr(args, tmp_path)
        assert done.returncode == 2 and "Traceback" not in done.stderr, (args, done.stderr)


def test_registry_errors_exit_6_and_word_a_missing_version_alike(tmp_path: Path) -> None:
    empty = _ltr(["registry", "show"], tmp_path)
    assert empty.returncode == 6 and "nothing published yet" in empty.stderr
    (tmp_path / "ltr-demo").mkdir()
    (tmp_path / "ltr-demo" / ".ltr-demo").touch()
    hinted = _ltr(["registry", "list"], tmp_path)
    assert hinted.returncode == 0 and "--home ltr-demo" in hinted.stderr  # the demo's registry, found for the user
    shown, rolled = (_ltr(["registry", cmd, "20261125_0215"], tmp_path) for cmd in ("show", "rollback"))
    assert shown.returncode == rolled.returncode == 6
    assert "version 20261125_0215 not found in" in shown.stderr and "version 20261125_0215 not found in" in \
        rolled.stderr


def test_json_output_is_pure_json_with_logs_on_stderr(tmp_path: Path) -> None:
    import orjson

    from ltr_pipeline.registry import ModelRegistry
    from ltr_pipeline.storage.local import LocalStore

    registry = ModelRegistry(LocalStore(tmp_path / "ltr_home" / "registry" / "ltr"))
    files = {"model.txt": b"tree", "ltr_weights.json": b'{"A": 1.0}'}
    first = registry.publish(files, {}, now=datetime(2026, 11, 25, 2, 15, tzinfo=UTC))
    registry.publish({**files, "model.txt": b"tree 2"}, {}, now=datetime(2026, 11, 26, 2, 15, tzinfo=UTC))
    done = _ltr(["registry", "rollback", first, "--json"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["live_version"] == first


def test_an_unexpected_error_is_one_line_unless_debug(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    quiet = _ltr(["run", "--home", "a-file/home"], tmp_path)
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr and "--debug" in quiet.stderr
    loud = _ltr(["--debug", "run", "--home", "a-file/home"], tmp_path)
    assert loud.returncode == 1 and "Traceback" in loud.stderr


def test_counts_in_tables_print_as_counts() -> None:
    from ltr_pipeline.cli import _fmt

    assert _fmt(81000.0, 4) == "81000" and _fmt(0.65, 4) == "0.6500" and _fmt(None) == "-"


def test_the_demo_prints_one_line_per_day_within_80_columns() -> None:
    from ltr_pipeline.cli import DEMO_HEADER, _demo_line

    row = {"run_date": "2026-11-28", "samples": 1_078_000, "ndcg5_new": 0.8421, "ndcg5_champion": None,
           "ndcg5_legacy": 0.7702, "debiased_difference": -0.0081, "p95_ms": 0.151, "decision": "publish_failed",
           "live_version": "20261129_0215_12"}
    line = _demo_line(row)
    assert len(DEMO_HEADER) <= 80 and len(line) <= 80 and "\n" not in line
    assert line.split()[:4] == ["2026-11-28", "1078000", "0.842", "-"] and "-0.008" in line

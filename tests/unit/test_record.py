"""The typed run record: report.json round-trips, and a report.json written before the record existed still loads."""

from __future__ import annotations

from pathlib import Path

import orjson

from ltr_pipeline.measures import NDCG_AT_5
from ltr_pipeline.pages import run_page
from ltr_pipeline.record import SCHEMA_VERSION, RunReport, dumps, load
from ltr_pipeline.report import load_reports

OLD = Path(__file__).resolve().parents[1] / "fixtures" / "report_schema0.json"  # written by the code of 2026-11-28


def test_a_report_written_before_the_schema_version_loads() -> None:
    raw = orjson.loads(OLD.read_bytes())
    report = load(OLD, RunReport)
    assert report.schema_version == 0  # it predates the field
    assert report.run_date == raw["run_date"] and report.decision == raw["decision"]
    assert report.metrics.new.ndcg_at_5 == raw["metrics"]["new"][NDCG_AT_5]
    assert report.metrics.champion is not None and report.metrics.champion_version == raw["metrics"]["champion_version"]
    assert report.data.samples == raw["data"]["train_rows"] + raw["data"]["valid_rows"]
    assert report.data.dataset.impressions == raw["data"]["dataset"]["impressions"]
    assert [c.name for c in report.gate.checks] == [c["name"] for c in raw["gate"]["checks"]]
    assert report.business[0].hit_at_3 == raw["business"][0]["hit@3"]
    assert report.source.name == raw["source"]["name"] and report.source.files == raw["source"]["files"]
    assert "LTR run" in run_page(report)


def test_report_json_round_trips_with_its_schema_version(tmp_path: Path) -> None:
    report = load(OLD, RunReport)
    current = RunReport(**{**vars(report), "schema_version": SCHEMA_VERSION})
    (tmp_path / "2026-11-27").mkdir()
    (tmp_path / "2026-11-27" / "report.json").write_bytes(dumps(current))
    (tmp_path / "2026-11-28").mkdir()
    (tmp_path / "2026-11-28" / "report.json").write_bytes(b'{"run_date": "2026-11-28", "cut sh')  # died mid-write
    [again] = load_reports(tmp_path)
    assert again == current and again.schema_version == SCHEMA_VERSION
    assert orjson.loads(dumps(again))["metrics"]["new"][NDCG_AT_5] == report.metrics.new.ndcg_at_5

"""The history page and the service's business gauges after a failed run: the failure is listed with its step and
reason, and the gauges keep the last run that saw events."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import orjson
import pytest

from ltr_pipeline.config import Settings
from ltr_pipeline.errors import LtrError
from ltr_pipeline.pipeline import run_daily
from ltr_pipeline.registry import ModelRegistry
from ltr_pipeline.report import history, load_failures
from ltr_pipeline.service.metrics import BusinessCollector


def test_a_failed_run_is_recorded_and_listed_on_the_history_page(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    (tmp_path / "events").mkdir()  # no events at all: the run stops at preprocess
    with pytest.raises(LtrError):
        run_daily(date(2026, 11, 26), settings)
    [failure] = load_failures(settings.runs_path)
    assert failure.run_date == "2026-11-26" and failure.step == "preprocess" and "no impressions" in failure.error
    page, _ = history(settings, ModelRegistry.from_settings(settings))
    assert "Failed runs: 1" in page and "no impressions" in page


def test_a_run_without_events_leaves_the_business_gauges_as_they_were(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for day, rows in (("2026-11-25", [{"day": "2026-11-25", "version": "v1", "cases": 300, "hit@3": 0.9}]),
                      ("2026-11-26", [])):
        (runs / day).mkdir(parents=True)
        (runs / day / "business.json").write_bytes(orjson.dumps(rows))
    assert [r["cases"] for r in BusinessCollector(runs).rows()] == [300]


def test_the_service_feeds_the_file_source_by_default() -> None:
    """/ltr/feedback and the served events reach the event files the daily run reads, with no setting; Kafka when
    the run reads Kafka; nowhere only when asked."""
    assert Settings().sink == "file"
    assert Settings(source="kafka").sink == Settings(source="auto").sink == "kafka"
    assert Settings(event_sink="none").sink == "none"


def test_charts_take_hostile_names_as_plain_text() -> None:
    from ltr_pipeline.charts import bar_chart, line_chart

    name = '<script>alert(1)</script> $\\frac{a$ & "x"'
    for svg in (bar_chart(name, {name: 1.0}), line_chart(name, ["2026-11-01"], {name: [0.5]})):
        assert "<script>" not in svg and "&lt;script&gt;" in svg

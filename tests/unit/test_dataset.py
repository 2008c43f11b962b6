from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ltr_pipeline.config import DEFAULT_LABEL_GRADES, Settings
from ltr_pipeline.dataset import Split, build_queries, split_by_time, window
from ltr_pipeline.errors import DataError
from ltr_pipeline.events.frame import events_to_frame
from ltr_pipeline.events.schema import Event
from ltr_pipeline.record import to_builtins
from ltr_pipeline.runs import Run

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)


def impression(case: str, lawyer: str, pos: int, ts: datetime = T0, **features: float) -> Event:
    return Event(f"r-{case}-{lawyer}", "recommendation", ts, case, lawyer, position=pos,
                 features=features or {"A": 0.5, "B": 0.1}, group="F" if pos % 2 else "M")


def feedback(case: str, lawyer: str, action: str, n: int = 0) -> Event:
    return Event(f"f-{case}-{lawyer}-{n}", "feedback", T0 + timedelta(minutes=5), case, lawyer, action=action)


def test_label_is_highest_grade_and_rows_follow_position() -> None:
    events = [
        impression("c1", "l2", 2), impression("c1", "l1", 1), impression("c1", "l3", 3),
        feedback("c1", "l1", "clicked"), feedback("c1", "l1", "contracted", 1), feedback("c1", "l1", "viewed", 2),
        feedback("c1", "l2", "declined"),
        feedback("c9", "l1", "accepted"),  # no impression: orphan
    ]
    qs, stats = build_queries(events_to_frame(events, ["A", "B"]), ["A", "B"], DEFAULT_LABEL_GRADES)
    assert qs.positions.tolist() == [1, 2, 3]  # l1, l2, l3: the order they were shown in
    assert qs.labels.tolist() == [3, 0, 0]
    assert qs.acted.tolist() == [True, True, False]  # l2 was declined: grade 0, but examined
    assert qs.qsizes.tolist() == [3]
    assert stats.orphan_feedback == 1
    assert stats.with_feedback == 2
    assert stats.positives == 1
    assert stats.label_counts == {"0": 2, "3": 1}


def test_custom_grades_and_feature_names() -> None:
    events = [impression("c1", "l1", 1, X=0.3), feedback("c1", "l1", "hired")]
    qs, stats = build_queries(events_to_frame(events, ["X", "A"]), ["X", "A"], {"hired": 5})
    assert qs.labels.tolist() == [5]
    assert qs.features[0, 0] == pytest.approx(0.3)
    assert math.isnan(qs.features[0, 1])
    assert stats.missing_features == {"A": 1}


def test_repeated_impression_keeps_the_first() -> None:
    later = impression("c1", "l1", 4, ts=T0 + timedelta(hours=1))
    qs, stats = build_queries(events_to_frame([later, impression("c1", "l1", 1)], ["A"]), ["A"], DEFAULT_LABEL_GRADES)
    assert qs.positions.tolist() == [1]
    assert stats.repeated_impressions == 1


def test_window_and_time_split_are_deterministic() -> None:
    start, end = window(date(2026, 11, 10), 10)
    assert start == datetime(2026, 11, 1, tzinfo=UTC) and end == datetime(2026, 11, 11, tzinfo=UTC)
    events = [impression(f"c{d}-{i}", "l1", 1, ts=start + timedelta(days=d, hours=i)) for d in range(10)
              for i in range(4)]
    qs, _ = build_queries(events_to_frame(events, ["A"]), ["A"], DEFAULT_LABEL_GRADES)
    split = split_by_time(qs, end, holdout=timedelta(days=1), valid_fraction=0.25)
    assert split.holdout.query_ts.tolist() == [int((start + timedelta(days=9, hours=i)).timestamp()) for i in range(4)]
    assert split.valid.queries == 9 and split.train.queries == 27
    assert np.max(split.train.query_ts) < np.min(split.valid.query_ts) < np.min(split.holdout.query_ts)


def test_the_split_saved_and_loaded_keeps_every_column_and_older_files_still_load(tmp_path: Path) -> None:
    events = [impression("c1", "l1", 1), impression("c1", "l2", 2), feedback("c1", "l2", "declined"),
              impression("c2", "l1", 1, ts=T0 + timedelta(days=1)), feedback("c2", "l1", "clicked")]
    qs, _ = build_queries(events_to_frame(events, ["A"]), ["A"], DEFAULT_LABEL_GRADES)
    run = Run(Settings(home=tmp_path), date(2026, 11, 2))
    run.save_split(Split(qs.take(np.array([0])), qs.take(np.array([], dtype=np.int64)), qs.take(np.array([1]))))
    loaded = run.load_split()
    assert loaded.train.acted.tolist() == [False, True] and loaded.holdout.labels.tolist() == [1]
    assert list(loaded.train.groups) == list(qs.take(np.array([0])).groups)
    with np.load(run.path("dataset.npz")) as data:  # as written before `acted` existed, groups one string a row
        older = {k: data[k] for k in data.files if not k.endswith((".acted", ".group_names", ".group_codes"))}
    for part, split_part in (("train", loaded.train), ("valid", loaded.valid), ("holdout", loaded.holdout)):
        older[f"{part}.groups"] = np.array([g or "" for g in split_part.groups], dtype=str)
    np.savez(run.path("dataset.npz"), **older)
    again = run.load_split()
    assert again.holdout.acted.tolist() == [True]  # from the labels: a click was examined
    assert list(again.train.groups) == list(loaded.train.groups)


def test_empty_holdout_is_a_data_error() -> None:
    qs, _ = build_queries(events_to_frame([impression("c1", "l1", 1)], ["A"]), ["A"], DEFAULT_LABEL_GRADES)
    with pytest.raises(DataError, match="holdout"):
        split_by_time(qs, datetime(2026, 12, 1, tzinfo=UTC), timedelta(days=1), 0.2)


def test_business_metrics_by_hand() -> None:
    from ltr_pipeline.dataset import business_metrics

    shown = [Event(f"r-{c}-{p}", "recommendation", T0, c, f"l{p}", position=p, features={"A": 0.1},
                   model_version=v) for c, v in (("c1", "v1"), ("c2", "v1"), ("c3", None)) for p in range(1, 6)]
    acts = [feedback("c1", "l2", "clicked"), feedback("c1", "l4", "contracted", 1),  # hit (pos 2) and converted
            feedback("c2", "l5", "accepted"),                                        # positive at pos 5: no hit
            feedback("c3", "l1", "declined")]                                        # grade 0: nothing
    expected = [
        {"day": "2026-11-01", "version": "legacy", "cases": 1, "hit@3": 0.0, "conversion": 0.0},
        {"day": "2026-11-01", "version": "v1", "cases": 2, "hit@3": 0.5, "conversion": 0.5},
    ]
    frame = events_to_frame(shown + acts, ["A"])
    for parts in (1, 5):  # 5 shares of the 19 events
        assert to_builtins(business_metrics(frame, DEFAULT_LABEL_GRADES, parts)) == expected


def test_the_dataset_built_in_shares_of_the_cases_is_the_one_built_whole(tmp_path: Path) -> None:
    """Cases spread over days, feedback a day after its case, an impression repeated: whichever share a case falls
    in, it is built whole, and the queries come out in the same order; in memory (the local engine) and as share files
    (what the Dask workers write, read back in the window's order)."""
    from ltr_pipeline.dataset import add_stats
    from ltr_pipeline.shares import ORDER, read_share, to_queryset, write_share

    events = [impression(f"c{c}", f"l{j}", j, ts=T0 + timedelta(hours=7 * c), A=c / 10 + j / 100)
              for c in range(12) for j in range(1, 5)]
    events += [impression("c3", "l1", 1, ts=T0 + timedelta(days=3))]  # shown again later: the first one counts
    events += [impression("c5", f"l{j}", j, ts=T0 + timedelta(days=2)) for j in (5, 6, 7)]  # more, days later
    events += [Event(f"f-c{c}", "feedback", T0 + timedelta(hours=7 * c + 24), f"c{c}", "l2", action="clicked")
               for c in range(0, 12, 3)]
    frame = events_to_frame(events, ["A"])
    whole, stats = build_queries(frame, ["A"], DEFAULT_LABEL_GRADES, parts=1)
    frame.write_parquet(tmp_path / "events.parquet")
    assert stats.queries == 12 and whole.qsizes[5] == 7  # one query per case, its later rows in it
    assert stats.repeated_impressions == 1 and stats.positives == 4
    for parts in (2, 5):
        shared, shared_stats = build_queries(frame.lazy(), ["A"], DEFAULT_LABEL_GRADES, parts=parts)
        files = [str(tmp_path / f"{parts}-{i}.parquet") for i in range(parts)]
        built = [write_share(str(tmp_path / "events.parquet"), i, parts, ["A"], DEFAULT_LABEL_GRADES, f)
                 for i, f in enumerate(files)]
        assert sum(queries.height for queries, _ in built) == 12
        assert add_stats([s for _, s in built], ["A"]) == stats
        rows = pl.concat([read_share(f) for f in files]).sort(ORDER, maintain_order=True)
        for qs in (shared, to_queryset(rows, ["A"])):
            for name in ("features", "labels", "qsizes", "query_ts", "positions", "acted"):
                assert np.array_equal(getattr(qs, name), getattr(whole, name)), name
            assert list(qs.groups) == list(whole.groups)
        assert shared_stats == stats


def test_groups_are_codes_into_one_string_per_group() -> None:
    from ltr_pipeline.dataset import group_codes, group_refs

    names, codes = group_codes(pl.Series(["M", None, "F", "M"], dtype=pl.String))
    assert names == ["F", "M"] and codes.tolist() == [1, -1, 0, 1]
    refs = group_refs(names, codes)
    assert refs.tolist() == ["M", None, "F", "M"] and refs[0] is refs[3]  # one object per group, not per row

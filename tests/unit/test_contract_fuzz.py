"""Property test of the event contract (issue 17, class 3): for any line a producer could write, the columnar fast
path (`frame.read_fast`) and the line-by-line path (`file._read_lines`) keep the same events and refuse the same lines
with the same reasons."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import polars as pl
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ltr_pipeline.config import DEFAULT_LABEL_GRADES
from ltr_pipeline.events.file import _read_lines
from ltr_pipeline.events.frame import read_fast
from ltr_pipeline.events.schema import TEXT_FIELDS

ACTIONS = DEFAULT_LABEL_GRADES.keys()
NAMES = ["A", "S"]
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8), st.just(""), st.just("x" * 300), st.sampled_from(["live", "challenger", "clicked", "F"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=2), st.dictionaries(st.sampled_from(NAMES), scalars, max_size=2))
# Well-typed but hostile: what the fast path reads itself, so both paths must decide alike.
texts = st.one_of(st.none(), st.just(""), st.text(max_size=6), st.just("x" * 256), st.just("x" * 257),
                  st.sampled_from(["live", "challenger", "clicked", "liked", "F", "recommendation", "feedback"]))
canonical_ts = st.sampled_from([
    "2026-11-30T10:00:00Z", "2026-11-30T10:00:00+02:00", "2026-11-30T10:00:00.123456Z", "1999-12-31T23:59:59Z",
    "2000-01-01T00:00:00Z", "0999-01-01T00:00:00Z", "9999-12-31T23:00:00-05:00", "2026-12-05T00:00:00Z",
    "2026-12-01T11:59:59Z", "2026-13-40T10:00:00Z", "2026-02-30T10:00:00Z"])
typed = {
    **dict.fromkeys(TEXT_FIELDS, texts), "ts": st.one_of(st.none(), canonical_ts),
    "position": st.one_of(st.none(), st.integers(-2, 3), st.just(10**6), st.just(10**6 + 1)),
    "order_probability": st.one_of(st.none(), st.sampled_from([0, 0.5, 1, 1.5, -1])),
    "explored": st.one_of(st.none(), st.booleans()),
    "features": st.one_of(st.none(), st.dictionaries(st.sampled_from([*NAMES, "B"]),
                                                     st.one_of(st.none(), st.floats(-10, 10)), max_size=3)),
}
untyped = {**dict.fromkeys(typed, values), "ts": st.one_of(values, st.sampled_from(
    ["2026-11-30T10:00:00", "2026-11-30", "2026-11-30 10:00:00Z", "yesterday", ""]))}


@st.composite
def events(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["recommendation", "recommendation", "feedback", "click", None]))
    event: dict[str, Any] = {"event_id": f"e{draw(st.integers(0, 5))}", "event_type": kind,
                             "ts": "2026-11-30T10:00:00Z", "case_id": "c-1", "lawyer_id": "l-1"}
    if kind == "feedback":
        event["action"] = draw(st.sampled_from([*ACTIONS, "liked"]))
    else:
        event |= {"position": 1, "features": {"A": 0.5}}
    hostile = draw(st.sampled_from([typed, typed, typed, untyped]))
    for name in draw(st.lists(st.sampled_from(sorted(hostile)), max_size=3)):
        event[name] = draw(hostile[name])
    for name in draw(st.lists(st.sampled_from(list(event)), max_size=1)):
        del event[name]
    return event


def _decisions(valid: pl.DataFrame, refused: list[tuple[str, int, bytes]]) -> tuple[list[Any], list[Any]]:
    return sorted(valid.to_dicts(), key=lambda r: str(r)), sorted((line, reason) for reason, line, _ in refused)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events(), min_size=1, max_size=4))
def test_both_parse_paths_keep_and_refuse_the_same_lines_for_the_same_reasons(batch: list[dict[str, Any]]) -> None:
    data = b"".join(orjson.dumps(e) + b"\n" for e in batch)
    fast = read_fast(data, NAMES, ACTIONS, now=NOW)
    slow = _read_lines(data, NAMES, ACTIONS, now=NOW)
    event("the fast path declined" if fast is None else "both paths decided")
    if fast is None:  # the fast path may decline a file: the line path reads it, nothing to compare
        return
    assert _decisions(*fast) == _decisions(*slow)

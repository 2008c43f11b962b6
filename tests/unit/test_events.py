from __future__ import annotations

import gzip
import resource
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from ltr_pipeline.config import DEFAULT_LABEL_GRADES
from ltr_pipeline.errors import SourceUnavailable
from ltr_pipeline.events.file import FileEventSource
from ltr_pipeline.events.schema import (
    EARLIEST_TS,
    FUTURE_SLACK,
    MAX_TEXT_CHARS,
    TS_TOO_EARLY,
    TS_TOO_LATE,
    InvalidEvent,
    parse_event,
    too_long,
    ts_problem,
)

ACTIONS = DEFAULT_LABEL_GRADES.keys()
START, END = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC)
NAMES = ["A", "S"]


def rec(event_id: str, ts: str = "2026-11-01T10:00:00Z", **extra: object) -> dict[str, object]:
    return {"event_id": event_id, "event_type": "recommendation", "ts": ts, "case_id": "c-1", "lawyer_id": "l-1",
            "position": 1, "features": {"A": 1.0, "S": 0.5}, **extra}


def fb(event_id: str, action: str = "accepted", ts: str = "2026-11-01T10:05:00+00:00") -> dict[str, object]:
    return {"event_id": event_id, "event_type": "feedback", "ts": ts, "case_id": "c-1", "lawyer_id": "l-1",
            "action": action}


def test_valid_events_parse_and_round_trip() -> None:
    event = parse_event(orjson.dumps(rec("e1", group="F", features={"A": 1, "S": None})), ACTIONS)
    assert event.ts == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert event.features is not None and event.features["A"] == 1.0
    assert event.to_dict()["features"]["S"] is None  # NaN written back as null
    complete = parse_event(orjson.dumps(rec("e3", group="F", model_version="20261101_0215")), ACTIONS)
    assert parse_event(complete.to_json(), ACTIONS) == complete
    feedback = parse_event(orjson.dumps(fb("e2", ts="2026-11-01T12:05:00+02:00")), ACTIONS)
    assert feedback.ts == datetime(2026, 11, 1, 10, 5, tzinfo=UTC)  # stored in UTC


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (orjson.dumps({**rec("e"), "event_type": "click"}), "event_type"),
        (orjson.dumps({**rec("e"), "ts": "2026-11-01T10:00:00"}), "no time zone"),
        (orjson.dumps({**rec("e"), "ts": "yesterday"}), "not ISO-8601"),
        (orjson.dumps({**rec("e"), "position": 0}), "position"),
        (orjson.dumps({**rec("e"), "features": {"A": "high"}}), "not a number"),
        (orjson.dumps({k: v for k, v in rec("e").items() if k != "case_id"}), "missing field 'case_id'"),
        (orjson.dumps(fb("e", action="liked")), "unknown feedback action"),
        (b'{"x": "' + b"a" * 70_000 + b'"}', "larger than"),
    ],
)
def test_contract_violations_give_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        parse_event(raw, ACTIONS)


def _write(path: Path, lines: list[bytes], gz: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(data) if gz else data)


def test_file_source_selects_window_dedupes_and_quarantines(tmp_path: Path) -> None:
    _write(tmp_path / "2026-11-01" / "events.jsonl", [
        orjson.dumps(rec("a")),
        orjson.dumps(rec("a")),  # duplicate event_id
        b"garbage",
        b"",
        orjson.dumps(rec("late", ts="2026-11-03T00:00:00Z")),  # outside [start, end)
        orjson.dumps(rec("early", ts="2026-10-31T23:59:59Z")),
    ])
    _write(tmp_path / "nested" / "more.jsonl.gz", [orjson.dumps(fb("b")), orjson.dumps(rec("a"))], gz=True)
    (tmp_path / "ignored.json").write_text("{}")
    result = FileEventSource(tmp_path).read(START, END, ACTIONS, NAMES)
    assert sorted(result.frame["event_id"].to_list()) == ["a", "b"]
    assert result.duplicates == 2
    assert len(result.quarantined) == 1
    entry = result.quarantined[0]
    assert entry.position == {"file": str(tmp_path / "2026-11-01" / "events.jsonl"), "line": 3}
    assert "not valid JSON" in entry.reason and entry.raw == "garbage"
    assert result.counts().seen == 7


def test_written_as_read_the_window_is_the_one_held_in_memory(tmp_path: Path) -> None:
    """read(..., into=path): file by file to parquet, whichever path read each file (columnar or line by line), a
    file of feedback only, a file with nothing in the window; the same events, duplicates and counts as in memory."""
    events = tmp_path / "events"
    _write(events / "a.jsonl", [orjson.dumps(rec("a")), b"garbage", orjson.dumps(rec("b", group="F"))])  # lines
    _write(events / "b.jsonl.gz", [orjson.dumps(rec("c")), orjson.dumps(rec("a"))], gz=True)  # columnar
    _write(events / "c.jsonl", [orjson.dumps(fb("d")), orjson.dumps(fb("e", action="declined"))])
    _write(events / "d.jsonl", [orjson.dumps(rec("old", ts="2026-10-01T00:00:00Z"))])
    held = FileEventSource(events).read(START, END, ACTIONS, NAMES)
    path = tmp_path / "run" / "events.parquet"
    written = FileEventSource(events).read(START, END, ACTIONS, NAMES, into=path)
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["events.parquet"]  # no partial file left
    assert written.frame.sort("event_id").equals(held.frame.sort("event_id"))
    assert sorted(written.frame["event_id"].to_list()) == ["a", "b", "c", "d", "e"]
    assert written.counts() == held.counts() and written.duplicates == 1


def test_truncated_gzip_keeps_what_was_read_and_quarantines_the_rest(tmp_path: Path) -> None:
    lines = [orjson.dumps(rec(f"e{i}")) for i in range(2000)]
    blob = gzip.compress(b"\n".join(lines) + b"\n")
    path = tmp_path / "day" / "events.jsonl.gz"
    path.parent.mkdir()
    path.write_bytes(blob[: len(blob) // 2])
    result = FileEventSource(tmp_path).read(START, END, ACTIONS, NAMES)
    assert 0 < result.frame.height < 2000
    assert len(result.quarantined) == 1 and "unreadable file" in result.quarantined[0].reason


def test_gzip_members_and_trailing_junk_keep_every_complete_line(tmp_path: Path) -> None:
    lines = [orjson.dumps(rec(f"e{i}")) for i in range(6)]
    path = tmp_path / "day" / "events.jsonl.gz"
    path.parent.mkdir()
    path.write_bytes(gzip.compress(b"\n".join(lines[:3]) + b"\n") + gzip.compress(b"\n".join(lines[3:]) + b"\n")
                     + b"junk after the last member")
    result = FileEventSource(tmp_path).read(START, END, ACTIONS, NAMES)
    assert result.frame["event_id"].to_list() == [f"e{i}" for i in range(6)]  # the last complete line too
    assert len(result.quarantined) == 1 and "unreadable file after line 6" in result.quarantined[0].reason


def test_a_decompression_bomb_is_read_up_to_the_cap_as_a_stream(tmp_path: Path) -> None:
    line = orjson.dumps(rec("bomb", ts="2026-11-01T10:00:00Z")) + b"\n"
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = line * (1_048_576 // len(line))
    path = tmp_path / "day" / "events.jsonl.gz"
    path.parent.mkdir()
    with path.open("wb") as fh:  # 200 MB of events in about 0.2 MB
        for _ in range(200):
            fh.write(packer.compress(block))
        fh.write(packer.flush())
    assert path.stat().st_size < 1_000_000
    cap = 4 * 1_048_576
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = FileEventSource(tmp_path, max_file_bytes=cap).read(START, END, ACTIONS, NAMES)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert result.frame.height == 1  # the same event_id over and over: one event, the rest duplicates
    assert result.seen == cap // len(line)  # every complete line under the cap, not one more
    assert len(result.quarantined) == 1 and "decompresses to more than" in result.quarantined[0].reason
    assert grown_mb < 150  # whole, it would have been 200 MB of bytes before any parsing


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="ltr simulate"):
        FileEventSource(tmp_path / "nope").read(START, END, ACTIONS, NAMES)


def test_columnar_and_line_paths_agree(tmp_path: Path) -> None:
    # JSON on every line, some rows breaking the contract: the columnar path reads it; with one blank line added,
    # the line-by-line path does. Both must keep and refuse the same events, with the same lines and reasons.
    rows = [
        orjson.dumps(rec("ok1", group="F", features={"A": 0.5, "S": None})),
        orjson.dumps({**rec("bad-type"), "event_type": "click"}),
        orjson.dumps(fb("ok2", ts="2026-11-01T12:05:00+02:00")),
        orjson.dumps({**rec("naive"), "ts": "2026-11-01T10:00:00"}),
        orjson.dumps({**rec("pos"), "position": 0}),
        orjson.dumps(fb("act", action="liked")),
        orjson.dumps({k: v for k, v in rec("nocase").items() if k != "case_id"}),
        orjson.dumps(rec("ok3", ts="2026-11-02T23:59:59.999Z")),
        orjson.dumps(rec("late", ts="2026-11-03T00:00:00Z")),
    ]
    fast_dir, slow_dir = tmp_path / "fast", tmp_path / "slow"
    _write(fast_dir / "e.jsonl", rows)
    _write(slow_dir / "e.jsonl", [*rows, b""])  # a blank line sends the file down the line-by-line path
    results = [FileEventSource(d).read(START, END, ACTIONS, NAMES) for d in (fast_dir, slow_dir)]
    for result in results:
        assert sorted(result.frame["event_id"].to_list()) == ["ok1", "ok2", "ok3"]
        refused = sorted((q.position["line"], q.reason.split(" (")[0].split(":")[0]) for q in result.quarantined)
        assert [line for line, _ in refused] == [2, 4, 5, 6, 7]
    fast, slow = results
    assert [q.reason[:30] for q in sorted(fast.quarantined, key=lambda q: q.position["line"])] == \
        [q.reason[:30] for q in sorted(slow.quarantined, key=lambda q: q.position["line"])]
    assert fast.frame.sort("event_id").equals(slow.frame.sort("event_id"))
    assert fast.seen == slow.seen == 9
    row = fast.frame.filter(fast.frame["event_id"] == "ok1").row(0, named=True)
    assert row["feature__A"] == 0.5 and row["feature__S"] is None and row["group"] == "F"


HOSTILE = [  # (event, the reason both parse paths give): issue 17, classes 1 and 2
    ({**rec("overflow"), "ts": "9999-12-31T23:00:00-05:00"}, TS_TOO_LATE),  # past datetime's range once in UTC
    ({**rec("ancient"), "ts": "0999-01-01T00:00:00Z"}, TS_TOO_EARLY),
    ({**rec("y1999"), "ts": "1999-12-31T23:59:59Z"}, TS_TOO_EARLY),
    ({**rec("future"), "ts": "2099-01-01T00:00:00Z"}, TS_TOO_LATE),
    ({**rec("nolawyer"), "lawyer_id": ""}, "field 'lawyer_id' must be a non-empty string"),
    ({**rec("longcase"), "case_id": "c" * (MAX_TEXT_CHARS + 1)}, too_long("case_id")),
    ({**rec("x" * (MAX_TEXT_CHARS + 1))}, too_long("event_id")),
    ({**fb("longaction"), "action": "a" * (MAX_TEXT_CHARS + 1)}, too_long("action")),
    ({**rec("longgroup"), "group": "g" * (MAX_TEXT_CHARS + 1)}, too_long("group")),
    ({**rec("longversion"), "challenger_version": "v" * (MAX_TEXT_CHARS + 1)}, too_long("challenger_version")),
]


@pytest.mark.parametrize(("event", "reason"), HOSTILE)
def test_hostile_values_are_refused_with_the_same_reason_by_both_paths(event: dict[str, object], reason: str,
                                                                        tmp_path: Path) -> None:
    with pytest.raises(InvalidEvent) as refused:
        parse_event(orjson.dumps(event), ACTIONS)
    assert str(refused.value) == reason
    rows = [orjson.dumps(rec("ok")), orjson.dumps(event)]
    _write(tmp_path / "fast" / "e.jsonl", rows)
    _write(tmp_path / "slow" / "e.jsonl", [*rows, b""])  # the blank line: the line-by-line path
    for folder in ("fast", "slow"):  # the run goes on: the good event kept, the hostile one quarantined
        result = FileEventSource(tmp_path / folder).read(START, END, ACTIONS, NAMES)
        assert result.frame["event_id"].to_list() == ["ok"]
        assert [(q.position["line"], q.reason) for q in result.quarantined] == [(2, reason)]


def test_a_key_given_twice_is_refused_not_read_two_ways(tmp_path: Path) -> None:
    """polars keeps the first of two equal keys and orjson the last: the contract refuses the line instead."""
    twice = orjson.dumps(rec("twice"))[:-1] + b', "case_id": "c-2"}'
    nested = orjson.dumps(rec("nested", features={"A": 1.0, "S": 0.5}))  # "A" twice, but not a contract key
    _write(tmp_path / "e.jsonl", [twice, nested, orjson.dumps(rec("ok"))])
    result = FileEventSource(tmp_path).read(START, END, ACTIONS, NAMES)
    assert sorted(result.frame["event_id"].to_list()) == ["nested", "ok"]
    assert [(q.position["line"], q.reason) for q in result.quarantined] == [
        (1, "key 'case_id' appears twice (readers disagree on which one counts)")]


def test_the_contract_s_bounds_hold_at_their_edges() -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert ts_problem(EARLIEST_TS, now) is None and ts_problem(now + FUTURE_SLACK, now) is None
    assert ts_problem(EARLIEST_TS - timedelta(microseconds=1), now) == TS_TOO_EARLY
    assert ts_problem(now + FUTURE_SLACK + timedelta(microseconds=1), now) == TS_TOO_LATE
    assert parse_event(orjson.dumps({**rec("e"), "case_id": "c" * MAX_TEXT_CHARS}), ACTIONS).case_id


def test_confluent_kafka_still_names_the_partition_end() -> None:
    """The Kafka source reads a private confluent-kafka name; a release that drops it fails here, by name."""
    from confluent_kafka import KafkaError

    from ltr_pipeline.events.kafka import PARTITION_EOF, partition_ended

    assert hasattr(KafkaError, "_PARTITION_EOF"), "KafkaError._PARTITION_EOF is gone: see events.kafka.partition_ended"
    assert KafkaError._PARTITION_EOF == PARTITION_EOF  # the fallback number is librdkafka's own
    assert partition_ended(KafkaError(PARTITION_EOF))
    assert not partition_ended(KafkaError(KafkaError._TRANSPORT))

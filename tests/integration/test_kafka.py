"""Kafka ingestion and the spool against a real Kafka-protocol broker (Tansu) that the tests start and stop."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from ltr_pipeline.config import DEFAULT_LABEL_GRADES, Settings
from ltr_pipeline.errors import SourceUnavailable
from ltr_pipeline.events.kafka import KafkaArchiver, KafkaEventSource, ensure_topic
from ltr_pipeline.events.schema import Event
from ltr_pipeline.events.sink import KafkaSink
from ltr_pipeline.scoring import WeightedSumScorer, default_weights
from ltr_pipeline.simulate import SimConfig, make_marketplace, simulate_day
from tests.helpers import S3_CREDENTIALS, TansuBroker, free_port, s3_client, wait_until

DAY = date(2026, 11, 20)
ACTIONS = DEFAULT_LABEL_GRADES.keys()
NAMES = list("ASTGQURC")


def window(last: date, days: int) -> tuple[datetime, datetime]:
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    return end - timedelta(days=days), end


def simulated(days: int, cases: int = 40, last: date = DAY) -> list[Event]:
    config = SimConfig(cases_per_day=cases)
    market = make_marketplace(config)
    names = list("ASTGQURC")
    legacy = WeightedSumScorer(default_weights(names), names)
    events: list[Event] = []
    for offset in range(days - 1, -1, -1):
        events += simulate_day(market, last - timedelta(days=offset), config, legacy, None)
    return events


def produce(settings: Settings, events: list[Event]) -> None:
    ensure_topic(settings)
    sink = KafkaSink(settings)
    sink.write(events)
    sink.close()
    assert sink.spooled() == 0


def committed(settings: Settings) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": settings.kafka_group_id})
    try:
        offsets = consumer.committed([TopicPartition(settings.kafka_topic, p) for p in range(3)], timeout=10)
        return {tp.partition: tp.offset for tp in offsets if tp.offset >= 0}
    finally:
        consumer.close()


@pytest.fixture
def broker() -> Iterator[TansuBroker]:
    with TansuBroker() as running:
        yield running


@pytest.fixture
def kafka_settings(settings: Settings, broker: TansuBroker) -> Settings:
    return settings.model_copy(update={
        "kafka_bootstrap_servers": broker.bootstrap, "source": "kafka", "kafka_timeout_seconds": 3.0,
        "kafka_message_timeout_ms": 3000,
    })


def test_window_across_three_partitions_quarantines_bad_messages_and_commits_after_write(
    kafka_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = simulated(days=3)
    produce(kafka_settings, events)
    raw = Producer({"bootstrap.servers": kafka_settings.kafka_bootstrap_servers})
    stamp = int(datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp() * 1000)
    for value in (b"not json", orjson.dumps({"event_id": "x", "event_type": "click"}), b"{" + b" " * 70_000 + b"}"):
        raw.produce(kafka_settings.kafka_topic, value=value, partition=1, timestamp=stamp)
    pretty = orjson.dumps({**events[0].to_dict(), "event_id": "pretty"}, option=orjson.OPT_INDENT_2)
    assert b"\n" in pretty  # newlines inside one message must not split it in the archive
    raw.produce(kafka_settings.kafka_topic, value=pretty, partition=2, timestamp=stamp)
    raw.flush(10)
    events = [*events, events[0].__class__(**{**{f: getattr(events[0], f) for f in events[0].__slots__},
                                              "event_id": "pretty"})]

    source = KafkaEventSource(kafka_settings)
    start, end = window(DAY, 3)
    # A failure while writing the archive commits nothing.
    monkeypatch.setattr(KafkaArchiver, "_replace_days", lambda *_: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        source.read(start, end, ACTIONS, NAMES)
    assert committed(kafka_settings) == {}
    monkeypatch.undo()

    result = source.read(start, end, ACTIONS, NAMES)
    assert sorted(result.frame["event_id"].to_list()) == sorted(e.event_id for e in events)
    stats = result.detail["kafka"]
    assert stats["partitions"] == [0, 1, 2] and stats["messages"] == len(events) + 3  # + the three refused
    per_partition = {int(p): o for p, o in stats["committed"].items()}
    assert len(per_partition) == 3
    assert committed(kafka_settings) == {p: o + 1 for p, o in per_partition.items()}
    reasons = sorted(q.reason.split(":")[0] for q in result.quarantined)
    assert reasons == ["event larger than 65536 bytes", "event_type must be one of recommendation, feedback",
                       "not valid JSON"]
    for entry in result.quarantined:
        assert entry.source == "kafka"
        assert entry.position["topic"] == "match_events" and entry.position["partition"] == 1
        assert isinstance(entry.position["offset"], int)
    for day in range(3):
        assert (kafka_settings.archive_path / (DAY - timedelta(days=day)).isoformat() / "_SUCCESS").is_file()

    again = source.read(start, end, ACTIONS, NAMES)  # re-running a date: same events, nothing doubled
    assert sorted(again.frame["event_id"].to_list()) == sorted(result.frame["event_id"].to_list())
    assert again.duplicates == 0


def test_interrupted_ingest_resumes_with_no_loss_and_no_duplicates(kafka_settings: Settings) -> None:
    events = simulated(days=2, cases=150)
    produce(kafka_settings, events)
    tight = kafka_settings.model_copy(update={"kafka_config": {"max.partition.fetch.bytes": "8192",
                                                               "fetch.max.bytes": "16384",
                                                               "message.max.bytes": "16384"}})
    start, end = window(DAY, 2)

    def crash(read: int) -> None:
        raise KeyboardInterrupt(f"stopped after {read} messages")

    with pytest.raises(KeyboardInterrupt):
        KafkaEventSource(tight, progress=crash).read(start, end, ACTIONS, NAMES)
    assert not (tight.archive_path / DAY.isoformat() / "_SUCCESS").exists()
    assert committed(tight) == {}

    result = KafkaEventSource(tight).read(start, end, ACTIONS, NAMES)
    ids = result.frame["event_id"].to_list()
    assert len(ids) == len(set(ids)) == len(events)
    assert result.duplicates == 0


def test_broker_killed_mid_ingest_and_restarted_loses_nothing(settings: Settings, moto_endpoint: str) -> None:
    # Tansu keeps its log in S3 (moto) here, so a restarted broker still has every message.
    s3_client(moto_endpoint).create_bucket(Bucket="tansu-restart")
    env = {**S3_CREDENTIALS, "AWS_ENDPOINT": moto_endpoint, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ALLOW_HTTP": "true"}
    with TansuBroker(storage="s3://tansu-restart/", env=env) as broker:
        cfg = settings.model_copy(update={
            "kafka_bootstrap_servers": broker.bootstrap, "kafka_timeout_seconds": 20.0,
            "kafka_config": {"max.partition.fetch.bytes": "8192", "fetch.max.bytes": "16384",
                             "message.max.bytes": "16384"},
        })
        events = simulated(days=1, cases=200)
        produce(cfg, events)
        restarts: list[int] = []

        def kill_and_restart(read: int) -> None:
            if not restarts:
                restarts.append(read)
                broker.stop()
                broker.start()

        start, end = window(DAY, 1)
        result = KafkaEventSource(cfg, progress=kill_and_restart).read(start, end, ACTIONS, NAMES)
        assert restarts and restarts[0] < len(events)  # the broker died with most of the day unread
        ids = result.frame["event_id"].to_list()
        assert len(ids) == len(set(ids)) == len(events)

        broker.stop()  # and when it does not come back: a clear error, nothing committed for this read
        with pytest.raises(SourceUnavailable, match=r"unreachable|stopped answering"):
            KafkaEventSource(cfg.model_copy(update={"kafka_timeout_seconds": 1.0})).read(start, end, ACTIONS, NAMES)


def test_spool_keeps_events_while_the_broker_is_down_and_resends_them(settings: Settings) -> None:
    port = free_port()
    cfg = settings.model_copy(update={
        "kafka_bootstrap_servers": f"127.0.0.1:{port}", "kafka_message_timeout_ms": 500,
        "spool_retry_seconds": 0.2, "kafka_timeout_seconds": 3.0,
    })
    events = simulated(days=1, cases=5)
    outcomes: dict[str, int] = {}

    def record(outcome: str, n: int) -> None:
        outcomes[outcome] = outcomes.get(outcome, 0) + n

    sink = KafkaSink(cfg, record)
    sink.start()
    sink.submit(lambda: events)
    wait_until(lambda: sink.spooled() == len(events), what="events to be spooled")
    broker = TansuBroker()
    broker.port, broker.bootstrap = port, f"127.0.0.1:{port}"
    with broker:
        ensure_topic(cfg)
        wait_until(lambda: sink.spooled() == 0 and outcomes.get("resent", 0) == len(events), timeout=30,
                   what="the spool to drain")
        sink.close()
        start, end = window(DAY, 1)
        result = KafkaEventSource(cfg).read(start, end, ACTIONS, NAMES)
    assert sorted(result.frame["event_id"].to_list()) == sorted(e.event_id for e in events)
    assert outcomes["spooled"] >= len(events)
    assert not list(Path(cfg.spool_path).glob("sending-*"))


def test_auto_falls_back_to_files_when_no_broker_answers(settings: Settings) -> None:
    from ltr_pipeline.pipeline import run_daily
    from ltr_pipeline.registry import ModelRegistry
    from ltr_pipeline.simulate import write_day

    for event_day in range(6):
        day = DAY - timedelta(days=5 - event_day)
        write_day([e for e in simulated(days=1, cases=60, last=day)], settings.events_path, day)
    cfg = settings.model_copy(update={
        "source": "auto", "kafka_bootstrap_servers": f"127.0.0.1:{free_port()}", "kafka_timeout_seconds": 1.0,
        "train_days": 6, "ndcg_min": 0.0, "fairness_max": 1.0,
    })
    report = run_daily(DAY, cfg)
    assert report.source.name == "file"
    assert report.source.fallback is not None and "unreachable" in report.source.fallback.reason
    assert report.data.ingest.events > 0
    meta = ModelRegistry.from_settings(cfg).show(str(report.published_version))
    assert meta["source"]["fallback"]["from"] == "kafka"


def test_a_late_event_joins_its_own_day_once(kafka_settings: Settings) -> None:
    day_before = DAY - timedelta(days=1)
    events = simulated(days=1, cases=20, last=day_before)
    produce(kafka_settings, events)
    source = KafkaEventSource(kafka_settings)
    first = source.read(*window(day_before, 1), ACTIONS, NAMES)
    assert first.frame.height == len(events)

    # A feedback for that day arrives after it was archived (e.g. re-sent from a spool), among the next day's events.
    late = Event("f-late", "feedback", events[0].ts + timedelta(minutes=30), events[0].case_id, events[0].lawyer_id,
                 action="contracted")
    produce(kafka_settings, [*simulated(days=1, cases=20, last=DAY), late])
    both = source.read(*window(DAY, 2), ACTIONS, NAMES)
    ids = both.frame["event_id"].to_list()
    assert "f-late" in ids and len(ids) == len(set(ids))
    assert both.detail["kafka"]["late"] == 1
    late_files = list((kafka_settings.archive_path / day_before.isoformat()).glob("late-*.jsonl"))
    assert len(late_files) == 1 and late_files[0].name.startswith(f"late-{DAY.isoformat()}-p")
    assert late_files[0].read_bytes().count(b"\n") == 1 and b'"f-late"' in late_files[0].read_bytes()
    again = source.read(*window(DAY, 2), ACTIONS, NAMES)  # re-running the date changes nothing
    assert sorted(again.frame["event_id"].to_list()) == sorted(ids) and again.duplicates == 0


def test_a_message_stamped_far_in_the_future_is_quarantined_and_the_partition_read_on(kafka_settings: Settings
                                                                                       ) -> None:
    """Issue 17, class 1: a message stamped 9999-12-31 used to read as 'this partition is past the window', so every
    later run stopped there and never read what followed it."""
    ensure_topic(kafka_settings)
    raw = Producer({"bootstrap.servers": kafka_settings.kafka_bootstrap_servers})
    far = int(datetime(9999, 12, 31, tzinfo=UTC).timestamp() * 1000)
    for partition in range(3):
        raw.produce(kafka_settings.kafka_topic, value=b'{"event_id": "far"}', partition=partition, timestamp=far)
    raw.flush(10)
    events = simulated(days=1)
    produce(kafka_settings, events)  # after it, in every partition
    result = KafkaEventSource(kafka_settings).read(*window(DAY, 1), ACTIONS, NAMES)
    assert sorted(result.frame["event_id"].to_list()) == sorted(e.event_id for e in events)
    assert [q.reason for q in result.quarantined] == ["Kafka timestamp more than a day in the future"] * 3


def test_the_guard_reads_the_topic_without_committing_and_rolls_a_skewed_version_back(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """With the Kafka sink the guard reads what the service sent from the topic, with a consumer of its own: the
    ETL group's offsets do not move."""
    from ltr_pipeline.guard import Guard
    from ltr_pipeline.registry import ModelRegistry
    from ltr_pipeline.storage.local import LocalStore
    from tests.unit.test_guard import T0, T1, _day, _model, _reference

    settings = kafka_settings.model_copy(update={
        "home": tmp_path / "guarded", "registry_uri": str(tmp_path / "registry"), "guard_min_cases": 30,
        "guard_min_rows": 300, "guard_feedback_seconds": 600})
    assert settings.sink == "kafka"
    registry = ModelRegistry(LocalStore(settings.registry))
    first = registry.publish(_model(1), {"reference": _reference()}, now=T0)
    second = registry.publish(_model(2), {"reference": _reference(0.01)}, now=T1)  # trained on another scale
    produce(settings, _day(first, T0, 100, 0.6, seed=1) + _day(second, T1, 40, 0.6, seed=2))
    before = committed(settings)
    report = Guard(settings, registry, notify=lambda _: None).check(T1 + timedelta(hours=3))
    assert report.cases == 40 and [c.name for c in report.failed] == ["feature drift (PSI)"]
    assert report.action == "rolled_back" and registry.live_version() == first
    assert committed(settings) == before

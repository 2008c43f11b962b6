"""Kafka ingest throughput: the project's Kafka source against a bare confluent-kafka consume loop.

Both read the same messages from the same Tansu broker, each with its own consumer created, assigned (no group join)
and closed inside the timed span. Reports messages/s per run, the median of each, and their ratio.

    .venv/bin/python -m bench.kafka_ingest [--messages 200000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, TopicPartition

from ltr_pipeline.config import DEFAULT_LABEL_GRADES, Settings
from ltr_pipeline.events.kafka import KafkaArchiver, KafkaEventSource, ensure_topic
from ltr_pipeline.events.sink import KafkaSink
from ltr_pipeline.logs import configure_logging
from ltr_pipeline.scoring import WeightedSumScorer, default_weights
from ltr_pipeline.simulate import SimConfig, make_marketplace, simulate_day
from tests.helpers import TansuBroker

DAY = date(2026, 11, 20)


def bare_loop(settings: Settings) -> int:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "bench-bare",
                         "enable.partition.eof": True, "enable.auto.commit": False})
    consumer.list_topics(settings.kafka_topic, timeout=10)  # the same metadata step the source takes
    consumer.assign([TopicPartition(settings.kafka_topic, p, 0) for p in range(settings.kafka_partitions)])
    open_partitions, count, size = set(range(settings.kafka_partitions)), 0, 0
    while open_partitions:
        for msg in consumer.consume(num_messages=10_000, timeout=0.2):  # as the source does
            if (error := msg.error()) is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    open_partitions.discard(msg.partition())
                continue
            size += len(msg.value() or b"")
            count += 1
    consumer.close()
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    configure_logging(stream=None)
    names = list("ASTGQURC")
    with TansuBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp), kafka_bootstrap_servers=broker.bootstrap)
        ensure_topic(settings)
        config = SimConfig(cases_per_day=max(1, args.messages // 12))
        events = simulate_day(make_marketplace(config), DAY, config, WeightedSumScorer(default_weights(names), names),
                              None)[: args.messages]
        sink = KafkaSink(settings)
        sink.write(events)
        sink.close()
        n = len(events)
        start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
        figures: dict[str, list[float]] = {"bare consume loop": [], "archiver (Kafka -> archive)": [],
                                           "Kafka source (archive + validation)": []}
        for run in range(args.runs):
            order = list(figures) if run % 2 == 0 else list(reversed(figures))
            for name in order:
                started = time.perf_counter()
                if name.startswith("bare"):
                    got = bare_loop(settings)
                elif name.startswith("archiver"):
                    got = KafkaArchiver(settings).ingest(DAY, DAY)[0]["messages"]
                else:
                    got = KafkaEventSource(settings).read(start, start + timedelta(days=1),
                                                          DEFAULT_LABEL_GRADES.keys(), names).frame.height
                elapsed = time.perf_counter() - started
                assert got == n, (name, got, n)
                figures[name].append(n / elapsed)
        bare = figures["bare consume loop"]
        print(f"{n} messages, {args.runs} runs: median messages/s; ratio to the bare loop as the median of the "
              "per-run ratios (each run measures all three back to back)")
        for name, values in figures.items():
            ratio = statistics.median(v / b for v, b in zip(values, bare, strict=True))
            runs = ", ".join(f"{v:,.0f}" for v in values)
            print(f"  {name:38s} {statistics.median(values):>10,.0f}/s  ratio {ratio:.2f}   runs: {runs}")


if __name__ == "__main__":
    main()

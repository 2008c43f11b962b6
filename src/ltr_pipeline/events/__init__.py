"""Events in and out: the contract (schema.py), where the daily run reads them (sources) and where the service sends
them (sink.py). The source is chosen by LTR_SOURCE from one table, as the registry's store is by URI scheme."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ltr_pipeline.backends import backend_class

if TYPE_CHECKING:
    from ltr_pipeline.config import Settings
    from ltr_pipeline.events.base import EventSource

# LTR_SOURCE -> the class that reads it.
SOURCES = {
    "file": "ltr_pipeline.events.file:FileEventSource",
    "kafka": "ltr_pipeline.events.kafka:KafkaEventSource",
    "auto": "ltr_pipeline.events.base:FallbackSource",  # Kafka, the files when the broker is unreachable
}


def source_class(kind: str) -> type[EventSource]:
    cls: type[EventSource] = backend_class(SOURCES, kind, "event source (LTR_SOURCE)")
    return cls


def make_source(settings: Settings) -> EventSource:
    """The event source LTR_SOURCE names: file, kafka, or auto."""
    return source_class(settings.source).from_settings(settings)

"""Events as a columnar table (polars): the fast path from event files to the dataset.

A file that polars can parse whole (valid JSON on every line, no blank lines, no line over the size limit) is read
with `polars.read_ndjson` and checked against the contract column by column; the rows that break it are quarantined
with the same reasons, file and line as the line-by-line path in `schema.py`, which takes over for any other file.
Either way the result is one table with the columns of FRAME_COLUMNS and a `feature__<name>` column per feature.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl

from ltr_pipeline.events.schema import (
    BAD_POSITION,
    EARLIEST_TS,
    FUTURE_SLACK,
    KEY_TWICE,
    MAX_EVENT_BYTES,
    MAX_POSITION,
    MAX_TEXT_CHARS,
    TEAMS,
    TEXT_FIELDS,
    TS_TOO_EARLY,
    TS_TOO_LATE,
    Event,
    too_long,
)

FEATURE_PREFIX = "feature__"


def feature_column(name: str) -> str:
    return FEATURE_PREFIX + name


def frame_schema(feature_names: Sequence[str]) -> dict[str, Any]:
    return {
        "event_id": pl.String, "event_type": pl.String, "ts": pl.Datetime("us", "UTC"), "case_id": pl.String,
        "lawyer_id": pl.String, "position": pl.Int64, "group": pl.String, "model_version": pl.String,
        "algorithm": pl.String, "action": pl.String, "explored": pl.Boolean, "order_probability": pl.Float64,
        "team": pl.String, "challenger_version": pl.String, **{feature_column(n): pl.Float64 for n in feature_names},
    }


def empty_frame(feature_names: Sequence[str]) -> pl.DataFrame:
    return pl.DataFrame(schema=frame_schema(feature_names))


def events_to_frame(events: Iterable[Event], feature_names: Sequence[str]) -> pl.DataFrame:
    """Validated Event objects (the line-by-line path, tests) as a table."""
    rows = [{
        "event_id": e.event_id, "event_type": e.event_type, "ts": e.ts, "case_id": e.case_id,
        "lawyer_id": e.lawyer_id, "position": e.position, "group": e.group, "model_version": e.model_version,
        "algorithm": e.algorithm, "action": e.action, "explored": e.explored, "order_probability": e.order_probability,
        "team": e.team, "challenger_version": e.challenger_version,
        **{feature_column(n): (e.features or {}).get(n, float("nan")) for n in feature_names},
    } for e in events]
    frame = pl.DataFrame(rows, schema=frame_schema(feature_names)) if rows else empty_frame(feature_names)
    return frame.with_columns(pl.col(feature_column(n)).fill_nan(None) for n in feature_names)


def _raw_schema(feature_names: Sequence[str]) -> dict[str, Any]:
    return {
        "event_id": pl.String, "event_type": pl.String, "ts": pl.String, "case_id": pl.String,
        "lawyer_id": pl.String, "position": pl.Int64, "features": pl.Struct({n: pl.Float64 for n in feature_names}),
        "group": pl.String, "model_version": pl.String, "algorithm": pl.String, "action": pl.String,
        "explored": pl.Boolean, "order_probability": pl.Float64, "team": pl.String, "challenger_version": pl.String,
    }


def _text_rules(column: str, required: bool = True) -> list[tuple[pl.Expr, str]]:
    """A string field's rules, in schema._text's order: present (when required), not empty, not too long."""
    value = pl.col(column)
    return [*([(value.is_null(), f"missing field '{column}'")] if required else []),
            (value == "", f"field '{column}' must be a non-empty string"),
            (value.str.len_chars() > MAX_TEXT_CHARS, too_long(column))]


def _parsed_ts(stamps: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(`_ts`: each stamp parsed to UTC or null, `_zone`: whether it names its zone)."""
    # The writers here stamp "...Z"; other zones and formats take the general (slower) parser.
    ts = stamps.str.to_datetime(format="%Y-%m-%dT%H:%M:%S%.fZ", time_zone="UTC", strict=False)
    zone_ok = stamps.is_not_null()
    if ts.null_count() > stamps.null_count():
        ts = ts.fill_null(stamps.str.to_datetime(time_zone="UTC", strict=False))
        zone_ok = stamps.str.contains(r"(Z|z|[+-]\d{2}(:?\d{2})?)$")
    return ts.alias("_ts"), zone_ok.alias("_zone")


def _rules(actions: Collection[str], now: datetime) -> list[tuple[pl.Expr, str | pl.Expr]]:
    """The contract as (condition that breaks it, reason) over the raw columns plus `_ts` and `_zone`, in the order
    the line-by-line path (schema.py) checks it: the first broken rule is the reason."""
    rec = pl.col("event_type") == "recommendation"
    feedback = pl.col("event_type") == "feedback"
    unknown_action = pl.format(f"unknown feedback action '{{}}' (known: {', '.join(sorted(actions))})",
                               pl.col("action"))
    return [
        (~pl.col("event_type").is_in(["recommendation", "feedback"]) | pl.col("event_type").is_null(),
         "event_type must be one of recommendation, feedback"),
        *(rule for c in ("event_id", "case_id", "lawyer_id") for rule in _text_rules(c)),
        (pl.col("ts").is_null(), "field 'ts' must be an ISO-8601 string"),
        (~pl.col("_zone"), "field 'ts' has no time zone"),
        (pl.col("_ts").is_null(), pl.format("field 'ts' is not ISO-8601: '{}'", pl.col("ts").str.slice(0, 40))),
        (pl.col("_ts") < EARLIEST_TS, TS_TOO_EARLY),
        (pl.col("_ts") > now + FUTURE_SLACK, TS_TOO_LATE),
        *((feedback & condition, text) for condition, text in _text_rules("action")),
        (feedback & ~pl.col("action").is_in(list(actions)), unknown_action),
        (rec & ~pl.col("position").is_between(1, MAX_POSITION).fill_null(False), BAD_POSITION),
        (rec & pl.col("features").is_null(), "field 'features' must be an object of name -> number"),
        *((rec & condition, text) for c in ("group", "model_version", "algorithm")
          for condition, text in _text_rules(c, required=False)),
        (rec & ((pl.col("order_probability") <= 0) | (pl.col("order_probability") > 1)),
         "field 'order_probability' must be a number in (0, 1]"),
        (rec & ~pl.col("team").is_in(list(TEAMS)), f"field 'team' must be one of {', '.join(TEAMS)}"),
        *((rec & condition, text) for condition, text in _text_rules("challenger_version", required=False)),
    ]


# What only the line-by-line path reads faithfully, so the fast path declines the file. One Rust regex over each line
# (linear time, about 2 ms per MB): a non-string where the contract wants a string (polars would turn 5 into "5"); a
# position that is not a plain integer; a probability, flag or feature value of the wrong type; a contract key twice
# in a line (polars keeps the first, orjson the last). And, checked on the parsed column, a `ts` not in the writers'
# form (the two date parsers accept different variants).
_SCREEN = "|".join([
    rf'"(?:{"|".join(TEXT_FIELDS)})"\s*:\s*[^"n\s]',
    r'"position"\s*:\s*(?:[^-\dn\s]|-?\d{19}|-?\d+[^\d\s,}])',
    r'"order_probability"\s*:\s*[^-\dn\s]',
    r'"explored"\s*:\s*[^tfn\s]',
    r'"features"\s*:\s*(?:[^{n\s]|\{[^}]*:\s*[^-\dn\s])',
    KEY_TWICE,
])
_TS_FORM = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})$"


def read_fast(
    data: bytes, feature_names: Sequence[str], actions: Collection[str], now: datetime | None = None
) -> tuple[pl.DataFrame, list[tuple[str, int, bytes]]] | None:
    """(valid rows, refused lines as (reason, line number, raw bytes)) for a whole file, or None when only the
    line-by-line path can read it faithfully. `now`: the moment `ts` is checked against (schema.ts_problem)."""
    if not data or not data.endswith(b"\n") or data.startswith(b"\n"):
        return None
    try:
        # Each line as one string (a separator no JSON text holds): the line lengths, and the raw refused lines.
        # Blank lines are skipped here, so any makes the count differ from the newlines: the line path takes over.
        lines = pl.read_csv(io.BytesIO(data), has_header=False, separator="\x1f", quote_char=None,
                            schema={"line": pl.String}).get_column("line")
        longest: Any = lines.str.len_bytes().max() or 0
        if lines.len() != data.count(b"\n") or longest > MAX_EVENT_BYTES or lines.str.contains(_SCREEN).any():
            return None
        raw = pl.read_ndjson(io.BytesIO(data), schema=_raw_schema(feature_names))
    except (pl.exceptions.PolarsError, ValueError):
        return None
    if raw.height != lines.len() or not raw.get_column("ts").drop_nulls().str.contains(_TS_FORM).all():
        return None
    raw = raw.with_columns(*_parsed_ts(raw.get_column("ts")))
    rules = _rules(actions, now or datetime.now(UTC))
    reason: Any = pl.lit(None, dtype=pl.String)
    for condition, text in reversed(rules):
        reason = pl.when(condition).then(pl.lit(text) if isinstance(text, str) else text).otherwise(reason)
    # One cheap pass flags the broken rows; the reasons are spelled out for those rows only.
    checked = raw.with_columns(pl.any_horizontal(c.fill_null(False) for c, _ in rules).alias("_bad"),
                               pl.int_range(1, raw.height + 1).alias("line"))
    refused = [(text, line, (lines[line - 1] or "").encode())
               for text, line in checked.filter(pl.col("_bad")).select(reason, "line").iter_rows()]
    rec, feedback = pl.col("event_type") == "recommendation", pl.col("event_type") == "feedback"
    valid = checked.filter(~pl.col("_bad")).select(
        "event_id", "event_type", pl.col("_ts").alias("ts"), "case_id", "lawyer_id",
        pl.when(rec).then(pl.col("position")).alias("position"),
        *(pl.when(rec).then(pl.col(c)).alias(c) for c in ("group", "model_version", "algorithm")),
        pl.when(feedback).then(pl.col("action")).alias("action"),
        *(pl.when(rec).then(pl.col(c)).alias(c)
          for c in ("explored", "order_probability", "team", "challenger_version")),
        *(pl.when(rec).then(pl.col("features").struct.field(n).fill_nan(None)).alias(feature_column(n))
          for n in feature_names),
    )
    return valid.cast(frame_schema(feature_names)), refused  # type: ignore[arg-type]


"""The event contract: one JSON object per Kafka message or per line of a .jsonl file.

A `recommendation` says a lawyer was shown for a case at a position with its features; a `feedback` says what the
client did with that recommendation. Anything that breaks the contract raises `InvalidEvent` with a reason, and the
caller quarantines it (never fatal).

The bounds here are the contract's, shared by the service (`/ltr/rank`, `/ltr/feedback`) and both file parse paths
(this module line by line, `frame.py` column by column): every string at most MAX_TEXT_CHARS characters, and a `ts`
no earlier than EARLIEST_TS and no later than FUTURE_SLACK after the moment it is checked (`ts_problem`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

MAX_EVENT_BYTES = 64 * 1024
MAX_TEXT_CHARS = 256  # every string field: ids, versions, group, action, team
MAX_POSITION = 1_000_000
BAD_POSITION = f"field 'position' must be an integer from 1 to {MAX_POSITION}"
TEXT_FIELDS = ("event_id", "event_type", "ts", "case_id", "lawyer_id", "group", "model_version", "algorithm",
               "action", "team", "challenger_version")
FIELDS = (*TEXT_FIELDS, "position", "features", "explored", "order_probability")  # every field the contract reads
# A contract key given twice in one line (readers disagree on which counts: polars the first, orjson the last); a
# pattern both parse paths use (frame.py's screen, in Rust's regex syntax too), which may also match a nested key.
KEY_TWICE = "|".join(rf'"{name}"\s*:.*"{name}"\s*:' for name in FIELDS)
_KEY_TWICE = re.compile(KEY_TWICE.encode())
EARLIEST_TS = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)  # clocks disagree; an event stamped later than this ahead is refused
EVENT_TYPES = ("recommendation", "feedback")


class InvalidEvent(ValueError):
    """An event that breaks the contract; the message is the quarantine reason."""


@dataclass(slots=True, frozen=True)
class Event:
    event_id: str
    event_type: str
    ts: datetime
    case_id: str
    lawyer_id: str
    position: int | None = None
    features: Mapping[str, float] | None = None
    group: str | None = None
    model_version: str | None = None
    algorithm: str | None = None
    action: str | None = None
    explored: bool | None = None  # shown with exploration's randomisation (counterfactual/explore.py)
    order_probability: float | None = None  # the probability the ranking shown had of being shown
    team: str | None = None  # interleaved: the model that put this candidate here, "live" or "challenger"
    challenger_version: str | None = None  # interleaved: the challenger's version (model_version is the live one)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "ts": format_ts(self.ts),
            "case_id": self.case_id,
            "lawyer_id": self.lawyer_id,
        }
        if self.event_type == "recommendation":
            out["position"] = self.position
            out["features"] = {k: (None if math.isnan(v) else v) for k, v in (self.features or {}).items()}
            for key in ("group", "model_version", "algorithm", "explored", "order_probability", "team",
                        "challenger_version"):
                if getattr(self, key) is not None:
                    out[key] = getattr(self, key)
        else:
            out["action"] = self.action
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def format_ts(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _text(obj: Mapping[str, Any], key: str, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise InvalidEvent(f"missing field '{key}'")
        return None
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"field '{key}' must be a non-empty string")
    if len(value) > MAX_TEXT_CHARS:
        raise InvalidEvent(too_long(key))
    return value


def too_long(key: str) -> str:
    return f"field '{key}' is longer than {MAX_TEXT_CHARS} characters"


TS_TOO_EARLY = f"field 'ts' is before {EARLIEST_TS:%Y-%m-%d}"
TS_TOO_LATE = f"field 'ts' is more than {FUTURE_SLACK.days} day(s) in the future"


def ts_problem(ts: datetime, now: datetime, earliest: datetime = EARLIEST_TS) -> str | None:
    """Why `ts` is refused when checked at `now`, or None: the one rule for the service and the pipeline. The
    service passes a later `earliest` (feedback may not be backdated into past days)."""
    if ts < earliest:
        return TS_TOO_EARLY if earliest == EARLIEST_TS else f"field 'ts' is before {earliest.isoformat()}"
    if ts > now + FUTURE_SLACK:
        return TS_TOO_LATE
    return None


def parse_ts(value: object, now: datetime | None = None, earliest: datetime = EARLIEST_TS) -> datetime:
    if not isinstance(value, str):
        raise InvalidEvent("field 'ts' must be an ISO-8601 string")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent(f"field 'ts' is not ISO-8601: '{value[:40]}'") from None
    if ts.tzinfo is None:
        raise InvalidEvent("field 'ts' has no time zone")
    try:
        ts = ts.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00-05:00 lies past the last representable moment
        raise InvalidEvent(TS_TOO_LATE) from None
    problem = ts_problem(ts, now or datetime.now(UTC), earliest)
    if problem:
        raise InvalidEvent(problem)
    return ts


def validate_event(obj: object, actions: Collection[str] | None = None, now: datetime | None = None,
                   earliest: datetime = EARLIEST_TS) -> Event:
    """Check one decoded JSON value against the contract. `actions` limits feedback actions when given; `now` and
    `earliest` bound `ts` (`ts_problem`)."""
    if not isinstance(obj, dict):
        raise InvalidEvent("not a JSON object")
    event_type = obj.get("event_type")
    if event_type not in EVENT_TYPES:
        raise InvalidEvent(f"event_type must be one of {', '.join(EVENT_TYPES)}")
    event_id = _text(obj, "event_id")
    case_id = _text(obj, "case_id")
    lawyer_id = _text(obj, "lawyer_id")
    ts = parse_ts(obj.get("ts"), now, earliest)
    assert event_id and case_id and lawyer_id
    if event_type == "feedback":
        action = _text(obj, "action")
        if actions is not None and action not in actions:
            raise InvalidEvent(f"unknown feedback action '{action}' (known: {', '.join(sorted(actions))})")
        return Event(event_id, "feedback", ts, case_id, lawyer_id, action=action)

    position = obj.get("position")
    if not isinstance(position, int) or isinstance(position, bool) or not 1 <= position <= MAX_POSITION:
        raise InvalidEvent(BAD_POSITION)
    raw_features = obj.get("features")
    if not isinstance(raw_features, dict):
        raise InvalidEvent("field 'features' must be an object of name -> number")
    features: dict[str, float] = {}
    for name, value in raw_features.items():
        if value is None:
            features[name] = math.nan  # missing: LightGBM handles NaN, the legacy scorer reads it as 0
        elif isinstance(value, int | float) and not isinstance(value, bool):
            features[name] = float(value)
        else:
            raise InvalidEvent(f"feature '{name}' is not a number")
    return Event(
        event_id, "recommendation", ts, case_id, lawyer_id,
        position=position,
        features=features,
        group=_text(obj, "group", required=False),
        model_version=_text(obj, "model_version", required=False),
        algorithm=_text(obj, "algorithm", required=False),
        explored=_flag(obj, "explored"),
        order_probability=_probability(obj, "order_probability"),
        team=_team(obj),
        challenger_version=_text(obj, "challenger_version", required=False),
    )


TEAMS = ("live", "challenger", "shared")  # interleaving: which model put a candidate where it was shown ("shared":
# both rankings begin with it, in that place)


def _team(obj: Mapping[str, Any]) -> str | None:
    value = obj.get("team")
    if value is not None and value not in TEAMS:
        raise InvalidEvent(f"field 'team' must be one of {', '.join(TEAMS)}")
    return value


def _flag(obj: Mapping[str, Any], key: str) -> bool | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidEvent(f"field '{key}' must be true or false")
    return value


def _probability(obj: Mapping[str, Any], key: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= 1:
        raise InvalidEvent(f"field '{key}' must be a number in (0, 1]")
    return float(value)


def parse_event(raw: bytes | str, actions: Collection[str] | None = None, now: datetime | None = None) -> Event:
    """Decode and validate one message or line (`now`: the moment `ts` is checked against)."""
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event larger than {MAX_EVENT_BYTES} bytes")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not valid JSON: {exc}") from None
    if _KEY_TWICE.search(raw.encode() if isinstance(raw, str) else raw):  # cheap; rarely true
        keys = _top_level_keys(raw)
        twice = sorted({k for k in keys if keys.count(k) > 1 and k in FIELDS})
        if twice:
            raise InvalidEvent(f"key '{twice[0]}' appears twice (readers disagree on which one counts)")
    return validate_event(obj, actions, now)


def _top_level_keys(raw: bytes | str) -> list[str]:
    """The keys of the outermost object, repeats included (the json module hands each object's pairs to the hook,
    the outermost last)."""
    seen: list[list[str]] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen.append([k for k, _ in pairs])
        return {}

    json.loads(raw, object_pairs_hook=hook)
    return seen[-1] if seen else []

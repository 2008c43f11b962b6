"""The OpenAPI document's request and response schemas, declared once for the routes that use them.

The ranking endpoint is answered by a pure ASGI middleware and the feedback endpoint parses its own body (both check
the event contract themselves, with its reasons), so FastAPI would see neither body: they are declared here as JSON
Schema, with the contract's bounds (`events.schema`), and every status code each route can answer. Schemathesis runs
against the live service in CI and holds the service to this document.
"""

from __future__ import annotations

from typing import Any

from ltr_pipeline.events.schema import MAX_TEXT_CHARS
from ltr_pipeline.service.rank import MAX_CANDIDATES

TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS}
ERROR = {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    reasons = {400: "Content-Length is not a number", 401: "missing or wrong bearer token",
               403: "admin endpoints are disabled (no LTR_ADMIN_TOKEN)", 404: "not found",
               413: "body larger than LTR_MAX_BODY_BYTES",
               422: "not JSON, or breaks the event contract (the reason is in `detail`)",
               500: "the reload failed", 503: "no event sink is configured, or (readiness) the registry cannot be read"}
    return {code: _json(ERROR, reasons[code]) for code in codes}


def rank_body(feature_names: list[str]) -> dict[str, Any]:
    """The ranking request body; the features are the configured ones (LTR_FEATURES), so the app fills it in."""
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["candidates"],
        "properties": {
            "case_id": {**TEXT, "type": ["string", "null"], "description": "default (or null): generated"},
            "candidates": {
                "type": "array", "minItems": 1, "maxItems": MAX_CANDIDATES,
                "items": {
                    "type": "object", "required": ["lawyer_id", "features"],
                    "properties": {
                        "lawyer_id": TEXT,
                        "features": {"type": "object",
                                     "properties": {n: {"type": ["number", "null"]} for n in feature_names},
                                     "description": "missing or null: unknown; other names are ignored"},
                        "group": {"type": ["string", "null"], "maxLength": MAX_TEXT_CHARS},
                    },
                },
            },
        },
    }}}}


RANK_ANSWER = {
    "type": "object",
    "required": ["case_id", "model_version", "algorithm", "variant", "fallback_reason", "explored",
                 "order_probability", "ranking"],
    "properties": {
        "case_id": {"type": "string"}, "model_version": {"type": ["string", "null"]},
        "algorithm": {"enum": ["ltr", "legacy"]}, "variant": {"enum": ["live", "challenger", "interleaved"]},
        "fallback_reason": {"type": ["string", "null"]}, "explored": {"type": "boolean"},
        "order_probability": {"type": "number"},
        "ranking": {"type": "array", "items": {
            "type": "object", "required": ["lawyer_id", "score", "rank"],
            "properties": {"lawyer_id": {"type": "string"}, "score": {"type": ["number", "null"]},
                           "rank": {"type": "integer", "minimum": 1}}}},
    },
}


def feedback_body(actions: list[str]) -> dict[str, Any]:
    """The feedback request body; the actions are the configured ones (LTR_LABEL_GRADES), so the app fills it in."""
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["case_id", "lawyer_id", "action"],
        "properties": {
            "case_id": TEXT, "lawyer_id": TEXT, "action": {"enum": actions},
            "event_id": {**TEXT, "description": "default: generated"},
            "ts": {"type": "string", "format": "date-time",
                   "description": "default: now; at most a day before or after the service's clock"},
        },
    }}}}


RANK: dict[str, Any] = {
    "summary": "Rank candidates for a case",
    "responses": {200: _json(RANK_ANSWER, "the ranking, best first"), **_errors(400, 413, 422)},
}
FEEDBACK: dict[str, Any] = {
    "status_code": 202,
    "responses": {202: _json({"type": "object", "required": ["event_id", "ts"], "properties": {
        "event_id": {"type": "string"}, "ts": {"type": "string"}}}, "the feedback event, on its way to the sink"),
        **_errors(400, 413, 422, 503)},
}
OBJECT = {"type": "object"}


def html(description: str, *errors: int) -> dict[str, Any]:
    return {"responses": {200: {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}},
                          **_errors(*errors)}}


def obj(description: str, *errors: int) -> dict[str, Any]:
    return {"responses": {200: _json(OBJECT, description), **_errors(*errors)}}


METRICS: dict[str, Any] = {"responses": {200: {"description": "Prometheus text exposition",
                               "content": {"text/plain": {"schema": {"type": "string"}}}}}}

"""HTTP routes. `/ltr/rank` reads and writes JSON with orjson and builds one numpy array per request."""

from __future__ import annotations

import asyncio
import hmac
import random
import re
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import structlog
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ltr_pipeline.config import Settings
from ltr_pipeline.events.schema import Event, InvalidEvent, validate_event
from ltr_pipeline.events.sink import EventSink
from ltr_pipeline.fairness import ExposureBalancer
from ltr_pipeline.service.metrics import ServiceMetrics
from ltr_pipeline.service.reloader import LiveModel, Reloader
from ltr_pipeline.service.shadow import ShadowScorer, ab_variant

log = structlog.get_logger("ltr_pipeline.service")
MAX_CANDIDATES = 1000
RUN_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class BadRequest(ValueError):
    pass


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def parse_rank_request(
    raw: bytes, feature_names: Sequence[str]
) -> tuple[Any, list[str], list[str | None], np.ndarray]:
    """(case_id, lawyer_ids, groups, features matrix); missing features are NaN."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("candidates"), list):
        raise BadRequest("body must be an object with a 'candidates' list")
    candidates = body["candidates"]
    if not 0 < len(candidates) <= MAX_CANDIDATES:
        raise BadRequest(f"'candidates' must hold 1 to {MAX_CANDIDATES} items")
    matrix = np.full((len(candidates), len(feature_names)), np.nan)
    ids: list[str] = []
    groups: list[str | None] = []
    for i, cand in enumerate(candidates):
        if not isinstance(cand, dict) or not isinstance(cand.get("lawyer_id"), str):
            raise BadRequest(f"candidate {i} needs a string 'lawyer_id'")
        feats = cand.get("features")
        if not isinstance(feats, dict):
            raise BadRequest(f"candidate {i} needs a 'features' object")
        for j, name in enumerate(feature_names):
            value = feats.get(name)
            if value is None:
                continue
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise BadRequest(f"candidate {i}: feature {name!r} is not a number")
            matrix[i, j] = value
        ids.append(cand["lawyer_id"])
        group = cand.get("group")
        groups.append(group if isinstance(group, str) and group else None)
    case_id = body.get("case_id")
    if case_id is not None and (not isinstance(case_id, str) or not case_id):
        raise BadRequest("'case_id' must be a non-empty string")
    return case_id, ids, groups, matrix


def recommendation_events(
    case_id: str, ids: list[str], groups: list[str | None], matrix: np.ndarray, order: list[int],
    feature_names: Sequence[str], version: str | None, algorithm: str, ts: datetime,
) -> list[Event]:
    """One recommendation event per ranked candidate, as the pipeline reads them back."""
    events = []
    for position, i in enumerate(order, start=1):
        row = matrix[i].tolist()
        events.append(Event(
            f"r-{uuid.uuid4().hex}", "recommendation", ts, case_id, ids[i], position=position,
            features=dict(zip(feature_names, row, strict=True)), group=groups[i], model_version=version,
            algorithm=algorithm,
        ))
    return events


def build_router(settings: Settings, reloader: Reloader, metrics: ServiceMetrics, sink: EventSink,
                 shadow: ShadowScorer) -> APIRouter:
    router = APIRouter()
    names = settings.feature_names
    balancer = ExposureBalancer(settings.fair_rerank_strength, decay=0.999)  # strength 0: the model's order
    started_at = time.time()

    @router.post("/ltr/rank")
    async def rank(request: Request) -> Response:
        started = time.perf_counter()
        try:
            case_id, ids, groups, matrix = parse_rank_request(await request.body(), names)
        except BadRequest as exc:
            metrics.bad_requests.inc()
            return json_response({"detail": str(exc)}, 422)
        case_id = case_id or f"c-{uuid.uuid4().hex}"
        live, challenger = reloader.live, reloader.challenger  # one read each: a request uses whole models
        model, variant = live, "live"
        if challenger is not None and ab_variant(case_id, settings.ab_fraction) == "challenger":
            model, variant = challenger, "challenger"
        reason = None
        scores = None
        if model.scorer is None:
            reason = "no_model"
        else:
            try:
                scores = model.scorer.score(matrix)
                if not np.all(np.isfinite(scores)):
                    scores, reason = None, "non_finite_scores"
            except Exception as exc:
                log.error("rank.scoring_failed", error=str(exc), version=model.version)
                reason = "scoring_error"
        if scores is None:
            scores = model.legacy.score(matrix)
            metrics.fallbacks.labels(reason=reason).inc()
        elif challenger is not None and variant == "live" and (
            request.headers.get("x-shadow-ltr") == "1" or random.random() < settings.shadow_fraction
        ):
            shadow.submit(case_id, challenger, live.version, matrix, scores)
        algorithm = "legacy" if reason else "ltr"
        order = balancer.order(scores, groups).tolist()
        ranking = [{"lawyer_id": ids[i], "score": float(scores[i]), "rank": r} for r, i in enumerate(order, start=1)]
        if sink.name != "none":
            now, version = datetime.now(UTC), model.version
            sink.submit(lambda: recommendation_events(case_id, ids, groups, matrix, order, names, version,
                                                      algorithm, now))
        out = {
            "case_id": case_id, "model_version": model.version, "algorithm": algorithm, "variant": variant,
            "fallback_reason": reason, "ranking": ranking,
        }
        metrics.predictions.labels(algorithm=algorithm, variant=variant).inc()
        metrics.prediction_duration.observe(time.perf_counter() - started)
        return json_response(out)

    @router.post("/ltr/feedback")
    async def feedback(request: Request) -> Response:
        """Record what a client did with a recommendation: one feedback event to the event sink."""
        if sink.name == "none":
            return json_response({"detail": "no event sink: set LTR_EVENT_SINK to kafka or file"}, 503)
        try:
            body = orjson.loads(await request.body())
            if not isinstance(body, dict):
                raise InvalidEvent("body must be a JSON object")
            event = validate_event({
                "event_id": f"f-{uuid.uuid4().hex}", "ts": datetime.now(UTC).isoformat(), **body,
                "event_type": "feedback",
            }, settings.label_grades.keys())
        except (orjson.JSONDecodeError, InvalidEvent) as exc:
            metrics.bad_requests.inc()
            return json_response({"detail": str(exc)}, 422)
        sink.submit(lambda: [event])
        return json_response({"event_id": event.event_id, "ts": event.to_dict()["ts"]}, 202)

    def describe(model: LiveModel | None) -> dict[str, Any] | None:
        return None if model is None else {
            "version": model.version, "scorer": (model.scorer or model.legacy).backend,
        }

    @router.get("/ltr/health")
    async def health() -> Response:
        live = reloader.live
        return json_response({
            "status": "ok",
            "model_version": live.version,
            "algorithm": "ltr" if live.scorer else "legacy",
            "scorer": (live.scorer or live.legacy).backend,
            "challenger": describe(reloader.challenger),
            "shadow_fraction": settings.shadow_fraction,
            "ab_fraction": settings.ab_fraction,
            "model_loaded_at": live.loaded_at.isoformat() if live.scorer else None,
            "last_reload": reloader.last_reload,
            "poll_seconds": settings.poll_seconds,
            "service_metrics": metrics.snapshot(),
            "uptime_seconds": round(time.time() - started_at, 3),
        })

    @router.get("/api/debug/reload_weights")
    async def last_reload() -> Response:
        live = reloader.live
        return json_response({"live_version": live.version, "weights": getattr(live.legacy, "weights", None),
                              "last_reload": reloader.last_reload})

    @router.post("/api/debug/reload_weights")
    async def reload_now(request: Request) -> Response:
        token = settings.admin_token.get_secret_value() if settings.admin_token else None
        if not token:
            return json_response({"detail": "admin endpoints are disabled: set LTR_ADMIN_TOKEN"}, 403)
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return json_response({"detail": "missing or wrong bearer token"}, 401)
        record = await asyncio.to_thread(reloader.check, True)
        return json_response(record, 200 if record["outcome"] != "failed" else 500)

    @router.get("/ltr/dashboard")
    async def dashboard() -> Response:
        """The history page over every run, plus this service's live state."""
        from ltr_pipeline.report import history_page, load_reports, readable_audit, thresholds_of

        live = reloader.live
        state = {"model_version": live.version or "legacy (no model)",
                 "loaded_at": live.loaded_at.isoformat() if live.scorer else None,
                 "last_reload": f"{reloader.last_reload['outcome']} at {reloader.last_reload['at']}",
                 **metrics.snapshot()}
        html = await asyncio.to_thread(
            lambda: history_page(load_reports(settings.runs_path), readable_audit(reloader.registry), state,
                                 thresholds_of(settings)))
        return Response(html, media_type="text/html")

    @router.get("/ltr/runs/{run_date}/report.html")
    async def run_report(run_date: str) -> Response:
        if not RUN_DATE.match(run_date):
            return json_response({"detail": "not a run date"}, 404)
        path = settings.runs_path / run_date / "report.html"
        if not path.is_file():
            return json_response({"detail": f"no report for {run_date}"}, 404)
        return Response(path.read_bytes(), media_type="text/html")

    @router.get("/metrics")
    async def prometheus() -> Response:
        metrics.spooled.set(sink.spooled())
        return Response(generate_latest(metrics.exposition()), media_type=CONTENT_TYPE_LATEST)

    return router

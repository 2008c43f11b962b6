"""HTTP routes. `/ltr/rank` reads and writes JSON with orjson and builds one numpy array per request."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import structlog
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ltr_pipeline.config import Settings
from ltr_pipeline.metrics import rank_order
from ltr_pipeline.service.metrics import ServiceMetrics
from ltr_pipeline.service.reloader import Reloader

log = structlog.get_logger("ltr_pipeline.service")
MAX_CANDIDATES = 1000


class BadRequest(ValueError):
    pass


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def parse_rank_request(raw: bytes, feature_names: Sequence[str]) -> tuple[Any, list[str], np.ndarray]:
    """(case_id, lawyer_ids, features matrix); missing features are NaN."""
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
    return body.get("case_id"), ids, matrix


def build_router(settings: Settings, reloader: Reloader, metrics: ServiceMetrics) -> APIRouter:
    router = APIRouter()
    names = settings.feature_names
    started_at = time.time()

    @router.post("/ltr/rank")
    async def rank(request: Request) -> Response:
        started = time.perf_counter()
        try:
            case_id, ids, matrix = parse_rank_request(await request.body(), names)
        except BadRequest as exc:
            metrics.bad_requests.inc()
            return json_response({"detail": str(exc)}, 422)
        live = reloader.live  # one read: this request uses one whole model
        reason = None
        scores = None
        if live.scorer is None:
            reason = "no_model"
        else:
            try:
                scores = live.scorer.score(matrix)
                if not np.all(np.isfinite(scores)):
                    scores, reason = None, "non_finite_scores"
            except Exception as exc:
                log.error("rank.scoring_failed", error=str(exc), version=live.version)
                reason = "scoring_error"
        if scores is None:
            scores = live.legacy.score(matrix)
            metrics.fallbacks.labels(reason=reason).inc()
        algorithm = "legacy" if reason else "ltr"
        order = rank_order(scores)
        ranking = [
            {"lawyer_id": ids[i], "score": float(scores[i]), "rank": r}
            for r, i in enumerate(order.tolist(), start=1)
        ]
        out = {
            "case_id": case_id, "model_version": live.version, "algorithm": algorithm,
            "fallback_reason": reason, "ranking": ranking,
        }
        metrics.predictions.labels(algorithm=algorithm).inc()
        metrics.prediction_duration.observe(time.perf_counter() - started)
        return json_response(out)

    @router.get("/ltr/health")
    async def health() -> Response:
        live = reloader.live
        return json_response({
            "status": "ok",
            "model_version": live.version,
            "algorithm": "ltr" if live.scorer else "legacy",
            "model_loaded_at": live.loaded_at.isoformat() if live.scorer else None,
            "last_reload": reloader.last_reload,
            "poll_seconds": settings.poll_seconds,
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

    @router.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router

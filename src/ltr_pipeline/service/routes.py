"""HTTP routes: health, feedback, admin, dashboard, reports and metrics (the ranking endpoint is in `rank.py`)."""

from __future__ import annotations

import asyncio
import hmac
import os
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ltr_pipeline.config import Settings
from ltr_pipeline.events.schema import InvalidEvent, validate_event
from ltr_pipeline.events.sink import EventSink
from ltr_pipeline.service.metrics import ServiceMetrics
from ltr_pipeline.service.reloader import LiveModel, Reloader

RUN_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def build_router(settings: Settings, reloader: Reloader, metrics: ServiceMetrics, sink: EventSink) -> APIRouter:
    """Every route but `POST /ltr/rank`, which `service.rank.RankEndpoint` answers before FastAPI sees it."""
    router = APIRouter()
    started_at = time.time()

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
            "version": model.version, "scorer": model.backend,
        }

    @router.get("/ltr/health")
    async def health() -> Response:
        live = reloader.live
        return json_response({
            "status": "ok",
            "model_version": live.version,
            "algorithm": "ltr" if live.scorer else "legacy",
            "scorer": live.backend,
            "challenger": describe(reloader.challenger),
            "shadow_fraction": settings.shadow_fraction,
            "ab_fraction": settings.ab_fraction,
            "model_loaded_at": live.loaded_at.isoformat() if live.scorer else None,
            "waiting_for_compile": reloader.waiting_version,
            "last_reload": reloader.last_reload,
            "poll_seconds": settings.poll_seconds,
            "service_metrics": metrics.snapshot(),
            "uptime_seconds": round(time.time() - started_at, 3),
            "worker_pid": os.getpid(),
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

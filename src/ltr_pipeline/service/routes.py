"""HTTP routes: health, feedback, admin, dashboard, reports and metrics (the ranking endpoint is in `rank.py`).

Module-level routers with typed dependencies (as in FastAPI's own project template): each route asks for the parts
it uses, which `create_app` keeps on `app.state`.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import structlog
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ltr_pipeline.config import Settings
from ltr_pipeline.events.schema import FUTURE_SLACK, InvalidEvent, validate_event
from ltr_pipeline.events.sink import EventSink
from ltr_pipeline.service.metrics import ServiceMetrics
from ltr_pipeline.service.openapi import FEEDBACK, METRICS, RANK, html, obj
from ltr_pipeline.service.reloader import LiveModel, Reloader

log = structlog.get_logger("ltr_pipeline.service")
RUN_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _reloader(request: Request) -> Reloader:
    return request.app.state.reloader


def _metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


def _sink(request: Request) -> EventSink:
    return request.app.state.sink


SettingsDep = Annotated[Settings, Depends(_settings)]
ReloaderDep = Annotated[Reloader, Depends(_reloader)]
MetricsDep = Annotated[ServiceMetrics, Depends(_metrics)]
SinkDep = Annotated[EventSink, Depends(_sink)]


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


ltr = APIRouter(prefix="/ltr")
admin = APIRouter(prefix="/api/debug")
monitoring = APIRouter()


@ltr.post("/rank", **RANK)
async def rank(request: Request) -> Response:
    """Rank candidates for a case. Served by `rank.RankEndpoint` in front of FastAPI (the hot path); this route
    documents it, and answers the same way should the request ever reach it."""
    reply = request.app.state.ranker.rank(await request.body())
    request.app.state.ranker.record(reply)
    return Response(reply.body, status_code=reply.status, media_type="application/json")


@ltr.post("/feedback", **FEEDBACK)
async def feedback(request: Request, settings: SettingsDep, metrics: MetricsDep, sink: SinkDep) -> Response:
    """Record what a client did with a recommendation: one feedback event to the event sink."""
    if sink.name == "none":
        return json_response({"detail": "no event sink: set LTR_EVENT_SINK to kafka or file"}, 503)
    try:
        body = orjson.loads(await request.body())
        if not isinstance(body, dict):
            raise InvalidEvent("body must be a JSON object")
        now = datetime.now(UTC)
        event = validate_event({
            "event_id": f"f-{uuid.uuid4().hex}", "ts": now.isoformat(), **body, "event_type": "feedback",
        }, settings.label_grades.keys(), now=now, earliest=now - FUTURE_SLACK)  # no backdating into past days
    except (orjson.JSONDecodeError, InvalidEvent) as exc:
        metrics.bad_requests.inc()
        log.warning("request.refused", path="/ltr/feedback", reason=str(exc)[:200])
        return json_response({"detail": str(exc)}, 422)
    sink.submit(lambda: [event])
    team = request.app.state.ranker.teams.team(event.case_id, event.lawyer_id)
    if team is not None:  # feedback on an interleaved ranking: credit the team that showed the candidate
        metrics.interleaving_credit.labels(team=team).inc(settings.label_grades.get(event.action or "", 0))
    return json_response({"event_id": event.event_id, "ts": event.to_dict()["ts"]}, 202)


def _describe(model: LiveModel | None) -> dict[str, Any] | None:
    return None if model is None else {"version": model.version, "scorer": model.backend}


@ltr.get("/health", **obj("the service's state: live model, challenger, reloads, counters"))
async def health(request: Request, settings: SettingsDep, reloader: ReloaderDep, metrics: MetricsDep) -> Response:
    live = reloader.live
    return json_response({
        "status": "ok",
        "model_version": live.version,
        "algorithm": "ltr" if live.scorer else "legacy",
        "scorer": live.backend,
        "challenger": _describe(reloader.challenger),
        "shadow_fraction": settings.shadow_fraction,
        "ab_fraction": settings.ab_fraction,
        "model_loaded_at": live.loaded_at.isoformat() if live.scorer else None,
        "waiting_for_compile": reloader.waiting_version,
        "last_reload": reloader.last_reload,
        "poll_seconds": settings.poll_seconds,
        "service_metrics": metrics.snapshot(),
        "uptime_seconds": round(time.time() - request.app.state.started_at, 3),
        "worker_pid": os.getpid(),
    })


READY = ("loaded", "unchanged", "absent", "deferred")  # the registry answered; a model or the legacy sum serves


@ltr.get("/ready", **obj("ready: the registry answered the last check, and a model or the legacy sum serves", 503))
async def ready(reloader: ReloaderDep) -> Response:
    """Readiness, apart from liveness (`/ltr/health`): 503 while the registry cannot be read."""
    check, live = reloader.last_check, reloader.live
    ok = check["outcome"] in READY
    return json_response({"ready": ok, "model_version": live.version, "algorithm": "ltr" if live.scorer else "legacy",
                          "last_check": check}, 200 if ok else 503)


@ltr.get("/dashboard", **html("the history page over every run, with this service's live state"))
async def dashboard(request: Request, settings: SettingsDep, reloader: ReloaderDep, metrics: MetricsDep) -> Response:
    """The history page over every run, plus this service's live state; rendered at most once every
    LTR_DASHBOARD_CACHE_SECONDS."""
    from ltr_pipeline.report import history

    def render() -> str:
        live = reloader.live
        state = {"model_version": live.version or "legacy (no model)",
                 "loaded_at": live.loaded_at.isoformat() if live.scorer else None,
                 "last_reload": f"{reloader.last_reload['outcome']} at {reloader.last_reload['at']}",
                 **metrics.snapshot()}
        return history(settings, reloader.registry, state)[0]

    return Response(await request.app.state.dashboard.get(render), media_type="text/html")


@ltr.get("/runs/{run_date}/report.html", **html("one run's report page", 404))
async def run_report(run_date: str, settings: SettingsDep) -> Response:
    if not RUN_DATE.match(run_date):
        return json_response({"detail": "not a run date"}, 404)
    path = settings.runs_path / run_date / "report.html"
    if not path.is_file():
        return json_response({"detail": f"no report for {run_date}"}, 404)
    return Response(path.read_bytes(), media_type="text/html")


@admin.api_route("/reload_weights", methods=["GET", "POST"],
                  **obj("GET: the live version and its weights; POST (token): reload now", 401, 403, 500))
async def reload_weights(request: Request, settings: SettingsDep, reloader: ReloaderDep) -> Response:
    """One route for both methods, so that a 405 lists both in its Allow header."""
    if request.method == "GET":
        live = reloader.live
        return json_response({"live_version": live.version, "weights": getattr(live.legacy, "weights", None),
                              "last_reload": reloader.last_reload})
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    if not token:
        return json_response({"detail": "admin endpoints are disabled: set LTR_ADMIN_TOKEN"}, 403)
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return json_response({"detail": "missing or wrong bearer token"}, 401)
    record = await asyncio.to_thread(reloader.check, True)
    return json_response(record, 200 if record["outcome"] != "failed" else 500)


@monitoring.get("/metrics", **METRICS)
async def prometheus(metrics: MetricsDep, sink: SinkDep) -> Response:
    metrics.spooled.set(sink.spooled())
    return Response(generate_latest(metrics.exposition()), media_type=CONTENT_TYPE_LATEST)


ROUTERS = (ltr, admin, monitoring)

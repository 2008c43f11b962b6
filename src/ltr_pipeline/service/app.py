"""The app factory. `uvicorn api.main:app` and `ltr serve` both build the app here."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI

from ltr_pipeline import __version__
from ltr_pipeline.config import Settings
from ltr_pipeline.events.sink import make_sink
from ltr_pipeline.logs import configure_logging
from ltr_pipeline.registry import ModelRegistry
from ltr_pipeline.service.interleave import RivalScorer
from ltr_pipeline.service.limits import BodyLimit, PageCache
from ltr_pipeline.service.metrics import ServiceMetrics
from ltr_pipeline.service.openapi import feedback_body, rank_body
from ltr_pipeline.service.rank import RankEndpoint, Ranker
from ltr_pipeline.service.reloader import Reloader
from ltr_pipeline.service.routes import ROUTERS
from ltr_pipeline.service.shadow import ShadowScorer
from ltr_pipeline.service.watch import ServiceGuard

log = structlog.get_logger("ltr_pipeline.service")


def create_app(settings: Settings | None = None, configure_logs: bool = True) -> FastAPI:
    settings = settings or Settings()
    if configure_logs:
        configure_logging(settings.logs_path / "api.log", stream=sys.stdout)
    metrics = ServiceMetrics(settings.runs_path)
    reloader = Reloader(settings, ModelRegistry.from_settings(settings), metrics)
    sink = make_sink(settings, record=lambda outcome, n: metrics.events.labels(outcome=outcome).inc(n))
    shadow = ShadowScorer(metrics, settings.background_priority)
    rival = RivalScorer()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(reloader.check)  # first load before the first request
        # Everything loaded so far lives as long as the process: keep it out of the garbage collector's
        # full passes, which otherwise walk the whole heap (FastAPI, LightGBM, polars...) every few seconds.
        gc.collect()
        gc.freeze()
        # Reloads, compiles and shadow scoring run in threads: let the event loop take the GIL back within
        # 1 ms (not Python's default 5 ms), so background work never holds a request for long.
        sys.setswitchinterval(0.001)
        sink.start()
        shadow.start()
        rival.start()
        tasks = [asyncio.create_task(reloader.poll_forever())]
        if settings.guard_seconds > 0:
            tasks.append(asyncio.create_task(ServiceGuard(settings, reloader, metrics).run_forever()))
        log.info("service.started", registry=settings.registry, version=reloader.live.version,
                 poll_seconds=settings.poll_seconds, event_sink=sink.name, guard_seconds=settings.guard_seconds)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await asyncio.to_thread(sink.close)
            await asyncio.to_thread(shadow.close)
            await asyncio.to_thread(rival.close)
            metrics.worker_exited()

    app = FastAPI(title="ltr-pipeline ranking service", version=__version__, lifespan=lifespan)
    app.state.settings, app.state.reloader, app.state.metrics, app.state.sink = settings, reloader, metrics, sink
    app.state.started_at = time.time()
    app.state.dashboard = PageCache(settings.dashboard_cache_seconds)
    for router in ROUTERS:
        app.include_router(router)
    document = app.openapi

    def openapi() -> dict[str, Any]:  # the configured features and feedback actions go into the document
        if app.openapi_schema is None:
            paths = document()["paths"]
            paths["/ltr/rank"]["post"]["requestBody"] = rank_body(list(settings.feature_names))
            paths["/ltr/feedback"]["post"]["requestBody"] = feedback_body(list(settings.label_grades))
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.ranker = ranker = Ranker(settings, reloader, metrics, sink, shadow, rival)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, refused=metrics.bad_requests.inc)
    app.add_middleware(RankEndpoint, ranker=ranker)  # added last: outermost, so /ltr/rank meets nothing else
    return app

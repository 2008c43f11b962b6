"""`ltr demo`: the whole loop on one machine, from an empty folder.

Simulates a few weeks of a marketplace ranked by the legacy algorithm, starts the ranking service on a free port,
then for each following day runs the daily cycle, waits until the service has hot-reloaded what was published, and
simulates the next day with every case ranked by the service itself (so each day's candidates are shown in the order
of the model live that day, and its events feed the next run).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime

import httpx
import numpy as np
import uvicorn

from ltr_pipeline.config import Settings
from ltr_pipeline.errors import LtrError
from ltr_pipeline.pipeline import run_daily
from ltr_pipeline.record import RunReport
from ltr_pipeline.scoring import Scorer
from ltr_pipeline.service.app import create_app
from ltr_pipeline.simulate import Marketplace, SimConfig, make_marketplace, simulate_day, write_day


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BackgroundServer:
    """A real uvicorn serving the app in a thread, for the demo (tests start it as a separate process)."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings, configure_logs=False)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise LtrError("the demo's ranking service did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class ServiceScorer(Scorer):
    """Ranks through the service's /ltr/rank, so the simulator shows what the live service would."""

    algorithm = "legacy"
    backend = "http"

    def __init__(self, client: httpx.Client, feature_names: Sequence[str]) -> None:
        self.client, self.names = client, list(feature_names)
        self.version: str | None = None
        self.requests = self.fallbacks = 0
        self.reasons: Counter[str] = Counter()  # fallbacks by the service's reason
        self.last_exploration: tuple[bool, float] | None = None  # of the last ranking: (explored, its probability)

    def score(self, features: np.ndarray) -> np.ndarray:
        candidates = [
            {"lawyer_id": str(i), "features": dict(zip(self.names, row.tolist(), strict=True))}
            for i, row in enumerate(features)
        ]
        answer = self.client.post("/ltr/rank", json={"candidates": candidates}).raise_for_status().json()
        self.requests += 1
        self.fallbacks += answer["algorithm"] != "ltr"
        if answer["fallback_reason"]:
            self.reasons[answer["fallback_reason"]] += 1
        self.algorithm, self.version = answer["algorithm"], answer["model_version"]
        self.last_exploration = (answer["explored"], answer["order_probability"])
        scores = np.empty(len(candidates))
        for item in answer["ranking"]:  # what the service showed, in its order (exploration included)
            scores[int(item["lawyer_id"])] = -item["rank"]
        return scores


@dataclass
class DemoDay:
    run_date: date
    report: RunReport
    live_version: str | None
    requests: int
    fallbacks: int


def wait_for_version(client: httpx.Client, version: str | None, timeout: float = 30.0) -> str | None:
    """Poll /ltr/health until the service runs `version` (the registry's live version)."""
    deadline = time.monotonic() + timeout
    while True:
        live = client.get("/ltr/health").json()["model_version"]
        if live == version or time.monotonic() > deadline:
            return live
        time.sleep(0.05)


def run_moment(run_date: date) -> datetime:
    """When the daily run for `run_date` happens, in simulated time: 02:15 UTC the next morning (its version's
    stamp)."""
    return datetime.combine(run_date + timedelta(days=1), dtime(2, 15), tzinfo=UTC)


def simulate_history(market: Marketplace, start: date, days: int, sim: SimConfig, scorer: ServiceScorer,
                     settings: Settings, on_progress: Callable[[str], None],
                     truth: list[dict[str, object]] | None = None) -> None:
    """The days before the first run, each ranked by the service (the legacy sum, with nothing published yet)."""
    for offset in range(days):
        day = start + timedelta(days=offset)
        write_day(simulate_day(market, day, sim, scorer, scorer.version, truth=truth), settings.events_path, day)
        on_progress(f"simulated {day} (legacy ranking)")


def run_demo(
    settings: Settings, history_days: int = 21, days: int = 7, start: date | None = None,
    sim: SimConfig | None = None, on_progress: Callable[[str], None] = lambda _: None,
    on_day: Callable[[DemoDay], None] = lambda _: None,
) -> list[DemoDay]:
    sim = sim or SimConfig(seed=settings.seed)
    start = start or (datetime.now(UTC).date() - timedelta(days=history_days + days))
    market = make_marketplace(sim)
    # The simulated clients log what they saw and did (the simulator writes the events): the service writes none.
    settings = settings.model_copy(update={"poll_seconds": 0.2, "event_sink": "none"})
    results: list[DemoDay] = []
    with BackgroundServer(settings) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        scorer = ServiceScorer(client, settings.feature_names)
        simulate_history(market, start, history_days, sim, scorer, settings, on_progress)
        for offset in range(days):
            run_date = start + timedelta(days=history_days + offset - 1)
            on_progress(f"daily run for {run_date}")
            report = run_daily(run_date, settings, now=run_moment(run_date))
            live = wait_for_version(client, report.live_version)
            scorer.requests = scorer.fallbacks = 0
            next_day = run_date + timedelta(days=1)
            write_day(simulate_day(market, next_day, sim, scorer, live), settings.events_path, next_day)
            day_result = DemoDay(run_date, report, live, scorer.requests, scorer.fallbacks)
            results.append(day_result)
            on_day(day_result)
    return results

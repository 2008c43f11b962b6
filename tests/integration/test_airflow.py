"""The Airflow DAGs: import checks, and real `airflow dags test` runs on SQLite with a local webhook receiver and a
local SMTP server (aiosmtpd) receiving the notifications."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiosmtpd.controller import Controller

from ltr_pipeline.config import Settings
from ltr_pipeline.events.schema import Event
from ltr_pipeline.registry import ModelRegistry
from ltr_pipeline.scoring import WeightedSumScorer, default_weights
from ltr_pipeline.simulate import SimConfig, simulate_days, write_day
from tests.helpers import REPO, free_port

AIRFLOW = str(Path(sys.executable).parent / "airflow")
DAGS = REPO / "dags"


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow")
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS), "LTR_DAG_RETRIES": "0"}
    for name in list(env):
        if name.startswith(("LTR_", "KAFKA_", "S3_")) and name != "LTR_DAG_RETRIES":
            del env[name]
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return env


class Receiver:
    """A local HTTP endpoint that records the JSON bodies POSTed to it (a stand-in Slack webhook)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/ltr"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Mailbox, int]]:
    webhook, mailbox = Receiver(), Mailbox()
    port = free_port()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=port)
    smtp.start()
    yield webhook, mailbox, port
    smtp.stop()
    webhook.close()


def _dags_test(env: dict[str, str], logical: date) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIRFLOW, "dags", "test", "train_ltr_daily", logical.isoformat()], env=env,
                          capture_output=True, text=True, timeout=600)


def _finished(done: subprocess.CompletedProcess[str]) -> str:
    line = next(line for line in done.stdout.splitlines() + done.stderr.splitlines() if "DagRun Finished" in line)
    return line.split("state=")[1].split(",")[0]


def test_dag_imports_with_the_documented_shape(airflow_home: dict[str, str]) -> None:
    code = """
import json, os
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "schedule": dag.timetable.expression, "catchup": dag.catchup, "tz": str(dag.timetable.timezone),
        "tasks": {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks},
        "retries": dag.default_args.get("retries"),
    }
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", code], env={**airflow_home, "LTR_DAG_RETRIES": "2"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert info["errors"] == {}
    daily = info["dags"]["train_ltr_daily"]
    assert daily["schedule"] == "15 2 * * *" and daily["catchup"] is False and daily["tz"] == "UTC"
    assert daily["retries"] == 2
    assert daily["tasks"] == {
        "extract": ["promote"], "promote": ["preprocess"], "preprocess": ["train"], "train": ["evaluate"],
        "evaluate": ["gate", "keep_previous", "notify", "publish"],  # the run date flows on from here
        "gate": ["keep_previous", "publish"], "publish": ["notify"], "keep_previous": ["notify"], "notify": [],
    }
    hourly = info["dags"]["train_ltr_hourly"]
    assert hourly["catchup"] is False and "gate" in hourly["tasks"]
    guard = info["dags"]["ltr_guard"]
    assert guard["schedule"] == "*/5 * * * *" and guard["catchup"] is False and guard["tasks"] == {"check": []}


def test_pass_then_forced_rejection_then_failure(
    airflow_home: dict[str, str], receivers: tuple[Receiver, Mailbox, int], tmp_path: Path
) -> None:
    webhook, mailbox, smtp_port = receivers
    home = tmp_path / "ltr"
    names = list("ASTGQURC")
    legacy = WeightedSumScorer(default_weights(names), names)
    simulate_days(SimConfig(cases_per_day=100), date(2026, 11, 19), 9, home / "events", lambda _: (legacy, None))
    env = {**airflow_home, "LTR_HOME": str(home), "LTR_TRAIN_DAYS": "6", "LTR_NUM_BOOST_ROUND": "40",
           "LTR_NOTIFY_WEBHOOK_URL": webhook.url, "LTR_NOTIFY_EMAIL_TO": "ranking-team@example.test",
           "LTR_SMTP_HOST": "127.0.0.1", "LTR_SMTP_PORT": str(smtp_port)}
    registry = ModelRegistry.from_settings(Settings(home=home))

    passing = _dags_test(env, date(2026, 11, 26))  # processes 2026-11-25
    assert _finished(passing) == "success", passing.stdout[-3000:]
    version = registry.live_version()
    assert version is not None
    assert webhook.bodies[-1]["level"] == "success" and version in webhook.bodies[-1]["text"]
    assert b"[success]" in mailbox.messages[-1].content

    subprocess.run([AIRFLOW, "variables", "set", "ltr_ndcg_min", "0.90"], env=env, check=True, capture_output=True)
    rejected = _dags_test(env, date(2026, 11, 27))
    subprocess.run([AIRFLOW, "variables", "delete", "ltr_ndcg_min"], env=env, check=True, capture_output=True)
    assert _finished(rejected) == "success", rejected.stdout[-3000:]
    assert registry.live_version() == version and registry.versions() == [version]
    assert webhook.bodies[-1]["level"] == "rejected"
    assert "ndcg@5 fail" in webhook.bodies[-1]["text"] and "needs >= 0.9" in webhook.bodies[-1]["text"]
    report = orjson.loads((home / "runs" / "2026-11-26" / "report.json").read_bytes())
    assert report["decision"] == "rejected" and report["live_version"] == version
    assert b"[rejected]" in mailbox.messages[-1].content

    # The hourly DAG continues the live model on the newest hours, through the same gate.
    hourly = subprocess.run([AIRFLOW, "dags", "test", "train_ltr_hourly", "2026-11-27T20:00:00+00:00"], env=env,
                            capture_output=True, text=True, timeout=600)
    assert _finished(hourly) == "success", hourly.stdout[-3000:]
    hourly_report = orjson.loads((home / "runs" / "hourly" / "2026-11-27T20" / "report.json").read_bytes())
    assert hourly_report["kind"] == "hourly" and hourly_report["params"]["continued_from_live_model"] is True
    assert hourly_report["metrics"]["champion_version"] == version
    assert webhook.bodies[-1]["level"] in ("success", "rejected")
    webhook.bodies.pop()
    mailbox.messages.pop()

    failing = _dags_test({**env, "LTR_EVENTS_DIR": str(tmp_path / "no-events")}, date(2026, 11, 28))
    assert _finished(failing) == "failed"
    assert webhook.bodies[-1]["level"] == "failure" and "extract" in webhook.bodies[-1]["text"]
    assert "no-events" in webhook.bodies[-1]["text"]
    assert registry.live_version() in (version, hourly_report["published_version"])
    assert [b["level"] for b in webhook.bodies] == ["success", "rejected", "failure"]
    assert len(mailbox.messages) == 3

    # The guard DAG, its thresholds from Variables: cases served by the live version, judged against a drift
    # limit no traffic can meet, in alert mode, flags the version (marked bad, notified) and leaves it live.
    live = registry.live_version()
    assert live is not None
    _served_since_live(home, registry, live, cases=60)
    for name, value in (("ltr_guard_max_psi", "1e-9"), ("ltr_guard_action", "alert")):
        subprocess.run([AIRFLOW, "variables", "set", name, value], env=env, check=True, capture_output=True)
    guarded = subprocess.run([AIRFLOW, "dags", "test", "ltr_guard", "2026-11-30T12:00:00+00:00"], env=env,
                             capture_output=True, text=True, timeout=600)
    assert _finished(guarded) == "success", guarded.stdout[-3000:]
    assert list(registry.bad_versions()) == [live] and registry.live_version() == live
    assert registry.bad_versions()[live]["action"] == "flagged"
    assert webhook.bodies[-1]["level"] == "failure"
    assert f"LTR guard: version {live} flagged" in webhook.bodies[-1]["text"]


def _served_since_live(home: Path, registry: ModelRegistry, live: str, cases: int) -> None:
    """`cases` cases ranked by `live`, spread between the moment it went live and now, in today's event folder."""
    since = max(datetime.fromisoformat(a["at"]) for a in registry.audit_log() if a["version"] == live)
    now = datetime.now(UTC)
    rng = np.random.default_rng(0)
    events = []
    for case in range(cases):
        ts = since + (now - since) * (case + 1) / (cases + 1)
        events += [Event(f"r-g{case}-{pos}", "recommendation", ts, f"g{case}", f"l-{pos}", position=pos,
                         features=dict(zip("ASTGQURC", rng.random(8).tolist(), strict=True)), model_version=live,
                         algorithm="ltr") for pos in range(1, 11)]
    write_day(events, home / "events", now.date())


def test_the_daily_dag_trains_on_a_dask_cluster(airflow_home: dict[str, str], tmp_path: Path) -> None:
    """LTR_ENGINE=dask through the DAG: the train task starts a LocalCluster of 2 worker processes for the run."""
    home = tmp_path / "ltr"
    names = list("ASTGQURC")
    legacy = WeightedSumScorer(default_weights(names), names)
    simulate_days(SimConfig(cases_per_day=100), date(2026, 11, 19), 7, home / "events", lambda _: (legacy, None))
    env = {**airflow_home, "LTR_HOME": str(home), "LTR_TRAIN_DAYS": "6", "LTR_NUM_BOOST_ROUND": "40",
           "LTR_ENGINE": "dask", "LTR_DASK_WORKERS": "2"}
    done = _dags_test(env, date(2026, 11, 26))
    assert _finished(done) == "success", done.stdout[-3000:]
    report = orjson.loads((home / "runs" / "2026-11-25" / "report.json").read_bytes())
    assert report["params"]["engine"] == "dask" and report["decision"] == "published"
    assert report["params"]["partitions"]["train"] >= 1


def test_notifiers_never_fail_a_run_and_keep_the_webhook_url_out_of_logs(tmp_path: Path) -> None:
    from ltr_pipeline.notify import Notice, notify

    secret_url = f"http://127.0.0.1:{free_port()}/hooks/T000/B000/very-secret-token"
    settings = Settings(home=tmp_path, notify_webhook_url=secret_url, notify_email_to="x@example.test",
                        smtp_host="127.0.0.1", smtp_port=free_port(), notify_timeout_seconds=1)
    outcomes = notify(settings, Notice("failure", "title", "text"))
    assert outcomes["log"] == "sent"
    assert outcomes["webhook"].startswith("RuntimeError: webhook failed") and "secret" not in outcomes["webhook"]
    assert "Error" in outcomes["email"]

"""The self-feeding loop on a real broker: simulate into the topic -> ingest -> train -> publish -> the service
reloads -> what it ranks and the feedback it takes go back to the topic -> the next day's run ingests them."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import orjson

from tests.helpers import TansuBroker, ltr_json, metric, service_process, wait_until

FEATURES = list("ASTGQURC")


def test_service_events_feed_the_next_run(tmp_path: Path) -> None:
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    with TansuBroker() as broker:
        env = {**os.environ, "LTR_HOME": str(tmp_path / "home"), "LTR_SOURCE": "kafka",
               "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "LTR_TRAIN_DAYS": "6", "LTR_NUM_BOOST_ROUND": "40",
               "LTR_POLL_SECONDS": "0.2", "LTR_NDCG_MIN": "0", "LTR_FAIRNESS_MAX": "1", "LTR_MAX_REGRESSION": "1"}
        sim = ltr_json(["simulate", "--to", "kafka", "--days", "5", "--start", str(today - timedelta(days=5)),
                    "--cases-per-day", "100"], env)
        assert sim["spooled"] == 0 and sim["events"] > 5000
        first = ltr_json(["run", "--date", str(yesterday)], env)
        assert first["decision"] == "published" and first["source"]["name"] == "kafka"
        v1 = first["published_version"]

        with service_process(env) as url:
            assert httpx.get(f"{url}/ltr/health").json()["model_version"] == v1
            rng = np.random.default_rng(7)
            cases = 60
            with httpx.Client(base_url=url) as client:
                for case in range(cases):
                    candidates = [{"lawyer_id": f"l-{case}-{i}", "group": "FM"[i % 2],
                                   "features": dict(zip(FEATURES, rng.random(8).round(3).tolist(), strict=True))}
                                  for i in range(10)]
                    ranked = client.post("/ltr/rank", json={"case_id": f"live-{case}", "candidates": candidates})
                    assert ranked.json()["algorithm"] == "ltr"
                    top = ranked.json()["ranking"]
                    for item, action in zip(top[:2], ("accepted", "clicked"), strict=True):
                        sent = client.post("/ltr/feedback", json={"case_id": f"live-{case}",
                                                                  "lawyer_id": item["lawyer_id"], "action": action})
                        assert sent.status_code == 202
                bad = client.post("/ltr/feedback", json={"case_id": "x", "lawyer_id": "y", "action": "liked"})
                assert bad.status_code == 422
            wait_until(lambda: metric(url, "ltr_events_total", outcome="sent") == cases * 12,
                       what="the service's events to reach the topic")

        second = ltr_json(["run", "--date", str(today)], env)
        assert second["source"]["name"] == "kafka"
        assert second["data"]["holdout_queries"] == cases  # today's queries are exactly the service's
        assert second["data"]["dataset"]["with_feedback"] >= cases * 2
        archived = [orjson.loads(line) for path in (tmp_path / "home" / "archive" / str(today)).glob("kafka-*.jsonl")
                    for line in path.read_bytes().splitlines()]
        recs = [e for e in archived if e["event_type"] == "recommendation"]
        assert len(recs) == cases * 10
        assert {e["model_version"] for e in recs} == {v1} and {e["algorithm"] for e in recs} == {"ltr"}

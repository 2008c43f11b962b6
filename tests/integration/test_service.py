"""The ranking service as a real uvicorn process: hot reload under a steady stream, refusals, auth, metrics."""

from __future__ import annotations

import shutil
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import lightgbm as lgb
import numpy as np
import orjson
import pytest

from ltr_pipeline.config import DEFAULT_LABEL_GRADES
from ltr_pipeline.events.file import FileEventSource
from ltr_pipeline.events.schema import TEAMS
from ltr_pipeline.measures import rank_order
from ltr_pipeline.registry import ModelRegistry
from ltr_pipeline.storage.local import LocalStore
from tests.helpers import free_port, metric, service_process, wait_until
from tests.integration.conftest import TOKEN

FEATURES = list("ASTGQURC")


def _model_files(seed: int) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    x = rng.random((400, 8))
    y = np.clip((x[:, 0] * 2 + x[:, seed % 8] * 2).astype(int), 0, 3)
    booster = lgb.train({"objective": "lambdarank", "verbosity": -1, "min_data_in_leaf": 5, "seed": seed},
                        lgb.Dataset(x, y, group=[10] * 40), num_boost_round=10)
    return {"model.txt": booster.model_to_string().encode(),
            "ltr_weights.json": orjson.dumps(dict(zip(FEATURES, [1 / 8] * 8, strict=True)))}


def _request(n: int = 20) -> dict[str, Any]:
    rng = np.random.default_rng(n)
    return {"case_id": "c-1", "candidates": [
        {"lawyer_id": f"l-{i}", "features": dict(zip(FEATURES, rng.random(8).round(3).tolist(), strict=True))}
        for i in range(n)
    ]}




def test_exploration_swaps_one_adjacent_pair_and_the_events_say_so(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "LTR_EXPLORE_FRACTION": "1", "LTR_EVENT_SINK": "file"}
    body = _request(10)
    with service_process(env) as url:
        answers = [httpx.post(f"{url}/ltr/rank", json=body).json() for _ in range(40)]
        wait_until(lambda: metric(url, "ltr_events_total", outcome="sent") == 400, what="the served events")
    for answer in answers:
        assert answer["explored"] is True and answer["order_probability"] == pytest.approx(1 / 9)
        shown = [r["lawyer_id"] for r in answer["ranking"]]
        by_score = [r["lawyer_id"] for r in sorted(answer["ranking"], key=lambda r: -r["score"])]
        moved = [i for i in range(10) if shown[i] != by_score[i]]
        assert len(moved) == 2 and moved[1] == moved[0] + 1  # one adjacent pair, swapped
        assert shown[moved[0]] == by_score[moved[1]] and shown[moved[1]] == by_score[moved[0]]
        assert sorted(shown) == sorted(c["lawyer_id"] for c in body["candidates"])
    swapped_at = Counter(next(i for i in range(9) if a["ranking"][i]["score"] < a["ranking"][i + 1]["score"])
                         for a in answers)
    assert len(swapped_at) >= 5  # the pair is drawn at random, not always the same one
    events = [orjson.loads(line) for path in (Path(env["LTR_HOME"]) / "events").rglob("served-*.jsonl")
              for line in path.read_bytes().splitlines()]
    assert len(events) == 400
    assert all(e["explored"] is True and e["order_probability"] == pytest.approx(1 / 9) for e in events)


def test_hot_reload_under_steady_traffic_loses_no_request(env: dict[str, str], registry_dir: Path) -> None:
    registry = ModelRegistry(LocalStore(registry_dir))
    v1 = registry.publish(_model_files(1), {}, now=datetime(2026, 11, 26, 2, 15, tzinfo=UTC))
    with service_process(env) as url:
        assert httpx.get(f"{url}/ltr/health").json()["model_version"] == v1
        statuses: Counter[int] = Counter()
        versions: list[str | None] = []
        stop = threading.Event()

        def stream() -> None:
            body = orjson.dumps(_request())
            with httpx.Client(base_url=url, timeout=5) as client:
                while not stop.is_set():
                    resp = client.post("/ltr/rank", content=body)
                    statuses[resp.status_code] += 1
                    if resp.status_code == 200:
                        versions.append(resp.json()["model_version"])

        worker = threading.Thread(target=stream)
        worker.start()
        try:
            wait_until(lambda: len(versions) >= 50, what="traffic before the publish")
            v2 = registry.publish(_model_files(2), {}, now=datetime(2026, 11, 27, 2, 15, tzinfo=UTC))
            wait_until(lambda: httpx.get(f"{url}/ltr/health").json()["model_version"] == v2, what="reload of v2")
            seen_after = len(versions)
            wait_until(lambda: len(versions) >= seen_after + 50, what="traffic after the reload")
        finally:
            stop.set()
            worker.join()

        assert set(statuses) == {200}, statuses
        assert versions[0] == v1 and versions[-1] == v2
        switch = versions.index(v2)
        assert set(versions[switch:]) == {v2}, "a request after the swap was served by the old model"
        health = httpx.get(f"{url}/ltr/health").json()
        assert health["last_reload"]["outcome"] == "loaded" and health["algorithm"] == "ltr"
        assert health["waiting_for_compile"] is None  # v2 is live: nothing waits
        # The counters move just after what they count (a reload after its swap, on an idle-priority thread; an
        # answer after it is sent): wait for them, then check they stop at the right figure.
        wait_until(lambda: metric(url, "ltr_reloads_total", outcome="loaded") >= 2, what="the reload counted")
        wait_until(lambda: metric(url, "ltr_prediction_duration_seconds_count") >= sum(statuses.values()),
                   what="every answer counted")
        assert metric(url, "ltr_reloads_total", outcome="loaded") == 2
        assert metric(url, "ltr_predictions_total") == sum(statuses.values())
        assert metric(url, "ltr_prediction_duration_seconds_count") == sum(statuses.values())
        assert metric(url, "ltr_model_info", role="live", version=v2) == 1
        assert metric(url, "ltr_model_info", role="live", version=v1) == 0


def test_tampered_version_is_refused_and_old_model_kept(env: dict[str, str], registry_dir: Path) -> None:
    registry = ModelRegistry(LocalStore(registry_dir))
    v1 = registry.publish(_model_files(1), {}, now=datetime(2026, 11, 26, 2, 15, tzinfo=UTC))
    with service_process(env) as url:
        # A corrupted upload: v2's model is truncated after its checksum was recorded, and the pointer moved.
        bad = "20261127_0215"
        shutil.copytree(registry_dir / v1, registry_dir / bad)
        model = (registry_dir / bad / "model.txt").read_bytes()
        (registry_dir / bad / "model.txt").write_bytes(model[: len(model) // 2])
        pointer = orjson.loads((registry_dir / "LATEST").read_bytes())
        (registry_dir / "LATEST").write_bytes(orjson.dumps({**pointer, "version": bad}))

        wait_until(lambda: metric(url, "ltr_reloads_total", outcome="failed") >= 1, what="a failed reload")
        health = httpx.get(f"{url}/ltr/health").json()
        assert health["model_version"] == v1
        assert health["last_reload"]["outcome"] == "failed"
        assert "sha256" in health["last_reload"]["error"]
        answer = httpx.post(f"{url}/ltr/rank", json=_request()).json()
        assert answer["model_version"] == v1 and answer["algorithm"] == "ltr"

        # Best first and ties in request order, as `rank_order`: every candidate comes twice.
        twins = _request(5)["candidates"]
        body = {"candidates": [{**c, "lawyer_id": f"{c['lawyer_id']}{k}"} for k in "ab" for c in twins]}
        ranking = httpx.post(f"{url}/ltr/rank", json=body).json()["ranking"]
        ids = [c["lawyer_id"] for c in body["candidates"]]
        score_of = {r["lawyer_id"]: r["score"] for r in ranking}
        assert [r["lawyer_id"] for r in ranking] == [ids[i] for i in rank_order([score_of[i] for i in ids])]
        assert [r["lawyer_id"][-1] for r in ranking] == list("ab" * 5)


def test_no_model_falls_back_to_legacy_and_admin_needs_token(env: dict[str, str]) -> None:
    with service_process(env) as url:
        answer = httpx.post(f"{url}/ltr/rank", json=_request(5)).json()
        assert answer["algorithm"] == "legacy" and answer["fallback_reason"] == "no_model"
        assert [r["rank"] for r in answer["ranking"]] == [1, 2, 3, 4, 5]
        scores = [r["score"] for r in answer["ranking"]]
        assert scores == sorted(scores, reverse=True)
        assert metric(url, "ltr_fallback_total", reason="no_model") == 1

        bad = httpx.post(f"{url}/ltr/rank", content=b'{"candidates": [{"lawyer_id": "x", "features": {"A": "hi"}}]}')
        assert bad.status_code == 422 and "features.A" in bad.json()["detail"]
        assert httpx.post(f"{url}/ltr/rank", content=b"nope").status_code == 422

        assert httpx.post(f"{url}/api/debug/reload_weights").status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.post(f"{url}/api/debug/reload_weights", headers=wrong).status_code == 401
        ok = httpx.post(f"{url}/api/debug/reload_weights", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()["outcome"] == "absent"
        assert httpx.get(f"{url}/api/debug/reload_weights").json()["last_reload"]["outcome"] == "absent"


def test_seed_entry_point_uvicorn_api_main(env: dict[str, str], tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", "{port}"]
    with service_process(env, cmd=cmd) as url:
        assert httpx.get(f"{url}/ltr/health").json()["status"] == "ok"
    log = Path(env["LTR_HOME"]) / "logs" / "api.log"
    lines = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    assert any(line["event"] == "service.started" for line in lines)
    assert TOKEN not in log.read_text()


def test_the_service_serves_the_fair_reranking(env: dict[str, str]) -> None:
    body = {"candidates": [{"lawyer_id": "m", "group": "M", "features": {"A": 1.0}},
                           {"lawyer_id": "f", "group": "F", "features": {"A": 0.9}}]}
    with service_process({**env, "LTR_FAIR_RERANK_STRENGTH": "1"}) as url:
        firsts = [httpx.post(f"{url}/ltr/rank", json=body).json()["ranking"][0]["lawyer_id"] for _ in range(6)]
    # Legacy scoring puts m first; once m has had the top spot, f is behind in exposure and is lifted.
    assert firsts[0] == "m" and "f" in firsts[1:]
    with service_process(env) as url:
        plain = [httpx.post(f"{url}/ltr/rank", json=body).json()["ranking"][0]["lawyer_id"] for _ in range(6)]
    assert set(plain) == {"m"}


def test_challenger_in_shadow_and_ab_and_business_metrics(env: dict[str, str], registry_dir: Path,
                                                           tmp_path: Path) -> None:
    registry = ModelRegistry(LocalStore(registry_dir))
    challenger = registry.publish(_model_files(3), {}, now=datetime(2026, 11, 26, 2, 15, tzinfo=UTC))
    live = registry.publish(_model_files(1), {}, now=datetime(2026, 11, 27, 2, 15, tzinfo=UTC))
    business = [{"day": "2026-11-26", "version": challenger, "cases": 300, "hit@3": 0.85, "conversion": 0.31}]
    (tmp_path / "home" / "runs" / "2026-11-27").mkdir(parents=True)
    (tmp_path / "home" / "runs" / "2026-11-27" / "business.json").write_bytes(orjson.dumps(business))
    env = {**env, "LTR_CHALLENGER_VERSION": challenger, "LTR_AB_FRACTION": "0.3", "LTR_SHADOW_FRACTION": "0"}
    with service_process(env) as url:
        health = wait_until(lambda: (h := httpx.get(f"{url}/ltr/health").json())["scorer"] == "lleaves"
                            and h["challenger"]["scorer"] == "lleaves" and h, what="both models compiled")
        assert health["model_version"] == live and health["challenger"]["version"] == challenger

        arms: dict[str, set[tuple[str, str]]] = {}
        shadowed = 0
        with httpx.Client(base_url=url, timeout=5) as client:
            for repeat in range(3):
                for case in range(100):
                    body = {**_request(), "case_id": f"case-{case}"}
                    answer = client.post("/ltr/rank", json=body, headers={"x-shadow-ltr": "1"}).json()
                    arms.setdefault(body["case_id"], set()).add((answer["variant"], answer["model_version"]))
                    shadowed += answer["variant"] == "live"
                if repeat == 0:  # without the header and with shadow_fraction 0, no shadow scoring
                    client.post("/ltr/rank", json={**_request(), "case_id": "case-0"})
        assert all(len(seen) == 1 for seen in arms.values()), "a case changed arm"
        served = Counter(next(iter(seen)) for seen in arms.values())
        assert set(served) == {("live", live), ("challenger", challenger)}
        assert 15 <= served["challenger", challenger] <= 45
        assert metric(url, "ltr_predictions_total", variant="challenger") == 3 * served["challenger", challenger]

        wait_until(lambda: metric(url, "ltr_shadow_requests_total", outcome="scored") == shadowed,
                   what="every shadow comparison")
        assert metric(url, "ltr_shadow_overlap_at_5_count") == shadowed
        assert metric(url, "ltr_shadow_kendall_tau_count") == shadowed
        assert 0 <= metric(url, "ltr_shadow_overlap_at_5_sum") <= shadowed
        assert metric(url, "ltr_model_info", role="challenger", version=challenger, backend="lleaves") == 1
        assert metric(url, "ltr_business_hit_at_3", day="2026-11-26", model_version=challenger) == 0.85
        assert metric(url, "ltr_business_conversion", day="2026-11-26", model_version=challenger) == 0.31
        assert metric(url, "ltr_business_cases", day="2026-11-26", model_version=challenger) == 300


def test_two_workers_share_metrics_and_each_reloads(env: dict[str, str], registry_dir: Path) -> None:
    registry = ModelRegistry(LocalStore(registry_dir))
    v1 = registry.publish(_model_files(1), {}, now=datetime(2026, 11, 26, 2, 15, tzinfo=UTC))
    cmd = [sys.executable, "-m", "ltr_pipeline.cli", "serve", "--port", "{port}", "--workers", "2"]
    with service_process(env, cmd=cmd) as url:
        # New connections spread over the workers; go on until both have answered.
        pids: set[int] = set()

        def both_answered() -> bool:
            pids.add(httpx.get(f"{url}/ltr/health").json()["worker_pid"])
            return len(pids) == 2

        wait_until(both_answered, what="both workers answering")
        body = orjson.dumps(_request())
        answered: Counter[str] = Counter()
        for _ in range(60):
            answered[httpx.post(f"{url}/ltr/rank", content=body).json()["model_version"]] += 1
        assert answered == {v1: 60}
        # Whichever worker is scraped, the sum of both. A worker counts a request just after writing its answer, so
        # the other worker's scrape may run a moment before the last count lands: polled, not read once.
        wait_until(lambda: metric(url, "ltr_predictions_total") == 60, what="60 predictions counted")

        def live_versions() -> dict[str, str]:
            from prometheus_client.parser import text_string_to_metric_families

            families = text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
            return {s.labels["pid"]: s.labels["version"] for f in families for s in f.samples
                    if s.name == "ltr_model_info" and s.labels["role"] == "live" and s.value == 1}

        def both_live() -> dict[str, str] | None:
            versions = live_versions()
            return versions if len(versions) == 2 else None

        assert set(wait_until(both_live).values()) == {v1}
        v2 = registry.publish(_model_files(2), {}, now=datetime(2026, 11, 27, 2, 15, tzinfo=UTC))
        wait_until(lambda: set(live_versions().values()) == {v2} and len(live_versions()) == 2,
                   what="both workers on v2")
        wait_until(lambda: metric(url, "ltr_reloads_total", outcome="loaded") >= 4, what="both reloads counted")
        assert metric(url, "ltr_reloads_total", outcome="loaded") == 4  # two versions, each loaded by both


def test_interleaved_rankings_carry_their_teams_and_feedback_credits_them(env: dict[str, str], registry_dir: Path,
                                                                          ) -> None:
    registry = ModelRegistry(LocalStore(registry_dir))
    challenger = registry.publish(_model_files(3), {}, now=datetime(2026, 11, 26, 2, 15, tzinfo=UTC))
    live = registry.publish(_model_files(1), {}, now=datetime(2026, 11, 27, 2, 15, tzinfo=UTC))
    env = {**env, "LTR_CHALLENGER_VERSION": challenger, "LTR_INTERLEAVE_FRACTION": "1", "LTR_EVENT_SINK": "file"}
    with service_process(env) as url:
        wait_until(lambda: httpx.get(f"{url}/ltr/health").json()["challenger"] is not None, what="the challenger")
        with httpx.Client(base_url=url, timeout=5) as client:
            top = {"lawyer_id": "l-top", "features": dict.fromkeys(FEATURES, 0.999)}  # both models rank it first
            for case in range(30):
                body = {"candidates": [top, *_request(19)["candidates"]], "case_id": f"case-{case}"}
                answer = client.post("/ltr/rank", json=body).json()
                assert answer["variant"] == "interleaved" and answer["model_version"] == live
                shown = [r["lawyer_id"] for r in answer["ranking"]]
                assert sorted(shown) == sorted(c["lawyer_id"] for c in body["candidates"])  # each once
                for lawyer in shown[:3]:
                    sent = client.post("/ltr/feedback", json={"case_id": f"case-{case}", "lawyer_id": lawyer,
                                                              "action": "contracted"})
                    assert sent.status_code == 202
        wait_until(lambda: metric(url, "ltr_events_total", outcome="sent") == 30 * 23, what="every event written")
        assert metric(url, "ltr_interleaved_rankings_total") == 30
        credit = {team: metric(url, "ltr_interleaving_credit_total", team=team) for team in TEAMS}
    events = [orjson.loads(line) for path in (Path(env["LTR_HOME"]) / "events").rglob("served-*.jsonl")
              for line in path.read_bytes().splitlines()]
    recs = sorted((e for e in events if e["event_type"] == "recommendation"), key=lambda e: e["position"])
    assert len(recs) == 30 * 20
    assert all(e["challenger_version"] == challenger and e["team"] in TEAMS for e in recs)
    teams = {c: [e["team"] for e in recs if e["case_id"] == f"case-{c}"] for c in range(30)}
    common = teams[0].count("shared")  # every case ranks the same candidates: the same common beginning
    assert 1 <= common < 20  # both models put l-top first; they differ below, so there is something to draft
    for places in teams.values():
        assert places[:common] == ["shared"] * common and "shared" not in places[common:]
        assert abs(places.count("live") - places.count("challenger")) <= 1
    top3 = Counter(team for places in teams.values() for team in places[:3])
    assert credit == {team: 3.0 * top3[team] for team in TEAMS}  # each contract credits the team of its place
    first_picks = Counter(places[common] for places in teams.values())
    assert min(first_picks["live"], first_picks["challenger"]) >= 5  # the coin flip gives each team the first pick


def test_the_service_refuses_what_the_pipeline_would_and_writes_only_what_it_reads(env: dict[str, str]) -> None:
    """Issue 17, classes 1 and 2: one contract for the service and the pipeline. Every hostile value is a 4xx, and
    every event the service writes is one the pipeline's file source accepts."""
    env = {**env, "LTR_EVENT_SINK": "file"}
    now = datetime.now(UTC)
    hostile_feedback = [
        {"case_id": "c-1", "lawyer_id": "l-1", "action": "clicked", "ts": "9999-12-31T23:00:00-05:00"},
        {"case_id": "c-1", "lawyer_id": "l-1", "action": "clicked", "ts": "0999-01-01T00:00:00Z"},
        {"case_id": "c-1", "lawyer_id": "l-1", "action": "clicked", "ts": (now - timedelta(days=3)).isoformat()},
        {"case_id": "c-1", "lawyer_id": "", "action": "clicked"},
        {"case_id": "c" * 1_000_000, "lawyer_id": "l-1", "action": "clicked"},
        {"case_id": "c-1", "lawyer_id": "l-1", "action": "clicked", "event_id": "e" * 300},
    ]
    big = _request(1000)
    hostile_rank = [{**big, "case_id": "c" * 1_000_000},
                    {"candidates": [{**c, "lawyer_id": "l" * 1000} for c in big["candidates"]]},
                    {"candidates": [{"lawyer_id": "", "features": {}}]}]
    with service_process(env) as url, httpx.Client(base_url=url, timeout=30) as client:
        codes = [client.post("/ltr/feedback", json=body).status_code for body in hostile_feedback]
        codes += [client.post("/ltr/rank", json=body).status_code for body in hostile_rank]
        assert codes == [422] * 6 + [413, 413, 422]  # 413: over LTR_MAX_BODY_BYTES (1 MB) as well
        assert client.post("/ltr/feedback", json={"case_id": "c-1", "lawyer_id": "l-1", "action": "clicked",
                                                  "ts": now.isoformat()}).status_code == 202
        assert client.post("/ltr/rank", json=_request(5)).status_code == 200
        # The most a request may append: the longest ids allowed, as many candidates as allowed.
        worst = {"case_id": "c" * 256, "candidates": [{"lawyer_id": f"{i:0256d}", "features": {}} for i in range(1000)]}
        assert client.post("/ltr/rank", json=worst).status_code == 200
        wait_until(lambda: metric(url, "ltr_events_total", outcome="sent") == 1006, what="the valid events written")
    events = Path(env["LTR_HOME"]) / "events"
    assert sum(p.stat().st_size for p in events.rglob("*.jsonl")) < 2 * 1_048_576  # LTR_MAX_BODY_BYTES x 2
    result = FileEventSource(events).read(
        now - timedelta(days=1), now + timedelta(days=1), DEFAULT_LABEL_GRADES.keys(), FEATURES)
    assert result.frame.height == 1006 and result.quarantined == []


def test_bodies_over_the_limit_and_deep_nesting_are_refused_before_they_cost_anything(env: dict[str, str]) -> None:
    """Issue 17, class 4: LTR_MAX_BODY_BYTES from Content-Length and while reading a chunked stream (which has
    none), on /ltr/rank and on the FastAPI routes alike; JSON nested 5,000 deep, even in an ignored key, is a 422."""
    env = {**env, "LTR_MAX_BODY_BYTES": "65536", "LTR_EVENT_SINK": "file"}
    big = orjson.dumps({**_request(1000), "padding": "x" * 70_000})

    def chunked() -> Any:  # no Content-Length: httpx sends it chunked
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    deep = b'{"ignored": ' + b"[" * 5000 + b"]" * 5000 + b', "candidates": [], "case_id": "c", "lawyer_id": "l"}'
    with service_process(env) as url, httpx.Client(base_url=url, timeout=30) as client:
        for path in ("/ltr/rank", "/ltr/feedback"):
            assert client.post(path, content=big).status_code == 413
            assert client.post(path, content=chunked()).status_code == 413
            assert client.post(path, content=deep).status_code == 422
        assert metric(url, "ltr_bad_requests_total") == 6
        assert client.post("/ltr/rank", json=_request(20)).status_code == 200  # the service carries on
        assert client.get("/ltr/health").status_code == 200


def test_readiness_follows_the_registry_while_liveness_does_not(env: dict[str, str], tmp_path: Path) -> None:
    """/ltr/ready is 503 while the registry cannot be read (an S3 endpoint nobody listens on); /ltr/health stays 200,
    and the legacy sum serves."""
    with service_process(env) as url:
        answer = httpx.get(f"{url}/ltr/ready")
        assert answer.status_code == 200 and answer.json()["algorithm"] == "legacy"  # reachable, nothing published
    unreachable = {**env, "LTR_REGISTRY_URI": "s3://nowhere/ltr", "S3_ENDPOINT": f"http://127.0.0.1:{free_port()}",
                   "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "LTR_S3_MAX_ATTEMPTS": "1"}
    with service_process(unreachable) as url:
        answer = httpx.get(f"{url}/ltr/ready")
        assert answer.status_code == 503 and answer.json()["last_check"]["outcome"] == "failed"
        assert httpx.get(f"{url}/ltr/health").status_code == 200
        assert httpx.post(f"{url}/ltr/rank", json=_request(5)).json()["algorithm"] == "legacy"

"""The shipped monitoring (deploy/): the Prometheus rules pass `promtool test rules`, a real Prometheus (Debian's
package) scraping a live `ltr serve` evaluates every one of them without error, and the Grafana dashboard asks only
for metrics the service exports or the rules record."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from ltr_pipeline.registry import ModelRegistry
from ltr_pipeline.storage.local import LocalStore
from tests.helpers import REPO, free_port, service_process, wait_until
from tests.integration.test_service import _model_files, _request

RULES = REPO / "deploy" / "prometheus" / "ltr_rules.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "ltr_service.json"


def _binary(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: `make test` installs Debian's prometheus package (scripts/system-deps)"
    return found


def test_the_rules_pass_their_promtool_unit_tests() -> None:
    checked = subprocess.run([_binary("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([_binary("promtool"), "test", "rules", "ltr_rules_test.yml"], cwd=RULES.parent,
                            capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _recorded() -> set[str]:
    return {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r}


def test_a_real_prometheus_scrapes_the_service_and_evaluates_every_rule(
    env: dict[str, str], registry_dir: Path, tmp_path: Path
) -> None:
    ModelRegistry(LocalStore(registry_dir)).publish(_model_files(1), {}, now=datetime.now(UTC))
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"  # the same rules, evaluated every second rather than every 30
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    with service_process(env) as url:
        for _ in range(20):
            httpx.post(f"{url}/ltr/rank", content=orjson.dumps(_request())).raise_for_status()
        port = free_port()
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(tmp_path / "rules.yml")],
                  "scrape_configs": [{"job_name": "ltr", "static_configs": [{"targets": [url.split("//")[1]]}]}]}
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        proc = subprocess.Popen([_binary("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        api = f"http://127.0.0.1:{port}/api/v1"
        try:
            def value(query: str) -> float | None:
                result = httpx.get(f"{api}/query", params={"query": query}).json()["data"]["result"]
                return float(result[0]["value"][1]) if result else None

            def requests_flowing() -> bool:
                httpx.post(f"{url}/ltr/rank", content=orjson.dumps(_request())).raise_for_status()
                return (value("ltr:predictions:rate5m") or 0) > 0

            wait_until(lambda: value('up{job="ltr"}') == 1, timeout=60, what="Prometheus scraping the service")
            wait_until(requests_flowing, timeout=60, what="the recorded request rate")
            assert value("ltr:fallback_rate:ratio_rate5m") == 0  # a model serves every request (series from the start)
            assert (value('process_resident_memory_bytes{job="ltr"}') or 0) > 0  # process_* metrics
            assert 0 < (value("ltr:prediction_latency_seconds:p95_5m") or 0) < 0.015
            assert 0 <= (value("ltr:model_age_seconds") or -1) < 3600

            def every_rule_evaluated() -> list[dict[str, Any]] | None:
                groups = httpx.get(f"{api}/rules").json()["data"]["groups"]
                found = [r for g in groups for r in g["rules"]]
                return found if found and all(r["health"] == "ok" and r.get("lastEvaluation", "").startswith("20")
                                              for r in found) else None

            evaluated = wait_until(every_rule_evaluated, timeout=60, what="every rule evaluated without error")
            assert len(evaluated) == sum(len(g["rules"]) for g in rules["groups"])
            assert not [r["name"] for r in evaluated if r["type"] == "alerting" and r["state"] == "firing"]
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _exported(text: str) -> set[str]:
    """Every sample name the service's /metrics can carry (a labelled counter has no sample before its first use)."""
    from prometheus_client.parser import text_string_to_metric_families

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {f.name + s for f in text_string_to_metric_families(text) for s in suffixes.get(f.type, ("",))}


def test_the_dashboard_asks_only_for_exported_or_recorded_metrics(env: dict[str, str]) -> None:
    dashboard = orjson.loads(DASHBOARD.read_bytes())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {m for e in exprs for m in re.findall(r"\b(ltr[_:][a-z0-9_:]+)", e)}
    with service_process(env) as url:
        exported = _exported(httpx.get(f"{url}/metrics").text)
    assert used - exported - _recorded() == set()
    assert {"ltr_fallback_total", "ltr_guard_rollbacks_total", "ltr:prediction_latency_seconds:p95_5m",
            "ltr:model_age_seconds"} <= used  # what the alerts are about is on the dashboard too

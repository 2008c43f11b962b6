"""The OpenAPI document against the live service: Schemathesis (a real uvicorn, a published model, the admin token)
sends generated requests to every documented operation for a bounded time (issue 17, class 7)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx

from ltr_pipeline.registry import ModelRegistry
from ltr_pipeline.storage.local import LocalStore
from tests.helpers import service_process
from tests.integration.conftest import TOKEN
from tests.integration.test_service import _model_files


def test_every_endpoint_is_documented_with_its_body_and_errors(env: dict[str, str], registry_dir: Path) -> None:
    with service_process({**env, "LTR_EVENT_SINK": "file"}) as url:
        document = httpx.get(f"{url}/openapi.json").json()
    paths = document["paths"]
    assert set(paths) >= {"/ltr/rank", "/ltr/feedback", "/ltr/health", "/ltr/dashboard", "/metrics",
                          "/api/debug/reload_weights", "/ltr/runs/{run_date}/report.html"}
    rank = paths["/ltr/rank"]["post"]
    features = rank["requestBody"]["content"]["application/json"]["schema"]["properties"]["candidates"]["items"]
    assert list(features["properties"]["features"]["properties"]) == list("ASTGQURC")
    assert {"200", "413", "422"} <= set(rank["responses"])
    feedback = paths["/ltr/feedback"]["post"]
    assert "clicked" in feedback["requestBody"]["content"]["application/json"]["schema"]["properties"]["action"]["enum"]
    assert {"202", "413", "422", "503"} <= set(feedback["responses"])


def test_schemathesis_finds_no_server_error_and_no_divergence_from_the_document(env: dict[str, str],
                                                                                registry_dir: Path,
                                                                                tmp_path: Path) -> None:
    ModelRegistry(LocalStore(registry_dir)).publish(_model_files(1), {}, now=datetime(2026, 11, 27, tzinfo=UTC))
    with service_process({**env, "LTR_EVENT_SINK": "file"}) as url:
        # Every check but positive_data_acceptance: the contract's time bounds on `ts` (a day around the service's
        # clock) are not expressible in JSON Schema, so a schema-valid `ts` may rightly be refused.
        done = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json", "--checks", "all",
             "--exclude-checks", "positive_data_acceptance", "--max-time", "45", "-n", "40", "--seed", "17",
             "-H", f"Authorization: Bearer {TOKEN}", "--no-color"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path)  # its cache stays out of the repository
    summary = done.stdout[-3000:]
    print(summary)
    assert done.returncode == 0, summary
    assert " passed" in summary and "failure" not in summary.split("Test cases:")[-1]

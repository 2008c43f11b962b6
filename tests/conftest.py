from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ltr_pipeline.config import Settings
from ltr_pipeline.logs import configure_logging
from tests.helpers import S3_CREDENTIALS, moto_server, s3_client

_buckets = itertools.count()

# The service's background work (reloads, compiles, shadow scoring) runs at normal CPU priority in every test and in
# every process a test starts, so that the suite passes beside a CPU hog: at idle priority (the default) it would get
# no CPU at all while other processes keep both cores busy. tests/unit/test_priority.py checks the idle default.
BACKGROUND = {"LTR_BACKGROUND_PRIORITY": "normal"}
os.environ.update(BACKGROUND)


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    configure_logging(stream=None)
    yield


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings in a temporary home, isolated from the caller's environment and .env."""
    for name in list(os.environ):
        if name.startswith(("LTR_", "KAFKA_", "S3_", "AWS_")):
            monkeypatch.delenv(name)
    for name, value in BACKGROUND.items():
        monkeypatch.setenv(name, value)
    # Never let boto3 find the machine's own credentials or ask an instance-metadata service.
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.chdir(tmp_path)
    return Settings(home=tmp_path / "home", num_boost_round=60, early_stopping_rounds=15)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto S3 server for the session; each test gets its own bucket."""
    with moto_server() as (url, _):
        yield url


@pytest.fixture
def s3_settings(settings: Settings, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    bucket = f"litgo-models-{next(_buckets)}"
    s3_client(moto_endpoint).create_bucket(Bucket=bucket)
    env = {**S3_CREDENTIALS, "S3_ENDPOINT": moto_endpoint, "LTR_REGISTRY_URI": f"s3://{bucket}/ltr"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(home=settings.home, num_boost_round=60, early_stopping_rounds=15)

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ltr_pipeline.config import Settings
from ltr_pipeline.logs import configure_logging


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    configure_logging(stream=None)
    yield


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings in a temporary home, isolated from the caller's environment and .env."""
    for name in list(__import__("os").environ):
        if name.startswith(("LTR_", "KAFKA_", "S3_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return Settings(home=tmp_path / "home", num_boost_round=60, early_stopping_rounds=15)

"""Fixtures for the tests that start the ranking service."""

from __future__ import annotations

from pathlib import Path

import pytest

TOKEN = "s3cret-admin-token"


@pytest.fixture
def registry_dir(tmp_path: Path) -> Path:
    return tmp_path / "registry"


@pytest.fixture
def env(tmp_path: Path, registry_dir: Path) -> dict[str, str]:
    """The service's environment. No exploration: the tests check the model's own order (the exploration test
    turns it on)."""
    return {"LTR_HOME": str(tmp_path / "home"), "LTR_REGISTRY_URI": str(registry_dir), "LTR_POLL_SECONDS": "0.1",
            "LTR_ADMIN_TOKEN": TOKEN, "LTR_EXPLORE_FRACTION": "0"}

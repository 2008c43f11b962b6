"""The S3 registry against a real S3-protocol server (moto's standalone server over HTTP): faults and the loop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import orjson
import pytest
from pydantic import SecretStr

from ltr_pipeline.config import Settings
from ltr_pipeline.errors import ConfigError, RegistryError
from ltr_pipeline.registry import ModelRegistry, sha256
from ltr_pipeline.scoring import WeightedSumScorer, default_weights
from ltr_pipeline.simulate import SimConfig, simulate_days
from ltr_pipeline.storage import get_store
from ltr_pipeline.storage.mirror import MirrorStore
from tests.helpers import S3_CREDENTIALS, moto_server, s3_client, service_process, wait_until

NOW = datetime(2026, 11, 27, 2, 15, tzinfo=UTC)


def files(tag: str) -> dict[str, bytes]:
    return {"model.txt": f"model {tag}".encode(), "ltr_weights.json": b'{"A": 1}'}


def test_server_stopped_mid_publish_keeps_the_previous_version_live(settings: Settings) -> None:
    with moto_server() as (endpoint, proc):
        s3_client(endpoint).create_bucket(Bucket="litgo-models")
        fast = settings.model_copy(update={
            "registry_uri": "s3://litgo-models/ltr", "s3_endpoint": endpoint, "s3_timeout_seconds": 1.0,
            "s3_max_attempts": 1, "aws_access_key_id": SecretStr(S3_CREDENTIALS["AWS_ACCESS_KEY_ID"]),
            "aws_secret_access_key": SecretStr(S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]),
        })
        registry = ModelRegistry.from_settings(fast)
        v1 = registry.publish(files("1"), {}, now=NOW)
        real_write = registry.store.write

        def stop_server_before_latest(key: str, data: bytes) -> None:
            if key.startswith("latest/"):
                os.kill(proc.pid, signal.SIGSTOP)  # the server stops answering mid-publish
            real_write(key, data)

        registry.store.write = stop_server_before_latest  # type: ignore[method-assign]
        try:
            with pytest.raises(RegistryError, match="cannot reach S3"):
                registry.publish(files("2"), {}, now=datetime(2026, 11, 28, 2, 15, tzinfo=UTC))
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        registry.store.write = real_write  # type: ignore[method-assign]
        assert registry.live_version() == v1
        assert registry.load().model_text == "model 1"
        assert "20261128_0215" in registry.versions()  # complete but never made live

        proc.kill()
        proc.wait()
        with pytest.raises(RegistryError, match="cannot reach S3"):
            registry.live_version()


def test_missing_credentials_and_missing_bucket_are_clear(settings: Settings, moto_endpoint: str) -> None:
    anonymous = settings.model_copy(update={"s3_endpoint": moto_endpoint, "s3_max_attempts": 1})
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"):
        get_store("s3://litgo-models/ltr", anonymous).read("LATEST")
    keyed = anonymous.model_copy(update={
        "aws_access_key_id": SecretStr(S3_CREDENTIALS["AWS_ACCESS_KEY_ID"]),
        "aws_secret_access_key": SecretStr(S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]),
    })
    with pytest.raises(RegistryError, match="bucket 'no-such-bucket' does not exist"):
        ModelRegistry(get_store("s3://no-such-bucket/ltr", keyed)).publish(files("1"), {}, now=NOW)
    with pytest.raises(ConfigError, match="names no bucket"):
        get_store("s3:///ltr", keyed)


def test_mirror_writes_both_and_survives_a_broken_mirror(s3_settings: Settings, tmp_path: Path) -> None:
    mirrored = s3_settings.model_copy(update={"registry_mirror_uri": str(tmp_path / "mirror")})
    registry = ModelRegistry.from_settings(mirrored)
    version = registry.publish(files("1"), {}, now=NOW)
    local = ModelRegistry.from_settings(mirrored.model_copy(update={"registry_uri": str(tmp_path / "mirror"),
                                                                    "registry_mirror_uri": None}))
    assert local.live_version() == version and local.load().model_text == "model 1"

    (tmp_path / "broken").write_text("a file where the mirror's folder should be")
    broken = ModelRegistry.from_settings(mirrored.model_copy(update={"registry_mirror_uri": str(tmp_path / "broken")}))
    v2 = broken.publish(files("2"), {}, now=datetime(2026, 11, 28, 2, 15, tzinfo=UTC))
    assert broken.live_version() == v2  # the primary (the source of truth) moved
    assert isinstance(broken.store, MirrorStore) and broken.store.mirror_errors > 0


def _ltr(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "ltr_pipeline.cli", *args], env=env, capture_output=True,
                          timeout=300)


def test_run_publishes_to_s3_serve_reloads_and_rollback_is_live_within_a_poll(s3_settings: Settings) -> None:
    names = s3_settings.feature_names
    legacy = WeightedSumScorer(default_weights(names), names)
    simulate_days(SimConfig(cases_per_day=100), date(2026, 11, 1), 7, s3_settings.events_path,
                  lambda _: (legacy, None))
    env = {**os.environ, "LTR_HOME": str(s3_settings.home), "LTR_TRAIN_DAYS": "6", "LTR_NUM_BOOST_ROUND": "40",
           "LTR_POLL_SECONDS": "0.2", "LTR_NDCG_MIN": "0.5", "LTR_MAX_REGRESSION": "1"}
    first = _ltr(["run", "--date", "2026-11-06", "--json"], env)
    assert first.returncode == 0, first.stderr.decode()
    v1 = orjson.loads(first.stdout)["published_version"]
    assert orjson.loads(first.stdout)["registry"].startswith("s3://litgo-models-")

    with service_process(env) as url:
        assert httpx.get(f"{url}/ltr/health").json()["model_version"] == v1
        second = _ltr(["run", "--date", "2026-11-07", "--json"], env)
        assert second.returncode == 0, second.stderr.decode()
        v2 = orjson.loads(second.stdout)["published_version"]
        wait_until(lambda: httpx.get(f"{url}/ltr/health").json()["model_version"] == v2, what="reload of v2")

        rolled = _ltr(["registry", "rollback", v1, "--reason", "test", "--json"], env)
        assert rolled.returncode == 0, rolled.stderr.decode()
        # Live at the next poll (0.2 s here); waited on as a condition, not timed: the machine may be busy.
        wait_until(lambda: httpx.get(f"{url}/ltr/health").json()["model_version"] == v1,
                   what="the rollback to be live")

        # A tampered object behind a moved pointer: refused, the old model stays, the failure is counted.
        client = s3_client(s3_settings.s3_endpoint or "")
        bucket = (s3_settings.registry_uri or "").removeprefix("s3://").split("/")[0]
        client.put_object(Bucket=bucket, Key=f"ltr/{v2}/model.txt", Body=b"tree\nnot really a model")
        meta = client.get_object(Bucket=bucket, Key=f"ltr/{v2}/metadata.json")["Body"].read()
        pointer = {"version": v2, "sha256": {"metadata.json": sha256(meta)}}
        client.put_object(Bucket=bucket, Key="ltr/LATEST", Body=orjson.dumps(pointer))

        def failed_reloads() -> float:
            lines = httpx.get(f"{url}/metrics").text.splitlines()
            failed = 'ltr_reloads_total{outcome="failed"}'
            return sum(float(x.rsplit(" ", 1)[1]) for x in lines if x.startswith(failed))

        wait_until(lambda: failed_reloads() >= 1, what="the tampered version to be refused")
        health = httpx.get(f"{url}/ltr/health").json()
        assert health["model_version"] == v1 and "sha256" in health["last_reload"]["error"]

    listing = orjson.loads(_ltr(["registry", "list", "--json"], env).stdout)
    assert [row["version"] for row in listing] == [v1, v2]
    audit = orjson.loads(_ltr(["registry", "audit"], env).stdout)
    assert [entry["action"] for entry in audit] == ["publish", "publish", "rollback"]

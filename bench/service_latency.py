"""`/ltr/rank` against an HTTP endpoint that does nothing and against a plain FastAPI + pydantic + Booster.predict
endpoint, at 20, 50 and 200 candidates, all side by side in one run; plus in-process scoring per backend.

Every server is a real uvicorn process on loopback (uvloop + httptools, one worker, no access log):
    noop          bench.servers:noop, the HTTP floor
    plain         bench.servers:plain, the usual first ranking endpoint
    ltr           `ltr serve` with the compiled (lleaves) scorer, measured once it is serving
    ltr-booster   `ltr serve` with LTR_COMPILED_SCORER=false (LightGBM's Booster.predict)
    ltr-interleaved  `ltr serve`, compiled, with a challenger and LTR_INTERLEAVE_FRACTION=1: every ranking is a
                  team-draft of both models (interleaving's serving cost: the challenger's scoring plus the draft)
The models: LightGBM LambdaRank with the pipeline's parameters, 300 trees, 8 features (the challenger: another seed).

Latency: one keep-alive connection per server, one request at a time, from a small raw-socket client (so the
client adds as little as it can), in short blocks per server (a server kept busy stays warm; requests interleaved
one by one across servers measured every server cold), the order of servers reversed every round; the figure is
the median over rounds of each round's percentile.
Requests cycle through 64 different bodies (different feature values, as real traffic has), and in-process predict
cycles through the same kind of rows: predicting one fixed array in a loop lets the CPU's branch predictor learn the
trees' paths for those rows, up to twice as quick as any stream of distinct requests gets (reported beside, as
"same rows").
Throughput: 3 client processes, each one connection, one request at a time, for `--seconds` per round.

    .venv/bin/python -m bench.service_latency [--rounds 5] [--requests 400] [--seconds 2] [--json]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import lightgbm as lgb
import numpy as np
import orjson

from bench.pipeline_throughput import NAMES, dataset
from ltr_pipeline.compiled import CompiledScorer, compile_model
from ltr_pipeline.config import Settings
from ltr_pipeline.demo import free_port
from ltr_pipeline.logs import configure_logging
from ltr_pipeline.registry import ModelRegistry
from ltr_pipeline.scoring import LgbmScorer, Scorer, WeightedSumScorer, default_weights
from ltr_pipeline.service.interleave import RivalScorer
from ltr_pipeline.service.rank import parse_rank_request
from ltr_pipeline.storage.local import LocalStore
from ltr_pipeline.train import lgb_params

SIZES = (20, 50, 200)
SERVERS = ("noop", "plain", "ltr", "ltr-booster", "ltr-interleaved")
REPO = Path(__file__).resolve().parents[1]


class Both(Scorer):
    """The live model then the challenger, as an interleaved request scores them when no core is free for the
    challenger's thread: the second runs with the first's code in the CPU caches, so it costs more than alone."""

    algorithm, backend = "ltr", "two"

    def __init__(self, live: Scorer, challenger: Scorer) -> None:
        self.live, self.challenger = live, challenger

    def score(self, features: np.ndarray) -> np.ndarray:
        self.live.score(features)
        return self.challenger.score(features)


class Beside(Both):
    """The live model, with the challenger on the service's own thread beside it (service/interleave.py)."""

    def __init__(self, live: Scorer, challenger: Scorer) -> None:
        super().__init__(live, challenger)
        self.rival = RivalScorer()
        self.rival.start()

    def score(self, features: np.ndarray) -> np.ndarray:
        pending = self.rival.submit(self.challenger, features)
        self.live.score(features)
        scores = pending.result()
        assert isinstance(scores, np.ndarray), scores
        return scores


def train_model(path: Path, seed: int = 42) -> str:
    qs = dataset(20000)
    params = {**lgb_params(Settings(num_threads=2, seed=seed)), "verbosity": -1, "bagging_fraction": 0.8,
              "bagging_freq": 1}
    booster = lgb.train(params, lgb.Dataset(qs.features, qs.labels, group=qs.qsizes), 300)
    text = str(booster.model_to_string())
    path.write_text(text)
    return text


class Client:
    """HTTP/1.1 over one keep-alive socket: send prepared bytes, read one Content-Length response.

    `spin=True` polls the socket instead of sleeping in `recv` while the server works. On this VM a client that
    sleeps longer than ~0.2 ms wakes up late: against a server that only burns 400 us per request, a sleeping client
    measured p50 569 us and a spinning one 498 us, while at the no-op endpoint they agreed (70 / 62 us). That delay
    is the client machine's, not the server's, so latency is measured by a spinning client (one connection, one
    core), with the sleeping client's figures beside. Throughput uses sleeping clients: three spinning ones would
    take the server's cores.
    """

    def __init__(self, port: int, spin: bool = False) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        self.spin = spin

    def send(self, raw: bytes) -> bytes:
        self.sock.sendall(raw)
        if self.spin:
            return self._receive_spinning()
        status = self.reader.readline()
        length = 0
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = self.reader.read(length)
        if not status.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{status!r} {body[:200]!r}")
        return body

    def _receive_spinning(self) -> bytes:
        buf, start, end = b"", -1, -1
        while end < 0 or len(buf) < end:
            try:
                buf += self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            if end < 0 and (head := buf.find(b"\r\n\r\n")) >= 0:
                at = buf.lower().index(b"content-length:")
                start = head + 4
                end = start + int(buf[at + 15:buf.index(b"\r\n", at)])
        if not buf.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(repr(buf[:300]))
        return buf[start:end]

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def http_request(body: bytes) -> bytes:
    return (b"POST /ltr/rank HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body))


def rank_body(size: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return orjson.dumps({"case_id": f"case-{seed}", "candidates": [
        {"lawyer_id": f"lawyer-{i}", "features": dict(zip(NAMES, rng.random(len(NAMES)).round(4).tolist(),
                                                          strict=True))}
        for i in range(size)
    ]})


POOL = 64


def bodies(size: int, first_seed: int) -> list[bytes]:
    return [http_request(rank_body(size, first_seed + k)) for k in range(POOL)]


def timed(call: Callable[[], object], n: int, warmup: int) -> list[float]:
    """Seconds taken by each of `n` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def latencies(port: int, raws: list[bytes], n: int, spin: bool = True) -> list[float]:
    client = Client(port, spin)
    cycle = itertools.cycle(raws)
    try:
        return timed(lambda: client.send(next(cycle)), n, warmup=50)
    finally:
        client.close()


def _count_requests(port: int, raws: list[bytes], start: Any, deadline_after: float, result: Any) -> None:
    client = Client(port)
    client.send(raws[0])
    start.wait()
    deadline, n = time.perf_counter() + deadline_after, 0
    for raw in itertools.cycle(raws):
        if time.perf_counter() >= deadline:
            break
        client.send(raw)
        n += 1
    client.close()
    result.put(n)


def throughput(port: int, raws: list[bytes], seconds: float, clients: int = 3) -> float:
    ctx = mp.get_context("fork")
    start, result = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_count_requests, args=(port, raws, start, seconds, result)) for _ in range(clients)]
    for proc in procs:
        proc.start()
    time.sleep(0.3)  # let every client connect and warm up before the clock starts (not a synchronisation)
    start.set()
    total = sum(result.get(timeout=seconds + 30) for _ in procs)
    for proc in procs:
        proc.join()
    return total / seconds


@contextmanager
def server(cmd: list[str], env: dict[str, str], ready: str = "/ltr/health") -> Iterator[int]:
    port = free_port()
    cmd = [c.replace("{port}", str(port)) for c in cmd]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}{ready}", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{cmd} did not start")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def wait_for_scorer(port: int, backend: str, challenger: bool = False) -> None:
    def serving() -> bool:
        health = httpx.get(f"http://127.0.0.1:{port}/ltr/health").json()
        return bool(health["scorer"] == backend and (
            not challenger or (health["challenger"] or {}).get("scorer") == backend))

    deadline = time.monotonic() + 300
    while not serving():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the service never served with {backend}")
        time.sleep(0.2)


def in_process(scorers: dict[str, Scorer], n: int = 2000) -> dict[str, dict[int, float]]:
    """p50 seconds per scorer and size: over distinct rows like the requests' (name), and one array again and again
    (name + " (same rows)")."""
    out: dict[str, dict[int, float]] = {}
    for name, scorer in scorers.items():
        for size in SIZES:
            matrices = [parse_rank_request(rank_body(size, k), NAMES)[3] for k in range(POOL)]
            varied = functools.partial(lambda score, rows: score(next(rows)), scorer.score, itertools.cycle(matrices))
            out.setdefault(name, {})[size] = statistics.median(timed(varied, n, 100))
            same = functools.partial(scorer.score, matrices[0])
            out.setdefault(f"{name} (same rows)", {})[size] = statistics.median(timed(same, n, 100))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=300, help="requests per server, size and round")
    parser.add_argument("--seconds", type=float, default=2.0, help="throughput: seconds per server, size and round")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    configure_logging(stream=None)

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        home = Path(tmp)
        model_file = home / "model.txt"
        text = train_model(model_file)
        registry = ModelRegistry(LocalStore(home / "registry"))
        challenger_text = train_model(home / "challenger.txt", seed=7)
        weights = orjson.dumps(default_weights(NAMES))
        challenger = registry.publish({"model.txt": challenger_text.encode(), "ltr_weights.json": weights},
                                      {"note": "bench challenger"})
        registry.publish({"model.txt": text.encode(), "ltr_weights.json": weights}, {"note": "bench"})
        started = time.perf_counter()
        compiled = CompiledScorer(*compile_model(text, home / "compiled"), NAMES)
        compile_seconds = time.perf_counter() - started
        rival = CompiledScorer(*compile_model(challenger_text, home / "compiled"), NAMES)
        predict = in_process({"lightgbm": LgbmScorer(text, NAMES), "lleaves": compiled,
                              "weighted_sum (legacy)": WeightedSumScorer(default_weights(NAMES), NAMES),
                              "lleaves, live then challenger": Both(compiled, rival),
                              "lleaves, challenger on its thread": Beside(compiled, rival)})

        base_env = {"BENCH_MODEL": str(model_file), "BENCH_FEATURES": ",".join(NAMES), "LTR_HOME": str(home),
                    "LTR_REGISTRY_URI": str(home / "registry"), "LTR_FEATURES": ",".join(NAMES),
                    "LTR_EVENT_SINK": "none", "LTR_POLL_SECONDS": "3600"}
        uvicorn = [sys.executable, "-m", "uvicorn", "--port", "{port}", "--log-level", "warning", "--no-access-log"]
        serve = [sys.executable, "-m", "ltr_pipeline.cli", "serve", "--port", "{port}"]
        ports = {
            "noop": stack.enter_context(server([*uvicorn, "bench.servers:noop"], base_env, ready="/")),
            "plain": stack.enter_context(server([*uvicorn, "--factory", "bench.servers:plain"], base_env,
                                                ready="/docs")),
            "ltr": stack.enter_context(server(serve, base_env)),
            "ltr-booster": stack.enter_context(server(serve, {**base_env, "LTR_COMPILED_SCORER": "false"})),
            "ltr-interleaved": stack.enter_context(server(serve, {**base_env, "LTR_CHALLENGER_VERSION": challenger,
                                                                  "LTR_INTERLEAVE_FRACTION": "1"})),
        }
        wait_for_scorer(ports["ltr"], "lleaves")
        wait_for_scorer(ports["ltr-interleaved"], "lleaves", challenger=True)
        wait_for_scorer(ports["ltr-booster"], "lightgbm")

        p50: dict[tuple[str, int], list[float]] = {}
        p99: dict[tuple[str, int], list[float]] = {}
        p50_sleeping: dict[tuple[str, int], list[float]] = {}
        rps: dict[tuple[str, int], list[float]] = {}
        for round_ in range(args.rounds):
            for size in SIZES:
                raws = bodies(size, round_ * POOL)
                order = SERVERS if round_ % 2 == 0 else tuple(reversed(SERVERS))
                for name in order:
                    times = np.array(latencies(ports[name], raws, args.requests))
                    p50.setdefault((name, size), []).append(float(np.percentile(times, 50)))
                    p99.setdefault((name, size), []).append(float(np.percentile(times, 99)))
                    sleeping = latencies(ports[name], raws, args.requests, spin=False)
                    p50_sleeping.setdefault((name, size), []).append(float(np.percentile(sleeping, 50)))
                for name in order:
                    rps.setdefault((name, size), []).append(throughput(ports[name], raws, args.seconds))
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)

    med = {k: statistics.median(v) for k, v in p50.items()}
    med_sleeping = {k: statistics.median(v) for k, v in p50_sleeping.items()}
    report: dict[str, Any] = {
        "compile_seconds": round(compile_seconds, 2),
        "in_process_p50_us": {b: {s: round(v * 1e6, 1) for s, v in d.items()} for b, d in predict.items()},
        "http": [
            {"server": name, "candidates": size, "p50_ms": round(med[name, size] * 1e3, 3),
             "p99_ms": round(statistics.median(p99[name, size]) * 1e3, 3),
             "p50_ms_sleeping_client": round(med_sleeping[name, size] * 1e3, 3),
             "req_per_s": round(statistics.median(rps[name, size]))}
            for size in SIZES for name in SERVERS
        ],
    }
    checks = {}
    for size in SIZES:
        fastest = min(d[size] for b, d in predict.items() if b in ("lightgbm", "lleaves"))
        same = min(d[size] for b, d in predict.items() if b in ("lightgbm (same rows)", "lleaves (same rows)"))
        bound = 1.5 * (med["noop", size] + fastest)
        checks[size] = {
            "ltr_p50_ms": round(med["ltr", size] * 1e3, 3), "bound_ms": round(bound * 1e3, 3),
            "p50_ratio_to_bound": round(med["ltr", size] / bound, 3),
            "p50_ratio_to_bound_same_rows": round(med["ltr", size] / (1.5 * (med["noop", size] + same)), 3),
            "p50_ratio_to_bound_sleeping_client": round(
                med_sleeping["ltr", size] / (1.5 * (med_sleeping["noop", size] + fastest)), 3),
            "throughput_ratio_to_plain": round(statistics.median(rps["ltr", size]) /
                                               statistics.median(rps["plain", size]), 2),
            # Interleaving may add at most the challenger's scoring time plus 5% of the plain ranking's p50: the
            # challenger's time alone, and as it runs in an interleaved request (after the live model).
            "interleave_added_ms": round((med["ltr-interleaved", size] - med["ltr", size]) * 1e3, 3),
            "interleave_added_ms_sleeping_client": round(
                (med_sleeping["ltr-interleaved", size] - med_sleeping["ltr", size]) * 1e3, 3),
            "interleave_allowed_ms": round((predict["lleaves"][size] + 0.05 * med["ltr", size]) * 1e3, 3),
            "interleave_allowed_in_context_ms": round(
                (predict["lleaves, live then challenger"][size] - predict["lleaves"][size]
                 + 0.05 * med["ltr", size]) * 1e3, 3),
        }
    report["acceptance"] = checks
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())
        return
    print(f"compiling the 300-tree model with lleaves: {compile_seconds:.1f} s")
    print("\nin-process predict, p50 (us): " + ", ".join(
        f"{b}: " + " / ".join(f"{v * 1e6:.0f}" for v in d.values()) for b, d in predict.items())
        + f"  (at {'/'.join(map(str, SIZES))} candidates)")
    print("\n| server | candidates | p50 ms | p99 ms | p50 ms, sleeping client | req/s (3 clients) |"
          "\n|---|---:|---:|---:|---:|---:|")
    for row in report["http"]:
        print(f"| {row['server']} | {row['candidates']} | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} | "
              f"{row['p50_ms_sleeping_client']:.3f} | {row['req_per_s']:,} |")
    print("\n| candidates | ltr p50 ms | 1.5 x (noop p50 + fastest predict p50) ms | ratio | ratio, same-rows "
          "predict | ratio, sleeping client | ltr / plain req/s | interleaving adds ms (busy / sleeping client) | "
          "allowed ms (challenger alone / after the live model) |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, c in checks.items():
        print(f"| {size} | {c['ltr_p50_ms']:.3f} | {c['bound_ms']:.3f} | {c['p50_ratio_to_bound']:.2f} | "
              f"{c['p50_ratio_to_bound_same_rows']:.2f} | {c['p50_ratio_to_bound_sleeping_client']:.2f} | "
              f"{c['throughput_ratio_to_plain']:.2f} | {c['interleave_added_ms']:.3f} / "
              f"{c['interleave_added_ms_sleeping_client']:.3f} | "
              f"{c['interleave_allowed_ms']:.3f} / {c['interleave_allowed_in_context_ms']:.3f} |")


if __name__ == "__main__":
    main()

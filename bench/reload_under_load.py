"""Reloads under steady load: `/ltr/rank` at a fixed rate while the registry publishes 20 new versions, one of
them broken (its model file truncated after publishing, the pointer moved to it), against `ltr serve` (uvicorn,
compiled scorer on, registry polled every 0.2 s).

Each version is a distinct LightGBM LambdaRank model (100 trees, 8 features), so every reload also compiles a new
model with lleaves in the background. After a 5 s steady baseline, each publish gets a slot of `--interval` s and is
followed by a quiet slot as long, where nothing is published: the control, measured beside the reloads in the same
run, so what the machine does on its own is not blamed on the reloads. Counts failed requests, the versions seen,
and the requests slower than 2x the steady p99 in publish and in quiet slots (outside the broken attempt), and
reports latency percentiles before (1 s before a publish), during (the 1.5 s after it: poll, load, warm-up, compile,
swap) and after (the rest of its slot) each swap. The load comes from a process of its own with its garbage collector
off, and the publishes run at idle CPU priority, so neither the rig's Python nor its publishing is counted against
the server.

    .venv/bin/python -m bench.reload_under_load [--reloads 20] [--rate 200] [--interval 3] [--json]
        [--booster-only | --no-compile-wait]
"""

from __future__ import annotations

import argparse
import bisect
import gc
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import lightgbm as lgb
import numpy as np
import orjson

from bench.pipeline_throughput import NAMES, dataset
from bench.service_latency import Client, http_request, rank_body, server
from ltr_pipeline.config import Settings
from ltr_pipeline.logs import configure_logging
from ltr_pipeline.priority import background_priority
from ltr_pipeline.registry import ModelRegistry
from ltr_pipeline.scoring import default_weights
from ltr_pipeline.storage.local import LocalStore
from ltr_pipeline.train import lgb_params


def models(n: int) -> list[bytes]:
    qs = dataset(5000)
    out = []
    for seed in range(n):
        params = {**lgb_params(Settings(num_threads=2, seed=seed)), "bagging_fraction": 0.8, "bagging_freq": 1,
                  "feature_fraction": 0.9}
        booster = lgb.train(params, lgb.Dataset(qs.features, qs.labels, group=qs.qsizes), 100)
        out.append(str(booster.model_to_string()).encode())
    return out


def publish_broken(root: Path, good: str, name: str) -> None:
    """A version whose model file is cut in half after its checksum was recorded, made live by the pointer."""
    shutil.copytree(root / good, root / name)
    model = (root / name / "model.txt").read_bytes()
    (root / name / "model.txt").write_bytes(model[: len(model) // 2])
    pointer = orjson.loads((root / "LATEST").read_bytes())
    (root / "LATEST").write_bytes(orjson.dumps({**pointer, "version": name}))


class Load:
    """One keep-alive connection sending a request every 1/rate s from a process of its own, with its garbage
    collector off: neither this process's threads (the publishes) nor its collector can hold up a timed request.
    `records` after `finish()`: (send time, latency, status, version), times from `time.perf_counter` (one clock
    for every process on Linux)."""

    def __init__(self, port: int, rate: float) -> None:
        context = multiprocessing.get_context("spawn")
        self.stop, ready = context.Event(), context.Event()
        self.records: list[tuple[float, float, int, str | None]] = []
        self._receive, send = context.Pipe(duplex=False)
        self.process = context.Process(target=drive, args=(port, 1.0 / rate, ready, self.stop, send))
        self.process.start()
        if not ready.wait(60):
            raise RuntimeError("the load process did not start")

    def finish(self) -> None:
        self.stop.set()
        if not self._receive.poll(60):
            raise RuntimeError("the load process sent no records")
        self.records = self._receive.recv()
        self.process.join()


def drive(port: int, period: float, ready: Any, stop: Any, out: Any) -> None:
    gc.disable()
    records = []
    client = Client(port)
    raw = http_request(rank_body(50, 0))
    next_at = time.perf_counter()
    ready.set()
    while not stop.is_set():
        now = time.perf_counter()
        if now < next_at:
            time.sleep(next_at - now)  # pacing the load, not synchronisation
        started = time.perf_counter()
        try:
            version = orjson.loads(client.send(raw))["model_version"]
            status = 200
        except Exception:
            version, status = None, 0
            client = Client(port)
        records.append((started, time.perf_counter() - started, status, version))
        next_at += period
    out.send(records)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1e3 if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reloads", type=int, default=20)
    parser.add_argument("--broken-at", type=int, default=10, help="which reload publishes the broken version")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--interval", type=float, default=3.0,
                        help="seconds from a publish to the quiet slot after it, and of that quiet slot")
    parser.add_argument("--booster-only", action="store_true", help="no compiled scorer (LTR_COMPILED_SCORER=false)")
    parser.add_argument("--no-compile-wait", action="store_true",
                        help="a new version's booster goes live at once, until its compiled scorer is ready "
                             "(LTR_COMPILE_WAIT_SECONDS=0)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    configure_logging(stream=None)

    texts = models(args.reloads + 1)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        root = home / "registry"
        registry = ModelRegistry(LocalStore(root))
        weights = orjson.dumps(default_weights(NAMES))
        first = registry.publish({"model.txt": texts[0], "ltr_weights.json": weights}, {})
        env = {"LTR_HOME": str(home), "LTR_REGISTRY_URI": str(root), "LTR_FEATURES": ",".join(NAMES),
               "LTR_EVENT_SINK": "none", "LTR_POLL_SECONDS": "0.2",
               "LTR_COMPILED_SCORER": "false" if args.booster_only else "true",
               **({"LTR_COMPILE_WAIT_SECONDS": "0"} if args.no_compile_wait else {})}
        with server([sys.executable, "-m", "ltr_pipeline.cli", "serve", "--port", "{port}"], env) as port:
            url = f"http://127.0.0.1:{port}"
            while httpx.get(f"{url}/ltr/health").json()["scorer"] != ("lightgbm" if args.booster_only else "lleaves"):
                time.sleep(0.1)
            load = Load(port, args.rate)
            # The publishes stand for the training pipeline, which runs on another machine: here they take only
            # CPU time the server and the load leave (the publish moment itself counted 1-2 slow requests a run).
            background_priority("idle")
            time.sleep(5.0)  # the steady baseline: 5 s of load with nothing happening
            steady_end = time.perf_counter()
            # Publishes alternate with quiet slots of the same length: the quiet ones are the control, the same
            # server, load and machine minutes with nothing published, so the machine's own noise is measured beside
            # the reloads' in one run.
            slots: list[tuple[float, str | None, bool]] = []  # (start, version published or None: quiet, broken)
            last_good = first
            for i in range(1, args.reloads + 1):
                at = time.perf_counter()
                if i == args.broken_at:
                    name = f"{last_good[:13]}_99"  # a valid, unused version name: refused for its checksum
                    publish_broken(root, last_good, name)
                    slots.append((at, name, True))
                else:
                    last_good = registry.publish({"model.txt": texts[i], "ltr_weights.json": weights}, {})
                    slots.append((at, last_good, False))
                print(f"reload {i}/{args.reloads}: {slots[-1][1]}", file=sys.stderr)
                time.sleep(args.interval)  # pacing the publishes
                slots.append((time.perf_counter(), None, False))
                time.sleep(args.interval)
            load.finish()
            health = httpx.get(f"{url}/ltr/health").json()

    records = load.records
    steady = [lat for t, lat, _, _ in records if t < steady_end]
    steady_p99 = pct(steady, 99)
    starts = [at for at, _, _ in slots]
    broken_slot = next(i for i, (_, _, broken) in enumerate(slots) if broken)
    # The broken attempt lasts until the next good publish: its slot and the quiet one after it.
    excluded = {broken_slot, broken_slot + 1}
    by_kind: dict[str, list[tuple[float, float]]] = {"reload": [], "quiet": []}  # (ms after slot start, latency)
    for t, lat, _, _ in records:
        if t < steady_end:
            continue
        slot = bisect.bisect_right(starts, t) - 1
        if slot not in excluded:
            by_kind["quiet" if slots[slot][1] is None else "reload"].append(((t - starts[slot]) * 1e3, lat))

    def slow_after(kind: str) -> list[int]:
        return sorted(round(after) for after, lat in by_kind[kind] if lat * 1e3 > 2 * steady_p99)

    windows: list[dict[str, Any]] = []
    for at, version, broken in slots:
        if version is None:
            continue

        def within(lo: float, hi: float, at: float = at) -> list[float]:
            return [lat for t, lat, _, _ in records if at + lo <= t < at + hi]

        seen = [v for t, _, _, v in records if at <= t < at + args.interval]
        windows.append({
            "version": version, "broken": broken,
            "before_p50_ms": pct(within(-1.0, 0.0), 50), "before_p99_ms": pct(within(-1.0, 0.0), 99),
            "during_p50_ms": pct(within(0.0, 1.5), 50), "during_p99_ms": pct(within(0.0, 1.5), 99),
            "during_max_ms": pct(within(0.0, 1.5), 100),
            "after_p50_ms": pct(within(1.5, args.interval), 50), "after_p99_ms": pct(within(1.5, args.interval), 99),
            "served_new_version": version in seen,
        })
    kinds = {
        kind: {"requests": len(rows), "p50_ms": pct([lat for _, lat in rows], 50),
               "p99_ms": pct([lat for _, lat in rows], 99), "max_ms": pct([lat for _, lat in rows], 100),
               "max_over_steady_p99": pct([lat for _, lat in rows], 100) / steady_p99,
               "slower_than_2x_steady_p99": len(slow_after(kind)), "their_ms_after_the_slot_start": slow_after(kind)}
        for kind, rows in by_kind.items()
    }
    report: dict[str, Any] = {
        "requests": len(records), "failed": sum(1 for r in records if r[2] != 200),
        "versions_seen": len({r[3] for r in records if r[3]}),
        "published": sum(1 for _, v, broken in slots if v and not broken) + 1,
        "steady_p50_ms": pct(steady, 50), "steady_p99_ms": steady_p99,
        "reload_slots": kinds["reload"], "quiet_slots": kinds["quiet"],
        "slowest_during_broken_ms": max((w["during_max_ms"] for w in windows if w["broken"]), default=None),
        "final_version": health["model_version"], "final_scorer": health["scorer"],
        "reload_failures": health["service_metrics"]["reload_failures"],
        "windows": windows,
    }
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return
    print(f"{report['requests']} requests at {args.rate:.0f}/s, 50 candidates; {report['failed']} failed; "
          f"{report['versions_seen']} versions seen of {report['published']} good ones published; "
          f"reload failures: {report['reload_failures']} (the broken version)")
    print(f"steady: p50 {report['steady_p50_ms']:.3f} ms, p99 {steady_p99:.3f} ms")
    print("\n| slots (outside the broken attempt) | requests | p50 / p99 / max ms | max / steady p99 | "
          "slower than 2x steady p99 | at ms after the slot start |\n|---|---:|---|---:|---:|---|")
    for kind, label in (("reload", "a publish"), ("quiet", "quiet (control)")):
        k = report[f"{kind}_slots"]
        print(f"| {label} | {k['requests']:,} | {k['p50_ms']:.3f} / {k['p99_ms']:.3f} / {k['max_ms']:.3f} | "
              f"{k['max_over_steady_p99']:.2f} | {k['slower_than_2x_steady_p99']} | "
              f"{', '.join(map(str, k['their_ms_after_the_slot_start']))} |")
    print("\n| reload | version | before p50/p99 ms | during p50/p99/max ms | after p50/p99 ms |")
    print("|---:|---|---|---|---|")
    for i, w in enumerate(windows, start=1):
        print(f"| {i} | {w['version']}{' (broken)' if w['broken'] else ''} | {w['before_p50_ms']:.3f} / "
              f"{w['before_p99_ms']:.3f} | {w['during_p50_ms']:.3f} / {w['during_p99_ms']:.3f} / "
              f"{w['during_max_ms']:.3f} | {w['after_p50_ms']:.3f} / {w['after_p99_ms']:.3f} |")
    print("\nmedian over reloads: during p99 "
          f"{statistics.median(w['during_p99_ms'] for w in windows):.3f} ms, after p99 "
          f"{statistics.median(w['after_p99_ms'] for w in windows):.3f} ms")


if __name__ == "__main__":
    main()

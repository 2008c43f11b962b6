"""`ltr compare A B`: two published versions side by side on the same holdout, and the window's drift.

- metrics: nDCG@1/3/5/10, Hit@3 and MRR of both versions on one run's holdout (the newest run's, or `--date`), with
  a paired bootstrap 95% interval of each difference (B - A, resampling the holdout's cases);
- scoring latency of each, per case, as a histogram;
- feature weights, training parameters and data of each, side by side;
- drift of that run's window against A's training data (A: typically the live version, B a candidate): PSI per
  feature (A's metadata records its training deciles) and of the label distribution, flagged past LTR_GUARD_MAX_PSI.

Pure measures here; the page is rendered from a Jinja2 template (templates/compare.html.j2).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from ltr_pipeline import pages
from ltr_pipeline.charts import bar_chart
from ltr_pipeline.config import Settings
from ltr_pipeline.errors import DataError
from ltr_pipeline.guard import psi, psi_of
from ltr_pipeline.measures import ndcg_key, offsets, per_query
from ltr_pipeline.record import FeatureReference
from ltr_pipeline.registry import ModelRegistry
from ltr_pipeline.runs import Run
from ltr_pipeline.scoring import LgbmScorer

BOOTSTRAP = 2000
LATENCY_BINS_MS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 15.0)


@dataclass(frozen=True)
class MetricRow:
    name: str
    a: float
    b: float
    difference: float
    low: float  # paired bootstrap 95% interval of b - a
    high: float

    @property
    def verdict(self) -> str:
        return "B better" if self.low > 0 else "A better" if self.high < 0 else "no clear difference"


@dataclass(frozen=True)
class DriftRow:
    name: str
    psi: float
    flagged: bool


@dataclass
class VersionComparison:
    a: str
    b: str
    run_date: str
    cases: int
    metrics: list[MetricRow]
    latency_ms: dict[str, list[float]]  # per version, one value per case
    drift: list[DriftRow]
    label_drift: DriftRow | None
    psi_limit: float
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)


def paired_bootstrap(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], rounds: int = BOOTSTRAP,
                     seed: int = 0) -> tuple[float, float, float]:
    """Mean of b - a over paired cases and its 95% percentile interval from resampling the cases."""
    diff = b - a
    if diff.size == 0:
        return float("nan"), float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, diff.size, (rounds, diff.size))
    means = diff[idx].mean(axis=1)
    return float(diff.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def label_psi(counts: dict[str, int], labels: npt.NDArray[np.int64]) -> float:
    """PSI of the window's label distribution against the training's label counts."""
    grades = sorted({int(g) for g in counts} | {int(v) for v in np.unique(labels)})
    expected = np.array([counts.get(str(g), 0) for g in grades], dtype=np.float64)
    observed = np.array([np.count_nonzero(labels == g) for g in grades], dtype=np.float64)
    return psi_of(observed / max(observed.sum(), 1), expected / max(expected.sum(), 1))


def _newest_run(settings: Settings) -> date:
    found = sorted(p.parent.name for p in settings.runs_path.glob("*/dataset.npz"))
    if not found:
        raise DataError(f"no run with a dataset in {settings.runs_path}: run `ltr run` first")
    return date.fromisoformat(found[-1])


def compare_versions(settings: Settings, a: str, b: str, run_date: date | None = None) -> VersionComparison:
    registry = ModelRegistry.from_settings(settings)
    names = settings.feature_names
    run = Run(settings, run_date or _newest_run(settings))
    split = run.load_split()
    holdout = split.holdout
    bounds = offsets(holdout.qsizes)
    measured: dict[str, dict[str, npt.NDArray[np.float64]]] = {}
    latency: dict[str, list[float]] = {}
    meta = {}
    for version in (a, b):
        bundle = registry.load(version)
        meta[version] = bundle.metadata
        scorer = LgbmScorer(bundle.model_text, names)
        scores, took = np.empty(holdout.rows), []
        for lo, hi in itertools.pairwise(bounds):
            started = time.perf_counter()
            scores[lo:hi] = scorer.score(holdout.features[lo:hi])
            took.append((time.perf_counter() - started) * 1000)
        measured[version], latency[version] = per_query(scores, holdout.labels, holdout.qsizes), took
    metrics = [MetricRow(name, float(measured[a][name].mean()), float(measured[b][name].mean()),
                         *paired_bootstrap(measured[a][name], measured[b][name], seed=settings.seed))
               for name in measured[a]]
    reference = msgspec.convert(meta[a].get("reference", {}), dict[str, FeatureReference])
    window = np.concatenate([split.train.features, split.valid.features, holdout.features])
    limit = settings.guard_max_psi
    drift = [DriftRow(name, value, value > limit) for name, value in (
        (name, psi(reference[name], window[:, j])) for j, name in enumerate(names) if name in reference)]
    counts = meta[a].get("data", {}).get("dataset", {}).get("label_counts")
    labels = np.concatenate([split.train.labels, split.valid.labels, holdout.labels])
    label_row = None
    if counts:
        value = label_psi(counts, labels)
        label_row = DriftRow("labels", value, value > limit)
    return VersionComparison(a=a, b=b, run_date=run.label, cases=int(measured[a][ndcg_key(5)].size),
                             metrics=metrics, latency_ms=latency, drift=drift, label_drift=label_row,
                             psi_limit=limit, meta=meta)


def _side_by_side(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    return [(key, a.get(key), b.get(key)) for key in sorted(set(a) | set(b))]


def _histogram(values: Sequence[float]) -> dict[str, float]:
    edges = [0.0, *LATENCY_BINS_MS, float("inf")]
    counts = np.histogram(values, bins=edges)[0]
    return {(f"< {hi:g} ms" if hi != float("inf") else f">= {lo:g} ms"): float(c)
            for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)}


def render(result: VersionComparison) -> str:
    """The comparison page (self-contained HTML)."""
    ma, mb = result.meta[result.a], result.meta[result.b]
    return pages.render(
        "compare.html.j2", r=result,
        weights=_side_by_side(ma.get("weights", {}), mb.get("weights", {})),
        params=_side_by_side(ma.get("params", {}), mb.get("params", {})),
        data=_side_by_side({k: v for k, v in ma.get("data", {}).items() if not isinstance(v, dict)},
                           {k: v for k, v in mb.get("data", {}).items() if not isinstance(v, dict)}),
        latency={v: bar_chart(f"cases by scoring time, {v}", _histogram(ms), fmt="{:.0f}", x_label="cases")
                 for v, ms in result.latency_ms.items()},
        p95={v: float(np.percentile(ms, 95)) for v, ms in result.latency_ms.items()},
        drift_chart=bar_chart(f"PSI per feature against {result.a}'s training data (limit {result.psi_limit:g})",
                              {d.name: d.psi for d in result.drift}, fmt="{:.4f}", x_label="PSI",
                              limit=result.psi_limit),
    )


def write_comparison(settings: Settings, result: VersionComparison) -> Path:
    out = settings.home / "compare" / f"{result.a}_vs_{result.b}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(result))
    return out

"""Ranking and fairness metrics: pure functions over scores, labels and query sizes.

Conventions (ARCHITECTURE.md, "Definitions"):
- nDCG@k: gain 2^rel - 1, discount 1/log2(1 + rank), ideal from the same query's labels. Averaged only over queries
  with at least one positive label; the others are counted as `queries_without_positive`. (LightGBM's own metric
  scores such a query 1, LETOR's script 0.)
- Hit@k and MRR use the same queries (label > 0 is a hit).
- Ties in score keep the input order (a stable sort), so results are deterministic.
- Fairness gap: exposure v_j = 1/log2(1 + j) for rank j <= 5, else 0; E(G) = sum of v over G's appearances / number
  of G's appearances; gap = max E - min E over groups with at least `min_appearances` appearances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import kendalltau  # scipy comes with LightGBM

Groups = Sequence[str | None] | npt.NDArray[np.object_]  # each row's group (None: none); an array may share one
# string object per group (dataset.group_refs)

NDCG_KS = (1, 3, 5, 10)
NDCG_AT_5 = "ndcg@5"  # the headline measure: the gate's, the reports' and the demo's
EXPOSURE_DEPTH = 5


def ndcg_key(k: int) -> str:
    """The name of nDCG@k in metric tables and reports."""
    return f"ndcg@{k}"


def offsets(qsizes: Sequence[int] | npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Start offsets of each query, plus the end: query i is rows offsets[i]:offsets[i+1]."""
    return np.concatenate([[0], np.cumsum(np.asarray(qsizes, dtype=np.int64))])


def rank_order(scores: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Indices from best to worst score; ties keep input order."""
    return (-np.asarray(scores, dtype=np.float64)).argsort(kind="stable")  # the method: no Python-level wrapper


def gain(labels: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The gain of each graded label, 2^label - 1: what nDCG counts, and what the debiased learners estimate."""
    return np.asarray(2.0 ** np.asarray(labels, dtype=np.float64) - 1.0, dtype=np.float64)


def dcg_at_k(ranked_labels: npt.ArrayLike, k: int) -> float:
    rel = np.asarray(ranked_labels, dtype=np.float64)[:k]
    return float(np.sum(gain(rel) / np.log2(np.arange(2, rel.size + 2))))


def ndcg_at_k(ranked_labels: npt.ArrayLike, k: int) -> float | None:
    """nDCG@k of one query whose labels are given in ranked order; None when it has no positive label."""
    labels = np.asarray(ranked_labels, dtype=np.float64)
    ideal = dcg_at_k(np.sort(labels)[::-1], k)
    return None if ideal == 0 else dcg_at_k(labels, k) / ideal


def per_query(
    scores: npt.ArrayLike, labels: npt.ArrayLike, qsizes: Sequence[int] | npt.NDArray[np.int64],
    ks: Sequence[int] = NDCG_KS, hit_k: int = 3,
) -> dict[str, npt.NDArray[np.float64]]:
    """Each query's nDCG@k for each k, Hit@hit_k and reciprocal rank, over the queries with a positive label (in
    query order; the others are left out)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    bounds = offsets(qsizes)
    rows: dict[str, list[float]] = {name: [] for name in (*map(ndcg_key, ks), f"hit@{hit_k}", "mrr")}
    for i in range(len(bounds) - 1):
        lo, hi = bounds[i], bounds[i + 1]
        ranked = y[lo:hi][rank_order(s[lo:hi])]
        if not np.any(ranked > 0):
            continue
        for k in ks:
            rows[ndcg_key(k)].append(ndcg_at_k(ranked, k) or 0.0)
        first = int(np.argmax(ranked > 0))
        rows[f"hit@{hit_k}"].append(float(first < hit_k))
        rows["mrr"].append(1.0 / (first + 1))
    return {name: np.asarray(values, dtype=np.float64) for name, values in rows.items()}


def dcg_by_query(
    scores: npt.ArrayLike, labels: npt.ArrayLike, qsizes: Sequence[int] | npt.NDArray[np.int64], k: int,
) -> npt.NDArray[np.float64]:
    """Each query's DCG@k, vectorised (no loop over queries): ranked by score, ties in row order as `rank_order`.
    The ideal DCG is this with the labels as scores."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    sizes = np.asarray(qsizes, dtype=np.int64)
    starts = offsets(sizes)[:-1]
    ranked = y[np.lexsort((-s, np.repeat(np.arange(len(sizes)), sizes)))]  # by query, best score first
    rank = np.arange(len(y)) - np.repeat(starts, sizes)
    discount = np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0)
    return np.add.reduceat(gain(ranked) * discount, starts) if len(sizes) else np.zeros(0)


def ranking_metrics(
    scores: npt.ArrayLike, labels: npt.ArrayLike, qsizes: Sequence[int] | npt.NDArray[np.int64],
    ks: Sequence[int] = NDCG_KS, hit_k: int = 3,
) -> dict[str, float | int | None]:
    """Mean nDCG@k for each k, Hit@hit_k and MRR over queries with a positive label."""
    rows = per_query(scores, labels, qsizes, ks, hit_k)
    counted = len(rows["mrr"])
    out: dict[str, float | int | None] = {name: float(v.mean()) if counted else None for name, v in rows.items()}
    queries = len(qsizes)
    out["queries"], out["queries_without_positive"] = queries, queries - counted
    return out


@dataclass(frozen=True)
class Fairness:
    gap: float | None  # None: fewer than two groups with enough appearances ("insufficient data")
    exposure: dict[str, float]
    appearances: dict[str, int]
    compared: list[str]


def exposure_weights(n: int, depth: int = EXPOSURE_DEPTH) -> npt.NDArray[np.float64]:
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return np.where(ranks <= depth, 1.0 / np.log2(1.0 + ranks), 0.0)


def fairness_gap(
    scores: npt.ArrayLike, groups: Groups, qsizes: Sequence[int] | npt.NDArray[np.int64],
    min_appearances: int,
) -> Fairness:
    """Exposure gap between groups (candidates without a group are not counted)."""
    s = np.asarray(scores, dtype=np.float64)
    g = np.asarray(groups, dtype=object)
    bounds = offsets(qsizes)
    exposure_sum: dict[str, float] = {}
    appearances: dict[str, int] = {}
    for i in range(len(bounds) - 1):
        lo, hi = bounds[i], bounds[i + 1]
        order = rank_order(s[lo:hi])
        weights = exposure_weights(hi - lo)
        for weight, group in zip(weights, g[lo:hi][order], strict=True):
            if group is None:
                continue
            exposure_sum[group] = exposure_sum.get(group, 0.0) + float(weight)
            appearances[group] = appearances.get(group, 0) + 1
    exposure = {grp: exposure_sum[grp] / appearances[grp] for grp in sorted(appearances)}
    compared = [grp for grp in exposure if appearances[grp] >= min_appearances]
    gap = max(exposure[c] for c in compared) - min(exposure[c] for c in compared) if len(compared) >= 2 else None
    return Fairness(gap, exposure, dict(sorted(appearances.items())), compared)


def percentile_ms(samples_seconds: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples_seconds) * 1000.0, q)) if len(samples_seconds) else float("nan")


def overlap_at_k(scores_a: npt.ArrayLike, scores_b: npt.ArrayLike, k: int) -> float:
    """Share of ranking A's top k that ranking B also puts in its top k (both over the same candidates)."""
    top_a, top_b = rank_order(scores_a)[:k], rank_order(scores_b)[:k]
    return len(set(top_a.tolist()) & set(top_b.tolist())) / len(top_a) if len(top_a) else 1.0


def kendall_tau(scores_a: npt.ArrayLike, scores_b: npt.ArrayLike) -> float:
    """Kendall's tau-b between two score vectors over the same candidates (scipy): 1 same order, -1 reversed; ties
    count as neither concordant nor discordant. 1.0 for fewer than two candidates; NaN (undefined) when every score
    on one side is tied."""
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    if len(a) < 2:
        return 1.0
    if np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(kendalltau(a, b).statistic)

"""The one scorer used by evaluation, the gate's latency check and the service.

`LgbmScorer` wraps a LightGBM text model (parsed, never unpickled); `WeightedSumScorer` is the legacy matching
algorithm: a weighted sum of features in [0, 1] with weights from `ltr_weights.json` or the built-in defaults.
"""

from __future__ import annotations

import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import orjson

from ltr_pipeline.errors import ModelLoadError
from ltr_pipeline.measures import Groups, offsets

FloatArray = npt.NDArray[np.float64]
# The legacy matching algorithm: the seed's features and their weights (the platform's weighted sum before LTR).
# Its keys are also the default LTR_FEATURES and the simulator's features.
LEGACY_WEIGHTS: dict[str, float] = {
    "A": 0.30, "S": 0.25, "T": 0.15, "G": 0.10, "Q": 0.10, "U": 0.05, "R": 0.05, "C": 0.03,
}


class Scorer(ABC):
    algorithm: str
    backend: str

    @abstractmethod
    def score(self, features: FloatArray) -> FloatArray:
        """One score per row of an (n_candidates, n_features) matrix in the configured feature order."""


def check_model_text(text: str) -> None:
    """Refuse a LightGBM text model whose tree blocks do not add up to the sizes its header declares.

    LightGBM 4.x parses trees in parallel and aborts the whole process (C++ terminate, not an exception) on a
    truncated tree, so a damaged file must be caught before it reaches `Booster(model_str=...)`.
    """
    data = text.encode("utf-8")
    if not data.startswith(b"tree\n"):
        raise ModelLoadError("not a LightGBM text model (it must start with 'tree')")
    match = re.search(rb"^tree_sizes=([0-9 ]*)$", data, re.MULTILINE)
    end = data.find(b"end of trees")
    if match is None or end < 0:
        raise ModelLoadError("model text is truncated: 'tree_sizes' or 'end of trees' is missing")
    pos = data.find(b"Tree=0\n")
    for i, size in enumerate(int(s) for s in match.group(1).split()):
        if pos < 0 or not data.startswith(b"Tree=%d\n" % i, pos):
            raise ModelLoadError(f"model text is damaged: tree {i} is not where its header says")
        pos += size
    if pos != end:
        raise ModelLoadError("model text is damaged: its trees do not add up to the declared sizes")
    # LightGBM also crashes (SIGSEGV) on a file cut inside its parameters section: require the complete tail.
    tail = data.rstrip().rsplit(b"\n", 1)[-1]
    if b"\nend of parameters\n" not in data[end:] or not tail.startswith(b"pandas_categorical:"):
        raise ModelLoadError("model text is truncated: it does not end with LightGBM's closing lines")


class LgbmScorer(Scorer):
    algorithm = "ltr"
    backend = "lightgbm"

    def __init__(self, model_text: str, feature_names: Sequence[str]) -> None:
        import lightgbm as lgb

        check_model_text(model_text)
        try:
            self.booster = lgb.Booster(model_str=model_text)
        except lgb.basic.LightGBMError as exc:
            raise ModelLoadError(f"model text cannot be parsed (truncated or not a LightGBM model): {exc}") from exc
        if self.booster.num_feature() != len(feature_names):
            raise ModelLoadError(
                f"model expects {self.booster.num_feature()} features, settings name {len(feature_names)} "
                f"({','.join(feature_names)}): check LTR_FEATURES"
            )

    def score(self, features: FloatArray) -> FloatArray:
        return np.asarray(self.booster.predict(features, num_threads=1), dtype=np.float64)


class WeightedSumScorer(Scorer):
    algorithm = "legacy"
    backend = "weighted_sum"

    def __init__(self, weights: Mapping[str, float], feature_names: Sequence[str]) -> None:
        self.weights = dict(weights)
        self.vector = np.array([weights.get(name, 0.0) for name in feature_names], dtype=np.float64)

    def score(self, features: FloatArray) -> FloatArray:
        return np.nan_to_num(features, nan=0.0) @ self.vector


def default_weights(feature_names: Sequence[str]) -> dict[str, float]:
    """The legacy defaults for the seed's features; equal weights for feature sets that are not the seed's."""
    if set(feature_names) <= set(LEGACY_WEIGHTS):
        return {name: LEGACY_WEIGHTS[name] for name in feature_names}
    return dict.fromkeys(feature_names, 1.0 / len(feature_names))


def normalise(weights: Mapping[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    if not total > 0:
        raise ValueError("weights must have a positive sum")
    return {name: value / total for name, value in weights.items()}


def parse_weights(raw: bytes) -> dict[str, float]:
    """Validate an ltr_weights.json: an object of feature -> finite non-negative number with a positive sum."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ModelLoadError(f"ltr_weights.json is not valid JSON: {exc}") from None
    if not isinstance(obj, dict) or not obj:
        raise ModelLoadError("ltr_weights.json must be a non-empty object of feature -> weight")
    for name, value in obj.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise ModelLoadError(f"ltr_weights.json: weight of {name!r} must be a finite number >= 0")
    try:
        return normalise(obj)
    except ValueError as exc:
        raise ModelLoadError(f"ltr_weights.json: {exc}") from None


def measure_latency(
    scorer: Scorer, features: FloatArray, qsizes: Sequence[int] | npt.NDArray[np.int64], warmup: int = 20,
    groups: Groups | None = None, fair_strength: float = 0.0,
) -> list[float]:
    """Seconds per request, one request being one query's candidates, after `warmup` untimed requests.
    With `fair_strength` > 0 the fair re-ranking is part of each request, as in the service."""
    from ltr_pipeline.fairness import ExposureBalancer

    bounds = offsets(qsizes)
    slices = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    balancer = ExposureBalancer(fair_strength)

    def request(lo: int, hi: int) -> None:
        scores = scorer.score(features[lo:hi])
        if fair_strength > 0 and groups is not None:
            balancer.order(scores, groups[lo:hi])

    for lo, hi in slices[:warmup]:
        request(lo, hi)
    timings = []
    for lo, hi in slices:
        started = time.perf_counter()
        request(lo, hi)
        timings.append(time.perf_counter() - started)
    return timings

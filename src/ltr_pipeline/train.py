"""LightGBM on the training queries, early-stopped on the validation queries: LambdaRank, or with LTR_DEBIAS=exposure
a pointwise model of each candidate's expected gain once examined (README, "Learning without the champion's bias")."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import structlog

from ltr_pipeline.config import Settings
from ltr_pipeline.counterfactual.estimators import ips_gains
from ltr_pipeline.dataset import QuerySet
from ltr_pipeline.measures import NDCG_AT_5, gain, ranking_metrics
from ltr_pipeline.record import Propensities
from ltr_pipeline.registry import MODEL_FILE, WEIGHTS_FILE
from ltr_pipeline.scoring import LgbmScorer, normalise

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TrainedModel:
    model_text: str
    weights: dict[str, float]  # gain importance per feature, normalised to sum 1
    params: dict[str, Any]
    best_iteration: int
    feature_names: list[str]

    def files(self) -> dict[str, bytes]:
        return {
            MODEL_FILE: self.model_text.encode("utf-8"),
            WEIGHTS_FILE: orjson.dumps(self.weights, option=orjson.OPT_INDENT_2),
        }


def lgb_params(settings: Settings) -> dict[str, Any]:
    return {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [5],
        "learning_rate": settings.learning_rate,
        "num_leaves": settings.num_leaves,
        "min_data_in_leaf": settings.min_data_in_leaf,
        "num_threads": settings.num_threads,
        "seed": settings.seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
        **settings.lgbm_params,
    }


IPS_STEPS = 4  # IPS gains are learned as integer labels of 1/IPS_STEPS of a gain each (label_gain maps them back)
IPS_MAX_GAIN = 40.0  # a larger gain (a rare click far down) is capped: it would otherwise outweigh whole days


def ips_labels(labels: npt.NDArray[np.int64], positions: npt.NDArray[np.int64],
               propensities: Propensities) -> npt.NDArray[np.int64]:
    """Each impression's gain divided by its position's examination probability, as LightGBM's integer labels."""
    gains = np.minimum(ips_gains(labels, positions, propensities), IPS_MAX_GAIN)
    return np.rint(gains * IPS_STEPS).astype(np.int64)


# Exposure: an impression's gain 2^label - 1 is Poisson with mean theta_p g(x), theta_p its position's examination
# probability, so LightGBM's Poisson objective with log(theta_p) as each row's fixed offset (init_score) learns
# log g(x), the expected gain once examined, from every impression (clicked or not) across queries. The saved model
# predicts without the offset, i.e. as if every candidate were examined; predictions are exp(f), in the same order.
EXPOSURE_PARAMS: dict[str, Any] = {"objective": "poisson", "metric": "poisson"}
# Smaller trees than LambdaRank's defaults for the noisier pointwise target (BENCHMARKS.md, issue 15); LTR_NUM_LEAVES,
# LTR_MIN_DATA_IN_LEAF or LTR_LGBM_PARAMS, when set, still win.
EXPOSURE_TREES: dict[str, Any] = {"num_leaves": 15, "min_data_in_leaf": 50}


def debiasing(settings: Settings, propensities: Propensities | None) -> tuple[str, dict[str, Any]]:
    """(the debiasing applied, its LightGBM parameters): LTR_DEBIAS, or none when IPS or exposure has no
    propensities."""
    if settings.debias == "exposure" and propensities is not None:
        trees = {k: v for k, v in EXPOSURE_TREES.items()
                 if k not in settings.model_fields_set and k not in settings.lgbm_params}
        return "exposure", {**EXPOSURE_PARAMS, **trees}
    if settings.debias == "ips" and propensities is not None:
        return "ips", {"label_gain": [j / IPS_STEPS for j in range(int(IPS_MAX_GAIN * IPS_STEPS) + 1)]}
    if settings.debias == "position":
        return "position", {}
    return "none", {}


def _lgb_dataset(qs: QuerySet, debias: str, propensities: Propensities | None, reference: Any = None) -> Any:
    import lightgbm as lgb

    if debias == "exposure" and propensities is not None:
        return lgb.Dataset(qs.features, label=gain(qs.labels), feature_name=qs.feature_names,
                           init_score=np.log(propensities.at(qs.positions)), reference=reference, free_raw_data=False)
    labels = qs.labels if debias != "ips" or propensities is None else \
        ips_labels(qs.labels, qs.positions, propensities)
    return lgb.Dataset(
        qs.features, label=labels, group=qs.qsizes, feature_name=qs.feature_names, reference=reference,
        free_raw_data=False,
        # LightGBM learns a bias per position id from the training set only
        position=qs.positions - 1 if debias == "position" and reference is None else None,
    )


# Tried in this order after the defaults, as many as LTR_TUNE_TRIALS and LTR_TUNE_SECONDS allow.
SEARCH_SPACE: tuple[dict[str, Any], ...] = (
    {"objective": "rank_xendcg"},
    {"num_leaves": 15},
    {"num_leaves": 63, "min_data_in_leaf": 50},
    {"learning_rate": 0.1},
    {"objective": "rank_xendcg", "num_leaves": 63, "min_data_in_leaf": 50},
    {"lambdarank_truncation_level": 10, "num_leaves": 63},
    {"feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1},
    {"learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 50},
)


def tune(train_set: QuerySet, valid_set: QuerySet, settings: Settings,
         propensities: Propensities | None = None) -> TrainedModel:
    """The defaults and up to LTR_TUNE_TRIALS other parameter sets, each early-stopped and scored by nDCG@5 on the
    validation slice (never the holdout); the best model wins and records every trial in its params."""
    if settings.tune_trials == 0 or valid_set.queries == 0:
        return train(train_set, valid_set, settings, propensities=propensities)

    def fit(trial_settings: Settings) -> tuple[TrainedModel, float]:
        model = train(train_set, valid_set, trial_settings, propensities=propensities)
        scores = LgbmScorer(model.model_text, model.feature_names).score(valid_set.features)
        return model, ranking_metrics(scores, valid_set.labels, valid_set.qsizes, ks=(5,))[NDCG_AT_5] or 0.0

    return search(settings, propensities, fit)


def search(settings: Settings, propensities: Propensities | None,
           fit: Callable[[Settings], tuple[TrainedModel, float]]) -> TrainedModel:
    """Tuning's loop, whatever trains (`fit`: a model and its validation nDCG@5 for these settings)."""
    started = time.monotonic()
    trials: list[dict[str, Any]] = []
    best: tuple[float, TrainedModel] | None = None
    pointwise = debiasing(settings, propensities)[0] == "exposure"  # its objective is not a search dimension
    space = [o for o in SEARCH_SPACE if not (pointwise and "objective" in o)]
    for overrides in ({}, *space[: settings.tune_trials]):
        if trials and time.monotonic() - started > settings.tune_seconds:
            break
        model, ndcg = fit(settings.model_copy(update={"lgbm_params": {**settings.lgbm_params, **overrides}}))
        trials.append({"overrides": overrides, f"valid_{NDCG_AT_5}": ndcg, "best_iteration": model.best_iteration})
        log.info("tune.trial", overrides=overrides, valid_ndcg5=ndcg)
        if best is None or ndcg > best[0]:
            best = (ndcg, model)
    assert best is not None
    chosen = best[1]
    tuning = {"trials": trials, "chosen": trials[[t[f"valid_{NDCG_AT_5}"] for t in trials].index(best[0])]["overrides"],
              "seconds": round(time.monotonic() - started, 1)}
    return TrainedModel(chosen.model_text, chosen.weights, {**chosen.params, "tuning": tuning},
                        chosen.best_iteration, chosen.feature_names)


def train(
    train_set: QuerySet, valid_set: QuerySet, settings: Settings, init_model: str | None = None,
    propensities: Propensities | None = None,
) -> TrainedModel:
    """Train from scratch, or continue `init_model` (a LightGBM text model) with LTR_INCREMENTAL_ROUNDS more;
    debiased as LTR_DEBIAS says (`propensities` for ips)."""
    import lightgbm as lgb

    debias, extra = debiasing(settings, propensities)
    params = {**lgb_params(settings), **extra}
    dtrain = _lgb_dataset(train_set, debias, propensities)
    rounds = settings.num_boost_round if init_model is None else settings.incremental_rounds
    validate = valid_set.queries > 0  # no validation slice (LTR_VALID_FRACTION=0): all rounds, no early stop
    booster = lgb.train(
        params, dtrain, num_boost_round=rounds,
        valid_sets=[_lgb_dataset(valid_set, debias, propensities, reference=dtrain)] if validate else None,
        valid_names=["valid"] if validate else None,
        init_model=lgb.Booster(model_str=init_model) if init_model else None,
        callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)] if validate else None,
    )
    best = booster.best_iteration or booster.current_iteration()
    log.info("train.done", best_iteration=best, rows=train_set.rows, queries=train_set.queries)
    return trained_model(booster, best, params, list(train_set.feature_names), rounds, settings, debias,
                         continued=init_model is not None)


def trained_model(booster: Any, best: int, params: dict[str, Any], names: list[str], rounds: int, settings: Settings,
                  debias: str, continued: bool = False, engine: str = "local") -> TrainedModel:
    """The model of `booster`'s first `best` iterations, its gain weights and the parameters it records."""
    gains = booster.feature_importance(importance_type="gain", iteration=best)
    if float(np.sum(gains)) > 0:
        weights = normalise({name: float(g) for name, g in zip(names, gains, strict=True)})
    else:  # a model with no splits carries no preference: equal weights
        weights = dict.fromkeys(names, 1.0 / len(names))
    return TrainedModel(
        model_text=booster.model_to_string(num_iteration=best),
        weights=weights,
        params={**{k: v for k, v in params.items() if k != "label_gain"}, "num_boost_round": rounds,
                "early_stopping_rounds": settings.early_stopping_rounds, "debias": debias,
                "engine": engine, "continued_from_live_model": continued},
        best_iteration=best,
        feature_names=names,
    )

"""LightGBM LambdaRank on the training queries, early-stopped on the validation queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import structlog

from ltr_pipeline.config import Settings
from ltr_pipeline.dataset import QuerySet
from ltr_pipeline.scoring import normalise

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
            "model.txt": self.model_text.encode("utf-8"),
            "ltr_weights.json": orjson.dumps(self.weights, option=orjson.OPT_INDENT_2),
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


def _lgb_dataset(qs: QuerySet, reference: Any = None) -> Any:
    import lightgbm as lgb

    return lgb.Dataset(
        qs.features, label=qs.labels, group=qs.qsizes, feature_name=qs.feature_names,
        reference=reference, free_raw_data=False,
    )


def train(
    train_set: QuerySet, valid_set: QuerySet, settings: Settings, init_model: str | None = None
) -> TrainedModel:
    """Train from scratch, or continue `init_model` (a LightGBM text model) with LTR_INCREMENTAL_ROUNDS more."""
    import lightgbm as lgb

    params = lgb_params(settings)
    dtrain = _lgb_dataset(train_set)
    rounds = settings.num_boost_round if init_model is None else settings.incremental_rounds
    validate = valid_set.queries > 0  # no validation slice (LTR_VALID_FRACTION=0): all rounds, no early stop
    booster = lgb.train(
        params, dtrain, num_boost_round=rounds,
        valid_sets=[_lgb_dataset(valid_set, reference=dtrain)] if validate else None,
        valid_names=["valid"] if validate else None,
        init_model=lgb.Booster(model_str=init_model) if init_model else None,
        callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)] if validate else None,
    )
    best = booster.best_iteration or booster.current_iteration()
    gains = booster.feature_importance(importance_type="gain", iteration=best)
    names = list(train_set.feature_names)
    if float(np.sum(gains)) > 0:
        weights = normalise({name: float(g) for name, g in zip(names, gains, strict=True)})
    else:  # a model with no splits carries no preference: equal weights
        weights = dict.fromkeys(names, 1.0 / len(names))
    log.info("train.done", best_iteration=best, rows=train_set.rows, queries=train_set.queries)
    return TrainedModel(
        model_text=booster.model_to_string(num_iteration=best),
        weights=weights,
        params={**params, "num_boost_round": rounds, "early_stopping_rounds": settings.early_stopping_rounds,
                "continued_from_live_model": init_model is not None},
        best_iteration=best,
        feature_names=names,
    )

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from ltr_pipeline.errors import ModelLoadError
from ltr_pipeline.scoring import LgbmScorer, WeightedSumScorer, default_weights, parse_weights


def _model_text() -> str:
    rng = np.random.default_rng(0)
    x = rng.random((200, 3))
    y = (x[:, 0] * 3).astype(int)
    booster = lgb.train({"objective": "lambdarank", "verbosity": -1, "min_data_in_leaf": 5},
                        lgb.Dataset(x, y, group=[10] * 20), num_boost_round=5)
    return str(booster.model_to_string())


def test_lgbm_scorer_scores_and_refuses_truncated_text() -> None:
    text = _model_text()
    scorer = LgbmScorer(text, ["a", "b", "c"])
    assert scorer.score(np.array([[0.9, 0, 0], [0.1, 0, 0]])).shape == (2,)
    with pytest.raises(ModelLoadError, match=r"damaged|truncated"):
        LgbmScorer(text[: len(text) // 3], ["a", "b", "c"])
    with pytest.raises(ModelLoadError, match="not a LightGBM"):
        LgbmScorer("hello", ["a", "b", "c"])
    with pytest.raises(ModelLoadError, match="expects 3 features"):
        LgbmScorer(text, ["a", "b"])


def test_every_truncation_is_refused_before_lightgbm_sees_it() -> None:
    # LightGBM aborts or segfaults the process on many of these cuts; the check must catch all of them.
    text = _model_text()
    for cut in range(0, len(text) - 1, 37):
        with pytest.raises(ModelLoadError):
            LgbmScorer(text[:cut], ["a", "b", "c"])


def test_weighted_sum_reads_nan_as_zero() -> None:
    scorer = WeightedSumScorer({"A": 0.5, "B": 0.5}, ["A", "B"])
    assert scorer.score(np.array([[1.0, np.nan], [0.2, 0.2]])).tolist() == pytest.approx([0.5, 0.2])


def test_default_weights_are_the_seeds() -> None:
    weights = default_weights(list("ASTGQURC"))
    assert weights["A"] == 0.30 and weights["C"] == 0.03
    assert sum(weights.values()) == pytest.approx(1.03)  # the seed's own numbers, kept as published
    assert default_weights(["x", "y"]) == {"x": 0.5, "y": 0.5}


@pytest.mark.parametrize("raw", [b"nope", b"[]", b"{}", b'{"A": "x"}', b'{"A": -0.1}', b'{"A": 0}'])
def test_invalid_weights_files_are_refused(raw: bytes) -> None:
    with pytest.raises(ModelLoadError):
        parse_weights(raw)


def test_weights_are_normalised() -> None:
    assert parse_weights(b'{"A": 3, "B": 1}') == {"A": 0.75, "B": 0.25}

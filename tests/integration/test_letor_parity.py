"""Parity on public data: LightGBM's LambdaRank example (../shared/data/lightgbm-lambdarank), through the pipeline
(ltr import -> ltr run: dataset, train, evaluate) against LightGBM alone on the same files, split and parameters;
and the pipeline on a 2-worker Dask cluster (LTR_ENGINE=dask) against the local engine."""

from __future__ import annotations

import os
from pathlib import Path

import lightgbm as lgb

from ltr_pipeline.letor import read_svmlight
from ltr_pipeline.measures import ranking_metrics
from tests.helpers import REPO, ltr_json

DATA = REPO.parent / "shared" / "data" / "lightgbm-lambdarank"
PARAMS = {"objective": "lambdarank", "learning_rate": 0.1, "num_leaves": 31, "min_data_in_leaf": 50,
          "bagging_fraction": 0.9, "bagging_freq": 1, "seed": 42, "deterministic": True, "force_row_wise": True,
          "num_threads": 2, "verbosity": -1}
ROUNDS = 100


def test_pipeline_matches_lightgbm_alone_on_the_example_data(tmp_path: Path) -> None:
    assert DATA.is_dir(), f"{DATA} is missing: the shared data must sit beside the repository"
    booster = lgb.train(PARAMS, lgb.Dataset(str(DATA / "rank.train")), num_boost_round=ROUNDS)
    test = read_svmlight(DATA / "rank.test")
    alone = ranking_metrics(booster.predict(str(DATA / "rank.test")), test.labels, test.qsizes)
    assert alone["queries_without_positive"] == 0  # so every nDCG convention agrees on this data

    info = ltr_json(["import", str(DATA / "rank.train"), "--test", str(DATA / "rank.test"), "--out", str(tmp_path)],
                dict(os.environ))
    assert (info["train_queries"], info["test_queries"], info["rows"]) == (201, 50, 3773)
    env = {**os.environ, "LTR_HOME": str(tmp_path / "home")}
    for line in (tmp_path / "ltr.env").read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value.strip("'")
    env.update({"LTR_VALID_FRACTION": "0", "LTR_NUM_BOOST_ROUND": str(ROUNDS), "LTR_LEARNING_RATE": "0.1",
                "LTR_NUM_LEAVES": "31", "LTR_MIN_DATA_IN_LEAF": "50", "LTR_SEED": "42",
                "LTR_LGBM_PARAMS": '{"bagging_fraction": 0.9, "bagging_freq": 1}'})
    report = ltr_json(["run", "--date", info["run_date"]], env)
    new = report["metrics"]["new"]
    assert new["queries"] == 50 and new["rows"] == 768
    for k in (1, 3, 5, 10):
        assert abs(new[f"ndcg@{k}"] - alone[f"ndcg@{k}"]) <= 0.005, (k, new[f"ndcg@{k}"], alone[f"ndcg@{k}"])
    assert report["gate"]["checks"][1]["verdict"] == "insufficient data"  # LETOR files carry no groups

    # The same run trained by LightGBM's Dask interface on a LocalCluster of 2 worker processes (LTR_ENGINE=dask).
    env.update({"LTR_HOME": str(tmp_path / "dask-home"), "LTR_ENGINE": "dask", "LTR_DASK_WORKERS": "2"})
    on_dask = ltr_json(["run", "--date", info["run_date"]], env)
    assert on_dask["params"]["engine"] == "dask" and on_dask["metrics"]["new"]["queries"] == 50
    assert abs(on_dask["metrics"]["new"]["ndcg@5"] - new["ndcg@5"]) <= 0.01, (on_dask["metrics"]["new"], new)

"""Default parameters against the budgeted tuning step (LTR_TUNE_TRIALS), on the holdout that tuning never sees.

Two data sets: the simulated marketplace (21 days) and LightGBM's example data (rank.train with its latest 15% of
queries as the validation slice, rank.test as the holdout).

    .venv/bin/python -m bench.tuning [--trials 8]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from ltr_pipeline import pipeline
from ltr_pipeline.config import Settings
from ltr_pipeline.evaluate import evaluate_scorer
from ltr_pipeline.letor import import_letor
from ltr_pipeline.logs import configure_logging
from ltr_pipeline.scoring import LgbmScorer, WeightedSumScorer, default_weights
from ltr_pipeline.simulate import SimConfig, simulate_days
from ltr_pipeline.train import train, tune

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lightgbm-lambdarank"


def compare(name: str, run: pipeline.Run, trials: int) -> None:
    settings = run.settings
    pipeline.extract(run)
    split = pipeline.preprocess(run)
    rows = {}
    for label, fit in (("default", lambda s: train(split.train, split.valid, s)),
                       ("tuned", lambda s: tune(split.train, split.valid, s))):
        started = time.perf_counter()
        model = fit(settings.model_copy(update={"tune_trials": trials}))
        seconds = time.perf_counter() - started
        metrics = evaluate_scorer(LgbmScorer(model.model_text, model.feature_names), split.holdout,
                                  settings.fairness_min_group)
        rows[label] = (metrics, seconds, model.params.get("tuning", {}).get("chosen", {}))
    print(f"{name}: holdout {split.holdout.queries} queries, validation {split.valid.queries} queries")
    for label, (m, seconds, chosen) in rows.items():
        print(f"  {label:8s} nDCG@1 {m.ndcg_at_1:.4f}  @3 {m.ndcg_at_3:.4f}  @5 {m.ndcg_at_5:.4f}  "
              f"@10 {m.ndcg_at_10:.4f}   {seconds:6.1f} s   chosen {chosen}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()
    configure_logging(stream=None)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp) / "sim", train_days=21)
        names = settings.feature_names
        legacy = WeightedSumScorer(default_weights(names), names)
        start = date(2026, 10, 1)
        simulate_days(SimConfig(), start, 21, settings.events_path, lambda _: (legacy, None))
        compare("simulated marketplace", pipeline.Run(settings, start + timedelta(days=20)), args.trials)

        info = import_letor(DATA / "rank.train", Path(tmp) / "letor", test=DATA / "rank.test")
        for line in (Path(tmp) / "letor" / "ltr.env").read_text().splitlines():
            key, _, value = line.partition("=")
            os.environ[key] = value.strip("'")
        letor = Settings(home=Path(tmp) / "letor-home")
        compare("LightGBM example data", pipeline.Run(letor, date.fromisoformat(str(info["run_date"]))), args.trials)


if __name__ == "__main__":
    main()

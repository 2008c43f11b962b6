"""Fairness gap against nDCG@5 for several re-ranking strengths, under the simulator's bias against one group.

Simulates a marketplace whose clients are biased against group F (their reviews and acceptance lowered), trains the
daily model once, and evaluates what would be served on the same holdout at each strength.

    .venv/bin/python -m bench.fairness_tradeoff [--bias 0.5] [--days 21]
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import date, timedelta
from pathlib import Path

from ltr_pipeline import pipeline
from ltr_pipeline.config import Settings
from ltr_pipeline.evaluate import evaluate_scorer
from ltr_pipeline.logs import configure_logging
from ltr_pipeline.scoring import LgbmScorer, WeightedSumScorer, default_weights
from ltr_pipeline.simulate import SimConfig, simulate_days

STRENGTHS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bias", type=float, default=0.5)
    parser.add_argument("--days", type=int, default=21)
    args = parser.parse_args()
    configure_logging(stream=None)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp), train_days=args.days)
        names = settings.feature_names
        legacy = WeightedSumScorer(default_weights(names), names)
        start = date(2026, 10, 1)
        simulate_days(SimConfig(bias=args.bias), start, args.days, settings.events_path, lambda _: (legacy, None))
        run = pipeline.Run(settings, start + timedelta(days=args.days - 1))
        pipeline.extract(run)
        split = pipeline.preprocess(run)
        model = pipeline.train_model(run, split)
        scorers = {"model": LgbmScorer(model.model_text, names), "legacy": legacy}
        print(f"bias {args.bias} against F, {args.days} days, holdout {split.holdout.queries} queries; "
              f"min group appearances {settings.fairness_min_group}")
        print(f"{'strength':>8} | {'model nDCG@5':>12} {'gap':>7} {'p95 ms':>7} | {'legacy nDCG@5':>13} {'gap':>7}")
        for strength in STRENGTHS:
            row = {name: evaluate_scorer(s, split.holdout, settings.fairness_min_group, strength)
                   for name, s in scorers.items()}
            m, lg = row["model"], row["legacy"]
            print(f"{strength:>8} | {m.ndcg_at_5:>12.4f} {m.fairness_gap:>7.4f} {m.latency_p95_ms:>7.3f} | "
                  f"{lg.ndcg_at_5:>13.4f} {lg.fairness_gap:>7.4f}")


if __name__ == "__main__":
    main()

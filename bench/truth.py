"""The simulator as a measuring instrument: N daily cycles of the real pipeline, judged on the simulator's truth.

    python -m bench.truth --days 14 --click-model pbm [--debias ips] [--max-regression 0] [--explore 0.05]

History days ranked by the legacy sum, then each day: the daily run (`run_daily`, the settings as given), then the
next day simulated in the order of whatever is live (with the service's exploration). In-process, no service: the
ranking the simulator shows is the live scorer's, exactly as the service would answer.

Per day it prints truth-nDCG@5 on fresh cases (the same 2,000 simulated cases every day, each candidate's gain its
expected gain once examined, E[2^label - 1], from its hidden utility: `simulate.true_relevance_grade`) for the model
live before the run (the champion), the challenger
the run trained, the model live after, the legacy sum and an oracle (LightGBM trained on the true grades of 20,000
other fresh cases); the challenger's logged nDCG@5 and the debiased difference the gate saw; the gate's decision and
whether it was right in truth (publish exactly when the challenger is truly no worse than the champion by more than
LTR_MAX_REGRESSION). With --degrade, each day also trains a deliberately degraded challenger (the run's training data
with one feature shuffled) and puts it through the same gate. Nothing here reads the simulator's truth into the
pipeline: the truth is only used to judge.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ltr_pipeline.config import Settings
from ltr_pipeline.counterfactual.explore import explore
from ltr_pipeline.dataset import QuerySet
from ltr_pipeline.evaluate import evaluate_all
from ltr_pipeline.gate import Thresholds, evaluate_gate
from ltr_pipeline.logs import configure_logging
from ltr_pipeline.measures import NDCG_AT_5, rank_order, ranking_metrics
from ltr_pipeline.pipeline import run_daily
from ltr_pipeline.record import Propensities, RunReport
from ltr_pipeline.registry import ModelRegistry
from ltr_pipeline.runs import Run
from ltr_pipeline.scoring import LgbmScorer, Scorer, WeightedSumScorer, default_weights
from ltr_pipeline.simulate import (
    CLICK_MODELS,
    SIM_FEATURES,
    Cascade,
    Marketplace,
    PositionBased,
    SimConfig,
    _draw_case,
    make_marketplace,
    simulate_day,
    true_relevance_grade,
    write_day,
)
from ltr_pipeline.train import train

START = date(2026, 9, 1)
NAMES = list(SIM_FEATURES)


@dataclass
class Truth:
    """Fresh cases with their true graded relevance, and measures of scorers on them."""

    features: np.ndarray
    relevance: np.ndarray
    qsizes: np.ndarray

    @classmethod
    def draw(cls, market: Marketplace, cases: int, seed: int, k: int) -> Truth:
        rng = np.random.default_rng([seed, 777_000])
        feats, rel = [], []
        for _ in range(cases):
            _, f, utility = _draw_case(market, rng, k)
            feats.append(np.column_stack([f[n] for n in NAMES]))
            rel.append(true_relevance_grade(utility))
        return cls(np.vstack(feats), np.concatenate(rel), np.full(cases, k))

    def ndcg5(self, scorer: Scorer) -> float:
        return float(ranking_metrics(scorer.score(self.features), self.relevance, self.qsizes, ks=(5,))[NDCG_AT_5]
                     or 0.0)

    def exploration_cost(self, scorer: Scorer, fraction: float, seed: int) -> float:
        """truth-nDCG@5 lost when a share `fraction` of these cases is shown with the service's exploration."""
        scores = scorer.score(self.features)
        shown = np.empty_like(scores)
        rng = random.Random(seed)
        k = int(self.qsizes[0])
        for q in range(len(self.qsizes)):
            lo = q * k
            order, _, _ = explore(rank_order(scores[lo:lo + k]).tolist(), fraction, rng)
            shown[lo + np.asarray(order)] = -np.arange(k)  # scores whose order is the order shown
        plain = ranking_metrics(scores, self.relevance, self.qsizes, ks=(5,))[NDCG_AT_5] or 0.0
        explored = ranking_metrics(shown, self.relevance, self.qsizes, ks=(5,))[NDCG_AT_5] or 0.0
        return float(plain - explored)

    def oracle(self, settings: Settings) -> Scorer:
        """LightGBM trained on these cases' true grades (tenths of a grade as labels, gains mapped back)."""
        labels = np.rint(self.relevance * 10).astype(np.int64)
        n_q = len(self.qsizes)
        qs = QuerySet(self.features, labels, self.qsizes, np.arange(n_q), [None] * len(labels),
                      np.ones(len(labels), dtype=np.int64), NAMES, labels > 0)
        cut = int(n_q * 0.85)
        # Fixed, whatever the loop's settings, so that every run meets the same oracle.
        oracle_settings = settings.model_copy(update={
            "debias": "none", "num_boost_round": 500, "num_leaves": 31, "min_data_in_leaf": 20, "learning_rate": 0.05,
            "lgbm_params": {"label_gain": [2 ** (j / 10) - 1 for j in range(31)]}})
        model = train(qs.take(np.arange(cut)), qs.take(np.arange(cut, n_q)), oracle_settings)
        return LgbmScorer(model.model_text, NAMES)


def click_model(name: str, eta: float) -> Any:
    if name == "pbm":
        return PositionBased(eta=eta)
    if name == "trust":
        return PositionBased(eta=eta, false_clicks=0.1)
    return CLICK_MODELS[name] if name in CLICK_MODELS else Cascade()


def degraded(run: Run, settings: Settings, feature: int, champion: Scorer | None, champion_version: str | None,
             thresholds: Thresholds, seed: int) -> tuple[LgbmScorer, bool, Any]:
    """A challenger trained with one feature shuffled across the training rows, and whether the gate passes it."""
    split = run.load_split()
    rng = np.random.default_rng(seed)
    for part in (split.train, split.valid):
        part.features[:, feature] = rng.permutation(part.features[:, feature])
    propensities = run.load("propensity.json", Propensities | None)  # type: ignore[arg-type]
    model = train(split.train, split.valid, settings, propensities=propensities)
    scorer = LgbmScorer(model.model_text, NAMES)
    holdout = Run(settings, run.run_date).load_split().holdout  # the true holdout, unshuffled
    report = evaluate_all(scorer, WeightedSumScorer(default_weights(NAMES), NAMES), holdout,
                          settings.fairness_min_group, champion, champion_version, propensities=propensities,
                          seed=settings.seed)
    verdict = evaluate_gate(report, split.train.rows + split.valid.rows, thresholds, has_groups=True)
    return scorer, verdict.passed, report.debiased


class Blend(Scorer):
    """A challenger that is truly better by construction: the champion's standardised scores moved a share `w`
    towards the oracle's (the gate sees only its scores, as of any model)."""

    algorithm, backend = "ltr", "blend"

    def __init__(self, champion: Scorer, oracle: Scorer, w: float) -> None:
        self.champion, self.oracle, self.w = champion, oracle, w

    def score(self, features: np.ndarray) -> np.ndarray:
        def z(x: np.ndarray) -> np.ndarray:
            return (x - x.mean()) / (x.std() or 1.0)

        return (1 - self.w) * z(self.champion.score(features)) + self.w * z(self.oracle.score(features))


def gate_probe(run: Run, settings: Settings, challenger: Scorer, champion: Scorer, champion_version: str | None,
               thresholds: Thresholds) -> bool:
    """Whether the gate passes `challenger` against `champion` on this run's holdout and propensities."""
    split = run.load_split()
    propensities = run.load("propensity.json", Propensities | None)  # type: ignore[arg-type]
    report = evaluate_all(challenger, WeightedSumScorer(default_weights(NAMES), NAMES), split.holdout,
                          settings.fairness_min_group, champion, champion_version, propensities=propensities,
                          seed=settings.seed)
    return evaluate_gate(report, split.train.rows + split.valid.rows, thresholds, has_groups=True).passed


def live_scorer(registry: ModelRegistry) -> tuple[Scorer, str | None]:
    if registry.live_version() is None:
        return WeightedSumScorer(default_weights(NAMES), NAMES), None
    bundle = registry.load()
    return LgbmScorer(bundle.model_text, NAMES), bundle.version


def run(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    if args.naive:  # the loop before this issue: no debiasing, no exploration, the logged comparison decides
        args.debias, args.explore = "none", 0.0
    settings = Settings(home=home, debias=args.debias, max_regression=args.max_regression, num_threads=2,
                        explore_fraction=args.explore, seed=args.seed, holdout_days=args.holdout_days,
                        counterfactual_min_queries=10**9 if args.naive else 30)
    thresholds = Thresholds.from_settings(settings)
    sim = SimConfig(seed=args.seed, cases_per_day=args.cases, click_model=click_model(args.click_model, args.eta),
                    explore_fraction=args.explore)
    market = make_marketplace(sim)
    truth = Truth.draw(market, args.eval_cases, args.seed, sim.candidates)
    oracle = Truth.draw(market, args.oracle_cases, args.seed + 1, sim.candidates).oracle(settings)
    legacy = WeightedSumScorer(default_weights(NAMES), NAMES)
    registry = ModelRegistry.from_settings(settings)
    truth_rows: list[dict[str, object]] = []
    for offset in range(args.history_days):
        day = START + timedelta(days=offset)
        write_day(simulate_day(market, day, sim, legacy, None, truth=truth_rows), settings.events_path, day)
    t_legacy, t_oracle = truth.ndcg5(legacy), truth.ndcg5(oracle)
    print(f"# click model {sim.click_model.name}, debias {args.debias}, max_regression {args.max_regression}, "
          f"explore {args.explore}: legacy {t_legacy:.4f}, oracle {t_oracle:.4f}", flush=True)
    print(f"{'run date':10} {'live':>7} {'chall':>7} {'after':>7} {'logged':>7} {'debiasΔ':>8} {'[low':>8} "
          f"{'high]':>8} {'decision':>9} {'right':>5} {'degraded':>12} {'s':>5}", flush=True)
    days = []
    for d in range(args.days):
        started = time.monotonic()
        run_date = START + timedelta(days=args.history_days + d - 1)
        champion, champion_version = live_scorer(registry)
        report: RunReport = run_daily(run_date, settings, now=datetime.combine(
            run_date + timedelta(days=1), datetime.min.time(), tzinfo=UTC) + timedelta(hours=2, minutes=15))
        rdir = Run(settings, run_date)
        challenger = LgbmScorer(rdir.path("model.txt").read_text(), NAMES)
        t_champ, t_chall = truth.ndcg5(champion), truth.ndcg5(challenger)
        published = report.decision == "published"
        # Right: publish exactly when the challenger is truly no worse than allowed; within 0.003 either is fine.
        right = "~" if abs(t_chall - t_champ) < 0.003 else "yes" if published == (
            t_chall >= t_champ - args.max_regression) else "NO"
        row: dict[str, Any] = {
            "run_date": run_date.isoformat(), "truth_live": t_champ, "truth_challenger": t_chall,
            "logged_challenger": report.metrics.new.ndcg_at_5,
            "logged_champion": report.metrics.champion.ndcg_at_5 if report.metrics.champion else None,
            "debiased": None if report.metrics.debiased is None else
            {"difference": report.metrics.debiased.difference, "low": report.metrics.debiased.low,
             "high": report.metrics.debiased.high, "queries": report.metrics.debiased.queries},
            "decision": report.decision, "right": right,
            "propensities": report.metrics.propensities.examination if report.metrics.propensities else None,
        }
        if args.probe and report.metrics.champion is not None:
            better = Blend(champion, oracle, args.probe_weight)
            row["better"] = {"truth": truth.ndcg5(better),
                             "passed": gate_probe(rdir, settings, better, champion, champion_version, thresholds)}
        if args.degrade and report.metrics.champion is not None:
            feature = args.degrade_features[d % len(args.degrade_features)]
            bad, passed, seen = degraded(rdir, settings, NAMES.index(feature), champion, champion_version,
                                         thresholds, args.seed + d)
            row["degraded"] = {"feature": feature, "truth": truth.ndcg5(bad), "passed": passed,
                               "debiased": None if seen is None else [seen.difference, seen.low, seen.high]}
        live, version = live_scorer(registry)
        row["truth_after"] = truth.ndcg5(live)
        row["exploration_cost"] = truth.exploration_cost(live, settings.explore_fraction, args.seed + d) \
            if settings.explore_fraction else 0.0
        next_day = run_date + timedelta(days=1)
        write_day(simulate_day(market, next_day, sim, live, version, truth=truth_rows), settings.events_path,
                  next_day)
        row["seconds"] = time.monotonic() - started
        days.append(row)
        deb = row["debiased"] or {}
        dg = row.get("degraded")
        print(f"{row['run_date']:10} {t_champ:7.4f} {t_chall:7.4f} {row['truth_after']:7.4f} "
              f"{_f(row['logged_challenger'])} {_f(deb.get('difference'), 8)} {_f(deb.get('low'), 8)} "
              f"{_f(deb.get('high'), 8)} {report.decision:>9} {right:>5} "
              f"{(dg['feature'] + (' passed' if dg['passed'] else ' refused')) if dg else '-':>12} "
              f"{row['seconds']:5.1f}", flush=True)
    examined = _true_examination(truth_rows, sim)
    return {"click_model": sim.click_model.name, "naive": args.naive, "debias": args.debias,
            "max_regression": args.max_regression, "explore": args.explore, "legacy": t_legacy, "oracle": t_oracle,
            "days": days,
            "true_examination": examined}


def _true_examination(rows: list[dict[str, object]], sim: SimConfig) -> list[float]:
    """Each position's examination rate in the simulated logs, relative to position 1 (the curve to estimate)."""
    k = sim.candidates
    seen = np.zeros(k)
    shown = np.zeros(k)
    for r in rows:
        pos = int(r["position"]) - 1  # type: ignore[call-overload]
        shown[pos] += 1
        seen[pos] += bool(r["examined"])
    rate = seen / np.maximum(shown, 1)
    return (rate / rate[0]).tolist()


def _f(value: float | None, width: int = 7) -> str:
    return f"{value:{width}.4f}" if value is not None else f"{'-':>{width}}"


def summary(result: dict[str, Any]) -> None:
    days = result["days"]
    right = sum(d["right"] == "yes" for d in days)
    decided = sum(d["right"] != "~" for d in days)
    better = [d for d in days if d["truth_challenger"] >= d["truth_live"] + 0.003]
    kept_better = sum(d["decision"] == "published" for d in better)
    bad = [{**d["degraded"], "drop": d["truth_live"] - d["degraded"]["truth"]} for d in days if d.get("degraded")]
    refused = sum(not b["passed"] for b in bad)
    worse = [b for b in bad if b["drop"] >= 0.003]  # degraded by at least what the gate is asked to resolve
    print(f"# degraded challengers truly worse than the champion by >= 0.003: refused "
          f"{sum(not b['passed'] for b in worse)}/{len(worse)}; " + ", ".join(
              f"{b['feature']} {-b['drop']:+.4f} {'passed' if b['passed'] else 'refused'}" for b in bad))
    probes = [{**d["better"], "gain": d["better"]["truth"] - d["truth_live"]} for d in days if d.get("better")]
    if probes:
        sure = [b for b in probes if b["gain"] >= 0.003]
        print(f"# probes truly better by >= 0.003 (champion blended towards the oracle): published "
              f"{sum(b['passed'] for b in sure)}/{len(sure)}; gains " + ", ".join(f"{b['gain']:+.4f}" for b in probes))
    cost = np.mean([d["exploration_cost"] for d in days])
    print(f"# exploration at {result['explore']}: truth-nDCG@5 lost {cost:.4f} on average over the days")
    est = days[-1]["propensities"]
    true = result["true_examination"]
    print(f"# right decisions {right}/{decided} of the challengers more than 0.003 from the champion in truth; "
          f"truly better by >= 0.003 published {kept_better}/{len(better)}; "
          f"degraded refused {refused}/{len(bad)}")
    print(f"# last day: live {days[-1]['truth_after']:.4f}, oracle {result['oracle']:.4f}, "
          f"legacy {result['legacy']:.4f}")
    if est:
        errors = [abs(e / t - 1) for e, t in zip(est, true, strict=False)]
        print("# propensities (estimated / true examination, relative to position 1): " + ", ".join(
            f"{i + 1}: {e:.3f}/{t:.3f}" for i, (e, t) in enumerate(zip(est, true, strict=False))))
        print(f"# largest relative error at positions 1-{len(errors)}: {max(errors):.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--history-days", type=int, default=21)
    parser.add_argument("--cases", type=int, default=300, help="cases per simulated day")
    parser.add_argument("--click-model", default="pbm", choices=["pbm", "cascade", "trust"])
    parser.add_argument("--eta", type=float, default=0.5, help="examination 1/p^eta (pbm, trust)")
    parser.add_argument("--debias", default="exposure", choices=["none", "position", "ips", "exposure"])
    parser.add_argument("--max-regression", type=float, default=0.0)
    parser.add_argument("--explore", type=float, default=0.05)
    parser.add_argument("--naive", action="store_true", help="the loop as it was: no debiasing, no exploration, "
                        "the logged comparison decides (with --max-regression 0.01, today's default)")
    parser.add_argument("--degrade", action="store_true", help="also gate a challenger with a feature shuffled")
    parser.add_argument("--probe", action="store_true", help="also gate a challenger truly better by construction")
    parser.add_argument("--probe-weight", type=float, default=0.3, help="how far --probe moves towards the oracle")
    parser.add_argument("--degrade-features", default="A,S,T,G,U", type=lambda s: s.split(","))
    parser.add_argument("--holdout-days", type=int, default=1, help="LTR_HOLDOUT_DAYS")
    parser.add_argument("--eval-cases", type=int, default=2000)
    parser.add_argument("--oracle-cases", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    configure_logging(stream=None)
    with tempfile.TemporaryDirectory(prefix="ltr-truth-") as home:
        result = run(args, Path(home))
    summary(result)
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""`ltr compare`: the paired bootstrap, label drift, and the page on a real run's holdout (a version against itself
reads "no clear difference" with a zero interval; a version trained on another scale flags every feature)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import orjson
import pytest

from ltr_pipeline.compare import compare_versions, label_psi, paired_bootstrap, write_comparison
from ltr_pipeline.config import Settings
from ltr_pipeline.guard import feature_reference
from ltr_pipeline.pipeline import run_daily
from ltr_pipeline.record import to_builtins
from ltr_pipeline.registry import MODEL_FILE, WEIGHTS_FILE, ModelRegistry
from ltr_pipeline.scoring import WeightedSumScorer, default_weights
from ltr_pipeline.simulate import SimConfig, simulate_days


def test_the_paired_bootstrap_brackets_the_difference() -> None:
    rng = np.random.default_rng(1)
    a = rng.random(400)
    assert paired_bootstrap(a, a) == (0.0, 0.0, 0.0)
    mean, low, high = paired_bootstrap(a, a + 0.05 + rng.normal(0, 0.01, 400))
    assert low < mean < high and low > 0.04 and high < 0.06


def test_label_psi_is_zero_for_the_same_distribution_and_large_for_another() -> None:
    counts = {"0": 800, "1": 150, "3": 50}
    same = np.array([0] * 80 + [1] * 15 + [3] * 5)
    assert label_psi(counts, same) == pytest.approx(0.0)
    assert label_psi(counts, np.array([3] * 50 + [0] * 50)) > 1


def test_compare_two_versions_on_a_real_holdout(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, train_days=6, num_boost_round=40, tune_trials=1)
    names = list(settings.feature_names)
    legacy = WeightedSumScorer(default_weights(names), names)
    simulate_days(SimConfig(cases_per_day=100), date(2026, 11, 19), 8, settings.events_path,
                  lambda _: (legacy, None))
    live = run_daily(date(2026, 11, 26), settings).published_version
    assert live is not None
    registry = ModelRegistry.from_settings(settings)
    bundle = registry.load(live)
    other_scale = to_builtins(feature_reference(np.random.default_rng(0).random((3000, len(names))) * 0.01, names))
    skewed = registry.publish({MODEL_FILE: bundle.model_text.encode(), WEIGHTS_FILE: b'{"A": 1.0}'},
                              {**bundle.metadata, "reference": other_scale},
                              now=datetime(2026, 11, 27, 2, 15, tzinfo=UTC))

    itself = compare_versions(settings, live, live)
    assert {m.name for m in itself.metrics} >= {"ndcg@5", "hit@3", "mrr"}
    assert all(m.difference == m.low == m.high == 0 and m.verdict == "no clear difference" for m in itself.metrics)
    assert not any(d.flagged for d in itself.drift) and itself.label_drift is not None

    against = compare_versions(settings, skewed, live)
    assert all(d.flagged for d in against.drift) and len(against.drift) == len(names)
    page = write_comparison(settings, against).read_text()
    assert 'id="drift"' in page and page.count("drifted") == len(names) and "95% interval" in page
    assert orjson.dumps(to_builtins(against.metrics))  # the CLI's --json serialises it

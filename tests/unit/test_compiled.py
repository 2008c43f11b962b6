"""The compiled scorer (real lleaves, real compiler child process) and how the reloader swaps it in."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime
from pathlib import Path

import lightgbm as lgb
import numpy as np
import orjson
import pytest

from ltr_pipeline import compile_child, compiled
from ltr_pipeline.compiled import CompiledScorer, entry_point
from ltr_pipeline.config import Settings
from ltr_pipeline.errors import ModelLoadError
from ltr_pipeline.measures import rank_order
from ltr_pipeline.registry import ModelRegistry
from ltr_pipeline.scoring import LgbmScorer
from ltr_pipeline.service.metrics import ServiceMetrics
from ltr_pipeline.service.reloader import Reloader
from ltr_pipeline.storage.local import LocalStore
from tests.helpers import wait_until

FEATURES = list("ASTGQURC")


def compile_model(text: str, cache: Path) -> tuple[Path, Path]:
    """`compiled.compile_model` at the suite's background priority (tests/conftest.py)."""
    return compiled.compile_model(text, cache, priority=Settings().background_priority)


def _model_text(seed: int = 0, rounds: int = 40) -> str:
    rng = np.random.default_rng(seed)
    x = rng.random((2000, 8))
    x[rng.random(x.shape) < 0.05] = np.nan  # missing values take the trees' default branches
    y = np.clip((np.nan_to_num(x[:, 0]) * 2 + np.nan_to_num(x[:, 1 + seed % 7]) * 2).astype(int), 0, 3)
    booster = lgb.train({"objective": "lambdarank", "verbosity": -1, "min_data_in_leaf": 5, "seed": seed},
                        lgb.Dataset(x, y, group=[20] * 100), num_boost_round=rounds)
    return str(booster.model_to_string())


def test_compiled_and_booster_rank_every_query_identically(tmp_path: Path) -> None:
    text = _model_text()
    booster = LgbmScorer(text, FEATURES)
    fast = CompiledScorer(*compile_model(text, tmp_path), FEATURES)
    rng = np.random.default_rng(1)
    for size in (1, 2, 20, 50, 200):
        for _ in range(20):
            rows = rng.random((size, 8))
            rows[rng.random(rows.shape) < 0.1] = np.nan
            expected, got = booster.score(rows), fast.score(rows)
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
            assert rank_order(got).tolist() == rank_order(expected).tolist()
    rows = rng.random((30, 8))
    np.testing.assert_allclose(fast.score(np.asfortranarray(rows)), booster.score(rows), rtol=1e-12)
    np.testing.assert_allclose(fast.score(rows[::2]), booster.score(rows[::2]), rtol=1e-12)  # strided: copied


def test_lleaves_still_exposes_the_compiled_entry_point(tmp_path: Path) -> None:
    """The fast path reads a private lleaves name; a release that drops it fails here, by name."""
    fast = CompiledScorer(*compile_model(_model_text(), tmp_path), FEATURES)
    assert entry_point(fast.model) is not None, "lleaves.Model no longer has _c_entry_func: see compiled.entry_point"


def test_without_the_entry_point_the_compiled_model_still_scores(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    text = _model_text()
    monkeypatch.setattr("ltr_pipeline.compiled.entry_point", lambda model: None)  # as if lleaves dropped the name
    fast = CompiledScorer(*compile_model(text, tmp_path), FEATURES)
    rows = np.random.default_rng(2).random((20, 8))
    np.testing.assert_allclose(fast.score(rows), LgbmScorer(text, FEATURES).score(rows), rtol=1e-12)


def test_compiled_scorer_refuses_rows_of_another_width(tmp_path: Path) -> None:
    fast = CompiledScorer(*compile_model(_model_text(), tmp_path), FEATURES)
    for bad in (np.zeros((3, 7)), np.zeros((3, 9)), np.zeros(8)):
        with pytest.raises(ValueError, match=r"expected \(n, 8\) features"):
            fast.score(bad)


def test_very_large_models_compile_with_the_large_code_model() -> None:
    assert compile_child.options(1 << 20)["fcodemodel"] == "small"
    assert compile_child.options(compile_child.SMALL_CODE_MODEL_MAX_BYTES + 1)["fcodemodel"] == "large"


def test_compiled_model_is_cached_by_content(tmp_path: Path) -> None:
    text = _model_text()
    model_file, obj = compile_model(text, tmp_path)
    made = obj.stat().st_mtime_ns
    assert compile_model(text, tmp_path) == (model_file, obj)
    assert obj.stat().st_mtime_ns == made  # not compiled again
    other = compile_model(_model_text(seed=1), tmp_path)[1]
    assert other != obj
    assert not list(tmp_path.glob("*.partial"))


def test_a_failed_compile_raises_and_leaves_no_object(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="could not compile"):
        compile_model("tree\nnot really a model\n", tmp_path)
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.partial"))


def _publish(registry: ModelRegistry, seed: int, now: datetime | None = None) -> str:
    """Publish a 10-tree model of this seed, with unit legacy weights; its version."""
    return registry.publish({"model.txt": _model_text(seed, rounds=10).encode(),
                             "ltr_weights.json": orjson.dumps(dict.fromkeys(FEATURES, 1))}, {}, now=now)


def _registry_with(tmp_path: Path, *seeds: int) -> tuple[ModelRegistry, list[str]]:
    """A local registry with one version per seed, published a minute apart; the last one live."""
    registry = ModelRegistry(LocalStore(tmp_path / "registry"))
    return registry, [_publish(registry, seed, datetime(2026, 11, 26, 2, 15 + i, tzinfo=UTC))
                      for i, seed in enumerate(seeds)]


class GatedCompiler:
    """Stands in for `compile_model` so the test decides when each compile ends (`release(k)`: the k-th call; no
    argument: all) and which fail; the others then do the real compile."""

    def __init__(self) -> None:
        self.gates = [threading.Event() for _ in range(4)]
        self.fail: set[int] = set()
        self._calls = itertools.count()

    def release(self, *calls: int) -> None:
        for k in calls or range(len(self.gates)):
            self.gates[k].set()

    def __call__(self, text: str, cache: Path) -> tuple[Path, Path]:
        call = next(self._calls)
        assert self.gates[call].wait(30)
        if call in self.fail:
            raise ModelLoadError("no compiler here")
        return compile_model(text, cache)


def test_booster_serves_until_the_compiled_scorer_is_ready(settings: Settings, tmp_path: Path) -> None:
    registry, (v1,) = _registry_with(tmp_path, 1)
    compiler = GatedCompiler()
    reloader = Reloader(settings, registry, ServiceMetrics(), compiler=compiler)
    assert reloader.check()["outcome"] == "loaded"
    assert reloader.live.version == v1 and reloader.live.scorer.backend == "lightgbm"  # type: ignore[union-attr]
    booster_scores = reloader.live.scorer.score(np.full((3, 8), 0.5))  # type: ignore[union-attr]
    compiler.release()
    wait_until(lambda: reloader.live.scorer.backend == "lleaves", what="the compiled scorer")  # type: ignore[union-attr]
    assert reloader.live.version == v1
    np.testing.assert_allclose(reloader.live.scorer.score(np.full((3, 8), 0.5)), booster_scores)  # type: ignore[union-attr]
    assert reloader.metrics.total("ltr_compiles_total", outcome="swapped") == 1
    assert reloader.metrics.total("ltr_model_info", role="live", version=v1, backend="lleaves") == 1
    assert reloader.metrics.total("ltr_model_info", role="live", version=v1, backend="lightgbm") == 0


def test_a_compile_finishing_after_a_newer_reload_is_not_swapped_in(settings: Settings, tmp_path: Path) -> None:
    registry, (v1, v2) = _registry_with(tmp_path, 1, 2)
    registry.rollback(v1)
    compiler = GatedCompiler()
    reloader = Reloader(settings, registry, ServiceMetrics(), compiler=compiler)
    reloader.check()
    registry.rollback(v2)
    reloader.check()
    assert reloader.live.version == v2
    compiler.release()
    wait_until(lambda: reloader.metrics.total("ltr_compiles_total") == 2, what="both compiles")
    assert reloader.metrics.total("ltr_compiles_total", outcome="stale") == 1
    assert reloader.live.version == v2 and reloader.live.scorer.backend == "lleaves"  # type: ignore[union-attr]


def test_a_failing_compiler_leaves_the_booster_serving(settings: Settings, tmp_path: Path) -> None:
    registry, (v1,) = _registry_with(tmp_path, 1)

    def broken(text: str, cache: Path) -> tuple[Path, Path]:
        raise ModelLoadError("no compiler here")

    reloader = Reloader(settings, registry, ServiceMetrics(), compiler=broken)
    reloader.check()
    wait_until(lambda: reloader.metrics.total("ltr_compiles_total", outcome="failed") == 1, what="the failure")
    assert reloader.live.version == v1 and reloader.live.scorer.backend == "lightgbm"  # type: ignore[union-attr]


def test_the_compiled_model_serves_until_the_next_one_is_compiled(settings: Settings, tmp_path: Path) -> None:
    registry, (v1, v2, v3) = _registry_with(tmp_path, 1, 2, 3)
    registry.rollback(v1)
    compiler = GatedCompiler()
    reloader = Reloader(settings, registry, ServiceMetrics(), compiler=compiler)
    reloader.check()
    assert reloader.live.backend == "lightgbm"  # nothing compiled serves yet: v1's booster goes live at once
    compiler.release(0)
    wait_until(lambda: reloader.live.backend == "lleaves", what="v1 compiled")

    registry.rollback(v2)
    assert reloader.check()["outcome"] == "loaded"
    assert (reloader.live.version, reloader.live.backend) == (v1, "lleaves")  # v1 compiled serves meanwhile
    assert reloader.waiting_version == v2
    compiler.release(1)
    wait_until(lambda: reloader.live.version == v2, what="v2 live")
    assert reloader.live.backend == "lleaves"  # live with its compiled scorer, never its booster
    assert reloader.waiting_version is None
    assert reloader.metrics.total("ltr_model_info", role="live", version=v2, backend="lleaves") == 1

    registry.rollback(v3)
    compiler.fail.add(2)
    reloader.check()
    assert reloader.live.version == v2
    compiler.release(2)
    wait_until(lambda: reloader.live.version == v3, what="v3 live")
    assert reloader.live.backend == "lightgbm"  # its compile failed: its booster went live


def _serving_compiled(settings: Settings, registry: ModelRegistry, version: str) -> tuple[Reloader, GatedCompiler]:
    """A reloader serving `version` compiled; the compiler's later calls wait for the test."""
    registry.rollback(version)
    compiler = GatedCompiler()
    reloader = Reloader(settings, registry, ServiceMetrics(), compiler=compiler)
    reloader.check()
    compiler.release(0)
    wait_until(lambda: reloader.live.backend == "lleaves", what=f"{version} compiled")
    return reloader, compiler


def test_a_pointer_moved_back_drops_the_version_waiting_for_its_compile(settings: Settings, tmp_path: Path) -> None:
    registry, (v1, v2) = _registry_with(tmp_path, 1, 2)
    reloader, compiler = _serving_compiled(settings, registry, v1)
    registry.rollback(v2)
    reloader.check()  # v2 waits for its compile
    registry.rollback(v1)
    reloader.check()  # back on v1, which serves: v2 is dropped
    compiler.release(1)
    wait_until(lambda: reloader.metrics.total("ltr_compiles_total", outcome="stale") == 1, what="v2's compile")
    assert (reloader.live.version, reloader.live.backend) == (v1, "lleaves")


def test_a_new_version_waits_for_its_compile_no_longer_than_the_limit(settings: Settings, tmp_path: Path) -> None:
    registry, (v1, v2, v3) = _registry_with(tmp_path, 1, 2, 3)
    reloader, compiler = _serving_compiled(settings.model_copy(update={"compile_wait_seconds": 0.2}), registry, v1)
    registry.rollback(v2)
    reloader.check()
    assert reloader.live.version == v1  # v2 waits for its compile, which the test holds back
    wait_until(lambda: reloader.live.version == v2, what="v2 live after the wait")
    assert reloader.live.backend == "lightgbm" and not compiler.gates[1].is_set()
    compiler.release(1)
    wait_until(lambda: reloader.live.backend == "lleaves", what="v2 compiled")  # then swapped in as usual
    assert reloader.live.version == v2

    registry.rollback(v3)
    assert reloader.check(force=True)["outcome"] == "loaded"  # an admin reload does not wait
    assert (reloader.live.version, reloader.live.backend) == (v3, "lightgbm")
    compiler.release(2)


def test_with_no_compile_wait_the_new_booster_goes_live_at_once(settings: Settings, tmp_path: Path) -> None:
    registry, (v1, v2) = _registry_with(tmp_path, 1, 2)
    reloader, compiler = _serving_compiled(settings.model_copy(update={"compile_wait_seconds": 0}), registry, v1)
    registry.rollback(v2)
    reloader.check()
    assert (reloader.live.version, reloader.live.backend) == (v2, "lightgbm")
    compiler.release(1)
    wait_until(lambda: reloader.live.backend == "lleaves", what="v2 compiled")

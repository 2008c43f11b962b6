"""The optional compiled scorer: lleaves turns a LightGBM text model into native code that predicts 2-5x faster.

Compiling takes seconds (about 0.7 s for 100 trees, 2 s for 300 here), so the reloader never does it on the request
path: after a load it calls `compile_model` from a background thread, which runs the compiler in a child process
at low CPU priority, and the compiled scorer is loaded, checked against the booster and swapped in. Meanwhile the
previous compiled model serves, or the new version's booster when none did (`service.reloader`). Without lleaves
installed, or when compiling fails, the booster simply goes on serving.

The compiled object is cached in `LTR_COMPILE_CACHE_DIR`, keyed by the model text, the compile options, the compiler's
versions and the host CPU, so a restart or a second worker loads it in milliseconds. The cache is local and written only
by this service: compiled code is never taken from the registry (it is code, and the registry holds data).

The child process is `ltr_pipeline.compile_child`.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import hashlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from ltr_pipeline import compile_child
from ltr_pipeline.errors import ModelLoadError
from ltr_pipeline.fileutil import write_atomic
from ltr_pipeline.priority import Priority
from ltr_pipeline.scoring import FloatArray, Scorer

log = structlog.get_logger(__name__)
# lleaves' entry point: (rows, out, first row, end row), doubles, rows row-major with the model's feature count.
_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32)


def available() -> bool:
    return importlib.util.find_spec("lleaves") is not None


@functools.cache
def _toolchain() -> str:
    """lleaves' and LLVM's versions and the host CPU, looked up once: reading package metadata takes milliseconds of
    Python, in a thread that shares the GIL with the requests."""
    from importlib.metadata import version

    import llvmlite.binding as llvm

    return f"lleaves {version('lleaves')}|llvmlite {version('llvmlite')}|{llvm.get_host_cpu_name()}"


def cache_key(model_text: str) -> str:
    """sha256 over the model text, the compile options, lleaves' and LLVM's versions and the host CPU: what the
    object code depends on."""
    text = model_text.encode()
    digest = hashlib.sha256(text)
    options = sorted(compile_child.options(len(text)).items())
    digest.update(f"|{options}|{_toolchain()}".encode())
    return digest.hexdigest()


def compile_model(model_text: str, cache_dir: Path, timeout: float = 600.0,
                  priority: Priority = "idle") -> tuple[Path, Path]:
    """(model file, compiled object) for this model, compiling it unless cached. Blocking, seconds when not cached.

    A file lock makes one worker compile while the others wait for its result; the object appears under its final
    name only once complete, so a crash mid-compile leaves no half-written file behind.
    """
    key = cache_key(model_text)
    cache_dir.mkdir(parents=True, exist_ok=True)
    model_file, obj = cache_dir / f"{key}.txt", cache_dir / f"{key}.bin"
    with open(cache_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not obj.exists():
            write_atomic(model_file, model_text.encode())
            partial = cache_dir / f"{key}.{os.getpid()}.partial"
            done = subprocess.run(
                [sys.executable, "-m", "ltr_pipeline.compile_child", str(model_file), str(partial), priority],
                capture_output=True, timeout=timeout,  # no preexec_fn: it would fork the whole server (a stall)
            )
            if done.returncode != 0 or not partial.exists():
                partial.unlink(missing_ok=True)
                raise ModelLoadError(f"lleaves could not compile the model: {done.stderr.decode()[-500:]}")
            os.replace(partial, obj)
    return model_file, obj


class CompiledScorer(Scorer):
    algorithm = "ltr"
    backend = "lleaves"

    def __init__(self, model_file: Path, obj: Path, feature_names: Sequence[str]) -> None:
        import lleaves

        self.model = lleaves.Model(model_file=str(model_file))
        if self.model.num_feature() != len(feature_names):
            raise ModelLoadError(f"compiled model expects {self.model.num_feature()} features, "
                                 f"settings name {len(feature_names)}")
        self.model.compile(cache=str(obj))
        self.n_features = len(feature_names)
        self._forest = entry_point(self.model)  # `self.model` keeps its code alive

    def score(self, features: FloatArray) -> FloatArray:
        rows = np.ascontiguousarray(features, dtype=np.float64)  # no copy for the service's arrays
        if rows.ndim != 2 or rows.shape[1] != self.n_features:  # the compiled code reads exactly this many columns
            raise ValueError(f"expected (n, {self.n_features}) features, got {rows.shape}")
        if self._forest is None:
            return np.asarray(self.model.predict(rows, n_jobs=1), dtype=np.float64)
        out = np.empty(len(rows))
        self._forest(rows.ctypes.data, out.ctypes.data, 0, len(rows))
        return out


def entry_point(model: Any) -> Any:
    """The compiled forest's native entry point, to call with plain addresses; None when lleaves does not expose it.

    lleaves' own `predict` adds about 4 us of checks and ctypes conversions per call (11 vs 7 us for one row) that
    `score` does itself, once; the function releases the GIL while it runs. lleaves keeps the entry point under a
    private name (`Model._c_entry_func`): this is the one place that reads it. Without it, `score` calls the public
    `predict` (slower, same scores), and the test of this function fails with a message naming the attribute.
    """
    func = getattr(model, "_c_entry_func", None)
    address = ctypes.cast(func, ctypes.c_void_p).value if func is not None else None
    if not address:
        log.warning("compiled.no_entry_point", hint="lleaves no longer exposes Model._c_entry_func: using predict()")
        return None
    return _ENTRY(address)

"""The README's first command installs only the core dependencies (`make demo`); CI installs every extra, so a module
imported at the top of src/ but missing from the core list passes CI and breaks a new user's first hour (pyarrow did,
from 922bc2b to this test). Every third-party module that src/ imports at module level must come from a core
dependency or from what one of them requires."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "ltr_pipeline"


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _core_closure() -> set[str]:
    """The core dependencies and, transitively, what they require without extras (as installed here: a requirement
    whose marker excludes this Python is not installed, and provides no module)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [_name(r) for r in project["dependencies"]]
    seen: set[str] = set()
    while todo:
        dist = todo.pop()
        if dist in seen:
            continue
        try:
            needs = requires(dist) or []
        except PackageNotFoundError:
            continue
        seen.add(dist)
        todo += [_name(r) for r in needs if "extra ==" not in r]
    return seen


def _module_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in {"__future__", "ltr_pipeline"}}


def test_every_module_level_import_comes_with_the_core_install() -> None:
    core, owners = _core_closure(), packages_distributions()
    missing = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in SRC.rglob("*.py")
        for module in _module_level_imports(path)
        if not {_name(d) for d in owners.get(module, [module])} & core
    }
    assert not missing, f"imported at module level but not a core dependency: {sorted(missing)}"


def test_the_check_sees_an_undeclared_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import boto3\nimport polars\n\ndef f():\n    import confluent_kafka\n")
    assert _module_level_imports(module) == {"boto3", "polars"}  # lazy imports inside functions are allowed
    assert "boto3" not in _core_closure() and "polars" in _core_closure()

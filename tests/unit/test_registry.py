from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from ltr_pipeline.errors import IntegrityError, RegistryError, VersionNotFound
from ltr_pipeline.registry import ModelRegistry, rollback_weights, sha256
from ltr_pipeline.storage.local import LocalStore

NOW = datetime(2026, 11, 27, 2, 15, tzinfo=UTC)


def files(tag: str) -> dict[str, bytes]:
    return {"model.txt": f"model {tag}".encode(), "ltr_weights.json": orjson.dumps({"A": 0.6, "S": 0.4})}


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(LocalStore(tmp_path / "reg"))


def test_publish_writes_the_contract_layout(registry: ModelRegistry, tmp_path: Path) -> None:
    version = registry.publish(files("a"), {"run_date": "2026-11-26"}, now=NOW)
    assert version == "20261127_0215"
    root = tmp_path / "reg"
    for name in ("model.txt", "ltr_weights.json", "metadata.json"):
        assert (root / version / name).is_file()
        assert (root / "latest" / name).read_bytes() == (root / version / name).read_bytes()
    meta = orjson.loads((root / version / "metadata.json").read_bytes())
    assert meta["sha256"]["model.txt"] == sha256(b"model a")
    assert meta["run_date"] == "2026-11-26" and meta["version"] == version
    pointer = orjson.loads((root / "LATEST").read_bytes())
    assert pointer["version"] == version
    assert pointer["sha256"]["metadata.json"] == sha256((root / version / "metadata.json").read_bytes())
    assert registry.load().model_text == "model a"


def test_version_collisions_get_a_suffix(registry: ModelRegistry) -> None:
    versions = [registry.publish(files(str(i)), {}, now=NOW) for i in range(3)]
    assert versions == ["20261127_0215", "20261127_0215_2", "20261127_0215_3"]
    assert registry.versions() == versions
    assert registry.live_version() == versions[-1]


def test_crash_before_the_pointer_moves_keeps_the_old_version_live(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = registry.publish(files("old"), {}, now=NOW)
    real_write = registry.store.write

    def crash_on_pointer(key: str, data: bytes) -> None:
        if key == "LATEST":
            raise OSError("power cut")
        real_write(key, data)

    monkeypatch.setattr(registry.store, "write", crash_on_pointer)
    with pytest.raises(OSError):
        registry.publish(files("new"), {}, now=datetime(2026, 11, 28, 2, 15, tzinfo=UTC))
    monkeypatch.undo()
    assert registry.live_version() == old
    assert registry.load().model_text == "model old"


def test_crash_while_writing_version_files_leaves_no_listed_version(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = registry.publish(files("old"), {}, now=NOW)
    real_write = registry.store.write

    def crash_on_metadata(key: str, data: bytes) -> None:
        if key.endswith("metadata.json"):
            raise OSError("disk full")
        real_write(key, data)

    monkeypatch.setattr(registry.store, "write", crash_on_metadata)
    with pytest.raises(OSError):
        registry.publish(files("new"), {}, now=datetime(2026, 11, 28, 2, 15, tzinfo=UTC))
    monkeypatch.undo()
    assert registry.versions() == [old]
    assert registry.live_version() == old


def test_tampered_file_is_refused(registry: ModelRegistry, tmp_path: Path) -> None:
    version = registry.publish(files("a"), {}, now=NOW)
    (tmp_path / "reg" / version / "model.txt").write_bytes(b"model evil")
    with pytest.raises(IntegrityError, match="sha256"):
        registry.load()


def test_rollback_prune_and_audit(registry: ModelRegistry) -> None:
    v1 = registry.publish(files("1"), {}, now=datetime(2026, 11, 25, 2, 15, tzinfo=UTC))
    v2 = registry.publish(files("2"), {}, now=datetime(2026, 11, 26, 2, 15, tzinfo=UTC))
    v3 = registry.publish(files("3"), {}, now=datetime(2026, 11, 27, 2, 15, tzinfo=UTC))
    registry.rollback(v1, reason="bad model")
    assert registry.live_version() == v1
    assert registry.load().model_text == "model 1"
    assert registry.store.read("latest/model.txt") == b"model 1"
    # keep=1 keeps the newest (v3) and never deletes the live one (v1)
    assert registry.prune(keep=1) == [v2]
    assert registry.versions() == [v1, v3]
    actions = [(e["action"], e["version"]) for e in registry.audit_log()]
    assert actions == [("publish", v1), ("publish", v2), ("publish", v3), ("rollback", v1), ("prune", v2)]
    assert registry.audit_log()[3]["previous"] == v3 and registry.audit_log()[3]["reason"] == "bad model"
    with pytest.raises(RegistryError):
        registry.prune(keep=0)


def test_unknown_versions_are_clear_errors(registry: ModelRegistry) -> None:
    with pytest.raises(VersionNotFound, match="nothing was published"):
        registry.load()
    with pytest.raises(VersionNotFound, match="not found"):
        registry.rollback("20200101_0000")
    with pytest.raises(VersionNotFound, match="not a version name"):
        registry.show("../etc")


def test_publish_refuses_invalid_weights(registry: ModelRegistry) -> None:
    bad = {**files("a"), "ltr_weights.json": b'{"A": -1}'}
    with pytest.raises(Exception, match="weight"):
        registry.publish(bad, {}, now=NOW)
    assert registry.live_version() is None


def test_seed_entry_point_rollback_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = ModelRegistry(LocalStore(tmp_path / "seed"))
    v1 = registry.publish(files("1"), {}, now=datetime(2026, 11, 25, 2, 15, tzinfo=UTC))
    registry.publish(files("2"), {}, now=NOW)
    monkeypatch.setenv("LTR_REGISTRY_URI", str(tmp_path / "seed"))
    assert rollback_weights(v1) == v1
    assert registry.live_version() == v1

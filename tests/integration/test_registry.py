from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from ltr_pipeline.config import Settings
from ltr_pipeline.errors import IntegrityError, RegistryError, VersionNotFound
from ltr_pipeline.registry import ModelRegistry, rollback_weights, sha256
from ltr_pipeline.storage.local import LocalStore

NOW = datetime(2026, 11, 27, 2, 15, tzinfo=UTC)


def files(tag: str) -> dict[str, bytes]:
    return {"model.txt": f"model {tag}".encode(), "ltr_weights.json": orjson.dumps({"A": 0.6, "S": 0.4})}


@pytest.fixture(params=["local", "s3"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> ModelRegistry:
    """The same registry behaviour over every backend: local disk, and S3 on a real moto server."""
    if request.param == "local":
        return ModelRegistry(LocalStore(tmp_path / "reg"))
    return ModelRegistry.from_settings(request.getfixturevalue("s3_settings"))


def test_publish_writes_the_contract_layout(registry: ModelRegistry) -> None:
    version = registry.publish(files("a"), {"run_date": "2026-11-26"}, now=NOW)
    assert version == "20261127_0215"
    store = registry.store
    for name in ("model.txt", "ltr_weights.json", "metadata.json"):
        assert store.read(f"latest/{name}") == store.read(f"{version}/{name}")
    meta = orjson.loads(store.read(f"{version}/metadata.json"))
    assert meta["sha256"]["model.txt"] == sha256(b"model a")
    assert meta["run_date"] == "2026-11-26" and meta["version"] == version
    pointer = orjson.loads(store.read("LATEST"))
    assert pointer["version"] == version
    assert pointer["sha256"]["metadata.json"] == sha256(store.read(f"{version}/metadata.json"))
    assert registry.load().model_text == "model a"
    assert [k for k in store.list() if not k.startswith("audit/")] == sorted([
        "LATEST", *(f"{d}/{n}" for d in (version, "latest") for n in ("ltr_weights.json", "metadata.json", "model.txt"))
    ])


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


def test_tampered_file_is_refused(registry: ModelRegistry) -> None:
    version = registry.publish(files("a"), {}, now=NOW)
    registry.store.write(f"{version}/model.txt", b"model evil")
    with pytest.raises(IntegrityError, match="sha256"):
        registry.load()
    with pytest.raises(IntegrityError):
        registry.rollback(version)


def test_cheap_poll_reads_the_pointer_only_when_it_changed(registry: ModelRegistry) -> None:
    registry.publish(files("a"), {}, now=NOW)
    first = registry.pointer_if_changed(None)
    assert first is not None
    assert registry.pointer_if_changed(first[1]) is None  # unchanged: nothing downloaded
    registry.publish(files("b"), {}, now=datetime(2026, 11, 28, 2, 15, tzinfo=UTC))
    changed = registry.pointer_if_changed(first[1])
    assert changed is not None and changed[0]["version"] == "20261128_0215"


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


def test_seed_entry_point_rollback_weights(s3_settings: Settings) -> None:
    # The seed's call, configured only by its S3_* / AWS_* environment (set by the fixture).
    registry = ModelRegistry.from_settings(s3_settings)
    v1 = registry.publish(files("1"), {}, now=datetime(2026, 11, 25, 2, 15, tzinfo=UTC))
    registry.publish(files("2"), {}, now=NOW)
    assert rollback_weights(v1) == v1
    assert registry.live_version() == v1


def test_a_relative_registry_path_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    registry = ModelRegistry(LocalStore("ltr-demo/registry/ltr"))
    version = registry.publish(files("a"), {}, now=NOW)
    assert registry.versions() == [version]
    assert [entry["action"] for entry in registry.audit_log()] == ["publish"]
    with pytest.raises(RegistryError, match="escapes"):
        registry.store.read("../../outside")

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
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
    names = ("ltr_weights.json", "metadata.json", "model.txt")
    assert [k for k in store.list() if not k.startswith("audit/")] == sorted([
        "LATEST", *(f"{d}/{n}" for d in (version, "latest") for n in names), f"reservations/{version}.json",
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
    registry.publish(files("b"), {}, now=NOW)
    with pytest.raises(IntegrityError):  # rolling back to the tampered version: refused, b stays live
        registry.rollback(version)
    assert registry.load().model_text == "model b"


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
    with pytest.raises(RegistryError, match="already the live version"):  # no audited no-op
        registry.rollback(v1)
    assert len(registry.audit_log()) == 5


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


def test_two_publishers_in_the_same_minute_never_share_a_version(registry: ModelRegistry) -> None:
    """Issue 17, class 5: 50 rounds of two publishers started together (threads, each with its own client): each
    is told the version that holds its own model, and LATEST is valid after every round."""
    stores = [ModelRegistry(type(registry.store).from_uri(_uri(registry), Settings())) if not
              isinstance(registry.store, LocalStore) else ModelRegistry(LocalStore(registry.store.root))
              for _ in range(2)]
    for round_ in range(50):
        now = datetime(2026, 11, 27, 2, 15, tzinfo=UTC) + timedelta(days=round_)
        barrier = threading.Barrier(2)
        told: dict[int, str] = {}

        def publish(i: int, now: datetime = now, barrier: threading.Barrier = barrier, told: dict = told,
                    round_: int = round_) -> None:
            barrier.wait()
            told[i] = stores[i].publish(files(f"{round_}-{i}"), {}, now=now)

        threads = [threading.Thread(target=publish, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(told.values())) == 2, told  # no silent overwrite: two versions
        for i, version in told.items():
            assert registry.load(version).model_text == f"model {round_}-{i}"
        assert registry.load().version in told.values()  # LATEST verifies against its checksums


def _uri(registry: ModelRegistry) -> str:
    store = registry.store
    return f"s3://{store.bucket}/{store.prefix}"  # type: ignore[attr-defined]


def test_versions_order_by_number_and_prune_keeps_the_real_newest(registry: ModelRegistry) -> None:
    versions = [registry.publish(files(str(i)), {}, now=NOW) for i in range(11)]
    assert versions[-1] == "20261127_0215_11" and registry.versions() == versions  # _11 after _9, not after _1
    registry.rollback(versions[0])
    assert registry.prune(keep=1) == versions[1:-1]  # the newest (_11) and the live one stay
    assert registry.versions() == [versions[0], versions[-1]]


def test_publishing_the_live_model_again_is_a_no_op(registry: ModelRegistry) -> None:
    first = registry.publish(files("a"), {"run_date": "2026-11-26"}, now=NOW)
    again = registry.publish(files("a"), {"run_date": "2026-11-26"}, now=datetime(2026, 11, 27, 3, 0, tzinfo=UTC))
    assert again == first and registry.versions() == [first]
    assert [e["action"] for e in registry.audit_log()] == ["publish"]
    assert registry.publish(files("b"), {}, now=NOW) == "20261127_0215_2"  # a different model: a new version


def test_prune_clears_what_crashes_leave_and_repairs_latest(registry: ModelRegistry) -> None:
    live = registry.publish(files("a"), {}, now=NOW)
    store = registry.store
    long_ago = orjson.dumps({"at": "2026-01-01T00:00:00+00:00", "by": "crashed"})
    store.write("reservations/20261126_0215.json", long_ago)  # a publish that crashed after its first file
    store.write("20261126_0215/model.txt", b"half a publish")
    store.write("20261130_0215/model.txt", b"in progress")  # one under way right now: left alone
    store.write("reservations/20261130_0215.json", orjson.dumps({"at": datetime.now(UTC).isoformat(), "by": "x"}))
    store.write("latest/model.txt", b"a crash between latest/ and LATEST")
    if isinstance(store, LocalStore):
        stale = store.root / live / ".model.txt.abc.tmp"
        stale.write_bytes(b"tmp")
        os.utime(stale, (0, 0))
    assert registry.prune(keep=5) == []
    keys = store.list()
    assert not any(k.startswith("20261126_0215") for k in keys) and "reservations/20261126_0215.json" not in keys
    assert "20261130_0215/model.txt" in keys
    assert store.read("latest/model.txt") == b"model a"  # repaired from the pointer's version
    if isinstance(store, LocalStore):
        assert not stale.exists()

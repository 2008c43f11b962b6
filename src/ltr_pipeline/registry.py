"""The model registry over any ArtifactStore: publish, read the live version, list, show, rollback, prune, audit.

Layout (contract):
    <root>/<version>/model.txt, ltr_weights.json, metadata.json   metadata carries the sha256 of the other two
    <root>/latest/...                                              a copy for consumers that read fixed paths
    <root>/LATEST                                                  {"version", "sha256"}: the pointer readers trust
    <root>/audit/<timestamp>_<action>_<version>.json               one object per publish, rollback or prune
    <root>/reservations/<version>.json                             who took the version name, and when

Publish order: reserve the version name -> version files -> metadata -> read back and verify -> latest/ copy ->
LATEST. The pointer moves last, so a failure at any earlier step leaves the previous version live. The name is
reserved by creating `reservations/<version>.json` exclusively (a link on disk, a conditional PUT on S3): of two
publishers in the same minute one gets the name and the other the next suffix. Publishing the model and weights that
are already live is a no-op that answers the live version (a run retried after a crash publishes once).

Versions order by time, then suffix as a number (`_9` before `_17`). `prune` also removes what crashes leave: version
folders without metadata older than LEFTOVER_SECONDS, the store's temporary files, and a `latest/` copy that
disagrees with LATEST (the pointer is the truth).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from ltr_pipeline.errors import IntegrityError, ObjectNotFound, PointerError, RegistryError, VersionNotFound
from ltr_pipeline.scoring import parse_weights
from ltr_pipeline.storage import ArtifactStore, store_for

if TYPE_CHECKING:
    from ltr_pipeline.config import Settings

log = structlog.get_logger(__name__)

MODEL_FILE = "model.txt"
WEIGHTS_FILE = "ltr_weights.json"
METADATA_FILE = "metadata.json"
ARTIFACTS = (MODEL_FILE, WEIGHTS_FILE)
POINTER = "LATEST"
LATEST_DIR = "latest"
AUDIT_DIR = "audit"
VERSION_RE = re.compile(r"^\d{8}_\d{4}(_\d+)?$")
RESERVATIONS_DIR = "reservations"
BAD_DIR = "bad"  # bad/<version>.json: the guard's verdict on a version it rolled back or flagged (guard.py)
LEFTOVER_SECONDS = 3600.0  # a version folder without metadata this old is a crashed publish, not one in progress


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def version_stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%d_%H%M")


def version_order(version: str) -> tuple[str, int]:
    """Sort key: the stamp, then the suffix as a number (no suffix: 1)."""
    suffix = version[14:]  # after "YYYYMMDD_HHMM_"
    return version[:13], int(suffix) if suffix else 1


@dataclass(frozen=True)
class ModelBundle:
    """A verified version: every file matched its recorded checksum."""

    version: str
    model_text: str
    weights: dict[str, float]
    metadata: dict[str, Any]
    pointer_sha: str  # sha256 of metadata.json: changes whenever the live version's content does


class ModelRegistry:
    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRegistry:
        """The registry at settings.registry (plus its mirror, if configured)."""
        return cls(store_for(settings))

    @property
    def uri(self) -> str:
        return self.store.uri

    # --- reading ------------------------------------------------------------------------------------------

    def pointer(self) -> dict[str, Any] | None:
        try:
            return self._parse_pointer(self.store.read(POINTER))
        except ObjectNotFound:
            return None

    def pointer_if_changed(self, tag: str | None) -> tuple[dict[str, Any], str] | None:
        """The pointer and its storage tag when it changed since `tag` (None: unchanged). Raises if absent."""
        changed = self.store.read_if_changed(POINTER, tag)
        if changed is None:
            return None
        try:
            return self._parse_pointer(changed[0]), changed[1]
        except IntegrityError as exc:
            raise PointerError(str(exc), changed[1]) from None

    @staticmethod
    def _parse_pointer(raw: bytes) -> dict[str, Any]:
        try:
            pointer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise IntegrityError(f"{POINTER} is not valid JSON") from None
        if not isinstance(pointer, dict) or not VERSION_RE.match(str(pointer.get("version", ""))):
            raise IntegrityError(f"{POINTER} does not name a version")
        return pointer

    def live_version(self) -> str | None:
        pointer = self.pointer()
        return pointer["version"] if pointer else None

    def versions(self) -> list[str]:
        """Complete versions (those with metadata), oldest first."""
        return sorted((
            key.split("/")[0]
            for key in self.store.list()
            if key.endswith(f"/{METADATA_FILE}") and VERSION_RE.match(key.split("/")[0]) and key.count("/") == 1
        ), key=version_order)

    def show(self, version: str) -> dict[str, Any]:
        self._check_name(version)
        return dict(orjson.loads(self._read_version_file(version, METADATA_FILE)))

    def load(self, version: str | None = None) -> ModelBundle:
        """Read and verify a version (default: the live one)."""
        pointer = self.pointer()
        if version is None:
            if pointer is None:
                raise VersionNotFound(f"no live version in {self.uri}: nothing was published yet")
            version = pointer["version"]
        raw_meta = self._read_version_file(version, METADATA_FILE)
        if pointer and pointer["version"] == version:
            expected = pointer.get("sha256", {}).get(METADATA_FILE)
            if expected and expected != sha256(raw_meta):
                raise IntegrityError(f"{version}/{METADATA_FILE} does not match the checksum in {POINTER}")
        metadata = orjson.loads(raw_meta)
        files = {}
        for name in ARTIFACTS:
            data = self._read_version_file(version, name)
            if sha256(data) != metadata["sha256"][name]:
                raise IntegrityError(f"{version}/{name} does not match its sha256 in metadata: refusing to load")
            files[name] = data
        return ModelBundle(
            version=version,
            model_text=files[MODEL_FILE].decode("utf-8"),
            weights=parse_weights(files[WEIGHTS_FILE]),
            metadata=metadata,
            pointer_sha=sha256(raw_meta),
        )

    def _read_version_file(self, version: str, name: str) -> bytes:
        self._check_name(version)
        try:
            return self.store.read(f"{version}/{name}")
        except ObjectNotFound:
            what = f"version {version}" if name == METADATA_FILE else f"{version}/{name}"  # no metadata: no version
            raise VersionNotFound(f"{what} not found in {self.uri} (see `ltr registry list`)") from None

    @staticmethod
    def _check_name(version: str) -> None:
        if not VERSION_RE.match(version):
            raise VersionNotFound(f"{version!r} is not a version name (YYYYMMDD_HHMM)")

    def audit_log(self, version: str | None = None) -> list[dict[str, Any]]:
        """Every audit entry, oldest first; with `version`, only that version's (read by their key alone)."""
        keys = self.store.list(AUDIT_DIR)
        if version is not None:
            keys = [k for k in keys if k.endswith(f"_{version}.json")]
        return [orjson.loads(self.store.read(key)) for key in keys]

    # --- writing ------------------------------------------------------------------------------------------

    def _reserve(self, now: datetime) -> str:
        """A version name no one else has: the stamp of `now`, or its next free suffix, taken atomically."""
        base = version_stamp(now)
        taken = {key.split("/")[0] for key in self.store.list() if key.startswith(base)}
        claim = orjson.dumps({"at": datetime.now(UTC).isoformat(), "by": uuid.uuid4().hex})
        for n in range(1, 10_000):
            candidate = base if n == 1 else f"{base}_{n}"
            if candidate not in taken and self.store.create(self._reservation(candidate), claim):
                return candidate
        raise RegistryError(f"no free version name for {base} in {self.uri}")

    @staticmethod
    def _reservation(version: str) -> str:
        return f"{RESERVATIONS_DIR}/{version}.json"

    def _live_with(self, files: dict[str, bytes]) -> str | None:
        """The live version, if it holds exactly these files (then publishing them again changes nothing)."""
        pointer = self.pointer()
        if pointer is None:
            return None
        try:
            recorded = self.show(pointer["version"])["sha256"]
        except (RegistryError, KeyError, TypeError):
            return None
        return pointer["version"] if all(recorded.get(n) == sha256(files[n]) for n in ARTIFACTS) else None

    def publish(self, files: dict[str, bytes], metadata: dict[str, Any], now: datetime | None = None) -> str:
        """Publish model.txt and ltr_weights.json as a new version and make it live. Returns the version (the live
        one, untouched, when it holds these very files)."""
        missing = set(ARTIFACTS) - set(files)
        if missing:
            raise RegistryError(f"cannot publish without {', '.join(sorted(missing))}")
        parse_weights(files[WEIGHTS_FILE])
        live = self._live_with(files)
        if live is not None:
            log.info("registry.already_live", version=live, registry=self.uri)
            return live
        now = now or datetime.now(UTC)
        version = self._reserve(now)
        meta = {
            **metadata,
            "version": version,
            "created_at": now.astimezone(UTC).isoformat(),
            "sha256": {name: sha256(files[name]) for name in ARTIFACTS},
        }
        raw_meta = orjson.dumps(meta, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
        for name in ARTIFACTS:
            self.store.write(f"{version}/{name}", files[name])
        self.store.write(f"{version}/{METADATA_FILE}", raw_meta)
        self._verify_written(version, meta["sha256"], sha256(raw_meta))
        previous = self.live_version()
        self._make_live(version, raw_meta, files)
        self._audit("publish", version, now, previous=previous)
        log.info("registry.published", version=version, registry=self.uri)
        return version

    def _verify_written(self, version: str, expected: dict[str, str], meta_sha: str) -> None:
        """Read back what was just written and compare checksums before anything points at it."""
        for name in ARTIFACTS:
            if sha256(self.store.read(f"{version}/{name}")) != expected[name]:
                raise IntegrityError(f"read-back of {version}/{name} does not match what was written")
        if sha256(self.store.read(f"{version}/{METADATA_FILE}")) != meta_sha:
            raise IntegrityError(f"read-back of {version}/{METADATA_FILE} does not match what was written")

    def _make_live(self, version: str, raw_meta: bytes, files: dict[str, bytes]) -> None:
        for name in ARTIFACTS:
            self.store.write(f"{LATEST_DIR}/{name}", files[name])
        self.store.write(f"{LATEST_DIR}/{METADATA_FILE}", raw_meta)
        shas = {name: sha256(files[name]) for name in ARTIFACTS} | {METADATA_FILE: sha256(raw_meta)}
        pointer = {"version": version, "sha256": shas, "updated_at": datetime.now(UTC).isoformat()}
        self.store.write(POINTER, orjson.dumps(pointer, option=orjson.OPT_INDENT_2))

    def rollback(self, version: str, reason: str = "", automatic: bool = False, when: datetime | None = None,
                 **figures: Any) -> str:
        """Make an existing version live again, after verifying its files. Refused for the version already live: it
        would change nothing, yet count as an intervention in the audit. `automatic`: the guard did it (not a
        person), with its `figures` in the audit."""
        if version == self.live_version():
            raise RegistryError(f"{version} is already the live version: nothing to roll back")
        return self._move_live(version, "rollback", when, reason=reason, automatic=automatic, **figures)

    def promote(self, version: str, reason: str, **figures: Any) -> str:
        """Make a challenger version live because it proved better (interleaving), with the figures in the audit."""
        return self._move_live(version, "promote", reason=reason, **figures)

    def _move_live(self, version: str, action: str, when: datetime | None = None, **audit: Any) -> str:
        previous = self.live_version()
        bundle = self.load(version)
        files = {name: self.store.read(f"{version}/{name}") for name in ARTIFACTS}
        self._make_live(version, self.store.read(f"{version}/{METADATA_FILE}"), files)
        self._audit(action, version, when or datetime.now(UTC), previous=previous, **audit)
        log.info(f"registry.{action}", version=bundle.version, previous=previous, registry=self.uri)
        return version

    def mark_bad(self, version: str, record: dict[str, Any]) -> bool:
        """Record the guard's verdict on `version`, atomically: True for the one caller that marked it first."""
        self._check_name(version)
        return self.store.create(f"{BAD_DIR}/{version}.json", orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY))

    def bad_versions(self) -> dict[str, dict[str, Any]]:
        """Versions the guard marked bad, with its verdict (reason, figures, what it did)."""
        return {key.removeprefix(f"{BAD_DIR}/").removesuffix(".json"): orjson.loads(self.store.read(key))
                for key in self.store.list(BAD_DIR) if key.endswith(".json")}

    def prune(self, keep: int) -> list[str]:
        """Delete all but the newest `keep` versions (the live version is never deleted), and crash leftovers."""
        if keep < 1:
            raise RegistryError("prune keeps at least one version")
        live = self.live_version()
        versions = self.versions()
        doomed = [v for v in versions[: max(0, len(versions) - keep)] if v != live]
        for version in doomed:
            self.store.delete_prefix(f"{version}/")
            self.store.delete_prefix(self._reservation(version))
            self._audit("prune", version, datetime.now(UTC))
        self._clean_leftovers(set(versions))
        return doomed

    def _clean_leftovers(self, complete: set[str]) -> None:
        """Version folders a crashed publish left without metadata, temporary files, and a stale `latest/`."""
        cutoff = datetime.now(UTC).timestamp() - LEFTOVER_SECONDS
        keys = self.store.list()
        started = {k.split("/")[0] for k in keys if "/" in k} | {
            k.removeprefix(f"{RESERVATIONS_DIR}/").removesuffix(".json") for k in keys
            if k.startswith(f"{RESERVATIONS_DIR}/")}
        for name in sorted(started - complete):
            if VERSION_RE.match(name) and self._reserved_at(name) < cutoff:
                files = self.store.delete_prefix(f"{name}/") + self.store.delete_prefix(self._reservation(name))
                log.warning("registry.leftover_removed", version=name, files=files)
        swept = self.store.sweep(LEFTOVER_SECONDS)
        if swept:
            log.warning("registry.temporary_files_removed", count=swept)
        pointer = self.pointer()
        if pointer is not None and self._latest_shas() != pointer.get("sha256"):
            version = pointer["version"]
            for name in (*ARTIFACTS, METADATA_FILE):
                self.store.write(f"{LATEST_DIR}/{name}", self.store.read(f"{version}/{name}"))
            log.warning("registry.latest_repaired", version=version)

    def _latest_shas(self) -> dict[str, str | None]:
        def sha(name: str) -> str | None:
            try:
                return sha256(self.store.read(f"{LATEST_DIR}/{name}"))
            except ObjectNotFound:
                return None

        return {name: sha(name) for name in (*ARTIFACTS, METADATA_FILE)}

    def _reserved_at(self, version: str) -> float:
        """When the folder's publish began (its reservation), as a timestamp; 0 when it has none."""
        try:
            return datetime.fromisoformat(orjson.loads(self.store.read(self._reservation(version)))["at"]).timestamp()
        except (ObjectNotFound, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return 0.0

    def _audit(self, action: str, version: str, when: datetime, **extra: Any) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        entry = {"action": action, "version": version, "at": when.astimezone(UTC).isoformat(), **extra}
        self.store.write(f"{AUDIT_DIR}/{stamp}_{action}_{version}.json", orjson.dumps(entry))


def rollback_weights(version: str) -> str:
    """The seed's entry point: make `version` live again in the configured registry."""
    from ltr_pipeline.config import Settings

    return ModelRegistry.from_settings(Settings()).rollback(version, reason="rollback_weights()")

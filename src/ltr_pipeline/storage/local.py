"""Artifacts on local disk. Each write goes to a temporary file in the same folder, is fsynced, then renamed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ltr_pipeline.errors import ObjectNotFound, RegistryError
from ltr_pipeline.fileutil import write_atomic
from ltr_pipeline.storage.base import ArtifactStore

if TYPE_CHECKING:
    from ltr_pipeline.config import Settings


class LocalStore(ArtifactStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()  # absolute, so listed keys are relative to one root
        self.uri = str(self.root)

    @classmethod
    def from_uri(cls, uri: str, settings: Settings) -> LocalStore:
        return cls(uri.removeprefix("file://"))

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents and path != self.root:
            raise RegistryError(f"key {key!r} escapes the store root")
        return path

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"{key} not found in {self.uri}") from None
        except OSError as exc:
            raise RegistryError(f"cannot read {key} from {self.uri}: {exc}") from exc

    def read_if_changed(self, key: str, tag: str | None) -> tuple[bytes, str] | None:
        try:
            stat = self._path(key).stat()
        except FileNotFoundError:
            raise ObjectNotFound(f"{key} not found in {self.uri}") from None
        current = f"{stat.st_mtime_ns}-{stat.st_size}-{stat.st_ino}"
        return None if current == tag else (self.read(key), current)

    def write(self, key: str, data: bytes) -> None:
        try:
            write_atomic(self._path(key), data)
        except OSError as exc:
            raise RegistryError(f"cannot write {key} to {self.uri}: {exc}") from exc

    def create(self, key: str, data: bytes) -> bool:
        try:
            return write_atomic(self._path(key), data, exclusive=True)
        except OSError as exc:
            raise RegistryError(f"cannot write {key} to {self.uri}: {exc}") from exc

    def sweep(self, older_than: float) -> int:
        """Temporary files a crash left behind (write_atomic's `.<name>.*.tmp`)."""
        cutoff = time.time() - older_than
        stale = [p for p in self.root.rglob("*.tmp") if p.is_file() and p.stat().st_mtime < cutoff]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.endswith(".tmp")
        )

    def delete_prefix(self, prefix: str) -> int:
        base = self._path(prefix)
        if base.is_file():  # a prefix that names one object, as on S3
            base.unlink()
            return 1
        if not base.is_dir():
            return 0
        count = sum(1 for p in base.rglob("*") if p.is_file())
        shutil.rmtree(base)
        return count

"""Artifacts on local disk. Each write goes to a temporary file in the same folder, is fsynced, then renamed."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ltr_pipeline.errors import ObjectNotFound, RegistryError
from ltr_pipeline.storage.base import ArtifactStore


class LocalStore(ArtifactStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents and path != self.root.resolve():
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
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise RegistryError(f"cannot write {key} to {self.uri}: {exc}") from exc

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
        if not base.is_dir():
            return 0
        count = sum(1 for p in base.rglob("*") if p.is_file())
        shutil.rmtree(base)
        return count

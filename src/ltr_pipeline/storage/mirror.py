"""Two stores written together: the primary is the source of truth, the mirror a copy.

Reads come from the primary only. Every write goes to the primary first, then to the mirror; a mirror failure is
logged and counted but never fails the write, so a publish to the primary is never undone by its copy. Because the
registry writes LATEST last on each store, a mirror that missed a write still points at a complete version.
"""

from __future__ import annotations

import structlog

from ltr_pipeline.errors import RegistryError
from ltr_pipeline.storage.base import ArtifactStore

log = structlog.get_logger(__name__)


class MirrorStore(ArtifactStore):
    def __init__(self, primary: ArtifactStore, mirror: ArtifactStore) -> None:
        self.primary, self.mirror = primary, mirror
        self.uri = primary.uri
        self._mirror_errors = 0

    @property
    def mirror_errors(self) -> int:
        return self._mirror_errors

    def _copy(self, action: str, key: str, call: object) -> None:
        try:
            call()  # type: ignore[operator]
        except RegistryError as exc:
            self._mirror_errors += 1
            log.warning("registry.mirror_failed", action=action, key=key, mirror=self.mirror.uri, error=str(exc))

    def read(self, key: str) -> bytes:
        return self.primary.read(key)

    def read_if_changed(self, key: str, tag: str | None) -> tuple[bytes, str] | None:
        return self.primary.read_if_changed(key, tag)

    def write(self, key: str, data: bytes) -> None:
        self.primary.write(key, data)
        self._copy("write", key, lambda: self.mirror.write(key, data))

    def create(self, key: str, data: bytes) -> bool:
        if not self.primary.create(key, data):  # the primary decides who wins; the mirror copies the winner
            return False
        self._copy("write", key, lambda: self.mirror.write(key, data))
        return True

    def sweep(self, older_than: float) -> int:
        return self.primary.sweep(older_than)

    def exists(self, key: str) -> bool:
        return self.primary.exists(key)

    def list(self, prefix: str = "") -> list[str]:
        return self.primary.list(prefix)

    def delete_prefix(self, prefix: str) -> int:
        count = self.primary.delete_prefix(prefix)
        self._copy("delete", prefix, lambda: self.mirror.delete_prefix(prefix))
        return count

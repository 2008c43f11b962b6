"""The storage interface under the registry (after MLflow's ArtifactRepository): keys are '/'-separated paths."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ltr_pipeline.config import Settings


class ArtifactStore(ABC):
    uri: str

    @classmethod
    def from_uri(cls, uri: str, settings: Settings) -> ArtifactStore:
        """The store at `uri` (its scheme is this class's), configured by `settings` (credentials, timeouts)."""
        raise NotImplementedError(f"{cls.__name__} is not chosen by a URI")

    @property
    def mirror_errors(self) -> int:
        """Writes that reached this store but not its mirror (0 for a store without one)."""
        return 0

    @abstractmethod
    def read(self, key: str) -> bytes:
        """The object's bytes; raises ObjectNotFound when it does not exist."""

    @abstractmethod
    def read_if_changed(self, key: str, tag: str | None) -> tuple[bytes, str] | None:
        """(bytes, tag) when the object differs from the one `tag` names, else None: a cheap poll."""

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Write one object whole: a reader sees the old bytes or the new, never a part."""

    @abstractmethod
    def create(self, key: str, data: bytes) -> bool:
        """Write one object whole only if `key` does not exist yet, atomically: of two writers racing for the same
        key exactly one gets True. False: it existed (nothing written)."""

    def sweep(self, older_than: float) -> int:
        """Delete this store's own crash leftovers (temporary files) older than `older_than` seconds; how many."""
        return 0

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Every key under `prefix`, sorted."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under `prefix`; returns how many."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

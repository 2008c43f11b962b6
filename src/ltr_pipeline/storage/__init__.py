"""Artifact stores: where registry files live. `get_store(uri)` picks the backend by URI scheme."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ltr_pipeline.errors import ConfigError
from ltr_pipeline.storage.base import ArtifactStore

if TYPE_CHECKING:
    from ltr_pipeline.config import Settings


def get_store(uri: str, settings: Settings | None = None) -> ArtifactStore:
    """The store for `uri`: a path (or file://path), or s3://bucket/prefix configured by `settings`."""
    if uri.startswith("s3://"):
        from ltr_pipeline.config import Settings
        from ltr_pipeline.storage.s3 import S3Store

        return S3Store.from_uri(uri, settings or Settings())
    if "://" in uri and not uri.startswith("file://"):
        raise ConfigError(f"unsupported registry URI {uri!r}: use a path, file://path or s3://bucket/prefix")
    from ltr_pipeline.storage.local import LocalStore

    return LocalStore(uri.removeprefix("file://"))


def store_for(settings: Settings) -> ArtifactStore:
    """The registry store the settings name, with its mirror when one is configured."""
    primary = get_store(settings.registry, settings)
    if not settings.registry_mirror_uri:
        return primary
    from ltr_pipeline.storage.mirror import MirrorStore

    return MirrorStore(primary, get_store(settings.registry_mirror_uri, settings))


__all__ = ["ArtifactStore", "get_store", "store_for"]

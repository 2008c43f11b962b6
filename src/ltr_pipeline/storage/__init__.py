"""Artifact stores: where registry files live. `get_store(uri)` picks the backend by URI scheme."""

from __future__ import annotations

from ltr_pipeline.storage.base import ArtifactStore


def get_store(uri: str) -> ArtifactStore:
    if uri.startswith("s3://"):
        from ltr_pipeline.storage.s3 import S3Store

        return S3Store.from_uri(uri)
    if "://" in uri and not uri.startswith("file://"):
        from ltr_pipeline.errors import ConfigError

        raise ConfigError(f"unsupported registry URI {uri!r}: use a path, file://path or s3://bucket/prefix")
    from ltr_pipeline.storage.local import LocalStore

    return LocalStore(uri.removeprefix("file://"))


__all__ = ["ArtifactStore", "get_store"]

"""Artifact stores: where registry files live, chosen by the URI's scheme from one table (after MLflow's artifact
repositories): a path or file://path is local disk, s3://bucket/prefix an S3-protocol server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ltr_pipeline.backends import backend_class
from ltr_pipeline.storage.base import ArtifactStore

if TYPE_CHECKING:
    from ltr_pipeline.config import Settings

# URI scheme -> the store class; each has `from_uri(uri, settings)`.
STORES = {
    "file": "ltr_pipeline.storage.local:LocalStore",
    "s3": "ltr_pipeline.storage.s3:S3Store",
}


def get_store(uri: str, settings: Settings) -> ArtifactStore:
    """The store for `uri`: a path (scheme `file`), or `scheme://...` from STORES."""
    scheme = uri.partition("://")[0] if "://" in uri else "file"
    cls: type[ArtifactStore] = backend_class(STORES, scheme, "registry URI scheme (LTR_REGISTRY_URI)")
    return cls.from_uri(uri, settings)


def store_for(settings: Settings) -> ArtifactStore:
    """The registry store the settings name, with its mirror when one is configured."""
    primary = get_store(settings.registry, settings)
    if not settings.registry_mirror_uri:
        return primary
    from ltr_pipeline.storage.mirror import MirrorStore

    return MirrorStore(primary, get_store(settings.registry_mirror_uri, settings))


__all__ = ["STORES", "ArtifactStore", "get_store", "store_for"]

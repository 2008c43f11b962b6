"""Swappable backends by name: a table of name -> "module:Class", imported on use (after MLflow's artifact
repositories and Feast's registry stores), so an optional client (boto3, confluent-kafka) matters only when chosen."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from ltr_pipeline.errors import ConfigError


def backend_class(table: Mapping[str, str], key: str, what: str) -> Any:
    """The class `table` names for `key`; ConfigError naming `what` (the setting) when there is none."""
    try:
        module, _, name = table[key].partition(":")
    except KeyError:
        raise ConfigError(f"unknown {what} {key!r}: use one of {', '.join(table)}") from None
    return getattr(importlib.import_module(module), name)

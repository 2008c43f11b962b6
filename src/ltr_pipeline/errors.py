"""The exception tree. Every error a user can hit says what happened and what to do.

    LtrError                      exit code 1 unless a subclass says otherwise
    ├── ConfigError               3  a setting is missing or invalid
    ├── DataError                 4  no usable events or too few to build a dataset
    ├── SourceUnavailable         5  the event source (broker, folder) cannot be reached
    ├── RegistryError             6  the registry or its storage cannot be read or written
    │   ├── ObjectNotFound        6  a stored file does not exist
    │   ├── VersionNotFound       6  a named version does not exist
    │   └── IntegrityError        7  a stored file does not match its recorded sha256
    └── ModelLoadError            8  a model file cannot be parsed (truncated, wrong format)

`ltr run` exits 10 when the gate rejects the new model (the champion stays); that is an outcome, not an error.
"""

from __future__ import annotations


class LtrError(Exception):
    exit_code = 1


class ConfigError(LtrError):
    exit_code = 3


class DataError(LtrError):
    exit_code = 4


class SourceUnavailable(LtrError):
    exit_code = 5


class RegistryError(LtrError):
    exit_code = 6


class ObjectNotFound(RegistryError):
    pass


class VersionNotFound(RegistryError):
    pass


class IntegrityError(RegistryError):
    exit_code = 7


class PointerError(IntegrityError):
    """The live pointer itself cannot be used; `tag` is its storage tag, so a reader can tell when it changes."""

    def __init__(self, message: str, tag: str) -> None:
        super().__init__(message)
        self.tag = tag


class ModelLoadError(LtrError):
    exit_code = 8

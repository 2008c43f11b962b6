"""Writing a file whole: a reader sees the old content or the new, never a part, even after a crash."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, exclusive: bool = False) -> bool:
    """Write to a temporary file in the same folder, fsync it, then rename it over `path`. With `exclusive`, link it
    to `path` instead, which fails when `path` exists: False then, and nothing written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if not exclusive:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # atomic, and refuses to replace: of two racing writers one wins
        except FileExistsError:
            return False
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)

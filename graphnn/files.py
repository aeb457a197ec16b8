"""Files written atomically: what checkpoints and the compile caches share."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place, so readers see
    the old file or the new one, never part of one. ``durable`` also fsyncs the file and its
    directory, so the new file survives a crash of the machine (checkpoints; a cache can skip it)."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if not durable:
        return
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:  # directories cannot be opened on some systems: the rename is still atomic
        return
    try:
        os.fsync(handle)
    finally:
        os.close(handle)

"""Checkpoints: ``save(obj, path)`` and ``load(path)`` for nested state (state dicts of the model,
the optimizer with its momentum buffers, a scheduler, step counters, random-generator states).

One file, numpy's ``.npz``: every array is an entry (``a0``, ``a1``...), and the entry
``__graphnn__`` holds a small versioned JSON header with the structure (dicts, lists, tuples,
numbers, strings, booleans, None; dict keys may be strings or integers, as in an optimizer's
state dict). Nothing is pickled, so loading a file runs no code from it.

A save writes a temporary file in the same directory, flushes and fsyncs it, then renames it
over the target (and fsyncs the directory): a crash at any moment leaves either the previous
checkpoint or the new one, never half of one.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "graphnn.checkpoint"
VERSION = 1
HEADER = "__graphnn__"


class CheckpointError(ValueError):
    """A file that is not a complete graphnn checkpoint of a version this graphnn reads."""


def save(obj: Any, path) -> None:
    """Write ``obj`` (nested dicts, lists and tuples of arrays and plain values) to ``path``
    atomically."""
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(obj, arrays)
    header = json.dumps({"format": FORMAT, "version": VERSION, "tree": tree})
    buffer = io.BytesIO()
    np.savez(buffer, **{HEADER: np.frombuffer(header.encode(), np.uint8)}, **arrays)
    atomic_write(Path(path), buffer.getvalue())


def load(path) -> Any:
    """Read a checkpoint written by ``save``; arrays come back as numpy arrays."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if HEADER not in data.files:
                raise CheckpointError(f"{path}: not a graphnn checkpoint (no {HEADER} entry)")
            header = json.loads(bytes(data[HEADER]).decode())
            if header.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not a graphnn checkpoint (format {header.get('format')!r})")
            if header.get("version") != VERSION:
                raise CheckpointError(f"{path}: checkpoint version {header.get('version')} is not one this graphnn "
                                      f"reads (version {VERSION})")
            arrays = {name: data[name] for name in data.files if name != HEADER}
            return _decode(header["tree"], arrays)
    except (CheckpointError, FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not a readable graphnn checkpoint (truncated or not one): {error}") from error


def _encode(value: Any, arrays: dict) -> Any:
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        name = f"a{len(arrays)}"
        arrays[name] = np.asarray(value)
        return {"array": name}
    if hasattr(value, "_rebind"):  # a Parameter
        return _encode(value.data, arrays)
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TypeError(f"checkpoint dict keys must be strings or integers, got {type(key).__name__}")
            items.append([key, _encode(item, arrays)])
        return {"dict": items}
    if isinstance(value, (list, tuple)):
        return {"tuple" if isinstance(value, tuple) else "list": [_encode(v, arrays) for v in value]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise TypeError(f"cannot checkpoint a {type(value).__name__}: save arrays, numbers, strings and "
                    "dicts/lists/tuples of them (state_dict() of models, optimizers and schedulers)")


def _decode(tree: dict, arrays: dict) -> Any:
    (kind, content), = tree.items()
    if kind == "array":
        return arrays[content]
    if kind == "dict":
        return {key: _decode(item, arrays) for key, item in content}
    if kind == "list":
        return [_decode(item, arrays) for item in content]
    if kind == "tuple":
        return tuple(_decode(item, arrays) for item in content)
    return content


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

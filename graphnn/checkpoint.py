"""Checkpoints: ``save(obj, path)`` and ``load(path)`` for nested state (state dicts of the model,
the optimizer with its momentum buffers, a scheduler, step counters, random-generator states).

One file, a zip archive of ``.npy`` members as numpy's ``.npz`` (stored, not compressed): every
array is an entry (``a0``, ``a1``...), and the entry ``__graphnn__`` holds a small versioned JSON
header with the structure (dicts, lists, tuples, numbers, strings, booleans, None; dict keys may
be strings or integers, as in an optimizer's state dict). Arrays hold booleans or numbers only.
Nothing is pickled, so loading a file runs no code from it.

A save writes a temporary file in the same directory, flushes and fsyncs it, then renames it
over the target (and fsyncs the directory): a crash at any moment leaves either the previous
checkpoint or the new one, never half of one.

A load checks the whole file before it returns anything: the header's structure, and each array's
declared dtype and shape against the size of its member in the archive before memory is
allocated for it (members must be stored uncompressed, so no array is larger than the file). Any
malformed file raises ``CheckpointError``.
"""
from __future__ import annotations

import io
import json
import math
import reprlib
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from graphnn import dtypes
from graphnn.eager import constant
from graphnn.files import atomic_write
from graphnn.tensors import Tensor

FORMAT = "graphnn.checkpoint"
VERSION = 1
HEADER = "__graphnn__"
MAX_DEPTH = 100
"""How deeply saved structures may nest (a fit run's state nests five levels)."""
NUMERIC = "biufc"
"""The dtype kinds an array may have: booleans, integers, floats, complex numbers."""


class CheckpointError(ValueError):
    """A file that is not a complete graphnn checkpoint of a version this graphnn reads."""


class StateDictError(RuntimeError, ValueError):
    """A state dict that does not fit the object it is loaded into; nothing was changed. A
    RuntimeError as PyTorch's ``Module.load_state_dict`` raises, and a ValueError as its
    ``Optimizer.load_state_dict`` raises."""


def save(obj: Any, path) -> None:
    """Write ``obj`` (nested dicts, lists and tuples of arrays and plain values) to ``path``
    atomically. Raises TypeError, naming the entry, for anything ``load`` could not read back
    (an object or string array, say); nothing is written then."""
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(obj, arrays, ())
    header = json.dumps({"format": FORMAT, "version": VERSION, "tree": tree})
    buffer = io.BytesIO()
    np.savez(buffer, **{HEADER: np.frombuffer(header.encode(), np.uint8)}, **arrays)
    atomic_write(Path(path), buffer.getvalue())


def load(path, map_location: Any = None, weights_only: bool | None = None, **pickle_load_args: Any) -> Any:
    """Read a checkpoint written by ``save``; arrays come back as numpy arrays and tensors as
    tensors. A file that is not a whole checkpoint raises CheckpointError (a missing or
    unreadable one the usual OSError). ``map_location`` and ``weights_only`` are accepted as
    torch.load's: a checkpoint holds only arrays and plain values, so loading one runs no code."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            if HEADER + ".npy" not in members:
                raise CheckpointError(f"not a graphnn checkpoint (no {HEADER} entry)")
            header = _read_header(_read_array(archive, members[HEADER + ".npy"]))
            arrays: dict[str, np.ndarray] = {}

            def array(name: str) -> np.ndarray:
                if name not in arrays:
                    info = members.get(name + ".npy")
                    if info is None:
                        raise CheckpointError(f"the header names an array {name!r} the archive does not hold")
                    arrays[name] = _read_array(archive, info)
                return arrays[name]

            return _decode(header["tree"], array, 0)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, UnicodeDecodeError,
            NotImplementedError) as error:
        raise CheckpointError(f"{path}: not a readable graphnn checkpoint (truncated or not one): {error}") from error


def _read_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One ``.npy`` member, its header checked against the member's size before allocating."""
    name = info.filename
    if info.flag_bits & 0x1:
        raise CheckpointError(f"entry {name!r} is encrypted")
    if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
        raise CheckpointError(f"entry {name!r} is compressed (a checkpoint stores its arrays uncompressed)")
    with archive.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
        except Exception as error:  # numpy parses the header's dict literal; its errors take many types
            raise CheckpointError(f"entry {name!r} has no readable array header ({type(error).__name__}: "
                                  f"{error})") from error
        if dtype.kind not in NUMERIC or dtype.hasobject or dtype.itemsize == 0:
            raise CheckpointError(f"entry {name!r} holds dtype {dtype} (a checkpoint holds arrays of numbers)")
        if any(n < 0 for n in shape):
            raise CheckpointError(f"entry {name!r} declares the shape {shape}")
        size = math.prod(shape) * dtype.itemsize
        held = info.file_size - f.tell()
        if size != held:
            raise CheckpointError(f"entry {name!r} declares {dtype} of shape {shape} ({size} bytes), "
                                  f"but the archive holds {held} bytes for it")
        data = np.empty(math.prod(shape), dtype)
        into, done = memoryview(data.view(np.uint8)), 0
        while done < size:
            read = f.readinto(into[done:])
            if not read:
                raise EOFError(f"entry {name!r} ends after {done} of {size} bytes")
            done += read
        f.read(1)  # at the member's end: zipfile checks its CRC here
    return data.reshape(shape, order="F" if fortran else "C")


def _read_header(raw: np.ndarray) -> dict:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"its {HEADER} entry is not text (dtype {raw.dtype}, shape {raw.shape})")
    try:
        header = json.loads(raw.tobytes().decode())
    except RecursionError:
        raise CheckpointError("its header nests too deeply") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"not a graphnn checkpoint (its header is a {type(header).__name__}, not an object)")
    if header.get("format") != FORMAT:
        raise CheckpointError(f"not a graphnn checkpoint (format {header.get('format')!r})")
    if header.get("version") != VERSION:
        raise CheckpointError(f"checkpoint version {header.get('version')} is not one this graphnn reads "
                              f"(version {VERSION})")
    if "tree" not in header:
        raise CheckpointError("its header has no 'tree'")
    return header


def _where(keys: tuple) -> str:
    shown = "".join(f"[{key!r}]" for key in keys[:8])
    return (shown + ("[...]" if len(keys) > 8 else "")) or "the top level"


def _encode(value: Any, arrays: dict, keys: tuple) -> Any:
    if len(keys) > MAX_DEPTH:
        raise ValueError(f"cannot checkpoint {_where(keys)}: nested more than {MAX_DEPTH} levels deep "
                         "(does the structure contain itself?)")
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        array = np.asarray(value)
        if array.dtype.kind not in NUMERIC or array.dtype.hasobject:
            raise TypeError(f"cannot checkpoint {_where(keys)}: an array of dtype {array.dtype} (a checkpoint "
                            "holds arrays of booleans and numbers; save strings as plain str values)")
        name = f"a{len(arrays)}"
        arrays[name] = array
        return {"array": name}
    if isinstance(value, Tensor):  # stored as its array, read back as a tensor
        return {"tensor": _encode(np.asarray(value.array), arrays, keys)["array"]}
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TypeError(f"checkpoint dict keys must be strings or integers, got {type(key).__name__} "
                                f"at {_where(keys)}")
            items.append([key, _encode(item, arrays, keys + (key,))])
        return {"dict": items}
    if isinstance(value, (list, tuple)):
        kind = "tuple" if isinstance(value, tuple) else "list"
        return {kind: [_encode(v, arrays, keys + (k,)) for k, v in enumerate(value)]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise TypeError(f"cannot checkpoint a {type(value).__name__} (at {_where(keys)}): save arrays, numbers, "
                    "strings and dicts/lists/tuples of them (state_dict() of models, optimizers and schedulers)")


def _decode(tree: Any, array, depth: int) -> Any:
    """The saved structure from its header ``tree``; ``array(name)`` reads an array entry."""
    if depth > MAX_DEPTH:
        raise CheckpointError(f"its header nests more than {MAX_DEPTH} levels deep")
    if not isinstance(tree, dict) or len(tree) != 1:
        raise CheckpointError(f"malformed header: expected a one-entry object, got {_brief(tree)}")
    (kind, content), = tree.items()
    if kind == "array" and isinstance(content, str):
        return array(content)
    if kind == "tensor" and isinstance(content, str):
        return _tensor(array(content))
    if kind == "dict" and isinstance(content, list):
        out = {}
        for pair in content:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (str, int))
                    and not isinstance(pair[0], bool)):
                raise CheckpointError(f"malformed header: expected a [key, value] pair, got {_brief(pair)}")
            out[pair[0]] = _decode(pair[1], array, depth + 1)
        return out
    if kind in ("list", "tuple") and isinstance(content, list):
        items = [_decode(item, array, depth + 1) for item in content]
        return tuple(items) if kind == "tuple" else items
    if kind == "value" and (content is None or isinstance(content, (bool, int, float, str))):
        return content
    raise CheckpointError(f"malformed header: {_brief(tree)}")


def _tensor(array: np.ndarray) -> Tensor:
    d = dtypes.of_array(array)
    return Tensor(constant(array.astype(d.numpy, copy=False), d.ir))


def _brief(value: Any) -> str:
    return f"a {type(value).__name__} {reprlib.repr(value)}"

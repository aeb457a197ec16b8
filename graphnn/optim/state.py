"""Checks of loaded optimizer and scheduler state: every entry is validated before anything is
written, and a mismatch raises StateDictError naming the key, what was expected and what came."""
from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from graphnn.checkpoint import StateDictError


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def plain(value: Any) -> Any:
    """A 0-d numeric array as its Python scalar (how a numpy scalar comes back from a checkpoint)."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "biuf":
        return value.item()
    return value


def check_keys(where: str, value: Any, required: tuple, allowed: tuple | None = None) -> None:
    """``value`` is a dict holding every key in ``required`` and, when ``allowed`` is given, no other."""
    if not isinstance(value, Mapping):
        raise StateDictError(f"{where}: expected a dict, got a {type(value).__name__}")
    missing = [key for key in required if key not in value]
    unexpected = [key for key in value if allowed is not None and key not in allowed]
    if missing or unexpected:
        found = f"missing {missing}" if missing else f"unexpected {unexpected}"
        wanted = f"the keys {list(required)}" if required else ""
        if allowed is not None:
            wanted = "exactly " + wanted if tuple(allowed) == tuple(required) else f"no key but {list(allowed)}"
        raise StateDictError(f"{where}: {found}; expected {wanted}")


def check_like(where: str, value: Any, reference: Any) -> None:
    """``value`` has the kind of ``reference``: a bool, an integer, a real number, or a list or
    tuple of the same length whose items do (other references accept anything)."""
    value = plain(value)
    if isinstance(reference, (bool, np.bool_)):
        ok = isinstance(value, (bool, np.bool_))
        expected = "a bool"
    elif isinstance(reference, numbers.Integral):
        ok, expected = is_int(value), "an integer"
    elif isinstance(reference, numbers.Real):
        ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
        expected = "a real number"
    elif isinstance(reference, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(reference):
            got = f"{len(value)} items" if isinstance(value, (list, tuple)) else f"a {type(value).__name__}"
            raise StateDictError(f"{where}: expected a list of {len(reference)} items, got {got}")
        for k, (item, ref) in enumerate(zip(value, reference)):
            check_like(f"{where}[{k}]", item, ref)
        return
    else:
        return
    if not ok:
        raise StateDictError(f"{where}: expected {expected}, got {value!r} ({type(value).__name__})")


def state_array(where: str, value: Any, shape: tuple) -> np.ndarray | None:
    """A state entry as the float32 array it will be stored as, after checking its shape and dtype."""
    if value is None:
        return None
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise StateDictError(f"{where}: expected an array of shape {shape}, got a {type(value).__name__} "
                             f"({error})") from None
    if array.dtype.kind not in "biuf":
        raise StateDictError(f"{where}: expected an array of numbers of shape {shape}, got dtype {array.dtype}")
    if array.shape != tuple(shape):
        raise StateDictError(f"{where}: expected shape {tuple(shape)} (the parameter's), got {array.shape}")
    return array.astype(np.float32)

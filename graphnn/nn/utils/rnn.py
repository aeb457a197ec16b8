"""``torch.nn.utils.rnn``: packed sequences are not supported. A recurrent layer here runs a
fixed number of time steps over every sequence of a batch, so ``pack_padded_sequence`` and
``pack_sequence`` raise, and so does a layer given a ``PackedSequence``."""
from __future__ import annotations

from typing import Any, NamedTuple

_UNSUPPORTED = ("packed sequences are not supported by graphnn: its recurrent layers run the same number of time "
                "steps for every sequence of a batch. Pass the padded batch itself (and, for the states at each "
                "sequence's end, read the output at each length)")


class PackedSequence(NamedTuple):
    """PyTorch's packed batch of variable-length sequences (a recurrent layer refuses it)."""

    data: Any
    batch_sizes: Any = None
    sorted_indices: Any = None
    unsorted_indices: Any = None


def refuse_packed(input: Any, where: str) -> None:
    """Raise NotImplementedError for a PackedSequence given to ``where``."""
    if isinstance(input, PackedSequence):
        raise NotImplementedError(f"{where}: {_UNSUPPORTED}")


def pack_padded_sequence(input, lengths, batch_first: bool = False, enforce_sorted: bool = True):
    raise NotImplementedError(f"pack_padded_sequence: {_UNSUPPORTED}")


def pack_sequence(sequences, enforce_sorted: bool = True):
    raise NotImplementedError(f"pack_sequence: {_UNSUPPORTED}")


def pad_packed_sequence(sequence, batch_first: bool = False, padding_value: float = 0.0, total_length=None):
    raise NotImplementedError(f"pad_packed_sequence: {_UNSUPPORTED}")


__all__ = ["PackedSequence", "pack_padded_sequence", "pack_sequence", "pad_packed_sequence"]

"""Devices as PyTorch names them: ``torch.device("cuda")``, ``torch.cuda.is_available()``,
``torch.accelerator``. They tell the truth about graphnn's backends: "cuda" is the Triton backend
on a CUDA GPU (with the triton package), "cpu" the C backend. Tensors keep their values in host
memory on either; a Module moved with ``.to(device)`` runs its programs on that device's backend.
"""
from __future__ import annotations

from typing import Any, Callable

gpu_available: Callable[[], bool] = lambda: False  # noqa: E731
"""Whether the GPU backend can run here: graphnn.backends sets it (this module sits below the
backends, which ask the runtime)."""

_KNOWN = ("cpu", "cuda", "mps", "xpu", "meta")


class device:
    """``torch.device``: a type ("cpu", "cuda") and an optional index."""

    __slots__ = ("type", "index")

    def __init__(self, type: Any, index: int | None = None) -> None:  # noqa: A002 - torch's name
        if isinstance(type, device):
            type, index = type.type, type.index
        elif isinstance(type, int) and not isinstance(type, bool):
            type, index = "cuda", type
        elif isinstance(type, str):
            name, _, number = type.partition(":")
            if name not in _KNOWN or (number and not number.isdigit()):
                raise RuntimeError(f"Expected one of {', '.join(_KNOWN)} device type at start of device string: {type}")
            if number:
                if index is not None:
                    raise RuntimeError(f"type (string) must not include an index because index was passed explicitly: {type}")
                index = int(number)
            type = name
        else:
            raise TypeError(f"device() received an invalid combination of arguments: {type!r}")
        self.type, self.index = type, index

    def __repr__(self) -> str:
        return f"device(type='{self.type}')" if self.index is None else f"device(type='{self.type}', index={self.index})"

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    @property
    def backend(self) -> str:
        """The backend a Module on this device runs on."""
        return "triton" if self.type == "cuda" else "auto"

    def check_tensor_placement(self) -> None:
        """Raise if this device cannot be used here (a clear error, not a silent CPU fallback)."""
        if self.type == "cpu":
            return
        if self.type == "cuda":
            if not cuda.is_available():
                raise RuntimeError(
                    "device 'cuda' is not available: graphnn runs on a CUDA GPU through its Triton backend, which "
                    "needs an NVIDIA GPU and the triton package (pip install 'graphnn[triton]'); this machine has "
                    "none, so use device 'cpu' (torch.cuda.is_available() tells which)")
            return
        raise RuntimeError(f"device '{self.type}' is not supported by graphnn; use 'cpu' (or 'cuda' on a CUDA GPU)")


CPU = device("cpu")


class _Cuda:
    """``torch.cuda``: whether graphnn's GPU backend can run here."""

    @staticmethod
    def is_available() -> bool:
        return bool(gpu_available())

    def device_count(self) -> int:
        return 1 if self.is_available() else 0

    def current_device(self) -> int:
        device("cuda").check_tensor_placement()
        return 0

    def get_device_name(self, index: int | None = None) -> str:
        device("cuda").check_tensor_placement()
        return "CUDA GPU"

    def manual_seed(self, seed: int) -> None:
        """Seeds graphnn's one generator (dropout on the GPU draws from it too)."""
        from graphnn.random import manual_seed

        manual_seed(seed)

    manual_seed_all = manual_seed

    def synchronize(self, device: Any = None) -> None:
        pass

    def empty_cache(self) -> None:
        pass


class _Accelerator:
    """``torch.accelerator``: the GPU when graphnn can use one."""

    @staticmethod
    def is_available() -> bool:
        return cuda.is_available()

    def current_accelerator(self, check_available: bool = False) -> device | None:
        return device("cuda") if cuda.is_available() else None

    def device_count(self) -> int:
        return cuda.device_count()


class _Flags:
    """``torch.backends.mps`` / ``torch.backends.cudnn``: what tutorials query or set."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def is_available(self) -> bool:
        return False

    def is_built(self) -> bool:
        return False


cuda = _Cuda()
accelerator = _Accelerator()
backends = _Flags(mps=_Flags(), cudnn=_Flags(deterministic=False, benchmark=False, enabled=True))

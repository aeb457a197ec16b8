"""The backends a program can run on, in one registry.

A Backend says what it is (``name``, and its docstring), whether it can run here (``unavailable``:
None, or the reason and what to install), whether ``backend="auto"`` may pick it here
(``preferred``; auto takes the preferred backend of lowest ``auto_rank``), how to make an
executable from a program's graphs (``executable``) and what ``graphnn dump`` shows for it
(``source``: its generated source for an entry point's plan, or None when it generates none).
``graphnn.api``, ``graphnn.program``, ``graphnn.dump`` and ``graphnn.cli`` ask the registry; adding
a backend is one ``register`` call here and its executable.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from graphnn import device
from graphnn.executable import CExecutable, PlanExecutable, ReferenceExecutable, TritonExecutable


def cache_dir() -> Path:
    """Where compiled artefacts are cached: ``$GRAPHNN_CACHE_DIR``, default ``~/.cache/graphnn``."""
    return Path(os.environ.get("GRAPHNN_CACHE_DIR") or Path.home() / ".cache" / "graphnn")


class Backend:
    """One way to run a program's graphs (see the module docstring)."""

    name = ""
    auto_rank: int | None = None
    """Where ``backend="auto"`` considers it, lowest first; None: never (a checking tool)."""
    generates_source = False
    """Whether ``source`` gives generated source (then ``graphnn dump --stage <name>`` shows it)."""
    native: tuple = ()
    """The composite ops (``graphnn.executable.lower``) its kernels run as such."""

    def unavailable(self) -> str | None:
        """None when the backend can run here, else why not (and what to install)."""
        return None

    def preferred(self) -> bool:
        """Whether ``backend="auto"`` may pick this backend here (if none before it does)."""
        return False

    def executable(self, graphs: Mapping, storage: dict, persistent: dict):
        """An executable of ``graphs`` (entry name -> Graph): ``storage`` says which values live in
        shared buffers (graphnn.executable.scalar_storage, the optimizer's flat buffers),
        ``persistent`` gives the arrays behind parameters and buffers (name -> getter)."""
        raise NotImplementedError

    def source(self, entry: str, plan, memory) -> str | None:
        """What ``graphnn dump --stage <name>`` shows: the source generated for one entry point
        (its function name, KernelPlan and MemoryPlan); None for a backend that generates none."""
        return None


class NumpyBackend(Backend):
    """The reference interpreter of the Graph, with numpy."""

    name = "numpy"
    auto_rank = 2

    def preferred(self) -> bool:
        return True  # the last resort: it runs wherever numpy does

    def executable(self, graphs: Mapping, storage: dict, persistent: dict):
        return ReferenceExecutable(graphs, persistent)


class CBackend(Backend):
    """Generated C, compiled by the system's C compiler and called through cffi."""

    name = "c"
    auto_rank = 1
    generates_source = True

    def unavailable(self) -> str | None:
        from runtime.cpu import CompileError, compiler

        try:
            compiler()
        except CompileError as error:
            return str(error)
        return None

    def preferred(self) -> bool:
        return self.unavailable() is None

    def executable(self, graphs: Mapping, storage: dict, persistent: dict):
        return CExecutable(graphs, cache_dir(), storage, persistent)

    def source(self, entry: str, plan, memory) -> str:
        from codegen import c

        return c.generate({entry: (plan, memory)})


class TritonBackend(Backend):
    """Generated Triton kernels, on a CUDA GPU or (without one) in Triton's interpreter on the CPU."""

    name = "triton"
    auto_rank = 0
    generates_source = True
    native = TritonExecutable.NATIVE

    def unavailable(self) -> str | None:
        from runtime import gpu

        if not gpu.available():
            return "backend 'triton' needs the triton and torch packages: pip install 'graphnn[triton]'"
        return None

    def preferred(self) -> bool:
        from runtime import gpu

        return gpu.has_gpu()  # the interpreter is for tests, far slower than C

    def executable(self, graphs: Mapping, storage: dict, persistent: dict):
        return TritonExecutable(graphs, cache_dir(), storage, persistent)

    def source(self, entry: str, plan, memory) -> str:
        from codegen import triton

        return triton.generate(entry, plan, memory)


class PlanBackend(Backend):
    """The KernelPlan interpreted kernel by kernel with numpy: fusion and memory planning without codegen."""

    name = "plan"

    def executable(self, graphs: Mapping, storage: dict, persistent: dict):
        return PlanExecutable(graphs, cache_dir(), storage, persistent)


REGISTRY: dict[str, Backend] = {}
"""The backends by name, in the order they are listed (errors, ``graphnn dump``'s stages)."""


def register(backend: Backend) -> Backend:
    """Add a backend to the registry (after those already there) and return it."""
    if backend.name in REGISTRY:
        raise ValueError(f"a backend named {backend.name!r} is already registered")
    REGISTRY[backend.name] = backend
    global _auto
    _auto = ((), "")  # "auto" may now choose it
    return backend


for _backend in (NumpyBackend(), CBackend(), TritonBackend(), PlanBackend()):
    register(_backend)
device.gpu_available = REGISTRY["triton"].preferred  # torch.cuda.is_available() asks the registry


def names() -> tuple[str, ...]:
    """Every registered backend's name."""
    return tuple(REGISTRY)


def get(name: str) -> Backend:
    """The backend called ``name`` (resolve "auto" first)."""
    backend = REGISTRY.get(name)
    if backend is None:
        raise ValueError(f"unknown or unavailable backend {name!r}; available: auto, {', '.join(REGISTRY)}")
    return backend


_auto: tuple = ((), "")
"""The environment ``resolve("auto")`` last answered for, and its answer (asked every step of a
recorded loop; probing the compiler and the GPU costs microseconds each time)."""


def resolve(name: str) -> str:
    """The backend a program runs on: ``name`` itself if it can run here, or for "auto" the
    preferred backend of lowest ``auto_rank``. An unknown or unavailable backend is a ValueError."""
    global _auto
    if name == "auto":
        environment = _environment()
        if _auto[0] == environment:
            return _auto[1]
        _auto = (environment, _resolve_auto())
        return _auto[1]
    reason = get(name).unavailable()
    if reason is not None:
        raise ValueError(reason)
    return name


_ENVIRON = getattr(os.environ, "_data", None)
"""os.environ's own dictionary (encoded keys) where it has one: reading it directly costs a
tenth of os.environ.get, and setting os.environ writes it."""


def _environment() -> tuple:
    """The environment variables that decide what "auto" resolves to, as set now."""
    if isinstance(_ENVIRON, dict) and os.name == "posix":
        return _ENVIRON.get(b"GRAPHNN_BACKEND"), _ENVIRON.get(b"CC")
    return os.environ.get("GRAPHNN_BACKEND"), os.environ.get("CC")


def _resolve_auto() -> str:
    chosen = os.environ.get("GRAPHNN_BACKEND")
    if chosen and chosen != "auto":
        if chosen not in REGISTRY:
            raise ValueError(f"GRAPHNN_BACKEND={chosen!r} names no backend; use one of auto, {', '.join(REGISTRY)}")
        return resolve(chosen)
    ranked = sorted((b for b in REGISTRY.values() if b.auto_rank is not None), key=lambda b: b.auto_rank)
    return next(b.name for b in ranked if b.preferred())


def sources() -> tuple[str, ...]:
    """The backends that generate source (each a ``graphnn dump`` stage)."""
    return tuple(name for name, b in REGISTRY.items() if b.generates_source)

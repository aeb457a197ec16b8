"""The GPU runtime: generated Triton modules cached on disk, buffers as torch tensors.

A module's source is written to ``$GRAPHNN_CACHE_DIR/triton/`` under the hash of its source and
the Triton version (atomically, like the C libraries) and imported from there, so its kernels
have a file Triton can read and its own compile cache can key. With a CUDA device the kernels
run on it; without one they run in Triton's interpreter on the CPU (``TRITON_INTERPRET=1``,
which has to be set before the module is imported: the decorator decides).

Buffers: in the interpreter, tensors share the numpy arrays' memory (parameters, flat buffers,
inputs and outputs), so nothing is copied. On a GPU, parameters, momentum, gradients and model
buffers live on the device between calls (a Mirror per host array, registered in
``graphnn.flat.device_copies``) and come back lazily: reading ``p.data``, a model buffer, a state
dict or ``optimizer.state`` copies the newer device values to the host first (``flat.host_access``),
and the next call uploads the host array again, since the reader may have written to it. A
steady training loop copies only its inputs in and its loss out. Run-time scalars are uploaded
every call; outputs are copied back every call.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import sys
import weakref
from pathlib import Path

import numpy as np

from graphnn import flat
from graphnn.files import atomic_write
from graphnn.ir import evaluate_dim
from runtime.binding import check_array, classify, output_arrays

# FMA contraction on (as in the C backend and PyTorch's CUDA kernels), chosen here rather than
# left to Triton's default, which changes in Triton 3.10; a value the user set wins
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """Triton and torch are importable (the backend can run, on a GPU or in the interpreter).

    Without a GPU this also selects Triton's interpreter, before triton is first imported: its
    own library functions (``tl.sum``, ``tl.cdiv``...) are interpreted only if it was on then."""
    try:
        import torch
    except ImportError:
        return False
    if not torch.cuda.is_available() and "triton" not in sys.modules:
        os.environ["TRITON_INTERPRET"] = "1"
    try:
        importlib.import_module("triton")
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=None)
def has_gpu() -> bool:
    """A CUDA device is usable. Probes cheaply first (no NVIDIA driver, no triton: no GPU), so
    choosing the C backend on a machine without one imports neither torch nor triton."""
    if importlib.util.find_spec("triton") is None or importlib.util.find_spec("torch") is None:
        return False
    if not (Path("/proc/driver/nvidia").exists() or Path("/dev/nvidia0").exists() or "CUDA_VISIBLE_DEVICES" in os.environ):
        return False
    if not available():
        return False
    import torch

    return bool(torch.cuda.is_available())


def interpreting() -> bool:
    """Triton runs kernels in its interpreter (set when there is no GPU)."""
    import triton

    return bool(triton.knobs.runtime.interpret)


class Device:
    """Where tensors live: "cuda" when a GPU is present, else "cpu" (the interpreter).

    ``separate`` (always on a GPU): device tensors are copies, kept in step with the host arrays
    by Mirrors. Tests set ``SEPARATE_ON_CPU`` to run the interpreter on copies too, which
    exercises the synchronisation without a GPU."""

    SEPARATE_ON_CPU = False

    def __init__(self) -> None:
        if not available():
            raise RuntimeError("the triton backend needs the triton and torch packages: pip install 'graphnn[triton]'")
        import torch

        self.torch = torch
        self.name = "cuda" if has_gpu() else "cpu"
        self.interpreted = self.name == "cpu"
        self.separate = not self.interpreted or self.SEPARATE_ON_CPU
        if self.interpreted and not interpreting():
            raise RuntimeError("there is no GPU, and triton was imported before graphnn could select its CPU "
                               "interpreter: set TRITON_INTERPRET=1 in the environment (or import graphnn's "
                               "triton backend before triton)")

    def tensor(self, array: np.ndarray):
        """A tensor over ``array``: its own memory, or a new device copy when ``separate``."""
        torch = self.torch
        if not array.flags.writeable:  # torch warns about (and may write through) read-only memory
            array = array.copy()
        host = torch.from_numpy(array)
        if not self.separate:
            return host
        return host.clone() if self.interpreted else host.to(self.name)

    def resident(self, array: np.ndarray):
        """A device tensor for ``array`` that stays between calls: a view of the Mirror of the
        array that owns its memory (one per process, shared by every program)."""
        owner = flat.root(array)
        mirror = flat.device_copies.get(id(owner))
        if mirror is None:
            mirror = flat.device_copies[id(owner)] = Mirror(owner, self)
            weakref.finalize(owner, flat.device_copies.pop, id(owner), None)  # gone with its array
        offset = (array.__array_interface__["data"][0] - owner.__array_interface__["data"][0]) // array.itemsize
        return mirror, mirror.tensor.view(-1)[offset:offset + array.size].view(array.shape)


class Mirror:
    """A host array's device copy, and which side is newer."""

    def __init__(self, host: np.ndarray, device: Device) -> None:
        self._host, self.device = weakref.ref(host), device  # the registry must not keep it alive
        self.tensor = device.tensor(host)
        self.device_newer = False  # a kernel wrote it since the host last saw it
        self.host_newer = False  # Python may have written the host array since the last upload

    def to_host(self) -> None:
        """Before Python touches the host array (flat.host_access)."""
        if self.device_newer:
            host = self._host()
            host[...] = self.tensor.cpu().numpy().reshape(host.shape)
            self.device_newer = False
        self.host_newer = True

    def to_device(self) -> None:
        """Before a kernel reads the device copy."""
        if self.host_newer:
            self.tensor.copy_(self.device.torch.from_numpy(self._host()).reshape(self.tensor.shape))
            self.host_newer = False


class Module:
    """A generated Triton module, cached under the hash of its source and imported."""

    def __init__(self, source: str, cache: Path) -> None:
        import triton

        self.source = source
        self.key = hashlib.sha256(f"{source}\ntriton {triton.__version__}".encode()).hexdigest()[:32]
        directory = Path(cache) / "triton"
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"graphnn_{self.key}.py"
        if not self.path.exists() or self.path.read_text() != source:
            atomic_write(self.path, source.encode(), durable=False)
        name = f"graphnn_triton_{self.key}"
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, self.path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[name] = module
        self.module = module

    def function(self, name: str):
        return getattr(self.module, name)


class Binding:
    """One entry point's launcher with its tensors: fixed buffers bound on the first call, model
    buffers looked up per call, outputs and the arena sized per batch. With separate device
    memory, persistent buffers are Mirrors (synchronised lazily), scalars are uploaded and
    outputs downloaded on every call."""

    def __init__(self, device: Device, launcher, plan, memory, getters: dict) -> None:
        self.device, self.launcher, self.memory = device, launcher, memory
        self.inputs, self.fixed, self.arrays, self.outputs = classify(plan, getters)
        order = plan.arguments
        written = {s.buffer for k in plan.kernels for s in k.writes()}
        self.written = {slot for slot, buffer in enumerate(order) if buffer in written}
        self.scalar_buffers = {slot for slot, buffer in enumerate(order) if plan.buffers[buffer].kind == "hyper"}
        self.tensors: list = [None] * len(order)
        self.hosts: list = [None] * len(order)  # the host array behind each bound slot
        self.mirrors: dict[int, Mirror] = {}  # slot -> the Mirror its tensor is a view of
        self.batch = None
        self.results: dict[str, np.ndarray] = {}
        self.arena = None

    def _bind(self, slot: int, array: np.ndarray, dtype: type, resident: bool = True) -> None:
        check_array(array, dtype, "triton")
        self.hosts[slot] = array
        if self.device.separate and resident and slot not in self.scalar_buffers:
            self.mirrors[slot], self.tensors[slot] = self.device.resident(array)
        else:
            self.mirrors.pop(slot, None)
            self.tensors[slot] = self.device.tensor(array)

    def __call__(self, batch: int, inputs: list, copy: bool) -> dict:
        device = self.device
        if self.fixed:
            for slot, getter, dtype in self.fixed:
                self._bind(slot, getter(), dtype)
            self.fixed = []
        for slot, getter, dtype in self.arrays:
            array = getter()
            if self.hosts[slot] is not array:
                self._bind(slot, array, dtype)
        for slot, position in self.inputs:
            self.tensors[slot] = device.tensor(inputs[position])
        if batch != self.batch:
            self.results = {}
            for slot, name, array, shaped in output_arrays(self.outputs, batch):
                self.results[name] = shaped
                self._bind(slot, array, array.dtype.type, resident=False)
            size = max(evaluate_dim(self.memory.size, batch), 1)
            self.arena = device.torch.zeros(size, dtype=device.torch.float32, device=device.name)
            self.batch = batch
        if device.separate:
            for slot in self.scalar_buffers:
                self.tensors[slot].copy_(device.torch.from_numpy(self.hosts[slot]))
            for mirror in self.mirrors.values():
                mirror.to_device()
        if device.interpreted:
            with np.errstate(all="ignore"):  # lanes past a mask compute on filler values
                self.launcher(batch, self.tensors, self.arena)
        else:
            self.launcher(batch, self.tensors, self.arena)
        for slot, _ in self.inputs:  # the binding keeps no input (or its device copy) after the call
            self.tensors[slot] = None
        if device.separate:
            for slot in self.written:
                mirror = self.mirrors.get(slot)
                if mirror is not None:
                    mirror.device_newer = True
            for slot, *_ in self.outputs:
                self.hosts[slot][...] = self.tensors[slot].cpu().numpy().reshape(self.hosts[slot].shape)
        if not copy:
            return self.results
        return {name: array.copy() for name, array in self.results.items()}


def compile_ahead(path: Path, capability: int = 90, warps: int = 4, stages: int = 3) -> list[dict]:
    """Compile every kernel of a generated module file for an NVIDIA GPU of ``capability`` (90:
    H100) with no GPU present (ptxas ships with triton). Needs a process where Triton is not
    interpreting. Returns per kernel: name, kind, cubin bytes, shared memory bytes, whether the
    PTX uses tensor-core instructions (mma/wgmma)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    spec = importlib.util.spec_from_file_location(f"graphnn_ahead_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = []
    for name, (kind, signature, constexprs) in module.KERNELS.items():
        source = ASTSource(fn=getattr(module, name), signature=signature, constexprs=constexprs)
        compiled = triton.compile(source, target=GPUTarget("cuda", capability, 32),
                                  options={"num_warps": warps, "num_stages": stages})
        ptx = compiled.asm["ptx"]
        results.append({"name": name, "kind": kind, "cubin": len(compiled.asm["cubin"]),
                        "shared": int(compiled.metadata.shared),
                        "tensor_cores": "mma.sync" in ptx or "wgmma" in ptx})
    return results

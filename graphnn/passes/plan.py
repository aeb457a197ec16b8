"""The KernelPlan: what the backends generate code from.

A plan is a list of fused kernels over named buffers. Each kernel loops over a domain (ints and
expressions of the batch symbol B); its body is a list of assignments, one per graph node it
fused, each a sympy expression of earlier locals and of loads (strided reads of a buffer, reads
at an address that also depends on an index loaded before them, a counter-based random draw, or
the loop index itself). Reductions, matmuls and scatters are the kernel's core; the assignments
before the core are its prologue, those after it its epilogue (a scatter has none).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from graphnn.ir import Dim, format_shape

ACC = sympy.Symbol("acc", real=True)
"""The value a reduction or matmul core produced, in epilogue expressions."""


@dataclass(frozen=True)
class Indirect:
    """The part of an address read from data (a gather's index): ``index`` names a load of the
    same kernel, read before this access, holding a position along an axis of ``size``
    elements (a negative one counts from the end) that adds ``stride`` per position. A position
    outside [0, size) after that touches no memory: a load gives 0, a scatter adds nothing."""

    index: str
    stride: Dim
    size: Dim

    def __str__(self) -> str:
        return f"{self.index}*{str(self.stride).replace(' ', '')} if {self.index} in [-{self.size},{self.size})"


@dataclass(frozen=True)
class Load:
    """A strided read: ``source[offset + sum(i_k * strides[k])]`` over the kernel's loop indices.

    ``source`` is a buffer name, or "rand" (a uniform draw keyed by the flat index, stream, seed
    and step) or "index" (the flat index itself, as a number).
    """

    name: str
    source: str
    offset: Dim
    strides: tuple
    dtype: str
    stream: int = 0
    key: tuple = ()
    """For "rand": ((seed buffer, offset), (step buffer, offset))."""
    guards: tuple = ()
    """``graphnn.passes.views.Guard``s with coefficients over the loop indices: where one fails
    (padding, a position no window covers) the load gives ``fill`` and reads nothing."""
    fill: float = 0.0
    indirect: Indirect | None = None
    """A gather's read: ``indirect``'s term is added to the address (and 0 read outside it)."""

    def varies_along(self, axis: int) -> bool:
        """Whether the loaded value can change with loop index ``axis`` (a gather's read is taken
        to change along every axis: its index may)."""
        return (self.indirect is not None or sympy.sympify(self.strides[axis]) != 0
                or any(g.coefs[axis] != 0 for g in self.guards))

    @property
    def invariant(self) -> bool:
        """The same value at every loop index: a scalar, unless it is a random draw or a gather."""
        return (self.source != "rand" and self.indirect is None
                and not any(self.varies_along(k) for k in range(len(self.strides))))


@dataclass(frozen=True)
class Assign:
    """``name = expr`` for one fused graph node; ``stage`` is "prologue" or "epilogue"."""

    name: str
    expr: sympy.Expr
    dtype: str
    stage: str
    comment: str


@dataclass(frozen=True)
class Store:
    """Write local ``value`` to ``buffer[offset + sum(i_k * strides[k])]``; with ``indirect``
    (a scatter's store), add it there, at the address its index completes."""

    buffer: str
    value: str
    offset: Dim
    strides: tuple
    dtype: str
    indirect: Indirect | None = None


@dataclass
class Kernel:
    """One fused loop nest.

    kind "pointwise": ``domain`` is the loop shape. "reduce": ``domain`` is the shape reduced,
    ``axes`` the reduced axes; stores index the domain with stride 0 on those axes. "matmul":
    ``domain`` is (batch..., M, N) and ``k`` the contracted length; ``a`` and ``b`` are the
    operands with strides over (batch..., M, K) and (batch..., K, N). "scatter": ``domain`` is the
    shape of the values added; the kernel first zeroes each (buffer, offset, size) of
    ``cleared``, then adds ``reduce_value`` at every index of the domain through its stores with
    an ``indirect`` term (stores without one write prologue values, elementwise). "attention":
    ``domain`` is the scores' shape (..., Tq, Tk); ``operands`` and ``attention`` say the rest
    (graphnn.attention_op), and each store writes one result (o, lse, dq, dk or dv) contiguously.
    "loop": a scan's time loop (graphnn.scan_op): ``kernels`` run in order once per position,
    ``domain`` is (the number of positions,), and their addresses may use the loop counter
    ``LOOP_T`` (0, 1, ...).
    """

    name: str
    kind: str
    domain: tuple
    loads: list = field(default_factory=list)
    body: list = field(default_factory=list)
    stores: list = field(default_factory=list)
    axes: tuple = ()
    reduce_op: str = ""
    reduce_value: str = ""
    k: Dim = 0
    a: Load | None = None
    b: Load | None = None
    sources: list = field(default_factory=list)
    """(node id, op, Module path) of every graph node fused into this kernel."""
    cleared: tuple = ()
    operands: dict = field(default_factory=dict)
    """kind "attention": its operands by name (q, k, v, mask, do, lse, delta), each a Load with
    strides over the operand's own shape (..., T, D)."""
    attention: dict = field(default_factory=dict)
    """kind "attention": scale, causal, mask ("none", "bool", "add"), role ("forward": stores
    o and lse; "grad_q": dq; "grad_kv": dk and dv) and the head sizes d and dv."""
    kernels: list = field(default_factory=list)
    """kind "loop": the kernels of one iteration."""

    def reads(self) -> list:
        """Every Load of the kernel: loads, matmul and attention operands (a loop's: its
        kernels')."""
        if self.kind == "loop":
            return [load for k in self.kernels for load in k.reads()]
        return [op for op in (self.a, self.b) if op is not None] + list(self.operands.values()) + list(self.loads)

    def writes(self) -> list:
        """Every Store of the kernel (a loop's: its kernels')."""
        if self.kind == "loop":
            return [store for k in self.kernels for store in k.writes()]
        return list(self.stores)

    def attention_shape(self, name: str) -> tuple:
        """kind "attention": the shape of an operand or result (q, k, v, mask, do, lse, delta, o,
        dq, dk, dv), over which its strides run."""
        *lead, tq, tk = self.domain
        d, dv = self.attention["d"], self.attention["dv"]
        return tuple(lead) + {"q": (tq, d), "k": (tk, d), "v": (tk, dv), "mask": (tq, tk), "do": (tq, dv),
                              "lse": (tq, 1), "delta": (tq, 1), "o": (tq, dv), "dq": (tq, d), "dk": (tk, d),
                              "dv": (tk, dv)}[name]

    def buffers(self) -> list[str]:
        """Every buffer the kernel reads or writes (loads, operands, stores, random-draw keys),
        each once, in that order (a loop's: its kernels')."""
        if self.kind == "loop":
            return list(dict.fromkeys(name for k in self.kernels for name in k.buffers()))
        names = [l.source for l in self.loads if l.source not in ("index", "rand")]
        names += [s.buffer for s in self.stores]
        names += [op.source for op in (self.a, self.b) if op is not None]
        names += [op.source for op in self.operands.values()]
        for load in self.loads:
            if load.source == "rand":
                names += [load.key[0][0], load.key[1][0]]
        return list(dict.fromkeys(names))

    @property
    def paths(self) -> list[str]:
        return list(dict.fromkeys(p for _, _, p in self.sources if p))

    def flat(self) -> list:
        """This kernel, or a loop's kernels (at any depth), in order."""
        return [k for inner in self.kernels for k in inner.flat()] if self.kind == "loop" else [self]

    def __str__(self) -> str:
        head = f"kernel {self.name}: {self.kind}{format_shape(self.domain)}"
        if self.kind == "loop":
            lines = [head + " over loop_t   # " + ", ".join(self.paths or ["<model>"])]
            return "\n".join(lines + ["  " + line for k in self.kernels for line in str(k).splitlines()])
        if self.kind == "reduce":
            head += f" {self.reduce_op} over axes {self.axes}"
        if self.kind == "matmul":
            head += f" k={self.k}"
        if self.kind == "attention":
            head += " " + ", ".join(f"{k}={v}" for k, v in self.attention.items())
        lines = [head + "   # " + ", ".join(self.paths or ["<model>"])]
        for load in ([self.a, self.b] if self.kind == "matmul" else []) + list(self.operands.values()) + list(self.loads):
            guards = f" if {' and '.join(_guard(g) for g in load.guards)}" if load.guards else ""
            fill = f" else {load.fill}" if load.guards else ""
            lines.append(f"  load {load.name} = {load.source}[{load.offset} + i.{_strides(load.strides)}"
                         + "".join(f" + {g.stride}*{_guard_index(g)}/{g.div}" for g in load.guards if g.div > 1)
                         + (f" + {load.indirect}" if load.indirect else "") + f"]{guards}{fill}")
        for buffer, offset, size in self.cleared:
            lines.append(f"  zero {buffer}[{offset} : {offset} + {str(size).replace(' ', '')}]")
        for a in self.body:
            lines.append(f"  {a.stage[:4]} {a.name}:{a.dtype} = {a.expr}")
        if self.kind == "reduce":
            lines.append(f"  acc = {self.reduce_op}({self.reduce_value})")
        for s in self.stores:
            address = f"{s.buffer}[{s.offset} + i.{_strides(s.strides)}" + (f" + {s.indirect}]" if s.indirect else "]")
            lines.append(f"  store {address} {'+=' if s.indirect else '='} {s.value}")
        return "\n".join(lines)


def _guard_index(g) -> str:
    return f"({g.const}+i.{_strides(g.coefs)})"


def _guard(g) -> str:
    return f"{_guard_index(g)} in {g.div}*[0,{g.limit})" if g.div > 1 else f"{_guard_index(g)} in [0,{g.limit})"


def _strides(strides: tuple) -> str:
    return "(" + ",".join(str(s).replace(" ", "") for s in strides) + ")"


KINDS = {
    "input": "an input array of the call, in the caller's memory, bound on every call",
    "output": "an output, allocated by the runtime for each batch size",
    "param": "parameters: one Parameter's array, or the flat parameter buffer",
    "grad": "gradients: the flat buffer the step writes them to",
    "optim": "optimizer state: a flat slot buffer (momentum, Adam's moments)",
    "state": "a model buffer (BatchNorm's running statistics), which the user may reassign between calls",
    "hyper": "run-time scalars (learning rate, dropout seed and step), one array per dtype",
    "arena": "an intermediate, at its memory plan's offset in the arena",
}
"""What a buffer is for, by ``Buffer.kind``: it says how a runtime binds the buffer."""


@dataclass(frozen=True)
class Buffer:
    """A named storage area of a plan, typed: ``kind`` is its role (one of KINDS), ``size`` its
    element count (an int or an expression of B).

    ``source`` names what a runtime binds to it: the input's or output's name (input, output),
    the key of the persistent array the program supplies (param, grad, optim, state, hyper: a
    leaf's name, or a shared buffer's own name for flat and scalar buffers); empty for the arena.
    ``shape`` is an output's shape (what the caller gets back)."""

    name: str
    kind: str
    size: Dim
    dtype: str
    source: str = ""
    shape: tuple = ()


@dataclass
class KernelPlan:
    """Fused kernels in execution order over named buffers: what a runtime needs and all it reads.

    ``buffers`` is the typed table of every buffer; ``arguments`` the non-arena buffers in the
    order an entry point takes them (then the arena); ``inputs`` the names of the call's input
    arrays in calling order (a Buffer of kind "input" names its input in ``source``; an input no
    kernel reads has none); ``outputs`` maps each output's name to its buffer, in calling order.
    """

    kernels: list
    buffers: dict
    outputs: dict
    """output name -> buffer name"""
    inputs: tuple = ()
    arguments: tuple = None

    def __post_init__(self) -> None:
        if self.arguments is None:
            self.arguments = tuple(sorted(name for name, b in self.buffers.items() if b.kind != "arena"))
        unknown = {b.kind for b in self.buffers.values()} - set(KINDS)
        if unknown:
            raise ValueError(f"buffers of unknown kind {sorted(unknown)}; the kinds are {', '.join(KINDS)}")

    def __str__(self) -> str:
        lines = [f"buffer {b.name}: {b.kind} {b.dtype}[{str(b.size).replace(' ', '')}]" for b in self.buffers.values()]
        lines += [str(k) for k in self.kernels]
        return "\n".join(lines)

"""What ``graphnn dump`` shows: every stage of the compiler for one model, as text, JSON or DOT.

Stages: ``graph`` (the traced forward), ``backward`` (forward, loss and gradients), ``train`` (the
whole train step after simplification), ``plan`` (the fused kernels), ``memory`` (buffers, arena
offsets, peak bytes), then one per backend that generates source (``c``, ``triton``: what the
backend registry's ``source`` gives). The text form is the graph's own jaxpr-like printing plus a
summary; the JSON form follows ``graphnn/dump.schema.json`` ("graphnn.dump/1").
"""
from __future__ import annotations

import inspect

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from graphnn import backends
from graphnn.executable import ENTRY_NAMES, lower
from graphnn.ir import B, LEAF_OPS, Graph, format_attr, format_shape, numel

GRAPH_STAGES = ("graph", "backward", "train")
PLAN_STAGES = ("plan", "memory")
STAGES = GRAPH_STAGES + PLAN_STAGES + backends.sources()
SCHEMA = "graphnn.dump/1"


class DumpError(Exception):
    """A request the dump cannot serve (an unavailable stage, an untraceable model)."""


@dataclass
class Request:
    """What to dump: the model, example shapes (first dimension symbolic), loss and optimizer."""

    model: Any
    input_shape: tuple
    loss: str | None = None
    target_shape: tuple | None = None
    target_dtype: str | None = None
    optimizer: dict = field(default_factory=lambda: {"name": "sgd", "lr": 0.01})
    eval: bool = False
    input_dtype: str = "float32"
    """"int64" for a model that takes indices (an Embedding's); the example input is then zeros."""


LOSSES = {"cross_entropy": "CrossEntropyLoss", "mse": "MSELoss", "l1": "L1Loss", "nll": "NLLLoss",
          "bce_with_logits": "BCEWithLogitsLoss"}


def optimizer_classes() -> dict:
    """The optimizers graphnn exports, by lower-case name (``--optimizer adam``)."""
    from graphnn import optim

    found = {}
    for name in optim.__all__:
        value = getattr(optim, name)
        if isinstance(value, type) and issubclass(value, optim.Optimizer) and value is not optim.Optimizer:
            found[name.lower()] = value
    return found


def make_optimizer(model, options: dict):
    """The optimizer ``options`` names, given the options its constructor takes (SGD's momentum
    defaults to 0.9 here, so the dump shows the momentum update)."""
    from graphnn import optim

    cls = optimizer_classes()[options["name"]]
    accepted = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in options.items() if k != "name" and k in accepted and v is not None}
    if cls is optim.SGD:
        kwargs.setdefault("momentum", 0.9)
    return cls(model.parameters(), **kwargs)


class Stages:
    """Builds each stage's value once, from the same traced graphs a compiled program would use."""

    def __init__(self, request: Request) -> None:
        from graphnn import nn
        from graphnn.program import InferenceProgram, TrainProgram

        self.request = request
        model = request.model
        model.train(not request.eval)
        x = np.zeros((2, *request.input_shape[1:]), np.int64 if request.input_dtype == "int64" else np.float32)
        if request.loss is None:
            self.program = InferenceProgram(model, "numpy")
            self.graphs = self.program.graphs_for(x)
            self.entry = "forward"
            return
        loss_fn = getattr(nn, LOSSES[request.loss])()
        opt = make_optimizer(model, request.optimizer)
        self.program = TrainProgram(model, loss_fn, opt, "numpy")
        self.graphs = self.program.graphs_for(x, self._target(model, x))
        self.entry = "step"

    def _target(self, model, x) -> np.ndarray:
        request = self.request
        if request.target_shape is not None:
            shape = (2, *request.target_shape[1:])
            dtype = np.int64 if (request.target_dtype or "float32").startswith("int") else np.float32
            return np.zeros(shape, dtype)
        if request.loss in ("cross_entropy", "nll"):
            return np.zeros(2, np.int64)
        from graphnn.capture import trace

        out = trace(model, x).outputs["output"]
        return np.zeros((2, *out.shape[1:]), np.float32)

    # -- the stages -------------------------------------------------------------------------------
    def graph(self) -> Graph:
        """The traced forward (and the loss, when there is one)."""
        return self.graphs["evaluate" if self.request.loss else "forward"]

    def backward(self) -> Graph:
        self._needs_loss("backward")
        return self.graphs["grad"]

    def train(self) -> Graph:
        from graphnn.passes.simplify import simplify

        return simplify(self.graphs[self.entry])

    def plan(self):
        return self._executable_plan()[0]

    def memory(self):
        return self._executable_plan()[1]

    def source(self, backend: str) -> str:
        """The source ``backend`` generates for the entry point's plan."""
        return backends.get(backend).source(ENTRY_NAMES[self.entry], *self._executable_plan(backends.get(backend).native))

    def value(self, stage: str):
        """What a stage shows: a Graph, the KernelPlan, the MemoryPlan or generated source."""
        if stage not in STAGES:
            raise DumpError(f"unknown stage {stage!r}; the stages are {', '.join(STAGES)}")
        return self.source(stage) if stage in backends.sources() else getattr(self, stage)()

    def _needs_loss(self, stage: str) -> None:
        if self.request.loss is None:
            raise DumpError(f"stage {stage!r} needs a loss: pass --loss (cross_entropy, mse, l1, nll, bce_with_logits)")

    def _executable_plan(self, native: tuple = ()):
        """(KernelPlan, MemoryPlan) of the entry point, as a plan-based backend with kernels for
        the composite ops ``native`` would build them."""
        plans = self.__dict__.setdefault("_plans", {})
        if native not in plans:
            plans[native] = lower(self.graphs[self.entry], self.program.storage(self.graphs), native)
        return plans[native]

    # -- the summary ----------------------------------------------------------------------------
    def summary(self) -> dict:
        plan, memory = self._executable_plan()
        graph = self.train()
        params = sum(int(np.prod(p.shape)) for p in self.request.model.parameters())
        flops = _flops(graph.nodes)
        moved = bytes_moved(plan)
        persistent = sum((b.size for b in plan.buffers.values() if b.kind not in ("arena", "input", "output", "hyper")),
                         sympy.Integer(0))
        return {
            "parameters": params,
            "flops_per_step": _expr(sympy.expand(flops)),
            "bytes_moved_per_step": _expr(sympy.expand(moved)),
            "kernels": len(plan.kernels),
            "peak_bytes": _expr(sympy.expand(4 * memory.size + 4 * persistent)),
        }


def _flops(nodes) -> sympy.Expr:
    """Floating-point operations of ``nodes``: 2 per multiply-add of a matmul, one per element
    of a pointwise op, a reduction's or a scatter's input; a scan's body once per position."""
    flops = sympy.Integer(0)
    for n in nodes:
        if n.op == "matmul":
            flops += 2 * numel(n.shape) * n.inputs[0].shape[-1]
        elif n.op in ("pointwise", "reduce", "scatter_add"):  # a scatter adds each of its values
            flops += numel(n.inputs[0].shape if n.op in ("reduce", "scatter_add") else n.shape)
        elif n.op == "scan":
            flops += n.attrs["length"] * _flops(n.attrs["body"].graph.live_nodes())
    return flops


def bytes_moved(plan) -> sympy.Expr:
    """Bytes a plan's kernels read and write, in B: each access counts the elements its loop
    indices reach (the extents of the axes it moves along, all of them for an access at a loaded
    index, at most the buffer; a read of one parameter's slice of the
    flat buffer counts that slice), at most its buffer's size where both are numbers. Scalars of
    run-time hyperparameters are not counted."""
    return sympy.expand(sum((_kernel_bytes(k, plan) for k in plan.kernels), sympy.Integer(0)))


def _kernel_bytes(k, plan) -> sympy.Expr:
    """What ``bytes_moved`` counts for one kernel (a loop's kernels once per position)."""
    if k.kind == "loop":
        return k.domain[0] * sum((_kernel_bytes(inner, plan) for inner in k.kernels), sympy.Integer(0))
    moved = sympy.Integer(0)
    accesses = [(access, k.domain) for access in list(k.loads) + list(k.stores)]
    if k.kind == "attention":  # each operand and result once (a block of keys is read per block of queries)
        accesses = [(op, k.attention_shape(name)) for name, op in k.operands.items()]
        accesses += [(st, k.attention_shape(st.value)) for st in k.stores]
    if k.kind == "matmul":
        batch = tuple(k.domain[:-2])
        accesses += [(k.a, batch + (k.domain[-2], k.k)), (k.b, batch + (k.k, k.domain[-1]))]
    for access, domain in accesses:
        name = getattr(access, "source", None) or getattr(access, "buffer", None)
        if name not in plan.buffers or plan.buffers[name].kind == "hyper":
            continue
        coefs = [access.strides] + [g.coefs for g in getattr(access, "guards", ())]
        extent = sympy.Integer(1)
        for axis, size in enumerate(domain):  # a gather's or scatter's address moves with its index
            if getattr(access, "indirect", None) is not None or any(sympy.sympify(c[axis]) != 0 for c in coefs):
                extent *= size
        size = sympy.sympify(plan.buffers[name].size)
        if extent.is_Integer and size.is_Integer:
            extent = min(extent, size)
        moved += 4 * extent
    return moved


def _expr(value) -> str:
    return str(sympy.sympify(value)).replace(" ", "")


# -- text -----------------------------------------------------------------------------------------
def text(stages: Stages, stage: str) -> str:
    value = stages.value(stage)
    if stage == "memory":
        plan, memory = stages._executable_plan()
        lines = [f"buffer {b.name}: {b.kind} {b.dtype}[{_expr(b.size)}]" +
                 (f" @ arena+{_expr(memory.offsets[b.name])}" if b.name in memory.offsets else "")
                 for b in plan.buffers.values()]
        lines.append(f"arena: {_expr(memory.size)} x 4 bytes")
        return "\n".join(lines) + "\n" + _summary_text(stages)
    body = str(value)
    if stage in ("graph", "backward", "train", "plan"):
        body += "\n" + _summary_text(stages)
    return body


def _summary_text(stages: Stages) -> str:
    s = stages.summary()
    return (f"# parameters {s['parameters']}, flops/step {s['flops_per_step']}, bytes moved/step "
            f"{s['bytes_moved_per_step']}, kernels {s['kernels']}, peak memory {s['peak_bytes']} bytes")


# -- JSON -----------------------------------------------------------------------------------------
def to_json(stages: Stages, stage: str) -> str:
    out: dict = {"schema": SCHEMA, "stage": stage, "batch_symbol": str(B)}
    if stage in GRAPH_STAGES:
        out.update(_graph_json(stages.value(stage)))
    elif stage in PLAN_STAGES:
        plan, memory = stages._executable_plan()
        out["kernels"] = [_kernel_json(k) for k in plan.kernels]
        out["buffers"] = [{"name": b.name, "kind": b.kind, "dtype": b.dtype, "size": _expr(b.size),
                           "offset": _expr(memory.offsets[b.name]) if b.name in memory.offsets else None}
                          for b in plan.buffers.values()]
        out["arena_size"] = _expr(memory.size)
    else:
        out["source"] = stages.value(stage)
    out["summary"] = stages.summary()
    return json.dumps(out, indent=1)


def _graph_json(graph: Graph) -> dict:
    live = graph.live_nodes()
    nodes, edges = [], []
    for n in live:
        entry = {"id": n.id, "op": n.op, "shape": [_expr(d) for d in n.shape], "dtype": n.dtype,
                 "inputs": [i.id for i in n.inputs], "path": n.path, "module": n.module}
        if n.op in LEAF_OPS:
            entry["name"] = n.attrs["name"]
        if n.op == "pointwise":
            entry["name"] = n.attrs["name"]
            entry["expr"] = str(n.attrs["expr"])
        elif n.op in ("gather", "scatter_add"):
            entry["axis"] = n.attrs["axis"]
        elif n.op not in LEAF_OPS and n.attrs:
            entry["attrs"] = {k: format_attr(v) for k, v in n.attrs.items()}
        nodes.append(entry)
        edges += [[i.id, n.id] for i in n.inputs]
    return {"nodes": nodes, "edges": edges,
            "outputs": {k: v.id for k, v in graph.outputs.items()},
            "updates": {k: v.id for k, v in graph.updates.items()}}


def _kernel_json(k) -> dict:
    return {"name": k.name, "kind": k.kind, "domain": [_expr(d) for d in k.domain],
            "nodes": [i for i, _, _ in k.sources], "paths": k.paths,
            "reads": sorted({l.source for l in k.reads()}),
            "writes": sorted({s.buffer for s in k.writes()})}


# -- DOT ------------------------------------------------------------------------------------------
COLOURS = ["#fde2e4", "#e2ece9", "#dfe7fd", "#fff1e6", "#e9f5db", "#f0efeb", "#ddd6fe", "#fef3c7"]


def to_dot(stages: Stages, stage: str) -> str:
    if stage in PLAN_STAGES:
        return _plan_dot(stages)
    if stage not in GRAPH_STAGES:
        raise DumpError(f"stage {stage!r} has no graph to draw; use --format text")
    graph = stages.value(stage)
    live = graph.live_nodes()
    lines = ["digraph graphnn {", '  rankdir=TB; node [shape=box, fontname="monospace", fontsize=10];']
    clusters: dict[str, list] = {}
    for n in live:
        clusters.setdefault(n.path if n.op not in LEAF_OPS else "", []).append(n)
    for k, (path, members) in enumerate(clusters.items()):
        indent = "  "
        if path:
            lines.append(f'  subgraph "cluster_{k}" {{ label="{path}"; style=rounded; color=grey;')
            indent = "    "
        for n in members:
            label = f"{n.attrs['name'] if n.op in LEAF_OPS or n.op == 'pointwise' else n.op}\\n{n.type_str()}"
            backward = "backward" in n.module or n.module == "SGD"
            style = 'style=filled, fillcolor="#dbeafe"' if backward else 'style=filled, fillcolor="#f8fafc"'
            if n.op in LEAF_OPS:
                style = 'shape=ellipse, style=filled, fillcolor="#fef9c3"'
            lines.append(f'{indent}n{n.id} [label="{label}", {style}];')
        if path:
            lines.append("  }")
    for n in live:
        for i in n.inputs:
            lines.append(f"  n{i.id} -> n{n.id};")
    lines.append("}")
    return "\n".join(lines)


def _plan_dot(stages: Stages) -> str:
    plan, _ = stages._executable_plan()
    lines = ["digraph graphnn_plan {", '  rankdir=TB; node [shape=box, fontname="monospace", fontsize=10];']
    for k, kernel in enumerate(plan.kernels):
        colour = COLOURS[k % len(COLOURS)]
        ops = "\\n".join(f"%{i} {op}" for i, op, _ in kernel.sources[:8]) + ("\\n..." if len(kernel.sources) > 8 else "")
        lines.append(f'  k{k} [label="{kernel.name}\\n{kernel.kind}{format_shape(kernel.domain)}\\n{ops}", '
                     f'style=filled, fillcolor="{colour}"];')
    for b in plan.buffers.values():
        lines.append(f'  "{b.name}" [shape=ellipse, label="{b.name}\\n{b.dtype}[{_expr(b.size)}]"];')
    for k, kernel in enumerate(plan.kernels):
        for name in sorted({l.source for l in kernel.reads() if l.source in plan.buffers}):
            lines.append(f'  "{name}" -> k{k};')
        for name in sorted({s.buffer for s in kernel.writes()}):
            lines.append(f'  k{k} -> "{name}";')
    lines.append("}")
    return "\n".join(lines)


# -- what a recorded loop compiled to ----------------------------------------------------------
LOOP_STAGES = ("graph", "plan") + backends.sources()


def loop_text(stage: str) -> str:
    """Each recorded program compiled so far (graphnn.lazy), at ``stage``: its graph (forward,
    backward and update of a training step, or a recorded value), its fused plan, or the source
    a backend generated for it."""
    from graphnn import lazy

    parts = []
    for k, (entry, graph, executable) in enumerate(lazy.compiled()):
        heading = f"==== recorded program {k}: {entry} ===="
        if stage == "graph":
            body = str(graph)
        elif not hasattr(executable, "plan"):
            body = "(run by the numpy reference: no plan)"
        else:
            name, plan, memory = executable.plan(entry)
            body = str(plan) if stage == "plan" else backends.get(stage).source(name, plan, memory)
        parts.append(f"{heading}\n{body}")
    if not parts:
        return "no recorded program was compiled (a loop compiles from its second iteration on)\n"
    return "\n\n".join(parts) + "\n"

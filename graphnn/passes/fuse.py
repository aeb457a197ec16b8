"""Fusion: group the nodes of a simplified Graph into the kernels of a KernelPlan.

Rules, applied in topological order:
- movement ops are views (no kernel); iota and rand are loads computed from the index; a view
  that cannot be read where it is used is computed into a buffer of its own (a reshape of a
  non-contiguous view; a padded view that a matmul reads or that is padded with another value);
- a gather is a load whose address adds a loaded index (an indirect load) in the kernel of its
  consumer; its table and its index are read from buffers, never computed in that kernel;
- a node whose value has one direct consumer of the same shape is computed inside that
  consumer's kernel: pointwise chains become one loop, a reduction or a scatter absorbs its
  pointwise producers (prologue), and a reduction or matmul absorbs pointwise consumers
  (epilogue; a scatter's sums are complete only after its whole loop, so it takes none);
- a pointwise value with several consumers is computed in its first consumer's kernel (and
  stored for the others) where that makes no two kernels need each other;
- a kernel holds at most one core (reduce, matmul or scatter_add), and a reduction's prologue
  holds none;
- a pointwise group that reads one core's results elementwise and otherwise only leaves joins
  that core's kernel (the optimizer update of a parameter runs where its gradient is computed);
- a value with several consumers, read through a view, used as a matmul operand, or named as
  an output, update or placement is stored (and may still feed its own kernel's epilogue).
Updates of persistent state are written in place, after every other reader of the old value.
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Callable

import sympy

from graphnn import attention_op, scan_op
from graphnn import pointwise as pw
from graphnn.ir import Graph, Node, numel
from graphnn.passes import horizontal, views
from graphnn.passes.plan import ACC, Assign, Buffer, Indirect, Kernel, KernelPlan, Load, Store

GENERATORS = ("iota", "rand")
CORES = ("reduce", "matmul", "scatter_add", "scan") + attention_op.OPS
KINDS = {"reduce": "reduce", "matmul": "matmul", "scatter_add": "scatter", "scan": "loop",
         **{op: "attention" for op in attention_op.OPS}}
"""The kernel kind of each core op."""
ALONE = ("scatter_add", "scan") + attention_op.OPS
"""Cores whose kernel takes no epilogue."""


class Fusion:
    """Builds a KernelPlan from a simplified Graph.

    ``storage`` maps names to (buffer, offset, buffer size, kind) for values kept in shared
    buffers: leaves (the flat parameter and momentum buffers) and the graph's placements (a
    gradient in the flat gradient buffer). ``results`` does the same for outputs (a scan body's
    results, written into the scan's slots), and ``prefix`` starts the names of the plan's own
    buffers and kernels (a scan body's, inside the plan of the graph around it).
    """

    def __init__(self, graph: Graph, storage: dict, results: dict | None = None, prefix: str = "") -> None:
        self.graph = graph
        self.storage = storage
        self.results = results or {}
        self.prefix = prefix
        self.placements = {}
        self.buffers: dict[str, Buffer] = {}
        self.view: dict[int, views.View] = {}
        self.uses: dict[int, list] = {n.id: [] for n in graph.nodes}
        self.position = {n.id: k for k, n in enumerate(graph.nodes)}
        self.copies: set[int] = set()  # reshapes that need a contiguous copy
        self.materialized: dict[int, views.View] = {}
        """Views computed into a buffer of their own, each read through the view it would have been:
        a padded view that a matmul or a gather's table reads, that is padded again with another
        fill or that windows read."""
        self.named = _named_results(graph)
        self.copied_placements: list[tuple] = []
        """(name, node, buffer, offset) of placements stored by a copy after the kernels: two
        parameters with the same gradient node (two biases added alike) each get their slot."""

    # -- analysis -------------------------------------------------------------------------------
    def analyse(self) -> None:
        for node in self.graph.nodes:
            if node.op in views.MOVEMENT:
                source = node.inputs[0]
                view = views.apply(self.view_of(source), node)
                if view is None and node.op != "reshape":
                    self._materialize(source)
                    view = views.apply(self.view_of(source), node)
                if view is None:
                    self.copies.add(node.id)
                else:
                    self.view[node.id] = view
            elif node.op == "scan":  # each position's slice of a sequence, each carry and operand contiguous
                sequences = node.attrs["counts"][0]
                for k, source in enumerate(node.inputs):
                    view = self.view_of(source)
                    inner = slice(1 if k < sequences else 0, None)
                    if source.id in self.view and (view.guards or not _contiguous(view.strides[inner], view.shape[inner])):
                        self._materialize(source)
            elif node.op in ("matmul", "gather") or node.op in attention_op.OPS:
                # the GEMM and attention read their operands, a gather its table, through plain strides
                for source in node.inputs[:1] if node.op == "gather" else node.inputs:
                    if self.view_of(source).guards:
                        self._materialize(source)
        for node in self.graph.nodes:
            if self._is_view(node):
                continue
            for index, source in enumerate(node.inputs):
                base = self.view_of(source).base
                self.uses[base.id].append((node, index, self._direct(source, base)))
        # an output or update that is a view of a computed value reads that value's storage
        self.viewed_results = {self.view_of(n).base.id for n in list(self.graph.outputs.values()) +
                               list(self.graph.updates.values()) if self._is_view(n)}
        for name, node in self.graph.placements.items():
            view = self.view_of(node)
            base = view.base
            contiguous = (view.offset == 0 and view.strides == views.contiguous_strides(view.shape)
                          and not view.guards)
            if name not in self.storage:
                continue
            buffer, offset, size, kind = self.storage[name]
            self._buffer(buffer, kind, size, base.dtype, source=buffer)
            if (contiguous and base.op not in ("input", "param", "buffer", "hyper", *GENERATORS)
                    and base.id not in self.named and base.id not in self.placements):
                self.placements[base.id] = (buffer, offset)
            else:  # a view, a leaf, or a value placed under another name too (equal gradients): copied
                self.copied_placements.append((name, node, buffer, offset))
                self.viewed_results.add(base.id)

    def _materialize(self, node: Node) -> None:
        self.materialized[node.id] = self.view.pop(node.id)

    def _direct(self, source: Node, base: Node) -> bool:
        """Read without moving data: the node itself or reshapes that only add or drop size-1 axes."""
        while source is not base:
            if source.op != "reshape" or _squeezed(source.shape) != _squeezed(source.inputs[0].shape):
                return False
            source = source.inputs[0]
        return True

    def _is_view(self, node: Node) -> bool:
        return node.op in views.MOVEMENT and node.id not in self.copies and node.id not in self.materialized

    def view_of(self, node: Node) -> views.View:
        return self.view.get(node.id) or views.identity(node)

    # -- grouping -------------------------------------------------------------------------------
    def group(self, absorb: bool = True, share: bool = True) -> list[list[Node]]:
        group_of: dict[int, int] = {}
        members: dict[int, list[Node]] = {}
        core: dict[int, Node | None] = {}
        computed = [n for n in self.graph.nodes if not self._is_view(n) and n.op not in GENERATORS and n.op not in
                    ("input", "param", "buffer", "hyper")]
        for node in computed:
            group_of[node.id] = node.id
            members[node.id] = [node]
            core[node.id] = node if node.op in CORES else None

        def merge(node: Node, consumer: Node | None, check_cycle: bool = False) -> None:
            if consumer is None:
                return
            mine, theirs = group_of[node.id], group_of[consumer.id]
            if mine == theirs:
                return
            if consumer.op == "reduce" and core[mine] is not None:
                return
            if core[mine] is not None and (core[theirs] is not None or core[mine].op in ALONE):
                return
            if self._overwrites_operand(core[mine] or core[theirs], members[mine] + members[theirs]):
                return
            if self._reads_own_values(members[mine] + members[theirs]):
                return
            if check_cycle and self._reaches_through_others(mine, theirs, members, group_of):
                return
            for n in members[mine]:
                group_of[n.id] = theirs
            members[theirs] = sorted(members[theirs] + members.pop(mine), key=lambda n: self.position[n.id])
            core[theirs] = core[theirs] or core.pop(mine)

        self._attention_siblings(computed, members, group_of, core)
        for node in computed:
            merge(node, self._inline_target(node))
        if share:  # then values with several consumers, where that forms no cycle
            for node in computed:
                if len(self.uses[node.id]) > 1:
                    merge(node, self._inline_target(node, share=True), check_cycle=True)
        if absorb:
            self._absorb_consumers(members, group_of, core)
        return list(members.values())

    def _attention_siblings(self, computed: list, members: dict, group_of: dict, core: dict) -> None:
        """Attention ops that one kernel computes together start in one group: an attention and
        the lse of its rows (the forward kernel has both), and the gradients of k and v (one
        kernel per block of keys accumulates both)."""
        first: dict[tuple, int] = {}
        for node in computed:
            if node.op not in attention_op.OPS:
                continue
            key = attention_op.kernel_key(node)
            if key not in first:
                first[key] = node.id
                continue
            if node.op == "attention" and any(n.op == "attention" for n in members[first[key]]):
                continue  # another value read with the same scores: a kernel of its own
            group_of[node.id] = first[key]
            members[first[key]] = sorted(members[first[key]] + members.pop(node.id), key=lambda n: self.position[n.id])
            del core[node.id]

    def _reaches_through_others(self, source: int, target: int, members: dict, group_of: dict) -> bool:
        """Whether group ``target`` depends on group ``source`` through another group: merging
        ``source`` into ``target`` would then form a cycle."""
        def producers(group: int) -> set:
            found = set()
            for n in members[group]:
                for input_ in n.inputs:
                    other = group_of.get(self.view_of(input_).base.id)
                    if other is not None and other != group:
                        found.add(other)
            return found
        seen, frontier = set(), producers(target) - {source}
        while frontier:
            group = frontier.pop()
            if group == source:
                return True
            if group not in seen:
                seen.add(group)
                frontier |= producers(group)
        return False

    def _absorb_consumers(self, members: dict, group_of: dict, core: dict) -> None:
        """A pointwise group that reads one core's results elementwise (a matmul's product, a
        reduction's kept values, or their epilogues), and otherwise only leaves, joins that
        group as more epilogue. This is how the optimizer update of a parameter runs where its
        gradient is computed: on each block of the weight-gradient GEMM while the block is in
        cache, on the thread that computed it (one pass over the parameter, gradient and momentum
        fewer, and no gradient read back from the other core's cache), and a bias's update in
        the reduction over the batch. Never when the group writes (in place) a leaf that the
        matmul reads."""
        leaves = ("input", "param", "buffer", "hyper")
        for key in [k for k in members if core.get(k) is None]:
            group = members[key]
            sources = {(source, self.view_of(source).base) for n in group for source in n.inputs}
            producers = {group_of.get(base.id) for _, base in sources if base.op not in leaves} - {key}
            if len(producers) != 1 or None in producers:
                continue  # a generator, a copy or several producers: keep the group as it is
            target = producers.pop()
            host = core.get(target)
            if host is None or host.op in ALONE or any(n.id in self.copies for n in group):
                continue
            shape = _squeezed(host.shape)
            if any(n.op != "pointwise" or _squeezed(n.shape) != shape for n in group):
                continue
            prologue = _ancestors_within(host, {n.id for n in members[target]}, self._is_view)
            if any(group_of.get(base.id) == target and (not self._direct(source, base) or base.id in prologue
                                                        or _squeezed(base.shape) != shape)
                   for source, base in sources):
                continue
            if self._overwrites_operand(host, group) or self._reads_own_values(members[target] + group):
                continue
            for n in group:
                group_of[n.id] = target
            members[target] = sorted(members[target] + members.pop(key), key=lambda n: self.position[n.id])
            del core[key]

    def _overwrites_operand(self, core: Node | None, nodes: list) -> bool:
        """Whether ``nodes`` update in place a leaf that matmul ``core`` reads as an operand: the
        GEMM reads whole rows and columns of its operands, so an epilogue writing them would
        change values the GEMM has yet to read."""
        if core is None or core.op != "matmul":
            return False
        read = {self.view_of(source).base for source in core.inputs}
        read = {b.attrs["name"] for b in read if b.op in ("input", "param", "buffer", "hyper")}
        return any(kind == "update" and name in read for n in nodes for kind, name in self.named.get(n.id, []))

    def _reads_own_values(self, nodes: list) -> bool:
        """Whether a gather or scatter among ``nodes`` reads a value computed among them through
        its index (or a gather through its table, or a table they update in place): those are
        read at addresses other than the loop's own, so they come from a buffer complete before
        the kernel."""
        ids = {n.id for n in nodes}
        updated = {name for n in nodes for kind, name in self.named.get(n.id, []) if kind == "update"}
        for n in nodes:
            read = n.inputs if n.op == "gather" else n.inputs[1:] if n.op == "scatter_add" else ()
            for base in (self.view_of(source).base for source in read):
                if base.id in ids or (base.op in ("param", "buffer") and base.attrs["name"] in updated):
                    return True
        return False

    def _inline_target(self, node: Node, share: bool = False) -> Node | None:
        """The consumer whose kernel computes ``node``: its only one, or with ``share`` (a
        pointwise node or gather with several consumers) its first, which no other consumer can
        precede; the value is then also stored for the others. Never a gather (which reads its
        operands at other positions) nor the index of a scatter."""
        uses = self.uses[node.id]
        if node.id in self.copies or node.id in self.materialized or not uses or \
                (len(uses) > 1 and not (share and node.op in ("pointwise", "gather"))):
            return None
        consumer, position, direct = min(uses, key=lambda use: self.position[use[0].id])
        if not direct or consumer.op not in ("pointwise", "reduce", "scatter_add") or consumer.id in self.copies \
                or consumer.id in self.materialized:
            return None
        if consumer.op == "scatter_add" and position != 0:
            return None
        if consumer.op == "pointwise" and _squeezed(consumer.shape) != _squeezed(node.shape):
            return None
        return consumer

    def must_store(self, node: Node, group_ids: set) -> bool:
        if node.id in self.named or node.id in self.placements or node.id in self.viewed_results:
            return True
        return any(c.id not in group_ids for c, _, _ in self.uses[node.id])

    # -- kernels --------------------------------------------------------------------------------
    def location(self, node: Node) -> tuple[str, object]:
        """(buffer, offset) where a node's value is stored."""
        if node.op in ("input", "param", "buffer", "hyper"):
            return self._leaf_buffer(node)
        if node.id in self.named:
            kind, name = self.named[node.id][0]
            if kind == "update":
                return self._leaf_buffer(self.graph.leaf(name))
            return self._output_location(name, node)
        if node.id in self.placements:
            return self.placements[node.id]
        return self._buffer(f"{self.prefix}tmp.{node.id}", "arena", numel(node.shape), node.dtype), 0

    def _leaf_buffer(self, leaf: Node) -> tuple[str, object]:
        name = leaf.attrs["name"]
        if name in self.storage:
            buffer, offset, size, kind = self.storage[name]
            self._buffer(buffer, kind, size, leaf.dtype, source=buffer)
            return buffer, offset
        kind = {"input": "input", "param": "param", "buffer": "state", "hyper": "hyper"}[leaf.op]
        return self._buffer(f"{kind}.{name}", kind, numel(leaf.shape), leaf.dtype, source=name), 0

    def _output_location(self, name: str, node: Node) -> tuple[str, object]:
        """(buffer, offset) of output ``name``: its place in ``results``, or an output buffer."""
        if name in self.results:
            buffer, offset, size, kind = self.results[name]
            self._buffer(buffer, kind, size, node.dtype, source=buffer)
            return buffer, offset
        return self._output_buffer(name, node), 0

    def _output_buffer(self, name: str, node: Node) -> str:
        return self._buffer(f"out.{name}", "output", numel(node.shape), node.dtype, source=name,
                            shape=tuple(node.shape))

    def _buffer(self, name: str, kind: str, size, dtype: str, source: str = "", shape: tuple = ()) -> str:
        self.buffers.setdefault(name, Buffer(name, kind, size, dtype, source, shape))
        return name

    def kernel(self, members: list[Node], index: int) -> Kernel | list[Kernel]:
        ids = {n.id for n in members}
        core = next((n for n in members if n.op in CORES), None)
        if core is not None and core.op in attention_op.OPS:
            return self.attention_kernel(members, index)
        if core is not None and core.op == "scan":
            return self.loop_kernel(core, index)
        last = members[-1]
        if core is None:
            kind = "pointwise"
            domain = last.inputs[0].shape if last.id in self.copies else last.shape
        elif core.op == "matmul":
            kind, domain = "matmul", core.shape
        else:  # a reduction or a scatter loops over its input
            kind, domain = KINDS[core.op], core.inputs[0].shape
        kernel = Kernel(self.prefix + _kernel_name(index, members), kind, tuple(domain))
        prologue = _ancestors_within(core, ids, self._is_view) if kind in ("reduce", "scatter") else set()
        if kind == "reduce":
            kernel.axes, kernel.reduce_op = core.attrs["axes"], core.attrs["kind"]

        def to_domain(strides: tuple, shape: tuple, epilogue: bool) -> tuple:
            """Strides over a value's own shape as strides over the loop domain."""
            if len(shape) == 0:
                return (0,) * len(kernel.domain)
            if kind == "reduce" and epilogue:
                kept = core.shape  # epilogue values live on the reduction's kept shape
                return tuple(0 if k in kernel.axes else st for k, st in enumerate(_align(strides, shape, kept)))
            return _align(strides, shape, kernel.domain)

        local: dict[int, str] = {}
        loads: dict[tuple, Load] = {}

        def operand(source: Node, consumer: Node, view: views.View | None = None) -> str:
            epilogue = consumer.id not in prologue and consumer is not core
            view = self.view_of(source) if view is None else view
            base = view.base
            if base.id in ids:  # computed in this kernel (read directly or through a size-1 reshape)
                return local[base.id]
            if base.op == "iota":
                if not (view.base is source or self._direct(source, base)):
                    raise NotImplementedError("an iota read through a view is not supported by the fusion pass")
                picks = tuple(1 if k == base.attrs["axis"] else 0 for k in range(len(base.shape)))
                key = ("index", to_domain(picks, base.shape, epilogue))
                if key not in loads:
                    loads[key] = Load(f"l{len(loads)}", "index", 0, key[1], base.dtype)
                return loads[key].name
            strides = to_domain(view.strides, view.shape, epilogue)
            if base.op in GENERATORS and view.guards:
                raise NotImplementedError(f"a {base.op} read through a window is not supported by the fusion pass")
            if base.op == "rand":
                seed, step = (self.location(i) for i in base.inputs)
                key = ("rand", base.id, view.offset, strides)
                if key not in loads:
                    loads[key] = Load(f"l{len(loads)}", "rand", view.offset, strides, "f32", base.attrs["stream"], (seed, step))
                return loads[key].name
            buffer, offset = self.location(base)
            total = _add(offset, view.offset)
            guards = tuple(replace(g, coefs=to_domain(g.coefs, view.shape, epilogue)) for g in view.guards)
            for g in guards:  # a guard on axes of size 1 that holds: its index is a constant
                if views.always_holds(g):
                    total = _add(total, g.stride * (g.const // g.div))
            guards = tuple(g for g in guards if not views.always_holds(g))
            key = (buffer, total, strides, guards, view.fill)
            if key not in loads:
                loads[key] = Load(f"l{len(loads)}", buffer, total, strides, base.dtype, guards=guards, fill=view.fill)
            return loads[key].name

        def index_load(source: Node, consumer: Node) -> str:
            """The load holding a gather's or scatter's index (never computed in the kernel)."""
            name = operand(source, consumer)
            if name not in {l.name for l in loads.values()}:
                raise RuntimeError(f"the index of %{consumer.id} {consumer.op} is computed in its own kernel "
                                   f"{kernel.name}: the fusion pass should have stored it")
            return name

        def gather(node: Node) -> str:
            """A gather as one load: the table's element at the loop's position on the other axes
            and the loaded index along the gathered one."""
            x, axis = node.inputs[0], node.attrs["axis"]
            view = self.view_of(x)
            if view.guards or view.base.op in GENERATORS or view.base.id in ids:
                raise NotImplementedError(f"a gather from a {view.base.op} read through a window or computed in "
                                          "the same kernel is not supported by the fusion pass")
            indirect = Indirect(index_load(node.inputs[1], node), view.strides[axis], x.shape[axis])
            # position 0 along the gathered axis (the index adds the rest) and x's axes of size 1
            strides = tuple(0 if k == axis or n == 1 else st for k, (n, st) in enumerate(zip(x.shape, view.strides)))
            strides = to_domain(strides, node.shape, node.id not in prologue and node is not core)
            buffer, offset = self.location(view.base)
            key = (buffer, _add(offset, view.offset), strides, (), 0.0, indirect)
            if key not in loads:
                loads[key] = Load(f"l{len(loads)}", buffer, key[1], strides, view.base.dtype, indirect=indirect)
            return loads[key].name

        for node in members:
            kernel.sources.append((node.id, node.attrs.get("name", node.op), node.path))
            if node is core and kind == "reduce":
                kernel.reduce_value = operand(node.inputs[0], node)
                local[node.id] = str(ACC)
            elif node is core and kind == "scatter":
                kernel.reduce_value = local[node.id] = operand(node.inputs[0], node)
                axis = node.attrs["axis"]
                scattered = Indirect(index_load(node.inputs[1], node), views.contiguous_strides(node.shape)[axis],
                                     node.shape[axis])
            elif node.op == "gather":  # its load, named as the node's value (an assignment, as any value)
                stage = "prologue" if node.id in prologue else "epilogue"
                where = f"   {node.path} ({node.module})" if node.path else ""
                kernel.body.append(Assign(f"t{node.id}", sympy.Symbol(gather(node), real=True), node.dtype, stage,
                                          "gather" + where))
                local[node.id] = f"t{node.id}"
            elif node is core:
                kernel.k = node.inputs[0].shape[-1]
                kernel.a, kernel.b = (self._operand_load(name, i) for name, i in zip("ab", node.inputs))
                local[node.id] = str(ACC)
            elif node.id in self.copies:
                local[node.id] = operand(node.inputs[0], node)
            elif node.id in self.materialized:
                local[node.id] = operand(node, node, self.materialized[node.id])
            else:
                used = node.attrs["expr"].free_symbols  # an argument the expression ignores is not loaded
                expr = node.attrs["expr"].xreplace({pw.X[k]: sympy.Symbol(operand(i, node), real=True)
                                                    for k, i in enumerate(node.inputs) if pw.X[k] in used})
                where = f"   {node.path} ({node.module})" if node.path else ""
                stage = "prologue" if node.id in prologue else "epilogue"
                kernel.body.append(Assign(f"t{node.id}", expr, node.dtype, stage, node.attrs["name"] + where))
                local[node.id] = f"t{node.id}"
            if node is core and kind == "scatter":  # added at the index's place, into zeros
                axis = node.attrs["axis"]
                strides = tuple(0 if k == axis or n == 1 else st
                                for k, (n, st) in enumerate(zip(node.shape, views.contiguous_strides(node.shape))))
                for named in self.named.get(node.id, [(None, None)]):
                    buffer, offset = self._store_location(node, named)
                    kernel.cleared += ((buffer, offset, numel(node.shape)),)
                    kernel.stores.append(Store(buffer, local[node.id], offset, strides, node.dtype, scattered))
            elif node is last or self.must_store(node, ids):
                shape = node.inputs[0].shape if node.id in self.copies else node.shape
                strides = to_domain(views.contiguous_strides(shape), shape, node.id not in prologue)
                for named in self.named.get(node.id, [(None, None)]):
                    buffer, offset = self._store_location(node, named)
                    kernel.stores.append(Store(buffer, local[node.id], offset, strides, node.dtype))
        kernel.loads = list(loads.values())
        return kernel

    def attention_kernel(self, members: list[Node], index: int) -> Kernel:
        """The kernel of attention ops (``_attention_siblings``): its operands read through their
        strides over (..., T, D), a store per op and result name. The domain is the scores'
        shape, (..., Tq, Tk)."""
        first = members[0]
        q, k, v, mask, rest = attention_op.operands(first)
        values = {"attention": "o", "attention_lse": "lse"}
        role = "forward" if first.op in values else ("grad_q" if first.attrs["wrt"] == "q" else "grad_kv")
        if v is None:  # the lse alone (no attention of these scores is computed)
            v = next((m.inputs[2] for m in members if m.op == "attention"), None)
        path = next((n.path for n in members if n.path), "")
        what = {"forward": "attention", "grad_q": "attention_dq", "grad_kv": "attention_dk_dv"}[role]
        name = self.prefix + (f"k{index}_{_sanitize(path)}_{what}" if path else f"k{index}_{what}")
        kernel = Kernel(name, "attention", tuple(q.shape[:-2]) + (q.shape[-2], k.shape[-2]))
        named = dict(q=q, k=k, v=v, mask=mask, **dict(zip(("do", "lse", "delta"), rest)))
        kernel.operands = {name: self._operand_load(name, node) for name, node in named.items() if node is not None}
        kernel.attention = dict(attention_op.attrs_of(first), role=role, d=q.shape[-1],
                                dv=v.shape[-1] if v is not None else 0)
        for node in members:
            kernel.sources.append((node.id, node.op, node.path))
            value = values.get(node.op) or "d" + node.attrs["wrt"]
            strides = views.contiguous_strides(node.shape)
            for result in self.named.get(node.id, [(None, None)]):
                buffer, offset = self._store_location(node, result)
                kernel.stores.append(Store(buffer, value, offset, strides, node.dtype))
        return kernel

    def loop_kernel(self, node: Node, index: int) -> list[Kernel]:
        """A scan's kernels (graphnn.scan_op): a copy of each initial carry into its slot, then
        the loop, whose ``kernels`` are the body fused on its own and run once per position with
        the loop counter LOOP_T in their addresses: each sequence read at its position's slice,
        the carries at the slot the previous step wrote, the results written into the step's
        slot."""
        from graphnn.passes.simplify import simplify

        length, reverse = node.attrs["length"], node.attrs["reverse"]
        buffer, base = self.location(node)
        kind, width = self.buffers[buffer].kind, node.shape[1]
        init, carried, first = scan_op.slots(node)
        position = length - 1 - scan_op.LOOP_T if reverse else scan_op.LOOP_T
        seqs, inits, consts = scan_op.split(node, node.inputs)
        storage, results = {}, {}
        for name, source in [(f"s{i}", s) for i, s in enumerate(seqs)] + [(f"w{k}", c) for k, c in enumerate(consts)]:
            view = self.view_of(source)
            at, offset = self.location(view.base)
            offset = _add(offset, view.offset)
            if name[0] == "s":  # the slice at this step's position
                offset = _add(offset, position * view.strides[0])
            storage[name] = (at, offset, self.buffers[at].size, self.buffers[at].kind)
        blocks = {name: (offset, shape) for name, offset, shape in node.attrs["blocks"]}
        for j in range(len(inits)):
            offset = blocks[f"c{j}"][0]
            storage[f"c{j}"] = (buffer, _add(base, (carried + position) * width + offset), self.buffers[buffer].size, kind)
        for name, (offset, shape) in blocks.items():
            results[name] = (buffer, _add(base, (first + position) * width + offset), self.buffers[buffer].size, kind)
        prefix = f"{self.prefix}k{index}_"
        graph = node.attrs["body"].graph
        inner = Fusion(simplify(graph.variant(dict(graph.outputs), {})), storage, results, prefix).build()
        for name, spec in inner.buffers.items():
            self.buffers.setdefault(name, spec)
        copies = [self._copy_kernel(f"initial_c{j}", source, index, buffer, _add(base, init * width + blocks[f"c{j}"][0]))
                  for j, source in enumerate(inits)]
        path = node.path
        kernel = Kernel(f"{self.prefix}k{index}_{_sanitize(path)}_loop" if path else f"{self.prefix}k{index}_loop",
                        "loop", (length,))
        kernel.kernels = list(inner.kernels)
        kernel.sources = [(node.id, "scan", node.path)]
        return copies + [kernel]

    def _store_location(self, node: Node, named) -> tuple[str, object]:
        kind, name = named
        if kind == "update":
            return self._leaf_buffer(self.graph.leaf(name))
        if kind == "output":
            return self._output_location(name, node)
        return self.location(node)

    def _operand_load(self, name: str, source: Node) -> Load:
        view = self.view_of(source)
        if view.guards:
            raise NotImplementedError("a matmul operand read through a window is not supported by the fusion pass")
        buffer, offset = self.location(view.base)
        return Load(name, buffer, _add(offset, view.offset), view.strides, view.base.dtype)

    # -- order ----------------------------------------------------------------------------------
    def order(self, groups: list[list[Node]]) -> list[list[Node]] | None:
        """Topological order of kernels, with in-place writes after the old value's readers; None
        when no order exists (the kernels need each other: fused too much)."""
        producer = {n.id: k for k, g in enumerate(groups) for n in g}
        after: dict[int, set] = {k: set() for k in range(len(groups))}
        readers_of_leaf: dict[str, set] = {}
        for k, g in enumerate(groups):
            ids = {n.id for n in g}
            for n in g:
                for source in n.inputs:
                    base = self.view_of(source).base
                    if base.op in GENERATORS:
                        continue
                    if base.id in producer and producer[base.id] != k:
                        after[k].add(producer[base.id])
                    if base.op in ("input", "param", "buffer", "hyper") and base.id not in ids:
                        readers_of_leaf.setdefault(base.attrs["name"], set()).add(k)
        for k, g in enumerate(groups):
            for n in g:
                for kind, name in self.named.get(n.id, []):
                    if kind == "update":
                        after[k] |= readers_of_leaf.get(name, set()) - {k}
        ordered, done = [], set()
        while len(ordered) < len(groups):
            ready = [k for k in range(len(groups)) if k not in done and after[k] <= done]
            if not ready:
                return None
            k = min(ready, key=lambda k: self.position[groups[k][-1].id])
            done.add(k)
            ordered.append(groups[k])
        return ordered

    GROUPINGS = ((True, True), (True, False), (False, False))
    """(absorb, share) for ``group``, most fusion first. Sharing a value with a consumer another
    consumer needs first, or absorbing an update whose leaf is read after the matmul, can make
    kernels need each other; ``order`` finds that, and the next grouping fuses less."""

    def grouping(self) -> tuple[tuple[bool, bool], list[list[Node]]]:
        """The first grouping of ``GROUPINGS`` whose kernels can be ordered, and its kernels in order."""
        for absorb, share in self.GROUPINGS:
            ordered = self.order(self.group(absorb, share))
            if ordered is not None:
                return (absorb, share), ordered
        # without absorbing or sharing, each kernel holds nodes that only it reads: a cycle
        # here is an in-place update read after it is written, a bug of the graph
        raise RuntimeError("kernel dependencies form a cycle even without absorbed or shared values "
                           "(an in-place update read after it is written)")

    def build(self) -> KernelPlan:
        self.analyse()
        _, groups = self.grouping()
        kernels = []
        for k, g in enumerate(groups):
            made = self.kernel(g, k)
            kernels.extend(made if isinstance(made, list) else [made])
        kernels = horizontal.merge(kernels, self.buffers)
        outputs = {name: f"out.{name}" for name in self.graph.outputs if name not in self.results}
        stored = {(s.buffer, s.offset) for k in kernels for s in k.stores}
        for name, node in self.graph.outputs.items():  # an output that is a view or a leaf: copy it
            if f"out.{name}" not in self.buffers and name not in self.results:
                kernels.append(self._copy_kernel(f"output_{_sanitize(name)}", node, len(kernels),
                                                 self._output_buffer(name, node), 0))
            elif name in self.results and self._output_location(name, node) not in stored:
                kernels.append(self._copy_kernel(f"output_{_sanitize(name)}", node, len(kernels),
                                                 *self._output_location(name, node)))
        for name, node, buffer, offset in self.copied_placements:
            kernels.append(self._copy_kernel(f"placement_{_sanitize(name)}", node, len(kernels), buffer, offset))
        return KernelPlan(kernels, self.buffers, outputs, tuple(leaf.attrs["name"] for leaf in self.graph.inputs))

    def _copy_kernel(self, what: str, node: Node, index: int, out: str, out_offset) -> Kernel:
        kernel = Kernel(f"{self.prefix}k{index}_{what}", "pointwise", tuple(node.shape))
        view = self.view_of(node)
        buffer, offset = self.location(view.base)
        kernel.loads = [Load("l0", buffer, _add(offset, view.offset), view.strides, node.dtype,
                             guards=view.guards, fill=view.fill)]
        kernel.stores = [Store(out, "l0", out_offset, views.contiguous_strides(node.shape), node.dtype)]
        return kernel


def build_plan(graph: Graph, storage: dict | None = None) -> KernelPlan:
    """Fuse a simplified Graph into a KernelPlan (see the module docstring for the rules)."""
    return Fusion(graph, storage or {}).build()


def _named_results(graph: Graph) -> dict[int, list]:
    named: dict[int, list] = {}
    for name, node in graph.outputs.items():
        named.setdefault(node.id, []).append(("output", name))
    for name, node in graph.updates.items():
        named.setdefault(node.id, []).append(("update", name))
    return named


def _ancestors_within(node: Node | None, ids: set, views: Callable[[Node], bool]) -> set:
    """The members (``ids``) that ``node`` reads, directly or through members and views."""
    out, stack = set(), list(node.inputs) if node is not None else []
    while stack:
        n = stack.pop()
        if n.id in ids and n.id not in out:
            out.add(n.id)
            stack.extend(n.inputs)
        elif views(n):
            stack.extend(n.inputs)
    return out


def _contiguous(strides: tuple, shape: tuple) -> bool:
    """Whether a view with these strides over ``shape`` reads its elements one after another
    (axes of extent 1 may have any stride)."""
    return all(d == 1 or sympy.expand(s - c) == 0 for s, c, d in zip(strides, views.contiguous_strides(shape), shape))


def _squeezed(shape: tuple) -> tuple:
    return tuple(d for d in shape if d != 1)


def _align(strides: tuple, shape: tuple, target: tuple) -> tuple:
    """Strides over ``shape`` as strides over ``target``, a shape with the same axes of size > 1."""
    if tuple(shape) == tuple(target):
        return tuple(0 if d == 1 else s for d, s in zip(shape, strides))
    if _squeezed(shape) != _squeezed(target):
        raise ValueError(f"cannot align shape {shape} with loop domain {target}")
    it = iter(s for d, s in zip(shape, strides) if d != 1)
    return tuple(0 if d == 1 else next(it) for d in target)


def _add(a, b):
    return sympy.sympify(a + b) if isinstance(a + b, sympy.Basic) else a + b


def _kernel_name(index: int, members: list[Node]) -> str:
    path = next((n.path for n in reversed(members) if n.path), "") or members[-1].op
    return f"k{index}_{_sanitize(path)}"


def _sanitize(text: str) -> str:
    return re.sub(r"[^0-9a-zA-Z_]", "_", text).strip("_") or "node"

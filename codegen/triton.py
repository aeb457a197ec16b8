"""Triton code generation: a KernelPlan to one Python module of ``@triton.jit`` kernels.

The module has one kernel per fused kernel of the plan and a launcher, ``<entry>(B, buffers,
arena)``, that launches them in order: ``buffers`` maps each non-arena buffer of the plan to a
tensor (in ``plan.arguments`` order, as for C), ``arena`` is a float32 tensor holding the intermediates at
the memory plan's offsets. Kernels take the tensors they touch, the batch size ``B`` and their
block sizes as constexprs.

- pointwise: one program per BLOCK elements of the flattened domain;
- reduce: one program per ROWS kept positions, looping over the reduced positions COLS at a
  time; the tile accumulates elementwise and is summed (``tl.sum``/``tl.max``) at the end, so a
  long sum adds COLS partial sums (pairwise-like accuracy);
- matmul: one program per BM x BN tile of the output (and per batch index), ``tl.dot`` over BK
  slices of K, masked at every edge so any M, N, K works; the epilogue runs on the tile;
- scatter: a kernel zeroing the target, then one program per BLOCK values, each added at its
  place with ``tl.atomic_add``.

A gather is a masked load at an address that adds a loaded index (lanes whose index lies outside
its axis read 0).

Pointwise expressions come from the same sympy definitions as the C backend, printed by
``TritonPrinter``. Functions Triton lacks or that need libdevice (tanh, expm1, log1p) are small
``@triton.jit`` helpers at the top of the module, written with ``tl.exp``/``tl.log`` only, so
the interpreter runs them too. Dropout draws use Triton's Philox (``tl.philox``) with the
counter and key layout of the C and numpy backends, so all three draw the same masks.

Float32 matmuls use ``input_precision="tf32x3"``: tensor cores (``mma``/``wgmma``) with three
TF32 products that together keep float32 accuracy, the closest match to PyTorch's default
(full float32) that still uses the tensor cores. Plain "tf32" is about 1e-3 relative.
"""
from __future__ import annotations

import sympy
from sympy.printing.pycode import PythonCodePrinter

from codegen.loops import axis_names, bindings, index, looped, numel, reduction_parts, unique_names
from codegen.printers import BATCH, ValuePrinting, c_index, c_plus
from graphnn.passes.memory import MemoryPlan
from graphnn.passes.plan import Kernel, KernelPlan, Load, Store

TL_TYPES = {"f32": "tl.float32", "i64": "tl.int64", "f64": "tl.float64", "bool": "tl.float32"}
POINTER_TYPES = {"f32": "fp32", "i64": "i64", "f64": "fp64", "bool": "fp32"}
MATMUL_PRECISION = "tf32x3"
BLOCKS = {"pointwise": {"BLOCK": 1024}, "reduce": {"ROWS": 64, "COLS": 64}, "matmul": {"BM": 64, "BN": 64, "BK": 32},
          "scatter": {"BLOCK": 1024}, "attention": {"BM": 32, "BN": 32}}
"""Block sizes (powers of two; BK >= 16 for tl.dot). Large blocks suit both the GPU and the
interpreter, whose cost grows with the number of programs."""

HELPERS = '''
@triton.jit
def _tanh(x):
    """tanh in float32 without libdevice: an odd polynomial near 0 (where 1 - 2/(e^2x + 1)
    cancels), the exponential form elsewhere."""
    z = x * x
    small = ((((-5.70498872745e-3 * z + 2.06390887954e-2) * z - 5.37397155531e-2) * z
              + 1.33314422036e-1) * z - 3.33332819422e-1) * z * x + x
    e = tl.exp(2.0 * tl.abs(x))
    large = 1.0 - 2.0 / (e + 1.0)
    return tl.where(tl.abs(x) < 0.625, small, tl.where(x < 0, -large, large))


@triton.jit
def _expm1(x):
    """exp(x) - 1 without cancellation near 0 (Kahan's form)."""
    u = tl.exp(x)
    d = tl.log(u)
    return tl.where(u == 1.0, x, tl.where(u - 1.0 == -1.0, -1.0, (u - 1.0) * x / tl.where(d == 0.0, 1.0, d)))


@triton.jit
def _log1p(x):
    """log(1 + x) without cancellation near 0."""
    u = 1.0 + x
    return tl.where(u == 1.0, x, tl.log(u) * x / tl.where(u == 1.0, 1.0, u - 1.0))


@triton.jit
def _uniform(seed, step, stream, index):
    """Uniform [0, 1) from Philox-4x32-10: counter (index, stream, step low, step high), key the
    seed; the top 24 bits of word 0 (the C and numpy backends compute the same numbers)."""
    r0, _, _, _ = tl.philox(seed, index.to(tl.uint32), stream, step.to(tl.uint32), (step >> 32).to(tl.uint32))
    return (r0 >> 8).to(tl.float32) * (1.0 / 16777216.0)
'''


class TritonPrinter(ValuePrinting, PythonCodePrinter):
    """Float32 Triton expressions: ``tl.exp``..., conditionals as ``tl.where``, numbers as float
    literals (so a branch of constants stays float), the batch size as a float."""

    BATCH_AS_FLOAT = f"({BATCH} * 1.0)"
    PRODUCT_POWERS = 16  # exp(e log b) would be NaN for a negative base: integer powers multiply out
    FUNCTIONS = {"exp": "tl.exp", "log": "tl.log", "erf": "tl.erf", "tanh": "_tanh", "expm1": "_expm1",
                 "log1p": "_log1p", "Abs": "tl.abs", "floor": "tl.floor", "ceiling": "tl.ceil"}

    def conditional(self, cond: str, then: str, otherwise: str) -> str:
        return f"tl.where({cond}, {then}, {otherwise})"

    def sqrt(self, x: str) -> str:
        return f"tl.sqrt({x})"

    def rsqrt(self, x: str) -> str:
        return f"tl.rsqrt({x})"

    def power(self, base: str, exponent: str) -> str:
        return f"tl.exp({exponent} * tl.log({base}))"

    def _print_Function(self, expr):
        name = type(expr).__name__
        if name not in self.FUNCTIONS:
            raise ValueError(f"no Triton spelling for {name} in {expr}")
        return f"{self.FUNCTIONS[name]}({', '.join(self._print(a) for a in expr.args)})"

    _print_exp = _print_log = _print_erf = _print_tanh = _print_expm1 = _print_log1p = _print_Abs = _print_Function
    _print_floor = _print_ceiling = _print_Function

    def _print_isnan(self, expr):
        x = self._print(expr.args[0])
        return f"tl.where({x} != {x}, 1.0, 0.0)"

    def _print_Mod(self, expr):
        a, b = (self._print(x) for x in expr.args)
        m = f"({a} - tl.math.trunc({a} / {b}) * {b})"  # C's fmod, then moved to the divisor's sign
        return f"tl.where(({m} != 0) & (({b} < 0) != ({m} < 0)), {m} + {b}, {m})"

    def _print_sign(self, expr):
        x = self._print(expr.args[0])
        return f"tl.where({x} > 0, 1.0, tl.where({x} < 0, -1.0, 0.0))"

    def _print_Max(self, expr):
        return self._fold("tl.maximum", expr.args)

    def _print_Min(self, expr):
        return self._fold("tl.minimum", expr.args)

    def _fold(self, function: str, args) -> str:
        text = self._print(args[0])
        for arg in args[1:]:
            text = f"{function}({text}, {self._print(arg)})"
        return text

    def _print_And(self, expr):
        return "(" + " & ".join(f"({self._print(a)})" for a in expr.args) + ")"

    def _print_Or(self, expr):
        return "(" + " | ".join(f"({self._print(a)})" for a in expr.args) + ")"

    def _print_Not(self, expr):
        return f"(~({self._print(expr.args[0])}))"

    def _print_Relational(self, expr):
        return f"({self._side(expr.lhs)} {expr.rel_op} {self._side(expr.rhs)})"

    def _side(self, expr) -> str:
        """A comparison's operand: an integer constant as an integer (a label or an index
        compared with it stays an exact integer comparison; Triton's interpreter also cannot
        combine a scalar int64 compared with a float literal with another condition)."""
        return str(int(expr)) if expr.is_Integer else self._print(expr)

    def _print_Integer(self, expr):
        return repr(float(int(expr)))

    def _print_Rational(self, expr):
        return repr(float(expr))

    def _print_Infinity(self, expr):  # (Python's printer says math.inf, which a kernel cannot read)
        return "float('inf')"

    def _print_NegativeInfinity(self, expr):
        return "float('-inf')"

    def _print_NaN(self, expr):
        return "float('nan')"

    def _print_BooleanTrue(self, expr):
        return "True"

    def _print_BooleanFalse(self, expr):
        return "False"


_printer = TritonPrinter()


def triton_value(expr: sympy.Expr) -> str:
    return _printer.doprint(sympy.sympify(expr))


def _index(offset, strides: tuple, names: tuple) -> str:
    """offset + sum(index_k * stride_k) as a Triton integer expression (see ``loops.index``)."""
    return index(offset, strides, names, times=" * ")


def _typed_value(a) -> str:
    """An assignment's value in its dtype: an int64 value converted where it is computed (C's
    ``const int64_t t = ...`` truncates there; a value fused into the next assignment would
    otherwise stay a float until it is stored)."""
    value = triton_value(a.expr)
    return f"({value}).to(tl.int64)" if a.dtype == "i64" and a.expr.free_symbols else value


def generate(name: str, plan: KernelPlan, memory: MemoryPlan) -> str:
    """The Python source of one entry point's module."""
    return _Module(name, plan, memory).emit()


class _Module:
    def __init__(self, name: str, plan: KernelPlan, memory: MemoryPlan) -> None:
        self.name, self.plan, self.memory = name, plan, memory
        self.names = unique_names(plan.buffers)
        self.order = plan.arguments
        self.slots = {b: k for k, b in enumerate(self.order)}
        self.signatures: dict[str, tuple] = {}
        self.scalars = ["B"]
        """The integer arguments every kernel takes: the batch size, and a time loop's position."""

    def emit(self) -> str:
        head = [f'"""Generated by graphnn: the Triton kernels of entry point {self.name}. Do not edit:',
                'regenerate from the model."""',
                "import triton",
                "import triton.language as tl",
                HELPERS]
        kernels, launches = [], []
        for kernel in self.plan.kernels:
            if kernel.kind == "loop":  # a scan: its kernels launched once per position
                self.scalars = ["B", "loop_t"]
                inner = [self.kernel(k) for k in kernel.kernels]
                self.scalars = ["B"]
                kernels += [source for source, _ in inner]
                launches.append([f"    for loop_t in range({c_index(kernel.domain[0])}):  # {kernel.name}"] +
                                ["    " + line for _, launch in inner for line in launch])
                continue
            source, launch = self.kernel(kernel)
            kernels.append(source)
            launches.append(launch)
        table = ["KERNELS = {  # name: (kind, argument types, constexprs): what triton.compile needs ahead of time"]
        table += [f"    {name!r}: {entry!r}," for name, entry in self.signatures.items()]
        table.append("}")
        arguments = ", ".join(self.names[b] for b in self.order)
        launcher = [f"def {self.name}(B, buffers, arena):",
                    f'    """Run every kernel of {self.name} in order; buffers: {", ".join(self.order) or "none"}."""']
        if self.order:
            launcher.append(f"    {arguments}{',' if len(self.order) == 1 else ''} = buffers")
        launcher += [line for launch in launches for line in launch]
        launcher.append("    return 0")
        return ("\n".join(head) + "\n\n" + "\n\n".join(kernels) + "\n\n" + "\n".join(launcher) + "\n\n\n"
                + "\n".join(table) + "\n")

    # -- arguments -----------------------------------------------------------------------------
    def parameters(self, kernel: Kernel, buffers: list[str] | None = None) -> tuple[dict[str, str], list[str]]:
        """(kernel parameters with their dtypes, which are also the launch arguments; lines
        binding arena buffers inside the kernel) for ``buffers`` (default: all it touches)."""
        params, binds = {}, []
        bound = bindings(kernel, self.plan, self.memory, self.names, self.slots, buffers)
        for b in bound:
            if b.arena_offset is None:
                params[b.name] = b.dtype
                continue
            pointer = f"arena + {c_index(b.arena_offset)}"
            if b.dtype != "f32":
                pointer = f"({pointer}).to(tl.pointer_type({TL_TYPES[b.dtype]}))"
            binds.append(f"    {b.name} = {pointer}  # {b.buffer}")
        if binds:
            params["arena"] = "f32"
        return params, binds

    # -- kernels -------------------------------------------------------------------------------
    def kernel(self, kernel: Kernel) -> tuple[str, list[str]]:
        # a scatter adds into zeros: a kernel of its own zeroes them first
        zero, zero_launch = self.zero_kernel(kernel) if kernel.cleared else ("", [])
        params, binds = self.parameters(kernel)
        blocks = attention_blocks(kernel) if kernel.kind == "attention" else BLOCKS[kernel.kind]
        signature = ", ".join(list(params) + self.scalars + [f"{b}: tl.constexpr" for b in blocks])
        types = {name: f"*{POINTER_TYPES[dtype]}" for name, dtype in params.items()}
        self.signatures[kernel.name] = (kernel.kind, {**types, **{n: "i32" for n in self.scalars},
                                                      **{b: "constexpr" for b in blocks}}, dict(blocks))
        nodes = ", ".join(f"%{i} {op}" for i, op, _ in kernel.sources)
        doc = [f'    """{kernel.name}: {kernel.kind} over [{", ".join(str(d) for d in kernel.domain)}]'
               + (f" from {', '.join(kernel.paths)}" if kernel.paths else ""),
               f'    nodes: {nodes}"""']
        body = {"pointwise": self.pointwise, "reduce": self.reduce, "matmul": self.matmul,
                "scatter": self.pointwise, "attention": lambda k: attention_body(self, k)}[kernel.kind](kernel)
        source = "\n".join([f"# {kernel.name}: {', '.join(kernel.paths) or '<model>'}", "@triton.jit",
                            f"def {kernel.name}({signature}):"] + doc + binds + body)
        grid = self.grid(kernel, blocks)
        call = ", ".join(list(params) + self.scalars + [f"{b}={v}" for b, v in blocks.items()])
        launch = [f"    {kernel.name}[({grid},)]({call})"]
        if zero:
            source, launch = zero + "\n\n\n" + source, zero_launch + launch
        return source, launch

    def zero_kernel(self, kernel: Kernel) -> tuple[str, list[str]]:
        """The kernel that zeroes a scatter's targets (the regions of ``kernel.cleared``, all of
        one size) before the scatter kernel adds into them."""
        name = f"{kernel.name}_zero"
        size = kernel.cleared[0][2]
        params, binds = self.parameters(kernel, list(dict.fromkeys(buffer for buffer, _, _ in kernel.cleared)))
        self.signatures[name] = ("pointwise", {**{n: f"*{POINTER_TYPES[d]}" for n, d in params.items()},
                                               **{n: "i32" for n in self.scalars}, "BLOCK": "constexpr"},
                                 {"BLOCK": BLOCKS["scatter"]["BLOCK"]})
        lines = [f"# {name}: the zeros {kernel.name} adds into", "@triton.jit",
                 f"def {name}({', '.join(list(params) + self.scalars + ['BLOCK: tl.constexpr'])}):",
                 f'    """Zero what {kernel.name} adds into."""']
        lines += binds
        lines += ["    flat = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)",
                  f"    mask = flat < {c_index(size)}"]
        for buffer, offset, _ in kernel.cleared:
            dtype = TL_TYPES[self.plan.buffers[buffer].dtype]
            lines.append(f"    tl.store({c_plus(self.names[buffer], _index(offset, (), ()), 'flat')}, "
                         f"tl.zeros((BLOCK,), {dtype}), mask=mask)")
        call = ", ".join(list(params) + self.scalars + [f"BLOCK={BLOCKS['scatter']['BLOCK']}"])
        grid = f"triton.cdiv({c_index(size)}, {BLOCKS['scatter']['BLOCK']})"
        return "\n".join(lines), [f"    {name}[({grid},)]({call})"]

    def grid(self, kernel: Kernel, blocks: dict) -> str:
        if kernel.kind == "attention":  # a program per block of queries (of keys for dk, dv) and leading index
            rank = len(kernel.domain)
            length, block = (kernel.domain[rank - 1], "BN") if kernel.attention["role"] == "grad_kv" else \
                (kernel.domain[rank - 2], "BM")
            tiles = f"triton.cdiv({c_index(length)}, {blocks[block]})"
            batch = numel(kernel.domain[:rank - 2])
            return tiles if batch == 1 else f"{c_index(batch)} * {tiles}"
        if kernel.kind in ("pointwise", "scatter"):
            return f"triton.cdiv({c_index(numel(kernel.domain))}, {blocks['BLOCK']})"
        if kernel.kind == "reduce":
            kept = tuple(d for k, d in enumerate(kernel.domain) if k not in kernel.axes)
            return f"triton.cdiv({c_index(numel(kept))}, {blocks['ROWS']})"
        rank = len(kernel.domain)
        batch = numel(kernel.domain[:rank - 2])
        m, n = kernel.domain[rank - 2], kernel.domain[rank - 1]
        tiles = f"triton.cdiv({c_index(m)}, {blocks['BM']}) * triton.cdiv({c_index(n)}, {blocks['BN']})"
        return tiles if batch == 1 else f"{c_index(batch)} * {tiles}"

    def unflatten(self, flat: str, axes: list[int], domain: tuple, indent: str = "    ") -> list[str]:
        """Lines setting ``i<axis>`` from a flat index over ``axes`` of ``domain`` (row-major);
        an axis of extent 1 has the index 0 and no variable."""
        lines = []
        axes = looped(domain, axes)
        for position, axis in enumerate(axes):
            inner = numel(domain[a] for a in axes[position + 1:])
            value = flat if inner == 1 else f"({flat}) // {c_index(inner)}"
            if position > 0:
                value = f"({value}) % {c_index(domain[axis])}"
            lines.append(f"{indent}i{axis} = {value}")
        return lines

    def load_line(self, load: Load, names: tuple, mask: str | None, indent: str = "    ") -> str:
        """``mask`` names the mask of the context; ``zero_<mask>`` is a zero index of its shape
        that every masked access adds, so pointer and mask shapes agree even where strides are 0."""
        index = _index(load.offset, load.strides, names)
        if load.source == "index":
            return f"{indent}{load.name} = ({index}{f' + zero_{mask}' if mask else ''}).to({TL_TYPES[load.dtype]})"
        if load.source == "rand":
            (seed_buf, seed_off), (step_buf, step_off) = load.key
            seed = f"tl.load({self.names[seed_buf]} + {c_index(seed_off)})"
            step = f"tl.load({self.names[step_buf]} + {c_index(step_off)})"
            return f"{indent}{load.name} = _uniform({seed}, {step}, {load.stream}, {index})"
        if load.indirect is not None:
            return self.gather_load(load, index, mask, indent)
        if load.guards:
            return self.window_load(load, index, names, mask, indent)
        if load.invariant or mask is None:
            return f"{indent}{load.name} = tl.load({self.names[load.source]} + {index})"
        return f"{indent}{load.name} = tl.load({self.names[load.source]} + {index} + zero_{mask}, mask={mask}, other=0)"

    @staticmethod
    def indirect_lines(name: str, indirect, indent: str) -> tuple[str, str]:
        """(the line computing ``<name>_at``, the position an index load gives, with a negative one
        counted from the end; the lanes where it lies inside its axis)."""
        size = c_index(indirect.size)
        return (f"{indent}{name}_at = tl.where({indirect.index} < 0, {indirect.index} + {size}, {indirect.index})",
                f"({name}_at >= 0) & ({name}_at < {size})")

    def gather_load(self, load: Load, index: str, mask: str | None, indent: str) -> str:
        """A gather's read: the loaded index completes the address; lanes whose index lies
        outside its axis read nothing and give 0."""
        position, inside = self.indirect_lines(load.name, load.indirect, indent)
        zero = f" + zero_{mask}" if mask else ""
        lanes = " & ".join(([mask] if mask else []) + [inside])
        return (f"{position}\n{indent}{load.name} = tl.load({self.names[load.source]} + {index} + {load.name}_at * "
                f"{c_index(load.indirect.stride)}{zero}, mask={lanes}, other=0)")

    def window_load(self, load: Load, index: str, names: tuple, mask: str | None, indent: str) -> str:
        """A load through guards: lanes whose guarded index leaves its axis read nothing and
        take the fill value."""
        lines, conditions = [], [mask] if mask else []
        for k, g in enumerate(load.guards):
            v = f"{load.name}_v{k}"
            # plus the context's zero index: the guard has the mask's shape even where it is constant
            lines.append(f"{indent}{v} = {_index(g.const, g.coefs, names)}{f' + zero_{mask}' if mask else ''}")
            if g.div == 1:
                conditions.append(f"({v} >= 0) & ({v} < {c_index(g.limit)})")
            else:
                conditions.append(f"({v} >= 0) & ({v} < {c_index(g.limit * g.div)}) & ({v} % {g.div} == 0)")
                if sympy.sympify(g.stride) != 0:
                    index += f" + ({v} // {g.div}) * {c_index(g.stride)}"
        zero = f" + zero_{mask}" if mask else ""
        if load.dtype == "i64":
            fill = "0"
        else:
            fill = "float('-inf')" if load.fill == float("-inf") else repr(float(load.fill))
        lines.append(f"{indent}{load.name} = tl.load({self.names[load.source]} + {index}{zero}, "
                     f"mask={' & '.join(conditions)}, other={fill})")
        return "\n".join(lines)

    def assign_lines(self, assigns, indent: str = "    ") -> list[str]:
        return [f"{indent}{a.name} = {_typed_value(a)}  # {a.comment}" for a in assigns]

    def store_line(self, store: Store, names: tuple, mask: str, indent: str = "    ") -> str:
        index = _index(store.offset, store.strides, names)
        if store.indirect is not None:
            # a scatter's add: atomic, since lanes and programs may share an index. The order of
            # the adds to one place varies between runs (float sums may differ in their last
            # bits where an index repeats, as with PyTorch's index_add_ on CUDA); a deterministic
            # form would sort the indices and sum each run of equal ones
            name = f"{store.value}_{self.names[store.buffer]}"
            position, inside = self.indirect_lines(name, store.indirect, indent)
            value = f"({store.value} + zero_{mask}).to({TL_TYPES[store.dtype]})"
            return (f"{position}\n{indent}tl.atomic_add({self.names[store.buffer]} + {index} + {name}_at * "
                    f"{c_index(store.indirect.stride)} + zero_{mask}, {value}, mask={mask} & {inside})")
        return f"{indent}tl.store({self.names[store.buffer]} + {index} + zero_{mask}, {store.value}, mask={mask})"

    def pointwise(self, kernel: Kernel) -> list[str]:
        rank = len(kernel.domain)
        names = axis_names(kernel.domain)
        lines = ["    flat = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)",
                 f"    mask = flat < {c_index(numel(kernel.domain))}",
                 "    zero_mask = flat * 0"]
        lines += self.unflatten("flat", list(range(rank)), kernel.domain)
        lines += [self.load_line(l, names, "mask") for l in kernel.loads]
        lines += self.assign_lines(kernel.body)
        lines += [self.store_line(s, names, "mask") for s in kernel.stores]
        return lines

    def reduce(self, kernel: Kernel) -> list[str]:
        rank = len(kernel.domain)
        names = axis_names(kernel.domain)
        kept = [k for k in range(rank) if k not in kernel.axes]
        reduced = list(kernel.axes)
        rows = numel(kernel.domain[k] for k in kept)
        length = numel(kernel.domain[k] for k in reduced)
        parts = reduction_parts(kernel)
        lines = ["    row = tl.program_id(0) * ROWS + tl.arange(0, ROWS)[:, None]",
                 f"    row_mask = row < {c_index(rows)}",
                 "    zero_row_mask = row * 0"]
        lines += self.unflatten("row", kept, kernel.domain)
        is_sum = kernel.reduce_op == "sum"
        neutral = "0.0" if is_sum else "-float('inf')"
        lines.append(f"    tile = tl.full((ROWS, COLS), {neutral}, tl.float32)")
        lines.append(f"    for start in range(0, {c_index(length)}, COLS):")
        inner = "        "
        lines.append(f"{inner}col = start + tl.arange(0, COLS)[None, :]")
        lines.append(f"{inner}mask = row_mask & (col < {c_index(length)})")
        lines.append(f"{inner}zero_mask = row * 0 + col * 0")
        lines += self.unflatten("col", reduced, kernel.domain, inner)
        lines += [self.load_line(l, names, "mask", inner) for l in parts.early_loads]
        lines += self.assign_lines(parts.prologue, inner)
        lines += [self.store_line(s, names, "mask", inner) for s in parts.early_stores]
        value = f"tl.where(mask, {kernel.reduce_value}, {neutral})"
        if is_sum:
            lines.append(f"{inner}tile += {value}")
        else:
            lines.append(f"{inner}tile = tl.maximum(tile, {value}, propagate_nan=tl.PropagateNan.ALL)")
        if is_sum:
            lines.append("    acc = tl.sum(tile, axis=1)[:, None]")
        else:  # tl.max may drop NaN on the device: a row holding one gives NaN, as in PyTorch
            lines.append("    acc = tl.where(tl.max((tile != tile).to(tl.int32), axis=1)[:, None] > 0, "
                         "float('nan'), tl.max(tile, axis=1)[:, None])")
        lines += [self.load_line(l, names, "row_mask") for l in parts.late_loads]
        lines += self.assign_lines(parts.epilogue)
        lines += [self.store_line(s, names, "row_mask") for s in parts.late_stores]
        return lines

    def matmul(self, kernel: Kernel) -> list[str]:
        rank = len(kernel.domain)
        m_axis, n_axis = rank - 2, rank - 1
        # the batch axes' indices (none at extent 1), then the tile's rows and columns
        names = axis_names(kernel.domain)[: rank - 2] + (f"i{m_axis}", f"i{n_axis}")
        a, b = kernel.a, kernel.b
        m, n, k = (c_index(kernel.domain[m_axis]), c_index(kernel.domain[n_axis]), c_index(kernel.k))
        lines = [f"    tiles_n = tl.cdiv({n}, BN)",
                 f"    tiles = tl.cdiv({m}, BM) * tiles_n",
                 "    pid = tl.program_id(0)",
                 "    tile = pid % tiles"]
        lines += self.unflatten("pid // tiles", list(range(rank - 2)), kernel.domain)
        lines += [f"    i{m_axis} = (tile // tiles_n) * BM + tl.arange(0, BM)[:, None]",
                  f"    i{n_axis} = (tile % tiles_n) * BN + tl.arange(0, BN)[None, :]",
                  "    kk = tl.arange(0, BK)",
                  "    acc = tl.zeros((BM, BN), tl.float32)",
                  f"    for k0 in range(0, {k}, BK):",
                  "        ka = k0 + kk[None, :]",
                  "        kb = k0 + kk[:, None]"]
        a_index = _index(a.offset, a.strides, names[:rank - 2] + (f"i{m_axis}", "ka"))
        b_index = _index(b.offset, b.strides, names[:rank - 2] + ("kb", f"i{n_axis}"))
        lines += [f"        a = tl.load({self.names[a.source]} + {a_index}, mask=(i{m_axis} < {m}) & (ka < {k}), other=0.0)",
                  f"        b = tl.load({self.names[b.source]} + {b_index}, mask=(kb < {k}) & (i{n_axis} < {n}), other=0.0)",
                  f"        acc += tl.dot(a, b, input_precision={MATMUL_PRECISION!r})",
                  f"    mask = (i{m_axis} < {m}) & (i{n_axis} < {n})",
                  f"    zero_mask = i{m_axis} * 0 + i{n_axis} * 0"]
        lines += [self.load_line(l, names, "mask") for l in kernel.loads]
        lines += self.assign_lines(kernel.body)
        lines += [self.store_line(s, names, "mask") for s in kernel.stores]
        return lines


# -- attention ------------------------------------------------------------------------------------
def attention_blocks(kernel: Kernel) -> dict:
    """Block sizes of an attention kernel: BM queries by BN keys per step, head sizes padded to
    powers of two (at least 16, tl.dot's least)."""
    def padded(n) -> int:
        return max(16, 1 << (int(n) - 1).bit_length())
    a = kernel.attention
    return {**BLOCKS["attention"], "BD": padded(a["d"]), "BDV": padded(max(a["dv"], 1))}


def attention_body(self: _Module, kernel: Kernel) -> list[str]:
    """The body of an attention kernel of module ``self``. Flash attention (graphnn.attention_op): the scores of a BM x BN tile computed, masked and
    used at once, never stored.

    - forward: per block of queries, over blocks of keys, an online softmax (running maximum
      and sum, the output accumulator rescaled when the maximum grows); stores o and each row's
      lse = max + log(sum).
    - grad_q: per block of queries, over blocks of keys: P = exp(s - lse), dS = P (do v^T -
      delta), dq += dS k.
    - grad_kv: per block of keys, over blocks of queries: dv += P^T do, dk += dS^T q.

    A causal kernel visits only the blocks on or below the diagonal. Rows no key may be
    attended from have lse -inf, o = 0 and no gradient."""
    a, ops = kernel.attention, kernel.operands
    rank = len(kernel.domain)
    lead = axis_names(kernel.domain)[: rank - 2]
    tq, tk = c_index(kernel.domain[rank - 2]), c_index(kernel.domain[rank - 1])
    d, dv = c_index(a["d"]), c_index(a["dv"])
    role = a["role"]
    precision = f"input_precision={MATMUL_PRECISION!r}"
    neg = "float('-inf')"

    def offsets(offset, strides: tuple, row: str, col: str | None) -> str:
        """The index at (row, col) of a tile; an axis of stride 0 adds ``<index> * 0``, so
        that the pointers have the tile's shape."""
        names = lead + (row,) + ((col,) if col is not None else ())
        strides = strides if col is not None else strides[:-1]
        text = _index(offset, strides, names)
        for name, stride in zip(names[rank - 2:], strides[rank - 2:]):
            if sympy.sympify(stride) == 0:
                text += f" + {name} * 0"
        return text

    def address(name: str, row: str, col: str | None) -> str:
        load = ops[name]
        return f"{self.names[load.source]} + {offsets(load.offset, load.strides, row, col)}"

    def tile(name: str, row: str, col: str, row_in: str, col_in: str) -> str:
        return f"tl.load({address(name, row, col)}, mask={row_in} & {col_in}, other=0.0)"

    def store(value: str, expr: str, row: str, col: str | None, mask: str) -> list[str]:
        out = []
        for st in (x for x in kernel.stores if x.value == value):
            out.append(f"    tl.store({self.names[st.buffer]} + {offsets(st.offset, st.strides, row, col)}, {expr}, "
                       f"mask={mask})")
        return out

    by_keys = role == "grad_kv"
    lines = [f"    tiles = tl.cdiv({tk if by_keys else tq}, {'BN' if by_keys else 'BM'})",
             "    pid = tl.program_id(0)",
             "    block = pid % tiles"]
    lines += self.unflatten("pid // tiles", list(range(rank - 2)), kernel.domain)
    lines += ["    dd = tl.arange(0, BD)",
              "    de = tl.arange(0, BDV)",
              f"    d_in = dd < {d}",
              f"    e_in = de < {dv}"]

    def scores(indent: str) -> list[str]:
        """Lines computing tile ``s`` (BM x BN) from ``q`` and ``k``, masked to -inf outside."""
        allowed = "rows_in[:, None] & cols_in[None, :]"
        out = [f"{indent}s = tl.dot(q, tl.trans(k), {precision}) * {float(a['scale'])!r}"]
        if a["causal"]:
            allowed += " & (cols[None, :] <= rows[:, None])"
        if a["mask"] == "bool":
            out.append(f"{indent}m = {tile('mask', 'rows[:, None]', 'cols[None, :]', 'rows_in[:, None]', 'cols_in[None, :]')}")
            allowed += " & (m != 0)"
        elif a["mask"] == "add":
            out.append(f"{indent}s += {tile('mask', 'rows[:, None]', 'cols[None, :]', 'rows_in[:, None]', 'cols_in[None, :]')}")
        out.append(f"{indent}s = tl.where({allowed}, s, {neg})")
        return out

    def keys(indent: str) -> list[str]:
        return [f"{indent}cols_in = cols < {tk}",
                f"{indent}k = {tile('k', 'cols[:, None]', 'dd[None, :]', 'cols_in[:, None]', 'd_in[None, :]')}",
                f"{indent}v = {tile('v', 'cols[:, None]', 'de[None, :]', 'cols_in[:, None]', 'e_in[None, :]')}"]

    def queries(indent: str, with_q: bool = True) -> list[str]:
        out = [f"{indent}rows_in = rows < {tq}",
               f"{indent}q = {tile('q', 'rows[:, None]', 'dd[None, :]', 'rows_in[:, None]', 'd_in[None, :]')}"]
        if role != "forward":
            out += [f"{indent}do = {tile('do', 'rows[:, None]', 'de[None, :]', 'rows_in[:, None]', 'e_in[None, :]')}",
                    f"{indent}lse = tl.load({address('lse', 'rows', None)}, mask=rows_in, other=0.0)",
                    f"{indent}delta = tl.load({address('delta', 'rows', None)}, mask=rows_in, other=0.0)",
                    f"{indent}lse_in = lse != {neg}",
                    f"{indent}lse = tl.where(lse_in, lse, 0.0)"]
        return out

    def probabilities(indent: str) -> list[str]:  # P from the stored lse (backward)
        return [f"{indent}p = tl.where(lse_in[:, None] & (s != {neg}), tl.exp(s - lse[:, None]), 0.0)",
                f"{indent}ds = p * (tl.dot(do, tl.trans(v), {precision}) - delta[:, None])"]

    # keys a block of queries visits: all, or (causal) those up to its last query
    key_end = f"tl.minimum({tk}, (block + 1) * BM)" if a["causal"] else tk
    if role == "forward":
        lines += ["    rows = block * BM + tl.arange(0, BM)"] + queries("    ")
        lines += [f"    top = tl.full((BM,), {neg}, tl.float32)",
                  "    total = tl.zeros((BM,), tl.float32)",
                  "    acc = tl.zeros((BM, BDV), tl.float32)",
                  f"    for start in range(0, {key_end}, BN):",
                  "        cols = start + tl.arange(0, BN)"]
        lines += keys("        ") + scores("        ")
        lines += ["        new_top = tl.maximum(top, tl.max(s, 1))",
                  f"        shift = tl.where(new_top == {neg}, 0.0, new_top)",
                  "        p = tl.exp(s - shift[:, None])",
                  "        rescale = tl.exp(top - shift)",
                  "        total = total * rescale + tl.sum(p, 1)",
                  f"        acc = acc * rescale[:, None] + tl.dot(p, v, {precision})",
                  "        top = new_top",
                  f"    shift = tl.where(top == {neg}, 0.0, top)",
                  "    empty = total == 0.0",
                  "    total = tl.where(empty, 1.0, total)"]
        lines += store("o", "acc / total[:, None]", "rows[:, None]", "de[None, :]", "rows_in[:, None] & e_in[None, :]")
        lines += store("lse", f"tl.where(empty, {neg}, shift + tl.log(total))", "rows", None, "rows_in")
    elif role == "grad_q":
        lines += ["    rows = block * BM + tl.arange(0, BM)"] + queries("    ")
        lines += ["    dq = tl.zeros((BM, BD), tl.float32)",
                  f"    for start in range(0, {key_end}, BN):",
                  "        cols = start + tl.arange(0, BN)"]
        lines += keys("        ") + scores("        ") + probabilities("        ")
        lines += [f"        dq += tl.dot(ds, k, {precision})"]
        lines += store("dq", f"dq * {float(a['scale'])!r}", "rows[:, None]", "dd[None, :]", "rows_in[:, None] & d_in[None, :]")
    else:
        # queries that see this block of keys: all, or (causal) from the block's first key on
        first = "(block * BN // BM) * BM" if a["causal"] else "0"
        lines += ["    cols = block * BN + tl.arange(0, BN)"] + keys("    ")
        lines += ["    dk = tl.zeros((BN, BD), tl.float32)",
                  "    dv = tl.zeros((BN, BDV), tl.float32)",
                  f"    for start in range({first}, {tq}, BM):",
                  "        rows = start + tl.arange(0, BM)"]
        lines += queries("        ") + scores("        ") + probabilities("        ")
        lines += [f"        dv += tl.dot(tl.trans(p), do, {precision})",
                  f"        dk += tl.dot(tl.trans(ds), q, {precision})"]
        lines += store("dk", f"dk * {float(a['scale'])!r}", "cols[:, None]", "dd[None, :]", "cols_in[:, None] & d_in[None, :]")
        lines += store("dv", "dv", "cols[:, None]", "de[None, :]", "cols_in[:, None] & e_in[None, :]")
    return lines


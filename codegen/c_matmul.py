"""C code generation for matmul kernels: the packed GEMM's call for large products, rows of the
product computed a few at a time for small ones, and the one epilogue function both paths call on
each finished block of the product.

``MatmulEmitter`` is mixed into the C emitter of ``codegen/c.py``, which supplies what every kernel
prints (loops, threading, pointers, loads, assignments, stores); the packed GEMM's own C source is
``codegen/c_gemm.py``.
"""
from __future__ import annotations

import sympy

from codegen.loops import axis_names, binding_symbols, buffers_named, index, is_one, symbols, uses_batch
from codegen.printers import BATCH, c_index, c_plus, c_term
from graphnn.passes.plan import Kernel, Store

MR = 4
"""Rows of a matmul's output computed together (each element of B read once per MR rows)."""
GEMM_MIN = 16
"""Matmuls with M at least this large..."""
GEMM_MIN_N = 8
"""...and N at least this large use the packed GEMM (codegen/c_gemm.py; its 16-column micro-kernel
beats the row loops from 8 columns up: a 10-class output layer's forward)..."""
GEMM_MIN_K = 4
"""...when K is at least this: a first convolution's K is channels x kernel area, as small as 9."""
ROWS_PARALLEL_WORK = 1 << 24
"""Row loops with less work (M x N x K) than this stay on one thread: 8 times the threshold of
the other loops (``PARALLEL_WORK`` in codegen/c.py)."""


class MatmulEmitter:
    """The matmul kernels of the C emitter. The class it is mixed into supplies ``name``,
    ``plan``, the loop and threading helpers (``loops``, ``split``, ``close``) and the printing of
    pointers, loads, assignments and stores (``c_name``, ``bindings``, ``declare_pointers``,
    ``load_line``, ``assign_lines``, ``store_line``, ``loads_in_loop``, ``assigns_in_loop``)."""

    def matmul(self, kernel: Kernel) -> list[str]:
        """C[..., m, n] = sum_k A[..., m, k] B[..., k, n], then the epilogue per element.

        Large products take the packed GEMM (codegen/c_gemm.py). Small ones compute rows of C MR
        at a time (then one at a time for the rest) so each element of B loaded is used MR times:
        when B is stored transposed (k contiguous) each output is a dot product of contiguous
        rows; otherwise rows of C accumulate ``a[r, k] * B[k, :]``, vectorised over n. Either
        way the rows go to the product's own output when it has a row-major one (else to a
        buffer) and then through the kernel's one epilogue function."""
        rank = len(kernel.domain)
        a, b = kernel.a, kernel.b
        batch = axis_names(kernel.domain)[: rank - 2]
        if len(batch) > 8:
            raise NotImplementedError("the C backend's matmuls take at most 8 batch axes (graphnn_epilogue_context)")
        lines, indent = self.loops(list(range(rank - 2)), kernel.domain, "    ", parallel=False)
        lines.append(f"{indent}const float* restrict a_base = {c_plus(self.c_name(a.source), index(a.offset, a.strides[:-2], batch))};")
        lines.append(f"{indent}const float* restrict b_base = {c_plus(self.c_name(b.source), index(b.offset, b.strides[:-2], batch))};")
        store = product_store(kernel)
        if store is not None:
            lines.append(f"{indent}float* restrict product = "
                         f"{c_plus(self.c_name(store.buffer), index(store.offset, store.strides[:-2], batch))};")
        if not is_direct(kernel):
            position = "loop_t" if kernel.name in getattr(self, "looped", ()) else "0"
            lines.append(f"{indent}graphnn_epilogue_context context = "
                         f"{{B, bufs, {{{', '.join(n or '0' for n in batch) or '0'}}}, {position}}};")
        gemm = gemm_sizes(kernel)
        if gemm is True:
            return lines + self.matmul_gemm(kernel, indent) + self.close(indent, "    ")
        inner = indent
        if gemm is not False:  # decided per call, by the batch size
            lines.append(f"{indent}if ({gemm}) {{")
            lines += self.matmul_gemm(kernel, indent + "    ")
            lines.append(f"{indent}}} else {{")
            inner = indent + "    "
        m = sympy.sympify(kernel.domain[rank - 2])
        if m.is_Integer:  # the groups of MR rows and the rows left, known here
            full = int(m) // MR * MR
            groups, rest = (0, full) if full else None, (full, int(m)) if int(m) > full else None
        else:
            lines.append(f"{inner}const int64_t m_full = {c_index(m)} / {MR} * {MR};")
            groups, rest = ("0", "m_full"), ("m_full", c_index(m))
        both = groups is not None and rest is not None  # then each needs a scope of its own
        if groups is not None:
            work = m * kernel.domain[rank - 1] * kernel.k
            lines += self.split(work, lambda parallel, indent: self.matmul_rows(kernel, MR, *groups, indent, parallel, both),
                                inner, ROWS_PARALLEL_WORK)
        if rest is not None:
            lines += self.matmul_rows(kernel, 1, *rest, inner, False, both)
        if gemm is not False:
            lines.append(f"{indent}}}")
        return lines + self.close(indent, "    ")

    def matmul_gemm(self, kernel: Kernel, indent: str) -> list[str]:
        """The packed GEMM into the product's own output (or a scratch area), with the epilogue
        as its callback."""
        rank = len(kernel.domain)
        a, b = kernel.a, kernel.b
        m, n, k = (c_index(kernel.domain[rank - 2]), c_index(kernel.domain[rank - 1]), c_index(kernel.k))
        args = (f"{m}, {n}, {k}, a_base, {c_index(a.strides[-2])}, {c_index(a.strides[-1])}, "
                f"b_base, {c_index(b.strides[-2])}, {c_index(b.strides[-1])}")
        target = "product"
        lines = []
        if product_store(kernel) is None:
            target = "scratch"
            size = c_index(sympy.sympify(kernel.domain[rank - 2]) * kernel.domain[rank - 1])
            lines.append(f"{indent}float* restrict scratch = graphnn_scratch_area(1, (size_t){size});")
        if is_direct(kernel):
            return lines + [f"{indent}graphnn_sgemm({args}, {target}, {n}, 0, 0, 0);"]
        # an epilogue that updates a weight splits the threads' work by the weight's rows where the
        # forward GEMM splits by columns (see graphnn_sgemm): each thread updates the rows it reads
        weight_rows = int(any(self.plan.buffers[s.buffer].kind == "param" for s in kernel.stores))
        return lines + [f"{indent}graphnn_sgemm({args}, {target}, {n}, {self.name}_{kernel.name}_epilogue, &context, "
                        f"{weight_rows});"]

    def matmul_rows(self, kernel: Kernel, mr: int, start, stop, indent: str, parallel: bool,
                    scoped: bool = False) -> list[str]:
        """The rows [start, stop) of a matmul, ``mr`` rows per iteration (no loop when that is
        one iteration of rows known here: a block of its own with ``scoped``). The k and column
        loops likewise vanish at extent 1."""
        rank = len(kernel.domain)
        a, b = kernel.a, kernel.b
        n, k = sympy.sympify(kernel.domain[rank - 1]), sympy.sympify(kernel.k)
        sa_m, sa_k = a.strides[-2], a.strides[-1]
        sb_k, sb_n = b.strides[-2], b.strides[-1]
        transposed_b = sympy.sympify(sb_k) == 1 and sympy.sympify(sb_n) != 1
        lines, body = [], indent
        if isinstance(start, int) and stop - start == mr:
            first = start  # the one group of rows: its row numbers are constants
            if scoped:
                lines.append(f"{indent}{{  /* rows {start} to {stop - 1} */" if mr > 1 else f"{indent}{{  /* row {start} */")
                body = indent + "    "
        else:
            first = "m0"
            if parallel:
                lines.append(f"{indent}#pragma omp parallel for num_threads(graphnn_team())")
            lines.append(f"{indent}for (int64_t m0 = {start}; m0 < {stop}; m0 += {mr}) {{")
            body = indent + "    "

        def row(r: int):
            return first + r if isinstance(first, int) else (first if r == 0 else f"{first} + {r}")

        for r in range(mr):
            lines.append(f"{body}const float* restrict a{r} = {c_plus('a_base', c_term(row(r), sa_m))};")
        if product_store(kernel) is not None:
            lines.append(f"{body}float* restrict rows = {c_plus('product', c_term(row(0), n))};")
        else:
            lines.append(f"{body}float rows[{c_index(mr * n)}];")
        j = None if n == 1 else "j"
        kk = None if k == 1 else "kk"

        def cell(r: int) -> str:  # element (r, j) of the rows
            return f"rows[{c_plus(c_index(r * n), j) if r else (j or '0')}]"

        if transposed_b:
            if j:
                lines.append(f"{body}for (int64_t j = 0; j < {c_index(n)}; ++j) {{")
            inner = body + "    " if j else body
            lines.append(f"{inner}const float* restrict b_col = {c_plus('b_base', c_term(j or 0, sb_n))};")
            lines.append(f"{inner}float " + ", ".join(f"c{r} = 0.0f" for r in range(mr)) + ";")
            deepest = inner
            if kk:
                if unit(sa_k):  # a strided A (a small batch's weight gradient) stays scalar: gathers
                    # gain nothing there and cost the C compiler seconds per kernel
                    lines.append(f"{inner}#pragma omp simd reduction(+:{', '.join(f'c{r}' for r in range(mr))})")
                lines.append(f"{inner}for (int64_t kk = 0; kk < {c_index(k)}; ++kk) {{")
                deepest = inner + "    "
            lines.append(f"{deepest}const float bk = b_col[{index(0, (sb_k,), (kk,))}];")
            for r in range(mr):
                lines.append(f"{deepest}c{r} += a{r}[{index(0, (sa_k,), (kk,))}] * bk;")
            if kk:
                lines.append(f"{inner}}}")
            for r in range(mr):
                lines.append(f"{inner}{cell(r)} = c{r};")
            if j:
                lines.append(f"{body}}}")
        else:
            lines.append(f"{body}memset(rows, 0, sizeof(float)*{c_index(mr * n)});")
            inner = body
            if kk:
                lines.append(f"{body}for (int64_t kk = 0; kk < {c_index(k)}; ++kk) {{")
                inner = body + "    "
            lines.append(f"{inner}const float* restrict b_row = {c_plus('b_base', c_term(kk or 0, sb_k))};")
            for r in range(mr):
                lines.append(f"{inner}const float x{r} = a{r}[{index(0, (sa_k,), (kk,))}];")
            deepest = inner
            if j:
                if unit(sb_n):
                    lines.append(f"{inner}#pragma omp simd")
                lines.append(f"{inner}for (int64_t j = 0; j < {c_index(n)}; ++j) {{")
                deepest = inner + "    "
            lines.append(f"{deepest}const float bj = b_row[{index(0, (sb_n,), (j,))}];")
            for r in range(mr):
                lines.append(f"{deepest}{cell(r)} += x{r} * bj;")
            if j:
                lines.append(f"{inner}}}")
            if kk:
                lines.append(f"{body}}}")
        if not is_direct(kernel):
            last = row(mr) if isinstance(first, int) else f"m0 + {mr}"
            lines.append(f"{body}{self.name}_{kernel.name}_epilogue(&context, rows, {c_index(n)}, {row(0)}, {last}, 0, {c_index(n)});")
        if body != indent:
            lines.append(f"{indent}}}")
        return lines

    def epilogue(self, kernel: Kernel, names: tuple, indent: str) -> list[str]:
        """A matmul's epilogue for one element ``acc`` of its product (which every path has
        already written to its own output, when it has a row-major one)."""
        product = product_store(kernel)
        lines = [self.load_line(l, names, indent) for l in self.loads_in_loop(kernel.loads)]
        lines += self.assign_lines(self.assigns_in_loop(kernel.body), indent)
        return lines + [self.store_line(s, names, indent) for s in kernel.stores if s is not product]

    def fused_epilogue(self, kernel: Kernel, header: list[str], hoisted: list[str]) -> list[str]:
        """The matmul's epilogue over a block of its product (``c`` points at element (m0, n0)),
        the one copy every path calls: the packed GEMM as its callback, on each block as soon as
        the block's sums are final and on the thread that computed it; the row loops after
        each group of rows."""
        rank = len(kernel.domain)
        m_axis, n_axis = rank - 2, rank - 1
        names = _epilogue_names(kernel)
        product = product_store(kernel)
        stores = [s for s in kernel.stores if s is not product]
        body = hoisted + [f"    for (int64_t i{m_axis} = m0; i{m_axis} < m1; ++i{m_axis}) {{",
                          f"        for (int64_t i{n_axis} = n0; i{n_axis} < n1; ++i{n_axis}) {{",
                          f"            const float acc = c[(i{m_axis} - m0)*ldc + (i{n_axis} - n0)];"]
        body += self.epilogue(kernel, names, "            ") + ["        }", "    }"]
        bound = self.bindings(kernel, buffers_named(kernel, kernel.loads, stores))
        used = symbols(kernel.loads, kernel.body, stores, names) | binding_symbols(bound)
        context = [f"    const int64_t {BATCH} = ctx->B;"] if uses_batch(used) else []
        context += ["    void* const* bufs = ctx->bufs;"] if bound else []
        context += [f"    const int64_t i{k} = ctx->batch[{k}];" for k in range(rank - 2) if f"i{k}" in used]
        context += ["    const int64_t loop_t = ctx->loop_t;"] if "loop_t" in used else []
        if context:
            context.insert(0, "    const graphnn_epilogue_context* ctx = (const graphnn_epilogue_context*)context;")
        else:
            context.append("    (void)context;")
        # never inlined: inside the row loops' caller GCC loses the restrict qualifiers, cannot
        # prove the product and the updated buffers apart, and keeps only a scalar loop (Adam's
        # update, with a square root and two divisions per element, ran 10x slower that way)
        return ([header[0], " * the epilogue, run on each finished block of the product */",
                 f"static __attribute__((noinline)) void {self.name}_{kernel.name}_epilogue(void* context, "
                 "const float* restrict c, int64_t ldc,",
                 "        int64_t m0, int64_t m1, int64_t n0, int64_t n1) {"]
                + context + self.declare_pointers(bound) + body + ["}", ""])


def unit(stride) -> bool:
    """Whether a stride is 1 (a contiguous operand along the loop a row loop vectorises)."""
    return sympy.sympify(stride) == 1


def gemm_sizes(kernel: Kernel) -> bool | str:
    """Whether a matmul is big enough for the packed GEMM: True or False when its sizes decide
    it, else the C condition on the batch size."""
    rank = len(kernel.domain)
    conditions = []
    for size, least in ((kernel.domain[rank - 2], GEMM_MIN), (kernel.domain[rank - 1], GEMM_MIN_N), (kernel.k, GEMM_MIN_K)):
        size = sympy.sympify(size)
        coefficient, rest = size.as_coeff_Mul()
        if size.is_Integer:
            if int(size) < least:
                return False
        elif rest.is_Symbol and coefficient.is_Integer and int(coefficient) >= least:
            continue  # k*B with k >= least holds for every batch size: no row loops to compile
        else:
            conditions.append(f"{c_index(size)} >= {least}")
    return " && ".join(conditions) if conditions else True


def product_store(kernel: Kernel) -> Store | None:
    """The store of a matmul's product itself, row-major: the packed GEMM writes it in place (and
    the epilogue, if any, reads it back from there)."""
    rank = len(kernel.domain)
    for store in kernel.stores:
        if (store.value == "acc" and sympy.sympify(store.strides[-1]) == 1
                and sympy.sympify(store.strides[-2] - kernel.domain[rank - 1]) == 0):
            return store
    return None


def is_direct(kernel: Kernel) -> bool:
    """A matmul whose product is its only output, stored row-major: no epilogue to run."""
    return not kernel.body and len(kernel.stores) == 1 and product_store(kernel) is not None


def _epilogue_names(kernel: Kernel) -> tuple:
    """The index variables inside a matmul's epilogue function: the batch axes' (from its
    context; none for an axis of extent 1), then the row and column loops over the block."""
    rank = len(kernel.domain)
    return axis_names(kernel.domain)[: rank - 2] + (f"i{rank - 2}", f"i{rank - 1}")


def printed_operand_strides(kernel: Kernel) -> list:
    """The strides along M, K and N that a matmul's code prints: all four where the packed GEMM
    may run; the row loops leave out those of an axis of extent 1 (its index is 0)."""
    a, b = kernel.a, kernel.b
    if gemm_sizes(kernel) is not False:
        return [*a.strides[-2:], *b.strides[-2:]]
    m, n = kernel.domain[-2:]
    return (([] if is_one(m) else [a.strides[-2]]) + ([] if is_one(kernel.k) else [a.strides[-1], b.strides[-2]])
            + ([] if is_one(n) else [b.strides[-1]]))

"""Generated source is printed from the plan, and reads like hand-written source: each C function
declares exactly the pointers, context fields and parameters it uses (decided from the kernel,
before printing), no loop runs over an extent of 1, no index term is multiplied by 1, and no
if/else has two identical branches."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from codegen import c, triton
from graphnn import pointwise as pw
from graphnn.ir import B, Graph
from graphnn.ops import Builder
from graphnn.passes.fuse import build_plan
from graphnn.passes.memory import plan_memory
from graphnn.passes.simplify import simplify

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "thermometer": ["examples/thermometer.py:model"],
    "digits": ["examples/digits.py:model"],
    "digits eval": ["examples/digits.py:model", "--eval"],
    "digits_cnn": ["examples/digits_cnn.py:model"],
    "optimizers adam": ["examples/optimizers.py:Net", "--optimizer", "adam"],
}


def c_functions(source: str) -> list[list[str]]:
    """The lines of each function definition of a C source (signature first)."""
    functions, current = [], None
    for line in source.splitlines():
        if current is None and re.match(r"(static |void |int )", line) and "(" in line and not line.endswith(";"):
            current = [line]
        elif current is not None:
            current.append(line)
            if line == "}":
                functions.append(current)
                current = None
    return functions


def declaration_problems(source: str) -> list[tuple]:
    """What a generated C function declares but does not use, or marks unused but uses."""
    problems = []
    for function in c_functions(source):
        signature, body = function[0], function[1:]
        kernel = re.match(r"(?:static )?(?:__attribute__\(\(noinline\)\) )?void (\w+)\(", signature)
        if not kernel or kernel.group(1).startswith("graphnn_"):
            continue  # the prelude's helpers and the entry points

        def used(name: str, besides: str) -> bool:
            return any(re.search(rf"\b{name}\b", line) for line in body if line is not besides)

        for line in body:
            declared = (re.match(r"\s+(?:const )?\w+\* restrict (p_\w+) = ", line)
                        or re.match(r"\s+const int64_t (B|i\d+) = ctx->", line)
                        or re.match(r"\s+void\* const\* (bufs) = ctx->bufs;", line)
                        or re.match(r"\s+const graphnn_epilogue_context\* (ctx) = ", line))
            if declared and not used(declared.group(1), line):
                problems.append((signature, "declared, not used", declared.group(1)))
            marked = re.match(r"\s+\(void\)(\w+);", line)
            if marked and used(marked.group(1), line):
                problems.append((signature, "marked unused, used", marked.group(1)))
        if "(int64_t B," in signature and not any(re.search(r"\bB\b", line) for line in body):
            problems.append((signature, "B neither used nor marked unused"))
    return problems


def identical_branches(source: str) -> list[int]:
    """Lines of ``if (...) {`` whose then and else blocks are the same text."""
    lines, found = source.splitlines(), []
    for k, line in enumerate(lines):
        opening = re.match(r"(\s*)if \(.*\) \{$", line)
        if not opening:
            continue
        indent = opening.group(1)
        try:
            middle = lines.index(f"{indent}}} else {{", k)
            end = lines.index(f"{indent}}}", middle)
        except ValueError:
            continue
        if lines[k + 1:middle] == lines[middle + 1:end]:
            found.append(k + 1)
    return found


def check_c(source: str) -> None:
    assert declaration_problems(source) == []
    assert identical_branches(source) == []
    assert not re.findall(r".*< 1; \+\+.*", source)
    assert not re.findall(r".*\w\*1\b(?![.\d]).*", source)
    assert not re.findall(r".*\[0\*.*|.* \+ 0[;\]].*", source)


def check_triton(source: str) -> None:
    assert not re.findall(r".* \* 1\b(?![.\d]).*", source)
    assert not re.findall(r".*% 1$.*", source, re.M)


@pytest.mark.parametrize("target", EXAMPLES)
def test_example_sources(target, tmp_path, monkeypatch):
    from graphnn import cli

    monkeypatch.chdir(ROOT)
    for stage, check in (("c", check_c), ("triton", check_triton)):
        out = tmp_path / stage
        assert cli.main(["dump", *EXAMPLES[target], "--stage", stage, "-o", str(out)]) == 0
        check(out.read_text())


def sources(build, leaves: dict) -> tuple[str, str]:
    graph = Graph()
    b = Builder(graph)
    nodes = [b.leaf("input", name, shape) for name, shape in leaves.items()]
    graph.outputs.update(build(b, *nodes))
    plan = build_plan(simplify(graph))
    memory = plan_memory(plan)
    return c.generate({"forward": (plan, memory)}), triton.generate("forward", plan, memory)


def test_epilogue_context_holds_what_the_epilogue_reads():
    """A batched matmul's epilogue takes the batch index from its context; a batch axis of
    extent 1 has none (its index is 0), and the batch size is read where an index has it."""
    def build(groups: int):
        def graph(b, x, w, bias):
            return {"y": b.pointwise(pw.tanh, b.pointwise(pw.add, b.matmul(x, w), b.expand(bias, (groups, B, 40))))}
        return graph

    source, _ = sources(build(3), {"x": (3, B, 24), "w": (3, 24, 40), "bias": (3, 1, 40)})
    check_c(source)
    assert "const int64_t i0 = ctx->batch[0];" in source and "const int64_t B = ctx->B;" in source
    source, _ = sources(build(1), {"x": (1, B, 24), "w": (1, 24, 40), "bias": (1, 1, 40)})
    check_c(source)
    assert "ctx->batch" not in source and "{B, bufs, {0}, 0}" in source  # (0: the position of no time loop)


def test_constant_sizes_mark_the_batch_unused_and_extent_one_loops_vanish():
    """A kernel whose sizes are constants says so ((void)B); axes of extent 1 (a matmul with one
    row, one column or k = 1, a [4, 1] reduction) print no loop and no index term."""
    def build(b, x, w, v):
        return {"outer": b.matmul(x, w), "row": b.pointwise(pw.exp, b.matmul(b.permute(w, (1, 0)), v)),
                "sums": b.reduce("sum", b.pointwise(pw.mul, x, x), (0,))}

    source, triton_source = sources(build, {"x": (4, 1), "w": (1, 6), "v": (1, 1)})
    check_c(source)
    check_triton(triton_source)
    assert "(void)B;" in source


@pytest.mark.parametrize("batch", [1, 5, 37])
def test_matmuls_with_extent_one_axes_compute_as_the_reference(batch):
    """Products with k = 1, one row or one column (B stored transposed or not), with and without
    an epilogue, through generated C and Triton against the reference."""
    from tests.codegen.test_kernels import compare

    def build(b, x, w, u, c, d):
        return {"outer": b.matmul(x, w), "outer_tanh": b.pointwise(pw.tanh, b.matmul(x, w)),
                "row": b.pointwise(pw.exp, b.matmul(b.permute(x, (1, 0)), u)),
                "column": b.matmul(u, b.permute(c, (1, 0))), "column_tanh": b.pointwise(pw.tanh, b.matmul(u, d))}

    compare(build, {"x": ((B, 1), "f32"), "w": ((1, 6), "f32"), "u": ((B, 8), "f32"), "c": ((1, 8), "f32"),
                    "d": ((8, 1), "f32")}, batch)


@pytest.mark.parametrize("rows", [1, 2, 4, 5, 7, 9])
def test_matmuls_with_few_constant_rows(rows):
    """A constant row count: groups of MR rows and the rows left, each without a loop when it is
    one iteration (and then in a block of its own beside the other)."""
    from tests.codegen.test_kernels import compare

    def build(b, a, w, v):
        return {"y": b.matmul(a, w), "z": b.pointwise(pw.tanh, b.matmul(a, v))}

    plan = compare(build, {"a": ((rows, 3), "f32"), "w": ((3, 5), "f32"), "v": ((3, 1), "f32")}, 2)
    check_c(c.generate({"forward": (plan, plan_memory(plan))}))

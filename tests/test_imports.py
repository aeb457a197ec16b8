"""The import graph of graphnn, codegen and runtime points one way.

Every module's imports, read from its source (module level and inside functions alike, since a
function-level import is still a dependency), must go to its own group or to a group of a lower
layer, never up or sideways to a peer group, and no set of modules may import one another in a
cycle. The layering, lowest first, is declared here; a new module joins a group by its name.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("graphnn", "codegen", "runtime")

LAYERS = [
    {"ir": ("graphnn.ir", "graphnn.ops", "graphnn.pointwise", "graphnn.errors", "graphnn.evaluate", "graphnn.dtypes",
            "graphnn.attention_op", "graphnn.scan_op")},
    {"base": ("graphnn.files", "graphnn.flat", "graphnn.guard", "graphnn.random", "graphnn.device", "graphnn.printing",
              "graphnn.eager")},
    {"passes": ("graphnn.passes", "graphnn.autodiff", "graphnn.generalize")},
    # peers: the front end that records graphs, and the code generators and runtimes that turn
    # plans into calls; none of the three imports another
    {"frontend": ("graphnn.trace", "graphnn.tensors", "graphnn.tensor_methods", "graphnn.tensor_math",
                  "graphnn.tensor_reductions", "graphnn.tensor_slicing", "graphnn.tensor_inplace", "graphnn.tensor_gather",
                  "graphnn.indexing",
                  "graphnn.factories", "graphnn.functions", "graphnn.capture", "graphnn.nn", "graphnn.optim",
                  "graphnn.checkpoint", "graphnn.utils", "graphnn.recording"),
     "codegen": ("codegen",),
     "runtime": ("runtime",)},
    {"backends": ("graphnn.executable", "graphnn.backends")},
    {"programs": ("graphnn.program", "graphnn.training", "graphnn.distributed", "graphnn.lazy")},
    {"api": ("graphnn.api",)},
    {"tools": ("graphnn", "graphnn.dump", "graphnn.cli")},
]
"""Layers, lowest first; each maps group names to the modules (and packages) in the group."""


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _ours(name: str, known: dict) -> str | None:
    """The module of ours that importing ``name`` loads, or None for other packages."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(name: str, path: Path, known: dict) -> dict[str, int]:
    """Module of ours -> the first line importing it, for every import statement in the file."""
    found: dict[str, int] = {}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # ``from package import module`` imports the module; ``from module import name`` the module
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for target in targets:
            module = _ours(target, known)
            if module is not None and module != name:
                found.setdefault(module, node.lineno)
    return found


def group_of(module: str) -> tuple[int, str]:
    """(layer index, group name) of a module: the group naming it or its closest package."""
    best = None
    for layer, groups in enumerate(LAYERS):
        for group, members in groups.items():
            for member in members:
                # a group's member names a module and the modules under it; "graphnn" only its __init__
                if module == member or (member != "graphnn" and module.startswith(member + ".")):
                    if best is None or len(member) > best[0]:
                        best = (len(member), layer, group)
    assert best is not None, f"{module} is in no group of LAYERS: add it to the layer it belongs to"
    return best[1], best[2]


def graph() -> dict[str, dict[str, int]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_module_is_in_a_layer():
    for module in modules():
        group_of(module)


def test_imports_go_down_the_layers():
    wrong = []
    for module, targets in graph().items():
        layer, group = group_of(module)
        for target, line in targets.items():
            target_layer, target_group = group_of(target)
            if target_layer > layer or (target_layer == layer and target_group != group):
                where = "up" if target_layer > layer else "sideways"
                wrong.append(f"{modules()[module].relative_to(ROOT)}:{line}: {module} ({group}) imports {target} "
                             f"({target_group}), {where}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def cycles(edges: dict[str, dict]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_checks_catch_a_cycle_and_an_upward_edge():
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
    assert group_of("graphnn.nn.module") < group_of("graphnn.api")
    assert group_of("runtime.gpu")[0] == group_of("graphnn.nn.module")[0]  # peers: neither may import the other
    assert group_of("runtime.gpu")[1] != group_of("codegen.c")[1]


def test_the_lowest_layer_imports_only_itself():
    """graphnn.ir, ops and pointwise import nothing of ours beyond one another."""
    edges = graph()
    for module in ("graphnn.ir", "graphnn.ops", "graphnn.pointwise"):
        assert set(edges[module]) <= {"graphnn.ir", "graphnn.ops", "graphnn.pointwise"}, module

"""Every compiler stage returns a new value and leaves its input alone: run twice on the same
input, a stage gives equal results and the input keeps its structural fingerprint (node count,
printed text, nodes with their attributes, outputs, updates, leaves, checks, placements)."""
from __future__ import annotations

import numpy as np
import pytest

import graphnn as gn
from graphnn import nn, optim
from graphnn.api import trace, with_gradients
from graphnn.ir import LEAF_OPS, Graph, LabelCheck
from graphnn.passes.cse import share_subexpressions
from graphnn.passes.fuse import build_plan
from graphnn.passes.memory import plan_memory
from graphnn.passes.simplify import simplify
from graphnn.program import TrainProgram


def fingerprint(graph: Graph) -> tuple:
    """Everything a stage could change in a graph, node ids included."""
    nodes = [(n.id, n.op, tuple(i.id for i in n.inputs), n.shape, n.dtype, repr(sorted(n.attrs.items())), n.path,
              n.module) for n in graph.nodes]
    return (len(graph.nodes), str(graph), nodes, structure(graph),
            {k: n.id for k, n in graph.outputs.items()}, {k: n.id for k, n in graph.updates.items()},
            [(n.name, n.id) for op in LEAF_OPS for n in graph.leaves(op)],
            {k: n.id for k, n in graph.placements.items()})


def structure(graph: Graph) -> tuple:
    """What two runs of a stage must agree on (their nodes are new objects with new ids)."""
    return (len(graph.nodes), str(graph), list(graph.outputs), list(graph.updates),
            [(op, n.name, n.shape, n.dtype) for op in LEAF_OPS for n in graph.leaves(op)],
            list(graph.checks), list(graph.label_checks), list(graph.placements))


def model():
    gn.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Dropout(0.5), nn.Linear(5, 3))


def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((4, 6)).astype(np.float32), rng.integers(0, 3, 4)


def program(net=None) -> TrainProgram:
    net = net or model()
    return TrainProgram(net, nn.CrossEntropyLoss(), optim.SGD(net.parameters(), lr=0.1, momentum=0.9), "c")


def traced_and_backward(prog: TrainProgram):
    x, y = data()
    traced = trace(prog.model, x, loss_fn=prog.loss_fn, target=y)
    backward, grads = with_gradients(traced, dict(prog.model.named_parameters()))
    return traced, backward, grads


def entries_of(prog: TrainProgram, backward: Graph, grads: dict) -> list:
    named = dict(prog.model.named_parameters())
    return [(named[name], backward.leaf(name), g) for name, g in grads.items()]


def model_state(net) -> tuple:
    return [(k, np.array(v).tobytes()) for k, v in net.state_dict().items()], [m.training for m in net.modules()]


def test_trace_twice_leaves_the_model_alone_and_gives_equal_graphs():
    net, (x, y) = model(), data()
    before, inputs = model_state(net), (x.copy(), y.copy())
    first = trace(net, x, loss_fn=nn.CrossEntropyLoss(), target=y)
    second = trace(net, x, loss_fn=nn.CrossEntropyLoss(), target=y)
    assert structure(first) == structure(second)
    assert model_state(net) == before
    np.testing.assert_array_equal(x, inputs[0])
    np.testing.assert_array_equal(y, inputs[1])


def test_autodiff_returns_a_new_graph_and_leaves_the_traced_one_alone():
    prog = program()
    traced, backward, grads = traced_and_backward(prog)
    assert backward is not traced and len(backward.nodes) > len(traced.nodes)
    before = fingerprint(traced)
    again, grads_again = with_gradients(traced, dict(prog.model.named_parameters()))
    assert fingerprint(traced) == before
    assert structure(again.variant(grads_again, {})) == structure(backward.variant(grads, {}))
    assert all(g not in traced.nodes for g in grads.values())


def test_label_ranges_are_a_declared_check_of_the_graph():
    prog = program()
    traced, backward, _ = traced_and_backward(prog)
    target = traced.leaf("target")
    assert "classes" not in target.attrs and "ignore_index" not in target.attrs
    assert traced.label_checks == [LabelCheck("target", 3, -100)]
    assert backward.label_checks == traced.label_checks
    assert simplify(backward.variant({"loss": backward.outputs["loss"]}, {})).label_checks == traced.label_checks
    assert "check %target in [0,3) (ignore_index -100)" in str(traced)


def test_label_checks_run_before_anything_with_ignore_index_allowed():
    net = model()
    loss_fn = nn.CrossEntropyLoss(ignore_index=-1)
    train = gn.compile(net, loss_fn, optim.SGD(net.parameters(), lr=0.1), backend="numpy")
    x, y = data()
    y[1] = -1
    assert np.isfinite(train.step(x, y))
    before = model_state(net)
    y[2] = 3
    with pytest.raises(gn.InputError, match=r"target: class labels must be in \[0, 3\).*got 3 at index 2"):
        train.step(x, y)
    assert model_state(net) == before


def test_entry_points_are_separate_graphs_built_twice_alike():
    prog = program()
    x, y = data()
    key = prog._key([x, y])
    before = model_state(prog.model)
    first = prog._build(key, [x, y])
    prints = {entry: fingerprint(g) for entry, g in first.items()}
    second = prog._build(key, [x, y])
    assert model_state(prog.model) == before
    assert {e: structure(g) for e, g in first.items()} == {e: structure(g) for e, g in second.items()}
    assert {entry: fingerprint(g) for entry, g in first.items()} == prints
    graphs = list(first.values())
    for k, g in enumerate(graphs):  # no list or table is shared between two entry points
        for other in graphs[k + 1:]:
            assert g.nodes is not other.nodes and g._leaves is not other._leaves and g.checks is not other.checks
            assert g.label_checks is not other.label_checks and g.placements is not other.placements
    # the optimizer's leaves and nodes are the step's alone
    assert first["step"].leaf("optim.0.lr") is not None and first["grad"].leaf("optim.0.lr") is None
    assert len(first["loss"].nodes) < len(first["grad"].nodes) < len(first["step"].nodes)


def test_split_step_leaves_the_backward_and_the_step_alone():
    prog = program()
    traced, backward, grads = traced_and_backward(prog)
    entries = entries_of(prog, backward, grads)
    loss, updates = backward.outputs["loss"], dict(traced.updates)
    step = prog._step(backward, loss, updates, grads, entries)
    prints = [fingerprint(g) for g in (traced, backward, step)]
    first = prog._split_step(backward, loss, updates, entries)
    second = prog._split_step(backward, loss, updates, entries)
    assert [fingerprint(g) for g in (traced, backward, step)] == prints
    assert {e: structure(g) for e, g in first.items()} == {e: structure(g) for e, g in second.items()}
    assert first["shard_grad"].leaf("grad.0.weight") is not None
    assert backward.leaf("grad.0.weight") is None and step.leaf("grad.0.weight") is None
    again = prog._step(backward, loss, updates, grads, entries)
    assert structure(again) == structure(step)


def planned():
    prog = program()
    x, y = data()
    graphs = prog._build(prog._key([x, y]), [x, y])
    return graphs["step"], prog.storage(graphs)


def test_simplify_twice():
    step, _ = planned()
    before = fingerprint(step)
    first, second = simplify(step), simplify(step)
    assert fingerprint(step) == before
    assert fingerprint(first) == fingerprint(second)  # simplify numbers its nodes from 0


def test_fusion_sharing_and_memory_planning_twice():
    step, storage = planned()
    graph = simplify(step)
    before, stored = fingerprint(graph), dict(storage)
    first, second = build_plan(graph, storage), build_plan(graph, storage)
    assert fingerprint(graph) == before and storage == stored
    assert repr(first) == repr(second)
    plan_text = repr(first)
    shared = share_subexpressions(first)
    assert repr(share_subexpressions(first)) == repr(shared) and repr(first) == plan_text
    memory = plan_memory(shared)
    assert repr(plan_memory(shared)) == repr(memory)
    assert repr(first) == plan_text


@pytest.mark.parametrize("backend", ["c", "triton"])
def test_codegen_twice_on_the_same_plan(backend):
    step, storage = planned()
    plan = build_plan(simplify(step), storage)
    memory = plan_memory(plan)
    before = (repr(plan), repr(memory))
    if backend == "c":
        from codegen import c

        generate = lambda: c.generate({"train_step": (plan, memory)})  # noqa: E731
    else:
        from codegen import triton

        generate = lambda: triton.generate("train_step", plan, memory)  # noqa: E731
    assert generate() == generate()
    assert (repr(plan), repr(memory)) == before

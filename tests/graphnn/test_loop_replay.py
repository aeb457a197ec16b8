"""What a recorded iteration takes over from the previous one (graphnn.recording, graphnn.lazy),
and every change that must stop it: each loop runs against torch's from the same weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import backends, lazy
from graphnn import random as gn_random
from tests.graphnn.torch_oracle import pair

RNG = np.random.default_rng(3)
X = RNG.standard_normal((12, 5)).astype(np.float32)
LABELS = RNG.integers(0, 3, 12)


def mlp(m):
    return m.Sequential(m.Linear(5, 8), m.ReLU(), m.Linear(8, 3))


def numbers(lib, t):
    return np.array(t.detach().numpy())


def same_parameters(ours, theirs, rtol=2e-5, atol=2e-6):
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        np.testing.assert_allclose(np.asarray(a), b.detach().numpy(), rtol=rtol, atol=atol, err_msg=name)


def test_each_iteration_binds_the_leaf_tensors_it_reads():
    """Two leaf tensors of one shape used in turn: every iteration records alike, and each step
    must read and update the tensor its own iteration used, not the previous one's."""
    results = []
    for lib in (gn, torch):
        x, y = lib.tensor(X[:, :1]), lib.tensor(X[:, 1:2])
        a = lib.tensor([[1.5]], requires_grad=True)
        b = lib.tensor([[-0.5]], requires_grad=True)
        optimizer = lib.optim.SGD([a, b], lr=0.1, momentum=0.9)
        losses = []
        for step in range(7):
            w = a if step % 3 else b  # b, a, a, b, a, a, b: runs of one tensor and switches
            loss = ((x * w - y) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        results.append((losses, numbers(lib, a), numbers(lib, b)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=2e-5)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=2e-5)
    np.testing.assert_allclose(results[0][2], results[1][2], rtol=2e-5)


def test_a_tensor_attribute_that_stops_requiring_grad_stops_being_stepped():
    """A plain tensor attribute of a module that requires grad, frozen mid-training with
    ``requires_grad_(False)``: the module call is no longer taken over as it was, and the step
    leaves the tensor alone (flipping a tensor's flag moves graphnn.guard's version)."""

    def build(lib):
        class Scaled(lib.nn.Module):
            def __init__(self):
                super().__init__()
                self.linear = lib.nn.Linear(5, 3)
                self.scale = lib.tensor([1.0, 0.5, 2.0], requires_grad=True)

            def forward(self, x):
                return self.linear(x) * self.scale

        return Scaled()

    ours, theirs = pair(build, modules=False)
    results = []
    for lib, model in ((gn, ours), (torch, theirs)):
        optimizer = lib.optim.SGD([*model.parameters(), model.scale], lr=0.1, momentum=0.9)
        criterion = lib.nn.CrossEntropyLoss()
        x, y = lib.tensor(X), lib.tensor(LABELS)
        losses = []
        for step in range(6):
            if step == 3:
                model.scale.requires_grad_(False)
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        results.append((losses, numbers(lib, model.scale)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=2e-5)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=2e-5)
    assert ours.scale.grad is None and theirs.scale.grad is None
    same_parameters(ours, theirs)


def test_gradients_of_a_compiled_step_are_read_accumulated_and_zeroed_as_torchs():
    """``p.grad`` after a fused step (made a tensor only when read): held across iterations,
    accumulated into by an iteration that does not zero it, zeroed in place by
    ``zero_grad(set_to_none=False)``."""
    ours, theirs = pair(mlp)
    results = []
    for lib, model in ((gn, ours), (torch, theirs)):
        optimizer = lib.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        criterion = lib.nn.CrossEntropyLoss()
        losses, held = [], []
        for step in range(7):
            loss = criterion(model(lib.tensor(X[step % 2::2])), lib.tensor(LABELS[step % 2::2]))
            if step in (0, 1, 2, 5):
                optimizer.zero_grad()
            elif step == 4:
                optimizer.zero_grad(set_to_none=False)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if step == 2:
                held = [p.grad for p in model.parameters()]  # the tensors step 3 accumulates into
        results.append((losses, [numbers(lib, g) for g in held], [numbers(lib, p.grad) for p in model.parameters()]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=2e-5, atol=1e-6)
    for a, b in zip(results[0][1] + results[0][2], results[1][1] + results[1][2]):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    same_parameters(ours, theirs)


def book_loop(lib, model, optimizer, steps: int, before_step) -> list:
    """The five-step loop on (X, LABELS) ``steps`` times, ``before_step(step)`` first each time:
    the losses."""
    criterion = lib.nn.CrossEntropyLoss()
    x, y = lib.tensor(X), lib.tensor(LABELS)
    losses = []
    for step in range(steps):
        before_step(step)
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_param_groups_learning_rates_and_modes_changed_mid_loop():
    """A learning rate set through ``param_groups``, a parameter group added, ``model.eval()``,
    one submodule's ``train()`` and ``model.train()`` between iterations: each takes effect at
    the next step."""
    ours, theirs = pair(lambda m: m.Sequential(m.Linear(5, 6), m.BatchNorm1d(6), m.Tanh(), m.Linear(6, 3)))
    results = []
    for lib, model in ((gn, ours), (torch, theirs)):
        head = list(model.parameters())[-2:]
        optimizer = lib.optim.SGD(list(model.parameters())[:-2], lr=0.1, momentum=0.9)

        def change(step, optimizer=optimizer, model=model, head=head):
            if step == 2:
                optimizer.param_groups[0]["lr"] = 0.02
            if step == 4:
                optimizer.add_param_group({"params": head, "lr": 0.2})
            if step == 6:
                model.eval()
            if step == 7:
                model[1].train()  # (the BatchNorm alone: its batch statistics again)
            if step == 8:
                model.train()

        results.append(book_loop(lib, model, optimizer, 10, change))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-4, atol=1e-6)
    same_parameters(ours, theirs, rtol=1e-4, atol=1e-5)


def test_the_backend_named_mid_loop_runs_the_next_step(monkeypatch):
    """GRAPHNN_BACKEND set between iterations: the next step compiles for that backend (the
    backend "auto" resolves to is remembered per environment, not for good)."""
    monkeypatch.setenv("GRAPHNN_BACKEND", "c")
    ours, theirs = pair(mlp)
    results, before = [], set()
    for lib, model in ((gn, ours), (torch, theirs)):
        def switch(step, lib=lib):
            if step == 3 and lib is gn:
                monkeypatch.setenv("GRAPHNN_BACKEND", "numpy")
                assert backends.resolve("auto") == "numpy"
                before.update(id(executable) for _, _, executable in lazy.compiled())  # (the cache may be full)

        results.append(book_loop(lib, model, lib.optim.SGD(model.parameters(), lr=0.1), 6, switch))
    added = [executable for _, _, executable in lazy.compiled() if id(executable) not in before]
    assert added and all(type(executable).__name__ == "ReferenceExecutable" for executable in added)
    np.testing.assert_allclose(results[0], results[1], rtol=2e-5, atol=1e-6)
    monkeypatch.delenv("GRAPHNN_BACKEND")
    assert backends.resolve("auto") != "numpy"


def test_a_dropout_seed_is_numpys_draw_of_the_global_generator():
    """``next_seed`` computes ``integers(0, 2**63 - 1)`` from one raw draw: the same seeds, and
    the generator left where numpy's call leaves it."""
    gn.manual_seed(11)
    ours = [gn_random.next_seed() for _ in range(2000)] + [float(gn_random.generator().random())]
    gn.manual_seed(11)
    numpy_generator = gn_random.generator()
    expected = [int(numpy_generator.integers(0, 2**63 - 1)) for _ in range(2000)] + [float(numpy_generator.random())]
    assert ours == expected


def test_an_iteration_draws_a_dropout_seed_only_when_it_has_random_ops():
    """As torch's generator, the global one moves only where something random runs: a recorded
    iteration without dropout leaves it as it was; one with dropout draws its seed (once, however
    many runs the tape makes) and the next iteration draws a new mask."""
    def iteration(model, x):
        optimizer = gn.optim.SGD(model.parameters(), lr=0.0)
        out = model(x)
        loss = out.pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return out.detach().numpy().copy()

    x = gn.tensor(np.ones((8, 4), np.float32))
    gn.manual_seed(5)
    plain = gn.nn.Sequential(gn.nn.Linear(4, 16), gn.nn.ReLU(), gn.nn.Linear(16, 1))
    for _ in range(3):
        before = gn_random.generator().bit_generator.state
        iteration(plain, x)
        assert gn_random.generator().bit_generator.state == before

    dropped = gn.nn.Sequential(gn.nn.Linear(4, 16), gn.nn.Dropout(0.5), gn.nn.Linear(16, 1))
    outputs = []
    for _ in range(3):
        before = gn_random.generator().bit_generator.state
        outputs.append(iteration(dropped, x))
        after = gn_random.generator().bit_generator.state
        gn_random.generator().bit_generator.state = before
        gn_random.next_seed()  # one draw: the generator is where it would be after it
        assert gn_random.generator().bit_generator.state == after
    assert not np.array_equal(outputs[0], outputs[1]) and not np.array_equal(outputs[1], outputs[2])


@pytest.mark.parametrize("depth", [1, 3])
def test_a_followed_iteration_is_found_without_recompiling(depth):
    """Iterations recorded alike run the first compiled step, at every depth."""
    sizes = [5] + [7] * depth + [3]
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [gn.nn.Linear(a, b), gn.nn.ReLU()]
    model = gn.nn.Sequential(*layers[:-1])
    optimizer = gn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    criterion = gn.nn.CrossEntropyLoss()
    x, y = gn.tensor(X), gn.tensor(LABELS)
    for step in range(6):
        if step == 3:
            runs = dict(lazy._runs)
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert lazy._runs == runs and np.isfinite(loss.item())


def test_a_gradient_left_unread_keeps_its_values_when_a_compiled_step_runs_next():
    """``p.grad`` after a recorded loop's step is lent from the optimizer's flat gradients: a
    ``gn.compile`` step on the same optimizer, which overwrites them, runs only after the
    unread gradients were copied."""
    ours, theirs = pair(mlp)
    x, y = X[:6], LABELS[:6]
    optimizer = gn.optim.SGD(ours.parameters(), lr=0.1)
    for _ in range(2):  # (the second iteration is the compiled step)
        loss = gn.nn.CrossEntropyLoss()(ours(gn.tensor(x)), gn.tensor(y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    gn.compile(ours, gn.nn.CrossEntropyLoss(), optimizer).step(X[6:], LABELS[6:])
    reference = torch.optim.SGD(theirs.parameters(), lr=0.1)
    for _ in range(2):
        loss = torch.nn.CrossEntropyLoss()(theirs(torch.tensor(x)), torch.tensor(y))
        reference.zero_grad()
        loss.backward()
        reference.step()
    for p, q in zip(ours.parameters(), theirs.parameters()):
        np.testing.assert_allclose(np.asarray(p.grad), q.grad.numpy(), rtol=2e-5, atol=1e-6)


def test_an_iteration_takes_over_the_input_leaves_of_the_previous_one_where_they_agree():
    """Data read at the same place with the same dtype and shape takes the previous iteration's
    input leaf (its node, not a copy); a batch of another shape gets a new leaf; every loss is
    torch's."""
    from graphnn import recording

    ours, theirs = pair(mlp)
    batches = [(0, 6), (6, 12), (0, 5), (0, 5)]
    results, leaves = [], []
    for lib, model in ((gn, ours), (torch, theirs)):
        optimizer = lib.optim.SGD(model.parameters(), lr=0.1)
        losses = []
        for start, end in batches:
            x, y = lib.tensor(X[start:end]), lib.tensor(LABELS[start:end])
            loss = lib.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if lib is gn:
                tape = recording._state.tape
                leaves.append({name: tape.graph.leaf(name) for name in tape.input_values})
        results.append(losses)
    np.testing.assert_allclose(results[0], results[1], rtol=2e-5, atol=1e-6)
    assert leaves[1]["x0"] is leaves[0]["x0"] and leaves[1]["x1"] is leaves[0]["x1"]  # (the same shapes)
    assert leaves[2]["x0"] is not leaves[1]["x0"] and leaves[2]["x0"].shape == (5, 5)  # (a smaller batch)
    assert leaves[3]["x0"] is leaves[2]["x0"] and leaves[3]["x1"] is leaves[2]["x1"]
    assert all(leaves[3][name].op == "input" for name in leaves[3])

"""The PyTorch training loop on graphnn tensors: ``loss.backward()`` and ``optimizer.step()``
against torch from the same initial weights on the same data."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import nn
from tests.graphnn.torch_oracle import pair

RNG = np.random.default_rng(0)
X = RNG.standard_normal((16, 5)).astype(np.float32)
LABELS = RNG.integers(0, 3, 16)




def mlp(m):
    return m.Sequential(m.Linear(5, 8), m.ReLU(), m.Linear(8, 3))


def loop(lib, model, optimizer, steps: int = 4, batch: int = 8):
    """The five steps of the books, on a few batches; the losses read after each step."""
    criterion = lib.nn.CrossEntropyLoss()
    losses = []
    for step in range(steps):
        start = (step * batch) % len(X)
        x, y = lib.tensor(X[start:start + batch]), lib.tensor(LABELS[start:start + batch])
        out = model(x)
        loss = criterion(out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())  # after the step: the loss before it, as torch
    return losses


def same_state(ours, theirs, rtol=2e-5, atol=2e-6):
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        np.testing.assert_allclose(np.asarray(a), b.detach().numpy(), rtol=rtol, atol=atol, err_msg=name)


OPTIMIZERS = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    ("Adam", {"lr": 0.01}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.5}),
    ("Adagrad", {"lr": 0.1}),
    ("Adadelta", {"lr": 1.0}),
    ("Adamax", {"lr": 0.01}),
    ("NAdam", {"lr": 0.01}),
]


@pytest.mark.parametrize("name,kwargs", OPTIMIZERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OPTIMIZERS)])
def test_the_five_steps_train_as_torch(name, kwargs):
    ours, theirs = pair(mlp)
    a = loop(gn, ours, getattr(gn.optim, name)(ours.parameters(), **kwargs))
    b = loop(torch, theirs, getattr(torch.optim, name)(theirs.parameters(), **kwargs))
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    same_state(ours, theirs)
    for p, q in zip(ours.parameters(), theirs.parameters()):  # the gradient the last step used
        np.testing.assert_allclose(np.asarray(p.grad), q.grad.numpy(), rtol=2e-5, atol=1e-6)


def test_gradients_accumulate_over_two_backward_calls():
    ours, theirs = pair(mlp)
    for lib, model in ((gn, ours), (torch, theirs)):
        x, y = lib.tensor(X), lib.tensor(LABELS)
        for half in (slice(0, 8), slice(8, 16)):
            lib.nn.CrossEntropyLoss()(model(x[half]), y[half]).backward()
    for p, q in zip(ours.parameters(), theirs.parameters()):
        np.testing.assert_allclose(np.asarray(p.grad), q.grad.numpy(), rtol=2e-5, atol=1e-6)


def test_a_custom_loss_with_an_l2_penalty_and_two_terms():
    ours, theirs = pair(mlp)
    results = []
    for lib, model in ((gn, ours), (torch, theirs)):
        x, target = lib.tensor(X), lib.tensor(X[:, :3] * 2)
        out = model(x)
        penalty = sum((p ** 2).sum() for p in model.parameters())
        loss = ((out - target) ** 2).mean() + lib.nn.functional.l1_loss(out, target) + 1e-3 * penalty
        loss.backward()
        results.append((loss.item(), [np.asarray(p.grad) if lib is gn else p.grad.numpy() for p in model.parameters()]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_a_frozen_layer_gets_no_gradient_and_does_not_move():
    ours, theirs = pair(mlp)
    for model in (ours, theirs):
        model[0].requires_grad_(False)
    a = loop(gn, ours, gn.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9))
    b = loop(torch, theirs, torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9))
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    assert ours[0].weight.grad is None and theirs[0].weight.grad is None
    same_state(ours, theirs)


def test_freezing_a_layer_mid_training_compiles_anew():
    ours, theirs = pair(mlp)
    results = []
    for lib, model in ((gn, ours), (torch, theirs)):
        opt = lib.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        losses = loop(lib, model, opt, steps=3)
        model[2].requires_grad_(False)
        model[2].weight.grad = model[2].bias.grad = None
        losses += loop(lib, model, opt, steps=3)
        results.append(losses)
    np.testing.assert_allclose(results[0], results[1], rtol=2e-5, atol=1e-6)
    same_state(ours, theirs)


def test_a_second_forward_updates_batchnorm_twice_as_torch():
    ours, theirs = pair(lambda m: m.Sequential(m.Linear(5, 4), m.BatchNorm1d(4), m.ReLU(), m.Linear(4, 3)))
    for lib, model in ((gn, ours), (torch, theirs)):
        opt = lib.optim.SGD(model.parameters(), lr=0.1)
        x, y = lib.tensor(X), lib.tensor(LABELS)
        for _ in range(2):
            out = model(x)
            loss = lib.nn.CrossEntropyLoss()(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            model(x)  # the book's second forward, for accuracy
    same_state(ours, theirs)


def test_evaluation_under_no_grad_gives_plain_tensors():
    ours, theirs = pair(mlp)
    with gn.no_grad(), torch.no_grad():
        a, b = ours(gn.tensor(X)), theirs(torch.tensor(X))
    assert not a.requires_grad and repr(a) == repr(b)


def test_backward_errors_are_torchs():
    model = nn.Linear(5, 3)
    out = model(gn.tensor(X))
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs"):
        out.backward()
    loss = out.sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        gn.tensor([1.0, 2.0]).sum().backward()
    with gn.no_grad():
        with pytest.raises(RuntimeError, match="does not require grad"):
            model(gn.tensor(X)).sum().backward()


def test_backward_with_a_gradient_argument():
    ours, theirs = pair(lambda m: m.Linear(5, 3))
    weights = RNG.standard_normal((16, 3)).astype(np.float32)
    ours(gn.tensor(X)).backward(gn.tensor(weights))
    theirs(torch.tensor(X)).backward(torch.tensor(weights))
    np.testing.assert_allclose(np.asarray(ours.weight.grad), theirs.weight.grad.numpy(), rtol=2e-5, atol=1e-6)


def test_a_repeated_loop_compiles_once():
    """From the second iteration on, the recorded work is found compiled (cached by structure)."""
    from graphnn import lazy

    model = mlp(nn)
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    loop(gn, model, opt, steps=1)
    compiled = len(lazy._runs)
    loop(gn, model, opt, steps=3)
    assert len(lazy._runs) == compiled


def test_the_books_loop_with_an_optimizer_over_a_leaf_tensor():
    """The same chapter, with ``optimizer = optim.SGD([params], lr=learning_rate)``."""
    results = []
    for lib in (gn, torch):
        t_c = lib.tensor([0.5, 14.0, 15.0, 28.0, 11.0, 8.0, 3.0, -4.0, 6.0, 13.0, 21.0])
        t_un = 0.1 * lib.tensor([35.7, 55.9, 58.2, 81.9, 56.3, 48.9, 33.9, 21.8, 48.4, 60.4, 68.4])
        params = lib.tensor([1.0, 0.0], requires_grad=True)
        optimizer = lib.optim.Adam([params], lr=1e-1)
        for epoch in range(1, 201):
            w, b = params
            loss = ((w * t_un + b - t_c) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        results.append((params.detach().numpy().copy(), loss.item()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-4)
    assert results[0][1] == pytest.approx(results[1][1], rel=1e-4)


def test_clipping_between_backward_and_step():
    ours, theirs = pair(mlp)
    for lib, model in ((gn, ours), (torch, theirs)):
        opt = lib.optim.SGD(model.parameters(), lr=0.5)
        for _ in range(2):
            loss = lib.nn.CrossEntropyLoss()(model(lib.tensor(X)), lib.tensor(LABELS)) * 10
            opt.zero_grad()
            loss.backward()
            lib.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.5)
            lib.nn.utils.clip_grad_value_(model.parameters(), 0.05)
            opt.step()
    same_state(ours, theirs, rtol=1e-4, atol=1e-5)


def test_the_loop_on_every_backend(backend, monkeypatch):
    """The same loop with GRAPHNN_BACKEND naming each backend (Triton in its interpreter here)."""
    monkeypatch.setenv("GRAPHNN_BACKEND", backend)
    ours, theirs = pair(lambda m: m.Sequential(m.Linear(5, 4), m.BatchNorm1d(4), m.Tanh(), m.Linear(4, 3)))
    a = loop(gn, ours, gn.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9), steps=3)
    b = loop(torch, theirs, torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9), steps=3)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    same_state(ours, theirs, rtol=1e-4, atol=1e-5)


def test_an_iteration_after_the_first_is_one_native_call(monkeypatch):
    """forward, loss, backward, the update and ``loss.item()``: one call per iteration once the
    pattern is known; a gradient read between backward and step runs the backward on its own
    (the step then updates from ``.grad`` as torch's does)."""
    from graphnn import executable

    calls = []
    original = executable.CompiledExecutable.run
    monkeypatch.setattr(executable.CompiledExecutable, "run",
                        lambda self, *a, **k: calls.append(a[0]) or original(self, *a, **k))
    monkeypatch.setenv("GRAPHNN_BACKEND", "c")
    model = mlp(nn)
    opt = gn.optim.Adam(model.parameters(), lr=0.01)
    loop(gn, model, opt, steps=2)
    calls.clear()
    loop(gn, model, opt, steps=3)
    assert calls == ["step"] * 3
    x, y = gn.tensor(X[:8]), gn.tensor(LABELS[:8])
    for _ in range(2):  # the first time, a backward alone runs in the numpy reference (no compile)
        calls.clear()
        loss = nn.CrossEntropyLoss()(model(x), y)
        opt.zero_grad()
        loss.backward()
        norm = sum((p.grad ** 2).sum() for p in model.parameters())  # a gradient read before the step
        opt.step()
    assert norm.item() > 0 and calls == ["recorded"]


def test_a_forward_that_makes_tensors_of_its_own_runs_each_iteration():
    """A module whose forward creates tensors (a constant, fresh noise) is traced on every call,
    never taken over from the previous iteration with the old values."""
    def build(m):
        lib = torch if m is torch.nn else gn

        class Noisy(m.Module):
            def __init__(self):
                super().__init__()
                self.fc = m.Linear(5, 3)

            def forward(self, x):
                return self.fc(x) * lib.ones(3) * 2 + self.noise

        return Noisy()

    ours, theirs = pair(build)
    for lib, model in ((gn, ours), (torch, theirs)):
        opt = lib.optim.SGD(model.parameters(), lr=0.1)
        model.noise = lib.zeros(3)
        for k in range(3):
            model.noise.fill_(float(k))  # new values in place (no module change), as fresh noise would be
            loss = model(lib.tensor(X)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    same_state(ours, theirs)


def test_values_keep_what_they_were_when_a_leaf_changes_in_place():
    """A deferred backward and recorded values are computed before a leaf they read is written."""
    for lib in (gn, torch):
        w = lib.tensor([1.0, 2.0], requires_grad=True)
        out = w * 3
        loss = (w * w).sum()
        loss.backward()
        with lib.no_grad():
            w.mul_(0.5)
        assert out.detach().tolist() == [3.0, 6.0] and w.grad.tolist() == [2.0, 4.0], lib.__name__


def test_gradients_through_tensors_of_two_backward_passes():
    """A GAN-like pattern: the generator's output detached for one backward, used whole for the
    next; and a loss read before an L2 term over the parameters is added."""
    results = []
    for lib in (gn, torch):
        w, v = lib.tensor([1.0, 2.0], requires_grad=True), lib.tensor([3.0, 4.0], requires_grad=True)
        fake = w * 2
        (fake.detach() * v).sum().backward()
        (fake * v).sum().backward()
        out = w * 3
        out.sum().item()
        ((out + w * w).sum()).backward()
        results.append((w.grad.tolist(), v.grad.tolist()))
    assert results[0] == results[1]


def test_a_module_called_with_tensor_keywords_twice():
    def build(m):
        class Scaled(m.Module):
            def __init__(self):
                super().__init__()
                self.fc = m.Linear(5, 3)

            def forward(self, x, scale=None):
                return self.fc(x) * scale

        return Scaled()

    ours, theirs = pair(build)
    for lib, model in ((gn, ours), (torch, theirs)):
        opt = lib.optim.SGD(model.parameters(), lr=0.1)
        for k in range(3):
            loss = model(lib.tensor(X), scale=lib.full((3,), float(k + 1))).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    same_state(ours, theirs)


def test_every_batch_size_after_two_runs_one_program(monkeypatch):
    """The last, smaller batch of an epoch and any other batch size: after two sizes were seen,
    one program compiled for every batch (graphnn.generalize) serves them all, with torch's
    numbers, BatchNorm's 1/(B-1) and a loss term divided by ``x.shape[0]`` included."""
    from graphnn import lazy

    monkeypatch.setattr(lazy, "_runs", {})
    monkeypatch.setattr(lazy, "_families", {})
    monkeypatch.setattr(lazy, "_first", {})
    monkeypatch.setattr(lazy, "fallbacks", [])
    ours, theirs = pair(lambda m: m.Sequential(m.Linear(5, 6), m.BatchNorm1d(6), m.ReLU(), m.Linear(6, 3)))
    data = np.random.default_rng(1).standard_normal((40, 5)).astype(np.float32)
    labels = np.random.default_rng(2).integers(0, 3, 40)
    results = []
    for lib, model in ((gn, ours), (torch, theirs)):
        opt = lib.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        losses = []
        for sizes in ([8, 8, 8, 8, 5, 3], [8, 8, 8, 8, 5, 3], [7, 6, 8, 2]):
            start = 0
            for s in sizes:
                x, y = lib.tensor(data[start:start + s]), lib.tensor(labels[start:start + s])
                start += s
                loss = lib.nn.functional.cross_entropy(model(x), y) + model[0].weight.pow(2).sum() / x.shape[0]
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
        results.append(losses)
    np.testing.assert_allclose(results[0], results[1], rtol=1e-4, atol=1e-5)
    same_state(ours, theirs, rtol=1e-4, atol=1e-5)
    assert lazy.fallbacks == []
    # batch 8 by its own shapes (the first step, which starts the momentum, and the others),
    # then one program for every other size
    others = {id(run.executable) for run, batch in lazy._runs.values() if batch != 1}
    assert len(others) == 1 and len(lazy._families) == 1
    assert sorted(batch for _, batch in lazy._runs.values() if batch != 1) == [2, 3, 5, 6, 7]


def test_a_backward_read_before_the_step_generalizes_too(monkeypatch):
    """Clipping reads the gradients between backward and step: the backward runs alone, and its
    program, too, serves every batch size after two."""
    from graphnn import lazy

    monkeypatch.setattr(lazy, "_families", {})
    monkeypatch.setattr(lazy, "fallbacks", [])
    ours, theirs = pair(mlp)
    results = []
    for lib, model in ((gn, ours), (torch, theirs)):
        opt = lib.optim.SGD(model.parameters(), lr=0.5)
        losses = []
        for s in (4, 4, 3, 4, 3, 2, 5):
            loss = lib.nn.CrossEntropyLoss()(model(lib.tensor(X[:s])), lib.tensor(LABELS[:s]))
            opt.zero_grad()
            loss.backward()
            lib.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.5)
            opt.step()
            losses.append(loss.item())
        results.append(losses)
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-6)
    same_state(ours, theirs, rtol=1e-4, atol=1e-5)
    assert len(lazy._families) >= 1 and lazy.fallbacks == []


def test_generalize_fits_numbers_of_the_batch_and_keeps_the_rest_apart():
    import sympy

    from graphnn import generalize
    from graphnn.ir import B

    def sig(n, hidden=4, const=None):
        const = sympy.Rational(1, 10 * n) if const is None else const
        return [("input", "f32", (n, 3), "x0", False), ("param", "f32", (hidden, 3), "p0", True),
                ("matmul", "f32", (n, hidden), (0, 1), ()),
                ("pointwise", "f32", (n, hidden), (2,), (("name", "mul"), ("expr", const * sympy.Symbol("x0"))))]

    entries = generalize.generalize(sig(8), sig(5))
    assert entries[0][2] == (B, 3) and entries[2][2] == (B, 4) and entries[1] == sig(8)[1]
    assert entries[3][4][1][1] == sympy.Symbol("x0") / (10 * B)
    assert generalize.generalize(sig(8), sig(3)) == entries  # a third size: the same program
    with pytest.raises(generalize.Apart):
        generalize.generalize(sig(8), sig(5, hidden=6))  # a parameter changed shape
    with pytest.raises(generalize.Apart):
        generalize.generalize(sig(8), sig(8, const=sympy.Rational(1, 3)))  # no data input changed
    with pytest.raises(generalize.Apart):  # a constant no integer line in the batch gives
        generalize.generalize(sig(8), sig(5, const=sympy.Rational(2, 7)))
    apart = sig(5)
    apart[0] = ("input", "f32", (5, 4), "x0", False)  # the input changed beyond its batch
    with pytest.raises(generalize.Apart):
        generalize.generalize(sig(8), apart)


SEQUENCES = RNG.standard_normal((4, 5, 5)).astype(np.float32)


def sliced_model(m):
    """Scores over the positions of a sequence with the future masked out (parts, masks, joins)."""
    class Scores(m.Module):
        def __init__(self):
            super().__init__()
            self.l = m.Linear(5, 6)

        def forward(self, x):
            h = self.l(x)
            q, k = h.split(3, dim=2)
            scores = q @ k.transpose(1, 2)
            return scores.masked_fill(scores.triu(1) != 0, float("-inf")).softmax(-1)

    return Scores()


def test_a_training_loop_that_slices_trains_as_torch():
    """The five steps of the books on a model that slices, cats and masks in its forward."""
    ours, theirs = pair(sliced_model)
    losses = {}
    for L, model in ((gn, ours), (torch, theirs)):
        optimizer = L.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        losses[L.__name__] = []
        for step in range(4):
            x = L.tensor(SEQUENCES[step % 3:step % 3 + 2])
            out = model(x)
            loss = (out[:, -1] - out[:, 0]).pow(2).mean() + L.cat([out[:, :1], out[:, 1:]], 1).std()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses[L.__name__].append(loss.item())
    np.testing.assert_allclose(losses["graphnn"], losses["torch"], rtol=1e-5, atol=1e-6)
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        np.testing.assert_allclose(np.asarray(a), b.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


def test_a_forward_that_makes_constants_is_taken_over_and_one_that_draws_runs_again():
    """``torch.arange(T)`` inside forward (a position embedding's index) is the same on every call:
    the call is taken over from the previous iteration without running the forward; a forward
    that draws random numbers runs every time."""
    calls = {"arange": 0, "randn": 0}

    class Positions(nn.Module):
        def __init__(self, draw):
            super().__init__()
            self.fc, self.draw = nn.Linear(5, 3), draw

        def forward(self, x):
            calls["randn" if self.draw else "arange"] += 1
            extra = gn.randn(3) * 0 if self.draw else gn.arange(3).float()
            return self.fc(x) + extra

    for draw in (False, True):
        model = Positions(draw)
        opt = gn.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(4):
            loss = model(gn.tensor(X)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert calls == {"arange": 1, "randn": 4}


def test_an_input_written_in_place_before_the_backward_keeps_its_recorded_value():
    """A batch is read without a copy; written in place (through the tensor or a view of it)
    before the deferred backward runs, it is copied first, so the gradient is the one of the
    values the forward saw."""
    def gradients(write):
        model = mlp(nn)
        model.load_state_dict(reference)
        x = gn.tensor(X.copy())
        loss = nn.CrossEntropyLoss()(model(x), gn.tensor(LABELS))
        tape = loss._tape
        name = next(n for n, a in tape.input_values.items() if a.shape == X.shape)
        assert tape.input_values[name] is x.array  # no copy while nothing writes it
        write(x)
        loss.backward()
        return [p.grad.numpy().copy() for p in model.parameters()]

    reference = {k: v.detach().numpy() for k, v in mlp(torch.nn).state_dict().items()}
    expected = gradients(lambda x: None)
    for write in (lambda x: x.add_(1.0), lambda x: x[0].fill_(5.0), lambda x: x.copy_(gn.zeros(X.shape))):
        for got, want in zip(gradients(write), expected):
            np.testing.assert_array_equal(got, want)


def test_grad_mode_and_recording_are_per_thread():
    """As in torch, grad mode is the calling thread's: no_grad in one thread leaves another's
    on, and a thread that never set it starts enabled, recording into a tape of its own."""
    import threading

    seen = {}

    def worker():
        seen["enabled"] = gn.is_grad_enabled()
        w = gn.tensor([2.0], requires_grad=True)
        (w * w).sum().backward()
        seen["grad"] = w.grad.tolist()

    with gn.no_grad():
        assert not gn.is_grad_enabled()
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        assert not gn.is_grad_enabled()
    assert gn.is_grad_enabled()
    assert seen == {"enabled": True, "grad": [4.0]}
    assert seen["enabled"] == torch.is_grad_enabled()

"""Training parity with PyTorch: same initial weights, same data, same steps."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import nn, optim
from runtime import gpu
from tests.conftest import assert_state_close, copy_torch_weights


def tanh_nets(inputs: int, hidden: int, outputs: int):
    """Linear, Tanh, Linear in torch and in graphnn, with torch's initial weights in both."""
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Linear(inputs, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, outputs))
    model = nn.Sequential(nn.Linear(inputs, hidden), nn.Tanh(), nn.Linear(hidden, outputs))
    copy_torch_weights(model, ref)
    return ref, model


def torch_steps(model, loss_fn, opt, batches):
    losses = []
    for x, y in batches:
        opt.zero_grad()
        loss = loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_thermometer_tanh_net_200_steps(thermometer, backend):
    t_u, t_c = thermometer
    ref, model = tanh_nets(1, 13, 1)
    ref_losses = torch_steps(ref, torch.nn.MSELoss(), torch.optim.SGD(ref.parameters(), lr=1e-3, momentum=0.9),
                             [(t_u, t_c)] * 200)
    train = gn.compile(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=1e-3, momentum=0.9), backend=backend)
    losses = [train.step(t_u, t_c) for _ in range(200)]
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    assert losses[-1] < losses[0] / 2
    assert_state_close(model, ref)


def mlp(lib, batchnorm=True):
    layers = [lib.Linear(784, 300)]
    layers += [lib.BatchNorm1d(300)] if batchnorm else []
    layers += [lib.ReLU(), lib.Linear(300, 100)]
    layers += [lib.BatchNorm1d(100)] if batchnorm else []
    layers += [lib.ReLU(), lib.Linear(100, 10)]
    return lib.Sequential(*layers)


def test_mlp_batchnorm_cross_entropy_200_steps(backend):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((512, 784)).astype(np.float32)
    # labels from a random linear teacher: learnable, so training converges instead of memorising
    # noise (memorising random labels amplifies float32 rounding ~1e4x within 20 steps, for any
    # two float32 implementations; in float64 the gradients agree with torch to 1e-8)
    labels = np.argmax(data @ rng.standard_normal((784, 10)), 1)
    batches = [(data[k:k + 64], labels[k:k + 64]) for k in range(0, 512, 64)] * 25
    if backend == "triton":  # the interpreter takes seconds per step: the first 10 (the GPU runs all 200)
        batches = batches[:200 if gpu.has_gpu() else 10]
    torch.manual_seed(0)
    ref = mlp(torch.nn)
    model = mlp(nn)
    copy_torch_weights(model, ref)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.01, momentum=0.9)
    ref_losses = torch_steps(ref, torch.nn.CrossEntropyLoss(), ref_opt, batches)
    train = gn.compile(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.01, momentum=0.9), backend=backend)
    losses = [train.step(x, y) for x, y in batches]
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    assert losses[-1] < (0.1 if len(batches) == 200 else 0.9) * losses[0]
    assert_state_close(model, ref, rtol=1e-4, atol=1e-6, kink_fraction=0.01)
    assert int(model[1].num_batches_tracked) == len(batches)
    # eval mode uses the running statistics: same state in both, same outputs (a comparison that
    # does not depend on how 200 steps of rounding moved each weight)
    ref.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    ref.eval()
    model.eval()
    expected = ref(torch.from_numpy(data[:100])).detach().numpy()
    got = gn.compile(model, backend=backend)(data[:100])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


ACTIVATIONS = [
    ("ReLU", (), {}), ("Tanh", (), {}), ("Sigmoid", (), {}), ("Hardtanh", (), {}), ("Hardtanh", (-0.5, 0.25), {}),
    ("LeakyReLU", (), {}), ("LeakyReLU", (0.2,), {}), ("ELU", (), {}), ("ELU", (0.5,), {}), ("GELU", (), {}),
    ("GELU", (), {"approximate": "tanh"}), ("SiLU", (), {}), ("Softplus", (), {}), ("Softplus", (2.0, 1.0), {}),
    ("Softmax", (1,), {}), ("LogSoftmax", (1,), {}), ("Identity", (), {}),
]


@pytest.mark.parametrize("name,args,kwargs", ACTIVATIONS, ids=[f"{a[0]}{a[1]}{a[2]}" for a in ACTIVATIONS])
def test_activation_gradients(name, args, kwargs, backend):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((7, 5)) * 2).astype(np.float32)
    x[0, :3] = [0.0, -0.5, 0.25]  # kinks: relu'(0), hardtanh at its bounds, leaky and elu at zero
    y = rng.standard_normal((7, 3)).astype(np.float32)
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Linear(5, 5), getattr(torch.nn, name)(*args, **kwargs), torch.nn.Linear(5, 3))
    with torch.no_grad():
        ref[0].weight.copy_(torch.eye(5))  # the activation sees x itself, kinks included
        ref[0].bias.zero_()
    model = nn.Sequential(nn.Linear(5, 5), getattr(nn, name)(*args, **kwargs), nn.Linear(5, 3))
    copy_torch_weights(model, ref)
    assert repr(model) == repr(ref)
    loss = torch.nn.MSELoss()(ref(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    ours = gn.compile(model, nn.MSELoss(), backend=backend).grad(x, y)
    np.testing.assert_allclose(ours, loss.item(), rtol=1e-5)
    for (pname, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=pname)
    np.testing.assert_allclose(gn.compile(model, backend=backend)(x), ref(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def _loss_case(name, reduction, rng):
    logits = rng.standard_normal((6, 4)).astype(np.float32)
    logits[0, 0] = 0.0  # BCE and L1 at a kink
    if name in ("CrossEntropyLoss", "NLLLoss"):
        target = rng.integers(0, 4, 6)
        target[2] = -100  # ignore_index
    elif name == "BCEWithLogitsLoss":
        target = rng.random((6, 4)).astype(np.float32)
    else:
        target = rng.standard_normal((6, 4)).astype(np.float32)
        target[0, 0] = 0.0
    return logits, target


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", ["MSELoss", "L1Loss", "CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss"])
def test_loss_gradients(name, reduction, backend):
    rng = np.random.default_rng(2)
    x, target = _loss_case(name, reduction, rng)
    torch.manual_seed(0)
    head = [torch.nn.Linear(4, 4)] + ([torch.nn.LogSoftmax(1)] if name == "NLLLoss" else [])
    ref = torch.nn.Sequential(*head)
    model = nn.Sequential(*([nn.Linear(4, 4)] + ([nn.LogSoftmax(1)] if name == "NLLLoss" else [])))
    copy_torch_weights(model, ref)
    loss = getattr(torch.nn, name)(reduction=reduction)(ref(torch.from_numpy(x)), torch.from_numpy(target))
    loss.backward()
    ours = gn.compile(model, getattr(nn, name)(reduction=reduction), backend=backend).grad(x, target)
    np.testing.assert_allclose(ours, loss.item(), rtol=1e-5)
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_cross_entropy_with_class_probabilities(backend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    probs = rng.random((5, 3)).astype(np.float32)
    probs /= probs.sum(1, keepdims=True)
    torch.manual_seed(0)
    ref = torch.nn.Linear(3, 3)
    model = nn.Linear(3, 3)
    copy_torch_weights(model, ref)
    loss = torch.nn.CrossEntropyLoss()(ref(torch.from_numpy(x)), torch.from_numpy(probs))
    loss.backward()
    np.testing.assert_allclose(gn.compile(model, nn.CrossEntropyLoss(), backend=backend).grad(x, probs), loss.item(), rtol=1e-5)
    np.testing.assert_allclose(model.weight.grad, ref.weight.grad.numpy(), rtol=1e-4, atol=1e-6)


SGD_CASES = [
    dict(lr=0.05),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.05, weight_decay=0.01),
    dict(lr=0.05, momentum=0.8, weight_decay=0.01, nesterov=True),
    dict(lr=0.05, momentum=0.5, maximize=True),
]


@pytest.mark.parametrize("options", SGD_CASES, ids=[str(c) for c in SGD_CASES])
@pytest.mark.parametrize("mode", ["step", "grad+step"])
def test_sgd_variants_and_lr_changes(options, mode, backend):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 6)).astype(np.float32)
    y = rng.standard_normal((16, 2)).astype(np.float32)
    ref, model = tanh_nets(6, 8, 2)
    ref_opt = torch.optim.SGD(ref.parameters(), **options)
    opt = optim.SGD(model.parameters(), **options)
    train = gn.compile(model, nn.MSELoss(), opt, backend=backend)
    for step in range(30):
        if step == 10:  # a learning-rate change takes effect at the next step, without recompiling
            for group in (*ref_opt.param_groups, *opt.param_groups):
                group["lr"] = 0.01
        ref_opt.zero_grad()
        loss = torch.nn.MSELoss()(ref(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        ref_opt.step()
        if mode == "step":
            ours = train.step(x, y)
        else:
            opt.zero_grad()
            ours = train.grad(x, y)
            opt.step()
        np.testing.assert_allclose(ours, loss.item(), rtol=1e-5)
    assert len(train.graphs) == 1
    assert_state_close(model, ref, rtol=1e-5)
    ref_state, our_state = ref_opt.state_dict(), opt.state_dict()
    assert ref_state["state"].keys() == our_state["state"].keys()
    for k, s in ref_state["state"].items():
        np.testing.assert_allclose(our_state["state"][k]["momentum_buffer"], s["momentum_buffer"].numpy(), rtol=1e-5, atol=1e-7)


def test_ordered_dict_model_from_the_issue(thermometer, backend):
    t_u, t_c = thermometer
    gn.manual_seed(0)
    seq_model = nn.Sequential(OrderedDict([
        ("hidden_linear", nn.Linear(1, 8)), ("hidden_activation", nn.Tanh()), ("output_linear", nn.Linear(8, 1)),
    ]))
    ref = torch.nn.Sequential(OrderedDict([
        ("hidden_linear", torch.nn.Linear(1, 8)), ("hidden_activation", torch.nn.Tanh()),
        ("output_linear", torch.nn.Linear(8, 1)),
    ]))
    copy_torch_weights(seq_model, ref)
    opt = optim.SGD(seq_model.parameters(), lr=1e-3, momentum=0.9)
    train = gn.compile(seq_model, nn.MSELoss(), opt, backend=backend)
    predict = gn.compile(seq_model, backend=backend)
    before = predict(t_u)
    ref_losses = torch_steps(ref, torch.nn.MSELoss(), torch.optim.SGD(ref.parameters(), lr=1e-3, momentum=0.9),
                             [(t_u, t_c)] * 50)
    losses = [train.step(t_u, t_c) for _ in range(50)]
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    after = predict(t_u)  # compiled before training, sees the trained weights
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, ref(torch.from_numpy(t_u)).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert isinstance(losses[0], float)


def test_momentum_state_from_a_partial_step_matches_torch(backend):
    """A step over part of the model first (only its parameters get momentum buffers), then
    steps over the whole model: each parameter's first update uses its own gradient, as in torch."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 3)).astype(np.float32)
    y = rng.standard_normal((8, 2)).astype(np.float32)
    ref, model = tanh_nets(3, 4, 2)
    options = dict(lr=0.1, momentum=0.9, dampening=0.5)
    ref_opt, opt = torch.optim.SGD(ref.parameters(), **options), optim.SGD(model.parameters(), **options)
    # first: train only the head (the first layer gets no gradient, so no momentum buffer)
    ref_opt.zero_grad()
    torch.nn.MSELoss()(ref[2](torch.from_numpy(x[:, :2]) @ torch.ones(2, 4)), torch.from_numpy(y)).backward()
    ref_opt.step()
    head = gn.compile(model[2], nn.MSELoss(), opt, backend=backend)
    head.step(x[:, :2] @ np.ones((2, 4), np.float32), y)
    full = gn.compile(model, nn.MSELoss(), opt, backend=backend)
    for _ in range(3):
        ref_opt.zero_grad()
        loss = torch.nn.MSELoss()(ref(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        ref_opt.step()
        np.testing.assert_allclose(full.step(x, y), loss.item(), rtol=1e-5)
    assert_state_close(model, ref, rtol=1e-5)

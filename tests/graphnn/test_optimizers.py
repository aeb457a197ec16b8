"""Every optimizer against torch.optim: same weights, same data, same steps, on every path.

One table drives the tests: each row is an optimizer name and keyword arguments, run with torch
and graphnn side by side for 60 steps with the learning rate halved at step 30, on two parameter
groups (the second with its own lr). The compiled step, ``grad()`` + ``opt.step()`` (the eager
update) and each backend must end where torch ends, with torch's state_dict layout; state dicts
move both ways between torch and graphnn and continue exactly; bad hyperparameters raise what
torch raises. Adding an optimizer adds rows here.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import nn, optim
from tests.conftest import copy_torch_weights

CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("SGD", dict(lr=0.002, momentum=0.9, nesterov=True, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, amsgrad=True)),
    ("Adam", dict(lr=0.01, maximize=True, betas=(0.6, 0.9))),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.3, amsgrad=True, betas=(0.6, 0.9))),
    # -- more optimizers' rows below --
    ("Adamax", dict(lr=0.01)),
    ("Adamax", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adamax", dict(lr=0.005, maximize=True, weight_decay=0.05)),
    ("NAdam", dict(lr=0.01)),
    ("NAdam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, momentum_decay=0.01)),
    ("NAdam", dict(lr=0.01, weight_decay=0.3, decoupled_weight_decay=True, betas=(0.6, 0.9))),
    ("NAdam", dict(lr=0.005, maximize=True, momentum_decay=0.0)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.005, alpha=0.9, eps=1e-6, momentum=0.9, centered=True, weight_decay=0.01)),
    ("RMSprop", dict(lr=0.001, momentum=0.5, maximize=True)),
    ("RMSprop", dict(lr=0.005, centered=True)),
    ("RMSprop", dict(lr=0.002, maximize=True, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.05, initial_accumulator_value=0.1, eps=1e-8)),
    ("Adagrad", dict(lr=0.02, maximize=True, initial_accumulator_value=0.5)),
    ("Adadelta", dict(lr=1.0)),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.1)),
    ("Adadelta", dict(lr=0.5, maximize=True)),
]
"""(optimizer name, keyword arguments): each runs against torch.optim's class of that name."""

BAD = [
    ("SGD", dict(lr=-1.0)),
    ("SGD", dict(momentum=-0.5)),
    ("SGD", dict(nesterov=True)),
    ("Adam", dict(lr=-1e-3)),
    ("Adam", dict(betas=(1.0, 0.999))),
    ("Adam", dict(betas=(0.9, -0.1))),
    ("Adam", dict(eps=-1e-8)),
    ("Adam", dict(weight_decay=-0.1)),
    ("AdamW", dict(betas=(0.9, 1.5))),
    # -- more optimizers' bad arguments below --
    ("Adamax", dict(lr=-0.01)),
    ("Adamax", dict(eps=-1e-8)),
    ("Adamax", dict(betas=(1.0, 0.999))),
    ("Adamax", dict(betas=(0.9, -0.5))),
    ("Adamax", dict(weight_decay=-0.1)),
    ("NAdam", dict(lr=-0.01)),
    ("NAdam", dict(eps=-1e-8)),
    ("NAdam", dict(betas=(-0.1, 0.999))),
    ("NAdam", dict(betas=(0.9, 1.0))),
    ("NAdam", dict(weight_decay=-0.1)),
    ("NAdam", dict(momentum_decay=-4e-3)),
    ("RMSprop", dict(lr=-0.01)),
    ("RMSprop", dict(alpha=-0.1)),
    ("RMSprop", dict(eps=-1e-8)),
    ("RMSprop", dict(momentum=-0.9)),
    ("RMSprop", dict(weight_decay=-0.1)),
    ("Adagrad", dict(lr=-0.01)),
    ("Adagrad", dict(lr_decay=-0.1)),
    ("Adagrad", dict(weight_decay=-0.1)),
    ("Adagrad", dict(initial_accumulator_value=-1.0)),
    ("Adagrad", dict(eps=-1e-10)),
    ("Adadelta", dict(lr=-1.0)),
    ("Adadelta", dict(rho=1.5)),
    ("Adadelta", dict(rho=-0.1)),
    ("Adadelta", dict(eps=-1e-6)),
    ("Adadelta", dict(weight_decay=-0.1)),
]
"""Hyperparameters torch refuses with ValueError; graphnn must refuse them the same way."""

STEPS = 60
RNG = np.random.default_rng(7)
X = RNG.standard_normal((24, 5)).astype(np.float32)
Y = RNG.standard_normal((24, 3)).astype(np.float32)


def _case_id(case) -> str:
    name, kwargs = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in kwargs.items())


def _nets():
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    copy_torch_weights(model, ref)
    return ref, model


def _groups(model, lr_scale=0.5):
    """Two parameter groups: the first layer at the default lr, the last at half of it."""
    return [{"params": list(model[0].parameters())},
            {"params": list(model[2].parameters()), "lr_scale": lr_scale}]


def _make(lib, name, model, kwargs):
    groups = _groups(model)
    for group in groups:
        if group.pop("lr_scale", None):
            group["lr"] = kwargs.get("lr", 1e-3) * 0.5
    return getattr(lib, name)(groups, **kwargs)


def _torch_step(ref, ref_opt):
    ref_opt.zero_grad()
    loss = torch.nn.MSELoss()(ref(torch.from_numpy(X)), torch.from_numpy(Y))
    loss.backward()
    ref_opt.step()
    return loss.item()


def _halve_lr(*optimizers):
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] *= 0.5


def _assert_same_state(model, opt, ref, ref_opt, rtol):
    for key, value in ref.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[key], value.detach().numpy(), rtol=rtol, atol=1e-6, err_msg=key)
    ours, theirs = opt.state_dict(), ref_opt.state_dict()
    assert [sorted(g) for g in ours["param_groups"]] == [sorted(g) for g in theirs["param_groups"]]
    assert ours["state"].keys() == theirs["state"].keys()
    for index, entries in theirs["state"].items():
        assert sorted(ours["state"][index]) == sorted(entries), index
        for slot, value in entries.items():
            expected = np.asarray(value.detach().numpy() if torch.is_tensor(value) else value, np.float64)
            # elements near zero are compared at the slot's own scale: a momentum buffer sums
            # steps of size ~1 whose sum can cancel, amplifying last-digit gradient differences
            scale = float(np.abs(expected).max()) if expected.size else 0.0
            np.testing.assert_allclose(np.asarray(ours["state"][index][slot], np.float64), expected, rtol=rtol,
                                       atol=max(1e-7, rtol * scale), err_msg=f"state[{index}][{slot}]")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("path", ["numpy", "c", "c-eager"])
def test_optimizer_matches_torch(case, path):
    """60 steps, lr halved at 30, two groups: the compiled step on numpy and C, and grad() +
    opt.step() (the eager update) on C."""
    name, kwargs = case
    ref, model = _nets()
    ref_opt, opt = _make(torch.optim, name, ref, kwargs), _make(optim, name, model, kwargs)
    train = gn.compile(model, nn.MSELoss(), opt, backend=path.split("-")[0])
    for k in range(STEPS):
        if k == STEPS // 2:
            _halve_lr(ref_opt, opt)
        expected = _torch_step(ref, ref_opt)
        if path.endswith("eager"):
            opt.zero_grad()
            loss = train.grad(X, Y)
            opt.step()
        else:
            loss = train.step(X, Y)
        np.testing.assert_allclose(loss, expected, rtol=1e-4, err_msg=f"step {k}")
    _assert_same_state(model, opt, ref, ref_opt, rtol=1e-4)


@pytest.mark.parametrize("case", [c for k, c in enumerate(CASES) if c[0] not in (n for n, _ in CASES[:k])],
                         ids=_case_id)
def test_optimizer_on_triton(case):
    """The Triton backend (its interpreter without a GPU): a few steps suffice for the update."""
    name, kwargs = case
    ref, model = _nets()
    ref_opt, opt = _make(torch.optim, name, ref, kwargs), _make(optim, name, model, kwargs)
    train = gn.compile(model, nn.MSELoss(), opt, backend="triton")
    for _ in range(3):
        np.testing.assert_allclose(train.step(X, Y), _torch_step(ref, ref_opt), rtol=1e-5)
    _assert_same_state(model, opt, ref, ref_opt, rtol=1e-5)


def _to_torch(state: dict) -> dict:
    return {"state": {i: {k: torch.tensor(np.asarray(v)) for k, v in s.items()} for i, s in state["state"].items()},
            "param_groups": state["param_groups"]}


def _to_numpy(state: dict) -> dict:
    return {"state": {i: {k: (v.detach().numpy().copy() if torch.is_tensor(v) else v) for k, v in s.items()}
                      for i, s in state["state"].items()},
            "param_groups": state["param_groups"]}


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_state_dicts_move_both_ways_with_torch(case):
    """10 steps in torch, its state loaded into graphnn, 10 more in both; and the same from
    graphnn into a fresh torch optimizer."""
    name, kwargs = case
    ref, model = _nets()
    ref_opt = _make(torch.optim, name, ref, kwargs)
    for _ in range(10):
        _torch_step(ref, ref_opt)
    copy_torch_weights(model, ref)
    opt = _make(optim, name, model, kwargs)
    opt.load_state_dict(_to_numpy(ref_opt.state_dict()))
    train = gn.compile(model, nn.MSELoss(), opt, backend="c")
    for _ in range(10):
        np.testing.assert_allclose(train.step(X, Y), _torch_step(ref, ref_opt), rtol=1e-5)
    _assert_same_state(model, opt, ref, ref_opt, rtol=1e-5)
    # and back: graphnn's state into a fresh torch optimizer over graphnn's weights
    fresh = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    fresh.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    fresh_opt = _make(torch.optim, name, fresh, kwargs)
    fresh_opt.load_state_dict(_to_torch(opt.state_dict()))
    for _ in range(5):
        np.testing.assert_allclose(train.step(X, Y), _torch_step(fresh, fresh_opt), rtol=1e-5)
    _assert_same_state(model, opt, fresh, fresh_opt, rtol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_a_loaded_state_without_a_parameter_starts_it_afresh(case):
    """After steps, a state dict that leaves out the first parameter: in torch that parameter's
    state starts again on the next step; graphnn's slots for it must not keep the old values."""
    name, kwargs = case
    ref, model = _nets()
    ref_opt, opt = _make(torch.optim, name, ref, kwargs), _make(optim, name, model, kwargs)
    train = gn.compile(model, nn.MSELoss(), opt, backend="c")
    for _ in range(5):
        _torch_step(ref, ref_opt)
        train.step(X, Y)
    partial = ref_opt.state_dict()
    partial["state"].pop(0, None)
    ref_opt.load_state_dict(partial)
    opt.load_state_dict(_to_numpy(partial))
    for _ in range(5):
        np.testing.assert_allclose(train.step(X, Y), _torch_step(ref, ref_opt), rtol=1e-5)
    _assert_same_state(model, opt, ref, ref_opt, rtol=1e-4)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_checkpoint_resume_is_bit_for_bit(case, tmp_path):
    """fit for 2 epochs with a checkpoint, resume to 4: the same parameters and state, bit for
    bit, as 4 epochs without a stop."""
    name, kwargs = case

    def run(epochs, **extra):
        _, model = _nets()
        opt = _make(optim, name, model, kwargs)
        train = gn.compile(model, nn.MSELoss(), opt, backend="c")
        train.fit(X, Y, batch_size=8, epochs=epochs, verbose=0, **extra)
        return model, opt

    straight, straight_opt = run(4)
    run(2, checkpoint=tmp_path / "run.ckpt")
    resumed, resumed_opt = run(4, resume=tmp_path / "run.ckpt")
    for key, value in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[key], value, err_msg=key)
    ours, theirs = resumed_opt.state_dict()["state"], straight_opt.state_dict()["state"]
    for index in theirs:
        for slot in theirs[index]:
            np.testing.assert_array_equal(ours[index][slot], theirs[index][slot], err_msg=f"{index}.{slot}")


@pytest.mark.parametrize("case", BAD, ids=_case_id)
def test_bad_hyperparameters_raise_as_in_torch(case):
    name, kwargs = case
    with pytest.raises(ValueError) as theirs:
        getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError) as ours:
        getattr(optim, name)([nn.Parameter(np.zeros(2, np.float32))], **kwargs)
    assert str(ours.value) == str(theirs.value)


def test_flags_recompile_and_scalars_do_not():
    """Changing lr or betas between steps reuses the compiled step; amsgrad rebuilds it."""
    _, model = _nets()
    opt = optim.Adam(model.parameters(), lr=0.01)
    train = gn.compile(model, nn.MSELoss(), opt, backend="c")
    train.step(X, Y)
    executable = next(iter(train.executables.values()))
    opt.param_groups[0]["lr"] = 0.001
    opt.param_groups[0]["betas"] = (0.5, 0.9)
    train.step(X, Y)
    assert next(iter(train.executables.values())) is executable
    opt.param_groups[0]["amsgrad"] = True
    train.step(X, Y)
    assert next(iter(train.executables.values())) is not executable

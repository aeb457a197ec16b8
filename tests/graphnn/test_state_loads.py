"""Loads of saved state are checked completely before anything changes (models, optimizers,
schedulers, fit's resume), fit refuses bad counts as torch's DataLoader does, and a non-finite
loss is stepped on as in a torch loop unless ``stop_on_nan`` asks fit to stop."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import nn, optim, random
from graphnn.checkpoint import StateDictError
from graphnn.optim.lr_scheduler import StepLR
from graphnn.training import NonFiniteLossError


def setup(backend: str = "numpy", seed: int = 0):
    gn.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    sgd = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = StepLR(sgd, step_size=1, gamma=0.5)
    return model, sgd, scheduler, gn.compile(model, nn.MSELoss(), sgd, backend=backend)


def data(n: int = 12):
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, 3)).astype(np.float32), rng.standard_normal((n, 2)).astype(np.float32)


def everything(model, sgd, scheduler, train) -> dict:
    """A deep copy of all the state a load could touch."""
    return copy.deepcopy({
        "model": {k: np.array(v) for k, v in model.state_dict().items()},
        "optimizer": sgd.state_dict(),
        "groups": [{k: v for k, v in g.items() if k != "params"} for g in sgd.param_groups],
        "scheduler": scheduler.state_dict(), "program": (train.seed, train.calls),
        "random": random.generator().bit_generator.state,
    })


def assert_same(before: dict, after: dict) -> None:
    assert list(before["model"]) == list(after["model"])
    for key, value in before["model"].items():
        np.testing.assert_array_equal(after["model"][key], value, err_msg=key)
    assert after["groups"] == before["groups"]
    assert after["optimizer"]["param_groups"] == before["optimizer"]["param_groups"]
    assert sorted(after["optimizer"]["state"]) == sorted(before["optimizer"]["state"])
    for k, s in before["optimizer"]["state"].items():
        np.testing.assert_array_equal(after["optimizer"]["state"][k]["momentum_buffer"], s["momentum_buffer"])
    assert after["scheduler"] == before["scheduler"]
    assert after["program"] == before["program"] and after["random"] == before["random"]


# -- loads check everything, then change it --------------------------------------------------------


def group(**values):
    return lambda s: s["param_groups"][0].update(values)


BAD_OPTIMIZER_STATES = {  # name -> (a change to a state dict, the pattern its error matches)
    "row buffer for a matrix": (lambda s: s["state"][0].update(momentum_buffer=np.ones((1, 3), np.float32)),
                                r"state\[0\]\['momentum_buffer'\]: expected shape \(4, 3\).*got \(1, 3\)"),
    "buffer of strings": (lambda s: s["state"][2].update(momentum_buffer=np.array(["a"] * 4)),
                          r"state\[2\]\['momentum_buffer'\].*dtype <U1"),
    "no state": (lambda s: s.pop("state"), r"missing \['state'\]"),
    "a second group": (lambda s: s["param_groups"].append(copy.deepcopy(s["param_groups"][0])), "expected 1, got 2"),
    "one parameter fewer": (lambda s: s["param_groups"][0]["params"].pop(), "expected 6, got 5"),
    "repeated id": (group(params=[0, 1, 2, 3, 4, 4]), r"distinct integer ids, got 4"),
    "state of no parameter": (lambda s: s["state"].update({9: {"momentum_buffer": None}}),
                              r"state\[9\]: no parameter group lists"),
    "unknown state entry": (lambda s: s["state"][1].update(exp_avg=np.zeros(4, np.float32)),
                            r"unexpected \['exp_avg'\]"),
    "lr as text": (group(lr="fast"), r"\['lr'\]: expected a real number, got 'fast'"),
    "negative lr": (group(lr=-1.0), "Invalid learning rate: -1.0"),
    "no momentum": (lambda s: s["param_groups"][0].pop("momentum"), r"missing \['momentum'\]"),
    "nesterov with dampening": (group(nesterov=True, dampening=0.5), "Nesterov momentum requires"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIMIZER_STATES))
def test_a_failed_optimizer_load_changes_nothing(case):
    model, sgd, scheduler, train = setup()
    x, y = data()
    train.step(x, y)
    change, pattern = BAD_OPTIMIZER_STATES[case]
    bad = sgd.state_dict()
    bad["param_groups"][0]["lr"] = 5.0  # loads that did not check first had set it before failing
    change(bad)
    before = everything(model, sgd, scheduler, train)
    with pytest.raises(StateDictError, match=pattern) as error:
        sgd.load_state_dict(bad)
    assert isinstance(error.value, ValueError)  # as torch's Optimizer.load_state_dict raises
    assert_same(before, everything(model, sgd, scheduler, train))
    # the next step is the one a twin that never saw the failed load takes
    twin, twin_sgd, _, twin_train = setup()
    twin_train.step(x, y)
    assert train.step(x, y) == twin_train.step(x, y)
    for key, value in twin.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[key], value, err_msg=key)


def test_the_optimizer_loads_torch_state_and_steps_as_torch():
    """Validation accepts what torch's SGD saves (extra group keys such as ``foreach``)."""
    x, y = data()
    model, sgd, _, train = setup()
    ref = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    ref_sgd = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.8, dampening=0.1, weight_decay=0.01)
    for _ in range(2):
        ref_sgd.zero_grad()
        torch.nn.functional.mse_loss(ref(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        ref_sgd.step()
    model.load_state_dict({k: v.detach().numpy().copy() for k, v in ref.state_dict().items()})
    saved = ref_sgd.state_dict()
    sgd.load_state_dict({"state": {k: {"momentum_buffer": s["momentum_buffer"].numpy().copy()}
                                   for k, s in saved["state"].items()}, "param_groups": saved["param_groups"]})
    assert sgd.param_groups[0]["lr"] == 0.05 and sgd.param_groups[0]["dampening"] == 0.1
    ref_sgd.zero_grad()
    expected = torch.nn.functional.mse_loss(ref(torch.from_numpy(x)), torch.from_numpy(y))
    expected.backward()
    ref_sgd.step()
    assert train.step(x, y) == pytest.approx(expected.item(), rel=1e-5)
    for key, value in ref.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[key], value.numpy(), rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("value, pattern", [
    (np.array(["a", "b", "c", "d"]), r"dtype mismatch for 2\.weight.*dtype <U1"),
    (np.array([None] * 4, dtype=object), r"dtype mismatch for 2\.weight.*dtype object"),
    (np.ones((2, 4), np.complex64), r"dtype mismatch for 2\.weight.*complex64"),
    ([[1.0, 2.0], [3.0]], r"cannot read 2\.weight as an array of shape \(2, 4\)"),
    (np.ones((1, 4), np.float32), r"size mismatch for 2\.weight: copying a param with shape \(1, 4\)"),
])
def test_a_failed_model_load_changes_nothing(value, pattern):
    """Keys before the bad one are not copied either (they were, before the load checked dtypes)."""
    model, sgd, scheduler, train = setup()
    state = {k: np.full_like(v, 7) for k, v in model.state_dict().items()}
    state["2.weight"] = value
    before = everything(model, sgd, scheduler, train)
    with pytest.raises(StateDictError, match=pattern) as error:
        model.load_state_dict(state)
    assert isinstance(error.value, RuntimeError)  # as torch's Module.load_state_dict raises
    assert_same(before, everything(model, sgd, scheduler, train))


def test_a_model_load_with_a_key_that_is_not_a_string_changes_nothing():
    model, sgd, scheduler, train = setup()
    state = {k: np.full_like(v, 7) for k, v in model.state_dict().items()}
    state[3] = np.zeros(2, np.float32)
    before = everything(model, sgd, scheduler, train)
    with pytest.raises(StateDictError, match=r"keys must be strings, got 3 \(int\)"):
        model.load_state_dict(state, strict=False)
    assert_same(before, everything(model, sgd, scheduler, train))


@pytest.mark.parametrize("change, pattern", [
    (lambda s: s.update(base_lrs=[0.1, 0.2]), r"'base_lrs': expected a list of 1 items, got 2 items"),
    (lambda s: s.update(last_epoch="3"), r"'last_epoch': expected an integer, got '3'"),
    (lambda s: s.pop("gamma"), r"missing \['gamma'\]"),
    (lambda s: s.update(warmup=3), r"unexpected \['warmup'\]"),
])
def test_a_failed_scheduler_load_changes_nothing(change, pattern):
    model, sgd, scheduler, train = setup()
    bad = scheduler.state_dict()
    bad.update(last_epoch=7, gamma=0.25)
    change(bad)
    before = everything(model, sgd, scheduler, train)
    with pytest.raises(StateDictError, match=pattern):
        scheduler.load_state_dict(bad)
    assert_same(before, everything(model, sgd, scheduler, train))
    good = scheduler.state_dict()
    good.update(last_epoch=7, gamma=0.25)
    scheduler.load_state_dict(good)
    assert (scheduler.last_epoch, scheduler.gamma) == (7, 0.25)


BAD_RESUMES = {  # name -> (a change to a fit checkpoint's content, the pattern its error matches)
    "model and epoch only": (lambda s: [s.pop(k) for k in list(s) if k not in ("model", "epoch")],
                             r"missing \['optimizer', 'scheduler'"),
    "momentum of a row": (lambda s: s["optimizer"]["state"][0].update(momentum_buffer=np.ones((1, 3))),
                          r"'optimizer' does not fit.*expected shape \(4, 3\).*got \(1, 3\)"),
    "lr as text": (lambda s: s["optimizer"]["param_groups"][0].update(lr="x"), r"'optimizer'.*'lr'"),
    "scheduler short": (lambda s: s["scheduler"].pop("base_lrs"), r"'scheduler'.*missing \['base_lrs'\]"),
    "weight too wide": (lambda s: s["model"].update({"2.weight": np.ones((2, 5), np.float32)}),
                        r"(?s)'model' does not fit.*size mismatch for 2\.weight.*\(2, 5\)"),
    "shuffle state": (lambda s: s["shuffle"].update(bit_generator="MT19937"), r"'shuffle'.*PCG64"),
    "history": (lambda s: s.update(history=[1.0]), r"'history'"),
    "epoch": (lambda s: s.update(epoch=-2), r"'epoch'.*non-negative"),
}


@pytest.mark.parametrize("case", list(BAD_RESUMES))
def test_a_resume_that_does_not_fit_raises_checkpoint_error_and_changes_nothing(tmp_path, case):
    x, y = data()
    _, _, saver_scheduler, saver = setup(seed=3)
    saver.fit(x, y, batch_size=4, epochs=1, verbose=0, scheduler=saver_scheduler, checkpoint=tmp_path / "run.ckpt")
    content = gn.load(tmp_path / "run.ckpt")
    change, pattern = BAD_RESUMES[case]
    change(content)
    gn.save(content, tmp_path / "bad.ckpt")
    model, sgd, scheduler, train = setup()
    train.step(x, y)
    before = everything(model, sgd, scheduler, train)
    with pytest.raises(gn.CheckpointError, match=pattern):
        train.fit(x, y, batch_size=4, epochs=2, verbose=0, scheduler=scheduler, resume=tmp_path / "bad.ckpt")
    assert_same(before, everything(model, sgd, scheduler, train))


# -- counts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, -5, True, 2.0, "4"])
def test_bad_batch_sizes_raise_value_error_as_torch_dataloader_does(bad):
    with pytest.raises(ValueError, match="batch_size"):  # the oracle
        torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(4, 3)), batch_size=bad)
    model, sgd, scheduler, train = setup()
    predictor = gn.compile(model, backend="numpy")
    x, y = data()
    before = everything(model, sgd, scheduler, train)
    message = rf"batch_size should be a positive integer value, but got batch_size={bad!r}"
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train.fit(x, y, batch_size=bad, verbose=0)
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        train.evaluate(x, y, batch_size=bad)
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        predictor.predict(x, batch_size=bad)
    assert_same(before, everything(model, sgd, scheduler, train))


@pytest.mark.parametrize("name, bad", [("epochs", -1), ("epochs", 1.5), ("epochs", True), ("epochs", None),
                                       ("checkpoint_every", 0), ("checkpoint_every", -2), ("checkpoint_every", 1.0)])
def test_bad_epochs_and_checkpoint_every_raise_value_error(name, bad):
    model, sgd, scheduler, train = setup()
    x, y = data()
    before = everything(model, sgd, scheduler, train)
    with pytest.raises(ValueError, match=f"{name} should be a (positive|non-negative) integer value, but got"):
        train.fit(x, y, verbose=0, **{name: bad})
    assert_same(before, everything(model, sgd, scheduler, train))
    assert train.fit(x, y, epochs=0, verbose=0).epochs == 0  # zero epochs: a valid no-op


# -- non-finite losses -----------------------------------------------------------------------------


def torch_run(start: dict, x, y, steps: int):
    """Per-step losses and the final state of a torch loop over batches of 4 from ``start``."""
    ref = torch.nn.Linear(3, 2)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in start.items()})
    ref_sgd = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for start in range(0, 4 * steps, 4):
        ref_sgd.zero_grad()
        batch = slice(start, start + 4)
        loss = torch.nn.functional.mse_loss(ref(torch.from_numpy(x[batch])), torch.from_numpy(y[batch]))
        loss.backward()
        ref_sgd.step()
        losses.append(loss.item())
    buffers = [ref_sgd.state[p]["momentum_buffer"].numpy() for p in ref.parameters()]
    return losses, {k: v.numpy() for k, v in ref.state_dict().items()}, buffers


def linear_with_an_inf(backend: str = "c"):
    gn.manual_seed(0)
    model = nn.Linear(3, 2)
    sgd = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train = gn.compile(model, nn.MSELoss(), sgd, backend=backend)
    x, y = data()
    x[5, 1] = np.inf  # in the second batch of four
    losses = []
    step = train.step
    train.step = lambda *args: losses.append(step(*args)) or losses[-1]
    return model, sgd, train, x, y, losses


def assert_like_torch(model, sgd, x, y, losses, start, steps):
    ref_losses, ref_state, ref_buffers = torch_run(start, x, y, steps)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)  # inf and nan where torch has them
    for key, value in ref_state.items():
        np.testing.assert_allclose(model.state_dict()[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
    for p, value in zip(model.parameters(), ref_buffers):
        np.testing.assert_allclose(sgd.state[p]["momentum_buffer"], value, rtol=1e-5, atol=1e-6)


def test_a_non_finite_loss_is_stepped_on_as_in_torch_by_default(backend):
    model, sgd, train, x, y, losses = linear_with_an_inf(backend)
    start = {k: np.array(v) for k, v in model.state_dict().items()}
    history = train.fit(x, y, batch_size=4, shuffle=False, verbose=0)
    assert len(losses) == 3 and np.isinf(losses[1]) and not np.isfinite(model.weight.data).all()
    assert np.isnan(history["loss"][0])
    assert_like_torch(model, sgd, x, y, losses, start, steps=3)


def test_stop_on_nan_stops_right_after_the_step_with_a_non_finite_loss():
    model, sgd, train, x, y, losses = linear_with_an_inf()
    start = {k: np.array(v) for k, v in model.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch 2 of 3 is inf: fit stopped right after") as error:
        train.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0, stop_on_nan=True)
    assert isinstance(error.value, FloatingPointError) and (error.value.epoch, error.value.batch) == (1, 2)
    assert len(losses) == 2  # the third batch never ran
    assert_like_torch(model, sgd, x, y, losses, start, steps=2)  # the state after the second step
    # on finite data it changes nothing
    a, _, a_train, x, y, _ = linear_with_an_inf()
    b, _, b_train, _, _, _ = linear_with_an_inf()
    x[5, 1] = 0.5
    assert a_train.fit(x, y, batch_size=4, epochs=2, verbose=0, stop_on_nan=True) is not None
    b_train.fit(x, y, batch_size=4, epochs=2, verbose=0)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)


def test_fit_on_no_samples_raises_input_error():
    model = gn.nn.Linear(2, 1)
    train = gn.compile(model, gn.nn.MSELoss(), gn.optim.SGD(model.parameters(), lr=0.1), backend="numpy")
    with pytest.raises(gn.InputError, match="at least one sample"):
        train.fit(np.zeros((0, 2), np.float32), np.zeros((0, 1), np.float32), verbose=0)

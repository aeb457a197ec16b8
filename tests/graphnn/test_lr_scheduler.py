"""Learning-rate schedulers against PyTorch's: the same learning rates (and momenta) bit for bit,
state dicts that load both ways, the same errors for bad arguments, and fit stepping each kind
of scheduler as a hand-written loop does, resuming it bit for bit."""
from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as torch_schedulers

import graphnn as gn
from graphnn import nn, optim
from graphnn.checkpoint import StateDictError
from graphnn.optim import lr_scheduler as gn_schedulers
from graphnn.optim.optimizer import Optimizer

pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before:UserWarning")
STEPS = 50
LRS = (0.1, 0.03)


def torch_sgd(momentum: float = 0.9, lrs: tuple = LRS) -> torch.optim.SGD:
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    return torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": lrs[1]}], lr=lrs[0], momentum=momentum)


def gn_sgd(momentum: float = 0.9) -> optim.SGD:
    a, b = nn.Parameter(np.zeros(2, np.float32)), nn.Parameter(np.zeros(3, np.float32))
    return optim.SGD([{"params": [a]}, {"params": [b], "lr": LRS[1]}], lr=LRS[0], momentum=momentum)


class Betas(Optimizer):
    """An optimizer whose groups hold Adam's ``betas`` (graphnn has no Adam yet): enough for a
    scheduler, which only reads and writes ``param_groups``."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999)) -> None:
        super().__init__(params, dict(lr=lr, betas=betas))


def gn_betas() -> Betas:
    a, b = nn.Parameter(np.zeros(2, np.float32)), nn.Parameter(np.zeros(3, np.float32))
    return Betas([{"params": [a]}, {"params": [b], "lr": LRS[1], "betas": (0.8, 0.99)}], lr=LRS[0])


def torch_adam() -> torch.optim.Adam:
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    return torch.optim.Adam([{"params": [a]}, {"params": [b], "lr": LRS[1], "betas": (0.8, 0.99)}], lr=LRS[0])


class Halving:
    """A callable object: LambdaLR's state dict keeps its attributes (a lambda's it cannot)."""

    def __init__(self, every: int) -> None:
        self.every = every

    def __call__(self, epoch: int) -> float:
        return 0.5 ** (epoch // self.every)


SCHEDULERS = {  # name -> a function of (the scheduler module, an optimizer, keywords) making it
    "StepLR": lambda L, o, **kw: L.StepLR(o, step_size=3, **kw),
    "StepLR gamma": lambda L, o, **kw: L.StepLR(o, 7, gamma=0.7, **kw),
    "MultiStepLR": lambda L, o, **kw: L.MultiStepLR(o, [5, 12, 12, 30], gamma=0.3, **kw),
    "ExponentialLR": lambda L, o, **kw: L.ExponentialLR(o, 0.93, **kw),
    "CosineAnnealingLR": lambda L, o, **kw: L.CosineAnnealingLR(o, T_max=10, **kw),
    "CosineAnnealingLR eta_min": lambda L, o, **kw: L.CosineAnnealingLR(o, 7, eta_min=1e-3, **kw),
    "LambdaLR": lambda L, o, **kw: L.LambdaLR(o, lambda epoch: 0.95 ** epoch, **kw),
    "LambdaLR per group": lambda L, o, **kw: L.LambdaLR(o, [lambda e: 1 / (1 + e), Halving(4)], **kw),
    "LinearLR": lambda L, o, **kw: L.LinearLR(o, **kw),
    "LinearLR down": lambda L, o, **kw: L.LinearLR(o, start_factor=1.0, end_factor=0.05, total_iters=30, **kw),
    "LinearLR up": lambda L, o, **kw: L.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=20, **kw),
    "OneCycleLR": lambda L, o, **kw: L.OneCycleLR(o, max_lr=[1.0, 0.3], total_steps=STEPS, **kw),
    "OneCycleLR linear": lambda L, o, **kw: L.OneCycleLR(o, 0.5, total_steps=STEPS, anneal_strategy="linear",
                                                         pct_start=0.25, **kw),
    "OneCycleLR three phase": lambda L, o, **kw: L.OneCycleLR(o, 0.5, total_steps=STEPS, three_phase=True, **kw),
    "OneCycleLR three phase linear": lambda L, o, **kw: L.OneCycleLR(
        o, [0.4, 0.2], epochs=5, steps_per_epoch=10, three_phase=True, anneal_strategy="linear", div_factor=10.0,
        final_div_factor=100.0, base_momentum=[0.8, 0.85], max_momentum=0.99, **kw),
    "OneCycleLR no momentum": lambda L, o, **kw: L.OneCycleLR(o, 2.0, total_steps=STEPS, cycle_momentum=False, **kw),
}
CHAINABLE = ["StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR eta_min", "LinearLR up"]
GROUP_KEYS = ("lr", "momentum", "betas", "initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")


def snapshot(scheduler, optimizer) -> tuple:
    """What a scheduler decides at a step: its last lrs and the groups' scheduled keys."""
    groups = [{k: tuple(g[k]) if k == "betas" else g[k] for k in GROUP_KEYS if k in g} for g in optimizer.param_groups]
    return scheduler.get_last_lr(), groups


def run_both(name: str, steps: int = STEPS, torch_opt=torch_sgd, gn_opt=gn_sgd, between=None):
    """The snapshots of torch's and graphnn's scheduler ``name`` before and after each step."""
    made = []
    for L, make_opt in ((torch_schedulers, torch_opt), (gn_schedulers, gn_opt)):
        opt = make_opt()
        scheduler = SCHEDULERS[name](L, opt)
        seen = [snapshot(scheduler, opt)]
        for t in range(steps):
            if between is not None:
                between(t, opt)
            scheduler.step()
            seen.append(snapshot(scheduler, opt))
        made.append(seen)
    return made


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_learning_rates_equal_torch_bit_for_bit(name):
    theirs, ours = run_both(name)
    assert ours == theirs  # exact float equality, at every step and for both groups
    lrs = [lr for lr, _ in ours]
    assert len({tuple(lr) for lr in lrs}) > 2  # the schedule moves


@pytest.mark.parametrize("name", CHAINABLE)
def test_chained_forms_carry_outside_changes_of_lr_as_torch_does(name):
    def nudge(t, opt):
        if t in (8, 21):
            for group in opt.param_groups:
                group["lr"] = group["lr"] * 0.5
    theirs, ours = run_both(name, between=nudge)
    assert ours == theirs


@pytest.mark.parametrize("name", [n for n in SCHEDULERS if n.startswith("OneCycleLR") and "no momentum" not in n])
def test_one_cycle_cycles_betas_of_adam_like_groups_as_torch_does(name):
    """torch's Adam against a graphnn optimizer whose groups hold ``betas`` (no graphnn Adam exists)."""
    theirs, ours = run_both(name, torch_opt=torch_adam, gn_opt=gn_betas)
    assert ours == theirs
    betas = [groups[1]["betas"] for _, groups in ours]
    assert len({b[0] for b in betas}) > 2 and {b[1] for b in betas} == {0.99}


def test_one_cycle_momentum_cycles_and_refuses_a_step_past_total_steps():
    opt = gn_sgd()
    scheduler = gn_schedulers.OneCycleLR(opt, 1.0, total_steps=10)
    momenta = [opt.param_groups[0]["momentum"]]
    for _ in range(10):
        scheduler.step()
        momenta.append(opt.param_groups[0]["momentum"])
    assert momenta[0] == 0.95 and min(momenta) == pytest.approx(0.85)
    ref = torch_schedulers.OneCycleLR(torch_sgd(), 1.0, total_steps=10)
    for _ in range(10):
        ref.step()
    for s in (scheduler, ref):
        with pytest.raises(ValueError, match="Tried to step 11 times. The specified number of total steps is 10"):
            s.step()


@pytest.mark.parametrize("name", ["StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR eta_min",
                                  "LinearLR up", "LambdaLR", "OneCycleLR"])
def test_resuming_with_last_epoch_matches_torch(name):
    """A scheduler built with last_epoch=k on an optimizer holding ``initial_lr`` (as after loading
    the optimizer's state) continues as torch's does, including CosineAnnealingLR's closed-form first step."""
    made = []
    for L, make_opt in ((torch_schedulers, torch_sgd), (gn_schedulers, gn_sgd)):
        opt = make_opt()
        SCHEDULERS[name](L, opt)  # puts initial_lr (and OneCycleLR's keys) into the groups
        for group in opt.param_groups:
            group["lr"] = group["lr"] * 0.7
        scheduler = SCHEDULERS[name](L, opt, last_epoch=12)
        seen = [snapshot(scheduler, opt)]
        for _ in range(30):
            scheduler.step()
            seen.append(snapshot(scheduler, opt))
        made.append(seen)
    assert made[1] == made[0]


def test_last_epoch_without_initial_lr_raises_key_error_as_torch():
    for L, opt in ((torch_schedulers, torch_sgd()), (gn_schedulers, gn_sgd())):
        with pytest.raises(KeyError, match="initial_lr"):
            L.StepLR(opt, 3, last_epoch=4)


@pytest.mark.parametrize("name", ["StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR eta_min", "LinearLR up"])
def test_step_with_an_epoch_uses_the_closed_form_and_warns_as_torch(name):
    made = []
    for L, make_opt in ((torch_schedulers, torch_sgd), (gn_schedulers, gn_sgd)):
        opt = make_opt()
        scheduler = SCHEDULERS[name](L, opt)
        seen = []
        for epoch in (3, 7, 12, 5, 30, 31):
            with pytest.warns(UserWarning, match="deprecated"):
                scheduler.step(epoch)
            seen.append((scheduler.last_epoch, snapshot(scheduler, opt)))
        made.append(seen)
    assert made[1] == made[0]


# -- ReduceLROnPlateau ----------------------------------------------------------------------------

PLATEAUS = {
    "default": {},
    "patience 0": dict(patience=0, factor=0.5),
    "cooldown": dict(patience=1, cooldown=3, factor=0.5, threshold=0.05),
    "abs": dict(patience=2, threshold_mode="abs", threshold=0.02, factor=0.3),
    "max rel": dict(mode="max", patience=1, factor=0.5, threshold=0.01),
    "max abs": dict(mode="max", patience=0, threshold_mode="abs", threshold=0.0),
    "min_lr per group": dict(patience=0, factor=0.2, min_lr=[1e-3, 5e-3]),
    "min_lr and eps": dict(patience=0, factor=0.5, min_lr=0.009, eps=1e-3),
}


def metrics(mode: str) -> list[float]:
    rng = np.random.default_rng(7)
    values = np.maximum.accumulate(rng.random(STEPS)) * 0.3 + rng.random(STEPS) * 0.1 + np.linspace(1, 0.5, STEPS)
    values = [float(v) for v in values]
    return [-v for v in values] if mode == "max" else values


@pytest.mark.parametrize("case", list(PLATEAUS))
def test_reduce_on_plateau_equals_torch(case):
    kwargs = PLATEAUS[case]
    made = []
    for L, opt in ((torch_schedulers, torch_sgd()), (gn_schedulers, gn_sgd())):
        scheduler = L.ReduceLROnPlateau(opt, **kwargs)
        seen = [scheduler.get_last_lr()]
        for value in metrics(kwargs.get("mode", "min")):
            scheduler.step(value)
            seen.append((scheduler.get_last_lr(), scheduler.best, scheduler.num_bad_epochs, scheduler.cooldown_counter))
        made.append(seen)
    assert made[1] == made[0]
    if case != "default":
        assert made[1][-1][0] != list(LRS)  # it reduced


def test_reduce_on_plateau_takes_a_one_element_array():
    opt = gn_sgd()
    scheduler = gn_schedulers.ReduceLROnPlateau(opt, patience=0)
    scheduler.step(np.float32(1.0))
    scheduler.step(np.array(2.0))
    assert scheduler.get_last_lr() == pytest.approx([0.01, 0.003]) and scheduler.last_epoch == 2


# -- state dicts ----------------------------------------------------------------------------------

ALL = list(SCHEDULERS) + [f"plateau {c}" for c in PLATEAUS]


def make(name, L, opt):
    if name.startswith("plateau "):
        return L.ReduceLROnPlateau(opt, **PLATEAUS[name[len("plateau "):]])
    return SCHEDULERS[name](L, opt)


def advance(name, scheduler, steps, start=0):
    values = metrics(PLATEAUS[name[len("plateau "):]].get("mode", "min")) if name.startswith("plateau ") else None
    for t in range(start, start + steps):
        scheduler.step(values[t]) if values is not None else scheduler.step()


def to_numpy_state(state):
    return {"state": {k: {n: v.numpy() if torch.is_tensor(v) else v for n, v in s.items()}
                      for k, s in state["state"].items()}, "param_groups": state["param_groups"]}


@pytest.mark.parametrize("name", ALL)
def test_torch_state_dict_loads_into_graphnn_and_continues_identically(name):
    ref_opt, opt = torch_sgd(), gn_sgd()
    ref = make(name, torch_schedulers, ref_opt)
    advance(name, ref, 17)
    ours = make(name, gn_schedulers, opt)  # fresh, at step 0
    opt.load_state_dict(to_numpy_state(ref_opt.state_dict()))
    ours.load_state_dict(ref.state_dict())
    assert ours.last_epoch == ref.last_epoch and ours.get_last_lr() == ref.get_last_lr()
    advance(name, ref, STEPS - 17, start=17)
    advance(name, ours, STEPS - 17, start=17)
    assert snapshot(ours, opt) == snapshot(ref, ref_opt)


@pytest.mark.parametrize("name", ALL)
def test_graphnn_state_dict_loads_into_torch_and_continues_identically(name):
    ref_opt, opt = torch_sgd(), gn_sgd()
    ours = make(name, gn_schedulers, opt)
    advance(name, ours, 23)
    ref = make(name, torch_schedulers, ref_opt)
    assert set(ours.state_dict()) == set(ref.state_dict())  # PyTorch's keys
    ref_opt.load_state_dict(opt.state_dict())
    ref.load_state_dict(ours.state_dict())
    advance(name, ref, STEPS - 23, start=23)
    advance(name, ours, STEPS - 23, start=23)
    assert snapshot(ours, opt) == snapshot(ref, ref_opt)


@pytest.mark.parametrize("name", ["MultiStepLR", "LambdaLR per group", "OneCycleLR three phase", "plateau cooldown"])
def test_state_dict_survives_a_checkpoint_file(tmp_path, name):
    """Through gn.save/gn.load (a Counter comes back a dict, inf and tuples survive)."""
    opt = gn_sgd()
    scheduler = make(name, gn_schedulers, opt)
    advance(name, scheduler, 11)
    gn.save({"optimizer": opt.state_dict(), "scheduler": scheduler.state_dict()}, tmp_path / "s.ckpt")
    saved = gn.load(tmp_path / "s.ckpt")
    opt2 = gn_sgd()
    other = make(name, gn_schedulers, opt2)
    if name == "LambdaLR per group":
        other.lr_lambdas[1].every = 99  # the load restores the callable object's attributes
    opt2.load_state_dict(saved["optimizer"])
    other.load_state_dict(saved["scheduler"])
    if name == "LambdaLR per group":
        assert other.lr_lambdas[1].every == 4
    if name == "MultiStepLR":  # the closed form of step(epoch) needs the Counter back
        assert isinstance(other.milestones, Counter) and other.milestones == scheduler.milestones
    advance(name, scheduler, 20, start=11)
    advance(name, other, 20, start=11)
    assert snapshot(other, opt2) == snapshot(scheduler, opt) and other.state_dict() == scheduler.state_dict()


def test_lambda_lr_state_dict_keeps_no_functions_as_torch():
    states = [SCHEDULERS["LambdaLR per group"](L, o()).state_dict()
              for L, o in ((torch_schedulers, torch_sgd), (gn_schedulers, gn_sgd))]
    assert states[1]["lr_lambdas"] == states[0]["lr_lambdas"] == [None, {"every": 4}]


BAD_STATES = {  # name -> (scheduler, a change to its state dict, the error's pattern)
    "plateau mode": ("plateau default", lambda s: s.update(mode="avg"), r"'mode': expected one of \['min', 'max'\]"),
    "plateau counter": ("plateau default", lambda s: s.update(num_bad_epochs=1.5), r"'num_bad_epochs'.*integer"),
    "plateau min_lrs": ("plateau default", lambda s: s.update(min_lrs=[0.0]), r"'min_lrs'.*2 items"),
    "one cycle anneal": ("OneCycleLR", lambda s: s.update(_anneal_func_type="exp"), r"'cos' or 'linear'"),
    "one cycle phases": ("OneCycleLR", lambda s: s["_schedule_phases"][0].update(end_lr="peak"), r"end_lr.*peak"),
    "one cycle total": ("OneCycleLR", lambda s: s.update(total_steps=50.0), r"'total_steps'.*integer"),
    "milestones": ("MultiStepLR", lambda s: s.update(milestones=[5, 12]), r"'milestones'.*dict"),
    "lambda": ("LambdaLR", lambda s: s.update(lr_lambdas=[None]), r"'lr_lambdas'.*2 items"),
    "cosine": ("CosineAnnealingLR", lambda s: s.update(T_max="10"), r"'T_max'.*real number"),
    "step count": ("StepLR", lambda s: s.pop("_step_count"), r"missing \['_step_count'\]"),
}


@pytest.mark.parametrize("case", list(BAD_STATES))
def test_a_bad_state_raises_and_changes_nothing(case):
    name, change, pattern = BAD_STATES[case]
    opt = gn_sgd()
    scheduler = make(name, gn_schedulers, opt)
    advance(name, scheduler, 5)
    bad = scheduler.state_dict()
    change(bad)
    before = (scheduler.state_dict(), copy.deepcopy([{k: v for k, v in g.items() if k != "params"}
                                                     for g in opt.param_groups]))
    with pytest.raises(StateDictError, match=pattern):
        scheduler.load_state_dict(bad)
    assert (scheduler.state_dict(), [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]) == before


def test_a_state_without_the_flags_of_older_torch_loads():
    opt = gn_sgd()
    scheduler = gn_schedulers.CosineAnnealingLR(opt, 10)
    state = scheduler.state_dict()
    del state["_is_initial"], state["_get_lr_called_within_step"]
    state["last_epoch"] = 3
    scheduler.load_state_dict(state)
    assert scheduler.last_epoch == 3


# -- bad arguments --------------------------------------------------------------------------------

BAD_ARGUMENTS = {  # name -> a function of (scheduler module, optimizer module name) that must raise
    "not an optimizer": lambda L, o: L.StepLR(object(), 3),
    "plateau not an optimizer": lambda L, o: L.ReduceLROnPlateau(object()),
    "one cycle not an optimizer": lambda L, o: L.OneCycleLR(object(), 1.0, total_steps=3),
    "lambdas per group": lambda L, o: L.LambdaLR(o, [lambda e: 1.0]),
    "linear start 0": lambda L, o: L.LinearLR(o, start_factor=0),
    "linear start above 1": lambda L, o: L.LinearLR(o, start_factor=1.5),
    "linear end below 0": lambda L, o: L.LinearLR(o, end_factor=-0.1),
    "linear end above 1": lambda L, o: L.LinearLR(o, end_factor=1.01),
    "one cycle no length": lambda L, o: L.OneCycleLR(o, 1.0),
    "one cycle epochs only": lambda L, o: L.OneCycleLR(o, 1.0, epochs=3),
    "one cycle total 0": lambda L, o: L.OneCycleLR(o, 1.0, total_steps=0),
    "one cycle total float": lambda L, o: L.OneCycleLR(o, 1.0, total_steps=10.0),
    "one cycle epochs 0": lambda L, o: L.OneCycleLR(o, 1.0, epochs=0, steps_per_epoch=3),
    "one cycle steps per epoch": lambda L, o: L.OneCycleLR(o, 1.0, epochs=2, steps_per_epoch=-3),
    "one cycle pct int": lambda L, o: L.OneCycleLR(o, 1.0, total_steps=10, pct_start=1),
    "one cycle pct above 1": lambda L, o: L.OneCycleLR(o, 1.0, total_steps=10, pct_start=1.5),
    "one cycle anneal": lambda L, o: L.OneCycleLR(o, 1.0, total_steps=10, anneal_strategy="exp"),
    "one cycle max_lr list": lambda L, o: L.OneCycleLR(o, [1.0, 2.0, 3.0], total_steps=10),
    "one cycle momentum list": lambda L, o: L.OneCycleLR(o, 1.0, total_steps=10, base_momentum=[0.8]),
    "plateau factor": lambda L, o: L.ReduceLROnPlateau(o, factor=1.0),
    "plateau mode": lambda L, o: L.ReduceLROnPlateau(o, mode="avg"),
    "plateau threshold mode": lambda L, o: L.ReduceLROnPlateau(o, threshold_mode="x"),
    "plateau min_lr list": lambda L, o: L.ReduceLROnPlateau(o, min_lr=[0.1]),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_arguments_raise_as_torch(case):
    errors = []
    for L, opt in ((torch_schedulers, torch_sgd()), (gn_schedulers, gn_sgd())):
        with pytest.raises((TypeError, ValueError)) as info:
            BAD_ARGUMENTS[case](L, opt)
        errors.append(info.value)
    assert type(errors[1]) is type(errors[0])
    assert str(errors[1]) == str(errors[0])


def test_one_cycle_momentum_needs_an_optimizer_with_momentum_as_torch():
    class Plain(Optimizer):
        def __init__(self, params):
            super().__init__(params, dict(lr=0.1))

    ours = Plain([nn.Parameter(np.zeros(2, np.float32))])
    theirs = torch.optim.Adagrad([torch.nn.Parameter(torch.zeros(2))])
    for L, opt in ((torch_schedulers, theirs), (gn_schedulers, ours)):
        with pytest.raises(ValueError, match="optimizer must support momentum or beta1"):
            L.OneCycleLR(opt, 1.0, total_steps=10)
        L.OneCycleLR(opt, 1.0, total_steps=10, cycle_momentum=False)


def test_zero_periods_raise_at_construction_where_torch_fails_at_the_first_step():
    ref = torch_schedulers.StepLR(torch_sgd(), step_size=0)
    with pytest.raises(ZeroDivisionError):
        ref.step()
    with pytest.raises(ValueError, match="step_size should be a nonzero integer"):
        gn_schedulers.StepLR(gn_sgd(), step_size=0)
    with pytest.raises(ValueError, match="T_max should be a nonzero number"):
        gn_schedulers.CosineAnnealingLR(gn_sgd(), T_max=0)


# -- fit ------------------------------------------------------------------------------------------


def data(n: int = 24):
    rng = np.random.default_rng(3)
    return rng.standard_normal((n, 3)).astype(np.float32), rng.standard_normal((n, 2)).astype(np.float32)


def setup(make_scheduler, seed: int = 0):
    gn.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
    sgd = optim.SGD([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.02}],
                    lr=0.05, momentum=0.9)
    return model, sgd, make_scheduler(sgd), gn.compile(model, nn.MSELoss(), sgd, backend="numpy")


FIT_SCHEDULERS = {  # name -> (make the scheduler from the optimizer, scheduler_interval)
    "cosine per epoch": (lambda o: gn_schedulers.CosineAnnealingLR(o, T_max=3, eta_min=1e-3), "epoch"),
    "multistep per epoch": (lambda o: gn_schedulers.MultiStepLR(o, [2, 4], gamma=0.5), "epoch"),
    "linear per batch": (lambda o: gn_schedulers.LinearLR(o, start_factor=0.2, total_iters=10), "batch"),
    "plateau": (lambda o: gn_schedulers.ReduceLROnPlateau(o, patience=0, factor=0.5, threshold=0.2), "epoch"),
    "one cycle": (lambda o: gn_schedulers.OneCycleLR(o, [0.2, 0.1], epochs=6, steps_per_epoch=3), "batch"),
}


def hand_loop(train, sgd, scheduler, x, y, epochs, interval, validation):
    """The PyTorch loop fit stands for, without shuffling: per-batch lrs, per-epoch history lrs."""
    lrs, momenta, epoch_lrs = [], [], []
    for _ in range(epochs):
        total = 0.0
        for start in range(0, len(x), 8):
            lrs.append([g["lr"] for g in sgd.param_groups])
            momenta.append([g["momentum"] for g in sgd.param_groups])
            total += train.step(x[start:start + 8], y[start:start + 8]) * len(x[start:start + 8])
            if interval == "batch":
                epoch_lrs_last = sgd.param_groups[0]["lr"]
                scheduler.step()
        epoch_lrs.append(epoch_lrs_last if interval == "batch" else sgd.param_groups[0]["lr"])
        if isinstance(scheduler, gn_schedulers.ReduceLROnPlateau):
            scheduler.step(train.evaluate(*validation)[0] if validation is not None else total / len(x))
        elif interval == "epoch":
            scheduler.step()
    return lrs, momenta, epoch_lrs


@pytest.mark.parametrize("name, validation", [(name, True) for name in FIT_SCHEDULERS] + [("plateau", False)])
def test_fit_steps_each_kind_of_scheduler_as_a_hand_written_loop(name, validation):
    make_scheduler, interval = FIT_SCHEDULERS[name]
    x, y = data()
    val = (x[:10] + 0.5, y[:10]) if validation else None
    model, sgd, scheduler, train = setup(make_scheduler)
    lrs, momenta, epoch_lrs = hand_loop(train, sgd, scheduler, x, y, 6, interval, val)
    fit_model, fit_sgd, fit_scheduler, fit_train = setup(make_scheduler)
    seen = []
    step = fit_train.step

    def recording(*args):
        seen.append(([g["lr"] for g in fit_sgd.param_groups], [g["momentum"] for g in fit_sgd.param_groups]))
        return step(*args)

    fit_train.step = recording
    history = fit_train.fit(x, y, batch_size=8, epochs=6, shuffle=False, verbose=0, validation_data=val,
                            scheduler=fit_scheduler, scheduler_interval=interval)
    assert [lr for lr, _ in seen] == lrs and [m for _, m in seen] == momenta
    assert history["lr"] == epoch_lrs
    assert fit_scheduler.state_dict() == scheduler.state_dict()
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(fit_model.state_dict()[key], value, err_msg=key)
    assert len({tuple(lr) for lr in lrs}) > 2  # the schedule changed the learning rates


def test_fit_plateau_learning_rates_equal_torch_for_the_same_losses():
    """fit steps ReduceLROnPlateau with the training loss when there is no validation data."""
    x, y = data()
    _, sgd, scheduler, train = setup(FIT_SCHEDULERS["plateau"][0])
    history = train.fit(x, y, batch_size=8, epochs=8, shuffle=False, verbose=0, scheduler=scheduler)
    ref = torch_schedulers.ReduceLROnPlateau(torch_sgd(lrs=(0.05, 0.02)), patience=0, factor=0.5, threshold=0.2)
    ref_lrs = []
    for loss in history["loss"]:
        ref_lrs.append(ref.optimizer.param_groups[0]["lr"])
        ref.step(loss)
    assert history["lr"] == ref_lrs and [g["lr"] for g in sgd.param_groups] == ref.get_last_lr()
    assert ref_lrs[-1] < ref_lrs[0]


def test_fit_refuses_schedulers_it_cannot_step_as_asked():
    x, y = data()
    _, sgd, one_cycle, train = setup(lambda o: gn_schedulers.OneCycleLR(o, 0.1, total_steps=9))
    with pytest.raises(ValueError, match='OneCycleLR changes the learning rate after every batch: pass '
                                         'scheduler_interval="batch"'):
        train.fit(x, y, batch_size=8, epochs=3, verbose=0, scheduler=one_cycle)
    with pytest.raises(ValueError, match=r"past its total_steps=9 .* total_steps=12"):
        train.fit(x, y, batch_size=8, epochs=4, verbose=0, scheduler=one_cycle, scheduler_interval="batch")
    plateau = gn_schedulers.ReduceLROnPlateau(sgd)
    with pytest.raises(ValueError, match='scheduler_interval="epoch"'):
        train.fit(x, y, batch_size=8, verbose=0, scheduler=plateau, scheduler_interval="batch")
    with pytest.raises(ValueError, match="scheduler_interval should be 'epoch' or 'batch'"):
        train.fit(x, y, batch_size=8, verbose=0, scheduler=plateau, scheduler_interval="step")
    other = gn_schedulers.StepLR(gn_sgd(), 2)
    with pytest.raises(ValueError, match="another optimizer"):
        train.fit(x, y, batch_size=8, verbose=0, scheduler=other)
    assert train.calls == 0 and one_cycle.last_epoch == 0
    train.fit(x, y, batch_size=8, epochs=3, verbose=0, scheduler=one_cycle, scheduler_interval="batch")
    assert one_cycle.last_epoch == 9


@pytest.mark.parametrize("name", ["one cycle", "plateau", "cosine per epoch"])
def test_fit_resumes_a_scheduler_bit_for_bit(tmp_path, name):
    """A run stopped after epoch 3 and resumed from its checkpoint ends as a straight run does."""
    make_scheduler, interval = FIT_SCHEDULERS[name]
    x, y = data()
    val = (x[:10] + 0.5, y[:10])

    def run(epochs, **kwargs):
        model, sgd, scheduler, train = setup(make_scheduler)
        history = train.fit(x, y, batch_size=8, epochs=epochs, seed=5, verbose=0, validation_data=val,
                            scheduler=scheduler, scheduler_interval=interval, **kwargs)
        return model, sgd, scheduler, history

    model, sgd, scheduler, history = run(6)
    run(3, checkpoint=tmp_path / "run.ckpt")
    resumed_model, resumed_sgd, resumed_scheduler, resumed_history = run(6, resume=tmp_path / "run.ckpt")
    assert resumed_history["lr"] == history["lr"] and resumed_history["loss"] == history["loss"]
    assert resumed_scheduler.state_dict() == scheduler.state_dict()
    assert [{k: v for k, v in g.items() if k != "params"} for g in resumed_sgd.param_groups] == \
           [{k: v for k, v in g.items() if k != "params"} for g in sgd.param_groups]
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(resumed_model.state_dict()[key], value, err_msg=key)
    assert len(set(history["lr"])) > 1


def test_fit_with_one_cycle_trains_as_a_torch_loop_with_its_momentum_cycling():
    """The compiled step uses the learning rate and momentum OneCycleLR sets before each batch."""
    from tests.conftest import assert_state_close, copy_torch_weights

    x, y = data()
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    start_weights = copy.deepcopy(ref)
    ref_opt = torch.optim.SGD([{"params": ref[0].parameters()}, {"params": ref[2].parameters(), "lr": 0.02}],
                              lr=0.05, momentum=0.9)
    ref_scheduler = torch_schedulers.OneCycleLR(ref_opt, [0.5, 0.2], epochs=6, steps_per_epoch=3, base_momentum=0.5)
    for _ in range(6):
        for start in range(0, len(x), 8):
            ref_opt.zero_grad()
            torch.nn.functional.mse_loss(ref(torch.from_numpy(x[start:start + 8])),
                                         torch.from_numpy(y[start:start + 8])).backward()
            ref_opt.step()
            ref_scheduler.step()

    def trained(cycle_momentum: bool):
        model, sgd, scheduler, train = setup(lambda o: gn_schedulers.OneCycleLR(
            o, [0.5, 0.2], epochs=6, steps_per_epoch=3, base_momentum=0.5, cycle_momentum=cycle_momentum))
        copy_torch_weights(model, start_weights)
        train.fit(x, y, batch_size=8, epochs=6, shuffle=False, verbose=0, scheduler=scheduler,
                  scheduler_interval="batch")
        return model, sgd, scheduler

    model, sgd, scheduler = trained(True)
    assert snapshot(scheduler, sgd) == snapshot(ref_scheduler, ref_opt)
    assert_state_close(model, ref, rtol=1e-5)
    held, _, _ = trained(False)  # momentum held at 0.9 ends elsewhere: the cycling reached the step
    with pytest.raises(AssertionError):
        assert_state_close(held, ref, rtol=1e-3)

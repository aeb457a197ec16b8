"""Run one fuzz case in graphnn, in torch float32 and in torch float64, and judge graphnn.

Tolerances come from torch itself: torch float64 is the reference, and torch float32's distance
to it measures what float32 rounding alone does to this case (the model, the data, the number
of steps, how much training amplifies early differences). graphnn passes a comparison when

    err(graphnn, torch64) <= RATIO * err(torch32, torch64) + FLOOR

where err is the largest absolute difference over a tensor divided by the reference tensor's
largest magnitude, or over the largest magnitude of its family of tensors (see
``_compare_states``), and for the loss the relative difference at each step. FLOOR covers a
quantity that torch float32 happens to get exactly right, where graphnn may round differently
by a few units in the last place.

One torch float32 run is one draw of the rounding noise, and a lucky draw (an error far below
the typical one) would hold graphnn to a tolerance that no float32 implementation meets: seen
where the noise dominates, as in the gradient below a BatchNorm over two samples. So torch
float32 runs VARIANTS times, the first as given, the others with each batch's samples in
another order and the inputs and the starting state moved by one unit in the last place on a
random half of their elements (the same problem to float32 precision, rounded differently),
and err(torch32) is the largest of the draws.

Two comparisons, both required:

- the trajectory: the losses of all steps, the final parameters, buffers and momentum buffers
  after the whole run from the same initial weights and batches;
- the steps one at a time: before each step, both torch models are loaded with graphnn's own
  state (parameters, buffers, momentum), take that one step, and are compared with graphnn's
  next state. Errors cannot accumulate here, so this is the tight check of every step's
  arithmetic, and it tells a wrong step from a trajectory that drifted.

Kinks. ReLU-like activations at their corners, Hardtanh at its bounds, ELU (alpha != 1) at 0,
Softplus at its threshold, max pooling between two nearly equal values and L1Loss where the
input meets the target switch branches, and a rounding difference can put one value on the
other side (for any two float32 implementations; seen in torch float32 against float64 too).
After that the runs differ by a whole gradient term, not by rounding. Such an event is detected,
not guessed: hooks record every kink layer's input in both torch runs, and a value is at risk
when its distance to the kink (or the gap between the two largest values of a pooling window)
is within RATIO times the float32-vs-float64 drift of that very input, plus FLOOR times its
scale. A comparison that fails where a value was at risk is reported as a kink, not a failure:
for the trajectory, any at-risk value in any step excuses it (one flip changes everything
after it); for a single step, only an at-risk value in that step does. A case whose kink
excuse hides everything is still counted and listed ("kink"), so the rate stays visible.

Chaos. Some cases amplify rounding without bound (a BatchNorm over a handful of values
normalises them to a sign pattern; a large learning rate): torch float32 ends as far from
torch float64 as from anything (err >= CHAOS), and the trajectory then says nothing about
graphnn. Such a case is judged on its single steps alone and listed as "chaotic" (pass or
fail, its trajectory errors stay out of the reported distribution).
"""
from __future__ import annotations

import copy
import re
import time
import traceback
from dataclasses import dataclass, field

import numpy as np
import torch

import graphnn as gn
from graphnn import nn, optim
from tests.fuzz.generate import Case, build, build_loss, make_batches

RATIO = 10.0
FLOOR = 2e-6
LOSS_FLOOR = 1e-6  # a loss below this is compared in absolute terms
VARIANTS = 3  # torch float32 runs per case: as given, then with each batch reordered and nudged
CHAOS = 1e-2  # torch float32's own trajectory error from which the trajectory says nothing


@dataclass
class Result:
    """What one case did: status is pass, kink (differs only where a kink was at risk), chaotic (the
    trajectory differs, but torch float32 lost it too, and every single step agrees), fail or skip."""

    seed: int
    backend: str
    status: str
    cause: str = ""
    category: str = ""  # the cause without the details that differ between cases, to group them
    trajectory: dict = field(default_factory=dict)   # quantity -> (err graphnn, err torch32), vs torch64
    local: dict = field(default_factory=dict)        # quantity -> worst (err graphnn, err torch32) over steps
    kinks: list = field(default_factory=list)        # where values were at risk
    seconds: float = 0.0
    description: str = ""
    features: list = field(default_factory=list)     # Case.features(), for the summary

    def report(self) -> str:
        lines = [f"[{self.status}] seed {self.seed} backend {self.backend}: {self.cause}", self.description]
        if self.kinks:
            lines.append(f"  kinks at risk: {', '.join(self.kinks[:6])}{' ...' if len(self.kinks) > 6 else ''}")
        worst = sorted(self.trajectory.items(), key=lambda kv: -_headroom(*kv[1]))[:5]
        for name, (ours, theirs) in worst:
            lines.append(f"  trajectory {name}: graphnn {ours:.3g} vs torch32 {theirs:.3g} (of torch64)")
        worst = sorted(self.local.items(), key=lambda kv: -_headroom(*kv[1]))[:3]
        for name, (ours, theirs) in worst:
            lines.append(f"  one step   {name}: graphnn {ours:.3g} vs torch32 {theirs:.3g} (of torch64)")
        lines.append(f"  replay: python -m tests.fuzz.run --seed {self.seed} --backend {self.backend}")
        return "\n".join(lines)


def _headroom(ours: float, theirs: float) -> float:
    """How much of the tolerance graphnn uses: above 1 fails."""
    return ours / (RATIO * theirs + FLOOR)


def abs_error(got, expected) -> float:
    """max |got - expected|; inf for a missing tensor, a shape mismatch or a non-finite value
    where the reference is finite; 0 or inf (exact equality) for integer tensors."""
    if got is None:
        return float("inf")
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return float("inf")
    if expected.dtype.kind in "iub":
        return 0.0 if np.array_equal(got, expected) else float("inf")
    if expected.size == 0:
        return 0.0
    got, expected = got.astype(np.float64), expected.astype(np.float64)
    if not np.isfinite(got).all():
        return float("inf")
    return float(np.abs(got - expected).max())


def loss_error(got, expected) -> float:
    """The largest relative difference between two sequences of losses."""
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    if not np.isfinite(got).all():
        return float("inf")
    return float((np.abs(got - expected) / np.maximum(np.abs(expected), LOSS_FLOOR)).max())


# -- kinks --------------------------------------------------------------------------------------
def _kink_points(module) -> list | None:
    """Where an elementwise module switches branch, or None for a smooth one."""
    name = type(module).__name__
    if name in ("ReLU", "LeakyReLU"):
        return [0.0]
    if name == "Hardtanh":
        return [module.min_val, module.max_val]
    if name == "ELU" and module.alpha != 1.0:
        return [0.0]
    if name == "Softplus":
        return [module.threshold / module.beta]
    return None


class KinkProbe:
    """Records the input of every kink layer (and L1Loss's input - target) at every call."""

    def __init__(self, model, loss_fn) -> None:
        self.records: list = []  # (label, kind, parameters, input as float64 numpy)
        self.handles = []
        for index, module in enumerate(model):
            points = _kink_points(module)
            label = f"{index}:{type(module).__name__}"
            if points is not None:
                self.handles.append(module.register_forward_hook(self._hook(label, "points", points)))
            elif type(module).__name__ == "MaxPool2d":
                self.handles.append(module.register_forward_hook(self._hook(label, "maxpool", module)))
        if type(loss_fn).__name__ == "L1Loss":
            self.handles.append(loss_fn.register_forward_hook(self._hook("loss:L1Loss", "difference", [0.0])))

    def _hook(self, label, kind, parameters):
        def record(module, inputs, output):
            x = inputs[0].detach()
            if kind == "difference":
                x = x - inputs[1].detach()
            self.records.append((label, kind, parameters, x.double().numpy().copy()))
        return record

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _window_gaps(x: np.ndarray, pool) -> tuple[np.ndarray, np.ndarray]:
    """The largest value of each max pooling window and its gap to the second largest."""
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
    k, s, p, d = pair(pool.kernel_size), pair(pool.stride), pair(pool.padding), pair(pool.dilation)
    t = torch.nn.functional.pad(torch.from_numpy(x), (p[1], p[1], p[0], p[0]), value=float("-inf"))
    n, c = t.shape[:2]
    cols = torch.nn.functional.unfold(t, k, dilation=d, stride=s).reshape(n, c, k[0] * k[1], -1)
    if cols.shape[2] == 1:
        return cols[:, :, 0].numpy(), np.full(cols[:, :, 0].shape, np.inf)
    top = cols.topk(2, dim=2).values
    return top[:, :, 0].numpy(), (top[:, :, 0] - top[:, :, 1]).numpy()


def kinks_at_risk(ours: KinkProbe, reference: KinkProbe, step_of_call) -> list[str]:
    """Kink layers whose input came within reach of the kink: within RATIO times the drift between
    the float32 (ours) and float64 (reference) runs of that input, plus FLOOR times its scale."""
    found = []
    for call, (a, b) in enumerate(zip(ours.records, reference.records)):
        label, kind, parameters, x32 = a
        x64 = b[3]
        if x32.shape != x64.shape:
            continue
        drift = float(np.abs(x32 - x64).max()) if x64.size else 0.0
        scale = float(np.abs(x64).max()) if x64.size else 0.0
        reach = RATIO * drift + FLOOR * scale
        if kind == "maxpool":
            _, gap64 = _window_gaps(x64, parameters)
            _, gap32 = _window_gaps(x32, parameters)
            risky = ((gap64 > 0) & (gap64 <= 2 * reach)) | ((gap64 == 0) & (gap32 != 0))
        else:
            risky = np.zeros(x64.shape, bool)
            for point in parameters:
                margin = np.abs(x64 - point)
                risky |= ((margin > 0) & (margin <= reach)) | ((margin == 0) & (x32 != point))
        if risky.any():
            found.append(f"{label} step {step_of_call(call)} ({int(risky.sum())} value{'s' if risky.sum() > 1 else ''})")
    return found


# -- runs ---------------------------------------------------------------------------------------
def _torch_batch(x, y, dtype):
    xt = torch.from_numpy(x).to(dtype)
    yt = torch.from_numpy(y)
    return xt, (yt.to(dtype) if yt.is_floating_point() else yt)


def _snapshot(model, opt) -> dict:
    """Parameters, buffers and momentum buffers of a torch model, as float64 / int64 numpy."""
    state = {k: v.detach().numpy().astype(np.float64 if v.is_floating_point() else v.numpy().dtype)
             for k, v in model.state_dict().items()}
    names = [n for n, _ in model.named_parameters()]
    for name, p in zip(names, model.parameters()):
        buf = opt.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            state[f"momentum.{name}"] = buf.detach().double().numpy().copy()
    return state


def _gn_snapshot(model, opt) -> dict:
    state = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
    names = [n for n, _ in model.named_parameters()]
    for index, s in opt.state_dict()["state"].items():
        if s.get("momentum_buffer") is not None:
            state[f"momentum.{names[int(index)]}"] = np.array(s["momentum_buffer"], copy=True)
    return state


def _torch_step(model, loss_fn, opt, x, y) -> float:
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()


def torch_trajectory(model, loss_fn, case: Case, batches, dtype, probe: bool = True):
    """Losses of every step and the final state, with the kink probe's records."""
    opt = torch.optim.SGD(model.parameters(), **case.sgd)
    recorder = KinkProbe(model, loss_fn) if probe else None
    losses = [_torch_step(model, loss_fn, opt, *_torch_batch(x, y, dtype)) for x, y in batches]
    if recorder:
        recorder.remove()
    return losses, _snapshot(model, opt), recorder


def _nudge(a: np.ndarray, rng) -> np.ndarray:
    """A float array with a random half of its elements moved one unit in the last place up or down."""
    a = np.asarray(a)
    if a.dtype.kind != "f" or not a.size:
        return a
    direction = np.where(rng.random(a.shape) < 0.5, np.inf, -np.inf).astype(a.dtype)
    return np.where(rng.random(a.shape) < 0.5, np.nextafter(a, direction), a).astype(a.dtype)


def _variant_batch(x, y, rng):
    """The same samples in another order, the inputs nudged by an ulp: another float32 rounding."""
    order = rng.permutation(len(x))
    return _nudge(x[order], rng), y[order]


def _variant_state(state: dict, rng) -> dict:
    return {k: _nudge(np.asarray(v, np.float32) if np.asarray(v).dtype.kind == "f" else v, rng)
            for k, v in state.items()}


def _load(model, opt, state: dict) -> None:
    """Put a graphnn snapshot into a torch model and its optimizer (any float dtype)."""
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items() if not k.startswith("momentum.")})
    for name, p in model.named_parameters():
        buf = state.get(f"momentum.{name}")
        opt.state[p] = {} if buf is None else {"momentum_buffer": torch.from_numpy(np.asarray(buf)).to(p.dtype).clone()}


def graphnn_run(model, case: Case, batches, backend: str):
    """Losses of every step and the state after each (the initial state first)."""
    opt = optim.SGD(model.parameters(), **case.sgd)
    loss_fn = build_loss(nn, case)
    train = gn.compile(model, loss_fn, opt, backend=backend)
    states, losses = [_gn_snapshot(model, opt)], []
    for x, y in batches:
        if case.api == "step":
            losses.append(train.step(x, y))
        else:
            opt.zero_grad()
            losses.append(train.grad(x, y))
            opt.step()
        states.append(_gn_snapshot(model, opt))
    return losses, states


def _family(key: str) -> str:
    if key.startswith("momentum."):
        return "momentum"
    return key.rpartition(".")[2] if key.endswith(("running_mean", "running_var", "num_batches_tracked")) else "parameter"


def _compare_states(ours: dict, theirs32: list, theirs64: dict, into: dict) -> None:
    """Each tensor's (err graphnn, err torch32), relative to torch64, the more lenient of two views
    (torch32's error is the largest over its variants, ``theirs32``):

    - the tensor alone: max abs error / the tensor's largest magnitude;
    - its family (all parameters, all momentum buffers, all running means, all running
      variances): graphnn's max abs error on the tensor, against the largest error torch32 makes
      anywhere in the family, both over the family's largest magnitude. A tensor that is zero
      in exact arithmetic (the gradient of a bias just before a BatchNorm, everything below a
      BatchNorm over a batch of two) holds only rounding noise in every float32
      implementation, of a size set by the terms that cancelled; that noise propagates to the
      rest of the gradient, so the family's largest torch32 error is the noise floor to hold
      graphnn to (the gradient vector's normwise error), not the tensor's own tiny scale.
    """
    scales, errors = {}, {}
    for key, expected in theirs64.items():
        scales[key] = float(np.abs(expected).max()) if expected.dtype.kind == "f" and expected.size else 0.0
        errors[key] = (abs_error(ours.get(key), expected), max(abs_error(t.get(key), expected) for t in theirs32))
    family_scale, family_error = {}, {}
    for key in theirs64:
        f = _family(key)
        family_scale[f] = max(family_scale.get(f, 0.0), scales[key])
        family_error[f] = max(family_error.get(f, 0.0), errors[key][1])
    for key, (ours_abs, theirs_abs) in errors.items():
        own = scales[key] or 1.0
        alone = (ours_abs / own, theirs_abs / own)
        fam = family_scale[_family(key)] or 1.0
        together = (ours_abs / fam, family_error[_family(key)] / fam)
        into[key] = min(alone, together, key=lambda pair: _headroom(*pair))
    for key in ours:
        if key not in theirs64:
            into[key] = (float("inf"), 0.0)  # graphnn holds state torch does not


def _families(keys) -> str:
    """The kinds of quantity among compared keys: "loss, momentum, parameter", say."""
    return ", ".join(sorted({"loss" if k == "loss" else _family(k) for k in keys}))


def _failures(errors: dict) -> list[str]:
    return [k for k, (ours, theirs) in errors.items() if not ours <= RATIO * theirs + FLOOR]


def _summarise(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    compiler = next((l for l in lines[1:] if "error:" in l), None)
    return lines[0][:200] + (f" | {compiler[:200]}" if compiler else "") if lines else type(exc).__name__


def run_case(case: Case, backend: str = "c") -> Result:
    """Train the case in graphnn, torch float32 and torch float64 and judge graphnn."""
    start = time.perf_counter()
    result = Result(case.seed, backend, "pass", description=case.describe(), features=sorted(case.features()))
    batches = make_batches(case)
    torch.manual_seed(case.seed)
    ref32 = build(torch.nn, case)
    initial = {k: v.detach().numpy().copy() for k, v in ref32.state_dict().items()}
    ref64 = copy.deepcopy(ref32).double()
    model = build(nn, case)
    model.load_state_dict(initial)
    for m in (ref32, ref64, model):
        m.train(case.train_mode)
    spare32, spare64 = copy.deepcopy(ref32), copy.deepcopy(ref64)  # for the variants and single steps
    rng = np.random.default_rng([case.seed, 2])
    try:
        losses64, final64, probe64 = torch_trajectory(ref64, build_loss(torch.nn, case), case, batches, torch.float64)
        losses32, final32, probe32 = torch_trajectory(ref32, build_loss(torch.nn, case), case, batches, torch.float32)
        runs32 = [(losses32, final32)]
        for _ in range(VARIANTS - 1):
            _load(spare32, torch.optim.SGD(spare32.parameters()), _variant_state(initial, rng))
            varied = [_variant_batch(x, y, rng) for x, y in batches]
            runs32.append(torch_trajectory(spare32, build_loss(torch.nn, case), case, varied, torch.float32, False)[:2])
    except Exception as exc:  # the generator produced something torch refuses
        result.status, result.cause = "skip", f"torch refused the case: {_summarise(exc)}"
        result.category = "torch refused the case"
        return _done(result, start)
    if not np.isfinite(losses64).all() or not all(np.isfinite(v).all() for v in final64.values()):
        result.status, result.cause = "skip", "diverged in float64"
        result.category = result.cause
        return _done(result, start)
    if not all(np.isfinite(l).all() and all(np.isfinite(v).all() for v in f.values()) for l, f in runs32):
        result.status, result.cause = "skip", "overflows float32 in torch"
        result.category = result.cause
        return _done(result, start)
    try:
        losses, states = graphnn_run(model, case, batches, backend)
    except Exception as exc:
        result.status, result.cause = "fail", f"exception: {_summarise(exc)}"
        result.category = re.sub(r"\d+", "N", result.cause)
        result.description += "\n" + "".join(traceback.format_exception(exc)[-3:]).rstrip()
        return _done(result, start)

    calls_per_step = max(1, len(probe64.records) // max(1, len(batches)))
    trajectory_kinks = kinks_at_risk(probe32, probe64, lambda call: call // calls_per_step)
    result.trajectory["loss"] = (loss_error(losses, losses64), max(loss_error(l, losses64) for l, _ in runs32))
    _compare_states(states[-1], [f for _, f in runs32], final64, result.trajectory)

    local_failures, local_kinks = [], []
    loss_fn32, loss_fn64 = build_loss(torch.nn, case), build_loss(torch.nn, case)
    opt32 = torch.optim.SGD(spare32.parameters(), **case.sgd)
    opt64 = torch.optim.SGD(spare64.parameters(), **case.sgd)
    for k, (x, y) in enumerate(batches):
        _load(spare64, opt64, states[k])
        probe64 = KinkProbe(spare64, loss_fn64)
        l64 = _torch_step(spare64, loss_fn64, opt64, *_torch_batch(x, y, torch.float64))
        probe64.remove()
        s64 = _snapshot(spare64, opt64)
        singles32 = []
        for variant in range(VARIANTS):
            _load(spare32, opt32, states[k] if variant == 0 else _variant_state(states[k], rng))
            xv, yv = (x, y) if variant == 0 else _variant_batch(x, y, rng)
            probe32 = KinkProbe(spare32, loss_fn32) if variant == 0 else None
            l32 = _torch_step(spare32, loss_fn32, opt32, *_torch_batch(xv, yv, torch.float32))
            if probe32:
                probe32.remove()
                first32 = probe32
            singles32.append((l32, _snapshot(spare32, opt32)))
        step_errors = {"loss": (loss_error([losses[k]], [l64]), max(loss_error([l], [l64]) for l, _ in singles32))}
        _compare_states(states[k + 1], [s for _, s in singles32], s64, step_errors)
        for name, errs in step_errors.items():
            if name not in result.local or _headroom(*errs) > _headroom(*result.local[name]):
                result.local[name] = errs
        failed = _failures(step_errors)
        if failed:
            at_risk = kinks_at_risk(first32, probe64, lambda call, k=k: k)
            (local_kinks if at_risk else local_failures).append((k, failed, at_risk))

    trajectory_failed = _failures(result.trajectory)
    lost = max(t for _, t in result.trajectory.values())  # torch float32's own trajectory error
    if local_failures:
        k, failed, _ = local_failures[0]
        result.status = "fail"
        result.cause = (f"step {k} alone differs in {', '.join(failed[:4])}"
                        f"{' ...' if len(failed) > 4 else ''} ({len(local_failures)} of {len(batches)} steps)")
        result.category = f"single steps differ in {_families(f for _, failed, _ in local_failures for f in failed)}"
    elif lost >= CHAOS:
        result.status, result.category = "chaotic", "torch float32 itself lost the trajectory; single steps agree"
        result.cause = (f"torch float32 itself lost the trajectory (err {lost:.2g}): judged on single steps, "
                        f"which agree{f' (the trajectory differs in {trajectory_failed[:3]})' if trajectory_failed else ''}")
    elif trajectory_failed and not trajectory_kinks:
        result.status = "fail"
        result.cause = f"trajectory differs in {', '.join(trajectory_failed[:4])} (every single step agrees)"
        result.category = f"only the trajectory differs, in {_families(trajectory_failed)}"
    elif trajectory_failed or local_kinks:
        result.status = "kink"
        result.cause = (f"differs only where a kink was at risk: trajectory {trajectory_failed[:3]}"
                        + (f", steps {[k for k, _, _ in local_kinks]}" if local_kinks else ""))
        result.kinks = trajectory_kinks + [f"step {k}: {r}" for k, _, risk in local_kinks for r in risk]
        result.category = "differs only where a kink was at risk"
    else:
        result.cause = "agrees"
        result.kinks = trajectory_kinks
    return _done(result, start)


def _done(result: Result, start: float) -> Result:
    result.seconds = time.perf_counter() - start
    return result

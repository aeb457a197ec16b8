"""Random training cases for the differential fuzzer: a model, a loss with matching targets,
SGD settings and the batches of every step, all drawn from one integer seed.

A case is plain data (layer names with their arguments), so the same description builds the
model in ``torch.nn`` and in ``graphnn.nn`` and prints as a line that says what was tried.
Every layer the front end supports is drawn, with sizes that include 1 and odd numbers; the
generator only avoids what PyTorch itself refuses or leaves undefined (batch statistics over a
single value per channel in training, max pooling windows that hold only padding, class
targets that are all ignored under a mean reduction).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

STEPS = 20

ACTIVATIONS = ("ReLU", "Tanh", "Sigmoid", "Hardtanh", "LeakyReLU", "ELU", "GELU", "SiLU", "Softplus", "Softmax",
               "LogSoftmax", "Identity")
LOSSES = ("MSELoss", "L1Loss", "CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss")


@dataclass
class Case:
    """One fuzz case: Sequential(layers) trained for len(batch_sizes) steps of SGD on random batches."""

    seed: int
    kind: str                       # "mlp" or "cnn"
    layers: list                    # [(name, args, kwargs)]: Sequential(*[nn.<name>(*args, **kwargs)])
    input_shape: tuple              # one sample's shape
    batch_sizes: list               # the batch size of every step
    loss: tuple                     # (name, kwargs)
    target: dict                    # how targets are drawn: kind, shape/classes, ignored labels
    sgd: dict                       # torch.optim.SGD keyword arguments
    train_mode: bool = True         # False: model.eval() before training (BatchNorm uses running stats)
    api: str = "step"               # "step": train.step; "grad+step": zero_grad, train.grad, opt.step
    x_scale: float = 1.0
    notes: list = field(default_factory=list)

    def describe(self) -> str:
        """One line per fact, enough to read what the case does without replaying it."""
        layers = ", ".join(f"{n}({', '.join([repr(a) for a in args] + [f'{k}={v!r}' for k, v in kw.items()])})"
                           for n, args, kw in self.layers)
        sizes = sorted(set(self.batch_sizes))
        return (f"seed {self.seed}: {self.kind} input {self.input_shape} batch {sizes if len(sizes) > 1 else sizes[0]}"
                f"{'' if self.train_mode else ' eval-mode'} api={self.api}\n"
                f"  model: Sequential({layers})\n"
                f"  loss: {self.loss[0]}({', '.join(f'{k}={v!r}' for k, v in self.loss[1].items())}) target {self.target}\n"
                f"  sgd: {self.sgd}")

    def layer_names(self) -> set:
        return {n for n, _, _ in self.layers}

    def features(self) -> set:
        """Coarse facts about the case (layers, options, loss settings), to find what failing cases share."""
        facts = {f"{self.kind}", "eval-mode" if not self.train_mode else "train-mode", f"api={self.api}",
                 f"loss={self.loss[0]}"}
        facts |= {f"{n}" for n, _, _ in self.layers}
        facts |= {f"{n}.{k}" for n, _, kw in self.layers for k in kw}
        facts |= {f"{self.loss[0]}.{k}={v}" for k, v in self.loss[1].items() if k != "ignore_index"}
        if "ignore_index" in self.loss[1]:
            facts.add("ignore_index in range")
        facts |= {f"sgd.{k}" for k in self.sgd if k != "lr"}
        facts.add(f"target={self.target['kind']}")
        if min(self.batch_sizes) == 1:
            facts.add("batch 1")
        if len(set(self.batch_sizes)) > 1:
            facts.add("batch size varies")
        return facts


def build(lib, case: Case):
    """The case's model as lib.Sequential (lib is torch.nn or graphnn.nn)."""
    return lib.Sequential(*[getattr(lib, name)(*args, **kwargs) for name, args, kwargs in case.layers])


def build_loss(lib, case: Case):
    """The case's loss module in lib (torch.nn or graphnn.nn)."""
    name, kwargs = case.loss
    return getattr(lib, name)(**kwargs)


# -- drawing ------------------------------------------------------------------------------------
def _pick(rng, values):
    return values[int(rng.integers(len(values)))]


def _nice(x: float, digits: int = 3) -> float:
    """x rounded to a few significant digits, so a case prints (and replays) readably."""
    return float(f"{x:.{digits}g}")


def _activation(rng) -> tuple:
    name = _pick(rng, ACTIVATIONS)
    if name == "Hardtanh":
        if rng.random() < 0.4:
            return name, [], {}
        lo = _nice(-rng.uniform(0.0, 2.0))
        return name, [], {"min_val": lo, "max_val": _nice(lo + rng.uniform(0.05, 3.0))}
    if name == "LeakyReLU":
        return name, ([] if rng.random() < 0.4 else [_nice(rng.uniform(0.0, 0.5))]), {}
    if name == "ELU":
        return name, ([] if rng.random() < 0.4 else [_nice(rng.uniform(0.1, 2.0))]), {}
    if name == "GELU":
        return name, [], {"approximate": _pick(rng, ("none", "tanh"))}
    if name == "Softplus":
        if rng.random() < 0.4:
            return name, [], {}
        return name, [], {"beta": _nice(rng.uniform(0.5, 3.0)), "threshold": _nice(rng.uniform(1.0, 20.0))}
    if name in ("Softmax", "LogSoftmax"):
        return name, [], {"dim": 1}
    return name, [], {}


def _dropout(rng, train_mode: bool) -> tuple:
    # in training, graphnn's masks differ from torch's by design: only p=0 and p=1 are comparable
    if train_mode:
        return "Dropout", [], {"p": 1.0 if rng.random() < 0.15 else 0.0}
    return "Dropout", [], {"p": _nice(rng.uniform(0.05, 0.9))}


def _batchnorm(rng, name: str, channels: int, per_channel: int, train_mode: bool):
    """A BatchNorm layer, or None when this batch would give torch a single value per channel."""
    track = rng.random() < 0.8
    if per_channel <= 1 and (train_mode or not track):
        return None
    kwargs = {}
    if not track:
        kwargs["track_running_stats"] = False
    if rng.random() < 0.3:
        kwargs["momentum"] = _nice(rng.uniform(0.01, 1.0))
    if rng.random() < 0.3:
        kwargs["eps"] = _pick(rng, (1e-3, 1e-1, 1e-7))
    if rng.random() < 0.2:
        kwargs["affine"] = False
    elif rng.random() < 0.1:
        kwargs["bias"] = False
    return name, [channels], kwargs


def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _window_reads_input(size: int, k: int, s: int, p: int, d: int) -> bool:
    return all(any(0 <= o * s - p + j * d < size for j in range(k)) for o in range(_out_size(size, k, s, p, d)))


def _conv(rng, channels: int, hw: tuple):
    """(layer, out_channels, out_hw) for a random Conv2d that fits hw, or None."""
    for _ in range(20):
        square = rng.random() < 0.7
        k = (int(rng.integers(1, 5)),) * 2 if square else tuple(int(v) for v in rng.integers(1, 5, 2))
        s = (1, 1) if rng.random() < 0.5 else tuple(int(v) for v in rng.integers(1, 4, 2))
        d = (1, 1) if rng.random() < 0.7 else tuple(int(v) for v in rng.integers(1, 3, 2))
        p = tuple(int(v) for v in rng.integers(0, 3, 2))
        out_ch = _pick(rng, (1, 2, 3, 4, 5, 6, 8))
        kwargs = {}
        mode = rng.random()
        if mode < 0.1 and s == (1, 1) and all(dd * (kk - 1) % 2 == 0 for kk, dd in zip(k, d)):
            kwargs["padding"] = "same"
            p = tuple(dd * (kk - 1) // 2 for kk, dd in zip(k, d))
        elif mode < 0.15:
            kwargs["padding"] = "valid"
            p = (0, 0)
        elif p != (0, 0):
            kwargs["padding"] = p if p[0] != p[1] else p[0]
        out = tuple(_out_size(n, kk, ss, pp, dd) for n, kk, ss, pp, dd in zip(hw, k, s, p, d))
        if min(out) < 1:
            continue
        if s != (1, 1):
            kwargs["stride"] = s if s[0] != s[1] else s[0]
        if d != (1, 1):
            kwargs["dilation"] = d if d[0] != d[1] else d[0]
        groups = [g for g in (2, 3) if channels % g == 0 and out_ch % g == 0]
        if groups and rng.random() < 0.3:
            kwargs["groups"] = _pick(rng, groups)
        if rng.random() < 0.15:
            kwargs["bias"] = False
        return ("Conv2d", [channels, out_ch, k if not square else k[0]], kwargs), out_ch, out
    return None


def _pool(rng, hw: tuple):
    """(layer, out_hw) for a random MaxPool2d or AvgPool2d that fits hw, or None."""
    for _ in range(20):
        is_max = rng.random() < 0.6
        square = rng.random() < 0.75
        k = (int(rng.integers(1, 4)),) * 2 if square else tuple(int(v) for v in rng.integers(1, 4, 2))
        s = k if rng.random() < 0.5 else tuple(int(v) for v in rng.integers(1, 4, 2))
        p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
        d = (1, 1) if not is_max or rng.random() < 0.75 else tuple(int(v) for v in rng.integers(1, 3, 2))
        out = tuple(_out_size(n, kk, ss, pp, dd) for n, kk, ss, pp, dd in zip(hw, k, s, p, d))
        if min(out) < 1:
            continue
        if is_max and not all(_window_reads_input(n, kk, ss, pp, dd) for n, kk, ss, pp, dd in zip(hw, k, s, p, d)):
            continue
        kwargs = {}
        if s != k:
            kwargs["stride"] = s if s[0] != s[1] else s[0]
        if p != (0, 0):
            kwargs["padding"] = p if p[0] != p[1] else p[0]
        if is_max:
            if d != (1, 1):
                kwargs["dilation"] = d if d[0] != d[1] else d[0]
            return ("MaxPool2d", [k if not square else k[0]], kwargs), out
        if p != (0, 0) and rng.random() < 0.4:
            kwargs["count_include_pad"] = False
        if rng.random() < 0.15:
            kwargs["divisor_override"] = int(rng.integers(1, k[0] * k[1] + 3))
        return ("AvgPool2d", [k if not square else k[0]], kwargs), out
    return None


def _mlp_layers(rng, features: int, train_mode: bool, min_batch: int, layers: list) -> int:
    """Hidden Linear blocks (with BatchNorm1d, activation, Dropout) appended to layers; returns the width."""
    for _ in range(int(rng.integers(0, 4))):
        width = _pick(rng, (1, 2, 3, 4, 5, 7, 8, 11, 16, 24, 32))
        layers.append(("Linear", [features, width], {} if rng.random() < 0.85 else {"bias": False}))
        features = width
        if rng.random() < 0.3:
            bn = _batchnorm(rng, "BatchNorm1d", width, min_batch, train_mode)
            if bn:
                layers.append(bn)
        if rng.random() < 0.85:
            layers.append(_activation(rng))
        if rng.random() < 0.2:
            layers.append(_dropout(rng, train_mode))
    return features


def make_case(seed: int, steps: int = STEPS) -> Case:
    """The case for one seed (the same seed always gives the same case)."""
    rng = np.random.default_rng(seed)
    kind = "mlp" if rng.random() < 0.5 else "cnn"
    train_mode = rng.random() < 0.8
    batch = _pick(rng, (1, 1, 2, 3, 4, 5, 7, 8, 13, 16, 32))
    if rng.random() < 0.3:  # the batch size changes between steps (one program serves them all)
        pool = sorted({batch, _pick(rng, (1, 2, 3, 6, 9, 17)), _pick(rng, (2, 4, 5, 11))})
        batch_sizes = [int(b) for b in rng.choice(pool, steps)]
    else:
        batch_sizes = [batch] * steps
    min_batch = min(batch_sizes)

    loss_name = _pick(rng, LOSSES)
    reduction = "sum" if rng.random() < 0.3 else "mean"
    classification = loss_name in ("CrossEntropyLoss", "NLLLoss")
    outputs = _pick(rng, (1, 2, 3, 3, 5, 7, 10)) if classification else _pick(rng, (1, 2, 3, 4, 7))
    layers: list = []
    spatial_output = None

    if kind == "mlp":
        if rng.random() < 0.15:  # (N, C, L) input: BatchNorm1d over channels and length, then Flatten
            channels, length = _pick(rng, (1, 2, 3, 5)), _pick(rng, (1, 2, 3, 4, 7))
            input_shape = (channels, length)
            bn = _batchnorm(rng, "BatchNorm1d", channels, min_batch * length, train_mode)
            if bn:
                layers.append(bn)
            if rng.random() < 0.5:
                layers.append(_activation(rng))
            layers.append(("Flatten", [], {}))
            features = channels * length
        else:
            features = _pick(rng, (1, 2, 3, 5, 7, 8, 13, 20, 33))
            input_shape = (features,)
        features = _mlp_layers(rng, features, train_mode, min_batch, layers)
    else:
        channels = _pick(rng, (1, 2, 3, 4))
        hw = tuple(int(v) for v in rng.integers(1, 14, 2)) if rng.random() < 0.3 else (int(rng.integers(1, 14)),) * 2
        input_shape = (channels,) + hw
        for _ in range(int(rng.integers(1, 4))):
            conv = _conv(rng, channels, hw)
            if conv is None:
                break
            layer, channels, hw = conv
            layers.append(layer)
            if rng.random() < 0.35:
                bn = _batchnorm(rng, "BatchNorm2d", channels, min_batch * hw[0] * hw[1], train_mode)
                if bn:
                    layers.append(bn)
            if rng.random() < 0.8:
                layers.append(_activation(rng))
            if rng.random() < 0.5:
                pool = _pool(rng, hw)
                if pool is not None:
                    layer, hw = pool
                    layers.append(layer)
        if not classification and rng.random() < 0.25:
            spatial_output = (channels,) + hw  # the loss compares (N, C, H, W) maps
        else:
            layers.append(("Flatten", [], {}))
            features = channels * hw[0] * hw[1]
            if rng.random() < 0.15:
                layers.append(_dropout(rng, train_mode))
            if rng.random() < 0.3:
                features = _mlp_layers(rng, features, train_mode, min_batch, layers)
    if spatial_output is None:
        layers.append(("Linear", [features, outputs], {} if rng.random() < 0.9 else {"bias": False}))
        if loss_name == "NLLLoss":
            layers.append(("LogSoftmax", [], {"dim": 1}))
        output_shape = (outputs,)
    else:
        output_shape = spatial_output

    loss_kwargs = {} if reduction == "mean" else {"reduction": "sum"}
    if classification:
        target = {"kind": "class", "classes": outputs}
        if loss_name == "CrossEntropyLoss" and rng.random() < 0.25:
            target = {"kind": "probabilities", "shape": output_shape}
        elif rng.random() < 0.4:
            ignore = -100 if rng.random() < 0.7 or outputs == 1 else int(rng.integers(0, outputs))
            if ignore != -100:
                loss_kwargs["ignore_index"] = ignore
            target["ignore_index"], target["ignored_fraction"] = ignore, _nice(rng.uniform(0.1, 0.5))
    elif loss_name == "BCEWithLogitsLoss":
        target = {"kind": "binary" if rng.random() < 0.5 else "probabilities", "shape": output_shape}
    else:
        target = {"kind": "real", "shape": output_shape}

    lr = 10 ** rng.uniform(-2.5, -0.5)
    if reduction == "sum":  # gradients grow with the batch and the output size
        lr /= math.sqrt(np.mean(batch_sizes) * int(np.prod(output_shape)))
    sgd = {"lr": _nice(lr)}
    if rng.random() < 0.7:
        sgd["momentum"] = _nice(rng.uniform(0.0, 0.95))
        if rng.random() < 0.4:
            sgd["dampening"] = _nice(rng.uniform(0.0, 1.0))
        elif rng.random() < 0.5:
            sgd["nesterov"] = True
    if rng.random() < 0.5:
        sgd["weight_decay"] = _nice(10 ** rng.uniform(-4, -1))
    if rng.random() < 0.15:
        sgd["maximize"] = True
        sgd["lr"] = _nice(sgd["lr"] * 0.1)
    return Case(seed=seed, kind=kind, layers=layers, input_shape=input_shape, batch_sizes=batch_sizes,
                loss=(loss_name, loss_kwargs), target=target, sgd=sgd, train_mode=train_mode,
                api="grad+step" if rng.random() < 0.15 else "step",
                x_scale=_pick(rng, (1.0, 1.0, 0.5, 3.0)))


def make_batches(case: Case) -> list:
    """[(x, target)] for every step: float32 inputs, float32 or int64 targets."""
    rng = np.random.default_rng([case.seed, 1])
    batches = []
    for n in case.batch_sizes:
        x = (rng.standard_normal((n,) + tuple(case.input_shape)) * case.x_scale).astype(np.float32)
        t = case.target
        if t["kind"] == "class":
            y = rng.integers(0, t["classes"], n).astype(np.int64)
            if "ignore_index" in t:
                ignored = rng.random(n) < t["ignored_fraction"]
                y[ignored] = t["ignore_index"]
                kept = int(rng.integers(n))  # a mean over no labels is 0/0 in torch too
                if y[kept] == t["ignore_index"]:
                    y[kept] = (max(y[kept], 0) + 1) % t["classes"]
        elif t["kind"] == "probabilities":
            p = rng.random((n,) + tuple(t["shape"])).astype(np.float32)
            y = p / p.sum(1, keepdims=True) if case.loss[0] == "CrossEntropyLoss" else p
        elif t["kind"] == "binary":
            y = (rng.random((n,) + tuple(t["shape"])) < 0.5).astype(np.float32)
        else:
            y = rng.standard_normal((n,) + tuple(t["shape"])).astype(np.float32)
        batches.append((x, y.astype(np.float32) if y.dtype.kind == "f" else y))
    return batches

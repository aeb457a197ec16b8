"""Modules, losses and nn.functional on graphnn tensors, against torch with the same weights.

``model(x)`` on a Tensor runs the module's cached inference program and gives a Tensor (as
PyTorch's, requiring grad while grad mode is on, with PyTorch's grad_fn name); losses and
functions without parameters evaluate op by op; unbatched inputs, state dicts of tensors,
devices and the process-wide backend choice behave as a PyTorch user expects.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import nn
from graphnn.nn import functional as F

RNG = np.random.default_rng(0)


def same_weights(ours, theirs) -> None:
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})


def close(ours, theirs, rtol=1e-5, atol=1e-6) -> None:
    assert isinstance(ours, gn.Tensor), type(ours)
    assert tuple(ours.shape) == tuple(theirs.shape)
    assert repr(ours.dtype) == repr(theirs.dtype)
    np.testing.assert_allclose(ours.numpy(force=True) if ours.requires_grad else ours.numpy(),
                               theirs.detach().numpy(), rtol=rtol, atol=atol)


MODELS = {
    "linear": (lambda m: m.Linear(5, 3), (4, 5), "AddmmBackward0"),
    "linear-no-bias": (lambda m: m.Linear(5, 3, bias=False), (4, 5), "MmBackward0"),
    "linear-3d": (lambda m: m.Linear(5, 3), (2, 4, 5), "ViewBackward0"),
    "mlp-relu": (lambda m: m.Sequential(m.Linear(5, 8), m.ReLU()), (4, 5), "ReluBackward0"),
    "mlp-tanh": (lambda m: m.Sequential(m.Linear(5, 8), m.Tanh()), (4, 5), "TanhBackward0"),
    "mlp-logsoftmax": (lambda m: m.Sequential(m.Linear(5, 8), m.LogSoftmax(dim=1)), (4, 5), "LogSoftmaxBackward0"),
    "mlp-softmax": (lambda m: m.Sequential(m.Linear(5, 8), m.Softmax(dim=1)), (4, 5), "SoftmaxBackward0"),
    "cnn": (lambda m: m.Sequential(m.Conv2d(1, 2, 3, padding=1), m.ReLU(), m.MaxPool2d(2)), (2, 1, 6, 6),
            "MaxPool2DWithIndicesBackward0"),
    "conv": (lambda m: m.Conv2d(1, 2, 3), (2, 1, 5, 5), "ConvolutionBackward0"),
    "flatten": (lambda m: m.Sequential(m.Linear(5, 4), m.Flatten(0)), (3, 5), "ViewBackward0"),
    "batchnorm-eval": (lambda m: m.Sequential(m.Linear(5, 4), m.BatchNorm1d(4)).eval(), (3, 5),
                       "NativeBatchNormBackward0"),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_model_on_tensors_gives_torchs_tensor(name):
    build, shape, grad_fn = MODELS[name]
    torch.manual_seed(0)
    theirs = build(torch.nn)
    ours = build(nn)
    same_weights(ours, theirs)
    x = RNG.standard_normal(shape).astype(np.float32)
    out, ref = ours(gn.tensor(x)), theirs(torch.tensor(x))
    close(out, ref)
    assert out.requires_grad and type(out.grad_fn).__name__ == "GradFn"
    assert out.grad_fn.name() == type(ref.grad_fn).__name__ == grad_fn
    with gn.no_grad(), torch.no_grad():
        quiet, ref = ours(gn.tensor(x)), theirs(torch.tensor(x))
    close(quiet, ref)
    assert not quiet.requires_grad and quiet.grad_fn is None
    assert repr(quiet) == repr(ref)
    np.testing.assert_array_equal(ours(x), quiet.numpy())  # arrays in, arrays out, the same program


def test_repr_of_a_model_output_is_torchs():
    torch.manual_seed(0)
    theirs = torch.nn.Linear(1, 1)
    ours = nn.Linear(1, 1)
    same_weights(ours, theirs)
    x = [[1.5], [0.25]]
    assert repr(ours(gn.tensor(x))) == repr(theirs(torch.tensor(x)))


def test_an_unbatched_sample_runs_as_in_torch():
    """The thermometer chapter's ``linear_model(torch.ones(1))``: one sample, no batch axis."""
    torch.manual_seed(0)
    theirs = torch.nn.Linear(1, 1)
    ours = nn.Linear(1, 1)
    same_weights(ours, theirs)
    for _ in range(2):  # the second call takes the program remembered for unbatched inputs
        out, ref = ours(gn.ones(1)), theirs(torch.ones(1))
        close(out, ref)
        assert repr(out) == repr(ref)
    close(ours(gn.ones(3, 1)), theirs(torch.ones(3, 1)))  # a batch still runs the batched program
    with pytest.raises(gn.ShapeError, match="last dimension 1"):
        ours(gn.ones(3, 2))


LOSSES = [
    ("CrossEntropyLoss", {}, "labels", "NllLossBackward0"),
    ("CrossEntropyLoss", {"reduction": "sum"}, "labels", "NllLossBackward0"),
    ("CrossEntropyLoss", {"ignore_index": 1}, "labels", "NllLossBackward0"),
    ("NLLLoss", {}, "labels", "NllLossBackward0"),
    ("CrossEntropyLoss", {"label_smoothing": 0.1}, "labels", "AddBackward0"),
    ("CrossEntropyLoss", {"weight": "class weights"}, "labels", "NllLossBackward0"),
    ("NLLLoss", {"weight": "class weights", "reduction": "none"}, "labels", "NllLossBackward0"),
    ("MSELoss", {}, "values", "MseLossBackward0"),
    ("MSELoss", {"reduction": "none"}, "values", "MseLossBackward0"),
    ("L1Loss", {}, "values", "MeanBackward0"),
    ("BCEWithLogitsLoss", {}, "probabilities", "BinaryCrossEntropyWithLogitsBackward0"),
]


@pytest.mark.parametrize("name,kwargs,target,grad_fn", LOSSES, ids=lambda v: str(v))
def test_losses_on_tensors_match_torch(name, kwargs, target, grad_fn):
    x = RNG.standard_normal((6, 4)).astype(np.float32)
    y = {"labels": RNG.integers(0, 4, 6), "values": RNG.standard_normal((6, 4)).astype(np.float32),
         "probabilities": RNG.random((6, 4)).astype(np.float32)}[target]
    weights = np.array([0.5, 1.0, 2.0, 0.25], np.float32)
    ours = getattr(nn, name)(**{k: gn.tensor(weights) if v == "class weights" else v for k, v in kwargs.items()})
    theirs = getattr(torch.nn, name)(**{k: torch.tensor(weights) if v == "class weights" else v
                                        for k, v in kwargs.items()})
    close(ours(gn.tensor(x), gn.tensor(y)), theirs(torch.tensor(x), torch.tensor(y)))
    grad_x, ref_x = gn.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, ref = ours(grad_x, gn.tensor(y)), theirs(ref_x, torch.tensor(y))
    assert out.grad_fn.name() == type(ref.grad_fn).__name__ == grad_fn
    if out.ndim == 0:
        assert repr(out) == repr(ref)


def test_a_label_out_of_range_is_torchs_index_error():
    with pytest.raises(IndexError, match="Target 7 is out of bounds"):
        nn.CrossEntropyLoss()(gn.zeros(2, 3), gn.tensor([0, 7]))


FUNCTIONS = [
    ("relu", lambda f, x: f.relu(x)),
    ("softmax", lambda f, x: f.softmax(x, dim=1)),
    ("log_softmax", lambda f, x: f.log_softmax(x, dim=-1)),
    ("gelu", lambda f, x: f.gelu(x)),
    ("silu", lambda f, x: f.silu(x)),
    ("leaky_relu", lambda f, x: f.leaky_relu(x, 0.2)),
    ("elu", lambda f, x: f.elu(x)),
    ("softplus", lambda f, x: f.softplus(x)),
    ("hardtanh", lambda f, x: f.hardtanh(x)),
    ("sigmoid", lambda f, x: f.sigmoid(x)),
    ("tanh", lambda f, x: f.tanh(x)),
    ("dropout-eval", lambda f, x: f.dropout(x, 0.5, training=False)),
    ("max_pool2d", lambda f, x: f.max_pool2d(x.reshape(2, 1, 3, 4), 2, 1)),
    ("avg_pool2d", lambda f, x: f.avg_pool2d(x.reshape(2, 1, 3, 4), 2, 1)),
    ("nll_loss-sum", lambda f, x: f.nll_loss(f.log_softmax(x, dim=1), _labels(x), reduction="sum")),
    ("cross_entropy", lambda f, x: f.cross_entropy(x, _labels(x))),
    ("mse_loss", lambda f, x: f.mse_loss(x, x * 0.5)),
    ("layer_norm", lambda f, x: f.layer_norm(x, (4,), x[0], x[1])),
    ("rms_norm", lambda f, x: f.rms_norm(x.reshape(2, 3, 4), (3, 4))),
    ("softmax-3d-last", lambda f, x: f.softmax(x.reshape(2, 3, 4), dim=-1)),
    ("cross_entropy-3d", lambda f, x: f.cross_entropy(x.reshape(2, 3, 4), _lib(x).tensor([[0, 2, 1, 1], [2, 0, 0, 1]]),
                                                      label_smoothing=0.2)),
]


def _lib(x):
    return gn if isinstance(x, gn.Tensor) else torch


def _labels(x):
    return _lib(x).tensor([0, 3, 1, 2, 2, 0])[:x.shape[0]]


@pytest.mark.parametrize("name,call", FUNCTIONS, ids=[n for n, _ in FUNCTIONS])
def test_functional_on_tensors_matches_torch(name, call):
    x = RNG.standard_normal((6, 4)).astype(np.float32)
    close(call(F, gn.tensor(x)), call(torch.nn.functional, torch.tensor(x)))


def test_functional_with_parameters_evaluates_eagerly():
    torch.manual_seed(0)
    conv, linear = torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.Linear(4, 5)
    x = RNG.standard_normal((2, 2, 4, 4)).astype(np.float32)
    w, b = gn.tensor(conv.weight.detach().numpy()), gn.tensor(conv.bias.detach().numpy())
    close(F.conv2d(gn.tensor(x), w, b, padding=1), torch.nn.functional.conv2d(torch.tensor(x), conv.weight, conv.bias,
                                                                             padding=1), rtol=1e-4, atol=1e-5)
    v = RNG.standard_normal((3, 4)).astype(np.float32)
    close(F.linear(gn.tensor(v), gn.tensor(linear.weight.detach().numpy()), gn.tensor(linear.bias.detach().numpy())),
          torch.nn.functional.linear(torch.tensor(v), linear.weight, linear.bias))


def test_dropout_in_training_mode_draws_from_the_global_seed():
    layer = nn.Dropout(0.5)
    x = gn.ones(1000)
    gn.manual_seed(3)
    a = layer(x)
    gn.manual_seed(3)
    b = layer(x)
    assert bool((a == b).all())
    kept = a.numpy()
    assert set(np.unique(kept)) <= {0.0, 2.0} and 400 < (kept == 2).sum() < 600
    assert bool((layer.eval()(x) == x).all())


def test_reading_parameters_outside_forward():
    torch.manual_seed(0)
    theirs = torch.nn.Linear(3, 2)
    ours = nn.Linear(3, 2)
    same_weights(ours, theirs)
    assert ours.bias[0].item() == pytest.approx(theirs.bias[0].item())
    close(ours.weight[:, 0], theirs.weight[:, 0].detach())
    assert repr(ours.weight[:, 0]) == repr(theirs.weight[:, 0])  # grad_fn=<SelectBackward0>
    assert repr(ours.weight) == repr(theirs.weight)
    close((ours.weight * 2).sum(), (theirs.weight * 2).sum())


def test_state_dict_gives_tensors_sharing_storage_and_loads_tensors():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    state = model.state_dict()
    assert all(isinstance(v, gn.Tensor) for v in state.values())
    assert repr(state["1.num_batches_tracked"]) == repr(torch.nn.BatchNorm1d(2).state_dict()["num_batches_tracked"])
    state["0.bias"][0] = 5.0  # in place, as torch's state_dict tensors share the parameters' storage
    assert model[0].bias[0].item() == 5.0
    other = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    other.load_state_dict({k: v.clone() for k, v in state.items()})
    assert bool((other[0].weight.data == model[0].weight.data).all())


def test_save_and_load_round_trip_tensors(tmp_path):
    model = nn.Linear(3, 2)
    gn.save(model.state_dict(), tmp_path / "model.pth")
    loaded = gn.load(tmp_path / "model.pth", weights_only=True)
    assert set(loaded) == {"weight", "bias"} and all(isinstance(v, gn.Tensor) for v in loaded.values())
    fresh = nn.Linear(3, 2)
    fresh.load_state_dict(loaded)
    assert repr(fresh.weight) == repr(model.weight)


def test_devices_tell_the_truth_about_the_backends(monkeypatch):
    model = nn.Linear(2, 2)
    assert model.to("cpu") is model and model.cpu() is model and model.float() is model
    assert gn.device("cpu") == "cpu" and repr(gn.device("cuda:0")) == "device(type='cuda', index=0)"
    assert gn.zeros(2).device == gn.device("cpu") and gn.zeros(2).to("cpu").device.type == "cpu"
    if not gn.cuda.is_available():
        assert not gn.accelerator.is_available() and gn.accelerator.current_accelerator() is None
        for call in (lambda: model.to("cuda"), lambda: model.cuda(), lambda: gn.zeros(2).cuda(),
                     lambda: gn.zeros(2, device="cuda")):
            with pytest.raises(RuntimeError, match="'cuda' is not available"):
                call()
    with pytest.raises(TypeError, match="float32"):
        model.double()


def test_the_backend_for_the_whole_process_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("GRAPHNN_BACKEND", "numpy")
    model = nn.Linear(2, 2)
    with gn.no_grad():  # the module's inference program (with grad, the call is recorded)
        out = model(gn.ones(3, 2))
    assert model.__dict__["_eager_program"].backend == "numpy"
    assert gn.compile(model).backend == "numpy"
    monkeypatch.setenv("GRAPHNN_BACKEND", "fortran")
    with pytest.raises(ValueError, match="GRAPHNN_BACKEND='fortran' names no backend"):
        gn.compile(model)
    monkeypatch.delenv("GRAPHNN_BACKEND")
    np.testing.assert_allclose(gn.compile(model)(np.ones((3, 2), np.float32)), out.numpy(force=True), rtol=1e-6)


def test_buffers_read_as_attributes_are_tensors_sharing_the_module_memory():
    """``bn.running_mean`` is a tensor as in PyTorch (repr, dtype, clone), and an in-place write
    to it reaches the module's state."""
    torch.manual_seed(0)
    theirs = torch.nn.BatchNorm1d(3)
    ours = gn.nn.BatchNorm1d(3)
    x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    theirs(torch.tensor(x))
    ours(gn.tensor(x))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        a, b = getattr(ours, name), getattr(theirs, name)
        assert repr(a) == repr(b) and str(a.dtype) == str(b.dtype), name
    saved = ours.running_mean.clone()
    ours.running_mean.fill_(2.0)
    np.testing.assert_array_equal(np.asarray(ours.state_dict()["running_mean"]), np.full(3, 2.0, np.float32))
    assert not np.array_equal(saved.numpy(), ours.running_mean.numpy())

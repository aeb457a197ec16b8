"""Convolution and pooling against torch on every backend: forward outputs, gradients of the
input, weight and bias, and 20 SGD-momentum steps, over drawn configurations (kernel sizes 1-5,
stride 1-3, padding 0-2, dilation 1-2, groups, odd spatial sizes, batch 1)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import graphnn as gn
from graphnn import autodiff, backends, nn, optim
from graphnn import pointwise as pw
from graphnn.executable import scalar_storage
from graphnn.nn.conv import empty_window
from graphnn.ops import Builder, ShapeError
from tests.conftest import assert_state_close, copy_torch_weights

CONV_SETTINGS = settings(max_examples=int(os.environ.get("GRAPHNN_CONV_EXAMPLES", 6)), deadline=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def conv_configs(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    spans = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    spatial = tuple(draw(st.integers(max(1, s - 2 * p), max(1, s - 2 * p) + 6)) for s, p in zip(spans, padding))
    return dict(in_channels=groups * draw(st.integers(1, 2)), out_channels=groups * draw(st.integers(1, 3)),
                kernel_size=kernel, stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))), padding=padding,
                dilation=dilation, groups=groups, bias=draw(st.booleans()), spatial=spatial,
                batch=draw(st.sampled_from([1, 2, 3, 5])))


@st.composite
def pool_configs(draw):
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple(draw(st.integers(0, min(2, k // 2))) for k in kernel)
    spans = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    spatial = tuple(draw(st.integers(max(1, s - 2 * p), max(1, s - 2 * p) + 6)) for s, p in zip(spans, padding))
    return dict(kernel_size=kernel, stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))), padding=padding,
                dilation=dilation, spatial=spatial, channels=draw(st.integers(1, 3)), batch=draw(st.sampled_from([1, 2, 5])))


def conv_pair(config):
    """A torch Conv2d and the graphnn one with its weights."""
    arguments = {k: v for k, v in config.items() if k not in ("spatial", "batch")}
    ref = torch.nn.Conv2d(**arguments)
    model = nn.Conv2d(**arguments)
    copy_torch_weights(model, ref)
    return ref, model


def executable(backend: str, graphs: dict, persistent: dict):
    return backends.get(backend).executable(graphs, scalar_storage(graphs), persistent)


def gradients(model, x: np.ndarray, upstream: np.ndarray, backend: str) -> dict:
    """The output of ``model`` on ``x`` and the gradients of sum(output * upstream) with respect
    to the input and every parameter, computed by graphnn's autodiff on ``backend``."""
    graph = gn.trace(model, x)
    output = graph.outputs["output"]
    b = Builder(graph)
    weights = b.leaf("input", "upstream", output.shape)
    loss = b.reshape(b.reduce("sum", b.pointwise(pw.mul, output, weights), range(len(output.shape))), ())
    params = graph.params
    wrt = graph.inputs[:1] + params
    graph, grads = autodiff.gradients(graph, loss, wrt)
    results = {"output": output}
    results.update({f"grad.{leaf.attrs['name']}": grads[leaf.id] for leaf in wrt})
    graphs = {"forward": graph.variant(results, {})}
    values = dict(model.named_parameters())
    persistent = {leaf.attrs["name"]: (lambda p=values[leaf.attrs["name"]]: np.asarray(p.data)) for leaf in params}
    persistent.update({name: lambda a=array: a for name, array in graph.constants.items()})
    return executable(backend, graphs, persistent).run("forward", x.shape[0], [x, upstream], {})


def torch_gradients(ref, x: np.ndarray, upstream: np.ndarray) -> dict:
    xt = torch.from_numpy(x).requires_grad_(True)
    out = ref(xt)
    (out * torch.from_numpy(upstream)).sum().backward()
    results = {"output": out.detach().numpy(), "grad.input": xt.grad.numpy()}
    results.update({f"grad.{name}": p.grad.numpy() for name, p in ref.named_parameters()})
    return results


def assert_results_close(got: dict, expected: dict, rtol=1e-4, atol=1e-5) -> None:
    assert set(got) == set(expected)
    for name, value in expected.items():
        scale = max(1.0, float(np.abs(value).max())) if value.size else 1.0
        np.testing.assert_allclose(got[name], value, rtol=rtol, atol=atol * scale, err_msg=name)


def train_both(ref, model, x, target, backend, loss="mse", steps=20, rtol=2e-4):
    """``steps`` SGD-momentum steps in torch and in graphnn from the same weights: the losses and
    the final parameters and buffers agree."""
    torch_loss, loss_fn = {"mse": (torch.nn.functional.mse_loss, nn.MSELoss()),
                           "ce": (torch.nn.functional.cross_entropy, nn.CrossEntropyLoss())}[loss]
    torch_opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    expected = []
    for _ in range(steps):
        torch_opt.zero_grad()
        value = torch_loss(ref(torch.from_numpy(x)), torch.from_numpy(target))
        value.backward()
        torch_opt.step()
        expected.append(value.item())
    train = gn.compile(model, loss_fn, optim.SGD(model.parameters(), lr=0.05, momentum=0.9), backend=backend)
    losses = [train.step(x, target) for _ in range(steps)]
    np.testing.assert_allclose(losses, expected, rtol=rtol, atol=1e-6)
    assert_state_close(model, ref, rtol=rtol, atol=1e-5)


@CONV_SETTINGS
@given(config=conv_configs(), seed=st.integers(0, 2**16))
@example(config=dict(in_channels=1, out_channels=2, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1),
                     dilation=(1, 1), groups=1, bias=True, spatial=(5, 7), batch=1), seed=0)
@example(config=dict(in_channels=4, out_channels=6, kernel_size=(5, 2), stride=(3, 2), padding=(2, 1),
                     dilation=(2, 1), groups=2, bias=False, spatial=(11, 6), batch=3), seed=1)
def test_conv2d_matches_torch(backend, config, seed):
    torch.manual_seed(seed)
    ref, model = conv_pair(config)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((config["batch"], config["in_channels"]) + config["spatial"]).astype(np.float32)
    expected_shape = tuple(ref(torch.from_numpy(x)).shape)
    upstream = rng.standard_normal(expected_shape).astype(np.float32)
    assert_results_close(gradients(model, x, upstream, backend), torch_gradients(ref, x, upstream))
    train_both(ref, model, x, rng.standard_normal(expected_shape).astype(np.float32), backend)


@CONV_SETTINGS
@given(config=pool_configs(), seed=st.integers(0, 2**16), count_include_pad=st.booleans())
@example(config=dict(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1), spatial=(5, 5), channels=1,
                     batch=1), seed=0, count_include_pad=True)
@example(config=dict(kernel_size=(2, 3), stride=(2, 3), padding=(0, 0), dilation=(1, 1), spatial=(6, 9), channels=3,
                     batch=2), seed=1, count_include_pad=True)  # windows that tile the input: a reshape
def test_pooling_matches_torch(backend, config, seed, count_include_pad):
    # a dilated window can step over the whole input; graphnn refuses that (test below)
    assume(empty_window(config["spatial"], config["kernel_size"], config["stride"], config["padding"],
                        config["dilation"]) is None)
    rng = np.random.default_rng(seed)
    # a coarse grid of values makes ties inside windows common: the gradient must go to the first
    x = rng.integers(-2, 3, (config["batch"], config["channels"]) + config["spatial"]).astype(np.float32)
    common = dict(kernel_size=config["kernel_size"], stride=config["stride"], padding=config["padding"])
    pools = [(torch.nn.MaxPool2d(dilation=config["dilation"], **common), nn.MaxPool2d(dilation=config["dilation"], **common)),
             (torch.nn.AvgPool2d(count_include_pad=count_include_pad, **common),
              nn.AvgPool2d(count_include_pad=count_include_pad, **common))]
    for ref, model in pools:
        shape = tuple(ref(torch.from_numpy(x)).shape)
        upstream = rng.standard_normal(shape).astype(np.float32)
        assert_results_close(gradients(model, x, upstream, backend), torch_gradients(ref, x, upstream))


@pytest.mark.parametrize("kernel, stride, padding, dilation", [
    (3, 2, 1, 1),  # ResNet's stem: overlapping, padded windows
    (3, 1, 1, 1),  # every element in up to nine windows
    ((3, 2), (2, 1), (1, 0), 1),
    (3, 2, 0, 2),  # dilated
])
def test_overlapping_max_pool_gradient_goes_to_each_window_choice(backend, kernel, stride, padding, dilation):
    """An overlapping max pool's gradient is added at each window's chosen element (one
    scatter_add of the pooled gradient, no patch-sized array): ties go to the first maximum, a
    NaN takes it (the last NaN of a window), windows of -inf pick their first real element, and
    an element chosen by several windows sums their gradients, as in torch."""
    rng = np.random.default_rng(3)
    x = rng.integers(-2, 3, (2, 3, 9, 11)).astype(np.float32)  # ties everywhere
    x[0, 0, 2, 3] = x[0, 0, 3, 3] = np.nan
    x[1, 1] = -np.inf
    x[1, 2, 4:7, 4:7] = -np.inf
    ref = torch.nn.MaxPool2d(kernel, stride, padding, dilation)
    model = nn.MaxPool2d(kernel, stride, padding, dilation)
    upstream = rng.standard_normal(tuple(ref(torch.from_numpy(x)).shape)).astype(np.float32)
    got, expected = gradients(model, x, upstream, backend), torch_gradients(ref, x, upstream)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-6, atol=1e-6, err_msg=name)

    graph = gn.trace(model, x)
    output = graph.outputs["output"]
    b = Builder(graph)
    loss = b.reshape(b.reduce("sum", output, range(4)), ())
    graph, grads = autodiff.gradients(graph, loss, graph.inputs[:1])
    ops = {n.op for n in graph.variant({"grad": grads[graph.inputs[0].id]}, {}).live_nodes()}
    assert "scatter_add" in ops and "unwindow" not in ops


def small_cnn(lib):
    return lib.Sequential(lib.Conv2d(2, 4, 3, padding=1), lib.BatchNorm2d(4), lib.ReLU(), lib.MaxPool2d(2),
                          lib.Conv2d(4, 6, 3, padding=1, stride=2, groups=2), lib.ReLU(),
                          lib.AvgPool2d(2, padding=1, count_include_pad=False), lib.Flatten(), lib.Linear(6 * 2 * 2, 3))


def test_cnn_with_batchnorm_trains_like_torch(backend):
    torch.manual_seed(0)
    ref, model = small_cnn(torch.nn), small_cnn(nn)
    copy_torch_weights(model, ref)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 2, 9, 9)).astype(np.float32)
    y = rng.integers(0, 3, 6)
    train_both(ref, model, x, y, backend, loss="ce", rtol=1e-4)
    # one program for every batch size, eval mode through the running statistics
    ref.eval()
    model.eval()
    forward = gn.compile(model, backend=backend)
    for batch in (1, 4):
        np.testing.assert_allclose(forward(x[:batch]), ref(torch.from_numpy(x[:batch])).detach().numpy(),
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("config", [
    dict(in_channels=17, out_channels=33, kernel_size=3, stride=1, padding=1, dilation=1, groups=1, spatial=(13, 11),
         batch=1),
    dict(in_channels=5, out_channels=20, kernel_size=5, stride=2, padding=2, dilation=1, groups=1, spatial=(19, 17),
         batch=3),
    dict(in_channels=6, out_channels=18, kernel_size=3, stride=1, padding=0, dilation=2, groups=3, spatial=(14, 12),
         batch=2),
    dict(in_channels=3, out_channels=16, kernel_size=3, stride=1, padding=1, dilation=1, groups=1, spatial=(16, 16),
         batch=3),
])
def test_conv_block_at_gemm_sizes_matches_torch(backend, config):
    """Conv2d-BatchNorm2d-ReLU-MaxPool2d at sizes that take the packed GEMM: channel counts off
    its tiles (17 in, 33 out), batch 1, stride, dilation, groups, and 768 output positions (more
    than one block of GEMM_NC columns). The channels-first product, batch norm's statistics
    vectorised over H*W and the channel-major pooling windows agree with torch over 5 SGD steps."""
    torch.manual_seed(0)
    arguments = {k: v for k, v in config.items() if k not in ("spatial", "batch")}

    def block(lib):
        return lib.Sequential(lib.Conv2d(**arguments), lib.BatchNorm2d(config["out_channels"]), lib.ReLU(),
                              lib.MaxPool2d(2))

    ref, model = block(torch.nn), block(nn)
    copy_torch_weights(model, ref)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((config["batch"], config["in_channels"]) + config["spatial"]).astype(np.float32)
    ref.eval()  # the output's shape, without moving the running statistics
    shape = tuple(ref(torch.from_numpy(x)).shape)
    ref.train()
    train_both(ref, model, x, rng.standard_normal(shape).astype(np.float32), backend, steps=5)


def test_functional_forms_and_same_padding():
    torch.manual_seed(0)
    ref = torch.nn.Conv2d(2, 3, 3, padding="same")
    model = nn.Conv2d(2, 3, 3, padding="same")
    copy_torch_weights(model, ref)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = model

        def forward(self, x):
            return nn.functional.max_pool2d(self.conv(x), 2) + nn.functional.avg_pool2d(x, 2, divisor_override=3).sum(1, keepdim=True)

    x = np.random.default_rng(0).standard_normal((4, 2, 6, 6)).astype(np.float32)
    xt = torch.from_numpy(x)
    expected = torch.nn.functional.max_pool2d(ref(xt), 2) + torch.nn.functional.avg_pool2d(xt, 2, divisor_override=3).sum(1, keepdim=True)
    got = gn.compile(Net(), backend="c")(x)
    np.testing.assert_allclose(got, expected.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_reprs_and_initialisation_match_torch():
    pairs = [(nn.Conv2d(1, 16, 3, padding=1), torch.nn.Conv2d(1, 16, 3, padding=1)),
             (nn.Conv2d(4, 8, (3, 5), stride=2, dilation=(1, 2), groups=2, bias=False, padding="valid"),
              torch.nn.Conv2d(4, 8, (3, 5), stride=2, dilation=(1, 2), groups=2, bias=False, padding="valid")),
             (nn.MaxPool2d(2), torch.nn.MaxPool2d(2)), (nn.MaxPool2d(3, 1, 1, 2), torch.nn.MaxPool2d(3, 1, 1, 2)),
             (nn.AvgPool2d(2), torch.nn.AvgPool2d(2)), (nn.BatchNorm2d(5), torch.nn.BatchNorm2d(5))]
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
            assert p.shape == tuple(q.shape), name
    conv = nn.Conv2d(3, 8, 5, groups=1)
    bound = 1 / np.sqrt(3 * 5 * 5)
    weight, bias = np.asarray(conv.weight.data), np.asarray(conv.bias.data)
    assert np.abs(weight).max() <= bound and np.abs(bias).max() <= bound
    assert np.abs(weight).max() > 0.9 * bound and weight.std() > 0.5 * bound  # uniform over the whole range


@pytest.mark.parametrize("make, shape, message", [
    (lambda: nn.Conv2d(1, 2, 5), (2, 1, 3, 3), "larger than the padded input"),
    (lambda: nn.Conv2d(1, 2, 3, dilation=2, padding=1), (2, 1, 2, 2), "larger than the padded input"),
    (lambda: nn.Conv2d(3, 2, 3), (2, 4, 8, 8), "expected input with 3 channels"),
    (lambda: nn.Conv2d(3, 2, 3), (3, 8, 8), "needs a leading batch axis"),
    (lambda: nn.Conv2d(3, 2, 3), (2, 3, 8, 8, 1), "expected a 4-D (N, C, H, W) input"),
    (lambda: nn.MaxPool2d(3, padding=2), (2, 1, 8, 8), "pad should be smaller than or equal to half of kernel size"),
    (lambda: nn.MaxPool2d(4), (2, 1, 3, 8), "larger than the padded input"),
    (lambda: nn.MaxPool2d((1, 2), 1, (0, 1), (1, 2)), (2, 1, 1, 1), "holds only padding"),
    (lambda: nn.BatchNorm2d(3), (2, 3, 8), "expected 4D input"),
])
def test_bad_configurations_fail_at_trace_time(make, shape, message):
    model = make()
    with pytest.raises((ShapeError, ValueError)) as error:
        gn.trace(model, np.zeros(shape, np.float32))
    assert message in str(error.value)


@pytest.mark.parametrize("make, message", [
    (lambda: nn.Conv2d(3, 2, 3, groups=2), "in_channels must be divisible by groups"),
    (lambda: nn.Conv2d(4, 3, 3, groups=2), "out_channels must be divisible by groups"),
    (lambda: nn.Conv2d(4, 4, 3, stride=2, padding="same"), "not supported for strided convolutions"),
    (lambda: nn.Conv2d(4, 4, 3, padding="full"), "Invalid padding string"),
])
def test_bad_constructor_arguments(make, message):
    with pytest.raises((ValueError, NotImplementedError)) as error:
        make()
    assert message in str(error.value)


def test_functional_conv_checks_groups_and_dtype():
    class Net(nn.Module):
        def __init__(self, groups):
            super().__init__()
            self.weight, self.groups = nn.Parameter(np.zeros((4, 2, 3, 3), np.float32)), groups

        def forward(self, x):
            return nn.functional.conv2d(x, self.weight, groups=self.groups)

    with pytest.raises(ShapeError, match="divisible by groups"):
        gn.trace(Net(3), np.zeros((1, 6, 5, 5), np.float32))
    with pytest.raises(ShapeError, match="expected input with 4 channels"):
        gn.trace(Net(2), np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ShapeError, match="float32 input"):
        gn.trace(Net(2), np.zeros((1, 4, 5, 5), np.int64))

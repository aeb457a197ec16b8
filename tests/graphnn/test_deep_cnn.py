"""The layers of deeper convolutional networks against torch on every backend: adaptive average
and max pooling (uneven, overlapping and global windows), Conv2d with groups (depthwise) and
padding 'same' (an even kernel span too) or 'valid', ZeroPad2d/ConstantPad2d and F.pad,
Upsample/F.interpolate (nearest), Dropout2d, and a residual network of them trained for a few
SGD-momentum steps: outputs, input and parameter gradients, odd sizes and batch 1."""
from __future__ import annotations

import warnings
from functools import partial

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import nn
from graphnn.nn.adaptive_pool import adaptive_windows
from graphnn.nn.upsampling import source_positions
from graphnn.ir import B
from graphnn.ops import ShapeError
from tests.graphnn.test_conv import assert_results_close, gradients, torch_gradients, train_both
from tests.graphnn.test_normalization import assert_close_results
from tests.graphnn.torch_oracle import In, check, pair

RNG = np.random.default_rng(0)


def both(build, seed: int = 0):
    """(graphnn's model, torch's) from ``build(lib)``, graphnn's holding torch's weights."""
    return pair(build, seed, modules=False)


def concatenated(lib, layers):
    """A module applying each of ``layers`` (functions of the library and x) to its input and
    returning the results flattened side by side, so one program checks them all."""
    class Layers(lib.nn.Module):
        def forward(self, input):
            return lib.cat([f(lib, input).flatten(1) for f in layers], 1)
    return Layers()


def assert_matches_torch(build, x: np.ndarray, backend: str, rtol=1e-4, atol=1e-5) -> None:
    """The output and the gradients of the input and parameters agree with torch's."""
    ours, theirs = both(build)
    upstream = RNG.standard_normal(tuple(theirs(torch.from_numpy(x)).shape)).astype(np.float32)
    assert_results_close(gradients(ours, x, upstream, backend), torch_gradients(theirs, x, upstream), rtol, atol)


# -- adaptive pooling ------------------------------------------------------------------------------
SIZES_7x9 = [(3, 4), (1, 1), (5, 5), (None, 4), (1, 3), (9, 13)]
"""On a 7x9 input: equal overlapping windows (3, 4), the global pool, windows of 2 and 3 (5, 5),
a kept axis beside an uneven one, a global axis beside an uneven one, windows overlapping to
enlarge."""


def adaptive_layers(sizes):
    return [lambda L, x, s=s: L.nn.AdaptiveAvgPool2d(s)(x) for s in sizes] + \
           [lambda L, x, s=s: L.nn.functional.adaptive_max_pool2d(x, s) for s in sizes]


def test_adaptive_windows_are_torchs():
    assert adaptive_windows(7, 5) == [(0, 2), (1, 3), (2, 5), (4, 6), (5, 7)]
    assert adaptive_windows(3, 5) == [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]
    assert adaptive_windows(8, 2) == [(0, 4), (4, 8)]


def test_adaptive_pools_match_torch(backend):
    # a coarse grid of values: ties inside windows are common, the gradient goes to the first
    x = RNG.integers(-2, 3, (1, 3, 7, 9)).astype(np.float32)
    assert_matches_torch(lambda L: concatenated(L, adaptive_layers(SIZES_7x9)), x, backend)
    even = RNG.standard_normal((3, 2, 6, 8)).astype(np.float32)  # windows that tile: views
    assert_matches_torch(lambda L: concatenated(L, adaptive_layers([(3, 2), (2, 8), 2])), even, backend)


def test_adaptive_pools_carry_nan_and_infinities_as_torch(backend):
    x = RNG.integers(-2, 3, (2, 2, 7, 9)).astype(np.float32)
    x[0, 0, 1, 1] = x[0, 0, 2, 2] = np.nan  # two NaNs in one window: the max's gradient to the last
    x[0, 1, 1, 2] = x[1, 0, 6, 8] = np.inf  # the last position of a short window (repeated)
    x[1, 1, 3, 4] = -np.inf
    assert_matches_torch(lambda L: concatenated(L, adaptive_layers([(5, 5), (3, 4), (1, 1)])), x, backend)


def test_global_pools_are_one_reduction():
    model = concatenated(gn, [lambda L, x: L.nn.AdaptiveAvgPool2d((1, 1))(x), lambda L, x: L.nn.AdaptiveMaxPool2d(1)(x)])
    ops = [n.op for n in gn.trace(model, np.zeros((2, 3, 7, 5), np.float32)).nodes]
    assert ops.count("reduce") == 2 and not {"gather", "window", "permute"} & set(ops)


def test_adaptive_pools_on_tensors_match_torch():
    x = In(RNG.standard_normal((2, 3, 5, 7)), grad=True)
    for fn in (lambda L, x: L.nn.functional.adaptive_avg_pool2d(x, (3, None)),
               lambda L, x: L.nn.functional.adaptive_max_pool2d(x, 4), lambda L, x: L.nn.AdaptiveAvgPool2d(1)(x)):
        assert_close_results(fn, [x])


@pytest.mark.parametrize("size", [(1, 2, 3), (-1, 2), 2.5, None, (2.5, 2)])
def test_adaptive_pool_errors_are_torchs(size):
    x = In(RNG.standard_normal((2, 3, 5, 7)))
    for name in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
        check(lambda x: getattr(gn.nn.functional, name)(x, size), lambda x: getattr(torch.nn.functional, name)(x, size), x)


def test_adaptive_pool_refusals_are_clear():
    x = gn.randn(2, 3, 5, 7)
    with pytest.raises(NotImplementedError, match="return_indices"):
        nn.AdaptiveMaxPool2d(2, return_indices=True)(x)
    with pytest.raises(NotImplementedError, match="output size of 0"):
        nn.functional.adaptive_avg_pool2d(x, (0, 2))
    with pytest.raises(ShapeError, match="needs a leading batch axis"):
        gn.trace(nn.AdaptiveAvgPool2d(2), np.zeros((3, 5, 7), np.float32))


# -- convolutions: groups, depthwise, 'same' and 'valid' -----------------------------------------
CONVS = [dict(in_channels=4, out_channels=8, kernel_size=3, groups=4, padding="same"),  # depthwise, multiplier 2
         dict(in_channels=3, out_channels=3, kernel_size=(4, 2), groups=3, padding="same", dilation=(1, 3)),
         dict(in_channels=4, out_channels=6, kernel_size=2, groups=2, padding="same", bias=False),
         dict(in_channels=2, out_channels=4, kernel_size=(3, 2), groups=2, padding="valid")]


@pytest.mark.parametrize("config", CONVS, ids=["depthwise", "depthwise-even-dilated", "grouped-even", "valid"])
def test_grouped_and_same_convolutions_match_torch(backend, config):
    x = RNG.standard_normal((1, config["in_channels"], 7, 6)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note that an even 'same' kernel pads a copy
        assert_matches_torch(lambda L: L.nn.Conv2d(**config), x, backend)


def test_functional_same_convolution_on_tensors_matches_torch():
    x, w = In(RNG.standard_normal((2, 4, 5, 6)), grad=True), In(RNG.standard_normal((4, 2, 2, 3)), grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_close_results(lambda L, x, w: L.nn.functional.conv2d(x, w, padding="same", groups=2, dilation=(1, 2)),
                             [x, w], rtol=1e-4, atol=1e-5)


def test_same_padding_keeps_the_size_and_refuses_strides():
    for kernel in (1, 2, 3, 4, (2, 5)):
        out = gn.trace(nn.Conv2d(2, 3, kernel, padding="same", dilation=(2, 1)), np.zeros((1, 2, 7, 6), np.float32))
        assert out.outputs["output"].shape == (B, 3, 7, 6)
    for lib in (nn, torch.nn):
        with pytest.raises(ValueError, match="not supported for strided convolutions"):
            lib.Conv2d(2, 2, 2, stride=2, padding="same")


# -- padding ---------------------------------------------------------------------------------------
PADS = [(1, 2), (1, 2, 0, 3), (-1, 2, 2, -3), (2, 1, 1, 0, 1, 1), (0, 0)]


def test_pad_layers_match_torch(backend):
    x = RNG.standard_normal((1, 2, 5, 4)).astype(np.float32)
    layers = [lambda L, x, p=p: L.nn.functional.pad(x, p, value=0.5) for p in PADS]
    layers += [lambda L, x: L.nn.ZeroPad2d(2)(x), lambda L, x: L.nn.ZeroPad2d((1, 0, 2, 3))(x),
               lambda L, x: L.nn.ConstantPad2d((0, 1, -1, 1), -1.5)(x)]
    assert_matches_torch(lambda L: concatenated(L, layers), x, backend)


@pytest.mark.parametrize("p", PADS + [(-1, -2), (1, -1, 0, 0, 0, 0, 2, 0)])
def test_pad_on_tensors_matches_torch(p):
    assert_close_results(lambda L, x: L.nn.functional.pad(x, p, "constant", -2.0), [In(RNG.standard_normal((2, 2, 5, 4)),
                                                                                       grad=True)])
    for data in (RNG.integers(-5, 5, (2, 3, 4)), RNG.integers(-5, 5, (2, 3, 4)) > 0):
        check(lambda x: gn.nn.functional.pad(x, p[:4], value=2.5), lambda x: torch.nn.functional.pad(x, p[:4], value=2.5),
              In(data))


@pytest.mark.parametrize("p, mode, value", [((1, 2, 3), "constant", None), ((1,) * 10, "constant", None),
                                            ((1.5, 1), "constant", None), (2, "constant", None),
                                            ((-2, -3), "constant", None), ((1, 1), "bogus", None),
                                            ((1, 1), "replicate", 1.0)])
def test_pad_errors_are_torchs(p, mode, value):
    x = In(RNG.standard_normal((2, 3, 5, 4)))
    check(lambda x: gn.nn.functional.pad(x, p, mode, value), lambda x: torch.nn.functional.pad(x, p, mode, value), x)


def test_other_pad_modes_are_refused_clearly():
    with pytest.raises(NotImplementedError, match="mode='reflect' is not supported yet"):
        nn.functional.pad(gn.randn(1, 1, 3, 3), (1, 1), mode="reflect")


# -- nearest-neighbour resizing --------------------------------------------------------------------
RESIZES = [dict(scale_factor=2), dict(scale_factor=(3, 1)), dict(size=(5, 11)), dict(scale_factor=1.5),
           dict(scale_factor=(0.5, 2.5)), dict(size=(9, 4), mode="nearest-exact"), dict(size=7),
           dict(scale_factor=1.7, recompute_scale_factor=True)]


def test_interpolate_matches_torch(backend):
    x = RNG.standard_normal((1, 2, 5, 4)).astype(np.float32)
    layers = [lambda L, x, k=k: L.nn.functional.interpolate(x, **k) for k in RESIZES]
    layers += [lambda L, x: L.nn.Upsample(scale_factor=2, mode="nearest")(x),
               lambda L, x: L.nn.UpsamplingNearest2d(size=(6, 9))(x),
               lambda L, x: L.nn.functional.interpolate(x[:, 0], scale_factor=3),  # (N, C, L)
               lambda L, x: L.nn.functional.interpolate(x[:, None], size=(2, 7, 3)),  # (N, C, D, H, W)
               # gathers from a padded value (which the fused code reads from a computed copy)
               lambda L, x: L.nn.functional.interpolate(L.nn.functional.pad(x, (1, 0, 0, 2)), size=(5, 7)),
               lambda L, x: L.nn.functional.adaptive_max_pool2d(L.nn.functional.pad(x, (1, 1)), (3, 4))]
    assert_matches_torch(lambda L: concatenated(L, layers), x, backend)


def torch_positions(dims: int, length: int, mode: str, **kwargs) -> list:
    """The input positions torch's interpolate reads along the last of ``dims`` spatial axes."""
    x = torch.arange(length, dtype=torch.float32).view(1, 1, *(1,) * (dims - 1), length)
    last = {k: (1,) * (dims - 1) + (v,) if k == "size" else (1.0,) * (dims - 1) + (v,) for k, v in kwargs.items()}
    return torch.nn.functional.interpolate(x, mode=mode, **last).flatten().long().tolist()


def test_source_positions_are_torchs_for_many_sizes():
    for dims in (1, 2, 3):
        for size in range(1, 10):
            for mode in ("nearest", "nearest-exact"):
                exact = mode == "nearest-exact"
                for out in range(1, 21):
                    assert source_positions(size, out, None, exact, dims == 2).tolist() == \
                        torch_positions(dims, size, mode, size=out), (dims, size, out, mode)
                for factor in (0.3, 0.5, 1.25, 2.0, 2.2, 2.5, 3.0, 7.0):
                    if int(size * factor) > 0:
                        expected = torch_positions(dims, size, mode, scale_factor=factor)
                        assert source_positions(size, len(expected), factor, exact, dims == 2).tolist() == expected, \
                            (dims, size, factor, mode)


def test_integer_scale_factors_are_views():
    graph = gn.trace(nn.Upsample(scale_factor=(2, 3)), np.zeros((2, 3, 4, 5), np.float32))
    assert {n.op for n in graph.nodes} <= {"input", "reshape", "expand", "permute"}


@pytest.mark.parametrize("kwargs", [dict(), dict(size=3, scale_factor=2), dict(size=(3,)), dict(size=(2.5, 3)),
                                    dict(scale_factor=(2, 2, 2)), dict(size=3, align_corners=True),
                                    dict(size=3, recompute_scale_factor=True), dict(size=3, mode="bogus"),
                                    dict(scale_factor=0.1), dict(size=3, antialias=True)])
def test_interpolate_errors_are_torchs(kwargs):
    check(lambda x: gn.nn.functional.interpolate(x, **kwargs), lambda x: torch.nn.functional.interpolate(x, **kwargs),
          In(RNG.standard_normal((2, 3, 5, 4))))


def test_interpolate_refuses_other_modes_and_integers_as_torch():
    with pytest.raises(NotImplementedError, match="mode='bilinear' is not supported yet"):
        nn.functional.interpolate(gn.randn(1, 1, 3, 3), scale_factor=2, mode="bilinear")
    check(lambda x: gn.nn.functional.interpolate(x, scale_factor=2),
          lambda x: torch.nn.functional.interpolate(x, scale_factor=2), In(RNG.integers(0, 3, (1, 2, 3, 3))))
    assert_close_results(lambda L, x: L.nn.functional.interpolate(x, size=(7, 3)), [In(RNG.standard_normal((2, 1, 3, 3)),
                                                                                       grad=True)])


# -- Dropout2d -------------------------------------------------------------------------------------
class Scale(nn.Module):
    """x times a weight per channel (ones)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(np.ones((1, channels, 1, 1), np.float32))

    def forward(self, x):
        return x * self.weight


def test_dropout2d_in_compiled_programs_drops_whole_channels(backend):
    gn.manual_seed(0)
    model = nn.Sequential(Scale(40), nn.Dropout2d(0.3))
    x = RNG.standard_normal((5, 40, 3, 4)).astype(np.float32)
    out = gn.compile(model, backend=backend)(x)
    kept = (out != 0).all(axis=(2, 3))
    assert ((out == 0).all(axis=(2, 3)) | kept).all()  # a channel is dropped or kept as a whole
    np.testing.assert_allclose(out[kept], x[kept] / 0.7, rtol=1e-6, atol=1e-6)
    assert 0.15 < 1 - kept.mean() < 0.45
    # the backward regenerates the step's mask: with one sample, a channel's weight gets
    # 2 * sum(x^2) / 0.7^2 where the channel is kept, 0 where it is dropped, and the loss is the
    # sum over the kept channels
    train = gn.compile(model, nn.MSELoss(reduction="sum"), gn.optim.SGD(model.parameters(), lr=0.1), backend=backend)
    sample = x[:1]
    loss = train.grad(sample, np.zeros_like(sample))
    grad = np.asarray(model[0].weight.grad).reshape(40)
    energy = (sample[0] ** 2).sum(axis=(1, 2)) / 0.49
    dropped = grad == 0
    assert 0 < dropped.sum() < 40
    np.testing.assert_allclose(grad[~dropped], 2 * energy[~dropped], rtol=1e-5)
    np.testing.assert_allclose(loss, energy[~dropped].sum(), rtol=1e-5)
    model.eval()
    np.testing.assert_allclose(gn.compile(model, backend=backend)(x), x, rtol=1e-6, atol=1e-6)


def test_dropout2d_on_tensors_draws_from_the_global_seed():
    layer = nn.Dropout2d(0.5)
    x = gn.ones(8, 50, 3, 2)
    gn.manual_seed(3)
    a = layer(x)
    gn.manual_seed(3)
    assert bool((a == layer(x)).all())
    values = a.numpy()
    assert set(np.unique(values)) <= {0.0, 2.0} and 150 < (values[:, :, 0, 0] == 2).sum() < 250
    assert (values == values[:, :, :1, :1]).all()  # one draw per (sample, channel)
    leaf = gn.ones(8, 50, 3, 2, requires_grad=True)
    out = layer(leaf)
    out.sum().backward()
    values = out.detach().numpy()
    assert (values == values[:, :, :1, :1]).all() and 0 < (values == 0).mean() < 1
    np.testing.assert_array_equal(leaf.grad.numpy(), values)  # d out / d x is the scaled mask: the values
    assert bool((layer.eval()(x) == x).all())
    with pytest.warns(UserWarning, match="channel-wise 1D dropout"):
        three = nn.functional.dropout2d(gn.ones(4, 30, 5)).numpy()
    assert (three == three[:, :, :1]).all()


@pytest.mark.parametrize("fn", [lambda L, x: L.nn.functional.dropout2d(x, 1.5),
                                lambda L, x: L.nn.functional.dropout2d(x[0, 0, 0], 0.5),
                                lambda L, x: L.nn.Dropout2d(-0.1), lambda L, x: L.nn.functional.dropout2d(x, 1.0),
                                lambda L, x: L.nn.functional.dropout2d(x, 0.5, training=False)])
def test_dropout2d_edges_are_torchs(fn):
    check(partial(fn, gn), partial(fn, torch), In(RNG.standard_normal((2, 3, 4, 5))))


# -- modules ---------------------------------------------------------------------------------------
def test_reprs_match_torch():
    for build in (lambda m: m.AdaptiveAvgPool2d((None, 3)), lambda m: m.AdaptiveAvgPool2d(1),
                  lambda m: m.AdaptiveMaxPool2d((2, 2)), lambda m: m.Dropout2d(0.2), lambda m: m.ZeroPad2d(2),
                  lambda m: m.ZeroPad2d((1, 2, 3, 4)), lambda m: m.ConstantPad2d(1, 3.5),
                  lambda m: m.Upsample(scale_factor=2), lambda m: m.Upsample(size=(3, 4)),
                  lambda m: m.Upsample(scale_factor=(2, 3), mode="nearest-exact"),
                  lambda m: m.UpsamplingNearest2d(scale_factor=2),
                  lambda m: m.Conv2d(4, 8, 2, groups=4, padding="same", bias=False)):
        assert repr(build(nn)) == repr(build(torch.nn))


def residual_net(L):
    """A small residual network of the new layers: padded and upsampled input, a stem, a block
    of a depthwise 'same' convolution and a 1x1 one added back to its input, a down block with a
    strided 1x1-convolution shortcut, adaptive pools."""
    m, F = L.nn, L.nn.functional

    class Block(m.Module):
        def __init__(self, channels):
            super().__init__()
            self.depthwise = m.Conv2d(channels, channels, 3, padding="same", groups=channels)
            self.bn1 = m.BatchNorm2d(channels)
            self.pointwise = m.Conv2d(channels, channels, 1)
            self.bn2 = m.BatchNorm2d(channels)

        def forward(self, x):
            out = F.relu(self.bn1(self.depthwise(x)))
            return F.relu(x + self.bn2(self.pointwise(out)))

    class Down(m.Module):
        def __init__(self, inputs, outputs):
            super().__init__()
            self.conv = m.Conv2d(inputs, outputs, 2, padding="same")
            self.bn = m.BatchNorm2d(outputs)
            self.pool = m.AdaptiveMaxPool2d((3, 4))
            self.extra = m.Sequential(m.Conv2d(inputs, outputs, 1, stride=2), m.BatchNorm2d(outputs))

        def forward(self, x):
            return F.relu(self.extra(x)[:, :, :3, :4] + self.pool(self.bn(self.conv(x))))

    class Net(m.Module):
        def __init__(self):
            super().__init__()
            self.prep = m.Sequential(m.ZeroPad2d((1, 0, 1, 1)), m.Upsample(scale_factor=(1, 2)))
            self.stem = m.Sequential(m.Conv2d(1, 4, 3, padding=1), m.BatchNorm2d(4), m.ReLU())
            self.block = Block(4)
            self.down = Down(4, 6)
            self.avgpool = m.AdaptiveAvgPool2d((1, 1))
            self.fc = m.Linear(6, 3)

        def forward(self, x):
            out = self.down(self.block(self.stem(self.prep(x))))
            return self.fc(self.avgpool(out).reshape(x.shape[0], -1))

    return Net()


def test_a_residual_network_trains_like_torch(backend):
    ours, theirs = both(residual_net)
    x = RNG.standard_normal((3, 1, 5, 4)).astype(np.float32)  # (3, 1, 7, 10) after the prep layers
    y = RNG.integers(0, 3, 3)
    train_both(theirs, ours, x, y, backend, loss="ce", steps=5, rtol=1e-4)
    theirs.eval()
    ours.eval()
    for batch in (1, 3):
        np.testing.assert_allclose(gn.compile(ours, backend=backend)(x[:batch]),
                                   theirs(torch.from_numpy(x[:batch])).detach().numpy(), rtol=1e-4, atol=1e-5)

"""graphnn.nn against torch.nn: the same architectures built side by side with both libraries.

Checks repr, parameter/buffer/module naming, state_dict keys and loading, the containers' Python
protocol, train/eval/apply/zero_grad, default initialisation, nn.init and Parameter behaviour.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import nn
from tests.conftest import copy_torch_weights


# -- the architectures, written once, built with either library ------------------------------

_CUSTOM_CLASSES: dict = {}


def custom_net_class(L):
    """The same Module subclass for library ``L`` (graphnn.nn or torch.nn), defined once per library."""
    if L not in _CUSTOM_CLASSES:

        class CustomNet(L.Module):
            def __init__(self, widths=(4, 8, 6)):
                super().__init__()
                self.layers = L.ModuleList([L.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])])
                self.heads = L.ModuleDict({"act": L.ReLU(), "head": L.Linear(widths[-1], 2)})
                self.out = L.Linear(2, 1)

            def forward(self, x):
                for layer in self.layers:
                    x = self.heads["act"](layer(x))
                return self.out(self.heads["head"](x))

        _CUSTOM_CLASSES[L] = CustomNet
    return _CUSTOM_CLASSES[L]


def tied_net(L):
    """A model whose output layer shares its weight with its input layer (named twice in the
    state_dict, once among the parameters)."""
    model = L.Sequential(L.Linear(4, 4, bias=False), L.Tanh(), L.Linear(4, 4))
    model[2].weight = model[0].weight
    return model


BUILDERS = {
    "seq_positional": lambda L: L.Sequential(L.Linear(1, 13), L.Tanh(), L.Linear(13, 1)),
    "seq_ordereddict": lambda L: L.Sequential(
        OrderedDict(
            [("hidden_linear", L.Linear(1, 8)), ("hidden_activation", L.Tanh()), ("output_linear", L.Linear(8, 1))]
        )
    ),
    "seq_nested": lambda L: L.Sequential(
        L.Sequential(L.Linear(3, 4), L.ReLU()),
        L.Sequential(OrderedDict([("lin", L.Linear(4, 4)), ("act", L.Sigmoid())])),
        L.Linear(4, 2),
    ),
    "mlp_batchnorm": lambda L: L.Sequential(
        L.Linear(784, 300),
        L.BatchNorm1d(300),
        L.ReLU(),
        L.Linear(300, 100),
        L.BatchNorm1d(100),
        L.ReLU(),
        L.Linear(100, 10),
    ),
    "Identity": lambda L: L.Identity(),
    "Flatten": lambda L: L.Flatten(),
    "Flatten_args": lambda L: L.Flatten(0, 2),
    "Linear": lambda L: L.Linear(3, 5),
    "Linear_nobias": lambda L: L.Linear(3, 5, bias=False),
    "ReLU": lambda L: L.ReLU(),
    "Tanh": lambda L: L.Tanh(),
    "Sigmoid": lambda L: L.Sigmoid(),
    "Hardtanh": lambda L: L.Hardtanh(),
    "Hardtanh_args": lambda L: L.Hardtanh(-2.0, 2.0),
    "LeakyReLU": lambda L: L.LeakyReLU(),
    "LeakyReLU_args": lambda L: L.LeakyReLU(0.2),
    "ELU": lambda L: L.ELU(),
    "ELU_args": lambda L: L.ELU(0.5),
    "GELU": lambda L: L.GELU(),
    "GELU_tanh": lambda L: L.GELU("tanh"),
    "SiLU": lambda L: L.SiLU(),
    "Softplus": lambda L: L.Softplus(),
    "Softplus_args": lambda L: L.Softplus(2.0, 10.0),
    "Softmax": lambda L: L.Softmax(dim=1),
    "LogSoftmax": lambda L: L.LogSoftmax(dim=1),
    "Dropout": lambda L: L.Dropout(),
    "Dropout_args": lambda L: L.Dropout(0.3),
    "BatchNorm1d": lambda L: L.BatchNorm1d(4),
    "BatchNorm1d_args": lambda L: L.BatchNorm1d(5, eps=1e-3, momentum=0.2, affine=False),
    "BatchNorm1d_untracked": lambda L: L.BatchNorm1d(4, track_running_stats=False),
    "LayerNorm": lambda L: L.LayerNorm(6),
    "LayerNorm_args": lambda L: L.LayerNorm((2, 3), eps=1e-6, bias=False),
    "LayerNorm_noaffine": lambda L: L.LayerNorm([4], elementwise_affine=False),
    "RMSNorm": lambda L: L.RMSNorm(6),
    "RMSNorm_args": lambda L: L.RMSNorm((2, 3), eps=1e-6),
    "RMSNorm_noaffine": lambda L: L.RMSNorm(4, elementwise_affine=False),
    "tied": lambda L: tied_net(L),
    "MSELoss": lambda L: L.MSELoss(),
    "L1Loss": lambda L: L.L1Loss(),
    "CrossEntropyLoss": lambda L: L.CrossEntropyLoss(),
    "NLLLoss": lambda L: L.NLLLoss(),
    "BCEWithLogitsLoss": lambda L: L.BCEWithLogitsLoss(),
    "custom_net": lambda L: custom_net_class(L)(),
}

# The models with parameters or buffers (used by the state_dict loading tests).
STATEFUL = [
    "seq_positional", "seq_ordereddict", "seq_nested", "mlp_batchnorm", "Linear", "Linear_nobias",
    "BatchNorm1d", "BatchNorm1d_args", "BatchNorm1d_untracked", "custom_net", "LayerNorm", "LayerNorm_args",
    "RMSNorm", "RMSNorm_args", "tied",
]


def both(name):
    builder = BUILDERS[name]
    return builder(nn), builder(torch.nn)


def torch_numpy_state(model):
    return OrderedDict((k, v.detach().numpy().copy()) for k, v in model.state_dict().items())


def randomize_torch(model, seed=1):
    """Give every parameter and buffer of a torch model a distinctive non-default value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=g) * 2 - 1)
        for name, b in model.named_buffers():
            if name.endswith("num_batches_tracked"):
                b.fill_(7)
            else:
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)


def snapshot(model):
    return OrderedDict((k, np.array(v, copy=True)) for k, v in model.state_dict().items())


def assert_same_values(a, b):
    assert list(a) == list(b)
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


# -- 1. repr ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BUILDERS))
def test_repr_matches_torch(name):
    ours, theirs = both(name)
    assert repr(ours) == repr(theirs)
    assert str(ours) == str(theirs)


def test_repr_modulelist_of_identical_layers_matches_torch():
    """torch.nn.ModuleList compresses runs of equal reprs: "(0-1): 2 x Linear(...)"."""
    ours = custom_net_class(nn)(widths=(8, 8, 8, 4))
    theirs = custom_net_class(torch.nn)(widths=(8, 8, 8, 4))
    assert repr(ours.layers) == repr(theirs.layers)
    assert repr(ours) == repr(theirs)


def test_repr_empty_containers_match_torch():
    assert repr(nn.Sequential()) == repr(torch.nn.Sequential())
    assert repr(nn.ModuleList()) == repr(torch.nn.ModuleList())
    assert repr(nn.ModuleDict()) == repr(torch.nn.ModuleDict())


# -- 2. names: parameters, state_dict, buffers, modules, children -----------------------------


@pytest.mark.parametrize("name", list(BUILDERS))
def test_named_parameters_match_torch(name):
    ours, theirs = both(name)
    assert [(n, tuple(p.shape)) for n, p in ours.named_parameters()] == [
        (n, tuple(p.shape)) for n, p in theirs.named_parameters()
    ]
    assert len(list(ours.parameters())) == len(list(theirs.parameters()))


@pytest.mark.parametrize("name", list(BUILDERS))
def test_state_dict_keys_and_shapes_match_torch(name):
    ours, theirs = both(name)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [tuple(np.shape(v)) for v in ours.state_dict().values()] == [
        tuple(v.shape) for v in theirs.state_dict().values()
    ]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_named_buffers_modules_children_match_torch(name):
    ours, theirs = both(name)
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [type(m).__name__ for m in ours.modules()] == [type(m).__name__ for m in theirs.modules()]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]


def test_batchnorm_state_dict_keys_include_running_stats():
    ours, theirs = both("mlp_batchnorm")
    keys = list(ours.state_dict())
    assert keys == list(theirs.state_dict())
    assert keys[2:7] == ["1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"]


def test_shared_module_is_named_once_like_torch():
    def build(L):
        shared = L.Linear(2, 2)
        return L.Sequential(shared, L.ReLU(), shared)

    ours, theirs = build(nn), build(torch.nn)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert list(ours.state_dict()) == list(theirs.state_dict())


# -- 3. container protocol ----------------------------------------------------------------------


def test_sequential_indexing_len_iteration():
    ours, theirs = both("seq_positional")
    assert len(ours) == len(theirs) == 3
    for i in (0, 1, 2, -1, -2, -3):
        assert repr(ours[i]) == repr(theirs[i])
        assert ours[i] is list(ours)[i]
    assert ours[-1] is ours[2]
    assert [type(m).__name__ for m in ours] == [type(m).__name__ for m in theirs]
    with pytest.raises(IndexError):
        ours[3]
    with pytest.raises(IndexError):
        ours[-4]


@pytest.mark.parametrize("sl", [slice(1, None), slice(None, 2), slice(None, None, 2), slice(-2, None), slice(0, 0)])
def test_sequential_slice_is_sequential_like_torch(sl):
    ours, theirs = both("seq_positional")
    part, ref = ours[sl], theirs[sl]
    assert isinstance(part, nn.Sequential)
    assert repr(part) == repr(ref)
    assert [n for n, _ in part.named_parameters()] == [n for n, _ in ref.named_parameters()]
    # the slice shares the modules, it does not copy them
    for m in part:
        assert any(m is original for original in ours)


def test_ordereddict_sequential_attribute_access_and_slice():
    ours, theirs = both("seq_ordereddict")
    assert isinstance(ours.hidden_linear, nn.Linear)
    assert ours.hidden_linear is ours[0]
    assert ours.hidden_activation is ours[1]
    assert ours.output_linear is ours[-1]
    assert repr(ours.output_linear) == repr(theirs.output_linear)
    assert tuple(ours.hidden_linear.weight.shape) == tuple(theirs.hidden_linear.weight.shape)
    assert repr(ours[1:]) == repr(theirs[1:])
    with pytest.raises(AttributeError):
        ours.no_such_layer


def test_modulelist_append_extend_insert_len_index():
    def run(L):
        ml = L.ModuleList([L.Linear(1, 2)])
        log = [len(ml)]
        ml.append(L.Linear(2, 3))
        log.append(len(ml))
        ml.extend([L.ReLU(), L.Linear(3, 4)])
        log.append(len(ml))
        ml.insert(1, L.Tanh())
        log.append(len(ml))
        log.append([type(m).__name__ for m in ml])
        log.append(repr(ml[0]))
        log.append(repr(ml[-1]))
        log.append(repr(ml[1]))
        log.append(repr(ml[1:3]))
        log.append([n for n, _ in ml.named_children()])
        log.append([(n, tuple(p.shape)) for n, p in ml.named_parameters()])
        log.append(repr(ml))
        return ml, log

    ours, our_log = run(nn)
    theirs, their_log = run(torch.nn)
    assert our_log == their_log
    assert ours[-1] is list(ours)[-1]
    assert isinstance(ours[1:3], nn.ModuleList)
    with pytest.raises(IndexError):
        ours[len(ours)]


def test_moduledict_keys_items_len_contains():
    def run(L):
        md = L.ModuleDict({"act": L.ReLU(), "head": L.Linear(3, 2)})
        md["extra"] = L.Tanh()
        return md, [
            list(md.keys()),
            [(k, type(v).__name__) for k, v in md.items()],
            len(md),
            "act" in md,
            "head" in md,
            "missing" in md,
            list(md),
            [n for n, _ in md.named_parameters()],
            repr(md),
        ]

    ours, our_log = run(nn)
    theirs, their_log = run(torch.nn)
    assert our_log == their_log
    assert ours["head"] is ours.head
    with pytest.raises(KeyError):
        ours["missing"]


# -- 4. load_state_dict ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", STATEFUL)
def test_load_torch_state_dict(name):
    ours, theirs = both(name)
    randomize_torch(theirs)
    result = ours.load_state_dict(torch_numpy_state(theirs))
    assert result.missing_keys == [] and result.unexpected_keys == []
    got, want = ours.state_dict(), torch_numpy_state(theirs)
    assert list(got) == list(want)
    for key in want:
        np.testing.assert_array_equal(np.asarray(got[key]), want[key], err_msg=key)
        assert np.asarray(got[key]).dtype == want[key].dtype, key
    # the parameters themselves see the values (state_dict shares their storage)
    for (n, p), (tn, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_array_equal(p.data, tp.detach().numpy(), err_msg=n)


def test_copy_torch_weights_helper():
    ours, theirs = both("mlp_batchnorm")
    randomize_torch(theirs)
    copy_torch_weights(ours, theirs)
    assert_same_values(ours.state_dict(), torch_numpy_state(theirs))


def _strict_failure_cases(state):
    missing = OrderedDict(state)
    del missing["1.running_var"]
    unexpected = OrderedDict(state)
    unexpected["extra.weight"] = np.zeros(3, np.float32)
    mismatch = OrderedDict(state)
    mismatch["0.weight"] = np.zeros((5, 5), np.float32)
    return {"missing": missing, "unexpected": unexpected, "mismatch": mismatch}


@pytest.mark.parametrize("case", ["missing", "unexpected", "mismatch"])
def test_strict_load_raises_like_torch_and_leaves_parameters_unchanged(case):
    ours, theirs = both("mlp_batchnorm")
    source = both("mlp_batchnorm")[1]
    randomize_torch(source, seed=5)
    bad = _strict_failure_cases(torch_numpy_state(source))[case]
    with pytest.raises(RuntimeError):
        theirs.load_state_dict({k: torch.from_numpy(v) for k, v in bad.items()})
    before = snapshot(ours)
    with pytest.raises(RuntimeError):
        ours.load_state_dict(bad)
    assert_same_values(ours.state_dict(), before)


def test_shape_mismatch_raises_even_when_not_strict_like_torch():
    ours, theirs = both("seq_positional")
    bad = torch_numpy_state(theirs)
    bad["0.weight"] = np.zeros((2, 2), np.float32)
    with pytest.raises(RuntimeError):
        theirs.load_state_dict({k: torch.from_numpy(v) for k, v in bad.items()}, strict=False)
    before = snapshot(ours)
    with pytest.raises(RuntimeError):
        ours.load_state_dict(bad, strict=False)
    assert_same_values(ours.state_dict(), before)


def test_non_strict_load_reports_missing_and_unexpected_like_torch():
    ours, theirs = both("mlp_batchnorm")
    state = torch_numpy_state(theirs)
    del state["1.running_var"]
    del state["6.bias"]
    state["extra.weight"] = np.zeros(3, np.float32)
    ref = theirs.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    result = ours.load_state_dict(state, strict=False)
    assert result.missing_keys == ref.missing_keys == ["1.running_var", "6.bias"]
    assert result.unexpected_keys == ref.unexpected_keys == ["extra.weight"]
    # what was present got loaded
    got = ours.state_dict()
    for key, value in state.items():
        if key in got:
            np.testing.assert_array_equal(np.asarray(got[key]), value, err_msg=key)


def test_non_strict_load_unexpected_keys_at_several_depths_in_torch_order():
    """torch collects unexpected keys module by module (root first, then children in order)."""
    ours, theirs = both("seq_nested")
    state = torch_numpy_state(theirs)
    state["1.lin.extra"] = np.zeros(2, np.float32)
    state["top_extra"] = np.zeros(2, np.float32)
    ref = theirs.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    result = ours.load_state_dict(state, strict=False)
    assert result.missing_keys == ref.missing_keys == []
    assert ref.unexpected_keys == ["top_extra", "1.lin.extra"]
    assert result.unexpected_keys == ref.unexpected_keys


def test_load_all_keys_matched_repr():
    ours, theirs = both("seq_positional")
    result = ours.load_state_dict(torch_numpy_state(theirs))
    ref = theirs.load_state_dict(theirs.state_dict())
    assert repr(result) == repr(ref) == "<All keys matched successfully>"


# -- 5. train / eval / apply / zero_grad ------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp_batchnorm", "seq_nested", "custom_net"])
def test_train_eval_set_training_everywhere(name):
    ours, theirs = both(name)
    assert [m.training for m in ours.modules()] == [m.training for m in theirs.modules()]
    assert ours.eval() is ours
    theirs.eval()
    assert [m.training for m in ours.modules()] == [m.training for m in theirs.modules()]
    assert not any(m.training for m in ours.modules())
    assert ours.train() is ours
    theirs.train()
    assert all(m.training for m in ours.modules())
    ours.train(False)
    theirs.train(False)
    assert [m.training for m in ours.modules()] == [m.training for m in theirs.modules()]


@pytest.mark.parametrize("name", ["mlp_batchnorm", "seq_nested", "custom_net", "seq_ordereddict"])
def test_apply_visits_modules_in_torch_order(name):
    ours, theirs = both(name)
    our_order, their_order = [], []
    assert ours.apply(lambda m: our_order.append(type(m).__name__)) is ours
    theirs.apply(lambda m: their_order.append(type(m).__name__))
    assert our_order == their_order


def test_apply_can_reinitialise_linears():
    ours, _ = both("seq_nested")

    def init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.constant_(m.weight, 0.25)
            nn.init.zeros_(m.bias)

    ours.apply(init_weights)
    for name, p in ours.named_parameters():
        expected = 0.25 if name.endswith("weight") else 0.0
        assert bool((p.data == expected).all()), name


def test_zero_grad_sets_grads_to_none():
    ours, theirs = both("mlp_batchnorm")
    for p in ours.parameters():
        p.grad = np.ones(p.shape, np.float32)
    for p in theirs.parameters():
        p.grad = torch.ones_like(p)
    ours.zero_grad()
    theirs.zero_grad()
    assert all(p.grad is None for p in theirs.parameters())
    assert all(p.grad is None for p in ours.parameters())


# -- 6. initialisation ---------------------------------------------------------------------------


def test_linear_default_init_distribution():
    gn.manual_seed(0)
    layers = [nn.Linear(100, 50) for _ in range(20)]
    bound = 1 / math.sqrt(100)
    uniform_std = bound / math.sqrt(3)
    weight = layers[0].weight.data.numpy()
    assert weight.shape == (50, 100) and weight.dtype == np.float32
    assert np.all(np.abs(weight) <= bound)
    assert abs(weight.std() - uniform_std) < 0.1 * uniform_std
    assert abs(weight.mean()) < 0.1 * uniform_std
    biases = np.concatenate([layer.bias.data for layer in layers])
    assert np.all(np.abs(biases) <= bound)
    assert abs(biases.std() - uniform_std) < 0.1 * uniform_std
    for layer in layers:
        assert np.all(np.abs(np.asarray(layer.weight.data)) <= bound) and np.all(np.abs(np.asarray(layer.bias.data)) <= bound)
    # torch's layer draws from the same range
    ref = torch.nn.Linear(100, 50)
    ref_w, ref_b = ref.weight.detach().numpy(), ref.bias.detach().numpy()
    assert np.abs(ref_w).max() <= bound and np.abs(ref_b).max() <= bound
    assert abs(ref_w.std() - weight.std()) < 0.1 * uniform_std


def test_batchnorm_default_init():
    bn, ref = nn.BatchNorm1d(6), torch.nn.BatchNorm1d(6)
    np.testing.assert_array_equal(bn.weight.data, np.ones(6, np.float32))
    np.testing.assert_array_equal(bn.bias.data, np.zeros(6, np.float32))
    np.testing.assert_array_equal(bn.running_mean, np.zeros(6, np.float32))
    np.testing.assert_array_equal(bn.running_var, np.ones(6, np.float32))
    assert int(bn.num_batches_tracked) == 0
    assert np.asarray(bn.num_batches_tracked).dtype == np.int64
    assert np.asarray(bn.num_batches_tracked).shape == tuple(ref.num_batches_tracked.shape) == ()
    state, ref_state = bn.state_dict(), ref.state_dict()
    for key in ref_state:
        np.testing.assert_array_equal(np.asarray(state[key]), ref_state[key].numpy(), err_msg=key)
        assert np.asarray(state[key]).dtype == ref_state[key].numpy().dtype, key


def test_manual_seed_is_reproducible():
    gn.manual_seed(0)
    first = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    gn.manual_seed(0)
    second = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    assert_same_values(first.state_dict(), second.state_dict())
    gn.manual_seed(1)
    third = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    assert not np.array_equal(first[0].weight.data, third[0].weight.data)


def _param(shape=(200, 300)):
    return nn.Parameter(np.full(shape, 123.0, np.float32))


def test_init_uniform_normal_constant():
    gn.manual_seed(0)
    p = _param()
    storage = p.array
    assert nn.init.uniform_(p, -0.5, 0.5) is p
    assert p.array is storage and p.data.dtype == gn.float32
    assert p.data.min() >= -0.5 and p.data.max() <= 0.5
    assert abs(p.data.std() - 1 / math.sqrt(12)) < 0.05 / math.sqrt(12)
    assert nn.init.uniform_(p) is p
    assert p.data.min() >= 0.0 and p.data.max() <= 1.0
    assert nn.init.normal_(p, 2.0, 0.5) is p
    assert abs(p.data.mean() - 2.0) < 0.02 and abs(p.data.std() - 0.5) < 0.02
    assert nn.init.normal_(p) is p
    assert abs(p.data.mean()) < 0.02 and abs(p.data.std() - 1.0) < 0.02
    assert nn.init.zeros_(p) is p and bool((p.data == 0).all())
    assert nn.init.ones_(p) is p and bool((p.data == 1).all())
    assert nn.init.constant_(p, 3.5) is p and bool((p.data == 3.5).all())
    assert p.array is storage


@pytest.mark.parametrize("shape", [(200, 300), (64, 32)])
def test_init_xavier_and_kaiming_uniform_bounds(shape):
    gn.manual_seed(0)
    fan_out, fan_in = shape
    p = _param(shape)
    storage = p.array
    assert nn.init.xavier_uniform_(p) is p
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.95 * bound
    assert abs(p.data.std() - bound / math.sqrt(3)) < 0.05 * bound / math.sqrt(3)
    assert nn.init.kaiming_uniform_(p) is p
    bound = math.sqrt(6.0 / fan_in)  # a=0: gain sqrt(2), bound sqrt(3) * gain / sqrt(fan_in)
    assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.95 * bound
    assert abs(p.data.std() - bound / math.sqrt(3)) < 0.05 * bound / math.sqrt(3)
    assert nn.init.kaiming_uniform_(p, a=math.sqrt(5)) is p
    bound = 1 / math.sqrt(fan_in)
    assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.95 * bound
    assert p.array is storage
    # torch's bounds agree
    t = torch.empty(shape)
    torch.nn.init.xavier_uniform_(t)
    assert float(t.abs().max()) <= math.sqrt(6.0 / (fan_in + fan_out))
    torch.nn.init.kaiming_uniform_(t)
    assert float(t.abs().max()) <= math.sqrt(6.0 / fan_in)


# -- 7. Parameter ----------------------------------------------------------------------------------


def test_parameter_repr_shape_and_data():
    p = nn.Parameter(np.array([[1.0, 2.0], [3.0, 4.0]]))
    ref = torch.nn.Parameter(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    for text in (repr(p), str(p)):
        assert text.startswith("Parameter containing:\ntensor(")
        assert text.endswith("requires_grad=True)")
    assert repr(ref).startswith("Parameter containing:\ntensor(") and repr(ref).endswith("requires_grad=True)")
    assert isinstance(p.shape, tuple) and p.shape == tuple(ref.shape) == (2, 2)
    assert isinstance(p.data, gn.Tensor) and p.data.dtype == gn.float32 and not p.data.requires_grad
    linear = nn.Linear(3, 2)
    assert isinstance(linear.weight.shape, tuple) and linear.weight.shape == (2, 3)
    assert linear.weight.data.dtype == gn.float32
    assert linear.weight.requires_grad is True


def test_parameter_data_assignment_copies_in_place(capsys):
    linear = nn.Linear(3, 2)
    storage = linear.weight.array
    new = np.arange(6, dtype=np.float64).reshape(2, 3)
    linear.weight.data = new
    assert linear.weight.array is storage and np.shares_memory(linear.weight.data, storage)
    assert linear.weight.data.dtype == gn.float32
    np.testing.assert_array_equal(linear.weight.data, new.astype(np.float32))
    new[0, 0] = 99.0  # the parameter holds a copy, not the caller's array
    assert linear.weight.data[0, 0] == 0.0
    assert linear.state_dict()["weight"] is storage or np.shares_memory(linear.state_dict()["weight"], storage)
    print(linear.weight)
    out = capsys.readouterr().out
    assert out.startswith("Parameter containing:\ntensor(") and out.rstrip("\n").endswith("requires_grad=True)")

"""In-place tensor operations against torch: the result, the aliasing (views, parameters, state
dicts see the change) and PyTorch's refusals."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import nn

X = np.array([[1.5, -2.0, 0.25], [3.0, 0.5, -1.0]], np.float32)

OPS = [
    ("iadd", lambda t, m: t.__iadd__(m.ones(3))),
    ("isub-number", lambda t, m: t.__isub__(2)),
    ("imul-broadcast", lambda t, m: t.__imul__(m.tensor([[2.0], [3.0]]))),
    ("itruediv", lambda t, m: t.__itruediv__(4)),
    ("ipow", lambda t, m: t.__ipow__(2)),
    ("add_-alpha", lambda t, m: t.add_(m.ones(2, 3), alpha=3)),
    ("sub_", lambda t, m: t.sub_(1.5)),
    ("mul_", lambda t, m: t.mul_(-1)),
    ("div_", lambda t, m: t.div_(m.tensor([1.0, 2.0, 4.0]))),
    ("clamp_", lambda t, m: t.clamp_(-1, 1)),
    ("abs_", lambda t, m: t.abs_()),
    ("neg_", lambda t, m: t.neg_()),
    ("relu_", lambda t, m: t.relu_()),
    ("exp_", lambda t, m: t.exp_()),
    ("zero_", lambda t, m: t.zero_()),
    ("fill_", lambda t, m: t.fill_(7)),
    ("copy_-broadcast-int", lambda t, m: t.copy_(m.tensor([1, 2, 3]))),
    ("masked_fill_", lambda t, m: t.masked_fill_(m.tensor([True, False, True]), -5.0)),
    ("addcmul_", lambda t, m: t.addcmul_(m.ones(2, 3), m.ones(2, 3) * 2, value=0.5)),
]


@pytest.mark.parametrize("name,op", OPS, ids=[n for n, _ in OPS])
def test_in_place_ops_change_the_tensor_and_its_views(name, op):
    ours, theirs = gn.tensor(X), torch.tensor(X)
    our_view, their_view = ours[1], theirs[1]
    assert op(ours, gn) is ours and op(theirs, torch) is theirs  # in place: the tensor itself comes back
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)
    np.testing.assert_allclose(our_view.numpy(), their_view.numpy(), rtol=1e-6)  # the view sees it


def test_augmented_assignment_keeps_the_object():
    ours, theirs = gn.tensor(X), torch.tensor(X)
    alias_ours, alias_theirs = ours, theirs
    ours += 1
    theirs += 1
    assert ours is alias_ours and theirs is alias_theirs
    assert repr(ours) == repr(theirs)


def test_the_manual_update_of_the_tutorials_changes_the_parameters():
    """``with torch.no_grad(): for param in model.parameters(): param -= lr * param.grad``."""
    model = nn.Linear(3, 2)
    state = model.state_dict()
    before = {k: v.clone() for k, v in state.items()}
    with gn.no_grad():
        for param in model.parameters():
            param -= 0.1 * gn.ones_like(param)
    for key, value in state.items():  # state_dict tensors share the parameters' storage
        np.testing.assert_allclose(value.numpy(), before[key].numpy() - 0.1, rtol=1e-6)
    np.testing.assert_allclose(model(np.ones((1, 3), np.float32)),
                               (before["weight"].numpy() - 0.1).sum(1)[None] + before["bias"].numpy() - 0.1, rtol=1e-5)


@pytest.mark.parametrize("make,op,error,match", [
    (lambda m: m.nn.Parameter(m.ones(2)), lambda t: t.add_(1), RuntimeError, "leaf Variable that requires grad"),
    (lambda m: m.ones(2, requires_grad=True), lambda t: t.__imul__(2), RuntimeError, "leaf Variable that requires grad"),
    (lambda m: m.zeros(2, dtype=m.int64), lambda t: t.add_(1.5), RuntimeError, "can't be cast to the desired output type Long"),
    (lambda m: m.zeros(2), lambda t: t.add_(t.new_ones_2x2()), RuntimeError, "doesn't match the broadcast shape"),
])
def test_refusals_are_torchs(make, op, error, match):
    for module in (torch, gn):
        tensor = make(module)
        if "broadcast" in match:
            op = (lambda t, module=module: t.add_(module.ones(2, 2)))
        with pytest.raises(error, match=match):
            op(tensor)


def test_random_fills_draw_from_the_global_seed():
    gn.manual_seed(5)
    a = gn.empty(1000).normal_(2.0, 0.5)
    gn.manual_seed(5)
    b = gn.empty(1000).normal_(2.0, 0.5)
    assert bool((a == b).all()) and abs(a.mean().item() - 2.0) < 0.1 and abs(a.std().item() - 0.5) < 0.05
    u = gn.empty(1000).uniform_(-1, 3)
    assert u.min().item() >= -1 and u.max().item() < 3


def test_in_place_changes_inside_a_traced_forward_are_recorded_out_of_place():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            out = self.fc(x)
            out += x  # a ResNet block's shortcut
            return out

    model = Residual()
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    expected = x @ np.asarray(model.fc.weight.data).T + np.asarray(model.fc.bias.data) + x
    np.testing.assert_allclose(gn.compile(model)(x), expected, rtol=1e-5, atol=1e-6)

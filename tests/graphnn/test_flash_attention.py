"""The attention primitive (graphnn.attention_op): its numpy meaning and gradient rule against
float64 finite differences, its expansion into other primitives (what C and the plan
interpreter run) against that meaning, and the Triton backend's flash-attention kernels (in
Triton's interpreter) against the numpy reference, with odd sizes, a batch of 1, several blocks
of queries and keys, causal and boolean and additive masks, and rows no key may be attended
from. The Triton plan keeps no (batch, heads, Tq, Tk) buffer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import attention_op, nn
from graphnn.ir import B, Graph, evaluate_dim, evaluate_shape
from graphnn.ops import Builder
from runtime import reference
from tests.graphnn.test_autodiff import check_gradients, gradient_graph

RNG = np.random.default_rng(11)

# (q, k, v shapes; causal; mask: None, "bool" or "add")
PRIMITIVE_CASES = [
    ((B, 2, 3, 4), (B, 2, 5, 4), (B, 2, 5, 3), False, None),
    ((B, 4, 2), (B, 3, 2), (B, 3, 5), True, None),   # more queries than keys: top-left aligned
    ((B, 3, 4), (B, 4, 4), (B, 4, 2), False, "bool"),  # row 1 sees no key
    ((B, 3, 4), (B, 5, 4), (B, 5, 2), False, "add"),   # row 2 sees no key (-inf), the mask learns
]


def _mask_sample(kind: str, shape: tuple) -> np.ndarray:
    if kind == "bool":
        allowed = RNG.random(shape) > 0.3
        allowed[..., 0] = True
        allowed[..., 1, :] = False
        return allowed
    bias = RNG.standard_normal(shape)
    bias[..., 2, :] = -np.inf
    return bias


@pytest.mark.parametrize("case", PRIMITIVE_CASES, ids=lambda c: f"causal{c[3]}-{c[4]}")
def test_the_primitive_and_its_gradient_match_finite_differences(case):
    q_shape, k_shape, v_shape, causal, kind = case
    scores = q_shape[:-1] + (k_shape[-2],)
    mask = _mask_sample(kind, evaluate_shape(scores, 2)) if kind else None

    def build(b, q, k, v, *learned):
        m = learned[0] if kind == "add" else (b.leaf("input", "m", scores, "bool") if kind else None)
        return b.attention(q, k, v, m, 0.7, causal)

    shapes = [q_shape, k_shape, v_shape] + ([scores] if kind == "add" else [])
    if kind == "bool":  # a boolean mask is an input of the graph (no gradient)
        graph, leaves, weights = gradient_graph(build, shapes)
        feeds = {leaf.attrs["name"]: RNG.standard_normal(evaluate_shape(leaf.shape, 2)) for leaf in leaves}
        feeds.update(m=mask, w=RNG.standard_normal(evaluate_shape(weights.shape, 2)))
        ours = reference.run(graph, feeds, 2, precision=np.float64)[0]
        assert np.all(ours["g0"][:, 1] == 0) and np.isfinite(ours["g0"]).all()  # the masked row: no gradient
        _check_against_torch(graph, feeds, ours, causal, mask)
        return
    def sample(shape):  # the additive mask (with its -inf row) where the mask goes
        return mask if kind == "add" and shape == mask.shape else RNG.standard_normal(shape)

    check_gradients(build, shapes, 2, RNG, sample=sample, rtol=1e-5, atol=1e-7)


def _check_against_torch(graph: Graph, feeds: dict, ours: dict, causal: bool, mask) -> None:
    """The reference's output and gradients equal torch's scaled_dot_product_attention's."""
    q, k, v = (torch.tensor(feeds[f"p{i}"], requires_grad=True) for i in range(3))
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=torch.tensor(mask), scale=0.7,
                                                           is_causal=causal)
    loss = (out * torch.tensor(feeds["w"])).sum()
    loss.backward()
    np.testing.assert_allclose(ours["loss"], loss.item(), rtol=1e-10)
    for i, t in enumerate((q, k, v)):
        np.testing.assert_allclose(ours[f"g{i}"], t.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("case", PRIMITIVE_CASES, ids=lambda c: f"causal{c[3]}-{c[4]}")
def test_the_expansion_into_primitives_means_the_same(case):
    q_shape, k_shape, v_shape, causal, kind = case
    scores = q_shape[:-1] + (k_shape[-2],)

    def build(b, q, k, v, *learned):
        m = learned[0] if kind == "add" else (b.leaf("input", "m", scores, "bool") if kind else None)
        return b.attention(q, k, v, m, 0.7, causal)

    graph, leaves, weights = gradient_graph(build, [q_shape, k_shape, v_shape] + ([scores] if kind == "add" else []))
    feeds = {leaf.attrs["name"]: RNG.standard_normal(evaluate_shape(leaf.shape, 3)) for leaf in leaves}
    feeds["w"] = RNG.standard_normal(evaluate_shape(weights.shape, 3))
    if kind:
        feeds["m" if kind == "bool" else "p3"] = _mask_sample(kind, evaluate_shape(scores, 3))
    expanded = attention_op.expand(graph)
    assert not any(n.op in attention_op.OPS for n in expanded.live_nodes())
    direct = reference.run(graph, feeds, 3, precision=np.float64)[0]
    composed = reference.run(expanded, feeds, 3, precision=np.float64)[0]
    for name in direct:
        np.testing.assert_allclose(composed[name], direct[name], rtol=1e-10, atol=1e-12, err_msg=name)


def test_second_derivatives_are_refused():
    from graphnn import autodiff
    from graphnn import pointwise as pw

    graph = Graph()
    b = Builder(graph)
    q = b.leaf("param", "q", (2, 3, 4))
    loss = b.reshape(b.reduce("sum", b.attention(q, q, q, None, 0.5, False), (0, 1, 2)), ())
    backward, grads = autodiff.gradients(graph, loss, [q])
    b = Builder(backward)
    g = grads[q.id]
    twice = b.reshape(b.reduce("sum", b.pointwise(pw.mul, g, g), (0, 1, 2)), ())
    with pytest.raises(NotImplementedError, match="second derivatives of attention"):
        autodiff.gradients(backward, twice, [q])


# -- the kernels ---------------------------------------------------------------------------------------
class Attention(nn.Module):
    """Self-attention over (N, T, E) in H heads of size D, then cross-attention from its output
    to a learned memory of S slots (Tq != Tk, values of another width)."""

    def __init__(self, E, H, D, S, causal, mask):
        super().__init__()
        self.H, self.D, self.causal, self.mask = H, D, causal, mask
        self.qkv = nn.Linear(E, 3 * H * D)
        self.memory = nn.Parameter(gn.tensor(RNG.standard_normal((S, H * D + H * 3)).astype(np.float32)))
        self.out = nn.Linear(H * 3, E)

    def forward(self, x):
        N, T, _ = x.shape
        H, D = self.H, self.D
        F = nn.functional
        q, k, v = self.qkv(x).view(N, T, 3, H, D).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # (N, H, T, D)
        keys, values = self.memory.split([H * D, H * 3], dim=1)
        mk, mv = keys.view(-1, H, D).transpose(0, 1), values.view(-1, H, 3).transpose(0, 1)  # (H, S, D), (H, S, 3)
        z = F.scaled_dot_product_attention(y + mk.sum(1, keepdim=True) * 0.1, mk, mv, attn_mask=self.mask)
        return self.out(z.transpose(1, 2).reshape(N, T, H * 3)).mean(1)


KERNEL_CASES = [  # (batch, T, E, H, D, S, causal, mask)
    (3, 7, 6, 2, 5, 9, False, None),
    (1, 1, 4, 1, 3, 2, True, None),
    (2, 40, 8, 2, 4, 37, True, "bool"),  # several blocks of 32; fully masked rows
    (2, 9, 5, 3, 16, 5, False, "add"),   # -inf rows; a head of exactly 16
]


def _mask(kind, T, S):
    if kind is None:
        return None
    allowed = RNG.random((T, S)) > 0.4
    allowed[::3, 0] = True
    allowed[1] = False  # query 1 sees no key: zeros and no gradient, as torch's
    if kind == "bool":
        return gn.tensor(allowed)
    bias = np.where(allowed, RNG.standard_normal((T, S)), -np.inf).astype(np.float32)
    return gn.tensor(bias)


def _train(backend, case, steps=3):
    batch, T, E, H, D, S, causal, kind = case
    gn.manual_seed(0)
    global RNG
    RNG = np.random.default_rng(5)
    model = Attention(E, H, D, S, causal, _mask(kind, T, S))
    train = gn.compile(model, nn.MSELoss(), gn.optim.SGD(model.parameters(), lr=0.2, momentum=0.9), backend=backend)
    x = RNG.standard_normal((batch, T, E)).astype(np.float32)
    y = RNG.standard_normal((batch, E)).astype(np.float32)
    losses = [float(train.step(x, y)) for _ in range(steps)]
    return losses, {n: p.detach().numpy().copy() for n, p in model.named_parameters()}, train


@pytest.mark.parametrize("case", KERNEL_CASES, ids=lambda c: f"N{c[0]}-T{c[1]}-D{c[4]}-S{c[5]}-causal{c[6]}-{c[7]}")
def test_flash_attention_kernels_match_the_reference(case):
    reference_losses, reference_params, _ = _train("numpy", case)
    assert np.isfinite(reference_losses).all()
    for backend in ("triton", "c"):
        losses, params, train = _train(backend, case)
        np.testing.assert_allclose(losses, reference_losses, rtol=2e-5, atol=1e-6, err_msg=backend)
        for name, value in params.items():
            np.testing.assert_allclose(value, reference_params[name], rtol=1e-4, atol=2e-6, err_msg=f"{backend} {name}")
        kinds = {k.kind for ex in train.executables.values() for plan, _ in ex.plans.values() for k in plan.kernels}
        assert ("attention" in kinds) == (backend == "triton"), kinds


def test_the_triton_plan_keeps_no_probabilities():
    """On Triton no buffer holds (batch, heads, T, T) scores or probabilities; on C the softmax's
    probabilities are stored for the backward."""
    case = (2, 48, 8, 2, 4, 48, True, None)
    largest = {}
    for backend in ("triton", "c"):
        _, _, train = _train(backend, case, steps=1)
        sizes = [evaluate_dim(b.size, 1) for ex in train.executables.values() for plan, _ in ex.plans.values()
                 for b in plan.buffers.values() if b.kind == "arena"]
        largest[backend] = max(sizes)
    heads_scores = 2 * 48 * 48
    assert largest["triton"] < heads_scores <= largest["c"], largest


def test_multihead_attention_without_weights_gives_zeros_where_every_key_is_padded_as_torch():
    from tests.graphnn.torch_oracle import pair

    ours, theirs = pair(lambda m: m.MultiheadAttention(4, 2, batch_first=True))
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    padding = np.array([[True, True, True], [False, True, False]])
    results = []
    for lib, module in ((gn, ours), (torch, theirs)):
        xt = lib.tensor(x, requires_grad=True)
        out, weights = module(xt, xt, xt, key_padding_mask=lib.tensor(padding), need_weights=False)
        out.sum().backward()
        results.append((out.detach().numpy(), xt.grad.numpy(), module.in_proj_weight.grad.numpy()))
        assert weights is None
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.isnan(results[0][0]).any()


def test_a_learned_additive_mask_gets_torch_gradient():
    bias = RNG.standard_normal((2, 5, 5)).astype(np.float32)
    arrays = [RNG.standard_normal((3, 2, 5, 4)).astype(np.float32) for _ in range(3)]
    grads = []
    for lib in (gn, torch):
        q, k, v = (lib.tensor(a, requires_grad=True) for a in arrays)
        m = lib.tensor(bias, requires_grad=True)
        out = lib.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m)
        (out * out).sum().backward()
        grads.append([t.grad.numpy() for t in (q, k, v, m)])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

"""Attention and the Transformer layers against torch: ``F.scaled_dot_product_attention``,
``nn.MultiheadAttention``, the encoder and decoder layers and stacks, ``nn.Transformer``:
outputs, attention weights, input and parameter gradients, and training steps, from the same
weights on the same data."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import nn
from tests.graphnn.torch_oracle import pair

RNG = np.random.default_rng(7)


def data(*shape):
    return RNG.standard_normal(shape).astype(np.float32)




def close(a, b, rtol=1e-4, atol=1e-5, msg=""):
    a = a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)
    np.testing.assert_allclose(a, b.detach().numpy(), rtol=rtol, atol=atol, equal_nan=True, err_msg=msg)


def grads_close(ours, theirs, rtol=1e-4, atol=1e-5):
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            close(a.grad, b.grad, rtol, atol, name)


# -- scaled_dot_product_attention -----------------------------------------------------------------------

SDPA_CASES = [
    dict(q=(2, 3, 5, 4), k=(2, 3, 7, 4), v=(2, 3, 7, 6)),
    dict(q=(1, 1, 1, 3), k=(1, 1, 1, 3), v=(1, 1, 1, 3)),
    dict(q=(3, 5, 8), k=(3, 5, 8), v=(3, 5, 8), is_causal=True),
    dict(q=(2, 2, 6, 4), k=(2, 2, 9, 4), v=(2, 2, 9, 4), is_causal=True),
    dict(q=(2, 4, 5, 4), k=(2, 4, 7, 4), v=(2, 4, 7, 4), mask="bool"),
    dict(q=(2, 4, 5, 4), k=(2, 4, 7, 4), v=(2, 4, 7, 4), mask="float"),
    dict(q=(2, 3, 5, 4), k=(2, 3, 7, 4), v=(2, 3, 7, 4), scale=0.3),
    dict(q=(5, 4), k=(6, 4), v=(6, 2), mask="bool"),
]


@pytest.mark.parametrize("case", SDPA_CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_sdpa_matches_torch_with_gradients(case):
    arrays = [data(*case[n]) for n in "qkv"]
    kwargs = {k: case[k] for k in ("is_causal", "scale") if k in case}
    mask = None
    if "mask" in case:
        shape = (case["q"][-2], case["k"][-2])
        mask = RNG.random(shape) > 0.4 if case["mask"] == "bool" else data(*shape)
        if case["mask"] == "bool":
            mask[:, 0] = True  # no fully masked row here (see the next test)
    results = []
    for lib in (gn, torch):
        q, k, v = (lib.tensor(a, requires_grad=True) for a in arrays)
        m = None if mask is None else lib.tensor(mask)
        out = lib.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m, **kwargs)
        (out * lib.tensor(np.linspace(-1, 1, out.numel(), dtype=np.float32).reshape(tuple(out.shape)))).sum().backward()
        results.append((out, q.grad, k.grad, v.grad))
    for a, b in zip(*results):
        close(a, b)


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_sdpa_fully_masked_rows_as_torch(kind):
    """A query no key may attend: torch's scaled_dot_product_attention gives zeros there, and a
    zero gradient (MultiheadAttention, below, gives NaN, as torch's)."""
    q, k, v = data(1, 3, 4), data(1, 5, 4), data(1, 5, 4)
    mask = np.ones((3, 5), bool)
    mask[1] = False
    if kind == "float":
        mask = np.where(mask, 0.0, -np.inf).astype(np.float32)
    results = []
    for lib in (gn, torch):
        qt = lib.tensor(q, requires_grad=True)
        out = lib.nn.functional.scaled_dot_product_attention(qt, lib.tensor(k), lib.tensor(v), attn_mask=lib.tensor(mask))
        out.sum().backward()
        results.append((out, qt.grad))
    close(results[0][0], results[1][0])
    close(results[0][1], results[1][1])
    assert not np.isnan(results[0][1].numpy()).any()


def test_multihead_attention_with_every_key_padded_is_nan_as_torch():
    ours, theirs = pair(lambda m: m.MultiheadAttention(4, 1, batch_first=True))
    x, padding = data(1, 3, 4), np.ones((1, 3), bool)
    close(ours(gn.tensor(x), gn.tensor(x), gn.tensor(x), key_padding_mask=gn.tensor(padding))[0],
          theirs(torch.tensor(x), torch.tensor(x), torch.tensor(x), key_padding_mask=torch.tensor(padding))[0])


def test_sdpa_errors():
    q = gn.tensor(data(2, 3, 4))
    with pytest.raises(RuntimeError, match="is_causal"):
        gn.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=gn.ones(3, 3), is_causal=True)
    with pytest.raises(RuntimeError, match="embedding size"):
        gn.nn.functional.scaled_dot_product_attention(q, gn.tensor(data(2, 3, 5)), q)


# -- MultiheadAttention ----------------------------------------------------------------------------------

MHA_CASES = [
    dict(batch_first=True),
    dict(batch_first=False),
    dict(batch_first=True, need_weights=False),
    dict(batch_first=True, average_attn_weights=False),
    dict(batch_first=True, attn_mask="bool2"),
    dict(batch_first=False, attn_mask="float2"),
    dict(batch_first=True, attn_mask="bool3"),
    dict(batch_first=True, key_padding_mask=True),
    dict(batch_first=True, cross=True),
    dict(batch_first=True, cross=True, kdim=3, vdim=5),
    dict(batch_first=True, bias=False),
    dict(batch_first=True, unbatched=True),
    dict(batch_first=True, add_bias_kv=True, attn_mask="bool2", key_padding_mask=True),
    dict(batch_first=False, add_zero_attn=True, attn_mask="float2", need_weights=False),
    dict(batch_first=True, add_bias_kv=True, add_zero_attn=True, cross=True, attn_mask="bool3", need_weights=False),
    dict(batch_first=True, add_bias_kv=True, add_zero_attn=True, unbatched=True, average_attn_weights=False),
]


@pytest.mark.parametrize("case", MHA_CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_multihead_attention_matches_torch(case):
    n, L, S, E, H = 3, 5, 7, 8, 2
    kdim, vdim = case.get("kdim", E), case.get("vdim", E)
    ours, theirs = pair(lambda m: m.MultiheadAttention(E, H, bias=case.get("bias", True), kdim=case.get("kdim"),
                                                       vdim=case.get("vdim"), batch_first=case["batch_first"],
                                                       add_bias_kv=case.get("add_bias_kv", False),
                                                       add_zero_attn=case.get("add_zero_attn", False)))
    assert [k for k, _ in ours.named_parameters()] == [k for k, _ in theirs.named_parameters()]
    first = case["batch_first"]

    def layout(*shape):  # (N, L, E) data in the module's layout
        a = data(*shape)
        if case.get("unbatched"):
            return a[0]
        return a if first else a.transpose(1, 0, 2).copy()

    x = layout(n, L, E)
    if case.get("cross"):
        key, value = layout(n, S, kdim), layout(n, S, vdim)
        source = S
    else:
        key = value = None
        source = L
    kwargs = {k: case[k] for k in ("need_weights", "average_attn_weights") if k in case}
    masks = {}
    if "attn_mask" in case:
        kind = case["attn_mask"]
        shape = (L, source) if kind.endswith("2") else (n * H, L, source)
        if kind.startswith("bool"):
            m = RNG.random(shape) < 0.3
            m[..., 0] = False
        else:
            m = data(*shape)
        masks["attn_mask"] = m
    if case.get("key_padding_mask"):
        m = np.zeros((n, source), bool)
        m[0, -2:] = True
        m[2, 1] = True
        masks["key_padding_mask"] = m
    results = []
    for lib, module in ((gn, ours), (torch, theirs)):
        q = lib.tensor(x, requires_grad=True)
        k = q if key is None else lib.tensor(key)
        v = q if value is None else lib.tensor(value)
        out, weights = module(q, k, v, **{name: lib.tensor(m) for name, m in masks.items()}, **kwargs)
        out.pow(2).sum().backward()
        results.append((out, weights, q.grad))
    (a, wa, ga), (b, wb, gb) = results
    close(a, b)
    assert (wa is None) == (wb is None)
    if wa is not None:
        close(wa, wb)
    close(ga, gb)
    grads_close(ours, theirs)


def test_multihead_attention_structure_as_torch():
    ours, theirs = pair(lambda m: m.MultiheadAttention(8, 2, kdim=3, vdim=5))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert repr(ours) == repr(theirs)
    with pytest.raises(AssertionError, match="divisible"):
        nn.MultiheadAttention(6, 4)
    with pytest.raises(ValueError, match="greater than 0"):
        nn.MultiheadAttention(0, 2)


# -- Transformer layers --------------------------------------------------------------------------------------

def encoder_layer(norm_first: bool, activation: str):
    return lambda m: m.TransformerEncoderLayer(8, 2, dim_feedforward=12, dropout=0.0, activation=activation,
                                               batch_first=True, norm_first=norm_first)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_matches_torch(norm_first, activation):
    ours, theirs = pair(encoder_layer(norm_first, activation))
    x = data(3, 5, 8)
    mask = np.triu(np.ones((5, 5), bool), 1)
    outs = []
    for lib, module in ((gn, ours), (torch, theirs)):
        xt = lib.tensor(x, requires_grad=True)
        out = module(xt, src_mask=lib.tensor(mask))
        (out * lib.tensor(np.linspace(-1, 1, out.numel(), dtype=np.float32).reshape(3, 5, 8))).sum().backward()
        outs.append((out, xt.grad))
    close(outs[0][0], outs[1][0])
    close(outs[0][1], outs[1][1])
    grads_close(ours, theirs)


def test_encoder_and_decoder_stacks_match_torch():
    def build(m):
        enc = m.TransformerEncoder(m.TransformerEncoderLayer(8, 2, 16, 0.0, batch_first=True), 2, m.LayerNorm(8))
        dec = m.TransformerDecoder(m.TransformerDecoderLayer(8, 2, 16, 0.0, batch_first=True, norm_first=True), 2)
        return m.ModuleDict({"enc": enc, "dec": dec})

    ours, theirs = pair(build)
    src, tgt = data(2, 6, 8), data(2, 4, 8)
    causal = np.triu(np.full((4, 4), -np.inf, np.float32), 1)
    np.testing.assert_array_equal(nn.Transformer.generate_square_subsequent_mask(4).numpy(),
                                  torch.nn.Transformer.generate_square_subsequent_mask(4).numpy())
    outs = []
    for lib, module in ((gn, ours), (torch, theirs)):
        memory = module["enc"](lib.tensor(src))
        out = module["dec"](lib.tensor(tgt), memory, tgt_mask=lib.tensor(causal), tgt_is_causal=True)
        out.pow(2).mean().backward()
        outs.append(out)
    close(outs[0], outs[1])
    grads_close(ours, theirs)
    assert len(list(ours.parameters())) == len(list(theirs.parameters()))


def test_the_full_transformer_matches_torch():
    ours, theirs = pair(lambda m: m.Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                                dim_feedforward=8, dropout=0.0))
    src, tgt = data(6, 2, 8), data(4, 2, 8)  # sequence first, as torch's default
    outs = [module(lib.tensor(src), lib.tensor(tgt)) for lib, module in ((gn, ours), (torch, theirs))]
    close(outs[0], outs[1])


class Classifier:
    """A small Transformer encoder classifier over token features, as a module of either library."""

    @staticmethod
    def build(m):
        class Net(m.Module):
            def __init__(self):
                super().__init__()
                self.inp = m.Linear(4, 8)
                self.enc = m.TransformerEncoder(m.TransformerEncoderLayer(8, 2, 16, 0.0, activation="gelu",
                                                                          batch_first=True, norm_first=True), 2)
                self.head = m.Linear(8, 3)

            def forward(self, x):
                return self.head(self.enc(self.inp(x)).mean(1))

        return Net()


def test_twenty_adamw_steps_of_an_encoder_classifier_match_torch(backend, monkeypatch):
    monkeypatch.setenv("GRAPHNN_BACKEND", backend)
    ours, theirs = pair(Classifier.build)
    x, y = data(5, 7, 4), RNG.integers(0, 3, 5)
    losses = []
    for lib, module in ((gn, ours), (torch, theirs)):
        opt = lib.optim.AdamW(module.parameters(), lr=1e-2)
        run = []
        for _ in range(20):
            loss = lib.nn.functional.cross_entropy(module(lib.tensor(x)), lib.tensor(y))
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.append(loss.item())
        losses.append(run)
    np.testing.assert_allclose(losses[0], losses[1], rtol=2e-3, atol=2e-4)


def test_an_encoder_in_a_compiled_train_step_matches_torch():
    ours, theirs = pair(Classifier.build)
    x, y = data(6, 7, 4), RNG.integers(0, 3, 6)
    step = gn.compile(ours, gn.nn.CrossEntropyLoss(), gn.optim.AdamW(ours.parameters(), lr=1e-2)).step
    opt = torch.optim.AdamW(theirs.parameters(), lr=1e-2)
    for _ in range(5):
        a = step(x, y)
        loss = torch.nn.functional.cross_entropy(theirs(torch.tensor(x)), torch.tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        np.testing.assert_allclose(float(a), loss.item(), rtol=1e-3, atol=1e-4)
    # a batch of another size runs the same program (the batch stays symbolic)
    step(x[:1], y[:1])


def test_grouped_query_attention_and_repeat_interleave_match_torch():
    q, k, v = data(2, 4, 5, 3), data(2, 2, 6, 3), data(2, 2, 6, 3)
    results = []
    for lib in (gn, torch):
        qt, kt = lib.tensor(q, requires_grad=True), lib.tensor(k, requires_grad=True)
        out = lib.nn.functional.scaled_dot_product_attention(qt, kt, lib.tensor(v), enable_gqa=True, is_causal=True)
        out.pow(2).sum().backward()
        results.append((out, qt.grad, kt.grad))
    for a, b in zip(*results):
        close(a, b)
    x = data(3, 2, 4)
    for dim in (None, 0, 1, -1):
        close(gn.tensor(x).repeat_interleave(2, dim), torch.tensor(x).repeat_interleave(2, dim))
    counts = np.array([1, 0, 2])
    close(gn.tensor(x).repeat_interleave(gn.tensor(counts), 0), torch.tensor(x).repeat_interleave(torch.tensor(counts), 0))
    traced = gn.compile(type("R", (nn.Module,), {"forward": lambda self, t: t.repeat_interleave(3, dim=1)})())(x)
    np.testing.assert_array_equal(traced, np.repeat(x, 3, axis=1))

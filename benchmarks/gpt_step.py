"""Milliseconds per training step of a small GPT (examples/char_gpt.py's model: token and position
embeddings, pre-LayerNorm blocks of causal self-attention and a GELU MLP, a tied output head;
AdamW): graphnn's compiled ``step`` and its literal PyTorch loop against the same loop on torch
eager and torch.compile, measured side by side (interleaved rounds, medians). Also the share of
graphnn's step the attention takes (the same step with the attention replaced by an identity of
the values, subtracted), the same model with the attention written out (masked scores, softmax,
product) instead of F.scaled_dot_product_attention, and the step's planned peak memory on C and on
Triton, whose flash attention kernels keep no (batch, heads, T, T) probabilities.

    python benchmarks/gpt_step.py [--rounds 5] [--steps 10] [--batch 16] [--context 64] [--width 128]
                                  [--layers 4] [--heads 4] [--vocab 96] [--no-compile]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import graphnn as gn  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


def gpt(lib, vocab: int, context: int, width: int, layers: int, heads: int, attention: str = "flash"):
    """The GPT of examples/char_gpt.py in library ``lib`` (graphnn or torch), dropout off.
    ``attention``: "flash" (F.scaled_dot_product_attention, the example's default), "manual"
    (masked scores, softmax and product written out, its --manual-attention) or "none" (the
    values passed through: what the step costs without attention)."""
    nn, F = lib.nn, lib.nn.functional

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn, self.c_proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
            self.register_buffer("bias", lib.tril(lib.ones(context, context)).view(1, 1, context, context))

        def forward(self, x):
            B, T, C = x.size()
            q, k, v = self.c_attn(x).split(width, dim=2)
            q, k, v = (t.view(B, T, heads, C // heads).transpose(1, 2) for t in (q, k, v))
            if attention == "flash":
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            elif attention == "manual":
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
                att = F.softmax(att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf")), dim=-1)
                y = att @ v
            else:
                y = v
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(width), Attention(), nn.LayerNorm(width)
            self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, width), nn.Embedding(context, width)
            self.h = nn.ModuleList([Block() for _ in range(layers)])
            self.ln_f, self.lm_head = nn.LayerNorm(width), nn.Linear(width, vocab, bias=False)
            self.wte.weight = self.lm_head.weight

        def forward(self, idx):
            x = self.wte(idx) + self.wpe(lib.arange(idx.size(1)))
            for block in self.h:
                x = block(x)
            return self.lm_head(self.ln_f(x))

    return GPT()


def sequence_loss(lib):
    """Cross-entropy over every position: (B, T, V) logits against (B, T) targets."""
    F = lib.nn.functional

    class SequenceLoss(lib.nn.Module):
        def forward(self, logits, targets):
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))

    return SequenceLoss()


def setups(args) -> dict:
    """Each contender as a function running one training step."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, args.vocab, (args.batch, args.context))
    y = rng.integers(0, args.vocab, (args.batch, args.context))
    shape = (args.vocab, args.context, args.width, args.layers, args.heads)
    runs, extra = {}, {}
    gn.manual_seed(0)
    model = gpt(gn, *shape)
    train = gn.compile(model, sequence_loss(gn), gn.optim.AdamW(model.parameters(), lr=1e-3))
    runs["graphnn step"] = lambda: train.step(x, y)
    extra["peak"] = train
    others = {}
    for attention in ("manual", "none"):
        gn.manual_seed(0)
        net = gpt(gn, *shape, attention=attention)
        others[attention] = gn.compile(net, sequence_loss(gn), gn.optim.AdamW(net.parameters(), lr=1e-3))
    extra["manual peak"] = others["manual"]
    runs["graphnn step, attention written out"] = lambda: others["manual"].step(x, y)
    runs["graphnn step, no attention"] = lambda: others["none"].step(x, y)
    libs = [("graphnn loop", gn, False)]
    if torch is not None:
        libs += [("torch eager", torch, False)] + ([("torch.compile", torch, True)] if args.compile else [])
    for label, lib, compiled in libs:
        lib.manual_seed(0)
        net = gpt(lib, *shape)
        criterion = sequence_loss(lib)
        optimizer = lib.optim.AdamW(net.parameters(), lr=1e-3)
        xt, yt = lib.tensor(x), lib.tensor(y)

        def iteration(net=net, criterion=criterion, optimizer=optimizer, xt=xt, yt=yt):
            loss = criterion(net(xt), yt)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return loss.item()

        runs[label] = torch.compile(iteration) if compiled else iteration
    return runs, extra


def per_step(run, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        run()
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=96)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    args = parser.parse_args()
    runs, extra = setups(args)
    for run in runs.values():  # compile and warm every contender first
        per_step(run, 3)
    times = {label: [] for label in runs}
    for _ in range(args.rounds):
        for label, run in runs.items():
            times[label].append(per_step(run, args.steps))
    medians = {label: statistics.median(values) for label, values in times.items()}
    print(f"GPT: batch {args.batch}, context {args.context}, width {args.width}, {args.layers} layers, "
          f"{args.heads} heads, vocabulary {args.vocab}; ms per training step, median of {args.rounds} rounds")
    eager = medians.get("torch eager")
    for label, value in medians.items():
        ratio = f"  ({eager / value:.2f}x torch eager)" if eager else ""
        print(f"{label:<28} {value:8.2f}{ratio}")
    attention = medians["graphnn step"] - medians["graphnn step, no attention"]
    print(f"attention's share of graphnn's step: {attention:.2f} ms of {medians['graphnn step']:.2f} "
          f"({100 * attention / medians['graphnn step']:.0f}%)")
    print("peak memory of graphnn's step (its memory plan), MiB:")
    for label, train, native in (("C", extra["peak"], ()), ("Triton (flash attention kernels)", extra["peak"], ("attention",)),
                                 ("attention written out", extra["manual peak"], ())):
        print(f"  {label:<34} {planned_peak(train, args.batch, native) / 2**20:6.1f}")
    if torch is not None:
        print(f"  {'torch eager (state, saved tensors)':<34} {torch_peak(args) / 2**20:6.1f}")


def planned_peak(train, batch: int, native: tuple = ()) -> int:
    """Bytes the compiled train step holds while it runs on a backend with kernels for the
    composite ops ``native``: its planned arena at this batch size plus every persistent buffer
    its plan reads or writes (parameters, gradients, optimizer state), as ``graphnn dump``'s
    summary counts them. Planned, not run: no GPU is needed for the Triton figure."""
    from graphnn.executable import lower
    from graphnn.ir import evaluate_dim

    best = 0
    for executable in train.executables.values():
        for graph in executable.graphs.values():
            plan, memory = lower(graph, executable.storage, native)
            persistent = sum(evaluate_dim(b.size, batch) * (2 if b.dtype in ("i64", "f64") else 1)
                             for b in plan.buffers.values() if b.kind not in ("arena", "input", "output", "hyper"))
            best = max(best, 4 * (evaluate_dim(memory.size, batch) + persistent))
    return best


def torch_peak(args) -> int:
    """What torch's eager step holds at its peak, counted as graphnn's plan counts: parameters,
    gradients and AdamW's two moments, plus every tensor autograd saves for the backward during
    the forward (its own activations; the temporaries of single ops are left out)."""
    torch.manual_seed(0)
    net = gpt(torch, args.vocab, args.context, args.width, args.layers, args.heads)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.integers(0, args.vocab, (args.batch, args.context)))
    y = torch.tensor(rng.integers(0, args.vocab, (args.batch, args.context)))
    saved: dict = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = sequence_loss(torch)(net(x), y)
    loss.backward()
    parameters = {id(p): p.numel() * 4 for p in net.parameters()}
    state = 4 * sum(parameters.values())
    owned = {p.untyped_storage().data_ptr() for p in net.parameters()}
    return state + sum(size for ptr, size in saved.items() if ptr not in owned)

if __name__ == "__main__":
    main()

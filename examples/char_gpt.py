"""A character-level GPT, written as PyTorch code and run on graphnn by its imports.

A decoder-only Transformer (token and position embeddings; blocks of causal self-attention and an
MLP, each after a LayerNorm and added back to the residual stream; a final LayerNorm; an output
head sharing the token embedding's weight) learns to continue Python source: the text is the
source of a few standard-library modules, which every Python installation ships. It trains with
AdamW through PyTorch's own loop, reports the validation loss after each epoch next to the
unigram entropy of the text (the loss of a model that knows only how often each character
occurs), and ends with a sample: repeated inference calls on the last ``block_size`` characters,
with temperature and top-k sampling.

Run: python examples/char_gpt.py [--epochs 6] [--steps 100] [--n-layer 4] [--n-embd 128] ...
"""
import argparse
import collections
import inspect
import math
import sys

import graphnn as torch
import graphnn.nn as nn
import graphnn.nn.functional as F

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=6)
parser.add_argument("--steps", type=int, default=100, help="training steps per epoch")
parser.add_argument("--batch-size", type=int, default=16)
parser.add_argument("--block-size", type=int, default=64)
parser.add_argument("--n-layer", type=int, default=4)
parser.add_argument("--n-head", type=int, default=4)
parser.add_argument("--n-embd", type=int, default=128)
parser.add_argument("--dropout", type=float, default=0.0)
parser.add_argument("--manual-attention", action="store_true",
                    help="attention written out (masked scores, softmax, product) instead of the fused kernel")
parser.add_argument("--lr", type=float, default=3e-3)
parser.add_argument("--eval-batches", type=int, default=8)
parser.add_argument("--sample-length", type=int, default=300)
parser.add_argument("--temperature", type=float, default=0.8)
parser.add_argument("--top-k", type=int, default=20)
parser.add_argument("--seed", type=int, default=1337)
args = parser.parse_args()

torch.manual_seed(args.seed)

# -- the text: Python source every installation has ------------------------------------------------
import argparse as _argparse  # noqa: E402
import textwrap  # noqa: E402
import string  # noqa: E402
import fractions  # noqa: E402

text = "\n".join(inspect.getsource(module) for module in (textwrap, string, fractions, _argparse))
text = "".join(c if c.isascii() else "?" for c in text)
chars = sorted(set(text))
vocab_size = len(chars)
stoi = {c: i for i, c in enumerate(chars)}
itos = {i: c for i, c in enumerate(chars)}


def encode(s):
    return [stoi[c] for c in s]


def decode(ids):
    return "".join(itos[i] for i in ids)


data = torch.tensor(encode(text), dtype=torch.long)
n = int(0.9 * len(data))
train_data, val_data = data[:n], data[n:]

counts = collections.Counter(text[:n])
unigram_entropy = -sum(c / n * math.log(c / n) for c in counts.values())


def get_batch(split):
    source = train_data if split == "train" else val_data
    ix = torch.randint(len(source) - args.block_size, (args.batch_size,))
    x = torch.stack([source[i:i + args.block_size] for i in ix])
    y = torch.stack([source[i + 1:i + 1 + args.block_size] for i in ix])
    return x, y


# -- the model ---------------------------------------------------------------------------------------
class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, block_size, dropout):
        super().__init__()
        assert n_embd % n_head == 0
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)
        self.n_head, self.n_embd, self.dropout = n_head, n_embd, dropout
        # flash attention: the fused kernel computes the attention tile by tile and keeps no
        # (T, T) probabilities for the backward
        self.flash = hasattr(torch.nn.functional, "scaled_dot_product_attention") and not args.manual_attention
        if not self.flash:
            # a causal mask: position t sees positions 0..t
            self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size))
                                 .view(1, 1, block_size, block_size))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if self.flash:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None,
                                               dropout_p=self.dropout if self.training else 0, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            att = F.softmax(att, dim=-1)
            att = self.attn_dropout(att)
            y = att @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, n_embd, dropout):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, block_size, dropout):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size, dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd, dropout)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd, dropout):
        super().__init__()
        self.block_size = block_size
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList([Block(n_embd, n_head, block_size, dropout) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # scaled init of the residual projections
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx):
        b, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


model = GPT(vocab_size, args.block_size, args.n_layer, args.n_head, args.n_embd, args.dropout)
optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.99))
print(f"{sum(p.numel() for p in model.parameters())} parameters, vocabulary {vocab_size}, "
      f"{len(train_data)} training characters")
print(f"unigram entropy {unigram_entropy:.4f} nats per character")


@torch.no_grad()
def estimate_val_loss():
    model.eval()
    losses = []
    for _ in range(args.eval_batches):
        x, y = get_batch("val")
        logits = model(x)
        losses.append(F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1)).item())
    model.train()
    return sum(losses) / len(losses)


def progress(epoch, step, loss):
    done = int(30 * step / args.steps)
    sys.stderr.write(f"\repoch {epoch} [{'#' * done}{'.' * (30 - done)}] {step}/{args.steps} loss {loss:.4f}")
    sys.stderr.flush()


for epoch in range(1, args.epochs + 1):
    total = 0.0
    for step in range(1, args.steps + 1):
        x, y = get_batch("train")
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
        if step % 10 == 0 or step == args.steps:
            progress(epoch, step, loss.item())
    sys.stderr.write("\n")
    print(f"epoch {epoch}: train loss {total / args.steps:.4f}, validation loss {estimate_val_loss():.4f} "
          f"(unigram entropy {unigram_entropy:.4f})")


@torch.no_grad()
def generate(idx, max_new_tokens, temperature=1.0, top_k=None):
    """Sample ``max_new_tokens`` characters, each from the model's prediction for the last
    ``block_size`` characters so far."""
    model.eval()
    for _ in range(max_new_tokens):
        idx_cond = idx if idx.size(1) <= model.block_size else idx[:, -model.block_size:]
        logits = model(idx_cond)
        logits = logits[:, -1, :] / temperature
        if top_k is not None:
            v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
            logits[logits < v[:, [-1]]] = -float("Inf")
        probs = F.softmax(logits, dim=-1)
        idx_next = torch.multinomial(probs, num_samples=1)
        idx = torch.cat((idx, idx_next), dim=1)
    return idx


prompt = val_data[:args.block_size].view(1, -1)
sample = generate(prompt, args.sample_length, temperature=args.temperature, top_k=args.top_k)
print("--- sample (prompt: the first block of the validation text) ---")
print(decode(sample[0].tolist()))

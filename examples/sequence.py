"""Two recurrent models written as PyTorch code and run on graphnn by their imports.

- An LSTM classifier of scikit-learn's handwritten digits, each 8x8 image read as a sequence of
  8 rows of 8 pixels (no download): the last time step's output through a Linear layer. It trains
  with Adam through PyTorch's own loop over a DataLoader and prints the test accuracy after each
  epoch.
- A GRU next-character model of Python source (the standard-library modules
  examples/char_gpt.py reads): an embedding, a GRU over blocks of characters, a Linear layer onto
  the vocabulary. It prints the validation loss after each epoch next to the text's unigram
  entropy (the loss of a model that knows only how often each character occurs).

graphnn unrolls each layer's time loop into the compiled step (one matmul for the inputs of all
time steps, then the recurrent product and the gates per step), so a new sequence length compiles
a new program and the batch size does not.

Run: python examples/sequence.py [--model both|digits|chars] [--epochs 6] [--char-epochs 3] ...
"""
import argparse
import collections
import inspect
import math
import sys

import graphnn as torch
import graphnn.nn as nn
import graphnn.nn.functional as F
from graphnn.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", choices=("both", "digits", "chars"), default="both")
parser.add_argument("--epochs", type=int, default=6, help="epochs of the digits classifier")
parser.add_argument("--hidden", type=int, default=64, help="the LSTM's hidden size")
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--lr", type=float, default=1e-2)
parser.add_argument("--char-epochs", type=int, default=3)
parser.add_argument("--steps", type=int, default=100, help="training steps per epoch of the character model")
parser.add_argument("--char-batch-size", type=int, default=32)
parser.add_argument("--block-size", type=int, default=16)
parser.add_argument("--n-embd", type=int, default=32)
parser.add_argument("--char-hidden", type=int, default=64, help="the GRU's hidden size")
parser.add_argument("--char-lr", type=float, default=5e-3)
parser.add_argument("--eval-batches", type=int, default=8)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

torch.manual_seed(args.seed)


# -- an LSTM over the rows of each digit -------------------------------------------------------------
class RowLSTM(nn.Module):
    """Reads an image row by row (batch_first: (N, 8 rows, 8 pixels)) and classifies the digit
    from the LSTM's output after the last row."""

    def __init__(self, pixels, hidden, classes):
        super().__init__()
        self.lstm = nn.LSTM(pixels, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x):
        out, (h_n, c_n) = self.lstm(x)
        return self.fc(out[:, -1, :])


def digits_data():
    """The 1797 digits as (N, 8, 8) float32 in [0, 1], in a random order; 360 held out for testing."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = torch.randperm(len(digits.target))
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32)[order]
    labels = torch.tensor(digits.target)[order]
    return TensorDataset(images[:-360], labels[:-360]), TensorDataset(images[-360:], labels[-360:])


def train_digits():
    training_data, test_data = digits_data()
    train_loader = DataLoader(training_data, batch_size=args.batch_size, shuffle=True, drop_last=True)
    test_loader = DataLoader(test_data, batch_size=args.batch_size)
    model = RowLSTM(8, args.hidden, 10)
    print(model)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    for epoch in range(1, args.epochs + 1):
        model.train()
        total = 0.0
        for X, y in train_loader:
            loss = loss_fn(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        model.eval()
        correct = 0
        with torch.no_grad():
            for X, y in test_loader:
                correct += (model(X).argmax(1) == y).type(torch.float).sum().item()
        print(f"digits epoch {epoch}: train loss {total / len(train_loader):.4f}, "
              f"test accuracy {correct / len(test_data):.4f}")


# -- a GRU over characters ------------------------------------------------------------------------------
class CharGRU(nn.Module):
    """Predicts each next character from the GRU's state after the characters so far."""

    def __init__(self, vocab_size, n_embd, hidden):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, n_embd)
        self.gru = nn.GRU(n_embd, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, idx):
        out, _ = self.gru(self.embed(idx))
        return self.head(out)


def python_text():
    """The source of a few standard-library modules (examples/char_gpt.py's text)."""
    import argparse as _argparse
    import fractions
    import string
    import textwrap

    text = "\n".join(inspect.getsource(module) for module in (textwrap, string, fractions, _argparse))
    return "".join(c if c.isascii() else "?" for c in text)


def train_chars():
    text = python_text()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    n = int(0.9 * len(data))
    train_data, val_data = data[:n], data[n:]
    counts = collections.Counter(text[:n])
    unigram_entropy = -sum(c / n * math.log(c / n) for c in counts.values())

    def get_batch(split):
        source = train_data if split == "train" else val_data
        ix = torch.randint(len(source) - args.block_size, (args.char_batch_size,))
        x = torch.stack([source[i:i + args.block_size] for i in ix])
        y = torch.stack([source[i + 1:i + 1 + args.block_size] for i in ix])
        return x, y

    model = CharGRU(len(chars), args.n_embd, args.char_hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.char_lr)
    print(f"{sum(p.numel() for p in model.parameters())} parameters, vocabulary {len(chars)}, "
          f"{len(train_data)} training characters")

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

    for epoch in range(1, args.char_epochs + 1):
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
                sys.stderr.write(f"\rchars epoch {epoch} {step}/{args.steps} loss {loss.item():.4f}")
                sys.stderr.flush()
        sys.stderr.write("\n")
        print(f"chars epoch {epoch}: train loss {total / args.steps:.4f}, validation loss {estimate_val_loss():.4f} "
              f"(unigram entropy {unigram_entropy:.4f})")


if args.model in ("both", "digits"):
    train_digits()
if args.model in ("both", "chars"):
    train_chars()

"""A model file for the dump CLI's tests: token embeddings averaged over the sequence, then a
linear classifier (the input is int64 token indices)."""
from graphnn import nn

INPUT_SHAPE = ("B", 5)
INPUT_DTYPE = "int64"
LOSS = "cross_entropy"


class Bag(nn.Module):
    def __init__(self, vocab: int = 50, width: int = 8, classes: int = 3):
        super().__init__()
        self.embed = nn.Embedding(vocab, width, padding_idx=0)
        self.out = nn.Linear(width, classes)

    def forward(self, tokens):
        return self.out(self.embed(tokens).mean(1))

"""A model file for the dump CLI's tests: the thermometer network of the issue."""
from graphnn import nn

net = nn.Sequential(nn.Linear(1, 13), nn.Tanh(), nn.Linear(13, 1))


class Broken(nn.Module):
    """A model that cannot be traced: Python control flow on a tensor value."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, 1)

    def forward(self, x):
        y = self.fc(x)
        return y if y.sum() > 0 else -y

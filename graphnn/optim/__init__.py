"""Optimizers whose update is compiled into the train step."""
from graphnn.optim import lr_scheduler
from graphnn.optim.adam import Adam, AdamW
from graphnn.optim.optimizer import Optimizer
from graphnn.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]

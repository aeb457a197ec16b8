"""Optimizers whose update is compiled into the train step."""
from graphnn.optim import lr_scheduler
from graphnn.optim.adadelta import Adadelta
from graphnn.optim.adagrad import Adagrad
from graphnn.optim.adam import Adam, AdamW
from graphnn.optim.adamax import Adamax
from graphnn.optim.nadam import NAdam
from graphnn.optim.optimizer import Optimizer
from graphnn.optim.rmsprop import RMSprop
from graphnn.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "lr_scheduler"]

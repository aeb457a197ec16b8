"""PyTorch-style neural network modules that graphnn traces into static graphs."""
from graphnn.nn import functional, init, utils
from graphnn.nn.activation import ELU, GELU, Hardtanh, LeakyReLU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, Softplus, Tanh
from graphnn.nn.container import ModuleDict, ModuleList, Sequential
from graphnn.nn.conv import AvgPool2d, Conv2d, MaxPool2d
from graphnn.nn.embedding import Embedding
from graphnn.nn.layers import BatchNorm1d, BatchNorm2d, Dropout, Flatten, Identity, Linear
from graphnn.nn.loss import BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss
from graphnn.nn.module import Module, Parameter
from graphnn.nn.normalization import LayerNorm, RMSNorm
from graphnn.nn.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase
from graphnn.nn.transformer import (MultiheadAttention, Transformer, TransformerDecoder, TransformerDecoderLayer,
                                    TransformerEncoder, TransformerEncoderLayer)

__all__ = [
    "functional", "init", "utils", "Module", "Parameter", "Sequential", "ModuleList", "ModuleDict", "Identity", "Flatten",
    "Linear", "Embedding", "Conv2d", "MaxPool2d", "AvgPool2d", "Dropout", "BatchNorm1d", "BatchNorm2d", "LayerNorm",
    "RMSNorm", "ReLU", "Tanh", "Sigmoid", "SiLU", "Hardtanh", "LeakyReLU", "ELU", "GELU",
    "Softplus", "Softmax", "LogSoftmax", "MSELoss", "L1Loss", "CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss",
    "MultiheadAttention", "Transformer", "TransformerEncoder", "TransformerEncoderLayer", "TransformerDecoder",
    "TransformerDecoderLayer", "RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell",
]

"""PyTorch-style neural network modules that graphnn traces into static graphs."""
from graphnn.nn import functional, init, utils
from graphnn.nn.activation import ELU, GELU, Hardtanh, LeakyReLU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, Softplus, Tanh
from graphnn.nn.adaptive_pool import AdaptiveAvgPool2d, AdaptiveMaxPool2d
from graphnn.nn.container import ModuleDict, ModuleList, Sequential
from graphnn.nn.conv import AvgPool2d, Conv2d, MaxPool2d
from graphnn.nn.embedding import Embedding
from graphnn.nn.layers import BatchNorm1d, BatchNorm2d, Dropout, Dropout2d, Flatten, Identity, Linear
from graphnn.nn.loss import BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss
from graphnn.nn.module import Module, Parameter
from graphnn.nn.normalization import LayerNorm, RMSNorm
from graphnn.nn.padding import ConstantPad2d, ZeroPad2d
from graphnn.nn.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase
from graphnn.nn.transformer import (MultiheadAttention, Transformer, TransformerDecoder, TransformerDecoderLayer,
                                    TransformerEncoder, TransformerEncoderLayer)
from graphnn.nn.upsampling import Upsample, UpsamplingNearest2d

__all__ = [
    "functional", "init", "utils", "Module", "Parameter", "Sequential", "ModuleList", "ModuleDict", "Identity", "Flatten",
    "Linear", "Embedding", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d",
    "ZeroPad2d", "ConstantPad2d", "Upsample", "UpsamplingNearest2d", "Dropout", "Dropout2d", "BatchNorm1d",
    "BatchNorm2d", "LayerNorm", "RMSNorm", "ReLU", "Tanh", "Sigmoid", "SiLU", "Hardtanh", "LeakyReLU", "ELU", "GELU",
    "Softplus", "Softmax", "LogSoftmax", "MSELoss", "L1Loss", "CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss",
    "MultiheadAttention", "Transformer", "TransformerEncoder", "TransformerEncoderLayer", "TransformerDecoder",
    "TransformerDecoderLayer", "RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell",
]

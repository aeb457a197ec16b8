"""``torch.nn.utils``: gradient clipping between ``loss.backward()`` and ``optimizer.step()``;
``rnn``, whose packed sequences are refused with a clear error."""
from graphnn.nn.utils import rnn
from graphnn.nn.utils.clip_grad import clip_grad_norm_, clip_grad_value_

__all__ = ["clip_grad_norm_", "clip_grad_value_", "rnn"]

"""``graphnn.utils``: data loading (``graphnn.utils.data``), as ``torch.utils``."""
from graphnn.utils import data

__all__ = ["data"]

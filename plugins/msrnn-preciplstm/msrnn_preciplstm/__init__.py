"""PrecipLSTM for msrnn-zoo."""

from .cell import PrecipLSTMCell
from .local_attention import LocalAttention, local_attention, local_attention_flex

__all__ = ["LocalAttention", "PrecipLSTMCell", "local_attention", "local_attention_flex"]

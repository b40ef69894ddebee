"""PredRNN++ for msrnn-zoo: the Causal LSTM cell and the Gradient Highway Unit."""

from .cell import CausalLSTMCell
from .highway import GradientHighwayUnit

__all__ = ["CausalLSTMCell", "GradientHighwayUnit"]

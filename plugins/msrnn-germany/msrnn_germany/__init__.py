"""German radar precipitation for msrnn-zoo: DWD RADOLAN RY or the MS-RNN PNGs, the MS-RNN protocol, scores in mm/h."""

from .dataset import make_germany
from .plugin import INFO
from .scores import PrecipitationScores

__all__ = ["INFO", "PrecipitationScores", "make_germany"]
__version__ = "0.1.0"

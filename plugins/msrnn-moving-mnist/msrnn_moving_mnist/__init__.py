"""Moving MNIST for msrnn-zoo: two digits bouncing in a 64x64 box, 10 frames in, 10 frames out."""

from .dataset import make_moving_mnist
from .plugin import INFO

__all__ = ["INFO", "make_moving_mnist"]
__version__ = "0.1.0"

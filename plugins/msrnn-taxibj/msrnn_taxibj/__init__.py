"""TaxiBJ for msrnn-zoo: crowd inflow/outflow of Beijing on a 32x32 grid every 30 minutes."""

from .plugin import INFO

__all__ = ["INFO"]
__version__ = "0.1.0"

"""KTH Actions for msrnn-zoo: grey videos of six human actions, cut as the MS-RNN code and OpenSTL do."""

from .plugin import INFO

__all__ = ["INFO"]
__version__ = "0.1.0"

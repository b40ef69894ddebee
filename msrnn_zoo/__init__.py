"""msrnn-zoo: the MS-RNN family of multi-scale recurrent video predictors, for any cell.

    import msrnn_zoo
    model = msrnn_zoo.create("ms-convlstm", hidden_channels=64)
    future = model(frames, horizon=10)          # (B, T, C, H, W) -> (B, 10, C, H, W)
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from .cell import AuxiliaryLoss, CellOutput, RecurrentCell
from .factory import create, from_config
from .hookspecs import hookimpl
from .network import Forecaster, ForecasterConfig, ForecastState
from .registry import list_cells, list_datasets, list_models
from .schedule import MirrorPyramid, ScaleSchedule, SingleScale

__version__ = "0.1.0"


def load_dataset(name: str, split: str = "train", source: str | None = None, **options: Any) -> Dataset:
    """A split of a registered dataset; items are float clips (T, C, H, W) in [0, 1]."""
    from .datasets import load_dataset as _load

    return _load(name, split=split, source=source, **options)


__all__ = [
    "AuxiliaryLoss",
    "CellOutput",
    "ForecastState",
    "Forecaster",
    "ForecasterConfig",
    "MirrorPyramid",
    "RecurrentCell",
    "ScaleSchedule",
    "SingleScale",
    "__version__",
    "create",
    "from_config",
    "hookimpl",
    "list_cells",
    "list_datasets",
    "list_models",
    "load_dataset",
]

"""msrnn-zoo: the MS-RNN family of multi-scale recurrent video predictors, for any cell.

    import msrnn_zoo
    model = msrnn_zoo.create("ms-convlstm", hidden_channels=64)
    future = model(frames, horizon=10)          # (B, T, C, H, W) -> (B, 10, C, H, W)
"""

from __future__ import annotations

from .cell import AuxiliaryLoss, CellOutput, JointConv2d, RecurrentCell
from .datasets import load_dataset
from .factory import create, from_config
from .hookspecs import hookimpl
from .network import Forecaster, ForecasterConfig, ForecastState
from .registry import list_cells, list_datasets, list_models
from .schedule import MirrorPyramid, ScaleSchedule, SingleScale

__version__ = "0.1.0"


__all__ = [
    "AuxiliaryLoss",
    "CellOutput",
    "ForecastState",
    "Forecaster",
    "ForecasterConfig",
    "JointConv2d",
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

"""The entry point the zoo loads: declares TaxiBJ, its two protocols and its capabilities."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

from msrnn_zoo.data import ClipProtocol, DatasetInfo, Scaling

from .dataset import TEST_WINDOWS, describe, inverse, make_taxibj, prepare

hookimpl = pluggy.HookimplMarker("msrnn_zoo")

_COMMON = {
    "files": "BJ13..BJ16_M32x32_T30_InOut.h5, 'data' (N, 2, 32, 32) and 'date' YYYYMMDDSS (DeepST release, "
             "Zhang et al. AAAI 2017)",
    "days": "a day without all 48 half-hour slots is dropped: MS-RNN util/load_taxibj.py remove_incomplete_days",
    "negatives": "clamped to 0: MS-RNN util/load_taxibj.py make_dataset (data[data < 0] = 0)",
    "windows": "8 consecutive slots, stride 1, never across a dropped day nor across years: MS-RNN "
               "util/load_taxibj.py STMatrix.create_dataset, run per yearly file",
    "test": f"the last {TEST_WINDOWS} windows (48 x 7 x 4, four weeks); the others train: MS-RNN "
            "util/load_taxibj.py load_taxiBJ (len_test=48 * 7 * 4); no val split (the code validates on test)",
    "scaling": "min-max over both channels fitted on the frames of the training windows, clipped to [0, 1]: "
               "MS-RNN util/load_taxibj.py MinMaxNormalization (fit on the data before the test span)",
}

PAPER = ClipProtocol(
    name="paper", in_frames=4, out_frames=4, channels=1, height=32, width=32,
    description="Inflow only, 4 -> 4 half-hour slots; last four weeks test.",
    provenance={"frames": "4 -> 4: MS-RNN config.py (taxiBJ: in_len 4, out_len 4)",
                "channels": "inflow (channel 0) only: MS-RNN util/load_taxibj.py load_taxiBJ", **_COMMON},
    splits=("train", "test"),
)
OPENSTL = ClipProtocol(
    name="openstl", in_frames=4, out_frames=4, channels=2, height=32, width=32,
    description="Inflow and outflow, 4 -> 4 half-hour slots; same windows and split as 'paper'.",
    provenance={"frames": "4 -> 4, in_shape [4, 2, 32, 32]: OpenSTL openstl/datasets/dataset_constant.py (taxibj)",
                "channels": "inflow and outflow: OpenSTL dataloader_taxibj.py reads (N, 4, 2, 32, 32) arrays",
                **_COMMON},
    splits=("train", "test"),
)

INFO = DatasetInfo(
    name="taxibj",
    protocols=(PAPER, OPENSTL),
    options=(),  # its factory takes only the standard arguments
    description="Crowd inflow and outflow of Beijing on a 32x32 grid every 30 minutes, from taxi GPS "
                "(2013-2016, four periods); prepared once from the public h5 files.",
    url="https://github.com/TolicWang/DeepST/tree/master/data/TaxiBJ",
    license="released for research by Zhang et al. (Microsoft Research) with DeepST; no formal license is "
            "stated: cite the paper",
    citation="Junbo Zhang, Yu Zheng, Dekang Qi. Deep Spatio-Temporal Residual Networks for Citywide Crowd Flows "
             "Prediction. AAAI 2017.",
    scaling=Scaling("flow count", inverse, "people entering (inflow) or leaving (outflow) a cell per half hour; "
                    "x * (max - min) + min with the store's training min and max"),
)


@hookimpl
def register_datasets(register: Callable[..., Any]) -> None:
    """Offer TaxiBJ to the zoo, with its prepare step and statistics."""
    register(INFO, make_taxibj, prepare=prepare, describe=describe)

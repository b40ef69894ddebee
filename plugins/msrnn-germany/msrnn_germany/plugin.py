"""The entry point the zoo loads: declares the germany dataset and its capabilities.

Importing this module stays cheap (``msrnn-zoo list`` imports every plugin): wradlib is imported only when
a RADOLAN file is read, pysteps only when its baseline runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

from msrnn_zoo.data import ClipProtocol, DatasetInfo, Scaling

from . import lagrangian, scaling
from .clips import BLOCK, IN_FRAMES, OUT_FRAMES, STEP
from .dataset import NO_OPENSTL, describe, make_germany
from .prepare import SIZE, prepare
from .scores import PrecipitationScores

# Same marker as ``msrnn_zoo.hookimpl``; taken from pluggy so the plugin does not depend on core import order.
hookimpl = pluggy.HookimplMarker("msrnn_zoo")

CODE = "github.com/mazhf/MS-RNN"

PAPER = ClipProtocol(
    name="paper",
    in_frames=IN_FRAMES,
    out_frames=OUT_FRAMES,
    channels=1,
    height=SIZE,
    width=SIZE,
    description=f"every {STEP}th 5-minute frame of non-overlapping {BLOCK}-frame blocks: 30-minute steps",
    provenance={
        "frames": f"{IN_FRAMES} -> {OUT_FRAMES}: {CODE} config.py, in_len = out_len = 5 for the 'DWD' datasets",
        "size": f"{SIZE}x{SIZE}: config.py width = height = 124 for DWD; util/load_hko.py resizes each PNG with "
                "cv2.resize (bilinear)",
        "stride": f"every {STEP}th frame of non-overlapping blocks of (5 + 5) * 6 = {BLOCK} files: util/load_hko.py "
                  "(stride = 6; clip k = sorted files [60k, 60k + 60) step 6)",
        "order": "files sorted by their integer name: util/load_hko.py",
        "splits": "MS-RNN layout: train/ and test/ folders, validation on test (util/load_hko.py load_HKO returns "
                  "train, test, test); RADOLAN by year: train 2006-2014, val 2015, test 2016-2017 "
                  "(util/load_DWD.py)",
        "scaling": "mm/5min * 12 -> mm/h -> dBZ = 10 log10(256 R^1.42) -> (dBZ + 10) / 70 clipped to [0, 1] "
                   "(util/load_DWD.py)",
        "scores": "POD/FAR/CSI/HSS at 0.5, 2, 5, 10, 30 mm/h and B-MSE/B-MAE with weights 1, 1, 2, 5, 10, 30: "
                  "config.py cfg.HKO.THRESHOLDS / BALANCING_WEIGHTS, util/evaluation.py, util/numba_accelerated.py",
    },
)

INFO = DatasetInfo(
    name="germany",
    protocols=(PAPER,),
    options=(),  # its factory takes only the standard arguments
    description=(
        "German radar precipitation (DWD RADOLAN RY, 5-minute composites over Germany), as in MS-RNN: "
        "124x124 frames 30 minutes apart, 5 in -> 5 out, scored in mm/h. Prepared from the MS-RNN PNG folders or "
        f"from RY files. Protocol 'openstl' is {NO_OPENSTL}."
    ),
    url="https://opendata.dwd.de/weather/radar/radolan/ry/",
    license=("DWD open data: free use with attribution under the GeoNutzV (DWD's terms of use, "
             "https://www.dwd.de/copyright; the CDC terms map it onto CC BY 4.0). Credit 'Datenbasis: Deutscher "
             "Wetterdienst, eigene Bearbeitung' (the store is rescaled and resized)."),
    citation=("Ma, Zhang, Liu. MS-RNN: A Flexible Multi-Scale Framework for Spatiotemporal Predictive Learning. "
              "arXiv:2206.03010. Data: Deutscher Wetterdienst, RADOLAN RY."),
    scaling=Scaling(unit=scaling.UNIT, inverse=scaling.inverse, description=scaling.DESCRIPTION),
)


def scores(context: Any) -> PrecipitationScores:
    """The score hook: the MS-RNN precipitation scores on the rain rates of the evaluation's inverse scaling."""
    return PrecipitationScores(getattr(context, "to_physical", None))


def baselines() -> dict[str, Callable[..., Any]]:
    """Lagrangian persistence when the ``pysteps`` extra is installed; nothing otherwise."""
    return {lagrangian.NAME: lagrangian.lagrangian_persistence} if lagrangian.available() else {}


@hookimpl
def register_datasets(register: Callable[..., Any]) -> None:
    """Offer germany to the zoo with its store, statistics, scores and (optional) pysteps baseline."""
    register(INFO, make_germany, prepare=prepare, describe=describe, scores=scores, baselines=baselines())

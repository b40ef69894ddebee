"""The entry point the zoo loads: declares KTH, its two protocols and its capabilities."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

from msrnn_zoo.data import ClipProtocol, DatasetInfo

from .dataset import describe, make_kth, prepare

hookimpl = pluggy.HookimplMarker("msrnn_zoo")

_COMMON = {
    "persons": "persons 1-16 train, 17-25 test, no val split: MS-RNN util/load_kth_only_run.py KTH_Only "
               "(valid = test in util/load_data.py); OpenSTL dataloader_kth.py train_person / test_person",
    "runs": "clips stay inside one frame range of 00sequences.txt (the whole video without it): MS-RNN "
            "util/load_kth_only_run.py load_file reads per-range lists derived from it",
    "grey": "channel 0 of the decoded BGR frame: MS-RNN util/load_kth_only_run.py get_sequence (im[:, :, 0]); "
            "OpenSTL dataloader_kth.py (frame_np[:, :, 0])",
}

PAPER = ClipProtocol(
    name="paper", in_frames=10, out_frames=10, channels=1, height=88, width=88,
    description="Jogging, running, walking; 88x88 grey; clips of 20 every 3 frames (running) or 10 (jogging, "
                "walking).",
    provenance={
        "frames": "10 -> 10: MS-RNN config.py (kth: in_len 10, out_len 10, eval_len 10)",
        "size": "88x88, via 160x160: MS-RNN util/kth_preproccess.py (cv2.resize to 160x160) and config.py "
                "(kth: width 88, height 88), both OpenCV INTER_LINEAR",
        "actions": "jogging, running, walking: MS-RNN config.py kth_only_run = True -> util/load_kth_only_run.py",
        "stride": "a clip starts every 3 frames for running, 10 for jogging and walking, in both splits: MS-RNN "
                  "util/load_kth_only_run.py load_file (n_skip)",
        **_COMMON,
    },
    splits=("train", "test"),
)
OPENSTL = ClipProtocol(
    name="openstl", in_frames=10, out_frames=20, channels=1, height=128, width=128,
    description="All six actions; 128x128 grey; clips of 30, every 3 frames for jogging and running, back to back "
                "for the others, aligned to the end of each run.",
    provenance={
        "frames": "10 -> 20: OpenSTL openstl/datasets/dataset_constant.py (kth: pre 10, aft 20, in_shape "
                  "[10, 1, 128, 128])",
        "size": "128x128 straight from 160x120, OpenCV INTER_LINEAR: OpenSTL dataloader_kth.py load_data",
        "actions": "all six: OpenSTL dataloader_kth.py category_1 + category_2",
        "stride": "jogging and running every 3 frames, boxing/handclapping/handwaving/walking back to back, "
                  "scanning each video from its last frame: OpenSTL dataloader_kth.py load_data (indices loop)",
        **_COMMON,
    },
    splits=("train", "test"),
)

INFO = DatasetInfo(
    name="kth",
    protocols=(PAPER, OPENSTL),
    options=(),  # its factory takes only the standard arguments
    description="KTH human actions: 25 persons, 6 actions, 4 scenarios, 160x120 grey video at 25 fps; prepared once "
                "from the public AVIs.",
    url="https://www.csc.kth.se/cvap/actions/",
    license="publicly available from the KTH page (as its 00sequences.txt says); no license text is given: cite "
            "the paper",
    citation="Christian Schuldt, Ivan Laptev, Barbara Caputo. Recognizing Human Actions: A Local SVM Approach. "
             "ICPR 2004.",
)


@hookimpl
def register_datasets(register: Callable[..., Any]) -> None:
    """Offer KTH to the zoo, with its prepare step and statistics."""
    register(INFO, make_kth, prepare=prepare, describe=describe)

"""The entry point the zoo loads: declares Moving MNIST and hands over its factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

from msrnn_zoo.data import ClipProtocol, DatasetInfo

from .dataset import SOURCES, make_moving_mnist
from .files import FILES

# Same marker as ``msrnn_zoo.hookimpl``; taken from pluggy so the plugin does not depend on core import order.
hookimpl = pluggy.HookimplMarker("msrnn_zoo")

PAPER = ClipProtocol(
    name="paper",
    in_frames=10,
    out_frames=10,
    channels=1,
    height=64,
    width=64,
    description="Two digits bouncing in a 64x64 box, 20-frame clips: 10 in, 10 out (the MS-RNN and OpenSTL setting).",
    provenance={
        "frames": "10 -> 10: Srivastava et al. 2015 (the public test set's 20-frame sequences); MS-RNN config "
                  "in_len/out_len",
        "size": "64x64, 2 digits: mnist_test_seq.npy, shape (20, 10000, 64, 64)",
    },
)

SMALL = ClipProtocol(
    name="small",
    in_frames=5,
    out_frames=5,
    channels=1,
    height=32,
    width=32,
    description="The paper's clips at half size: the first 10 frames, 2x2-averaged to 32x32, 5 in and 5 out. A "
                "CPU learns it in minutes (make demo, quick trials); scores are not comparable with the paper's.",
    provenance={
        "frames": "zoo: 5 -> 5, the first half of each 20-frame clip, so a short run learns the motion",
        "size": "zoo: 2x2 area average of the 64x64 frames (digits about 10 px, 1 to 2.5 px per frame)",
    },
)

INFO = DatasetInfo(
    name="moving-mnist",
    protocols=(PAPER, SMALL),
    sources=SOURCES,
    default_source="synthetic",
    drawn_sources=("synthetic",),
    options=("num_clips", "seed"),
    description=(
        "Two handwritten digits bouncing in a 64x64 box; 10 frames in, 10 out. Sources: 'synthetic' "
        "(Pillow-drawn digits, no download), 'generated' (real MNIST digits, made on the fly), "
        "'standard' (the public 10,000-sequence test set, test split only)."
    ),
    url="https://www.cs.toronto.edu/~nitish/unsupervised_video/",
    citation="Srivastava, Mansimov, Salakhutdinov. Unsupervised Learning of Video Representations using LSTMs. "
             "ICML 2015.",
    extra={"files": {source: file.name for source, file in FILES.items()}},
)


@hookimpl
def register_datasets(register: Callable[..., Any]) -> None:
    """Offer Moving MNIST to the zoo."""
    register(INFO, make_moving_mnist)

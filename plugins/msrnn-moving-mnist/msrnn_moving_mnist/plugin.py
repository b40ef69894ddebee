"""The entry point the zoo loads: declares Moving MNIST and hands over its factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

from msrnn_zoo.data import DatasetInfo

from .dataset import SOURCES, make_moving_mnist
from .files import FILES

# Same marker as ``msrnn_zoo.hookimpl``; taken from pluggy so the plugin does not depend on core import order.
hookimpl = pluggy.HookimplMarker("msrnn_zoo")

INFO = DatasetInfo(
    name="moving-mnist",
    in_frames=10,
    out_frames=10,
    channels=1,
    height=64,
    width=64,
    sources=SOURCES,
    default_source="synthetic",
    description=(
        "Two handwritten digits bouncing in a 64x64 box; 10 frames in, 10 out. Sources: 'synthetic' "
        "(Pillow-drawn digits, no download), 'generated' (real MNIST digits, made on the fly), "
        "'standard' (the public 10,000-sequence test set, test split only)."
    ),
    url="https://www.cs.toronto.edu/~nitish/unsupervised_video/",
    extra={"files": {source: file.name for source, file in FILES.items()}},
)


@hookimpl
def register_datasets(register: Callable[..., Any]) -> None:
    """Offer Moving MNIST to the zoo."""
    register(INFO, make_moving_mnist)

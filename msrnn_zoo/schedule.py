"""Scale schedules: at which resolution each layer of the stack runs, and how tensors move between them.

A schedule speaks in *levels*: level ``k`` is the input resolution divided by ``2**k``. Going down a level
is a 2x2 max-pool, going up a bilinear x2 upsampling, both applied level by level. The network asks the
schedule three things: the level of each layer, how to move a tensor from one layer's level to another's,
and whose output (if anyone's) is added to a layer's input as a skip.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F


class ScaleSchedule(ABC):
    """The geometry of a stack: a level per layer and the skips between layers."""

    name: str = ""

    def __init__(self, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"A stack needs at least one layer, got num_layers={depth}.")
        self.depth = depth

    @abstractmethod
    def levels(self) -> list[int]:
        """The level of each layer: 0 is full resolution, k is 1/2**k."""

    def skip_source(self, layer: int) -> int | None:
        """The layer whose output is added to the input of ``layer``, or ``None``."""
        return None

    def options(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this schedule (stored in the model's config)."""
        return {}

    def scales(self) -> list[float]:
        """Each layer's resolution as a fraction of the input's (1, 1/2, 1/4, ...)."""
        return [1.0 / 2**level for level in self.levels()]

    def check_size(self, height: int, width: int) -> None:
        """Raise ``ValueError`` unless every level divides the frame size exactly.

        It suggests no size: the cells may constrain it further, and only the model knows both
        (:meth:`~msrnn_zoo.network.Forecaster.check_size` adds the nearest size it accepts).
        """
        factor = 2 ** max(self.levels())
        if height % factor or width % factor:
            raise ValueError(
                f"Frames of {height}x{width} cannot run through the {self.describe()} schedule: height and "
                f"width must be divisible by {factor} (2**(levels-1)); crop or pad the frames."
            )

    def sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """The spatial size at which every layer runs for frames of ``height x width``."""
        self.check_size(height, width)
        return [(height // 2**level, width // 2**level) for level in self.levels()]

    @staticmethod
    def move(x: torch.Tensor, from_level: int, to_level: int) -> torch.Tensor:
        """Bring ``x`` from one level to another: max-pool on the way down, bilinear on the way up."""
        for _ in range(from_level, to_level):
            x = F.max_pool2d(x, kernel_size=2, stride=2)
        for _ in range(to_level, from_level):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return x

    def describe(self) -> str:
        return f"{self.name} [{describe_levels(self.levels())}]"

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


class SingleScale(ScaleSchedule):
    """Every layer at full resolution: the classic stacked ConvRNN."""

    name = "single"

    def __init__(self, depth: int = 6) -> None:
        super().__init__(depth)

    def levels(self) -> list[int]:
        return [0] * self.depth

    def options(self) -> dict[str, Any]:
        return {"depth": self.depth}


class MirrorPyramid(ScaleSchedule):
    """The MS-RNN schedule: down the first half of the stack, back up the second, mirror-symmetric.

    With the default 6 layers and 3 levels the layers run at 1, 1/2, 1/4, 1/4, 1/2, 1 (a 4-layer stack
    defaults to 2 levels: 1, 1/2, 1/2, 1). The first half
    climbs one level per layer until ``levels - 1`` and stays there; the second half mirrors it. On the
    way up, each layer that has just been upsampled receives, added to its input, the output of its mirror
    layer in the first half (same resolution): the paper's skips; ``skips=False`` is its WO-Skip ablation.
    """

    name = "mirror"

    def __init__(self, depth: int = 6, levels: int | None = None, skips: bool = True) -> None:
        super().__init__(depth)
        if depth % 2:
            raise ValueError(f"The mirror pyramid needs an even number of layers, got num_layers={depth}.")
        if levels is None:  # the paper's three levels, or as many as a shallower stack can hold
            levels = min(3, depth // 2)
        # a float (2.0) built and failed in torch at the first step; True read as 1 level; bool("no") is True
        if isinstance(levels, bool) or not isinstance(levels, int):
            raise ValueError(f"The mirror pyramid's levels must be an integer in 1..{depth // 2} for {depth} layers "
                             f"(or None for the default), got {levels!r}.")
        if not isinstance(skips, bool):
            raise ValueError(f"The mirror pyramid's skips takes True (the paper's skips) or False (its WO-Skip "
                             f"ablation), got {skips!r}.")
        if not 1 <= levels <= depth // 2:
            raise ValueError(f"The mirror pyramid over {depth} layers supports 1..{depth // 2} levels, got {levels}.")
        self.num_levels = levels
        self.skips = skips

    def levels(self) -> list[int]:
        half = [min(i, self.num_levels - 1) for i in range(self.depth // 2)]
        return half + half[::-1]

    def skip_source(self, layer: int) -> int | None:
        levels = self.levels()
        if not self.skips or layer < self.depth // 2 or levels[layer] >= levels[layer - 1]:
            return None
        return self.depth - 1 - layer

    def options(self) -> dict[str, Any]:
        return {"depth": self.depth, "levels": self.num_levels, "skips": self.skips}


SCHEDULES: dict[str, Callable[..., ScaleSchedule]] = {
    SingleScale.name: SingleScale,
    MirrorPyramid.name: MirrorPyramid,
}
"""Schedules by the name stored in a model's config; a third party may add its own."""


def build_schedule(name: str, depth: int, options: dict[str, Any] | None = None) -> ScaleSchedule:
    """The schedule called ``name`` for a stack of ``depth`` layers."""
    if name not in SCHEDULES:
        raise ValueError(f"Unknown scale schedule {name!r}; known: {', '.join(sorted(SCHEDULES))}.")
    import inspect

    cls = SCHEDULES[name]
    allowed = sorted(set(inspect.signature(cls).parameters) - {"self", "depth"})
    unknown = sorted(set(options or {}) - set(allowed))
    if unknown:
        raise ValueError(f"Scale schedule {name!r} has no option {', '.join(map(repr, unknown))}; "
                         f"its options: {', '.join(allowed) or 'none'}.")
    try:
        return cls(depth=depth, **(options or {}))
    except TypeError as exc:  # an option of the wrong type (a string where a number belongs)
        raise ValueError(f"Scale schedule {name!r} rejected its options {options}: {exc}") from exc


def describe_levels(levels: Sequence[int]) -> str:
    """Levels as the fractions people write in papers: ``1, 1/2, 1/4``."""
    return ", ".join("1" if lv == 0 else f"1/{2**lv}" for lv in levels)

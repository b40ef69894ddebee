"""Recipes: tensors that the joint convolutions keep as how to make them again, not as themselves.

A gate often reads a cheap function of tensors that the backward keeps anyway (PrecipLSTM's ``X_t - X_{t-1}``);
keeping the function and its sources instead of the result saves one feature map per layer and time step.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator

import torch


class _Recipe:
    """How to make a tensor again from others: ``fn(*sources)`` under the autocast it was first made under.

    Holds no tensor of its own, only the value it rebuilt, from the first of the convolutions that read it until
    the last (``readers`` counts those that kept it), so that they recompute it once between them.
    """

    __slots__ = ("autocast", "fn", "readers", "value")

    def __init__(self, fn: Callable[..., torch.Tensor], autocast: tuple[str, torch.dtype] | None) -> None:
        self.fn, self.autocast, self.readers = fn, autocast, 0
        self.value: torch.Tensor | None = None

    def rebuild(self, sources: tuple[torch.Tensor, ...]) -> torch.Tensor:
        value = self.value
        if value is None:
            if self.autocast is None:
                value = self.fn(*sources)
            else:
                with torch.autocast(self.autocast[0], dtype=self.autocast[1]):
                    value = self.fn(*sources)
        self.readers -= 1  # (a second backward through a retained graph finds none left: it recomputes)
        self.value = value if self.readers > 0 else None
        return value


class _Remade:
    """What the hooks of :func:`_conv_keeping_parts` keep of an input made by :func:`recomputable`: its recipe
    and sources, and the sources' versions then."""

    __slots__ = ("recipe", "sources", "versions")

    def __init__(self, recipe: _Recipe, sources: tuple[torch.Tensor, ...]) -> None:
        self.recipe, self.sources = recipe, sources
        self.versions = [t._version for t in sources]

    def rebuild(self) -> torch.Tensor:
        if [t._version for t in self.sources] != self.versions:
            raise RuntimeError("A tensor from which a joint convolution's input is recomputed was modified in place "
                               "after the forward pass; its backward needs the values the forward saw. Write to a "
                               "copy (x = x + ...) instead.")
        return self.recipe.rebuild(self.sources)


_RECIPES: dict[int, tuple[weakref.ref[torch.Tensor], int, _Recipe, tuple[torch.Tensor, ...]]] = {}
"""``id(result) -> (weak reference to it, its version when made, its recipe, the recipe's sources)``."""


_NOTE_RECIPES = True
"""Off only within :func:`recipes_off`."""


@contextlib.contextmanager
def recipes_off() -> Iterator[None]:
    """Within it :func:`recomputable` notes no recipe: the tensors are kept. To measure what the recipes save and
    to check that they change no number (:func:`msrnn_zoo.testing.bytes_saved_by_recipes`)."""
    global _NOTE_RECIPES
    before, _NOTE_RECIPES = _NOTE_RECIPES, False
    try:
        yield
    finally:
        _NOTE_RECIPES = before


def recomputable(fn: Callable[..., torch.Tensor], *sources: torch.Tensor | None) -> torch.Tensor:
    """``fn(*sources)``, which the joint convolutions that read it keep as its recipe, not as a tensor.

    A cell's gates often read a cheap function of tensors that the backward pass keeps anyway: PrecipLSTM's
    ``X_t - X_{t-1}`` and ``X_t + W_a * LA(X_t)``, MIM's difference of the layer below. A convolution keeps its
    input for the backward, so each of those is one more feature map held at every layer and time step. The
    convolutions of :func:`joint_conv2d` and :class:`JointConv2d` (with two inputs or more) keep ``sources``
    instead and call ``fn`` on them again in the backward pass, once for all of them: the same operations on
    the same values, so the same numbers. Only worth it when ``sources`` are kept anyway (inputs of other
    convolutions, parameters) and ``fn`` is cheap and deterministic (no dropout). Outside a training forward
    pass, or while ``torch.compile`` traces (whose partitioner decides what to recompute), it is just ``fn``.
    """
    result = fn(*sources)
    if not isinstance(result, torch.Tensor):
        raise TypeError(f"recomputable needs a function that returns one tensor; {getattr(fn, '__name__', fn)!r} "
                        f"returned {type(result).__name__}. Make one recipe per tensor.")
    if (result.requires_grad and not torch.compiler.is_compiling() and _NOTE_RECIPES and not result.is_inference()
            and all(isinstance(t, torch.Tensor) for t in sources)):
        device = result.device.type
        autocast = (device, torch.get_autocast_dtype(device)) if torch.is_autocast_enabled(device) else None
        key = id(result)
        _RECIPES[key] = (weakref.ref(result, lambda _: _RECIPES.pop(key, None)), result._version,
                         _Recipe(fn, autocast), sources)  # type: ignore[assignment]  # all tensors (checked)
    return result


def _recipe_of(tensor: torch.Tensor) -> tuple[_Recipe, tuple[torch.Tensor, ...]] | None:
    """The recipe :func:`recomputable` noted for ``tensor``, unless the tensor was written since; the caller keeps
    it for one backward (it is counted as a reader)."""
    entry = _RECIPES.get(id(tensor))
    if entry is None or entry[0]() is not tensor or entry[1] != tensor._version:
        return None
    entry[2].readers += 1
    return entry[2], entry[3]

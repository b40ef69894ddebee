"""Known zeros: the recurrent states before the first frame, which the first step's convolutions leave out.

Before the first frame every state is zero, so a gate's convolution over ``[X_t, H_{t-1}]`` is one of ``X_t``
alone. The cells make their first states with :func:`zeros` and :func:`zeros_like`, which mark them; a joint
convolution (:mod:`msrnn_zoo.joint_conv`) leaves out a marked input that is still unchanged, with its span of the
weight. A mark is a note beside the tensor, not on it, and ends with any in-place write.
"""

from __future__ import annotations

import weakref

import torch


def zeros(batch: int, channels: int, height: int, width: int, device: torch.device | None,
          dtype: torch.dtype | None) -> torch.Tensor:
    """A zero tensor of the given geometry: the start of every recurrent state (marked, see :func:`mark_zero`)."""
    return mark_zero(torch.zeros(batch, channels, height, width, device=device,
                                 dtype=dtype or torch.get_default_dtype()))


def zeros_like(tensor: torch.Tensor) -> torch.Tensor:
    """``torch.zeros_like``, marked as zeros (see :func:`mark_zero`): the other parts of a cell's first state."""
    return mark_zero(torch.zeros_like(tensor))


_KNOWN_ZEROS: dict[int, tuple[weakref.ref[torch.Tensor], int]] = {}
"""``id(tensor) -> (weak reference to it, its version when marked)``. Kept here, not on the tensor: a copy
(``copy.deepcopy``, ``torch.save``) of a tensor written since its mark must not inherit the mark."""


def mark_zero(tensor: torch.Tensor) -> torch.Tensor:
    """Note that ``tensor`` holds zeros now, so that the convolutions of the first step may skip it.

    Before the first frame every state is zero, and a joint convolution over ``[X_t, H_{t-1}]`` then spends
    half its multiply-adds (more over three states) on zeros. :func:`joint_conv2d` and :class:`JointConv2d`
    leave a marked input out, with its span of the weight: the same sum, without adding zeros. The mark
    holds only while the tensor is unchanged (its version counter, which every in-place write bumps), so a
    state written in place is convolved again; it is this tensor's alone (a copy is not marked), and it goes
    with the tensor. Tensors of ``torch.inference_mode`` have no version counter and are not marked, nor are
    tensors made while ``torch.compile`` traces (a compiled graph convolves every input; asking a traced tensor
    whether it belongs to inference mode would split a user's compiled model at every state). Returns ``tensor``.
    """
    if not torch.compiler.is_compiling() and not tensor.is_inference():
        key = id(tensor)
        _KNOWN_ZEROS[key] = (weakref.ref(tensor, lambda _: _KNOWN_ZEROS.pop(key, None)), tensor._version)
    return tensor


def is_known_zero(tensor: object) -> bool:
    """Whether ``tensor`` was marked by :func:`mark_zero` and has not been written since.

    Always ``False`` while ``torch.compile`` traces (a compiled step convolves every input).
    """
    return not torch.compiler.is_compiling() and _marked_zero(tensor)


def _marked_zero(tensor: object) -> bool:
    """:func:`is_known_zero` for a caller that knows Dynamo is not tracing. Only marked tensors reach the version
    check, and tensors of ``torch.inference_mode`` (which have none) are never marked."""
    mark = _KNOWN_ZEROS.get(id(tensor))
    return mark is not None and mark[0]() is tensor and mark[1] == tensor._version  # type: ignore[union-attr]


def unmark_zero(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` without the mark of :func:`mark_zero` (convolutions then read it); returns ``tensor``."""
    mark = _KNOWN_ZEROS.get(id(tensor))
    if mark is not None and mark[0]() is tensor:
        del _KNOWN_ZEROS[id(tensor)]
    return tensor



def zero_like_source(source: torch.Tensor | None, result: torch.Tensor) -> torch.Tensor:
    """``result``, marked zero if it was computed from a known zero by a map that keeps zeros (a resampling,
    a change of layout); returns ``result``."""
    return mark_zero(result) if result is not source and is_known_zero(source) else result

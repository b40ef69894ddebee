"""A frame's 1x1 embedding absorbed into the bottom layer's convolutions.

With zero padding, a convolution of the embedding ``w_e * frame + b_e`` is a convolution of the frame and of a
ones channel with the products of the weights: for a frame of one channel and a 64-wide embedding, 1 + 1 input
channels in place of 64, and no embedding kept for the backward at any step. The network hands an
:class:`EmbeddedFrame` to the bottom layer of a cell that reads its input only through joint convolutions
(:attr:`msrnn_zoo.cell.RecurrentCell.convolves_input_only`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .layout import memory_format_of
from .precision import autocast_off


class EmbeddedFrame:
    """The 1x1 embedding of a frame, ``conv1x1(frame, weight, bias)``, not yet computed.

    A convolution ``W * e`` of the embedding ``e = w_e frame + b_e`` (zero outside the image, like every
    padded input) equals ``(W w_e) * frame + (W b_e) * 1``, where ``1`` is ones inside the image: a
    convolution over ``C + 1`` channels instead of ``hidden``. :func:`joint_conv2d` and :class:`JointConv2d`
    compute it so when an input is an ``EmbeddedFrame``; the products of the weights are part of the
    autograd graph, so gradients reach ``W``, ``w_e`` and ``b_e`` as they would through ``e``. The network
    hands one to the bottom layer of cells with :attr:`RecurrentCell.convolves_input_only`.

    ``absorbed`` is a dict that the frames of one clip share: each convolution's combined weight is then
    computed at the clip's first step and reused (fewer operations, and one copy kept for the backward pass
    instead of one per step). Without it every call combines the weights anew (the streaming ``step``).
    """

    def __init__(self, frame: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 memory_format: torch.memory_format = torch.contiguous_format,
                 absorbed: dict[Any, Any] | None = None) -> None:
        if frame.dim() != 4 or weight.dim() != 4 or weight.shape[1:] != (frame.shape[1], 1, 1):
            raise ValueError(f"An embedded frame needs a (B, C, H, W) frame and a (hidden, C, 1, 1) weight, got "
                             f"{tuple(frame.shape)} and {tuple(weight.shape)}.")
        # a copy in strides that say the layout even for 1 channel, so that the concatenation with the
        # states keeps their layout
        self.frame = torch.empty_like(frame, memory_format=memory_format).copy_(frame)
        self.weight = weight
        self.bias = bias
        self.memory_format = memory_format
        self.absorbed = absorbed

    @property
    def shape(self) -> torch.Size:
        """The shape of the embedding this stands for, ``(B, hidden, H, W)``."""
        b, _, h, w = self.frame.shape
        return torch.Size((b, self.weight.shape[0], h, w))

    @property
    def channels(self) -> int:
        return self.weight.shape[0]

    def materialize(self) -> torch.Tensor:
        """The embedding itself, for a convolution that cannot absorb it."""
        return F.conv2d(self.frame, self.weight, self.bias).contiguous(memory_format=self.memory_format)

    def inputs(self) -> list[torch.Tensor]:
        """What the absorbing convolution reads in place of the embedding: the frame, and ones for the bias."""
        if self.bias is None:
            return [self.frame]
        b, _, h, w = self.frame.shape
        key = ("ones", b, h, w)
        ones = None if self.absorbed is None else self.absorbed.get(key)
        if ones is None:
            ones = torch.empty((b, 1, h, w), dtype=self.frame.dtype, device=self.frame.device,
                               memory_format=self.memory_format).fill_(1.0)
            if self.absorbed is not None:
                self.absorbed[key] = ones
        return [self.frame, ones]


class _AbsorbedWeight(torch.autograd.Function):
    """The weight of a convolution whose embedded inputs read the frame and a ones channel instead.

    ``spans`` are ``(start, width, embedded)`` for the inputs in order; an embedded span of ``weight``
    (out, hidden, k, k) becomes ``W w_e`` (out, C, k, k) and, with a bias, ``W b_e`` (out, 1, k, k). The
    inputs are kept as attributes rather than saved tensors: they are parameters (nothing to keep), and so
    a step recomputed by gradient checkpointing, which finds the weight already made for its clip, keeps
    exactly what it kept the first time. In-place changes before the backward pass are still refused.
    """

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, embed_weight: torch.Tensor, embed_bias: torch.Tensor | None,
                spans: tuple[tuple[int, int, bool], ...]) -> torch.Tensor:
        ctx.spans, ctx.kept = spans, (weight, embed_weight, embed_bias)
        ctx.versions = None if torch.compiler.is_compiling() else [t._version for t in ctx.kept if t is not None]
        e = embed_weight[:, :, 0, 0].to(weight.dtype)
        pieces = []
        with autocast_off(weight.device):  # the products in the weights' precision
            for start, width, embedded in spans:
                part = weight[:, start:start + width]
                if not embedded:
                    pieces.append(part)
                    continue
                pieces.append(torch.einsum("oikl,ic->ockl", part, e))
                if embed_bias is not None:
                    pieces.append(torch.einsum("oikl,i->okl", part, embed_bias.to(weight.dtype)).unsqueeze(1))
            combined = torch.cat(pieces, dim=1)
        # made once per clip in the layout of the weights it stands for, or every step's convolution would convert
        # it (channels-last models: set_channels_last). Only when it is not in that layout already: Dynamo in
        # PyTorch 2.11 (not 2.14) cut the gradient of a Function that returns what `contiguous` gave back unchanged
        layout = memory_format_of(weight)
        return combined if combined.is_contiguous(memory_format=layout) else combined.contiguous(memory_format=layout)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight, embed_weight, embed_bias = ctx.kept
        changed = not torch.compiler.is_compiling() and [t._version for t in ctx.kept if t is not None] != ctx.versions
        if changed:  # (a compiled step has no version counters to read)
            raise RuntimeError("A weight that the bottom layer combined with the embedding was modified in place "
                               "before the backward pass (an optimizer step between forward and backward?).")
        e = embed_weight[:, :, 0, 0].to(weight.dtype)
        grad_weight = torch.zeros_like(weight)
        grad_e = torch.zeros_like(e)
        grad_b = None if embed_bias is None else torch.zeros_like(embed_bias, dtype=weight.dtype)
        offset = 0
        with autocast_off(weight.device):
            for start, width, embedded in ctx.spans:
                if not embedded:
                    grad_weight[:, start:start + width] += grad[:, offset:offset + width]
                    offset += width
                    continue
                part, channels = weight[:, start:start + width], e.shape[1]
                g = grad[:, offset:offset + channels]
                offset += channels
                grad_weight[:, start:start + width] += torch.einsum("ockl,ic->oikl", g, e)
                grad_e += torch.einsum("ockl,oikl->ic", g, part)
                if grad_b is not None:
                    g = grad[:, offset]
                    offset += 1
                    grad_weight[:, start:start + width] += torch.einsum("okl,i->oikl", g, embed_bias.to(weight.dtype))
                    grad_b += torch.einsum("okl,oikl->i", g, part)
        return (grad_weight, grad_e.to(embed_weight.dtype)[:, :, None, None],
                None if grad_b is None else grad_b.to(embed_bias.dtype), None)


def _absorb_embeddings(weight: torch.Tensor, inputs: tuple[torch.Tensor | EmbeddedFrame, ...]
                       ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The weight and inputs of ``conv2d(cat(inputs), weight)`` with every :class:`EmbeddedFrame` absorbed."""
    widths = [t.channels if isinstance(t, EmbeddedFrame) else t.shape[1] for t in inputs]
    if sum(widths) != weight.shape[1]:
        raise ValueError(f"The inputs have {sum(widths)} channels together but the convolution reads "
                         f"{weight.shape[1]}.")
    embedded = [t for t in inputs if isinstance(t, EmbeddedFrame)]
    first = embedded[0]
    if any(t.weight is not first.weight or t.bias is not first.bias for t in embedded):
        raise ValueError("The embedded inputs of one convolution must come from the same embedding.")
    tensors: list[torch.Tensor] = []
    for t in inputs:
        tensors += t.inputs() if isinstance(t, EmbeddedFrame) else [t]
    starts = [sum(widths[:i]) for i in range(len(widths))]
    spans = tuple((s, w, isinstance(t, EmbeddedFrame)) for s, w, t in zip(starts, widths, inputs))
    key = (id(weight), spans)
    combined = None if first.absorbed is None else first.absorbed.get(key)
    if combined is None:
        combined = _AbsorbedWeight.apply(weight, first.weight, first.bias, spans)
        if first.absorbed is not None:
            first.absorbed[key] = combined
    return combined, tuple(tensors)


def _materialized(inputs: tuple[torch.Tensor | EmbeddedFrame, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(t.materialize() if isinstance(t, EmbeddedFrame) else t for t in inputs)

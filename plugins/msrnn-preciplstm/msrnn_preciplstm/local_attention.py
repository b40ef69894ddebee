"""Local (windowed) self-attention over an image, in plain PyTorch, with O(B·H·W·k²) memory.

Every pixel ``p`` attends to the ``k x k`` pixels around it. With window ``k`` and ``r = k // 2`` the
offsets ``d = (dy, dx)`` run from ``-r`` to ``k - 1 - r`` in each direction (for an even ``k`` the
window leans one pixel up and left), and

    s_d(p) = <Q(p), K(p + d)>                 (0 when p + d lies outside the image)
    a(p)   = softmax_d s_d(p)                 over all k² offsets
    out(p) = sum_d a_d(p) V(p + d)            (V is 0 outside the image)

A position outside the image is *not* masked: it takes part in the softmax with score 0 and brings a
zero value, which is what PrecipLSTM's CUDA kernel computes and so what its trained weights expect.

The naive way unfolds K and V into ``(B, C, k², H, W)`` tensors: at k = 30, C = 64 that is 900 copies
of each feature map. Here one row of offsets is handled at a time, as matrix products: a strip of ``T``
pixels of an image row against the ``T + k - 1`` pixels its window row can reach gives a ``T x (T+k-1)``
score matrix whose band of width ``k`` holds the scores wanted. Weighting the values is the product
with that band matrix, and the backward (written by hand, recomputing the strips) its transpose. Nothing
larger than the attention weights ``(B, k², H, W)`` is ever made. Offsets that miss the image entirely
(a window wider than the image) score 0 everywhere and carry nothing, so they are not visited: they only
enter the softmax's denominator, by count.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable


def window_offsets(window: int) -> tuple[int, int]:
    """The first and last offset of a window of ``window`` pixels along one axis."""
    first = -(window // 2)
    return first, first + window - 1


class _Layout:
    """Which offsets can reach the image, and how image rows are cut into strips.

    Offsets beyond ``size - 1`` in either direction never land inside the image and are left out
    (``outside`` counts them for the softmax); ``rows x cols`` offsets remain, from ``(top, left)``.
    Each image row is cut into ``strips`` strips of ``strip`` pixels (the last one zero-padded), at
    least ``cols`` wide so that the tails of neighbouring strips' reach never overlap.
    """

    def __init__(self, window: int, height: int, width: int) -> None:
        first, last = window_offsets(window)
        self.height, self.width = height, width
        self.top, bottom = max(first, 1 - height), min(last, height - 1)
        self.left, right = max(first, 1 - width), min(last, width - 1)
        self.rows, self.cols = bottom - self.top + 1, right - self.left + 1
        self.outside = window * window - self.rows * self.cols
        self.strips = max(1, width // max(self.cols, 16))
        self.strip = -(-width // self.strips)
        self.padded_width = self.strips * self.strip
        self.reach = self.strip + self.cols - 1
        # zero padding after which offset row i, column j of pixel (y, x) sits at (y + i, x + j)
        self._pad_windowed = (-self.left, right + self.padded_width - width, -self.top, bottom)

    def centred(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, H, strips, strip, C)``: the pixels that look around."""
        x = F.pad(x, (0, self.padded_width - self.width)).permute(0, 2, 3, 1).contiguous()
        return x.view(x.shape[0], self.height, self.strips, self.strip, x.shape[-1])

    def windowed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> zero-padded, channels-last ``(B, H + rows - 1, strips*strip + cols - 1, C)``."""
        return F.pad(x, self._pad_windowed).permute(0, 2, 3, 1).contiguous()

    def reachable(self, windowed: torch.Tensor, row: int) -> torch.Tensor:
        """``(B, H, strips, reach, C)`` view: what each strip's window row ``row`` covers (strips overlap)."""
        b, _, _, c = windowed.shape
        sb, sh, sw, sc = windowed.stride()
        return windowed.as_strided((b, self.height, self.strips, self.reach, c),
                                   (sb, sh, self.strip * sw, sw, sc), windowed.storage_offset() + row * sh)

    def add_reachable_(self, windowed: torch.Tensor, row: int, update: torch.Tensor) -> None:
        """The adjoint of :meth:`reachable`: add ``update`` (B, H, strips, reach, C) where it was read."""
        rows = windowed[:, row:row + self.height]
        if self.strips == 1:
            rows[:, :, :self.reach] += update[:, :, 0]
            return
        # heads of the strips tile the row; tails (cols - 1 <= strip wide) tile it shifted by one strip
        b, h, _, c = rows.shape
        rows[:, :, :self.padded_width].view(b, h, self.strips, self.strip, c).add_(update[..., :self.strip, :])
        sb, sh, sw, sc = rows.stride()
        tails = rows.as_strided((b, h, self.strips, self.cols - 1, c), (sb, sh, self.strip * sw, sw, sc),
                                rows.storage_offset() + self.strip * sw)
        tails += update[..., self.strip:, :]

    def band(self, matrix: torch.Tensor) -> torch.Tensor:
        """``(B, H, strips, strip, cols)`` view of the diagonal band of ``(B, H, strips, strip, reach)``."""
        sb, sh, sn, st, sr = matrix.stride()
        return matrix.as_strided((*matrix.shape[:-1], self.cols), (sb, sh, sn, st + sr, sr),
                                 matrix.storage_offset())

    def uncentred(self, x: torch.Tensor) -> torch.Tensor:
        """Back from ``(B, H, strips, strip, C)`` to ``(B, C, H, W)``."""
        b, c = x.shape[0], x.shape[-1]
        return x.reshape(b, self.height, self.padded_width, c)[:, :, :self.width].permute(0, 3, 1, 2).contiguous()

    def unwindowed(self, x: torch.Tensor) -> torch.Tensor:
        """Back from :meth:`windowed`'s layout to ``(B, C, H, W)``, dropping the padding."""
        y0, x0 = -self.top, -self.left
        return x[:, y0:y0 + self.height, x0:x0 + self.width].permute(0, 3, 1, 2).contiguous()


def _scores_row(lay: _Layout, centred: torch.Tensor, windowed: torch.Tensor, row: int,
                out: torch.Tensor) -> None:
    """``out[b, y, x, j] = <centred(y, x), windowed(y + row, x + j)>`` over channels, for one offset row."""
    full = torch.matmul(centred, lay.reachable(windowed, row).transpose(-1, -2))
    out.view_as(lay.band(full)).copy_(lay.band(full))


def _band_matrix(lay: _Layout, weights_row: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
    """The ``strip x reach`` matrices with one row of attention weights on their band (zero elsewhere)."""
    lay.band(buffer).copy_(weights_row.view(lay.band(buffer).shape))
    return buffer


def _softmax_with_zeros_(scores: torch.Tensor, zeros: int) -> torch.Tensor:
    """Softmax over the offsets (dims 1 and 4), in place, as if ``zeros`` more scores of 0 were there."""
    top = scores.amax((1, 4), keepdim=True)
    if zeros:
        top.clamp_(min=0)
    scores.sub_(top).exp_()
    total = scores.sum((1, 4), keepdim=True)
    if zeros:
        total += zeros * torch.exp(-top)
    return scores.div_(total)


class _LocalAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                window: int) -> torch.Tensor:
        b = query.shape[0]
        lay = _Layout(window, *query.shape[-2:])
        # weights are kept as (B, offset row, y, x (strip-padded), offset column)
        weights = query.new_empty(b, lay.rows, lay.height, lay.padded_width, lay.cols)
        centred, windowed = lay.centred(query), lay.windowed(key)
        for row in range(lay.rows):
            _scores_row(lay, centred, windowed, row, weights[:, row])
        del centred, windowed
        _softmax_with_zeros_(weights, lay.outside)
        windowed = lay.windowed(value)
        out = value.new_zeros(b, lay.height, lay.strips, lay.strip, value.shape[1])
        band = query.new_zeros(b, lay.height, lay.strips, lay.strip, lay.reach)
        for row in range(lay.rows):
            out += _band_matrix(lay, weights[:, row], band) @ lay.reachable(windowed, row)
        ctx.save_for_backward(query, key, value, weights)
        ctx.layout = lay
        return lay.uncentred(out)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        query, key, value, weights = ctx.saved_tensors
        lay: _Layout = ctx.layout
        need_query, need_key, need_value = ctx.needs_input_grad[:3]
        b = query.shape[0]
        band = query.new_zeros(b, lay.height, lay.strips, lay.strip, lay.reach)
        grad_centred, value_windowed = lay.centred(grad_out), lay.windowed(value)
        grad_value = torch.zeros_like(value_windowed) if need_value else None
        grad_scores = torch.empty_like(weights) if need_query or need_key else None
        for row in range(lay.rows):
            if grad_value is not None:
                matrix = _band_matrix(lay, weights[:, row], band)
                lay.add_reachable_(grad_value, row, matrix.transpose(-1, -2) @ grad_centred)
            if grad_scores is not None:
                _scores_row(lay, grad_centred, value_windowed, row, grad_scores[:, row])
        del grad_centred, value_windowed
        grad_query = grad_key = None
        if grad_scores is not None:
            # softmax backward: ds = a * (da - sum_d a da)
            grad_scores -= (grad_scores * weights).sum((1, 4), keepdim=True)
            grad_scores *= weights
            centred, key_windowed = lay.centred(query), lay.windowed(key)
            grad_query = torch.zeros_like(centred) if need_query else None
            grad_key = torch.zeros_like(key_windowed) if need_key else None
            for row in range(lay.rows):
                matrix = _band_matrix(lay, grad_scores[:, row], band)
                if grad_query is not None:
                    grad_query += matrix @ lay.reachable(key_windowed, row)
                if grad_key is not None:
                    lay.add_reachable_(grad_key, row, matrix.transpose(-1, -2) @ centred)
        return (None if grad_query is None else lay.uncentred(grad_query),
                None if grad_key is None else lay.unwindowed(grad_key),
                None if grad_value is None else lay.unwindowed(grad_value), None)


def local_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, window: int) -> torch.Tensor:
    """Attend from every pixel of ``query`` to the ``window x window`` pixels around it in ``key``/``value``.

    ``query`` and ``key`` are ``(B, C, H, W)``, ``value`` is ``(B, C', H, W)``; the result is
    ``(B, C', H, W)``. Memory: the ``(B, window², H, W)`` weights (kept for the backward) plus a few
    maps of the inputs' size.
    """
    if query.dim() != 4 or key.shape != query.shape or value.dim() != 4 or value.shape[0] != query.shape[0] \
            or value.shape[2:] != query.shape[2:]:
        raise ValueError(f"local_attention needs query and key of one shape (B, C, H, W) and a value "
                         f"(B, C', H, W) of the same batch and size; got {tuple(query.shape)}, "
                         f"{tuple(key.shape)}, {tuple(value.shape)}.")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"The attention window must be a positive number of pixels, got {window!r}.")
    return _reference(query.contiguous(), key.contiguous(), value.contiguous(), window)


@torch.compiler.disable
def _reference(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, window: int) -> torch.Tensor:
    # a compiled step runs this as it is: its strided views and hand-written backward are not for tracing
    return _LocalAttention.apply(query, key, value, window)


@functools.cache
def _flex_layout(height: int, width: int, window: int, device: torch.device) -> tuple[Any, torch.Tensor]:
    """The 2D-neighbourhood block mask over the flattened image, and each pixel's count of offsets outside it."""
    from torch.nn.attention.flex_attention import create_block_mask

    first, last = window_offsets(window)

    def neighbourhood(b: Any, h: Any, q: Any, kv: Any) -> Any:
        dy = kv // width - q // width
        dx = kv % width - q % width
        return (dy >= first) & (dy <= last) & (dx >= first) & (dx <= last)

    pixels = height * width
    mask = create_block_mask(neighbourhood, None, None, pixels, pixels, device=device)
    offsets = torch.arange(first, last + 1)

    def inside(size: int) -> torch.Tensor:  # per position along one axis: how many offsets stay in the image
        reached = torch.arange(size)[:, None] + offsets[None]
        return ((reached >= 0) & (reached < size)).sum(1)

    outside = window * window - inside(height)[:, None] * inside(width)[None, :]
    return mask, outside.flatten().to(device=device, dtype=torch.float32)


@functools.cache
def _compiled_flex_attention() -> Any:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def local_attention_flex(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, window: int) -> torch.Tensor:
    """:func:`local_attention` through FlexAttention, for GPUs: one fused kernel, forward and backward.

    The image is flattened to a sequence of pixels and each pixel attends, through a block mask, to the
    pixels of its ``window x window`` neighbourhood that lie inside the image. The offsets that fall outside
    score 0 and carry a zero value in the original, so they only add ``exp(0)`` each to the softmax's
    denominator: with ``L`` the log-sum-exp FlexAttention returns over the inside positions and ``n`` the
    count of outside offsets,

        out(p) = flex(p) * e^L / (e^L + n) = flex(p) / (1 + n e^{-L})

    which is exact, and differentiable through ``L``. On a GPU the kernel is compiled (the first call per
    image size pays it); on the CPU FlexAttention runs its unfused reference, forward only (PyTorch has no
    CPU backward for it), which is what the tests compare against :func:`local_attention`.
    """
    from torch.nn.attention.flex_attention import AuxRequest, flex_attention

    b, _, height, width = query.shape
    mask, outside = _flex_layout(height, width, window, query.device)

    def pixels(x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, 1 head, H*W, C)
        return x.flatten(2).transpose(1, 2).unsqueeze(1)

    attend = _compiled_flex_attention() if query.is_cuda else flex_attention
    out, aux = attend(pixels(query), pixels(key), pixels(value), block_mask=mask, scale=1.0,
                      return_aux=AuxRequest(lse=True))
    share_inside = 1.0 / (1.0 + outside * torch.exp(-aux.lse.float()))  # (B, 1, H*W)
    out = out * share_inside.unsqueeze(-1).to(out.dtype)
    return out.squeeze(1).transpose(1, 2).reshape(b, -1, height, width)


def local_attention_unfold(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           window: int) -> torch.Tensor:
    """The same attention written the direct way, with every shifted copy in memory at once.

    Only for checking :func:`local_attention` and measuring what it saves: it needs ``O(B·C·H·W·k²)``.
    """
    b, c, h, w = query.shape
    first, last = window_offsets(window)
    pad = (-first, last, -first, last)

    def around(x: torch.Tensor) -> torch.Tensor:
        return F.unfold(F.pad(x, pad), (window, window)).view(b, x.shape[1], window * window, h * w)

    scores = (query.reshape(b, c, 1, h * w) * around(key)).sum(1)
    weights = torch.softmax(scores, dim=1)
    return (around(value) * weights.unsqueeze(1)).sum(2).view(b, -1, h, w)


class LocalAttention(nn.Module):
    """Local self-attention on a feature map, with 1x1 query, key and value projections (no bias).

    ``implementation`` chooses how the attention is computed on a GPU: ``"reference"``
    (:func:`local_attention`, pure PyTorch) or ``"flex"`` (:func:`local_attention_flex`, FlexAttention). The
    CPU always runs the reference (FlexAttention has no fused CPU kernel with a backward).
    """

    original_keys: ClassVar[dict[str, str]] = {"conv1": "query", "conv2": "key", "conv3": "value"}
    """The CUDA module of the PrecipLSTM code names its projections conv1..3."""

    def __init__(self, in_channels: int, out_channels: int, window: int = 30) -> None:
        super().__init__()
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"The attention window must be a positive number of pixels, got {window!r}.")
        self.window = window
        self.implementation = "reference"
        self.query = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.key = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.value = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query, key, value = self.query(x), self.key(x), self.value(x)
        if self.implementation == "flex" and x.is_cuda:
            return local_attention_flex(query, key, value, self.window)
        return local_attention(query, key, value, self.window)

    def extra_repr(self) -> str:
        return f"window={self.window}, implementation={self.implementation}"

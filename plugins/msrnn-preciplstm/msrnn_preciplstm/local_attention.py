"""Local (windowed) self-attention over an image, in plain PyTorch, keeping only its inputs for the backward.

Every pixel ``p`` attends to the ``k x k`` pixels around it. With window ``k`` and ``r = k // 2`` the
offsets ``d = (dy, dx)`` run from ``-r`` to ``k - 1 - r`` in each direction (for an even ``k`` the
window leans one pixel up and left), and

    s_d(p) = <Q(p), K(p + d)>                 (0 when p + d lies outside the image)
    a(p)   = softmax_d s_d(p)                 over all k² offsets
    out(p) = sum_d a_d(p) V(p + d)            (V is 0 outside the image)

A position outside the image is *not* masked: it takes part in the softmax with score 0 and brings a
zero value, which is what PrecipLSTM's CUDA kernel computes and so what its trained weights expect.

The naive way unfolds K and V into ``(B, C, k², H, W)`` tensors: at k = 30, C = 64 that is 900 copies
of each feature map. Here every score is a matrix product instead. An image row is cut into strips of
``T`` pixels; the ``rows`` window rows a strip reaches, each ``T + k - 1`` pixels wide, lie one after
the other in memory once that column band of the zero-padded keys is made contiguous, so one batched
product (one matrix per image row) scores a strip against all of them: a ``T x rows·(T + k - 1)``
matrix whose diagonal band per window row holds the ``T x k`` scores wanted. The strip width trades
the columns computed and thrown away (``(T + k - 1) / k`` of what is needed) against the size of the
products. Weighting the values is the product with the band matrix, and the backward its transpose.
The CPU scores one sample at a time; GPUs, where an eager step waits on kernel launches, stack the
batch into one tall image (each sample's rows followed by ``rows - 1`` rows of zeros) and score it in
one product per strip.

The backward recomputes the scores instead of keeping the ``(B, k², H, W)`` attention weights: only
each pixel's softmax maximum and denominator are kept beside the inputs, so the attention adds two
numbers per pixel to what a training step holds, not ``k²``. Offsets that miss the image entirely
(a window wider than the image) score 0 everywhere and carry nothing, so they are not visited: they
only enter the softmax's denominator, by count.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from msrnn_zoo.cell import autocast_off, memory_format_of, never_compiled

MIN_STRIP = 16
"""Narrowest strip of pixels scored in one product: narrower ones compute fewer scores that are thrown away
but run slower per score. 16 was the fastest of 8 to 64 at 16x16 to 64x64 with window 30 on one CPU thread."""


def window_offsets(window: int) -> tuple[int, int]:
    """The first and last offset of a window of ``window`` pixels along one axis."""
    first = -(window // 2)
    return first, first + window - 1


class _Layout:
    """Which offsets can reach the image, how rows are cut into strips, and the views that score them.

    Offsets beyond ``size - 1`` in either direction never land inside the image and are left out
    (``outside`` counts them for the softmax); ``rows x cols`` offsets remain, from ``(top, left)``.
    Each image row is cut into ``strips`` strips of ``strip`` pixels (the last one zero-padded); the
    windows of neighbouring strips overlap, and their gradients are added one strip after the other.
    Queries are laid out as ``(B, H, strips·strip, C)``, keys and values zero-padded as
    ``(B, H + rows - 1, strips·strip + cols - 1, C)``: pixel ``(y, x)`` with offset row ``i`` and column
    ``j`` then reads padded position ``(y + i, x + j)``.
    """

    def __init__(self, window: int, height: int, width: int,
                 memory_format: torch.memory_format = torch.contiguous_format, stack_samples: bool = False) -> None:
        first, last = window_offsets(window)
        self.height, self.width = height, width
        self.memory_format = memory_format  # of the (B, C, H, W) results, as the inputs came
        self.stack_samples = stack_samples
        self._rows_index: torch.Tensor | None = None
        self.top, bottom = max(first, 1 - height), min(last, height - 1)
        self.left, right = max(first, 1 - width), min(last, width - 1)
        self.rows, self.cols = bottom - self.top + 1, right - self.left + 1
        self.outside = window * window - self.rows * self.cols
        self.strips = max(1, width // MIN_STRIP)
        self.strip = -(-width // self.strips)
        self.padded_width = self.strips * self.strip
        self.reach = self.strip + self.cols - 1
        self._pad = (-self.left, right + self.padded_width - width, -self.top, bottom)

    def queries(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, H, strips·strip, C)``, the pixels that look around."""
        return F.pad(x, (0, self.padded_width - self.width)).permute(0, 2, 3, 1).contiguous()

    def padded(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, H + rows - 1, strips·strip + cols - 1, C)``, zero around the image."""
        return F.pad(x, self._pad).permute(0, 2, 3, 1).contiguous()

    def strip_columns(self, strip: int) -> slice:
        return slice(strip * self.strip, (strip + 1) * self.strip)

    def window_columns(self, strip: int) -> slice:
        return slice(strip * self.strip, strip * self.strip + self.reach)

    def groups(self, x: torch.Tensor, queries: bool = False) -> list[torch.Tensor]:
        """``x`` (queries, or a band of keys or values) as the groups of rows that one product scores, each with its
        rows first: one sample at a time, or all samples stacked into one tall image (:func:`_stacks_samples`)."""
        if not self.stack_samples:
            return list(x)
        return [self.tall(x) if queries else x.flatten(0, 1)]

    def tall(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, ...)`` queries -> ``(B·(H + rows - 1) - rows + 1, ...)``: each sample's rows followed by
        ``rows - 1`` zero rows, so that row ``y`` of sample ``n`` sits where its padded keys begin. The zero rows
        score 0 against everything, their gradients are 0, and they are cut out again (:meth:`untall`)."""
        padded = F.pad(x, (0, 0, 0, 0, 0, self.rows - 1)).flatten(0, 1)
        return padded[:padded.shape[0] - self.rows + 1]

    def untall(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        """The adjoint of :meth:`tall` on its valid rows: ``(B·(H + rows - 1) - rows + 1, ...)`` -> ``(B, H, ...)``."""
        x = F.pad(x, (0, 0, 0, 0, 0, self.rows - 1))
        return x.view(batch, self.height + self.rows - 1, *x.shape[1:])[:, :self.height]

    def stacked(self, band_of_columns: torch.Tensor) -> torch.Tensor:
        """Contiguous ``(N + rows - 1, reach, C)`` -> ``(N, rows·reach, C)`` view: image row ``y`` gets the
        ``rows`` padded rows ``y .. y + rows - 1`` one after the other (consecutive ``y`` overlap)."""
        sh, sw, sc = band_of_columns.stride()
        height = band_of_columns.shape[0] - self.rows + 1
        return band_of_columns.as_strided((height, self.rows * self.reach, band_of_columns.shape[-1]),
                                          (sh, sw, sc), band_of_columns.storage_offset())

    def add_unstacked_(self, total: torch.Tensor, stacked: torch.Tensor) -> None:
        """The adjoint of :meth:`stacked`: add ``(N, rows·reach, C)`` into ``(N + rows - 1, reach, C)``.

        On the CPU one slice per window row (one ``index_add_`` over all of them ran 1.8x slower there); with
        the samples stacked (GPUs) one ``index_add_``, instead of ``rows`` operations that each wait their turn,
        unless PyTorch is asked for deterministic algorithms (a GPU's ``index_add_`` adds in no fixed order)."""
        height = stacked.shape[0]
        parts = stacked.view(height, self.rows, self.reach, -1)
        if self.stack_samples and not torch.are_deterministic_algorithms_enabled():
            total.index_add_(0, self._window_rows(height, total.device), parts.flatten(0, 1))
            return
        for row in range(self.rows):
            total[row:row + height] += parts[:, row]

    def _window_rows(self, height: int, device: torch.device) -> torch.Tensor:
        """``y + i`` for every image row ``y`` and window row ``i``, flattened: where :meth:`add_unstacked_` adds.
        Made once per backward of the attention (every strip reuses it)."""
        if self._rows_index is None or self._rows_index.device != device:
            rows = torch.arange(height, device=device)[:, None] + torch.arange(self.rows, device=device)
            self._rows_index = rows.flatten()
        return self._rows_index

    def band(self, products: torch.Tensor) -> torch.Tensor:
        """``(N, strip, rows·reach)`` -> ``(N, strip, rows, cols)`` view: ``[y, t, i, j]`` is column
        ``i·reach + t + j``, the score of strip pixel ``t`` against offset ``(i, j)``."""
        sh, st, _ = products.stride()
        return products.as_strided((products.shape[0], self.strip, self.rows, self.cols),
                                   (sh, st + 1, self.reach, 1), products.storage_offset())

    def image(self, x: torch.Tensor, padded: bool) -> torch.Tensor:
        """Back from :meth:`queries`' (``padded=False``) or :meth:`padded`'s layout to ``(B, C, H, W)``, in the
        inputs' memory format: a channels-last model's next convolution then reads it without converting it."""
        y0, x0 = (-self.top, -self.left) if padded else (0, 0)
        return x[:, y0:y0 + self.height, x0:x0 + self.width].permute(0, 3, 1, 2).contiguous(
            memory_format=self.memory_format)


def _softmax_(scores: torch.Tensor, zeros: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over the offsets (the last two dims), in place, as if ``zeros`` more scores of 0 were there.

    Returns the maximum and the denominator it used, from which :func:`_softmax_again_` repeats it.
    """
    top = scores.amax((-2, -1), keepdim=True)
    if zeros:
        top.clamp_(min=0)
    scores.sub_(top).exp_()
    total = scores.sum((-2, -1), keepdim=True)
    if zeros:
        total += zeros * torch.exp(-top)
    scores.div_(total)
    return top, total


def _softmax_again_(scores: torch.Tensor, top: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """The same softmax from the kept maximum and denominator: the same operations, so the same numbers."""
    return scores.sub_(top).exp_().div_(total)


def _stacks_samples(query: torch.Tensor) -> bool:
    """Whether :func:`_attend` scores all samples in one product (on GPUs, where a step waits on launches: it
    then launches a batch's worth fewer kernels, for ``rows - 1`` scored zero rows per sample) or one sample at a
    time (on the CPU, where each product's working set then stays in cache and no row is scored in vain)."""
    return STACK_SAMPLES if STACK_SAMPLES is not None else query.is_cuda


STACK_SAMPLES: bool | None = None
"""Force :func:`_stacks_samples` (tests); ``None`` chooses by device."""


def _attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
            window: int) -> tuple[torch.Tensor, torch.Tensor, _Layout]:
    """The attention of the module docstring, one strip and group of rows (:meth:`_Layout.groups`) at a time:
    the output, the softmax's maximum and denominator per pixel (what the backward recomputes the weights
    from), and the layout."""
    lay = _Layout(window, *query.shape[-2:], memory_format_of(query), _stacks_samples(query))  # type: ignore[call-arg]
    q, k, v = lay.queries(query), lay.padded(key), lay.padded(value)
    queries = lay.groups(q, queries=True)
    height = queries[0].shape[0]
    products = q.new_empty(height, lay.strip, lay.rows * lay.reach)
    band = q.new_zeros(height, lay.strip, lay.rows * lay.reach)  # only the band is ever written
    weights = q.new_empty(height, lay.strip, lay.rows, lay.cols)
    out = v.new_empty(len(queries), height, lay.padded_width, v.shape[-1])
    stats = q.new_empty(2, len(queries), lay.strips, height, lay.strip, 1, 1)
    for s in range(lay.strips):
        own, near = lay.strip_columns(s), lay.window_columns(s)
        keys, values = lay.groups(k[:, :, near].contiguous()), lay.groups(v[:, :, near].contiguous())
        for n in range(len(queries)):
            torch.bmm(queries[n][:, own], lay.stacked(keys[n]).mT, out=products)
            weights.copy_(lay.band(products))
            stats[0, n, s], stats[1, n, s] = _softmax_(weights, lay.outside)
            lay.band(band).copy_(weights)
            torch.bmm(band, lay.stacked(values[n]), out=out[n, :, own])
    out = lay.untall(out[0], query.shape[0]) if lay.stack_samples else out
    return lay.image(out, padded=False), stats, lay


def _attend_backward(lay: _Layout, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     stats: torch.Tensor, grad_out: torch.Tensor,
                     needs: tuple[bool, bool, bool]) -> tuple[torch.Tensor | None, ...]:
    """Gradients of :func:`_attend` for the inputs in ``needs`` (query, key, value), weights recomputed."""
    q, k, v, g = lay.queries(query), lay.padded(key), lay.padded(value), lay.queries(grad_out.to(value.dtype))
    queries, out_grads = lay.groups(q, queries=True), lay.groups(g, queries=True)
    height = queries[0].shape[0]
    # written group by group, through views of the queries' and the padded keys' and values' layouts
    grad_query = query_grads = None
    if needs[0] and lay.stack_samples:
        query_grads = [torch.zeros_like(queries[0])]  # tall: cut back to the samples' rows at the end
    elif needs[0]:
        grad_query = torch.zeros_like(q)
        query_grads = lay.groups(grad_query)
    grad_key, grad_value = (torch.zeros_like(t) if need else None for t, need in zip((k, v), needs[1:]))
    products = q.new_empty(height, lay.strip, lay.rows * lay.reach)
    band = q.new_zeros(height, lay.strip, lay.rows * lay.reach)
    weights = q.new_empty(height, lay.strip, lay.rows, lay.cols)
    grad_scores = q.new_empty(height, lay.strip, lay.rows, lay.cols)
    for s in range(lay.strips):
        own, near = lay.strip_columns(s), lay.window_columns(s)
        strip_keys, strip_values = lay.groups(k[:, :, near].contiguous()), lay.groups(v[:, :, near].contiguous())
        key_grads = None if grad_key is None else lay.groups(grad_key[:, :, near])
        value_grads = None if grad_value is None else lay.groups(grad_value[:, :, near])
        for n in range(len(queries)):
            keys, values = lay.stacked(strip_keys[n]), lay.stacked(strip_values[n])
            torch.bmm(queries[n][:, own], keys.mT, out=products)
            _softmax_again_(weights.copy_(lay.band(products)), stats[0, n, s], stats[1, n, s])
            if value_grads is not None:
                lay.band(band).copy_(weights)
                lay.add_unstacked_(value_grads[n], torch.bmm(band.mT, out_grads[n][:, own]))
            if query_grads is None and key_grads is None:
                continue
            torch.bmm(out_grads[n][:, own], values.mT, out=products)  # d out / d weights
            grad_scores.copy_(lay.band(products))
            # softmax backward: ds = a * (da - sum_d a da)
            grad_scores -= (grad_scores * weights).sum((-2, -1), keepdim=True)
            grad_scores *= weights
            lay.band(band).copy_(grad_scores)
            if query_grads is not None:
                torch.bmm(band, keys, out=query_grads[n][:, own])
            if key_grads is not None:
                lay.add_unstacked_(key_grads[n], torch.bmm(band.mT, queries[n][:, own]))
    if query_grads is not None and lay.stack_samples:
        grad_query = lay.untall(query_grads[0], query.shape[0])
    lay._rows_index = None  # the layout stays with the autograd graph; its index need not
    return (None if grad_query is None else lay.image(grad_query, padded=False),
            None if grad_key is None else lay.image(grad_key, padded=True),
            None if grad_value is None else lay.image(grad_value, padded=True))


class _LocalAttention(torch.autograd.Function):
    """:func:`_attend` keeping q, k, v and the softmax statistics for the backward."""

    @staticmethod
    def forward(ctx: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                window: int) -> torch.Tensor:
        out, stats, ctx.layout = _attend(query, key, value, window)
        ctx.save_for_backward(query, key, value, stats)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        query, key, value, stats = ctx.saved_tensors
        with autocast_off(grad_out.device):
            grads = _attend_backward(ctx.layout, query, key, value, stats, grad_out, ctx.needs_input_grad[:3])
        return (*grads, None)


class _ProjectedLocalAttention(torch.autograd.Function):
    """Attention over the 1x1 projections ``W_q x, W_k x, W_v x`` that keeps only ``x`` (and the statistics).

    The projections cost a few multiply-adds per pixel and channel, the attention about ``window²`` times
    more: recomputing them in the backward is cheap, keeping them costs three feature maps per call.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w_query: torch.Tensor, w_key: torch.Tensor,
                w_value: torch.Tensor, window: int) -> torch.Tensor:
        out, stats, ctx.layout = _attend(F.conv2d(x, w_query), F.conv2d(x, w_key), F.conv2d(x, w_value), window)
        ctx.save_for_backward(x, w_query, w_key, w_value, stats)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, *projections, stats = ctx.saved_tensors
        wanted = ctx.needs_input_grad[:4]
        inputs = [t.detach().requires_grad_(need) for t, need in zip((x, *projections), wanted)]
        with autocast_off(grad_out.device), torch.enable_grad():
            qkv = [F.conv2d(inputs[0], w) for w in inputs[1:]]
            q, k, v = (t.detach() for t in qkv)
            grads = _attend_backward(ctx.layout, q, k, v, stats, grad_out, (True, True, True))
            asked = [t for t, need in zip(inputs, wanted) if need]
            found = iter(torch.autograd.grad(qkv, asked, grads) if asked else ())
        return (*(next(found) if need else None for need in wanted), None)


def local_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, window: int) -> torch.Tensor:
    """Attend from every pixel of ``query`` to the ``window x window`` pixels around it in ``key``/``value``.

    ``query`` and ``key`` are ``(B, C, H, W)``, ``value`` is ``(B, C', H, W)``; the result is
    ``(B, C', H, W)``. For the backward it keeps the three inputs and two numbers per pixel; while it
    runs it needs, per sample, about ``H x W x (window + strip) x window`` numbers of scratch.
    """
    if query.dim() != 4 or key.shape != query.shape or value.dim() != 4 or value.shape[0] != query.shape[0] \
            or value.shape[2:] != query.shape[2:]:
        raise ValueError(f"local_attention needs query and key of one shape (B, C, H, W) and a value "
                         f"(B, C', H, W) of the same batch and size; got {tuple(query.shape)}, "
                         f"{tuple(key.shape)}, {tuple(value.shape)}.")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"The attention window must be a positive number of pixels, got {window!r}.")
    return _reference(query, key, value, window)


def _attention_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """At least float32, the inputs' common type otherwise: a softmax over 900 scores in bfloat16 or float16
    loses most of them, so under autocast the attention still runs in float32."""
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


@never_compiled
def _reference(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, window: int) -> torch.Tensor:
    # a compiled step runs this as it is: its strided views and hand-written backward are not for tracing.
    # The casts are autograd's, so gradients flow back through them in the inputs' own dtypes.
    dtype = _attention_dtype(query, key, value)
    with autocast_off(query.device):
        return _LocalAttention.apply(query.to(dtype), key.to(dtype), value.to(dtype), window)


@never_compiled
def _projected_reference(x: torch.Tensor, w_query: torch.Tensor, w_key: torch.Tensor, w_value: torch.Tensor,
                         window: int) -> torch.Tensor:
    dtype = _attention_dtype(x, w_query)
    with autocast_off(x.device):
        return _ProjectedLocalAttention.apply(x.to(dtype), w_query.to(dtype), w_key.to(dtype), w_value.to(dtype),
                                              window)


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


FLEX_MIN_CHANNELS = 16
"""FlexAttention's GPU kernel needs at least 16 channels per head (PyTorch 2.11 refuses 8). Fewer are padded
with zeros: a zero channel adds nothing to a score, and the value's zero channels are cut from the output."""


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

    def pixels(x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, 1 head, H*W, C), C padded with zeros
        x = x.flatten(2).transpose(1, 2).unsqueeze(1)
        return F.pad(x, (0, FLEX_MIN_CHANNELS - x.shape[-1])) if x.shape[-1] < FLEX_MIN_CHANNELS else x

    attend = _compiled_flex_attention() if query.is_cuda else flex_attention
    out, aux = attend(pixels(query), pixels(key), pixels(value), block_mask=mask, scale=1.0,
                      return_aux=AuxRequest(lse=True))
    share_inside = 1.0 / (1.0 + outside * torch.exp(-aux.lse.float()))  # (B, 1, H*W)
    out = out[..., :value.shape[1]] * share_inside.unsqueeze(-1).to(out.dtype)
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
        if self.implementation == "flex" and x.is_cuda:
            return local_attention_flex(self.query(x), self.key(x), self.value(x), self.window)
        # the reference keeps only x for the backward and recomputes the projections from it
        out = _projected_reference(x, self.query.weight, self.key.weight, self.value.weight, self.window)
        # attended in float32, handed back in x's dtype: a model cast whole to bfloat16 or float16 had its next
        # convolution refuse the float32 result; under autocast that convolution made the same cast
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return f"window={self.window}, implementation={self.implementation}"

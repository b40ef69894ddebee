"""Joint convolutions: each gate's sum of convolutions, ``W_x * X + W_h * H``, as one convolution over ``[X, H]``.

One convolution over the concatenated inputs does the same multiply-adds in one kernel instead of two and a sum.
What it keeps for the backward is its inputs, not their concatenation (the inputs are kept anyway), rebuilt by
the backward; under autocast the weights are cast once per clip (:func:`weight_casts_per_clip`) and the
concatenation is made in half precision with the fewest casts. A known zero input (:mod:`msrnn_zoo.zero_states`)
is left out with its span of the weight, an :class:`~msrnn_zoo.embedded_frame.EmbeddedFrame` is absorbed, and a
``recomputable`` input (:mod:`msrnn_zoo.recompute`) is kept as its recipe. Weights saved as separate
convolutions (the original's, older checkpoints) fold in at load (:func:`fold_joint_convs`).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .embedded_frame import EmbeddedFrame, _absorb_embeddings, _materialized
from .recompute import _RECIPES, _recipe_of, _Remade
from .zero_states import _KNOWN_ZEROS, _marked_zero


class _ClipCasts(threading.local):
    """This thread's ``(id(weight), dtype) -> (weight, its version when cast, the cast)`` within
    :func:`weight_casts_per_clip`, else ``None``; per thread, so that clips run in two threads never share one."""

    def __init__(self) -> None:
        # set on every thread's instance, not left to a class default: Dynamo, tracing a user's torch.compile of
        # the model, guarded on the attribute's absence and failed its own guard once the clip had set it
        self.casts: dict[tuple[int, torch.dtype], tuple[torch.Tensor, int, torch.Tensor]] | None = None


_CLIP = _ClipCasts()


@contextlib.contextmanager
def weight_casts_per_clip() -> Iterator[None]:
    """Within it, the joint convolutions under autocast cast each weight to half precision once, not at every call.

    A clip runs every layer's convolutions once per time step with the same weights. Autocast's own cache of cast
    weights is off while a clip is recorded as CUDA graphs (a recording must not reuse a copy made before it, or
    no replay would see the optimizer's updates), so each call cast its weight and bias again, and the backward
    cast the weight once more. Casting once per clip takes 1303 of the 11846 operations of PredRNN's recorded bf16
    training step at 10 -> 10 frames off (``benchmarks/launches.py --precision bf16 --recorded``). Here the copies
    live for one clip (made inside a recording when the clip is recorded), the backward reads the forward's copy
    (kept until then: half the joint weights' bytes, once per clip), and each step's weight gradient still reaches
    the float32 weight on its own, summed there in float32. The same numbers bit for bit: the same casts, fewer
    times. Each scope starts empty and ends with its clip; a weight written in place within it is cast again. Not
    used under saved-tensor hooks (a checkpoint recomputes the step outside the clip, and must find what the first
    pass saved) nor while Dynamo traces.
    """
    outer, _CLIP.casts = _CLIP.casts, {}
    try:
        yield
    finally:
        _CLIP.casts = outer


def _cast_for_clip(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t.to(dtype)``, made once per clip; only where :func:`_clip_cast_dtype` said yes (within a clip), and the
    caller holds no graph (no grad)."""
    casts = _CLIP.casts
    assert casts is not None  # (_clip_cast_dtype asks first)
    key = (id(t), dtype)
    entry = casts.get(key)
    if entry is not None and entry[0] is t and entry[1] == t._version:
        return entry[2]
    cast = t.to(dtype)
    casts[key] = (t, t._version, cast)
    return cast


def _clip_cast_dtype(weight: torch.Tensor) -> torch.dtype | None:
    """The half-precision dtype to which this call may take ``weight``'s per-clip copy, or ``None`` (no scope, no
    autocast, not float32, someone's saved-tensor hooks active, or Dynamo tracing). Every convolution of a forecast
    asks, so the common answer (no autocast at all) comes first."""
    if torch.compiler.is_compiling() or (_ANY_AUTOCAST is not None and not _ANY_AUTOCAST()):
        return None
    if _CLIP.casts is None or weight.dtype != torch.float32:
        return None
    device = weight.device.type
    if not torch.is_autocast_enabled(device) or (_HOOKS_API and _TOP_HOOKS(False) is not None):  # type: ignore[misc]
        return None
    dtype = torch.get_autocast_dtype(device)
    return dtype if dtype != torch.float32 else None


def _concatenation_in(inputs: Sequence[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """``torch.cat(inputs, 1).to(dtype)`` in the fewest kernels, and of those the fewest bytes; the same numbers bit
    for bit every way.

    Under autocast a gate's inputs may differ in dtype (a hidden state that comes out of half-precision products,
    a memory out of float32 arithmetic). Three ways, counted as a GPU runs them, where ``cat`` is one kernel over
    parts of its result's dtype and one copy per part otherwise: each part not in ``dtype`` cast, then
    concatenated (its copies written in half precision and read again); all concatenated, then cast (the whole
    written in float32 and read again); or concatenated into a result of ``dtype`` (``out=``), each part cast
    straight into its span (read once, the result written once; ``copy_`` rounds as ``to`` does). The last wherever
    it takes no more kernels: two parts, or all but at most one to cast; not where autograd records (``out=`` has no
    derivative: a double backward through the backward's concatenation). Compiled cells fuse the casts anyway.
    """
    parts = len(inputs)
    wide = sum(t.dtype != dtype for t in inputs)
    if wide == 0:
        return torch.cat(list(inputs), dim=1)
    cast_each, cat_then_cast = wide + 1, (1 if wide == parts else parts) + 1
    differentiated = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)  # (a double backward)
    if parts > min(cast_each, cat_then_cast) or differentiated or torch.compiler.is_compiling():
        if cast_each <= cat_then_cast:
            return torch.cat([t.to(dtype) for t in inputs], dim=1)
        return torch.cat(list(inputs), dim=1).to(dtype)
    return torch.cat(list(inputs), dim=1, out=inputs[0].new_empty(0, dtype=dtype))


def _forward_concatenation(inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The concatenation a joint convolution's forward convolves: in autocast's dtype when autocast would cast it
    (float32 and half-precision parts; float64 ones it leaves alone), see :func:`_concatenation_in`. A forecast's
    convolutions ask too, so the common answer (no autocast at all, on any device) comes first."""
    if _ANY_AUTOCAST is not None and not _ANY_AUTOCAST():
        return torch.cat(inputs, dim=1)
    device = inputs[0].device.type
    if device != "meta" and torch.is_autocast_enabled(device):  # (autocast knows no meta device)
        dtype = torch.get_autocast_dtype(device)
        if all(t.dtype in (torch.float32, dtype) for t in inputs):
            return _concatenation_in(inputs, dtype)
    return torch.cat(inputs, dim=1)


class _JointConv(torch.autograd.Function):
    """``conv2d(cat(inputs), weight, bias)`` that keeps the inputs for the backward, not their concatenation.

    Autograd would keep the concatenated copy of every gate's inputs through the whole clip; the inputs
    themselves are kept anyway (other gates read them), so keeping them instead costs no memory, and the
    backward concatenates them once more. ``padding`` is an int or a (height, width) pair; stride, dilation
    and groups are 1. Under autocast the forward's convolution runs in the autocast dtype; the backward
    computes in the dtype of the gradient it receives (that same dtype).
    """

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, bias: torch.Tensor | None, padding: int | tuple[int, int],
                *inputs: torch.Tensor) -> torch.Tensor:
        kept: list[torch.Tensor] = []
        ctx.recipes = []  # per input: its recipe and how many of the kept tensors are its sources, or None
        recipes = not torch.compiler.is_compiling() and bool(_RECIPES)  # (traced, this reads no global)
        for t in inputs:
            found = _recipe_of(t) if recipes else None
            ctx.recipes.append(None if found is None else (found[0], len(found[1])))
            kept += [t] if found is None else found[1]
        # the dtypes of the gradients to hand back: a compiled cell under autocast may pass the clip's
        # half-precision copy of the weight (msrnn_zoo.compiled_cells), its bias still the float32 parameter
        ctx.weight_dtype, ctx.bias_dtype = weight.dtype, None if bias is None else bias.dtype
        half = _clip_cast_dtype(weight)
        if half is not None:  # the clip's copies, which the backward reads too (see weight_casts_per_clip)
            weight = _cast_for_clip(weight, half)
            bias = None if bias is None else _cast_for_clip(bias, half)
        ctx.save_for_backward(weight, *kept)
        ctx.padding = [padding, padding] if isinstance(padding, int) else list(padding)
        ctx.has_bias = bias is not None
        return F.conv2d(_forward_concatenation(inputs), weight, bias, padding=padding)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight, *kept = ctx.saved_tensors
        inputs, start = [], 0
        for entry in ctx.recipes:
            if entry is None:
                inputs.append(kept[start])
                start += 1
            else:
                inputs.append(entry[0].rebuild(tuple(kept[start:start + entry[1]])))
                start += entry[1]
        need_weight, need_bias = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_inputs = any(ctx.needs_input_grad[3:])
        x = _concatenation_in(inputs, grad.dtype)
        # under autocast the bias's gradient is summed straight into the bias's dtype: one reduction, where the
        # convolution's would round it to half precision and a cast widen it again
        dtype = ctx.weight_dtype  # the parameter's: the saved weight may be the clip's half-precision copy
        bias_apart = need_bias and grad.dtype != ctx.bias_dtype
        grad_x, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
            grad, x, weight.to(grad.dtype), [weight.shape[0]] if ctx.has_bias else None, [1, 1],
            ctx.padding, [1, 1], False, [0, 0], 1, [need_inputs, need_weight, need_bias and not bias_apart])
        if bias_apart:
            grad_bias = grad.sum((0, 2, 3), dtype=ctx.bias_dtype)
        grad_inputs: list[torch.Tensor | None] = [None] * len(inputs)
        if need_inputs:
            grad_inputs = _split_in(grad_x, inputs, ctx.needs_input_grad[3:])
        return (None if grad_weight is None else grad_weight.to(dtype),
                None if grad_bias is None else grad_bias.to(ctx.bias_dtype), None, *grad_inputs)


def _split_in(grad: torch.Tensor, inputs: list[torch.Tensor], needed: tuple[bool, ...]) -> list[torch.Tensor | None]:
    """The gradient of a concatenation split into its parts' gradients, each in its part's dtype, in the fewest
    casts: one cast before the split where the needed parts share a dtype other than the gradient's (the float32
    memories of a gate under autocast), else one per part that needs it. The same numbers either way."""
    wanted = [t.dtype for t, need in zip(inputs, needed) if need]
    if len(wanted) > 1 and len(set(wanted)) == 1 and wanted[0] != grad.dtype:
        grad = grad.to(wanted[0])
    parts = torch.split(grad, [t.shape[1] for t in inputs], dim=1)
    return [g.to(t.dtype) if need else None for g, t, need in zip(parts, inputs, needed)]


def _without_known_zeros(weight: torch.Tensor, inputs: tuple[torch.Tensor, ...]
                         ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The weight and inputs of ``conv2d(cat(inputs), weight)`` without the inputs known to be zero.

    A zero input adds nothing to the sum, and its span of the weight gets a zero gradient either way; the
    slices of the weight carry the gradient to the parameter. If every input is zero (or the widths do not
    add up, which the convolution itself reports), all are kept.
    """
    zero = [_marked_zero(t) for t in inputs]
    if not any(zero) or all(zero) or sum(t.shape[1] for t in inputs) != weight.shape[1]:
        return weight, inputs
    ranges: list[list[int]] = []  # [start, stop) of the kept spans, neighbours joined: one slice where possible
    start = 0
    for t, is_zero in zip(inputs, zero):
        stop = start + t.shape[1]
        if not is_zero:
            if ranges and ranges[-1][1] == start:
                ranges[-1][1] = stop
            else:
                ranges.append([start, stop])
        start = stop
    spans = [weight[:, a:b] for a, b in ranges]
    kept = tuple(t for t, is_zero in zip(inputs, zero) if not is_zero)
    return (spans[0] if len(spans) == 1 else torch.cat(spans, dim=1)), kept


class _Concatenation:
    """What autograd keeps of a concatenation it would otherwise save: its parts (the recipe of a part made by
    :func:`recomputable`), and their versions then. Convolutions of the same parts in a row share one
    (:func:`_kept_parts`; ``readers`` counts them), which holds its rebuilt copy from the first one's backward to
    the last one's."""

    __slots__ = ("__weakref__", "parts", "readers", "value", "versions")

    def __init__(self, parts: tuple[torch.Tensor, ...]) -> None:
        kept: tuple[torch.Tensor | _Remade, ...] = parts
        if not _RECIPES.keys().isdisjoint(map(id, parts)):  # an input made by recomputable: keep its recipe
            kept = tuple(t if (found := _recipe_of(t)) is None else _Remade(*found) for t in parts)
        self.parts = kept
        self.versions = [t._version for t in kept if type(t) is not _Remade]  # type: ignore[union-attr]
        self.readers = 1
        self.value: torch.Tensor | None = None

    def holds(self, parts: tuple[torch.Tensor, ...]) -> bool:
        """Whether these are its parts, unchanged: the same tensors (not recipes) at the same versions."""
        return (len(parts) == len(self.parts) and all(a is b for a, b in zip(parts, self.parts))
                and [t._version for t in parts] == self.versions)

    def rebuild(self) -> torch.Tensor:
        """The concatenation again; made once for all the convolutions that share this (:func:`_kept_parts`)."""
        value = self.value
        if value is None:
            if [t._version for t in self.parts if type(t) is not _Remade] != self.versions:  # type: ignore[union-attr]
                raise RuntimeError("An input of a joint convolution was modified in place after the forward pass; "
                                   "its backward needs the values the forward saw. Write to a copy (x = x + ...) "
                                   "instead.")
            value = torch.cat([t.rebuild() if type(t) is _Remade else t for t in self.parts], dim=1)  # type: ignore
        self.readers -= 1  # the last of them lets the copy go (a retained graph's second backward makes it again)
        self.value = value if self.readers > 0 else None
        return value


_LAST_KEPT: weakref.ref[_Concatenation] | None = None


def _kept_parts(parts: tuple[torch.Tensor, ...]) -> _Concatenation:
    """What a convolution keeps of its concatenated input: the parts, shared with the convolution before it when that
    one read the very same parts (PredRNN's output gate and 1x1 read-out both read ``[C_t, M_t]``), so that the
    backward concatenates them once for both. Only the forward's convolutions are compared, one after the other: a
    weak reference, which keeps nothing alive."""
    global _LAST_KEPT
    last = _LAST_KEPT() if _LAST_KEPT is not None else None
    if last is not None and last.holds(parts):
        last.readers += 1
        return last
    kept = _Concatenation(parts)
    _LAST_KEPT = weakref.ref(kept)
    return kept


_hooks_api = torch._C._autograd
_TOP_HOOKS = getattr(_hooks_api, "_top_saved_tensors_default_hooks", None)
_HOOKS_ENABLED = getattr(_hooks_api, "_saved_tensors_hooks_is_enabled", None)
_PUSH_HOOKS = getattr(_hooks_api, "_push_saved_tensors_default_hooks", None)
_POP_HOOKS = getattr(_hooks_api, "_pop_saved_tensors_default_hooks", None)
_ANY_AUTOCAST = getattr(torch._C, "_is_any_autocast_enabled", None)
_HOOKS_API = None not in (_TOP_HOOKS, _HOOKS_ENABLED, _PUSH_HOOKS, _POP_HOOKS)


def _own_hooks_allowed(device: torch.device) -> bool:  # called where Dynamo is not tracing
    """Whether :func:`_conv_keeping_parts` may hook the saved tensors; elsewhere :class:`_JointConv` keeps the
    same in Python. Not inside anyone else's hooks (a checkpoint's, a memory count's: they must see every saved
    tensor), nor while Dynamo traces, nor under autocast: there autograd would keep a half-precision copy of each
    weight for the whole clip and sum its gradient over the time steps in half precision (measured on bf16: up to
    0.19 apart), where :class:`_JointConv` keeps the weight and adds each step's gradient in its own dtype. Any
    autocast counts, whatever its device: this runs for every gate, so it asks one question instead of two."""
    if not _HOOKS_API:
        return False
    autocast = _ANY_AUTOCAST() if _ANY_AUTOCAST is not None else torch.is_autocast_enabled(device.type)
    return not autocast and _HOOKS_ENABLED() and _TOP_HOOKS(False) is None  # type: ignore[misc]


def _unpack(saved: torch.Tensor | _Concatenation) -> torch.Tensor:
    return saved.rebuild() if type(saved) is _Concatenation else saved  # type: ignore[return-value]


def _conv_keeping_parts(weight: torch.Tensor, bias: torch.Tensor | None, padding: int | tuple[int, int],
                        inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """:class:`_JointConv` by autograd's own convolution: the concatenation it saves is swapped for its parts.

    The same kept tensors and the same backward kernels, without a Python ``autograd.Function`` around each
    gate: where a step waits on the host (an eager GPU step, small frames on the CPU) that Python took 11-19%
    of a training step (``benchmarks/joint_conv.py --backward``). The concatenation is found by identity; the
    hooks hold it only while the convolution saves, so it is freed when this returns. The hooks are pushed and
    popped without the context manager's frames: this runs for every gate of every step.
    """
    concatenation: torch.Tensor | None = torch.cat(inputs, dim=1)

    def pack(t: torch.Tensor) -> torch.Tensor | _Concatenation:
        return _kept_parts(inputs) if t is concatenation else t

    _PUSH_HOOKS(pack, _unpack)  # type: ignore[misc]
    try:
        out = F.conv2d(concatenation, weight, bias, padding=padding)  # type: ignore[arg-type]  # None once freed
    finally:
        _POP_HOOKS()  # type: ignore[misc]
    # the hooks outlive this call (autograd keeps them with what they saved): let go of what they hold, or an input
    # made by recomputable would be kept after all
    concatenation, inputs = None, ()
    return out


def _conv_side_by_side(weight: torch.Tensor, bias: torch.Tensor | None, padding: int | tuple[int, int],
                       inputs: tuple[torch.Tensor | EmbeddedFrame, ...]) -> torch.Tensor:
    """``conv2d(cat(inputs))``, keeping the inputs rather than their concatenation when a backward pass will need
    them (:func:`_conv_keeping_parts`, or :class:`_JointConv` where it cannot hook the saved tensors).

    Every gate of every step comes through here, so where the host is the bottleneck its checks are a
    measurable share of a step: the common case (tensors only, no marked zeros, training) asks the fewest
    questions first.
    """
    for t in inputs:
        if isinstance(t, EmbeddedFrame):
            weight, inputs = _absorb_embeddings(weight, inputs)
            break
    traced = torch.compiler.is_compiling()  # a compiled step convolves every input, and Dynamo cannot trace hooks
    if not traced and not _KNOWN_ZEROS.keys().isdisjoint(map(id, inputs)):  # some input may be a marked zero
        weight, inputs = _without_known_zeros(weight, inputs)  # type: ignore[arg-type]  # embeddings absorbed
    keeps = torch.is_grad_enabled() and (weight.requires_grad or (bias is not None and bias.requires_grad)
                                         or any(t.requires_grad for t in inputs))  # type: ignore[union-attr]
    if len(inputs) > 1 and keeps:
        if not traced and _own_hooks_allowed(inputs[0].device):  # type: ignore[union-attr]
            return _conv_keeping_parts(weight, bias, padding, inputs)  # type: ignore[arg-type]
        return _JointConv.apply(weight, bias, padding, *inputs)
    x = inputs[0] if len(inputs) == 1 else _forward_concatenation(inputs)  # type: ignore[arg-type]  # (no backward)
    if not keeps and (half := _clip_cast_dtype(weight)) is not None:  # a forecast: the clip's copies
        weight, bias = _cast_for_clip(weight, half), None if bias is None else _cast_for_clip(bias, half)
    return F.conv2d(x, weight, bias, padding=padding)  # type: ignore[arg-type]  # the embeddings were absorbed above


def joint_conv2d(conv: nn.Conv2d, *inputs: torch.Tensor | EmbeddedFrame) -> torch.Tensor:
    """``conv(torch.cat(inputs, dim=1))`` without autograd keeping the concatenation for the backward pass.

    Autograd keeps the input of every convolution until the backward pass. When a cell concatenates tensors
    only to convolve them (PredRNN++'s gates over ``[X_t, H_{t-1}, C_{t-1}]``, the 1x1 read-out over
    ``[C_t, M_t]``), that input is a copy of tensors which other operations keep anyway, so every layer and
    time step of a training clip would store them twice. This computes the same convolution, with the same
    ``conv`` (its parameter names, shapes and initialisation stay an ``nn.Conv2d``'s, so checkpoints and the
    converter from the original code see nothing new), but keeps the parts and concatenates them again in
    the backward. Several convolutions may read the same parts: a tensor kept by several operations is
    stored once. A :class:`JointConv2d` does the same when called with its inputs, ``joint(a, b)``.

    A convolution with a stride, dilation, groups, string padding or a padding mode other than zeros (no
    cell's gates have one) is computed on the concatenation as usual. An input may be an
    :class:`EmbeddedFrame`, which the convolution absorbs.
    """
    if not inputs:
        raise ValueError("joint_conv2d needs at least one input tensor to convolve.")
    plain = (conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
             and conv.padding_mode == "zeros" and not isinstance(conv.padding, str))
    if not plain:
        parts = _materialized(inputs)
        return conv(parts[0] if len(parts) == 1 else torch.cat(parts, dim=1))
    return _conv_side_by_side(conv.weight, conv.bias, conv.padding, inputs)  # type: ignore[arg-type]


class JointConv2d(nn.Module):
    """The sum of convolutions of several inputs, ``W_a * a + W_b * b + ...``, as one convolution over ``[a, b, ...]``.

    Recurrent gates add a convolution of the input to one of the state (``W_x * X_t + W_h * H_{t-1}``). One
    convolution over the inputs concatenated along channels, with the weights side by side and the biases
    added, is the same sum in one kernel instead of one per input plus the additions in between.

    ``parts`` names the convolution of each input, in call order, with the input's channels:
    ``JointConv2d({"conv_x": in_channels, "conv_h": hidden}, 4 * hidden, k)`` computes
    ``conv_x(x) + conv_h(h)`` as ``joint(x, h)``. Those names are how separately stored weights load: a state
    dict holding ``conv_x.weight``, ``conv_x.bias``, ``conv_h.*`` beside this module (in its parent, as older
    checkpoints and converted checkpoints of the original implementation have them) is folded into this
    module's ``weight`` and ``bias`` when a :class:`RecurrentCell` holding it loads (see :func:`fold_joint_convs`).
    Each part is initialised as its own ``nn.Conv2d`` would be, in the order given.
    """

    def __init__(self, parts: dict[str, int], out_channels: int, kernel_size: int, *, bias: bool = True) -> None:
        super().__init__()
        if not parts or any(c < 1 for c in parts.values()):
            raise ValueError(f"A joint convolution needs at least one input with positive channels, got {parts}.")
        self.parts = dict(parts)
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.padding = kernel_size // 2
        convs = [nn.Conv2d(c, out_channels, kernel_size, bias=bias) for c in self.parts.values()]
        self.weight = nn.Parameter(torch.cat([c.weight.detach() for c in convs], dim=1))
        self.bias = nn.Parameter(sum(c.bias.detach() for c in convs)) if bias else None  # type: ignore[misc,arg-type,union-attr]
        self.split = False
        """Compute the sum part by part instead (as separate convolutions would): only to measure what joining saves."""

    @property
    def in_channels(self) -> int:
        return sum(self.parts.values())

    def forward(self, *inputs: torch.Tensor | EmbeddedFrame) -> torch.Tensor:
        """``conv_a(a) + conv_b(b) + ...``; a single input is taken as ``[a, b, ...]`` already concatenated.

        Pass the inputs, not their concatenation, when they are kept for the backward anyway: the
        concatenation would be kept too (see :func:`joint_conv2d`). An input may be an :class:`EmbeddedFrame`.
        """
        if self.split:
            inputs = _materialized(inputs)
        if len(inputs) == 1 and len(self.parts) > 1 and inputs[0].shape[1] == self.in_channels:
            inputs = (tuple(torch.split(inputs[0], list(self.parts.values()), dim=1))  # type: ignore[arg-type]
                      if self.split else inputs)
        elif len(inputs) != len(self.parts):
            raise ValueError(f"This joint convolution sums {len(self.parts)} inputs ({', '.join(self.parts)}), "
                             f"got {len(inputs)}.")
        if self.split:
            start, total = 0, None
            for x in inputs:
                term = F.conv2d(x, self.weight[:, start:start + x.shape[1]], None,  # type: ignore[arg-type]
                                padding=self.padding)
                total = term if total is None else total + term
                start += x.shape[1]
            return total if self.bias is None else total + self.bias[:, None, None]  # type: ignore[return-value,operator]
        return _conv_side_by_side(self.weight, self.bias, self.padding, inputs)

    def fold(self, state: MutableMapping[str, torch.Tensor], prefix: str,
             name: Callable[[str], str] = str) -> dict[str, list[str]]:
        """Replace the separate parts' weights in ``state`` by the joint ones; returns ``{joint key: part keys}``.

        ``prefix`` is this module's (``"cells.0.conv_xh."``); the parts are looked for in its parent. ``name``
        says how an error names a key that is present (a converter gives the original's name).
        """
        parent = prefix[: prefix.rstrip(".").rfind(".") + 1]
        folded: dict[str, list[str]] = {}
        for param in ("weight", "bias"):
            keys = [f"{parent}{name}.{param}" for name in self.parts]
            present = [k for k in keys if k in state]
            if not present:
                continue
            if len(present) != len(keys):
                missing = sorted(set(keys) - set(present))
                raise ValueError(f"{', '.join(map(name, present))} load into the joint convolution "
                                 f"{prefix}{param}, which also needs {', '.join(missing)}; the checkpoint is "
                                 "incomplete.")
            if f"{prefix}{param}" in state:
                raise ValueError(f"The checkpoint holds both {prefix}{param} and its parts "
                                 f"{', '.join(map(name, keys))}; keep one of the two.")
            # parts of another kernel size or width than each other could not be joined at all (torch.cat raised
            # a bare RuntimeError); the joint's own shape is checked by the caller, against the model
            shapes = [tuple(state[k].shape) for k in keys]
            alike = {s[:1] + s[2:] for s in shapes} if param == "weight" else set(shapes)
            if len(alike) != 1:
                described = ", ".join(f"{name(k)} {s}" for k, s in zip(keys, shapes))
                joined = "all dimensions but the second (input channels)" if param == "weight" else "their shape"
                raise ValueError(f"The parts of the joint convolution {prefix}{param} must agree in {joined}, but "
                                 f"they are {described}; the checkpoint is damaged or of another model.")
            tensors = [state.pop(k) for k in keys]
            if param == "weight":
                state[f"{prefix}{param}"] = torch.cat(tensors, dim=1)
            else:
                state[f"{prefix}{param}"] = torch.stack(tensors).sum(0)
            folded[f"{prefix}{param}"] = keys
        return folded

    def extra_repr(self) -> str:
        parts = " + ".join(f"{name}({c})" for name, c in self.parts.items())
        return f"{parts} -> {self.out_channels}, k={self.kernel_size}, bias={self.bias is not None}"


def fold_joint_convs(module: nn.Module, state: MutableMapping[str, torch.Tensor], prefix: str = "",
                     name: Callable[[str], str] = str) -> dict[str, list[str]]:
    """Fold separately stored part weights into every :class:`JointConv2d` under ``module`` (keys under ``prefix``).

    Returns ``{joint key: [part keys]}`` for what was folded, so that a converter can say where a weight came from;
    ``name`` is how errors name the keys present (see :meth:`JointConv2d.fold`).
    """
    folded: dict[str, list[str]] = {}
    for path, sub in module.named_modules():
        if isinstance(sub, JointConv2d):
            folded.update(sub.fold(state, f"{prefix}{path}." if path else prefix, name))
    return folded


def _fold_joint_convs_hook(module: nn.Module, state: MutableMapping[str, torch.Tensor], prefix: str,
                           *_: Any) -> None:
    fold_joint_convs(module, state, prefix)

"""Compiled cells ("regional" compilation): ``torch.compile`` of one cell call, shared by every layer and model.

A recorded clip (fast path ``clip-graph``) no longer waits on kernel launches; what is left besides the
convolutions is the gate arithmetic, a dozen element-wise kernels per gate forward and more backward, each a pass
over memory. Inductor fuses them into a few kernels around the convolutions, which stay cuDNN's (oneDNN's on the
CPU). Compiling the cell rather than the step keeps the compile small: Dynamo guards on a cell's class, sizes and
options, not on the object, so all layers of a class at one size share one compiled graph.

What the backward keeps is chosen, not left to the partitioner (selective activation checkpointing over the cell):
the products (convolutions, matrix products, attention) are kept, everything element-wise is recomputed inside the
fused backward kernels. Left to itself, AOTAutograd kept each gate's concatenated input as well -- it cannot know
that the parts are kept by the rest of the clip -- and a training clip kept 1.78x (ms-predrnn) and 1.98x
(predrnn-pp) the eager path's activation memory; now 1.06x and 0.98x (``benchmarks/step_time.py --compile-cells``,
exact; ``benchmarks/options.py --options plain,compile-cells`` for time).

Under autocast within a clip, a compiled cell's gate convolutions read the clip's half-precision copies of their
weights (:func:`_clip_weights`), as eager gates do (``weight_casts_per_clip``): a graph handed the float32 weights
casts each of them at every call, and its backward casts them again, each cast a kernel of its own on a GPU.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .cell import RecurrentCell, State
from .embedded_frame import EmbeddedFrame
from .joint_conv import JointConv2d, _cast_for_clip, _clip_cast_dtype

RECOMPILE_LIMIT = 64
"""How many variants of the compiled cell call (class, size, grad mode, ...) Dynamo keeps before it runs new ones
eagerly. All models of a process share the one call: a multi-scale model alone makes about a dozen variants
(three sizes, the bottom layer's embedded frame, the first step's state without gradients, training and forecasting),
beyond PyTorch's default of 8."""

KEPT_FOR_BACKWARD = (
    "aten.convolution.default", "aten.mm.default", "aten.bmm.default", "aten.addmm.default", "aten.baddbmm.default",
    "higher_order.flex_attention", "aten._scaled_dot_product_flash_attention.default",
    "aten._scaled_dot_product_efficient_attention.default", "aten._scaled_dot_product_cudnn_attention.default",
)
"""The operations (under ``torch.ops``) whose results a compiled cell keeps for the backward: recomputing them
would cost real work. Those this PyTorch lacks are left out."""


@functools.cache
def _kept_ops() -> frozenset[Any]:
    found = set()
    for name in KEPT_FOR_BACKWARD:
        op: Any = torch.ops
        for part in name.split("."):
            op = getattr(op, part, None)
            if op is None:
                break
        if op is not None:
            found.add(op)
    return frozenset(found)


def run_cell(cell: RecurrentCell, x: Any, state: State, memory: torch.Tensor | None,
             lower: torch.Tensor | None) -> Any:
    """One step of ``cell``, as the network calls it."""
    return cell(x, state, memory, lower)


class _ClipCopy(torch.autograd.Function):
    """A weight read as the clip's half-precision copy by one call of a compiled cell. The call's gradient reaches
    the float32 weight on its own, widened to float32 (the same rounding as a cast inside the graph), and the calls'
    gradients are summed there in float32, as an eager gate's are."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, copy: torch.Tensor) -> torch.Tensor:
        ctx.dtype = weight.dtype
        return copy.view_as(copy)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad.to(ctx.dtype), None


_HAND_COPIES = True
"""Whether compiled cells are handed the clip's weight copies (off only within :func:`weights_cast_per_call`)."""


@contextlib.contextmanager
def weights_cast_per_call() -> Iterator[None]:
    """Meanwhile compiled cells are handed their float32 weights and cast them at every call, as they did before they
    read the clip's copies: what the tests and ``benchmarks/launches.py --compile-cells`` compare the copies with."""
    global _HAND_COPIES
    previous, _HAND_COPIES = _HAND_COPIES, False
    try:
        yield
    finally:
        _HAND_COPIES = previous


def _clip_weights(cell: RecurrentCell, x: Any) -> dict[str, torch.Tensor]:
    """The weights a compiled call of ``cell`` reads in place of its parameters: within a clip under a half-precision
    autocast, the clip's copy of the weight of each gate convolution (an ``nn.Conv2d`` or a ``JointConv2d`` the
    cell, or a cell within it, holds itself), which autocast would cast for the convolution at every call anyway.

    Elsewhere none: no clip or no autocast, grad checkpointing's hooks (``_clip_cast_dtype``), and the bottom
    layer's embedded frame, whose convolution first combines its weight with the embedding in float32. The biases
    stay the parameters: the graph sums a bias's gradient in float32 from the half-precision gradient of the
    convolution's output, which a half-precision bias would round first. Convolutions deeper inside (an attention's
    projections, PredRNN++'s highway unit, MotionRNN's motion GRU) keep their parameters too.
    """
    first = next(cell.parameters(), None) if _HAND_COPIES else None
    half = None if first is None or isinstance(x, EmbeddedFrame) else _clip_cast_dtype(first)
    if half is None:  # (the common case, float32, answered before walking the modules)
        return {}
    weights: dict[str, torch.Tensor] = {}
    differentiable = torch.is_grad_enabled()
    for prefix, module in cell.named_modules():
        if not isinstance(module, RecurrentCell):
            continue
        for name, conv in module.named_children():
            weight = conv.weight if type(conv) in (nn.Conv2d, JointConv2d) else None
            if weight is None or weight.dtype != torch.float32:
                continue
            with torch.no_grad():
                copy = _cast_for_clip(weight, half)  # type: ignore[arg-type]  # a Conv2d's or JointConv2d's
            key = f"{prefix}.{name}.weight" if prefix else f"{name}.weight"
            weights[key] = _ClipCopy.apply(weight, copy) if differentiable and weight.requires_grad else copy
    return weights


def _policy(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> Any:
    from torch.utils.checkpoint import CheckpointPolicy

    return CheckpointPolicy.MUST_SAVE if op in _kept_ops() else CheckpointPolicy.PREFER_RECOMPUTE


def _call_with(cell: RecurrentCell, weights: dict[str, torch.Tensor], *args: Any) -> Any:
    return torch.func.functional_call(cell, weights, args)


def _run_cell_keeping_products(cell: RecurrentCell, weights: dict[str, torch.Tensor], x: Any, state: State,
                               memory: torch.Tensor | None, lower: torch.Tensor | None) -> Any:
    call: Callable[..., Any] = functools.partial(_call_with, cell, weights) if weights else cell
    if not torch.is_grad_enabled():
        return call(x, state, memory, lower)
    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    return checkpoint(call, x, state, memory, lower, use_reentrant=False,
                      context_fn=functools.partial(create_selective_checkpoint_contexts, _policy))


_backend: str | Callable[..., Any] = "inductor"
_EAGER: set[tuple[type, str]] = set()
"""Cell classes, per device type, that could not be traced whole or compiled: they run eagerly (said once)."""


class _KnownCheckpointNotice(logging.Filter):
    """Drops PyTorch's notice that a checkpoint with a policy runs under torch.compile and must hold no in-place
    operation: every cell's compiled step is checked against its eager one (``testing.check_compiled_cells``), so
    the notice would only tell a user about our own wrapper."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "context_fn is passed to torch.utils.checkpoint under torch.compile" not in record.getMessage()


@functools.cache
def _compiled() -> Any:
    logging.getLogger("torch._higher_order_ops.wrap").addFilter(_KnownCheckpointNotice())
    # layout_optimization off: inductor would copy the weights into channels-last at every call and keep the copies
    # for the backward (1.52x the eager activation memory of ms-predrnn on the CPU, with the policy); a model asks for
    # that layout with set_channels_last
    options: dict[str, Any] | None = {"layout_optimization": False} if _backend == "inductor" else None
    return torch.compile(_run_cell_keeping_products, backend=_backend, dynamic=False, fullgraph=True, options=options)


@contextlib.contextmanager
def backend(name: str | Callable[..., Any]) -> Iterator[None]:
    """Compile cells with another ``torch.compile`` backend meanwhile: ``"aot_eager"`` traces as for inductor (Dynamo,
    AOTAutograd, the choice of what is kept) and compiles nothing, which is how tests check a cell in seconds.
    What was compiled before is dropped, on entry and on exit."""
    previous = _backend

    def switch(to: str | Callable[..., Any]) -> None:
        global _backend
        _backend = to
        _compiled.cache_clear()
        _EAGER.clear()
        torch._dynamo.reset()

    switch(name)
    try:
        yield
    finally:
        switch(previous)


def _first_line(exc: BaseException) -> str:
    line = (str(exc).strip().splitlines() or [""])[0]
    return "a check inside the compiler failed" if not line or line.startswith("from user code") else line


_COMPILER_PACKAGES = ("_dynamo", "_inductor", "_functorch", "_higher_order_ops")


def _raised_in_compiler(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside PyTorch's compiler (its innermost frame is there)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    parts = tb.tb_frame.f_code.co_filename.replace("\\", "/").split("/")
    return any(parts[i] == "torch" and parts[i + 1] in _COMPILER_PACKAGES for i in range(len(parts) - 1))


def _compiler_failed(exc: BaseException) -> bool:
    """Whether the compiler, not the cell, failed: a graph it cannot trace, a backend that fails, or an internal
    error of Dynamo (PyTorch 2.11 asserted on a cell returning ``NamedTuple._replace``'s result; not 2.14)."""
    if isinstance(exc, (torch._dynamo.exc.Unsupported, torch._dynamo.exc.BackendCompilerFailed)):
        return True
    if isinstance(exc, torch.OutOfMemoryError):  # the step's, which an eager cell would need as much
        return False
    internal = getattr(torch._dynamo.exc, "InternalTorchDynamoError", None)
    return (internal is not None and isinstance(exc, internal)) or _raised_in_compiler(exc)


def _warning_within(exc: BaseException) -> bool:
    """Whether a warning raised as an error is among the causes of ``exc``."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, Warning):
            return True
        seen.add(id(cause))
        cause = getattr(cause, "inner_exception", None) or cause.__cause__ or cause.__context__
    return False


def run_compiled_cell(cell: RecurrentCell, x: Any, state: State, memory: torch.Tensor | None,
                      lower: torch.Tensor | None) -> Any:
    """:func:`run_cell` compiled. A cell that cannot be traced whole (a part kept out of the compiler, like
    PrecipLSTM's pure-PyTorch attention), or whose graph the compiler fails on (no C++ compiler for inductor on
    the CPU, say), runs eagerly on that device type from then on, with a warning, rather than stopping a run."""
    key = (type(cell), state[0].device.type)
    if torch.compiler.is_compiling() or key in _EAGER:  # inside a compiled step, the cell is part of its graph
        return cell(x, state, memory, lower)
    def compiled_call() -> Any:
        with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
            return _compiled()(cell, _clip_weights(cell, x), x, state, memory, lower)

    try:
        try:
            return compiled_call()
        except Exception as exc:
            if not (_compiler_failed(exc) and _warning_within(exc)):
                raise
            # warnings made errors (python -W error): the compiler stopped at a warning of its own. Traced again
            # with warnings ignored, as a compiled cell's Python warns only while it is traced anyway
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return compiled_call()
    except Exception as exc:
        if not _compiler_failed(exc):  # the cell's own error (shapes, memory): the user must see it
            raise
        _EAGER.add(key)
        if isinstance(exc, torch._dynamo.exc.Unsupported):
            what, reason = "be traced whole", _first_line(exc)
        else:
            inner = getattr(exc, "inner_exception", exc)
            what, reason = "be compiled", f"{type(inner).__name__}: {_first_line(inner)}"
        warnings.warn(f"{type(cell).__name__} cannot {what} on {key[1]} ({reason}); it runs eagerly there, its gate "
                      "arithmetic not fused.", stacklevel=2)
        return cell(x, state, memory, lower)

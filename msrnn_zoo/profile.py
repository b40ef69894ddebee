"""Counting what a model costs: floating-point operations and the memory a training step keeps, exactly."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Callable, Iterator

import torch
from torch.utils.flop_counter import FlopCounterMode

from .network import Forecaster
from .zero_states import unmark_zero


def flops_per_frame(model: Forecaster, height: int, width: int, batch: int = 1) -> int:
    """FLOPs (2 per multiply-add) of one recurrent step -- one frame in, one forecast out -- per sample.

    Counted on a twin of the model on the ``meta`` device, which has shapes but no data: nothing is computed or
    allocated, so a radar-sized frame costs no more than a small one. A step after the first: the first one leaves
    out its zero states (:func:`~msrnn_zoo.cell.mark_zero`), so the state here is unmarked and convolved as every
    later step's is.
    """
    return sum(flops_per_frame_by_op(model, height, width, batch).values())


def flops_per_frame_by_op(model: Forecaster, height: int, width: int, batch: int = 1) -> dict[str, int]:
    """:func:`flops_per_frame` split by operation (``"convolution"``, ``"bmm"``, ...), largest first.

    Says where a cell's work is: PrecipLSTM's convolutions alone are more than twice PredRNN's, whatever its
    attention costs.
    """
    with torch.device("meta"):
        twin = type(model)(model.config, model.cell_class)
    twin.absorb_embedding = model.absorb_embedding
    twin.check_step_inputs = False  # its checks read values, which the meta device does not have
    state = twin.init_state(batch, height, width).map(unmark_zero)  # also refuses a size the model cannot run
    frame = torch.zeros(batch, model.config.in_channels, height, width, device="meta")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        twin.step(frame, state)
    counts = {str(op).removeprefix("aten."): int(n // batch) for op, n in counter.get_flop_counts()["Global"].items()}
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def saved_bytes(fn: Callable[[], object]) -> int:
    """Bytes of the tensors autograd keeps for the backward pass while ``fn`` runs (each storage once).

    Exact and independent of the device and the machine's load. Tensors kept inside a non-reentrant
    ``torch.utils.checkpoint`` region are not seen (the checkpoint's own hooks take over there); measure
    checkpointed runs with :func:`retained_bytes`.
    """
    return sum(saved_bytes_by_op(fn).values())


def saved_bytes_by_op(fn: Callable[[], object]) -> dict[str, int]:
    """:func:`saved_bytes`, split by the autograd node that made each kept tensor (``"CatBackward0"``, ...).

    Tells what a step keeps and why, e.g. a concatenated copy of tensors that are kept anyway (a cell's
    test asserts that ``"CatBackward0"`` is absent). A storage is booked once, on the first tensor seen
    using it; tensors without autograd history (inputs, parameters) are booked as ``"leaf"``.
    """
    seen: set[tuple[int, torch.dtype]] = set()
    totals: dict[str, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        key = (tensor.untyped_storage().data_ptr(), tensor.dtype)
        if key not in seen:
            seen.add(key)
            node = "leaf" if tensor.grad_fn is None else type(tensor.grad_fn).__name__
            totals[node] = totals.get(node, 0) + tensor.untyped_storage().nbytes()
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn()
    del result
    return totals


def retained_bytes(fn: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Bytes that ``fn`` allocates and still holds through what it returns: what waits for the backward pass.

    Unlike :func:`saved_bytes` this sees everything a checkpointed step keeps (its inputs, the states between
    steps) and the output itself. On a GPU it is the change of ``torch.cuda.memory_allocated``; on the CPU the
    sum of the PyTorch profiler's allocation records (each allocation is booked on the operator that made it,
    each free on a ``[memory]`` event), which is exact for tensors PyTorch allocates.
    """
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        result = fn()
        torch.cuda.synchronize()
        held = torch.cuda.memory_allocated() - before
        del result
        return held
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    del result
    return sum(event.self_cpu_memory_usage for event in prof.events())


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """The profiler's C++ side (Kineto) writes a line to the process's stderr at every start and stop, and an
    error when it finds no GPU; a count that runs in a command's output must not print them. Only a variable set
    before torch is imported quiets Kineto itself, so the file descriptor is pointed at the null device meanwhile
    (what Python writes to stderr in between is lost too)."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to protect
        yield
        return
    sys.stderr.flush()
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def training_clip(model: Forecaster, batch: int, frames: int, height: int,
                  width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A clip of zeros and an all-truth teacher mask on the model's device: what the memory counts run on."""
    param = model.embed.weight
    clips = torch.zeros(batch, frames, model.config.in_channels, height, width, device=param.device,
                        dtype=param.dtype)
    return clips, torch.ones(batch, frames - 1, device=param.device)


def training_memory(model: Forecaster, batch: int, frames: int, height: int, width: int) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one training step (each storage once).

    This is what a multi-scale stack saves, it is exact, and it does not depend on the device or the
    machine's load; the step runs with the truth as every input (the schedule does not change the count).
    """
    clips, teacher = training_clip(model, batch, frames, height, width)
    return saved_bytes(lambda: model.forward_train(clips, teacher))


def flops_unit(count: float) -> tuple[float, str]:
    """The SI multiple to show ``count`` FLOPs in (``(1e9, "G")``): the paper's models in G, a model small enough
    to try on a CPU in M or k, where "0.001 G" told nothing."""
    return next(((scale, unit) for scale, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")) if count >= scale),
                (1.0, ""))

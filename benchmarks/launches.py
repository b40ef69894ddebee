"""Operations per training step, ours beside the original: what a launch-bound GPU pays for, counted on the CPU.

    ORIG=/path/to/msrnn-original python benchmarks/launches.py [--tools ../shared/tools] [--size 16] [--hidden 8]
        [--in-frames 5] [--out-frames 5] [--batch 2] [--frames-loss-only] [--flops] [--traffic]
        [--convolve-zero-states] [--precision fp32|bf16|fp16 [--recorded]] [--compile-cells] [--json] [models ...]

On a GPU at the paper's sizes the eager training step waits on kernel launches (issue 7), so its time follows the
number of kernels more than their sizes. Every ATen operation that computes something launches at least one
kernel there, so counting them (forward and backward of the loss of ``gpu_bench.py``'s step, the optimizer left
out: both use Adam) compares the eager paths exactly, on any machine, without timing noise. Views and bare
allocations are not counted: they launch nothing. The counts do not depend on the sizes, except PrecipLSTM's: its
reference attention runs per sample and per strip of 16 pixels of a row.

``gpu_bench.py``'s step of the original takes the frame MSE only: PredRNN-V2's decoupling loss is computed in its
forward but not differentiated. Ours adds the cell's auxiliary loss, as training does; ``--frames-loss-only``
leaves it out too, to count the same work.

``--flops`` also counts the floating-point operations of the same step (``torch.utils.flop_counter``: the
convolutions and matrix products), what a step costs once it no longer waits on launches (a recorded clip).
``--traffic`` also counts what the other operations move through memory: the bytes each one reads and writes
(its tensor arguments and results), leaving out those on tensors of a parameter's shape (the accumulation of
weight gradients, which does not grow with the frames). Unfused, each element-wise operation is one pass over
memory, so ``GB / bandwidth`` bounds what fusing them (compiled cells) can save of a recorded step.
``--convolve-zero-states`` counts ours as it was before the first step left out the zero states.
``--precision bf16`` (or ``fp16``) counts ours under autocast on the CPU, as ``--precision`` trains: the casts
between float32 and half precision are operations too, each a kernel on a GPU. The original is counted in fp32,
as ``gpu_bench.py`` runs it. ``--recorded`` counts it as a clip recording runs (fast path ``clip-graph``, the
fastest path on a GPU): with autocast's cache of cast weights off, which a recording must not use.

``--compile-cells`` counts only the casts (``aten::_to_copy``) of ours with compiled cells, in the graphs Dynamo and
AOTAutograd hand inductor (traced with the ``aot_eager`` backend, nothing fused; counted by the profiler, since a
dispatch mode would stop Dynamo), and again with every cell handed its float32 weights, as before the compiled
cells read the clip's half-precision copies: under ``--precision bf16`` the difference is the weight casts that
are gone, each a kernel of its own on a GPU unless inductor fuses it with another.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import msrnn_zoo
from msrnn_zoo.precision import PRECISIONS

NOT_LAUNCHED = {"empty", "empty_strided", "new_empty", "new_empty_strided", "detach", "alias", "lift_fresh"}


def launched(func: Any) -> str | None:
    """The name of the ATen operation ``func`` if it computes something (launches a kernel), else ``None``."""
    name = func.__name__.split(".")[0]
    return None if func.is_view or name in NOT_LAUNCHED else name


class OperationCount(TorchDispatchMode):
    """Counts the ATen operations that reach a backend, by name, leaving out views and bare allocations."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = launched(func)
        out = func(*args, **(kwargs or {}))
        if name is not None:
            self.counts[name] += kernels(name, args, out)
        return out


def kernels(name: str, args: Any, out: Any) -> int:
    """Kernels an operation launches on a GPU: one, but a concatenation whose parts are not all in its result's dtype
    copies each part into its span (PyTorch's ``cat`` kernels concatenate in one pass only parts of one dtype)."""
    if name == "cat" and isinstance(out, torch.Tensor):
        parts = [t for t in args[0] if t.numel()]
        if any(t.dtype != out.dtype for t in parts):
            return len(parts)
    return 1


COMPUTE = ("convolution", "mm", "bmm", "addmm", "baddbmm", "scaled_dot_product", "flex_attention")
"""Operations whose time is their arithmetic (counted by ``--flops``), not their memory traffic."""


WRITE_ONLY = {"copy_", "fill_", "zero_"}
"""In-place operations that overwrite their first argument without reading it."""


class Traffic(TorchDispatchMode):
    """Bytes read and written by the operations that are not products, activations only."""

    def __init__(self, parameter_shapes: set[tuple[int, ...]]) -> None:
        super().__init__()
        self.parameter_shapes = parameter_shapes
        self.bytes = 0
        self.by_operation: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        name = launched(func)
        if name is None or any(c in name for c in COMPUTE):
            return out
        if isinstance(out, torch.Tensor) and tuple(out.shape) in self.parameter_shapes:
            return out
        # an operation that only writes its first argument (a copy into a span, a fill) reads the others alone, and
        # one given ``out=`` writes that (it is the result, counted once)
        read = args[1:] if name in WRITE_ONLY else args
        given = {k: v for k, v in (kwargs or {}).items() if k != "out"}
        tensors = [t for t in torch.utils._pytree.tree_leaves((read, given, out)) if isinstance(t, torch.Tensor)]
        moved = sum(t.numel() * t.element_size() for t in tensors)
        self.bytes += moved
        self.by_operation[name] += moved
        return out


def traffic_gb(step: Any, model: torch.nn.Module) -> tuple[float, dict[str, float]]:
    """GB moved by ``step``'s operations other than products, in the layout a GPU runs (NCHW states), and the
    three operations that move the most."""
    counter = Traffic({tuple(p.shape) for p in model.parameters()})
    layout = getattr(model, "cpu_channels_last", None)
    if layout is not None:
        model.cpu_channels_last = False  # the CPU's own default would add its layout's copies
    try:
        with counter:
            step()
    finally:
        if layout is not None:
            model.cpu_channels_last = layout
    return counter.bytes / 1e9, {op: moved / 1e9 for op, moved in counter.by_operation.most_common(3)}


def count(step: Any) -> collections.Counter[str]:
    counter = OperationCount()
    with counter:
        step()
    return counter.counts


def casts(step: Any) -> int:
    """``aten::_to_copy`` calls of ``step``, counted by the profiler (which, unlike a dispatch mode, leaves
    Dynamo alone)."""
    from torch.profiler import profile

    with profile() as prof:
        step()
    return sum(e.name == "aten::_to_copy" for e in prof.events())


def compiled_casts(step: Any, model: msrnn_zoo.Forecaster) -> tuple[int, int]:
    """The casts of a step with compiled cells, traced for inductor (``aot_eager``), and with every cell handed its
    float32 weights instead of the clip's half-precision copies."""
    from msrnn_zoo import compiled_cells

    model.set_compile_cells(True)
    found = []
    with compiled_cells.backend("aot_eager"):
        for way in (contextlib.nullcontext, compiled_cells.weights_cast_per_call):
            with way():
                torch._dynamo.reset()
                step()  # traces
                found.append(casts(step))
    model.set_compile_cells(False)
    return found[0], found[1]


def gflop(step: Any) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*")
    parser.add_argument("--tools", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "tools"))
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=8)
    parser.add_argument("--in-frames", type=int, default=5)
    parser.add_argument("--out-frames", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames-loss-only", action="store_true", help="ours without the auxiliary loss, as the "
                        "original's step of gpu_bench.py")
    parser.add_argument("--flops", action="store_true", help="also count floating-point operations (GFLOP)")
    parser.add_argument("--traffic", action="store_true", help="also count the GB the operations other than products "
                        "read and write (activations; what fusing them can save)")
    parser.add_argument("--convolve-zero-states", action="store_true", help="ours with skip_zero_states = False: the "
                        "first step also convolves the zero states (what leaving them out saves)")
    parser.add_argument("--precision", choices=sorted(PRECISIONS), default="fp32",
                        help="ours under this autocast precision (the original stays fp32)")
    parser.add_argument("--recorded", action="store_true", help="with --precision bf16|fp16: autocast without its "
                        "cache of cast weights, as a clip recording (fast path clip-graph) runs it")
    parser.add_argument("--compile-cells", action="store_true", help="count only the casts of ours with compiled "
                        "cells (traced, unfused), with the clip's weight copies and without")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.compile_cells and (args.flops or args.traffic or args.convolve_zero_states):
        parser.error("--compile-cells counts only the casts of compiled cells; run --flops, --traffic or "
                     "--convolve-zero-states without it.")
    if args.recorded and PRECISIONS[args.precision] is None:
        parser.error("--recorded counts autocast's casts as a recording makes them; give it --precision bf16 or fp16.")
    original = None
    if "ORIG" in os.environ:
        sys.path.insert(0, str(Path(args.tools).resolve()))
        import orig_env  # the shared tools' loader of the original code

        original = orig_env
    t = args.in_frames + args.out_frames
    dtype = PRECISIONS[args.precision]

    def ours_autocast() -> contextlib.AbstractContextManager[Any]:
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cpu", dtype=dtype, cache_enabled=not args.recorded)

    names = args.models or [n for n in msrnn_zoo.list_models() if n.endswith(("convlstm", "predrnn"))]
    print(f"# {args.size}x{args.size}, hidden {args.hidden}, {args.in_frames}->{args.out_frames} frames, batch "
          f"{args.batch}; operations of forward + backward", flush=True)
    for name in names:
        torch.manual_seed(0)
        frames = torch.rand(args.batch, t, 1, args.size, args.size)
        model = msrnn_zoo.create(name, hidden_channels=args.hidden).train()
        model.skip_zero_states = not args.convolve_zero_states

        def ours(model: msrnn_zoo.Forecaster = model, frames: torch.Tensor = frames) -> None:
            with ours_autocast():
                prediction, aux = model.forward_train(frames, torch.ones(args.batch, t - 1))
            loss = F.mse_loss(prediction.float(), frames[:, 1:])
            if aux is not None and not args.frames_loss_only:
                loss = loss + aux
            loss.backward()

        if args.compile_cells:
            with_copies, without = compiled_casts(ours, model)
            row = {"model": name, "compiled_casts": with_copies, "compiled_casts_float32_weights": without}
            print(json.dumps(row) if args.json else f"{name:16s} casts in compiled cells {with_copies:6d} (handed "
                  f"float32 weights: {without})", flush=True)
            continue
        row: dict[str, Any] = {"model": name, "ours": sum(count(ours).values())}
        if args.flops:
            row["ours_gflop"] = gflop(ours)
        if args.traffic:
            row["ours_traffic_gb"], row["ours_traffic_top"] = traffic_gb(ours, model)
        if original is not None:
            try:
                theirs = original.build(name, args.size, args.hidden, args.in_frames, args.out_frames, args.batch)
                theirs.train()
            except Exception as exc:  # PrecipLSTM's original needs its CUDA extension
                row["original_error"] = f"{type(exc).__name__}: {str(exc)[:120]}"
            else:
                x = frames.transpose(0, 1).contiguous()

                def orig(theirs: Any = theirs, x: torch.Tensor = x) -> None:
                    prediction, _ = theirs([x, 1.0, 1], mode="train")
                    F.mse_loss(prediction, x[1:]).backward()

                row["original"] = sum(count(orig).values())
                row["ratio"] = row["ours"] / row["original"]
                if args.flops:
                    row["original_gflop"] = gflop(orig)
                if args.traffic:
                    row["original_traffic_gb"], row["original_traffic_top"] = traffic_gb(orig, theirs)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            theirs_text = (f" original {row['original']:6d}  ours/original {row['ratio']:.2f}" if "original" in row
                           else f" ({row.get('original_error', 'no ORIG set')})")
            if "original_gflop" in row:
                theirs_text += (f" | GFLOP ours {row['ours_gflop']:.1f} original {row['original_gflop']:.1f} "
                                f"ours/original {row['ours_gflop'] / row['original_gflop']:.2f}")
            elif "ours_gflop" in row:
                theirs_text += f" | GFLOP ours {row['ours_gflop']:.1f}"
            for who in ("ours", "original"):
                if f"{who}_traffic_gb" in row:
                    top = ", ".join(f"{op} {gb:.3g}" for op, gb in row[f"{who}_traffic_top"].items())
                    theirs_text += f" | element-wise GB {who} {row[f'{who}_traffic_gb']:.3g} ({top})"
            print(f"{name:16s} ours {row['ours']:6d}{theirs_text}", flush=True)


if __name__ == "__main__":
    main()

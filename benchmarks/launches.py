"""Operations per training step, ours beside the original: what a launch-bound GPU pays for, counted on the CPU.

    ORIG=/path/to/msrnn-original python benchmarks/launches.py [--tools ../shared/tools] [--size 16] [--hidden 8]
        [--in-frames 5] [--out-frames 5] [--batch 2] [--frames-loss-only] [--flops] [--convolve-zero-states]
        [--json] [models ...]

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
``--convolve-zero-states`` counts ours as it was before the first step left out the zero states.
"""

from __future__ import annotations

import argparse
import collections
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

NOT_LAUNCHED = {"empty", "empty_strided", "new_empty", "new_empty_strided", "detach", "alias", "lift_fresh"}


class OperationCount(TorchDispatchMode):
    """Counts the ATen operations that reach a backend, by name, leaving out views and bare allocations."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func.__name__.split(".")[0]
        if not func.is_view and name not in NOT_LAUNCHED:
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


def count(step: Any) -> collections.Counter[str]:
    counter = OperationCount()
    with counter:
        step()
    return counter.counts


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
    parser.add_argument("--convolve-zero-states", action="store_true", help="ours with skip_zero_states = False: the "
                        "first step also convolves the zero states (what leaving them out saves)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    original = None
    if "ORIG" in os.environ:
        sys.path.insert(0, str(Path(args.tools).resolve()))
        import orig_env  # the shared tools' loader of the original code

        original = orig_env
    t = args.in_frames + args.out_frames
    names = args.models or [n for n in msrnn_zoo.list_models() if n.endswith(("convlstm", "predrnn"))]
    print(f"# {args.size}x{args.size}, hidden {args.hidden}, {args.in_frames}->{args.out_frames} frames, batch "
          f"{args.batch}; operations of forward + backward", flush=True)
    for name in names:
        torch.manual_seed(0)
        frames = torch.rand(args.batch, t, 1, args.size, args.size)
        model = msrnn_zoo.create(name, hidden_channels=args.hidden).train()
        model.skip_zero_states = not args.convolve_zero_states

        def ours(model: msrnn_zoo.Forecaster = model, frames: torch.Tensor = frames) -> None:
            prediction, aux = model.forward_train(frames, torch.ones(args.batch, t - 1))
            loss = F.mse_loss(prediction, frames[:, 1:])
            if aux is not None and not args.frames_loss_only:
                loss = loss + aux
            loss.backward()

        row: dict[str, Any] = {"model": name, "ours": sum(count(ours).values())}
        if args.flops:
            row["ours_gflop"] = gflop(ours)
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
            print(f"{name:16s} ours {row['ours']:6d}{theirs_text}", flush=True)


if __name__ == "__main__":
    main()

"""One training step of ms-preciplstm at the paper's scale of a small run: does it fit on a CPU box?

    python plugins/msrnn-preciplstm/bench_train_step.py        # 64x64, hidden 64, batch 2, 10 -> 10

Runs ``forward_train`` over a 20-frame clip (19 steps, scheduled-sampling mask), the MSE loss, the
backward and one Adam step, then prints the process's peak resident memory (``ru_maxrss``) and the
seconds of each phase. The local attention keeps only its input and two numbers per pixel for the
backward (it recomputes its weights, (B, k², H, W) per layer and step, about 28 MiB at 64x64 with k = 30
and batch 2), so what the step keeps is mostly the four memories' gates.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import torch

import msrnn_zoo
from msrnn_zoo.sampling import scheduled


def _rss_peak_gib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ms-preciplstm")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--in-frames", type=int, default=10)
    parser.add_argument("--out-frames", type=int, default=10)
    parser.add_argument("--window", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (0: torch's default); 1 is steadier on a busy machine")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = msrnn_zoo.create(args.model, hidden_channels=args.hidden, window=args.window)
    frames_total = args.in_frames + args.out_frames
    frames = torch.rand(args.batch, frames_total, 1, args.size, args.size)
    teacher = scheduled(args.batch, frames_total, args.in_frames, 0.5, torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.model}: {params / 1e6:.2f} M parameters, {args.size}x{args.size}, hidden {args.hidden}, "
          f"batch {args.batch}, {args.in_frames} -> {args.out_frames} frames, window {args.window}, "
          f"{torch.get_num_threads()} threads")
    print(f"peak RSS before the step: {_rss_peak_gib():.2f} GiB")

    start = time.perf_counter()
    prediction, aux = model.forward_train(frames, teacher)
    loss = torch.nn.functional.mse_loss(prediction, frames[:, 1:])
    if aux is not None:
        loss = loss + aux
    forward = time.perf_counter()
    print(f"forward:  {forward - start:7.1f} s   peak RSS {_rss_peak_gib():.2f} GiB")
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    done = time.perf_counter()
    print(f"backward + Adam step: {done - forward:7.1f} s   peak RSS {_rss_peak_gib():.2f} GiB")
    print(f"one training step: {done - start:.1f} s, peak RSS {_rss_peak_gib():.2f} GiB, loss {loss.item():.4f}")


if __name__ == "__main__":
    main()

"""Peak memory and time of one forward + backward of the local attention: ours vs the unfold version.

    python plugins/msrnn-preciplstm/bench_local_attention.py            # B=2, C=64, 64x64, k=30
    python plugins/msrnn-preciplstm/bench_local_attention.py --size 32 --device cuda

Each implementation runs in a fresh subprocess, so one's memory cannot hide the other's. On CUDA the
peak is ``torch.cuda.max_memory_allocated`` above what the inputs already held; on the CPU it is the
growth of the process's peak resident set (``ru_maxrss``) during the call, which counts every tensor
the allocator really touched.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def _rss_peak_bytes() -> int:
    # ru_maxrss is in KiB on Linux (bytes on macOS)
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def measure(impl: str, batch: int, channels: int, size: int, window: int, device: str, repeat: int) -> dict:
    from msrnn_preciplstm.local_attention import local_attention, local_attention_flex, local_attention_unfold

    fn = {"ours": local_attention, "unfold": local_attention_unfold, "flex": local_attention_flex}[impl]
    dev = torch.device(device)
    torch.manual_seed(0)
    q, k, v = (torch.randn(batch, channels, size, size, device=dev, requires_grad=True) for _ in range(3))
    grad = torch.randn(batch, channels, size, size, device=dev)
    times = []
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_peak_bytes()
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(q, k, v, window)
        out.backward(grad)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        del out
        q.grad = k.grad = v.grad = None
    peak = (torch.cuda.max_memory_allocated() if dev.type == "cuda" else _rss_peak_bytes()) - base
    return {"impl": impl, "seconds": min(times), "peak_mib": peak / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--window", type=int, default=30)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeat", type=int, default=1, help="runs per implementation; the fastest is shown")
    parser.add_argument("--impl", choices=["ours", "unfold", "flex", "both", "all"], default="both",
                        help="both: ours and unfold; all: also flex (FlexAttention, GPU only: no CPU backward)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (0: torch's default); 1 is steadier on a busy machine")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure(args.impl, args.batch, args.channels, args.size, args.window, args.device,
                                 args.repeat)))
        return
    b, c, s, k = args.batch, args.channels, args.size, args.window
    print(f"local attention, forward + backward: B={b}, C={c}, {s}x{s}, window {k}, {args.device}, "
          f"{torch.get_num_threads()} threads")
    print(f"  size of the attention weights (B, k², H, W): {b * k * k * s * s * 4 / 2**20:9.1f} MiB")
    print(f"  size of one unfolded map (B, C, k², H, W):   {b * c * k * k * s * s * 4 / 2**20:9.1f} MiB")
    impls = {"both": ["ours", "unfold"], "all": ["ours", "unfold", "flex"]}.get(args.impl, [args.impl])
    for impl in impls:
        cmd = [sys.executable, __file__, "--child", "--impl", impl, "--batch", str(b), "--channels", str(c),
               "--size", str(s), "--window", str(k), "--device", args.device, "--repeat", str(args.repeat),
               "--threads", str(args.threads)]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            print(f"  {impl:>6}: failed (exit {run.returncode}): {run.stderr.strip().splitlines()[-1:]}")
            continue
        result = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"  {impl:>6}: {result['seconds']:8.2f} s   peak {result['peak_mib']:9.1f} MiB")


if __name__ == "__main__":
    main()

"""Peak memory and time of one forward + backward of the local attention: ours vs the unfold version.

    python plugins/msrnn-preciplstm/bench_local_attention.py            # B=2, C=64, 64x64, k=30
    python plugins/msrnn-preciplstm/bench_local_attention.py --size 32 --device cuda
    python plugins/msrnn-preciplstm/bench_local_attention.py --batch 4 --count-ops   # operations, each way

``ours`` is the pure-PyTorch attention as the device runs it: one sample at a time on the CPU, the samples
stacked into one tall image on GPUs; ``per-sample`` and ``stacked`` force either way, to compare them.
``--count-ops`` counts the PyTorch operations of one forward + backward of each way instead (where a step
waits on kernel launches, as an eager step on a GPU does, that count is what its time follows).

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
    import importlib

    attention = importlib.import_module("msrnn_preciplstm.local_attention")
    attention.STACK_SAMPLES = {"per-sample": False, "stacked": True}.get(impl)
    fn = {"unfold": attention.local_attention_unfold, "flex": attention.local_attention_flex}.get(
        impl, attention.local_attention)
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


def count_ops(batch: int, channels: int, size: int, window: int) -> dict[str, int]:
    """PyTorch operations of one forward + backward of the pure-PyTorch attention, each way, on the CPU."""
    import importlib

    from torch.utils._python_dispatch import TorchDispatchMode

    attention = importlib.import_module("msrnn_preciplstm.local_attention")

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.calls += 1
            return func(*args, **(kwargs or {}))

    counts = {}
    for name, stack in (("per-sample", False), ("stacked", True)):
        attention.STACK_SAMPLES = stack
        q, k, v = (torch.randn(batch, channels, size, size, requires_grad=True) for _ in range(3))
        with Count() as count:
            out = attention.local_attention(q, k, v, window)
            torch.autograd.grad(out, (q, k, v), torch.randn_like(out))
        counts[name] = count.calls
    attention.STACK_SAMPLES = None
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--window", type=int, default=30)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeat", type=int, default=1, help="runs per implementation; the fastest is shown")
    parser.add_argument("--impl", choices=["ours", "per-sample", "stacked", "unfold", "flex", "both", "all"],
                        default="both", help="both: ours and unfold; all: also flex (FlexAttention, GPU only: no CPU "
                        "backward) and, on a GPU, ours one sample at a time")
    parser.add_argument("--count-ops", action="store_true",
                        help="count the operations of ours, per sample and stacked, instead of timing")
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
    if args.count_ops:
        counts = count_ops(b, c, s, k)
        print(f"local attention, forward + backward: B={b}, C={c}, {s}x{s}, window {k}: operations "
              + ", ".join(f"{name} {n}" for name, n in counts.items()))
        return
    print(f"local attention, forward + backward: B={b}, C={c}, {s}x{s}, window {k}, {args.device}, "
          f"{torch.get_num_threads()} threads")
    print(f"  size of the attention weights (B, k², H, W): {b * k * k * s * s * 4 / 2**20:9.1f} MiB")
    print(f"  size of one unfolded map (B, C, k², H, W):   {b * c * k * k * s * s * 4 / 2**20:9.1f} MiB")
    everything = ["ours", "per-sample", "unfold", "flex"] if args.device.startswith("cuda") else ["ours", "unfold"]
    impls = {"both": ["ours", "unfold"], "all": everything}.get(args.impl, [args.impl])
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

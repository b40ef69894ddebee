"""How long ``prepare`` spends per raw file, and what that means for the full 2006-2017 archive.

Writes synthetic files in the real formats (RY plain and bzip2, as DWD serves them; 480x480 MS-RNN PNGs)
to a temporary folder, then times the decode ``prepare`` runs (read, scale, resize) over all of them with
``--workers`` threads, after one warm-up file so wradlib's import is not counted. Synthetic rain covers
more of the grid than real rain usually does, so RY times are on the slow side.

    .venv/bin/python plugins/msrnn-germany/bench_prepare.py --files 24 --threads 1 --workers 1
    .venv/bin/python plugins/msrnn-germany/bench_prepare.py --files 24 --threads 1 --workers 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))

from germany_files import rain_field, write_pngs, write_ry
from msrnn_germany.clips import archive_clips
from msrnn_germany.prepare import decoded, png_frame, radolan_frame
from msrnn_germany.source import PAPER_YEARS, RawFile


def per_file(decode, files: list[RawFile], workers: int) -> float:
    """Wall seconds per file of decoding ``files[1:]`` (``files[0]`` warms up imports)."""
    decode(files[0])
    start = time.perf_counter()
    for _ in decoded(decode, files[1:], workers):
        pass
    return (time.perf_counter() - start) / (len(files) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20, help="files of each kind to time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (resizing)")
    parser.add_argument("--workers", type=int, default=1, help="files decoded at once (prepare uses min(8, cores))")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    total = sum(archive_clips(years)[0] for years in PAPER_YEARS.values())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = dt.datetime(2016, 6, 1)
        results = {}
        for kind in ("", "bz2"):
            files = []
            for i in range(args.files):
                time_i = start + dt.timedelta(minutes=5 * i)
                files.append(RawFile(write_ry(folder / (kind or "plain"), time_i, rain_field(i), compress=kind),
                                     time_i))
            results[f"RY {kind or 'plain'}"] = per_file(radolan_frame, files, args.workers)
        rng = np.random.default_rng(0)
        pngs = write_pngs(folder / "png", [np.clip(rng.normal(60, 40, (480, 480)), 0, 255).astype(np.uint8)
                                           for _ in range(args.files)])
        results["PNG 480x480"] = per_file(png_frame, [RawFile(p) for p in pngs], args.workers)
    print(f"decode wall time per file ({args.files - 1} files, {args.workers} worker(s), {args.threads} torch "
          f"thread(s)); full 2006-2017 archive = {total:,} files")
    for name, seconds in results.items():
        print(f"  {name:12s} {seconds * 1000:7.1f} ms/file  -> {seconds * total / 3600:6.1f} h for the archive")


if __name__ == "__main__":
    main()

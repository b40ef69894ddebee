"""Max |difference| between the original implementation's outputs and ours, for every fixture in a folder.

    python benchmarks/parity.py ../shared/parity      # fixtures made by ../shared/tools/reference_fixtures.py

Each fixture holds the original's weights, an input clip and its test-mode output; see
``msrnn_zoo.testing.parity_error``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from msrnn_zoo.testing import load_fixture, parity_error


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/parity")
    paths = sorted(folder.glob("*.safetensors"))
    if not paths:
        raise SystemExit(f"No *.safetensors fixtures in {folder}.")
    torch.set_num_threads(1)
    print("| model | max abs diff | size | hidden |\n|---|---:|---|---:|")
    for path in paths:
        _, meta = load_fixture(path)
        error = parity_error(path)
        print(f"| {meta['model']} | {error:.1e} | {meta['height']}x{meta['width']} | {meta['hidden']} |", flush=True)


if __name__ == "__main__":
    main()

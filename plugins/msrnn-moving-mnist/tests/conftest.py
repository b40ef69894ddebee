"""Fixtures that write small files in the real Moving MNIST formats and serve them over HTTP."""

from __future__ import annotations

import functools
import gzip
import http.server
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

try:  # the core may not be installed while both are being developed: fall back to the checkout
    import msrnn_zoo.data  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))


def _write_idx(path: Path, images: np.ndarray, magic: int = 2051) -> Path:
    header = struct.pack(">IIII", magic, *images.shape)
    payload = header + np.ascontiguousarray(images, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


@pytest.fixture
def digits() -> np.ndarray:
    """Ten random 28x28 'digits': a filled blob each, so every frame they are in is non-zero."""
    rng = np.random.default_rng(123)
    images = np.zeros((10, 28, 28), dtype=np.uint8)
    images[:, 4:24, 6:22] = rng.integers(64, 256, size=(10, 20, 16), dtype=np.uint8)
    return images


@pytest.fixture
def write_idx() -> Callable[..., Path]:
    """``write_idx(path, images, magic=2051)``: an IDX3 file, gzipped when the name ends in .gz."""
    return _write_idx


@pytest.fixture
def sequences() -> np.ndarray:
    """A small stand-in for mnist_test_seq.npy: (20, 5, 64, 64) uint8, sequence n filled with n+1."""
    array = np.zeros((20, 5, 64, 64), dtype=np.uint8)
    for n in range(5):
        array[:, n, 10:20, 10:20] = n + 1
        array[:, n, 0, 0] = np.arange(20)  # frame number, to check the time axis survives
    return array


@pytest.fixture
def data_root(tmp_path: Path, digits: np.ndarray, sequences: np.ndarray) -> Path:
    """A data root holding both files, in the layout the plugin expects."""
    folder = tmp_path / "data" / "moving-mnist"
    _write_idx(folder / "train-images-idx3-ubyte.gz", digits)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "mnist_test_seq.npy", sequences)
    return tmp_path / "data"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``(base_url, folder)``: an HTTP server on 127.0.0.1 serving ``folder`` for the duration of a test."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

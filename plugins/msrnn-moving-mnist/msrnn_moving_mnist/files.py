"""The public Moving MNIST files: where they come from, where they live, and whether they are intact.

Every file is checked before use, so a truncated download or a file from the wrong mirror fails at
once with its path and the command that fetches a good copy, instead of as a shape error mid-training.
"""

from __future__ import annotations

import functools
import gzip
import os
import shlex
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msrnn_zoo.data import default_root
from msrnn_zoo.download import download_file
from msrnn_zoo.validation import with_cli_message

URL_ENV = "MSRNN_ZOO_MOVING_MNIST_URL"
"""Base URL holding the files under their own names: redirects every download to a mirror (or a test)."""
DIRNAME = "moving-mnist"
IDX_IMAGES_MAGIC = 2051
SEQUENCE_FRAMES = 20
SEQUENCE_SIZE = 64


@dataclass(frozen=True)
class PublicFile:
    """One file a source needs: its name on disk, its public URL, and the source that fetches it."""

    name: str
    url: str
    source: str
    aliases: tuple[str, ...] = ()
    """Other names accepted on disk, e.g. the decompressed MNIST file."""

    @property
    def fetch_command(self) -> str:
        return f"msrnn-zoo download moving-mnist --source {self.source}"

    def fetch_command_for(self, root: str | Path) -> str:
        """The command that fetches the file into ``root``: without ``--root`` it would go to the default data
        root, and the command that needed it in ``root`` would fail again."""
        if Path(root).expanduser().resolve() == default_root().expanduser().resolve():
            return self.fetch_command
        return f"{self.fetch_command} --root {shlex.quote(str(root))}"


STANDARD_FILE = PublicFile(
    name="mnist_test_seq.npy",
    url="https://www.cs.toronto.edu/~nitish/unsupervised_video/mnist_test_seq.npy",
    source="standard",
)
MNIST_FILE = PublicFile(
    name="train-images-idx3-ubyte.gz",
    url="https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
    source="generated",
    aliases=("train-images-idx3-ubyte",),
)


FILES = {file.source: file for file in (STANDARD_FILE, MNIST_FILE)}
"""The file each downloading source needs; ``synthetic`` needs none."""


def data_dir(root: str | Path) -> Path:
    """The plugin's own folder under the zoo's data root."""
    return Path(root) / DIRNAME


def url_for(file: PublicFile) -> str:
    """The file's URL, under ``$MSRNN_ZOO_MOVING_MNIST_URL`` when set (mirrors, offline tests)."""
    base = os.environ.get(URL_ENV, "").strip()
    return f"{base.rstrip('/')}/{file.name}" if base else file.url


def locate(file: PublicFile, root: str | Path, download: bool = False) -> Path:
    """Path of the file on disk, downloading it first when asked and it is missing."""
    folder = data_dir(root)
    for name in (*file.aliases, file.name):  # a decompressed copy is preferred: it reads faster
        if (folder / name).is_file():
            return folder / name
    path = folder / file.name
    if not download:
        raise FileNotFoundError(
            f"Moving MNIST needs {path}, which is missing. Fetch it with `{file.fetch_command_for(root)}` "
            f"(or pass download=True), or place the file there by hand from {url_for(file)}."
        )
    url = url_for(file)
    try:
        return download_file(url, path)
    except (NotADirectoryError, IsADirectoryError):  # the data root is a file, or a folder has the file's name:
        raise  # each says so itself; a mirror would not help
    except PermissionError as exc:  # (network errors come as plain OSError): the folder, not the mirror
        said = (f"Cannot save {file.name} in {folder} ({exc.strerror}); give a data root you can write to ({{}}, or "
                "$MSRNN_ZOO_DATA).")  # (prepare_dataset and load_dataset reach it from Python, the CLI with --root)
        raise with_cli_message(PermissionError(said.format("root=")), said.format("--root")) from exc
    except OSError as exc:
        raise OSError(
            f"{exc} Or set {URL_ENV} to the base URL of a mirror that serves {file.name}."
        ) from exc


def fetch(source: str, root: str | Path) -> Path | None:
    """Make sure the file a source needs is on disk and intact, downloading it if missing.

    Unlike the factory it involves no split, so it also works for ``standard``, which has only a test split.
    ``None`` for ``synthetic``. ``msrnn-zoo download`` does not call it: it loads each split with
    ``download=True`` and skips the split a source lacks.
    """
    if source == "synthetic":
        return None
    if source not in FILES:
        known = ", ".join(("synthetic", *FILES))
        raise ValueError(f"Unknown source {source!r} for moving-mnist; expected one of {known}.")
    path = locate(FILES[source], root, download=True)
    if source == "standard":
        open_test_sequences(path)
    else:
        read_idx_images(path)
    return path


def _corrupt(path: Path, file: PublicFile, problem: str) -> ValueError:
    return ValueError(
        f"{path} is not a valid {file.name}: {problem}. Delete it and run "
        f"`{file.fetch_command_for(path.parent.parent) if path.parent.name == DIRNAME else file.fetch_command}` "
        "to fetch a fresh copy."
    )


def read_idx_images(path: str | Path) -> np.ndarray:
    """MNIST images ``(N, rows, cols)`` uint8 from an IDX3 file, plain or gzipped; read once per process."""
    path = Path(path)
    stat = path.stat()
    return _read_idx_images_cached(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=2)
def _read_idx_images_cached(path_str: str, _mtime_ns: int, _size: int) -> np.ndarray:
    path = Path(path_str)
    try:
        raw = path.read_bytes()
        # By content, not name: a browser or proxy may have unpacked the download and kept the .gz name.
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        problem = f"it cannot be read ({exc}); the download was probably cut short"
        raise _corrupt(path, MNIST_FILE, problem) from exc
    if len(raw) < 16:
        raise _corrupt(path, MNIST_FILE, f"only {len(raw)} bytes, too short for an IDX header")
    magic, count, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != IDX_IMAGES_MAGIC:
        raise _corrupt(path, MNIST_FILE, f"magic number {magic}, expected {IDX_IMAGES_MAGIC} (IDX3 images)")
    if count == 0 or not 0 < rows <= SEQUENCE_SIZE or not 0 < cols <= SEQUENCE_SIZE:
        raise _corrupt(path, MNIST_FILE, f"header says {count} images of {rows}x{cols}, not 28x28 digits")
    expected = count * rows * cols
    if len(raw) - 16 != expected:
        raise _corrupt(path, MNIST_FILE, f"header promises {expected} pixel bytes, found {len(raw) - 16}")
    images = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(count, rows, cols)
    images.setflags(write=False)
    return images


def open_test_sequences(path: str | Path) -> np.ndarray:
    """The standard test set ``(20, N, 64, 64)`` uint8, memory-mapped: 800 MB stay on disk until read."""
    path = Path(path)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # truncated, not .npy, pickled objects: all mean "not the real file"
        raise _corrupt(path, STANDARD_FILE, f"numpy cannot read it ({exc})") from exc
    if not isinstance(array, np.ndarray):
        raise _corrupt(path, STANDARD_FILE, "it is not a single .npy array")
    expected = f"({SEQUENCE_FRAMES}, N, {SEQUENCE_SIZE}, {SEQUENCE_SIZE}) uint8"
    if array.dtype != np.uint8:
        raise _corrupt(path, STANDARD_FILE, f"dtype {array.dtype}, expected {expected}")
    shape = tuple(array.shape)
    frame = (SEQUENCE_SIZE, SEQUENCE_SIZE)
    if len(shape) != 4 or shape[0] != SEQUENCE_FRAMES or shape[2:] != frame or shape[1] == 0:
        raise _corrupt(path, STANDARD_FILE, f"shape {shape}, expected {expected}")
    return array

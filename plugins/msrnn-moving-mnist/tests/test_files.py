"""Real-format files: MNIST IDX images for 'generated', mnist_test_seq.npy for 'standard', and bad copies."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from msrnn_moving_mnist import files, make_moving_mnist
from msrnn_moving_mnist.dataset import BouncingDigits, StandardSequences

FETCH_STANDARD = "msrnn-zoo download moving-mnist --source standard"
FETCH_GENERATED = "msrnn-zoo download moving-mnist --source generated"


@pytest.mark.parametrize("name", ["train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"])
def test_idx_images_are_parsed(tmp_path: Path, write_idx, digits: np.ndarray, name: str) -> None:
    images = files.read_idx_images(write_idx(tmp_path / name, digits))
    assert images.shape == (10, 28, 28) and images.dtype == np.uint8
    assert np.array_equal(images, digits)


def test_unpacked_idx_under_the_gz_name_is_read(tmp_path: Path, write_idx, digits: np.ndarray) -> None:
    # a browser that unpacks the download but keeps its name: the plain IDX bytes under the .gz name
    path = tmp_path / "moving-mnist" / "train-images-idx3-ubyte.gz"
    path.parent.mkdir()
    path.write_bytes(write_idx(tmp_path / "train-images-idx3-ubyte", digits).read_bytes())
    assert np.array_equal(files.read_idx_images(path), digits)
    assert len(make_moving_mnist("train", "generated", tmp_path, num_clips=2)) == 2


def test_generated_clips_use_the_mnist_digits(data_root: Path, digits: np.ndarray) -> None:
    ds = make_moving_mnist("train", "generated", data_root, num_clips=4, seed=1)
    assert isinstance(ds, BouncingDigits) and len(ds) == 4
    clip = ds[2]
    assert clip.shape == (20, 1, 64, 64) and clip.dtype == torch.float32
    assert clip.min().item() >= 0.0 and clip.max().item() <= 1.0
    assert (clip.flatten(1).amax(dim=1) > 0).all()
    assert torch.equal(clip, make_moving_mnist("train", "generated", data_root, num_clips=4, seed=1)[2])
    # every pixel of the clip comes from some digit: values are drawn from the MNIST images' values
    values = set(np.unique(ds.clip(2)).tolist())
    assert values <= set(np.unique(digits).tolist())
    assert len(make_moving_mnist("train", "generated", data_root)) == 10000


def test_generated_holds_out_digits_for_evaluation() -> None:
    from msrnn_moving_mnist.dataset import _split_digits

    images = np.arange(60).reshape(60, 1, 1).astype(np.uint8)
    assert _split_digits(images, "train").ravel().tolist() == list(range(50))
    assert _split_digits(images, "val").ravel().tolist() == list(range(50, 60))
    assert _split_digits(images, "test").ravel().tolist() == list(range(50, 60))


def test_standard_sequences_are_memory_mapped(data_root: Path, sequences: np.ndarray) -> None:
    ds = make_moving_mnist("test", "standard", data_root)
    assert isinstance(ds, StandardSequences) and len(ds) == 5
    assert isinstance(ds.array, np.memmap)
    clip = ds[3]
    assert clip.shape == (20, 1, 64, 64) and clip.dtype == torch.float32
    expected = torch.from_numpy(sequences[:, 3]).float().div(255).unsqueeze(1)
    assert torch.equal(clip, expected)
    assert len(make_moving_mnist("test", "standard", data_root, num_clips=2)) == 2
    assert len(make_moving_mnist("test", "standard", data_root, num_clips=50)) == 5  # a cap, not a demand
    copy = pickle.loads(pickle.dumps(ds))  # what a spawned DataLoader worker receives
    assert copy._array is None and torch.equal(copy[3], clip)


@pytest.mark.parametrize("split", ["train", "val"])
def test_standard_is_test_only(data_root: Path, split: str) -> None:
    with pytest.raises(ValueError, match=r"'generated'.*'synthetic'"):
        make_moving_mnist(split, "standard", data_root)


@pytest.mark.parametrize(("source", "name", "command"), [
    ("standard", "mnist_test_seq.npy", FETCH_STANDARD),
    ("generated", "train-images-idx3-ubyte.gz", FETCH_GENERATED),
])
def test_missing_file_names_path_and_command(tmp_path: Path, source: str, name: str, command: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError) as info:
        make_moving_mnist("test", source, tmp_path / "my data")
    message = str(info.value)
    # the command fetches into that root: without --root it fetched into the default one and this failed again
    assert str(tmp_path / "my data" / "moving-mnist" / name) in message
    assert f"`{command} --root '{tmp_path / 'my data'}'`" in message, message
    monkeypatch.setenv("MSRNN_ZOO_DATA", str(tmp_path / "default"))
    with pytest.raises(FileNotFoundError, match=f"`{command}`"):  # the default root needs no --root
        make_moving_mnist("test", source, None)


def _bad_npy(folder: Path, kind: str) -> Path:
    path = folder / "mnist_test_seq.npy"
    if kind == "shape":
        np.save(path, np.zeros((5, 20, 64, 64), dtype=np.uint8))
    elif kind == "dtype":
        np.save(path, np.zeros((20, 2, 64, 64), dtype=np.float32))
    else:  # truncated download
        np.save(path, np.zeros((20, 2, 64, 64), dtype=np.uint8))
        path.write_bytes(path.read_bytes()[:5000])
    return path


@pytest.mark.parametrize(("kind", "problem"),
                         [("shape", "shape"), ("dtype", "dtype"), ("truncated", "cannot read")])
def test_corrupt_standard_file(tmp_path: Path, kind: str, problem: str) -> None:
    folder = tmp_path / "moving-mnist"
    folder.mkdir()
    path = _bad_npy(folder, kind)
    with pytest.raises(ValueError, match=problem) as info:
        make_moving_mnist("test", "standard", tmp_path)
    assert str(path) in str(info.value) and FETCH_STANDARD in str(info.value)


def _bad_idx(folder: Path, kind: str, write_idx, digits: np.ndarray) -> Path:
    path = folder / "train-images-idx3-ubyte.gz"
    if kind == "magic":
        return write_idx(path, digits, magic=2049)
    write_idx(path, digits)
    blob = path.read_bytes()
    if kind == "gzip":
        path.write_bytes(blob[: len(blob) // 2])
    else:  # a complete gzip of a truncated IDX file
        path.write_bytes(gzip.compress(gzip.decompress(blob)[:-100]))
    return path


@pytest.mark.parametrize(("kind", "problem"),
                         [("magic", "magic"), ("gzip", "cut short"), ("idx", "promises")])
def test_corrupt_mnist_file(tmp_path: Path, write_idx, digits: np.ndarray, kind: str, problem: str) -> None:
    path = _bad_idx(tmp_path / "moving-mnist", kind, write_idx, digits)
    with pytest.raises(ValueError, match=problem) as info:
        make_moving_mnist("train", "generated", tmp_path)
    assert str(path) in str(info.value) and FETCH_GENERATED in str(info.value)


def test_url_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(files.URL_ENV, raising=False)
    assert files.url_for(files.STANDARD_FILE) == files.STANDARD_FILE.url
    monkeypatch.setenv(files.URL_ENV, "https://mirror.example/mm/")
    assert files.url_for(files.MNIST_FILE) == "https://mirror.example/mm/train-images-idx3-ubyte.gz"

"""Downloads from a local HTTP server standing in for the public hosts (via MSRNN_ZOO_MOVING_MNIST_URL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from msrnn_moving_mnist import files, make_moving_mnist


@pytest.fixture
def mirror(http_dir: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    base, folder = http_dir
    monkeypatch.setenv(files.URL_ENV, base)
    return folder


def test_missing_files_are_downloaded(mirror: Path, tmp_path: Path, write_idx, digits: np.ndarray,
                                      sequences: np.ndarray) -> None:
    np.save(mirror / "mnist_test_seq.npy", sequences)
    write_idx(mirror / "train-images-idx3-ubyte.gz", digits)
    root = tmp_path / "root"
    with pytest.raises(FileNotFoundError):
        make_moving_mnist("test", "standard", root)  # download=False never fetches

    test = make_moving_mnist("test", "standard", root, download=True)
    assert len(test) == 5 and (root / "moving-mnist" / "mnist_test_seq.npy").is_file()
    train = make_moving_mnist("train", "generated", root, download=True, num_clips=2)
    assert train[0].shape == (20, 1, 64, 64)
    assert (root / "moving-mnist" / "train-images-idx3-ubyte.gz").is_file()

    (mirror / "mnist_test_seq.npy").unlink()  # present files are used as they are, not fetched again
    assert len(make_moving_mnist("test", "standard", root, download=True)) == 5


def test_fetch_downloads_and_checks_by_source(mirror: Path, tmp_path: Path, sequences: np.ndarray) -> None:
    np.save(mirror / "mnist_test_seq.npy", sequences)
    assert files.fetch("synthetic", tmp_path) is None
    assert files.fetch("standard", tmp_path) == tmp_path / "moving-mnist" / "mnist_test_seq.npy"
    with pytest.raises(ValueError, match="synthetic, standard, generated"):
        files.fetch("kaggle", tmp_path)


def test_404_is_a_clear_oserror(mirror: Path, tmp_path: Path) -> None:
    with pytest.raises(OSError, match=r"mnist_test_seq\.npy") as info:
        make_moving_mnist("test", "standard", tmp_path, download=True)
    assert not isinstance(info.value, FileNotFoundError)
    assert "404" in str(info.value) and files.URL_ENV in str(info.value)
    assert not list((tmp_path / "moving-mnist").glob("*"))  # nothing half-written left behind


def test_corrupt_download_is_a_clear_valueerror(mirror: Path, tmp_path: Path) -> None:
    (mirror / "mnist_test_seq.npy").write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError) as info:
        make_moving_mnist("test", "standard", tmp_path, download=True)
    message = str(info.value)
    assert str(tmp_path / "moving-mnist" / "mnist_test_seq.npy") in message
    assert "msrnn-zoo download moving-mnist --source standard" in message


def test_a_quoted_tilde_in_the_data_root_variable_is_the_home_folder(mirror: Path, tmp_path: Path,
                                                                     sequences: np.ndarray,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """MSRNN_ZOO_DATA='~/data' (set where no shell expands it) downloaded into a folder named ~ here."""
    from msrnn_zoo.datasets import load_dataset

    np.save(mirror / "mnist_test_seq.npy", sequences)
    home, here = tmp_path / "home", tmp_path / "here"
    here.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MSRNN_ZOO_DATA", "~/data")
    monkeypatch.chdir(here)
    assert len(load_dataset("moving-mnist", split="test", source="standard", download=True)) == 5
    assert (home / "data" / "moving-mnist" / "mnist_test_seq.npy").is_file()
    assert not list(here.iterdir())


def test_a_mirror_that_is_not_a_url_is_a_clear_oserror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder path as the mirror ended in urllib's bare "unknown url type: '/srv/mm/mnist_test_seq.npy'"."""
    monkeypatch.setenv(files.URL_ENV, str(tmp_path / "served"))
    with pytest.raises(OSError, match="is not a URL") as info:
        make_moving_mnist("test", "standard", tmp_path / "root", download=True)
    assert "file://" in str(info.value) and files.URL_ENV in str(info.value)
    assert not list((tmp_path / "root" / "moving-mnist").glob("*"))  # its temporary file is gone too


def test_a_data_root_that_cannot_hold_the_file_is_not_blamed_on_the_mirror(
        mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--root a file, or a folder one cannot write, ended in "Or set MSRNN_ZOO_MOVING_MNIST_URL to ... a mirror"."""
    (tmp_path / "a-file").write_text("mine")
    with pytest.raises(NotADirectoryError, match="is not a folder but a file") as info:
        files.locate(files.STANDARD_FILE, tmp_path / "a-file", download=True)
    assert files.URL_ENV not in str(info.value) and (tmp_path / "a-file").read_text() == "mine"

    def refused(url: str, dest: Path) -> Path:
        raise PermissionError(13, "Permission denied", str(dest.parent))

    monkeypatch.setattr(files, "download_file", refused)
    with pytest.raises(PermissionError, match=r"Cannot save mnist_test_seq\.npy in .*\(Permission denied\); give a "
                                              "data root you can write to") as info:
        files.locate(files.STANDARD_FILE, tmp_path / "root", download=True)
    assert files.URL_ENV not in str(info.value)
    # a Python caller (prepare_dataset, load_dataset) was told --root, which it never typed; the CLI keeps --root
    assert "(root=, or $MSRNN_ZOO_DATA)" in str(info.value) and "--" not in str(info.value), str(info.value)
    assert "(--root, or $MSRNN_ZOO_DATA)" in info.value.cli_message, info.value.cli_message

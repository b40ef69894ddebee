"""Small KTH files in the real formats: AVIs written with PyAV and a 00sequences.txt with its quirks."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest


def write_avi(path: Path, frames: int, pix_fmt: str = "gray", size: tuple[int, int] = (160, 120)) -> Path:
    """An uncompressed AVI whose frame k (1-based) is filled with the grey value k, so clips can be followed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("rawvideo", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for k in range(1, frames + 1):
            grey = np.full((height, width), k, dtype=np.uint8)
            image = grey if pix_fmt == "gray" else np.repeat(grey[:, :, None], 3, axis=2)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format=pix_fmt)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


SEQUENCES = """
This database contains sequences of six classes of actions performed by
25 subjects in four different conditions (see below).

Training:   person11, 12, 13, 14, 15, 16, 17, 18

person01_boxing_d1\t\tframes\t1-65
person01_jogging_d1\t\tframes\t1-45
person01_running_d1    \t\tframes\t1-30, 31-50
person02_walking_d2\tframes\t5-60
person03_boxing_d1\t\tframes\t1-100
person13_handclapping_d3\t*missing*

person17_running_d1\t\tframes\t1-40
person18_walking_d1\t\tframes\t1-35
"""

VIDEOS = {  # name: (frames, pix_fmt, folder)
    "person01_boxing_d1": (65, "gray", "boxing"),
    "person01_jogging_d1": (45, "gray", "jogging"),
    "person01_running_d1": (50, "gray", "running"),
    "person02_walking_d2": (60, "gray", "walking"),
    "person17_running_d1": (40, "gray", ""),
    "person18_walking_d1": (35, "bgr24", ""),
    "person18_handwaving_d3": (32, "gray", "handwaving"),  # not in the sequences file: the whole video
}


@pytest.fixture
def avi_writer():
    """``write_avi(path, frames, pix_fmt='gray', size=(160, 120))``."""
    return write_avi


def make_raw(folder: Path) -> Path:
    for name, (frames, pix_fmt, sub) in VIDEOS.items():
        write_avi(folder / sub / f"{name}_uncomp.avi", frames, pix_fmt)
    (folder / "00sequences.txt").write_text(SEQUENCES)
    (folder / "readme.avi").write_bytes(b"not one of ours")  # another name: ignored
    return folder


@pytest.fixture
def raw_kth(tmp_path: Path) -> Path:
    return make_raw(tmp_path / "kth")


@pytest.fixture
def sequences_text() -> str:
    return SEQUENCES


@pytest.fixture(scope="module")
def kth_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One prepared store shared by a module's read-only tests (decoding is the slow part)."""
    from msrnn_zoo.datasets import prepare_dataset

    base = tmp_path_factory.mktemp("kth")
    prepare_dataset("kth", make_raw(base / "raw"), base / "store")
    return base / "store"

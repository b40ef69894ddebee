"""Raw files -> store -> clips: the MS-RNN PNG layout and RADOLAN RY files, their splits and their errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import torch
from germany_files import numbered_frames, rain_field, ry_bytes, ry_name, write_pngs, write_ry, write_ry_series
from msrnn_germany import clips as clip_rules
from msrnn_germany.dataset import describe, make_germany
from msrnn_germany.prepare import prepare, resize_antialiased, resize_like_opencv
from msrnn_germany.scaling import rain_to_unit
from msrnn_germany.source import SourceError, scan

from msrnn_zoo.datasets import load_dataset, prepare_dataset
from msrnn_zoo.store import open_store, prepare_store


def build(source: Path, root: Path, **kwargs: object):
    seen: list[tuple[str, int, int]] = []
    store = prepare_store(root, "germany", lambda out: prepare(source, out, lambda *a: seen.append(a)), **kwargs)
    return store, seen


@pytest.fixture
def png_source(tmp_path: Path) -> Path:
    """train/: 125 PNGs (2 clips and 5 spare files), test/: 60 (1 clip); file n has value n % 251."""
    source = tmp_path / "raw"
    write_pngs(source / "train", numbered_frames(125))
    write_pngs(source / "test", numbered_frames(60))
    return source


# ------------------------------------------------------------------------------------------------ the MS-RNN PNGs
def test_png_layout_is_cut_as_the_ms_rnn_loader_cuts_it(png_source: Path, tmp_path: Path) -> None:
    store, seen = build(png_source, tmp_path / "store")
    assert store.meta["kind"] == "png" and store.array("frames").dtype == np.uint8
    assert store.array("frames").shape == (185, 124, 124)
    assert seen[-1][1:] == (185, 185) and "185 PNG" in seen[-1][0]
    train = make_germany("train", root=store.root)
    assert len(train) == 125 // 60 == 2
    # clip k holds files 60k, 60k + 6, ..., 60k + 54 (file n was written with value n)
    for k in range(2):
        values = (train[k][:, 0, 0, 0] * 255).round().int().tolist()
        assert values == [60 * k + 6 * j for j in range(10)]
    test = make_germany("test", root=store.root)
    val = make_germany("val", root=store.root)
    assert len(test) == len(val) == 1  # no val/ folder: validation on test, as MS-RNN
    assert torch.equal(test[0], val[0])
    assert store.meta["splits"]["val"]["same_frames_as"] == "test"


def test_files_are_ordered_by_their_number_not_their_name(tmp_path: Path) -> None:
    source = tmp_path / "raw"
    write_pngs(source / "train", numbered_frames(60))
    write_pngs(source / "test", numbered_frames(60))
    names = sorted(p.name for p in (source / "train").iterdir())
    assert names[:3] == ["0.png", "1.png", "10.png"]  # a plain sort would put 10 after 1
    store, _ = build(source, tmp_path / "store")
    values = (make_germany("train", root=store.root)[0][:, 0, 0, 0] * 255).round().int().tolist()
    assert values == [0, 6, 12, 18, 24, 30, 36, 42, 48, 54]


def test_larger_pngs_are_resized_bilinearly_to_124(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    big = [rng.integers(0, 256, (480, 480), dtype=np.uint8) for _ in range(2)]
    source = tmp_path / "raw"
    write_pngs(source / "train", big)
    write_pngs(source / "test", big)
    store, _ = build(source, tmp_path / "store")
    frames = store.array("frames")
    assert frames.shape == (4, 124, 124)
    assert np.array_equal(frames[0], resize_like_opencv(big[0]))
    # a bilinear sample, not an average: each output pixel mixes 2x2 input pixels of the 480x480 frame
    scale = 480 / 124
    y, x = (7 + 0.5) * scale - 0.5, (11 + 0.5) * scale - 0.5
    y0, x0, fy, fx = int(y), int(x), y - int(y), x - int(x)
    patch = big[0][y0:y0 + 2, x0:x0 + 2].astype(float)
    expected = (patch[0, 0] * (1 - fy) * (1 - fx) + patch[0, 1] * (1 - fy) * fx
                + patch[1, 0] * fy * (1 - fx) + patch[1, 1] * fy * fx)
    assert abs(int(frames[0][7, 11]) - expected) <= 0.5 + 1e-9


def test_resize_matches_opencv_within_one_level() -> None:
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (480, 480), dtype=np.uint8)
    ours = resize_like_opencv(image).astype(int)
    theirs = cv2.resize(image, (124, 124)).astype(int)  # what MS-RNN's util/load_hko.py calls
    assert np.abs(ours - theirs).max() <= 1


def test_val_folder_is_used_when_present(png_source: Path, tmp_path: Path) -> None:
    write_pngs(png_source / "val", numbered_frames(120))
    store, _ = build(png_source, tmp_path / "store")
    assert len(make_germany("val", root=store.root)) == 2 and len(make_germany("test", root=store.root)) == 1
    assert "same_frames_as" not in store.meta["splits"]["val"]


# ------------------------------------------------------------------------------------------------ RADOLAN RY
START = {"train": dt.datetime(2010, 7, 1, 12, 0), "val": dt.datetime(2015, 5, 3, 0, 0),
         "test": dt.datetime(2016, 6, 1, 6, 5)}


@pytest.fixture(scope="module")
def ry_store(tmp_path_factory: pytest.TempPathFactory):
    """Flat RY files (one clip per split in the MS-RNN years, a 2005 file outside them, a test clip with a
    gap; plain, gzip and one bzip2 file) and the store prepared from them: built once, read by several tests."""
    base = tmp_path_factory.mktemp("ry")
    source = base / "ry"
    for split, start in START.items():
        write_ry_series(source / str(start.year), start, 10, seed=start.year, compress="gz" if split == "val" else "")
    write_ry(source, dt.datetime(2005, 1, 1), rain_field(1))  # outside 2006-2017: left out
    # a second test clip that misses its 4th frame: dropped, not joined across the gap
    later = START["test"] + dt.timedelta(minutes=300)
    for j in range(10):
        if j != 3:
            write_ry(source / "gap", later + dt.timedelta(minutes=30 * j), rain_field(j),
                     compress="bz2" if j == 0 else "gz")
    store, _ = build(source, base / "store")
    return source, store


def test_radolan_files_are_split_by_year_and_scaled(ry_store) -> None:
    _, store = ry_store
    assert store.meta["kind"] == "radolan" and store.array("frames").dtype == np.float16
    assert store.meta["skipped"] == {"outside the paper's years 2006-2017": 1}
    counts = {s: r["count"] for s, r in store.meta["splits"].items()}
    assert counts == {"train": 10, "val": 10, "test": 19}
    for split in ("train", "val", "test"):
        data = make_germany(split, root=store.root)
        assert len(data) == 1  # the test block with a gap is dropped
        clip = data[0]
        assert clip.shape == (10, 1, 124, 124) and clip.dtype == torch.float32
        assert float(clip.min()) >= 0.0 and float(clip.max()) <= 1.0 and float(clip.max()) > 0.3
    # the first test frame is the first RY file of 2016: mm/5min * 12 -> pixels -> antialiased 124x124
    first = rain_to_unit(rain_field(START["test"].year) * 12)
    frame = make_germany("test", root=store.root)[0][0, 0].numpy()
    assert np.allclose(frame, resize_antialiased(first), atol=1e-3)  # float16 storage
    assert abs(float(frame.mean()) - float(first.mean())) < 0.01


def test_radolan_clips_follow_the_clock(tmp_path: Path) -> None:
    times = np.array([0, 1800, 3600], dtype=np.int64)  # only three frames: no complete clip
    assert clip_rules.clips_by_time(times, 0, 3).shape == (0, 10)
    full = np.arange(0, 2 * 18000, 300, dtype=np.int64)  # two complete 5-hour blocks of 5-minute frames
    index = clip_rules.clips_by_time(full, 0, len(full))
    assert np.array_equal(index, clip_rules.clips_by_count(0, len(full)))  # on a full archive: MS-RNN's cut
    holed = np.delete(full, 66)  # frame 66 = block 1, 7th sample (60 + 6)
    assert clip_rules.clips_by_time(holed, 0, len(holed)).tolist() == [list(range(0, 60, 6))]


def test_radolan_in_split_folders(tmp_path: Path) -> None:
    source = tmp_path / "ry"
    write_ry_series(source / "train", dt.datetime(2023, 1, 1), 10)
    write_ry_series(source / "test", dt.datetime(2023, 2, 1), 10)
    store, _ = build(source, tmp_path / "store")
    assert store.meta["kind"] == "radolan" and "folders" in store.meta["split_rule"]
    assert len(make_germany("train", root=store.root)) == len(make_germany("val", root=store.root)) == 1


# ------------------------------------------------------------------------------------------------ loading
def test_loading_is_memory_mapped_and_survives_pickling(png_source: Path, tmp_path: Path) -> None:
    import pickle

    store, _ = build(png_source, tmp_path / "store")
    data = make_germany("train", root=store.root)
    assert isinstance(data.frames, np.memmap)
    clone = pickle.loads(pickle.dumps(data))
    assert not clone._frames.is_mapped  # the map is not pickled; a worker maps the file itself
    assert torch.equal(clone[1], data[1]) and isinstance(clone.frames, np.memmap)
    assert len(pickle.dumps(data)) < 10_000
    with pytest.raises(IndexError):
        data[2]
    assert torch.equal(data[-1], data[1])


def test_through_the_zoo(png_source: Path, tmp_path: Path) -> None:
    root = tmp_path / "store"
    prepare_dataset("germany", png_source, root)
    test = load_dataset("germany", split="test", root=root)
    clip = test[0]
    assert tuple(clip.shape) == (10, 1, 124, 124) and 0.0 <= float(clip.min()) <= float(clip.max()) <= 1.0
    with pytest.raises(ValueError, match="no protocol 'openstl'"):
        load_dataset("germany", split="test", root=root, protocol="openstl")
    stats = describe(open_store(root, "germany"))
    assert stats["frames per split"] == {"train": 125, "test": 60, "val": 60}
    assert "openstl" in stats["openstl protocol"] or "OpenSTL" in stats["openstl protocol"]


def test_describe_reports_rain_statistics(ry_store) -> None:
    _, store = ry_store
    stats = describe(store)
    assert stats["raw files"] == "DWD RADOLAN RY composites"
    assert stats["time range"]["train"] == "2010-07-01T12:00 UTC .. 2010-07-01T16:30 UTC"
    sample = next(v for k, v in stats.items() if k.startswith("pixel stats"))
    assert sample["max rain mm/h"] > 1.0 and sample["mean rain mm/h"] >= 0.0


# ------------------------------------------------------------------------------------------------ errors
def test_a_folder_without_raw_files_says_what_names_it_expects(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "notes.txt").write_text("hello")
    with pytest.raises(SourceError, match=r"raw holds no files of the expected names.*raa01-ry_10000"):
        scan(tmp_path / "raw")
    write_pngs(tmp_path / "flat", numbered_frames(3))
    with pytest.raises(SourceError, match=r"3 integer-named PNGs directly.*train/ and test/"):
        scan(tmp_path / "flat")
    (tmp_path / "split" / "train").mkdir(parents=True)
    (tmp_path / "split" / "test").mkdir()
    with pytest.raises(SourceError, match=r"train holds no files of the expected names"):
        scan(tmp_path / "split")


def test_split_folder_mistakes(tmp_path: Path) -> None:
    write_pngs(tmp_path / "a" / "train", numbered_frames(2))
    with pytest.raises(SourceError, match=r"no test/"):
        scan(tmp_path / "a")
    write_pngs(tmp_path / "b" / "train", numbered_frames(2))
    write_ry(tmp_path / "b" / "train", dt.datetime(2016, 1, 1), np.zeros((900, 900)))
    write_pngs(tmp_path / "b" / "test", numbered_frames(2))
    with pytest.raises(SourceError, match=r"train mixes PNGs and RADOLAN files"):
        scan(tmp_path / "b")


def test_pngs_of_the_same_number_name_both_files(tmp_path: Path) -> None:
    """7.png and 007.png were both kept, in an order that depended on the folder listing."""
    write_pngs(tmp_path / "raw" / "train", numbered_frames(60))
    write_pngs(tmp_path / "raw" / "test", numbered_frames(60))
    (tmp_path / "raw" / "train" / "007.png").write_bytes((tmp_path / "raw" / "train" / "8.png").read_bytes())
    with pytest.raises(SourceError, match=r"007\.png and .*/7\.png hold the same frame number \(7\)"):
        scan(tmp_path / "raw")


def test_duplicate_times_name_both_files(tmp_path: Path) -> None:
    time = dt.datetime(2016, 1, 1)
    write_ry(tmp_path / "raw", time, np.zeros((900, 900)))
    write_ry(tmp_path / "raw" / "copy", time, np.zeros((900, 900)), compress="bz2")
    with pytest.raises(SourceError, match=r"same time \(2016-01-01 00:00 UTC\)"):
        scan(tmp_path / "raw")


def test_data_outside_the_paper_years_needs_split_folders(tmp_path: Path) -> None:
    write_ry_series(tmp_path / "raw", dt.datetime(2023, 5, 1), 2)
    with pytest.raises(SourceError, match=r"no RY file falls in the train, val, test years.*train/, val/ and test/"):
        scan(tmp_path / "raw")


def test_another_product_stops_prepare_and_names_the_file(tmp_path: Path) -> None:
    source = tmp_path / "raw"
    write_ry_series(source / "train", dt.datetime(2016, 1, 1), 2)
    write_ry_series(source / "test", dt.datetime(2016, 2, 1), 1)
    rw = source / "test" / ry_name(dt.datetime(2016, 2, 2), product="rw")
    rw.write_bytes(ry_bytes(np.zeros((900, 900)), dt.datetime(2016, 2, 2), product="RW", precision=1, interval=60))
    root = tmp_path / "store"
    with pytest.raises(ValueError, match=rf"{rw.name} is a RADOLAN RW composite, not RY"):
        build(source, root)
    assert not root.exists()  # nothing half-written is left to be trusted, not even the folder made for it


def test_a_renamed_file_is_caught(tmp_path: Path) -> None:
    source = tmp_path / "raw"
    write_ry_series(source / "train", dt.datetime(2016, 1, 1), 1)
    write_ry(source / "test", dt.datetime(2016, 3, 1), np.zeros((900, 900)),
             name=ry_name(dt.datetime(2016, 3, 2)))
    with pytest.raises(ValueError, match=r"name says 2016-03-02 00:00 UTC but its header says 2016-03-01"):
        build(source, tmp_path / "store")


def test_unreadable_png_names_itself(tmp_path: Path) -> None:
    source = tmp_path / "raw"
    write_pngs(source / "train", numbered_frames(2))
    write_pngs(source / "test", numbered_frames(2))
    (source / "test" / "1.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"test/1.png is not a readable PNG"):
        build(source, tmp_path / "store")


def test_a_store_of_another_dataset_or_version_is_refused(png_source: Path, tmp_path: Path) -> None:
    store, _ = build(png_source, tmp_path / "store")
    with pytest.raises(ValueError, match="no protocol"):
        make_germany("train", root=store.root, protocol="openstl")
    with pytest.raises(ValueError, match="cannot download"):
        make_germany("train", root=store.root, download=True)
    other = prepare_store(tmp_path / "other", "germany", lambda out: out.meta.update({"version": 99}))
    with pytest.raises(ValueError, match="another version of msrnn-germany"):
        make_germany("train", root=other.root)


def test_a_python_caller_is_told_the_prepare_dataset_call_not_the_command(png_source: Path, tmp_path: Path) -> None:
    """load_dataset of a store of another version, or with download=True, told a notebook to run `msrnn-zoo data
    prepare germany ... --force`; it now names prepare_dataset and its arguments. The CLI keeps its command."""
    build(png_source, tmp_path / "store")
    other = prepare_store(tmp_path / "other", "germany", lambda out: out.meta.update({"version": 99}))
    cases = [(dict(root=other.root), f"rebuild it with `prepare_dataset('germany', source=RAW_FILES, "
              f"root={str(other.root)!r}, force=True)`.", f"--root {other.root} --force`."),
             (dict(root=tmp_path / "store", download=True),
              "then prepare them: `prepare_dataset('germany', source=FOLDER, root=STORE)`.",
              "then run `msrnn-zoo data prepare germany --source FOLDER --root STORE`.")]
    for arguments, words, command in cases:
        with pytest.raises(ValueError) as caught:
            load_dataset("germany", split="train", **arguments)
        said = str(caught.value)
        assert words in said and "msrnn-zoo" not in said and "--" not in said, said
        assert command in caught.value.cli_message, caught.value.cli_message


def test_full_archive_clip_counts() -> None:
    # 2015: 365 days * 288 five-minute files = 105,120 files -> 105,120 // 60 = 1,752 clips
    assert clip_rules.archive_clips([2015]) == (105_120, 1_752)
    # 2016 is a leap year: 366 + 365 days -> 210,528 files -> 3,508 clips
    assert clip_rules.archive_clips([2016, 2017]) == (210_528, 3_508)
    assert clip_rules.archive_clips(range(2006, 2015)) == (3287 * 288, 3287 * 288 // 60)


def test_parallel_decoding_keeps_file_order_and_stops_at_the_first_bad_file() -> None:
    import random
    import threading
    import time

    from msrnn_germany.prepare import decoded

    started: list[int] = []
    lock = threading.Lock()

    def slow(n: int) -> int:
        with lock:
            started.append(n)
        time.sleep(random.uniform(0, 0.01))
        if n == 5:
            raise SourceError(f"file {n} is bad")
        return n * n

    assert list(decoded(slow, range(5), workers=3)) == [0, 1, 4, 9, 16]
    started.clear()
    got = []
    with pytest.raises(SourceError, match="file 5 is bad"):
        for value in decoded(slow, range(1000), workers=3):
            got.append(value)
    assert got == [n * n for n in range(5)]
    assert len(started) < 20  # only a short queue ran ahead; the rest was never started
    assert list(decoded(lambda n: -n, range(3), workers=1)) == [0, -1, -2]


def test_an_interrupted_prepare_leaves_nothing_that_loads_and_can_be_run_again(png_source: Path,
                                                                                tmp_path: Path) -> None:
    root = tmp_path / "store"

    def interrupt(task: str, done: int, total: int) -> None:
        if done == 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_store(root, "germany", lambda out: prepare(png_source, out, interrupt, workers=2))
    with pytest.raises(FileNotFoundError, match="No prepared germany data"):
        make_germany("train", root=root)
    store, _ = build(png_source, root)  # the same command again, no --force needed
    assert len(make_germany("train", root=store.root)) == 2
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith("data-")) == ["store.json"]


def test_the_dataset_kit_passes(png_source: Path, tmp_path: Path) -> None:
    from msrnn_zoo.testing import check_dataset

    build(png_source, tmp_path / "store")
    check_dataset("germany", root=tmp_path / "store")


def test_prepare_dataset_names_the_source_to_python_not_the_flag(tmp_path: Path) -> None:
    """prepare_dataset("germany", source=...) told a Python caller about --source, a flag of data prepare it never
    typed, where the source is a file, holds years outside the split or an unreadable PNG; it now names source= or
    the source folder, and the CLI keeps --source."""
    (tmp_path / "a.png").write_bytes(b"")
    write_ry_series(tmp_path / "years", dt.datetime(2023, 5, 1), 2)
    write_pngs(tmp_path / "pngs" / "train", numbered_frames(2))
    write_pngs(tmp_path / "pngs" / "test", numbered_frames(2))
    (tmp_path / "pngs" / "test" / "1.png").write_bytes(b"not a png")
    cases = [(tmp_path / "a.png", f"source={str(tmp_path / 'a.png')!r} is not a folder",
              f"--source {tmp_path / 'a.png'} is not a folder"),
             (tmp_path / "years", "test/ folders under the source folder.", "test/ folders under --source."),
             (tmp_path / "pngs", "remove it from the source folder.", "remove it from --source.")]
    for source, words, flags in cases:
        with pytest.raises(ValueError) as caught:
            prepare_dataset("germany", source, tmp_path / "store")
        assert words in str(caught.value) and "--" not in str(caught.value), str(caught.value)
        assert flags in caught.value.cli_message, caught.value.cli_message
    assert not (tmp_path / "store").exists()

"""KTH from small AVIs written with PyAV: clip counts and contents per protocol, splits, errors, CLI."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from msrnn_kth import plugin
from msrnn_kth.clips import CUTS, clip_starts
from msrnn_kth.files import read_sequences
from msrnn_kth.video import _weights, resize_linear
from PIL import Image

import msrnn_zoo
from msrnn_zoo.datasets import prepare_dataset
from msrnn_zoo.store import open_store
from msrnn_zoo.testing import run_cli as run

# Worked by hand from the fixture's frame ranges (see conftest.py):
# paper (20 frames): running every 3 -> 1-30: 1,4,7,10 and 31-50: 31; jogging 1-45 every 10: 1,11,21;
#   walking 5-60: 5,15,25,35 | test: running 1-40: 1..19 step 3 (7); walking 1-35: 1,11.
# openstl (30 frames, aligned to the run's end): running 1-30: 1; jogging 1-45 every 3: 1..16 (6);
#   walking 5-60 every 30: 31; boxing 1-65: 6,36 | test: running 1-40: 2,5,8,11; walking 1-35: 6;
#   handwaving (whole video, 32 frames): 3.
COUNTS = {"paper": {"train": 12, "test": 9}, "openstl": {"train": 10, "test": 6}}




@pytest.fixture
def store(kth_store):
    return kth_store


def test_clip_counts_shapes_and_range(store):
    for protocol, splits in COUNTS.items():
        for split, expected in splits.items():
            ds = msrnn_zoo.load_dataset("kth", split=split, root=store, protocol=protocol)
            assert len(ds) == expected, (protocol, split)
    paper = msrnn_zoo.load_dataset("kth", split="test", root=store)[0]
    openstl = msrnn_zoo.load_dataset("kth", split="test", root=store, protocol="openstl")[0]
    assert paper.shape == (20, 1, 88, 88) and openstl.shape == (30, 1, 128, 128)
    assert float(paper.min()) >= 0 and float(openstl.max()) <= 1
    with pytest.raises(ValueError, match="no 'val' split"):
        msrnn_zoo.load_dataset("kth", split="val", root=store)


def test_clips_hold_the_right_frames(store):
    """Frame k of every fixture video is filled with grey k: a clip's values name its frames."""
    def frames_of(ds, i):
        return [round(float(f.mean()) * 255) for f in ds[i]]

    paper = msrnn_zoo.load_dataset("kth", split="train", root=store)
    assert paper.names[:3] == ["person01_jogging_d1"] * 3  # boxing is not a paper action
    assert frames_of(paper, 0) == list(range(1, 21)) and frames_of(paper, 2) == list(range(21, 41))
    assert frames_of(paper, 7) == list(range(31, 51))  # running's second run starts at its own first frame
    openstl = msrnn_zoo.load_dataset("kth", split="train", root=store, protocol="openstl")
    assert [openstl.names[i] for i in (0, 1)] == ["person01_boxing_d1"] * 2
    assert frames_of(openstl, 0) == list(range(6, 36)) and frames_of(openstl, 1) == list(range(36, 66))
    test = msrnn_zoo.load_dataset("kth", split="test", root=store)
    assert {name[:8] for name in test.names} == {"person17", "person18"}  # persons 17-25 only


def test_store_index_and_description(store):
    stored = open_store(store, "kth")
    meta = stored.meta
    assert meta["sequences_file"] == "00sequences.txt"
    assert meta["listed_missing"] == ["person13_handclapping_d3"]
    assert meta["listed_not_found"] == ["person03_boxing_d1"] and meta["not_listed"] == ["person18_handwaving_d3"]
    assert stored.array("paper").shape == (45 + 50 + 60 + 40 + 35, 88, 88)  # paper actions only
    assert stored.array("openstl").shape == (65 + 45 + 50 + 60 + 40 + 35 + 32, 128, 128)
    info = msrnn_zoo.datasets.describe_dataset("kth", store)
    assert info["clips"] == COUNTS
    assert "person18_handwaving_d3" in info["stats"]["not in the sequences file (whole video used)"]


def test_resize_matches_opencv_linear_weights():
    np.testing.assert_allclose(_weights(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    np.testing.assert_allclose(_weights(2, 4), [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    frames = np.random.default_rng(0).integers(0, 256, (2, 120, 160)).astype(np.uint8)
    np.testing.assert_allclose(resize_linear(frames, 120, 160), frames)  # same size: unchanged
    assert resize_linear(np.full((1, 120, 160), 77, np.uint8), 88, 88) == pytest.approx(77)


def test_cutting_rules():
    assert clip_starts(CUTS["paper"], "running", 1, 30) == [1, 4, 7, 10]
    assert clip_starts(CUTS["paper"], "walking", 1, 19) == []
    assert clip_starts(CUTS["openstl"], "boxing", 1, 65) == [6, 36]
    assert clip_starts(CUTS["openstl"], "jogging", 1, 35) == [3, 6]


def test_sequences_file_quirks_and_errors(tmp_path):
    good = tmp_path / "00sequences.txt"
    good.write_text("header\nperson07_handclapping_d2    \tframes\t1-102, 103-248\nperson13_boxing_d3\t*missing*\n")
    assert read_sequences(good) == ({"person07_handclapping_d2": [(1, 102), (103, 248)]}, ["person13_boxing_d3"])
    bad = tmp_path / "bad.txt"
    bad.write_text("header\nperson01_boxing_d1\t\tframes\t1-95, 200-96\n")
    with pytest.raises(ValueError, match="line 2: frame range '200-96'"):
        read_sequences(bad)
    bad.write_text("person01_boxing_d1 frames one to ninety\n")
    with pytest.raises(ValueError, match="line 1"):
        read_sequences(bad)


def test_count_clips_script_agrees_with_the_dataset(store, sequences_text):
    path = Path(__file__).resolve().parents[1] / "count_clips.py"
    spec = importlib.util.spec_from_file_location("count_clips", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seq = store.parent / "seq.txt"
    seq.write_text(sequences_text)
    counts = module.count(seq)
    # the script sees only the file: it counts person03_boxing_d1 (listed, absent) and not the unlisted video
    assert counts["paper"]["train"]["total"] == COUNTS["paper"]["train"]
    assert counts["openstl"]["train"]["total"] == COUNTS["openstl"]["train"] + 3  # boxing 1-100: 11, 41, 71
    assert counts["openstl"]["test"]["total"] == COUNTS["openstl"]["test"] - 1  # no handwaving line


@pytest.mark.parametrize("damage", ["garbage", "truncated", "picture"])
def test_a_broken_avi_names_the_file(raw_kth, tmp_path, avi_writer, damage):
    broken = raw_kth / "running" / "person05_running_d2_uncomp.avi"
    if damage == "garbage":
        broken.write_bytes(b"RIFF....AVI " + bytes(500))
    elif damage == "picture":  # a PNG saved under the video's name was prepared as a video of one frame
        Image.fromarray(np.zeros((120, 160), dtype=np.uint8)).save(broken, format="PNG")
    else:
        avi_writer(broken, 30)
        broken.write_bytes(broken.read_bytes()[:300_000])
    with pytest.raises(ValueError, match=r"person05_running_d2_uncomp.avi (does not|is a piped png)"):
        prepare_dataset("kth", raw_kth, tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_folder_without_videos(tmp_path):
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "boxing.zip").write_bytes(b"PK")
    with pytest.raises(ValueError, match="holds no KTH videos.*boxing.zip: unzip them first"):
        prepare_dataset("kth", tmp_path / "downloads", tmp_path / "store")


def test_a_file_as_source_is_refused_not_read_as_its_folder(raw_kth, tmp_path):
    one = raw_kth / "person17_running_d1_uncomp.avi"  # its folder holds six more videos the user did not name
    with pytest.raises(ValueError) as caught:
        prepare_dataset("kth", one, tmp_path / "store")
    said = str(caught.value)  # a Python caller was told --source, a flag of data prepare it never typed
    assert f"source={str(one)!r} is a file; give the folder" in said and f"source={str(raw_kth)!r}" in said, said
    assert "--" not in said and f"--source {raw_kth}" in caught.value.cli_message, caught.value.cli_message
    assert not (tmp_path / "store").exists()


def test_without_sequences_file_whole_videos(raw_kth, tmp_path):
    (raw_kth / "00sequences.txt").unlink()
    prepare_dataset("kth", raw_kth, tmp_path / "store")
    train = msrnn_zoo.load_dataset("kth", split="train", root=tmp_path / "store")
    # running 1-50: 1..31 step 3 (11); jogging 1-45: 1, 11, 21 (3); walking 1-60: 1, 11, 21, 31, 41 (5)
    assert len(train) == 11 + 3 + 5


def test_prepare_reports_ranges_that_run_past_their_video(raw_kth, tmp_path, sequences_text):
    """A range of the sequences file past its video's end (a typo, or a shorter file) was cut without a word."""
    sequences = raw_kth / "00sequences.txt"
    sequences.write_text(sequences_text.replace("person02_walking_d2\tframes\t5-60",
                                                "person02_walking_d2\tframes\t5-600"))
    said = " ".join(run("data", "prepare", "kth", "--source", raw_kth, "--root", tmp_path / "store").output.split())
    assert "1 frame range(s) of 00sequences.txt run past their video's end" in said, said
    assert "e.g. person02_walking_d2 frames 5-600 of a video of 60" in said
    info = json.loads(run("data", "info", "kth", "--root", tmp_path / "store", "--json").output)
    assert "person02_walking_d2 frames 5-600" in json.dumps(info), info
    sequences.write_text(sequences_text)  # every range inside its video: no note
    said = " ".join(run("data", "prepare", "kth", "--source", raw_kth, "--root", tmp_path / "again").output.split())
    assert "run past" not in said


def test_plugin_registration_and_entry_point():
    calls = []
    plugin.register_datasets(lambda *a, **k: calls.append((a, k)))
    (info, _factory), capabilities = calls[0]
    assert info.name == "kth" and [p.name for p in info.protocols] == ["paper", "openstl"]
    assert (info.protocol().frames, info.protocol("openstl").frames) == (20, 30)
    assert set(capabilities) == {"prepare", "describe"}
    points = [ep for ep in importlib.metadata.entry_points(group="msrnn_zoo") if ep.name == "kth"]
    assert points and points[0].load() is plugin


def test_cli_prepare_info_train_evaluate(raw_kth, tmp_path):
    root = tmp_path / "kth-store"
    assert "kth" in run("list").output
    run("data", "prepare", "kth", "--source", raw_kth, "--root", root)
    info = json.loads(run("data", "info", "kth", "--root", root, "--json").output)
    assert info["clips"] == COUNTS
    out = tmp_path / "run"
    run("train", "ms-convlstm", "--dataset", "kth", "--root", root, "--out", out, "--hidden", "4", "--layers", "2",
        "--max-train-clips", "4", "--batch-size", "2")
    assert json.loads((out / "train_config.json").read_text())["protocol"] == "paper"
    result = run("evaluate", out, "--max-clips", "2")
    assert "copy-last-frame" in result.output and "blank" in result.output


def test_the_dataset_kit_passes(store):
    from msrnn_zoo.testing import check_dataset

    check_dataset("kth", root=store)

"""TaxiBJ from small files in the public schema: days dropped, windows, splits, scaling, errors, CLI."""

from __future__ import annotations

import importlib.metadata
import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from msrnn_taxibj import plugin
from msrnn_taxibj.dataset import TEST_WINDOWS

import msrnn_zoo
from msrnn_zoo.datasets import prepare_dataset, to_physical
from msrnn_zoo.store import open_store
from msrnn_zoo.testing import run_cli as run

# 2013: 0701 and 0703 complete, 0702 misses a slot -> two runs of 48 slots, 41 windows each;
# 2014 and 2015: two consecutive days, 89 windows each; 2015/16: 31 days, 31 * 48 - 7 = 1481 windows.
WINDOWS = 2 * 41 + 89 + 89 + 1481




@pytest.fixture
def store(raw_taxibj, tmp_path):
    prepare_dataset("taxibj", raw_taxibj, tmp_path / "store")
    return tmp_path / "store"


def slot_numbers(item, root):
    """The running slot number the fixture wrote into cell (0, 0), read back through the inverse scaling."""
    return np.rint(to_physical("taxibj", root)(item[:, 0, 0, 0].double()).numpy()).astype(int)


def test_splits_shapes_and_range(store):
    train = msrnn_zoo.load_dataset("taxibj", split="train", root=store)
    test = msrnn_zoo.load_dataset("taxibj", split="test", root=store)
    assert (len(train), len(test)) == (WINDOWS - TEST_WINDOWS, TEST_WINDOWS)
    paper = test[0]
    openstl = msrnn_zoo.load_dataset("taxibj", split="test", root=store, protocol="openstl")[0]
    assert paper.shape == (8, 1, 32, 32) and openstl.shape == (8, 2, 32, 32)
    assert paper.dtype == torch.float32 and torch.equal(paper[:, 0], openstl[:, 0])
    for item in (train[0], train[len(train) - 1], test[-1], openstl):
        assert float(item.min()) >= 0.0 and float(item.max()) <= 1.0
    with pytest.raises(ValueError, match="no 'val' split"):
        msrnn_zoo.load_dataset("taxibj", split="val", root=store)


def test_windows_are_consecutive_and_skip_dropped_days(store):
    train = msrnn_zoo.load_dataset("taxibj", split="train", root=store)
    numbers = np.stack([slot_numbers(train[i], store) for i in range(len(train))])
    assert (np.diff(numbers, axis=1) == 1).all()  # eight consecutive slots, in time order
    # 2013-07-02 (slots 49..95 in the file, one missing) never appears; the first window of 07-03 follows
    assert not ((numbers >= 49) & (numbers <= 95)).any()
    assert numbers[40, 0] == 41 and numbers[41, 0] == 96
    stored = open_store(store, "taxibj")
    starts, frames = stored.array("starts"), len(stored.array("flows"))
    assert starts[-1] + 8 == frames  # the very last slot of the last file ends the last test window
    assert starts[-TEST_WINDOWS] == frames - 31 * 48 + (1481 - TEST_WINDOWS)


def test_scaling_is_fitted_on_train_and_inverted(store, raw_taxibj):
    meta = json.loads((store / "store.json").read_text())["meta"]
    train_frames = meta["train_frames"]
    raw = np.concatenate([h5py.File(raw_taxibj / f"BJ{y}_M32x32_T30_InOut.h5")["data"][()] for y in (13, 14, 15, 16)])
    raw = np.delete(raw, np.s_[48:95], axis=0)  # the dropped day
    raw = np.maximum(raw, 0)
    assert meta["scaling"] == {"min": 0.0, "max": float(raw[:train_frames].max())}
    assert meta["years"][1]["negatives_clamped"] == 5 and meta["years"][0]["dropped_days"] == ["20130702"]
    item = msrnn_zoo.load_dataset("taxibj", split="train", root=store, protocol="openstl")[100]
    start = 100 - 82 + 96  # window 100 starts in 2014, after 82 windows and 96 frames of 2013
    back = to_physical("taxibj", store)(item.double()).numpy()
    np.testing.assert_allclose(back, raw[start:start + 8], atol=1e-3)


def test_plugin_registration_and_entry_point():
    calls = []
    plugin.register_datasets(lambda *a, **k: calls.append((a, k)))
    (info, _factory), capabilities = calls[0]
    assert info.name == "taxibj" and [p.name for p in info.protocols] == ["paper", "openstl"]
    assert info.protocol("paper").channels == 1 and info.protocol("openstl").channels == 2
    assert set(capabilities) == {"prepare", "describe"} and info.scaling.unit == "flow count"
    points = [ep for ep in importlib.metadata.entry_points(group="msrnn_zoo") if ep.name == "taxibj"]
    assert points and points[0].load() is plugin


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", "BJ14_M32x32_T30_InOut.h5 is not a readable HDF5 file"),
        ("remove", "no BJ15_M32x32_T30_InOut.h5"),
        ("schema", "'data' has shape (96, 32, 32), expected (N, 2, 32, 32)"),
        ("date", "date entry '2014030199' is not YYYYMMDDSS"),
        ("calendar", "date entry '2014023001' is not a day of the calendar"),  # was "day is out of range for month"
        ("nan", "'data' holds 2 NaN or infinite value(s)"),  # was prepared, with NaN as its fitted scaling
    ],
)
def test_bad_files_name_the_file(raw_taxibj, tmp_path, damage, message):
    if damage == "truncate":
        path = raw_taxibj / "BJ14_M32x32_T30_InOut.h5"
        path.write_bytes(path.read_bytes()[:4000])
    elif damage == "remove":
        (raw_taxibj / "BJ15_M32x32_T30_InOut.h5").unlink()
    elif damage == "schema":
        with h5py.File(raw_taxibj / "BJ14_M32x32_T30_InOut.h5", "w") as handle:
            handle["data"] = np.zeros((96, 32, 32))
            handle["date"] = np.array([b"2014030101"] * 96)
    elif damage == "calendar":
        with h5py.File(raw_taxibj / "BJ14_M32x32_T30_InOut.h5", "w") as handle:
            handle["data"] = np.zeros((48, 2, 32, 32))
            handle["date"] = np.array([f"20140230{slot:02d}".encode() for slot in range(1, 49)])
    elif damage == "nan":
        with h5py.File(raw_taxibj / "BJ14_M32x32_T30_InOut.h5", "r+") as handle:
            data = handle["data"][()]
            data[3, 0, 1, 1], data[7, 1, 2, 2] = np.nan, np.inf
            handle["data"][...] = data
    else:
        with h5py.File(raw_taxibj / "BJ14_M32x32_T30_InOut.h5", "w") as handle:
            handle["data"] = np.zeros((1, 2, 32, 32))
            handle["date"] = np.array([b"2014030199"])
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        prepare_dataset("taxibj", raw_taxibj, tmp_path / "store")
    assert not (tmp_path / "store").exists()  # nothing half-written is left


def test_too_few_days_for_the_test_split(raw_taxibj, tmp_path, year_writer):
    year_writer(raw_taxibj / "BJ16_M32x32_T30_InOut.h5", ["20160301"], counter=[1])
    with pytest.raises(ValueError, match="not more than the 1344 of the test split"):
        prepare_dataset("taxibj", raw_taxibj, tmp_path / "store")


def test_files_one_folder_down_are_found(raw_taxibj, tmp_path):
    outer = tmp_path / "download"
    outer.mkdir()
    shutil.move(raw_taxibj, outer / "TaxiBJ")
    store = prepare_dataset("taxibj", outer, tmp_path / "store")
    assert store.array("flows").shape[0] == 37 * 48  # 2 + 2 + 2 + 31 complete days


def test_cli_prepare_info_train_evaluate(raw_taxibj, tmp_path):
    root = tmp_path / "bj"
    assert "taxibj" in run("list").output
    run("data", "prepare", "taxibj", "--source", raw_taxibj, "--root", root)
    twice = run("data", "prepare", "taxibj", "--source", raw_taxibj, "--root", root, ok=False)
    assert twice.exit_code == 1 and "--force" in twice.output
    info = json.loads(run("data", "info", "taxibj", "--root", root, "--json").output)
    assert info["clips"]["paper"] == {"train": WINDOWS - TEST_WINDOWS, "test": TEST_WINDOWS}
    assert "20130702" not in json.dumps(info["stats"]) and "1 incomplete day" in json.dumps(info["stats"])
    assert "remove_incomplete_days" in run("data", "info", "taxibj", "--root", root).output
    out = tmp_path / "run"
    run("train", "ms-convlstm", "--dataset", "taxibj", "--root", root, "--out", out, "--hidden", "4",
        "--layers", "2", "--max-train-clips", "8", "--batch-size", "4")
    result = run("evaluate", out, "--max-clips", "8")
    assert "MAE (flow count)" in result.output and "mean-frame" in result.output
    scores = json.loads((out / "metrics-test.json").read_text())
    assert scores["model"]["frames"] == 4 and "rmse_physical" in scores["copy-last-frame"]["metrics"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "prepare", "taxibj", "--source", "{tmp}/empty", "--root", "{tmp}/s"], "holds none of the TaxiBJ"),
        (["data", "prepare", "taxibj", "--source", "{tmp}/nothing", "--root", "{tmp}/s"], "No raw taxibj files"),
        (["data", "info", "taxibj", "--root", "{tmp}/empty"], "never prepared"),
        (["train", "convlstm", "--dataset", "taxibj", "--root", "{tmp}/nothing", "--out", "{tmp}/r"],
         "does not exist"),
    ],
)
def test_newcomer_mistakes(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    result = run(*[a.format(tmp=tmp_path) for a in args], ok=False)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_the_dataset_kit_passes(store):
    from msrnn_zoo.testing import check_dataset

    check_dataset("taxibj", root=store)


def test_prepare_dataset_names_source_to_python_not_the_flag(tmp_path):
    """A Python caller giving a file, or a folder without the four yearly files, was told about --source, a flag of
    data prepare it never typed; it now reads source=, and the CLI keeps --source."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "a.h5").write_bytes(b"")
    for source, words, flags in [(tmp_path / "a.h5", f"source={str(tmp_path / 'a.h5')!r} is a file",
                                  f"--source {tmp_path / 'a.h5'} is a file"),
                                 (tmp_path / "empty", "Point source= at the folder", "Point --source at the folder")]:
        with pytest.raises(ValueError) as caught:
            prepare_dataset("taxibj", source, tmp_path / "store")
        assert words in str(caught.value) and "--" not in str(caught.value), str(caught.value)
        assert flags in caught.value.cli_message, caught.value.cli_message
    assert not (tmp_path / "store").exists()

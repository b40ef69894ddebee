"""The dataset interface: protocols, prepared stores, capabilities, and how train/evaluate use them.

A toy dataset registered at run time (the way a third-party plugin would be) exercises every capability,
so these tests need no real dataset plugin.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

import msrnn_zoo
from msrnn_zoo.data import ClipProtocol, DatasetInfo, Scaling
from msrnn_zoo.datasets import describe_dataset, load_dataset, prepare_dataset, to_physical
from msrnn_zoo.evaluate import baseline_frames
from msrnn_zoo.metrics import MetricReport, MetricResult, MetricSpec, blank, copy_last_frame, mean_frame
from msrnn_zoo.plugins import forget, pm
from msrnn_zoo.store import MARKER, STORE_FILE, MappedArray, open_store, prepare_store
from msrnn_zoo.testing import run_cli as run

PAPER = ClipProtocol("paper", 3, 3, 1, 16, 16, "6-frame windows, stride 1", {"stride": "test fixture"},
                     splits=("train", "test"))
SHORT = ClipProtocol("short", 2, 2, 1, 16, 16, "4-frame windows, stride 2", splits=("train", "test"))


class Windows(Dataset):
    def __init__(self, frames: np.ndarray, length: int, stride: int) -> None:
        self.frames, self.length = frames, length
        self.starts = list(range(0, len(frames) - length + 1, stride))

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> torch.Tensor:
        s = self.starts[i]
        return torch.from_numpy(self.frames[s:s + self.length, None].astype(np.float32) / 255.0)


def toy_factory(split, source, root, download, protocol, **options):
    store = open_store(root, "toy-store")
    frames = store.array("frames")
    cut = int(len(frames) * 0.7)
    part = frames[:cut] if split == "train" else frames[cut:]
    clip = {"paper": PAPER, "short": SHORT}[protocol]
    return Windows(part, clip.frames, 1 if protocol == "paper" else 2)


def toy_prepare(source: Path, out, progress) -> None:
    files = sorted(source.glob("*.npy"))
    if not files:
        raise ValueError(f"{source} holds no .npy files; expected frames (N, 16, 16) uint8.")
    frames = np.concatenate([np.load(f) for f in files])
    array = out.create_array("frames", frames.shape, np.uint8)
    for i in range(len(frames)):
        array[i] = frames[i]
        progress("frames", i + 1, len(frames))
    array.flush()
    out.meta["scaling"] = {"max": 50.0}


class CountAbove:
    """A dataset score: how often the forecast exceeds 0.5 where the truth does (per frame)."""

    def __init__(self, context):
        self.context = context
        self.sums = None
        self.n = 0

    def update(self, pred, truth):
        hits = ((pred > 0.5) & (truth > 0.5)).flatten(2).double().mean(-1).sum(0)
        self.sums = hits if self.sums is None else self.sums + hits
        self.n += pred.shape[0]

    def result(self):
        curve = (self.sums / self.n).tolist()
        spec = MetricSpec("hits", "hits", f"fraction of pixels above 0.5 in both ({self.context.frames})", True)
        return MetricReport({"hits": MetricResult(spec, tuple(curve), sum(curve) / len(curve))}, self.n, len(curve))


INFO = DatasetInfo(name="toy-store", protocols=(PAPER, SHORT), description="test-only stored dataset",
                   scaling=Scaling("counts", lambda x, p: x * p["max"], "x * max fitted on train"))


class ToyDatasetPlugin:
    @msrnn_zoo.hookimpl
    def register_datasets(self, register):
        register(INFO, toy_factory, prepare=toy_prepare, describe=lambda store: {"frames": len(store.array("frames"))},
                 scores=CountAbove, baselines={"half": lambda context, horizon: torch.full_like(
                     context[:, :1], 0.5).repeat(1, horizon, 1, 1, 1)})


@pytest.fixture
def toy_dataset():
    plugin = ToyDatasetPlugin()
    pm.register(plugin, name="toy-dataset-plugin")
    yield plugin
    pm.unregister(plugin)
    forget("toy-dataset-plugin")


@pytest.fixture
def raw(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    rng = np.random.default_rng(0)
    np.save(folder / "a.npy", (rng.random((30, 16, 16)) * 255).astype(np.uint8))
    np.save(folder / "b.npy", (rng.random((20, 16, 16)) * 255).astype(np.uint8))
    return folder




# ------------------------------------------------------------------------------------------------ protocols
def test_info_validates_its_protocols():
    with pytest.raises(ValueError, match="no protocol"):
        DatasetInfo(name="x", protocols=())
    with pytest.raises(ValueError, match="default protocol 'paper'"):
        DatasetInfo(name="x", protocols=(SHORT,))
    with pytest.raises(ValueError, match="twice"):
        DatasetInfo(name="x", protocols=(PAPER, PAPER))
    with pytest.raises(ValueError, match="drawn source\\(s\\) 'made' not among its sources \\(a\\)"):
        DatasetInfo(name="x", protocols=(PAPER,), sources=("a",), default_source="a", drawn_sources=("made",))
    with pytest.raises(ValueError, match="positive integer"):
        ClipProtocol("p", 0, 1, 1, 8, 8, "")
    assert INFO.in_frames == 3 and INFO.protocol("short").frames == 4
    with pytest.raises(ValueError, match="its protocols: paper, short"):
        INFO.protocol("openstl")


def test_load_dataset_takes_a_protocol(toy_dataset, raw, tmp_path):
    prepare_dataset("toy-store", raw, tmp_path / "store")
    paper = msrnn_zoo.load_dataset("toy-store", split="test", root=tmp_path / "store")
    short = load_dataset("toy-store", split="test", root=tmp_path / "store", protocol="short")
    assert paper[0].shape == (6, 1, 16, 16) and short[0].shape == (4, 1, 16, 16)
    assert (len(paper), len(short)) == (15 - 6 + 1, (15 - 4) // 2 + 1)
    with pytest.raises(ValueError, match="no 'val' split; its splits: train, test"):
        load_dataset("toy-store", split="val", root=tmp_path / "store")
    with pytest.raises(ValueError, match="no protocol 'openstl'"):
        load_dataset("toy-store", root=tmp_path / "store", protocol="openstl")
    with pytest.raises(ValueError, match="has no named sources"):
        load_dataset("toy-store", root=tmp_path / "store", source="standard")


def test_moving_mnist_declares_its_paper_protocol_first():
    info = msrnn_zoo.registry.get_dataset("moving-mnist").info
    assert [p.name for p in info.protocols] == ["paper", "small"] and info.protocol().frames == 20
    clip = msrnn_zoo.load_dataset("moving-mnist", split="test", protocol="paper", num_clips=1)[0]
    assert clip.shape == (20, 1, 64, 64)


def test_load_dataset_refuses_an_option_its_dataset_does_not_declare():
    """The factories take the standard arguments they do not use through **ignored, which swallowed a typo:
    num_clip=3 gave all the clips, without a word."""
    with pytest.raises(ValueError, match=r"'moving-mnist' has no option 'num_clip'; its options: num_clips, seed"):
        msrnn_zoo.load_dataset("moving-mnist", split="test", num_clip=3)
    assert len(msrnn_zoo.load_dataset("moving-mnist", split="test", num_clips=3)) == 3
    for name in ("kth", "taxibj", "germany"):  # they declare none: one checked before their store is opened
        with pytest.raises(ValueError, match=f"'{name}' has no option 'num_clips'; its options: none"):
            msrnn_zoo.load_dataset(name, split="test", root="/nonexistent", num_clips=3)


class MappedFrames(Dataset):
    """Frames read through a store handle, as the plugins' datasets do (module level: DataLoader workers pickle it)."""

    def __init__(self, frames: MappedArray) -> None:
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames.array)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.frames.array[i]))


def test_a_mapped_store_array_pickles_as_its_path_and_maps_afresh(raw, tmp_path):
    frames = np.concatenate([np.load(raw / "a.npy"), np.load(raw / "b.npy")])
    store = prepare_store(tmp_path / "store", "toy-store", lambda out: out.save_array("frames", frames))
    handle = store.mapped("frames")
    assert handle.is_mapped and isinstance(handle.array, np.memmap)
    payload = pickle.dumps(handle)
    assert len(payload) < 1_000 < frames.nbytes  # the path, not the data
    clone = pickle.loads(payload)
    assert not clone.is_mapped and handle.is_mapped  # pickling leaves the original's map alone
    assert isinstance(clone.array, np.memmap) and clone.array is not handle.array
    assert np.array_equal(clone.array, frames)
    with pytest.raises(ValueError, match="has no array 'flows'"):
        store.mapped("flows")

    dataset = MappedFrames(handle)
    loader = torch.utils.data.DataLoader(dataset, batch_size=7, num_workers=2)
    assert torch.equal(torch.cat(list(loader)), torch.stack([dataset[i] for i in range(len(dataset))]))
    assert torch.equal(torch.cat(list(loader)), torch.from_numpy(frames))


# ------------------------------------------------------------------------------------------------ stores
def test_prepare_writes_a_store_and_refuses_to_overwrite(toy_dataset, raw, tmp_path):
    root = tmp_path / "store"
    seen = []
    store = prepare_dataset("toy-store", raw, root, progress=lambda task, done, total: seen.append((task, done, total)))
    assert seen[-1] == ("frames", 50, 50) and store.array("frames").shape == (50, 16, 16)
    assert isinstance(store.array("frames"), np.memmap)  # loading never reads the whole array
    assert sorted(p.name for p in root.iterdir()) == sorted([STORE_FILE, store.data_dir.name])
    assert not (store.data_dir / MARKER).exists()
    with pytest.raises(FileExistsError, match="already holds a prepared toy-store store; pass force=True"):
        prepare_dataset("toy-store", raw, root)
    old = store.data_dir
    again = prepare_dataset("toy-store", raw, root, force=True)
    assert not old.exists() and again.data_dir.exists()
    assert sorted(p.name for p in root.iterdir()) == sorted([STORE_FILE, again.data_dir.name])


def test_force_never_touches_what_is_not_ours(toy_dataset, raw, tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "thesis.tex").write_text("precious")
    for force in (False, True):
        with pytest.raises(FileExistsError, match="holds files the zoo did not write"):
            prepare_dataset("toy-store", raw, root, force=force)
    assert [p.name for p in root.iterdir()] == ["thesis.tex"] and (root / "thesis.tex").read_text() == "precious"
    # beside a store, a user's file is refused too, and the store survives
    store_root = tmp_path / "store"
    prepare_dataset("toy-store", raw, store_root)
    (store_root / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        prepare_dataset("toy-store", raw, store_root, force=True)
    assert open_store(store_root, "toy-store").array("frames").shape == (50, 16, 16)
    # inside the store's data folder too: a rebuild would delete that folder, so it is refused, before any work
    (store_root / "notes.txt").unlink()
    data_dir = open_store(store_root, "toy-store").data_dir
    (data_dir / "labels.csv").write_text("mine")
    built = []
    with pytest.raises(FileExistsError, match=f"{data_dir.name}/labels.csv"):
        prepare_store(store_root, "toy-store", built.append, force=True)
    assert built == [] and (data_dir / "labels.csv").read_text() == "mine"
    # and a file put there while a rebuild runs survives it (the old folder is left, no longer named)
    (data_dir / "labels.csv").unlink()

    def meanwhile(out):
        toy_prepare(raw, out, lambda *a: None)
        (data_dir / "labels.csv").write_text("mine")

    prepare_store(store_root, "toy-store", meanwhile, force=True)
    assert (data_dir / "labels.csv").read_text() == "mine"


def test_a_hand_edited_store_file_never_points_a_rebuild_elsewhere(toy_dataset, raw, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "frames.npy").write_text("mine")
    store_root = tmp_path / "store"
    prepare_dataset("toy-store", raw, store_root)
    record = json.loads((store_root / STORE_FILE).read_text())
    (store_root / STORE_FILE).write_text(json.dumps({**record, "data": "../outside"}))
    with pytest.raises(ValueError, match="edited by hand"):
        prepare_dataset("toy-store", raw, store_root, force=True)
    with pytest.raises(ValueError, match="edited by hand"):
        open_store(store_root, "toy-store")
    assert sorted(os.listdir(outside)) == ["frames.npy"]


def test_an_interrupted_prepare_is_cleared_by_the_next(toy_dataset, raw, tmp_path):
    root = tmp_path / "store"

    def interrupted(source, out, progress):
        toy_prepare(source, out, progress)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_store(root, "toy-store", lambda out: interrupted(raw, out, lambda *a: None))
    assert not root.exists()  # the temporary folder went with the exception, and the folder it made for it
    root.mkdir()
    # a kill leaves a marked folder behind: never trusted, cleared by the next prepare
    stale = root / ".prepare-dead"
    stale.mkdir()
    (stale / MARKER).write_text("")
    (stale / "frames.npy").write_bytes(b"half")
    with pytest.raises(FileNotFoundError, match="a prepare was interrupted there; run it again"):
        open_store(root, "toy-store")
    prepare_dataset("toy-store", raw, root)
    assert not stale.exists()


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="no posix_fallocate here")
def test_a_prepare_that_fills_the_disk_says_so_and_leaves_nothing(toy_dataset, raw, tmp_path, monkeypatch):
    """A memory-mapped array filled on a full disk ended Python with SIGBUS ("Bus error"); numpy's np.save said
    only "N requested and M written"."""
    import errno

    root = tmp_path / "store"

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match=f"The disk is full: {re.escape(str(root))} could not be written.*Free some"):
        prepare_dataset("toy-store", raw, root)
    assert not root.exists()
    monkeypatch.undo()

    def short_write(source, out, progress):
        raise OSError("1048576 requested and 32752 written")

    with pytest.raises(OSError, match="The disk is full"):
        prepare_store(root, "toy-store", lambda out: short_write(raw, out, None))
    assert not root.exists()
    prepare_dataset("toy-store", raw, root)  # with space: written as before
    assert len(load_dataset("toy-store", root=root)) > 0


def test_store_array_names_that_clash_on_macos_or_windows_are_refused(tmp_path):
    """Arrays named ``frames`` and ``Frames`` were two files on Linux, one on the case-insensitive disks of macOS and
    Windows, where the second replaced the first without a word; a ``:`` made a store Windows could not hold."""
    def build(out):
        out.save_array("frames", np.zeros(3, np.uint8))
        out.save_array("frames", np.ones(3, np.uint8))  # the same name again: replaced, as before
        out.save_array("Frames", np.ones(3, np.uint8))

    root = tmp_path / "store"
    with pytest.raises(ValueError, match="'frames' and 'Frames' differ only by case: on macOS and Windows they are "
                                         "one file"):
        prepare_store(root, "toy-store", build)
    assert not root.exists()

    def build_with_colon(out):
        out.create_array("times:utc", (2,), np.int64)

    with pytest.raises(ValueError, match="'times:utc' holds a character Windows forbids in file names"):
        prepare_store(root, "toy-store", build_with_colon)
    assert not root.exists()


def test_a_killed_rebuild_is_named_where_a_second_prepare_is_refused(toy_dataset, raw, tmp_path):
    """After a kill -9 during `prepare --force`, a prepare without it was refused without a word of the hidden,
    store-sized .prepare-* folder left beside the store: nothing but a later --force ever removed it."""
    root = tmp_path / "store"
    prepare_dataset("toy-store", raw, root)
    with pytest.raises(FileExistsError) as clean:
        prepare_dataset("toy-store", raw, root)
    assert "interrupted" not in str(clean.value)
    stale = root / ".prepare-dead0000"
    stale.mkdir()
    (stale / MARKER).write_text("")
    with pytest.raises(FileExistsError, match=r"An interrupted rebuild left \.prepare-dead0000/ there: "
                                              "force=True clears it"):
        prepare_dataset("toy-store", raw, root)
    assert stale.is_dir()  # refused: nothing changed
    prepare_dataset("toy-store", raw, root, force=True)
    assert not stale.exists()


def test_a_second_prepare_into_a_root_being_prepared_is_refused_and_touches_nothing(toy_dataset, raw, tmp_path):
    """Two prepares into one root each removed the other's temporary folder as an interrupted one's."""
    fcntl = pytest.importorskip("fcntl")
    root = tmp_path / "store"
    prepare_dataset("toy-store", raw, root)
    building = root / ".prepare-running0"  # the other prepare's folder, half written
    building.mkdir()
    (building / MARKER).write_text("")
    before = sorted(p.name for p in root.iterdir())
    held = os.open(root, os.O_RDONLY)  # as the other prepare holds it
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(FileExistsError, match="Another prepare .* is writing into .* right now"):
            prepare_dataset("toy-store", raw, root, force=True)
        assert sorted(p.name for p in root.iterdir()) == before and building.is_dir()
        assert open_store(root, "toy-store").array("frames").shape == (50, 16, 16)  # reading needs no lock
    finally:
        os.close(held)
    prepare_dataset("toy-store", raw, root, force=True)
    assert not building.exists()


def test_a_prepare_without_fcntl_or_posix_fallocate_builds_and_rebuilds_the_store(toy_dataset, raw, tmp_path,
                                                                                      monkeypatch):
    """Windows has neither fcntl (the root's lock) nor os.posix_fallocate (the space claimed for an array), macOS
    lacks the latter: a prepare there runs unlocked and fills its arrays as they come, and makes the same store."""
    import msrnn_zoo.store

    monkeypatch.setattr(msrnn_zoo.store, "fcntl", None)
    monkeypatch.delattr(os, "posix_fallocate", raising=False)
    root = tmp_path / "store"
    prepare_dataset("toy-store", raw, root)
    first = open_store(root, "toy-store")
    prepare_dataset("toy-store", raw, root, force=True)
    again = open_store(root, "toy-store")
    assert again.data_dir != first.data_dir and not first.data_dir.exists()
    assert np.array_equal(again.array("frames"), np.concatenate([np.load(raw / "a.npy"), np.load(raw / "b.npy")]))
    assert sorted(p.name for p in root.iterdir()) == sorted([STORE_FILE, again.data_dir.name])


def test_a_rebuild_whose_old_arrays_another_process_maps_on_windows_succeeds(toy_dataset, raw, tmp_path, monkeypatch):
    """Windows refuses to delete a file another process maps (a training reading the store): a `prepare --force`
    there switched to the new store, then failed deleting the old one, and so said it had not prepared it."""
    import shutil

    import msrnn_zoo.store

    root = tmp_path / "store"
    old = prepare_dataset("toy-store", raw, root).data_dir
    rmtree = shutil.rmtree

    def mapped_elsewhere(path, *args, **kwargs):
        if Path(path) == old:
            raise PermissionError(13, "The process cannot access the file because it is being used by another "
                                      "process", str(path))
        rmtree(path, *args, **kwargs)

    monkeypatch.setattr(msrnn_zoo.store.shutil, "rmtree", mapped_elsewhere)
    new = prepare_dataset("toy-store", raw, root, force=True)
    assert new.data_dir != old and open_store(root, "toy-store").data_dir == new.data_dir
    assert (old / MARKER).is_file()  # still ours, cleared by the next prepare
    monkeypatch.undo()
    prepare_dataset("toy-store", raw, root, force=True)
    assert not old.exists()


def test_a_damaged_store_file_says_what_to_do(toy_dataset, raw, tmp_path):
    """A store.json cut short (or a file of that name of someone else's) said only that it was not readable, and
    `prepare --force` gave the same answer: no way on was named."""
    root = tmp_path / "store"
    prepare_dataset("toy-store", raw, root)
    data = json.loads((root / STORE_FILE).read_text())["data"]
    (root / STORE_FILE).write_text((root / STORE_FILE).read_text()[:40])
    for attempt in (lambda: open_store(root, "toy-store"), lambda: prepare_dataset("toy-store", raw, root, force=True)):
        with pytest.raises(ValueError, match="not a readable store description .*Prepare into a new root="):
            attempt()
    (root / STORE_FILE).write_text('{"name": "another tool\'s file"}')
    with pytest.raises(ValueError, match="not a store prepare_dataset wrote; give a new or empty folder as root="):
        prepare_dataset("toy-store", raw, root, force=True)
    assert (root / data).is_dir()  # nothing was deleted on the word of a file it could not read


def test_prepare_failure_leaves_nothing(toy_dataset, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no .npy files"):
        prepare_dataset("toy-store", empty, tmp_path / "store")
    assert not (tmp_path / "store").exists()  # not even the folder it made for the store
    (tmp_path / "kept").mkdir()  # a folder the user made stays, empty as it was
    with pytest.raises(ValueError, match="holds no .npy files"):
        prepare_dataset("toy-store", empty, tmp_path / "kept")
    assert list((tmp_path / "kept").iterdir()) == []
    with pytest.raises(FileNotFoundError, match="No raw toy-store files at"):
        prepare_dataset("toy-store", tmp_path / "nowhere", tmp_path / "store")



def test_preparing_and_loading_from_python_name_the_arguments_not_the_flags(toy_dataset, tmp_path):
    """prepare_dataset and load_dataset told a notebook that "--source must be the folder...", to "leave --source
    out" or to run `msrnn-zoo download`: words of commands it had not run. The CLI keeps saying its flags."""
    for attempt, words, flags in (
            (lambda: prepare_dataset("toy-store", tmp_path / "nowhere", tmp_path / "s"), "source= must be the folder",
             "--source must be the folder"),
            (lambda: prepare_dataset("toy-store", "/", tmp_path / "s"), "source='/' is the root of the file system",
             "--source / is the root of the file system"),
            (lambda: prepare_dataset("moving-mnist", tmp_path, tmp_path / "s"),
             "load_dataset('moving-mnist', download=True)", "`msrnn-zoo download moving-mnist`"),
            (lambda: load_dataset("toy-store", root=tmp_path / "s", source="standard"), "root= (leave source= out)",
             "--root (leave --source out)")):
        with pytest.raises((ValueError, OSError)) as caught:
            attempt()
        assert words in str(caught.value) and "--" not in str(caught.value), str(caught.value)
        assert flags in caught.value.cli_message
    assert not (tmp_path / "s").exists()


def test_a_store_refusing_a_python_caller_names_prepare_dataset_not_the_command(toy_dataset, raw, tmp_path):
    """load_dataset and prepare_dataset told a notebook to run `msrnn-zoo data prepare ... --root ... --force`, to give
    --root another folder or to pass --force: a command and flags it had never typed. The CLI keeps saying them."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    prepare_dataset("toy-store", raw, tmp_path / "store")
    for attempt, words, flags in (
            (lambda: load_dataset("toy-store", root=tmp_path / "nothing"),
             f"prepare_dataset('toy-store', source=RAW_FILES, root={str(tmp_path / 'nothing')!r})",
             "msrnn-zoo data prepare toy-store --source RAW_FILES --root"),
            (lambda: load_dataset("toy-store", root=raw), f"source={str(raw)!r}, root=NEW_FOLDER)",
             f"--source {raw} --root NEW_FOLDER"),
            (lambda: load_dataset("toy-store", root=tmp_path / "file"), f"root={str(tmp_path / 'file')!r} is a file",
             f"--root {tmp_path / 'file'} is a file"),
            (lambda: open_store(tmp_path / "store", "other"), "point root= at the other store",
             "point --root at the other store"),
            (lambda: prepare_dataset("toy-store", raw, tmp_path / "store"), "pass force=True to rebuild it, or choose "
             "another root=", "pass --force (force=True) to rebuild it, or choose another --root"),
            (lambda: prepare_dataset("toy-store", raw, raw), "the raw files go to source=", "the raw files go to "
             "--source"),
            (lambda: open_store(tmp_path / "store", "toy-store").array("labels"), "force=True)`",
             "--root {} --force`".format(tmp_path / "store"))):
        with pytest.raises((ValueError, OSError)) as caught:
            attempt()
        assert words in str(caught.value), str(caught.value)
        assert "--" not in str(caught.value) and "msrnn-zoo data" not in str(caught.value), str(caught.value)
        assert flags in caught.value.cli_message, caught.value.cli_message


def test_dot_as_root(toy_dataset, raw, tmp_path, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    prepare_dataset("toy-store", raw, ".")
    assert len(load_dataset("toy-store", root=".")) > 0
    monkeypatch.chdir(raw)  # a folder of the user's files: refused, untouched
    with pytest.raises(FileExistsError, match="did not write"):
        prepare_dataset("toy-store", raw, ".", force=True)
    assert sorted(os.listdir(raw)) == ["a.npy", "b.npy"]


def test_open_store_errors(toy_dataset, raw, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist.*prepare_dataset\('toy-store'"):
        open_store(tmp_path / "nothing", "toy-store")
    with pytest.raises(FileNotFoundError, match="never prepared.*not the raw files") as raised:
        open_store(raw, "toy-store")
    # the command it suggests works: the raw folder is the source, never the store (prepare would refuse it)
    assert f"source={str(raw.resolve())!r}, root=NEW_FOLDER" in str(raised.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=f"empty.*root={str(tmp_path.resolve() / 'empty')!r}"):
        open_store(tmp_path / "empty", "toy-store")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        open_store(tmp_path / "file", "toy-store")
    store = prepare_dataset("toy-store", raw, tmp_path / "store")
    with pytest.raises(ValueError, match="holds a prepared 'toy-store' store, not 'other'"):
        open_store(tmp_path / "store", "other")
    with pytest.raises(ValueError, match="no array 'labels'"):
        store.array("labels")
    (store.data_dir / "frames.npy").write_bytes(b"\x93NUMPY truncated")
    with pytest.raises(ValueError, match="damaged"):
        store.array("frames")


# ------------------------------------------------------------------------------------------------ capabilities
def test_describe_and_physical_units(toy_dataset, raw, tmp_path):
    prepare_dataset("toy-store", raw, tmp_path / "store")
    described = describe_dataset("toy-store", tmp_path / "store")
    assert described["clips"] == {"paper": {"train": 30, "test": 10}, "short": {"train": 16, "test": 6}}
    assert described["stats"] == {"frames": 50} and described["unit"] == "counts"
    assert described["protocols"]["paper"]["provenance"] == {"stride": "test fixture"}
    inverse = to_physical("toy-store", tmp_path / "store")
    assert float(inverse(torch.tensor(0.5))) == 25.0


def test_core_baselines():
    context = torch.rand(2, 3, 1, 4, 4)
    assert torch.equal(copy_last_frame(context, 2)[:, 1], context[:, -1])
    assert torch.allclose(mean_frame(context, 2)[:, 0], context.mean(1))
    assert blank(context, 4).shape == (2, 4, 1, 4, 4) and blank(context, 1).abs().sum() == 0
    clips = torch.rand(2, 5, 1, 4, 4)
    every = baseline_frames(copy_last_frame, clips, 3, 2, "all")
    assert every.shape == (2, 4, 1, 4, 4)  # frames 2..5 of the clip
    assert torch.equal(every[:, :2], clips[:, :2]) and torch.equal(every[:, 2:], clips[:, 2:3].repeat(1, 2, 1, 1, 1))
    assert torch.allclose(baseline_frames(mean_frame, clips, 3, 2, "all")[:, 1], clips[:, :2].mean(1))


def test_registration_rejects_bad_capabilities():
    from msrnn_zoo.registry import refresh

    class Bad:
        @msrnn_zoo.hookimpl
        def register_datasets(self, register):
            register(INFO, toy_factory, baselines={"copy-last-frame": copy_last_frame})

    pm.register(Bad(), name="bad-baseline")
    try:
        refresh()
        record = next(r for r in msrnn_zoo.plugins.records() if r.name == "bad-baseline")
        assert "baseline name 'copy-last-frame'" in record.error
    finally:
        pm.unregister(name="bad-baseline")
        forget("bad-baseline")


def test_data_info_says_why_a_split_is_unavailable_in_the_command_lines_words(toy_dataset, raw, tmp_path,
                                                                              monkeypatch):
    """A store's refusal has two spellings (prepare_dataset(...) for Python, `msrnn-zoo data prepare` for the command
    line); describe_dataset wrote the Python one into `data info`'s table of clips."""
    from msrnn_zoo import datasets
    from msrnn_zoo.validation import with_cli_message

    root = tmp_path / "store"
    run("data", "prepare", "toy-store", "--source", raw, "--root", root)

    def refused(*args, **kwargs):
        raise with_cli_message(ValueError("call prepare_dataset(force=True)"), "run data prepare --force")

    monkeypatch.setattr(datasets, "load_dataset", refused)
    shown = run("data", "info", "toy-store", "--root", root, "--json").output
    assert "run data prepare --force" in shown and "prepare_dataset" not in shown
    described = datasets.describe_dataset("toy-store", root)
    assert described["clips"]["paper"]["test"] == "unavailable: call prepare_dataset(force=True)"


# ------------------------------------------------------------------------------------------------ CLI end to end
def test_cli_prepare_info_train_evaluate(toy_dataset, raw, tmp_path):
    root = tmp_path / "store"
    out = run("data", "prepare", "toy-store", "--source", raw, "--root", root).output
    assert "Prepared toy-store" in out
    # not a terminal: lines, not a bar; the part begun, ended, and between them one at most every 30 s
    counts = [line.removeprefix("frames: ").split("/") for line in out.splitlines() if line.startswith("frames: ")]
    assert counts[0][0] == "1" and counts[-1][0] == counts[-1][1] != "1" and len(counts) <= 3
    again = run("data", "prepare", "toy-store", "--source", raw, "--root", root, ok=False)
    assert again.exit_code == 1 and "--force" in again.output and "Traceback" not in again.output
    info = run("data", "info", "toy-store", "--root", root).output
    assert "short" in info and "test fixture" in info
    assert json.loads(run("data", "info", "toy-store", "--root", root, "--json").output)["clips"]["paper"]["test"] == 10
    assert "toy-store" in run("list").output

    rundir = tmp_path / "run"
    run("train", "convlstm", "--dataset", "toy-store", "--root", root, "--protocol", "short", "--out", rundir,
        "--hidden", "4", "--layers", "2", "--max-train-clips", "8")
    cfg = json.loads((rundir / "train_config.json").read_text())
    assert (cfg["protocol"], cfg["in_frames"], cfg["out_frames"]) == ("short", 2, 2)
    assert cfg["root"] == str(root.resolve())

    result = run("evaluate", rundir)
    for name in ("copy-last-frame", "mean-frame", "blank", "half", "hits", "MAE (counts)"):
        assert name in result.output
    future = json.loads((rundir / "metrics-test.json").read_text())
    assert future["frames"] == "future" and future["forecasters"] == ["model", "copy-last-frame", "mean-frame",
                                                                        "blank", "half"]
    assert len(future["model"]["metrics"]["hits"]["per_frame"]) == 2
    mse = future["blank"]["metrics"]["mse_pixel"]["mean"]
    assert future["blank"]["metrics"]["rmse_physical"]["mean"] == pytest.approx(50 * mse ** 0.5, rel=0.2)

    run("evaluate", rundir, "--frames", "all", "--out", tmp_path / "all.json")
    every = json.loads((tmp_path / "all.json").read_text())
    assert every["frames"] == "all" and every["model"]["frames"] == 3
    # the forecast frames of 'all' are exactly the 'future' scores: same teacher-forced context, same forecast
    forecast_part = every["model"]["metrics"]["mse"]["per_frame"][1:]
    assert forecast_part == pytest.approx(future["model"]["metrics"]["mse"]["per_frame"])
    card = run("card", rundir, "--repo-id", "me/toy", "--out", tmp_path / "card.md").output
    assert "MSE" in card + (tmp_path / "card.md").read_text()
    assert "| half |" in (tmp_path / "card.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "info", "toy-store", "--root", "{tmp}/nothing"], "does not exist"),
        (["data", "info", "toy-store", "--root", "{raw}"], "never prepared"),
        (["data", "prepare", "toy-store", "--source", "{tmp}/nothing", "--root", "{tmp}/s"], "No raw toy-store files"),
        (["data", "prepare", "toy-store", "--source", "{raw}", "--root", "{raw}"], "did not write"),
        (["data", "prepare", "moving-mnist", "--source", "{raw}", "--root", "{tmp}/s"], "has no prepare step"),
        (["download", "toy-store"], "then run `msrnn-zoo data prepare toy-store"),
        (["data", "prepare", "toy-store", "--source", "/", "--root", "{tmp}/s"], "is the root of the file system"),
        (["train", "convlstm", "--dataset", "toy-store", "--root", "{tmp}/nothing", "--out", "{tmp}/r"],
         "does not exist"),
        (["train", "convlstm", "--dataset", "toy-store", "--protocol", "nope", "--out", "{tmp}/r"], "no protocol"),
    ],
)
def test_newcomer_mistakes_are_one_red_line(toy_dataset, raw, tmp_path, args, message):
    result = run(*[a.format(tmp=tmp_path, raw=raw) for a in args], ok=False)
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output


def store_of_frames(tmp_path: Path, frames: int) -> Path:
    """A toy store prepared from one source of ``frames`` frames, so that a split may hold no whole clip."""
    raw = tmp_path / "few"
    raw.mkdir()
    np.save(raw / "a.npy", np.zeros((frames, 16, 16), dtype=np.uint8))
    store = tmp_path / "store"
    prepare_dataset("toy-store", raw, store)
    return store


def test_train_refuses_a_dataset_whose_test_split_holds_no_clips(toy_dataset, tmp_path):
    """A store prepared from too few test frames trained to the end; then `evaluate` had nothing to score."""
    store = store_of_frames(tmp_path, 15)  # test: 5 frames, no 6-frame 'paper' clip
    assert len(load_dataset("toy-store", split="test", root=store, protocol="paper")) == 0
    tiny = ("--hidden", "4", "--layers", "1", "--batch-size", "2", "--max-train-clips", "2")
    result = run("train", "convlstm", "--dataset", "toy-store", "--root", store, "--out", tmp_path / "r", *tiny,
                 ok=False)
    assert result.exit_code == 1 and "The test split of toy-store (paper) holds no clips" in result.output
    assert f"msrnn-zoo data info toy-store --root {store}" in result.output and not (tmp_path / "r").exists()
    run("train", "convlstm", "--dataset", "toy-store", "--root", store, "--protocol", "short", "--out",
        tmp_path / "s", *tiny)  # 'short' cuts a test clip from the same frames


def test_an_empty_split_met_from_python_names_describe_dataset_not_data_info(toy_dataset, tmp_path):
    """Trainer.create on a store without a test clip told a notebook that `msrnn-zoo data info ... --root ...` shows
    the clips per split; it names describe_dataset now, and the command line keeps its command."""
    from msrnn_zoo.train import Trainer, new_train_config

    store = store_of_frames(tmp_path, 15)  # test: 5 frames, no 6-frame 'paper' clip
    cfg = new_train_config("convlstm", model_options={"hidden_channels": 4, "num_layers": 1}, dataset="toy-store",
                           root=store, batch_size=2)
    with pytest.raises(ValueError, match="The test split of toy-store") as caught:
        Trainer.create(tmp_path / "r", cfg)
    call = f"`msrnn_zoo.datasets.describe_dataset('toy-store', root={str(store.resolve())!r})` shows its clips"
    assert call in str(caught.value) and "msrnn-zoo data" not in str(caught.value), str(caught.value)
    assert f"`msrnn-zoo data info toy-store --root {store.resolve()}` shows" in caught.value.cli_message


def test_predict_and_evaluate_of_a_run_whose_test_split_is_now_empty_say_so_and_what_to_do(toy_dataset, raw, tmp_path):
    """The store of a run prepared again from fewer frames (as runs made before train refused an empty test split):
    predict said "--index 0 is outside the test split (0..-1)", evaluate "nothing to evaluate", without advice."""
    import shutil

    store = tmp_path / "store"
    prepare_dataset("toy-store", raw, store)
    run("train", "convlstm", "--dataset", "toy-store", "--root", store, "--out", tmp_path / "r", "--hidden", "4",
        "--layers", "1", "--batch-size", "2", "--max-train-clips", "2")
    few = tmp_path / "few"
    few.mkdir()
    np.save(few / "a.npy", np.zeros((15, 16, 16), dtype=np.uint8))  # test: 5 frames, no 6-frame 'paper' clip
    shutil.rmtree(store)
    prepare_dataset("toy-store", few, store)
    info = f"`msrnn-zoo data info toy-store --root {store}` shows its clips per split"
    predicted = run("predict", tmp_path / "r", "--out", tmp_path / "f.png", ok=False)
    said = " ".join(predicted.output.split())
    assert predicted.exit_code == 1 and "(0..-1)" not in said, said
    assert "The test split of toy-store (paper) holds no clips: predict has no clip to show" in said
    assert "--input FRAMES.npy forecasts frames of your own" in said and info in said
    assert not (tmp_path / "f.png").exists()
    evaluated = run("evaluate", tmp_path / "r", ok=False)
    said = " ".join(evaluated.output.split())
    assert evaluated.exit_code == 1 and "The test split of toy-store (paper) holds no clips: there is nothing to " \
        "evaluate" in said, said
    assert info in said and not (tmp_path / "r" / "metrics-test.json").exists()


def test_train_on_a_dataset_whose_training_split_holds_no_clips_is_one_red_line(toy_dataset, tmp_path):
    """A KTH store prepared from boxing videos only (the 'paper' protocol uses none) was an IndexError traceback."""
    store = store_of_frames(tmp_path, 8)  # train: 5 frames, no 6-frame 'paper' clip
    result = run("train", "convlstm", "--dataset", "toy-store", "--root", store, "--out", tmp_path / "r", ok=False)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # one red line, not an IndexError
    assert "The training split of toy-store (paper) holds no clips: there is nothing to train on" in result.output
    assert f"msrnn-zoo data info toy-store --root {store}" in result.output and not (tmp_path / "r").exists()


def test_data_info_with_a_source_the_dataset_lacks_is_one_red_line(toy_dataset, raw, tmp_path):
    """It exited 0, printing "has no source 'bogus'" once per protocol and split as if those were unavailable."""
    result = run("data", "info", "moving-mnist", "--source", "bogus", ok=False)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("Error: Dataset 'moving-mnist' has no source 'bogus'; its sources: synthetic")
    result = run("data", "info", "toy-store", "--root", tmp_path / "nothing", "--source", "x", ok=False)
    assert result.exit_code == 1 and "has no named sources" in result.output  # before the missing store
    with pytest.raises(ValueError, match="has no source 'bogus'"):
        describe_dataset("moving-mnist", source="bogus")


def test_cli_refuses_empty_data_paths(toy_dataset, raw, tmp_path, monkeypatch):
    """``--source "$RAW"`` with RAW unset must not mean "search the current folder to any depth"."""
    monkeypatch.chdir(raw)
    for args in (["data", "prepare", "toy-store", "--source", "", "--root", tmp_path / "s"],
                 ["data", "prepare", "toy-store", "--source", raw, "--root", " "],
                 ["data", "info", "toy-store", "--root", ""],
                 ["train", "convlstm", "--dataset", "toy-store", "--root", "", "--out", tmp_path / "r"],
                 ["train", "convlstm", "--data", "", "--out", tmp_path / "r"]):
        result = run(*args, ok=False)
        assert result.exit_code == 1 and "is empty; give a" in result.output, (args, result.output)
    assert not (tmp_path / "s").exists() and not (tmp_path / "r").exists()


def test_cli_ctrl_c_during_prepare_says_how_to_go_on(toy_dataset, raw, tmp_path, monkeypatch):
    import msrnn_zoo.datasets

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(msrnn_zoo.datasets, "prepare_dataset", interrupted)
    result = run("data", "prepare", "toy-store", "--source", raw, "--root", tmp_path / "s", ok=False)
    assert result.exit_code == 130 and "run the same command again" in result.output



def test_cli_ctrl_c_during_download_says_how_to_go_on(monkeypatch):
    """It printed "Error: Aborted." alone, exit 1."""
    import msrnn_zoo.datasets

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(msrnn_zoo.datasets, "load_dataset", interrupted)
    result = run("download", "moving-mnist", "--source", "standard", ok=False)
    assert result.exit_code == 130 and "run the same command again" in result.output, result.output


def test_the_next_command_after_prepare_quotes_its_path(toy_dataset, raw, tmp_path):
    """`Next: msrnn-zoo data info toy-store --root /tmp/x/g store` was three arguments where one was meant."""
    import shlex

    root = tmp_path / "g store [x]"
    out = run("data", "prepare", "toy-store", "--source", raw, "--root", root).output
    hint = next(line for line in out.splitlines() if "Next:" in line)
    assert hint.endswith(f"Next: msrnn-zoo data info toy-store --root {shlex.quote(str(root.resolve()))}"), out
    run(*shlex.split(hint.split("Next: msrnn-zoo ")[1]))  # the command as printed runs


def test_prepare_in_a_log_leaves_no_blank_line(toy_dataset, raw, tmp_path):
    """Not a terminal: the progress bar's end printed an empty line before "Prepared ..." and before an error."""
    done = run("data", "prepare", "toy-store", "--source", raw, "--root", tmp_path / "s").output
    assert "" not in done.splitlines() and "Prepared toy-store" in done, done
    again = run("data", "prepare", "toy-store", "--source", raw, "--root", tmp_path / "s", ok=False).output
    assert again.startswith("Error: ") and "already holds a prepared toy-store store" in again, again


# ------------------------------------------------------------------------------------------------ the dataset kit
class Careless(Dataset):
    """Clips of a third party's dataset with one mistake, ``mistake``, that train's first-clip check lets through."""

    def __init__(self, mistake: str) -> None:
        self.mistake = mistake

    def __len__(self) -> int:
        return 6 if self.mistake == "len" else 4

    def __getitem__(self, i: int) -> torch.Tensor:
        if i >= 4:
            raise IndexError(i)
        clip = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(i))
        if self.mistake == "size" and i == 3:
            return clip[:, :, :8, :8]
        if self.mistake in ("longer", "unequal") and (self.mistake == "longer" or i == 3):
            return torch.cat([clip, clip[:2]])  # 8 frames, more than the protocol's 6: train reads the first 6
        if self.mistake == "range" and i == 3:
            return clip * 255
        if self.mistake == "random":
            return torch.rand(6, 1, 16, 16)
        return clip.double() if self.mistake == "dtype" else clip


@pytest.mark.parametrize(("mistake", "message"), [
    ("size", "clip 3: its shape is (6, 1, 8, 8)"), ("range", "clip 3: its values lie in"),
    ("random", "differs between two reads"), ("len", "len() is 6 but clip 4 cannot be read"),
    ("dtype", "its dtype is torch.float64"), ("unequal", "clip 3: its shape is (8, 1, 16, 16), but the split's "
                                                         "first clip has (6, 1, 16, 16)"),
    ("longer", None), (None, None)])
def test_the_dataset_kit_finds_what_train_accepts_in_silence(mistake, message):
    from msrnn_zoo.testing import ConformanceError, check_dataset

    class Plugin:
        @msrnn_zoo.hookimpl
        def register_datasets(self, register):
            register(DatasetInfo(name="careless", protocols=(PAPER,), options=()),
                     lambda split, source, root, download, protocol: Careless(mistake))

    plugin = Plugin()
    pm.register(plugin, name="careless-plugin")
    try:
        if message is None:
            check_dataset("careless")
        else:
            with pytest.raises(ConformanceError, match=re.escape(message)):
                check_dataset("careless")
    finally:
        pm.unregister(plugin)
        forget("careless-plugin")


def test_the_dataset_kit_says_when_another_plugin_holds_the_name(toy_dataset, raw, tmp_path):
    from msrnn_zoo.testing import ConformanceError, check_dataset

    class Clash:
        @msrnn_zoo.hookimpl
        def register_datasets(self, register):
            register(INFO, toy_factory)

    plugin = Clash()
    pm.register(plugin, name="zz-clash-plugin")
    try:
        prepare_dataset("toy-store", raw, tmp_path / "store")
        with pytest.raises(ConformanceError, match="zz-clash-plugin registers a dataset of this name too"):
            check_dataset("toy-store", root=tmp_path / "store")
    finally:
        pm.unregister(plugin)
        forget("zz-clash-plugin")


def test_a_store_records_the_versions_that_prepared_it_and_a_newer_ones_says_to_upgrade(tmp_path):
    """A store of a newer plugin lacking an array this one reads was called "written by another version of the
    plugin" with a rebuild to run, and one of a newer store format named no version: which to install was a guess."""
    root = tmp_path / "store"
    prepare_store(root, "toy-store", lambda out: out.save_array("frames", np.zeros((2, 4, 4), np.uint8)))
    data = json.loads((root / STORE_FILE).read_text())
    assert data["written_by"] == {"msrnn-zoo": msrnn_zoo.__version__}  # toy-store: registered by no distribution

    def edited(**changes):
        (root / STORE_FILE).write_text(json.dumps({**data, **changes}))
        return root

    newer_plugin = {"msrnn-zoo": msrnn_zoo.__version__, "msrnn-moving-mnist": "99.0"}
    with pytest.raises(ValueError, match=r"has no array 'flows' \(it has frames\)\. It was written by "
                       r"msrnn-moving-mnist 99\.0, newer than .*`pip install -U msrnn-moving-mnist`\. Or rebuild it "
                       r"with this version"):
        open_store(edited(written_by=newer_plugin), "toy-store").array("flows")
    with pytest.raises(ValueError, match=r"prepared by a newer msrnn-zoo \(store format 9\)\. It was written by "
                       r"msrnn-zoo 99\.0, newer than .*`pip install -U msrnn-zoo`\. Or prepare the data again"):
        open_store(edited(format=9, written_by={"msrnn-zoo": "99.0"}), "toy-store")
    unversioned = {k: v for k, v in data.items() if k != "written_by"}
    (root / STORE_FILE).write_text(json.dumps(unversioned))
    with pytest.raises(ValueError, match="it was written by another version of the plugin: rebuild it with"):
        open_store(root, "toy-store").array("flows")
    assert open_store(root, "toy-store").array("frames").shape == (2, 4, 4)

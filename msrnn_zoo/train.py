"""Training: the paper's recipe, resumable to the bit.

Adam (through timm's optimizer factory) at lr 3e-4; loss = MSE + MAE, each summed over the pixels of a
frame and averaged over frames and batch, on the predictions of frames 1..T-1 (as the original trains),
plus the cell's auxiliary loss if it has one; the cell's own input schedule (scheduled sampling from 1 to 0
over training, or PredRNN-V2's reverse schedule).

Determinism: the batch order of epoch ``e`` comes from a generator seeded with ``(seed, e)`` and the
sampling mask of step ``s`` from one seeded with ``(seed, s)``, so a run resumed from any checkpoint
draws exactly what the uninterrupted run would have drawn.

Under ``torchrun`` (:mod:`msrnn_zoo.distributed`) each of the N processes trains its own B clips of every
global batch of N x B -- the batch one process of batch N x B would draw, cut in N -- with the rows of the
same sampling mask, and DistributedDataParallel averages the gradients: the steps are those of the single
process. Only rank 0 writes the run directory.
"""

from __future__ import annotations

import glob
import json
import math
import os
import pickle
import re
import shlex
import shutil
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import distributed
from .factory import build_config, from_config
from .hub import CONFIG_NAME, WEIGHTS_NAME
from .io import (
    RUN_MARKER,
    OverwriteRefusedError,
    atomic_write,
    check_folder_path,
    check_replaceable,
    default_mode,
    fsync_path,
    hidden_stem,
    json_with,
    make_sibling_dir,
    read_json,
    safetensors_header,
    space_for,
    swap_in,
    write_json,
    write_text,
    written_by_us,
)
from .network import COMPILED_PATHS, FAST_PATHS, GRAPH_PATHS, Forecaster, ForecasterConfig
from .precision import PRECISIONS, autocast, float32_products, grad_scaler
from .sampling import SCHEDULES, get_schedule
from .sampling import progress as schedule_progress
from .validation import MAX_SEED, parse_device, with_cli_message
from .versions import WRITTEN_BY, upgrade_note, upgrade_noted, written_by
from .weights import load_weights, versions_metadata

TRAIN_CONFIG = "train_config.json"
LATEST = "latest.json"
CHECKPOINTS = "checkpoints"
HISTORY = "history.jsonl"
BEST_WEIGHTS_NAME = "model-best.safetensors"
"""The weights of the run's best validation so far (``--weights best``), beside its last ones (``model.safetensors``);
their metadata says which validation (epoch counted from 0, step, val_loss)."""
TRAINING_STATE = "training_state.pt"
CHECKPOINT_NAME = re.compile(r"step-\d{8}")


RUN_LOCK = ".msrnn-zoo-lock"
"""Held while a run trains (new or resumed) or is replaced, and by a replacement while it is built: a second
``train --resume`` of the same run would interleave its steps, and a ``train --force`` would pull the run from under
it."""


OPEN_FILES_PIN_FOLDERS = os.name == "nt"
"""Whether the OS refuses to rename or delete a folder while a file in it is open (Windows): a run's lock, held open
in it, must then be let go before the run is swapped in or dropped; elsewhere it is held through both, so that no
other process takes the run in between."""

_HELD_HERE: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
"""The run locks this process took, by the lock file's absolute path: a run held by a Trainer of this process (a
notebook cell run again while the Trainer of its first run still holds the run) is no other process's doing."""


def _lock_run(run_dir: Path) -> Any:
    """The run's lock, held (an OS lock through ``filelock``: a killed process frees it), or a ``ValueError`` saying
    that another process, or another Trainer of this one, trains this run now."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(run_dir / RUN_LOCK))
    key = str((run_dir / RUN_LOCK).resolve())
    try:
        lock.acquire(timeout=0)
    except Timeout:
        cli = (f"{run_dir} is being trained by another process right now (a `train` into it, a `train --resume` of "
               "it, or a `train --force` replacing it, runs); wait for it to finish, or stop it, first.")
        holder = _HELD_HERE.get(key)
        if holder is None or not holder.is_locked:
            raise ValueError(cli) from None
        here = ValueError(f"{run_dir} is being trained by another Trainer of this Python process (a Trainer.create or "
                          "Trainer.resume of it, such as a notebook cell run before, whose fit() has not run to its "
                          "end); call that Trainer's close() first (or let its fit() finish).")
        here.cli_message = cli  # type: ignore[attr-defined]  # a command trains one run: another process holds it
        raise here from None
    _HELD_HERE[key] = lock
    return lock


def _idle(folder: Path) -> bool:
    """Whether no process holds ``folder``'s run lock (taking it for an instant to know)."""
    try:
        _lock_run(folder).release()
    except (ValueError, OSError):
        return False
    return True


def being_trained(run_dir: str | Path) -> bool:
    """Whether another process (a ``train``) holds the run's lock now: its weights and ``latest.json`` may be replaced
    at any moment. A Trainer of this process trains nothing while the caller runs (``reproduce`` finishes the run its
    resume holds). A run without a lock file (older, or a copy) is taken as idle, and none is created: a run may sit
    in a folder this user cannot write."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_LOCK).is_file():
        return False
    holder = _HELD_HERE.get(str((run_dir / RUN_LOCK).resolve()))
    if holder is not None and holder.is_locked:
        return False
    try:
        _lock_run(run_dir).release()
    except ValueError:
        return True
    except OSError:  # a lock file this user cannot open for writing: nobody of theirs trains the run
        return False
    return False


def interrupted_replacements(run_dir: str | Path) -> list[Path]:
    """The hidden folders that a ``train --force`` (or ``reproduce --force``) of ``run_dir`` killed hard left beside
    it, which no process builds now: its unfinished new run (``.NAME.new-*``), or the old run it had set aside to
    delete (``.NAME.old-*``). A replacement that fails or is interrupted otherwise removes its own."""
    run_dir = Path(run_dir)
    if not run_dir.parent.is_dir():
        return []
    found = []
    for tag in ("new", "old"):
        for folder in sorted(run_dir.parent.glob(f".{glob.escape(hidden_stem(run_dir.name))}.{tag}-*")):
            if folder.is_dir() and not folder.is_symlink() and (folder / RUN_MARKER).is_file() and _idle(folder):
                found.append(folder)
    return found


def _checkpoints_folder(path: Path) -> bool:
    """``checkpoints/`` as :meth:`Trainer.save_checkpoint` leaves it: ``step-NNNNNNNN`` folders (and the hidden one
    being written), each holding the weights and the training state only."""
    if not path.is_dir() or path.is_symlink():
        return False
    for folder in path.iterdir():
        name = folder.name.removeprefix(".").removesuffix(".tmp")
        if not (CHECKPOINT_NAME.fullmatch(name) and folder.is_dir() and not folder.is_symlink()):
            return False
        if any(f.name not in (WEIGHTS_NAME, TRAINING_STATE) or not f.is_file() for f in folder.iterdir()):
            return False
    return True


def refuse_linked_checkpoints(run_dir: Path, keep: int) -> None:
    """A ``ValueError`` before training where a checkpoint of ``run_dir`` is a symbolic link (a user's doing: the
    checkpoint moved to another disk): deleting the old checkpoints would come to it after the next one was saved,
    and a run's pruning must neither follow a link nor delete what it points at."""
    folder = run_dir / CHECKPOINTS
    if not folder.is_dir():
        return
    for path in sorted(folder.iterdir()):
        if CHECKPOINT_NAME.fullmatch(path.name) and path.is_symlink():
            raise ValueError(f"{path} is a symbolic link (to {os.readlink(path)}); training keeps the newest {keep} "
                             "checkpoints and deletes the others, and will not delete through a link: move the link "
                             f"out of {folder} (what it points at stays as it is), then resume again.")


def _history(path: Path) -> bool:
    """The loss log: JSON lines with a step (the last one may be cut short by a kill)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return False
    try:
        return not lines or "step" in json.loads(lines[0])
    except (ValueError, TypeError):
        return False


def best_weights_of(path: Path) -> dict[str, Any] | None:
    """The validation ``path`` (a run's ``model-best.safetensors``) holds the weights of, as its metadata records it
    (``epoch`` counted from 0, ``step``, ``val_loss``); None where it is not such a file."""
    header = safetensors_header(path)
    meta = header.get("__metadata__") if header is not None else None
    try:
        return {"epoch": int(meta["best_epoch"]), "step": int(meta["best_step"]),  # type: ignore[index]
                "val_loss": float(meta["best_val_loss"])}  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None


def validations_since_best(run_dir: Path, step: int) -> int:
    """How many validations in a row, up to ``step``, found no lower validation loss than the best before them, as
    ``history.jsonl`` of ``run_dir`` logs them (what early stopping counts against its patience): the record that says
    whether a run that ended before its epochs was ended by early stopping, not stopped (Ctrl-C, a kill)."""
    try:
        lines = (run_dir / HISTORY).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return 0
    best: float | None = None
    stale = 0
    for line in lines:
        try:
            record = json.loads(line)
            loss, at = float(record["val_loss"]), int(record["step"])
        except (ValueError, KeyError, TypeError):
            continue  # a loss line, or a line cut short by a kill
        if at > step:
            break
        if math.isfinite(loss) and (best is None or loss < best):
            best, stale = loss, 0
        else:
            stale += 1
    return stale


def _json_object_with(*keys: str) -> Callable[[Path], bool]:
    return lambda path: json_with(path, set(keys))


def _written_by_us(what: str) -> Callable[[Path], bool]:
    return lambda path: path.is_file() and written_by_us(path, what)


RUN_FILES: dict[str, Callable[[Path], bool]] = {
    RUN_MARKER: Path.is_file,
    RUN_LOCK: Path.is_file,
    TRAIN_CONFIG: _json_object_with("model", "model_config"),
    CONFIG_NAME: _written_by_us("config"),
    WEIGHTS_NAME: lambda path: safetensors_header(path) is not None,  # copied from a checkpoint: no mark
    BEST_WEIGHTS_NAME: lambda path: best_weights_of(path) is not None,
    HISTORY: _history,
    LATEST: _json_object_with("name", "step"),
    CHECKPOINTS: _checkpoints_folder,
    "README.md": _written_by_us("model card"),
    "metrics-*.json": _written_by_us("metrics file"),
    ".*.tmp": Path.is_file,
    "recipe.json": _json_object_with("recipe", "settings"),
    "profile.json": _json_object_with("parameters"),
    "metrics.png": _written_by_us("picture"),
    "forecast.png": _written_by_us("picture"),
}
"""What msrnn-zoo writes in a run directory (train, evaluate, card, reproduce), each name with how to tell that the
entry is what msrnn-zoo wrote there: ``--force`` replaces a run holding nothing else."""


@dataclass
class TrainConfig:
    """What a run was asked to do; stored in the run directory so ``--resume`` needs nothing else."""

    model: str
    model_config: dict[str, Any]
    dataset: str | None = None
    source: str | None = None
    root: str | None = None
    """The dataset's prepared store (or data root), absolute, so evaluate works from any directory."""
    protocol: str | None = None
    """How clips are cut (the dataset's ``paper``, ``openstl``...); filled with its default when training."""
    data: str | None = None
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    in_frames: int = 10
    out_frames: int = 10
    epochs: int = 1
    batch_size: int = 4
    lr: float = 3e-4
    weight_decay: float = 0.0
    """Adam's L2 penalty, through timm's optimizer factory, which leaves biases and other 1-D weights undecayed
    (``torch.optim.Adam(weight_decay=...)``, as the original would set it, decays them too). Every recipe's is 0."""
    seed: int = 0
    sampling: str | None = None
    max_train_clips: int | None = None
    max_eval_clips: int | None = None
    checkpoint_every: int = 0
    device: str = "cpu"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    keep_checkpoints: int = 2
    """How many of the latest checkpoints stay on disk (the older ones are deleted as new ones complete)."""
    sampling_steps: int | None = None
    """Optimizer steps over which the input schedule runs (scheduled sampling: truth to own forecasts). Fixed
    when the run is created (default: the steps of the epochs asked for then), never recomputed when
    ``--resume`` raises the epochs, so a run extended later continues the schedule it started."""
    grad_checkpointing: bool = False
    precision: str = "fp32"
    channels_last: bool = False
    fast_path: str | None = None
    """``"compile"``, ``"cudagraph"`` or ``"clip-graph"`` (GPU only): see ``Forecaster.set_fast_path``."""
    compile_cells: bool = False
    """Each cell compiled, its gate arithmetic fused: see ``Forecaster.set_compile_cells``."""
    world_size: int = 1
    """Processes the run trains on (torchrun); ``batch_size`` is per process, the global batch is their product."""
    val_every: int | None = None
    """Epochs between two validation losses (0: none), and one after the last epoch, so that over-fitting shows while
    the run trains. ``None``, a new run's default, becomes 0 when the run is made, as the paper trained and as fast as
    a run without it (a quick run of two training clips validated the 200 of Moving MNIST's split each epoch), and 1
    with ``early_stopping``, which counts validations; a record written before this field reads as 0, so that an older
    run resumes as it trained."""
    early_stopping: int = 0
    """Validations in a row without a lower validation loss after which the run stops (0: never, as the paper
    trained); it needs ``val_every``."""

    @classmethod
    def from_dict(cls, data: dict[str, Any], what: str = TRAIN_CONFIG) -> TrainConfig:
        """A config read from JSON; every field's type and range is checked (``ValueError`` naming it).

        Keys it does not know are left out, unless a newer msrnn-zoo (or plugin) wrote it (its
        :data:`~msrnn_zoo.versions.WRITTEN_BY`, no field): they are then settings that version trains with, which a
        resume here would drop in silence, so they are refused with the upgrade to make."""
        from .versions import upgrade_noted

        with upgrade_noted(data):
            return cls._from_fields(data, what)

    @classmethod
    def _from_fields(cls, data: dict[str, Any], what: str) -> TrainConfig:
        from .validation import check_fields
        from .versions import WRITTEN_BY, newer_writers

        check_fields(cls, data, what)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {WRITTEN_BY})
        if unknown and newer_writers(data):
            raise ValueError(f"{what} holds settings this msrnn-zoo does not know: {', '.join(unknown)}.")
        data = {"val_every": 0, **{k: v for k, v in data.items() if k in known}}  # older records: no validation
        if "split_fractions" in data:
            data["split_fractions"] = tuple(data["split_fractions"])
        cfg = cls(**data)
        cfg.validate(what)
        return cfg

    def validate(self, what: str = "training config") -> None:
        """Raise ``ValueError`` for a value no run can use (zero epochs, a batch of 0, a negative rate...)."""
        from .validation import check_fields

        if hasattr(self.data, "shape"):  # clips in memory: "must be a string, got array([[[..." printed them all
            clips: Any = self.data  # (whatever the field's hint says)
            raise ValueError(f"{what}: data is the path of a .npy file of clips, not the clips themselves ("
                             f"{type(clips).__name__} of shape {tuple(clips.shape)}): save them first, "
                             "numpy.save('clips.npy', clips), and pass data='clips.npy'. A run reads its clips again "
                             "from that file to resume, evaluate and predict, which an array in memory cannot be.")
        check_fields(type(self), asdict(self), what)
        at_least_one = {"epochs": self.epochs, "batch_size": self.batch_size, "in_frames": self.in_frames,
                        "out_frames": self.out_frames}
        for name, value in at_least_one.items():
            if value < 1:
                raise ValueError(f"{what}: {name} must be at least 1, got {value}.")
        for name, limit in (("max_train_clips", self.max_train_clips), ("max_eval_clips", self.max_eval_clips)):
            if limit is not None and limit < 1:
                raise ValueError(f"{what}: {name} must be at least 1 (or unset), got {limit}.")
        if self.keep_checkpoints < 1:
            raise ValueError(f"{what}: keep_checkpoints must be at least 1, got {self.keep_checkpoints}.")
        if not -(2**63) <= self.seed <= MAX_SEED:  # what torch.manual_seed takes; beyond, its "Overflow" names nothing
            raise ValueError(f"{what}: seed must be a whole number from 0 to {MAX_SEED}, got {self.seed}.")
        if self.sampling is not None and self.sampling not in SCHEDULES:  # "" read as the cell's own, in silence
            raise ValueError(f"{what}: Unknown sampling schedule {self.sampling!r}; use one of "
                             f"{', '.join(sorted(SCHEDULES))}, or leave it out for the cell's own.")
        if self.sampling_steps is not None and self.sampling_steps < 1:
            raise ValueError(f"{what}: sampling_steps must be at least 1 (or unset), got {self.sampling_steps}.")
        if self.checkpoint_every < 0:
            raise ValueError(f"{what}: checkpoint_every must be 0 (each epoch) or more, got {self.checkpoint_every}.")
        if not self.lr > 0:
            raise ValueError(f"{what}: lr must be a positive number, got {self.lr}.")
        if self.weight_decay < 0:
            raise ValueError(f"{what}: weight_decay must be 0 or more, got {self.weight_decay}.")
        fractions = self.split_fractions
        if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
            raise ValueError(f"{what}: split_fractions must be three non-negative numbers summing to 1 "
                             f"(train,val,test), got {tuple(fractions)}.")
        if self.world_size < 1:
            raise ValueError(f"{what}: world_size must be at least 1, got {self.world_size}.")
        if self.val_every is not None and self.val_every < 0:
            raise ValueError(f"{what}: val_every must be 0 (no validation) or more, got {self.val_every}.")
        if self.early_stopping < 0:
            raise ValueError(f"{what}: early_stopping must be 0 (off) or more, got {self.early_stopping}.")
        if self.early_stopping and self.val_every == 0:
            said = (f"{what}: early stopping ({self.early_stopping}) counts validations, and val_every 0 turns them "
                    "off: ")
            raise with_cli_message(ValueError(f"{said}give val_every 1 or more, or leave early stopping off."),
                                   f"{said}give val_every (--val-every) 1 or more, or leave early stopping off.")
        if self.fast_path not in FAST_PATHS:
            choices = ", ".join("None (no fast path)" if p is None else repr(p) for p in FAST_PATHS)
            raise ValueError(f"{what}: Unknown fast path {self.fast_path!r}; use one of {choices}.")
        if self.compile_cells and self.fast_path in COMPILED_PATHS:
            said = (f"{what}: fast path {self.fast_path!r} compiles the whole step, cells included; compiled cells go "
                    "with fast path clip-graph or none (")
            raise with_cli_message(
                ValueError(f"{said}pass compile_cells=False, or fast_path='clip-graph' or no fast path)."),
                f"{said}drop --compile-cells, or choose --fast-path clip-graph or none).")
        if self.precision not in PRECISIONS:
            raise ValueError(f"{what}: Unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}.")
        if (self.dataset is None) == (self.data is None):
            raise ValueError(f"{what}: give exactly one of dataset (a registered dataset) or data (a clip file).")


def frame_loss(prediction: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """MSE + MAE, each summed over a frame's pixels and channels, averaged over frames and batch."""
    diff = prediction - truth
    return diff.pow(2).sum(dim=(2, 3, 4)).mean() + diff.abs().sum(dim=(2, 3, 4)).mean()


def open_split(cfg: TrainConfig, split: str) -> Dataset:
    """The dataset split a run trains or evaluates on: a registered dataset or the user's clip file."""
    from .data import clips_from_file
    from .datasets import load_dataset

    if cfg.data:
        dataset: Dataset = clips_from_file(cfg.data, split, cfg.split_fractions)
    elif cfg.dataset:
        dataset = load_dataset(cfg.dataset, split=split, source=cfg.source, root=cfg.root, protocol=cfg.protocol,
                               **cfg.dataset_options)
    else:
        raise with_cli_message(
            ValueError('Say what to train on: a registered dataset (dataset="NAME") or your own clips '
                       '(data="clips.npy").'),
            "Say what to train on: a registered dataset (--dataset) or your own clips (--data).")
    limit = cfg.max_train_clips if split == "train" else cfg.max_eval_clips
    if limit is not None and limit < len(dataset):  # type: ignore[arg-type]
        dataset = torch.utils.data.Subset(dataset, range(limit))
    return dataset


def _has_empty_test_split(cfg: TrainConfig) -> bool:
    """Whether the dataset's test split exists and has no clips (one it lacks is the dataset's own design)."""
    try:
        return len(open_split(cfg, "test")) == 0  # type: ignore[arg-type]
    except (ValueError, FileNotFoundError):
        return False


def empty_split_error(cfg: TrainConfig, split: str, consequence: str) -> ValueError:
    """A registered dataset's ``split`` holds no clips (e.g. a store prepared from too few raw files, or prepared
    again since a run trained on it); of the user's clip file, only what it means (its own check gives advice).
    A Python caller (``fit``, ``evaluate_run``) is shown ``describe_dataset``, the command line ``data info``."""
    if not cfg.dataset:
        return ValueError(f"The {split} split of {cfg.data} holds no clips: {consequence}.")
    command = f"msrnn-zoo data info {shlex.quote(str(cfg.dataset))}"
    command += f" --root {shlex.quote(cfg.root)}" if cfg.root else ""
    call = f"msrnn_zoo.datasets.describe_dataset({cfg.dataset!r}" + (f", root={cfg.root!r})" if cfg.root else ")")
    said = (f"The {split} split of {cfg.dataset} ({cfg.protocol or 'its default protocol'}) holds no clips: "
            f"{consequence}. ")
    advice = " shows its clips per split; prepare it from more raw files, or train on another protocol."
    return with_cli_message(ValueError(f"{said}`{call}`{advice}"), f"{said}`{command}`{advice}")


def _empty_test_split_error(cfg: TrainConfig) -> ValueError:
    """The user's split leaves no test clip: how many clips each split got, and a split that gives the test one.

    The advice was always "e.g. 0.8,0.1,0.1", the default, which is what leaves 6 clips without a test clip.
    """
    from .data import load_clip_array, split_clips

    n = len(load_clip_array(str(cfg.data)))
    clips = range(n)
    counts = ", ".join(f"{split} {len(split_clips(clips, split, cfg.split_fractions))}"  # type: ignore[arg-type]
                       for split in ("train", "val", "test"))
    fractions = ",".join(f"{f:g}" for f in cfg.split_fractions)
    said = (f"The split {fractions} leaves the test split of {cfg.data} without clips (of its {n}: {counts}): "
            "`evaluate` and `predict` of the run would have none to score.")
    val = cfg.split_fractions[1]
    for keep in (val, 0.0):  # the user's validation share if it can stay
        for test in (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5):
            shares = (round(1 - keep - test, 10), keep, test)
            if shares[0] > 0 and all(len(split_clips(clips, split, shares)) > 0  # type: ignore[arg-type]
                                     for split in ("train", "test")):
                return with_cli_message(
                    ValueError(f"{said} Give the test split a larger share (split_fractions="
                               f"({', '.join(f'{f:.10g}' for f in shares)})) or give more clips."),
                    f"{said} Give the test split a larger share (--split {','.join(f'{f:.10g}' for f in shares)}) or "
                    "give more clips.")
    return ValueError(f"{said} Give more clips: the run needs at least one to train on and one to test on.")


def check_clip_length(dataset: Dataset, cfg: TrainConfig) -> tuple[int, ...]:
    """The shape of the first clip, checked against what training needs.

    A dataset plugin's items are checked here, on the first clip, for the mistakes that would otherwise train
    silently on wrong values (frames in [0, 255]) or fail deep in the loop (an item that is a (clip, label) pair).
    """
    first = dataset[0]
    if not isinstance(first, torch.Tensor):
        raise ValueError(f"The dataset's items must be clips, tensors (T, C, H, W); its first item is a "
                         f"{type(first).__name__}. Its __getitem__ returns the clip alone (no label, no tuple).")
    if first.dim() != 4:
        raise ValueError(f"Clips must have shape (T, C, H, W), the dataset gives {tuple(first.shape)}.")
    if cfg.dataset and not cfg.data:  # a user's own clips (--data) have no protocol to hold them to
        _check_protocol_shape(cfg.dataset, cfg.protocol, tuple(first.shape[1:]))
    if first.is_floating_point() and first.numel() and not (
            bool(torch.isfinite(first).all()) and float(first.min()) >= 0 and float(first.max()) <= 1):
        raise ValueError(f"The dataset's first clip holds values from {float(first.min()):g} to "
                         f"{float(first.max()):g}, not in [0, 1]: its factory must give frames scaled to [0, 1] "
                         "(frames of 0-255: divide by 255).")
    need = cfg.in_frames + cfg.out_frames
    if first.shape[0] < need:
        said = f"Clips have {first.shape[0]} frames but in_frames + out_frames = {need}; lower "
        raise with_cli_message(ValueError(f"{said}in_frames/out_frames or use longer clips."),
                               f"{said}--in-frames/--out-frames or use longer clips.")
    if cfg.in_frames < 1 or cfg.out_frames < 1:
        raise ValueError(f"in_frames and out_frames must be >= 1, got {cfg.in_frames} and {cfg.out_frames}.")
    return tuple(first.shape)


def _check_protocol_shape(dataset: str, protocol: str | None, shape: tuple[int, ...]) -> None:
    """Clips of another size than their protocol declares train as well, but the run is then compared with
    scores it does not share (and ``data info`` and ``list`` state a size its clips do not have); clips of other
    channels fail later, against a model built for the protocol's, with advice to the user that only the
    plugin's author can follow."""
    from .registry import get_dataset

    entry = get_dataset(dataset)
    declared = entry.info.protocol(protocol)
    channels, height, width = shape
    if (height, width) != (declared.height, declared.width):
        raise ValueError(f"The first clip of {dataset} ({declared.name}) is {height}x{width} (height x width), but "
                         f"its protocol declares {declared.height}x{declared.width}. The dataset's plugin "
                         f"({entry.plugin}) must cut its clips at the size its ClipProtocol declares, or declare the "
                         "size its clips have.")
    if channels != declared.channels:
        raise ValueError(f"The first clip of {dataset} ({declared.name}) has {channels} channel(s), but its protocol "
                         f"declares {declared.channels}. The dataset's plugin ({entry.plugin}) must give clips of the "
                         "channels its ClipProtocol declares, or declare the channels its clips have.")


def _seeded(*parts: int) -> torch.Generator:
    seed = 0
    for p in parts:
        seed = (seed * 1_000_003 + int(p)) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


def epoch_batches(dataset: Dataset, batch_size: int, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1) -> Iterator[torch.Tensor]:
    """The batches of one epoch in their deterministic shuffled order (incomplete last batch dropped).

    With ``world_size`` processes, batch ``j`` of process ``rank`` is the ``rank``-th slice of ``batch_size``
    clips of the global batch ``j`` (``world_size x batch_size`` clips, in the single-process order); each
    process loads only its own clips.
    """
    order = torch.randperm(len(dataset), generator=_seeded(seed, epoch, 1)).tolist()  # type: ignore[arg-type]
    if world_size > 1:
        step = batch_size * world_size
        order = [i for start in range(0, len(order) - step + 1, step)
                 for i in order[start + rank * batch_size : start + (rank + 1) * batch_size]]
    # a generator of its own: the loader draws a seed for its workers when it starts, which from the global generator
    # would shift a cell's dropout in a resumed epoch (started again after the checkpoint's RNG state) against the
    # uninterrupted one
    loader = DataLoader(torch.utils.data.Subset(dataset, order), batch_size=batch_size, shuffle=False,
                        drop_last=True, generator=torch.Generator())
    yield from loader


class _TrainingForward(nn.Module):
    """``forward_train`` as a module's ``forward``: what DistributedDataParallel wraps to average gradients."""

    def __init__(self, model: Forecaster) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.model.forward_train(frames, teacher)


@dataclass
class Progress:
    epoch: int = 0
    batch: int = 0  # batches done in the current epoch
    step: int = 0  # optimizer steps done in total
    losses: list[float] = field(default_factory=list)
    train_clips: int | None = None  # the training split's size when the run was made (None: a checkpoint from before)
    train_fingerprint: str | None = None  # of its first and last clips (train_fingerprint; None: not checked)
    best_val_loss: float | None = None  # the lowest validation loss so far (None: no validation yet)
    best_epoch: int | None = None  # the epoch it came after, counted from 0 as the lines of history.jsonl count
    best_step: int | None = None
    stale_validations: int = 0  # validations since the best one: early stopping compares it with its patience


def best_validation(progress: Progress) -> str:
    """The best validation so far and when it came, as the command line's lines and early stopping's refusal say it."""
    if progress.best_val_loss is None:  # every validation gave NaN or infinity
        return "no validation loss was finite"
    return f"best {progress.best_val_loss:.4f} after epoch {progress.best_epoch + 1}, step {progress.best_step}"  # type: ignore[operator]


def refuse_a_file_for_a_run(run_dir: Path) -> None:
    """A ``NotADirectoryError`` where a run's folder was asked for and a file given (often a file inside the run,
    its ``model.safetensors``), pointing at the run it belongs to: "no run directory; train one with --out" that
    file would be advice that cannot work."""
    if run_dir.is_file():
        run = run_dir.parent
        said = f"{run_dir} is a file, not a run directory: "
        if (run / TRAIN_CONFIG).is_file():
            raise NotADirectoryError(f"{said}its folder {run} is the run; give that.")
        raise with_cli_message(
            NotADirectoryError(f"{said}give the run_dir of an earlier Trainer.create (or `msrnn-zoo train`)."),
            f"{said}give the --out directory of an earlier `msrnn-zoo train`.")


def refuse_a_run_as_model_folder(folder: str | Path, out: str = "another folder") -> None:
    """A ``ValueError`` where a model is to be written into a folder that is a run of ``train``: its
    ``model.safetensors`` is the run's, under its history and checkpoints, so it is never replaced, with or without
    force (``out`` is how the caller names where to write instead)."""
    if (Path(folder) / TRAIN_CONFIG).is_file():
        raise ValueError(f"{folder} is a run of `msrnn-zoo train`: the model written there would replace the run's "
                         f"own weights, with or without force. Write it into a folder of its own ({out}).")


def run_of_checkpoint(folder: Path) -> str:
    """Where ``folder`` is a run's ``checkpoints/`` or one checkpoint in it, a sentence naming that run (the folder a
    command takes; ``--resume`` goes on from the checkpoint ``latest.json`` names); else nothing."""
    checkpoints = folder if folder.name == CHECKPOINTS else folder.parent
    if not (checkpoints.name == CHECKPOINTS and (checkpoints.parent / TRAIN_CONFIG).is_file()):
        return ""
    return f" It is inside the run {checkpoints.parent}: give that folder."


def train_fingerprint(dataset: Dataset) -> str | None:
    """A hash of the first and last training clips, which a checkpoint keeps so that a resume notices data replaced
    by other data of the same size (the count alone catches the rest); two clips read, not the split. None where a
    dataset gives another first clip at each read (drawn at random): such data cannot be checked this way."""
    import hashlib

    count = len(dataset)  # type: ignore[arg-type]
    if count == 0:
        return None
    first = torch.as_tensor(dataset[0]).contiguous()
    if not torch.equal(first, torch.as_tensor(dataset[0])):
        return None
    digest = hashlib.sha256()
    for clip in (first, torch.as_tensor(dataset[count - 1]).contiguous()):
        digest.update(str((tuple(clip.shape), str(clip.dtype))).encode())
        digest.update(clip.cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def check_run_data(cfg: TrainConfig, run_dir: Path) -> None:
    """A ``FileNotFoundError`` naming the run where the clip file it was trained on (``--data``) has gone: "No clip
    file at ...: pass a .npy array" told a user who passed nothing to pass something."""
    if cfg.data and not Path(cfg.data).expanduser().is_file():
        said = (f"{run_dir} was trained on the clips in {cfg.data}, which is no longer there (moved or deleted); its "
                "splits are read from that file: put it back at that path. (")
        raise with_cli_message(
            FileNotFoundError(f"{said}forecast_clip(load_run({str(run_dir)!r})[0], ...) forecasts frames of your own "
                              "without it.)"),
            f"{said}`msrnn-zoo predict {run_dir} --input FRAMES.npy` forecasts frames of your own without it.)")


def require_run(run_dir: str | Path) -> Path:
    """``run_dir`` as a path, if it holds a run to resume; else an error that names the directory in full."""
    run_dir = Path(run_dir)
    refuse_a_file_for_a_run(run_dir)
    if not (run_dir / TRAIN_CONFIG).is_file():
        where = "no such directory" if not run_dir.is_dir() else f"it holds no {TRAIN_CONFIG}"
        said, inside = f"{run_dir} ({run_dir.resolve()}) is not a run: {where}. Resume the ", run_of_checkpoint(run_dir)
        raise with_cli_message(
            FileNotFoundError(f"{said}run_dir of an earlier Trainer.create (or `msrnn-zoo train`).{inside}"),
            f"{said}--out directory of an earlier `msrnn-zoo train`.{inside}")
    return run_dir


def read_train_config(run_dir: Path) -> TrainConfig:
    """The config a run records, each field checked, its errors naming the file in full (several runs may be open)."""
    path = run_dir / TRAIN_CONFIG
    return TrainConfig.from_dict(read_json(path, "run (train_config.json)"), str(path))


def recorded_latest(run_dir: Path) -> dict[str, Any]:
    """The run's ``latest.json`` as it is, or ``{}`` where it cannot be read or is no JSON object: for advice and
    checks that do without it (the resume that needs it refuses a damaged one itself)."""
    try:
        latest = json.loads((run_dir / LATEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return latest if isinstance(latest, dict) else {}


def _processes_of(run_dir: Path) -> int:
    """The processes a run trains on, as its config records them (1 where it cannot be read: advice only)."""
    try:
        processes = json.loads((run_dir / TRAIN_CONFIG).read_text(encoding="utf-8")).get("world_size", 1)
    except (OSError, ValueError, AttributeError):
        return 1
    return processes if isinstance(processes, int) and not isinstance(processes, bool) and processes > 1 else 1


def check_run_dir(run_dir: str | Path, force: bool = False) -> bool:
    """Whether a new run in ``run_dir`` replaces a run there (only with ``force``, only a run of ours); a
    ``FileExistsError`` saying what to do where it may not go. Nothing is written: commands ask it first, before
    they download or prepare anything for the run."""
    run_dir = Path(run_dir)
    check_folder_path(run_dir.parent, f"Cannot make the run directory {run_dir}")  # (run_dir a file: below)
    if not (run_dir.is_symlink() or (run_dir.exists() and not (run_dir.is_dir() and not any(run_dir.iterdir())))):
        return False
    if not force:
        if run_dir.is_dir() and (run_dir / RUN_MARKER).is_file():  # most often: the same command again
            launcher = distributed.launcher(_processes_of(run_dir))
            raise OverwriteRefusedError(
                f"{run_dir} holds a run of msrnn-zoo train already; ",
                python_hint=f"continue it with Trainer.resume({str(run_dir)!r}), choose another directory "
                            "for the new run, or pass force=True to replace it.",
                cli_hint=f"continue it with `{launcher} train --resume {shlex.quote(str(run_dir))}`, choose another "
                         "--out for the new run, or pass --force to replace it.")
        if run_dir.exists() and not run_dir.is_dir():  # "is not empty; choose another directory" named a file
            raise OverwriteRefusedError(
                f"{run_dir} is a file; a run is a directory of its own, so ",
                python_hint="choose a new or empty directory for the run (the file is not replaced).",
                cli_hint="give --out a new or empty directory (the file is not replaced).")
        raise OverwriteRefusedError(
            f"{run_dir} already exists and is not empty; choose another directory for the run, or ",
            python_hint="pass force=True to replace it (only a run made by msrnn-zoo train is replaced).",
            cli_hint="pass --force to replace it (only a run made by msrnn-zoo train is replaced).")
    check_replaceable(run_dir, RUN_FILES)
    return True


class Trainer:
    """Trains a model into a run directory; every checkpoint is a complete, loadable state."""

    def __init__(self, run_dir: str | Path, cfg: TrainConfig, model: Forecaster | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.final_dir: Path | None = None  # set while a new run is built beside the one it will replace
        self._paused: list[Path] = []  # the folders whose locks a fit(stop_after=N) let go, taken again by fit()
        self._locks: list[Any] = []  # run locks (_lock_run) held until fit ends: a new, resumed or replaced run's, and
        # that of the replacement being built beside it
        self.cleared: list[Path] = []  # what an earlier replacement, killed hard, had left beside the run (removed)
        self.left_beside: list[Path] = []  # the same, where no run of ours is there to replace (kept)
        self._stopped: str | None = None  # why fit may not go on, once a fit was stopped by an exception (Ctrl-C)
        self.cfg = cfg
        cfg.validate()
        _check_trainable_together(cfg)
        self.dist, self.device = distributed.setup(parse_device(cfg.device, python="device"))
        if self.dist.world_size != cfg.world_size:
            raise ValueError(f"This run trains on {cfg.world_size} process(es) of batch {cfg.batch_size} each; "
                             f"this job has {self.dist.world_size}. Resume it with the same number "
                             f"(torchrun --nproc_per_node {cfg.world_size} ...; 1: without torchrun).")
        if cfg.data:  # the whole file, before anything is written: a bad clip must not stop a run midway
            from .data import load_clip_array, scan_clip_array

            scan_clip_array(load_clip_array(cfg.data), str(cfg.data), need_frames=cfg.in_frames + cfg.out_frames)
        torch.manual_seed(cfg.seed)
        self.model = (model or from_config(ForecasterConfig.from_dict(cfg.model_config))).to(self.device)
        self.model.set_grad_checkpointing(cfg.grad_checkpointing)
        self.model.set_channels_last(cfg.channels_last)
        self.model.set_compile_cells(False).set_fast_path(cfg.fast_path).set_compile_cells(cfg.compile_cells)
        if self.device.type == "cuda":
            # every clip of a run has one shape, so cuDNN's timing of its algorithms on the first one pays off;
            # the GPU measurements in the README were taken with it
            torch.backends.cudnn.benchmark = True
        self.scaler = grad_scaler(cfg.precision, self.device)
        self.forward_train: Any = self.model.forward_train
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel

            self.forward_train = DistributedDataParallel(
                _TrainingForward(self.model), device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.sampling = cfg.sampling or self.model.cell_class.sampling
        self.schedule = get_schedule(self.sampling)
        from timm.optim import create_optimizer_v2  # (timm imports torchvision: evaluate and predict need neither)

        self.optimizer = create_optimizer_v2(self.model, opt="adam", lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.train_set = open_split(cfg, "train")
        if len(self.train_set) == 0:  # type: ignore[arg-type]  # (the first clip's shape is read next)
            raise empty_split_error(cfg, "training", "there is nothing to train on")
        shape = check_clip_length(self.train_set, cfg)
        self.model.check_size(shape[-2], shape[-1])
        if shape[1] != self.model.config.in_channels:
            raise ValueError(f"The clips have {shape[1]} channel(s) but the model was built for "
                             f"{self.model.config.in_channels}: give it clips of {self.model.config.in_channels} "
                             f"channel(s), or start a new run, whose model takes the clips' channels.")
        global_batch = cfg.batch_size * cfg.world_size
        self.steps_per_epoch = len(self.train_set) // global_batch  # type: ignore[arg-type]
        if self.steps_per_epoch == 0:
            # under torchrun a batch is --batch-size on each process: at --batch-size 1, fewer processes is the way
            several = cfg.world_size > 1
            fewer = ", start fewer processes (torchrun --nproc_per_node)" if several else ""

            def said(batch_size: str) -> str:
                each = f" ({batch_size} {cfg.batch_size} on each of {cfg.world_size} processes)" if several else ""
                return (f"The training split has {len(self.train_set)} clips, fewer than one batch of "  # type: ignore[arg-type]
                        f"{global_batch}{each}; lower {batch_size}{fewer} or give more clips.")

            raise with_cli_message(ValueError(said("batch_size")), said("--batch-size"))
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.sampling_steps = cfg.sampling_steps or self.total_steps
        self.progress = Progress(train_clips=len(self.train_set),  # type: ignore[arg-type]
                                 train_fingerprint=train_fingerprint(self.train_set))
        self.val_set: Dataset | None = None
        self._open_validation()

    def _open_validation(self) -> None:
        """The validation split, checked when the run is made or resumed: a validation asked for and impossible
        is refused here, not after the first epoch. The default (``val_every`` None) is none, or one each epoch
        with early stopping."""
        cfg = self.cfg
        if cfg.val_every is None:
            cfg.val_every = 1 if cfg.early_stopping else 0
        if cfg.val_every == 0:
            return
        fractions = ",".join(f"{f:g}" for f in cfg.split_fractions)
        python_fractions = f"({', '.join(f'{f:g}' for f in cfg.split_fractions)})"

        def lacking(split: str) -> str:
            return (f"the validation split of {cfg.data} ({split}) holds no clips" if cfg.data else
                    f"the validation split of {cfg.dataset} ({cfg.protocol or 'its default protocol'}) holds no clips")

        no_split: str | None = None
        try:
            val_set = open_split(cfg, "val")
        except ValueError as exc:  # a protocol without a validation split (KTH's, TaxiBJ's); a clip file's empty one
            if cfg.dataset:
                no_split = f"{cfg.dataset} ({cfg.protocol or 'its default protocol'}) has no validation split ({exc})"
        else:
            if len(val_set) > 0:  # type: ignore[arg-type]
                check_clip_length(val_set, cfg)
                self.val_set = val_set
                return

        def said(val_every: str, advice: str, split: str, example: str) -> str:
            share = f", or give the validation split a share ({example})" if cfg.data else ""
            asked = (f"Early stopping ({cfg.early_stopping}) needs a validation loss" if cfg.early_stopping else
                     f"A validation loss every {cfg.val_every} epoch(s) was asked for ({val_every})")
            return f"{asked}, but {no_split or lacking(split)}: {advice}{share}."

        raise with_cli_message(
            ValueError(said("val_every", "pass val_every=0 and early_stopping=0 (off)",
                            f"split_fractions={python_fractions}", "split_fractions=(0.8, 0.1, 0.1)")),
            said("--val-every", "pass --val-every 0 without --early-stopping", f"--split {fractions}",
                 "--split 0.8,0.1,0.1"))

    @property
    def stopped_early(self) -> bool:
        """Whether early stopping ended the run before its planned epochs: ``early_stopping`` validations in a row
        without improvement. Reached at the last epoch, the run ended as planned: "ended after epoch 3 of 3" by early
        stopping said a user should raise the patience, where more epochs are what trains it further."""
        return (bool(self.cfg.early_stopping) and self.progress.epoch < self.cfg.epochs
                and self.progress.stale_validations >= self.cfg.early_stopping)

    def stopped_early_said(self, cli: bool = False) -> str:
        """What early stopping did: when it ended the run, after how many validations without improvement, and the
        best one; where ``cli``, in the command line's words (``--early-stopping``) and where the best weights are."""
        p, patience = self.progress, self.cfg.early_stopping
        said = (f"Early stopping ended the run after epoch {p.epoch} of {self.cfg.epochs}: the validation loss has not "
                f"improved in {p.stale_validations} validation(s) ")
        if not cli:
            return f"{said}(early_stopping={patience}; {best_validation(p)})"
        return (f"{said}(--early-stopping {patience}; {best_validation(p)}). The run's weights are its last "
                "epoch's; those of its best validation are kept beside them, for evaluate, predict, card and push "
                "--weights best.")

    @property
    def finished(self) -> bool:
        """Whether the run has nothing left to train: its epochs done, or stopped early."""
        return self.progress.epoch >= self.cfg.epochs or self.stopped_early

    def validation_loss(self) -> float:
        """The training loss of the validation split, the model forecasting as ``evaluate`` does: in eval mode,
        without gradients, the truth fed over the context and its own forecasts after it (no sampling schedule).

        It leaves the training as it was, to the bit: the random generators are set back after it and its loader
        draws from a generator of its own. Under torchrun each process scores every N-th clip and the mean is
        over all clips. It runs on the run's fast path, which records its own clips for it (no gradient, eval mode).
        """
        from .sampling import teacher_forcing

        assert self.val_set is not None
        cfg, length = self.cfg, self.cfg.in_frames + self.cfg.out_frames
        shard = torch.utils.data.Subset(self.val_set, range(self.dist.rank, len(self.val_set),  # type: ignore[arg-type]
                                                            self.dist.world_size))
        loader = DataLoader(shard, batch_size=cfg.batch_size, shuffle=False, generator=torch.Generator())
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)  # summed loss, clips
        devices = [self.device] if self.device.type == "cuda" else []
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad(), float32_products(cfg.precision):
                for clips in loader:
                    frames = clips[:, :length].to(self.device)
                    b = frames.shape[0]
                    teacher = teacher_forcing(b, length, cfg.in_frames, 1.0, torch.Generator()).to(self.device)
                    with autocast(cfg.precision, self.device):
                        prediction, aux = self.model.forward_train(frames, teacher)
                    loss = frame_loss(prediction.float(), frames[:, 1:])
                    if aux is not None:
                        loss = loss + aux.float()
                    totals[0] += loss.double() * b
                    totals[1] += b
        finally:
            self.model.train()
        totals = distributed.mean(self.dist, totals)  # each process's sums over N: their ratio is the global mean
        return float(totals[0] / totals[1])

    def _validate(self, epoch: int, on_validation: Callable[[Trainer, float, bool], None] | None) -> None:
        """Score the validation split after ``epoch`` (counted from 0), keep the best, and log it."""
        loss = self.validation_loss()
        progress = self.progress
        best = math.isfinite(loss) and (progress.best_val_loss is None or loss < progress.best_val_loss)
        if best:
            progress.best_val_loss, progress.best_epoch, progress.best_step = loss, epoch, progress.step
            progress.stale_validations = 0
        else:
            progress.stale_validations += 1
        if self.dist.is_main:
            with space_for(self.run_dir / HISTORY), open(self.run_dir / HISTORY, "a", encoding="utf-8") as log:
                log.write(json.dumps({"epoch": epoch, "step": progress.step, "val_loss": loss}) + "\n")
        if on_validation is not None:
            on_validation(self, loss, best)

    # -------------------------------------------------------------- run directory
    @classmethod
    def create(cls, run_dir: str | Path, cfg: TrainConfig, force: bool = False) -> Trainer:
        """A new run in ``run_dir``, which must be new or empty; ``force`` replaces a run of ours there.

        Everything (config, data, model) is checked before anything is written. A replaced run is not
        deleted first: the new one is built in a hidden directory beside it and swapped in when training
        completes (:meth:`fit`), so a failed or interrupted new run leaves the old one whole.
        """
        run_dir = Path(run_dir)
        replace = check_run_dir(run_dir, force)
        cfg.world_size = distributed.from_env().world_size
        trainer = cls(run_dir, cfg)
        if cfg.data:  # a split is fixed with the run: one with no test clips could never be scored
            try:
                open_split(cfg, "test")
            except ValueError:
                raise _empty_test_split_error(cfg) from None
        elif cfg.dataset and _has_empty_test_split(cfg):  # e.g. a store prepared from too few test frames
            raise empty_split_error(cfg, "test", "`evaluate` and `predict` of the run would have none to score")
        cfg.sampling_steps = trainer.sampling_steps  # fixed from now on: --resume --epochs N does not stretch it
        distributed.barrier(trainer.dist)  # every process has checked the directory before rank 0 writes it
        if not trainer.dist.is_main:
            return trainer
        if replace:
            # held until the new run is swapped in: no `train --resume` of the old one meanwhile
            trainer._locks.append(_lock_run(run_dir))
            try:
                trainer._clear_interrupted_replacements(run_dir)
                trainer.final_dir = run_dir
                trainer.run_dir = make_sibling_dir(run_dir, "new")
                trainer._locks.append(_lock_run(trainer.run_dir))  # marks it as being built, for the next one
            except BaseException:
                trainer._unlock()
                raise
        else:
            trainer.left_beside = interrupted_replacements(run_dir)
        trainer.run_dir.mkdir(parents=True, exist_ok=True)
        if not replace:  # a new run is trained too: a `train --resume` (or --force) of it meanwhile raced this one
            trainer._locks.append(_lock_run(trainer.run_dir))
            if any(entry.name != RUN_LOCK for entry in trainer.run_dir.iterdir()):
                # another `train --out` of the same folder, started at once, trained a run there since the check
                trainer._unlock()
                check_run_dir(run_dir)  # says what is there now, and what to do
                raise OverwriteRefusedError(f"{run_dir} was written by another command while this one got ready; "
                                            "nothing was written. Choose another directory for the run.")
        write_json(trainer.run_dir / RUN_MARKER, {"created_by": "msrnn-zoo train",
                                                  "note": "marks a run that `train --force` may replace"})
        write_json(trainer.run_dir / TRAIN_CONFIG, trainer._record(asdict(cfg)))
        write_json(trainer.run_dir / CONFIG_NAME, trainer._record(trainer.model.config.to_dict()))
        return trainer

    def _clear_interrupted_replacements(self, run_dir: Path) -> None:
        """Remove what an earlier replacement of the run ``run_dir``, killed hard, left beside it: ``run_dir`` is
        about to be replaced by the user's choice, so neither its unfinished successor nor its old copy is wanted.
        A folder holding anything msrnn-zoo did not write is kept, and named."""
        for folder in interrupted_replacements(run_dir):
            try:
                check_replaceable(folder, RUN_FILES)
            except OverwriteRefusedError:
                self.left_beside.append(folder)
                continue
            shutil.rmtree(folder)
            self.cleared.append(folder)

    def _commit(self) -> None:
        """Swap a completed replacement run into the place of the run it replaces."""
        if self.final_dir is not None:
            if self.dist.is_main:
                if OPEN_FILES_PIN_FOLDERS:
                    self._unlock()
                swap_in(self.run_dir, self.final_dir, RUN_FILES)
            self.run_dir, self.final_dir = self.final_dir, None

    def _discard(self) -> None:
        """Drop an unfinished replacement run (the old run was never touched)."""
        if self.dist.is_main and self.final_dir is not None and (self.run_dir / RUN_MARKER).is_file():
            if OPEN_FILES_PIN_FOLDERS:
                self._unlock()
            shutil.rmtree(self.run_dir, ignore_errors=True)

    @classmethod
    def resume(cls, run_dir: str | Path, epochs: int | None = None, device: str | None = None,
               keep_checkpoints: int | None = None, grad_checkpointing: bool | None = None,
               precision: str | None = None, channels_last: bool | None = None,
               fast_path: str | None = None, compile_cells: bool | None = None, val_every: int | None = None,
               early_stopping: int | None = None) -> Trainer:
        """Continue a run from its latest checkpoint: optionally to more epochs, on another device, in another
        precision, or with gradient checkpointing, the channels-last layout, the fast path or compiled cells
        switched (which change memory and time, not the model). ``fast_path="none"`` turns a run's fast path
        off, ``"auto"`` picks it for the device (:func:`auto_fast_path`). ``val_every`` and ``early_stopping``
        change how often it validates and its patience (neither changes a weight): a run that early stopping
        ended goes on only with a larger patience (or 0), and more ``epochs`` if its epochs are done."""
        run_dir = require_run(run_dir)
        data = read_json(run_dir / TRAIN_CONFIG, "run (train_config.json)")
        cfg = TrainConfig.from_dict(data, str(run_dir / TRAIN_CONFIG))
        check_run_data(cfg, run_dir)
        refuse_linked_checkpoints(run_dir, cfg.keep_checkpoints if keep_checkpoints is None else keep_checkpoints)
        planned = cfg.epochs
        if epochs is not None:
            if epochs < cfg.epochs:
                said = f"The run was set up for {cfg.epochs} epochs; "
                raise with_cli_message(ValueError(f"{said}epochs= can only raise that."),
                                       f"{said}--epochs can only raise that.")
            cfg.epochs = epochs
        if device is not None:
            cfg.device = device
        if keep_checkpoints is not None:
            cfg.keep_checkpoints = keep_checkpoints
        if grad_checkpointing is not None:
            cfg.grad_checkpointing = grad_checkpointing
        if precision is not None:
            cfg.precision = precision
        if channels_last is not None:
            cfg.channels_last = channels_last
        if fast_path == "auto":
            fast_path = auto_fast_path(cfg.device, cfg.grad_checkpointing) or "none"
        if fast_path is not None:
            cfg.fast_path = None if fast_path == "none" else fast_path
        if compile_cells is not None:
            cfg.compile_cells = compile_cells
        if val_every is not None:
            cfg.val_every = val_every
        if early_stopping is not None:
            cfg.early_stopping = early_stopping
        _check_trainable_together(cfg)  # the options given with the run's own, before its device is asked for
        _check_resumable_here(cfg, run_dir, device_given=device is not None, fast_path_given=fast_path is not None)
        with upgrade_noted(data):  # a cell option or value a newer cell plugin (or zoo) added
            trainer = cls(run_dir, cfg)
        if trainer.dist.is_main:  # before anything is written (the history rolled back, the config)
            trainer._locks.append(_lock_run(run_dir))
        if cfg.sampling_steps is None:  # a run written before the horizon was stored: it was the planned epochs
            cfg.sampling_steps = trainer.sampling_steps = trainer.steps_per_epoch * planned
        if (run_dir / LATEST).exists():
            trainer.load_checkpoint(trainer.latest_checkpoint())
        elif names := trainer._checkpoint_names():
            # killed after the first checkpoint was renamed into place, before latest.json named it: it is whole (a
            # checkpoint is renamed only once its files are on disk), and training from step 0 instead would delete it
            trainer.load_checkpoint(run_dir / CHECKPOINTS / names[-1])
        if trainer.dist.is_main:
            trainer.rollback_history()
            trainer._keep_best_of_record()
            if not trainer.finished:  # a finished run trains no step: its record keeps what it ran
                write_json(run_dir / TRAIN_CONFIG, trainer._record(asdict(cfg)))
        return trainer

    def _record(self, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` with the versions of msrnn-zoo and of the cell's and dataset's plugins that write it."""
        return {**data, WRITTEN_BY: written_by(cell=self.model.config.cell, dataset=self.cfg.dataset)}

    def latest_checkpoint(self) -> Path:
        """The checkpoint ``latest.json`` names, checked to be a checkpoint directory of this run."""
        pointer = read_json(self.run_dir / LATEST, "checkpoint pointer (latest.json)")
        name = pointer.get("name") if isinstance(pointer, dict) else None
        if not isinstance(name, str) or not CHECKPOINT_NAME.fullmatch(name):
            raise ValueError(f"{self.run_dir / LATEST} is damaged (no checkpoint name like step-00000012 in it); "
                             f"point it at one of {self._checkpoint_names() or 'the checkpoints'} or train again.")
        return self.run_dir / CHECKPOINTS / name

    def _checkpoint_names(self) -> list[str]:
        folder = self.run_dir / CHECKPOINTS
        names = [p.name for p in folder.iterdir() if CHECKPOINT_NAME.fullmatch(p.name)] if folder.is_dir() else []
        return sorted(names)

    def rollback_history(self) -> None:
        """Keep only the loss log lines up to the checkpoint's step: the steps after it will be trained again."""
        path = self.run_dir / HISTORY
        if not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                step = json.loads(line)["step"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by a kill
            if isinstance(step, int) and step <= self.progress.step:
                kept.append(line + "\n")
        write_text(path, "".join(kept))

    def save_checkpoint(self) -> Path:
        """Write weights (safetensors) and training state into a fresh directory, then point ``latest`` at it.

        Every file and the directory holding it are flushed to disk before each rename, so after a crash
        (even of the machine) ``latest.json`` names a complete checkpoint. The newest ``keep_checkpoints``
        stay; older ones are deleted only after the new one is in place.
        """
        name = f"step-{self.progress.step:08d}"
        folder = self.run_dir / CHECKPOINTS
        final = folder / name
        if not self.dist.is_main:  # every process holds the same weights; one writes them
            return final
        tmp = folder / f".{name}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        try:
            with space_for(final):
                tmp.mkdir(parents=True)
                weights = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
                save_file(weights, str(tmp / WEIGHTS_NAME), metadata=versions_metadata(self.model.config.cell))
                state = self._record({"optimizer": self.optimizer.state_dict(), "progress": asdict(self.progress),
                                      "torch_rng": torch.get_rng_state()})
                if self.device.type == "cuda":  # a cell's dropout on the GPU draws from the GPU's own generator
                    state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
                if self.scaler is not None:
                    state["grad_scaler"] = self.scaler.state_dict()
                # into an open file: given a path, torch says a full disk only as "unexpected pos"; this way its
                # error is raised while handling the OSError that says it
                with open(tmp / TRAINING_STATE, "wb") as handle:
                    torch.save(state, handle)
                for path in (tmp / WEIGHTS_NAME, tmp / TRAINING_STATE, tmp):
                    os.chmod(path, default_mode(directory=path.is_dir()))
                    fsync_path(path)
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        except BaseException:  # Ctrl-C or a full disk while it is written: no half-written checkpoint left in the run
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_path(folder)
        # the run's weights before the pointer: killed between the two, a run pointing at its last checkpoint (done,
        # to `--resume`) would keep the weights of the one before for `evaluate` and `push`; the other way round,
        # `--resume` trains the steps after the older checkpoint again, to the same weights
        atomic_write(self.run_dir / WEIGHTS_NAME, lambda p: shutil.copyfile(final / WEIGHTS_NAME, p))
        latest: dict[str, Any] = {"name": name, "step": self.progress.step, "epoch": self.progress.epoch}
        if self.progress.best_val_loss is not None:  # as its line in history.jsonl reads
            latest["best"] = {"epoch": self.progress.best_epoch, "step": self.progress.best_step,
                              "val_loss": self.progress.best_val_loss}
        write_json(self.run_dir / LATEST, latest)
        if self.progress.best_step == self.progress.step and self.progress.best_val_loss is not None:
            # after the pointer: killed between the two, latest.json names this checkpoint, which holds the new best,
            # so the resume from it writes them (_keep_best_of_record), and meanwhile evaluate --weights best refuses
            # the older best's weights (run_weights compares their step with the record's). Written first, a kill
            # left a record naming an older checkpoint, whose best may be pruned: the resume then deleted them
            self._write_best(final / WEIGHTS_NAME)
        kept = [n for n in self._checkpoint_names() if n <= name][-self.cfg.keep_checkpoints :]
        for old in self._checkpoint_names():  # older ones, and any left from steps a resume rolled back
            if old not in kept and not (folder / old).is_symlink():  # a link made during the run: resume refuses it
                shutil.rmtree(folder / old)
        return final

    def _write_best(self, weights: Path) -> None:
        """Keep the checkpoint weights file ``weights`` as the run's best weights, marked with the best validation of
        the run's progress (which they must be the weights of)."""
        from safetensors.torch import load_file

        progress = self.progress
        meta = {"best_epoch": str(progress.best_epoch), "best_step": str(progress.best_step),
                "best_val_loss": repr(progress.best_val_loss), **versions_metadata(self.model.config.cell)}
        tensors = load_file(str(weights))
        with space_for(self.run_dir / BEST_WEIGHTS_NAME):
            atomic_write(self.run_dir / BEST_WEIGHTS_NAME, lambda tmp: save_file(tensors, str(tmp), metadata=meta))

    def _keep_best_of_record(self) -> None:
        """Make the run's best weights those of the best validation its checkpoint records, on resume.

        A resume from an earlier checkpoint than the last (killed while a checkpoint was written; latest.json pointed
        back by hand) may find best weights from the steps after it. Training is deterministic, so the resumed run
        would reach them again, but only where it resumes as it ran: on another device, in another precision, or with
        another --val-every it would not, and meanwhile `evaluate --weights best` and the card would show weights the
        run's record (latest.json) does not name. So they are replaced by the recorded best's checkpoint where it is
        kept, else removed; the resumed run writes them again at its next best validation. A file of that name that is
        no best weights of ours is left alone (``train --force`` names it)."""
        path = self.run_dir / BEST_WEIGHTS_NAME
        held = best_weights_of(path)
        want = self.progress.best_step
        if want is not None and (held is None or held["step"] != want):
            kept = self.run_dir / CHECKPOINTS / f"step-{want:08d}" / WEIGHTS_NAME
            if kept.is_file():
                self._write_best(kept)
                return
        if held is not None and held["step"] != want:
            path.unlink()

    def load_checkpoint(self, path: Path) -> None:
        """Restore weights, optimizer, progress and RNG; a damaged file is a ``ValueError`` that names it."""
        if not (path / WEIGHTS_NAME).is_file() or not (path / TRAINING_STATE).is_file():
            raise FileNotFoundError(f"Checkpoint {path} is incomplete (it needs {WEIGHTS_NAME} and {TRAINING_STATE}); "
                                    f"{self._earlier(path)}")
        try:
            load_weights(self.model, path / WEIGHTS_NAME, device=self.device)
        except ValueError as exc:
            raise ValueError(f"{exc} {self._earlier(path)}") from exc
        state_path = path / TRAINING_STATE
        state: Any = None
        try:
            state = torch.load(state_path, map_location=self.device, weights_only=True)
            progress = Progress(**state["progress"])
            self.optimizer.load_state_dict(state["optimizer"])
            rng = state["torch_rng"].cpu()
            cuda_rng = state.get("cuda_rng") if self.device.type == "cuda" else None  # not in a CPU run's state
            if self.scaler is not None and "grad_scaler" in state:
                self.scaler.load_state_dict(state["grad_scaler"])
        except Exception as exc:  # unpickling a damaged file raises many types; all mean the same to the user
            # (PyTorch's own text for a refused unpickling advises weights_only=False: not for a damaged file)
            detail = "" if isinstance(exc, pickle.UnpicklingError) or not str(exc) else f": {str(exc).splitlines()[0]}"
            note = upgrade_note(state)
            if note:  # read whole, but holding what a newer version writes: not damaged
                raise ValueError(f"{state_path} holds a training state this msrnn-zoo cannot read ({type(exc).__name__}"
                                 f"{detail}).{note}") from exc
            raise ValueError(f"{state_path} is damaged or not a training state msrnn-zoo wrote "
                             f"({type(exc).__name__}{detail}). {self._earlier(path)}") from exc
        clips, fingerprint = self.progress.train_clips, self.progress.train_fingerprint  # of the data now
        changed = None
        if progress.train_clips not in (None, clips):  # the batches of the steps to come would be of other clips
            changed = (f"was trained on {progress.train_clips} training clips, but its data ({{where}}) now gives "
                       f"{clips}")
        elif progress.train_fingerprint not in (None, fingerprint) and fingerprint is not None:
            changed = (f"was trained on {clips} training clips, and its data ({{where}}) still gives {clips}, but "
                       "other ones (its first or last training clip is not the one the run began with)")
        if changed is not None:
            where = self.cfg.data or f"the dataset {self.cfg.dataset} at {self.cfg.root or 'its default root'}"
            raise ValueError(f"{self.run_dir} {changed.format(where=where)}: it changed since the run was made (a "
                             "store prepared again, a clip file replaced), and a resumed run would go on with other "
                             "clips than its checkpoints learnt from. Give it back the data it trained on, or start a "
                             "new run.")
        progress.train_clips, progress.train_fingerprint = clips, fingerprint
        self.progress = progress
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng.cpu(), self.device)

    def _earlier(self, broken: Path) -> str:
        """What to do when the checkpoint ``broken`` cannot be read: name the checkpoints that remain."""
        others = [n for n in self._checkpoint_names() if n != broken.name]
        if others:
            return (f"Earlier checkpoint(s) of this run: {', '.join(others)}; to resume from one, write its name "
                    f"into {self.run_dir / LATEST} as {{\"name\": \"{others[-1]}\"}}.")
        return "No earlier checkpoint is kept; train the run again."

    # -------------------------------------------------------------- the loop
    def train_step(self, clips: torch.Tensor) -> float:
        cfg = self.cfg
        frames = clips[:, : cfg.in_frames + cfg.out_frames].to(self.device)
        b, t = frames.shape[:2]
        progress = schedule_progress(self.sampling, self.progress.step, self.progress.epoch, self.steps_per_epoch,
                                     self.sampling_steps)
        # the mask of the global batch, of which this process trains rows rank*b .. rank*b + b - 1
        teacher = self.schedule(b * self.dist.world_size, t, cfg.in_frames, progress,
                                _seeded(cfg.seed, self.progress.step, 2))[self.dist.rank * b : (self.dist.rank + 1) * b]
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with float32_products(cfg.precision):  # tf32's products in the backward too, which autocast leaves out
            with autocast(cfg.precision, self.device):
                prediction, aux = self.forward_train(frames, teacher.to(self.device))
            loss = frame_loss(prediction.float(), frames[:, 1:])  # the loss in fp32, whatever the precision
            if aux is not None:
                loss = loss + aux.float()
            reported = distributed.mean(self.dist, loss.detach())  # the global batch's loss, on every process
            if self.scaler is None:
                loss.backward()
            else:
                self.scaler.scale(loss).backward()
        # the step's one read from the device, once its backward is queued (a read waits for everything before
        # it), and before the weights change: a bad loss leaves them as they were
        value = reported.item()
        if not math.isfinite(value):
            if self.progress.step == 0:  # no weight was updated yet: no learning rate can be why
                cell = self.model.config.cell

                def first(lr: str, precisions: str) -> str:
                    fp16 = f", and {precisions} rules out an fp16 overflow" if cfg.precision == "fp16" else ""
                    return (f"The loss is {value} at the first step, before any weight was updated, so {lr} is not "
                            f"why: the data holds a value that is not finite, or the cell {cell!r} computes one; "
                            f"msrnn_zoo.testing.run_conformance({cell!r}) checks the cell{fp16}.")

                raise with_cli_message(FloatingPointError(first("lr", "precision='bf16' or 'fp32'")),
                                       first("--lr", "--precision bf16 or fp32"))
            said = f"The loss became {value} at step {self.progress.step}; "
            raise with_cli_message(FloatingPointError(f"{said}lower lr or check the data for outliers."),
                                   f"{said}lower --lr or check the data for outliers.")
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return value

    def fit(self, on_step: Callable[[Trainer, float, float], None] | None = None,
            stop_after: int | None = None,
            on_validation: Callable[[Trainer, float, bool], None] | None = None) -> list[float]:
        """Train to the configured number of epochs, or until early stopping ends the run; ``stop_after`` ends early
        (to test resuming). ``on_validation(trainer, val_loss, best_so_far)`` follows each validation.

        A fit stopped by an exception (Ctrl-C in a notebook) may have stopped between a weight update and its count,
        and has let the run's lock go: calling it again would train on from a state that is no step of the run,
        beside any process that took the run meanwhile. It is refused; the run goes on from its last checkpoint.
        """
        if self._stopped is not None:
            raise RuntimeError(self._stopped)
        self.refuse_finished()
        self._relock()
        try:
            losses = self._fit(on_step, stop_after, on_validation)
        except BaseException as exc:
            if self.final_dir is not None:
                self._stopped = (f"This Trainer's replacement of {self.final_dir} was dropped when its training "
                                 f"stopped ({type(exc).__name__}); make it again with Trainer.create(..., force=True).")
            else:
                self._stopped = (f"This Trainer's training stopped ({type(exc).__name__}) after step "
                                 f"{self.progress.step}, perhaps inside a step: its weights in memory may be ahead of "
                                 "its count. Go on from the run's last checkpoint with "
                                 f"Trainer.resume({str(self.run_dir)!r}).fit().")
            self._discard()
            self._unlock()
            raise
        finished = self.finished
        if finished:
            self._commit()
        held = [Path(lock.lock_file).parent for lock in self._locks]
        self._unlock()
        if not finished:  # fit(stop_after=N): a later fit() trains on, under the same locks
            self._paused = held
        distributed.barrier(self.dist)  # rank 0 has written the last checkpoint before any process moves on
        return losses

    def refuse_finished(self) -> None:
        """A ``ValueError`` where the run has nothing left to train, saying how to train it further: ``fit()`` of a
        finished run (``Trainer.resume(run).fit()`` once its epochs were done) returned its old losses at once, and a
        notebook's user took them for a training that never ran. Its ``cli_message`` says it in ``train``'s flags,
        which calls it before its notes and progress bar."""
        if not self.finished:
            return
        self._unlock()  # as a fit that trained to the end lets the run go: to be resumed further, here or elsewhere
        resume = f"Trainer.resume({str(self.run_dir)!r}"
        if self.stopped_early:
            raise with_cli_message(
                ValueError(f"{self.stopped_early_said()}; nothing was trained. To train it further, resume it with a "
                           f"larger patience, {resume}, early_stopping={self.cfg.early_stopping + 1}) (or 0: off), "
                           "and a larger epochs= if its epochs are done."),
                f"{self.stopped_early_said(cli=True)} To train it further, resume it with a larger --early-stopping "
                "(or 0: off), and a larger --epochs if its epochs are done.")
        said = f"The run already finished its {self.cfg.epochs} epoch(s); "
        raise with_cli_message(
            ValueError(f"{said}nothing was trained. To train it further, resume it with a larger epochs=: {resume}, "
                       f"epochs={self.cfg.epochs + 1}).fit()."),
            f"{said}pass a larger --epochs to train it further.")

    def close(self) -> None:
        """Let this Trainer go without training (further): the run's locks are released, so that the run can be
        resumed or replaced again, in this process too (a notebook cell run again; the Trainer it replaces holds the
        run until its fit ends), and a replacement it was building is dropped, the run it was to replace left as it
        was. Its fit() is refused afterwards; the run goes on with :meth:`resume`."""
        if self.final_dir is not None:
            self._stopped = (f"This Trainer's replacement of {self.final_dir} was dropped by close(); make it again "
                             "with Trainer.create(..., force=True).")
        elif self._stopped is None:
            self._stopped = (f"This Trainer was closed after step {self.progress.step}; go on from the run's last "
                             f"checkpoint with Trainer.resume({str(self.run_dir)!r}).fit().")
        self._discard()
        self._unlock()
        self._paused = []

    def _relock(self) -> None:
        """Take again the locks a fit stopped by ``stop_after`` let go (the run may have been resumed meanwhile,
        by another process or another Trainer of this one: then this fit is refused, as such a resume would be)."""
        folders, self._paused = self._paused, []
        try:
            for folder in folders:
                self._locks.append(_lock_run(folder))
        except BaseException:
            self._unlock()
            self._paused = folders
            raise

    def _unlock(self) -> None:
        """Let the run be resumed again (by this process too: the lock is per open file, not per process)."""
        locks, self._locks = self._locks, []
        for lock in locks:
            lock.release()

    def _fit(self, on_step: Callable[[Trainer, float, float], None] | None, stop_after: int | None,
             on_validation: Callable[[Trainer, float, bool], None] | None = None) -> list[float]:
        cfg = self.cfg
        start = time.perf_counter()
        frames_seen = 0
        while not self.finished:
            batches = epoch_batches(self.train_set, cfg.batch_size, cfg.seed, self.progress.epoch, self.dist.rank,
                                    self.dist.world_size)
            for index, clips in enumerate(batches):
                if index < self.progress.batch:
                    continue  # already trained on before the resume
                loss = self.train_step(clips)
                epoch = self.progress.epoch
                self.progress.step += 1
                self.progress.batch += 1
                self.progress.losses.append(loss)
                epoch_done = self.progress.batch >= self.steps_per_epoch
                if epoch_done:  # one checkpoint per step: the epoch's end is recorded in the step's own checkpoint
                    self.progress.epoch += 1
                    self.progress.batch = 0
                frames_seen += clips.shape[0] * self.dist.world_size * (cfg.in_frames + cfg.out_frames)
                if self.dist.is_main:
                    with space_for(self.run_dir / HISTORY), open(self.run_dir / HISTORY, "a", encoding="utf-8") as log:
                        log.write(json.dumps({"step": self.progress.step, "epoch": epoch, "loss": loss}) + "\n")
                if on_step is not None:
                    on_step(self, loss, frames_seen / max(1e-9, time.perf_counter() - start))
                # every val_every epochs and after the last, whose weights the best weights would otherwise never
                # be compared with (--epochs 5 --val-every 2 validated after epochs 2 and 4 only)
                if epoch_done and cfg.val_every and (self.progress.epoch % cfg.val_every == 0
                                                     or self.progress.epoch >= cfg.epochs):
                    self._validate(epoch, on_validation)  # before the checkpoint, which keeps the best so far
                stop = stop_after is not None and self.progress.step >= stop_after
                if epoch_done or stop or (cfg.checkpoint_every and self.progress.step % cfg.checkpoint_every == 0):
                    self.save_checkpoint()
                if stop:
                    return self.progress.losses
                if epoch_done:
                    break
            else:  # a checkpoint written after an epoch's last batch by an older version: close that epoch
                self.progress.epoch += 1
                self.progress.batch = 0
                self.save_checkpoint()
        return self.progress.losses


def auto_fast_path(device: str, grad_checkpointing: bool = False) -> str | None:
    """What ``fast_path="auto"`` (``train``'s default) picks: recorded clips (``clip-graph``) for a run of one
    process on a GPU, the eager path elsewhere.

    Recorded clips give the eager path's numbers (a clip replays the same kernels in the same order) without the
    launch overhead that leaves a GPU waiting at the paper's sizes; training, resuming and evaluating on them
    passed their tests on an H200. Not chosen where they were never run: several processes (DDP's gradient hooks
    inside a recording) and gradient checkpointing (recomputation inside a recording). Name it to try it there.
    """
    if grad_checkpointing or distributed.from_env().active:
        return None
    return "clip-graph" if _device_type(device) == "cuda" else None


def _check_trainable_together(cfg: TrainConfig) -> None:
    """Refuse options that no training step can run together, before a run is created or its record rewritten.

    Gradient checkpointing with recorded CUDA graphs failed only at the first step on a GPU: a new run was left
    without a checkpoint, and a run resumed with ``--grad-checkpointing`` (to save memory) had its record rewritten
    to the combination first, so that every later resume failed the same way. Not a check of
    :meth:`TrainConfig.validate`, which reads every record: a record written so must still be resumable with one
    of the two turned off.
    """
    if cfg.grad_checkpointing and cfg.fast_path in GRAPH_PATHS:
        said = (f"Gradient checkpointing recomputes each step in the backward pass, which the recorded CUDA graphs of "
                f"fast path {cfg.fast_path!r} cannot do; turn one of them off (")
        raise with_cli_message(
            ValueError(f"{said}grad_checkpointing=False, or no fast path or fast_path='compile')."),
            f"{said}--no-grad-checkpointing, or --fast-path none or compile).")


def _check_resumable_here(cfg: TrainConfig, run_dir: Path, *, device_given: bool, fast_path_given: bool) -> None:
    """Refuse, naming the flags that continue it here, a run whose own device or fast path this machine lacks.

    A run trained on a GPU (where ``train`` records its clips as CUDA graphs by default) and resumed on a machine
    without one was told "--device cuda was asked for", which the user had not typed; given ``--device cpu``, it
    was then told that the 'clip-graph' fast path needs a GPU, without the flag that turns it off.
    """
    graphs = cfg.fast_path in GRAPH_PATHS and not fast_path_given
    if not device_given:
        try:
            parse_device(cfg.device)
        except ValueError:
            here = "cuda" if torch.cuda.is_available() else "cpu"
            off = graphs and here != "cuda"
            flags = f"--device {here}" + (" --fast-path none" if off else "")
            arguments = f"device={here!r}" + (", fast_path='none'" if off else "")
            said = f"{run_dir} was trained on {cfg.device}, which this machine does not have; to continue it here, "
            raise with_cli_message(ValueError(f"{said}resume it with {arguments}."), f"{said}pass {flags}.") from None
    if graphs and _device_type(cfg.device) != "cuda":
        said = (f"{run_dir} runs its clips on the {cfg.fast_path!r} fast path, which records CUDA graphs and needs a "
                f"GPU; to continue it on {cfg.device}, also ")
        raise with_cli_message(ValueError(f"{said}resume it with fast_path='none' (or fast_path='compile')."),
                               f"{said}pass --fast-path none (or --fast-path compile).")


def _device_type(device: str) -> str | None:
    """``torch.device(device).type``, or None for a name that is no device (the run's own check says so)."""
    try:
        return torch.device(device).type
    except (RuntimeError, ValueError, TypeError):
        return None


def auto_channels_last(model: str, device: str) -> bool:
    """What ``train`` picks when not told ``--channels-last`` or ``--no-channels-last``: weights and states in the
    NHWC layout for a run of one process on a GPU whose cell says that layout pays there
    (:attr:`RecurrentCell.gpu_channels_last`), the default layout elsewhere. Under torchrun DDP's gradient
    buckets are laid out like the weights they met first: not tried with NHWC, so not chosen."""
    if distributed.from_env().active or _device_type(device) != "cuda":
        return False
    from .registry import get_cell, get_model

    return get_cell(get_model(model).cell).cell.gpu_channels_last


def complete_train_options(model: str, options: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """``options`` of :func:`new_train_config` checked and completed as ``train`` checks and completes its flags, and
    the frames' channels (the model's ``in_channels``).

    Checked: exactly one of ``dataset`` and ``data``, and nothing the other kind of data would ignore in silence.
    Completed where not given (what is given wins): for a dataset, its protocol (the default one unless named) with
    that protocol's frames and channels, and its data root, absolute; for ``data``, the clip array's channels and
    frames, half of them the context. Shared by ``train`` and Python callers: a notebook's ``new_train_config``
    trained 10 -> 10 frames of 1 channel whatever the dataset, so that Moving MNIST's ``small`` protocol (5 -> 5)
    failed unless its frames were given.
    """
    options = dict(options)
    dataset, data = options.get("dataset"), options.get("data")
    if (dataset is None) == (data is None):
        raise with_cli_message(ValueError('Train on exactly one of dataset="NAME" (a registered dataset) or '
                                          'data="clips.npy" (your own clips).'),
                               "Train on exactly one of --dataset NAME or --data clips.npy.")
    if dataset is None:  # each of these would be ignored in silence by the clips of data
        given = [name for name in ("source", "root", "protocol") if options.get(name) is not None]
        if given:
            one = len(given) == 1
            s, them = ("s", "it") if one else ("", "them")
            raise with_cli_message(
                ValueError(f"{', '.join(f'{name}=' for name in given)} belong{s} to dataset=; data= reads your own "
                           f"clips as they are: leave {them} out."),
                f"{', '.join(f'--{name}' for name in given)} belong{s} to --dataset; --data clips.npy reads your own "
                f"clips as they are: leave {them} out.")
    if options.get("sampling") == "none" and options.get("sampling_steps") is not None:
        raise with_cli_message(
            ValueError('sampling_steps sets how long the input schedule runs, and sampling="none" has no schedule '
                       "(the model sees its own forecasts from the first step): leave one of them out."),
            "--sampling-steps sets how long the input schedule runs, and --sampling none has no schedule (the model "
            "sees its own forecasts from the first step): leave one of them out.")
    if dataset is not None and "split_fractions" in options:
        raise with_cli_message(
            ValueError("split_fractions divides your own clips (data=) into train, val and test; a dataset comes "
                       "split already (its protocol says how): leave split_fractions out."),
            "--split divides your own clips (--data) into train, val and test; a --dataset comes split already (its "
            "--protocol says how): leave --split out.")
    if dataset is not None:
        from .datasets import resolve_root
        from .registry import get_dataset, get_model

        try:
            entry = get_dataset(dataset)
        except ValueError as no_dataset:
            try:
                get_model(model)
            except ValueError as no_model:  # both missing: one message, not a plugin to install per attempt
                raise ValueError(f"{no_model} {no_dataset}") from None
            raise
        protocol = entry.info.protocol(options.get("protocol"))
        options["protocol"] = protocol.name
        for name, default in (("in_frames", protocol.in_frames), ("out_frames", protocol.out_frames)):
            if options.get(name) is None:
                options[name] = default
        if options.get("root") is not None or entry.capabilities.prepare is not None:
            options["root"] = str(resolve_root(entry, options.get("root")).resolve())
        return options, protocol.channels
    if not isinstance(data, (str, os.PathLike)):  # clips in memory: validate refuses them, saying how to save them
        return options, 1
    from .data import load_clip_array

    array = load_clip_array(data)
    length = int(array.shape[1])
    if options.get("in_frames") is None:
        options["in_frames"] = max(1, length // 2)
    if options.get("out_frames") is None:
        options["out_frames"] = max(1, length - options["in_frames"])
    return options, int(array.shape[2])


def _refuse_unknown_options(options: dict[str, Any]) -> None:
    """A ``ValueError`` naming an argument that :class:`TrainConfig` lacks, with the one meant: a model's setting
    given beside the training's (``hidden_channels=4``) or a typo (``epoch=2``) was a bare ``TypeError`` of
    ``TrainConfig.__init__``, which said neither that model settings go in ``model_options`` nor what was meant."""
    import difflib

    known = [f.name for f in fields(TrainConfig) if f.name not in ("model", "model_config")]
    for name in options:
        if name in known:
            continue
        if name == "model_config":
            raise ValueError("new_train_config builds the model's config from model_options (hidden_channels, "
                             "num_layers, a cell's options...): give those there, not model_config=.")
        close = difflib.get_close_matches(name, known, n=1)
        if close:
            raise ValueError(f"new_train_config takes no {name}=; did you mean {close[0]}=?")
        raise ValueError(f"new_train_config takes no {name}= of its own; a model's settings go in model_options "
                         f"(model_options={{{name!r}: ...}}), the training's are: {', '.join(known)}.")


def new_train_config(model: str, *, model_options: dict[str, Any] | None = None, **options: Any) -> TrainConfig:
    """A TrainConfig for ``model``, checked and completed as ``train`` does (:func:`complete_train_options`: the
    dataset's protocol, frames and channels, or those of the clips of ``data``, where not given); the model config
    is built (and validated) here, once, and so is the whole config (``epochs=0`` is refused here, not later).

    ``data`` and ``root`` may be given as ``Path`` objects or relative to the working directory: they are recorded
    absolute, as ``train`` records them, since the run reads its data again from there to resume, evaluate and
    predict, from whatever directory that is done.

    ``fast_path="none"`` is ``None`` and ``"auto"`` picks it for the device (:func:`auto_fast_path`), as
    :meth:`Trainer.resume` and ``train --fast-path`` take them: ``"none"`` was refused with a list that named it.
    """
    _refuse_unknown_options(options)
    for name in ("data", "root"):
        if isinstance(options.get(name), (str, os.PathLike)):
            if not os.fspath(options[name]).strip():  # resolved, "" was the working directory, read in silence
                what = ("a .npy file of clips" if name == "data" else
                        "the dataset's store or data root, or leave root out for its default")
                raise ValueError(f"{name}= is empty; give the path of {what}.")
            options[name] = str(Path(options[name]).expanduser().resolve())
    options, channels = complete_train_options(model, options)
    if options.get("fast_path") == "none":
        options["fast_path"] = None
    elif options.get("fast_path") == "auto":
        options["fast_path"] = auto_fast_path(options.get("device") or TrainConfig.device,
                                              bool(options.get("grad_checkpointing")))
    config = build_config(model, **{"in_channels": channels, **(model_options or {})})
    cfg = TrainConfig(model=model, model_config=config.to_dict(), **options)
    cfg.validate()
    return cfg

"""Datasets: what a dataset plugin declares, and the user's own clips as a dataset.

Every dataset yields clips as float tensors ``(T, C, H, W)`` in [0, 1]; the first ``in_frames`` are the
context and the next ``out_frames`` the future to forecast. A plugin describes itself with a
:class:`DatasetInfo` (data, shown by ``msrnn-zoo list``) and a factory that builds a split. How clips are
cut from the same files is a :class:`ClipProtocol`; a dataset declares one or more (``paper``: the MS-RNN
code's settings, ``openstl``: the field's benchmark settings), so users can compare against either
without the core ever knowing which dataset it holds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .validation import with_cli_message

if TYPE_CHECKING:
    from .metrics import Baseline, ScoreAccumulator, ScoreContext
    from .store import Store, StoreWriter

SPLITS = ("train", "val", "test")
DEFAULT_PROTOCOL = "paper"


@dataclass(frozen=True)
class ClipProtocol:
    """One way of cutting clips from a dataset's files, and where each of its settings comes from.

    ``provenance`` maps a setting (``"in_frames"``, ``"size"``, ``"stride"``...) to its source (a file and
    line of the code it follows, a paper's section), so a reader can check every number against its origin.
    """

    name: str
    in_frames: int
    out_frames: int
    channels: int
    height: int
    width: int
    description: str
    provenance: Mapping[str, str] = field(default_factory=dict)
    splits: tuple[str, ...] = SPLITS
    """The splits this protocol defines; asking another one is an error that lists these."""

    def __post_init__(self) -> None:
        for what in ("in_frames", "out_frames", "channels", "height", "width"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"protocol {self.name!r}: {what} must be a positive integer, got {value!r}")
        unknown = [s for s in self.splits if s not in SPLITS]
        if unknown or not self.splits:
            raise ValueError(f"protocol {self.name!r}: splits must be some of {', '.join(SPLITS)}, got {self.splits}")

    @property
    def frames(self) -> int:
        return self.in_frames + self.out_frames

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "in_frames": self.in_frames, "out_frames": self.out_frames,
                "channels": self.channels, "height": self.height, "width": self.width,
                "description": self.description, "provenance": dict(self.provenance), "splits": list(self.splits)}


@dataclass(frozen=True)
class Scaling:
    """How a dataset's [0, 1] values map back to physical units, so scores can be read in those units.

    ``inverse(values, params)`` takes a tensor in [0, 1] and the parameters the prepared store recorded
    (``StoreWriter.meta["scaling"]``: e.g. a min and max fitted on the training split; ``{}`` when the
    scaling is a fixed formula or the dataset has no store) and returns physical values.
    """

    unit: str
    inverse: Callable[[torch.Tensor, Mapping[str, Any]], torch.Tensor]
    description: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is: its protocols (clip geometry), where its data can come from, and how to cite it."""

    name: str
    protocols: tuple[ClipProtocol, ...]
    default_protocol: str = DEFAULT_PROTOCOL
    sources: tuple[str, ...] = ()
    """Named variants of where clips come from (Moving MNIST: synthetic, generated, standard); empty for a
    dataset read from one prepared store."""
    default_source: str | None = None
    drawn_sources: tuple[str, ...] = ()
    """Those of ``sources`` that are drawn on the fly from nothing downloaded (Moving MNIST: synthetic), so
    that ``msrnn-zoo download`` can say there is nothing to fetch instead of reporting clips it never wrote."""
    options: tuple[str, ...] | None = None
    """The keyword options the factory takes besides split, source, root, download and protocol (Moving MNIST:
    num_clips, seed). Declared, ``load_dataset`` refuses any other by name: factories take the standard arguments
    they do not use through ``**ignored``, which also swallowed a typo (``num_clip=3`` gave every clip). ``None``:
    undeclared, every option goes to the factory unchecked."""
    description: str = ""
    url: str = ""
    license: str = ""
    citation: str = ""
    scaling: Scaling | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [p.name for p in self.protocols]
        if not names:
            raise ValueError(f"dataset {self.name!r} declares no protocol; give at least one ClipProtocol")
        if len(set(names)) != len(names):
            raise ValueError(f"dataset {self.name!r} declares a protocol name twice: {names}")
        if self.default_protocol not in names:
            raise ValueError(f"dataset {self.name!r}: default protocol {self.default_protocol!r} is not one of "
                             f"{', '.join(names)}")
        if self.sources and self.default_source not in self.sources:
            raise ValueError(f"dataset {self.name!r}: default source {self.default_source!r} is not one of "
                             f"{', '.join(self.sources)}")
        strays = [s for s in self.drawn_sources if s not in self.sources]
        if strays:
            raise ValueError(f"dataset {self.name!r}: drawn source(s) {', '.join(map(repr, strays))} not among its "
                             f"sources ({', '.join(self.sources) or 'none'}); list them in sources too")

    def protocol(self, name: str | None = None) -> ClipProtocol:
        """The protocol called ``name`` (the default one for ``None``); an unknown name lists the known."""
        name = name or self.default_protocol
        for protocol in self.protocols:
            if protocol.name == name:
                return protocol
        raise ValueError(f"Dataset {self.name!r} has no protocol {name!r}; its protocols: "
                         f"{', '.join(p.name for p in self.protocols)}.")

    # The default protocol's geometry, for code that only needs "the" clip shape.
    @property
    def in_frames(self) -> int:
        return self.protocol().in_frames

    @property
    def out_frames(self) -> int:
        return self.protocol().out_frames

    @property
    def channels(self) -> int:
        return self.protocol().channels

    @property
    def height(self) -> int:
        return self.protocol().height

    @property
    def width(self) -> int:
        return self.protocol().width

    @property
    def frames(self) -> int:
        return self.protocol().frames


DatasetFactory = Callable[..., Dataset]
"""``factory(split=..., source=..., root=Path, download=bool, protocol=str, **options) -> Dataset`` of clips.

``root`` is the prepared store for a dataset that has a ``prepare`` capability, the data root otherwise."""

ProgressFn = Callable[[str, int, int], None]
"""``progress(task, done, total)``: what ``prepare`` reports as it goes (the CLI draws a bar per task)."""

PrepareFn = Callable[[Path, "StoreWriter", ProgressFn], None]
"""``prepare(source, out, progress)``: read the raw public files under ``source`` and write arrays and
``out.meta`` into the store being built. The core owns the temporary folder, the rename and ``--force``."""

DescribeFn = Callable[["Store"], dict[str, Any]]
"""``describe(store) -> {name: JSON-able value}``: frame statistics and anything else ``data info`` shows."""

ScoresFn = Callable[["ScoreContext"], "ScoreAccumulator"]
"""``scores(context) -> accumulator``: the dataset's own scores, added to every forecaster ``evaluate`` scores."""


@dataclass(frozen=True)
class DatasetCapabilities:
    """Optional things a dataset can do beyond building splits; all given at registration as keywords."""

    prepare: PrepareFn | None = None
    describe: DescribeFn | None = None
    scores: ScoresFn | None = None
    baselines: Mapping[str, Baseline] = field(default_factory=dict)
    """Forecasters ``fn(context, horizon) -> forecast`` that ``evaluate`` scores beside copy-last-frame."""


def default_root() -> Path:
    """Where datasets live unless told otherwise: ``$MSRNN_ZOO_DATA`` or ``~/.cache/msrnn_zoo/datasets``.

    A ``~`` in the variable is the home folder: set where no shell expands it (a quoted value, a ``.env`` file,
    a service's environment), it made a folder named ``~`` in the current one.
    """
    env = os.environ.get("MSRNN_ZOO_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "msrnn_zoo" / "datasets"


def to_unit_float(array: np.ndarray, what: str) -> np.ndarray:
    """Frames as float32 in [0, 1]: uint8 is scaled by 1/255, floats must already lie in [0, 1]."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{what}: frames must be uint8 (0..255) or float in [0, 1], got dtype {array.dtype}.")
    array = array.astype(np.float32, copy=False)
    if array.size == 0:  # (no values to range-check; min() of nothing is an error of NumPy's)
        return array
    if not np.isfinite(array).all():
        raise ValueError(f"{what}: the frames contain NaN or Inf; clean them before training or forecasting.")
    lo, hi = float(array.min()), float(array.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{what}: float frames must lie in [0, 1], found values in [{lo:.3g}, {hi:.3g}]; "
            "rescale them (or pass uint8 0..255)."
        )
    return array


def read_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """One array from an ``.npy`` file, or a ``ValueError`` that says what the file is instead: NumPy reads an
    ``.npz`` archive as a mapping and takes any other file for pickled data, with advice to unpickle it."""
    with path.open("rb") as handle:
        magic = handle.read(6)
    if magic.startswith(b"PK\x03\x04"):
        raise ValueError(f"{path} is an .npz archive of several arrays; save the clips as one array with "
                         "numpy.save('clips.npy', array) and pass that.")
    if magic != b"\x93NUMPY":
        raise ValueError(f"{path} is not an .npy file (it does not begin with NumPy's header); save the clips with "
                         "numpy.save('clips.npy', array).")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable .npy array of numbers ({' '.join(str(exc).split())}); save the "
                         "clips as uint8 or float with numpy.save.") from exc


MAX_CHANNELS_LAST = 4
"""A last axis this short under a longer channel axis is channels (grey, RGB, RGBA), not the frames' width."""


def load_clip_array(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a user's ``.npy`` clips as (N, T, C, H, W); (N, T, H, W) gains a channel axis."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No clip file at {path}: pass a .npy array of shape (N, T, C, H, W) or (N, T, H, W).")
    array = read_npy(path, mmap=True)
    if array.ndim == 4:
        array = array[:, :, None]
    if array.ndim != 5:
        raise ValueError(
            f"{path}: expected an array of shape (N, T, C, H, W) or (N, T, H, W), got shape {tuple(array.shape)}."
        )
    if array.shape[-1] <= MAX_CHANNELS_LAST < array.shape[2]:  # a frame a few pixels wide, of many channels
        h, w, c = array.shape[2:]
        raise ValueError(f"{path}: shape {tuple(array.shape)} reads as {h} channels of {w}x{c}-pixel frames; it looks "
                         f"like (N, T, H, W, C), channels last, as images are usually stored. Save it as (N, T, C, H, "
                         "W): numpy.save(path, array.transpose(0, 1, 4, 2, 3)).")
    return array


def scan_clip_array(array: np.ndarray, what: str, *, need_frames: int = 1, chunk_bytes: int = 1 << 26) -> None:
    """Check a whole clip array before anything is written: shape, dtype, emptiness, then every value.

    Training reads clips one by one; a NaN in clip 9000 would otherwise stop a run hours in. The scan reads
    the array in chunks of about ``chunk_bytes`` (a memory-mapped file is never loaded whole). uint8 needs
    no value check: every byte is a valid pixel.
    """
    if array.ndim != 5:
        raise ValueError(f"{what}: expected clips of shape (N, T, C, H, W) or (N, T, H, W), got {tuple(array.shape)}.")
    n, t, c, h, w = array.shape
    if n == 0:
        raise ValueError(f"{what} holds no clips (N = 0).")
    if min(t, c, h, w) == 0:
        raise ValueError(f"{what}: clips of shape (T, C, H, W) = {(t, c, h, w)} hold no pixels.")
    if t < need_frames:
        said = f"{what}: clips have {t} frames, fewer than the {need_frames} the run needs "
        raise with_cli_message(ValueError(f"{said}(in_frames + out_frames); lower in_frames/out_frames or use "
                                          "longer clips."),
                               f"{said}(in-frames + out-frames); lower --in-frames/--out-frames or use longer clips.")
    if array.dtype == np.uint8:
        return
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{what}: frames must be uint8 (0..255) or float in [0, 1], got dtype {array.dtype}.")
    per_clip = max(1, array[0].nbytes)
    step = max(1, chunk_bytes // per_clip)
    lo, hi = np.inf, -np.inf
    for start in range(0, n, step):
        block = np.asarray(array[start : start + step])
        finite = np.isfinite(block)
        if not finite.all():
            first = start + int(np.argwhere(~finite)[0][0])
            raise ValueError(f"{what}: clip {first} contains NaN or Inf; clean the data before training.")
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{what}: float frames must lie in [0, 1], found values in [{lo:.3g}, {hi:.3g}]; "
                         "rescale them (or pass uint8 0..255).")


class ClipArrayDataset(Dataset):
    """Clips held in one array (N, T, C, H, W), uint8 or float in [0, 1], e.g. a user's ``--data clips.npy``."""

    def __init__(self, array: np.ndarray, name: str = "clips") -> None:
        if array.ndim != 5:
            raise ValueError(f"{name}: clips must have shape (N, T, C, H, W), got {tuple(array.shape)}.")
        if len(array) == 0:
            raise ValueError(f"{name}: no clips in this split; give more clips or change the split fractions.")
        self.array = array
        self.name = name

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: int) -> torch.Tensor:
        clip = np.ascontiguousarray(to_unit_float(np.asarray(self.array[index]), f"{self.name}[{index}]"))
        # a float32 file is memory-mapped read-only and comes back as it is: a tensor over it would be read-only
        # too, which PyTorch warns of (to the user, once per run); one clip's copy is cheap
        return torch.from_numpy(clip if clip.flags.writeable else clip.copy())


def split_clips(array: np.ndarray, split: str, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> np.ndarray:
    """The contiguous block of clips belonging to ``split``: deterministic, so train and test never mix."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {', '.join(SPLITS)}.")
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"Split fractions must be three non-negative numbers summing to 1, got {fractions}.")
    n = len(array)
    n_train = round(fractions[0] * n)
    n_val = round(fractions[1] * n)
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}
    lo, hi = bounds[split]
    return array[lo:hi]


def clips_from_file(path: str | Path, split: str,
                    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> ClipArrayDataset:
    """A split of the user's own clip file as a dataset."""
    array = load_clip_array(path)
    return ClipArrayDataset(split_clips(array, split, fractions), name=f"{Path(path).name}:{split}")

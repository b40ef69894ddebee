"""Prepared stores: a dataset's raw public files decoded once into memory-mapped arrays.

A store is a folder holding ``store.json`` and the data folder it names (``data-XXXXXXXX/``, ``.npy``
arrays). ``store.json`` is written last and atomically, so a load trusts only a store that was finished:
an interrupted ``prepare`` leaves a hidden ``.prepare-*`` folder (marked as ours) that the next run clears.
Rebuilding with ``force`` writes the new data folder beside the old one and switches ``store.json`` to it
before the old one is removed, so a kill at any moment leaves one complete store in charge.

Only what the zoo wrote is ever deleted: ``store.json``, the data folders it named and folders holding
our marker. A root with anything else in it is refused, even with ``force``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .io import file_at_or_above, space_for, write_json
from .validation import with_cli_message
from .versions import WRITTEN_BY, upgrade_note, written_by

try:  # POSIX: a prepare locks its root, so that a second one into it is refused instead of racing it
    import fcntl
except ImportError:  # Windows: unlocked, as before
    fcntl = None  # type: ignore[assignment]

STORE_FILE = "store.json"
STORE_FORMAT = 1
MARKER = ".msrnn-zoo-unfinished"
"""Present in a data folder until ``store.json`` names it (or after it was retired): ours to delete."""
_TMP_PREFIX = ".prepare-"
_DATA_NAME = re.compile(r"data-[0-9a-f]{8}")
_NOT_IN_NAMES = re.compile(r'[<>:"|?*\x00-\x1f]')
"""Characters Windows forbids in a file name (besides the separators, refused everywhere)."""
E = TypeVar("E", bound=BaseException)


def _root(root: str | Path) -> Path:
    return Path(root).expanduser().resolve()


def prepare_command(dataset: str, root: Path | str) -> str:
    return f"msrnn-zoo data prepare {dataset} --source RAW_FILES --root {root}"


def prepare_call(dataset: str, root: Path | str, *, source: Path | str = "RAW_FILES", force: bool = False) -> str:
    """``prepare_command`` as a Python caller writes it: ``load_dataset`` and ``prepare_dataset`` reach every refusal
    of this module, and a notebook was told to run `msrnn-zoo data prepare ... --root ...`. A path is quoted, a
    ``str`` is a placeholder (``RAW_FILES``, ``NEW_FOLDER``) written as it is."""
    def argument(value: Path | str) -> str:
        return repr(str(value)) if isinstance(value, Path) else str(value)

    return (f"prepare_dataset({dataset!r}, source={argument(source)}, root={argument(root)}"
            f"{', force=True' if force else ''})")


def _prepare(dataset: str, root: Path | str, cli: bool, *, force: bool = False) -> str:
    """The call that builds ``dataset``'s store at ``root``, in backquotes: the command (``cli``) or the function."""
    if cli:
        return f"`{prepare_command(dataset, root)}{' --force' if force else ''}`"
    return f"`{prepare_call(dataset, root, force=force)}`"


def _argument(name: str, cli: bool, value: Path | None = None) -> str:
    """``--root PATH`` for the command line, ``root='PATH'`` for Python (``--root``/``root=`` without a value)."""
    if value is None:
        return f"--{name}" if cli else f"{name}="
    return f"--{name} {value}" if cli else f"{name}={str(value)!r}"


def _refusal(kind: Callable[[str], E], say: Callable[[bool], str]) -> E:
    """``kind(say(False))``, in a Python caller's words, carrying ``say(True)``, the command line's, as its
    ``cli_message`` (see :func:`~msrnn_zoo.validation.with_cli_message`)."""
    return with_cli_message(kind(say(False)), say(True))


@dataclass(frozen=True)
class Store:
    """A finished store: its dataset, the plugin's metadata and its memory-mapped arrays."""

    root: Path
    dataset: str
    data_dir: Path
    meta: dict[str, Any]
    arrays: dict[str, dict[str, Any]]
    """``{name: {"shape": [...], "dtype": "uint8"}}`` as written, checked on every open."""
    written_by: dict[str, str] = field(default_factory=dict)
    """The versions of msrnn-zoo and of the dataset's plugin that prepared it (:mod:`msrnn_zoo.versions`); empty
    for a store prepared before they were recorded."""

    def array(self, name: str) -> np.ndarray:
        """Array ``name`` memory-mapped read-only: nothing is read from disk until a clip asks for it."""
        if name not in self.arrays:
            from .versions import WRITTEN_BY, upgrade_note

            note = upgrade_note({WRITTEN_BY: self.written_by})

            def no_array(cli: bool) -> str:
                rebuild = _prepare(self.dataset, self.root, cli, force=True)
                return (f"The {self.dataset} store at {self.root} has no array {name!r} (it has "
                        f"{', '.join(sorted(self.arrays)) or 'none'})"
                        + (f".{note} Or rebuild it with this version: {rebuild}." if note else
                           f"; it was written by another version of the plugin: rebuild it with {rebuild}."))
            raise _refusal(ValueError, no_array)
        path = self.data_dir / f"{name}.npy"
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            damage = f"{path} is damaged ({exc}); rebuild the store with "
            raise _refusal(ValueError, lambda cli: f"{damage}"
                           f"{_prepare(self.dataset, self.root, cli, force=True)}.") from exc
        record = self.arrays[name]
        if list(array.shape) != list(record["shape"]) or str(array.dtype) != record["dtype"]:
            raise _refusal(ValueError, lambda cli: f"{path} holds {array.dtype} {tuple(array.shape)} but the store "
                           f"recorded {record['dtype']} {tuple(record['shape'])}; rebuild it with "
                           f"{_prepare(self.dataset, self.root, cli, force=True)}.")
        return array

    def mapped(self, name: str) -> MappedArray:
        """Array ``name`` as a handle a DataLoader worker can receive: mapped here now, pickled as its path only."""
        return MappedArray(self.root, self.dataset, name, self.array(name))


class MappedArray:
    """A store array that every process maps for itself on first use.

    A memmap pickles as a full copy of its data, so a dataset holding one would ship gigabytes to each
    DataLoader worker; this handle pickles as (root, dataset, name) and the worker reopens the store,
    with the same checks as :meth:`Store.array`.
    """

    def __init__(self, root: Path, dataset: str, name: str, array: np.ndarray | None = None) -> None:
        self.root, self.dataset, self.name = Path(root), dataset, name
        self._array = array

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = open_store(self.root, self.dataset).array(self.name)
        return self._array

    @property
    def is_mapped(self) -> bool:
        """Whether this process has mapped the file yet (false right after unpickling)."""
        return self._array is not None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}

    def __repr__(self) -> str:
        return f"MappedArray({str(self.root)!r}, {self.dataset!r}, {self.name!r})"


@dataclass
class StoreWriter:
    """What a plugin's ``prepare`` writes into: arrays in a temporary folder, plus ``meta``.

    Only arrays, each recorded in ``store.json``: so a rebuild can tell the store's files from anything a user
    put in its data folder, and refuse rather than delete the latter.

    ``meta`` is any JSON-able dict (the clip index, fitted scaling under ``meta["scaling"]``...). Sentences under
    ``meta["notes"]`` are what the raw files held that the store leaves out or changes (ranges cut at a video's
    end...): ``msrnn-zoo data prepare`` shows them after its summary, so nothing is dropped without a word.
    """

    dir: Path
    dataset: str
    meta: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, dict[str, Any]] = field(default_factory=dict)

    def create_array(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.memmap:
        """A writable memory-mapped ``.npy`` to fill piece by piece (frames larger than memory stay on disk)."""
        self._check_name(name)
        array = np.lib.format.open_memmap(self.dir / f"{name}.npy", mode="w+", dtype=dtype, shape=tuple(shape))
        _reserve(self.dir / f"{name}.npy")
        self.arrays[name] = {"shape": [int(n) for n in shape], "dtype": str(np.dtype(dtype))}
        return array

    def save_array(self, name: str, array: np.ndarray) -> None:
        self._check_name(name)
        np.save(self.dir / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        self.arrays[name] = {"shape": [int(n) for n in array.shape], "dtype": str(array.dtype)}

    def _check_name(self, name: str) -> None:
        """A name the store's file can carry on every system it may be copied to: a name with a character Windows
        forbids made a store that could not be copied there, and two names that differ only by case (``frames``,
        ``Frames``) are one file on the case-insensitive disks of macOS and Windows, where the second array replaced
        the first without a word."""
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"store entry names are plain file names, got {name!r}")
        if _NOT_IN_NAMES.search(name):
            raise ValueError(f"store entry name {name!r} holds a character Windows forbids in file names (one of "
                             '< > : " | ? * or a control character); name the array with letters, digits, \'-\' '
                             "and '_'.")
        same = next((other for other in self.arrays if other != name and other.casefold() == name.casefold()), None)
        if same is not None:
            raise ValueError(f"store entry names {same!r} and {name!r} differ only by case: on macOS and Windows they "
                             "are one file, and the second array would replace the first. Name them apart.")


def _reserve(path: Path) -> None:
    """Claim the disk space of the sparse file behind a memory-mapped array before it is filled: filling it on a disk
    that runs full ended Python with SIGBUS ("Bus error"), no message and no clean-up; now the full disk is an
    ``OSError`` here. A file system that cannot reserve space (``EINVAL``, ``EOPNOTSUPP``) is filled as before."""
    if not hasattr(os, "posix_fallocate"):  # (macOS, Windows)
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
    finally:
        os.close(fd)


def read_store_file(root: Path) -> dict[str, Any] | None:
    path = root / STORE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:  # (written atomically: damaged on disk, or edited by hand)
        unreadable = f"{path} is not a readable store description ({exc}), so even "
        raise _refusal(ValueError, lambda cli: f"{unreadable}"
                       f"{'--force' if cli else 'force=True'} cannot tell which files in {root} the store's are. "
                       f"Prepare into a new {_argument('root', cli)} (then delete this folder if nothing in it is "
                       "yours).") from exc
    if not isinstance(data, dict) or "dataset" not in data or "data" not in data:
        raise _refusal(ValueError, lambda cli: f"{path} is not a msrnn-zoo store description (no 'dataset'/'data' "
                       f"entries), so {root} is not a store {'`data prepare`' if cli else 'prepare_dataset'} wrote; "
                       f"give a new or empty folder as {_argument('root', cli)}.")
    if not _DATA_NAME.fullmatch(str(data["data"])):  # the one folder a rebuild deletes: never a path elsewhere
        raise _refusal(ValueError, lambda cli: f"{path} names {data['data']!r} as its data folder, not one "
                       f"{'`data prepare`' if cli else 'prepare_dataset'} writes (data-XXXXXXXX); it was edited by "
                       "hand. Restore it or prepare into a new folder.")
    return data


def open_store(root: str | Path, dataset: str) -> Store:
    """The finished store of ``dataset`` at ``root``, or one clear error saying what to run."""
    root = _root(root)
    file = file_at_or_above(root)
    if file is not None and file != root:  # (a prepare there would fail the same way: it is not what to run)
        raise _refusal(NotADirectoryError, lambda cli: f"No prepared {dataset} data at {root}: it lies under {file}, "
                       f"a file. Give {_argument('root', cli)} the folder "
                       f"{'`msrnn-zoo data prepare`' if cli else 'prepare_dataset'} wrote (the default one is "
                       "$MSRNN_ZOO_DATA/DATASET where that variable is set: is it set to a file?).")
    if not root.exists():
        raise _refusal(FileNotFoundError, lambda cli: f"No prepared {dataset} data at {root}: the folder does not "
                       f"exist. Build it once from the public files with {_prepare(dataset, root, cli)}.")
    if not root.is_dir():
        raise _refusal(NotADirectoryError, lambda cli: f"{_argument('root', cli, root)} is a file; it must be the "
                       "folder " + (f"`msrnn-zoo data prepare {dataset}`" if cli else f"prepare_dataset({dataset!r})")
                       + " wrote.")
    data = read_store_file(root)
    if data is None:
        entries = [p.name for p in root.iterdir()]
        interrupted = any(name.startswith(_TMP_PREFIX) for name in entries)

        def never(cli: bool) -> str:
            if interrupted:
                why, command = "a prepare was interrupted there; run it again", _prepare(dataset, root, cli)
            elif entries:  # the user's files (raw downloads, most likely): a store goes elsewhere, they stay put
                why = (f"{_argument('root', cli)} takes the folder {'`data prepare`' if cli else 'prepare_dataset'} "
                       "wrote, not the raw files; if these are the raw files, run")
                command = (f"`msrnn-zoo data prepare {dataset} --source {root} --root NEW_FOLDER`" if cli else
                           f"`{prepare_call(dataset, 'NEW_FOLDER', source=root)}`")
            else:
                why, command = "the folder is empty; build the store from the raw files", _prepare(dataset, root, cli)
            return f"{root} was never prepared for {dataset} (no {STORE_FILE}): {why}: {command}."
        raise _refusal(FileNotFoundError, never)
    if data["dataset"] != dataset:
        raise _refusal(ValueError, lambda cli: f"{root} holds a prepared {data['dataset']!r} store, not {dataset!r}; "
                       f"point {_argument('root', cli)} at the {dataset} store, or build one with "
                       f"{_prepare(dataset, 'NEW_FOLDER', cli)}.")
    if int(data.get("format", 0)) > STORE_FORMAT:
        note = upgrade_note(data)
        upgrade = f".{note} Or prepare" if note else "; upgrade msrnn-zoo or prepare"
        raise ValueError(f"{root} was prepared by a newer msrnn-zoo (store format {data['format']}){upgrade} the data "
                         "again with this version into another folder.")
    data_dir = root / str(data["data"])
    if not data_dir.is_dir():
        raise _refusal(FileNotFoundError, lambda cli: f"The {dataset} store at {root} is incomplete "
                       f"({data_dir.name}/ is missing); rebuild it with {_prepare(dataset, root, cli, force=True)}.")
    recorded = data.get(WRITTEN_BY)
    return Store(root, dataset, data_dir, dict(data.get("meta", {})), dict(data.get("arrays", {})),
                 dict(recorded) if isinstance(recorded, dict) else {})


def _ours(root: Path, current: dict[str, Any] | None) -> set[str]:
    """Names in ``root`` the zoo wrote: the store file, the data folder it names, marked folders."""
    names = set()
    if current is not None:
        names |= {STORE_FILE, str(current["data"])}
    for entry in root.iterdir():
        if entry.is_dir() and not entry.is_symlink() and (entry / MARKER).is_file():
            names.add(entry.name)
        elif entry.name.startswith(f".{STORE_FILE}.") and entry.name.endswith(".tmp") and entry.is_file():
            names.add(entry.name)  # io.atomic_write's temporary, left by a kill while store.json was written
    return names


def _foreign_in_data(root: Path, current: dict[str, Any]) -> list[str]:
    """Files in the store's data folder that it did not record: a rebuild would delete them with the folder."""
    data_dir = root / str(current["data"])
    if not data_dir.is_dir():
        return []
    recorded = {f"{name}.npy" for name in current.get("arrays", {})} | {MARKER}
    return [f"{data_dir.name}/{name}" for name in sorted(os.listdir(data_dir)) if name not in recorded]


def _clear_leftovers(root: Path, current: dict[str, Any] | None) -> None:
    """Delete folders of an interrupted prepare (marked, and not the one the store names)."""
    keep = str(current["data"]) if current is not None else None
    for entry in root.iterdir():
        if entry.name != keep and entry.is_dir() and not entry.is_symlink() and (entry / MARKER).is_file():
            shutil.rmtree(entry)
        elif entry.name.startswith(f".{STORE_FILE}.") and entry.name.endswith(".tmp") and entry.is_file():
            entry.unlink()


def prepare_store(root: str | Path, dataset: str, build: Callable[[StoreWriter], None], *,
                  force: bool = False) -> Store:
    """Build a store at ``root`` with ``build(writer)``: in a temporary folder, renamed only when complete.

    Refuses a root that holds a store unless ``force``, and a root holding anything not ours always.
    """
    root = _root(root)
    file = file_at_or_above(root)  # mkdir said only "[Errno 20] Not a directory"
    if file is not None:
        where = "is" if file == root else f"lies under {file},"
        raise _refusal(NotADirectoryError, lambda cli: f"{_argument('root', cli, root)} {where} a file; give a new or "
                       "empty folder for the prepared data (the default one is $MSRNN_ZOO_DATA/DATASET where that "
                       "variable is set).")
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    try:
        with _preparing(root):
            return _prepare_into(root, dataset, build, force)
    except BaseException:
        if created and not any(root.iterdir()):
            root.rmdir()  # a failed first prepare leaves no empty folder behind
        raise


@contextmanager
def _preparing(root: Path) -> Iterator[None]:
    """Hold an OS lock on the root folder itself while a store is built there (a killed prepare frees it; no lock
    file is added to the user's folder): two prepares into one root each cleared the other's temporary folder as an
    interrupted one's. Windows has no such lock: there a prepare runs unlocked (`data prepare`'s help says so)."""
    if fcntl is None:
        yield
        return
    fd = os.open(root, os.O_RDONLY)
    try:
        busy = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:  # any other error: a file system without such locks, where it runs unlocked
            busy = exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
        if busy:
            raise _refusal(FileExistsError, lambda cli: "Another "
                           + ("`msrnn-zoo data prepare`" if cli else "prepare (prepare_dataset or `msrnn-zoo data "
                              "prepare`)") + f" is writing into {root} right now; wait for it to finish (or stop it), "
                           "then run this again. Nothing was changed.")
        yield
    finally:
        os.close(fd)


def _prepare_into(root: Path, dataset: str, build: Callable[[StoreWriter], None], force: bool) -> Store:
    current = read_store_file(root)
    foreign = sorted(set(os.listdir(root)) - _ours(root, current))
    if current is not None:
        foreign += _foreign_in_data(root, current)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise _refusal(FileExistsError, lambda cli: f"{_argument('root', cli, root)} holds files the zoo did not "
                       f"write ({shown}); move them out, or prepare into a new or empty folder (the raw files go to "
                       f"{_argument('source', cli)}). Nothing was changed.")
    if current is not None and not force:
        # a killed rebuild's folder can be as large as the store, and is hidden: say so, or it stays for good
        left = sorted(n for n in _ours(root, current) if n != str(current["data"]) and (root / n).is_dir())

        def already(cli: bool) -> str:
            flag = "--force" if cli else "force=True"
            other = "" if current["dataset"] == dataset else f" (you are preparing {dataset}: {flag} would replace it)"
            unfinished = (f" An interrupted rebuild left {', '.join(f'{n}/' for n in left)} there: {flag} clears it, "
                          "or delete it yourself.") if left else ""
            return (f"{root} already holds a prepared {current['dataset']} store{other}; pass "
                    f"{'--force (force=True)' if cli else flag} to rebuild it, or choose another "
                    f"{_argument('root', cli)}.{unfinished}")
        raise _refusal(FileExistsError, already)
    _clear_leftovers(root, current)
    tmp = root / f"{_TMP_PREFIX}{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    (tmp / MARKER).write_text("an unfinished msrnn-zoo store; safe to delete\n", encoding="utf-8")
    try:
        writer = StoreWriter(tmp, dataset)
        with space_for(root):  # numpy says a full disk as "N requested and M written", a memory map as a SIGBUS
            build(writer)
        json.dumps(writer.meta)  # fail here, not after the rename, if the plugin's meta is not JSON
        final = root / f"data-{uuid.uuid4().hex[:8]}"
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if current is not None:  # retire the old data folder first, so a kill after the switch leaves it ours
        old = root / str(current["data"])
        if old.is_dir() and not _foreign_in_data(root, current):  # a file put there meanwhile: keep the folder
            (old / MARKER).write_text("a replaced msrnn-zoo store; safe to delete\n", encoding="utf-8")
    write_json(root / STORE_FILE, {"format": STORE_FORMAT, "dataset": dataset, "data": final.name, "meta": writer.meta,
                                   "arrays": writer.arrays, WRITTEN_BY: written_by(dataset=dataset)})
    (final / MARKER).unlink()
    # on Windows a process (a training) that still maps the old arrays keeps them from being deleted: the new store
    # is in charge, the old folder stays marked for the next prepare, and failing here said this one had not finished
    with suppress(OSError):
        _clear_leftovers(root, read_store_file(root))
    return open_store(root, dataset)


def scaling_params(root: str | Path | None) -> dict[str, Any]:
    """The scaling parameters a store recorded (``meta["scaling"]``), ``{}`` where there is no store."""
    if root is None:
        return {}
    data = read_store_file(_root(root)) if _root(root).is_dir() else None
    return dict((data or {}).get("meta", {}).get("scaling", {}))

"""Writing files so that a crash never leaves a half-written one behind, and never clobbering a user's.

Two rules hold for everything msrnn-zoo writes:

* a file is written to a temporary name beside its destination, flushed to disk, and renamed into place,
  so a crash leaves either the old file or the new one, never half of one;
* ``force`` replaces only the one file that was named (never a directory), and only if it is a file of the
  kind being written that msrnn-zoo wrote (:func:`written_by_us`: a metrics file, not the run's
  ``config.json``; a picture with our mark, not the user's photo); a run directory only when it carries
  :data:`RUN_MARKER`, which ``msrnn-zoo train`` writes: a folder of the user's that merely sits at the path
  given is never deleted.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

RUN_MARKER = ".msrnn-zoo-run"
"""The file that makes a directory a run of ours (and so replaceable with ``--force``)."""

SOFTWARE = "msrnn-zoo"
"""The mark in what we write where the format has a place for one: a PNG's ``Software`` text, a GIF's comment,
the safetensors metadata's ``library``, the model card's ``library_name``."""


class OverwriteRefusedError(FileExistsError):
    """A path holds something that must not be replaced (without ``force``, or at all).

    ``str()`` speaks to Python callers (``force=True``); :attr:`cli_message` to the command line (``--force``),
    so neither sees the other's vocabulary.
    """

    def __init__(self, message: str, *, python_hint: str = "", cli_hint: str = "") -> None:
        super().__init__(f"{message}{python_hint}")
        self.cli_message = f"{message}{cli_hint}"


class DiskFullError(OSError):
    """A write that ran out of space on its disk (or of the user's quota there), said as such whatever the library
    that wrote called it; ``filename`` is the file (or folder) it was writing."""

    def __str__(self) -> str:  # the message alone, as every other error of the CLI is, not "[Errno 28] ..."
        return str(self.strerror)


_NO_SPACE = re.compile(r"No space left on device|Disk quota exceeded|os error (28|122)\b|\d+ requested and \d+ written")
"""How a failure for want of space reads where no ``errno`` says it: safetensors' ``SafetensorError`` quotes the
OS (``os error 28``), numpy's short write says only ``N requested and M written``."""


def out_of_space(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from or while handling, is a write that found no space left.

    ``torch.save`` into an open file raises a ``RuntimeError`` ("unexpected pos") while handling the ``OSError``.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if _NO_SPACE.search(str(current)):
            return True
        current = current.__cause__ or current.__context__
    return False


@contextlib.contextmanager
def space_for(path: str | Path) -> Iterator[None]:
    """Within it, a write that runs out of space raises a :class:`DiskFullError` naming ``path`` and what to do: the
    libraries' own words (a ``SafetensorError``, torch's "unexpected pos", numpy's "N requested and M written") say
    neither, and two of them ended the CLI in a traceback."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        if not out_of_space(exc):
            raise
        raise DiskFullError(errno.ENOSPC, f"The disk is full: {path} could not be written (nothing was left half "
                                          "written). Free some space on that disk, or write to another one, then "
                                          "run the command again.", str(path)) from exc


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode a plain ``open()`` / ``mkdir`` would give: 0666 / 0777 less the umask (0644 / 0755 usually)."""
    return (0o777 if directory else 0o666) & ~_umask()


LOST_WRITE = (errno.ENOSPC, errno.EDQUOT, errno.EIO)
"""What ``fsync`` reports when data written before it never reached the disk: a network file system (NFS) may accept
every write and say that the disk is full only here. The file is not whole, and must not be renamed into place."""


def fsync_path(path: str | Path) -> None:
    """Flush a file or a directory entry to disk (directories: so that a rename inside them survives a crash).

    A file system that cannot flush (``EINVAL`` on some network and FUSE ones) leaves it as durable as the OS makes
    it; one that says the data was lost (:data:`LOST_WRITE`) raises.
    """
    flags = os.O_RDONLY | (os.O_DIRECTORY if Path(path).is_dir() and hasattr(os, "O_DIRECTORY") else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # some platforms cannot open directories; the rename is then as durable as the OS makes it
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno in LOST_WRITE:
            raise
    finally:
        os.close(fd)


def hidden_stem(name: str) -> str:
    """``name`` as the hidden temporary files and folders beside it carry it (``.NAME.XXXXXXXX.tmp``,
    ``.NAME.new-XXXXXXXX``): whole where that fits in the 255 bytes a file name may have, else cut and followed by a
    hash of the whole, still one stem per name. A legal name of 240 bytes failed at its write, after the work (the
    scoring, the training), with "File name too long"."""
    whole = os.fsencode(name)
    if len(whole) <= 240:  # (255 less the 15 of the longest: '.' and '.XXXXXXXX.part')
        return name
    return f"{os.fsdecode(whole[:200])}~{hashlib.sha256(whole).hexdigest()[:8]}"


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object], *, replace: bool = True) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, flush it to disk, then rename it into place.

    The file gets the mode a plain ``open()`` would give (umask respected), not ``mkstemp``'s 0600. With
    ``replace=False`` it is put in place only if nothing is at ``path`` at that moment: a check made before the work
    (:func:`refuse_overwrite`) does not stop a second command started meanwhile (two ``predict`` into the default
    ``forecast.gif``) from writing there first, and the later one would replace it without a word.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; name a file to write.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{hidden_stem(path.name)}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with space_for(path):
            write(Path(tmp))
            os.chmod(tmp, default_mode())
            fsync_path(tmp)
        if replace:
            os.replace(tmp, path)
        else:
            _rename_unless_taken(Path(tmp), path)
        fsync_path(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _rename_unless_taken(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` unless something is there: a hard link fails on an existing name, where a rename
    would replace it."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OverwriteRefusedError(f"{path} was written by another command while this one worked; it was not "
                                    "replaced. Choose another path, or look at that file first.") from None
    except OSError:  # a file system without hard links: the nearest check there is
        if path.exists() or path.is_symlink():
            raise OverwriteRefusedError(f"{path} was written by another command while this one worked; it was not "
                                        "replaced. Choose another path, or look at that file first.") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def write_text(path: str | Path, text: str, *, replace: bool = True) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), replace=replace)


def write_json(path: str | Path, data: Any, *, replace: bool = True) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n", replace=replace)


def read_json(path: str | Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No {what} at {path}.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); it is not a {what} this version wrote.") from exc


def json_with(path: Path, keys: set[str]) -> bool:
    """Whether ``path`` holds a JSON object with (at least) these keys."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and keys <= data.keys()


def _picture(path: Path) -> bool:
    try:
        from PIL import Image

        with Image.open(path) as image:
            mark = image.info.get("Software") if image.format == "PNG" else image.info.get("comment")
    except Exception:  # not a picture Pillow can read
        return False
    return mark in (SOFTWARE, SOFTWARE.encode())


def safetensors_header(path: Path) -> dict[str, Any] | None:
    """The JSON header of a safetensors file, ``None`` if ``path`` is not one."""
    try:
        with path.open("rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(size)) if 0 < size < 100_000_000 else None
    except (OSError, ValueError):
        return None
    return header if isinstance(header, dict) else None


def _safetensors(path: Path) -> bool:
    header = safetensors_header(path)
    return header is not None and (header.get("__metadata__") or {}).get("library") == SOFTWARE


def _model_card(path: Path) -> bool:
    try:
        head = path.read_text(encoding="utf-8")[:4096]
    except (OSError, UnicodeDecodeError):
        return False
    front, _, _ = head.partition("\n---")
    return head.startswith("---") and f"library_name: {SOFTWARE}" in front


FORECAST_ARRAY_KEY = "msrnn-zoo forecast array sha256"
"""The text entry of the PNG that ``predict`` writes beside its forecast array: the array's hash. An ``.npy`` holds
no mark of its own, and a user's clip (float32, 4-D) looks just like a forecast."""


def file_hash(path: Path, digest: Any) -> str:
    """The hex digest of a file's bytes by ``digest`` (a ``hashlib`` object), read in blocks."""
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _forecast_array(path: Path) -> bool:
    """An array ``predict`` wrote: the marked PNG beside it (same name) records this very file's hash."""
    try:
        from PIL import Image

        with Image.open(path.with_suffix(".png")) as image:
            text = dict(image.info) if image.format == "PNG" else {}
        return text.get("Software") == SOFTWARE and text.get(FORECAST_ARRAY_KEY) == file_hash(path, hashlib.sha256())
    except Exception:  # no picture beside it, or not one Pillow reads, or the array unreadable
        return False


WRITTEN_BY_US: dict[str, Callable[[Path], bool]] = {
    "metrics file": lambda p: json_with(p, {"forecasters", "frames", "split"}),
    "config": lambda p: json_with(p, {"cell", "schedule", "hidden_channels"}),
    "model": _safetensors,
    "model card": _model_card,
    "picture": _picture,
    "forecast array": _forecast_array,
}
"""How to tell a file of each kind that msrnn-zoo wrote, so that ``force`` replaces nothing else."""


UNMARKED_NOTE = {"picture": " (pictures from earlier versions of msrnn-zoo carry no mark: delete those to "
                             "replace them)",
                 "forecast array": " (an array is known as predict's by the hash its PNG beside it records; "
                                   "arrays of earlier versions of msrnn-zoo are not: delete those to replace them)"}
"""What to add when a kind was written without its mark by earlier versions."""


def written_by_us(path: str | Path, what: str) -> bool:
    """Whether ``path`` is a ``what`` (a key of :data:`WRITTEN_BY_US`) as msrnn-zoo writes it."""
    return WRITTEN_BY_US[what](Path(path))


def file_at_or_above(folder: str | Path) -> Path | None:
    """The file (or broken link) that stands where ``folder``, or the nearest of its parents that exists, should be
    a folder, if any."""
    for existing in (Path(folder), *Path(folder).parents):
        if existing.exists() or existing.is_symlink():
            return None if existing.is_dir() else existing
    return None


def check_folder_path(folder: str | Path, doing: str) -> None:
    """A ``NotADirectoryError`` saying so if ``folder``, or the nearest of its parents that exists, is a file:
    the write would fail there only after the work (scoring a run, training it) with a bare ``[Errno 20]``."""
    existing = file_at_or_above(folder)
    if existing is not None:
        raise NotADirectoryError(f"{doing}: {existing} is not a folder but a file; choose a path in a folder.")


def refuse_overwrite(path: str | os.PathLike[str], force: bool, what: str = "file", *,
                     python_flag: str = "force") -> None:
    """Raise unless writing the file ``path`` is safe: it does not exist, or ``force`` is set and it is a file of
    this kind that msrnn-zoo wrote (kinds in :data:`WRITTEN_BY_US`; any file for another ``what``).

    A directory is never a file to overwrite, with or without ``force``. ``python_flag`` is how the Python caller
    names ``force`` (``overwrite`` for the picture writers), for the message.
    """
    path = Path(path)
    if path.is_dir():
        raise OverwriteRefusedError(f"{path} is a directory, not a {what}; name a file to write.")
    check_folder_path(path.parent, f"Cannot write {path}")
    if not path.exists():
        return
    if what in WRITTEN_BY_US and not written_by_us(path, what):  # asked first: forcing would not help
        note = UNMARKED_NOTE.get(what, "")
        raise OverwriteRefusedError(f"{path} already exists and is not a {what} that msrnn-zoo wrote, which is all "
                                    f"forcing replaces; choose another path, or move the file away yourself{note}.")
    if not force:
        raise OverwriteRefusedError(f"{path} already exists and holds a {what}; choose another path or ",
                               python_hint=f"pass {python_flag}=True to overwrite it.",
                               cli_hint="pass --force to overwrite it.")


# ---------------------------------------------------------------------------------------------- run directories
def _protected(path: Path) -> str | None:
    """Why ``path`` may never be replaced wholesale (the working directory, a parent of it, home, root)."""
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd:
        return "it is the working directory"
    if resolved in cwd.parents:
        return "it holds the working directory"
    if resolved == Path.home().resolve():
        return "it is your home directory"
    if resolved in Path.home().resolve().parents or resolved == Path(resolved.anchor):
        return "it holds your home directory"
    return None


def check_replaceable(run_dir: str | Path, owned: Iterable[str] | Mapping[str, Callable[[Path], bool] | None]
                      ) -> None:
    """Raise unless ``run_dir`` is a run of ours that may be replaced as a whole.

    ``owned`` are the names (or ``fnmatch`` patterns) of what msrnn-zoo writes inside a run, optionally each with
    a check that an entry of that name is what msrnn-zoo wrote there; anything else there (a user's notes, their
    clip file, their own README.md) would be lost, so it refuses and names it.
    """
    import fnmatch

    run_dir = Path(run_dir)
    why = _protected(run_dir)
    if why is not None:
        raise OverwriteRefusedError(f"{run_dir} cannot be replaced: {why}. Choose a new directory for the run.")
    if run_dir.is_symlink():
        raise OverwriteRefusedError(f"{run_dir} is a symbolic link; give the real directory of the run.")
    if not run_dir.is_dir():
        raise OverwriteRefusedError(f"{run_dir} is a file, not a run directory; choose another path for the run.")
    if not (run_dir / RUN_MARKER).is_file():
        raise OverwriteRefusedError(
            f"{run_dir} is not a run made by `msrnn-zoo train` (it has no {RUN_MARKER} marker), so it is not "
            "replaced; choose another directory for the run, or empty this one yourself.")
    checks = dict(owned) if isinstance(owned, Mapping) else dict.fromkeys(owned)
    foreign = []
    for entry in sorted(run_dir.iterdir()):
        pattern = next((pat for pat in checks if fnmatch.fnmatch(entry.name, pat)), None)
        check = checks.get(pattern) if pattern is not None else None
        # a name of ours is not enough: a README.md or metrics.png of the user's would be lost with the run
        if pattern is None or (check is not None and not check(entry)):
            foreign.append(entry.name)
    if foreign:
        raise OverwriteRefusedError(
            f"{run_dir} holds files msrnn-zoo did not write ({', '.join(foreign[:5])}"
            f"{', ...' if len(foreign) > 5 else ''}); move them out first, or choose another directory for the run.")


def make_sibling_dir(path: str | Path, tag: str) -> Path:
    """A new, uniquely named hidden directory beside ``path`` (never an existing one), with normal permissions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sibling = Path(tempfile.mkdtemp(prefix=f".{hidden_stem(path.name)}.{tag}-", dir=path.parent))
    os.chmod(sibling, default_mode(directory=True))
    return sibling


def swap_in(new: Path, target: Path, owned: Iterable[str] | Mapping[str, Callable[[Path], bool] | None]) -> None:
    """Put the complete directory ``new`` at ``target``, deleting the old ``target`` only if it is a run of ours.

    The old run is first renamed aside, so at every moment one complete run exists; if ``target`` stopped
    being ours meanwhile, nothing is deleted and ``new`` stays where it is (the error says where).
    """
    owned = list(owned)
    if target.exists() or target.is_symlink():
        try:
            check_replaceable(target, owned)
        except OverwriteRefusedError as exc:
            raise OverwriteRefusedError(f"{exc.cli_message} The new run was kept in {new}.") from exc
        aside = Path(tempfile.mkdtemp(prefix=f".{hidden_stem(target.name)}.old-", dir=target.parent))
        aside.rmdir()  # only its unique name is wanted
        os.rename(target, aside)
        try:
            os.rename(new, target)
        except BaseException:
            os.rename(aside, target)
            raise
        fsync_path(target.parent)
        shutil.rmtree(aside)
    else:
        os.rename(new, target)
        fsync_path(target.parent)

"""Downloading public files for dataset plugins: streamed, with a progress bar, never half-written.

A download goes to a temporary file beside the destination and is renamed into place only when it is
complete (and matches its checksum, when one is known), so an interrupted download leaves nothing that
a later run could mistake for the real file. A download killed outright (no ``finally`` runs) leaves its
temporary file behind, up to the whole file's size; the next download of the same file deletes such files
once no process holds their lock (each download locks its own while it writes; Windows, without such locks,
refuses to delete a file a running download holds open, which tells the same).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

try:  # POSIX: a download's lock on its temporary file tells a live download from one that was killed
    import fcntl
except ImportError:  # Windows: an open file cannot be deleted there, which tells the same
    fcntl = None  # type: ignore[assignment]

CHUNK = 1 << 16
LOG_EVERY = 30.0
"""Seconds between two lines of a download's progress where stderr is not a terminal (a log file)."""


def _log_line(console: Console, name: str, done: int, total: int | None) -> None:
    of = f" of {total / 1e6:.1f}" if total else ""
    console.print(f"downloading {name}: {done / 1e6:.1f}{of} MB", markup=False, highlight=False, soft_wrap=True)


def _lock(fd: int) -> bool:
    """Take the lock that marks a temporary file as being written; ``False`` if another process holds it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _clear_killed_downloads(dest: Path) -> None:
    """Delete the temporary files of earlier downloads of ``dest`` that were killed: those no process locks.

    A file created a moment ago and still empty is left alone: its download may not have locked it yet.
    """
    from .io import hidden_stem

    # exactly what mkstemp names below
    ours = re.compile(rf"\.{re.escape(hidden_stem(dest.name))}\.[a-z0-9_]{{8}}\.part")
    for part in dest.parent.iterdir():
        if not ours.fullmatch(part.name) or part.is_symlink() or not part.is_file():
            continue
        try:
            with part.open("rb") as handle:
                info = os.fstat(handle.fileno())
                fresh = info.st_size == 0 and time.time() - info.st_mtime < 60
                killed = not fresh and _lock(handle.fileno())
            if killed:  # (a writer never reopens an old file: a dead one stays dead)
                part.unlink()
        except OSError:  # gone meanwhile, or in use (Windows): not ours to delete now
            continue


def download_file(url: str, dest: str | Path, *, sha256: str | None = None, timeout: float = 60.0,
                  show_progress: bool = True) -> Path:
    """Fetch ``url`` into ``dest`` atomically; raise ``OSError`` naming the URL if it cannot be fetched."""
    dest = Path(dest)
    from .io import check_folder_path

    check_folder_path(dest.parent, f"Cannot download {url} to {dest}")  # (not a bare [Errno 20] from mkdir)
    if dest.is_dir():  # found before the download, not by the rename after it (a bare [Errno 21])
        raise IsADirectoryError(f"Cannot download {url} to {dest}: a folder of that name is in the way; move it "
                                "away, then run this again.")
    created = [folder for folder in (dest.parent, *dest.parent.parents) if not folder.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _download(url, dest, sha256, timeout, show_progress)
    except BaseException:  # a failed first download left an empty data root behind: remove the folders made here,
        for folder in created:  # deepest first, and only while empty (a folder someone filled meanwhile stays)
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _download(url: str, dest: Path, sha256: str | None, timeout: float, show_progress: bool) -> Path:
    """The body of :func:`download_file`, into a folder that exists."""
    from .io import hidden_stem

    _clear_killed_downloads(dest)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{hidden_stem(dest.name)}.", suffix=".part", dir=dest.parent)
    _lock(fd)  # held until the file is closed, by this process or by its death
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        try:
            response = urllib.request.urlopen(url, timeout=timeout)
        except (urllib.error.URLError, OSError) as exc:
            os.close(fd)
            raise OSError(f"Could not download {url}: {exc}. Check the network, "
                          f"or place the file at {dest} by hand.") from exc
        except ValueError as exc:  # urllib's "unknown url type": a mirror variable set to a bare path or a typo
            os.close(fd)
            raise OSError(f"Could not download {url}: it is not a URL ({exc}); a download needs one beginning "
                          f"with https://, http:// or file://. Or place the file at {dest} by hand.") from exc
        with response, os.fdopen(fd, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            console = Console(stderr=True)
            lines = show_progress and not console.is_terminal  # a bar in a log file shows only at the end
            with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                          console=console, disable=not show_progress or lines, transient=True) as progress:
                task = progress.add_task(f"downloading {dest.name}", total=total)
                done, last_line = 0, -float("inf")
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    progress.advance(task, len(chunk))
                    done += len(chunk)
                    if lines and time.monotonic() - last_line >= LOG_EVERY:
                        last_line = time.monotonic()
                        _log_line(console, dest.name, done, total)
                if lines:
                    _log_line(console, dest.name, done, total)
        if total is not None and tmp.stat().st_size != total:
            raise OSError(f"Download of {url} stopped after {tmp.stat().st_size} of {total} bytes; run it again.")
        if sha256 is not None and digest.hexdigest() != sha256:
            raise OSError(f"{url} downloaded with sha256 {digest.hexdigest()}, expected {sha256}: the mirror "
                          "serves a different file. Nothing was written.")
        from .io import default_mode, fsync_path

        os.chmod(tmp, default_mode())  # mkstemp's 0600 would make a shared data folder unreadable to others
        fsync_path(tmp)
        os.replace(tmp, dest)
        return dest
    finally:
        if tmp.exists():
            tmp.unlink()

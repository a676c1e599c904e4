"""Atomic file writes: a finished artifact is never left half-written. Files get the usual
permissions (``0666 & ~umask``), so that a group on a shared server can read a run."""
from __future__ import annotations

import errno
import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator


def _temp_file(folder: Path, name: str) -> str:
    """A new empty file beside the destination, created as ``open()`` creates files: mode 0666
    less the umask (``mkstemp`` would make it 0600, unreadable to the group)."""
    while True:
        tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return str(tmp)
        except FileExistsError:  # pragma: no cover (2**48 names)
            continue


@contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """An ``OSError`` raised inside without a file name (a full disk while PIL or ``json`` writes
    to an open file: ``[Errno 28] No space left on device``) is raised again naming ``path``, so
    that the CLI's one line says which file could not be written."""
    try:
        yield
    except OSError as e:
        if e.filename is not None:
            raise
        raise OSError(e.errno or errno.EIO, e.strerror or str(e) or type(e).__name__, str(path)) from e


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    The rename is atomic on POSIX, so readers see either the old file or the new one. The file
    gets ``0666 & ~umask``, as ``open()`` would give it. A failure to write is an ``OSError``
    naming ``path`` (:func:`naming`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_file(path.parent, path.name)
    try:
        with naming(path):
            write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    def _w(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, _w)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_csv(path: str | Path, rows: list[dict]) -> Path:
    """``rows`` (dicts with the same keys, in order) as a CSV file with a header, written atomically."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else [])
    w.writeheader()
    w.writerows(rows)
    return write_text(path, buf.getvalue())


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file's bytes, in hex."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def os_error_message(e: OSError) -> str:
    """One line for an ``OSError``: what failed and on which path."""
    names = [str(n) for n in (e.filename, e.filename2) if n is not None]
    return f"{e.strerror or type(e).__name__}: {' -> '.join(names)}" if names else f"{e.strerror or e}"


@contextmanager
def file_lock(path: str | Path, on_wait: Callable[[], None] | None = None, shared: bool = False) -> Iterator[None]:
    """Hold an ``flock`` on ``path`` (created if missing, never deleted: deleting a lock file races
    with its next user): exclusive, or ``shared`` (many shared holders at once; none beside an
    exclusive one). Another process, or another thread with its own lock, waits; ``on_wait()`` is
    called first if it has to. The kernel drops the lock when the holder dies, so a killed run
    never leaves a stale lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover (not POSIX: no coordination)
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    how = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, how | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh, how)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def file_log(path: str | Path) -> Iterator[Callable[[str], None]]:
    """A ``log(line)`` that appends each line to ``path`` (created with its folder), flushed at once."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        def log(line: str) -> None:
            fh.write(line + "\n")
            fh.flush()

        yield log

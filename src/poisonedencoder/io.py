"""Atomic file writes: a finished artifact is never left half-written. Files get the usual
permissions (``0666 & ~umask``), so that a group on a shared server can read a run."""
from __future__ import annotations

import errno
import json
import os
import secrets
import tempfile
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


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    The rename is atomic on POSIX, so readers see either the old file or the new one. The file
    gets ``0666 & ~umask``, as ``open()`` would give it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_file(path.parent, path.name)
    try:
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


def save_torch(path: str | Path, obj: Any) -> Path:
    import torch

    def _w(tmp: str) -> None:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:  # torch reports a failed write (a full disk) as RuntimeError
            if "writ" not in str(e).lower():
                raise
            raise OSError(errno.EIO, f"cannot write ({str(e).splitlines()[0]})", str(path)) from e

    return atomic_write(path, _w)


def load_torch(path: str | Path) -> Any:
    """Load a checkpoint safely (``weights_only=True``: tensors and plain containers only)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated, corrupt or untrusted file
        from .errors import UserError

        why = f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__
        raise UserError(f"cannot load checkpoint {path} (truncated or corrupt? {why}); delete it and run the same "
                        f"command again: the stage that wrote it rebuilds it") from e


def ensure_writable_dir(path: str | Path, what: str) -> Path:
    """Create the folder ``path`` if missing and check that a file can be created in it (by
    creating one: permission bits do not stop root, ``chattr +i`` does). Raises
    :class:`UserError` naming ``what`` and the path, so that a run fails before any work."""
    from .errors import UserError

    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a folder; choose another")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise UserError(f"{what} {path} is not writable: {e.strerror or e}") from e
    return path


def os_error_message(e: OSError) -> str:
    """One line for an ``OSError``: what failed and on which path."""
    names = [str(n) for n in (e.filename, e.filename2) if n is not None]
    return f"{e.strerror or type(e).__name__}: {' -> '.join(names)}" if names else f"{e.strerror or e}"


@contextmanager
def file_lock(path: str | Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing, never deleted: deleting a lock
    file races with its next user). Another process, or another thread with its own lock,
    waits; ``on_wait()`` is called first if it has to. The kernel drops the lock when the
    holder dies, so a killed run never leaves a stale lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover (not POSIX: no coordination)
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)
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

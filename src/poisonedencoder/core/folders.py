"""Whose folder it is: a folder is the toolkit's only if its marker says so at its top; the
toolkit writes into no other non-empty folder and through no link, and sets aside what fails a
check instead of deleting it."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from .io import write_text


def ensure_writable_dir(path: str | Path, what: str) -> Path:
    """Create the folder ``path`` if missing and check that a file can be created in it (by
    creating one: permission bits do not stop root, ``chattr +i`` does). Raises
    :class:`UserError` naming ``what`` and the path, so that a run fails before any work."""
    from .errors import UserError

    path = Path(path).expanduser()
    if path.is_symlink() and not path.exists():  # mkdir would say only "File exists"
        raise UserError(f"{what} {path} is a symbolic link to {os.readlink(path)}, which does not exist; "
                        "give a real folder")
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


MARKER = ".poisonedencoder"
"""Written at the top of every folder the toolkit writes but a run's (a sweep's, a claims table's, a
record's, a scan's): with a run's ``.fingerprint``, the only proof that a folder is the toolkit's."""
_MARKS = (MARKER, ".fingerprint")


def _transient(name: str) -> bool:
    """A lock, a temporary file that the toolkit leaves behind (an interrupted atomic write), or the
    log that a worker or a job opens in a run folder before the run starts (only appended to)."""
    return name in (".lock", MARKER, "run.log", "clean.log") or name.startswith(".write-check.") or (name.startswith(".") and name.endswith(".tmp"))


def is_own_dir(path: str | Path) -> bool:
    """``path`` is missing, empty (but for the toolkit's locks and temporary files) or marked as the
    toolkit's at its top: :data:`MARKER`, or a run's ``.fingerprint`` (a regular file, not a link).
    What lies inside (a run folder, a ``sweep.csv``) proves nothing: a user's folder may hold those."""
    path = Path(path)
    if not path.is_dir():
        return True
    if not any(not _transient(e.name) for e in path.iterdir()):
        return True
    return any((path / m).is_file() and not (path / m).is_symlink() for m in _MARKS)


def symlink_in(path: str | Path) -> Path | None:
    """The first symbolic link at or under ``path`` (the folder itself, or anything in its tree,
    never followed), or None."""
    path = Path(path)
    if path.is_symlink():
        return path
    if not path.is_dir():
        return None
    stack = [path]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_symlink():
                    return Path(e.path)
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
    return None


def check_no_symlink(path: str | Path, what: str) -> None:
    """Raise :class:`UserError` if ``path`` or anything in it is a symbolic link: a writer never
    follows a link out of its folder (a dangling one is named as such, not as "File exists")."""
    from .errors import UserError

    link = symlink_in(path)
    if link is None:
        return
    try:
        target = os.readlink(link)
    except OSError:  # pragma: no cover (removed meanwhile)
        target = "?"
    state = "" if link.exists() else ", which does not exist"
    where = f"{what} {link}" if link == Path(path) else f"{what} {path} holds {link}, which"
    raise UserError(f"{where} is a symbolic link (to {target}{state}); the toolkit does not write through links: "
                    "give a real folder")


def check_own_dir(path: str | Path, what: str) -> None:
    """Raise :class:`UserError` unless :func:`is_own_dir` and no link is in it
    (:func:`check_no_symlink`): the toolkit never writes into (and so never overwrites a file of) a
    non-empty folder that it did not mark, nor through a link out of it."""
    from .errors import UserError

    check_no_symlink(path, what)
    if not is_own_dir(path):
        names = sorted(e.name for e in Path(path).iterdir())
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise UserError(f"{what} {path} is not empty ({shown}) and holds no run of this toolkit (no {MARKER} or "
                        ".fingerprint at its top); choose a new or empty folder: nothing of yours is overwritten")


def claim_dir(path: str | Path, what: str) -> Path:
    """:func:`check_own_dir`, :func:`ensure_writable_dir`, then mark the folder as the toolkit's."""
    check_own_dir(path, what)
    path = ensure_writable_dir(path, what)
    if not (path / MARKER).exists():
        write_text(path / MARKER, "written by poisonedencoder: this folder holds its runs\n")
    return path


def set_aside(path: str | Path, why: str, log: Callable[[str], None]) -> Path:
    """Rename ``path`` (a cache entry that failed its check) to ``<path>.rejected-<UTC time>``,
    beside it, and say so in one line; it is kept for a look, never served again."""
    import time

    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest, n = path.with_name(f"{path.name}.rejected-{stamp}"), 1
    while dest.exists():
        n += 1
        dest = path.with_name(f"{path.name}.rejected-{stamp}-{n}")
    os.replace(path, dest)
    log(f"cache: {path} failed its check ({why}); set aside as {dest.name}, rebuilding it")
    return dest

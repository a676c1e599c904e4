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


def save_torch(path: str | Path, obj: Any) -> Path:
    """``torch.save`` atomically. Any failure to write (a full disk, ``ulimit -f``: torch words
    them as ``RuntimeError``s such as ``[enforce fail at inline_container.cc:672] . unexpected
    pos``) is an ``OSError`` naming ``path`` (the CLI prints it as one line); no partial file stays."""
    import torch

    def _w(tmp: str) -> None:
        try:
            torch.save(obj, tmp)
        except (RuntimeError, OSError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else (str(e).strip().splitlines() or [type(e).__name__])[0]
            code = e.errno if isinstance(e, OSError) and e.errno else errno.EIO
            raise OSError(code, f"cannot write ({why[:200]})", str(path)) from e

    return atomic_write(path, _w)


_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
"""How a file of ``torch.save`` before its zip format begins: a pickle of torch's magic number."""


def is_torch_save(path: str | Path) -> bool:
    """Whether ``path`` begins as a ``torch.save`` file does (a zip archive, or the legacy format's
    magic number): a plain pickle, which ``torch.load`` would unpickle as a whole, does not."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_LEGACY_MAGIC))
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or (head[:1] == b"\x80" and head[2:] == _LEGACY_MAGIC[2:])  # any protocol


def describe_torch_file(path: str | Path) -> str:
    """What a file that ``torch.load(weights_only=True)`` refused is (never "load it unsafely"):
    empty, not a zip archive of tensors (torch.save's format), a truncated or damaged archive, a
    TorchScript archive, or an archive holding objects other than tensors and plain containers."""
    import zipfile

    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if size == 0:
        return "is empty"
    if head != b"PK\x03\x04":
        kind = ("a pickle, which is refused: unpickling it could run any code" if head[:1] == b"\x80"
                else "something else")
        return f"is not a zip archive of tensors (torch.save's format); it looks like {kind}"
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError):
        return "is a truncated or damaged zip archive (an interrupted copy or write?)"
    if bad is not None:
        return f"is a damaged zip archive (entry {bad} fails its checksum)"
    if _torchscript_names(names):
        return "is a TorchScript archive (torch.jit.save), not a checkpoint of tensors"
    if not any(n.endswith("data.pkl") for n in names):
        return "is a zip archive but not one torch.save wrote (no data.pkl)"
    return ("holds objects other than tensors and plain containers: refused, since loading them could run code "
            "(and could be damaged inside)")


def _torchscript_names(names: list[str]) -> bool:
    return any(n.split("/", 1)[-1].startswith(("code/", "constants.pkl")) for n in names)


def _is_torchscript(path: str | Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return _torchscript_names(z.namelist())
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def load_torch(path: str | Path) -> Any:
    """Load a checkpoint safely (``weights_only=True``: tensors and plain containers only; a
    TorchScript archive, which ``torch.load`` would hand to ``torch.jit.load``, is refused)."""
    import torch

    from .errors import UserError

    if Path(path).is_file() and _is_torchscript(path):
        raise UserError(f"cannot load checkpoint {path}: it {describe_torch_file(path)}; delete it and run the "
                        "same command again: the stage that wrote it rebuilds it")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated, corrupt or untrusted file
        raise UserError(f"cannot load checkpoint {path}: it {describe_torch_file(path)}; delete it and run the same "
                        f"command again: the stage that wrote it rebuilds it") from e


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

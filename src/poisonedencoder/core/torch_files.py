"""Torch files: saved atomically, loaded as tensors only (``weights_only=True``), and described in
one line when they cannot be loaded (a pickle, TorchScript, a truncated file)."""
from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from .io import atomic_write


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

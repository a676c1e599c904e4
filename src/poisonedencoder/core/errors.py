"""The one exception type that the CLI turns into a one-line message."""


def preview(v, limit: int = 200) -> str:
    """``repr(v)``, cut to ``limit`` characters: an error line never echoes a whole large value."""
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + f"... ({len(r)} characters)"


class UserError(Exception):
    """Bad input from the user: a config key, a dataset name, a file.

    The CLI prints ``error: <message>`` and exits with status 2, never a traceback.
    """


def is_integer(v) -> bool:
    """An integer as the config means it: ``int``, never a bool."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    """A number as the config means it: ``int`` or ``float``, never a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_number(v, name: str, lo: float, hi: float, integer: bool = False, lo_open: bool = False) -> None:
    """Raise :class:`UserError` unless ``v`` is a number (an integer if ``integer``; never a bool)
    in ``[lo, hi]`` (``(lo, hi]`` if ``lo_open``). ``name`` is the config key, as the user writes it."""
    if not (is_integer(v) if integer else is_number(v)):
        raise UserError(f"{name} must be {'an integer' if integer else 'a number'}, got {preview(v)}")
    if (v <= lo if lo_open else v < lo) or v > hi:
        raise UserError(f"{name} must be in {'(' if lo_open else '['}{lo}, {hi}], got {v}")


def bound_from_env(name: str, default: int) -> int:
    """A size bound: ``default``, or the positive whole number in the environment variable ``name``
    (which raises or lowers it); anything else there is a :class:`UserError`."""
    import os

    v = os.environ.get(name, "").strip()
    if not v:
        return default
    digits = v.replace("_", "")  # 1_000_000 as Python writes it
    if not digits.isdigit() or int(digits) < 1:
        raise UserError(f"{name} must be a positive whole number, got {preview(v)}")
    return int(digits)

"""Reading configs: YAML files (safe, no repeated keys, bounded size, depth and alias expansion), ``--set``
values, relative paths made absolute; and writing a resolved config back as YAML."""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from ..core.errors import UserError
from ..core.errors import preview as _preview

MAX_CONFIG_BYTES = 1_000_000
"""A config file larger than this is refused before it is read (a real one is a few kB)."""
MAX_VALUE_CHARS = 65_536
"""A ``--set`` value (or ``sweep --values``) longer than this is refused before it is parsed."""
MAX_DEPTH = 64
"""Mappings and lists nested deeper than this are refused (the schema is 4 levels deep)."""
MAX_NODES = 100_000
"""A document of more values (scalars, lists, mappings) than this, counting each alias (``*name``,
``<<: *name``) as a copy of what it names, is refused before it is built: nested aliases ("billion
laughs") make a few hundred bytes expand to billions of values (a whole config holds a few hundred)."""


class _Expands(Exception):
    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


def _check_expansion(root: yaml.Node) -> None:
    """Raise :class:`_Expands` if the document under ``root``, each alias counted as a copy of the
    node it names, holds more than :data:`MAX_NODES` values, or if a node contains itself (an
    alias inside its own anchor). Linear in the composed nodes (each is counted once, then
    remembered), without recursion."""
    size: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = [] if isinstance(node, yaml.ScalarNode) else (
            node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair])
        if done:
            open_.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            if size[key] > MAX_NODES:
                raise _Expands(f"it holds more than {MAX_NODES:,} values, each alias (*name) counted as a copy of "
                               "what it names (a config holds a few hundred); refused before it is built")
            continue
        if key in size:
            continue
        if key in open_:
            raise _Expands("an alias (*name) refers to the value that contains it, which would never end; refused")
        open_.add(key)
        stack.append((node, True))
        stack += [(c, False) for c in children if id(c) not in size]


class _DuplicateKey(Exception):
    def __init__(self, key: Any, first, second):
        super().__init__(key)
        self.key, self.first, self.second = key, first, second


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (plain data only, no objects built from tags) that refuses a key repeated
    in one mapping (YAML would keep the last one and drop the first without a word), and a document
    whose aliases expand it to more than :data:`MAX_NODES` values or that contains itself."""

    def get_single_data(self):
        node = self.get_single_node()
        if node is None:
            return None
        _check_expansion(node)  # before construction: building (and merging) what aliases name is what explodes
        return self.construct_document(node)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *anchor`` merges, it is not a key
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: SafeLoader refuses it below
                continue
            if first is not key_node.start_mark:
                raise _DuplicateKey(key, first, key_node.start_mark)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, source: str) -> Any:
    """``text`` as YAML (:class:`_Loader`: safe, no repeated keys, at most :data:`MAX_DEPTH` levels,
    at most :data:`MAX_NODES` values once aliases are expanded). ``source`` names it in errors
    (``config file x.yaml``, ``--set pretrain``). Raises :class:`UserError` for a repeated key, too
    deep nesting or too large an expansion, ``yaml.YAMLError`` for invalid YAML."""
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (_Loader is a SafeLoader)
    except _DuplicateKey as e:
        a, b = e.first, e.second
        where = (f"lines {a.line + 1} and {b.line + 1}" if a.line != b.line
                 else f"line {a.line + 1}, columns {a.column + 1} and {b.column + 1}")
        raise UserError(f"{source}: key {_preview(e.key, 80)} appears twice in one mapping ({where}); "
                        "YAML would silently drop the first: keep one") from None
    except _Expands as e:
        raise UserError(f"{source}: {e.why}") from None
    except RecursionError:
        raise UserError(f"{source} is nested too deeply (more than {MAX_DEPTH} levels)") from None
    if _depth(data) > MAX_DEPTH:
        raise UserError(f"{source} is nested too deeply (more than {MAX_DEPTH} levels)")
    return data


def _depth(v: Any) -> int:
    """How deeply mappings and lists nest in ``v`` (0 for a scalar); without recursion."""
    most, stack = 0, [(v, 0)]
    while stack:
        x, d = stack.pop()
        if isinstance(x, dict):
            x = list(x.values())
        if isinstance(x, list):
            most = max(most, d + 1)
            if d + 1 <= MAX_DEPTH:  # deeper is refused anyway
                stack += [(y, d + 1) for y in x]
    return most


def parse_value(text: str, source: str) -> Any:
    """A value from the command line (``--set key=VALUE``, one of ``sweep --values``) as YAML;
    text that is not valid YAML stays text."""
    if len(text) > MAX_VALUE_CHARS:
        raise UserError(f"{source}: the value has {len(text)} characters, more than the {MAX_VALUE_CHARS} accepted "
                        f"(a config value is short; put large settings in a file)")
    if text == "":
        return None
    try:
        return parse_yaml(text, source)
    except yaml.YAMLError:
        return text


def parse_override(text: str) -> dict:
    """``pretrain.epochs=10`` -> ``{"pretrain": {"epochs": 10}}`` (the value is parsed as YAML)."""
    if "=" not in text:
        raise UserError(f"override {_preview(text)} must look like key.sub=value")
    key, value = text.split("=", 1)
    parsed = parse_value(value, f"--set {_preview(key.strip(), 80)}")
    out: dict = {}
    cur = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = parsed
    return out


def check_repeats(given: list[tuple[str, str]]) -> None:
    """``given``: ``(how, override)`` for each ``key=value`` override the user gave, ``how`` as they
    gave it (``--set pretrain.epochs=2``, ``--seeds 0,1``). Raises :class:`UserError` where two set
    the same key, or one a key inside the other's value (``pretrain={epochs: 1}`` and
    ``pretrain.epochs=2``): the last would win without a word."""
    seen: list[tuple[tuple, str]] = []
    for how, text in given:
        for path in _leaves(parse_override(text)):
            for other, first in seen:
                if path[:len(other)] == other or other[:len(path)] == path:
                    key = ".".join(map(str, min(path, other, key=len)))
                    raise UserError(f"key {_preview(key, 80)} is set twice ({first} and {how}): keep one (the last would "
                                    "silently win)")
            seen.append((path, how))


def _leaves(d: dict, prefix: tuple = ()) -> list[tuple]:
    """The key paths of an override's values (a mapping value is descended into: it merges key by key)."""
    out = []
    for k, v in d.items():
        out += _leaves(v, prefix + (k,)) if isinstance(v, dict) else [prefix + (k,)]
    return out


def load_yaml(path: str | Path) -> dict:
    """The file's mapping, its relative paths made absolute against the file's folder
    (see :func:`absolute_paths`), so that a config means the same from any working directory.
    Refused at once: a folder, a file over :data:`MAX_CONFIG_BYTES`, a repeated key, nesting
    deeper than :data:`MAX_DEPTH`."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"config file {p} is a folder, not a file")
    if not p.exists():
        raise UserError(f"config file {p} does not exist")
    if not p.is_file():
        raise UserError(f"config file {p} is not a regular file")
    try:
        with open(p, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise UserError(f"config file {p} is larger than {MAX_CONFIG_BYTES // 1000} kB (a config is a few kB); "
                            "refused")
        data = parse_yaml(raw.decode("utf-8"), f"config file {p}") or {}
    except yaml.YAMLError as e:
        raise UserError(f"config file {p} is not valid YAML: {_preview(str(e).splitlines()[0], 300)}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read config file {p}: {e.strerror if isinstance(e, OSError) else e}") from e
    if not isinstance(data, dict):
        raise UserError(f"config file {p} must hold a mapping at top level")
    return absolute_paths(data, p.parent)


def _absolute(path: str, base: Path) -> str:
    q = Path(path).expanduser()
    return q.as_posix() if q.is_absolute() else os.path.abspath(base / q)


def absolute_paths(cfg: dict, base: str | Path) -> dict:
    """A copy of (part of) a config with its relative paths (``data_root``, ``cache_dir``, the
    ``PATH`` of ``imagefolder:PATH`` datasets) made absolute against ``base``: a config file's
    folder, or the working directory for the command line. Values of the wrong type are left for
    :func:`validate` to report."""
    out, base = copy.deepcopy(cfg), Path(base).absolute()

    def dataset(section: Any) -> None:
        if isinstance(section, dict) and isinstance(section.get("dataset"), str) and section["dataset"].startswith("imagefolder:"):
            section["dataset"] = "imagefolder:" + _absolute(section["dataset"].split(":", 1)[1], base)

    for key in ("data_root", "cache_dir"):
        if isinstance(out.get(key), str) and out[key]:
            out[key] = _absolute(out[key], base)
    dataset(out.get("pretrain_data"))
    if isinstance(out.get("tasks"), list):
        for t in out["tasks"]:
            dataset(t)
    return out



def dump(cfg: dict) -> str:
    """A resolved config as YAML, keys in the schema's order."""
    return yaml.safe_dump(cfg, sort_keys=False)

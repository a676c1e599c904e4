"""The package's layout keeps its layers (docs/DESIGN.md, "Layout"): read from the source's
imports with ``ast``, no module imports one of a layer above its own, and no two modules import
each other, directly or around a longer circle. Every import counts, a function's lazy one too."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "poisonedencoder"

LAYERS = {
    "core": 0,
    "data": 1, "ssl": 1, "attack": 1, "defenses": 1, "downstream": 1,
    "config": 2,
    "experiment": 3, "scan": 3,
    "studies": 4,
    "api": 5, "cli": 5, "__main__": 5, "": 5,  # "": the package's own __init__ (the public API)
}
"""Each top-level entry of the package and its layer, bottom (0) to top; the order of the data:
the base, the plugins and the data, the configuration assembled from the plugins' settings, one
experiment (and the scan of a folder), many experiments, the entry points."""
INTERNAL = {"_moved"}
"""Entries outside the layers: the finder of the old import paths, which imports nothing of the package."""


def modules(root: Path = PKG) -> dict[str, tuple[Path, bool]]:
    """Every module under ``root`` by its dotted name, with its file and whether it is a package."""
    out = {}
    for p in root.rglob("*.py"):
        parts = list(p.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (p, is_pkg)
    return out


def imports(mods: dict[str, tuple[Path, bool]], missing: list[str] | None = None) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (relative or absolute, at any depth of the file).
    An import of the package that names no module of it is added to ``missing`` (``module:line -> name``)."""
    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in mods.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "poisonedencoder"]
                if missing is not None:
                    missing += [f"{name}:{node.lineno} -> {t}" for t in targets if t not in mods]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if missing is not None and (node.level or mod.split(".")[0] == "poisonedencoder") and mod not in mods:
                    missing.append(f"{name}:{node.lineno} -> {mod}")
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    found.add(t)
        graph[name] = found
    return graph


def entry(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Imports from a lower layer into a higher one: ``a -> b (layer i -> j)``."""
    bad = []
    for a, targets in graph.items():
        for b in targets:
            la, lb = LAYERS.get(entry(a)), LAYERS.get(entry(b))
            if entry(b) == "" and entry(a) != "":  # the package's __init__ is imported by every submodule's import
                continue
            if la is not None and lb is not None and lb > la:
                bad.append(f"{a} -> {b} (layer {la} -> {lb})")
    return sorted(bad)


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in graph:
                    continue
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_every_top_level_entry_has_a_layer():
    top = {p.stem if p.is_file() else p.name for p in PKG.iterdir()
           if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())) and p.name != "__init__.py"}
    assert top - set(LAYERS) - INTERNAL == set()
    assert len(top) <= 14


def test_every_import_of_the_package_names_one_of_its_modules():
    # a relative import left behind by a move names nothing (found at run time only, in a lazy import)
    missing: list[str] = []
    imports(modules(), missing)
    assert missing == []


def test_no_import_runs_up_a_layer():
    assert upward(imports(modules())) == []


def test_no_two_modules_import_each_other_nor_a_longer_circle():
    assert circles(imports(modules())) == []


def test_the_checks_see_a_planted_circle_and_an_upward_import(tmp_path):
    root = tmp_path / "poisonedencoder"
    for rel, text in {"__init__.py": "", "core/__init__.py": "", "core/a.py": "from ..studies import b\n",
                      "studies/__init__.py": "", "studies/b.py": "def f():\n    from . import c\n",
                      "studies/c.py": "from .b import f\n", "studies/d.py": "def g():\n    from .gone import h\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    missing: list[str] = []
    graph = imports(modules(root), missing)
    assert missing == ["poisonedencoder.studies.d:2 -> poisonedencoder.studies.gone"]
    assert upward(graph) == ["poisonedencoder.core.a -> poisonedencoder.studies.b (layer 0 -> 4)"]
    assert circles(graph) == [["poisonedencoder.studies.b", "poisonedencoder.studies.c"]]


@pytest.mark.parametrize("old,new", [("pipeline", "experiment.pipeline"), ("claims.verdicts", "studies.claims.verdicts"),
                                     ("errors", "core.errors")])
def test_an_old_import_path_still_works_and_says_where_the_module_went(old, new):
    import importlib
    import sys

    for k in [k for k in sys.modules if k == f"poisonedencoder.{old}"]:
        del sys.modules[k]
    with pytest.warns(DeprecationWarning, match=f"poisonedencoder.{new}"):
        mod = importlib.import_module(f"poisonedencoder.{old}")
    assert mod is importlib.import_module(f"poisonedencoder.{new}")


def test_the_old_io_path_holds_the_names_of_the_modules_it_was_split_into():
    import importlib
    import sys

    sys.modules.pop("poisonedencoder.io", None)
    with pytest.warns(DeprecationWarning, match="poisonedencoder.core.torch_files"):
        old = importlib.import_module("poisonedencoder.io")
    from poisonedencoder.core import folders, io, torch_files

    for module in (io, folders, torch_files):
        for name in (n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n))):
            assert getattr(old, name) is getattr(module, name), name


def test_no_module_is_over_300_lines():
    # small modules with one job each: a module that grows past this is split by job, as cluster/ and core/io were
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 300}
    assert long == {}

"""Every module of the data layer imports first in a fresh interpreter, and no module of it imports
another that imports it back (at module level or inside a function): the layer has no import cycle."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import poisonedencoder

DATA = Path(poisonedencoder.__file__).parent / "data"
MODULES = sorted(p.stem for p in DATA.glob("*.py") if p.stem != "__init__")


def test_the_data_modules_are_found():
    assert {"datasets", "ondisk"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_each_data_module_imports_first_in_a_fresh_interpreter(module):
    src = str(Path(poisonedencoder.__file__).parents[1])
    r = subprocess.run([sys.executable, "-c", f"import poisonedencoder.data.{module}"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert r.returncode == 0, r.stderr


def test_on_disk_datasets_are_registered_once_by_their_registry_line():
    from poisonedencoder.data import ondisk
    from poisonedencoder.data.datasets import DATASETS
    from poisonedencoder.data.files import OnDisk

    on_disk = {n: s for n, s in DATASETS.items() if isinstance(s, OnDisk)}
    assert sorted(on_disk) == ["cifar10-folder", "eurosat", "facemask", "stl10", "tiny-imagenet"]
    assert all(s.name == n and s is getattr(ondisk, n.upper().replace("-", "_")) for n, s in on_disk.items())


def _data_imports(module: str) -> set[str]:
    """The data modules ``module`` imports anywhere in its code (``from .x import``, ``from . import x``)."""
    out = set()
    for node in ast.walk(ast.parse((DATA / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            out |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
    return out & set(MODULES)


def test_no_data_module_imports_one_that_imports_it_back():
    graph = {m: _data_imports(m) for m in MODULES}

    def reaches(a: str, b: str, seen: frozenset = frozenset()) -> bool:
        return any(n == b or (n not in seen and reaches(n, b, seen | {n})) for n in graph[a])

    assert [m for m in MODULES if reaches(m, m)] == []

"""The import paths of modules that moved into the layer folders (docs/DESIGN.md, "Layout"),
kept working for one release: ``import poisonedencoder.pipeline`` gives the module now at
``poisonedencoder.experiment.pipeline``, with a DeprecationWarning that names the new path
(CHANGELOG.md lists them). No module of the toolkit imports an old path."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

MOVED = {
    "errors": "core.errors",
    "io": "core.io",
    "settings": "core.settings",
    "stats": "core.stats",
    "config_files": "config.files",
    "config_doc": "config.doc",
    "presets": "config.presets",
    "fingerprints": "config.fingerprints",
    "pipeline": "experiment.pipeline",
    "pretraining": "experiment.pretraining",
    "stages": "experiment.stages",
    "rundata": "experiment.rundata",
    "rundir": "experiment.rundir",
    "evaluation": "experiment.evaluation",
    "encoder_cache": "experiment.encoder_cache",
    "report": "experiment.report",
    "metrics": "experiment.metrics",
    "external": "experiment.external",
    "seeds": "studies.seeds",
    "sweep": "studies.sweep",
    "sweep_output": "studies.sweep_output",
    "sweep_table": "studies.sweep_table",
    "parallel": "studies.parallel",
    "cluster": "studies.cluster",
    "compare": "studies.compare",
    "claims": "studies.claims",
    "cli_parser": "cli.parser",
    "scan.cli": "cli.scan",
}
"""Old name under ``poisonedencoder.`` -> its new name under ``poisonedencoder.``."""
SPLIT = {"io": ("core.folders", "core.torch_files")}
"""Old modules whose names now live in more than one module: besides ``MOVED``'s, these. The old
path gives a module holding the names of all of them."""


class _OldPath(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``poisonedencoder.<old>`` (and anything under a moved package) and hands back the module at its new path."""

    @staticmethod
    def new_path(fullname: str) -> str | None:
        head, _, rest = fullname.partition(".")
        if head != "poisonedencoder":
            return None
        for old, new in MOVED.items():
            if rest == old or rest.startswith(old + "."):
                return "poisonedencoder." + new + rest[len(old):]
        return None

    def find_spec(self, fullname, path=None, target=None):  # noqa: ARG002 (the finder protocol's arguments)
        return importlib.util.spec_from_loader(fullname, self) if self.new_path(fullname) else None

    def create_module(self, spec):
        new = self.new_path(spec.name)
        rest = spec.name.partition(".")[2]
        parts = [new] + ["poisonedencoder." + m for m in SPLIT.get(rest, ())]
        warnings.warn(f"{spec.name} has moved to {' and '.join(parts)}; the old path will be removed in the next "
                      "release", DeprecationWarning, stacklevel=2)
        if len(parts) == 1:
            return importlib.import_module(new)
        merged = types.ModuleType(spec.name, f"The names of {', '.join(parts)} (the old path {spec.name}).")
        for name in parts:
            merged.__dict__.update({k: v for k, v in vars(importlib.import_module(name)).items() if not k.startswith("__")})
        return merged

    def exec_module(self, module) -> None:  # the module at its new path is already executed
        pass


def install() -> None:
    """Put the finder of old paths on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _OldPath) for f in sys.meta_path):
        sys.meta_path.insert(0, _OldPath())  # before the path finder, which would load a second copy under the old name

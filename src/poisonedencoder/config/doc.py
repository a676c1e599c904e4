"""docs/CONFIG.md's annotated YAML of every key, generated from the schema (:func:`config.defaults`)
and its descriptions (:func:`config.descriptions`). ``scripts/gen_config_doc.py`` rewrites the
block; ``tests/test_config_doc.py`` fails when the doc is stale."""
from __future__ import annotations

from pathlib import Path

import yaml

from .. import config as C

BEGIN = "<!-- generated from the schema by scripts/gen_config_doc.py: edit the sections' Settings classes, not this block -->"
END = "<!-- end of generated block -->"
COLUMN = 28


def _value(v) -> str:
    if isinstance(v, float):
        return yaml.safe_dump(v).splitlines()[0]
    return yaml.safe_dump(v, default_flow_style=True, width=1000).splitlines()[0]


def _line(text: str, comment: str | None) -> list[str]:
    if not comment:
        return [text]
    first, *rest = comment.split("\n")
    lines = [f"{text.ljust(COLUMN - 1)} # {first}" if len(text) < COLUMN - 1 else f"{text}  # {first}"]
    return lines + [" " * COLUMN + f"# {r}" for r in rest]


def schema_yaml() -> str:
    """Every key with its default and its description, as YAML."""
    desc = C.descriptions()
    out: list[str] = []

    def walk(d: dict, prefix: str, indent: str) -> None:
        for k, v in d.items():
            key = prefix + k
            if k == "tasks" and not prefix:
                out.extend(_line(f"{indent}tasks:", desc.get("tasks")))
                first = True
                for tk, tv in C.TASK_DEFAULTS.items():
                    lead = "  - " if first else "    "
                    out.extend(_line(f"{indent}{lead}{tk}: {_value(tv)}", desc.get(f"tasks[].{tk}")))
                    first = False
            elif isinstance(v, dict):
                out.extend(_line(f"{indent}{k}:", desc.get(key)))
                walk(v, key + ".", indent + "  ")
            else:
                out.extend(_line(f"{indent}{k}: {_value(v)}", desc.get(key)))

    walk(C.defaults(), "", "")
    return "\n".join(out) + "\n"


def render(doc: str) -> str:
    """``doc`` (CONFIG.md's text) with its generated block replaced by the current schema."""
    if BEGIN not in doc or END not in doc:
        raise ValueError("CONFIG.md has no generated block")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n```yaml\n{schema_yaml()}```\n{END}{tail}"


def write(path: str | Path) -> bool:
    """Rewrite the block in ``path``; True if it changed."""
    p = Path(path)
    old = p.read_text()
    new = render(old)
    if new != old:
        p.write_text(new)
    return new != old

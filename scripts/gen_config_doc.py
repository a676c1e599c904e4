"""Rewrite the annotated YAML block of docs/CONFIG.md from the schema (config.defaults and
config.descriptions: the fields of each section's Settings class).

    python scripts/gen_config_doc.py [docs/CONFIG.md]
"""
from __future__ import annotations

import sys
from pathlib import Path

from poisonedencoder.config.doc import write

if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "CONFIG.md"
    print(f"{path}: {'updated' if write(path) else 'up to date'}")

"""docs/CONFIG.md's YAML block is the schema: a key, a default or a description changed in
config.py or a plugin without `python scripts/gen_config_doc.py` fails here."""
import subprocess
import sys
from pathlib import Path

from poisonedencoder import config as C
from poisonedencoder.config.doc import render, schema_yaml

ROOT = Path(__file__).resolve().parents[1]


def test_config_doc_is_generated_from_the_schema():
    doc = (ROOT / "docs" / "CONFIG.md").read_text()
    assert render(doc) == doc, "docs/CONFIG.md is stale: run python scripts/gen_config_doc.py"


def test_the_generated_block_names_every_key_and_every_plugin_section():
    text = schema_yaml()

    def keys(d, indent=""):
        for k, v in d.items():
            yield f"\n{indent}{k}:" if k != "tasks" else "\ntasks:"
            if isinstance(v, dict):
                yield from keys(v, indent + "  ")

    for k in keys(C.defaults()):
        assert k in "\n" + text, k
    assert "\n  poisonedencoder:" in "\n" + text and "    layout: random" in text


def test_importing_config_does_not_import_torch():
    r = subprocess.run([sys.executable, "-c", "import sys, poisonedencoder.config; print('torch' in sys.modules)"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"

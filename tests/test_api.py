"""The Python API (``import poisonedencoder as pe``) and examples/audit_api.py, which uses it."""
import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

import poisonedencoder as pe
from poisonedencoder.core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
NUMBERS = ("CA", "PA", "ASR", "clean_ASR", "intervals")


def test_importing_the_package_is_cheap_and_the_api_loads_on_first_use():
    code = ("import sys, poisonedencoder as pe; a = 'torch' in sys.modules; pe.load_config; b = 'torch' in sys.modules; "
            "pe.evaluate_encoder; print(a, b, 'torch' in sys.modules, callable(pe.craft), pe.Experiment.__name__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # load_config resolves configs (the registries import torch) only when called; the names exist
    assert r.stdout.split() == ["False", "False", "False", "True", "Experiment"]
    for name in ("load_config", "craft", "pretrain", "evaluate", "evaluate_encoder", "load_encoder", "Experiment"):
        assert name in dir(pe) and getattr(pe, name).__doc__, name
    with pytest.raises(AttributeError):
        pe.no_such_thing  # noqa: B018


def test_load_config_from_a_file_a_mapping_and_overrides():
    cfg = pe.load_config(ROOT / "configs" / "digits_demo.yaml", ["pretrain.epochs=7", "seeds=null"])
    assert cfg["pretrain"]["epochs"] == 7 and cfg["seeds"] is None and cfg["preset"] == "demo"
    assert pe.load_config(cfg) == cfg  # a resolved configuration resolves to itself
    assert pe.load_config({"preset": "cpu"}, ["attack.poisoning_rate=0.1"])["attack"]["poisoning_rate"] == 0.1
    assert pe.load_config()["preset"] == "cpu"
    with pytest.raises(UserError, match="unknown config key 'pretrain.epoch'"):
        pe.load_config({}, ["pretrain.epoch=3"])
    with pytest.raises(UserError, match="YAML path or a mapping"):
        pe.load_config(42)


def _example():
    spec = importlib.util.spec_from_file_location("audit_api", ROOT / "examples" / "audit_api.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_audit_example_measures_what_the_pipeline_measures(tmp_path, capsys):
    ex = _example()
    argv = ["--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--epochs", "1",
            "--num-images", "300", "--width", "8", "--downstream-epochs", "2", "--export-imagefolder", str(tmp_path / "f")]
    m = ex.main(argv)
    printed = capsys.readouterr().out
    assert "ASR" in printed and "clean_ASR" in printed and "90 poisoning inputs" in printed
    assert len(list((tmp_path / "f" / "unlabeled").glob("poison_*.png"))) == 90
    # the toolkit's own evaluation of the same encoders (the stage functions) gives the same numbers
    cfg = ex.config(ex.parse(argv))
    m0 = pe.evaluate(cfg, tmp_path / "run", log=lambda _: None)
    assert {k: m[k] for k in NUMBERS} == {k: m0[k] for k in NUMBERS}
    assert m["margins"]["poisoned"]["margin"]["mean"] == pytest.approx(m0["margins"]["poisoned"]["margin"]["mean"], abs=1e-4)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["CA"] == m0["CA"]
    # the example on encoder files (as if trained elsewhere): the same numbers
    paths = pe.pretrain(cfg, tmp_path / "run", log=lambda _: None)
    again = ex.main(argv[:-2] + ["--encoder", str(paths["poisoned"]), "--clean-encoder", str(paths["clean"]), "--arch", "cnn7"])
    assert {k: again[k] for k in NUMBERS} == {k: m0[k] for k in NUMBERS}
    assert again["encoder_files"]["poisoned"]["sha256"] == hashlib.sha256(Path(paths["poisoned"]).read_bytes()).hexdigest()
    assert set(pe.pretrain(cfg, tmp_path / "run", which="clean", log=lambda _: None)) == {"clean"}
    with pytest.raises(UserError, match="which must be"):
        pe.pretrain(cfg, tmp_path / "run", which="poison")
    # evaluate_encoder without a run directory: the same target inputs, crafted in a temporary folder
    enc = pe.load_encoder(paths["poisoned"], arch="cnn7", width=8, image_size=16)[0]
    alone = pe.evaluate_encoder(enc, cfg, log=lambda _: None)
    assert (alone["PA"], alone["ASR"], alone["CA"]) == (m0["PA"], m0["ASR"], None)
    assert [t["test_index"] for t in alone["tasks"][0]["targets"]] == [t["test_index"] for t in m0["tasks"][0]["targets"]]
    with pytest.raises(UserError, match="torch.nn.Module"):
        pe.evaluate_encoder(str(paths["poisoned"]), cfg)
    with pytest.raises(UserError, match="give one seed"):
        pe.evaluate_encoder(enc, pe.load_config(cfg, ["seeds=[0, 1]"]))

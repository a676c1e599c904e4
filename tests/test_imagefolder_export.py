"""craft --export-imagefolder: the pre-training set (clean inputs and poisoning inputs) as a plain
image folder that torchvision's ImageFolder loads unchanged, with the craft manifest beside it."""
import json
from pathlib import Path

import numpy as np
import pytest

from poisonedencoder import config as C
from poisonedencoder.attack.export import export_imagefolder, load_poisons
from poisonedencoder.cli import main
from poisonedencoder.core.errors import UserError
from poisonedencoder.experiment.pipeline import Experiment

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--seeds", "0", "--set", "pretrain.epochs=1", "--set", "pretrain_data.num_images=300", "--set", "pretrain.width=8",
        "--set", "downstream.epochs=2", "--set", "attack.num_references=5"]


def _craft(tmp_path, dest, out="run"):
    return main(["craft", str(ROOT / "configs" / "digits_demo.yaml"), "--out", str(tmp_path / out),
                 "--cache-dir", str(tmp_path / "cache"), *FAST, "--export-imagefolder", str(dest)])


def test_export_loads_in_torchvision_imagefolder_with_the_crafted_pixels(tmp_path):
    from torchvision.datasets import ImageFolder

    dest = tmp_path / "folder"
    assert _craft(tmp_path, dest) == 0
    ds = ImageFolder(str(dest))
    manifest = json.loads((dest / "manifest.json").read_text())
    run_manifest, poisons = load_poisons(tmp_path / "run" / "seed_0" / "poisons")
    assert ds.classes == ["unlabeled"]
    assert len(ds) == 300 + len(poisons) == 300 + run_manifest["num_poisoning_inputs"]
    assert {Path(p) for p, _ in ds.samples} == {dest / e["file"] for e in manifest["clean_inputs"] + manifest["poisoning_inputs"]}
    assert manifest["targets"] == run_manifest["targets"]
    # each poisoning file: the crafted input, pixel for pixel, at its own (non-square) size
    shapes = set()
    for e, r, crafted in zip(manifest["poisoning_inputs"], run_manifest["poisoning_inputs"], poisons, strict=True):
        img = ds.loader(str(dest / e["file"]))
        assert img.size == (crafted.shape[1], crafted.shape[0])
        assert (np.asarray(img) == crafted).all()
        assert {k: v for k, v in e.items() if k != "file"} == {k: v for k, v in r.items() if k != "file"}  # its target
        shapes.add(crafted.shape[:2])
    assert shapes <= {(16, 32), (32, 16)} and len(shapes) == 2  # layout random: both orientations
    # each clean file: the clean pre-training input it names
    cfg = C.resolve(C.load_yaml(ROOT / "configs" / "digits_demo.yaml"),
                    ["seeds=null", f"cache_dir={tmp_path / 'cache'}", *FAST[3::2]])
    exp = Experiment(cfg, tmp_path / "check", log=lambda _: None)
    train = exp.data.dataset("digits").train.images
    idx = [e["train_index"] for e in manifest["clean_inputs"]]
    assert idx == exp.data.clean_indices().tolist()
    for e in manifest["clean_inputs"][::37]:
        assert (np.asarray(ds.loader(str(dest / e["file"]))) == train[e["train_index"]]).all()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".folder.")]  # no temporary folder left


def test_export_refuses_a_non_empty_folder_before_any_work(tmp_path, capsys):
    dest = tmp_path / "folder"
    dest.mkdir()
    (dest / "old.png").write_bytes(b"x")
    assert _craft(tmp_path, dest) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not empty" in err and str(dest) in err
    assert not (tmp_path / "run").exists()  # nothing crafted
    (tmp_path / "afile").write_text("x")
    assert _craft(tmp_path, tmp_path / "afile") == 2
    assert "is a file" in capsys.readouterr().err
    # several seeds: one folder cannot hold several pre-training sets
    rc = main(["craft", str(ROOT / "configs" / "digits_demo.yaml"), "--out", str(tmp_path / "run"),
               "--export-imagefolder", str(tmp_path / "new")])
    assert rc == 2 and "give one seed" in capsys.readouterr().err


def test_export_into_an_empty_folder_and_failure_leaves_no_partial_folder(tmp_path, monkeypatch):
    img = np.zeros((4, 4, 3), np.uint8)
    manifest = {"poisoning_inputs": [{"file": "000000.png", "target_id": 0}], "targets": []}
    dest = tmp_path / "empty"
    dest.mkdir()
    export_imagefolder(np.stack([img, img + 1]), [5, 9], manifest, [np.ones((4, 8, 3), np.uint8)], dest)
    assert sorted(p.name for p in (dest / "unlabeled").iterdir()) == ["clean_000000.png", "clean_000001.png",
                                                                      "poison_000000.png"]
    # a failure halfway (a full disk) leaves neither the destination nor a temporary folder
    from PIL import Image

    calls = []

    def failing_save(self, fp, *a, **k):
        calls.append(fp)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(self, fp, *a, **k)

    real = Image.Image.save
    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError):
        export_imagefolder(np.stack([img, img]), [0, 1], manifest, [img], tmp_path / "second")
    assert not (tmp_path / "second").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]
    with pytest.raises(UserError, match="not empty"):
        export_imagefolder(np.stack([img]), [0], manifest, [img], dest)

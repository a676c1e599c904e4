"""``poisonedencoder scan FOLDER --out DIR`` end to end on tiny synthetic folders: clean inputs are
8x8 single-colour images, poisoning inputs 8x16 images of two colours side by side; hand-built
encoders (a crop's mean colour) make crop_disagreement's scores known. Every option is checked to
change what it should; bad input is one line with exit status 2, or a counted skip."""
import csv
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from poisonedencoder.cli import main
from poisonedencoder.defenses.threshold import reference_threshold, robust_threshold
from poisonedencoder.experiment.external import load_encoder
from poisonedencoder.scan import filter_scores, read_folder

COLOURS = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30]])
ORACLE = "oracle: the share of poisoning inputs told"
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")


def _clean(rng, c, h=8, w=8):
    return np.clip(COLOURS[c] + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def make_set(root, n_clean=24, n_poison=6, seed=0):
    """``root/a/``, ``root/b/``: clean inputs (class folders); ``root/poison_*.png``: two colours side by side."""
    rng = np.random.default_rng(seed)
    for i in range(n_clean):
        (root / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(_clean(rng, i % 4)).save(root / "ab"[i % 2] / f"clean_{i:02d}.png")
    names = []
    for i in range(n_poison):
        img = np.concatenate([_clean(rng, i % 4), _clean(rng, (i + 1) % 4)], 1)
        Image.fromarray(img).save(root / f"poison_{i:02d}.png")
        names.append(f"poison_{i:02d}.png")
    return names


class MeanColour(torch.nn.Module):
    def forward(self, x):
        return x.mean((2, 3)) - 0.5


class Brightest(torch.nn.Module):
    def forward(self, x):
        return x.amax((2, 3)) - x.amin((2, 3)).mean(1, keepdim=True)


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    base = tmp_path_factory.mktemp("scan")
    poisons = make_set(base / "set")
    make_set(base / "ref", n_clean=19, n_poison=0, seed=1)
    (base / "list.txt").write_text("# the poisoning inputs, relative to FOLDER\n" + "\n".join(poisons) + "\n")
    torch.jit.script(MeanColour()).save(str(base / "mean.pt"))
    torch.jit.script(Brightest()).save(str(base / "bright.pt"))
    return base


def scan(out, *args, folder=None, kit_dir=None) -> dict:
    rc = main(["scan", str(folder or kit_dir / "set"), "--out", str(out), *map(str, args)])
    assert rc == 0
    return json.loads((out / "scan.json").read_text())


def rows(out) -> list[dict]:
    with open(out / "scores.csv", newline="") as f:
        return list(csv.DictReader(f))


def _scores(out, name="crop_disagreement"):
    return {r["file"]: float(r[f"{name}_score"]) for r in rows(out) if r["status"] == "scanned"}


def _fail(capsys, *argv) -> str:
    rc = main(["scan", *map(str, argv)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _tree(path) -> dict:
    return {p: p.stat().st_mtime_ns for p in path.rglob("*")}


def test_an_encoder_scan_flags_the_two_object_inputs_and_writes_only_into_out(kit, tmp_path):
    out = tmp_path / "out"
    before = _tree(kit)
    r = scan(out, "--encoder", kit / "mean.pt", "--trust-torchscript", "--normalize", "none", "--manifest", kit / "list.txt", kit_dir=kit)
    assert _tree(kit) == before  # FOLDER, the encoder, the manifest untouched; all output under --out
    assert {p.name for p in out.iterdir()} == {".poisonedencoder", ".lock", "scores.csv", "suspects.png", "roc.png", "report.md",
                                               "scan.json"}
    assert r["images"] == 30 and r["filters_run"] == ["crop_disagreement", "part_hash", "aspect_ratio"]
    e = r["encoder"]
    assert e["choice"] == "encoder" and e["trained_on"].startswith("unknown") and e["format"] == "torchscript"
    cd = r["filters"]["crop_disagreement"]
    assert cd["threshold"]["method"] == "robust" and cd["threshold"]["fpr"] == 0.05
    assert set(cd["flagged_files"]) >= {f"poison_{i:02d}.png" for i in range(6)}
    det = cd["detection"]
    assert det["auroc"]["value"] == 1.0 and det["n_poison"] == 6 and det["n_clean"] == 24
    assert det["at_threshold"]["recall"]["k"] == 6 and det["at_threshold"]["fpr"]["k"] == cd["flagged"] - 6 <= 3
    s = _scores(out)
    assert cd["threshold"]["value"] == pytest.approx(robust_threshold(list(s.values()), 0.05), rel=1e-4)
    assert {r_["file"] for r_ in rows(out)} >= {"a/clean_00.png", "b/clean_01.png"}  # class folders, labels ignored
    report = (out / "report.md").read_text()
    assert "`--encoder`" in report and "robust z" in report and "AUROC" in report and "DeLong" in report
    with Image.open(out / "suspects.png") as im:
        assert im.width > 8 * 16  # a grid of the 30 images, 8 to a row


def test_normalize_reaches_the_encoder(kit, tmp_path):
    none = scan(tmp_path / "n", "--encoder", kit / "mean.pt", "--trust-torchscript", "--normalize", "none", "--filters", "crop_disagreement",
                kit_dir=kit)
    imnet = scan(tmp_path / "i", "--encoder", kit / "mean.pt", "--trust-torchscript", "--filters", "crop_disagreement", kit_dir=kit)
    assert none["encoder"]["normalize"] == "none" and imnet["encoder"]["normalize"] == "imagenet"  # the loader's default
    a, b = _scores(tmp_path / "n"), _scores(tmp_path / "i")
    assert max(abs(a[k] - b[k]) for k in a) > 1e-3


def test_the_clean_encoder_is_the_one_used_and_said_so(kit, tmp_path):
    mine = scan(tmp_path / "e", "--encoder", kit / "mean.pt", "--trust-torchscript", "--filters", "crop_disagreement", kit_dir=kit)
    clean = scan(tmp_path / "c", "--clean-encoder", kit / "bright.pt", "--trust-torchscript", "--filters", "crop_disagreement", kit_dir=kit)
    assert clean["encoder"]["choice"] == "clean-encoder" and clean["encoder"]["trained_on"].startswith("clean data")
    assert clean["encoder"]["path"].endswith("bright.pt") and mine["encoder"]["path"].endswith("mean.pt")
    assert "`--clean-encoder`; trained on: clean data" in (tmp_path / "c" / "report.md").read_text()
    a, b = _scores(tmp_path / "e"), _scores(tmp_path / "c")
    assert max(abs(a[k] - b[k]) for k in a) > 1e-3


def test_a_state_dict_needs_arch_width_and_prefix_as_evaluate_does(kit, tmp_path, capsys):
    from poisonedencoder.ssl.models import CNN7

    torch.manual_seed(0)
    torch.save({f"net.{k}": v for k, v in CNN7(4).state_dict().items()}, tmp_path / "sd.pt")
    base = [kit / "set", "--out", tmp_path / "o", "--encoder", tmp_path / "sd.pt", "--filters", "crop_disagreement"]
    assert "give --arch" in _fail(capsys, *base)
    assert "has shape" in _fail(capsys, *base, "--arch", "cnn7", "--prefix", "net.")  # default width 32
    assert "missing key" in _fail(capsys, *base, "--arch", "cnn7", "--width", 4)  # no wrapper prefix fits 'net.'
    r = scan(tmp_path / "o", "--encoder", tmp_path / "sd.pt", "--arch", "cnn7", "--width", 4, "--prefix", "net.",
             "--filters", "crop_disagreement", kit_dir=kit)
    assert (r["encoder"]["arch"], r["encoder"]["width"], r["encoder"]["prefix"]) == ("cnn7", 4, "net.")
    assert r["encoder"]["feature_dim"] == 32 and r["encoder"]["normalize"] == "none"  # CNN7 keeps its statistics


def test_image_size_is_the_side_of_the_crops_the_encoder_sees(kit, tmp_path):
    torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 8, stride=8), torch.nn.Flatten())).save(str(tmp_path / "c.pt"))
    default = scan(tmp_path / "d", "--encoder", tmp_path / "c.pt", "--trust-torchscript", "--filters", "crop_disagreement", kit_dir=kit)
    big = scan(tmp_path / "b", "--encoder", tmp_path / "c.pt", "--trust-torchscript", "--image-size", 16, "--filters", "crop_disagreement",
               kit_dir=kit)
    assert default["image_size"] == 8 and default["encoder"]["feature_dim"] == 4  # the clean inputs' side
    assert big["image_size"] == 16 and big["encoder"]["feature_dim"] == 16  # 2x2 windows of 4 channels


def test_train_pretrains_on_the_folder_for_the_epochs_asked_and_resumes(kit, tmp_path):
    from poisonedencoder.core.torch_files import load_torch

    out = tmp_path / "t"
    r = scan(out, "--train", "--train-epochs", 2, "--filters", "crop_disagreement", kit_dir=kit)
    e = r["encoder"]
    assert e["choice"] == "train" and e["trained_on"].startswith("FOLDER itself") and e["backbone"] == "cnn7"
    assert e["epochs_done"] == 2 and e["epochs_asked"] == 2 and e["stopped_by"] == "epochs" and e["minutes_taken"] > 0
    assert load_torch(out / "train" / "checkpoint.pt")["epoch"] == 2
    assert "epochs done: 2 of 2 asked" in (out / "report.md").read_text()
    first = _scores(out)
    again = scan(out, "--train", "--train-epochs", 2, "--filters", "crop_disagreement", kit_dir=kit)
    assert again["encoder"]["resumed_after_epoch"] == 2 and _scores(out) == first  # nothing retrained, same scores
    scan(tmp_path / "e", "--encoder", kit / "mean.pt", "--trust-torchscript", "--filters", "crop_disagreement", kit_dir=kit)
    other = _scores(tmp_path / "e")
    assert max(abs(first[k] - other[k]) for k in first) > 1e-3  # the trained encoder, not another


def test_train_minutes_stops_training_at_the_time_budget(kit, tmp_path):
    r = scan(tmp_path / "m", "--train", "--train-epochs", 50, "--train-minutes", 1e-5, "--filters", "crop_disagreement",
             kit_dir=kit)
    e = r["encoder"]
    assert e["epochs_done"] == 1 and e["stopped_by"] == "minutes" and e["minutes_asked"] == 1e-5
    assert "stopped by the minutes budget" in (tmp_path / "m" / "report.md").read_text()


def test_fpr_sets_the_robust_threshold(kit, tmp_path):
    a = scan(tmp_path / "a", "--encoder", kit / "mean.pt", "--trust-torchscript", "--filters", "crop_disagreement", kit_dir=kit)
    b = scan(tmp_path / "b", "--encoder", kit / "mean.pt", "--trust-torchscript", "--filters", "crop_disagreement", "--fpr", 0.01, kit_dir=kit)
    ta, tb = a["filters"]["crop_disagreement"]["threshold"], b["filters"]["crop_disagreement"]["threshold"]
    assert (ta["fpr"], tb["fpr"]) == (0.05, 0.01) and tb["value"] > ta["value"]
    assert tb["value"] == pytest.approx(robust_threshold(list(_scores(tmp_path / "b").values()), 0.01), rel=1e-4)


def test_reference_sets_the_conformal_threshold_from_the_reference_scores(kit, tmp_path, capsys):
    r = scan(tmp_path / "r", "--encoder", kit / "mean.pt", "--trust-torchscript", "--normalize", "none", "--reference", kit / "ref",
             "--filters", "crop_disagreement", kit_dir=kit)
    t = r["filters"]["crop_disagreement"]["threshold"]
    enc, _ = load_encoder(kit / "mean.pt", normalize="none", image_size=8, trust_torchscript=True)
    ref = filter_scores("crop_disagreement", read_folder(kit / "ref", log=lambda _: None).images, enc, size=8)
    assert t["method"] == "reference" and t["n_reference"] == 19 and t["value"] == pytest.approx(reference_threshold(ref, 0.05))
    assert r["reference"]["images"] == 19 and "split-conformal" in (tmp_path / "r" / "report.md").read_text()
    assert "needs at least 99" in _fail(capsys, kit / "set", "--out", tmp_path / "r2", "--train",
                                        "--reference", kit / "ref", "--fpr", 0.01)
    assert not (tmp_path / "r2").exists()  # refused before training


def test_budget_is_the_oracle_and_every_output_says_so(kit, tmp_path):
    out = tmp_path / "o"
    r = scan(out, "--encoder", kit / "mean.pt", "--trust-torchscript", "--budget", 0.2, kit_dir=kit)
    t = r["filters"]["crop_disagreement"]["threshold"]
    assert t["method"] == "budget" and t["oracle"] and r["filters"]["crop_disagreement"]["flagged"] == 6
    assert f"crop_disagreement_flagged ({ORACLE})" in rows(out)[0]
    assert ORACLE in (out / "report.md").read_text()
    assert not r["filters"]["part_hash"]["threshold"]["oracle"]


def test_filters_restricts_and_without_an_encoder_crop_disagreement_is_not_run(kit, tmp_path):
    r = scan(tmp_path / "p", "--filters", "part_hash", kit_dir=kit)
    assert r["filters_run"] == ["part_hash"] and not r["filters"]["aspect_ratio"]["ran"]
    assert [k for k in rows(tmp_path / "p")[0] if k.endswith("_score")] == ["part_hash_score"]
    d = scan(tmp_path / "d", kit_dir=kit)
    assert d["filters_run"] == ["part_hash", "aspect_ratio"] and d["encoder"] is None
    assert "needs an encoder" in d["filters"]["crop_disagreement"]["why"]
    assert "crop_disagreement: not run: it needs an encoder" in (tmp_path / "d" / "report.md").read_text()
    assert sorted(d["filters"]["aspect_ratio"]["flagged_files"]) == [f"poison_{i:02d}.png" for i in range(6)]


def test_manifest_adds_the_metrics_and_the_roc(kit, tmp_path):
    plain = scan(tmp_path / "n", kit_dir=kit)
    assert plain["manifest"] is None and "detection" not in plain["filters"]["part_hash"]
    assert not (tmp_path / "n" / "roc.png").exists() and "is_poison" not in rows(tmp_path / "n")[0]
    r = scan(tmp_path / "n", "--manifest", kit / "list.txt", kit_dir=kit)  # the same --out, now with the truth
    assert r["manifest"]["matched"] == 6 and r["manifest"]["kind"] == "text"
    d = r["filters"]["aspect_ratio"]["detection"]
    assert d["auroc"]["value"] == 1.0 and d["tpr_at_fpr"]["0.01"]["tpr"]["k"] == 6
    assert (tmp_path / "n" / "roc.png").exists() and sum(int(x["is_poison"]) for x in rows(tmp_path / "n")) == 6


def test_the_toolkits_export_and_its_manifest_are_scanned_with_the_truth(tmp_path):
    """A run's pre-training set, as ``craft --export-imagefolder DIR`` writes it, scanned with DIR/manifest.json."""
    from poisonedencoder.attack.export import export_imagefolder

    rng = np.random.default_rng(0)
    clean = np.stack([_clean(rng, i % 4) for i in range(20)])
    poisons = [np.concatenate([_clean(rng, i % 4), _clean(rng, (i + 2) % 4)], 1) for i in range(5)]
    manifest = {"format": "poisonedencoder-poisons/1", "poisoning_inputs": [{"file": f"{i:06d}.png"} for i in range(5)]}
    export_imagefolder(clean, range(20), manifest, poisons, tmp_path / "exported")
    r = scan(tmp_path / "o", "--manifest", tmp_path / "exported" / "manifest.json", folder=tmp_path / "exported")
    assert r["images"] == 25 and r["other_files"] == 1  # manifest.json is not an image
    assert r["manifest"]["matched"] == 5 and r["manifest"]["kind"] == "poisonedencoder-poisons"
    assert r["filters"]["aspect_ratio"]["detection"]["n_poison"] == 5


def test_top_sets_how_many_suspects_are_shown(kit, tmp_path):
    scan(tmp_path / "a", kit_dir=kit)
    scan(tmp_path / "b", "--top", 3, kit_dir=kit)
    with Image.open(tmp_path / "a" / "suspects.png") as a, Image.open(tmp_path / "b" / "suspects.png") as b:
        assert b.height < a.height  # one row of 3 against four rows of the 30


def test_skipped_files_are_counted_with_their_reason(kit, tmp_path):
    folder = tmp_path / "f"
    make_set(folder, n_clean=8, n_poison=2)
    (folder / "broken.png").write_text("not a png")
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(folder / "dot.png")
    os.symlink(kit / "set" / "poison_00.png", folder / "elsewhere.png")
    r = scan(tmp_path / "o", folder=folder)
    assert r["images"] == 10 and {s["file"] for s in r["skipped"]} == {"broken.png", "dot.png", "elsewhere.png"}
    skipped = {x["file"]: x["reason"] for x in rows(tmp_path / "o") if x["status"] == "skipped"}
    assert skipped["elsewhere.png"] == "symlink leading outside FOLDER" and skipped["dot.png"].startswith("too small")
    assert "## Skipped files" in (tmp_path / "o" / "report.md").read_text()


@pytest.mark.parametrize("argv, says", [
    (["--encoder", "{kit}/mean.pt", "--train"], "exclude each other"),
    (["--arch", "cnn7"], "goes with --encoder"),
    (["--train-epochs", "3"], "goes with --train"),
    (["--fpr", "0.1"], "needs an encoder"),
    (["--train", "--budget", "0.1", "--fpr", "0.1"], "give one"),
    (["--train", "--fpr", "1.5"], "strictly between 0 and 1"),
    (["--filters", "crop_disagreement"], "needs an encoder"),
    (["--filters", "bogus"], "unknown filter 'bogus'"),
    (["--filters", "part_hash", "--train"], "--filters leaves it out"),
    (["--train", "--train-epochs", "0"], "between 1 and 100000"),
    (["--device", "cuda:9"], "cuda"),
    (["--encoder", "{kit}/missing.pt"], "does not exist"),
    (["--manifest", "{kit}/ref/a/clean_00.png"], "UTF-8"),
    (["--manifest", "{kit}/mean.pt"], "UTF-8"),
])
def test_bad_options_are_one_line_before_any_work(kit, tmp_path, capsys, argv, says):
    argv = [a.replace("{kit}", str(kit)) for a in argv]
    assert says in _fail(capsys, kit / "set", "--out", tmp_path / "o", *argv)
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_bad_folders_and_outs_are_one_line_and_nothing_of_the_users_is_touched(kit, tmp_path, capsys):
    assert "does not exist" in _fail(capsys, tmp_path / "nope", "--out", tmp_path / "o1")
    (tmp_path / "empty").mkdir()
    assert "holds nothing to scan" in _fail(capsys, tmp_path / "empty", "--out", tmp_path / "o2")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()  # nothing written for a bad FOLDER
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert "not empty" in _fail(capsys, kit / "set", "--out", mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep"
    assert "is FOLDER itself" in _fail(capsys, kit / "set", "--out", kit / "set")
    (tmp_path / "file").write_text("x")
    assert "is a file" in _fail(capsys, kit / "set", "--out", tmp_path / "file")
    (tmp_path / "list.txt").write_text("nothing_like_it.png\n")
    assert "none of the 1 poisoning inputs" in _fail(capsys, kit / "set", "--out", tmp_path / "o3", "--manifest",
                                                     tmp_path / "list.txt")


def test_an_out_inside_folder_is_not_scanned(tmp_path):
    folder = tmp_path / "f"
    make_set(folder, n_clean=8, n_poison=2)
    first = scan(folder / "scan", folder=folder)
    again = scan(folder / "scan", folder=folder)  # suspects.png now lies under FOLDER: left out
    assert first["images"] == again["images"] == 10


def test_an_interrupted_scan_leaves_no_scan_json_and_the_same_command_finishes_it(kit, tmp_path, monkeypatch, capsys):
    from poisonedencoder.scan import report

    out = tmp_path / "o"
    done = scan(out, kit_dir=kit)

    def interrupted(_):
        raise KeyboardInterrupt

    (out / ".scores.csv.0123456789ab.tmp").write_text("half")  # what a write killed midway leaves
    monkeypatch.setattr(report, "report_md", interrupted)
    rc = main(["scan", str(kit / "set"), "--out", str(out), "--filters", "aspect_ratio"])
    assert rc == 130 and "run the same command" in capsys.readouterr().err
    assert not (out / "scan.json").exists()  # the earlier scan's marker went first: no stale outputs pass for this one
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    again = scan(out, "--filters", "aspect_ratio", kit_dir=kit)
    assert again["filters_run"] == ["aspect_ratio"] and done["filters_run"] != again["filters_run"]
    assert [k for k in rows(out)[0] if k.endswith("_score")] == ["aspect_ratio_score"]


def test_train_resumes_from_the_checkpoint_of_an_interrupted_scan_and_restarts_for_another_folder(kit, tmp_path):
    from poisonedencoder.core.torch_files import load_torch

    out = tmp_path / "t"
    scan(out, "--train", "--train-epochs", 1, "--filters", "crop_disagreement", kit_dir=kit)
    (out / "train" / "encoder.pt").unlink()  # killed after the checkpoint, before the encoder's file
    (out / "scan.json").unlink()
    r = scan(out, "--train", "--train-epochs", 2, "--filters", "crop_disagreement", kit_dir=kit)
    assert r["encoder"]["resumed_after_epoch"] == 1 and r["encoder"]["epochs_done"] == 2
    assert len(load_torch(out / "train" / "encoder.pt")["loss"]) == 2  # one history: epoch 1 kept, epoch 2 added
    folder = tmp_path / "other"
    make_set(folder, n_clean=10, n_poison=2, seed=5)
    other = scan(out, "--train", "--train-epochs", 2, "--filters", "crop_disagreement", folder=folder)
    assert other["encoder"]["resumed_after_epoch"] == 0 and other["images"] == 12  # another folder: trained afresh

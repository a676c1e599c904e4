"""Files and values that a hostile (or careless) user hands the toolkit, beside
tests/test_hostile_input.py: each is refused with one line and exit status 2, or handled safely;
docs/CONFIG.md, "What is refused and why", lists them.

| input                                                        | test                                   |
|--------------------------------------------------------------|----------------------------------------|
| YAML aliases nested to expand to billions of values ("billion laughs"), in a file, ``--set`` or a merge key; an alias inside its own anchor | test_yaml_alias_bomb_*, test_yaml_recursive_alias_* |
| ``sweep --values ""`` or ``",,,"`` (with or without ``--parallel``), an empty list | test_sweep_without_a_value_*, test_sweep_of_an_empty_list_* |
| one key set twice: `--set` repeated, `--set` and a flag, a key and a mapping holding it | test_a_key_set_twice_* |
| a poison manifest entry outside its folder (``../x.png``, ``/abs.png``, a link leading out, a NUL byte) | test_manifest_entries_outside_* |
| a truncated image (a poisoning input, a dataset's file)     | test_a_truncated_* |
| an image of more pixels than the bound (12000x12000), ``POISONEDENCODER_MAX_PIXELS`` | test_an_image_over_the_pixel_bound_* |
| a full disk (``ENOSPC``, which names no file) during ``--export-imagefolder`` or an atomic write | test_a_full_disk_* |
| ``--width -1``, ``--width 100000`` (360 GB), ``POISONEDENCODER_MAX_PARAMETERS`` | test_an_impossible_width_*, test_the_parameter_bound_* |
| an encoder with NaN or Inf weights, or whose features are (at load, in an evaluation) | test_an_encoder_with_nan_*, test_an_encoder_whose_features_*, test_nan_features_* |
| a TorchScript ``--encoder`` (its code runs) without ``--trust-torchscript`` (evaluate, scan, the API) | test_torchscript_is_loaded_only_*, test_the_api_loads_torchscript_* |
| a raw pickle as ``--encoder`` (torch's warnings, "a state_dict")  | test_a_raw_pickle_encoder_* |
| ``claims`` without a config, outside the repository | test_claims_without_a_config_* |
"""
import subprocess
import sys
from pathlib import Path

import pytest

from poisonedencoder import cli
from poisonedencoder import config as C
from poisonedencoder.core.errors import UserError

from test_hostile_input import ROOT, TINY, _cli, _one_line_error  # the same tiny recipe and one-line check


def _subprocess(*argv, cwd=None, timeout=60) -> subprocess.CompletedProcess:
    """The command line in a process of its own, bounded in time: a hang fails the test, never the suite."""
    return subprocess.run([sys.executable, "-m", "poisonedencoder", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


# ------------------------------------------------------------------------------------ YAML aliases
def _laughs(levels: int = 9, flow: bool = False) -> str:
    """Nested aliases: each level a list of 9 aliases of the one before, 9**levels strings in all (a
    few hundred bytes). ``flow``: one flow mapping, for ``--set``."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "{" + ", ".join(lines) + "}" if flow else "\n".join(lines) + "\n"


def test_yaml_alias_bomb_in_a_config_file_is_one_line_at_once(tmp_path):
    cfg = tmp_path / "laughs.yaml"
    cfg.write_text(_laughs())
    assert len(cfg.read_bytes()) < 500
    r = _subprocess("craft", cfg, "--out", tmp_path / "run", timeout=60)  # a hang: TimeoutExpired
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr[-2000:]
    assert f"config file {cfg}" in r.stderr and "more than 100,000 values, each alias (*name) counted as a copy" in r.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("how", ["set", "merge"])
def test_yaml_alias_bomb_in_a_set_value_or_merge_keys_is_one_line_at_once(tmp_path, how):
    if how == "set":
        value = "tasks=" + _laughs(flow=True)
    else:  # ``<<:`` merges: each level merges the one before 9 times (PyYAML flattens them by copying)
        levels = ["{k0: 1, j0: 2}"] + [f"{{<<: [{', '.join([f'*m{i - 1}'] * 9)}], k{i}: 1}}" for i in range(1, 10)]
        value = "tasks={" + ", ".join(f"m{i}: &m{i} {m}" for i, m in enumerate(levels)) + "}"
    assert len(value) < 1000
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY)
    r = _subprocess("craft", cfg, "--out", tmp_path / "run", "--set", value, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("error: --set 'tasks': ") and r.stderr.count("\n") == 1, \
        r.stderr[-2000:]
    assert "more than 100,000 values, each alias (*name) counted as a copy" in r.stderr


def test_yaml_recursive_alias_is_one_line():
    with pytest.raises(UserError, match=r"an alias \(\*name\) refers to the value that contains it"):
        C.parse_yaml("a: &x [1, *x]\n", "t")
    with pytest.raises(UserError, match="refers to the value that contains it"):
        C.parse_yaml("a: &x {b: *x}\n", "t")


def test_yaml_anchors_within_the_bound_still_work():
    assert C.parse_yaml("a: &x {b: 1}\nc:\n  <<: *x\n  d: 2\ne: [*x, *x]\n", "t") == \
        {"a": {"b": 1}, "c": {"b": 1, "d": 2}, "e": [{"b": 1}, {"b": 1}]}
    assert C.parse_yaml(_laughs(levels=5), "t")["a4"][0][0][0][0][0] == "lol"  # 9**5 = 59,049 strings: accepted


# ------------------------------------------------------------------------------------ sweep without values
@pytest.mark.parametrize("values", ["", ",,,", " , "])
@pytest.mark.parametrize("parallel", [[], ["--parallel", "2"]])
def test_sweep_without_a_value_is_one_line(tmp_path, capsys, values, parallel):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY)
    rc, err = _cli(capsys, "sweep", str(cfg), "--param", "seed", "--values", values, *parallel,
                   "--out", str(tmp_path / "sw"), "--cache-dir", str(tmp_path / "cache"))
    _one_line_error(rc, err, f"sweep --values {values!r} holds no value")
    assert not (tmp_path / "sw").exists()


def test_sweep_of_an_empty_list_is_refused_before_any_work(tmp_path):
    from poisonedencoder import api

    with pytest.raises(UserError, match="holds no value"):
        api.sweep(C.parse_yaml(TINY, "t"), "seed", [], tmp_path / "sw")
    assert not (tmp_path / "sw").exists()


# ------------------------------------------------------------------------------------ a key set twice
@pytest.mark.parametrize("argv,key,says", [
    (["--set", "pretrain.epochs=1", "--set", "pretrain.epochs=2"], "pretrain.epochs",
     "(--set 'pretrain.epochs=1' and --set 'pretrain.epochs=2')"),
    (["--set", "pretrain={epochs: 1, width: 4}", "--set", "pretrain.epochs=2"], "pretrain.epochs", "--set 'pretrain={"),
    (["--set", "pretrain.epochs=2", "--set", "pretrain=null"], "pretrain", "--set 'pretrain=null'"),
    (["--set", "seeds=[2]", "--seeds", "0,1"], "seeds", "(--set 'seeds=[2]' and --seeds '0,1')"),
    (["--set", "device=cpu", "--device", "cpu"], "device", "--device 'cpu'"),
])
def test_a_key_set_twice_is_one_line_naming_it(tmp_path, capsys, argv, key, says):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY)
    rc, err = _cli(capsys, "craft", str(cfg), "--out", str(tmp_path / "run"), *argv)
    _one_line_error(rc, err, f"error: key '{key}' is set twice", says, "keep one")
    assert not (tmp_path / "run").exists()


def test_keys_set_once_each_are_merged():
    from poisonedencoder.cli import _user_and_overrides, build_parser

    args = build_parser().parse_args(["craft", "c.yaml", "--set", "pretrain={width: 4}", "--set", "pretrain.epochs=3",
                                      "--set", "tasks=[{dataset: digits}]", "--seeds", "0,1"])
    args.config = None  # no file read
    cfg = C.resolve(*_user_and_overrides(args))
    assert cfg["pretrain"]["width"] == 4 and cfg["pretrain"]["epochs"] == 3 and cfg["seeds"] == [0, 1]
    args = build_parser().parse_args(["demo", "--preset", "cpu"])  # the demo's own preset is not the user's
    assert C.resolve(*_user_and_overrides(args))["preset"] == "cpu"


# ------------------------------------------------------------------------------------ poison manifests
@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    """A crafted run folder (TINY), made once; each test works on a copy."""
    base = tmp_path_factory.mktemp("crafted")
    (base / "c.yaml").write_text(TINY)
    assert cli.main(["craft", str(base / "c.yaml"), "--out", str(base / "run"), "--cache-dir", str(base / "cache")]) == 0
    return base


def _copy_run(crafted, tmp_path) -> tuple[Path, Path]:
    import shutil

    shutil.copytree(crafted / "run", tmp_path / "run", symlinks=True)
    return crafted / "c.yaml", tmp_path / "run"


def _set_file(run: Path, i: int, name: str) -> None:
    import json

    mf = run / "poisons" / "manifest.json"
    m = json.loads(mf.read_text())
    m["poisoning_inputs"][i]["file"] = name
    mf.write_text(json.dumps(m))


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink", "nul"])
def test_manifest_entries_outside_their_folder_are_never_read(crafted, tmp_path, capsys, where):
    """A manifest entry naming a file outside the run's poisons/ (``../``, an absolute path, a link
    leading out) is refused before anything trains; the file outside is not read."""
    from PIL import Image

    cfg, run = _copy_run(crafted, tmp_path)
    outside = tmp_path / "outside.png"
    Image.new("RGB", (16, 32), (255, 0, 0)).save(outside)
    name = {"parent": "../../outside.png", "absolute": str(outside), "symlink": "000003.png", "nul": "a\0.png"}[where]
    if where == "symlink":
        (run / "poisons" / "000003.png").unlink()
        (run / "poisons" / "000003.png").symlink_to(outside)
    _set_file(run, 3, name)
    rc, err = _cli(capsys, "pretrain", str(cfg), "--out", str(run), "--which", "poisoned",
                   "--cache-dir", str(crafted / "cache"))
    if where == "symlink":  # the run folder's own check (no links in a folder the toolkit writes) sees it first
        _one_line_error(rc, err, f"{run / 'poisons' / '000003.png'}, which is a symbolic link")
    else:
        _one_line_error(rc, err, f"poison manifest {run / 'poisons' / 'manifest.json'}: poisoning_inputs[3] names",
                        "which lies outside", "refused")
    assert not (run / "encoders" / "poisoned").exists()
    from poisonedencoder.attack.export import load_poisons

    with pytest.raises(UserError, match=r"poisoning_inputs\[3\] names .*, which lies outside .* \(links resolved\)"):
        load_poisons(run / "poisons")  # the manifest's reader refuses it whoever calls it


def test_a_truncated_poisoning_input_names_the_file(crafted, tmp_path, capsys):
    cfg, run = _copy_run(crafted, tmp_path)
    png = run / "poisons" / "000001.png"
    png.write_bytes(png.read_bytes()[:-40])
    rc, err = _cli(capsys, "pretrain", str(cfg), "--out", str(run), "--which", "poisoned",
                   "--cache-dir", str(crafted / "cache"))
    _one_line_error(rc, err, f"cannot read poisoning input {png}: truncated or damaged (")


# ------------------------------------------------------------------------------------ image files
def _image_folder(root: Path, size=(16, 16), n: int = 3) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


def _craft_folder(capsys, tmp_path, folder: Path) -> tuple[int, str]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"tasks: [{{dataset: 'imagefolder:{folder}', num_targets: 1}}]\n"
                   f"pretrain_data: {{dataset: 'imagefolder:{folder}'}}\n"
                   "attack: {poisoning_rate: 0.2, num_references: 2}\npretrain: {width: 4, image_size: 16}\n")
    return _cli(capsys, "craft", str(cfg), "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"))


def test_a_truncated_image_of_a_dataset_names_the_file_and_says_truncated(tmp_path, capsys):
    folder = _image_folder(tmp_path / "imgs")
    png = folder / "train" / "b" / "1.png"
    png.write_bytes(png.read_bytes()[:-60])
    rc, err = _craft_folder(capsys, tmp_path, folder)
    _one_line_error(rc, err, f"cannot read image {png}: truncated or damaged (OSError: image file is truncated")


def test_an_image_over_the_pixel_bound_is_refused_naming_it_and_the_bound_can_be_raised(tmp_path, capsys, monkeypatch,
                                                                                         bomb_png):
    """The bound is checked from the header: a 40x40 image under a bound of 1,000 pixels stands for
    a 12000x12000 one under the default (89,478,485); POISONEDENCODER_MAX_PIXELS sets it."""
    from poisonedencoder.data.base import MAX_PIXELS, ImageRefused, open_rgb

    folder = _image_folder(tmp_path / "imgs", size=(40, 40))
    monkeypatch.setenv("POISONEDENCODER_MAX_PIXELS", "1000")
    rc, err = _craft_folder(capsys, tmp_path, folder)
    _one_line_error(rc, err, f"cannot read image {folder / 'train' / 'a' / '0.png'}: too large: 40x40 is more than 1000 "
                             "pixels (decompression-bomb guard; POISONEDENCODER_MAX_PIXELS raises the bound)")
    monkeypatch.setenv("POISONEDENCODER_MAX_PIXELS", "1600")
    rc, err = _craft_folder(capsys, tmp_path, folder)
    assert rc == 0, err
    monkeypatch.setenv("POISONEDENCODER_MAX_PIXELS", "lots")
    with pytest.raises(UserError, match="POISONEDENCODER_MAX_PIXELS must be a positive whole number, got 'lots'"):
        open_rgb(folder / "test" / "a" / "0.png")
    monkeypatch.delenv("POISONEDENCODER_MAX_PIXELS")
    bomb_png(tmp_path / "big.png", 12000, 12000)  # a few bytes claiming 144 million pixels: never decoded
    with pytest.raises(ImageRefused, match=f"too large: 12000x12000 is more than {MAX_PIXELS} pixels"):
        open_rgb(tmp_path / "big.png")


# ------------------------------------------------------------------------------------ a full disk
def _full_disk_after(monkeypatch, n: int) -> None:
    """PIL's writes fail after ``n`` images as on a full disk: ``write`` raises ``OSError(ENOSPC)``,
    which names no file."""
    import errno

    from PIL import Image

    save, calls = Image.Image.save, [0]

    def full(self, fp, *a, **k):
        calls[0] += 1
        if calls[0] > n:
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(self, fp, *a, **k)

    monkeypatch.setattr(Image.Image, "save", full)


def test_a_full_disk_during_export_names_the_file(crafted, tmp_path, capsys, monkeypatch):
    cfg, run = _copy_run(crafted, tmp_path)
    dest = tmp_path / "export"
    _full_disk_after(monkeypatch, 5)
    rc, err = _cli(capsys, "craft", str(cfg), "--out", str(run), "--cache-dir", str(crafted / "cache"),
                   "--export-imagefolder", str(dest))
    _one_line_error(rc, err, f"error: No space left on device: {dest / 'unlabeled' / 'clean_000005.png'}")
    assert not dest.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".export")] == []


def test_a_full_disk_during_an_atomic_write_names_the_file(tmp_path, capsys, monkeypatch):
    """The craft's poisoning inputs (atomic writes): the file it stopped at, nothing half-written."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY)
    _full_disk_after(monkeypatch, 2)
    rc, err = _cli(capsys, "craft", str(cfg), "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"))
    _one_line_error(rc, err, f"error: No space left on device: {tmp_path / 'run' / 'poisons' / '000002.png'}")
    assert not list((tmp_path / "run" / "poisons").glob(".*.tmp"))


# ------------------------------------------------------------------------------------ outside encoders
@pytest.fixture(scope="module")
def encoder_files(tmp_path_factory):
    """CNN7 at width 4 as the files a user may hand --encoder: a state_dict (now and in torch.save's
    legacy format), the same with NaN, with Inf, with weights that overflow, TorchScript, a pickle."""
    import pickle

    import torch

    from poisonedencoder.ssl.models import build_backbone

    d = tmp_path_factory.mktemp("encoders")
    torch.manual_seed(0)
    sd = build_backbone("cnn7", 4).state_dict()
    torch.save(sd, d / "sd.pt")
    torch.save(sd, d / "legacy.pt", _use_new_zipfile_serialization=False)
    w = "features.3.weight"
    assert w in sd
    for name, value in (("nan", float("nan")), ("inf", float("inf"))):
        bad = {k: v.clone() for k, v in sd.items()}
        bad[w].view(-1)[5] = value
        torch.save(bad, d / f"{name}.pt")
    torch.save({k: v * 1e30 if k.endswith("weight") else v for k, v in sd.items()}, d / "overflow.pt")
    net = build_backbone("cnn7", 4)
    net.load_state_dict(sd)
    with pytest.warns(FutureWarning):
        torch.jit.script(net.eval()).save(str(d / "ts.pt"))
    (d / "raw.pkl").write_bytes(pickle.dumps({"w": [1.0]}, protocol=4))
    (d / "c.yaml").write_text(TINY)
    return d


def _evaluate(capsys, d: Path, tmp_path, *argv) -> tuple[int, str]:
    return _cli(capsys, "evaluate", str(d / "c.yaml"), "--out", str(tmp_path / "run"), "--cache-dir",
                str(tmp_path / "cache"), *map(str, argv))


@pytest.mark.parametrize("name", ["nan", "inf"])
def test_an_encoder_with_nan_or_inf_weights_is_refused(encoder_files, tmp_path, capsys, name):
    rc, err = _evaluate(capsys, encoder_files, tmp_path, "--encoder", encoder_files / f"{name}.pt", "--arch", "cnn7")
    _one_line_error(rc, err, f"encoder {encoder_files / f'{name}.pt'} has NaN or Inf weights (features.3.weight: 1 of ")
    assert not (tmp_path / "run").exists()  # refused before any work


def test_an_encoder_whose_features_overflow_is_refused(encoder_files, tmp_path, capsys):
    rc, err = _evaluate(capsys, encoder_files, tmp_path, "--encoder", encoder_files / "overflow.pt", "--arch", "cnn7")
    _one_line_error(rc, err, "returns NaN or Inf features for a batch of 2 images")


def test_nan_features_in_an_evaluation_are_one_error_naming_the_encoder(tmp_path):
    """An encoder module handed to the API, whose features turn NaN on the task's images."""
    import torch

    from poisonedencoder import api

    class Dark(torch.nn.Module):  # finite until an image is darker than 0.2 on average
        def forward(self, x):
            m = x.mean((1, 2, 3), keepdim=True).flatten(1)
            return torch.cat([m, torch.where(m < 0.2, torch.full_like(m, float("nan")), m)], 1)

    with pytest.raises(UserError, match=r"the poisoned encoder returned NaN or Inf features for \d+ of \d+ images"):
        api.evaluate_encoder(Dark(), C.parse_yaml(TINY, "t") | {"cache_dir": str(tmp_path / "cache")},
                             out=tmp_path / "run", log=lambda _: None)
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("command", ["evaluate", "scan"])
def test_torchscript_is_loaded_only_with_trust_torchscript(encoder_files, tmp_path, capsys, command):
    from PIL import Image

    ts = encoder_files / "ts.pt"
    if command == "evaluate":
        run = lambda *a: _evaluate(capsys, encoder_files, tmp_path, "--encoder", ts, *a)  # noqa: E731
    else:
        folder = tmp_path / "imgs"
        folder.mkdir()
        for i in range(4):
            Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(folder / f"{i}.png")
        run = lambda *a: _cli(capsys, "scan", str(folder), "--out", str(tmp_path / "scan"), "--encoder", str(ts),  # noqa: E731
                              "--filters", "crop_disagreement", *a)
    rc, err = run()
    _one_line_error(rc, err, f"encoder {ts} is TorchScript: loading it runs the code stored in the file",
                    "give --trust-torchscript")
    assert not (tmp_path / "run").exists() and not (tmp_path / "scan").exists()
    rc, err = run("--trust-torchscript")
    assert rc == 0, err


def test_trust_torchscript_goes_with_an_encoder(encoder_files, tmp_path, capsys):
    rc, err = _evaluate(capsys, encoder_files, tmp_path, "--trust-torchscript")
    _one_line_error(rc, err, "--trust-torchscript needs --encoder PATH")


def test_the_api_loads_torchscript_only_when_trusted(encoder_files):
    from poisonedencoder import api

    with pytest.raises(UserError, match=r"is TorchScript: .*trust_torchscript=True in Python"):
        api.load_encoder(encoder_files / "ts.pt", image_size=16)
    enc, info = api.load_encoder(encoder_files / "ts.pt", image_size=16, trust_torchscript=True)
    assert info["format"] == "torchscript" and info["feature_dim"] == 32


@pytest.mark.parametrize("arch", [[], ["--arch", "cnn7"]])
def test_a_raw_pickle_encoder_is_one_line_saying_pickle_with_no_warning_first(encoder_files, tmp_path, arch):
    r = _subprocess("evaluate", encoder_files / "c.yaml", "--out", tmp_path / "run", "--encoder", encoder_files / "raw.pkl",
                    *arch, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr[-2000:]
    assert f"cannot load encoder {encoder_files / 'raw.pkl'}" in r.stderr and "looks like a pickle, which is refused" in r.stderr
    assert "is a state_dict" not in r.stderr and "Warning" not in r.stderr


def test_a_legacy_torch_save_state_dict_still_loads(encoder_files):
    from poisonedencoder.experiment.external import load_encoder

    enc, info = load_encoder(encoder_files / "legacy.pt", arch="cnn7", width=4, image_size=16)
    assert info["format"] == "state_dict" and info["feature_dim"] == 32


# ------------------------------------------------------------------------------------ widths
@pytest.mark.parametrize("width,says", [
    (-1, "backbone cnn7 at width -1: the width must be a positive whole number"),
    (0, "backbone cnn7 at width 0: the width must be a positive whole number"),
    (100000, "backbone cnn7 at width 100000 would have 5,670,007,100,000 parameters (22,680.0 GB as float32), more "
             "than the 1,000,000,000 accepted; POISONEDENCODER_MAX_PARAMETERS=N raises the bound")])
def test_an_impossible_width_is_one_line_before_anything_is_allocated(tmp_path, capsys, width, says):
    import torch

    from poisonedencoder.ssl.models import build_backbone

    torch.save(build_backbone("cnn7", 4).state_dict(), tmp_path / "sd.pt")
    (tmp_path / "c.yaml").write_text(TINY)
    rc, err = _cli(capsys, "evaluate", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--encoder",
                   str(tmp_path / "sd.pt"), "--arch", "cnn7", "--width", str(width))
    _one_line_error(rc, err, says)


def test_the_parameter_bound_is_a_setting(monkeypatch):
    from poisonedencoder.ssl.models import build_backbone

    monkeypatch.setenv("POISONEDENCODER_MAX_PARAMETERS", "5000")
    with pytest.raises(UserError, match=r"resnet18w at width 4 would have [\d,]+ parameters .* more than the 5,000 accepted"):
        build_backbone("resnet18w", 4)
    monkeypatch.setenv("POISONEDENCODER_MAX_PARAMETERS", "1_000_000")
    assert sum(p.numel() for p in build_backbone("resnet18w", 4).parameters()) > 5000


# ------------------------------------------------------------------------------------ claims from any folder
def test_claims_without_a_config_finds_its_recipe_from_any_working_directory(tmp_path):
    """The default recipe ships inside the package: ``claims --list`` (reads only) from another folder."""
    import os

    import poisonedencoder
    from poisonedencoder.studies.claims.arms import default_recipe

    package = Path(poisonedencoder.__file__).parent
    recipe = default_recipe()
    assert recipe.is_file() and recipe.is_relative_to(package)
    assert (ROOT / "configs" / "digits_works.yaml").resolve() == recipe.resolve()  # the checkout's path is the same file
    env = {**os.environ, "PYTHONPATH": str(package.parent)}
    r = subprocess.run([sys.executable, "-m", "poisonedencoder", "claims", "--list", "--out", str(tmp_path / "claims")],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("poisonedencoder ") and "not started" in r.stdout
    assert not (tmp_path / "claims").exists()  # --list writes nothing

"""What identifies a run and an encoder stays what it was: finished runs and shared clean encoders
are found by ``experiment_fingerprint`` and ``clean_encoder_key``, so a change of the config's
shape must not change them. The values below were computed before the in-training defenses'
settings left the ``pretrain`` section."""
from pathlib import Path

import pytest
import yaml

from poisonedencoder import config as C
from poisonedencoder.ssl import precision as P

ROOT = Path(__file__).resolve().parents[1]
CIFAR = "imagefolder:/data/packed/cifar10"  # a fixed path: the file's own is relative to the checkout

# config -> {native bf16 on the CPU: (experiment_fingerprint, clean_encoder_key)}
PINNED = {
    "digits_works": {False: ("f0a64e7189b38cc0", "fd84cad506f399a6"), True: ("cdba990cfc11da94", "e182f1ad45384e98")},
    "digits_demo": {False: ("8a5baff9021a905c", "fd10c205503808ac"), True: ("22c635c5e2a004f4", "27dd2d90a05f5ad9")},
    "cifar10_gpu": {False: ("682410f95814e1c1", "efcf361d1ebb10ac"), True: ("682410f95814e1c1", "efcf361d1ebb10ac")},
    "digits_works+overlapping_views": {False: ("b2d343bca64414b5", "fd84cad506f399a6"),
                                       True: ("308380958e32cd0c", "e182f1ad45384e98")},
    "digits_works+drop_disagreeing": {False: ("3e2fc8a14d961db4", "fd84cad506f399a6"),
                                      True: ("3bd8a5960720f2a3", "e182f1ad45384e98")},
    "digits_works+large_crops": {False: ("70ed19a7ae718fc9", "fd84cad506f399a6"),
                                 True: ("588539f90e0cf1d5", "e182f1ad45384e98")},
}


def _config(name: str) -> dict:
    file, _, defense = name.partition("+")
    user = C.load_yaml(ROOT / "configs" / f"{file}.yaml")
    if file == "cifar10_gpu":
        user["pretrain_data"]["dataset"] = CIFAR
        user["tasks"][0]["dataset"] = CIFAR
    return C.resolve(user, [f"defense.name={defense}"] if defense else [])


@pytest.mark.parametrize("native", [False, True], ids=["fp32-cpu", "bf16-cpu"])
@pytest.mark.parametrize("name", sorted(PINNED))
def test_fingerprints_of_the_recipes_are_pinned(monkeypatch, name, native):
    monkeypatch.setattr(P, "native_bf16", lambda _device: native)  # precision auto resolves per machine
    cfg = _config(name)
    assert (C.experiment_fingerprint(cfg), C.clean_encoder_key(cfg)) == PINNED[name][native]


def _recorded_runs() -> list[Path]:
    return sorted(f.parent for f in (ROOT / "docs" / "results").rglob(".fingerprint")
                  if (f.parent / "config.yaml").is_file() and (f.parent / "metrics.json").is_file()
                  and not (f.parent / "seed_0").is_dir())  # a seeds folder's stamp is the seeds' fingerprint


def test_recorded_runs_keep_their_fingerprints(monkeypatch):
    """Every run recorded under docs/results: its config.yaml, resolved again, has the fingerprint
    that the run stamped (recorded on CPUs with native bf16, precision auto)."""
    monkeypatch.setattr(P, "native_bf16", lambda _device: True)
    runs = _recorded_runs()
    assert len(runs) >= 30
    for run in runs:
        recorded = yaml.safe_load((run / "config.yaml").read_text())
        want = (run / ".fingerprint").read_text().strip()
        assert C.experiment_fingerprint(C.resolve(recorded)) == want, run


# The same trained weights and encoder.pt "views" record as when overlapping_views and
# drop_disagreeing were pretrain settings (sha256 of the state dict, computed then, fp32, 1 thread)
TRAINED = {
    "none": ("d1034d780f5c484e", {"crop_scale": [0.08, 1.0], "view_overlap": 0.0, "drop_disagreeing": 0.0}),
    "overlapping_views": ("29131ab47ddca1ba", {"crop_scale": [0.08, 1.0], "view_overlap": 0.5, "drop_disagreeing": 0.0}),
    "drop_disagreeing": ("22b7a23bf56313fb", {"crop_scale": [0.08, 1.0], "view_overlap": 0.0, "drop_disagreeing": 0.1}),
}


def _train(defense_name: str, workdir: Path):
    import hashlib

    import numpy as np
    import torch

    from poisonedencoder.defenses import build_defense
    from poisonedencoder.core.torch_files import load_torch
    from poisonedencoder.ssl.pretrain import PretrainSet, pretrain

    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (48, 8, 8, 3), dtype=np.uint8)
    shaped = [rng.integers(0, 256, (8, 16, 3), dtype=np.uint8) for _ in range(5)] + \
             [rng.integers(0, 256, (16, 8, 3), dtype=np.uint8) for _ in range(3)]
    p = C.resolve({"preset": "demo"})["pretrain"]
    p.update(epochs=2, batch_size=16, width=4, image_size=8, precision="fp32", threads=1, crop_scale=[0.08, 1.0])
    d = build_defense({"name": defense_name})
    threads = torch.get_num_threads()
    try:
        model = pretrain(PretrainSet.from_images(clean, shaped), d.adjust_pretrain(p), workdir, seed=1,
                         log=lambda _: None, **d.training_hooks())
    finally:
        torch.set_num_threads(threads)
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16], load_torch(workdir / "encoder.pt")["views"]


def test_in_training_defenses_train_the_same_weights_as_before(tmp_path):
    base = _train("none", tmp_path / "none")
    assert base[1] == TRAINED["none"][1]
    if base[0] != TRAINED["none"][0]:
        pytest.skip("this machine's float arithmetic trains other weights even without a defense")
    for name in ("overlapping_views", "drop_disagreeing"):
        assert _train(name, tmp_path / name) == TRAINED[name], name

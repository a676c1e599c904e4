"""The toy plugins (one of each kind) that show what adding a plugin takes; the contract tests
(tests/attack/test_attack_contracts.py, tests/defenses/test_defense_contracts.py,
tests/ssl/test_methods.py) check them too, because they are registered."""
import numpy as np
import torch

from poisonedencoder import config as C
from poisonedencoder.attack import build_attack, select_targets
from poisonedencoder.data import load_dataset
from poisonedencoder.defenses import build_defense
from poisonedencoder.ssl.methods import build_method


def test_noisy_copy_is_the_target_plus_noise_of_sigma(toy_dataset):
    a = build_attack({**C.defaults()["attack"], "name": "noisy_copy", "poisoning_rate": 0.5, "noisy_copy": {"sigma": 10.0}})
    t = select_targets(toy_dataset, 0, 1, seed=0)
    p = a.craft(t, [toy_dataset], 40)
    diff = np.stack([q.image.astype(float) for q in p]) - toy_dataset.test.images[t[0].test_index]
    assert 6 < diff.std() < 11  # sigma 10, shrunk a little by clipping at 0 and 255


def test_aspect_ratio_flags_exactly_the_side_by_side_inputs():
    imgs = [np.zeros((32, 32, 3), np.uint8)] * 5 + [np.zeros((32, 64, 3), np.uint8), np.zeros((64, 32, 3), np.uint8)]
    r = build_defense({"name": "aspect_ratio"}).filter(imgs)
    assert r.verdicts.tolist() == [False] * 5 + [True, True] and r.removed == 2


def test_align_uniform_loss_matches_a_hand_computation():
    m = build_method({**C.defaults()["pretrain"], "algorithm": "align_uniform", "backbone": "cnn7", "width": 2})
    z1, z2 = torch.tensor([[1.0, 0], [0, 1]]), torch.tensor([[1.0, 0], [1, 0]])
    m.embed = lambda *_: (z1, z2)
    # align: mean(|0|^2, |(-1, 1)|^2) = 1; uniform: log exp(-2 * 2) = -4 for z1, log exp(0) = 0 for z2
    assert abs(m.loss(None, None).item() - (1 + (-4 + 0) / 2)) < 1e-6


def test_stripes_has_four_orientations_that_differ(tmp_path):
    ds = load_dataset("stripes", image_size=16, cache_dir=tmp_path)
    assert ds.classes == ["0", "45", "90", "135"] and ds.train.images.shape == (1600, 16, 16, 3)
    # vertical gratings (0 degrees) vary along x, horizontal ones (90) along y
    g = ds.train.images.astype(float).mean(-1)
    along_x = lambda c: np.abs(np.diff(g[ds.train.labels == c], axis=2)).mean()  # noqa: E731
    along_y = lambda c: np.abs(np.diff(g[ds.train.labels == c], axis=1)).mean()  # noqa: E731
    assert along_x(0) > 2 * along_y(0) and along_y(2) > 2 * along_x(2)

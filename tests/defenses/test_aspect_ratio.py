"""The aspect-ratio filter (kept from the toy plugins of commit 9a273d5, which showed that an
attack, a defense, an SSL method and a dataset each take one new file plus one registry line;
the defense contract tests check it too, because it is registered)."""
import numpy as np

from poisonedencoder.defenses import build_defense

SQUARE, WIDE, TALL = (np.zeros(s, np.uint8) for s in ((32, 32, 3), (32, 64, 3), (64, 32, 3)))


def test_aspect_ratio_flags_exactly_the_side_by_side_inputs():
    r = build_defense({"name": "aspect_ratio"}).filter([SQUARE] * 5 + [WIDE, TALL])
    assert r.verdicts.tolist() == [False] * 5 + [True, True] and r.removed == 2


def test_tolerance_decides_what_is_kept():
    # |log 2| = 0.69: caught at the default 0.1, kept at 1.0
    r = build_defense({"name": "aspect_ratio", "aspect_ratio": {"tolerance": 1.0}}).filter([SQUARE] * 5 + [WIDE, TALL])
    assert r.removed == 0


def test_the_usual_shape_is_the_most_common_one():
    r = build_defense({"name": "aspect_ratio"}).filter([WIDE] * 4 + [SQUARE])
    assert r.verdicts.tolist() == [False] * 4 + [True]


def test_the_score_is_the_log_ratio_distance_and_the_verdict_is_score_above_tolerance():
    d = build_defense({"name": "aspect_ratio", "aspect_ratio": {"tolerance": 0.5}})
    images = [SQUARE] * 5 + [WIDE, TALL, np.zeros((32, 40, 3), np.uint8)]
    s = d.scores(images)
    assert np.allclose(s, [0] * 5 + [np.log(2), np.log(2), np.log(40 / 32)])
    assert (d.filter(images).verdicts == (s > 0.5)).all()

"""The detection metrics of scan (scan/detection.py) on cases whose answers are known."""
from statistics import NormalDist

import numpy as np
import pytest

from poisonedencoder.scan.detection import at_threshold, auroc, detection, roc_points, tpr_at_fpr


def test_perfect_separation_has_auroc_one_and_a_point_interval():
    a = auroc([5, 6, 7, 1, 2, 3, 4], [1, 1, 1, 0, 0, 0, 0])
    assert a["value"] == 1.0 and a["ci95"] == [1.0, 1.0] and a["method"] == "DeLong"
    assert auroc([1, 2, 5, 6], [1, 1, 0, 0])["value"] == 0.0  # reversed: every poisoning input below


def test_a_hand_computed_case_with_a_tie():
    # poisoning 0.9, 0.4; clean 0.5, 0.1, 0.4. Pairs won: 0.9 beats all 3; 0.4 beats 0.1, ties 0.4 (1/2),
    # loses to 0.5: 4.5 of 6 = 0.75. DeLong: V10 = (1, 0.5), V01 = (0.5, 1, 0.75);
    # var = var(V10)/2 + var(V01)/3 = 0.125/2 + 0.0625/3 = 1/12
    a = auroc([0.9, 0.4, 0.5, 0.1, 0.4], [1, 1, 0, 0, 0])
    half = NormalDist().inv_cdf(0.975) * (1 / 12) ** 0.5
    assert a["value"] == pytest.approx(0.75)
    assert a["ci95"] == pytest.approx([0.75 - half, 1.0])  # clipped at 1


def test_it_agrees_with_scikit_learn_on_data_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    s = rng.integers(0, 6, 400).astype(float)
    p = rng.random(400) < 0.3
    s[p] += 1
    assert auroc(s, p)["value"] == pytest.approx(roc_auc_score(p, s))
    x, y = roc_points(s, p)  # the curve with ties as straight segments: its area is the AUROC
    assert x[0] == y[0] == 0 and x[-1] == y[-1] == 1 and (np.diff(x) >= 0).all() and (np.diff(y) >= 0).all()
    assert np.trapezoid(y, x) == pytest.approx(auroc(s, p)["value"])


def test_identical_distributions_give_about_one_half_inside_the_interval():
    rng = np.random.default_rng(2)
    s = rng.normal(size=600)
    a = auroc(s, rng.random(600) < 0.25)
    assert abs(a["value"] - 0.5) < 0.07 and a["ci95"][0] < 0.5 < a["ci95"][1]


def test_the_interval_covers_the_true_auroc_about_95_percent_of_the_time():
    rng = np.random.default_rng(3)
    truth = NormalDist().cdf(1 / 2 ** 0.5)  # P(X > Y) for X ~ N(1, 1), Y ~ N(0, 1)
    hits = 0
    for _ in range(300):
        s = np.r_[rng.normal(1, 1, 30), rng.normal(0, 1, 60)]
        lo, hi = auroc(s, np.r_[np.ones(30, bool), np.zeros(60, bool)])["ci95"]
        hits += lo <= truth <= hi
    assert 0.90 <= hits / 300 <= 0.99


def test_tpr_at_fpr_sets_the_threshold_at_the_clean_quantile():
    clean = np.arange(100.0)  # 0 .. 99
    poison = np.array([50.0, 98.5, 99.5, 120.0])
    s, p = np.r_[poison, clean], np.r_[np.ones(4, bool), np.zeros(100, bool)]
    r = tpr_at_fpr(s, p, 0.01)  # at most 1 clean input above: the 2nd largest clean score, 98
    assert r["threshold"] == 98 and r["fpr"]["k"] == 1 and r["tpr"]["k"] == 3 and r["tpr"]["n"] == 4
    lo, hi = r["tpr"]["ci95"]
    assert lo < 0.75 < hi
    r5 = tpr_at_fpr(s, p, 0.05)  # 5 clean above 94
    assert r5["threshold"] == 94 and r5["fpr"]["k"] == 5 and r5["tpr"]["k"] == 3
    tied = tpr_at_fpr([9, 1, 1, 1, 1], [1, 0, 0, 0, 0], 0.5)  # ties at the quantile: none of them above it
    assert tied["fpr"]["k"] == 0 and tied["tpr"]["k"] == 1


def test_precision_recall_and_fpr_at_a_threshold_are_counts_with_wilson_intervals():
    p = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], bool)
    s = np.array([0.9, 0.8, 0.7, 0.1, 0.95, 0.2, 0.1, 0.1, 0.0, 0.0])
    d = detection(s, p, threshold=0.5)["at_threshold"]
    assert d["flagged"] == 4 and d["threshold"] == 0.5
    assert (d["precision"]["k"], d["precision"]["n"]) == (3, 4)
    assert (d["recall"]["k"], d["recall"]["n"]) == (3, 4)
    assert (d["fpr"]["k"], d["fpr"]["n"]) == (1, 6)
    for r in (d["precision"], d["recall"], d["fpr"]):
        assert r["ci95"][0] <= r["value"] <= r["ci95"][1]
    own = at_threshold(p, s >= 0.8)  # verdicts as given (a filter's own rule)
    assert own["flagged"] == 3 and own["precision"]["k"] == 2 and own["fpr"]["k"] == 1
    assert detection(s, p)["at_threshold"] is None and detection(s, p, verdicts=s >= 0.8)["at_threshold"]["flagged"] == 3


def test_without_inputs_of_both_kinds_nothing_is_invented():
    assert auroc([1, 2], [0, 0])["value"] is None
    assert tpr_at_fpr([1, 2], [1, 1], 0.05)["tpr"] is None
    assert auroc([1, 2, 3], [1, 0, 0])["ci95"] is None  # one poisoning input: no variance estimate

"""The interval and test arithmetic against values computed by hand (z = 1.959964)."""
import math

import pytest

from poisonedencoder.core.stats import (mcnemar_exact, mean_ci, mean_of_rates, paired_mean_difference,
                                   paired_rate_difference, pool_rates, rate, wilson, wilson_half_width)

Z2 = 1.959964 ** 2


def hand_wilson(k, n):
    """(k + z²/2) / (n + z²) ± z / (n + z²) * sqrt(k (n - k) / n + z² / 4)."""
    centre = (k + Z2 / 2) / (n + Z2)
    half = math.sqrt(Z2) / (n + Z2) * math.sqrt(k * (n - k) / n + Z2 / 4)
    return centre - half, centre + half


@pytest.mark.parametrize("k,n,expected", [
    (0, 10, (0.0, 0.27753)),     # k = 0: lower bound 0, upper z²/(n + z²) = 3.8415/13.8415
    (10, 10, (0.72247, 1.0)),    # k = n: lower n/(n + z²) = 10/13.8415
    (3, 10, (0.10779, 0.60322)),
    (1, 3, (0.06149, 0.79234)),
    (15, 30, (0.33150, 0.66850)),
])
def test_wilson_against_hand_computed_values(k, n, expected):
    lo, hi = wilson(k, n)
    assert lo == pytest.approx(expected[0], abs=5e-5) and hi == pytest.approx(expected[1], abs=5e-5)
    hl, hh = hand_wilson(k, n)
    assert lo == pytest.approx(max(0.0, hl), abs=1e-6) and hi == pytest.approx(min(1.0, hh), abs=1e-6)


def test_rate_records_count_and_interval_and_refuses_impossible_counts():
    r = rate(3, 10)
    assert r == {"value": 0.3, "k": 3, "n": 10, "ci95": [0.1078, 0.6032]}
    assert rate(0, 0)["value"] is None and rate(0, 0)["ci95"] is None
    with pytest.raises(ValueError):
        wilson(11, 10)
    assert pool_rates([rate(1, 3), rate(2, 3)]) == rate(3, 6)


def test_half_width_table_of_the_power_guidance():
    # docs/DESIGN.md "Uncertainty": pooled ASR at n = 30, 50, 100
    assert [round(wilson_half_width(0.5, n), 3) for n in (10, 30, 50, 100)] == [0.263, 0.168, 0.134, 0.096]
    assert [round(wilson_half_width(0.9, n), 3) for n in (30, 50, 100)] == [0.111, 0.085, 0.060]


def test_t_interval_over_seeds_by_hand():
    m = mean_ci([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.302653
    half = 4.302653 / math.sqrt(3)
    assert m["mean"] == 2 and m["sd"] == 1 and m["n"] == 3
    assert m["ci95"] == pytest.approx([2 - half, 2 + half], abs=1e-5)
    assert mean_ci([0.4])["ci95"] is None and mean_ci([])["mean"] is None


def test_mcnemar_exact_on_known_tables():
    # b = 1, c = 9: two-sided exact p = 2 * P(X <= 1 | 10, 1/2) = 2 * 11 / 1024
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact(9, 1) == pytest.approx(22 / 1024)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)


def test_paired_rate_difference_matches_newcombe_on_a_published_table():
    # Fagerland, Lydersen, Laake (2017), ch. 8: table [[59, 6], [16, 80]], Newcombe square-and-add
    # interval for the difference of the marginal proportions: -0.0621 (-0.1186 to -0.0046)
    ref = [1] * 65 + [0] * 96
    val = [1] * 59 + [0] * 6 + [1] * 16 + [0] * 80
    d = paired_rate_difference(ref, val)
    assert (d["b"], d["c"], d["n"]) == (6, 16, 161)
    assert d["diff"] == pytest.approx(10 / 161)
    assert d["ci95"] == pytest.approx([0.0046, 0.1186], abs=1e-4)
    assert d["p"] == pytest.approx(mcnemar_exact(6, 16))
    same = paired_rate_difference([1, 0, 1], [1, 0, 1])
    assert same["diff"] == 0 and same["p"] == 1.0 and same["ci95"][0] < 0 < same["ci95"][1]


def test_paired_t_on_the_differences():
    d = paired_mean_difference([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])  # differences 1, 2, 3
    assert d["mean"] == 2 and d["ci95"] == pytest.approx(mean_ci([1, 2, 3])["ci95"])
    # t = 2 / (1 / sqrt 3) = 3.4641 with 2 degrees of freedom: two-sided p = 0.07418
    assert d["p"] == pytest.approx(0.07418, abs=1e-4)
    with pytest.raises(ValueError):
        paired_mean_difference([1.0], [1.0, 2.0])


def test_mean_of_rates_of_several_tasks():
    one = rate(90, 100)
    assert mean_of_rates([one]) == one
    m = mean_of_rates([rate(90, 100), rate(50, 100)])
    assert m["value"] == pytest.approx(0.7) and (m["k"], m["n"]) == (140, 200)
    lo1, hi1 = wilson(90, 100)
    lo2, hi2 = wilson(50, 100)
    assert m["ci95"][0] == pytest.approx(0.7 - math.hypot(0.9 - lo1, 0.5 - lo2) / 2, abs=1e-4)
    assert m["ci95"][1] == pytest.approx(0.7 + math.hypot(hi1 - 0.9, hi2 - 0.5) / 2, abs=1e-4)

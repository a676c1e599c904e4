"""The label-free thresholds (defenses/threshold.py) on known distributions."""
import math

import numpy as np
import pytest

from poisonedencoder.defenses.threshold import reference_threshold, robust_threshold, top_share
from poisonedencoder.core.errors import UserError
from poisonedencoder.core.stats import wilson


@pytest.mark.parametrize("fpr", [0.01, 0.05])
def test_the_robust_threshold_cuts_fpr_of_normal_clean_scores_even_beside_poisoning_inputs(fpr):
    rng = np.random.default_rng(0)
    clean = rng.normal(0.3, 0.05, 20000)
    t = robust_threshold(clean, fpr)
    lo, hi = wilson(int(round(fpr * clean.size)), clean.size)  # the rate's sampling noise at this n
    assert lo - 0.002 <= (clean > t).mean() <= hi + 0.002
    # a fifth of the inputs are poisoning inputs far above: the median and MAD move up, so the
    # threshold errs toward fewer false positives (conservative), and still flags them all
    poisoned = np.concatenate([clean, rng.normal(0.9, 0.05, 5000)])
    t2 = robust_threshold(poisoned, fpr)
    assert t2 > t and (clean > t2).mean() <= fpr
    assert (poisoned[clean.size:] > t2).mean() == 1.0


def test_the_robust_threshold_is_the_normal_quantile_on_a_hand_case():
    s = [1.0, 2.0, 3.0, 4.0, 100.0]  # median 3, MAD median(|-2, -1, 0, 1, 97|) = 1
    assert robust_threshold(s, 0.05) == pytest.approx(3 + 1.6448536 * 1.4826 * 1, rel=1e-6)


def test_the_reference_threshold_is_the_conformal_order_statistic_and_holds_its_rate():
    assert reference_threshold(list(range(1, 100)), 0.05) == 95  # n = 99: ceil(100 * 0.95) = 95th smallest
    with pytest.raises(UserError, match="needs at least 99"):
        reference_threshold(list(range(50)), 0.01)
    rng = np.random.default_rng(1)  # any distribution: a skewed one; the bound holds on average over draws
    rates = []
    for _ in range(400):
        ref, new = rng.exponential(1.0, 60), rng.exponential(1.0, 2000)
        rates.append((new > reference_threshold(ref, 0.05)).mean())
    assert np.mean(rates) <= 0.05 + 3 * np.std(rates) / math.sqrt(len(rates))


def test_an_fpr_outside_zero_one_and_no_scores_are_refused():
    for bad in (0, 1, -0.1, 1.5):
        with pytest.raises(UserError, match="strictly between 0 and 1"):
            robust_threshold([1.0, 2.0], bad)
    with pytest.raises(UserError, match="no scores"):
        robust_threshold([], 0.01)


def test_the_oracle_share_flags_the_highest_scores():
    v = top_share([0.1, 0.9, 0.5, 0.7], 0.5)
    assert v.tolist() == [False, True, False, True]

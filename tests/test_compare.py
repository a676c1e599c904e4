"""Pooling and pairing target inputs across runs (sweep and claims share it)."""
import pytest

from poisonedencoder.studies.compare import Outcome, asr, flips_over_clean, outcomes, paired, pool


def _m(flips, clean=None, margins=None, seed=None):
    ts = [{"test_index": i, "target_class": 3, "poisoned_prediction": 3 if f else 0,
           "clean_prediction": None if clean is None else (3 if clean[i] else 0),
           "poisoned_margin": None if margins is None else margins[i]} for i, f in enumerate(flips)]
    if seed is not None:
        ts = [{**t, "seed": seed} for t in ts]
    return {"tasks": [{"targets": ts}]}


def test_outcomes_key_a_target_by_seed_task_index_and_target_class():
    o = outcomes(_m([1, 0], clean=[0, 0]), seed=4)
    assert o[(4, 0, 0, 3)] == Outcome(True, None, False) and o[(4, 0, 1, 3)].flipped is False
    assert set(outcomes(_m([1], seed=7))) == {(7, 0, 0, 3)}  # a run over seeds tags its targets itself
    assert asr(o) == {"value": 0.5, "k": 1, "n": 2, "ci95": pytest.approx([0.0945, 0.9055], abs=1e-3)}
    assert asr(outcomes(_m([1])), clean=True)["n"] == 0  # no clean encoder: not measured


def test_pool_refuses_a_target_counted_twice():
    a = outcomes(_m([1, 0]), seed=0)
    assert len(pool([a, outcomes(_m([1, 0]), seed=1)])) == 4
    with pytest.raises(ValueError, match="two runs"):
        pool([a, a])


def test_paired_counts_discordant_pairs_and_needs_the_same_targets():
    ref = outcomes(_m([0] * 10, margins=[-1.0] * 10), seed=0)
    val = outcomes(_m([1] * 8 + [0] * 2, margins=[2.0] * 10), seed=0)
    d = paired(ref, val)
    assert d["paired_n"] == 10 and d["dASR"] == pytest.approx(0.8) and d["dASR_lo"] > 0.3
    assert d["dASR_p"] == pytest.approx(2 / 2 ** 8)  # McNemar: b = 0, c = 8
    assert d["dmargin"] == pytest.approx(3.0)
    assert paired(ref, dict(list(val.items())[:5]))["paired_n"] is None  # not the same target inputs
    over = flips_over_clean(outcomes(_m([1] * 8 + [0] * 2, clean=[0] * 10), seed=0))
    assert over["dASR"] == pytest.approx(0.8)

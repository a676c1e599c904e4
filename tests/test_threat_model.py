"""The threat model is stated with every result: poisoning inputs as a share of the clean set (all
target inputs together, ``attack.poisoning_rate``) and of the whole pre-training set, beside the
rate per target input, in metrics.json, the CLI table and report.md."""
import pytest

from poisonedencoder.experiment.metrics import rates_of, threat_line, threat_model
from poisonedencoder.experiment.report import format_table
from poisonedencoder.studies.seeds import combine


def test_the_digits_recipe_is_thirty_percent_in_total_and_three_per_target():
    r = threat_model(400, 1347, 10)
    assert r["poisoning_rate"] == pytest.approx(0.29696, abs=1e-5)       # 400 / 1347
    assert r["poisoning_rate_per_target"] == pytest.approx(0.029696, abs=1e-6)
    assert r["poisoning_share"] == pytest.approx(0.22896, abs=1e-5)      # 400 / (1347 + 400)
    one = threat_model(40, 1347, 1)                                       # the same target attacked alone
    assert one["poisoning_rate"] == one["poisoning_rate_per_target"] == pytest.approx(r["poisoning_rate_per_target"])


def _run(seed, k):
    t = {"test_index": seed, "target_class": 1, "true_class": 0, "poisoned_prediction": 1 if k else 0,
         "clean_prediction": 0, "poisoned_cosine": 0.1, "clean_cosine": 0.0, "true_class_name": "0",
         "target_class_name": "1"}
    task = {"dataset": "digits", "num_classes": 10, "CA": 0.9, "PA": 0.9, "ASR": float(k), "clean_ASR": 0.0,
            "targets": [t, {**t, "test_index": 100 + seed}],
            "intervals": {x: {"value": 0.9, "k": 9, "n": 10, "ci95": [0.6, 0.98]} for x in ("CA", "PA")}
            | {x: {"value": 0.5, "k": 1, "n": 2, "ci95": [0.1, 0.9]} for x in ("ASR", "clean_ASR")},
            "mean_cosine_clean": 0.0, "mean_cosine_poisoned": 0.1}
    return {"CA": 0.9, "PA": 0.9, "ASR": 0.5, "clean_ASR": 0.0, "num_targets": 2, "tasks": [task],
            "intervals": task["intervals"], "num_poisoning_inputs": 80, "num_clean_inputs": 1000,
            **threat_model(80, 1000, 2)}


def test_every_table_line_names_both_rates_and_seeds_keep_them():
    m = _run(0, 1)
    line = threat_line(m)
    assert line.startswith("poisoning inputs equal to 8.00% of the clean set (7.41% of the pre-training set), "
                           "4.00% per target input (80 poisoning inputs beside 1000 clean")  # 80 / 1080 = 7.41%
    assert line.endswith("; 2 target inputs)")
    assert line in format_table(m)
    both = combine([_run(0, 1), _run(1, 0)], [0, 1])
    assert both["poisoning_rate"] == pytest.approx(0.08) and both["poisoning_rate_per_target"] == pytest.approx(0.04)
    assert all(s["poisoning_rate_per_target"] == pytest.approx(0.04) for s in both["per_seed"])
    assert both["poisoning_share"] == pytest.approx(80 / 1080)
    assert "4.00% per target input (80 poisoning inputs beside 1000 clean pre-training inputs per seed; 2 target " \
           "inputs per seed)" in format_table(both)


def test_metrics_written_before_the_per_target_rate_get_it_from_their_counts():
    old = {k: v for k, v in _run(0, 1).items() if k not in ("poisoning_rate_per_target", "poisoning_share")}
    assert rates_of(old)["poisoning_rate_per_target"] == pytest.approx(0.04)
    assert rates_of(old)["poisoning_share"] == pytest.approx(80 / 1080)
    pooled = {**old, "num_targets": 6, "seeds": [0, 1, 2]}  # 2 targets per seed
    assert rates_of(pooled)["poisoning_rate_per_target"] == pytest.approx(0.04)

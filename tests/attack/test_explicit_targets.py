"""Explicit target inputs may carry their reference inputs (as another run's attacker chose them):
they are used as given, checked against the train split and the target class."""
import pytest

from poisonedencoder import config as C
from poisonedencoder.attack import PoisonedEncoder, choose_references, select_targets
from poisonedencoder.core.errors import UserError


def test_given_reference_inputs_are_kept_and_drawn_ones_fill_the_rest(toy_dataset):
    # toy train labels are index % 4: class 2 is 2, 6, 10, ...
    ts = select_targets(toy_dataset, 0, explicit=[{"index": 1, "target_class": 2, "references": [10, 6]},
                                                  {"index": 2, "target_class": "d"}])
    assert ts[0].reference_indices == [6, 10] and ts[1].reference_indices == []
    choose_references(ts, [toy_dataset], 3, seed=0)
    assert ts[0].reference_indices == [6, 10]                       # given: not redrawn
    assert len(ts[1].reference_indices) == 3 and all(i % 4 == 3 for i in ts[1].reference_indices)
    poisons = PoisonedEncoder(poisoning_rate=0.5, num_references=2).make(ts, [toy_dataset], 4, __import__("numpy").random.default_rng(0), None)
    assert {p.reference_index for p in poisons if p.target_id == 0} == {6, 10}


@pytest.mark.parametrize("refs,message", [([7], "is of class 3, not the target class 2"),
                                          ([400], "outside the train split")])
def test_a_reference_input_of_another_class_or_outside_the_split_is_refused(toy_dataset, refs, message):
    with pytest.raises(UserError, match=message):
        select_targets(toy_dataset, 0, explicit=[{"index": 1, "target_class": 2, "references": refs}])


@pytest.mark.parametrize("targets", ["[{index: 1, target_class: 2, references: []}]",
                                     "[{index: 1, target_class: 2, references: [a]}]",
                                     "[{index: 1, target_class: 2, refs: [3]}]"])
def test_the_config_refuses_malformed_references_in_one_line(targets):
    with pytest.raises(UserError, match=r"tasks\[0\]\.targets must be a list of"):
        C.resolve({"preset": "demo"}, [f"tasks=[{{dataset: digits, targets: {targets}}}]"])
    ok = C.resolve({"preset": "demo"}, ["tasks=[{dataset: digits, targets: [{index: 1, target_class: 2, references: [3]}]}]"])
    assert ok["tasks"][0]["targets"][0]["references"] == [3]

import torch

from poisonedencoder.experiment.metrics import accuracy, attack_success_rate, class_means, target_class_cosine


def test_accuracy_and_asr_on_known_cases():
    assert accuracy([0, 1, 2, 3], [0, 1, 0, 0]) == 0.5
    # 3 target inputs, target classes 2, 2, 5; predicted 2, 1, 5 -> 2 of 3 succeed
    assert abs(attack_success_rate([2, 1, 5], [2, 2, 5]) - 2 / 3) < 1e-12


def test_class_means_and_cosine():
    f = torch.tensor([[1.0, 0], [3, 0], [0, 2], [0, 4]])
    m = class_means(f, [0, 0, 1, 1], 2)
    assert torch.allclose(m, torch.tensor([[2.0, 0], [0, 3]]))
    cos = target_class_cosine(torch.tensor([[1.0, 1], [0, 5]]), m, [0, 1])
    assert abs(cos[0] - 2 ** -0.5) < 1e-6 and abs(cos[1] - 1) < 1e-6


def test_centred_cosine_removes_the_shared_offset():
    # two classes that differ along y, both far out along x (as post-ReLU features are)
    f = torch.tensor([[10.0, 1], [10, 1], [10, -1], [10, -1]])
    m = class_means(f, [0, 0, 1, 1], 2)
    t = torch.tensor([[10.0, -1]])  # looks like class 1
    raw = target_class_cosine(t, m, [0])[0]
    centred = target_class_cosine(t, m, [0], center=f.mean(0))[0]
    assert raw > 0.97            # raw cosine calls it close to class 0
    assert abs(centred + 1) < 1e-6  # centred: exactly opposite to class 0


def test_target_class_scores_on_a_hand_built_classifier():
    """Margin = target-class logit minus the largest other logit; rank and probability from the logits."""
    from poisonedencoder.downstream import Classifier, logits
    from poisonedencoder.experiment.metrics import margin_summary, target_class_scores

    clf = Classifier(2, 3, kind="linear")  # mean 0, std 1: logits = W f + b
    with torch.no_grad():
        clf.net.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        clf.net.bias.copy_(torch.tensor([0.0, 0.5, -1.0]))
    f = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
    lg = logits(clf, f)  # [[2, 1.5, 2], [0, 3.5, 2]]
    assert torch.allclose(lg, torch.tensor([[2.0, 1.5, 2.0], [0.0, 3.5, 2.0]]))
    s = target_class_scores(lg, [1, 2])
    assert s["margin"] == [1.5 - 2.0, 2.0 - 3.5]
    assert s["target_rank"] == [3, 2]
    assert abs(s["target_prob"][1] - torch.softmax(lg[1], 0)[2].item()) < 1e-7
    s = target_class_scores(lg, [0, 1])  # a tie at the top: margin 0, rank 1
    assert s["margin"] == [0.0, 1.5] and s["target_rank"] == [1, 1]
    targets = [{"clean_margin": -1.0, "poisoned_margin": m, "clean_target_prob": 0.1, "poisoned_target_prob": 0.2,
                "clean_target_rank": 3, "poisoned_target_rank": 1} for m in (1.0, 2.0, 3.0)]
    summary = margin_summary(targets)
    assert summary["poisoned"]["margin"]["mean"] == 2.0 and summary["clean"]["margin"]["ci95"] == [-1.0, -1.0]
    assert target_class_scores(torch.zeros(0, 3), []) == {"target_prob": [], "target_rank": [], "margin": []}

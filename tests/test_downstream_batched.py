"""downstream.train_classifiers: M classifiers trained together equal the ones train_classifier
trains one after another (same initial weights, batches and Adam; batched matrix products may
round differently, hence the tolerances), and evaluate_task measures the same with and without it.

Tolerances: initial weights and the kNN / fallback paths are compared exactly. Trained classifiers
are compared in float64 (``FLOAT64_TOL``): 150 Adam steps amplify a batched product's different
rounding, and in float32 that differs by processor and thread count (bit-equal on a Xeon; on a
2-core AMD EPYC with one thread, logits of order 20 off by up to 1.6e-4, about 130 float32 ulps).
The same amplification in float64 (unit roundoff 1.1e-16) gives about 130 x 20 x 1.1e-16 = 3e-13;
``1e-9`` leaves a factor of 3,000 above that, and is still 10^5 below what a wrong gradient, batch
or Adam step gives (order 1e-2 and more). Predictions must be equal. The pipeline's own float32
metrics (``evaluate_task``) are compared within ``TOL``."""
import numpy as np
import pytest
import torch

from poisonedencoder import downstream as DS
from poisonedencoder.attack.targets import Target
from poisonedencoder.experiment.evaluation import evaluate_task

TOL = {"rtol": 1e-5, "atol": 1e-5}
FLOAT64_TOL = {"rtol": 1e-9, "atol": 1e-9}


@pytest.fixture
def float64():
    """Classifiers built in float64 (torch's default dtype for the test, restored after it)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def _problem(num_sets: int, dim: int = 24, n: int = 300, n_test: int = 200, classes: int = 5):
    """``num_sets`` different feature sets of the same inputs (each its own noisy view of the
    class), with their held-out sets; labels shared."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, classes, (n + n_test,), generator=g)
    sets = []
    for m in range(num_sets):
        centers = torch.randn(classes, dim, generator=g) * (1 + m)
        f = centers[y] + torch.randn(n + n_test, dim, generator=g) * (2 + m) + 3 * m  # shifted, scaled: standardizing matters
        sets.append((f[:n], f[n:]))
    return sets, y[:n].numpy(), classes


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_untrained_classifiers_start_from_the_sequential_initial_weights(kind):
    sets, y, c = _problem(3)
    feats = [f for f, _ in sets]
    batched = DS.train_classifiers(feats, y, c, kind, epochs=0, seed=5)
    for f, b in zip(feats, batched, strict=True):
        s = DS.train_classifier(f, y, c, kind, epochs=0, seed=5)
        assert isinstance(b, DS.Classifier) and not b.training
        sb, ss = b.state_dict(), s.state_dict()
        assert sb.keys() == ss.keys() and all(torch.equal(sb[k], ss[k]) for k in sb)  # weights, mean, std


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("kind", ["mlp", "linear"])
@pytest.mark.parametrize("num_models", [1, 3])
def test_batched_classifiers_equal_the_sequential_ones(kind, num_models):
    raw, y, c = _problem(num_models)
    sets = [(f.double(), t.double()) for f, t in raw]
    settings = {"kind": kind, "epochs": 15, "lr": 1e-2, "batch_size": 32, "seed": 3}  # 300 = 9 x 32 + 12: a short last batch
    batched = DS.train_classifiers([f for f, _ in sets], y, c, **settings)
    assert len(batched) == num_models
    for (f, f_test), b in zip(sets, batched, strict=True):
        s = DS.train_classifier(f, y, c, **settings)
        with torch.no_grad():  # the float64 logits themselves (DS.logits returns float32)
            lb, ls = b(f_test), s(f_test)
        assert lb.dtype == ls.dtype == torch.float64
        torch.testing.assert_close(lb, ls, **FLOAT64_TOL)
        assert (DS.predict(b, f_test) == DS.predict(s, f_test)).all()
        assert not torch.equal(b.state_dict()["net.0.weight" if kind == "mlp" else "net.weight"],
                               DS.train_classifier(f, y, c, **{**settings, "epochs": 0}).state_dict()[
                                   "net.0.weight" if kind == "mlp" else "net.weight"])  # it did train
    if num_models > 1:  # different features, different classifiers
        assert not torch.equal(DS.logits(batched[0], sets[0][1]), DS.logits(batched[1], sets[0][1]))


def test_knn_and_feature_sets_that_cannot_be_stacked_are_trained_one_by_one():
    sets, y, c = _problem(2)
    narrow = sets[1][0][:, :7]  # another width: no stacking
    got = DS.train_classifiers([sets[0][0], narrow], y, c, "mlp", epochs=3, seed=1)
    for f, b in zip([sets[0][0], narrow], got, strict=True):
        s = DS.train_classifier(f, y, c, "mlp", epochs=3, seed=1)
        assert torch.equal(DS.logits(b, f), DS.logits(s, f))
    knn = DS.train_classifiers([f for f, _ in sets], y, c, "knn", k=5)
    for (f, f_test), b in zip(sets, knn, strict=True):
        assert isinstance(b, DS.KNNClassifier)
        assert torch.equal(DS.logits(b, f_test), DS.logits(DS.train_classifier(f, y, c, "knn", k=5), f_test))
    assert DS.train_classifiers([], y, c) == []


def _assert_same(a, b, path="res"):
    """Equal structures; floats (margins, probabilities, cosines) within TOL, everything else exactly."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool):
        assert b == pytest.approx(a, rel=TOL["rtol"], abs=TOL["atol"]), path
    else:
        assert a == b, path


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_evaluate_task_measures_the_same_batched_and_one_by_one(toy_dataset, kind):
    """Clean, poisoned and two snapshots: four different random encoders; every metric of the
    task (counts, intervals, per-target predictions, ranks, margins, cosines) agrees."""
    def encoder(seed):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 16))

    encoders = {"clean": encoder(0), "poisoned": encoder(1)}
    snapshots = [(1, encoder(2)), (2, encoder(3))]
    targets = [Target(0, "toy", i, int(toy_dataset.test.labels[i]), (int(toy_dataset.test.labels[i]) + 1) % 4)
               for i in (0, 5, 9)]
    d = {"classifier": kind, "epochs": 20, "lr": 1e-2, "batch_size": 16, "knn_k": 5, "knn_temperature": 0.1,
         "num_train": None}
    args = (encoders, snapshots, toy_dataset, 0, targets, {"image_size": 8, "epochs": 3}, d, 0)
    batched, one_by_one = evaluate_task(*args), evaluate_task(*args, batched=False)
    _assert_same(batched, one_by_one)
    assert [e["epoch"] for e in batched["over_training"]] == [1, 2, 3]
    assert len(batched["targets"]) == 3 and batched["CA"] is not None
    # what evaluate_task compares is per encoder: the clean classifier is not the poisoned one
    assert [t["clean_margin"] for t in batched["targets"]] != [t["poisoned_margin"] for t in batched["targets"]]


def test_classify_many_returns_classify_per_encoder(toy_dataset):
    d = {"classifier": "mlp", "epochs": 5, "lr": 1e-2, "batch_size": 16, "knn_k": 5, "knn_temperature": 0.1}
    torch.manual_seed(0)
    encs = [torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 8)) for _ in range(2)]
    idx = np.arange(len(toy_dataset.train))
    many = DS.classify_many(encs, toy_dataset, idx, 8, d, 4)
    for enc, (pred, ftr, fte, lg) in zip(encs, many, strict=True):
        p1, ftr1, fte1, lg1 = DS.classify(enc, toy_dataset, idx, 8, d, 4)
        assert torch.equal(ftr, ftr1) and torch.equal(fte, fte1)
        torch.testing.assert_close(lg, lg1, **TOL)
        assert (pred == p1).all() and pred.shape == (len(toy_dataset.test),)

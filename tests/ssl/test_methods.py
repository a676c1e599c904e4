"""The pre-training methods: registry, heads, momentum updates, MoCo's queue, and a short run of
each on digits that lowers its loss."""
import math

import numpy as np
import pytest
import torch

from poisonedencoder import config as C
from poisonedencoder.core.errors import UserError
from poisonedencoder.ssl.losses import info_nce_queue, negative_cosine
from poisonedencoder.ssl.methods import METHODS, BYOL, MoCoV2, build_method
from poisonedencoder.ssl.methods.base import ema_update
from poisonedencoder.ssl.methods.byol import byol_momentum
from poisonedencoder.ssl.pretrain import PretrainSet, load_backbone, pretrain


def _p(algorithm, **kw):
    p = C.resolve({"preset": "demo"}, [f"pretrain.algorithm={algorithm}"])["pretrain"]
    p.update(width=4, image_size=8, batch_size=16)
    p.update(kw)
    return p


def test_registry_holds_methods_by_their_names_and_rejects_others():
    assert METHODS and all(m.name == n for n, m in METHODS.items())
    for n in METHODS:  # each can be chosen, and its section is in the schema
        assert C.resolve({}, [f"pretrain.algorithm={n}"])["pretrain"]["algorithm"] == n
        assert not METHODS[n].Settings.model_fields or C.defaults()["pretrain"][n] == METHODS[n].Settings.defaults()
    with pytest.raises(UserError, match="unknown algorithm 'dino'"):
        C.resolve({}, ["pretrain.algorithm=dino"])
    with pytest.raises(UserError, match="pretrain.mocov2.momentum"):
        C.resolve({}, ["pretrain.mocov2.momentum=1.5"])
    with pytest.raises(UserError, match="pretrain.mocov2.queue_size"):
        C.resolve({}, ["pretrain.mocov2.queue_size=0"])


def test_a_method_without_loss_fails_when_it_is_defined():
    from poisonedencoder.ssl.methods import SSLMethod

    with pytest.raises(TypeError, match="must implement loss"):
        class NoLoss(SSLMethod):  # noqa: F841 (defining it is the test)
            name = "noloss"


def test_info_nce_queue_matches_hand_computation():
    g = torch.Generator().manual_seed(0)
    q, k, queue = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g), torch.randn(5, 3, generator=g)
    t = 0.2
    n = lambda v: v / np.linalg.norm(v)  # noqa: E731
    total = 0.0
    for i in range(4):
        pos = n(q[i].numpy()) @ n(k[i].numpy()) / t
        neg = [n(q[i].numpy()) @ n(r.numpy()) / t for r in queue]
        total += -pos + math.log(math.exp(pos) + sum(math.exp(x) for x in neg))
    assert abs(float(info_nce_queue(q, k, queue, t)) - total / 4) < 1e-5


def test_negative_cosine_stops_the_gradient_of_its_target():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    z = torch.tensor([[1.0, 1.0], [0.0, 1.0]], requires_grad=True)
    loss = negative_cosine(p, z)
    assert abs(float(loss.detach()) - -(math.sqrt(0.5) + 1) / 2) < 1e-6
    loss.backward()
    assert z.grad is None and p.grad is not None


def test_ema_update_and_byol_schedule():
    online, target = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = target.weight.detach().clone()
    ema_update(target, online, 0.9)
    assert torch.allclose(target.weight, 0.9 * before + 0.1 * online.weight)
    assert byol_momentum(0.99, 0.0) == pytest.approx(0.99)
    assert byol_momentum(0.99, 0.5) == pytest.approx(0.995)
    assert byol_momentum(0.99, 1.0) == pytest.approx(1.0)


def test_moco_queue_is_first_in_first_out():
    m = MoCoV2.from_config(_p("mocov2", projection_dim=4, **{"mocov2": {"temperature": 0.2, "momentum": 0.99, "queue_size": 6}}))
    a, b = torch.full((4, 4), 1.0), torch.full((4, 4), 2.0)
    m.enqueue(a)
    assert int(m.queue_ptr) == 4 and (m.queue[:4] == 1).all()
    m.enqueue(b)  # wraps: rows 4, 5, then 0, 1 are overwritten; rows 2, 3 still hold the oldest keys
    assert int(m.queue_ptr) == 2
    assert (m.queue[[4, 5, 0, 1]] == 2).all() and (m.queue[[2, 3]] == 1).all()


def test_moco_key_encoder_follows_the_query_encoder_by_momentum():
    m = MoCoV2.from_config(_p("mocov2"))
    assert all(not q.requires_grad for q in m.key_backbone.parameters())
    with torch.no_grad():
        for q in m.backbone.parameters():
            q.add_(1.0)
    k0 = m.key_backbone.features[0].weight.clone()
    m.after_step(0.5)
    assert torch.allclose(m.key_backbone.features[0].weight, 0.99 * k0 + 0.01 * m.backbone.features[0].weight)


def _digits():
    from poisonedencoder.data.datasets import _load_digits

    _, train, _ = _load_digits(8)
    return PretrainSet.from_images(train.images[:512])


@pytest.mark.parametrize("algorithm", sorted(METHODS))
def test_a_short_run_on_digits_lowers_the_loss(tmp_path, algorithm):
    torch.set_num_threads(1)
    p = _p(algorithm, epochs=8, batch_size=64, width=8, crop_scale=[0.4, 1.0])
    # MoCo in 64 steps: a queue that real keys fill in two steps (the default 4096 starts as random
    # noise, easy negatives, so the loss first rises while it fills) and a faster key encoder
    p["mocov2"].update(queue_size=256, momentum=0.9)
    model = pretrain(_digits(), p, tmp_path, seed=0, log=lambda _: None)
    loss = torch.load(tmp_path / "encoder.pt", weights_only=True)["loss"]
    assert np.isfinite(loss).all() and loss[-1] < loss[0] - 0.05, loss
    enc = load_backbone(tmp_path / "encoder.pt", p)  # the saved encoder is the online backbone
    assert torch.equal(enc.features[0].weight, model.backbone.features[0].weight)


def test_byol_target_network_gets_no_gradient_and_is_not_optimized(tmp_path):
    m = BYOL.from_config(_p("byol"))
    x = torch.randn(8, 3, 8, 8)
    m.loss(x, x.flip(-1)).backward()
    assert all(q.grad is None for q in m.target_backbone.parameters())
    assert all(q.grad is not None for q in m.predictor.parameters())
    # not optimized: with an EMA rate of 1 the target network must end training as it started,
    # while the online network moves (an optimizer step on the target would move it too)
    from test_pretrain import _data

    p = _p("byol", epochs=2)
    p["byol"] = dict(p["byol"], ema_base=1.0)
    torch.manual_seed(4)
    init = build_method(p)  # pretrain seeds and builds the same way
    trained = pretrain(_data(), p, tmp_path, seed=4, log=lambda _: None)
    for (k, a), b in zip(init.target_backbone.named_parameters(), trained.target_backbone.parameters(), strict=True):
        assert torch.equal(a, b), k
    assert not torch.equal(init.backbone.features[0].weight, trained.backbone.features[0].weight)


@pytest.mark.parametrize("algorithm", ["mocov2", "byol"])
def test_resume_restores_momentum_networks_and_queue(tmp_path, algorithm):
    from test_pretrain import _data

    p = _p(algorithm, epochs=2)
    full = pretrain(_data(), p, tmp_path / "a", seed=3, log=lambda _: None)

    def stop_after_epoch_1(line):
        if "epoch 1/2" in line:
            raise KeyboardInterrupt  # the checkpoint of epoch 1 is already on disk

    with pytest.raises(KeyboardInterrupt):
        pretrain(_data(), p, tmp_path / "b", seed=3, log=stop_after_epoch_1)
    resumed = pretrain(_data(), p, tmp_path / "b", seed=3, log=lambda _: None)
    a, b = full.state_dict(), resumed.state_dict()
    assert any("queue" in k or "target" in k for k in a)
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k

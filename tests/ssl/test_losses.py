import math

import numpy as np
import torch

from poisonedencoder.ssl.losses import nt_xent


def reference_nt_xent(z1, z2, t):
    """Hand-written NT-Xent: loop over the 2N anchors."""
    z = np.concatenate([z1, z2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        j = i + n if i < n else i - n
        sims = [z[i] @ z[k] / t for k in range(2 * n) if k != i]
        total += -(z[i] @ z[j] / t) + math.log(sum(math.exp(s) for s in sims))
    return total / (2 * n)


def test_matches_hand_computation():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    for t in (0.1, 0.5, 1.0):
        assert abs(float(nt_xent(z1, z2, t)) - reference_nt_xent(z1.numpy(), z2.numpy(), t)) < 1e-5


def test_analytic_value_orthogonal_pairs():
    # positives identical (cos 1), negatives orthogonal (cos 0): loss = -1/t + log(e^{1/t} + 2N-2)
    n, t = 4, 0.5
    z = torch.eye(n)
    expected = -1 / t + math.log(math.exp(1 / t) + 2 * n - 2)
    assert abs(float(nt_xent(z, z, t)) - expected) < 1e-6


def test_gradient_pulls_positives_together():
    z1 = torch.randn(8, 4, requires_grad=True)
    z2 = torch.randn(8, 4)
    before = torch.nn.functional.cosine_similarity(z1, z2).mean()
    loss = nt_xent(z1, z2)
    loss.backward()
    with torch.no_grad():
        after = torch.nn.functional.cosine_similarity(z1 - 0.5 * z1.grad, z2).mean()
    assert after > before


def test_docstring_example():
    import doctest

    from poisonedencoder.ssl import losses

    assert doctest.testmod(losses).failed == 0


def test_mean_of_rank_shards_equals_the_global_batch_loss():
    # data-parallel form: each rank's anchors against the whole gathered batch
    g = torch.Generator().manual_seed(1)
    z1 = torch.randn(8, 5, generator=g, requires_grad=True)
    z2 = torch.randn(8, 5, generator=g, requires_grad=True)
    full = nt_xent(z1, z2, 0.3)
    shards = [nt_xent(z1[r * 2:(r + 1) * 2], z2[r * 2:(r + 1) * 2], 0.3, z1, z2, offset=r * 2) for r in range(4)]
    assert torch.allclose(torch.stack(shards).mean(), full, atol=1e-6)
    g_full = torch.autograd.grad(full, [z1, z2])
    g_shard = torch.autograd.grad(torch.stack(shards).mean(), [z1, z2])
    for a, b in zip(g_full, g_shard, strict=True):
        assert torch.allclose(a, b, atol=1e-6)

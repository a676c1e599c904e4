import numpy as np
import torch

from poisonedencoder.ssl.augment import AugmentParams, augment, color_jitter, resized_crop, sample_crop_boxes


def test_crop_boxes_follow_random_resized_crop_rule():
    g = torch.Generator().manual_seed(0)
    b = sample_crop_boxes(20000, 32, 32, (0.08, 1.0), (3 / 4, 4 / 3), g)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= 32).all() and (b[:, 3] <= 32).all()
    area = w * h / 1024
    assert area.min() >= 0.06 and area.max() <= 1.0
    # most crops are in range of the aspect ratio (rounding to pixels widens it slightly)
    r = w / h
    assert ((r > 0.6) & (r < 1.6)).float().mean() > 0.99
    # reference: torchvision's sampler on the same geometry gives the same mean area within noise
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(1)
    ref = [RandomResizedCrop.get_params(torch.zeros(3, 32, 32), [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(5000)]
    ref_area = np.mean([hh * ww / 1024 for _, _, hh, ww in ref])
    assert abs(float(area.mean()) - ref_area) < 0.02


def test_crop_boxes_on_a_wide_poisoning_input_stay_inside_it():
    g = torch.Generator().manual_seed(0)
    b = sample_crop_boxes(5000, 32, 64, (0.08, 1.0), (3 / 4, 4 / 3), g)
    assert (b[:, 2] <= 64).all() and (b[:, 3] <= 32).all()
    # a good share of crops lies entirely in one half: the mechanism of the attack
    left = b[:, 2] <= 32
    right = b[:, 0] >= 32
    assert 0.15 < left.float().mean() < 0.5 and 0.15 < right.float().mean() < 0.5


def test_resized_crop_of_full_box_is_identity():
    x = torch.rand(2, 3, 8, 8)
    out = resized_crop(x, torch.tensor([[0.0, 0, 8, 8], [0, 0, 8, 8]]), 8)
    assert torch.allclose(out, x, atol=1e-5)


def test_resized_crop_takes_the_box_content():
    x = torch.zeros(1, 3, 8, 16)
    x[..., 8:] = 1.0  # right half white
    right = resized_crop(x, torch.tensor([[8.0, 0, 16, 8]]), 4)
    left = resized_crop(x, torch.tensor([[0.0, 0, 8, 8]]), 4)
    assert torch.allclose(right, torch.ones_like(right)) and torch.allclose(left, torch.zeros_like(left))


def test_parameters_are_drawn_per_image():
    imgs = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    same = imgs[:1].expand(64, -1, -1, -1).contiguous()
    out = augment(same, AugmentParams(), torch.Generator().manual_seed(0))
    assert out.shape == (64, 3, 32, 32)
    # identical inputs give many distinct views
    flat = out.flatten(1)
    assert torch.cdist(flat, flat).triu(1)[torch.triu(torch.ones(64, 64), 1) > 0].min() > 1e-3


def test_flip_and_grayscale_rates():
    x = torch.rand(1, 3, 16, 16).mul(255).byte().expand(4000, -1, -1, -1).contiguous()
    p = AugmentParams(size=16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.5, jitter_p=0.0, gray_p=0.2)
    out = augment(x, p, torch.Generator().manual_seed(0))
    gray = (out.max(1).values - out.min(1).values).flatten(1).max(1).values < 1e-6
    assert abs(gray.float().mean().item() - 0.2) < 0.03
    base = x[0].float() / 255
    flipped = (out - base.flip(-1)).abs().flatten(1).max(1).values < 1e-4
    plain = (out - base).abs().flatten(1).max(1).values < 1e-4
    rate = flipped[~gray].float().mean().item()
    assert abs(rate - 0.5) < 0.04 and (flipped | plain)[~gray].all()


def test_color_jitter_matches_definitions():
    x = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    one, zero = torch.ones(3), torch.zeros(3)
    assert torch.allclose(color_jitter(x, one, one, one, zero, [0, 1, 2, 3]), x, atol=1e-5)
    b = torch.tensor([0.5, 1.0, 1.2])
    assert torch.allclose(color_jitter(x, b, one, one, zero, [0]), (x * b.view(-1, 1, 1, 1)).clamp(0, 1))
    s0 = color_jitter(x, one, one, zero, zero, [2])  # saturation 0 = grayscale
    assert torch.allclose(s0[:, 0], s0[:, 1]) and torch.allclose(s0[:, 1], s0[:, 2])


def test_hue_shift_turns_the_chroma_and_keeps_luma():
    # near-gray colors, so that no rotation leaves [0, 1] and nothing is clamped
    x = 0.5 + 0.15 * (torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(0)) - 0.5)
    one, zero = torch.ones(3), torch.zeros(3)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    half, quarter = torch.full((3,), 0.5), torch.full((3,), 0.25)
    y = color_jitter(x, one, one, one, half, [3])
    assert 0 < float(y.min()) and float(y.max()) < 1  # the premise: unclamped
    assert (y - x).abs().max() > 0.01  # half a turn changes the colors
    assert torch.allclose((y * luma).sum(1), (x * luma).sum(1), atol=1e-5)  # and keeps luma
    # two half turns are a full turn: the identity
    assert torch.allclose(color_jitter(y, one, one, one, half, [3]), x, atol=1e-5)
    # a quarter turn twice is a half turn; zero is the identity
    q2 = color_jitter(color_jitter(x, one, one, one, quarter, [3]), one, one, one, quarter, [3])
    assert torch.allclose(q2, y, atol=1e-5)
    assert torch.allclose(color_jitter(x, one, one, one, zero, [3]), x, atol=1e-6)

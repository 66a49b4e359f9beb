"""Focal, dice and the BAG-CLIP objective against hand-computed values."""
import math
from types import SimpleNamespace

import pytest
import torch

from bagclip import Config
from bagclip.losses import bagclip_loss, dice_loss, focal_loss


def fl(p_t, gamma=2.0):
    return -(1 - p_t) ** gamma * math.log(p_t)


def test_focal_image_level_by_hand():
    # p_abnormal 0.8 (label 1: p_t 0.8), 0.3 (label 0: p_t 0.7), 0.9 (label 0: p_t 0.1)
    p = torch.tensor([0.8, 0.3, 0.9])
    y = torch.tensor([1, 0, 0])
    expected = (fl(0.8) + fl(0.7) + fl(0.1)) / 3  # 0.04 * 0.2231 + 0.09 * 0.3567 + 0.81 * 2.3026
    assert focal_loss(p, y).item() == pytest.approx(expected, rel=1e-6)
    two = torch.stack([1 - p, p], dim=1)  # (B, 2) form gives the same
    assert focal_loss(two, y).item() == pytest.approx(expected, rel=1e-6)
    assert focal_loss(p, y, gamma=0.0).item() == pytest.approx(
        -(math.log(0.8) + math.log(0.7) + math.log(0.1)) / 3, rel=1e-6)


def test_focal_maps_by_hand_and_clamp():
    ab = torch.tensor([[[0.9, 0.2], [0.5, 0.0]]])  # (1, 2, 2) abnormal channel
    probs = torch.stack([1 - ab, ab], dim=1)  # (1, 2, 2, 2)
    mask = torch.tensor([[[1, 0], [1, 1]]])
    # p_t: 0.9, 0.8, 0.5, 0 -> clamped to 1e-8
    expected = (fl(0.9) + fl(0.8) + fl(0.5) + fl(1e-8)) / 4
    assert focal_loss(probs, mask).item() == pytest.approx(expected, rel=1e-5)
    assert torch.isfinite(focal_loss(probs, mask.bool()))
    with pytest.raises(ValueError):
        focal_loss(probs, mask[0])


def test_dice_by_hand_batch_of_one():
    p = torch.tensor([[[0.5, 1.0], [0.0, 0.25]]])  # (1, 2, 2)
    g = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    # 2 * (0.5 + 1) + 1 = 4; sum p + sum g + 1 = 1.75 + 2 + 1 = 4.75
    expected = 1 - 4 / 4.75
    assert dice_loss(p, g).item() == pytest.approx(expected, rel=1e-6)
    # a batch is the mean of its per-image values (the batch is never pooled)
    p2 = torch.cat([p, torch.ones(1, 2, 2)])
    g2 = torch.cat([g, torch.zeros(1, 2, 2)])
    second = 1 - 1 / (4 + 0 + 1)
    assert dice_loss(p2, g2).item() == pytest.approx((expected + second) / 2, rel=1e-6)
    per_image = [dice_loss(p2[i:i + 1], g2[i:i + 1]).item() for i in range(2)]
    assert per_image == pytest.approx([expected, second], rel=1e-6)
    assert dice_loss(torch.zeros(1, 3, 3), torch.zeros(1, 3, 3)).item() == 0.0  # empty, predicted empty


def make_output(B=2, L=3, H=4, W=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    ab = torch.rand(B, L, H, W, generator=g)
    layer_maps = torch.stack([1 - ab, ab], dim=2)
    p_img = torch.rand(B, generator=g)
    return SimpleNamespace(layer_maps=layer_maps, p_img=p_img, anomaly_map=ab.mean(1))


@pytest.mark.parametrize("B", [1, 2])
def test_bagclip_loss_parts(B):
    cfg = Config.quick(loss_lambda=0.5)
    out = make_output(B=B)
    masks = torch.zeros(B, 4, 4)
    masks[0, 1:3, 1:3] = 1
    labels = torch.tensor([1, 0][:B])
    total, parts = bagclip_loss(out, masks, labels, cfg)
    # independent recomputation
    seg = 0.0
    for l in range(3):
        s = out.layer_maps[:, l]
        seg += focal_loss(s, masks) + dice_loss(s[:, 1], masks) + dice_loss(s[:, 0], 1 - masks)
    cls = focal_loss(out.p_img, labels)
    assert parts["seg"].item() == pytest.approx(seg.item(), rel=1e-6)
    assert parts["cls"].item() == pytest.approx(cls.item(), rel=1e-6)
    assert parts["seg"].item() == pytest.approx(
        (parts["focal"] + parts["dice_ab"] + parts["dice_norm"]).item(), rel=1e-6)
    assert total.item() == pytest.approx((parts["cls"] + 0.5 * parts["seg"]).item(), rel=1e-6)
    assert parts["total"].item() == pytest.approx(total.item())
    with pytest.raises(ValueError):
        bagclip_loss(out, masks[:, :2], labels, cfg)

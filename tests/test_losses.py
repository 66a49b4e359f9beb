"""Focal, dice and the BAG-CLIP objective against hand-computed values."""
import math
from types import SimpleNamespace

import numpy as np
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


def np_focal(p_ab: np.ndarray, y: np.ndarray, gamma: float = 2.0) -> float:
    """The paper's focal loss from the abnormal probability, float64 numpy."""
    p_t = np.clip(np.where(y > 0, p_ab, 1 - p_ab), 1e-8, 1.0)
    return float(np.mean(-(1 - p_t) ** gamma * np.log(p_t)))


def np_dice(p: np.ndarray, g: np.ndarray) -> float:
    """Per-image dice loss (axis 0 is the batch), mean over the batch, float64 numpy."""
    inter = (p * g).reshape(len(p), -1).sum(1)
    return float(np.mean(1 - (2 * inter + 1) / (p.reshape(len(p), -1).sum(1) + g.reshape(len(g), -1).sum(1) + 1)))


def make_output(B=2, L=3, H=4, W=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    ab = torch.rand(B, L, H, W, generator=g, dtype=torch.float64)
    layer_maps = torch.stack([1 - ab, ab], dim=2)
    p_img = torch.rand(B, generator=g, dtype=torch.float64)
    return SimpleNamespace(layer_maps=layer_maps, p_img=p_img, anomaly_map=ab.mean(1))


def test_one_map_by_hand():
    """B = 1, L = 1, a 1 x 2 map: every term worked out on paper."""
    ab = torch.tensor([[[[0.9, 0.2]]]], dtype=torch.float64)  # (B, L, H, W) abnormal channel
    out = SimpleNamespace(layer_maps=torch.stack([1 - ab, ab], dim=2), p_img=torch.tensor([0.6]))
    mask, label = torch.tensor([[[1.0, 0.0]]]), torch.tensor([1])
    total, parts = bagclip_loss(out, mask, label, Config.tiny())
    focal = (fl(0.9) + fl(0.8)) / 2  # p_t 0.9 (defect pixel), 0.8 (normal pixel)
    dice_ab = 1 - (2 * 0.9 + 1) / (1.1 + 1 + 1)  # sum p = 0.9 + 0.2, sum g = 1
    dice_norm = 1 - (2 * 0.8 + 1) / (0.9 + 1 + 1)  # normal channel 0.1, 0.8 vs 1 - M = 0, 1
    assert parts["seg"].item() == pytest.approx(focal + dice_ab + dice_norm, rel=1e-12)
    assert parts["cls"].item() == pytest.approx(fl(0.6), rel=1e-6)
    assert total.item() == pytest.approx(fl(0.6) + focal + dice_ab + dice_norm, rel=1e-6)


@pytest.mark.parametrize("B", [1, 2])
@pytest.mark.parametrize("where", ["sum_taps", "mean_taps", "mean_map"])
def test_bagclip_loss_against_numpy(B, where):
    cfg = Config.tiny(loss_lambda=0.5, seg_loss=where)
    out = make_output(B=B)
    masks = torch.zeros(B, 4, 4)
    masks[0, 1:3, 1:3] = 1
    labels = torch.tensor([1, 0][:B])
    total, parts = bagclip_loss(out, masks, labels, cfg)
    ab, m = out.layer_maps[:, :, 1].numpy(), masks.numpy()  # (B, L, H, W), (B, H, W)
    per_map = [np_focal(a, m) + np_dice(a, m) + np_dice(1 - a, 1 - m) for a in ab.transpose(1, 0, 2, 3)]
    mean_map = ab.mean(1)
    seg = {"sum_taps": sum(per_map), "mean_taps": np.mean(per_map),
           "mean_map": np_focal(mean_map, m) + np_dice(mean_map, m) + np_dice(1 - mean_map, 1 - m)}[where]
    cls = np_focal(out.p_img.numpy(), labels.numpy())
    assert parts["seg"].item() == pytest.approx(seg, rel=1e-9)
    assert parts["cls"].item() == pytest.approx(cls, rel=1e-9)
    assert total.item() == pytest.approx(cls + 0.5 * seg, rel=1e-9)
    assert parts["seg"].item() == pytest.approx(
        (parts["focal"] + parts["dice_ab"] + parts["dice_norm"]).item(), rel=1e-9)
    with pytest.raises(ValueError):
        bagclip_loss(out, masks[:, :2], labels, cfg)

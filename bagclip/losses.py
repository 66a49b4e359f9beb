"""The paper's objective (3.6): L = L_CLS + lambda * L_SEG.

    L_CLS = focal(image-level [1 - p_img, p_img], label)
    L_SEG = sum over taps [focal(S^l, M) + dice(S^l_ab, M) + dice(S^l_norm, 1 - M)]

`cfg.seg_loss` says where L_SEG applies (the paper writes it for one map S): "sum_taps" (the
default, above), "mean_taps" (the same terms averaged over taps: lambda is then per map), or
"mean_map" (once, on the evaluated map S = mean over taps of S^l).

Focal on probabilities (the heads output softmax probabilities), gamma = 2, no alpha. Dice per
image, mean over the batch; the batch dimension is never squeezed (a batch of one is a batch).
"""
from __future__ import annotations

import torch

EPS = 1e-8  # floor on p_t inside the log


def focal_loss(probs: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """mean over elements of -(1 - p_t)^gamma log(p_t).

    Either two-class probabilities with the class on dim 1 (`(B, 2, H, W)` with target
    `(B, H, W)`, or `(B, 2)` with target `(B,)`), or abnormal probabilities of the same shape
    as the target (`(B,)` with `(B,)`). target: 0/1 (bool, int or float).
    """
    t = target.to(probs.device).float() > 0.5
    if probs.shape == target.shape:  # p_abnormal
        p_t = torch.where(t, probs, 1 - probs)
    elif probs.dim() == target.dim() + 1 and probs.shape[1] == 2 and \
            probs.shape[:1] + probs.shape[2:] == target.shape:
        normal, abnormal = probs.unbind(1)  # unbind: its backward is one stack, not a
        p_t = torch.where(t, abnormal, normal)  # zero-filled (B, 2, ...) per channel
    else:
        raise ValueError(f"focal_loss: probs {tuple(probs.shape)} and target "
                         f"{tuple(target.shape)} do not match")
    p_t = p_t.clamp(EPS, 1.0)
    return (-(1 - p_t) ** gamma * torch.log(p_t)).mean()


def dice_loss(p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """mean over the batch of 1 - (2 sum(p g) + 1) / (sum p + sum g + 1); p, g `(B, H, W)`."""
    if p.shape != g.shape:
        raise ValueError(f"dice_loss: p {tuple(p.shape)} vs g {tuple(g.shape)}")
    p, g = p.flatten(1), g.to(p).flatten(1)  # (B, H*W): per image, batch kept
    dice = (2 * (p * g).sum(1) + 1) / (p.sum(1) + g.sum(1) + 1)
    return (1 - dice).mean()


def bagclip_loss(output, masks: torch.Tensor, labels: torch.Tensor, cfg) -> tuple[torch.Tensor, dict]:
    """(total, parts) for a model `Output`, masks `(B, H, W)` and labels `(B,)`.

    parts: detached scalars focal, dice_ab, dice_norm (over the maps cfg.seg_loss names), seg,
    cls, total; seg = focal + dice_ab + dice_norm and total = cls + cfg.loss_lambda * seg.
    """
    maps = output.layer_maps  # (B, L, 2, H, W)
    B, L = maps.shape[:2]
    if masks.shape != (B, *maps.shape[-2:]):
        raise ValueError(f"masks {tuple(masks.shape)} must be (B, H, W) = "
                         f"{(B, *maps.shape[-2:])}, the size of the output maps")
    m = masks.to(maps.device).float()
    if cfg.seg_loss == "mean_map":
        maps = maps.mean(dim=1, keepdim=True)  # the evaluated map, both channels
    # every tap at once: (B * n, 2, H, W) against the masks repeated per tap; a mean over the
    # B * n maps times n is the sum over taps of the per-tap means (no per-tap slicing, whose
    # backward would zero-fill the whole (B, L, 2, H, W) once per slice)
    n = maps.shape[1]
    flat, mt = maps.flatten(0, 1), m.repeat_interleave(n, dim=0)
    normal, abnormal = flat.unbind(1)
    focal = n * focal_loss(flat, mt, cfg.focal_gamma)
    dice_ab = n * dice_loss(abnormal, mt)
    dice_norm = n * dice_loss(normal, 1 - mt)
    if cfg.seg_loss == "mean_taps":
        focal, dice_ab, dice_norm = focal / L, dice_ab / L, dice_norm / L
    seg = focal + dice_ab + dice_norm
    p = output.p_img
    cls = focal_loss(torch.stack([1 - p, p], dim=1), labels.to(p.device), cfg.focal_gamma)
    total = cls + cfg.loss_lambda * seg
    parts = {k: v.detach() for k, v in dict(focal=focal, dice_ab=dice_ab, dice_norm=dice_norm,
                                             seg=seg, cls=cls, total=total).items()}
    return total, parts

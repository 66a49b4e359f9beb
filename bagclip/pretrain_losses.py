"""bagclip-mini's pretraining losses for one batch (their definitions: `bagclip.pretrain`'s docstring).

    out = losses(model, cfg, x, cover, tokens, clip_loss)   # {"clip", "state", "dense", ..., "total"}

x (2B, 3, S, S): B clean images then their B defective versions; cover (2B, N): each patch's
defect coverage; tokens (2B, 77): the [normal..., abnormal...] captions. `patch_proj` chooses
what the patch losses compare with the text (`PATCH_PROJECTIONS`); `patch_losses` lists it per
loss for the weights' record. `cfg` is a `bagclip.pretrain.PretrainConfig` (not imported:
the config imports these names).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .backbone import forward_taps, interpolate_pos_embed, project_patches

PATCH_PROJECTIONS = {  # patch_proj -> what the patch losses compare with the text (see patch_losses)
    "proj": "ln_post + proj (shipped)",
    "own": "ln_post + state_patch_proj (pretraining only, dropped at export)",
}


def patch_projection(model, cfg, taps: torch.Tensor) -> torch.Tensor:
    """Tapped tokens (..., W) -> the space the patch losses compare with the text (..., E).
    "proj": the shipped ln_post + proj, as a frozen CLIP's training-free maps read them; "own":
    ln_post + the pretraining's own matrix, so the shipped proj learns from the class token only."""
    if cfg.patch_proj == "own":
        return model.visual.ln_post(taps) @ model.state_patch_proj
    return project_patches(model.visual, taps)


def patch_losses(cfg) -> dict[str, str]:
    """{patch loss: the projection it goes through} for the losses this config trains (weight > 0):
    what a weights record states, and what tests check the shipped recipe against."""
    active = {"dense": cfg.w_dense, "probe": cfg.w_probe, "proto_patch": cfg.w_proto, "mil": cfg.w_mil,
              "tie": cfg.w_tie}
    return {k: PATCH_PROJECTIONS[cfg.patch_proj] for k, w in active.items() if w > 0}


def losses(model, cfg, x, cover, tokens, clip_loss, probe=None, prototypes=None) -> dict:
    """The pretraining losses for one batch (`bagclip.pretrain`'s docstring); "total" is their sum."""
    B2 = x.shape[0]
    B = B2 // 2
    L = len(cfg.taps)
    v = model.visual
    grid = x.shape[-1] // int(v.conv1.kernel_size[0])
    pos_embed = None if grid == v.grid_size[0] else interpolate_pos_embed(v.positional_embedding, grid)
    taps, cls = forward_taps(v, x, cfg.taps, pos=pos_embed)  # (2B, L, N, W), (2B, E)
    text = F.normalize(model.encode_text(tokens), dim=-1)  # (2B, E): [normal..., abnormal...]
    img = F.normalize(cls, dim=-1)
    scale = model.logit_scale.exp().clamp(max=100)
    tau = scale if cfg.tau is None else cfg.tau
    l_clip = clip_loss(img, text, scale)
    pair_text = torch.stack([text[:B], text[B:]], dim=1).repeat(2, 1, 1)  # (2B, 2, E) per image
    state = torch.arange(B2) >= B  # clean first, then defective
    state_logits = tau * torch.einsum("be,bke->bk", img, pair_text)  # (2B, 2)
    shown = None  # pairs whose defect can be seen (all of them unless min_contrast is set)
    if cfg.min_contrast > 0:
        shown = (cover[B:] >= cfg.min_cover).any(1).repeat(2)  # (2B,)
        state_logits, state_kept = state_logits[shown], state[shown]
        l_state = F.cross_entropy(state_logits, state_kept.long()) if shown.any() else state_logits.sum() * 0
    else:
        l_state = F.cross_entropy(state_logits, state.long())
    p = F.normalize(patch_projection(model, cfg, taps), dim=-1)  # (2B, L, N, E)
    pos = (cover >= cfg.min_cover)[:, None].expand(-1, L, -1)  # (2B, L, N) abnormal patches
    neg = (cover == 0)[:, None].expand(-1, L, -1)  # normal ones; the rest is ignored

    def patch_loss(scores: torch.Tensor) -> torch.Tensor:
        """Class-balanced cross-entropy of per-patch scores (2B, 2, L, N) against the masks."""
        return _balanced(F.cross_entropy(scores, pos.long(), reduction="none"), pos, neg)

    dense_logits = tau * torch.einsum("blne,bke->bkln", p, pair_text)  # (2B, 2, L, N)
    l_dense = patch_loss(dense_logits)
    total = l_clip + cfg.w_state * l_state + cfg.w_dense * l_dense
    out = dict(clip=l_clip, state=l_state, dense=l_dense)
    if cfg.w_mil:
        out.update(_mil_losses(cfg, dense_logits, state_logits, state, shown))
        total = total + cfg.w_mil * out["mil"] + cfg.w_tie * out.get("tie", 0.0)
    if probe is not None:  # text-free bootstrap: a linear state classifier on the same tokens
        out["probe"] = patch_loss(probe(10 * p).permute(0, 3, 1, 2))
        total = total + cfg.w_probe * out["probe"]
    if prototypes is not None:  # patches and captions against two shared, learned state vectors
        P = F.normalize(prototypes, dim=-1)  # (2, E)
        out["proto_patch"] = patch_loss(tau * torch.einsum("blne,ke->bkln", p, P))
        out["proto_text"] = F.cross_entropy(tau * text @ P.T, state.long())
        total = total + cfg.w_proto * (out["proto_patch"] + out["proto_text"])
    out["total"] = total
    return out


def _mil_losses(cfg, dense_logits, state_logits, state, shown) -> dict:
    """L_mil (and L_tie) from the dense logits (2B, 2, L, N) and the class token's (2B or kept, 2)."""
    z = dense_logits[:, 1] - dense_logits[:, 0]  # (2B, L, N) abnormal-vs-normal logit
    k = max(1, round(cfg.mil_share * z.shape[-1]))
    top = z.topk(k, dim=-1).values.mean(-1)  # (2B, L): the image's state per tap, from its top patches
    y = state[:, None].float().expand_as(top)
    if shown is not None:
        top, y = top[shown], y[shown]
    out = {"mil": F.binary_cross_entropy_with_logits(top, y) if len(y) else top.sum() * 0}
    if cfg.w_tie:  # route the patches' evidence to the class token: its state logit follows the
        # (detached) top-patch logit, which the dense losses learn long before L_state does
        cls_z = state_logits[:, 1] - state_logits[:, 0]  # (2B,) or (shown,)
        target = torch.sigmoid(top.detach().float().mean(-1))
        out["tie"] = F.binary_cross_entropy_with_logits(cls_z.float(), target) if len(y) else cls_z.sum() * 0
    return out


def _balanced(ce: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Mean loss over abnormal patches and over normal ones, averaged (classes balanced)."""
    return 0.5 * (ce[pos].mean() if pos.any() else ce.sum() * 0) + 0.5 * ce[neg].mean()

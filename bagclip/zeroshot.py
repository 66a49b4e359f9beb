"""The training-free scorer: a frozen CLIP and a prompt ensemble, nothing learned (WinCLIP-style).

    zs = ZeroShot(backbone)                                  # any backbone, no training
    maps, scores, p_img = heads_forward(zs, tokens, text, cfg)   # same contract as the heads

What CLIP gives for free, and the baseline BAG-CLIP's heads must beat:
- image score: p_img = softmax(tau * cos(cls, [T_N, T_A]))[abnormal], the class embedding
  against the prompt-ensemble text features of `Backbone.encode_text`;
- maps: every tapped block's patch tokens are sent through CLIP's own `ln_post` and `proj` (as
  the class token is) and compared with the same text, giving one raw text-similarity map per
  tap; the anomaly map is their mean. With `detail_attention="vv"` the taps come from the V-V
  stream, which keeps tokens local (see docs/decisions.md).
WinCLIP's multi-scale window ensemble is not included: maps come from patch tokens only.
`ZeroShot` has the heads' call signature and `Output`, so `heads_forward`, `predict_cached`,
the evaluators and the plots take it wherever they take trained heads.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .backbone import Backbone, Tokens, project_patches
from .model import Output, global_prob, score_image, text_maps, text_probs


class ZeroShot(nn.Module):
    """Frozen scorer over `Tokens`: no parameter of its own (ln_post / proj are CLIP's)."""

    def __init__(self, backbone: Backbone, tau: float | None = None, image_score: str | None = None):
        super().__init__()
        cfg = backbone.cfg
        self.ln_post, self.proj = backbone.visual.ln_post, backbone.visual.proj  # shared, frozen
        self.tau = float(tau if tau is not None else cfg.logit_scale)
        self.image_score = image_score or cfg.image_score
        self.size = cfg.image_size
        self.requires_grad_(False)
        self.eval()

    def patch_features(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, L, N, W) tapped tokens -> (B, L, N, E) in CLIP's joint space (not normalised)."""
        return project_patches(self, patches.to(self.proj.dtype))

    def _text(self, text: torch.Tensor, batch: int) -> torch.Tensor:
        T = text.to(self.proj.device, self.proj.dtype)
        return T.unsqueeze(0).expand(batch, -1, -1) if T.dim() == 2 else T

    @torch.no_grad()
    def tap_probs(self, patches: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """(B, L, N, W) tapped tokens, text (2, E) or (B, 2, E) -> the raw abnormal probability
        of every patch of every tap on the grid, (B, L, G, G): what the frozen CLIP "sees" at
        each depth (lesson 01), the maps `forward` averages before upsampling."""
        patches = patches.to(self.proj.device)
        return text_probs(self.patch_features(patches), self._text(text, patches.shape[0]), self.tau)[:, :, 1]

    @torch.no_grad()
    def forward(self, tokens: Tokens, text: torch.Tensor) -> Output:
        """tokens `.patches (B, L, N, W)`, `.cls (B, E)`; text (2, E) or (B, 2, E) -> Output."""
        B = tokens.patches.shape[0]
        T = self._text(text, B)
        layer_maps = text_maps(self.patch_features(tokens.patches), T, self.tau, self.size)
        anomaly_map = layer_maps[:, :, 1].mean(dim=1)
        p_img = global_prob(tokens.cls.to(self.proj.dtype), T, self.tau)
        return Output(anomaly_map, score_image(p_img, anomaly_map, self.image_score), layer_maps, p_img)

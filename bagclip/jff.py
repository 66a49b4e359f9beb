"""Joint Feature Fusion (paper 3.5): Psi = normalize([F_pre, F_SAG] W_proj).

W_proj is a Linear without bias, as the paper's equation reads; it maps the fused features
into CLIP's joint space (E), where they meet the text features by cosine similarity.

Ablations: dim_sag=0 projects F_pre alone (use_sag False); dim_pre=0 projects F_SAG alone
(use_jff False). `init_from_clip` starts W_proj as CLIP's own patch projection (heads_init="clip",
docs/decisions.md).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class JFF(nn.Module):
    """(B, N, dim_pre) and (B, N, dim_sag) -> Psi (B, N, embed_dim), unit L2 norm."""

    def __init__(self, dim_pre: int, dim_sag: int, embed_dim: int) -> None:
        super().__init__()
        if dim_pre < 0 or dim_sag < 0 or dim_pre + dim_sag == 0:
            raise ValueError(f"JFF needs dim_pre + dim_sag > 0, got {dim_pre} + {dim_sag}")
        self.dim_pre, self.dim_sag = dim_pre, dim_sag
        self.proj = nn.Linear(dim_pre + dim_sag, embed_dim, bias=False)  # W_proj

    @torch.no_grad()
    def init_from_clip(self, ln_weight: torch.Tensor, proj: torch.Tensor) -> None:
        """W_proj such that Psi = normalize(proj^T (g * (F_pre - mean(F_pre)))) and F_SAG adds 0.

        That is CLIP's ln_post + proj on F_pre (gain g `(W,)`, proj `(W, E)`) up to the per-token
        1/std, which the normalisation removes, and ln_post's bias, which a bias-free W_proj
        cannot hold. Needs dim_pre == W."""
        W, E = proj.shape
        if self.dim_pre != W or self.proj.out_features != E:
            raise ValueError(f"init_from_clip needs dim_pre={W} and embed_dim={E}; this JFF has "
                             f"dim_pre={self.dim_pre}, embed_dim={self.proj.out_features}")
        centre = torch.eye(W, dtype=proj.dtype, device=proj.device) - 1.0 / W  # x - mean(x)
        w = centre @ (ln_weight.to(proj.dtype)[:, None] * proj)  # (W, E)
        self.proj.weight.zero_()
        self.proj.weight[:, :W] = w.t().to(self.proj.weight)

    def forward(self, f_pre: torch.Tensor | None, f_sag: torch.Tensor | None) -> torch.Tensor:
        parts = []
        if self.dim_pre:
            parts.append(f_pre)
        if self.dim_sag:
            parts.append(f_sag)
        merged = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]  # F_merged
        return F.normalize(self.proj(merged), dim=-1)

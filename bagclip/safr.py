"""Scale-Adaptive Feature Recalibration (paper 3.2.1): channel gates over the concatenated taps.

x_detail = x_concat * sigmoid(W2 relu(W1 GAP(x_concat)))

GAP averages over the N patches, W1: C -> C/r, W2: C/r -> C. W1 and W2 carry no bias: the
paper's equation has none (squeeze-and-excitation implementations usually add one; with a
per-image GAP the difference is a constant offset the weights can absorb anyway).
"""
from __future__ import annotations

import torch
import torch.nn as nn


def concat_taps(patches: torch.Tensor) -> torch.Tensor:
    """(B, L, N, W) per-tap patch tokens -> x_concat (B, N, C = L*W), tap-major channels."""
    B, L, N, W = patches.shape
    return patches.permute(0, 2, 1, 3).reshape(B, N, L * W)


def split_taps(x: torch.Tensor, taps: int) -> torch.Tensor:
    """Inverse of `concat_taps`: (B, N, L*W) -> (B, L, N, W)."""
    B, N, C = x.shape
    if C % taps:
        raise ValueError(f"channels {C} do not split into {taps} taps")
    return x.reshape(B, N, taps, C // taps).permute(0, 2, 1, 3)


class SAFR(nn.Module):
    """Channel recalibration of x_concat `(B, N, C)`; gates `(B, C)` shared by all patches."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if channels // reduction < 1:
            raise ValueError(f"channels={channels} // reduction={reduction} must be >= 1")
        self.W1 = nn.Linear(channels, channels // reduction, bias=False)
        self.W2 = nn.Linear(channels // reduction, channels, bias=False)

    @torch.no_grad()
    def neutral_(self) -> "SAFR":
        """W2 = 0: every gate starts at sigmoid(0) = 1/2 for every image (W1 learns once W2 moves)."""
        self.W2.weight.zero_()
        return self

    def gates(self, x_concat: torch.Tensor) -> torch.Tensor:
        """sigmoid(W2 relu(W1 GAP(x))) : (B, N, C) -> (B, C)."""
        z = x_concat.mean(dim=1)  # GAP over the N patches: where the defect is does not matter
        return torch.sigmoid(self.W2(torch.relu(self.W1(z))))

    def forward(self, x_concat: torch.Tensor) -> torch.Tensor:
        """x_detail (B, N, C)."""
        return x_concat * self.gates(x_concat).unsqueeze(1)

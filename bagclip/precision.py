"""Mixed precision: one switch per part, `Config.backbone_precision` and `Config.heads_precision`.

"float32" runs as written; "bfloat16" runs the part under `torch.autocast` (matrix products and
attention in bfloat16, reductions and norms in float32, as autocast decides). The SAG graph is
always built in float32 (`bagclip.sag` turns autocast off there: top-k over near-equal
affinities is where bfloat16's 8 bits of mantissa would change the graph). On CUDA with
bfloat16 support this is the fast path; on a CPU it is correct but rarely faster.
"""
from __future__ import annotations

import contextlib

import torch

from .config import PRECISIONS


def autocast(precision: str, device: torch.device | str):
    """A context running its body at `precision` on `device` (a no-op for "float32")."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; allowed: {PRECISIONS}")
    if precision == "float32":
        return contextlib.nullcontext()
    dev = torch.device(device)
    return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)

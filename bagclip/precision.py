"""Mixed precision: one switch per part, `Config.backbone_precision` and `Config.heads_precision`.

"float32" runs as written; "bfloat16" runs the part under `torch.autocast` (matrix products and
attention in bfloat16, reductions and norms in float32, as autocast decides). The SAG graph is
always built in float32 (`bagclip.sag` turns autocast off there: top-k over near-equal
affinities is where bfloat16's 8 bits of mantissa would change the graph). On CUDA with
bfloat16 support this is the fast path. On a CPU it is fast only with native bfloat16
instructions (AVX512_BF16 or AMX): measured, a 1024^3 matmul ran at 476 GFLOPS in bfloat16 vs
102 in float32 on such a core, but at 0.8 vs 53 on an AVX2-only core (AMD EPYC, torch 2.14),
where it is emulated. Asking for bfloat16 on a CPU known to lack them logs one warning.
"""
from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path

import torch

from .config import PRECISIONS


log = logging.getLogger(__name__)

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs with bfloat16 matmuls


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether the CPU multiplies bfloat16 natively, from the `flags` of /proc/cpuinfo (or the
    text given); None where that cannot be read (not Linux): then nothing is claimed."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return None
    flags = {f for line in cpuinfo.splitlines() if line.split(":")[0].strip() == "flags"
             for f in line.split(":", 1)[1].split()}
    if not flags:
        return None
    return any(f in flags for f in NATIVE_BF16_FLAGS)


@functools.lru_cache(maxsize=1)
def _warn_emulated_bf16() -> None:
    if cpu_has_native_bf16() is False:
        log.warning("bfloat16 on this CPU is emulated (no %s): matrix products run tens of times "
                    "slower than float32; use precision float32 here (pretraining's precision, "
                    "backbone_precision, heads_precision), bfloat16 where the CPU has them or on a "
                    "GPU", " or ".join(NATIVE_BF16_FLAGS))


def autocast(precision: str, device: torch.device | str):
    """A context running its body at `precision` on `device` (a no-op for "float32")."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; allowed: {PRECISIONS}")
    if precision == "float32":
        return contextlib.nullcontext()
    dev = torch.device(device)
    if dev.type == "cpu":
        _warn_emulated_bf16()
    return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)

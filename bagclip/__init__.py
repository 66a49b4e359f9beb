"""bagclip: a teaching and analysis kit for BAG-CLIP zero-shot industrial anomaly detection.

Heavy submodules (torch, open_clip) load lazily so that `import bagclip` stays cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

from .config import Config

__version__ = "0.1.0"

_LAZY = {
    "load_backbone": ("bagclip.backbone", "load_backbone"),
    "Backbone": ("bagclip.backbone", "Backbone"),
    "Tokens": ("bagclip.backbone", "Tokens"),
    "BAGCLIP": ("bagclip.model", "BAGCLIP"),
    "Output": ("bagclip.model", "Output"),
    "predict": ("bagclip.inference", "predict"),
}
_SUBMODULES = {"backbone", "cache", "safr", "sag", "jff", "model", "losses", "train", "inference",
               "metrics", "evaluate", "data", "prompts", "cli", "paper", "sweeps", "experiments", "cost"}

__all__ = ["Config", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    if name in _SUBMODULES:
        return importlib.import_module(f"bagclip.{name}")
    raise AttributeError(f"module 'bagclip' has no attribute {name!r}")

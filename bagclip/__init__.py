"""bagclip: a teaching and analysis kit for BAG-CLIP zero-shot industrial anomaly detection.

Heavy submodules (torch, open_clip) load lazily so that `import bagclip` stays cheap.
"""
from __future__ import annotations

import importlib
import importlib.util
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

__all__ = ["Config", *_LAZY]


def __getattr__(name: str) -> Any:
    """Lazy access to the names above and to every submodule (`bagclip.metrics`, ...)."""
    if name in _LAZY:
        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    if not name.startswith("_") and importlib.util.find_spec(f"bagclip.{name}") is not None:
        return importlib.import_module(f"bagclip.{name}")
    raise AttributeError(f"module 'bagclip' has no attribute {name!r}")

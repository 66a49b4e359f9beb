"""What the kit knows of a ViT before building it, read from open_clip model-config JSON files
(the kit's own in bagclip/model_configs/, then open_clip's), without importing open_clip or
torch. Looked up once per name (cached): the answer never depends on what else is imported.
"""
from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

MODEL_CONFIG_DIR = Path(__file__).resolve().parent.parent / "model_configs"


class Arch(NamedTuple):
    """A ViT's shape: patch size, depth (transformer blocks), token width W, joint space E."""
    patch_size: int
    depth: int
    width: int
    embed_dim: int


def _model_config(name: str) -> dict | None:
    """An open_clip model config: the kit's own (model_configs/), else open_clip's JSON file,
    found without importing open_clip."""
    own = MODEL_CONFIG_DIR / f"{name}.json"
    if own.is_file():
        return json.loads(own.read_text())
    spec = importlib.util.find_spec("open_clip")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for path in Path(folder, "model_configs").rglob(f"{name}.json"):
            return json.loads(path.read_text())
    return None


@lru_cache(maxsize=None)
def backbone_arch(name: str) -> Arch | None:
    """The architecture of an open_clip ViT name, or None if no model config names it or its
    image tower is not a ViT (`not_a_vit`)."""
    mc = _model_config(name)
    if mc is None or mc.get("vision_cfg", {}).get("patch_size") is None:
        return None  # unknown, or not a ViT (a ResNet's config holds "patch_size": null)
    v = mc["vision_cfg"]
    layers = v["layers"]
    return Arch(int(v["patch_size"]), int(layers if isinstance(layers, int) else sum(layers)),
                int(v["width"]), int(mc["embed_dim"]))


@lru_cache(maxsize=None)
def not_a_vit(name: str) -> bool:
    """True when open_clip knows `name` but its image tower is not open_clip's VisionTransformer
    (a ResNet such as RN50, or a timm or other tower: its config names no patch size); the kit
    taps that class's blocks only."""
    mc = _model_config(name)
    return mc is not None and mc.get("vision_cfg", {}).get("patch_size") is None


_registered = False


def register_model_configs() -> None:
    """Make open_clip know the kit's own architectures (model_configs/*.json); idempotent."""
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(MODEL_CONFIG_DIR)
        _registered = True

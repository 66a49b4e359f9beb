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
    """The architecture of an open_clip ViT name, or None if no model config names it."""
    mc = _model_config(name)
    if mc is None or "patch_size" not in mc.get("vision_cfg", {}):
        return None  # unknown, or not a ViT
    v = mc["vision_cfg"]
    layers = v["layers"]
    return Arch(int(v["patch_size"]), int(layers if isinstance(layers, int) else sum(layers)),
                int(v["width"]), int(mc["embed_dim"]))


_registered = False


def register_model_configs() -> None:
    """Make open_clip know the kit's own architectures (model_configs/*.json); idempotent."""
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(MODEL_CONFIG_DIR)
        _registered = True

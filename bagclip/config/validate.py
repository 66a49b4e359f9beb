"""The ranges and choices of every setting, and what the backbone's architecture allows (patch
size, depth, patches): `validate(cfg)` raises a ConfigError naming the setting and what is
allowed. Types are already right (bagclip.config.coerce)."""
from __future__ import annotations

import re

from ..errors import ConfigError
from .arch import backbone_arch, not_a_vit

DETAIL_ATTENTIONS = ("none", "vv")
IMAGE_SCORES = ("mix", "global", "max")
SEG_LOSSES = ("sum_taps", "mean_taps", "mean_map")
GRAPH_INPUTS = ("detail", "taps")
FEATURE_DTYPES = ("float16", "float32")
HEADS_INITS = ("random", "clip")
MAX_SEED = 2**32 - 1  # issue 19: every seed the kit derives stays within int64
PRECISIONS = ("float32", "bfloat16")  # backbone_precision / heads_precision (see bagclip.precision)
CHOICES = {"detail_attention": DETAIL_ATTENTIONS, "image_score": IMAGE_SCORES, "seg_loss": SEG_LOSSES,
           "graph_input": GRAPH_INPUTS, "feature_dtype": FEATURE_DTYPES, "backbone_precision": PRECISIONS,
           "heads_precision": PRECISIONS, "heads_init": HEADS_INITS}


def _bad(msg: str):
    name = re.match(r"\w+", msg)
    raise ConfigError(f"Config: {msg}", name.group(0) if name else None)


def _check_values(cfg) -> None:
    for name, allowed in CHOICES.items():
        if getattr(cfg, name) not in allowed:
            _bad(f"{name}={getattr(cfg, name)!r}; allowed: {allowed}")
    if not cfg.taps or any(t < 1 for t in cfg.taps) or list(cfg.taps) != sorted(set(cfg.taps)):
        _bad(f"taps={cfg.taps}: need distinct, increasing, 1-indexed block numbers")
    if cfg.image_size <= 0:
        _bad(f"image_size={cfg.image_size} must be positive")
    for name in ("safr_reduction", "k", "gcn_layers", "gcn_hidden", "epochs", "batch_size"):
        if getattr(cfg, name) < 1:
            _bad(f"{name}={getattr(cfg, name)} must be >= 1")
    if cfg.k < 2:
        _bad(f"k={cfg.k}: need k >= 2 (each node keeps k-1 neighbours)")
    for name in ("logit_scale", "lr", "kernel_scale"):
        if getattr(cfg, name) <= 0:
            _bad(f"{name}={getattr(cfg, name)} must be > 0")
    for name in ("smoothing_sigma", "loss_lambda", "focal_gamma", "seed", "backbone_seed"):
        if getattr(cfg, name) < 0:
            _bad(f"{name}={getattr(cfg, name)} must be >= 0")
    for name in ("seed", "backbone_seed"):  # issue 19: torch seeds are 64-bit, and train
        if getattr(cfg, name) > MAX_SEED:  # derives epoch seeds as seed * 100_003 + epoch
            _bad(f"{name}={getattr(cfg, name)} is too large; give a whole number up to {MAX_SEED}")
    if not all(0 <= b < 1 for b in cfg.betas):
        _bad(f"betas={list(cfg.betas)}: Adam needs both in [0, 1), e.g. [0.5, 0.999]")


def _check_arch(cfg) -> None:
    arch = backbone_arch(cfg.backbone)
    if arch is None and not_a_vit(cfg.backbone):
        _bad(f"backbone={cfg.backbone!r} has no open_clip VisionTransformer (its image tower is a "
             f"ResNet, or a timm or other model), whose blocks the kit taps; choose a ViT such "
             f"as 'ViT-B-16' or 'ViT-L-14-336', or the offline 'bagclip-mini'")
    if arch is None:
        return  # unknown to open_clip here: load_backbone will say so
    patch, depth = arch.patch_size, arch.depth
    if cfg.image_size % patch:
        _bad(f"image_size={cfg.image_size} is not a multiple of the patch size {patch} of "
             f"{cfg.backbone}; e.g. {patch * round(cfg.image_size / patch)}")
    if cfg.taps[-1] > depth:
        _bad(f"taps={cfg.taps}: {cfg.backbone} has {depth} blocks; allowed taps are 1..{depth}")
    if cfg.bsa_start is not None and not 1 <= cfg.bsa_start <= depth:
        _bad(f"bsa_start={cfg.bsa_start}: allowed 1..{depth}")
    n = (cfg.image_size // patch) ** 2
    if cfg.k >= n:
        _bad(f"k={cfg.k} must be < N={n} patches at image_size={cfg.image_size}")


def validate(cfg) -> None:
    """ConfigError for the first setting out of range, in the order above."""
    _check_values(cfg)
    _check_arch(cfg)

"""One dataclass holding every BAG-CLIP setting, with the paper's defaults.

`Config()` is the paper (ViT-L-14-336 at 518 px, taps 6/12/18/24, K = 15, P = 5, r = 16).
`Config.quick()` is the embedded CPU default: `bagclip-mini`, the kit's own small CLIP
pretrained on a synthetic world and shipped inside the package (no download; never the paper's
numbers). `Config.tiny()` is a random-weight toy for unit tests where weights do not matter. Settings are validated on construction; `save` / `load` use JSON or YAML.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DETAIL_ATTENTIONS = ("none", "vv")
IMAGE_SCORES = ("mix", "global", "max")
TINY_BACKBONE = "bagclip-tiny"  # random weights: plumbing tests only
MINI_BACKBONE = "bagclip-mini"  # pretrained on the kit's synthetic world, shipped as package data


@dataclass
class Config:
    # --- backbone (frozen) ---
    backbone: str = "ViT-L-14-336"  # any open_clip ViT name, "bagclip-mini" or "bagclip-tiny" (offline)
    pretrained: str | None = "openai"  # open_clip tag, "bagclip-mini" (shipped), a local file, or None (seeded random)
    quick_gelu: bool | None = None  # QuickGELU activations; None -> True for OpenAI weights (their training)
    backbone_seed: int = 0  # seeds the backbone's random weights when pretrained is None
    image_size: int = 518  # square input side in pixels; must be a multiple of the patch size
    taps: tuple[int, ...] = (6, 12, 18, 24)  # 1-indexed transformer blocks whose outputs feed the detail branch
    detail_attention: str = "none"  # "none": paper's text; "vv": our dual V-V attention stream (DESIGN.md)
    bsa_start: int | None = None  # first 1-indexed block of the "vv" stream; None -> first tap
    # --- heads (trainable) ---
    safr_reduction: int = 16  # SAFR bottleneck ratio r (C -> C/r -> C)
    k: int = 15  # SAG neighbours K: each node keeps K-1 out-edges
    gcn_layers: int = 5  # GCN depth P
    gcn_hidden: int = 384  # GCN width h (W -> h -> ... -> h)
    metric_proj: bool = False  # learnable metric W_phi in the graph kernel (paper's eq., not in its Table 4)
    share_sag: bool = False  # one SAG for all taps instead of one per tap
    use_safr: bool = True  # ablation switch (Table 3)
    use_sag: bool = True  # ablation switch (Table 3)
    use_jff: bool = True  # False: project F_SAG alone (our ablation)
    logit_scale: float = 100.0  # tau in softmax(tau * cos); CLIP's scale
    # --- scoring ---
    smoothing_sigma: float = 4.0  # Gaussian filter on anomaly maps at evaluation (pixels); 0 disables
    image_score: str = "mix"  # "mix": (p_img + max map) / 2; "global": p_img; "max": max map
    # --- loss and optimisation ---
    loss_lambda: float = 1.0  # L = L_CLS + lambda * L_SEG
    focal_gamma: float = 2.0  # focal loss focusing parameter
    lr: float = 1e-3  # Adam learning rate
    betas: tuple[float, float] = (0.5, 0.999)  # Adam betas
    epochs: int = 5  # training epochs
    batch_size: int = 8  # training batch size
    seed: int = 0  # seeds weights init, data order and synthetic data
    # --- data ---
    class_names: dict[str, str] = field(default_factory=dict)  # folder name -> prompt name overrides

    def __post_init__(self) -> None:
        self.taps = tuple(int(t) for t in self.taps)
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        self.class_names = dict(self.class_names or {})
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        def bad(msg: str) -> None:
            raise ValueError(f"Config: {msg}")

        if self.detail_attention not in DETAIL_ATTENTIONS:
            bad(f"detail_attention={self.detail_attention!r}; allowed: {DETAIL_ATTENTIONS}")
        if self.image_score not in IMAGE_SCORES:
            bad(f"image_score={self.image_score!r}; allowed: {IMAGE_SCORES}")
        if not self.taps or any(t < 1 for t in self.taps) or list(self.taps) != sorted(set(self.taps)):
            bad(f"taps={self.taps}: need distinct, increasing, 1-indexed block numbers")
        if self.image_size <= 0:
            bad(f"image_size={self.image_size} must be positive")
        for name in ("safr_reduction", "k", "gcn_layers", "gcn_hidden", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                bad(f"{name}={getattr(self, name)} must be >= 1")
        if self.k < 2:
            bad(f"k={self.k}: need k >= 2 (each node keeps k-1 neighbours)")
        if self.logit_scale <= 0 or self.lr <= 0 or self.smoothing_sigma < 0:
            bad("logit_scale and lr must be > 0, smoothing_sigma >= 0")

        arch = backbone_arch(self.backbone)
        if arch is None:
            return  # unknown to open_clip here: load_backbone will say so
        patch, depth = arch
        if self.image_size % patch:
            bad(f"image_size={self.image_size} is not a multiple of the patch size {patch} of "
                f"{self.backbone}; e.g. {patch * round(self.image_size / patch)}")
        if self.taps[-1] > depth:
            bad(f"taps={self.taps}: {self.backbone} has {depth} blocks; allowed taps are 1..{depth}")
        if self.bsa_start is not None and not 1 <= self.bsa_start <= depth:
            bad(f"bsa_start={self.bsa_start}: allowed 1..{depth}")
        n = (self.image_size // patch) ** 2
        if self.k >= n:
            bad(f"k={self.k} must be < N={n} patches at image_size={self.image_size}")
        if self.safr_reduction > len(self.taps) * 8:
            pass  # any r works as long as C // r >= 1, checked in SAFR

    @property
    def bsa_first(self) -> int:
        """First block of the V-V stream (only used when detail_attention == "vv")."""
        return self.bsa_start if self.bsa_start is not None else self.taps[0]

    @property
    def grid(self) -> int:
        """Patch grid side G (G*G = N patches)."""
        arch = backbone_arch(self.backbone)
        if arch is None:
            raise ValueError(f"unknown backbone {self.backbone!r}")
        return self.image_size // arch[0]

    # ------------------------------------------------------------------ presets
    @classmethod
    def quick(cls, **overrides: Any) -> "Config":
        """The embedded CPU default: shipped bagclip-mini at 224 px (grid 14), small heads.

        A faithful miniature (contrastively pretrained CLIP, then used zero-shot), never the
        paper's numbers: see docs/bagclip-mini.md.
        """
        base = dict(backbone=MINI_BACKBONE, pretrained=MINI_BACKBONE, image_size=224, taps=(2, 4, 6, 8),
                    k=10, gcn_layers=3, gcn_hidden=64, safr_reduction=8, epochs=3,
                    smoothing_sigma=2.0)
        base.update(overrides)
        return cls(**base)

    @classmethod
    def tiny(cls, **overrides: Any) -> "Config":
        """A seeded random-weight toy (bagclip-tiny, 4 blocks of width 128): fast plumbing tests."""
        base = dict(backbone=TINY_BACKBONE, pretrained=None, image_size=224, taps=(1, 2, 3, 4),
                    k=10, gcn_layers=3, gcn_hidden=64, safr_reduction=8, epochs=3,
                    smoothing_sigma=2.0)
        base.update(overrides)
        return cls(**base)

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["taps"] = list(self.taps)
        d["betas"] = list(self.betas)
        return d

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON (or YAML for .yml/.yaml) atomically."""
        path = Path(path)
        if path.suffix in (".yml", ".yaml"):
            import yaml
            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        else:
            text = json.dumps(self.to_dict(), indent=2)
        atomic_write_text(path, text)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Config":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        text = path.read_text()
        if path.suffix in (".yml", ".yaml"):
            import yaml
            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Config: unknown field(s) {unknown}; allowed: {sorted(known)}")
        return cls(**data)


def backbone_arch(name: str) -> tuple[int, int] | None:
    """(patch size, depth) of an open_clip ViT config, or None if open_clip does not know it."""
    from .backbone import register_tiny  # local import: open_clip is heavy

    register_tiny()
    import open_clip

    mc = open_clip.get_model_config(name)
    if mc is None:
        return None
    v = mc["vision_cfg"]
    layers = v["layers"]
    return int(v["patch_size"]), int(layers if isinstance(layers, int) else sum(layers))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

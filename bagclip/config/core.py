"""`Config`: one dataclass holding every BAG-CLIP setting, with the paper's defaults.

Fields are grouped: the frozen backbone (each changes the cached tokens: `backbone_fields()`),
the heads, scoring, loss and optimisation, data, and last the READINGS: where the paper's
text admits two readings, the switch between ours (the default) and the other, each written
up in docs/decisions.md (`reading_fields()` lists them).
"""
from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError
from ..weights import SHIPPED, record
from .arch import Arch, backbone_arch
from .coerce import coerce
from .io import load_config, parse_overrides, save_config
from .presets import PRESETS
from .validate import validate

# Settings that only change how trained heads are scored, not the weights: a checkpoint's
# Config may differ from its training in these alone (eval / predict, class-name maps).
EVAL_FIELDS = ("smoothing_sigma", "image_score", "class_names")


def _backbone_field(default: Any, reading: bool = False) -> Any:
    """A field that changes what the frozen backbone outputs (see Config.backbone_fields)."""
    return field(default=default, metadata={"backbone": True, "reading": reading})


def _reading(default: Any) -> Any:
    """A switch between two readings of the paper (see Config.reading_fields)."""
    return field(default=default, metadata={"reading": True})


@dataclass
class Config:
    # --- backbone (frozen); every field here changes the cached tokens ---
    backbone: str = _backbone_field("ViT-L-14-336")  # open_clip ViT name, "bagclip-mini" or "bagclip-tiny"
    pretrained: str | None = _backbone_field("openai")  # open_clip tag, "bagclip-mini" (shipped), a file, or None (random)
    backbone_seed: int = _backbone_field(0)  # seeds the backbone's random weights when pretrained is None
    image_size: int = _backbone_field(518)  # square input side in pixels; a multiple of the patch size
    taps: tuple[int, ...] = _backbone_field((6, 12, 18, 24))  # 1-indexed blocks feeding the detail branch
    detail_attention: str = _backbone_field("none")  # "none": the paper's text; "vv": our V-V detail stream
    bsa_start: int | None = _backbone_field(None)  # first 1-indexed block of the "vv" stream; None -> first tap
    feature_dtype: str = _backbone_field("float16")  # precision of the tokens, cached or fresh (they agree)
    backbone_precision: str = _backbone_field("float32")  # "bfloat16": the backbone under autocast (GPU path)
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
    global_adapter: bool = True  # trainable E x E linear on the class token (ours; docs/decisions.md)
    logit_scale: float = 100.0  # tau in softmax(tau * cos); CLIP's scale
    heads_precision: str = "float32"  # "bfloat16": heads trained and run under autocast (GPU path)
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
    # --- READINGS of the paper: default = our reading; the value after ";" = the other one ---
    quick_gelu: bool | None = _backbone_field(None, reading=True)  # QuickGELU; None -> True for OpenAI weights (their training)
    tap_ln_post: bool = _backbone_field(False, reading=True)  # raw residual stream at the taps; True: ln_post on them
    normalize_sentences: bool = _reading(True)  # L2-normalise each sentence embedding before the per-state mean; False: raw mean
    kernel_scale: float = _reading(1.0)  # S_ij = exp(-d2_ij / (kernel_scale sigma_i sigma_j)); 2.0: the Gaussian reading
    graph_input: str = _reading("detail")  # graph on "detail" (post-SAFR F_pre); "taps": on the raw taps
    seg_loss: str = _reading("sum_taps")  # L_SEG per tap map, summed; "mean_taps": averaged; "mean_map": on the mean map
    heads_init: str = _reading("random")  # "clip": JFF starts as CLIP's ln_post + proj on F_pre, F_SAG's share 0,
    # SAFR gates neutral, i.e. the heads start as the training-free scorer

    def __post_init__(self) -> None:
        for name, tp in _field_types().items():
            setattr(self, name, coerce(name, tp, getattr(self, name)))
        validate(self)

    def validate(self) -> None:
        """ConfigError for a setting out of range (bagclip.config.validate)."""
        validate(self)

    # ------------------------------------------------------------------ derived
    @property
    def bsa_first(self) -> int:
        """First block of the V-V stream (only used when detail_attention == "vv")."""
        return self.bsa_start if self.bsa_start is not None else self.taps[0]

    @property
    def arch(self) -> Arch:
        """The backbone's architecture (patch size, depth, width W, embed dim E)."""
        arch = backbone_arch(self.backbone)
        if arch is None:
            raise ConfigError(f"unknown backbone {self.backbone!r}", "backbone")
        return arch

    @property
    def grid(self) -> int:
        """Patch grid side G (G*G = N patches)."""
        return self.image_size // self.arch.patch_size

    @property
    def use_quick_gelu(self) -> bool:
        """quick_gelu, with None resolved: QuickGELU exactly when the weights are OpenAI's."""
        return self.quick_gelu if self.quick_gelu is not None else self.pretrained == "openai"

    @classmethod
    def backbone_fields(cls) -> tuple[str, ...]:
        """The fields that change the backbone's tokens (marked with `_backbone_field`)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("backbone"))

    @classmethod
    def reading_fields(cls) -> tuple[str, ...]:
        """The switches between two readings of the paper (docs/decisions.md has each)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("reading"))

    def backbone_identity(self) -> dict[str, Any]:
        """The backbone fields with defaults resolved: equal identities give equal tokens.

        A local weights file counts by path, size and modification time; the seed counts only
        for random weights; bsa_start only for the "vv" stream.
        """
        ident = {name: getattr(self, name) for name in self.backbone_fields()}
        ident.update(taps=list(self.taps), quick_gelu=self.use_quick_gelu,
                     bsa_start=self.bsa_first if self.detail_attention == "vv" else None)
        weights = self.pretrained
        if weights in SHIPPED:  # new shipped weights -> new key
            ident["pretrained"] = f"{weights}:sha256:{record(weights)['sha256']}"
        elif weights and os.path.isfile(weights):
            st = os.stat(weights)
            ident["pretrained"] = f"file:{Path(weights).resolve()}:{st.st_size}:{int(st.st_mtime)}"
        if weights is not None:
            ident["backbone_seed"] = None
        return ident

    # ------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "Config":
        """A named preset (bagclip.config.presets.PRESETS: quick, tiny, lab, full) with overrides."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {tuple(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @classmethod
    def quick(cls, **overrides: Any) -> "Config":
        """The embedded CPU default: shipped bagclip-mini at 224 px (grid 14), small heads."""
        return cls.preset("quick", **overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> "Config":
        """A seeded random-weight toy (bagclip-tiny, 4 blocks of width 128): fast plumbing tests."""
        return cls.preset("tiny", **overrides)

    # ------------------------------------------------------------------ copies and I/O
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["taps"] = list(self.taps)
        d["betas"] = list(self.betas)
        return d

    def replace(self, **changes: Any) -> "Config":
        """A copy with `changes`, checked like any other source (unknown names refused)."""
        return self.from_dict({**self.to_dict(), **changes})

    def with_overrides(self, pairs: Sequence[str] = (), **changes: Any) -> "Config":
        """This Config with `key=value` strings (`--set`) and keyword changes applied and
        checked; errors name the string or keyword they came from."""
        sources = {k: f"{k}={v!r}" for k, v in changes.items()}
        parsed, parsed_sources = parse_overrides(pairs)
        changes.update(parsed)
        if not changes:
            return self
        try:
            return self.from_dict({**self.to_dict(), **changes})
        except ConfigError as err:
            pair = parsed_sources.get(err.field) if err.field else None  # the string it came from
            where = pair or (sources.get(err.field) if err.field else None)
            raise ConfigError(f"{where}: {err}" if where else str(err), err.field, override=pair) from None

    def check_eval_changes(self, other: "Config") -> "Config":
        """`other` if it differs from this (a checkpoint's training Config) only in EVAL_FIELDS,
        else EvalSettingsError naming what changed."""
        from ..errors import EvalSettingsError

        changed = [f.name for f in dataclasses.fields(self)
                   if f.name not in EVAL_FIELDS and getattr(self, f.name) != getattr(other, f.name)]
        if changed:
            err = EvalSettingsError(
                f"the checkpoint was trained with {', '.join(f'{k}={getattr(self, k)!r}' for k in changed)}"
                f"; a checkpoint's heads cannot change {', '.join(changed)}. At evaluation only "
                f"{', '.join(EVAL_FIELDS)} may change; retrain for the others")
            err.field = changed[0]
            raise err
        return other

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON (or YAML for .yml/.yaml) atomically."""
        return save_config(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, base: "Config | None" = None) -> "Config":
        """A Config from a JSON or YAML file: its settings over `base` (default: the paper's)."""
        return load_config(cls, path, base)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Config: unknown field(s) {unknown}; allowed: {sorted(known)}",
                              unknown[0])
        return cls(**data)


@lru_cache(maxsize=None)
def _field_types() -> dict[str, Any]:
    """Field name -> its resolved type (annotations are strings: `from __future__ import annotations`)."""
    return typing.get_type_hints(Config)

"""One dataclass holding every BAG-CLIP setting, with the paper's defaults.

`Config()` is the paper (ViT-L-14-336 at 518 px, taps 6/12/18/24, K = 15, P = 5, r = 16).
`Config.quick()` is the embedded CPU default: the small seeded `bagclip-tiny` backbone, no
download. Settings are checked on construction, whatever their source (Python, a JSON/YAML file,
`--set key=value`), in one place: `_coerce` turns each value into its field's type (strings
such as "1e-3" from YAML, "no" for a bool; never 1.5 for an int, never NaN or infinity) and
`validate` checks ranges. Every problem is a `ConfigError` naming the setting and what is
allowed; `load` and `with_overrides` add the file or the `--set` it came from.

Importing this module, and creating a Config, never loads torch: the architecture of a
backbone name (patch size, depth, widths) is read from the open_clip model-config JSON files.
Fields marked `_backbone_field` change the frozen backbone's tokens; `Config.backbone_fields()`
lists them for the feature-cache key and for the experiments that share one backbone.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from .weights import SHIPPED, record
from .files import atomic_write_text

DETAIL_ATTENTIONS = ("none", "vv")
IMAGE_SCORES = ("mix", "global", "max")
SEG_LOSSES = ("sum_taps", "mean_taps", "mean_map")
GRAPH_INPUTS = ("detail", "taps")
FEATURE_DTYPES = ("float16", "float32")
HEADS_INITS = ("random", "clip")
PRECISIONS = ("float32", "bfloat16")  # backbone_precision / heads_precision (see bagclip.precision)
TINY_BACKBONE = "bagclip-tiny"  # random weights: plumbing tests only
MINI_BACKBONE = "bagclip-mini"  # pretrained on the kit's synthetic world, shipped as package data
MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
# Settings that only change how trained heads are scored, not the weights: a checkpoint's
# Config may differ from its training in these alone (eval / predict --set, --class-name-map).
EVAL_FIELDS = ("smoothing_sigma", "image_score", "class_names")


MAX_SEED = 2**32 - 1  # issue 19: every seed the kit derives stays within int64

class ConfigError(ValueError):
    """A bad setting: the message names it and says what is allowed. `field` is its name."""

    def __init__(self, msg: str, field: str | None = None):
        super().__init__(msg)
        self.field = field


_TRUE, _FALSE, _NONE = ("true", "yes", "on", "1"), ("false", "no", "off", "0"), ("none", "null", "")


def _as_int(name: str, v: Any) -> int:
    if isinstance(v, str) and re.fullmatch(r"\s*[+-]?\d+\s*", v):
        return int(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    hint = f", e.g. {int(v)}" if isinstance(v, float) and math.isfinite(v) and v == int(v) else ""
    raise ConfigError(f"{name}={v!r} must be a whole number{hint}", name)


def _as_float(name: str, v: Any) -> float:
    x = None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        x = float(v)
    elif isinstance(v, str):
        try:
            x = float(v)  # YAML reads 1e-3 (no dot) as a string
        except ValueError:
            pass
    if x is None:
        raise ConfigError(f"{name}={v!r} is not a number; give a finite number such as 1e-3", name)
    if not math.isfinite(x):
        raise ConfigError(f"{name}={v!r}: NaN and infinity are not allowed; give a finite number", name)
    return x


def _as_bool(name: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE:
        return v.strip().lower() in _TRUE
    raise ConfigError(f"{name}={v!r} must be true or false", name)


def _as_str(name: str, v: Any) -> str:
    if not isinstance(v, str):
        raise ConfigError(f"{name}={v!r} must be a string", name)
    return v


def _as_ints(name: str, v: Any) -> tuple[int, ...]:
    if isinstance(v, str):
        v = [p for p in re.split(r"[\s,\[\]()]+", v) if p]
    if not isinstance(v, (list, tuple)):
        raise ConfigError(f"{name}={v!r} must be a list of whole numbers, e.g. [6, 12, 18, 24]", name)
    return tuple(_as_int(name, x) for x in v)


def _as_betas(name: str, v: Any) -> tuple[float, float]:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise ConfigError(f"{name}={v!r} must be two numbers [b1, b2], e.g. [0.5, 0.999]", name)
    return (_as_float(name, v[0]), _as_float(name, v[1]))


def _as_names(name: str, v: Any) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(a, str) and isinstance(b, str) for a, b in v.items()):
        raise ConfigError(f"{name} must map folder names to prompt names (strings), e.g. "
                          f'{{"pcb1": "printed circuit board"}}; got {v!r}', name)
    return dict(v)


# field annotation (a string: `from __future__ import annotations`) -> coercion
_COERCE = {"int": _as_int, "float": _as_float, "bool": _as_bool, "str": _as_str,
           "tuple[int, ...]": _as_ints, "tuple[float, float]": _as_betas,
           "dict[str, str]": _as_names}


def _coerce(name: str, annotation: str, v: Any) -> Any:
    """v in the type of the field `name` (annotation as written in Config), or ConfigError."""
    base, optional = annotation, annotation.endswith(" | None")
    if optional:
        base = annotation[: -len(" | None")]
        if v is None or (isinstance(v, str) and v.strip().lower() in _NONE):
            return None
    return _COERCE[base](name, v)



def _backbone_field(default: Any) -> Any:
    """A field that changes what the frozen backbone outputs (see Config.backbone_fields)."""
    return field(default=default, metadata={"backbone": True})


@dataclass
class Config:
    # --- backbone (frozen); every field here changes the cached tokens ---
    backbone: str = _backbone_field("ViT-L-14-336")  # open_clip ViT name, "bagclip-mini" or "bagclip-tiny"
    pretrained: str | None = _backbone_field("openai")  # open_clip tag, "bagclip-mini" (shipped), a file, or None (random)
    quick_gelu: bool | None = _backbone_field(None)  # QuickGELU; None -> True for OpenAI weights (their training)
    backbone_seed: int = _backbone_field(0)  # seeds the backbone's random weights when pretrained is None
    image_size: int = _backbone_field(518)  # square input side in pixels; a multiple of the patch size
    taps: tuple[int, ...] = _backbone_field((6, 12, 18, 24))  # 1-indexed blocks feeding the detail branch
    detail_attention: str = _backbone_field("none")  # "none": the paper's text; "vv": our V-V detail stream
    bsa_start: int | None = _backbone_field(None)  # first 1-indexed block of the "vv" stream; None -> first tap
    tap_ln_post: bool = _backbone_field(False)  # ln_post on the taps (default: the raw residual stream)
    feature_dtype: str = _backbone_field("float16")  # precision of the tokens, cached or fresh (they agree)
    backbone_precision: str = _backbone_field("float32")  # "bfloat16": the backbone under autocast (GPU path)
    # --- text prompts (frozen text tower) ---
    normalize_sentences: bool = True  # L2-normalise each sentence embedding before the per-state mean
    # --- heads (trainable) ---
    safr_reduction: int = 16  # SAFR bottleneck ratio r (C -> C/r -> C)
    k: int = 15  # SAG neighbours K: each node keeps K-1 out-edges
    gcn_layers: int = 5  # GCN depth P
    gcn_hidden: int = 384  # GCN width h (W -> h -> ... -> h)
    metric_proj: bool = False  # learnable metric W_phi in the graph kernel (paper's eq., not in its Table 4)
    kernel_scale: float = 1.0  # S_ij = exp(-d2_ij / (kernel_scale sigma_i sigma_j)); 2.0: the other reading
    graph_input: str = "detail"  # the graph is built on "detail" (post-SAFR F_pre) or raw "taps"
    share_sag: bool = False  # one SAG for all taps instead of one per tap
    use_safr: bool = True  # ablation switch (Table 3)
    use_sag: bool = True  # ablation switch (Table 3)
    use_jff: bool = True  # False: project F_SAG alone (our ablation)
    global_adapter: bool = True  # trainable E x E linear on the class token (ours; docs/decisions.md)
    heads_init: str = "random"  # "clip": JFF starts as CLIP's ln_post + proj on F_pre, F_SAG's share 0,
    # SAFR gates neutral, i.e. the heads start as the training-free scorer (docs/decisions.md)
    logit_scale: float = 100.0  # tau in softmax(tau * cos); CLIP's scale
    heads_precision: str = "float32"  # "bfloat16": heads trained and run under autocast (GPU path)
    # --- scoring ---
    smoothing_sigma: float = 4.0  # Gaussian filter on anomaly maps at evaluation (pixels); 0 disables
    image_score: str = "mix"  # "mix": (p_img + max map) / 2; "global": p_img; "max": max map
    # --- loss and optimisation ---
    loss_lambda: float = 1.0  # L = L_CLS + lambda * L_SEG
    seg_loss: str = "sum_taps"  # L_SEG per tap map, summed; "mean_taps": averaged; "mean_map": on the mean map
    focal_gamma: float = 2.0  # focal loss focusing parameter
    lr: float = 1e-3  # Adam learning rate
    betas: tuple[float, float] = (0.5, 0.999)  # Adam betas
    epochs: int = 5  # training epochs
    batch_size: int = 8  # training batch size
    seed: int = 0  # seeds weights init, data order and synthetic data
    # --- data ---
    class_names: dict[str, str] = field(default_factory=dict)  # folder name -> prompt name overrides

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, f.type, getattr(self, f.name)))
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        def bad(msg: str) -> None:
            name = re.match(r"\w+", msg)
            raise ConfigError(f"Config: {msg}", name.group(0) if name else None)

        if self.detail_attention not in DETAIL_ATTENTIONS:
            bad(f"detail_attention={self.detail_attention!r}; allowed: {DETAIL_ATTENTIONS}")
        for name, allowed in (("image_score", IMAGE_SCORES), ("seg_loss", SEG_LOSSES),
                              ("graph_input", GRAPH_INPUTS), ("feature_dtype", FEATURE_DTYPES),
                              ("backbone_precision", PRECISIONS), ("heads_precision", PRECISIONS),
                              ("heads_init", HEADS_INITS)):
            if getattr(self, name) not in allowed:
                bad(f"{name}={getattr(self, name)!r}; allowed: {allowed}")
        if not self.taps or any(t < 1 for t in self.taps) or list(self.taps) != sorted(set(self.taps)):
            bad(f"taps={self.taps}: need distinct, increasing, 1-indexed block numbers")
        if self.image_size <= 0:
            bad(f"image_size={self.image_size} must be positive")
        for name in ("safr_reduction", "k", "gcn_layers", "gcn_hidden", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                bad(f"{name}={getattr(self, name)} must be >= 1")
        if self.k < 2:
            bad(f"k={self.k}: need k >= 2 (each node keeps k-1 neighbours)")
        for name in ("logit_scale", "lr", "kernel_scale"):
            if getattr(self, name) <= 0:
                bad(f"{name}={getattr(self, name)} must be > 0")
        for name in ("smoothing_sigma", "loss_lambda", "focal_gamma", "seed", "backbone_seed"):
            if getattr(self, name) < 0:
                bad(f"{name}={getattr(self, name)} must be >= 0")
        for name in ("seed", "backbone_seed"):  # issue 19: torch seeds are 64-bit, and train
            if getattr(self, name) > MAX_SEED:  # derives epoch seeds as seed * 100_003 + epoch
                bad(f"{name}={getattr(self, name)} is too large; give a whole number up to {MAX_SEED}")
        if not all(0 <= b < 1 for b in self.betas):
            bad(f"betas={list(self.betas)}: Adam needs both in [0, 1), e.g. [0.5, 0.999]")

        arch = backbone_arch(self.backbone)
        if arch is None:
            return  # unknown to open_clip here: load_backbone will say so
        patch, depth = arch.patch_size, arch.depth
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

    @property
    def bsa_first(self) -> int:
        """First block of the V-V stream (only used when detail_attention == "vv")."""
        return self.bsa_start if self.bsa_start is not None else self.taps[0]

    @property
    def arch(self) -> "Arch":
        """The backbone's architecture (patch size, depth, width W, embed dim E)."""
        arch = backbone_arch(self.backbone)
        if arch is None:
            raise ValueError(f"unknown backbone {self.backbone!r}")
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
        """A copy with `changes`, checked like any other source (unknown names refused)."""
        return self.from_dict({**self.to_dict(), **changes})

    def with_overrides(self, pairs: Sequence[str] = (), **changes: Any) -> "Config":
        """This Config with `--set key=value` strings and keyword changes applied and checked.

        A value is read as JSON when it parses (numbers, lists, true/false), else as a string;
        each field's coercion does the rest. Errors name the --set they came from.
        """
        sources = {k: f"{k}={v!r}" for k, v in changes.items()}
        for kv in pairs:
            key, sep, raw = kv.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"--set expects key=value (e.g. --set lr=1e-4), got {kv!r}")
            try:
                changes[key] = json.loads(raw)
            except json.JSONDecodeError:
                changes[key] = raw
            sources[key] = f"--set {kv}"
        if not changes:
            return self
        try:
            return self.from_dict({**self.to_dict(), **changes})
        except ConfigError as err:
            where = sources.get(err.field) if err.field else None
            raise ConfigError(f"{where}: {err}" if where else str(err), err.field) from None

    def check_eval_changes(self, other: "Config") -> "Config":
        """`other` if it differs from this (a checkpoint's training Config) only in EVAL_FIELDS."""
        changed = [f.name for f in dataclasses.fields(self)
                   if f.name not in EVAL_FIELDS and getattr(self, f.name) != getattr(other, f.name)]
        if changed:
            raise ConfigError(f"the checkpoint was trained with {', '.join(f'{k}={getattr(self, k)!r}' for k in changed)}"
                              f"; a checkpoint's heads cannot change {', '.join(changed)}. At evaluation "
                              f"only {', '.join(EVAL_FIELDS)} may change (--set, --class-name-map); "
                              f"retrain for the others", changed[0])
        return other


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
    def load(cls, path: str | os.PathLike, base: "Config | None" = None) -> "Config":
        """A Config from a JSON or YAML file: its settings over `base` (default: the paper's).

        Every problem (missing, unreadable, bad syntax, bad setting) is a ConfigError or
        FileNotFoundError naming the file.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        yaml_file = path.suffix.lower() in (".yml", ".yaml")
        try:
            text = path.read_text(encoding="utf-8")
            if yaml_file:
                import yaml
                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except (OSError, UnicodeDecodeError, ValueError) as err:  # JSONDecodeError is a ValueError
            kind = "YAML" if yaml_file else "JSON"
            raise ConfigError(f"config file {path}: not valid {kind} "
                              f"({' '.join(str(err).split())}); fix the file or write a new one with "
                              f"Config.save") from None
        except Exception as err:  # yaml.YAMLError
            raise ConfigError(f"config file {path}: not valid YAML ({' '.join(str(err).split())}); "
                              f"fix the file") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path}: expected a mapping of settings "
                              f"(e.g. {{\"k\": 15}}), got {type(data).__name__}")
        try:
            return cls.from_dict({**(base or cls()).to_dict(), **data})
        except ConfigError as err:
            raise ConfigError(f"config file {path}: {err}", err.field) from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Config: unknown field(s) {unknown}; allowed: {sorted(known)}",
                              unknown[0])
        return cls(**data)


class Arch(NamedTuple):
    """What the kit needs to know of a ViT before building it."""
    patch_size: int
    depth: int  # transformer blocks
    width: int  # token width W
    embed_dim: int  # joint image-text space E


def _model_config(name: str) -> dict | None:
    """An open_clip model config: the kit's own (model_configs/), then open_clip's registry if it
    is already imported (it may hold user additions), else open_clip's JSON files unimported."""
    own = MODEL_CONFIG_DIR / f"{name}.json"
    if own.is_file():
        return json.loads(own.read_text())
    if "open_clip" in sys.modules:
        return sys.modules["open_clip"].get_model_config(name)
    spec = importlib.util.find_spec("open_clip")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for path in Path(folder, "model_configs").rglob(f"{name}.json"):
            return json.loads(path.read_text())
    return None


def backbone_arch(name: str) -> Arch | None:
    """The architecture of an open_clip ViT name, or None if open_clip does not know it."""
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

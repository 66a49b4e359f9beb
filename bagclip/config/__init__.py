"""Every BAG-CLIP setting in one `Config`, with the paper's defaults; no torch.

    core.py      the dataclass, grouped; the paper-reading switches last, marked
    presets.py   ONE table of named settings: quick (CLI --quick), tiny (tests), lab, full
    coerce.py    any source's values into each field's type (dispatch on the resolved type)
    validate.py  ranges, choices, and what the backbone's architecture allows
    io.py        JSON / YAML files and `key=value` overrides
    arch.py      a ViT's patch size / depth / widths from open_clip's JSON, cached

`Config()` is the paper (ViT-L-14-336 at 518 px, taps 6/12/18/24, K = 15, P = 5, r = 16);
`Config.quick()` the embedded CPU default (the shipped bagclip-mini, no download). Settings are
checked on construction, whatever their source; every problem is a `ConfigError` naming the
setting and what is allowed, and `load` / `with_overrides` add the file or string it came from.
Importing this package, and creating a Config, never loads torch.
"""
from ..errors import ConfigError
from .arch import MODEL_CONFIG_DIR, Arch, backbone_arch, register_model_configs
from .core import EVAL_FIELDS, Config
from .presets import MINI_BACKBONE, PRESETS, TINY_BACKBONE
from .validate import (DETAIL_ATTENTIONS, FEATURE_DTYPES, GRAPH_INPUTS, HEADS_INITS, IMAGE_SCORES,
                       MAX_SEED, PRECISIONS, SEG_LOSSES)

__all__ = ["Config", "ConfigError", "EVAL_FIELDS", "Arch", "backbone_arch", "register_model_configs",
           "MODEL_CONFIG_DIR", "MINI_BACKBONE", "TINY_BACKBONE", "PRESETS", "DETAIL_ATTENTIONS",
           "FEATURE_DTYPES", "GRAPH_INPUTS", "HEADS_INITS", "IMAGE_SCORES", "MAX_SEED", "PRECISIONS", "SEG_LOSSES"]

"""The named settings, ONE table: the CLI's --quick, the tests' tiny backbone, the lessons'
modes. A preset is a set of Config changes over the paper's defaults (`Config()`).

    quick   the embedded CPU default: shipped bagclip-mini at 224 px (grid 14), small heads. A
            faithful miniature (contrastively pretrained CLIP, then used zero-shot), never the
            paper's numbers: see docs/bagclip-mini.md
    tiny    a seeded random-weight toy (bagclip-tiny, 4 blocks of width 128): plumbing tests
    lab     a real small open_clip model (ViT-B-16, OpenAI weights, 224 px; downloads once)
    full    the paper (ViT-L-14-336 at 518 px, taps 6/12/18/24, K = 15, P = 5, r = 16)
"""
from __future__ import annotations

TINY_BACKBONE = "bagclip-tiny"  # random weights: plumbing tests only
MINI_BACKBONE = "bagclip-mini"  # pretrained on the kit's synthetic world, shipped as package data

_SMALL_HEADS = dict(k=10, gcn_layers=3, gcn_hidden=64, safr_reduction=8, epochs=3, smoothing_sigma=2.0)

PRESETS: dict[str, dict] = {
    "quick": dict(backbone=MINI_BACKBONE, pretrained=MINI_BACKBONE, image_size=224, taps=(2, 4, 6, 8),
                  **_SMALL_HEADS),
    "tiny": dict(backbone=TINY_BACKBONE, pretrained=None, image_size=224, taps=(1, 2, 3, 4), **_SMALL_HEADS),
    "lab": dict(backbone="ViT-B-16", pretrained="openai", image_size=224, taps=(3, 6, 9, 12),
                **{**_SMALL_HEADS, "gcn_hidden": 128, "safr_reduction": 16}),
    "full": {},
}

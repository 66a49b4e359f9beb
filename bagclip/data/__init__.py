"""Datasets for zero-shot anomaly detection: one `load_dataset` for every public layout.

    samples = load_dataset("mvtec", "/data/mvtec_ad", "test")       # list[Sample]
    x = load_image(samples[0].image_path, 518)                      # (3, 518, 518) float32
    m = load_mask(samples[0].mask_path, 518)                        # (518, 518) bool

Layouts: mvtec mpdd btad miad insplad synth (MVTec-like), visa (split csv), folder (private
sets), meta (the peers' meta.json). The zero-shot protocol (train on auxiliary sets, evaluate
on others) is in `bagclip.data.protocol`. See docs/data.md.
"""
from __future__ import annotations

from .datasets import DATASETS, load_dataset
from .io import (CLIP_MEAN, CLIP_STD, DataError, Sample, denormalize, load_image, load_mask,
                 read_rgb)
from .meta import write_meta
from ..prompts import PROMPT_NAMES, prompt_name
from .protocol import auxiliary_samples, check_disjoint, protocol_data

__all__ = ["DataError", "Sample", "load_dataset", "load_image", "load_mask", "denormalize",
           "read_rgb", "prompt_name", "PROMPT_NAMES", "auxiliary_samples", "check_disjoint",
           "protocol_data", "write_meta", "DATASETS", "CLIP_MEAN", "CLIP_STD"]

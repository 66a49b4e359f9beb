"""Datasets for zero-shot anomaly detection: one `load_dataset` for every public layout.

    samples = load_dataset("mvtec", "/data/mvtec_ad", "test")       # list[Sample]
    x = load_image(samples[0].image_path, 518)                      # (3, 518, 518) float32
    m = load_mask(samples[0].mask_path, 518)                        # (518, 518) bool

Layouts: mvtec mpdd btad miad insplad synth (MVTec-like), visa (split csv), folder (private
sets), meta (the peers' meta.json). See docs/data.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .io import (CLIP_MEAN, CLIP_STD, DataError, Sample, denormalize, load_image, load_mask,
                 read_rgb)
from .layouts import load_folder, load_mvtec_like, load_visa
from .meta import load_meta, write_meta
from .names import PROMPT_NAMES, auxiliary_samples, check_disjoint, prompt_name

__all__ = ["DataError", "Sample", "load_dataset", "load_image", "load_mask", "denormalize",
           "read_rgb", "prompt_name", "PROMPT_NAMES", "auxiliary_samples", "check_disjoint",
           "write_meta", "DATASETS", "CLIP_MEAN", "CLIP_STD"]


def _mvtec_variant(dataset: str, **fixed) -> Callable:
    def load(root, split="test", classes=None, image_level=False, skip_bad=False, **kw):
        return load_mvtec_like(root, split, classes, image_level, skip_bad, dataset=dataset,
                               **{**fixed, **kw})
    return load


def _synth(root, split="test", classes=None, image_level=False, skip_bad=False, **kw):
    from .synth import load_synth

    return load_synth(root, split, classes, image_level, skip_bad, **kw)


DATASETS: dict[str, Callable] = {
    "mvtec": _mvtec_variant("mvtec"),
    "mpdd": _mvtec_variant("mpdd"),
    "btad": _mvtec_variant("btad", good="ok"),
    "miad": _mvtec_variant("miad"),
    "insplad": _mvtec_variant("insplad"),
    "visa": load_visa,
    "folder": load_folder,
    "meta": load_meta,
    "synth": _synth,
}
_ALIASES = {"mvtec_ad": "mvtec", "mvtecad": "mvtec", "mvtec-ad": "mvtec", "eped": "folder"}


def load_dataset(name: str, root, split: str = "test", classes=None, image_level: bool = False,
                 skip_bad: bool = False, **kw) -> list[Sample]:
    """Every image of `split` in the dataset `name` at `root`, as a list of `Sample`.

    name: mvtec visa mpdd btad miad insplad folder meta synth. classes: one name or a list
    of folder class names to keep. image_level: allow anomalous images without a mask (their
    mask_path is None; pixel metrics then skip them). skip_bad: skip unreadable files with a
    warning instead of raising. Extra keywords go to the layout's loader (e.g. folder's
    normal=/abnormal=/masks=, meta's meta=, verify=True to decode every file while loading).
    Raises DataError naming the files or folders at fault and what to do.
    """
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[key](Path(root).expanduser(), split, classes, image_level, skip_bad, **kw)

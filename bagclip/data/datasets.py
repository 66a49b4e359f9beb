"""`load_dataset`: one entry point for every layout, by name (see bagclip.data)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .io import DataError, Sample
from .layouts import load_folder, load_mvtec_like, load_visa
from .meta import load_meta


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

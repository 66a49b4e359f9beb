"""Class names in prompts, and the auxiliary-training convention of zero-shot anomaly detection.

`prompt_name("pcb1") == "printed circuit board"`: dataset folder names are mapped to words CLIP
knows; anything not in the table gets underscores and hyphens turned into spaces.
"""
from __future__ import annotations

from typing import Iterable, Mapping

from .io import DataError, Sample

PROMPT_NAMES: dict[str, str] = {
    # MVTec AD (other folder names are plain words already)
    "metal_nut": "metal nut",
    # VisA
    **{f"pcb{i}": "printed circuit board" for i in range(1, 5)},
    "macaroni1": "macaroni", "macaroni2": "macaroni",
    "pipe_fryum": "pipe fryum", "chewinggum": "chewing gum",
    # MPDD
    "bracket_black": "black bracket", "bracket_brown": "brown bracket",
    "bracket_white": "white bracket", "metal_plate": "metal plate",
    # BTAD: the archive only numbers its products. Our reading of the images, in line with
    # Bayes-PFL's names (metal1, wood, metal2); override with Config.class_names if you disagree.
    "01": "metal plate", "02": "wooden board", "03": "metal part",
    # MIAD (7 outdoor categories)
    "catenary_dropper": "catenary dropper", "electrical_insulator": "electrical insulator",
    "metal_welding": "metal welding", "nut_and_bolt": "nut and bolt",
    "photovoltaic_module": "photovoltaic module", "wind_turbine": "wind turbine",
    "witness_mark": "witness mark",
    # InsPLAD-fault (power-line components; hyphenated folder names)
    "glass-insulator": "glass insulator", "lightning-rod-suspension": "lightning rod suspension",
    "polymer-insulator-upper-shackle": "polymer insulator shackle", "vari-grip": "cable grip",
    "yoke-suspension": "yoke suspension",
    # synthetic benchmark
    "brushed_metal": "brushed metal", "circuit_board": "circuit board",
}


def prompt_name(class_name: str, overrides: Mapping[str, str] | None = None) -> str:
    """Folder class name -> the object name used in text prompts.

    Order: `overrides` (e.g. Config.class_names), then PROMPT_NAMES, then the folder name with
    `_` and `-` turned into spaces.
    """
    if overrides and class_name in overrides:
        return overrides[class_name]
    if class_name in PROMPT_NAMES:
        return PROMPT_NAMES[class_name]
    return " ".join(class_name.replace("_", " ").replace("-", " ").split())


def auxiliary_samples(roots: Mapping[str, str], split: str = "test", **kw) -> list[Sample]:
    """The auxiliary TRAINING set of zero-shot anomaly detection, e.g.
    `auxiliary_samples({"mvtec": "/data/mvtec_ad", "visa": "/data/visa"})`.

    Yes, the *test* split. Zero-shot methods (APRIL-GAN, AnomalyCLIP, AdaCLIP, BAG-CLIP) never
    train on the target dataset; they learn "what an anomaly looks like" on another dataset,
    and only the test splits of MVTec AD and VisA contain anomalies with masks (their train
    splits are normal images only). The field's convention: train on MVTec AD test + VisA
    test, evaluate on other datasets; to report MVTec AD itself, train on VisA test only (and
    vice versa). Use `check_disjoint` to make sure no class is shared. Extra keywords go to
    `load_dataset` (e.g. classes=..., skip_bad=True).
    """
    from . import load_dataset

    out: list[Sample] = []
    for name, root in roots.items():
        out += load_dataset(name, root, split, **kw)
    return out


def check_disjoint(aux: Iterable[Sample], target: Iterable[Sample],
                   overrides: Mapping[str, str] | None = None) -> None:
    """Raise DataError if training and evaluation share an object class (after prompt-name
    mapping, so pcb1 in training and pcb2 in evaluation count as the same class)."""
    def names(samples):
        out: dict[str, set[str]] = {}
        for s in samples:
            out.setdefault(prompt_name(s.class_name, overrides), set()).add(s.class_name)
        return out

    a, t = names(aux), names(target)
    shared = sorted(set(a) & set(t))
    if shared:
        detail = "; ".join(f"{n!r} (aux {sorted(a[n])}, target {sorted(t[n])})" for n in shared)
        raise DataError(f"auxiliary and target sets share class(es): {detail}. A zero-shot "
                        f"evaluation must not train on the classes it tests: drop them from "
                        f"one side (e.g. train on VisA only to evaluate on MVTec AD)")

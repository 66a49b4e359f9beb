"""The zero-shot protocol's data: train on auxiliary datasets, evaluate on others.

The field's convention (APRIL-GAN, AnomalyCLIP, AdaCLIP, BAG-CLIP): the heads train on the
*test* splits of MVTec AD and VisA (the only splits with anomalies and masks) and are evaluated
on datasets whose classes they never saw. `protocol_data` serves that protocol from
$BAGCLIP_DATA (full mode) or from the synthetic benchmark (quick mode).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

from .datasets import load_dataset
from .io import DataError, Sample
from ..prompts import prompt_name


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


# Full mode: folder names expected under BAGCLIP_DATA (or data_root) for the paper's protocol.
PAPER_AUX = {"mvtec": "mvtec_ad", "visa": "visa"}
PAPER_TARGETS = {"mpdd": "mpdd", "btad": "btad", "miad": "miad", "insplad": "insplad", "folder": "eped"}


def protocol_data(full: bool = False, data_root=None, image_size: int = 224, synth_root=None):
    """(aux samples, {target name: samples}): the data of every experiment.

    Quick: the synthetic auxiliary / target groups at image_size (from synth_root if given,
    else the generated-once tree of `ensure_synth`). Full: the paper's protocol
    from `data_root` (default $BAGCLIP_DATA) holding mvtec_ad/ and visa/ (trained on, test
    splits) and any of mpdd/ btad/ miad/ insplad/ eped/ (evaluated); EPED-like private sets use
    the folder layout. Raises a DataError naming what is missing.
    """
    from .synth import AUX_CLASSES, TARGET_CLASSES, ensure_synth

    if not full:
        root = Path(synth_root) if synth_root else ensure_synth(size=image_size)
        return (load_dataset("synth", root, "test", classes=AUX_CLASSES),
                {"synth-target": load_dataset("synth", root, "test", classes=TARGET_CLASSES)})
    raw = str(data_root or os.environ.get("BAGCLIP_DATA", ""))
    base = Path(raw).expanduser()
    if not raw or not base.is_dir():
        raise DataError(f"full mode needs the datasets: set BAGCLIP_DATA to a folder holding "
                        f"{', '.join(PAPER_AUX.values())} and targets among "
                        f"{', '.join(PAPER_TARGETS.values())} (got {raw!r})")
    missing = [d for d in PAPER_AUX.values() if not (base / d).is_dir()]
    if missing:
        raise DataError(f"{base}: auxiliary datasets missing: {missing}")
    aux = auxiliary_samples({k: base / d for k, d in PAPER_AUX.items()})
    targets = {d.upper(): load_dataset(k, base / d, "test", image_level=(k == "insplad"))
               for k, d in PAPER_TARGETS.items() if (base / d).is_dir()}
    if not targets:
        raise DataError(f"{base}: no target dataset found; expected any of {list(PAPER_TARGETS.values())}")
    return aux, targets

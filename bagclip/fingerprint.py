"""What a result was computed from (issue 19, rule 7): fingerprints of inputs, for run keys and
run records, and the refusals of repeated names and seeds.

Standalone so that issue 18's `runs.py` can call them; not yet wired into the run keys (see the
report of issue 19): `run_key` should hash `inputs_fingerprint(aux, targets, backbone)` beside
the Config, `finished_run` compare it with the run's record, `train(resume=True)` refuse a
run whose record holds another.
No torch at import.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from typing import Iterable, Mapping, Sequence


def _stat(path) -> list:
    """[size, mtime_ns] of a file, or ["missing"]: a changed, replaced or touched file changes it."""
    try:
        st = os.stat(path)
    except OSError:
        return ["missing"]
    return [st.st_size, st.st_mtime_ns]


def samples_fingerprint(samples: Iterable, contents: bool = False) -> str:
    """SHA-256 (16 hex) of a dataset listing: every sample's image and mask path, class, defect
    type and label, and each file's size and mtime (`contents=True`: each file's SHA-256 instead,
    slower, for data copied to another machine). Order-independent: a listing, not a batch."""
    rows = []
    for s in samples:
        files = [p for p in (s.image_path, s.mask_path) if p]
        ident = [_digest_file(p) if contents else _stat(p) for p in files]
        rows.append([str(s.image_path), str(s.mask_path or ""), s.class_name, s.defect_type,
                     int(s.label), ident])
    text = json.dumps(sorted(rows), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _digest_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def inputs_fingerprint(aux: Sequence, targets: Mapping[str, Sequence], backbone=None) -> dict:
    """{aux, targets: {name: fp}, backbone}: what a run's key and record should hold beside its
    Config, so that reuse with other data or other weights recomputes (or refuses)."""
    out = {"aux": samples_fingerprint(aux),
           "targets": {name: samples_fingerprint(t) for name, t in sorted(targets.items())}}
    if backbone is not None:
        ident = backbone.identity() if hasattr(backbone, "identity") else backbone
        out["backbone"] = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    return out


def check_same_inputs(recorded: Mapping | None, current: Mapping, where: str) -> None:
    """ValueError naming what differs when a run's recorded fingerprint is not `current`'s
    (None: a run from before fingerprints, accepted)."""
    if recorded is None or dict(recorded) == dict(current):
        return
    diff = [k for k in sorted(set(recorded) | set(current)) if recorded.get(k) != current.get(k)]
    raise ValueError(f"{where} was made from other inputs ({', '.join(diff)} differ): a run is "
                     f"reused or resumed only with the data and weights it was made from; use a "
                     f"new folder, or delete that run to recompute it")


def check_unique_names(specs: Sequence[str], what: str = "dataset") -> None:
    """ValueError when two `name=root` specs share a name (the second would silently replace
    the first: the issue's `--dataset folder=A --dataset folder=B` trained on B only)."""
    names = [s.split("=", 1)[0].strip().lower() for s in specs]
    twice = sorted(n for n, c in Counter(names).items() if c > 1)
    if twice:
        raise ValueError(f"{what} name(s) given twice: {', '.join(twice)}; the second would replace "
                         f"the first. Give each once: put both sets under one root, or run them "
                         f"separately")


def check_unique_values(values: Sequence, what: str) -> None:
    """ValueError when a list of seeds or swept values repeats one (two copies of one run)."""
    twice = sorted({repr(v) for v, c in Counter(json.dumps(v, sort_keys=True) for v in values).items()
                    if c > 1})
    if twice:
        raise ValueError(f"{what} repeats {', '.join(twice)}; give each value once")


def check_zero_shot(aux: Sequence, targets: Mapping[str, Sequence], overrides=None) -> None:
    """Every target set disjoint from training: by class (`data.check_disjoint`) and by file (the
    same images under other class names, e.g. `--train mvtec=D --target folder=D/bottle`)."""
    from .data import check_disjoint
    from .data.io import DataError

    train_files = {os.path.realpath(s.image_path) for s in aux}
    for name, t in targets.items():
        check_disjoint(aux, t, overrides)
        shared = [str(s.image_path) for s in t if os.path.realpath(s.image_path) in train_files]
        if shared:
            raise DataError(f"target {name} shares {len(shared)} image(s) with the training set "
                            f"({', '.join(shared[:3])}{' ...' if len(shared) > 3 else ''}): a "
                            f"zero-shot evaluation must not test on its training images")

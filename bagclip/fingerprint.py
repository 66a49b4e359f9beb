"""What a result was computed from (issue 19, rule 7): fingerprints of inputs, for run keys and
run records, and the refusals of repeated names and seeds and of non-disjoint sets.

Wired in: `runs.run_key` hashes `inputs_fingerprint(aux, targets)` beside the Config (other data
-> another run); a run's metrics.json records it and `runs.finished_run` reads a run back only
with the same; `train` records `train_inputs` (training listing, backbone, weights SHA-256) in
state.pt and the heads' metadata, a resume with others is refused (`InputsChangedError`) and
`checkpoint.load_heads` refuses heads whose weights file was replaced (`WeightsChangedError`).
Cheap: a listing is fingerprinted by each file's size and mtime (os.stat), no file is read.
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
        mask = os.path.abspath(s.mask_path) if s.mask_path else ""
        rows.append([os.path.abspath(s.image_path), mask, s.class_name, s.defect_type, int(s.label), ident])
    text = json.dumps(sorted(rows), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _digest_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def backbone_fingerprint(backbone) -> str:
    """SHA-256 (16 hex) of a backbone's identity (`Backbone.identity()`, or a plain dict); a
    weights file counts by the SHA-256 of its bytes, not by its path and date (moved or touched
    weights are the same weights; replaced ones are not)."""
    ident = dict(backbone.identity() if hasattr(backbone, "identity") else backbone)
    if ident.get("pretrained_sha256") and str(ident.get("pretrained", "")).startswith("file:"):
        ident["pretrained"] = "file"
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def inputs_fingerprint(aux: Sequence, targets: Mapping[str, Sequence], backbone=None) -> dict:
    """{aux, targets: {name: fp}[, backbone]}: what a run's key and record hold beside its
    Config, so that reuse with other data or other weights recomputes (or refuses)."""
    out = {"aux": samples_fingerprint(aux),
           "targets": {name: samples_fingerprint(t) for name, t in sorted(targets.items())}}
    if backbone is not None:
        out["backbone"] = backbone_fingerprint(backbone)
    return out


def train_inputs(samples: Sequence, backbone, aux: str | None = None) -> dict:
    """What trained heads were computed from: {aux (the training listing's fingerprint, or
    `aux` given by the caller, e.g. adapt's content record), backbone, weights_sha256}."""
    return {"aux": aux or samples_fingerprint(samples), "backbone": backbone_fingerprint(backbone),
            "weights_sha256": getattr(backbone, "weights_sha256", None)}


def check_same_inputs(recorded: Mapping | None, current: Mapping, where: str, path=None) -> None:
    """InputsChangedError naming what differs when a run's recorded fingerprint is not
    `current`'s (None: a run from before fingerprints, accepted)."""
    from .errors import InputsChangedError

    if recorded is None or dict(recorded) == dict(current):
        return
    diff = [k for k in sorted(set(recorded) | set(current)) if recorded.get(k) != current.get(k)]
    raise InputsChangedError(f"{where} was made from other inputs ({', '.join(diff)} differ): a "
                             f"run is reused or resumed only with the data and weights it was made "
                             f"from; use a new folder, or delete that run to recompute it", path)


def check_unique_names(specs: Sequence[str], what: str = "dataset") -> None:
    """ListError when two `name=root` specs share a name (the second would silently replace
    the first: the issue's `--dataset folder=A --dataset folder=B` trained on B only)."""
    from .errors import ListError

    names = [s.split("=", 1)[0].strip().lower() for s in specs]
    twice = sorted(n for n, c in Counter(names).items() if c > 1)
    if twice:
        raise ListError(f"{what} name(s) given twice: {', '.join(twice)}; the second would replace "
                        f"the first. Give each once: put both sets under one root, or run them "
                        f"separately", setting=what)


def check_unique_values(values: Sequence, what: str, setting: str | None = None) -> None:
    """ListError when a list of seeds or swept values repeats one (two copies of one run);
    `setting` (default `what`) names the list for the command line's hint."""
    from .errors import ListError

    counts = Counter(json.dumps(v, sort_keys=True) for v in values)
    twice = sorted(k for k, c in counts.items() if c > 1)
    if twice:
        raise ListError(f"{what}: {', '.join(twice)} given more than once; give each value once "
                        f"(a repeated value would run, and count, the same run twice)",
                        setting=setting or what)


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

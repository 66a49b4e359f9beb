"""From scores to decisions with normal images only: the driver of the conformal rule
(bagclip.conformal) that scores a class's normal images with a backbone and heads, and the
calibration file, per class, stored beside the checkpoint or in a folder of its own.

    cal = calibrate("good_parts/", "metal plate", checkpoint="runs/paper", fpr=0.05)
    save_calibration(cal, calibration_path("runs/paper", "metal plate"))
    cal.is_anomalous(score)   # score > cal.image_threshold
    cal.tail(score)           # share of the class's normal images scoring at least this
    cal.normalise(map)        # map / cal.pixel_threshold: 1.0 = as high as the top pixel_fpr of normal pixels

The rule, its guarantee and the rates that check it are bagclip.conformal's (every name of it
is importable from here too). Nothing is learned from labels or masks: this works for a class
the heads never saw. A file is used only for the exact class name, scorer and backbone weights
it records (`load_calibration`), and writing one never replaces a file that is not an earlier
calibration of the same class (`save_calibration`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import conformal
from .conformal import *  # noqa: F401,F403  the rule, re-exported: `from bagclip import calibrate as C`
from .conformal import Calibration, calibration_from_record, check_rate, order_statistic, thresholds
from .errors import CalibrationError, CalibrationFileError, StaleCalibrationError

__all__ = [*conformal.__all__, "CalibrationFileError", "StaleCalibrationError", "calibrate",
           "calibrate_pooled", "scorer_identity", "calibration_name", "calibration_path",
           "find_calibration", "resolve_calibration", "file_state", "save_calibration", "load_calibration"]

log = logging.getLogger(__name__)
_UNSET = object()  # load_calibration: no weights given, nothing to check them against


def scorer_identity(cfg, checkpoint: str | os.PathLike | None = None) -> dict:
    """What makes the scores: the heads file's SHA-256 (or the training-free scorer), the
    backbone identity and the settings that change scores. Equal identities give equal scores."""
    from .cache import _file_digest  # the cache's own file hash
    from .checkpoint import HEADS

    ident = {"backbone": cfg.backbone_identity(), "image_size": cfg.image_size,
             "smoothing_sigma": cfg.smoothing_sigma, "image_score": cfg.image_score,
             "class_names": dict(sorted(cfg.class_names.items()))}
    if checkpoint is None:
        ident.update(kind="zeroshot", logit_scale=cfg.logit_scale,
                     detail_attention=cfg.detail_attention)
    else:
        p = Path(checkpoint)
        ident.update(kind="heads", heads_sha256=_file_digest(p / HEADS if p.is_dir() else p))
    return json.loads(json.dumps(ident))  # JSON-normal form (tuples -> lists) for comparison


def calibrate(images, class_name: str, fpr: float = 0.05, pixel_fpr: float = 0.01,
              checkpoint: str | os.PathLike | None = None, cfg=None, backbone=None,
              device=None, batch_size: int = 16) -> Calibration:
    """Calibrate a scorer on normal images of one class (a folder, a list of paths).

    checkpoint: trained heads (a run folder); None: the training-free scorer `ZeroShot` on
    cfg's backbone (default Config.quick()). Maps are taken at the model's input size.
    Refuses (CalibrationError) before any scoring when there are too few images for fpr.
    """
    return calibrate_pooled({class_name: images}, class_name, fpr, pixel_fpr, checkpoint, cfg, backbone,
                            device, batch_size, prefix_names=False)


def calibrate_pooled(groups: dict, name: str, fpr: float = 0.05, pixel_fpr: float = 0.01,
                     checkpoint: str | os.PathLike | None = None, cfg=None, backbone=None, device=None,
                     batch_size: int = 16, note: str = "", prefix_names: bool = True) -> Calibration:
    """One calibration of the normal images of several classes, pooled: groups is {class name:
    images}; each class's images are scored with its own class name, and the rule is applied to
    all scores together. `name` becomes the calibration's class_name (e.g. "generic"); image
    names are "<class>/<file>" (prefix_names). calibrate() is the one-class case."""
    from .cache import _file_digest
    from .data.io import scorable_hw
    from .inference import _collect, scorer

    check_rate(pixel_fpr, "pixel_fpr")
    paths = {c: _collect(imgs) for c, imgs in groups.items()}
    n = sum(len(v) for v in paths.values())
    order_statistic(n, fpr)  # refuse early: before loading any model
    for p in (p for ps in paths.values() for p in ps):
        scorable_hw(p)  # a 1 x 1 image, a corrupt file: refused before any model too
    model, cfg, backbone = _scorer_parts(checkpoint, cfg, backbone, device)
    s2 = cfg.image_size ** 2  # maps are taken at the model's input size
    order_statistic(n * s2, pixel_fpr, "pixel", s2)  # and before any scoring
    fn = scorer(model, backbone, cfg)
    scores, maps = map(np.concatenate, zip(*(_score(fn, ps, c, cfg, backbone, batch_size)
                                              for c, ps in paths.items())))
    t_img, t_pix = thresholds(scores, maps, fpr, pixel_fpr)
    hashes = [{"name": f"{c}/{Path(p).name}" if prefix_names else Path(p).name, "sha256": _file_digest(p)}
              for c, ps in paths.items() for p in ps]
    if len({h["sha256"] for h in hashes}) < len(hashes):
        log.warning("calibration: some images are byte-identical copies; each copy counts once more")
    return Calibration(str(name), float(fpr), float(pixel_fpr), t_img, t_pix,
                       sorted(float(x) for x in scores), hashes, scorer_identity(cfg, checkpoint),
                       order=order_statistic(n, fpr), weights_sha256=getattr(backbone, "weights_sha256", None),
                       note=note)


def _score(fn, paths, class_name: str, cfg, backbone, batch_size: int):
    """(scores (n,) float64, maps (n, S, S) float32) of images `paths` scored as `class_name`."""
    import torch

    from .data import load_image

    scores, maps = [], []
    for i in range(0, len(paths), batch_size):
        x = torch.stack([load_image(p, cfg.image_size) for p in paths[i:i + batch_size]])
        m, s = fn(x.to(backbone.device), class_name)
        maps.append(m.float().numpy())
        scores.append(s.double().numpy())
    return np.concatenate(scores), np.concatenate(maps)


def _scorer_parts(checkpoint, cfg, backbone, device):
    """(model, cfg, backbone): trained heads from checkpoint, or ZeroShot on cfg's backbone."""
    from .backbone import load_backbone
    from .config import Config
    from .checkpoint import load_heads
    from .zeroshot import ZeroShot

    if checkpoint is not None:
        model, trained, backbone = load_heads(checkpoint, backbone=backbone, device=device)
        return model, (trained.check_eval_changes(cfg) if cfg is not None else trained), backbone
    cfg = cfg or (backbone.cfg if backbone is not None else Config.quick())
    backbone = backbone or load_backbone(cfg, device=device)
    return ZeroShot(backbone).to(backbone.device), cfg, backbone


_PLAIN = re.compile(r"[a-z0-9_-]{1,64}")  # a name that is its own file name, on any file system
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def calibration_name(class_name: str) -> str:
    """The file name of a class's calibration, one per exact name: `calibration.<name>.json` for
    a plain name (lower-case letters, digits, _ and -), else `calibration.<slug>.<hash>.json`
    (slug: the name's safe characters, hash: 8 hex digits of the exact name's SHA-256), so that
    "metal plate" and "metal_plate", two names in another script, or "Screw" and "screw" on a
    case-insensitive disk never share a file. The name itself is recorded inside and checked."""
    if _PLAIN.fullmatch(class_name):
        return f"calibration.{class_name}.json"
    slug = _SAFE.sub("_", class_name).strip("_")[:48] or "class"
    return f"calibration.{slug}.{hashlib.sha256(class_name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}.json"


def calibration_path(folder: str | os.PathLike, class_name: str) -> Path:
    """`<folder>/<calibration_name(class)>` (a run folder: beside heads.safetensors; a heads
    file: beside it)."""
    p = Path(folder)
    if p.is_file():
        p = p.parent
    return p / calibration_name(class_name)


def _legacy_path(folder: Path, class_name: str) -> Path:
    """Where an earlier version wrote the class's file (one slug for names that collide)."""
    return folder / f"calibration.{_SAFE.sub('_', class_name).strip('_') or 'class'}.json"


def _recorded_class(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("class_name") if isinstance(data, dict) else None


def find_calibration(folder: str | os.PathLike, class_name: str) -> Path | None:
    """The class's calibration in `folder` (or beside a heads file), or None; a file of an
    earlier version's name is found when it records exactly this class name."""
    p = calibration_path(folder, class_name)
    if p.is_file():
        return p
    old = _legacy_path(p.parent, class_name)
    return old if old.is_file() and _recorded_class(old) == class_name else None


def resolve_calibration(where: str | os.PathLike, class_name: str) -> Path:
    """The calibration file a user named: a file is used exactly as named (whatever its
    suffix); a folder gives its calibration of `class_name`; anything else is refused."""
    p = Path(where)
    if p.is_file():
        return p
    if p.is_dir():
        found = find_calibration(p, class_name)
        if found is None:
            raise CalibrationFileError(f"folder {p} holds no calibration of class {class_name!r} (no "
                                       f"{calibration_name(class_name)})", path=p)
        return found
    raise FileNotFoundError(f"calibration {p} not found (no such file or folder): give a calibration "
                            f"file, or the folder a calibration was written to")


def file_state(path: str | os.PathLike) -> str | None:
    """SHA-256 of a file's bytes, None when there is none: what `save_calibration` compares to
    know whether another writer replaced the file meanwhile."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def check_replaceable(path: str | os.PathLike, class_name: str) -> None:
    """OutputError unless `path` is free or holds an earlier calibration of exactly
    `class_name` (the only file a new calibration of the class may replace)."""
    from .files import OutputError

    p = Path(path)
    if not (p.exists() or p.is_symlink()):
        return
    try:
        ours = p.is_file() and calibration_from_record(json.loads(p.read_text(encoding="utf-8"))
                                                       ).class_name == class_name
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise OutputError(f"{p} is not a calibration of class {class_name!r}; it is kept: move it away, "
                          f"or write the calibration to another folder")


def save_calibration(cal: Calibration, path: str | os.PathLike, expect=_UNSET) -> Path:
    """Write `cal` to `path` atomically, under the folder's lock; returns the path written.

    Never replaces a file that is not an earlier calibration of cal.class_name (OutputError,
    `check_replaceable`). `expect`: the file's `file_state` when the caller began (before
    scoring): when another writer changed the file since (two calibrations of one class at
    once), that one is kept and this one written beside it (`<stem>.<n>.json`, logged)."""
    from .files import FolderLock, atomic_write_text, beside

    p = Path(path)
    with FolderLock(p.parent, timeout=60, what="calibration folder"):
        check_replaceable(p, cal.class_name)
        target = p
        if expect is not _UNSET and file_state(p) != expect:
            target = beside(p)
            log.warning("%s was written by another calibration of %r while this one ran: it is kept, "
                        "this one is written to %s", p, cal.class_name, target)
        atomic_write_text(target, json.dumps(asdict(cal), indent=1))
    return target


def load_calibration(path: str | os.PathLike, scorer: dict | None = None, class_name: str | None = None,
                     weights_sha256=_UNSET) -> Calibration:
    """Read and check a calibration file (`calibration_from_record`: every field well formed,
    the threshold the rule's); with `scorer` (scorer_identity), `class_name` (exact) and
    `weights_sha256` (Backbone.weights_sha256 of the weights loaded, None for weights without a
    file), also that it belongs to them. Any problem is one CalibrationFileError naming the file."""
    p = Path(path)
    try:
        cal = calibration_from_record(json.loads(p.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise CalibrationFileError(f"calibration {p} not found", path=p) from None
    except CalibrationError as err:
        raise CalibrationFileError(f"calibration {p} {err}", path=p) from None
    except (OSError, ValueError) as err:
        raise CalibrationFileError(f"calibration {p} is unreadable ({type(err).__name__})", path=p) from None
    if class_name is not None and cal.class_name != class_name:
        raise CalibrationFileError(f"calibration {p} is for class {cal.class_name!r}, not {class_name!r}",
                                   path=p)
    if scorer is not None and cal.scorer != scorer:
        diff = sorted(k for k in set(scorer) | set(cal.scorer) if scorer.get(k) != cal.scorer.get(k))
        raise CalibrationFileError(f"calibration {p} was made with another scorer or settings "
                                   f"({', '.join(diff)} differ)", path=p)
    if weights_sha256 is not _UNSET and cal.weights_sha256 != weights_sha256:
        short = lambda h: f"sha256 {h[:12]}..." if h else "no weights file"  # noqa: E731
        raise StaleCalibrationError(f"calibration {p} was made on backbone weights {short(cal.weights_sha256)}, "
                                    f"not on the ones loaded ({short(weights_sha256)})", path=p,
                                    weights_sha256=cal.weights_sha256, loaded_sha256=weights_sha256)
    return cal

"""Adapting the heads to a user's own parts from normal images only: the kit's defect generator
draws defects (with exact masks) onto those images, and the ordinary training loop learns from
them.

    res = adapt("good_parts/", "metal plate", "runs/plate", init="runs/paper")   # TrainResult
    # runs/plate holds the same checkpoint files as `bagclip train` (+ adapt.json, adapt_data/)

Which defects: those of `bagclip.data.world.DEFECTS` that apply to any image, because they
only need pixels, not knowledge of the object (ANY_IMAGE_KINDS):
    crack, scratch, hole (dark hole or dent), stain (rust / dirt), subtle (faint scratch, crack
    or stain), cutpaste (a patch of the same image moved), foreign (another material blended
    in), debris (specks, a hair or fibre), smudge (blurred blob), discolour (hue shift), fold.
Left out: "missing", which removes a part of an object and shows what lies beneath it: it
needs the object's outline and background, which a user's photo does not come with.
`exclude_kinds` removes more (e.g. the kinds a test set holds, so that an evaluation never
sees the defects the heads were adapted on); an excluded kind is never called, not even as a
fallback when a drawing fails.

The training set: every normal image (label 0, as it is) and `copies` defective versions of
each (label 1, mask from the generator), all at cfg.image_size. Copy j of an image is drawn
from a generator seeded by (cfg.seed, the image's SHA-256, j), so the set depends on the
images' content, not their names or order, and the same seed gives the same bytes. The files
go to <out>/adapt_data/, the record to <out>/adapt.json; training is `bagclip.train.train`
(same loop, same checkpoint files, same resume): resuming regenerates the set, checks that it
equals the recorded one, and continues bit-identically.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["ANY_IMAGE_KINDS", "allowed_kinds", "draw_training_set", "adapt", "RECORD", "DATA_DIR"]

log = logging.getLogger(__name__)

RECORD, DATA_DIR = "adapt.json", "adapt_data"
FORMAT = 1


from .data.world import DEFECTS as _WORLD_DEFECTS  # numpy / PIL / scipy only, no torch
from .files import claim_output
from .errors import AdaptError, ConfigError, DefectDrawError, ResumeError, RunExistsError

ANY_IMAGE_KINDS = tuple(k for k in _WORLD_DEFECTS if k != "missing")  # missing: needs an outline


def allowed_kinds(kinds: Sequence[str] | None = None, exclude_kinds: Sequence[str] = ()) -> tuple[str, ...]:
    """The kinds to draw: `kinds` (default ANY_IMAGE_KINDS) minus `exclude_kinds`, checked."""
    kinds = tuple(ANY_IMAGE_KINDS if kinds is None else kinds)
    bad = [k for k in (*kinds, *exclude_kinds) if k not in ANY_IMAGE_KINDS]
    if bad:
        raise ConfigError(f"defect kind(s) {', '.join(map(repr, bad))}: choose from {', '.join(ANY_IMAGE_KINDS)}",
                          field="kinds")
    out = tuple(k for k in kinds if k not in set(exclude_kinds))
    if not out:
        raise ConfigError("every defect kind is excluded: keep at least one of " + ", ".join(ANY_IMAGE_KINDS),
                          field="exclude_kinds")
    return out


def _rng(seed: int, sha256: str, copy: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(sha256[:16], 16), int(copy), zlib.crc32(b"bagclip-adapt")])


def _draw(rng, clean: np.ndarray, kinds: tuple[str, ...], tries: int = 8, name=None):
    """(kind, mask (S, S) bool, defective (S, S, 3) uint8) of one defect of an allowed kind.

    A drawing that does not fit (too few pixels) is redrawn; after `tries` another allowed
    kind is picked (world._draw_defect would fall back to "stain", which may be excluded);
    after 4 picks, DefectDrawError naming the image (`name`)."""
    from .data.synth_defects import apply_defect
    from .data.synth_draw import Scene
    from .data.world import try_defect

    scene = Scene(clean.astype(np.float64), np.ones(clean.shape[:2], bool))  # any pixel may hold a defect
    for _ in range(4):
        kind = kinds[rng.integers(len(kinds))]
        drawn = try_defect(rng, scene, kind, tries)
        if drawn is not None:
            return kind, drawn[0], apply_defect(clean, *drawn)
    side = clean.shape[0]
    raise DefectDrawError(f"could not draw a visible defect of kinds {', '.join(kinds)} on "
                          f"{name or 'an image'} at {side}x{side} pixels (every drawing was too small "
                          f"or did not fit)", path=name, kinds=kinds, size=side)


def draw_training_set(images, class_name: str, out_dir: str | os.PathLike, size: int, seed: int = 0,
                      copies: int = 2, kinds: Sequence[str] | None = None,
                      exclude_kinds: Sequence[str] = ()) -> tuple[list, dict]:
    """Write the defective copies under out_dir and return (samples, record).

    images: a folder or list of normal image files. samples: bagclip.data.Sample, the normal
    images first (mask None), then copy j of image i for each i, j. record: what was drawn
    (sources with SHA-256, kind of every copy, allowed kinds, seed), written to adapt.json.
    """
    from PIL import Image

    from .cache import _file_digest
    from .data import Sample, read_rgb
    from .data.synth import _png
    from .files import atomic_write_bytes
    from .inference import _collect

    if copies < 1:
        raise ConfigError(f"copies={copies}: give at least 1 defective copy per image", field="copies")
    allowed = allowed_kinds(kinds, exclude_kinds)
    paths = _collect(images)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    normals, bad, drawn = [], [], []
    sources = []
    for p in paths:
        sha = _file_digest(p)
        sources.append({"name": Path(p).name, "sha256": sha})
        normals.append(Sample(Path(p), None, class_name, "good", 0))
        rgb = read_rgb(p)
        if rgb.shape[:2] != (size, size):  # the resize load_image does, so normals match
            rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BICUBIC))
        for j in range(copies):
            kind, m, img = _draw(_rng(seed, sha, j), rgb, allowed, name=p)
            stem = f"{sha[:16]}_{j}"
            atomic_write_bytes(out / "images" / f"{stem}.png", _png(img))
            atomic_write_bytes(out / "masks" / f"{stem}.png", _png(m.astype(np.uint8) * 255))
            bad.append(Sample(out / "images" / f"{stem}.png", out / "masks" / f"{stem}.png",
                              class_name, kind, 1))
            drawn.append({"image": f"{stem}.png", "kind": kind,
                          "sha256": hashlib.sha256(img.tobytes()).hexdigest()})
    record = {"format": FORMAT, "class_name": class_name, "seed": int(seed), "size": int(size),
              "copies": int(copies), "allowed_kinds": list(allowed), "sources": sources, "drawn": drawn}
    return normals + bad, record


def _check_record(path: Path, record: dict, legacy: dict | None = None) -> dict:
    """Resuming: the record in the run folder (if any) must be the one of this adaptation;
    returns the record to keep (`record`, or the folder's own when only its form is older).

    legacy: {old key: its value now} for fields an older record held in another form (the
    starting heads by their file's SHA-256, before `init_weights_sha256`): a record that
    differs only there, with those values, is this adaptation and is kept as it is (its
    checkpoints record the drawn set by the record's hash)."""
    if not path.is_file():
        return record
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = None
    if old == record:
        return record
    prev = old if isinstance(old, dict) else {}  # an unreadable or foreign record differs everywhere
    if legacy and _older_form(prev, record, legacy):
        return prev
    differ = sorted(k for k in set(record) | set(prev) if prev.get(k) != record.get(k))
    raise ResumeError(f"{path} records another adaptation (differing: {', '.join(_dotted(prev, record, differ))}); "
                      f"resume with the same images, seed, kinds, start and settings, or use a "
                      f"new folder", path=path)


def _older_form(old: dict, record: dict, legacy: dict) -> bool:
    """True when `old` is `record` in the older form `legacy` describes (see _check_record)."""
    new_keys = {"init_weights_sha256"}
    return (all(old.get(k) == v for k, v in legacy.items()) and not new_keys & set(old)
            and {k: v for k, v in old.items() if k not in legacy}
            == {k: v for k, v in record.items() if k not in new_keys})


def _dotted(old: dict, new: dict, keys) -> list[str]:
    """The differing keys, a mapping's own differing keys named within it (config.lr)."""
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{k}.{j}" for j in sorted(set(a) | set(b)) if a.get(j) != b.get(j)]
        else:
            out.append(k)
    return out


def _start_record(init_state: dict | None) -> dict:
    """The record's field for the starting heads: their weights' digest (None: cfg.seed's
    initialisation), not their file's bytes (see weights_digest)."""
    return {"init_weights_sha256": None if init_state is None else weights_digest(init_state)}


def weights_digest(state: dict) -> str:
    """SHA-256 of heads' weights: every tensor's name, dtype, shape and bytes, in name order.

    What trained heads are, whatever their file's header holds: a run's heads.safetensors is
    written again on every resume of that run, with metadata (settings, input fingerprints)
    whose form may change between versions of the kit, so its file hash is not the weights'
    identity (issue 32: adapt's resume refused its own record after the starting heads' file
    was rewritten with another header)."""
    import torch

    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(json.dumps([k, str(t.dtype), list(t.shape)]).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _init_heads(init, cfg, backbone, device):
    """(state, SHA-256 of the heads file, cfg, backbone) of the trained heads in `init`; cfg
    defaults to theirs and may differ only in training settings (else AdaptError). The file's
    hash only recognises records of the older form (`_check_record`'s legacy)."""
    from .cache import _file_digest
    from .checkpoint import HEADS, load_heads
    from .model import build_heads

    model, icfg, backbone = load_heads(init, backbone=backbone, device=device)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    sha = _file_digest(Path(init) / HEADS if Path(init).is_dir() else Path(init))
    cfg = cfg or icfg
    try:
        build_heads(cfg, backbone).load_state_dict(state)
    except RuntimeError:
        raise AdaptError(f"the heads in {init} do not fit these settings: starting from trained "
                         f"heads, change only training settings (seed, epochs, lr, batch_size)",
                         path=init) from None
    return state, sha, cfg, backbone


def _replay_record(replay) -> list[dict]:
    """The rehearsal samples by content (SHA-256 of image and mask), label and class."""
    from .cache import _file_digest

    return [{"image": _file_digest(Path(r.image_path)), "label": int(r.label),
             "mask": _file_digest(Path(r.mask_path)) if r.mask_path else None, "class": r.class_name}
            for r in replay]


def adapt(images, class_name: str, out_dir: str | os.PathLike, cfg=None,
          init: str | os.PathLike | None = None, backbone=None, copies: int = 2,
          kinds: Sequence[str] | None = None, exclude_kinds: Sequence[str] = (), resume: bool = False,
          save_every: int | None = None, max_steps: int | None = None, cache=None, device=None,
          progress: bool = True, replay: Sequence = ()):
    """Train heads on normal images of one class with drawn defects; returns train's TrainResult.

    init: trained heads to start from (a run folder); None starts from cfg.seed's
    initialisation. cfg: the settings (default: init's, else Config.quick()); with init, only
    the training settings (seed, epochs, lr, batch_size...) may differ from init's.
    The checkpoint in out_dir is `bagclip train`'s (load_heads, predict, eval read it).
    replay: labelled samples (bagclip.data.Sample, e.g. some of init's own auxiliary training
    set) trained on beside the drawn set, so that the heads keep what init learned while they
    fit the new class (rehearsal against forgetting); recorded by file content for resume.
    """
    from .backbone import load_backbone
    from .cache import FeatureCache
    from .config import Config
    from .files import atomic_write_text
    from .checkpoint import RUN_FILES
    from .train import train

    out = Path(out_dir)
    init_state, init_file_sha = None, None
    if init is not None:
        init_state, init_file_sha, cfg, backbone = _init_heads(init, cfg, backbone, device)
    cfg = cfg or (backbone.cfg if backbone is not None else Config.quick())
    backbone = backbone or load_backbone(cfg, device=device)
    existing = [f for f in RUN_FILES if (out / f).exists()]
    if existing and not resume:  # as train refuses, but before anything is drawn into the folder
        raise RunExistsError(f"{out} already holds a training run ({', '.join(existing)}); resume it "
                             f"(same images and settings), or adapt into a new folder", path=out)
    # the folder becomes the kit's before anything is drawn into it (train then recognises it;
    # a folder of the user's own files is refused here, before a file of theirs is touched)
    claim_output(out, "adapt run folder", legacy=lambda p: (p / RECORD).exists(), setting="out")
    samples, record = draw_training_set(images, class_name, out / DATA_DIR, cfg.image_size, cfg.seed,
                                        copies, kinds, exclude_kinds)
    record.update(_start_record(init_state))
    replay = list(replay)
    if replay:  # by content: a replaced file is another adaptation (resume refuses it)
        record["replay"] = _replay_record(replay)
    record["config"] = cfg.to_dict()
    record = json.loads(json.dumps(record))  # JSON-normal form, as read back
    if resume:
        record = _check_record(out / RECORD, record, legacy={"init_heads_sha256": init_file_sha})
    # written before training: an interrupted run keeps what it was drawing, for resume's check
    atomic_write_text(out / RECORD, json.dumps(record, indent=1))
    # drawn files are rewritten on every call (new dates): checkpoints record the set by content
    drawn = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
    res = train(cfg, samples + replay, backbone, out, cache=cache or FeatureCache(backbone), resume=resume,
                save_every=save_every, max_steps=max_steps, progress=progress, init_state=init_state,
                aux_fingerprint=f"adapt:{drawn}")
    counts = {k: sum(d["kind"] == k for d in record["drawn"]) for k in record["allowed_kinds"]}
    log.info("adapt: %d normal images, %d drawn defects %s", len(record["sources"]), len(record["drawn"]), counts)
    return res

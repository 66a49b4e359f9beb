"""The decision commands: `bagclip calibrate`, `bagclip adapt`, and the parts of `predict`
and `eval` that use a calibration or the training-free scorer (predict_setup, predict_line,
part_images, map_png, eval_normal_only, called by commands.py). Their arguments: parser.py.

No decision without a calibration of the user's own class: a threshold made on other classes
flagged a third of normal parts of classes it was not made on (issue 32), so predict then
prints scores and maps, says in one line that it did not decide, and gives the command that
makes a calibration from 20 normal images."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from .options import _config, _extra_changes, _out_dir, _trained

CALIBRATION_IMAGES = 20  # what the undecided line asks for: 19 is the least at 5 %, one spare


def shown(path) -> str:
    """A path as text that prints anywhere: bytes of a non-UTF-8 file name as \\xNN escapes
    (printing Linux's surrogate escapes raises UnicodeEncodeError, in matplotlib too)."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def scorer_flags(a) -> list[str]:
    """The flags of this command that make the scores (a calibration must be made with the
    same): --checkpoint, else --quick / --config / --set; --class-name-map and --seed."""
    if a.checkpoint is not None:
        flags = ["--checkpoint", a.checkpoint]
    else:
        flags = (["--quick"] if a.quick else []) + (["--config", a.config] if a.config else [])
    flags += [x for kv in (a.set or []) for x in ("--set", kv)]
    flags += ["--class-name-map", a.class_name_map] if a.class_name_map else []
    flags += ["--seed", str(a.seed)] if a.seed is not None else []
    return flags


def _command(*words) -> str:
    """A command line to copy: each word quoted for a POSIX shell where it needs it."""
    return " ".join(shlex.quote(shown(w)) for w in words)


def cmd_calibrate(a) -> None:
    from ..calibrate import (calibrate, calibration_path, check_rate, check_replaceable, file_state,
                             min_images, order_statistic, ordinal, plural, save_calibration)
    from ..inference import _collect

    if a.checkpoint is None and not a.out:
        raise ValueError("give --checkpoint DIR (trained heads: the calibration goes beside them) or "
                         "--out DIR (a calibration of the training-free scorer)")
    n = len(_collect(a.images))
    order_statistic(n, a.fpr)  # refuse too few images before any model is loaded
    check_rate(a.pixel_fpr, "pixel_fpr")
    folder = _out_dir(a.out, "--out") if a.out else Path(a.checkpoint)  # --out wins (issue 32)
    target = calibration_path(folder, a.class_name)
    check_replaceable(target, a.class_name)  # a file of the user's there: refused before any work
    seen = file_state(target)  # another calibrate writing it meanwhile: both are kept
    if a.checkpoint is not None:
        model, cfg, bb = _trained(a)
    else:
        cfg, bb = _config(a), None
    cal = calibrate(a.images, a.class_name, a.fpr, a.pixel_fpr, checkpoint=a.checkpoint, cfg=cfg,
                    backbone=bb, device=a.device)
    path = save_calibration(cal, target, expect=seen)
    k, n = cal.order, cal.n_images
    print(f"calibration of {a.class_name!r} on {plural(n, 'normal image')} written to {shown(path)}")
    if path != target:
        print(f"note: {shown(target)} was written by another calibration of {a.class_name!r} while this one "
              f"ran; both are kept. To decide with this one, give predict --calibration {shown(path)}",
              file=sys.stderr)
    print(f"image threshold {cal.image_threshold:.4f} (the {ordinal(k)} smallest of {plural(n, 'normal score')}): on "
          f"fresh normal images of this class, expected FPR {(n + 1 - k) / (n + 1):.1%} (<= {a.fpr:.1%}; "
          f"{plural(min_images(a.fpr), 'image')} is the least for this rate)")
    print(f"pixel threshold {cal.pixel_threshold:.4f}: calibrated maps are divided by it, "
          f"{cal.meaning()}")
    use = ["--calibration", path] if a.out else []
    print(f"decide with it: {_command('bagclip', 'predict', 'IMAGES', '--class-name', a.class_name, *scorer_flags(a), *use)}")


def cmd_adapt(a) -> None:
    from ..adapt import adapt
    from ..cache import FeatureCache

    _out_dir(a.out, "--out")
    bb = None
    if a.init:
        from ..checkpoint import load_heads

        given = [f for f, v in (("--quick", a.quick), ("--config", a.config)) if v]
        if given:
            raise ValueError(f"{' and '.join(given)} cannot be used with --init: the heads carry their "
                             f"settings; change training settings with --set (epochs, lr, seed...)")
        _, icfg, bb = load_heads(a.init, device=a.device)
        cfg = icfg.with_overrides(a.set or [], **_extra_changes(a, icfg))
    else:
        cfg = _config(a)
    if bb is None:
        from ..backbone import load_backbone

        bb = load_backbone(cfg, device=a.device)
    res = adapt(a.images, a.class_name, a.out, cfg=cfg, init=a.init, backbone=bb, copies=a.copies,
                exclude_kinds=a.exclude_kinds, resume=a.resume, save_every=a.save_every,
                cache=FeatureCache(bb, a.cache_dir))
    print(f"adapted heads saved to {res.out_dir}/heads.safetensors (final loss {res.history[-1]:.4f}); "
          f"what was drawn: {res.out_dir}/adapt.json. Next, on normal images NOT adapted on: bagclip "
          f"calibrate OTHER_NORMALS --checkpoint {res.out_dir} --class-name {a.class_name!r}")


def predict_setup(a):
    """(model, cfg, backbone, calibration or None) for `predict`, and prints which scorer
    answers and what decides (`_decider`).

    With --checkpoint: the heads, and the calibration beside them for --class-name if any.
    Without: the training-free scorer (ZeroShot) on the chosen backbone, and --calibration."""
    from ..checkpoint import HEADS

    if a.checkpoint is not None:
        model, cfg, bb = _trained(a)
        print(f"scorer: trained heads {Path(a.checkpoint) / HEADS if Path(a.checkpoint).is_dir() else a.checkpoint}")
    else:
        from ..backbone import load_backbone
        from ..zeroshot import ZeroShot

        cfg = _config(a)
        bb = load_backbone(cfg, device=a.device)
        model = ZeroShot(bb).to(bb.device)
        print(f"scorer: training-free ZeroShot (frozen {cfg.backbone} + prompts, nothing learned; "
              f"no --checkpoint given)")
    return model, cfg, bb, _decider(a, cfg, bb)


def _decider(a, cfg, bb):
    """The calibration that decides, or None, and one line saying what decides: --threshold
    (then no calibration is used, and --calibration beside it is refused), the calibration
    named by --calibration (exactly that file, or that folder's file of the class) or beside
    --checkpoint, checked against the class, scorer and backbone weights; else no decision."""
    from ..calibrate import find_calibration, load_calibration, plural, resolve_calibration, scorer_identity

    given = getattr(a, "calibration", None)
    if a.threshold is not None:
        if given:
            raise ValueError("--threshold and --calibration both set the decision: give one (--threshold "
                             "T flags raw scores >= T; --calibration decides at its calibrated FPR)")
        beside = find_calibration(a.checkpoint, a.class_name) if a.checkpoint else None
        unused = f"; the calibration {shown(beside)} beside the checkpoint is not used" if beside else ""
        print(f"decision: score >= {a.threshold:g} (--threshold, on raw scores){unused}")
        return None
    path = resolve_calibration(given, a.class_name) if given else (
        find_calibration(a.checkpoint, a.class_name) if a.checkpoint else None)
    if path is None:
        print(undecided_line(a), file=sys.stderr)
        return None
    cal = load_calibration(path, scorer=scorer_identity(cfg, a.checkpoint), class_name=a.class_name,
                           weights_sha256=bb.weights_sha256)
    print(f"calibration: {shown(path)} ({plural(cal.n_images, 'normal image')}, image FPR {cal.fpr:.1%}; "
          f"{cal.meaning()})")
    return cal


def undecided_line(a) -> str:
    """The one line of a predict without a calibration: no decision, and the exact command
    that makes one from CALIBRATION_IMAGES normal images of the class with this scorer."""
    out = [] if a.checkpoint is not None else ["--out", "calibration"]
    cmd = _command("bagclip", "calibrate", "GOOD", "--class-name", a.class_name, *scorer_flags(a), *out)
    then = ("then rerun this command (the calibration is written beside the checkpoint)" if a.checkpoint
            else "then add --calibration calibration to this command")
    return (f"decision: none, no calibration of class {a.class_name!r} (a score ranks images, it is not a "
            f"decision). To decide at 5 % false positives, put {CALIBRATION_IMAGES} normal images of "
            f"{a.class_name} in a folder GOOD and run `{cmd}`, {then}")


def predict_line(p, a, cal) -> str:
    """The decision and calibrated fields of one prediction's output line."""
    if a.threshold is not None:  # the explicit threshold on the raw score (no calibration then)
        return "  ANOMALOUS" if p.is_anomalous(a.threshold) else "  normal"
    if cal is not None:
        m = cal.normalise(p.anomaly_map)
        flag = "ANOMALOUS" if cal.is_anomalous(p.image_score) else "normal"
        return (f"\tnormal_tail={cal.tail(p.image_score):.4f}\tmax_map_calibrated={float(m.max()):.2f}"
                f"  {flag}")
    # no rule here: raw scores carry no threshold (bagclip-mini's p_img is ~1 for normal images
    # too), and a made-up one would be the misleading answer the peers' users complain about
    return "  undecided (no calibration)"


_PNG = b"\x89PNG\r\n\x1a\n"
_AFTER_IHDR = 8 + 4 + 4 + 13 + 4  # signature, then IHDR: length, type, 13 bytes of data, CRC
MAP_KEY = b"bagclip"  # tEXt keyword of the maps predict writes


def _tag_map(png: bytes) -> bytes:
    """`png` with a tEXt chunk "bagclip" right after its IHDR: a map file says it is one, so
    that a later predict of its folder does not score it as a part (issue 32)."""
    import zlib

    body = b"tEXt" + MAP_KEY + b"\0anomaly map written by bagclip predict, not an image of a part"
    chunk = (len(body) - 4).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    return png[:_AFTER_IHDR] + chunk + png[_AFTER_IHDR:]


def is_kit_map(path) -> bool:
    """True for a map file `map_png` wrote (its tag right after the IHDR), from 64 bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(_AFTER_IHDR + 8 + len(MAP_KEY) + 1)
    except OSError:
        return False
    tag = head[_AFTER_IHDR + 4:]
    return head.startswith(_PNG) and tag == b"tEXt" + MAP_KEY + b"\0"


def part_images(images, skipped: list) -> list:
    """The files of `images` (paths, folders) to score: the maps predict wrote earlier are
    passed over (said on stderr, once), so `predict DIR --save-maps DIR` twice scores the same."""
    from ..calibrate import plural
    from ..inference import _collect

    items = _collect(images, skipped)
    maps = [p for p in items if is_kit_map(p)]
    if maps:
        print(f"skipped {plural(len(maps), 'anomaly map')} written by bagclip predict "
              f"({', '.join(shown(m) for m in maps[:2])}{' ...' if len(maps) > 2 else ''}): not parts",
              file=sys.stderr)
        if len(maps) == len(items) and not skipped:
            raise ValueError("every image given is an anomaly map written by bagclip predict; give images "
                             "of parts")
    return [p for p in items if p not in maps]


def map_png(p, cal) -> bytes:
    """One prediction's map as PNG, tagged as a map (`_tag_map`): with a calibration, a figure
    whose colour bar says what 1.0 means; without, the raw map in grey (0..1 -> 0..255)."""
    if cal is None:
        import io

        import numpy as np
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray((np.clip(p.anomaly_map, 0, 1) * 255).astype("uint8")).save(buf, format="PNG")
        return _tag_map(buf.getvalue())
    from ..viz import calibrated_map_figure, png_bytes

    return _tag_map(png_bytes(calibrated_map_figure(cal.normalise(p.anomaly_map), cal.meaning(),
                                                    title=shown(Path(p.path).name) if p.path else None)))


def eval_normal_only(a, cfg, name: str, result: dict, seen: dict, weights_sha256) -> None:
    """Print, per class, F1-max (labelled as picked on the test labels) beside precision, recall
    and FPR at the normal-only threshold of the calibration beside the checkpoint (checked
    against the backbone weights loaded, `weights_sha256`)."""
    from ..calibrate import find_calibration, load_calibration, operating_point, plural, scorer_identity

    print(f"{name}: image F1-max {result['image_f1_max']:.3f} (F1-max: threshold picked on the test labels)")
    for cls, (scores, labels) in seen.items():
        path = find_calibration(a.checkpoint, cls)
        if path is None:
            print(f"  {cls}: no calibration beside the checkpoint (bagclip calibrate NORMALS --checkpoint "
                  f"{a.checkpoint} --class-name {cls}): no normal-only threshold")
            continue
        cal = load_calibration(path, scorer=scorer_identity(cfg, a.checkpoint), class_name=cls,
                               weights_sha256=weights_sha256)
        op = operating_point(scores, labels, cal.image_threshold)
        result.setdefault("normal_only", {})[cls] = {**op, "calibration": str(path), "fpr_target": cal.fpr}
        print(f"  {cls}: at the normal-only threshold (FPR {cal.fpr:.0%} on {plural(cal.n_images, 'normal')}): "
              f"precision {op['precision']:.3f} recall {op['recall']:.3f} FPR {op['fpr']:.3f} "
              f"(F1-max {result['per_class'][cls]['image_f1_max']:.3f} on the test labels)")

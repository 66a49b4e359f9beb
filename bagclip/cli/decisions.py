"""The decision commands: `bagclip calibrate`, `bagclip adapt`, and the parts of `predict`
and `eval` that use a calibration or the training-free scorer (predict_setup, predict_line,
map_png, eval_normal_only, called by commands.py). Their arguments: parser.py."""
from __future__ import annotations

import sys
from pathlib import Path

from .options import _config, _extra_changes, _out_dir, _trained


def cmd_calibrate(a) -> None:
    from ..calibrate import calibrate, calibration_path, min_images, order_statistic, save_calibration

    if a.checkpoint is None and not a.out:
        raise ValueError("give --checkpoint DIR (trained heads: the calibration goes beside them) or "
                         "--out DIR (a calibration of the training-free scorer)")
    # refuse too few images before any model is loaded
    from ..inference import _collect

    n = len(_collect(a.images))
    order_statistic(n, a.fpr)
    if a.checkpoint is not None:
        model, cfg, bb = _trained(a)
        folder = Path(a.checkpoint)
    else:
        cfg, bb = _config(a), None
        folder = _out_dir(a.out, "--out")
    cal = calibrate(a.images, a.class_name, a.fpr, a.pixel_fpr, checkpoint=a.checkpoint, cfg=cfg,
                    backbone=bb, device=a.device)
    path = save_calibration(cal, calibration_path(folder, a.class_name))
    k, n = cal.order, cal.n_images
    print(f"calibration of {a.class_name!r} on {n} normal images written to {path}")
    print(f"image threshold {cal.image_threshold:.4f} (the {k}th smallest of {n} normal scores): on fresh "
          f"normal images of this class, expected FPR {(n + 1 - k) / (n + 1):.1%} (<= {a.fpr:.1%}; "
          f"{min_images(a.fpr)} images is the least for this rate)")
    print(f"pixel threshold {cal.pixel_threshold:.4f}: calibrated maps are divided by it, "
          f"{cal.meaning()}")


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
    """(model, cfg, backbone, calibration or None) for `predict`, and prints which scorer answers.

    With --checkpoint: the heads, and the calibration beside them for --class-name if any.
    Without: the training-free scorer (ZeroShot) on the chosen backbone, and --calibration, else
    the shipped generic calibration (quick mode's settings; refused, with a warning, when it was
    made on other backbone weights)."""
    from ..calibrate import find_calibration, load_calibration, scorer_identity
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
    where = getattr(a, "calibration", None) or a.checkpoint
    path = None
    if where is not None:
        path = Path(where) if Path(where).is_file() and str(where).endswith(".json") else \
            find_calibration(where, a.class_name)
    cal = None
    if path is not None:
        cal = load_calibration(path, scorer=scorer_identity(cfg, a.checkpoint), class_name=a.class_name)
        print(f"calibration: {path} ({cal.n_images} normal images, image FPR {cal.fpr:.1%}; "
              f"{cal.meaning()})")
    elif a.threshold is None and a.checkpoint is None:
        cal = _generic(a, cfg, bb)
    if cal is None and a.threshold is None:
        how = f"--checkpoint {a.checkpoint}" if a.checkpoint else "--quick --out DIR, then predict --calibration DIR"
        print(f"decision: none without a calibration (scores rank images, they have no threshold of their "
              f"own). For a decision at a known false-positive rate, give normal images of the class: "
              f"bagclip calibrate NORMALS --class-name {a.class_name} {how}", file=sys.stderr)
    return model, cfg, bb, cal


def _generic(a, cfg, bb):
    """The shipped generic calibration of the training-free scorer (quick mode's settings), or
    None with a one-line warning when it was made on other weights than the ones loaded."""
    from ..calibrate import REGENERATE, shipped_calibration
    from ..errors import CalibrationFileError, StaleCalibrationError

    try:
        cal = shipped_calibration(cfg, bb.weights_sha256)
    except StaleCalibrationError as err:
        print(f"warning: {' '.join(str(err).split())}: not used, no decision; regenerate it with "
              f"`{REGENERATE}`", file=sys.stderr)
        return None
    except CalibrationFileError:  # other settings than quick mode's defaults: no generic threshold
        return None
    ck = cal.check or {}
    held_out = (f"; on the kit's held-out synthetic classes it flagged {ck['false_positives']} of "
                f"{ck['n_normal']} normal parts (FPR {ck['fpr']:.0%}, 95 % interval {ck['low']:.0%}-"
                f"{ck['high']:.0%})" if ck else "")
    print(f"calibration: GENERIC threshold (image FPR {cal.fpr:.0%} on {cal.n_images} normal images of the "
          f"kit's synthetic auxiliary parts, not of your class {a.class_name!r}){held_out}: a rough answer. "
          f"For a real decision, calibrate on your own normal images: bagclip calibrate NORMALS "
          f"--class-name {a.class_name} --quick --out DIR, then predict --calibration DIR")
    return cal


def predict_line(p, a, cal) -> str:
    """The decision and calibrated fields of one prediction's output line."""
    from ..calibrate import GENERIC

    if a.threshold is not None:  # an explicit threshold on the raw score wins
        return "  ANOMALOUS" if p.is_anomalous(a.threshold) else "  normal"
    if cal is not None:
        m = cal.normalise(p.anomaly_map)
        flag = "ANOMALOUS" if cal.is_anomalous(p.image_score) else "normal"
        if cal.class_name == GENERIC:
            flag += " (generic threshold, training-free scorer)"
        return (f"\tnormal_tail={cal.tail(p.image_score):.4f}\tmax_map_calibrated={float(m.max()):.2f}"
                f"  {flag}")
    # no rule here: raw scores carry no threshold (bagclip-mini's p_img is ~1 for normal images
    # too), and a made-up one would be the misleading answer the peers' users complain about
    return "  undecided (no calibration)"


def map_png(p, cal) -> bytes:
    """One prediction's map as PNG: with a calibration, a figure whose colour bar says what 1.0
    means; without, the raw map in grey (0..1 -> 0..255)."""
    if cal is None:
        import io

        import numpy as np
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray((np.clip(p.anomaly_map, 0, 1) * 255).astype("uint8")).save(buf, format="PNG")
        return buf.getvalue()
    from ..viz import calibrated_map_figure, png_bytes

    return png_bytes(calibrated_map_figure(cal.normalise(p.anomaly_map), cal.meaning(),
                                           title=Path(p.path).name if p.path else None))


def eval_normal_only(a, cfg, name: str, result: dict, seen: dict) -> None:
    """Print, per class, F1-max (labelled as picked on the test labels) beside precision, recall
    and FPR at the normal-only threshold of the calibration beside the checkpoint."""
    from ..calibrate import find_calibration, load_calibration, operating_point, scorer_identity

    print(f"{name}: image F1-max {result['image_f1_max']:.3f} (F1-max: threshold picked on the test labels)")
    for cls, (scores, labels) in seen.items():
        path = find_calibration(a.checkpoint, cls)
        if path is None:
            print(f"  {cls}: no calibration beside the checkpoint (bagclip calibrate NORMALS --checkpoint "
                  f"{a.checkpoint} --class-name {cls}): no normal-only threshold")
            continue
        cal = load_calibration(path, scorer=scorer_identity(cfg, a.checkpoint), class_name=cls)
        op = operating_point(scores, labels, cal.image_threshold)
        result.setdefault("normal_only", {})[cls] = {**op, "calibration": str(path), "fpr_target": cal.fpr}
        print(f"  {cls}: at the normal-only threshold (FPR {cal.fpr:.0%} on {cal.n_images} normals): "
              f"precision {op['precision']:.3f} recall {op['recall']:.3f} FPR {op['fpr']:.3f} "
              f"(F1-max {result['per_class'][cls]['image_f1_max']:.3f} on the test labels)")

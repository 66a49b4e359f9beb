"""Write the shipped generic calibration of the training-free scorer in quick mode:
bagclip/weights/quick-calibration.json, which `bagclip predict IMAGE --quick` uses for a
decision when no calibration of the user's class is given.

    python tools/calibrate_quick.py            # after the shipped bagclip-mini weights change

What it is: ZeroShot (frozen bagclip-mini + prompts, Config.quick()) scored on the NORMAL
images of the synthetic AUXILIARY classes only (bagclip.data.synth.AUX_CLASSES, each image
scored with its own class name), pooled, and the split-conformal rule of bagclip.calibrate at
--fpr (default 5 %). Never the target classes, never the scikit-image photographs: those are
the kit's held-out sets. The file records the backbone weights' SHA-256, every image's name and
SHA-256, and the scorer's settings; predict refuses it when the weights loaded hash otherwise.
As a check (not used for the threshold), the share of the target classes' normal images it
flags is printed and written into the file ("check"), with a 95 % Clopper-Pearson interval;
predict prints it beside every generic decision.
The threshold is generic: it promises nothing for a user's own class; `bagclip calibrate` on
their normal images does.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's bagclip

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bagclip import Config, load_backbone  # noqa: E402
from bagclip.calibrate import (GENERIC, SHIPPED_CALIBRATION, calibrate_pooled, observed_fpr,  # noqa: E402
                               save_calibration, shipped_calibration)
from bagclip.data import synth  # noqa: E402
from bagclip.inference import predict  # noqa: E402

COMMAND = "python tools/calibrate_quick.py"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fpr", type=float, default=0.05, help="image false-positive rate (default 0.05)")
    ap.add_argument("--pixel-fpr", type=float, default=0.01, help="share of normal pixels above 1.0 (0.01)")
    ap.add_argument("--per-class", type=int, default=20, help="normal images per auxiliary class (20)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic images (0)")
    ap.add_argument("--out", default=str(SHIPPED_CALIBRATION), help="default: the shipped file")
    a = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    cfg = Config.quick()
    bb = load_backbone(cfg)
    classes = list(synth.AUX_CLASSES) + list(synth.TARGET_CLASSES)
    root = synth.ensure_synth(seed=a.seed, size=cfg.image_size, n_train=a.per_class, n_test_good=1,
                              n_test_bad=1, categories=classes)
    good = lambda c: sorted((root / c / "train" / "good").glob("*.png"))  # noqa: E731
    note = (f"made by `{COMMAND} --fpr {a.fpr:g} --pixel-fpr {a.pixel_fpr:g} --per-class {a.per_class} "
            f"--seed {a.seed}`: ZeroShot on {cfg.pretrained} (Config.quick()), the train/good images of "
            f"the synthetic auxiliary classes {', '.join(synth.AUX_CLASSES)} (synth seed {a.seed}, "
            f"{cfg.image_size} px), each scored with its own class name. Generic: not calibrated on "
            f"the user's class.")
    cal = calibrate_pooled({c: good(c) for c in synth.AUX_CLASSES}, GENERIC, a.fpr, a.pixel_fpr,
                           cfg=cfg, backbone=bb, note=note)
    # the check on the held-out target classes' normal images (never used for the threshold)
    scores = np.array([p.image_score for c in synth.TARGET_CLASSES
                       for p in predict(good(c), cfg=cfg, backbone=bb, model=_zeroshot(bb), class_name=c)])
    ob = observed_fpr(scores, cal.image_threshold)
    cal.check = {**ob, "images": f"train/good of the target classes {', '.join(synth.TARGET_CLASSES)} "
                                 f"(synth seed {a.seed}), never used for the threshold"}
    path = save_calibration(cal, a.out)
    if Path(a.out).resolve() == SHIPPED_CALIBRATION.resolve():
        shipped_calibration(cfg, bb.weights_sha256)  # reads back as predict will
    print(f"wrote {path}: image threshold {cal.image_threshold:.4f} (the {cal.order}th of {cal.n_images} "
          f"normal scores, FPR {a.fpr:.0%}), pixel threshold {cal.pixel_threshold:.4f}, weights sha256 "
          f"{cal.weights_sha256[:16]}...")
    print(f"check: {ob['false_positives']} of {ob['n_normal']} target-class normal images flagged "
          f"(FPR {ob['fpr']:.3f}, 95 % interval [{ob['low']:.3f}, {ob['high']:.3f}])")


def _zeroshot(bb):
    from bagclip.zeroshot import ZeroShot

    return ZeroShot(bb).to(bb.device)


if __name__ == "__main__":
    main()

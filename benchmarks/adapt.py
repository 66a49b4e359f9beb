"""Zero-shot heads against heads adapted to one class from its normal images, per class, with
paired bootstrap intervals (bagclip.compare).

Zero-shot heads: trained on the synthetic auxiliary categories (`reproduce --quick`'s recipe,
Config.quick(), one run per seed). Adapted heads: `bagclip.adapt` from those heads, per class
and seed, on normal images of the class only, with the kit's drawn defects. Two test sets:
1. the synthetic targets (brushed metal, concrete, carpet, screw, circuit board): adaptation
   normals from the train split, and the kinds of the class's test defects are excluded from
   the drawing, so the adapted heads never see the defect kinds they are tested on;
2. `--real`: crops of scikit-image's photographs with the defects of benchmarks/mini.py's own
   generator (strokes, patches of another photo, blotches, bruises: none of the kit's kinds);
   adaptation normals are other crops of the same photographs, drawn with another seed. These
   photographs are the held-out check: nothing else in the kit trains on them.
Both heads are scored on the same test images; the interval resamples images (stratified by
label) and seeds, 2000 resamples. Every number is ours, never the paper's.

    python benchmarks/adapt.py [--seeds 0 1 2] [--real] [--work runs/bench-adapt]
    python benchmarks/adapt.py --smoke      # two classes, one seed, few images: the plumbing
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from bagclip import Config, load_backbone
from bagclip.adapt import ANY_IMAGE_KINDS, adapt
from bagclip.cache import FeatureCache
from bagclip.checkpoint import load_heads
from bagclip.compare import Results, compare
from bagclip.data import load_dataset, load_mask
from bagclip.data import synth
from bagclip.inference import predict_all
from bagclip.train import train


def _run(out: Path, fn):
    """A finished run is read back, an interrupted one resumed (train's own resume)."""
    return fn(resume=(out / "state.pt").is_file())


def zero_shot_heads(cfg, bb, cache, work: Path, seed: int) -> Path:
    aux = load_dataset("synth", synth.ensure_synth(size=cfg.image_size), "test", classes=synth.AUX_CLASSES)
    out = work / f"zero-shot-seed{seed}"
    _run(out, lambda resume: train(cfg.replace(seed=seed), aux, bb, out, cache=cache, resume=resume,
                                   progress=False))
    return out


def scores_and_maps(run: Path, bb, cache, samples, cls: str):
    """(scores (n,), maps (n, S, S)) of the heads in `run` on samples (all of class cls)."""
    model, cfg, _ = load_heads(run, backbone=bb)
    assert {s.class_name for s in samples} == {cls}
    maps, scores = predict_all(model, cfg, bb, cache, samples)
    return scores, maps


def sets(a, size: int, tmp: Path) -> dict:
    """{set name: {class: (normal image paths for adapting, test samples, excluded kinds)}}."""
    classes = synth.TARGET_CLASSES[:2] if a.smoke else synth.TARGET_CLASSES
    root = synth.ensure_synth(seed=a.data_seed, size=size, n_train=a.n_normal, n_test_good=a.n_good,
                              n_test_bad=a.n_bad, categories=list(classes))
    out = {"synthetic targets": {
        c: (sorted((root / c / "train" / "good").glob("*.png")),
            load_dataset("synth", root, "test", classes=[c]),
            [k for k in synth.CATEGORIES[c] if k in ANY_IMAGE_KINDS]) for c in classes}}
    if a.real:
        sys.path.insert(0, str(Path(__file__).parent))
        from mini import real_photo_set

        test = real_photo_set(tmp / "real-test", a.data_seed, a.n_good, a.n_bad, size)
        norm = real_photo_set(tmp / "real-normal", a.data_seed + 1000, a.n_normal, 0, size)
        samples = load_dataset("mvtec", test, "test")
        names = sorted({s.class_name for s in samples})[: 2 if a.smoke else None]
        out["real photos"] = {c: (sorted((norm / c / "test" / "good").glob("*.png")),
                                  [s for s in samples if s.class_name == c], []) for c in names}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-normal", type=int, default=12, help="normal images per class for adapting")
    ap.add_argument("--n-good", type=int, default=20, help="normal test images per class")
    ap.add_argument("--n-bad", type=int, default=20, help="defective test images per class")
    ap.add_argument("--copies", type=int, default=2, help="drawn defective copies per normal image")
    ap.add_argument("--data-seed", type=int, default=1, help="seed of the test and adaptation images")
    ap.add_argument("--real", action="store_true", help="also the real photographs (scikit-image)")
    ap.add_argument("--work", default="runs/bench-adapt", help="runs folder (finished runs are reused)")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--smoke", action="store_true", help="two classes, one seed, few images, 1 epoch")
    a = ap.parse_args(argv)
    if a.smoke:
        a.seeds, a.n_normal, a.n_good, a.n_bad, a.n_boot = [0], 4, 3, 3, 200
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    cfg = Config.quick(**({"epochs": 1} if a.smoke else {}))
    bb = load_backbone(cfg)
    work = Path(a.work)
    cache = FeatureCache(bb)
    tmp = Path(tempfile.mkdtemp(prefix="bagclip-adapt-"))
    zs = {s: zero_shot_heads(cfg, bb, cache, work, s) for s in a.seeds}
    print("Zero-shot heads (trained on the auxiliary categories) vs heads adapted to the class from "
          f"{a.n_normal} normal images ({a.copies} drawn copies each); seeds {a.seeds}; "
          f"B - A in points, 95 % paired bootstrap interval. Ours, not the paper's.\n")
    for name, classes in sets(a, cfg.image_size, tmp).items():
        print(f"## {name}\n")
        print("| class | excluded kinds | image AUROC zero-shot | adapted | difference | pixel AUROC "
              "zero-shot | adapted | difference |")
        print("|---|---|---|---|---|---|---|---|")
        for cls, (normals, samples, exclude) in classes.items():
            per = {"zero-shot": [], "adapted": []}
            for s in a.seeds:
                out = work / f"adapted-{name.split()[0]}-{cls}-seed{s}"
                _run(out, lambda resume: adapt(normals, cls, out, cfg=cfg.replace(seed=s), init=zs[s],
                                               backbone=bb, copies=a.copies, exclude_kinds=exclude,
                                               resume=resume, cache=cache, progress=False))
                per["zero-shot"].append(scores_and_maps(zs[s], bb, cache, samples, cls))
                per["adapted"].append(scores_and_maps(out, bb, cache, samples, cls))
            labels = np.array([int(x.label) for x in samples])
            masks = np.stack([load_mask(x.mask_path, cfg.image_size).numpy() for x in samples])
            res = {k: Results.from_maps(np.stack([m for _, m in v]), masks, labels,
                                        scores=np.stack([sc for sc, _ in v])) for k, v in per.items()}
            cells = []
            for metric in ("image_auroc", "pixel_auroc"):
                c = compare(res["zero-shot"], res["adapted"], metric, n_boot=a.n_boot, seed=0)
                cells += [f"{100 * c.a:.1f}", f"{100 * c.b:.1f}",
                          f"{100 * c.diff:+.1f} [{100 * c.low:.1f}, {100 * c.high:.1f}] "
                          f"{'effect' if c.verdict == 'an effect' else 'no evidence'}"]
            print(f"| {cls} | {', '.join(exclude) or 'none (foreign generator)'} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main()

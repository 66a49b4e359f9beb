"""bagclip-mini, training-free, against the same architecture at random weights.

Two test sets, neither of which bagclip-mini saw in pretraining:
1. the synthetic benchmark's five target categories (brushed metal, concrete, carpet, screw,
   circuit board), drawn by `bagclip.data.synth` at 224 px;
2. `--real`: crops of real photographs shipped with scikit-image (brick, grass, gravel, coins,
   coffee), with defects from a generator written here and used nowhere else (Bezier brush
   strokes, patches of another photograph, noise blotches, a blurred bruise), masks exact.
   Needs `pip install scikit-image`.

Goals of bagclip-mini v2: image AUROC >= 80 and pixel AUROC >= 88 on set 1, image AUROC >= 75
on set 2. Prints per class and the mean over classes with a 95 % bootstrap interval (40 good
and 40 defective images a class by default: an AUROC from 1,600 pairs a class).

    python benchmarks/mini.py [--weights FILE] [--compare v1=FILE] [--real] [--vv]
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from bagclip import Config, load_backbone
from bagclip.data import load_dataset
from bagclip.data.synth import QUICK, TARGET_CLASSES, ensure_synth
from bagclip.inference import scorer
from bagclip.report import to_markdown
from bagclip.zeroshot import ZeroShot


# ----------------------------------------------------------------------------- real photos
def _stroke(rng, s):
    """A Bezier brush stroke mask (s, s) bool."""
    from PIL import ImageDraw

    p = rng.uniform(0.15, 0.85, (3, 2)) * s
    t = np.linspace(0, 1, 40)[:, None]
    pts = (1 - t) ** 2 * p[0] + 2 * (1 - t) * t * p[1] + t ** 2 * p[2]
    im = Image.new("L", (s, s), 0)
    ImageDraw.Draw(im).line([tuple(q) for q in pts], fill=255, width=int(rng.integers(2, 6)))
    return np.asarray(im) > 0


def _ellipse(rng, s, rmin=0.05, rmax=0.12):
    yy, xx = np.mgrid[0:s, 0:s]
    cy, cx = rng.uniform(0.2, 0.8, 2) * s
    ry, rx = rng.uniform(rmin, rmax, 2) * s
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def real_photo_set(root: Path, seed: int = 0, n_good: int = 8, n_bad: int = 8, size: int = 224) -> Path:
    """Write an MVTec-layout set of real-photo crops with foreign-generator defects."""
    from scipy import ndimage as ndi
    try:
        from skimage import data
    except ImportError:
        raise SystemExit("--real draws crops of scikit-image's photos: pip install -e '.[bench]'") from None

    photos = {"brick": data.brick(), "grass": data.grass(), "gravel": data.gravel(),
              "coins": data.coins(), "coffee": data.coffee()}
    donor = np.asarray(data.astronaut(), np.float64)
    rng = np.random.default_rng(seed)
    for cls, photo in photos.items():
        photo = np.asarray(photo, np.float64)
        photo = np.repeat(photo[..., None], 3, 2) if photo.ndim == 2 else photo[..., :3]
        H, W = photo.shape[:2]
        c = min(H, W) // 2
        for k in range(n_good + n_bad):
            y0, x0 = rng.integers(0, H - c), rng.integers(0, W - c)
            crop = np.asarray(Image.fromarray(photo[y0:y0 + c, x0:x0 + c].astype(np.uint8)).resize(
                (size, size), Image.BICUBIC), np.float64)
            if k < n_good:
                d = root / cls / "test" / "good"
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(crop.astype(np.uint8)).save(d / f"{k:03d}.png")
                continue
            kind = ("stroke", "patch", "blotch", "bruise")[k % 4]
            img = crop.copy()
            if kind == "stroke":
                m = _stroke(rng, size)
                img[m] = rng.choice([20.0, 235.0])
            elif kind == "patch":
                m = _ellipse(rng, size)
                dy, dx = rng.integers(0, donor.shape[0] - size, 2)
                img[m] = donor[dy:dy + size, dx:dx + size][m]
            elif kind == "blotch":
                m = _ellipse(rng, size, 0.04, 0.09)
                img[m] = np.clip(img[m] + rng.normal(0, 60, img[m].shape), 0, 255)
            else:
                m = _ellipse(rng, size, 0.06, 0.12)
                img[m] = ndi.gaussian_filter(img, (4, 4, 0))[m] * 0.75
            img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
            m = m & (img != crop.astype(np.uint8)).any(-1)
            d, g = root / cls / "test" / kind, root / cls / "ground_truth" / kind
            d.mkdir(parents=True, exist_ok=True)
            g.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{k:03d}.png")
            Image.fromarray(m.astype(np.uint8) * 255).save(g / f"{k:03d}_mask.png")
    return root


# ----------------------------------------------------------------------------- evaluation
def collect(cfg: Config, samples, bins: int = 2048) -> dict:
    """Per class: image scores and labels, and per-image pixel histograms for the bootstrap.

    Returns {class: dict(scores (n,), labels (n,), pos (n, bins), neg (n, bins), pixel_auroc)}:
    the exact pixel AUROC of the class (bagclip.metrics), and each image's defect / normal
    pixels counted in `bins` bins whose edges are the class's pixel-score quantiles (so that
    saturated maps near 0 or 1 still spread over the bins).
    """
    from bagclip.data import load_image, load_mask
    from bagclip.metrics import compute_metrics

    bb = load_backbone(cfg)
    fn = scorer(ZeroShot(bb), bb, cfg)
    out = {}
    for cls in dict.fromkeys(s.class_name for s in samples):
        group = [s for s in samples if s.class_name == cls]
        maps, scores = [], []
        for i in range(0, len(group), 16):
            imgs = torch.stack([load_image(s.image_path, cfg.image_size) for s in group[i:i + 16]])
            with torch.no_grad():
                m, sc = fn(imgs, cls)
            maps.append(torch.as_tensor(m).float().numpy())
            scores.append(torch.as_tensor(sc).double().numpy())
        maps, scores = np.concatenate(maps), np.concatenate(scores)
        masks = np.stack([load_mask(s.mask_path, cfg.image_size).numpy() if s.mask_path
                          else np.zeros(maps.shape[1:], np.float32) for s in group]) > 0.5
        labels = np.array([int(s.label) for s in group])
        exact = compute_metrics(scores, labels, maps, masks, class_names=[cls] * len(group))
        rng = np.random.default_rng(0)
        edges = np.unique(np.quantile(rng.choice(maps.ravel(), min(maps.size, 200_000), replace=False),
                                      np.linspace(0, 1, bins + 1)[1:-1]))
        b = np.searchsorted(edges, maps.reshape(len(group), -1))  # (n, S * S) bin of each pixel
        flat = masks.reshape(len(group), -1)
        pos = np.stack([np.bincount(bi[f], minlength=bins) for bi, f in zip(b, flat)])
        neg = np.stack([np.bincount(bi[~f], minlength=bins) for bi, f in zip(b, flat)])
        out[cls] = dict(scores=scores, labels=labels, pos=pos, neg=neg,
                        image_auroc=exact["image_auroc"], pixel_auroc=exact["pixel_auroc"])
    return out


def _auroc_hist(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUROC from score histograms (bins ascending): P(s+ > s-) + P(s+ = s-) / 2."""
    below = np.cumsum(neg) - neg  # negatives in lower bins
    return float((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    from scipy.stats import rankdata

    r = rankdata(scores)
    n1 = labels.sum()
    return float((r[labels == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * (len(labels) - n1)))


def bootstrap(per_class: dict, n: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean over classes of image and pixel AUROC (percent), with percentile intervals from a
    bootstrap over images (resampled within class and label; pixel AUROC from the resampled
    images' histograms). The point estimates are exact; the interval is the bootstrap's spread
    shifted onto them (the histogram's ties cost < 0.1 point)."""
    rng = np.random.default_rng(seed)
    img, pix = np.zeros((n, len(per_class))), np.zeros((n, len(per_class)))
    hist_point = []
    for j, d in enumerate(per_class.values()):
        lab = d["labels"]
        groups = [np.flatnonzero(lab == 0), np.flatnonzero(lab == 1)]
        hist_point.append(_auroc_hist(d["pos"].sum(0), d["neg"].sum(0)))
        for i in range(n):
            idx = np.concatenate([rng.choice(g, len(g)) for g in groups])
            img[i, j] = _auroc(d["scores"][idx], lab[idx])
            pix[i, j] = _auroc_hist(d["pos"][idx].sum(0), d["neg"][idx].sum(0))
    point_img = np.mean([d["image_auroc"] for d in per_class.values()])
    point_pix = np.mean([d["pixel_auroc"] for d in per_class.values()])
    q = [(1 - level) / 2, (1 + level) / 2]
    lo_i, hi_i = np.quantile(img.mean(1), q) - img.mean(1).mean() + point_img
    lo_p, hi_p = np.quantile(pix.mean(1), q) - pix.mean(1).mean() + point_pix
    return dict(image=(100 * point_img, 100 * lo_i, 100 * hi_i), pixel=(100 * point_pix, 100 * lo_p, 100 * hi_p))


def table(results: dict[str, dict]) -> str:
    """Per class and mean (with its 95 % bootstrap interval), image and pixel AUROC (percent)."""
    first = next(iter(results.values()))
    rows = {c: {} for c in [*first, "mean"]}
    for name, per_class in results.items():
        ci = bootstrap(per_class)
        for c, row in rows.items():
            if c == "mean":
                for k in ("image", "pixel"):
                    v, lo, hi = ci[k]
                    row[f"{name} {k} AUROC"] = f"{v:.1f} [{lo:.1f}, {hi:.1f}]"
            else:
                row[f"{name} image AUROC"] = f"{100 * per_class[c]['image_auroc']:.1f}"
                row[f"{name} pixel AUROC"] = f"{100 * per_class[c]['pixel_auroc']:.1f}"
    return to_markdown(pd.DataFrame.from_dict(rows, orient="index").rename_axis("class"))


def test_sets(seed: int = 1, n_good: int = 40, n_bad: int = 40, real: bool = False,
              size: int = QUICK["size"]) -> dict:
    """{title: samples}: the synthetic targets and, with `real`, the real-photo set, drawn at `size`."""
    root = ensure_synth(seed=seed, n_train=1, n_test_good=n_good, n_test_bad=n_bad,
                        categories=list(TARGET_CLASSES), size=size)
    sets = {"synthetic targets": load_dataset("synth", root, "test", classes=TARGET_CLASSES)}
    if real:
        tmp = Path(tempfile.mkdtemp(prefix="bagclip-real-"))
        sets["real photos, foreign defects"] = load_dataset("mvtec", real_photo_set(tmp, seed, n_good, n_bad, size), "test")
    return sets


def learning_curve(run_dir: Path, arch: dict, sets: dict, out_csv: Path) -> pd.DataFrame:
    """Zero-shot numbers of every snapshot of a pretraining run (OUT/snapshots/step*.safetensors),
    one row per (step, test set); rows already in `out_csv` are read back (resumable)."""
    done = pd.read_csv(out_csv) if out_csv.exists() else pd.DataFrame()
    rows = done.to_dict("records")
    for snap in sorted(Path(run_dir, "snapshots").glob("step*.safetensors")):
        step = int(snap.stem[4:])
        if rows and any(r["step"] == step for r in rows):
            continue
        cfg = Config.quick(pretrained=str(snap), **arch)
        for title, samples in sets.items():
            ci = bootstrap(collect(cfg, samples))
            rows.append(dict(step=step, set=title, **{f"{k}{s}": v for k in ("image", "pixel")
                                                      for s, v in zip(("", "_lo", "_hi"), ci[k])}))
        pd.DataFrame(rows).to_csv(out_csv, index=False)
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="bagclip-mini", help="shipped name or a .safetensors file")
    ap.add_argument("--arch", default="bagclip-mini", help="its architecture (open_clip config name)")
    ap.add_argument("--taps", type=int, nargs="+", default=None, help="tapped blocks (default: quick mode's)")
    ap.add_argument("--compare", nargs="*", default=[], metavar="NAME=FILE",
                    help="more weights of the same architecture beside it (e.g. v1=old.safetensors)")
    ap.add_argument("--n-good", type=int, default=40)
    ap.add_argument("--n-bad", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1, help="seed of the test images")
    ap.add_argument("--real", action="store_true", help="also the real-photo set (scikit-image)")
    ap.add_argument("--vv", action="store_true", help="also bagclip-mini with the V-V detail stream")
    ap.add_argument("--no-random", action="store_true", help="skip the random-weight reference")
    ap.add_argument("--curve", metavar="RUN_DIR", help="instead: the learning curve of a pretraining run's "
                    "snapshots, written to RUN_DIR/curve.csv and RUN_DIR/curve.png")
    a = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    sets = test_sets(a.seed, a.n_good, a.n_bad, a.real)
    arch = dict(backbone=a.arch, **({"taps": tuple(a.taps)} if a.taps else {}))
    if a.curve:
        from bagclip.viz import save_figure
        from bagclip.viz.curves import learning_curve_figure

        df = learning_curve(Path(a.curve), arch, sets, Path(a.curve) / "curve.csv")
        save_figure(learning_curve_figure(df), Path(a.curve) / "curve.png")
        print(to_markdown(df.round(1)))
        return
    cfgs = {"bagclip-mini": Config.quick(pretrained=a.weights, **arch)}
    for spec in a.compare:
        name, _, path = spec.partition("=")
        cfgs[name] = Config.quick(pretrained=path, **arch)
    if not a.no_random:
        cfgs["random weights"] = Config.quick(pretrained=None, **arch)
    if a.vv:
        cfgs["bagclip-mini vv"] = Config.quick(pretrained=a.weights, detail_attention="vv", **arch)
    for title, samples in sets.items():
        results = {n: collect(c, samples) for n, c in cfgs.items()}
        n_cls = len(next(iter(results.values())))
        print(f"\n## Training-free (WinCLIP-style) on {title}: {len(samples)} images in {n_cls} classes, "
              f"224 px; mean with its 95 % bootstrap interval over images\n")
        print(table(results), flush=True)


if __name__ == "__main__":
    main()

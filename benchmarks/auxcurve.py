"""The heads against the auxiliary set's size and diversity (issue 31)

    python benchmarks/auxcurve.py [--weights bagclip-mini-v3] [--classes 5 40] [--images 60 240 960]

The paper trains its heads on MVTec AD and VisA (27 classes, thousands of images) and tests on
other datasets; quick mode trains them on 60 images of the synthetic benchmark's five
auxiliary classes. How much does the size and the diversity of that set matter?

Auxiliary sets are drawn from the pretraining world (`bagclip.data.world`: 40 categories, never
the benchmark's five targets) under a seed pretraining never used (AUX_SEED), each scene as
its clean and its defective image with the defect's mask, an equal number of scenes per
category: for every (number of categories, number of images) of the grid, BAG-CLIP's heads are
trained with quick mode's settings (one seed), and so are the APRIL-GAN-style heads (no SAFR,
no SAG), measured on the synthetic targets and on the
real photographs with foreign defects (benchmarks/mini.py, 40 + 40 images a class). Each row
beside the quick auxiliary set's heads: the paired difference with its interval and verdict
(`bagclip.compare`). Every number is ours; never the paper's. Results are kept in
OUT/<row>.json (a rerun reads them back); the table goes to OUT/table.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import mini  # noqa: E402  benchmarks/mini.py: the two test sets

from bagclip import Config, load_backbone  # noqa: E402
from bagclip.artefacts import context  # noqa: E402
from bagclip.artefacts.context import METHODS  # noqa: E402
from bagclip.cache import FeatureCache  # noqa: E402
from bagclip.compare import Results, compare, estimate  # noqa: E402
from bagclip.data import load_dataset  # noqa: E402
from bagclip.data import world  # noqa: E402
from bagclip.data.protocol import protocol_data  # noqa: E402
from bagclip.evaluate import evaluate_recorded  # noqa: E402
from bagclip.runs import train_or_resume  # noqa: E402

AUX_SEED = 31  # bagclip-mini's pretraining draws the world of seed 0 (recipe*.json)
QUICK_ROW = "quick auxiliary set"


def world_aux(root: Path, n_classes: int, n_images: int, size: int = 224) -> Path:
    """An MVTec-layout set of n_images world images (clean + defective scene pairs, equal
    pairs per category) of the world's first n_classes categories; written once."""
    done = root / "done"
    if done.exists():
        return root
    cats = list(world.CATEGORIES)[:n_classes]  # the benchmark's five auxiliary drawings first
    pairs = max(1, n_images // 2)
    for j in range(pairs):
        cat = cats[j % len(cats)]
        p = world.make_pair(AUX_SEED, j, size, categories=[cat])
        good, bad = root / cat / "test" / "good", root / cat / "test" / p.defect
        gt = root / cat / "ground_truth" / p.defect
        for d in (good, bad, gt):
            d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(p.images[0]).save(good / f"{j:04d}.png")
        Image.fromarray(p.images[1]).save(bad / f"{j:04d}.png")
        Image.fromarray(((p.masks[1] >= 0.5) * 255).astype(np.uint8)).save(gt / f"{j:04d}_mask.png")
    done.write_text("")
    return root


APRIL = METHODS[context.APRIL]  # the APRIL-GAN-style heads as reproduce trains them: no SAFR, no SAG


def records(name: str, aux, cfg: Config, bb, cache, out: Path, sets: dict) -> dict:
    """{(heads, set): Results} of BAG-CLIP's and the APRIL-GAN-style heads trained on aux
    (checkpoints kept in out/runs)."""
    res = {}
    for heads, c in (("bagclip", cfg), ("april", cfg.replace(**APRIL))):
        model = train_or_resume(c, aux, bb, out / "runs" / f"{name}-{heads}", cache).model.eval()
        for s, samples in sets.items():
            res[heads, s] = Results.from_records([evaluate_recorded(model, c, bb, cache, samples)[1]])
    return res


def _cmp(a: Results, b: Results, metric: str) -> list:
    c = compare(a, b, metric, n_boot=1000, seed=0)
    return [100 * c.diff, 100 * c.low, 100 * c.high, c.verdict]


def row(name: str, n_classes: int, n_images: int, res: dict, base: dict | None, sets) -> dict:
    """One table row: BAG-CLIP's AUROCs, BAG-CLIP minus APRIL-GAN-style (pixel) and, beside the
    quick auxiliary set's heads (base), the paired differences."""
    r = {"row": name, "classes": n_classes, "images": n_images}
    for s in sets:
        rec = res["bagclip", s]
        for metric in ("image_auroc", "pixel_auroc"):
            e = estimate(rec, metric, n_boot=1000, seed=0)
            r[f"{s}|{metric}"] = [100 * e.value, 100 * e.low, 100 * e.high]
            if base is not None:
                r[f"{s}|{metric}|vs quick"] = _cmp(base["bagclip", s], rec, metric)
        r[f"{s}|bagclip - april pixel"] = _cmp(res["april", s], rec, "pixel_auroc")
    return r


def table(rows: list[dict], sets) -> str:
    lines = []
    for s in sets:
        lines += [f"### {s}", "",
                  "| auxiliary set | classes | images | BAG-CLIP image AUROC | BAG-CLIP pixel AUROC | image vs quick "
                  "| pixel vs quick | BAG-CLIP - APRIL-GAN-style pixel |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            cells = [f"{r[f'{s}|{m}'][0]:.1f} [{r[f'{s}|{m}'][1]:.1f}, {r[f'{s}|{m}'][2]:.1f}]"
                     for m in ("image_auroc", "pixel_auroc")]
            vs = [(lambda v: f"{v[0]:+.1f} [{v[1]:+.1f}, {v[2]:+.1f}] {v[3]}")(r[f"{s}|{m}|vs quick"])
                  if f"{s}|{m}|vs quick" in r else "-" for m in ("image_auroc", "pixel_auroc")]
            v = r[f"{s}|bagclip - april pixel"]
            vs.append(f"{v[0]:+.1f} [{v[1]:+.1f}, {v[2]:+.1f}] {v[3]}")
            lines.append(f"| {r['row']} | {r['classes']} | {r['images']} | " + " | ".join(cells + vs) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="bagclip-mini-v3", help="shipped name or .safetensors file")
    ap.add_argument("--classes", type=int, nargs="+", default=[5, 40])
    ap.add_argument("--images", type=int, nargs="+", default=[60, 240, 960])
    ap.add_argument("--out", default="runs/auxcurve")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if max(a.classes) > len(world.CATEGORIES) or min(a.classes) < 1:
        raise SystemExit(f"--classes: 1 to {len(world.CATEGORIES)} (the world's categories)")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    out = Path(a.out)
    t0 = time.time()
    cfg = Config.quick(pretrained=a.weights, seed=a.seed)
    sets = mini.test_sets(1, 40, 40, real=True)
    bb = load_backbone(cfg)
    cache = FeatureCache(bb, out / "cache")
    quick_aux, _ = protocol_data(False, image_size=cfg.image_size)
    base = records("quick", quick_aux, cfg, bb, cache, out, sets)
    rows = [row(QUICK_ROW, len({s.class_name for s in quick_aux}), len(quick_aux), base, None, sets)]
    for n_classes in a.classes:
        for n_images in a.images:
            name = f"world-{n_classes}c-{n_images}i"
            kept = out / f"{name}.json"
            if kept.exists():
                rows.append(json.loads(kept.read_text()))
                continue
            aux = load_dataset("mvtec", world_aux(out / "sets" / name, n_classes, n_images, cfg.image_size), "test")
            rows.append(row(name, n_classes, len(aux), records(name, aux, cfg, bb, cache, out, sets), base, sets))
            kept.write_text(json.dumps(rows[-1], indent=1))
            print(f"{name}: {len(aux)} images, {time.time() - t0:.0f} s so far", flush=True)
    text = (f"weights {a.weights}, seed {a.seed}; {sum(len(s) for s in sets.values())} target images; "
            f"{time.time() - t0:.0f} s\n\n" + table(rows, sets))
    Path(out, "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

"""Zero-shot heads against heads adapted to one class from its normal images, per class, with
paired bootstrap intervals (bagclip.compare).

Zero-shot heads: trained on the synthetic auxiliary categories (`reproduce --quick`'s recipe,
Config.quick() unless --preset, one run per seed). Adapted heads: `bagclip.adapt` from those heads, per class
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

    python benchmarks/adapt.py --real --write-docs   # both sets, the table into docs/adapt.md
    python benchmarks/adapt.py --size reduced --real --write-docs   # fewer seeds and images
    python benchmarks/adapt.py --smoke      # two classes, one seed, few images: the plumbing

Per-phase wall and CPU seconds go to stderr ("[time] ..."); docs/adapt.md says how long each
size takes.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bagclip import Config, load_backbone
from bagclip.config import PRESETS
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


def aux_set(cfg):
    """The synthetic auxiliary categories the zero-shot heads train on."""
    return load_dataset("synth", synth.ensure_synth(size=cfg.image_size), "test", classes=synth.AUX_CLASSES)


def replay_set(cfg, n: int, seed: int) -> list:
    """n of the auxiliary samples (half normal, half defective), drawn with `seed`: the
    rehearsal set adapted heads also train on (bagclip.adapt's replay)."""
    if n <= 0:
        return []
    aux, rng = aux_set(cfg), np.random.default_rng([seed, 7])
    pick = []
    for label, k in ((0, n // 2), (1, n - n // 2)):
        pool = [x for x in aux if int(x.label) == label]
        pick += [pool[i] for i in sorted(rng.choice(len(pool), min(k, len(pool)), replace=False))]
    return pick


def zero_shot_heads(cfg, bb, cache, work: Path, seed: int) -> Path:
    aux = aux_set(cfg)
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


DOC = Path(__file__).resolve().parent.parent / "docs" / "adapt.md"
BEGIN, END = "<!-- adapt-table:begin -->", "<!-- adapt-table:end -->"


class _Clock:
    """Wall and CPU seconds of each phase, printed to stderr (the numbers behind the run-time
    estimate in docs/adapt.md: CPU seconds do not depend on what else shares the machine)."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self, what: str) -> None:
        w, c = time.perf_counter(), time.process_time()
        print(f"[time] {what}: {w - self.wall:.0f} s wall, {c - self.cpu:.0f} s CPU", file=sys.stderr, flush=True)
        self.wall, self.cpu = w, c


def class_row(a, cfg, bb, cache, zs: dict, name: str, cls: str, normals, samples, exclude, clock) -> str:
    """One table row: zero-shot heads vs heads adapted to `cls`, image and pixel AUROC with the
    paired bootstrap interval over images and seeds."""
    per = {"zero-shot": [], "adapted": []}
    for s in a.seeds:
        out = Path(a.work) / f"adapted-{name.split()[0]}-{cls}-seed{s}"
        _run(out, lambda resume: adapt(normals, cls, out, cfg=cfg.replace(seed=s, **a.adapt_settings), init=zs[s],
                                       backbone=bb, copies=a.copies, exclude_kinds=exclude,
                                       resume=resume, cache=cache, progress=False, device=a.device,
                                       replay=a.replays[s]))
        per["zero-shot"].append(scores_and_maps(zs[s], bb, cache, samples, cls))
        per["adapted"].append(scores_and_maps(out, bb, cache, samples, cls))
        clock.lap(f"{name} / {cls} / seed {s}: adapt + predict")
    labels = np.array([int(x.label) for x in samples])
    masks = np.stack([load_mask(x.mask_path, cfg.image_size).numpy() for x in samples])
    res = {k: Results.from_maps(np.stack([m for _, m in v]), masks, labels,
                                scores=np.stack([sc for sc, _ in v])) for k, v in per.items()}
    cells = []
    for metric in ("image_auroc", "pixel_auroc"):
        c = compare(res["zero-shot"], res["adapted"], metric, n_boot=a.n_boot, seed=0)
        effect = "effect" if c.verdict == "an effect" else "no evidence"
        cells += [f"{100 * c.a:.1f}", f"{100 * c.b:.1f}",
                  f"{100 * c.diff:+.1f} [{100 * c.low:.1f}, {100 * c.high:.1f}] {effect}"]
        a.csv_rows.append({"set": name, "class": cls, "metric": metric, "zero_shot": round(100 * c.a, 2),
                           "adapted": round(100 * c.b, 2), "difference": round(100 * c.diff, 2),
                           "low": round(100 * c.low, 2), "high": round(100 * c.high, 2), "verdict": effect})
    return f"| {cls} | {', '.join(exclude) or 'none (foreign generator)'} | " + " | ".join(cells) + " |"


def tables(a, cfg, bb, cache, clock) -> list[str]:
    """The markdown: a header paragraph, then one table per test set."""
    tmp = Path(tempfile.mkdtemp(prefix="bagclip-adapt-"))
    zs = {}
    a.replays = {s: replay_set(cfg, a.replay, s) for s in a.seeds}  # drawn once, used by every class
    for s in a.seeds:
        zs[s] = zero_shot_heads(cfg, bb, cache, Path(a.work), s)
        clock.lap(f"zero-shot heads, seed {s}")
    lines = [f"Made by `{a.command}` ({'smoke test: plumbing only, numbers meaningless' if a.smoke else 'ours'}): "
             f"zero-shot heads (trained on the synthetic auxiliary categories) vs heads adapted to the "
             f"class from {a.n_normal} normal images ({a.copies} drawn copies each"
             f"{''.join(f', {k} {v}' for k, v in {**a.adapt_settings, **a.replay_note}.items())}); {a.n_good} normal + "
             f"{a.n_bad} defective test images per class; seeds {a.seeds}. AUROC in %, difference = "
             f"adapted - zero-shot in points with its 95 % paired bootstrap interval ({a.n_boot} "
             f"resamples of images and seeds). Ours, not the paper's.", ""]
    for name, classes in sets(a, cfg.image_size, tmp).items():
        lines += [f"### {name}", "",
                  "| class | excluded kinds | image AUROC zero-shot | adapted | difference | pixel AUROC "
                  "zero-shot | adapted | difference |", "|---|---|---|---|---|---|---|---|"]
        lines += [class_row(a, cfg, bb, cache, zs, name, cls, *v, clock) for cls, v in classes.items()]
        lines.append("")
    return lines


def write_docs(lines: list[str], doc: Path = DOC, rows: list[dict] = ()) -> Path:
    """Put the table between BEGIN and END in docs/adapt.md (the rest of the page is kept), and
    its numbers as docs/adapt.csv (one row per set x class x metric: what lesson 11 reads)."""
    if not doc.is_file():
        raise SystemExit(f"{doc}: no such page; give a markdown page holding {BEGIN} ... {END}")
    text = doc.read_text(encoding="utf-8")
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise SystemExit(f"{doc}: expected one {BEGIN} ... {END} pair to write the table between")
    if rows:  # after the page's check: never a CSV without its table
        import csv

        with open(doc.with_suffix(".csv"), "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    head, rest = text.split(BEGIN)
    tail = rest.split(END)[1]
    doc.write_text(head + BEGIN + "\n" + "\n".join(lines).rstrip() + "\n" + END + tail, encoding="utf-8")
    return doc


SIZES = {  # --size: (seeds, normal images for adapting, drawn copies of each, normal and defective test images per class)
    "full": ([0, 1, 2], 24, 4, 20, 20),  # 24 x 4: the best of four settings tried on --data-seed 2 (docs/adapt.md)
    "reduced": ([0, 1], 6, 2, 10, 10),
    "smoke": ([0], 4, 2, 3, 3),
}


def options(argv=None) -> argparse.Namespace:
    """The command line, resolved: the size's defaults filled in, the work folder named."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=SIZES, default="full",
                    help="full (default), reduced (fewer seeds and images; see docs/adapt.md for run "
                         "times), smoke (two classes, 1 epoch: the plumbing)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="override the size's seeds")
    ap.add_argument("--n-normal", type=int, default=None, help="normal images per class for adapting")
    ap.add_argument("--n-good", type=int, default=None, help="normal test images per class")
    ap.add_argument("--n-bad", type=int, default=None, help="defective test images per class")
    ap.add_argument("--copies", type=int, default=None, help="drawn defective copies per normal image")
    ap.add_argument("--lr", type=float, default=None, help="adaptation learning rate (default: the heads' own)")
    ap.add_argument("--epochs", type=int, default=None, help="adaptation epochs (default: the heads' own)")
    ap.add_argument("--preset", default="quick", choices=list(PRESETS), help="Config preset: quick (the shipped bagclip-mini, "
                    "CPU), full (the paper's ViT-L-14-336 with OpenAI weights: internet, a GPU), tiny, lab")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a Config "
                    "field of the preset, as the CLI's --set (e.g. pretrained=bagclip-mini-v3)")
    ap.add_argument("--device", default=None, help="e.g. cuda (default: the backbone's default)")
    ap.add_argument("--replay", type=int, default=0, help="auxiliary samples the adapted heads also "
                    "train on (rehearsal; default 0: the drawn set only)")
    ap.add_argument("--data-seed", type=int, default=1, help="seed of the test and adaptation images")
    ap.add_argument("--real", action="store_true", help="also the real photographs (scikit-image)")
    ap.add_argument("--work", default=None, help="runs folder, finished runs are reused (default "
                    "runs/bench-adapt, runs/bench-adapt-reduced, runs/bench-adapt-smoke)")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--smoke", action="store_true", help="the same as --size smoke")
    ap.add_argument("--write-docs", nargs="?", const=str(DOC), default=None, metavar="PAGE",
                    help=f"also write the table between the markers of PAGE (default "
                         f"{DOC.relative_to(DOC.parent.parent)})")
    a = ap.parse_args(argv)
    a.command = "python benchmarks/adapt.py " + " ".join(sys.argv[1:] if argv is None else argv)
    a.smoke = a.smoke or a.size == "smoke"
    seeds, n_normal, copies, n_good, n_bad = SIZES["smoke" if a.smoke else a.size]
    a.seeds = a.seeds or seeds
    a.work = a.work or ("runs/bench-adapt" + ("-smoke" if a.smoke else "-reduced" if a.size == "reduced" else "")
                        + "".join("-" + re.sub(r"[^A-Za-z0-9.]+", "-", kv) for kv in a.set))  # never another Config's runs
    a.n_normal, a.n_good, a.n_bad = a.n_normal or n_normal, a.n_good or n_good, a.n_bad or n_bad
    a.copies = a.copies or copies
    a.adapt_settings = {k: v for k, v in (("lr", a.lr), ("epochs", a.epochs)) if v is not None}
    a.csv_rows = []
    a.replay_note = {"replay of auxiliary samples": a.replay} if a.replay else {}
    if a.smoke:
        a.n_boot = min(a.n_boot, 200)
    return a


def config(a: argparse.Namespace) -> Config:
    """The preset's Config with the smoke test's one epoch and the --set overrides applied."""
    return Config.preset(a.preset, **({"epochs": 1} if a.smoke else {})).with_overrides(a.set)


def main(argv=None) -> None:
    a = options(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    clock = _Clock()
    cfg = config(a)
    bb = load_backbone(cfg, device=a.device)
    lines = tables(a, cfg, bb, FeatureCache(bb), clock)
    print("\n".join(lines))
    if a.write_docs:
        print(f"table written into {write_docs(lines, Path(a.write_docs), a.csv_rows)} and its .csv",
              file=sys.stderr)


if __name__ == "__main__":
    main()

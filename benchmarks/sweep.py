"""The price of a K/P sweep on cached features (issue 11's target: at most 3).

    ratio = wall time of an 11-run K/P sweep (K in 5..30 and P in 2..7, one seed, heads trained
            and evaluated on cached tokens)
            / (one backbone pass over the same images + one training run)

The denominator is what one run costs without a cache; a sweep that re-encoded every image for
every run would cost about 11 of them. Quick mode (bagclip-mini, the synthetic benchmark) by
default; each part is timed once, in this process, after a warm-up encode of one image.

    python benchmarks/sweep.py [--epochs N]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from bagclip import Config, load_backbone
from bagclip.cache import FeatureCache
from bagclip.data import protocol_data
from bagclip.evaluate import evaluate_cached
from bagclip.sweeps import run_settings
from bagclip.train import train

GRID = [("k", v) for v in (5, 10, 15, 20, 30)] + [("gcn_layers", v) for v in (2, 3, 4, 5, 6, 7)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None, help="default: Config.quick()'s")
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    cfg = Config.quick(**({"epochs": a.epochs} if a.epochs else {}))
    aux, targets = protocol_data(image_size=cfg.image_size)
    images = [s.image_path for s in aux] + [s.image_path for t in targets.values() for s in t]
    bb = load_backbone(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        cold = FeatureCache(bb, f"{tmp}/cold")
        cold.ensure(images[:1], progress=False)  # warm-up: first-call costs out of the timing
        t0 = time.perf_counter()
        cold.ensure(images[1:], progress=False)
        encode = time.perf_counter() - t0
        cache = FeatureCache(bb, f"{tmp}/cold")
        t0 = time.perf_counter()
        model = train(cfg, aux, bb, cache=cache, progress=False).model
        for samples in targets.values():
            evaluate_cached(model, cfg, bb, cache, samples)
        one_run = time.perf_counter() - t0
        settings = {f"{p}={v}": {p: v} for p, v in GRID}
        t0 = time.perf_counter()
        run_settings(cfg, settings, aux, targets, seeds=(0,), backbone=bb, cache=cache,
                     runs_root=f"{tmp}/runs", progress=True)
        sweep = time.perf_counter() - t0
    ratio = sweep / (encode + one_run)
    print(f"{len(images)} images, {cfg.backbone} at {cfg.image_size} px, {torch.get_num_threads()} threads")
    print(f"backbone pass {encode:.1f} s, one training run (+ evaluation) {one_run:.1f} s, "
          f"11-run sweep on cached features {sweep:.1f} s")
    print(f"ratio {ratio:.2f} (target <= 3): {'met' if ratio <= 3 else 'NOT met'}")


if __name__ == "__main__":
    main()

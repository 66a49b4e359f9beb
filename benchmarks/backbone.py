"""Backbone cost on this machine: time per image and peak memory, ViT-L-14-336 at 518 vs bagclip-tiny.

Measured 2026-11-28 on the 2-core CPU dev machine (other jobs running; median of 3):
    bagclip-tiny@224   0.013 s/image   ViT-L-14-336@518  10.4 s/image   (~800x)

Later performance goals are ratios against these numbers. Random weights (timing does not
depend on them). Run: python benchmarks/backbone.py [--repeats 3] [--skip-large]
"""
from __future__ import annotations

import argparse
import resource

import torch

import bagclip
from bagclip import Config
from bagclip.cost import median_ms, params_m


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(cfg: Config, repeats: int, device: str) -> dict:
    bb = bagclip.load_backbone(cfg, device=device)
    x = torch.randn(1, 3, cfg.image_size, cfg.image_size, device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ms = median_ms({"encode": lambda: bb.encode(x)}, torch.device(device), repeats)["encode"]
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else peak_rss_mb()
    params = params_m(bb.visual)
    del bb
    return dict(name=f"{cfg.backbone}@{cfg.image_size}", s=ms / 1e3, peak=peak, params=params)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    rows = [measure(Config.quick(), a.repeats, a.device)]
    if not a.skip_large:
        rows.append(measure(Config(pretrained=None), a.repeats, a.device))
    mem = "peak CUDA MB" if a.device == "cuda" else "peak RSS MB (process)"
    print(f"device={a.device} threads={torch.get_num_threads()} batch=1 median of {a.repeats}")
    print(f"{'backbone':28s} {'s/image':>9s} {mem:>22s} {'visual params (M)':>18s}")
    for r in rows:
        print(f"{r['name']:28s} {r['s']:9.3f} {r['peak']:22.0f} {r['params']:18.1f}")
    if len(rows) == 2:
        print(f"ratio large/tiny time: {rows[1]['s'] / rows[0]['s']:.0f}x")


if __name__ == "__main__":
    main()

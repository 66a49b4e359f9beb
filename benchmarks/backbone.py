"""Backbone cost on this machine: time per image and peak memory, ViT-L-14-336 at 518 vs bagclip-tiny.

Measured 2026-11-28 on the 2-core CPU dev machine (other jobs running; median of 3):
    bagclip-tiny@224   0.013 s/image   ViT-L-14-336@518  10.4 s/image   (~800x)

Later performance goals are ratios against these numbers. Random weights (timing does not
depend on them). Run: python benchmarks/backbone.py [--repeats 3] [--skip-large]
(one image, one unpadded forward: as when these numbers were taken, before encode padded to 8).

--predict (issue 32, one image costs one forward): at the paper's size (ViT-L-14-336 at 518,
random weights), one image through `predict` (detector loaded, the class's text encoded by a
first call: what each further part costs) against one unpadded forward of the same image
(goal <= 1.25x), the first call with the text encoding apart, and a folder of 20 images through
`predict` against the same with the padded encode of before (goal <= 1x). One run prints every
ratio beside the CPU's name. Takes about 20 min on a CPU; alone on the machine:
    python benchmarks/backbone.py --predict
    python benchmarks/backbone.py --predict --arch bagclip-tiny --size 112   # plumbing check
"""
from __future__ import annotations

import argparse
import contextlib
import resource
import tempfile
from pathlib import Path

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
    ms = median_ms({"encode": lambda: bb.encode(x, micro_batch=None)}, torch.device(device), repeats)["encode"]
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else peak_rss_mb()
    params = params_m(bb.visual)
    del bb
    return dict(name=f"{cfg.backbone}@{cfg.image_size}", s=ms / 1e3, peak=peak, params=params)


ARCHS = {"ViT-L-14-336": lambda size: Config(pretrained=None, image_size=size or 518),
         "bagclip-mini": lambda size: Config.quick(pretrained=None, **({"image_size": size} if size else {})),
         "bagclip-tiny": lambda size: Config.tiny(**({"image_size": size} if size else {}))}


def write_images(folder: Path, n: int, size: int) -> list[Path]:
    """n seeded noise PNGs of size x size (the model's input size: no resize in the timing)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = [folder / f"{i:03d}.png" for i in range(n)]
    for p in paths:
        Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(p)
    return paths


@contextlib.contextmanager
def padded_encode(bb):
    """`bb.encode` as before issue 32: every call pads its last micro-batch (pad ignored)."""
    from bagclip.backbone import ENCODE_BATCH, Backbone

    bb.encode = lambda images, micro_batch=ENCODE_BATCH, pad=True: Backbone.encode(bb, images, micro_batch)
    try:
        yield
    finally:
        del bb.encode


def predict_cost(cfg: Config, device: str, repeats: int, folder_images: int, warmup: int) -> None:
    """Print the --predict table (module docstring) from one run."""
    from bagclip.cost import times_ms
    from bagclip.data import load_image
    from bagclip.experiments import machine
    from bagclip.inference import predict
    from bagclip.model import build_heads

    bb = bagclip.load_backbone(cfg, device=device)
    heads = build_heads(cfg, bb).to(bb.device).eval()
    dev = torch.device(device)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_images(Path(tmp), folder_images, cfg.image_size)
        x1 = load_image(paths[0], cfg.image_size)[None].to(bb.device)
        kw = dict(cfg=cfg, backbone=bb, model=heads, class_name="screw")
        one = lambda: predict(paths[0], **kw)  # noqa: E731

        def cold():
            bb._text_cache.clear()  # the class's prompt ensemble encoded again, as a fresh process does
            one()

        def one_padded():
            with padded_encode(bb):
                one()

        t = times_ms({"forward": lambda: bb.encode(x1, micro_batch=None), "predict": one,
                      "predict, text encoded": cold, "predict, padded (before)": one_padded},
                     dev, repeats, warmup)

        def folder_padded():
            with padded_encode(bb):
                predict(Path(tmp), **kw)

        f = times_ms({"folder": lambda: predict(Path(tmp), **kw), "folder, padded (before)": folder_padded},
                     dev, 1, 0)
    med = {k: sorted(v)[len(v) // 2] / 1e3 for k, v in {**t, **f}.items()}
    print(f"{machine(device)}")
    print(f"{cfg.backbone}@{cfg.image_size}, random weights, untrained heads; one image: median of "
          f"{repeats} after {warmup} warm-up; folder of {folder_images}: one run each")
    for k, v in med.items():
        print(f"  {k:32s} {v:9.3f} s")
    print(f"ratio predict / forward (one image; goal <= 1.25): {med['predict'] / med['forward']:.3f}")
    print(f"ratio predict with its text encoding / forward: {med['predict, text encoded'] / med['forward']:.3f}")
    print(f"ratio predict padded (before) / predict: {med['predict, padded (before)'] / med['predict']:.3f}")
    print(f"ratio folder / folder padded (before) ({folder_images} images; goal <= 1): "
          f"{med['folder'] / med['folder, padded (before)']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--predict", action="store_true", help="predict's cost against one unpadded forward")
    ap.add_argument("--arch", choices=sorted(ARCHS), default="ViT-L-14-336", help="--predict's backbone")
    ap.add_argument("--size", type=int, default=None, help="--predict's input size (default: the arch's)")
    ap.add_argument("--folder-images", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()
    if a.predict:
        predict_cost(ARCHS[a.arch](a.size), a.device, a.repeats, a.folder_images, a.warmup)
        return
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

"""Table 5 on a GPU: latency and FPS of the paper's setting (ViT-L-14-336 at 518 px, random
weights of the architecture: cost does not depend on weights), with the paper's batch of one and
with the best batch, in float32 and in bfloat16 (Config.backbone_precision and
heads_precision, i.e. torch.autocast).

    python benchmarks/gpu.py                 # needs CUDA; prints a Markdown table, writes CSV
    python benchmarks/gpu.py --batches 1 8 32 --repeats 10 --out runs/gpu.csv
    python benchmarks/gpu.py --device cpu --quick --batches 1 2 --repeats 1   # a smoke test

Goal (issue 11): at least 3x the paper's 8.22 FPS on one modern GPU. The paper's number is
quoted from its Table 5 (one A6000); ours are measured here.
"""
from __future__ import annotations

import argparse
import sys

import pandas as pd
import torch

from bagclip import Config
from bagclip.cost import hardware, inference_cost
from bagclip.files import atomic_write_text
from bagclip.report import number, to_markdown

PAPER_FPS = 8.22  # quoted: the paper's Table 5, BAG-CLIP, batch 1, A6000


def measure(cfg: Config, batches, repeats: int, precisions, device: str = "cuda") -> pd.DataFrame:
    rows = []
    for precision in precisions:  # the Config's switches: backbone and heads at this precision
        c = cfg.replace(backbone_precision=precision, heads_precision=precision)
        for b in batches:
            try:
                r = inference_cost(c, device=device, repeats=repeats, batch=b).iloc[0]
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                print(f"batch {b} ({precision}): out of memory", file=sys.stderr)
                continue
            rows.append({"precision": precision, "batch": b, "ms_per_image": r.inference_ms, "fps": r.fps,
                         "backbone_ms": r.backbone_ms, "heads_ms": r.heads_ms,
                         "vs_paper_fps (8.22, quoted)": r.fps / PAPER_FPS})
            print(f"{precision:>9} batch {b:>3}: {r.fps:8.1f} images/s", file=sys.stderr)
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--precision", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"],
                    help="Config.backbone_precision / heads_precision to measure")
    ap.add_argument("--out", default="runs/gpu_table5.csv")
    ap.add_argument("--device", default="cuda", help="cuda (the measurement) or cpu (a smoke test)")
    ap.add_argument("--quick", action="store_true", help="Config.quick() (bagclip-mini at 224 px), not the paper's")
    a = ap.parse_args(argv)
    if a.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit("benchmarks/gpu.py needs a CUDA GPU (none visible); "
                             "--device cpu --quick runs it as a smoke test")
        torch.backends.cuda.matmul.allow_tf32 = True
    df = measure(Config.quick() if a.quick else Config(), a.batches, a.repeats, a.precision, a.device)
    if df.empty:
        raise SystemExit("every batch ran out of memory; try --batches 1")
    if a.quick:  # bagclip-mini at 224 px is not the paper's model: no ratio to its FPS
        df = df.drop(columns=[c for c in df.columns if c.startswith("vs_paper")])
    atomic_write_text(a.out, df.to_csv(index=False))
    best = df.loc[df.groupby("precision").fps.idxmax()]
    print(f"measured on: {hardware(a.device)}{' (Config.quick(), not the paper setting)' if a.quick else ''}; "
          f"the paper: {PAPER_FPS} FPS on one A6000 (quoted)\n")
    print(to_markdown(df, index=False, fmt=number))
    print("best batch per precision:\n" + to_markdown(best, index=False, fmt=number))
    one = df[(df.batch == 1) & (df.precision == "float32")].fps.max()
    goal = ("not comparable with the paper's FPS (--quick)" if a.quick else
            f"= {df.fps.max() / PAPER_FPS:.1f}x the paper's (goal >= 3x)")
    print(f"batch of one, float32: {one:.1f} FPS; best: {df.fps.max():.1f} FPS {goal}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

"""bagclip-mini variants: do BAG-CLIP's heads have something to fix? (issue 31)

    python benchmarks/variants.py v2=bagclip-mini v3=runs/mini-v3/weights.safetensors [--out runs/variants]

For each backbone weights file (same architecture, quick mode's taps), on two test sets that no
backbone saw in pretraining (benchmarks/mini.py: the synthetic benchmark's five target classes
and crops of real photographs with defects from another generator, 40 + 40 images a class):

- training-free (WinCLIP-style, `ZeroShot`): image AUROC; pixel AUROC from the raw tapped tokens
  (ln_post + proj, compared with the text) and from the value-value stream (`detail_attention="vv"`);
- a linear probe on the tapped tokens (logistic regression on the four taps' concatenated tokens,
  trained on the auxiliary set's patch labels): is the defect in the tokens at all?
- BAG-CLIP's heads and the APRIL-GAN-style heads (no SAFR, no SAG) trained on the quick
  auxiliary set (`protocol_data`), one seed: image / pixel AUROC;
- the gap that matters: heads minus the raw tokens' training-free pixel AUROC, as
  `bagclip.compare`'s paired bootstrap interval over images with its verdict.

Every number is ours, on synthetic pretraining; never the paper's. Results are kept in
OUT/<name>.json (rerun: read back); the table is printed and written to OUT/table.md.
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
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import mini  # noqa: E402  benchmarks/mini.py: the two test sets

from bagclip import Config, load_backbone  # noqa: E402
from bagclip.artefacts import context  # noqa: E402
from bagclip.artefacts.context import METHODS  # noqa: E402
from bagclip.backbone import Tokens  # noqa: E402
from bagclip.cache import FeatureCache  # noqa: E402
from bagclip.compare import Results, compare, estimate  # noqa: E402
from bagclip.data import load_mask  # noqa: E402
from bagclip.data.protocol import protocol_data  # noqa: E402
from bagclip.evaluate import evaluate_recorded  # noqa: E402
from bagclip.model import Output  # noqa: E402
from bagclip.runs import train_or_resume  # noqa: E402
from bagclip.zeroshot import ZeroShot  # noqa: E402

OURS, APRIL = "BAG-CLIP heads", "APRIL-GAN-style heads"
HEADS = {OURS: METHODS[context.OURS], APRIL: METHODS[context.APRIL]}  # the settings reproduce trains


class LinearProbe(nn.Module):
    """Logistic regression on the concatenated tapped tokens of a patch, (B, L, N, W) -> a map.

    Fitted by `fit` (scikit-learn, balanced classes) on auxiliary patches; has the heads' call
    contract (forward(tokens, text) -> Output), so the kit's evaluators score it like any head.
    """

    def __init__(self, n_taps: int, width: int, size: int):
        super().__init__()
        self.lin = nn.Linear(n_taps * width, 1)
        self.size = size

    @staticmethod
    def features(patches: torch.Tensor) -> torch.Tensor:
        """(B, L, N, W) -> (B, N, L * W), each tap's token standardised (layer norm, no affine)."""
        p = F.layer_norm(patches.float(), patches.shape[-1:])
        return p.permute(0, 2, 1, 3).flatten(2)

    def fit(self, X: np.ndarray, y: np.ndarray, seed: int = 0) -> "LinearProbe":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=0.1, class_weight="balanced", max_iter=2000, random_state=seed).fit(X, y)
        with torch.no_grad():
            self.lin.weight.copy_(torch.as_tensor(lr.coef_, dtype=torch.float32))
            self.lin.bias.copy_(torch.as_tensor(lr.intercept_, dtype=torch.float32))
        return self

    @torch.no_grad()
    def forward(self, tokens: Tokens, text: torch.Tensor) -> Output:
        B, L, N, _ = tokens.patches.shape
        G = int(round(N ** 0.5))
        p = torch.sigmoid(self.lin(self.features(tokens.patches)))[..., 0].view(B, 1, G, G)
        m = F.interpolate(p, size=(self.size, self.size), mode="bilinear", align_corners=False)[:, 0]
        score = m.flatten(1).max(1).values
        layer = torch.stack([1 - m, m], 1)[:, None]  # (B, 1, 2, S, S)
        return Output(m, score, layer, score)


def probe_for(cfg: Config, backbone, cache, aux) -> LinearProbe:
    """A `LinearProbe` fitted on the auxiliary images' patches: abnormal at >= 50 % mask cover,
    normal at 0, the rest left out."""
    entries = cache.ensure([s.image_path for s in aux])
    X, y = [], []
    patch = cfg.image_size // backbone.grid
    for i in range(0, len(aux), 16):
        tok = cache.load_batch(entries[i:i + 16])
        feats = LinearProbe.features(tok.patches)  # (b, N, L * W)
        for s, f in zip(aux[i:i + 16], feats):
            m = load_mask(s.mask_path, cfg.image_size) if s.mask_path else torch.zeros(cfg.image_size, cfg.image_size)
            cover = F.avg_pool2d(m[None, None].float(), patch).flatten()  # (N,)
            keep = (cover >= 0.5) | (cover == 0)
            X.append(f[keep].numpy())
            y.append((cover[keep] >= 0.5).numpy())
    _, L, _, W = tok.patches.shape
    return LinearProbe(L, W, cfg.image_size).fit(np.concatenate(X), np.concatenate(y))


def measure(name: str, weights: str, out: Path, sets: dict, seed: int = 0, overrides=()) -> dict:
    """Every row of one backbone (see the module docstring); kept in out/<name>.json.
    `overrides`: `--set KEY=VALUE` strings applied to the quick Config (e.g. image_size=448)."""
    done = out / f"{name}.json"
    if done.exists():
        return json.loads(done.read_text())
    t0 = time.time()
    cfg = Config.quick(pretrained=weights, seed=seed).with_overrides(overrides)
    aux, _ = protocol_data(False, image_size=cfg.image_size)
    bb = load_backbone(cfg)
    cache = FeatureCache(bb, out / "cache")
    vv_cfg = cfg.replace(detail_attention="vv")
    vv_bb = load_backbone(vv_cfg)
    vv_cache = FeatureCache(vv_bb, out / "cache")
    detectors = {"training-free": (ZeroShot(bb), cfg, bb, cache),
                 "training-free, vv stream": (ZeroShot(vv_bb), vv_cfg, vv_bb, vv_cache),
                 "linear probe": (probe_for(cfg, bb, cache, aux), cfg, bb, cache)}
    for title, changes in HEADS.items():
        c = cfg.replace(**changes)
        run = out / "runs" / f"{name}-{'-'.join(f'{k}{v}' for k, v in changes.items()) or 'bagclip'}"
        detectors[title] = (train_or_resume(c, aux, bb, run, cache).model.eval(), c, bb, cache)
    res: dict = {"name": name, "weights": weights, "aux_images": len(aux)}
    for set_name, samples in sets.items():
        recs = {d: Results.from_records([evaluate_recorded(m, c, b, k, samples)[1]])
                for d, (m, c, b, k) in detectors.items()}
        row = {}
        for d, r in recs.items():
            for metric in ("image_auroc", "pixel_auroc"):
                e = estimate(r, metric, n_boot=1000, seed=0)
                row[f"{d}|{metric}"] = [100 * e.value, 100 * e.low, 100 * e.high]
        for d in (OURS, APRIL, "linear probe", "training-free, vv stream"):
            c = compare(recs["training-free"], recs[d], "pixel_auroc", n_boot=1000, seed=0)
            row[f"gap {d}"] = [100 * c.diff, 100 * c.low, 100 * c.high, c.verdict]
        c = compare(recs[APRIL], recs[OURS], "pixel_auroc", n_boot=1000, seed=0)
        row["BAG-CLIP - APRIL pixel"] = [100 * c.diff, 100 * c.low, 100 * c.high, c.verdict]
        c = compare(recs["training-free"], recs[OURS], "image_auroc", n_boot=1000, seed=0)
        row["BAG-CLIP - training-free image"] = [100 * c.diff, 100 * c.low, 100 * c.high, c.verdict]
        res[set_name] = row
    res["wall_s"] = round(time.time() - t0)
    out.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(res, indent=1))
    return res


def _ci(v) -> str:
    return f"{v[0]:.1f} [{v[1]:.1f}, {v[2]:.1f}]"


def table(rows: list[dict]) -> str:
    """One markdown table per test set: a row per backbone, the AUROCs, the gaps and verdicts."""
    lines = []
    sets = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    for s in sets:
        lines += [f"\n**{s}** (AUROC %, 95 % bootstrap interval over images; gaps paired, one seed)\n",
                  "| backbone | training-free image | raw pixel | vv pixel | linear probe pixel | "
                  "APRIL-GAN-style image / pixel | BAG-CLIP image / pixel | BAG-CLIP - raw pixel | "
                  "APRIL - raw pixel | BAG-CLIP - APRIL pixel | BAG-CLIP - training-free image |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            d = r[s]
            gap = lambda k: f"{_ci(d[k])}: {d[k][3].replace(' either way', '')}"  # noqa: E731
            lines.append(
                f"| {r['name']} | {_ci(d['training-free|image_auroc'])} | {_ci(d['training-free|pixel_auroc'])} | "
                f"{_ci(d['training-free, vv stream|pixel_auroc'])} | {_ci(d['linear probe|pixel_auroc'])} | "
                f"{d[APRIL + '|image_auroc'][0]:.1f} / {d[APRIL + '|pixel_auroc'][0]:.1f} | "
                f"{d[OURS + '|image_auroc'][0]:.1f} / {d[OURS + '|pixel_auroc'][0]:.1f} | "
                f"{gap('gap ' + OURS)} | {gap('gap ' + APRIL)} | {gap('BAG-CLIP - APRIL pixel')} | "
                f"{gap('BAG-CLIP - training-free image')} |")
    return "\n".join(lines)


CURVE = {"training-free image": "training-free|image_auroc", "raw pixel": "training-free|pixel_auroc",
         "BAG-CLIP pixel": f"{OURS}|pixel_auroc", "gap BAG-CLIP - raw": f"gap {OURS}",
         "gap APRIL - raw": f"gap {APRIL}"}


def curve(run_dir: Path, sets: dict) -> "pd.DataFrame":
    """Every snapshot of a pretraining run (RUN_DIR/snapshots/step*.safetensors) measured as a
    row of the table; long-form (step, set, quantity, value, lo, hi) in RUN_DIR/gap-curve.csv."""
    import pandas as pd

    rows = []
    for snap in sorted(Path(run_dir, "snapshots").glob("step*.safetensors")):
        r = measure(snap.stem, str(snap), Path(run_dir) / "gap-curve", sets)
        for s in sets:
            for q, key in CURVE.items():
                v = r[s][key]
                rows.append(dict(step=int(snap.stem[4:]), set=s, quantity=q, value=v[0], lo=v[1], hi=v[2]))
    df = pd.DataFrame(rows)
    df.to_csv(Path(run_dir) / "gap-curve.csv", index=False)
    return df


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="*", metavar="NAME=FILE", help="shipped name or .safetensors file")
    ap.add_argument("--curve", metavar="RUN_DIR", help="instead: every snapshot of a pretraining run, into "
                    "RUN_DIR/gap-curve.csv and RUN_DIR/gap-curve.png")
    ap.add_argument("--out", default="runs/variants")
    ap.add_argument("--n-good", type=int, default=40)
    ap.add_argument("--n-bad", type=int, default=40)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a field of the quick Config, as the CLI's --set (e.g. image_size=448: "
                         "the test sets are then drawn at that size too); give each --set its own --out")
    a = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    size = Config.quick().with_overrides(a.set).image_size
    sets = mini.test_sets(1, a.n_good, a.n_bad, real=True, size=size)
    if a.curve:
        from bagclip.viz import save_figure
        from bagclip.viz.curves import gap_curve_figure

        df = curve(Path(a.curve), sets)
        save_figure(gap_curve_figure(df), Path(a.curve) / "gap-curve.png")
        print(df.round(1).to_string(index=False))
        return
    rows = []
    for spec in a.weights:
        name, _, path = spec.partition("=")
        rows.append(measure(name, path or name, Path(a.out), sets, overrides=a.set))
        print(f"{name}: measured in {rows[-1]['wall_s']} s", flush=True)
    text = table(rows)
    Path(a.out, "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

"""bagclip-mini v2: the short recipe runs, each the same wall-clock budget, then the zero-shot check.

    python benchmarks/recipes.py [NAME ...] [--out runs/recipes] [--budget-min 10]

Each variant is one `pretrain` run from scratch (seed 0, its own warm-up and cosine schedule)
into OUT/NAME, exported to OUT/NAME/weights.safetensors, then scored training-free by
benchmarks/mini.py's evaluation (synthetic targets and real photographs, 40 + 40 images a
class, mean with a 95 % bootstrap interval). Results go to OUT/NAME/result.json and a table
is printed. Steps are fixed per variant, not times: the budget is converted to steps with the
s/step each setting took alone on the 2-core machine (measured, see STEP_S), so another job
on the cores slows a run but does not change its numbers. Rerun to resume; done variants are
read back.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import mini  # noqa: E402  benchmarks/mini.py: the test sets and the bootstrap

ARCHS = {  # research architectures (open_clip configs); the shipped one is model_configs/bagclip-mini.json
    "mini-10x256": dict(embed_dim=128, vision_cfg=dict(image_size=224, layers=10, width=256, head_width=64,
                                                       patch_size=16),
                        text_cfg=dict(context_length=32, vocab_size=49408, width=96, heads=4, layers=4)),
}
TAPS = {"bagclip-mini": (2, 4, 6, 8), "mini-10x256": (3, 5, 8, 10)}
# Seconds per step at 160 px, bfloat16, 2 threads, measured alone (trainer + drawing amortised):
# trainer 0.43 / 0.80 s, drawing 24 pairs 0.29 s once per `reuse` steps.
STEP_S = {"bagclip-mini": 0.43, "mini-10x256": 0.80}
DRAW_S = 0.29

STAGE2 = dict(w_proto=1.0, w_mil=1.0, min_contrast=12)  # the v1 file's second-stage additions
VARIANTS = {  # name -> PretrainConfig fields (on top of the fast defaults: bfloat16, 2 threads, reuse 4)
    "all-losses": dict(STAGE2),  # v1's two stages' losses in one stage, from step 0
    "all+tie": dict(STAGE2, w_tie=1.0),  # + the class token's state logit follows the top patches
    "wide-10x256": dict(STAGE2, arch="mini-10x256"),  # a bigger image tower, fewer steps
    "v1-losses": dict(),  # v1's first stage: clip + state + dense + probe
    "no-reuse": dict(STAGE2, reuse=1),  # every batch freshly drawn: fewer, more varied steps
    # v3 (issue 31): the patch losses never go through the shipped proj. v2's losses and schedule,
    # 600 steps each (about 13 min on 2 cores at v2's 1.14 s a 160 px step, the last 10 % at 224 px)
    "v3-own": dict(STAGE2, w_tie=1.0, reuse=1, patch_proj="own", steps=600, warmup=100, final_share=0.1),
    "v3-own-tie3": dict(STAGE2, w_tie=3.0, reuse=1, patch_proj="own", steps=600, warmup=100, final_share=0.1),
}


def register_archs() -> None:
    import open_clip

    d = Path(tempfile.mkdtemp(prefix="bagclip-archs-"))
    for name, cfg in ARCHS.items():
        (d / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(d)


def settings(name: str, budget_s: float) -> dict:
    v = dict(VARIANTS[name])
    arch = v.get("arch", "bagclip-mini")
    reuse = v.get("reuse", 4)
    steps = v.pop("steps", None) or int(budget_s / (STEP_S[arch] + DRAW_S / reuse))  # fixed, or from the budget
    return dict(v, arch=arch, taps=TAPS[arch], steps=steps, reuse=reuse, seed=0, save_every=50)


def run(name: str, out: Path, budget_s: float, sets: dict) -> dict:
    from bagclip import Config
    from bagclip.pretrain import PretrainConfig, export_weights, pretrain

    folder = out / name
    done = folder / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    s = settings(name, budget_s)
    cfg = PretrainConfig(**s)
    t0 = time.time()
    _, history = pretrain(cfg, folder)
    wall = time.time() - t0
    export_weights(folder, folder / "weights.safetensors", {"variant": name})
    qc = Config.quick(backbone=s["arch"], pretrained=str(folder / "weights.safetensors"), taps=s["taps"])
    res = dict(name=name, settings=s, wall_s=round(wall), final=history[-1],
               last50={k: round(sum(h[k] for h in history[-50:]) / len(history[-50:]), 4) for k in history[-1]})
    for title, samples in sets.items():
        res[title] = mini.bootstrap(mini.collect(qc, samples))
    done.write_text(json.dumps(res, indent=1))
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", default=list(VARIANTS))
    ap.add_argument("--out", default="runs/recipes")
    ap.add_argument("--budget-min", type=float, default=10.0)
    a = ap.parse_args(argv)
    register_archs()
    sets = mini.test_sets(real=True)
    rows = [run(n, Path(a.out), 60 * a.budget_min, sets) for n in a.names]
    print("| variant | steps | wall | synthetic image | synthetic pixel | real image | real pixel | L_state | L_dense |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [f"{v[0]:.1f} [{v[1]:.1f}, {v[2]:.1f}]" for t in ("synthetic targets", "real photos, foreign defects")
                 for v in (r[t]["image"], r[t]["pixel"])]
        print(f"| {r['name']} | {r['settings']['steps']} | {r['wall_s'] / 60:.0f} min | {' | '.join(cells)} | "
              f"{r['last50']['state']:.3f} | {r['last50']['dense']:.3f} |")


if __name__ == "__main__":
    main()

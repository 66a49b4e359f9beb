"""bagclip-mini pretraining throughput: float32 / bfloat16 x 1 / 2 torch threads, then the whole loop.

    python benchmarks/pretrain_speed.py [--steps 8] [--recipe FILE]

Part 1 times the trainer alone (losses + backward + clip + AdamW, the shipped recipe's batch of
24 pairs at 160 px, batches drawn beforehand) for float32 / bfloat16 autocast x 1 / 2 threads.
Part 2 times the whole `pretrain` loop, drawing included: the shipped recipe (float32, 1 thread,
1 drawing worker) and the new one (bagclip/weights/recipe.json unless --recipe), in images per
second so that a change of batch size counts fairly. The last line ends with the ratio.
Run it alone: another torch job on the two cores halves every number.
bfloat16 is fast only on CPUs with native bfloat16 (AVX512_BF16 or AMX, `bagclip.precision`);
where it is emulated (e.g. AVX2-only cores, where a step takes minutes) its rows are skipped and
the new recipe is timed at float32, unless --allow-emulated.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from bagclip.precision import autocast, cpu_has_native_bf16

from bagclip.pretrain import PretrainConfig, WorldBatches, _optimizer, build_model, losses, pretrain

RECIPE = Path(__file__).resolve().parents[1] / "bagclip" / "weights" / "recipe.json"
SHIPPED = dict(threads=1, workers=1, precision="float32", reuse=1)  # how the v1 file was trained


def trainer_step(precision: str, threads: int, steps: int, warm: int = 2) -> float:
    """Median seconds per trainer step on pre-drawn batches."""
    from open_clip.loss import ClipLoss

    torch.set_num_threads(threads)
    cfg = PretrainConfig(precision=precision, threads=threads)
    model, tok = build_model(cfg)
    model.train()
    model.state_probe = torch.nn.Linear(model.text_projection.shape[1], 2)
    opt = _optimizer(model, cfg)
    data = WorldBatches(cfg, int(model.visual.conv1.kernel_size[0]), tok)
    batches = [data[t] for t in range(warm + steps)]
    times, loss = [], ClipLoss()
    for x, cover, tokens in batches:
        t0 = time.perf_counter()
        with autocast(precision, "cpu"), sdpa_kernel([SDPBackend.MATH]):  # as `pretrain` runs it
            parts = losses(model, cfg, x, cover, tokens, loss, model.state_probe)
        opt.zero_grad(set_to_none=True)
        parts["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
    times = sorted(times[warm:])
    return times[len(times) // 2]


def loop_rate(settings: dict, steps: int, warm: int = 3) -> tuple[float, float]:
    """(seconds per step, images per second) of the whole `pretrain` loop, drawing included,
    from the end of step `warm` to the end of step warm + steps (start-up excluded)."""
    cfg = PretrainConfig(**{**settings, "steps": 10_000, "save_every": 10_000, "snapshot_every": 0})
    stamps = {}
    with tempfile.TemporaryDirectory() as d:
        pretrain(cfg, d, progress=False, stop_after=warm + steps,
                 on_step=lambda s, _: stamps.__setitem__(s, time.perf_counter()))
    dt = (stamps[warm + steps] - stamps[warm]) / steps
    return dt, 2 * cfg.batch_pairs / dt


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per setting")
    ap.add_argument("--recipe", default=str(RECIPE), help="JSON of PretrainConfig fields (the new recipe)")
    ap.add_argument("--allow-emulated", action="store_true",
                    help="time bfloat16 even where the CPU emulates it (minutes per step)")
    a = ap.parse_args(argv)
    native = cpu_has_native_bf16()
    skip_bf16 = native is False and not a.allow_emulated
    print(f"CPU: {torch.backends.cpu.get_cpu_capability()}, native bfloat16: "
          f"{ {True: 'yes', False: 'no (emulated)', None: 'unknown'}[native]}, torch {torch.__version__}\n")
    print("## Trainer step alone (shipped model and batch: 24 pairs at 160 px; batches drawn beforehand)\n")
    print("| precision | threads | s/step | images/s |\n|---|---|---|---|")
    for precision in ("float32", "bfloat16"):
        for threads in (1, 2):
            if precision == "bfloat16" and skip_bf16:
                print(f"| {precision} | {threads} | skipped: emulated on this CPU (--allow-emulated) | |")
                continue
            s = trainer_step(precision, threads, a.steps)
            print(f"| {precision} | {threads} | {s:.3f} | {48 / s:.1f} |", flush=True)
    recipe = {k: v for k, v in json.loads(Path(a.recipe).read_text()).items() if not k.startswith("_")}
    recipe = {k: v for k, v in recipe.items() if k in PretrainConfig.__dataclass_fields__}
    label = "new"
    if skip_bf16 and recipe.get("precision") == "bfloat16":
        recipe, label = {**recipe, "precision": "float32"}, "new, at float32 (bfloat16 emulated here)"
    print("\n## Whole loop, drawing included (steps at the low resolution)\n")
    print("| recipe | settings | s/step | images/s |\n|---|---|---|---|")
    base = loop_rate(SHIPPED, a.steps)
    print(f"| shipped v1 | {SHIPPED} | {base[0]:.3f} | {base[1]:.1f} |", flush=True)
    keys = ("arch", "batch_pairs", "low_size", "precision", "threads", "workers", "reuse")
    new = loop_rate(recipe, a.steps)
    print(f"| {label} | { {k: recipe[k] for k in keys if k in recipe} } | {new[0]:.3f} | {new[1]:.1f} |")
    print(f"\n{label} recipe vs shipped float32 one-thread, images per second: {new[1] / base[1]:.2f}x")


if __name__ == "__main__":
    main()

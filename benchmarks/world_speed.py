"""Is a faster world worth a new world version? Drawing's share of a pretraining step, measured.

    python benchmarks/world_speed.py [--steps 6] [--recipe bagclip/weights/recipe-v3.json]

Issue 31 asks for a vectorised world "if it draws several times faster". This measures, in one
run on this machine:
1. drawing one step's batch (`batch_pairs` scenes at `low_size`, `make_pair` as the trainer calls
   it) and where its time goes (cProfile: the smoothed-noise fields, the photometric nuisances,
   the rest);
2. the same batch with the noise fields smoothed by FFT instead of `scipy.ndimage.gaussian_filter`
   (exact for `mode="wrap"` up to the filter's 4-sigma truncation; used only for sigma >= 2,
   where the truncated filter is slow): the cheap change a new world version could make;
3. the whole `pretrain` loop of the recipe (drawing included, `reuse` and `workers` as recipe), with
   the world as shipped and with the FFT noise, so the last line is the end-to-end ratio.
The FFT world is this benchmark's alone (patched in for the timing, never shipped): its scenes
differ from the shipped world's in the last digits, so shipping it means a new world version.
Run it alone: another torch job on the two cores changes every time (never a ratio's direction).
"""
from __future__ import annotations

import argparse
import cProfile
import contextlib
import json
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from bagclip.data import synth_defects, synth_draw, world, world_draw
from bagclip.data.world import make_pair
from bagclip.precision import cpu_has_native_bf16

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrain_speed import loop_rate  # noqa: E402  (the loop's timing, one definition)

RECIPE = Path(__file__).resolve().parents[1] / "bagclip" / "weights" / "recipe-v3.json"
_MODULES = (synth_draw, synth_defects, world, world_draw)  # every module holding `noise` by name


def fft_noise(rng, s: int, sigma, norm: bool = True) -> np.ndarray:
    """`synth_draw.noise` with the periodic Gaussian applied in Fourier space when sigma >= 2."""
    white = rng.standard_normal((s, s))
    if min(np.atleast_1d(sigma)) < 2:  # a short kernel: the direct filter is already cheap
        n = ndi.gaussian_filter(white, sigma, mode="wrap")
    else:
        n = np.fft.irfft2(ndi.fourier_gaussian(np.fft.rfft2(white), sigma, n=s), s=white.shape)
    return (n - n.mean()) / (n.std() + 1e-8) if norm else n


@contextlib.contextmanager
def world_noise(fn):
    """Every world module draws its noise fields with `fn` inside the block."""
    saved = [m.noise for m in _MODULES]
    for m in _MODULES:
        m.noise = fn
    try:
        yield
    finally:
        for m, f in zip(_MODULES, saved):
            m.noise = f


def draw_seconds(pairs: int, size: int, reps: int, start: int = 10_000) -> float:
    """Median seconds to draw `pairs` scenes at `size` (fresh indices each rep, as the trainer)."""
    times = []
    for r in range(reps):
        t0 = time.perf_counter()
        for i in range(pairs):
            make_pair(0, start + r * pairs + i, size)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def shares(pairs: int, size: int) -> dict[str, float]:
    """Share of drawing time in the noise fields, the photometric nuisances and the rest."""
    prof = cProfile.Profile()
    prof.enable()
    for i in range(4 * pairs):
        make_pair(0, 20_000 + i, size)
    prof.disable()
    stats = pstats.Stats(prof).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
    total = sum(v[2] for v in stats.values())
    cum = {k[2]: v[3] for k, v in stats.items() if k[0].endswith(("synth_draw.py", "world.py"))}
    out = {"noise fields": cum.get("noise", 0.0) / total, "photometric": cum.get("_photometric", 0.0) / total}
    out["the rest"] = 1 - sum(out.values())
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="timed loop steps per world")
    ap.add_argument("--reps", type=int, default=5, help="timed batch draws per world")
    ap.add_argument("--recipe", default=str(RECIPE), help="JSON of PretrainConfig fields")
    a = ap.parse_args(argv)
    recipe = {k: v for k, v in json.loads(Path(a.recipe).read_text()).items() if not k.startswith("_")}
    if recipe.get("precision") == "bfloat16" and cpu_has_native_bf16() is False:
        recipe["precision"] = "float32"  # emulated bfloat16 would time the emulation, not the world
    from bagclip.pretrain import PretrainConfig

    cfg = PretrainConfig(**{k: v for k, v in recipe.items() if k in PretrainConfig.__dataclass_fields__})
    B, S = cfg.batch_pairs, cfg.low_size
    torch.set_num_threads(cfg.threads)
    print(f"CPU: {torch.backends.cpu.get_cpu_capability()}, native bfloat16: {cpu_has_native_bf16()}; "
          f"recipe {Path(a.recipe).name}: {B} pairs at {S} px, precision {cfg.precision}, "
          f"workers {cfg.workers}, reuse {cfg.reuse}\n")
    make_pair(0, 0, S)  # the first scene pays one-off set-up (fonts, vocabulary)
    print("## Where drawing goes (cProfile, cumulative share of make_pair)\n")
    for k, v in shares(B, S).items():
        print(f"- {k}: {100 * v:.0f} %")
    d_ship = draw_seconds(B, S, a.reps)
    with world_noise(fft_noise):
        d_fft = draw_seconds(B, S, a.reps)
    print(f"\n## One step's batch ({B} pairs at {S} px), median of {a.reps}\n")
    print(f"- shipped world: {d_ship:.3f} s\n- FFT noise fields: {d_fft:.3f} s ({d_ship / d_fft:.2f}x faster)")
    print(f"\n## The whole pretrain loop, drawing included ({a.steps} steps after 3 warm-up)\n")
    step_ship, _ = loop_rate(recipe, a.steps)
    with world_noise(fft_noise):
        step_fft, _ = loop_rate(recipe, a.steps)
    print(f"- shipped world: {step_ship:.3f} s/step, drawing {100 * d_ship / step_ship:.0f} % of it")
    print(f"- FFT noise fields: {step_fft:.3f} s/step")
    print(f"- a world drawn for free would give at most {step_ship / (step_ship - d_ship):.2f}x")
    print(f"\nFFT world vs shipped, whole loop: {step_ship / step_fft:.2f}x")


if __name__ == "__main__":
    main()

# %% md
# # 07. Ablation: solutions to the exercises
#
# *The instructor's key for lesson 07. It reads the lesson's runs back (shared with
# `bagclip reproduce --quick`; trained here only if neither ran), then answers each exercise
# with a cell that computes the answer. The answers are whatever these cells print on this
# machine. Quick mode: well under a minute once the lesson's runs exist (exercise 2's variant,
# one seed, is made by `bagclip reproduce --quick` too; trained here only if it has not run).*
# %% [parameters]
MODE = "quick"
# %%
from bagclip import course
from bagclip.compare import Results, compare, describe
from bagclip.model import build_heads, parameter_table
from bagclip.sweeps import ABLATIONS

lab = course.setup(MODE)
cfg, bb = lab.cfg, lab.backbone
SEEDS = (0, 1, 2) if MODE != "full" else (0, 1, 2, 3, 4)
FULL, ds = "full BAG-CLIP", list(lab.targets)[0]
df, res = course.grid(lab, ABLATIONS, SEEDS)
print(lab.label(), "| seeds:", SEEDS, "| target set:", ds)
# %% md
# ## Exercise 1: two seeds instead of three
# The same runs, the first two seeds only: each interval's width (points) with three and with
# two seeds, and whether the verdict changes.
# %%
def first(r: Results, n: int) -> Results:
    """The first n seeds of a setting (a new Results: its own bootstrap values)."""
    cut = lambda x: None if x is None else x[:n]  # noqa: E731
    return Results(r.labels, r.classes, cut(r.scores), cut(r.neg), cut(r.pos), cut(r.w), r.regions,
                   cut(r.lo), cut(r.hi), r.bins, r.fpr_limit)

for variant in [v for v in ABLATIONS if v != FULL]:
    for metric in ("image_auroc", "pixel_auroc"):
        c3 = compare(res[FULL][ds], res[variant][ds], metric, n_boot=500)
        c2 = compare(first(res[FULL][ds], 2), first(res[variant][ds], 2), metric, n_boot=500)
        print(f"{variant:24s} {metric:12s} width {100 * (c3.high - c3.low):4.1f} (3 seeds) vs "
              f"{100 * (c2.high - c2.low):4.1f} (2 seeds); verdict {c3.verdict!r} vs {c2.verdict!r}")
# %% md
# ## Exercise 2: one SAG for all taps (`share_sag`)
# Parameters from `parameter_table` for both; accuracy from one seed of the new variant
# against the full model's same seed (one seed: the interval covers the images only).
# %%
shared = cfg.replace(share_sag=True)
for name, c in (("per-tap SAGs", cfg), ("shared SAG", shared)):
    t = parameter_table(build_heads(c, bb)).set_index("module")
    print(f"{name}: heads {1e3 * t.loc['heads total', 'trainable_m']:.1f} K trainable parameters, of which "
          f"SAG {1e3 * t[t.index.str.startswith('SAG')].trainable_m.sum():.1f} K")
_, r2 = course.grid(lab, {FULL: {}, "shared SAG": {"share_sag": True}}, SEEDS[:1])
for metric in ("pixel_auroc", "image_auroc"):
    print(describe(compare(r2[FULL][ds], r2["shared SAG"][ds], metric, n_boot=500), "sharing one SAG"))
# %% md
# ## Exercise 3: `detail_attention = "vv"`
# It changes the backbone's tokens, which every setting of a grid shares through one feature
# cache, so the grid refuses it before training anything; the error says why.
# %%
from bagclip.runs import run_settings

try:
    run_settings(cfg, {"vv": {"detail_attention": "vv"}}, lab.aux, lab.targets, backbone=bb, cache=lab.cache)
except ValueError as e:
    print("refused:", e)
print("run it as its own protocol instead: a Config with detail_attention='vv', its own backbone and "
      "cache, e.g. `bagclip reproduce --quick --set detail_attention=vv --out runs/vv --figures figures-vv`")

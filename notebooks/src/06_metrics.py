# %% md
# # 06. The metrics, on a worked example, then the paper's tables
#
# *About 30 minutes, exercises 35 more. Difficulty: beginner to intermediate (lesson 00 first;
# the tables use the heads of lesson 05, trained once and shared).*
#
# **Learning objectives.** After this lesson you can
# 1. compute AUROC, AP and F1-max of ten scores by hand and know each one's chance level;
# 2. explain the F1-max *threshold* (used by the failure gallery, lesson 09);
# 3. compute the pixel metrics and AUPRO (per-region overlap up to FPR 0.3) on two tiny maps,
#    and see why AUPRO with 200 thresholds and a rescaled axis (used by some repositories) is a
#    different number;
# 4. lay our results out as the paper's Tables 1-2, beside its quoted values, and read the
#    per-image score distributions that an image AUROC sums up.
# %% [parameters]
MODE = "quick"
# %%
import itertools

import numpy as np
import pandas as pd

from bagclip import analysis as an, course, viz
from bagclip.aupro_cflow import aupro_cflow200
from bagclip.metrics import aupro, binary_metrics, compute_metrics

lab = course.setup(MODE)
print(lab.label(), "| device:", lab.device)
# %% md
# ## 1. Ten images
# Four anomalous (1), six normal (0), and a detector's scores:
# %%
scores = np.array([0.91, 0.80, 0.74, 0.62, 0.55, 0.47, 0.40, 0.33, 0.20, 0.12])
labels = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0])
pd.DataFrame({"score": scores, "label": labels}).T
# %% md
# **AUROC** = probability that a random anomalous image scores above a random normal one
# (ties count 1/2). Count the 4 x 6 = 24 pairs:
# %%
pos, neg = scores[labels == 1], scores[labels == 0]
wins = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg))
auroc_hand = wins / (len(pos) * len(neg))
# **AP** = mean over the anomalous images of the precision at their rank
order = np.argsort(-scores)
hits = np.cumsum(labels[order])
ap_hand = np.mean([hits[r] / (r + 1) for r in range(len(scores)) if labels[order][r]])
# **F1-max** = best F1 over all thresholds "score >= t"
f1s = [2 * hits[r] / ((r + 1) + labels.sum()) for r in range(len(scores))]
f1_hand = max(f1s)
m = binary_metrics(scores, labels)
assert abs(m["auroc"] - auroc_hand) < 1e-12 and abs(m["ap"] - ap_hand) < 1e-12 and abs(m["f1_max"] - f1_hand) < 1e-12
thr, f1 = an.f1_max_threshold(scores, labels)
assert abs(f1 - f1_hand) < 1e-12 and thr == scores[order][int(np.argmax(f1s))]
chance = an.chance_levels(labels)
pd.DataFrame({"by hand": [auroc_hand, ap_hand, f1_hand], "package": [m["auroc"], m["ap"], m["f1_max"]],
              "chance level": [chance["auroc"], chance["ap"], chance["f1_max"]]},
             index=["AUROC", "AP", "F1-max"]).round(3)
# %% md
# Chance levels depend on the share p of anomalous images: a detector that ignores the image has
# AUROC 0.5, AP = p, and F1-max = 2p / (1 + p) (call *everything* anomalous). With p = 0.4 that
# is already 0.57: an F1-max near it means nothing. Pixel metrics are far more imbalanced (p is
# the defect area, often < 1%), which is why pixel F1-max and AP are small numbers in Table 2.
# %%
viz.plot_metric_example(scores, labels, threshold=thr)
# %%
# chance levels, checked by simulation: random scores on the same labels
rng = np.random.default_rng(0)
sim = pd.DataFrame([binary_metrics(rng.random(400), np.tile(labels, 40)) for _ in range(200)]).mean()
assert abs(sim["auroc"] - 0.5) < 0.02 and abs(sim["ap"] - chance["ap"]) < 0.03
print("simulated random detector:", sim.round(3).to_dict(), " F1-max of a random detector exceeds",
      round(chance["f1_max"], 3), "only by luck")
# %% md
# ## 2. Pixels and regions: AUPRO on two tiny maps
# Pixel AUROC, AP and F1-max treat every pixel alike, so one large defect dominates. AUPRO
# averages the overlap *per connected region*, so a small defect counts as much as a large one,
# and only the low false-positive range (FPR <= 0.3) is integrated, divided by 0.3.
# %%
masks = np.zeros((2, 8, 8), bool)
masks[0, 1:5, 1:5] = True      # a large defect (16 px)
masks[1, 6, 6] = True          # a tiny one (1 px)
maps = np.zeros((2, 8, 8))
maps[0, 1:5, 1:5] = 0.9        # the large one found
maps[1] = 0.05 * np.arange(64).reshape(8, 8) / 64  # the tiny one missed
cm = compute_metrics([1, 1], [1, 1], maps, masks)
print(f"pixel AUROC {cm['pixel_auroc']:.3f}  vs  AUPRO {cm['pixel_aupro']:.3f}")
print(f"MVTec AUPRO {aupro(maps, masks):.3f}  vs  200-threshold, rescaled variant {aupro_cflow200(maps, masks):.3f}: "
      f"{'the same' if abs(aupro(maps, masks) - aupro_cflow200(maps, masks)) < 5e-4 else 'not the same'} "
      f"number (docs/metrics.md)")
# %% md
# Where does the AUPRO come from? Lower the threshold step by step: each step flags more normal
# pixels (FPR, the share of normal pixels at or above it) and covers more of each region
# (overlap, the share of its pixels at or above it). PRO is the mean overlap over the regions;
# AUPRO is the area under PRO against FPR up to 0.3, divided by 0.3. By hand:
# %%
from scipy import ndimage as ndi

normal_px = maps[~masks]
regions = {}
for i in range(len(maps)):
    lab_i, n_i = ndi.label(masks[i])
    for r in range(1, n_i + 1):
        regions[f"image {i}, region {r} ({int((lab_i == r).sum())} px)"] = maps[i][lab_i == r]
curve = pd.DataFrame([{"threshold": t, "FPR": float((normal_px >= t).mean()),
                       **{name: float((v >= t).mean()) for name, v in regions.items()}}
                      for t in np.unique(maps)[::-1]])
curve["PRO"] = curve[list(regions)].mean(axis=1)
inside = curve[curve.FPR <= 0.3]
fpr_steps = np.diff(np.r_[0.0, inside.FPR.values, 0.3])  # each step's FPR width, the last up to 0.3
aupro_hand = float(np.sum(fpr_steps * np.r_[inside.PRO.values, inside.PRO.values[-1]]) / 0.3)
assert abs(aupro_hand - cm["pixel_aupro"]) < 1e-6  # the package's AUPRO, by hand
found_at = {name: float(curve.FPR[curve[name] >= 0.5].min()) for name in regions}
change = np.flatnonzero(np.diff(inside.PRO.values))  # the steps where PRO moves, and the ends
display(inside.iloc[sorted({0, len(inside) - 1, *change, *(change + 1)})].round(3))
for name, f in found_at.items():
    print(f"{name}: at least half covered from FPR {f:.3f} on")
late = [n for n, f in found_at.items() if f > 0]
print(f"so up to FPR {max(found_at.values()):.3f} PRO is {inside.PRO.iloc[0]:.2f} "
      f"({len(late)} of {len(regions)} regions not yet found), then {inside.PRO.iloc[-1]:.2f}: "
      f"AUPRO {cm['pixel_aupro']:.3f} = the mean PRO over FPR 0 to 0.3, while pixel AUROC "
      f"{cm['pixel_auroc']:.3f} counts every pixel alike")
assert cm["pixel_aupro"] < cm["pixel_auroc"]
# %% md
# ## 3. The tables: ours in the paper's layout, its values beside them (quoted)
# Trained heads (shared by the lessons), evaluated zero-shot on the target categories, laid out as
# Tables 1 (image) and 2 (pixel). The paper's BAG-CLIP rows are quoted from its tables: real data,
# ViT-L-14-336 at 518 px. **In quick and lab mode ours are synthetic-benchmark numbers: not
# comparable**, only the layout is.
# %%
from IPython.display import Markdown

from bagclip.evaluate import evaluate_cached
from bagclip.report import paper_layout

heads = course.trained_heads(lab).model  # trained for the config's default epochs (no override)
print(f"heads trained for {lab.cfg.epochs} epochs (Config default {type(lab.cfg)().epochs}, "
      f"{MODE} preset {lab.cfg.epochs})")
set_scores = {name: np.zeros(len(samples)) for name, samples in lab.targets.items()}


def keeper(name):  # evaluate_cached's on_batch(indices, maps, scores): keep every image's score
    def keep(idx, maps, sc):
        set_scores[name][idx] = sc.numpy()
    return keep


results = {name: [evaluate_cached(heads, lab.cfg, lab.backbone, lab.cache, samples, on_batch=keeper(name))]
           for name, samples in lab.targets.items()}
Markdown(f"*{lab.label()}*\n\n" + paper_layout(results, lab.cfg.image_size))
# %%
per_class = pd.DataFrame(next(iter(results.values()))[0]["per_class"]).T.mul(100).round(1)
viz.table_figure(per_class, f"per class, percent - {lab.label()}")
# %% md
# ## 4. Behind an image AUROC: the per-image scores, normal against defective
# An image AUROC is one number per class; the scores it ranks are a distribution per group.
# One panel per class: the image scores of its normal images (blue) and its defective ones
# (red), on bins shared by every panel, with the F1-max threshold over all target images
# dashed (`viz.score_distributions_figure`, also used for figures). The cell after it prints
# each class's medians and image AUROC from these scores.
# %%
target = lab.target
img_scores = np.concatenate([set_scores[name] for name in lab.targets])  # the tables' scores, in target's order
img_labels = np.array([int(s.label) for s in target])
img_classes = [s.class_name for s in target]
thr_all, _ = an.f1_max_threshold(img_scores, img_labels)
viz.score_distributions_figure(img_scores, img_labels, img_classes, threshold=thr_all,
                               title=f"per-image scores on the target classes - {lab.label()}")
# %%
rows = []
for cls in dict.fromkeys(img_classes):
    sel = np.array(img_classes) == cls
    rows.append({"class": cls, "normal median": np.median(img_scores[sel & (img_labels == 0)]),
                 "defective median": np.median(img_scores[sel & (img_labels == 1)]),
                 "image AUROC": binary_metrics(img_scores[sel], img_labels[sel])["auroc"]})
dist = pd.DataFrame(rows).set_index("class")
display(dist.round(3))
overlap = dist.index[dist["defective median"] <= dist["normal median"]].tolist()
print(f"classes whose typical defective image scores no higher than their typical normal one: "
      f"{overlap or 'none'}; lowest image AUROC: {dist['image AUROC'].idxmin()} "
      f"({dist['image AUROC'].min():.3f})")
# %% md
# ## Summary
# - AUROC counts correctly ordered pairs; AP averages precision at the anomalous ranks; F1-max
#   takes the best threshold, which the failure gallery reuses.
# - Know the chance level before reading a number: 0.5 for AUROC, p for AP, 2p/(1+p) for F1-max.
# - AUPRO weighs regions equally and stops at FPR 0.3: the hand table shows which region is
#   found at which FPR; the 200-threshold variant is a different number.
# - An image AUROC summarises two score distributions per class; look at them before reading it.
#
# ## Exercises
# Solutions: `notebooks/solutions/06_metrics.ipynb`.
# 1. *(5 min, easy)* Swap the scores of the 3rd and 4th images. Which metrics change, and by how much?
# 2. *(10 min, easy)* Add 100 easy normal images scoring 0.0. What happens to AUROC, AP and
#    F1-max, and why?
# 3. *(10 min, medium)* In the AUPRO example, make the large defect 4 times larger (in area):
#    does AUPRO move? Does pixel AUROC?
# 4. *(10 min, medium)* In the score distributions, pick the class with the lowest image
#    AUROC: what share of its normal images score above its defective median?

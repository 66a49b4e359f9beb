# %% md
# # 06. The metrics, on a worked example, then the paper's tables
#
# **Learning objectives.** After this lesson you can
# 1. compute AUROC, AP and F1-max of ten scores by hand and know each one's chance level;
# 2. explain the F1-max *threshold* (used by the failure gallery, lesson 09);
# 3. compute the pixel metrics and AUPRO (per-region overlap up to FPR 0.3) on two tiny maps,
#    and see why AUPRO with 200 thresholds and a rescaled axis (used by some repositories) is a
#    different number;
# 4. lay our results out as the paper's Tables 1-2, beside its quoted values.
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
print(f"pixel AUROC {cm['pixel_auroc']:.3f} (most defect pixels are found)  vs  AUPRO {cm['pixel_aupro']:.3f} "
      f"(half the regions are missed)")
print(f"MVTec AUPRO {aupro(maps, masks):.3f}  vs  200-threshold, rescaled variant {aupro_cflow200(maps, masks):.3f}: "
      f"not the same number (docs/metrics.md)")
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

heads = course.trained_heads(lab).model
results = {name: [evaluate_cached(heads, lab.cfg, lab.backbone, lab.cache, samples)] for name, samples in lab.targets.items()}
Markdown(f"*{lab.label()}*\n\n" + paper_layout(results, lab.cfg.image_size))
# %%
per_class = pd.DataFrame(next(iter(results.values()))[0]["per_class"]).T.mul(100).round(1)
viz.table_figure(per_class, f"per class, percent - {lab.label()}")
# %% md
# ## Summary
# - AUROC counts correctly ordered pairs; AP averages precision at the anomalous ranks; F1-max
#   takes the best threshold, which the failure gallery reuses.
# - Know the chance level before reading a number: 0.5 for AUROC, p for AP, 2p/(1+p) for F1-max.
# - AUPRO weighs regions equally and stops at FPR 0.3; the 200-threshold variant is not comparable.
#
# ## Exercises
# 1. Swap the scores of the 3rd and 4th images. Which metrics change, and by how much?
# 2. Add 100 easy normal images scoring 0.0. What happens to AUROC, AP and F1-max, and why?
# 3. In the AUPRO example, make the large defect 4 times larger: does AUPRO move? Does pixel AUROC?

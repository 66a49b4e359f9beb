# %% md
# # 06. The metrics: solutions to the exercises
#
# *The instructor's key for lesson 06. It rebuilds the lesson's worked examples (and, for the
# last exercise, the shared trained heads' image scores), then answers each exercise with a
# cell that computes the answer. The answers are whatever these cells print.*
# %% [parameters]
MODE = "quick"
# %%
import numpy as np
import pandas as pd

from bagclip import course
from bagclip.metrics import binary_metrics, compute_metrics

scores = np.array([0.91, 0.80, 0.74, 0.62, 0.55, 0.47, 0.40, 0.33, 0.20, 0.12])
labels = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0])
base = binary_metrics(scores, labels)
keys = ["auroc", "ap", "f1_max"]


def compare(new: dict, what: str) -> pd.DataFrame:
    out = pd.DataFrame({"lesson": [base[k] for k in keys], what: [new[k] for k in keys]}, index=keys)
    out["change"] = out[what] - out["lesson"]
    return out  # unrounded: the asserts below compare to 1e-12 (display rounds)
# %% md
# ## Exercise 1: swap the 3rd and 4th scores
# Image 3 is normal (0.74), image 4 anomalous (0.62): after the swap the anomalous one ranks
# above it. AUROC counts pairs: exactly one pair changes order, 1 of 4 x 6 = 24.
# %%
swapped = scores.copy()
swapped[[2, 3]] = swapped[[3, 2]]
t1 = compare(binary_metrics(swapped, labels), "swapped")
display(t1.round(4))
assert abs(t1.loc["auroc", "change"] - 1 / 24) < 1e-12
print("changed:", t1.index[t1.change.abs() > 1e-12].tolist(), "| unchanged:", t1.index[t1.change.abs() <= 1e-12].tolist())
# %% md
# ## Exercise 2: 100 easy normal images at 0.0
# They rank below every anomalous image: AUROC gains 4 x 100 correctly ordered pairs; the
# precision at each anomalous image's rank is unchanged (nothing new ranks above it), so AP
# and F1-max at the best threshold stay where they were.
# %%
more_s, more_l = np.r_[scores, np.zeros(100)], np.r_[labels, np.zeros(100, int)]
t2 = compare(binary_metrics(more_s, more_l), "with 100 easy normals")
display(t2.round(4))
pos, neg = (labels == 1).sum(), (labels == 0).sum()
auroc_hand = (base["auroc"] * pos * neg + pos * 100) / (pos * (neg + 100))
assert abs(t2.loc["auroc", "with 100 easy normals"] - auroc_hand) < 1e-12
print(f"AUROC by the pair count: {auroc_hand:.4f}; unchanged:", t2.index[t2.change.abs() <= 1e-12].tolist())
# %% md
# ## Exercise 3: the large defect 4 times larger
# On the lesson's 8 x 8 maps, 4 x 16 px is all of image 0: it has no normal pixel left. The
# cell compares both numbers and the count of normal pixels, which is what AUPRO's FPR axis
# divides by.
# %%
def example(large: slice):
    masks = np.zeros((2, 8, 8), bool)
    masks[0, large, large] = True
    masks[1, 6, 6] = True
    maps = np.zeros((2, 8, 8))
    maps[0][masks[0]] = 0.9
    maps[1] = 0.05 * np.arange(64).reshape(8, 8) / 64
    m = compute_metrics([1, 1], [1, 1], maps, masks)
    return {"large defect px": int(masks[0].sum()), "normal px": int((~masks).sum()),
            "pixel AUROC": m["pixel_auroc"], "AUPRO": m["pixel_aupro"]}

t3 = pd.DataFrame([example(slice(1, 5)), example(slice(0, 8))], index=["lesson", "4 x larger"])
display(t3.round(3))
moved = {c: abs(t3[c].iloc[1] - t3[c].iloc[0]) > 1e-9 for c in ("pixel AUROC", "AUPRO")}
print(f"pixel AUROC {'moves' if moved['pixel AUROC'] else 'does not move'}; AUPRO "
      f"{'moves' if moved['AUPRO'] else 'does not move'} (the tiny region is found once "
      f"{'fewer' if t3['normal px'].iloc[1] < t3['normal px'].iloc[0] else 'more'} normal pixels are flagged: "
      f"the FPR axis changed, not the regions' weights)")
# %% md
# ## Exercise 4: the class with the lowest image AUROC
# The lesson's heads and target images; the share is over that class's normal images.
# %%
lab = course.setup(MODE)
ds = list(lab.targets)[0]
# the shared heads' per-image records on the target set, read back from their run (reproduce's
# or the course cache's; evaluated once if neither kept them)
_, runs = course.grid(lab, {"shared heads": {}}, [lab.cfg.seed])
shared = runs["shared heads"][ds]
s_all, y_all, cls_all = shared.scores[0], shared.labels, shared.classes  # (n,) each
auc = {c: binary_metrics(s_all[cls_all == c], y_all[cls_all == c])["auroc"] for c in dict.fromkeys(cls_all)}
worst = min(auc, key=auc.get)
normal, bad = s_all[(cls_all == worst) & (y_all == 0)], s_all[(cls_all == worst) & (y_all == 1)]
share = float((normal > np.median(bad)).mean())
print(f"{worst}: image AUROC {auc[worst]:.3f}; {100 * share:.0f}% of its {normal.size} normal images "
      f"score above its defective median ({np.median(bad):.3f})")

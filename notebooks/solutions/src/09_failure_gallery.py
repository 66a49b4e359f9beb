# %% md
# # 09. The failure gallery: solutions to the exercises
#
# *The instructor's key for lesson 09. It rebuilds the lesson's state (the shared heads, read
# back; the per-class F1-max thresholds), then answers each exercise with a cell that computes
# the answer. The answers are whatever these cells print on this machine. Quick mode: well
# under a minute once the shared heads exist.*
# %% [parameters]
MODE = "quick"
# %%
import numpy as np
import pandas as pd

from bagclip import analysis as an, course, viz
from bagclip.data import load_mask
from bagclip.inference import predict_all
from bagclip.zeroshot import ZeroShot

lab = course.setup(MODE)
cfg, bb = lab.cfg, lab.backbone
target = lab.target
maps, scores = predict_all(course.trained_heads(lab).model, cfg, bb, lab.cache, target)
masks = np.stack([load_mask(s.mask_path, cfg.image_size).numpy() for s in target])
labels = np.array([s.label for s in target])
cls_of = np.array([s.class_name for s in target])
classes = sorted(set(cls_of))

def per_class_thresholds(s):
    return {c: an.f1_max_threshold(s[cls_of == c], labels[cls_of == c])[0] for c in classes}

thr_of = per_class_thresholds(scores)
print(lab.label(), f"| {len(target)} target images")
# %% md
# ## Exercise 1: miss nothing
# Per class, the threshold at the lowest defective score flags every defect; the false alarms
# it costs are the normal images at or above it, beside those at the class's F1-max threshold.
# %%
rows = []
for c in classes:
    i = cls_of == c
    t0 = scores[i][labels[i] == 1].min()
    rows.append({"class": c, "threshold (no miss)": t0,
                 "false alarms (no miss)": int(((scores[i] >= t0) & (labels[i] == 0)).sum()),
                 "false alarms (F1-max)": int(((scores[i] >= thr_of[c]) & (labels[i] == 0)).sum()),
                 "normal images": int((labels[i] == 0).sum())})
pd.DataFrame(rows).set_index("class")
# %% md
# ## Exercise 2: K of the graph around a missed defect
# The first false negative of the first class with one: the share of its worst patch's SAG
# neighbours that lie on the defect, at the Config's K and at K = 30.
# %%
fn = [(c, j) for c in classes for j in np.flatnonzero((cls_of == c) & (labels == 1) & (scores < thr_of[c]))]
if not fn:
    print("no false negative at the per-class thresholds: nothing to inspect")
else:
    c, j = fn[0]
    idx = np.flatnonzero(cls_of == c)
    sub = [target[i] for i in idx]
    g = viz.FailureGallery(sub, scores[idx], maps[idx], masks[idx], lambda q: lab.view(sub[q])[0],
                           lambda q: lab.view(sub[q])[2].patches[0, -1], grid=bb.grid, k=cfg.k, threshold=thr_of[c])
    feats = lab.view(target[j])[2].patches[0, -1]
    cell = masks.shape[1] // bb.grid  # pixels per patch side
    on_defect = masks[j].reshape(bb.grid, cell, bb.grid, cell).any((1, 3)).ravel()
    missed = (maps[j] < g.pixel_threshold) & masks[j]  # defect pixels below the pixel threshold
    worst = int(missed.reshape(bb.grid, cell, bb.grid, cell).sum((1, 3)).ravel().argmax())
    for k in (cfg.k, 30):
        nb, _ = an.neighbours(an.sag_parts(feats, k).A_sym, worst)
        print(f"{target[j].class_name}/{target[j].defect_type}: K={k}: {len(nb)} neighbours of patch {worst}, "
              f"{int(on_defect[nb].sum())} on the defect")
# %% md
# ## Exercise 3: the training-free scorer's false alarms
# Each scorer at its own per-class F1-max thresholds, on the same images.
# %%
_, zs_scores = predict_all(ZeroShot(bb), cfg, bb, lab.cache, target)
thr_zs = per_class_thresholds(zs_scores)
fa = pd.DataFrame({"trained heads": {c: int(((scores >= thr_of[c]) & (labels == 0) & (cls_of == c)).sum()) for c in classes},
                   "WinCLIP-style": {c: int(((zs_scores >= thr_zs[c]) & (labels == 0) & (cls_of == c)).sum()) for c in classes}})
fa["fewer with training"] = fa["trained heads"] < fa["WinCLIP-style"]
fa

# %% md
# # 09. The failure gallery: what the detector gets wrong, and why
#
# **Learning objectives.** After this lesson you can
# 1. put a detector to a decision: pick an image threshold (F1-max by default), label every image
#    TP / FP / FN / TN, and see how the labels move when the threshold moves;
# 2. filter failures by class, defect type and kind, worst first;
# 3. read one failure through its image, mask, map, pixel errors and the SAG neighbourhood of its
#    worst region, and relate it to the failure causes of the paper's Section 4.5.
# %% [parameters]
MODE = "quick"
# %%
import numpy as np
import pandas as pd

from bagclip import analysis as an, course, viz
from bagclip.data import load_mask
from bagclip.inference import predict_all

lab = course.setup(MODE)
cfg, bb = lab.cfg, lab.backbone
print(lab.label(), "| device:", lab.device)
heads = course.trained_heads(lab).model  # shared by the lessons: trained once, then reused
target = lab.target
maps, scores = predict_all(heads, cfg, bb, lab.cache, target)  # (n, S, S), (n,), in target's order
masks = np.stack([load_mask(s.mask_path, cfg.image_size).numpy() for s in target])
labels = np.array([s.label for s in target])
print(len(target), "target images,", labels.sum(), "anomalous")
# %% md
# ## 1. A threshold, and the four outcomes
# Without a threshold there are no "false alarms" or "misses", only scores: a gallery that calls
# every normal image a false alarm is wrong. The F1-max threshold (lesson 06) is the default;
# below it everything is called normal.
# %%
thr, f1 = an.f1_max_threshold(scores, labels)
tab = an.failure_table(target, scores, thr)
print(f"F1-max threshold {thr:.3f} (F1 = {f1:.3f})")
print(tab.outcome.value_counts().reindex(["TP", "FN", "FP", "TN"], fill_value=0).to_dict())
tab.head(8)
# %%
# self-checks: the labels follow the threshold, and the table is sorted worst first
assert ((tab.outcome == "FP") == ((tab.score >= thr) & (tab.label == 0))).all()
assert ((tab.outcome == "FN") == ((tab.score < thr) & (tab.label == 1))).all()
assert tab.error.is_monotonic_decreasing
lower = an.failure_table(target, scores, thr - 0.05)
assert (lower.outcome == "FP").sum() >= (tab.outcome == "FP").sum()  # a lower threshold never removes false alarms
# %% md
# Errors per class and defect type at this threshold:
# %%
pd.crosstab([tab["class"], tab["defect"]], tab["outcome"]).reindex(columns=["TP", "FN", "FP", "TN"], fill_value=0)
# %% md
# ## 2. The gallery
# Move the **threshold** (the button restores F1-max) and watch the outcome counts and labels
# follow; filter by **class**, **defect** and **kind** (errors = FP + FN); walk the **rank**,
# worst first. Each view shows the image, its ground truth, the anomaly map on a fixed 0-1 scale
# (white: the pixel threshold), the pixel errors at that threshold (green TP, red FP, blue FN),
# and the SAG neighbours of the patch with the most wrong pixels: which other patches the graph
# mixed into it.
# %%
def image_of(i):
    return lab.view(target[i])[0]

def features_of(i):
    return lab.view(target[i])[2].patches[0, -1]

gallery = viz.FailureGallery(target, scores, maps, masks, image_of, features_of,
                               grid=bb.grid, k=cfg.k, threshold=thr, label=lab.label())
gallery.widget
# %%
print(f"pixel threshold (F1-max over all target pixels): {gallery.pixel_threshold:.3f}")
sel = gallery.selection()
print(f"{len(sel)} errors at the F1-max threshold; worst: {sel.iloc[0].to_dict() if len(sel) else None}")
# %% md
# ## 3. Why it fails: the paper's Section 4.5, and what we see here
# The paper reports two failure modes on real power equipment: **false positives** where specular
# reflections and irregular shadows look like defects, and **missed subtle anomalies** where a
# defect is as faint as the texture around it. Its proposed cure is text prompts that describe
# lighting and physical appearance.
#
# In the gallery, look for the same two modes:
# - **FN on "subtle" defects**: the synthetic benchmark's faint versions of each defect. Filter
#   `defect = subtle, kind = FN`: the map stays near the background level; in the SAG view the
#   worst patch's neighbours are ordinary background patches, so propagation *averages the
#   defect away* (the over-smoothing of lesson 04 at work).
# - **FP on strong textures**: textured normal images (carpet, concrete) whose high-contrast
#   structure looks like a defect to CLIP - the synthetic counterpart of reflections and shadows.
#   Filter `kind = FP`: the pixel errors are red blobs on texture, and the SAG neighbours of
#   the worst patch are other high-contrast patches far away in the image (non-local edges can
#   spread a false response as easily as a true one).
# %%
kinds = tab[tab.outcome.isin(["FP", "FN"])].groupby(["outcome", "defect"]).size().rename("images")
kinds.to_frame().T if len(kinds) else "no errors at this threshold"
# %%
# the same filters the widget uses, as calls (tests do the same with other values)
gallery.set_filter(kind="FN", defect="subtle" if "subtle" in set(tab.defect) else "all")
print("FN subtle:", len(gallery.selection()), "images")
gallery.set_filter(kind="errors", defect="all")
# %% md
# ## Summary
# - A failure exists only at a threshold; F1-max is a sensible default, and the labels move with it.
# - Filters by class, defect type and error kind turn a list of scores into questions.
# - The pixel errors and the SAG neighbourhood of the worst patch show *where* and *through which
#   edges* a failure arises; subtle misses and textured false alarms echo the paper's Section 4.5.
#
# ## Exercises
# 1. Set the threshold so that no defect is missed (the lowest anomalous score). How many false
#    alarms does that cost, per class?
# 2. For one FN, raise K in `features_of`'s graph (`gallery.k = 30; gallery.set_rank(0)`): do the
#    worst patch's neighbours become more or less defect-like?
# 3. Add normal-state prompts that describe texture or lighting (see `bagclip.prompts`), retrain,
#    and compare the FP count at the F1-max threshold.

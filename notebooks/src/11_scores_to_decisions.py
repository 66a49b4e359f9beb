# %% md
# # 11. From scores to decisions
#
# *About 30 minutes, exercises 45 more. Difficulty: intermediate (lessons 05 and 06 first).*
#
# A detector gives scores; a production line needs an answer: "this part is anomalous" or not,
# and a heat map that means the same thing on every part. This lesson turns the scores of the
# heads trained in lesson 05 into decisions, using what a user actually has for a new product:
# **normal images only**, no labels, no masks.
#
# **Learning objectives.** After this lesson you can
# 1. say why the F1-max threshold of the tables is an *oracle* (it is picked with the test
#    labels) and set a threshold from normal images only, at a false-positive rate you choose
#    (`bagclip.calibrate`, the same as `bagclip calibrate`);
# 2. measure the false-positive rate a line operator would see on fresh normal images, and
#    read its binomial interval;
# 3. read a calibrated map (1.0 = as high as the top 1 % of normal pixels) and say what a map
#    stretched to its own range hides;
# 4. adapt the heads to one class from its normal images with drawn defects (`bagclip.adapt`,
#    the same as `bagclip adapt`) and judge the change with a paired interval and a verdict
#    (`bagclip.compare`).
#
# Every number below is measured by the cells that print it, on the kit's synthetic images in
# quick mode; nothing here is the paper's.
# %% [parameters]
MODE = "quick"
# %%
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from bagclip import analysis as an, calibrate as C, course, viz
from bagclip.adapt import ANY_IMAGE_KINDS
from bagclip.compare import Results, compare, describe
from bagclip.data import Sample, denormalize, load_image, load_mask
from bagclip.inference import predict_all

lab = course.setup(MODE)
cfg, bb = lab.cfg, lab.backbone
print(lab.label(), "| device:", lab.device)
zero_shot = course.trained_heads(lab)  # lesson 05's heads: trained on other classes, reused
data = course.one_class(lab, "brushed_metal")
CLASS, labels = data.class_name, data.labels
print(f"class {CLASS!r}: {len(data.adapt)} normal images to adapt on, {len(data.calib)} to calibrate on, "
      f"test: {int((labels == 0).sum())} normal + {int(labels.sum())} defective")
# %%
# self-check: the three groups are different images (by content), and the heads never saw the class
groups = [{hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in g} for g in (data.adapt, data.calib, [s.image_path for s in data.test])]
assert sum(map(len, groups)) == len(set().union(*groups)), "an image is in two groups"
assert CLASS not in {s.class_name for s in lab.aux}
# %% md
# ## 1. Scores on the test images
# The zero-shot heads (trained on the auxiliary classes, never on this one) score every test
# image: an image score (higher = more anomalous) and a map at the input size.
# %%
m_zs, s_zs = predict_all(zero_shot.model, cfg, bb, lab.cache, data.test)  # maps, image scores
masks = np.stack([load_mask(s.mask_path, cfg.image_size).numpy() for s in data.test])
print("scores", s_zs.shape, "maps", m_zs.shape, "masks", masks.shape)
assert s_zs.shape == (len(data.test),) and m_zs.shape == masks.shape == (len(data.test), cfg.image_size, cfg.image_size)
# %% md
# ## 2. The oracle threshold
# The tables' F1-max (lesson 06) tries every threshold and keeps the best F1 **on the test
# labels**. That is a fair way to compare detectors, but it is not a threshold anyone can use:
# on a line, the labels of tomorrow's parts are what we want to know. Here is what it would give
# (called "anomalous" when score >= threshold, as in lesson 09):
# %%
t_oracle, f1 = an.f1_max_threshold(s_zs, labels)
oracle = C.operating_point(s_zs, labels, np.nextafter(t_oracle, -np.inf))  # >= t as > the float below
print(f"oracle threshold {t_oracle:.4f}: F1 {f1:.3f} (picked on the test labels)")
p, r = oracle["precision"], oracle["recall"]
assert math.isclose(2 * p * r / (p + r), f1, rel_tol=1e-9)  # the operating point is the F1-max one
# %% md
# ## 3. A threshold from normal images only
# `calibrate` scores the 20 calibration images (normal, never seen by the heads) and takes an
# order statistic of their scores: with n scores sorted, the threshold is the k-th smallest,
# k = ceil((1 - fpr)(n + 1)), and a part is anomalous when its score is above it. If a fresh
# normal part is exchangeable with the calibration parts (same class, camera and scorer), its
# chance of landing above is (n + 1 - k)/(n + 1) <= fpr. No label is used. The same
# calibration gives the map normaliser (section 5).
# %%
FPR = 0.05
cal = C.calibrate(data.calib, CLASS, fpr=FPR, pixel_fpr=0.01, checkpoint=zero_shot.out_dir, backbone=bb)
k, n = cal.order, cal.n_images
print(f"{n} normal images at FPR {FPR:g}: k = {k}, threshold = s_({k}) = {cal.image_threshold:.4f}")
print(f"promised false-positive rate on fresh normals, in expectation: (n + 1 - k)/(n + 1) = {(n + 1 - k) / (n + 1):.3f}")
assert k == math.ceil(round((1 - FPR) * (n + 1), 9)) and cal.image_threshold == cal.scores[k - 1]
# %% md
# Too few images for the rate refuse in one line (before anything is scored):
# %%
try:
    C.calibrate(data.calib[:3], CLASS, fpr=0.01, checkpoint=zero_shot.out_dir, backbone=bb)
except C.CalibrationError as err:
    print("CalibrationError:", err)
else:
    raise AssertionError("3 images at FPR 1 % should be refused")
# %% md
# Both thresholds on the same test images. Read the table row by row: the oracle row is what
# a table reports; the normal-only row is what a user who set the threshold before seeing any
# defect would get on these images. Which one has the higher recall, and at what
# false-positive rate, is for the printout to say.
# %%
normal_only = C.operating_point(s_zs, labels, cal.image_threshold)
ops = pd.DataFrame([oracle, normal_only], index=["oracle F1-max (test labels)", f"normal-only, FPR {FPR:g}"])
ops[["threshold", "precision", "recall", "fpr", "n_anomalous", "n_normal"]].round(4)
# %% md
# ## 4. The false-positive rate a line operator would see
# The test set's 40 normal images are *fresh* for the calibration (it never saw them). Two
# questions, two computations:
# 1. **What is this threshold's rate?** Count the flagged fresh normals. The exact
#    (Clopper-Pearson) 95 % binomial interval gives the rates compatible with that count; its
#    width is what 40 images can say.
# 2. **Is that what the calibration promised?** The promise, (n + 1 - k)/(n + 1), is an average
#    over calibration sets. One set of 20 images gives a threshold whose own rate is luck (it
#    is Beta(n + 1 - k, k) distributed: with k = n the threshold is simply the highest of 20
#    scores), so even fresh normals exchangeable with the calibration ones show a count from a
#    beta-binomial range. A count inside it is consistent with the promise; a count outside is
#    evidence that the fresh normals differ from the calibration ones (another batch, light,
#    camera). Which case this is, the cell below prints.
#
# The oracle's rate on the same images is printed too, but it is in-sample: it was picked on them.
# %%
good = np.flatnonzero(labels == 0)
line = C.observed_fpr(s_zs[good], cal.image_threshold)
spread = C.calibration_spread(n, FPR, m=line["n_normal"], observed=line["false_positives"])
pct = lambda x: f"{100 * x:.1f} %"  # noqa: E731
print(f"1. normal-only threshold: {line['false_positives']} of {line['n_normal']} fresh normal images flagged: "
      f"FPR {pct(line['fpr'])} [{pct(line['low'])}, {pct(line['high'])}] (95 %, exact binomial)")
verdict = ("compatible with" if line["low"] <= FPR <= line["high"] else
           "above" if line["low"] > FPR else "below")
print(f"   this threshold's rate is {verdict} the chosen {pct(FPR)} (by that interval)")
print(f"2. one calibration of {n} images at {pct(FPR)}: its own rate lies in [{pct(spread['rate_low'])}, "
      f"{pct(spread['rate_high'])}] for 95 % of calibration sets (mean {pct(spread['expected'])}); "
      f"exchangeable fresh normals would show {spread['count_low']} to {spread['count_high']} of {spread['m']} flagged")
inside = spread["count_low"] <= line["false_positives"] <= spread["count_high"]
print(f"   observed {line['false_positives']}: {'inside' if inside else 'outside'} that range "
      f"(P(count >= {line['false_positives']}) = {spread['p_at_least']:.3f}): "
      + ("consistent with the calibration's promise" if inside else
         "evidence that these normals differ from the calibration ones"))
orc = C.observed_fpr(s_zs[good], np.nextafter(t_oracle, -np.inf))
print(f"oracle threshold (in-sample): {orc['false_positives']} of {orc['n_normal']} flagged, "
      f"FPR {pct(orc['fpr'])} [{pct(orc['low'])}, {pct(orc['high'])}]")
assert line["false_positives"] == int((s_zs[good] > cal.image_threshold).sum())
assert line["low"] <= line["fpr"] <= line["high"] and spread["rate_low"] < spread["expected"] < spread["rate_high"]
# %% md
# Read the two lines together: the first says where *this* threshold's rate lies, the second
# how much a calibration set of this size leaves to luck. More calibration images narrow the
# second (exercise 2); more fresh images narrow the first.
# %% md
# ## 5. Calibrated maps against maps stretched to their own range
# Most heat maps are drawn from each image's own minimum to its own maximum, so every map,
# normal or not, reaches the top colour somewhere, by construction. A calibrated map divides by the calibration's pixel
# threshold (the top 1 % of normal pixels) and is drawn on one fixed scale for the class:
# 1.0 (cyan contour) means "as high as the top 1 % of normal pixels". Rows below: the
# highest- and a middle-scoring normal image, a middle- and the highest-scoring defective one.
# Compare the middle column (each its own range, its colour bar says which) with the right one.
# %%
def middle(idx):
    return idx[np.argsort(s_zs[idx])[len(idx) // 2]]

bad = np.flatnonzero(labels == 1)
show = [good[np.argmax(s_zs[good])], middle(good), middle(bad), bad[np.argmax(s_zs[bad])]]
images = [denormalize(load_image(data.test[i].image_path, cfg.image_size)) for i in show]
titles = [f"{data.test[i].defect_type}, score {s_zs[i]:.3f}" for i in show]
viz.calibrated_vs_stretched(images, masks[show], m_zs[show], cal, titles)
# %%
norm = np.stack([cal.normalise(m) for m in m_zs])
assert np.allclose(norm, m_zs / np.float32(cal.pixel_threshold))
above_normal = (norm[labels == 0] > 1.0).mean()
above_defect = (norm[labels == 1][masks[labels == 1]] > 1.0).mean()
print(f"pixels above 1.0: {pct(above_normal)} of the fresh normal images' pixels (the calibration "
      f"aimed at {pct(cal.pixel_fpr)}; pixels of one image are correlated, so this is no guarantee), "
      f"{pct(above_defect)} of the defect pixels")
# %% md
# ## 6. Adapting to the class from its normal images
# Twelve normal images of the class, and the kit's generator draws defects onto them (two
# copies each, exact masks): the kinds that need no knowledge of the object (cut-paste,
# foreign texture, cracks, debris, smudges...). The kinds the test set holds are excluded, so
# the adapted heads are tested on defect kinds they never saw drawn. Training starts from the
# zero-shot heads and runs the ordinary loop (`bagclip.train.train`); the run is kept in the
# cache and reused, like lesson 05's heads.
# %%
test_kinds = sorted({s.defect_type for s in data.test if s.label})
exclude = [k for k in test_kinds if k in ANY_IMAGE_KINDS]
adapted = course.adapted_heads(lab, data.adapt, CLASS, zero_shot.out_dir, copies=2, exclude_kinds=exclude)
record = json.loads((adapted.out_dir / "adapt.json").read_text())
drawn = pd.Series([d["kind"] for d in record["drawn"]]).value_counts()
print("test defect kinds:", test_kinds, "| excluded from the drawing:", exclude)
print("drawn:", drawn.to_dict(), f"| {len(adapted.history)} steps, last loss {adapted.history[-1]:.4f}")
assert not set(drawn.index) & set(test_kinds)  # no drawn defect is of a test kind
assert len(record["drawn"]) == 2 * len(data.adapt)
# %% md
# A few of the drawn training images (their masks in red):
# %%
drawn_samples = [Sample(adapted.out_dir / "adapt_data" / "images" / d["image"],
                        adapted.out_dir / "adapt_data" / "masks" / d["image"], CLASS, d["kind"], 1)
                 for d in record["drawn"][:8]]
viz.plot_samples(drawn_samples, size=None, ncols=4)
# %% md
# ## 7. Zero-shot against adapted heads, with an interval
# Both heads score the same test images. `compare` resamples those images (within each label)
# 2000 times, recomputes both metrics on each resample and reports the adapted minus zero-shot
# difference with its 95 % percentile interval. The verdict is "an effect" only when the
# interval excludes 0; otherwise the data cannot tell the direction. How to read it:
# - the sign of the difference says which heads did better *on these images*;
# - the interval says how much of that could be the luck of which 80 images we drew; an
#   interval straddling 0 is no evidence either way (not evidence of no effect);
# - here there is **one training seed**: the interval covers the images, not the training's
#   seed-to-seed noise. The docs' table (`benchmarks/adapt.py`) repeats this over seeds and classes.
# %%
m_ad, s_ad = predict_all(adapted.model, cfg, bb, lab.cache, data.test)
res_zs = Results.from_maps(m_zs, masks, labels, scores=s_zs)
res_ad = Results.from_maps(m_ad, masks, labels, scores=s_ad)
rows = {}
for metric in ("image_auroc", "pixel_auroc"):
    c = compare(res_zs, res_ad, metric, n_boot=2000, seed=0)
    print(describe(c, "adapting"))
    rows[metric] = {"zero-shot": 100 * c.a, "adapted": 100 * c.b, "difference": 100 * c.diff,
                    "low": 100 * c.low, "high": 100 * c.high, "verdict": c.verdict}
    assert c.low <= c.diff <= c.high and c.verdict == ("an effect" if c.low > 0 or c.high < 0 else "no evidence either way")
pd.DataFrame.from_dict(rows, orient="index").round(1)
# %% md
# One class and one seed is one draw. The same comparison over the five synthetic target classes
# and five classes of real photographs (another defect generator's defects), three seeds each,
# is `python benchmarks/adapt.py --real --write-docs`; its table in `docs/adapt.md` (ours,
# measured when it was last run) is read here rather than recomputed, and the cell counts its
# verdicts. Read each row as above: the sign, then whether the interval excludes 0.
# %%
import bagclip

docs = Path(bagclip.__file__).resolve().parents[1] / "docs"
if (docs / "adapt.csv").is_file():
    page = (docs / "adapt.md").read_text(encoding="utf-8")
    print(page.split("<!-- adapt-table:begin -->")[1].split("<!-- adapt-table:end -->")[0].strip())
    res = pd.read_csv(docs / "adapt.csv")  # the same numbers, one row per set x class x metric
    better = int(((res.verdict == "effect") & (res.difference > 0)).sum())
    worse = int(((res.verdict == "effect") & (res.difference < 0)).sum())
    print(f"\n{len(res)} comparisons (class x metric): adapted heads better with an interval above 0 in "
          f"{better}, worse with an interval below 0 in {worse}, no evidence either way in {len(res) - better - worse}")
else:
    print(f"{docs / 'adapt.csv'} is not beside this install (installed without the repository): see the kit's docs/adapt.md")
# %% md
# ## Summary
# - F1-max picks its threshold with the test labels: an oracle for comparing detectors, not a
#   setting. A threshold from normal images only, at a chosen false-positive rate, is the k-th
#   order statistic of their scores; it needs at least 1/fpr - 1 images.
# - The rate it promises holds in expectation; what a line sees is measured on fresh normals and
#   read with its binomial interval, whose width is set by how many normals were counted.
# - A map stretched to its own range always shows a hot spot; a calibrated map on one fixed
#   scale says how unusual each pixel is for the class.
# - Adapting from normal images is `bagclip adapt`; whether it helped on a class is a paired
#   comparison with an interval, read from the printout above and not assumed.
#
# ## Exercises
# Solutions: `notebooks/solutions/11_scores_to_decisions.ipynb`.
# 1. *(10 min, easy)* Calibrate the zero-shot heads at FPR 10 % on the same 20 images. Which
#    order statistic is the threshold, what rate does the rule promise, and what do the 40 fresh
#    normals show, with its interval?
# 2. *(10 min, easy)* With `C.calibration_spread`, how many calibration images does it take
#    at FPR 5 % for 95 % of calibration sets to have a rate below 10 %? And with
#    `C.binomial_interval`, how many fresh normals for the interval around an observed 5 % to
#    be at most 10 points wide?
# 3. *(15 min, medium)* Calibrate the adapted heads on the calibration images too, and compare
#    recall on the defective test images at each scorer's own normal-only threshold, each with
#    its binomial interval. Why is this not a paired comparison?
# 4. *(10 min, medium)* Take the normal test image whose stretched map has the largest raw
#    maximum. What share of the defective test images have a calibrated map maximum above its
#    calibrated maximum?

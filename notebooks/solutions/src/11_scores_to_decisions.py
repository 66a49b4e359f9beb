# %% md
# # 11. From scores to decisions: solutions to the exercises
#
# *The instructor's key for lesson 11. It rebuilds the lesson's state (the heads, the class's
# images and the adapted run are the lesson's, read from the cache when the lesson ran first),
# then answers each exercise with a cell that computes the answer. The answers are whatever
# these cells print on this machine; the text says how to read them, not what they are.*
# %% [parameters]
MODE = "quick"
# %%
import math

import numpy as np

from bagclip import calibrate as C, course
from bagclip.adapt import ANY_IMAGE_KINDS
from bagclip.inference import predict_all

lab = course.setup(MODE)
cfg, bb = lab.cfg, lab.backbone
zero_shot = course.trained_heads(lab)
data = course.one_class(lab, "brushed_metal")
CLASS, labels = data.class_name, data.labels
m_zs, s_zs = predict_all(zero_shot.model, cfg, bb, lab.cache, data.test)  # maps, image scores
good, bad = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
pct = lambda x: f"{100 * x:.1f} %"  # noqa: E731
print(lab.label(), f"| {len(good)} fresh normal and {len(bad)} defective test images of {CLASS!r}")
# %% md
# ## Exercise 1: FPR 10 % on the same 20 images
# k = ceil(0.9 x 21) = ceil(18.9) = 19: the second highest of the 20 scores; the promise in
# expectation is (21 - 19)/21 = 9.5 %. The fresh normals' count is read as in the lesson.
# %%
cal10 = C.calibrate(data.calib, CLASS, fpr=0.10, checkpoint=zero_shot.out_dir, backbone=bb)
assert cal10.order == 19 and cal10.image_threshold == cal10.scores[18]
line = C.observed_fpr(s_zs[good], cal10.image_threshold)
spread = C.calibration_spread(cal10.n_images, 0.10, m=line["n_normal"], observed=line["false_positives"])
print(f"k = {cal10.order}, threshold {cal10.image_threshold:.4f}, promised {pct(spread['expected'])} in expectation")
print(f"fresh normals: {line['false_positives']} of {line['n_normal']} flagged, FPR {pct(line['fpr'])} "
      f"[{pct(line['low'])}, {pct(line['high'])}]; 10 % {'inside' if line['low'] <= 0.10 <= line['high'] else 'outside'} the interval")
print(f"exchangeable normals would show {spread['count_low']} to {spread['count_high']} flagged: observed "
      f"{'inside' if spread['count_low'] <= line['false_positives'] <= spread['count_high'] else 'outside'}")
# %% md
# ## Exercise 2: how many images for a narrow promise, and for a narrow measurement
# The first loop grows the calibration set until 95 % of calibrations at 5 % have their own
# rate below 10 %; the second grows the fresh set, with 5 % of it flagged, until the exact
# interval is at most 10 points wide.
# %%
n = C.min_images(0.05)
while C.calibration_spread(n, 0.05)["rate_high"] >= 0.10:
    n += 1
print(f"calibration images: {n} (rate range at {n}: [{pct(C.calibration_spread(n, 0.05)['rate_low'])}, "
      f"{pct(C.calibration_spread(n, 0.05)['rate_high'])}]; at 20: up to {pct(C.calibration_spread(20, 0.05)['rate_high'])})")
assert C.calibration_spread(n - 1, 0.05)["rate_high"] >= 0.10 > C.calibration_spread(n, 0.05)["rate_high"]
m = 20
while (lambda lo_hi: lo_hi[1] - lo_hi[0])(C.binomial_interval(m // 20, m)) > 0.10:
    m += 20
lo, hi = C.binomial_interval(m // 20, m)
print(f"fresh normals: {m} ({m // 20} flagged: [{pct(lo)}, {pct(hi)}], width {100 * (hi - lo):.1f} points)")
# %% md
# ## Exercise 3: recall at each scorer's own normal-only threshold
# The adapted heads are the lesson's run (reused from the cache). Each scorer is calibrated on
# the same 20 images, and its recall on the 40 defective images gets its own binomial interval.
# The two intervals are not a paired comparison: both scorers saw the *same* defective images,
# so their hits are correlated, and two separate intervals overlap more than the difference's
# own uncertainty warrants. The paired view counts the images only one of them caught
# (discordant pairs, the basis of McNemar's test), printed last.
# %%
exclude = [k for k in sorted({s.defect_type for s in data.test if s.label}) if k in ANY_IMAGE_KINDS]
adapted = course.adapted_heads(lab, data.adapt, CLASS, zero_shot.out_dir, copies=2, exclude_kinds=exclude)
m_ad, s_ad = predict_all(adapted.model, cfg, bb, lab.cache, data.test)
hits, cals = {}, {}
for name, ck, s in (("zero-shot", zero_shot.out_dir, s_zs), ("adapted", adapted.out_dir, s_ad)):
    cal = cals[name] = C.calibrate(data.calib, CLASS, fpr=0.05, checkpoint=ck, backbone=bb)
    hits[name] = s[bad] > cal.image_threshold
    lo, hi = C.binomial_interval(int(hits[name].sum()), bad.size)
    fp = C.observed_fpr(s[good], cal.image_threshold)
    print(f"{name:9s}: threshold {cal.image_threshold:.4f}, recall {int(hits[name].sum())}/{bad.size} = "
          f"{pct(hits[name].mean())} [{pct(lo)}, {pct(hi)}]; fresh-normal FPR {pct(fp['fpr'])} "
          f"[{pct(fp['low'])}, {pct(fp['high'])}]")
only_ad = int((hits["adapted"] & ~hits["zero-shot"]).sum())
only_zs = int((hits["zero-shot"] & ~hits["adapted"]).sum())
print(f"paired: caught only by the adapted heads {only_ad}, only by the zero-shot heads {only_zs}")
assert only_ad - only_zs == int(hits["adapted"].sum()) - int(hits["zero-shot"].sum())
# %% md
# ## Exercise 4: the most "defect-looking" normal map
# Stretched to its own range, every map has a full-colour spot. On the calibrated scale, the
# question becomes a count: how many defective images reach higher than this normal one?
# %%
raw_max = m_zs.reshape(len(m_zs), -1).max(1)
worst = good[np.argmax(raw_max[good])]
cal = cals["zero-shot"]  # exercise 3's calibration of the zero-shot heads at 5 %
norm_max = raw_max / cal.pixel_threshold
above = int((norm_max[bad] > norm_max[worst]).sum())
lo, hi = C.binomial_interval(above, bad.size)
print(f"normal image {data.test[worst].image_path.name}: calibrated max {norm_max[worst]:.3g} "
      f"(calibration: {cal.meaning()})")
print(f"defective images above it: {above}/{bad.size} = {pct(above / bad.size)} [{pct(lo)}, {pct(hi)}]")
assert math.isclose(norm_max[worst], float(cal.normalise(m_zs[worst]).max()), rel_tol=1e-5)

# %% md
# # 05. Scoring, the losses, and training: solutions to the exercises
#
# *The instructor's key for lesson 05. It starts from the lessons' shared heads (the Config's
# own epochs, trained once and read back), then answers each exercise with a cell that
# computes the answer. The answers are whatever these cells print on this machine; the text
# says how to read them, not what they are. Quick mode: well under a minute once the shared
# heads exist (exercise 1 trains one more set of heads).*
# %% [parameters]
MODE = "quick"
# %%
import tempfile

import torch

from bagclip import course
from bagclip.compare import Results, compare, describe
from bagclip.evaluate import evaluate_recorded
from bagclip.train import train

lab = course.setup(MODE)
cfg, bb = lab.cfg, lab.backbone
base = course.trained_heads(lab)  # the lessons' heads for this Config, seed cfg.seed
_, rec = evaluate_recorded(base.model, cfg, bb, lab.cache, lab.target)
base_res = Results.from_records([rec])
print(lab.label(), f"| {len(lab.target)} target images")
# %% md
# ## Exercise 1: no pixel loss (`loss_lambda = 0`)
# The heads are trained with the image loss only; each pixel metric is compared with the
# shared heads on the same images (one training run each: the interval covers the images, not
# the seed-to-seed spread).
# %%
c0 = cfg.replace(loss_lambda=0.0)
img_only = course.trained_heads(lab, c0)
_, rec0 = evaluate_recorded(img_only.model, c0, bb, lab.cache, lab.target)
res0 = Results.from_records([rec0])
for metric in ("pixel_auroc", "pixel_ap", "pixel_aupro", "image_auroc"):
    print(describe(compare(base_res, res0, metric, n_boot=500), "dropping the pixel loss"))
# %% md
# ## Exercise 2: interrupted, then resumed
# Five steps, stop, resume to the end: the weights are compared tensor by tensor with an
# uninterrupted run of the same Config (same thread count).
# %%
a, b = tempfile.mkdtemp(prefix="sol05-a-"), tempfile.mkdtemp(prefix="sol05-b-")
whole = train(cfg, lab.aux, bb, a, cache=lab.cache, progress=False)
train(cfg, lab.aux, bb, b, cache=lab.cache, progress=False, max_steps=5)
resumed = train(cfg, lab.aux, bb, b, cache=lab.cache, progress=False, resume=True)
sa, sb = whole.model.state_dict(), resumed.model.state_dict()
same = all(torch.equal(sa[k], sb[k]) for k in sa)
print(f"{len(sa)} tensors; identical after resuming: {same}; max |difference| "
      f"{max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa):.3g}")
# %% md
# ## Exercise 3: the image score
# `image_score` only changes how a score is read from the heads' outputs, so the same trained
# heads are scored three ways; each image metric is compared with the default ("mix").
# %%
moves = {}
for mode in ("global", "max"):
    cm = cfg.replace(image_score=mode)
    _, r = evaluate_recorded(base.model, cm, bb, lab.cache, lab.target)
    for metric in ("image_auroc", "image_f1_max", "image_ap"):
        c = moves[(mode, metric)] = compare(base_res, Results.from_records([r]), metric, n_boot=500)
        print(describe(c, f"image_score {cfg.image_score!r} -> {mode!r}"))
biggest = max(moves, key=lambda k: abs(moves[k].diff))
print(f"largest move: {biggest[1]} with {biggest[0]!r} ({100 * moves[biggest].diff:+.1f} points, {moves[biggest].verdict})")

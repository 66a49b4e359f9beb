# %% md
# # 05. Scoring, the losses, and training: solutions to the exercises
#
# *The instructor's key for lesson 05. It starts from the lessons' shared heads (the Config's
# own epochs, trained once and read back), then answers each exercise with a cell that
# computes the answer. The answers are whatever these cells print on this machine; the text
# says how to read them, not what they are. Quick mode: about a minute once the shared heads
# exist (exercise 1's heads are made by `bagclip reproduce --quick` too, and trained here only
# if it has not run).*
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
ds = list(lab.targets)[0]
base = course.trained_heads(lab)  # the lessons' heads for this Config, seed cfg.seed
# the per-image records of the shared heads and of exercise 1's heads (one seed each), read
# back from their runs (reproduce's or the course cache's), evaluated only if neither kept them
_, runs = course.grid(lab, {"shared heads": {}, "image loss only": {"loss_lambda": 0.0}}, [cfg.seed])
base_res = runs["shared heads"][ds]
print(lab.label(), f"| target set {ds}: {len(lab.targets[ds])} images")
# %% md
# ## Exercise 1: no pixel loss (`loss_lambda = 0`)
# The heads are trained with the image loss only; each pixel metric is compared with the
# shared heads on the same images (one training run each: the interval covers the images, not
# the seed-to-seed spread).
# %%
res0 = runs["image loss only"][ds]
for metric in ("pixel_auroc", "pixel_ap", "pixel_aupro", "image_auroc"):
    print(describe(compare(base_res, res0, metric, n_boot=500), "dropping the pixel loss"))
# %% md
# ## Exercise 2: interrupted, then resumed
# Five steps, stop, resume to the end: the weights are compared tensor by tensor with an
# uninterrupted run of the same Config (same thread count). Two epochs instead of the Config's
# own keep the answer quick; the resume still crosses an epoch's reshuffle.
# %%
short = cfg.replace(epochs=2)
a, b = tempfile.mkdtemp(prefix="sol05-a-"), tempfile.mkdtemp(prefix="sol05-b-")
whole = train(short, lab.aux, bb, a, cache=lab.cache, progress=False)
train(short, lab.aux, bb, b, cache=lab.cache, progress=False, max_steps=5)
resumed = train(short, lab.aux, bb, b, cache=lab.cache, progress=False, resume=True)
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
    _, r = evaluate_recorded(base.model, cm, bb, lab.cache, lab.targets[ds])
    for metric in ("image_auroc", "image_f1_max", "image_ap"):
        c = moves[(mode, metric)] = compare(base_res, Results.from_records([r]), metric, n_boot=500)
        print(describe(c, f"image_score {cfg.image_score!r} -> {mode!r}"))
biggest = max(moves, key=lambda k: abs(moves[k].diff))
print(f"largest move: {biggest[1]} with {biggest[0]!r} ({100 * moves[biggest].diff:+.1f} points, {moves[biggest].verdict})")

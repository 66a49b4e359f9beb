# %% md
# # 02. Bifurcated Self-Attention and SAFR: solutions to the exercises
#
# *The instructor's key for lesson 02. It rebuilds the lesson's state (the shared trained heads
# and the cached tokens, read from the cache when the lesson ran first), then answers each
# exercise with a cell that computes the answer. The answers are whatever these cells print.*
# %% [parameters]
MODE = "quick"
# %%
import copy

import pandas as pd
import torch

import bagclip
from bagclip import course
from bagclip.data import load_image
from bagclip.model import count_parameters
from bagclip.safr import SAFR

lab = course.setup(MODE)
cfg, bb = lab.cfg, lab.backbone
trained = course.trained_heads(lab).model
print(lab.label(), f"| heads trained for {cfg.epochs} epochs; taps {cfg.taps}, width {bb.width}")
# %% md
# ## Exercise 1: SAFR knocked out at inference
# A copy of the trained heads with `safr = None` passes the taps to the SAGs and JFF unchanged.
# The other modules were trained on SAFR's *gated* features, so this measures how much the
# trained heads rely on the gates, not what heads trained without SAFR would reach (those
# learn their other weights for ungated features: lesson 07 retrains them for Table 3).
# %%
knocked = copy.deepcopy(trained)
knocked.safr = None
res = course.heads_table(lab, {"trained heads": trained, "SAFR knocked out": knocked})
display(res.mul(100).round(1))
drop = res.xs("trained heads", level="heads") - res.xs("SAFR knocked out", level="heads")
print("pixel AUROC lost without the gates (points):", drop["pixel AUROC"].mul(100).round(1).to_dict())
# %% md
# ## Exercise 2: SAFR's parameters against r
# W1 is (C/r, C) and W2 (C, C/r), no bias: 2 C (C // r) weights. A larger r is a narrower
# bottleneck: fewer weights, and gates that can express fewer independent channel patterns.
# %%
C = len(cfg.taps) * bb.width
counts = pd.DataFrame([{"r": r, "C // r": C // r, "2 C (C // r)": 2 * C * (C // r),
                        "package": sum(count_parameters(SAFR(C, r)))} for r in (2, 8, 64)]).set_index("r")
assert (counts["package"] == counts["2 C (C // r)"]).all()
print(f"C = {len(cfg.taps)} taps x {bb.width} = {C}; the lesson's safr_reduction = {cfg.safr_reduction}")
counts
# %% md
# ## Exercise 3: `bsa_start` at the second tap
# The V-V stream starts at `bsa_start`; taps before it come from the standard blocks. Both
# backbones encode the same image here (no cache), and each tap's tokens are compared.
# %%
late = cfg.taps[1]
bb_vv = bagclip.load_backbone(cfg.replace(detail_attention="vv", bsa_start=late), device=lab.device)
sample = [s for s in lab.target if s.label][0]
x = load_image(sample.image_path, cfg.image_size)[None]
with torch.no_grad():
    t_none = bb.encode(x.to(bb.device), pad=False).patches.float().cpu()
    t_vv = bb_vv.encode(x.to(bb_vv.device), pad=False).patches.float().cpu()
diff = (t_vv - t_none).abs().amax(dim=(-1, -2))[0]
same = {f"block {t}": bool(d <= 1e-6) for t, d in zip(cfg.taps, diff)}
print(f"bsa_start = block {late}: max |vv - none| per tap", [round(float(d), 3) for d in diff])
print("taps equal to 'none':", [t for t, e in same.items() if e], "| taps that differ:",
      [t for t, e in same.items() if not e])
assert all(same[f"block {t}"] for t in cfg.taps if t < late)

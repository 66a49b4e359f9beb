# %% md
# # 2. Bifurcated Self-Attention and SAFR
#
# The encoder's output is split into two branches (paper, section 3.2):
#
# - **Global Semantic Branch**: the standard CLIP path up to the class token, then a trainable
#   adapter (initialised to the identity) -> g `(B, E)` for the image-level decision.
# - **Detail-Preserving Branch**: the tapped patch tokens of blocks 6/12/18/24, concatenated
#   channel-wise into x_concat `(B, N, C = 4W)` and recalibrated by **SAFR**:
#
#   x_detail = x_concat * sigmoid(W2 relu(W1 GAP(x_concat)))
#
# GAP averages over the N patches, W1 shrinks C by the ratio r = 16, W2 restores it: one gate
# per channel per image. Below we compute it with the package and by hand.
# %%
import os

import matplotlib.pyplot as plt
import torch

import bagclip
from bagclip import Config
from bagclip.safr import SAFR

FULL = os.environ.get("BAGCLIP_FULL") == "1"
cfg = Config() if FULL else Config.quick()
bb = bagclip.load_backbone(cfg, device="cuda" if FULL and torch.cuda.is_available() else "cpu")
# %%
from bagclip.data import load_dataset, load_image
from bagclip.data.synth import ensure_synth

root = ensure_synth(size=cfg.image_size if FULL else 224)
samples = load_dataset("synth", root, "test")[:4]
tokens = bb.encode(torch.stack([load_image(s.image_path, cfg.image_size) for s in samples]).to(bb.device))
B, L, N, W = tokens.patches.shape
x_concat = tokens.patches.permute(0, 2, 1, 3).reshape(B, N, L * W)  # (B, N, C): taps side by side
print("x_concat:", tuple(x_concat.shape))
# %% md
# ## SAFR, by the package and by the formula
# %%
torch.manual_seed(0)
safr = SAFR(L * W, cfg.safr_reduction).to(bb.device)
x_detail = safr(x_concat)

with torch.no_grad():
    gap = x_concat.mean(dim=1)  # (B, C)
    w1, w2 = [m for m in safr.modules() if isinstance(m, torch.nn.Linear)]
    gates = torch.sigmoid(w2(torch.relu(w1(gap))))  # (B, C)
    by_hand = x_concat * gates[:, None, :]
print("max |package - formula| =", float((x_detail - by_hand).abs().max()))
# %% md
# The gates, per image, grouped by tap: an untrained SAFR starts near 0.5 everywhere; training
# learns which channels of which tap matter for anomalies.
# %%
fig, ax = plt.subplots(figsize=(10, 2.5))
for b in range(B):
    ax.plot(gates[b].cpu(), lw=0.6, label=samples[b].defect_type)
for l in range(1, L):
    ax.axvline(l * W, color="k", lw=0.5)
ax.set_xlabel("channel (tap boundaries marked)"); ax.set_ylabel("gate"); ax.legend(fontsize=7)
plt.show()
# %% md
# x_detail is split back into one feature map per tap, F_pre^(l) `(B, N, W)`, which the
# Self-Attention Graph (next notebook) turns into graph nodes.
# %%
f_pre = x_detail.reshape(B, N, L, W).permute(0, 2, 1, 3)
print("F_pre:", tuple(f_pre.shape), " cls feature for the global branch:", tuple(tokens.cls.shape))

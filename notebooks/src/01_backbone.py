# %% md
# # 1. The CLIP backbone at 518 x 518, and its taps
#
# BAG-CLIP starts from a frozen CLIP image encoder (open_clip `ViT-L-14-336`, OpenAI weights).
# The paper runs it at 518 x 518 instead of 336: with 14-pixel patches that is a 37 x 37 grid,
# N = 1369 patch tokens, so small defects cover more patches. This notebook shows:
#
# 1. how the position embeddings are interpolated once, at load time, to the new grid;
# 2. which blocks are tapped (6, 12, 18, 24) and what the tapped tokens look like;
# 3. the two prompt states that the text tower turns into T_N and T_A.
#
# **Quick mode** (default) uses `bagclip-tiny`, a 4-block ViT with random weights that builds
# offline; set the environment variable `BAGCLIP_FULL=1` for the real backbone (GPU, internet).
# %%
import os

import matplotlib.pyplot as plt
import torch

import bagclip
from bagclip import Config

FULL = os.environ.get("BAGCLIP_FULL") == "1"
cfg = Config() if FULL else Config.quick()
device = "cuda" if FULL and torch.cuda.is_available() else "cpu"
cfg
# %% md
# ## Loading: position embeddings resized once
# `load_backbone` builds the open_clip model and resizes its position embedding grid (bicubic,
# class-token row kept apart) before anything runs: no resizing inside `forward`, no weights
# changed behind your back on a first call (a bug one peer code base had).
# %%
bb = bagclip.load_backbone(cfg, device=device)
print("width W =", bb.width, " embed E =", bb.embed_dim, " patch =", bb.patch_size, " grid G =", bb.grid)
print("position embedding:", tuple(bb.visual.positional_embedding.shape), "(1 class row + G*G patch rows)")
# %% md
# Each channel of the position embedding is a small image over the patch grid. Here are four
# channels after interpolation (with real CLIP weights they show smooth spatial patterns; with
# the random tiny backbone they are noise).
# %%
pos = bb.visual.positional_embedding[1:].detach().cpu().reshape(bb.grid, bb.grid, -1)
fig, axes = plt.subplots(1, 4, figsize=(10, 2.6))
for ax, c in zip(axes, [0, 1, 2, 3]):
    ax.imshow(pos[..., c], cmap="coolwarm")
    ax.set_title(f"channel {c}")
    ax.axis("off")
plt.show()
# %% md
# ## Encoding: taps and the class feature
# `encode` returns `Tokens(patches (B, L, N, W), cls (B, E))`: the residual stream after each
# tapped block (class token dropped, no ln_post, no projection) for the Detail-Preserving
# Branch, and the projected class token for the Global Semantic Branch.
# %%
from bagclip.data.synth import ensure_synth
from bagclip.data import load_dataset, load_image

root = ensure_synth(size=cfg.image_size if FULL else 224)
samples = [s for s in load_dataset("synth", root, "test") if s.label == 1][:2]
images = torch.stack([load_image(s.image_path, cfg.image_size) for s in samples])
tokens = bb.encode(images)
print("patches:", tuple(tokens.patches.shape), " cls:", tuple(tokens.cls.shape))
# %% md
# How different are the taps? The norm of each patch token, per tap, shown on the grid: deeper
# blocks carry more global, less local structure.
# %%
norms = tokens.patches[0].norm(dim=-1).reshape(len(cfg.taps), bb.grid, bb.grid)
fig, axes = plt.subplots(1, len(cfg.taps) + 1, figsize=(12, 2.6))
from bagclip.data import denormalize
axes[0].imshow(denormalize(images[0])); axes[0].set_title(samples[0].defect_type); axes[0].axis("off")
for ax, t, n in zip(axes[1:], cfg.taps, norms):
    ax.imshow(n, cmap="viridis"); ax.set_title(f"block {t}"); ax.axis("off")
plt.show()
# %% md
# ## Text: the prompt ensemble
# Every class name is put into the paper's four normal and four abnormal state phrases, each
# inside a set of contextual templates. Sentence embeddings are L2-normalised, averaged per
# state and renormalised: T = [T_N, T_A], shape (2, E).
# %%
from bagclip.prompts import prompt_sentences

normal, abnormal = prompt_sentences("metal nut")
print(len(normal), "normal sentences, e.g.", normal[:2])
print(len(abnormal), "abnormal sentences, e.g.", abnormal[:2])
T = bb.encode_text(["metal nut"])[0]
print("T:", tuple(T.shape), " cos(T_N, T_A) =", float(T[0] @ T[1]))

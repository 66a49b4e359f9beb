# %% md
# # 02. Bifurcated Self-Attention and SAFR
#
# *About 30 minutes, exercises 40 more. Difficulty: intermediate (lesson 01 first; PyTorch
# tensors and linear layers).*
#
# **Learning objectives.** After this lesson you can
# 1. draw the two branches of BSA (paper, Section 3.2): the Global Semantic Branch (class token
#    -> adapter -> g) and the Detail-Preserving Branch (tapped patch tokens -> SAFR);
# 2. compute SAFR's channel gates by hand and check them against the package;
# 3. read the gates of *trained* heads: which taps does training turn up or down;
# 4. compare the paper's detail stream (`detail_attention="none"`: plain taps) with the V-V
#    attention stream we offer as an option (`"vv"`, see docs/decisions.md), side by side.
# %% [parameters]
MODE = "quick"
# %%
import numpy as np
import torch

import bagclip
from bagclip import analysis as an, course, viz
from bagclip.safr import SAFR, concat_taps, split_taps

lab = course.setup(MODE)
cfg, bb = lab.cfg, lab.backbone
print(lab.label(), "| device:", lab.device)
# %% md
# ## 1. The Detail-Preserving Branch: concatenate the taps, recalibrate the channels
# x_concat `(B, N, C = L W)` holds the L taps side by side. SAFR squeezes it over the patches
# (GAP), passes it through a bottleneck (C -> C/r -> C) and a sigmoid: one gate per channel per
# image, x_detail = x_concat * sigmoid(W2 relu(W1 GAP(x_concat))). GAP makes the gates
# independent of *where* a defect is.
# %%
samples = [s for s in lab.target if s.label][:4] + [s for s in lab.target if not s.label][:2]
toks = [lab.view(s)[2] for s in samples]
patches = torch.cat([t.patches for t in toks]).to(bb.device)
B, L, N, W = patches.shape
x_concat = concat_taps(patches)
print("x_concat:", tuple(x_concat.shape), f"(C = {L} taps x {W})")
torch.manual_seed(0)
safr = SAFR(L * W, cfg.safr_reduction).to(bb.device)
with torch.no_grad():
    x_detail = safr(x_concat)
    gap = x_concat.mean(dim=1)
    gates = torch.sigmoid(safr.W2(torch.relu(safr.W1(gap))))
assert torch.allclose(x_detail, x_concat * gates[:, None], atol=1e-6)  # package == formula
assert torch.equal(split_taps(concat_taps(patches), L), patches)  # the split undoes the concat
print("SAFR by the package equals the formula; the tap split is exact.")
# %% md
# ## 2. Gates before and after training
# A randomly initialised SAFR (above) gates channels at random around 0.5; the heads start
# from a neutral SAFR (W2 = 0: every gate exactly 0.5). Heads trained on the auxiliary
# categories (shared by the lessons, trained once and cached) learn which channels of which
# tap to keep; the cell after the figure prints how far from 0.5 the gates are.
# %%
trained = course.trained_heads(lab).model
with torch.no_grad():
    g_trained = trained.safr.gates(x_concat.to(next(trained.parameters()).device)).cpu()
viz.plot_gates({"untrained (image 0)": gates[0].cpu(), "trained, image 0": g_trained[0],
                  f"trained, image {B - 1} (normal)": g_trained[-1]}, cfg.taps, W)
# %%
per_tap = g_trained.reshape(B, L, W).mean(-1).mean(0)
print("mean trained gate per tap:", {f"block {t}": round(float(v), 3) for t, v in zip(cfg.taps, per_tap)})
print("gate spread across images (std over images, mean over channels):",
      round(float(g_trained.std(0).mean()), 4))
print(f"mean |gate - 0.5|: random SAFR {float((gates - 0.5).abs().mean()):.3f}, trained "
      f"{float((g_trained - 0.5).abs().mean()):.3f}; per tap (trained): "
      f"{[round(float(v), 3) for v in (g_trained - 0.5).abs().reshape(B, L, W).mean((0, 2))]}")
# %% md
# ## 3. The Global Semantic Branch
# The class token after the last block, through ln_post and proj (frozen), then a trainable
# adapter initialised to the identity: g = normalize(adapter(cls)). p_img = softmax(100 g T^T)
# [abnormal]. At initialisation g is CLIP's own image embedding:
# %%
from bagclip.model import build_heads

fresh = build_heads(cfg, bb)
cls = torch.cat([t.cls for t in toks]).to(bb.device)
with torch.no_grad():
    g0 = torch.nn.functional.normalize(fresh.global_adapter.to(bb.device)(cls), dim=-1)
assert torch.allclose(g0, torch.nn.functional.normalize(cls, dim=-1), atol=1e-6)
print("untrained adapter = identity: g is CLIP's normalised image embedding")
# %% md
# ## 4. "none" versus "vv": two readings of the detail stream
# The paper's text taps the standard blocks (`"none"`). Our option `"vv"` (from the first tap on)
# takes each tap from a V-V attention step, softmax(V V^T / sqrt(d)) V, which keeps a patch
# attending to patches with similar *values* and is known (CLIP Surgery, AnomalyCLIP) to give
# cleaner local features. Same image, same text, raw text maps per tap (as in lesson 01),
# each on its own range (its colour bar gives it); the cell after the self-check prints how
# much the two streams' tokens differ per tap:
# %%
from bagclip.backbone import vv_attention
from bagclip.data import load_image
from bagclip.prompts import class_texts

bb_vv = bagclip.load_backbone(cfg.replace(detail_attention="vv"), device=lab.device)
sample = samples[0]
image, mask, tok_none = lab.view(sample)
with torch.no_grad():
    tok_vv = bb_vv.encode(load_image(sample.image_path, cfg.image_size)[None].to(bb_vv.device), pad=False)
T = class_texts(bb, [sample.class_name], cfg)[sample.class_name]
maps = {name: an.tap_text_maps(bb, t.patches, T, cfg.logit_scale)[0] for name, t in
        (("none", tok_none), ("vv", tok_vv))}
G = bb.grid
viz.panel_rows([dict(image=image, mask=mask if i == 0 else None, title=f'detail_attention="{name}"',
                       extra=[(m, f"block {t}", "abnormal prob.", "jet") for m, t in zip(maps[name], cfg.taps)])
                  for i, name in enumerate(maps)],
                 suptitle=f"{sample.class_name}/{sample.defect_type}: raw per-tap maps, standard taps vs V-V taps")
# %%
# self-check: the first vv tap equals one V-V step on the first tapped block's input, by hand
with torch.no_grad():
    v = bb.visual  # the embedding, as backbone.forward_taps does it: patches, class token, positions
    x = v.conv1(load_image(sample.image_path, cfg.image_size)[None].to(bb.device, v.conv1.weight.dtype))
    x = torch.cat([v.class_embedding.to(x.dtype).expand(1, 1, -1), x.flatten(2).transpose(1, 2)], dim=1)
    x = v.ln_pre(x + v.positional_embedding.to(x.dtype))
    for blk in list(bb.blocks)[: cfg.taps[0] - 1]:
        x = blk(x)
    blk = bb.blocks[cfg.taps[0] - 1]
    h = blk.ln_1(x)
    Wv = blk.attn.in_proj_weight[2 * bb.width:]
    bv = blk.attn.in_proj_bias[2 * bb.width:]
    v = (h @ Wv.T + bv).view(1, -1, blk.attn.num_heads, bb.width // blk.attn.num_heads).transpose(1, 2)
    att = torch.softmax(v @ v.transpose(-1, -2) / v.shape[-1] ** 0.5, dim=-1) @ v
    y = x + blk.ls_1(blk.attn.out_proj(att.transpose(1, 2).reshape(1, -1, bb.width)))
# the backbone stores tokens in cfg.feature_dtype (float16): equal up to that rounding (a wrong
# formula is off by ~1)
ref = y[0, 1:].to(getattr(torch, cfg.feature_dtype)).float().cpu()
assert torch.allclose(ref, tok_vv.patches[0, 0].cpu(), rtol=2e-3, atol=1e-3)
d = (tok_vv.patches - tok_none.patches.to(tok_vv.patches)).norm(dim=-1).mean(-1)[0]
print("mean |vv - none| per tap:", [round(float(v), 2) for v in d])
# %% md
# ## Summary
# - BSA splits the work: the class token answers "is it anomalous?", the tapped patch tokens
#   answer "where?".
# - SAFR = squeeze (GAP over patches) + excitation (bottleneck + sigmoid): per-image channel
#   gates; the package equals the formula.
# - Training moves the gates from their neutral 0.5; the printed distance per tap says how far.
# - `"vv"` is our option, not the paper's text: compare the maps before choosing it.
#
# ## Exercises
# Solutions: `notebooks/solutions/02_bsa_safr.ipynb`.
# 1. *(15 min, medium)* Knock SAFR out of the trained heads at inference (a copy with
#    `safr = None`: the taps go to the SAGs unchanged) and compare pixel AUROC on the target
#    sets with the full heads. Why is this not the same as training with `use_safr=False`
#    (what lesson 07 does for Table 3)?
# 2. *(10 min, easy)* SAFR's bottleneck holds 2 C^2 / r weights (C = L W, no bias): count them
#    for `safr_reduction` 2, 8 and 64 and check against the package. What does r trade?
# 3. *(15 min, medium)* With `"vv"`, set `bsa_start` to the second tap: which taps' tokens
#    differ from `"none"`, and which are equal?

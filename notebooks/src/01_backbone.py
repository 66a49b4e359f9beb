# %% md
# # 01. The frozen CLIP backbone: input size and patch grid, the taps, the prompts, and what each tap "sees"
#
# *About 30 minutes, exercises 40 more. Difficulty: beginner (lesson 00 first).*
#
# **Learning objectives.** After this lesson you can
# 1. explain why the paper runs CLIP at 518 x 518 (a 37 x 37 patch grid for ViT-L-14-336, as
#    the paper states) while quick mode runs bagclip-mini at 224 px (its own grid, printed
#    below), and how the position embeddings are resized (once, at load time) to a grid;
# 2. name the tapped blocks and the shapes `Tokens(patches (B, L, N, W), cls (B, E))`;
# 3. build the prompt ensemble T = [T_N, T_A] and
# 4. read a *raw* text-similarity map per tap: how well the frozen CLIP alone localises a
#    defect before any head is trained, and
# 5. measure, with intervals, whether a backbone's patch tokens already speak the text (v2) or
#    leave the heads a gap to close (v3, like CLIP).
# %% [parameters]
MODE = "quick"
# %%
import numpy as np
import open_clip
import torch

import bagclip
from bagclip import analysis as an, course, viz
from bagclip.backbone import interpolate_pos_embed

lab = course.setup(MODE)
cfg, bb = lab.cfg, lab.backbone
print(lab.label(), "| device:", lab.device)
print(f"{cfg.backbone} at {cfg.image_size} px: width W = {bb.width}, joint space E = {bb.embed_dim}, "
      f"patch {bb.patch_size} px, grid G = {cfg.image_size} / {bb.patch_size} = {bb.grid} "
      f"(N = {bb.grid ** 2}), taps {cfg.taps}")
paper = bagclip.Config()  # the paper's setting (a Config only: nothing is loaded)
print(f"the paper: {paper.backbone} at {paper.image_size} px, patch {paper.arch.patch_size} px, "
      f"grid {paper.grid} (N = {paper.grid ** 2}), taps {paper.taps}")
assert bb.grid == cfg.grid == cfg.image_size // bb.patch_size
# %% md
# ## 1. Position embeddings, before and after resizing
# A ViT adds a learned position vector to each patch token; there is one per patch of the grid
# it was trained on (for ViT-L-14-336, 336 / 14 = 24 x 24; the paper runs it at 518 px, a 37 x 37
# grid). Whenever the input size differs from the native one, `load_backbone` resizes the
# embedding once (bicubic, class-token row apart) before anything runs. Below: this backbone's
# native embedding and the same channels resized to the grid it would have at 518 px
# (518 // patch size; the cell prints both grids and the one this lesson runs at).
# %%
native_px = open_clip.get_model_config(cfg.backbone)["vision_cfg"]["image_size"]
native = bagclip.load_backbone(cfg.replace(image_size=native_px), device="cpu")
pos_native = native.visual.positional_embedding.detach().cpu()
g518 = 518 // bb.patch_size
pos_518 = interpolate_pos_embed(pos_native, g518)
print(f"native {native_px} px: {tuple(pos_native.shape)} (1 + {native.grid}^2 rows)  ->  at 518 px: "
      f"{tuple(pos_518.shape)} (1 + {g518}^2 rows); this lesson runs at {cfg.image_size} px, grid {bb.grid}")
viz.plot_pos_embed(pos_native[1:], pos_518[1:], label=f"{cfg.backbone}: position embedding channels "
                     f"(with real CLIP weights they are smooth spatial patterns)")
# %% md
# Self-checks: resizing to the native grid changes nothing, the class-token row is never
# touched, and the backbone we loaded holds exactly the resized embedding of its own grid.
# %%
assert torch.allclose(interpolate_pos_embed(pos_native, native.grid), pos_native, atol=1e-5)
assert torch.equal(pos_518[0], pos_native[0])
assert torch.allclose(bb.visual.positional_embedding.detach().cpu(),
                      interpolate_pos_embed(pos_native, bb.grid), atol=1e-5)
del native
# %% md
# ## 2. The taps
# `encode` runs the frozen ViT once and keeps the residual stream after each tapped block
# (class token dropped, no ln_post, no projection) for the Detail-Preserving Branch, and the
# projected class token for the Global Semantic Branch.
# %%
sample = next(s for s in lab.target if s.label and s.defect_type != "subtle")
image, mask, tokens = lab.view(sample)
print("patches:", tuple(tokens.patches.shape), "= (B, L taps, N patches, W)   cls:", tuple(tokens.cls.shape))
norms = tokens.patches[0].norm(dim=-1).reshape(len(cfg.taps), bb.grid, bb.grid)
viz.plot_tap_maps(image, mask, norms / norms.amax(dim=(1, 2), keepdim=True), cfg.taps,
                    f"{sample.class_name}/{sample.defect_type}", label="token norm / max")
# %% md
# ## 3. The prompt ensemble
# Every class name goes into the paper's four normal and four abnormal state phrases, each
# inside 21 WinCLIP-style templates. Each sentence embedding is L2-normalised, the embeddings
# are averaged per state and renormalised: T = [T_N, T_A] `(2, E)`.
# %%
from bagclip.data import prompt_name
from bagclip.prompts import prompt_sentences

name = prompt_name(sample.class_name)
normal, abnormal = prompt_sentences(name)
print(len(normal), "normal sentences, e.g.", normal[:2])
print(len(abnormal), "abnormal sentences, e.g.", abnormal[:2])
T = bb.encode_text([name])[0]
print(f"T: {tuple(T.shape)}, cos(T_N, T_A) = {float(T[0] @ T[1]):.3f}")
# self-check: the ensemble by hand equals the package
with torch.no_grad():
    by_hand = []
    for sents in (normal, abnormal):
        e = torch.nn.functional.normalize(bb.model.encode_text(bb.tokenizer(sents).to(bb.device)).float(), dim=-1)
        by_hand.append(torch.nn.functional.normalize(e.mean(0), dim=-1))
assert torch.allclose(torch.stack(by_hand), T, atol=1e-5)
# %% md
# ## 4. The raw text-similarity map, per tap
# Before any training: send each tap's patch tokens through CLIP's own `ln_post` and `proj`
# (the path of the class token), compare with [T_N, T_A] and take
# softmax(100 cos)[abnormal] per patch (`bagclip.analysis.tap_text_maps`). This is what the
# frozen CLIP alone says about each patch at each depth. Intermediate taps were never trained to
# live in the joint space, which is one reason the paper trains projection heads (JFF, lesson 04).
# %%
maps = an.tap_text_maps(bb, tokens.patches, T, cfg.logit_scale)[0]  # (L, G, G)
viz.plot_tap_maps(image, mask, maps, cfg.taps, f"{sample.class_name}/{sample.defect_type}: raw CLIP")
# %%
# self-check: one patch of one tap by the formula
l, i = len(cfg.taps) - 1, int(np.argmax(an.patch_fraction(mask, bb.grid)))
z = bb.visual.ln_post(tokens.patches[0, l, i].to(bb.device)) @ bb.visual.proj
z = torch.nn.functional.normalize(z, dim=-1).cpu()
p = torch.softmax(cfg.logit_scale * (T.cpu() @ z), dim=0)[1]
assert abs(float(p) - float(maps[l].flatten()[i])) < 1e-4
# %% md
# How much does the raw map separate defect patches from normal ones, per tap? Patch-level
# AUROC (0.5 = chance) of the map above, pooled over the patches of 20 defective target images
# (`course.tap_auroc`: a patch counts as defective when over a quarter of it is):
# %%
from bagclip.prompts import class_texts

texts = class_texts(bb, [s.class_name for s in lab.target], cfg)
course.tap_auroc(lab, texts, n=20).round(3).to_frame()
# %% md
# ## 5. Born aligned, or not: do the tapped tokens speak the text?
# Real CLIP never saw a patch label: its class token is aligned with the text (image-level
# zero-shot works), but its tapped patch tokens, sent through the same `ln_post` + `proj`, segment
# anomalies poorly. That is the gap BAG-CLIP's heads (and APRIL-GAN's linear maps, and BSA's
# value-value stream) exist to close. The kit ships two miniatures (docs/bagclip-mini.md):
# **v2**, pretrained with patch losses through the shipped `proj` (its tapped tokens are a
# segmenter before any head is trained), and **v3**, whose patch losses went through a
# projection dropped at export (as in CLIP, only the class token learnt to meet the text).
# Below: the raw text map of the last tap on the same image, then, on a balanced subset of the
# targets (8 normal + 8 defective images a class), the raw tokens, the value-value stream and the
# trained BAG-CLIP heads, with paired bootstrap intervals. (Other modes: only their own backbone.)
# %%
from bagclip.compare import EFFECT, compare, describe, estimate

versions = {"v2 (born aligned)": "bagclip-mini", "v3 (CLIP-like)": "bagclip-mini-v3"} if MODE == "quick" \
    else {f"{cfg.backbone} ({cfg.pretrained})": cfg.pretrained}
labs = {v: lab if w == cfg.pretrained else course.setup(MODE, data=False, pretrained=w) for v, w in versions.items()}
for v, lab_v in labs.items():
    lab_v.aux, lab_v.targets = lab.aux, lab.targets  # the same images for every backbone
    _, _, tok_v = lab_v.view(sample)
    T_v = lab_v.backbone.encode_text([name])[0]
    last = an.tap_text_maps(lab_v.backbone, tok_v.patches, T_v, cfg.logit_scale)[0, -1:]  # (1, G, G)
    viz.plot_tap_maps(image, mask, last, cfg.taps[-1:], f"{v}: raw text map, block {cfg.taps[-1]}")
# %%
from bagclip.artefacts.context import APRIL, METHODS  # the APRIL-GAN-style settings reproduce trains

subset = course.balanced(lab.target, 8)
results = {v: course.alignment(lab_v, {"BAG-CLIP heads": course.trained_heads(lab_v).model.eval(),
                                       "APRIL-GAN-style heads": course.trained_heads(
                                           lab_v, lab_v.cfg.replace(**METHODS[APRIL])).model.eval()}, subset)
           for v, lab_v in labs.items()}
rows = []
for v, res in results.items():
    for d, r in res.items():
        for metric in ("image_auroc", "pixel_auroc"):
            e = estimate(r, metric, n_boot=1000)
            rows.append({"backbone": v, "detector": d, "metric": metric,
                         "AUROC [95 % interval]": f"{100 * e.value:.1f} [{100 * e.low:.1f}, {100 * e.high:.1f}]"})
import pandas as pd

print(f"{len(subset)} target images, one seed; {lab.label()}")
pd.DataFrame(rows).pivot(index=["backbone", "detector"], columns="metric", values="AUROC [95 % interval]")
# %% md
# The comparison that matters is the heads against the raw tokens of the *same* backbone (the
# gap), not the raw tokens' level. Each line is computed from the paired bootstrap above:
# %%
gaps = {}
for v, res in results.items():
    raw = res["raw tokens (training-free)"]
    gaps[v] = compare(raw, res["BAG-CLIP heads"], "pixel_auroc", n_boot=1000)
    print(f"{v}: " + describe(gaps[v], "training the heads (pixel, against the raw tokens)"))
    print(f"{v}: " + describe(compare(raw, res["value-value stream (training-free)"], "pixel_auroc", n_boot=1000),
                              "the value-value stream (pixel, against the raw tokens)"))
if len(gaps) == 2:
    (a, ga), (b, gb) = gaps.items()
    bigger = b if gb.low > ga.high else a if ga.low > gb.high else None
    print("reading:", f"the heads have more to fix on {bigger}: its gap's interval lies above the other's"
          if bigger else "the two gaps' intervals overlap: this subset does not tell which backbone leaves "
                         "the heads more to fix")
# %% md
# Closing the gap is what any trained head does; BAG-CLIP's claim is that its components (SAFR, SAG,
# JFF) close it *better* than a linear map per tap (the APRIL-GAN-style heads: the same heads with
# SAFR and SAG off). The same paired comparison, BAG-CLIP minus APRIL-GAN-style, on each backbone:
# %%
for v, res in results.items():
    c = compare(res["APRIL-GAN-style heads"], res["BAG-CLIP heads"], "pixel_auroc", n_boot=1000)
    print(f"{v}: " + describe(c, "BAG-CLIP's components (pixel, against the APRIL-GAN-style heads)"))
    if c.verdict != EFFECT:
        # an interval's half-width shrinks as 1 / sqrt(images): how many images would make it as
        # narrow as the measured difference (an extrapolation from this interval, not a measurement)
        half, d = (c.high - c.low) / 2, max(abs(c.diff), 1e-3)
        print(f"  reading: the interval includes 0, so these {len(subset)} images cannot tell the two apart; "
              f"resolving a difference of {100 * abs(c.diff):.1f} points would take about "
              f"{int(len(subset) * (half / d) ** 2):,} images at this spread (extrapolated: an interval narrows "
              f"as 1 / sqrt(images))")
    else:
        print("  reading: the interval excludes 0: on this subset the components "
              + ("help" if c.diff > 0 else "hurt") + " against a linear map")
# %% md
# **What "no evidence" means.** An interval that includes 0 says the measurement cannot tell the two
# detectors apart at this size: it is *not* evidence that the components do nothing, nor that they
# help. The paper reports its components' effects on MVTec AD and VisA at 518 px with the real
# ViT-L-14-336 (the paper's numbers, quoted in lesson 07); a CPU miniature at 224 px on a few
# hundred images may simply be too small to see a difference of a point or two. That is what the
# kit can and cannot show on a CPU: the heads-versus-raw-tokens gap above is large enough to
# measure here; a component's margin over a linear map may not be. The kit's own run of the whole
# quick benchmark on v3 (3 seeds, 400 images) is in `docs/v3-reproduce/`; read its verdicts there.
#
# ## Summary
# - The grid is input size / patch size: the paper's ViT-L-14-336 at 518 px sees 37 x 37 (its
#   setting), this mode's backbone the grid printed in the first cell; position embeddings are
#   resized to it once, at load time.
# - Four taps give multi-depth patch tokens (B, L, N, W); the class token goes to the global branch.
# - T = [T_N, T_A] is an ensemble over templates and state words, normalised twice.
# - A raw per-tap text map shows what frozen CLIP localises by itself: the baseline the heads
#   are trained to improve on (whether they do is measured in lessons 05 and 07).
# - Whether the heads have anything to fix depends on the backbone: section 5 measures the gap
#   between the heads and the raw tokens on a backbone born aligned (v2) and on a CLIP-like one
#   (v3); read its printed verdicts, not this summary, for the outcome.
# - Whether BAG-CLIP's components beat a linear map is a second, smaller question: "no evidence"
#   there means the interval includes 0 at this size, not that they do nothing.
#
# ## Exercises
# Solutions: `notebooks/solutions/01_backbone.ipynb`.
# 1. *(10 min, easy; lab mode needs internet once)* Which tap localises best in this mode, by
#    the per-tap patch AUROC? Switch `MODE = "lab"` and compare ViT-B-16's raw maps and AUROCs.
# 2. *(15 min, medium)* Replace the templates with a single one
#    (`prompt_sentences(name, templates=("a photo of a {}.",))`) and measure the per-tap AUROC
#    again: how much does the ensemble help?
# 3. *(15 min, medium)* Run the backbone at its native size and at 518 px on one small defect:
#    what grid does each give, and how many patches does the defect touch in each case?

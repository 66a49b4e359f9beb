# %% md
# # 01. The frozen CLIP backbone: solutions to the exercises
#
# *The instructor's key for lesson 01. It rebuilds the lesson's backbone and texts (tokens read
# from the cache when the lesson ran first), then answers each exercise with a cell that
# computes the answer. The answers are whatever these cells print on this machine.*
# %% [parameters]
MODE = "quick"
# %%
import open_clip
import pandas as pd
import torch

import bagclip
from bagclip import analysis as an, course
from bagclip.data import load_image, load_mask, prompt_name
from bagclip.prompts import class_texts, prompt_sentences

lab = course.setup(MODE)
cfg, bb = lab.cfg, lab.backbone
defects = course.defective(lab, 20)  # the lesson's 20 defective images (course.tap_auroc's)
print(lab.label(), f"| {cfg.backbone} at {cfg.image_size} px, grid {bb.grid}, taps {cfg.taps}")

# %% md
# ## Exercise 1: which tap localises best (in this mode)
# Run this notebook with `MODE = "lab"` (ViT-B-16, downloads once) for the other half of the
# comparison; the cell prints the mode it ran in.
# %%
ensemble = class_texts(bb, [s.class_name for s in defects], cfg)
auroc = course.tap_auroc(lab, ensemble)
print(f"{MODE} mode, {cfg.backbone}: per-tap patch AUROC", auroc.round(3).to_dict())
print(f"best tap: {auroc.idxmax()} ({auroc.max():.3f}); worst: {auroc.idxmin()} ({auroc.min():.3f})")
# %% md
# ## Exercise 2: one template instead of the ensemble
# The single-template text features are built as the lesson's self-check builds the ensemble:
# each sentence normalised, averaged per state, normalised again.
# %%
def texts_from(templates) -> dict:
    out = {}
    with torch.no_grad():
        for c in sorted({s.class_name for s in defects}):
            states = []
            for sents in prompt_sentences(prompt_name(c, cfg.class_names), templates=templates):
                e = bb.model.encode_text(bb.tokenizer(sents).to(bb.device)).float()
                states.append(torch.nn.functional.normalize(torch.nn.functional.normalize(e, dim=-1).mean(0), dim=-1))
            out[c] = torch.stack(states).cpu()
    return out

single = course.tap_auroc(lab, texts_from(("a photo of a {}.",)))
gain = pd.DataFrame({"ensemble": auroc, "one template": single, "ensemble - one": auroc - single})
print(gain.round(3).to_string())
print(f"the ensemble is better on {(gain['ensemble - one'] > 0).sum()} of {len(gain)} taps; "
      f"mean change {gain['ensemble - one'].mean():+.3f} AUROC")
# %% md
# ## Exercise 3: native size against 518 px on one small defect
# The grid is input size // patch size; the backbone needs a multiple of its patch size, so
# "518 px" is 518 // patch x patch here (518 itself for the paper's patch of 14).
# %%
native_px = open_clip.get_model_config(cfg.backbone)["vision_cfg"]["image_size"]
big_px = 518 // bb.patch_size * bb.patch_size
small_one = min(defects, key=lambda s: load_mask(s.mask_path, cfg.image_size).numpy().mean())
rows = []
for px in (native_px, big_px):
    grid = px // bb.patch_size
    m = load_mask(small_one.mask_path, px).numpy()
    rows.append({"input px": px, "grid": grid, "patches touched": int((an.patch_fraction(m, grid) > 0).sum()),
                 "defect area %": round(100 * float(m.mean()), 3)})
big = bagclip.load_backbone(cfg.replace(image_size=big_px), device=lab.device)
with torch.no_grad():
    tok = big.encode(load_image(small_one.image_path, big_px)[None].to(big.device), pad=False)  # one image, one forward
assert tok.patches.shape[2] == (big_px // bb.patch_size) ** 2
print(f"{small_one.class_name}/{small_one.defect_type} ({small_one.image_path.stem}); tokens at {big_px} px: "
      f"{tuple(tok.patches.shape)}")
pd.DataFrame(rows)

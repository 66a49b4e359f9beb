# %% md
# # 05. Scoring, the losses, and training with a live loss curve
#
# **Learning objectives.** After this lesson you can
# 1. follow the heads' output: per-tap two-channel maps, the anomaly map, p_img and the image score;
# 2. compute the paper's objective L = L_CLS + lambda L_SEG (Section 3.6) by hand: focal on the
#    image probability; focal + dice(abnormal, M) + dice(normal, 1 - M) per tap;
# 3. train the heads on the auxiliary categories while watching the loss, and compare untrained
#    and trained heads on the unseen target categories.
# %% [parameters]
MODE = "quick"
# %%
import tempfile

import pandas as pd
import torch

from bagclip import analysis as an, course, viz
from bagclip.backbone import Tokens
from bagclip.data import load_mask
from bagclip.evaluate import evaluate_cached
from bagclip.losses import bagclip_loss, dice_loss, focal_loss
from bagclip.metrics import METRIC_KEYS
from bagclip.model import build_heads
from bagclip.prompts import class_texts
from bagclip.train import train

lab = course.setup(MODE)
cfg, bb = lab.cfg, lab.backbone
print(lab.label(), "| device:", lab.device)
# %% md
# ## 1. What the heads output
# %%
batch = [s for s in lab.aux if s.label][:3] + [s for s in lab.aux if not s.label][:1]
views = [lab.view(s) for s in batch]
tokens = Tokens(torch.cat([v[2].patches for v in views]).to(bb.device), torch.cat([v[2].cls for v in views]).to(bb.device))
texts = class_texts(bb, [s.class_name for s in batch], cfg)
text = torch.stack([texts[s.class_name] for s in batch]).to(bb.device)
masks = torch.stack([load_mask(s.mask_path, cfg.image_size) for s in batch]).float().to(bb.device)
labels = torch.tensor([float(s.label) for s in batch], device=bb.device)
heads = build_heads(cfg, bb).to(bb.device)
out = heads(tokens, text)
print("layer_maps", tuple(out.layer_maps.shape), "(B, L, [normal, abnormal], H, W); anomaly_map",
      tuple(out.anomaly_map.shape), "; p_img", tuple(out.p_img.shape))
assert torch.allclose(out.layer_maps.sum(2), torch.ones(()), atol=1e-5)  # softmax over the two states
assert torch.allclose(out.anomaly_map, out.layer_maps[:, :, 1].mean(1))  # mean of the abnormal channels
assert torch.allclose(out.image_score, (out.p_img + out.anomaly_map.flatten(1).amax(1)) / 2)  # "mix"
print("maps sum to one per pixel; anomaly map = mean over taps; image score = (p_img + max map) / 2")
# %% md
# ## 2. The losses, by hand
# Focal on probabilities, gamma = 2: -(1 - p_t)^2 log p_t, averaged. Dice per image, averaged
# over the batch: 1 - (2 sum(p g) + 1) / (sum p + sum g + 1). Never squeeze the batch
# dimension: at batch size 1 a squeezed mask would make dice treat rows as images.
# %%
total, parts = bagclip_loss(out, masks, labels, cfg)
def focal(p_t, gamma=cfg.focal_gamma):
    p_t = p_t.clamp_min(1e-8)
    return (-(1 - p_t) ** gamma * torch.log(p_t)).mean()
def dice(p, g):
    p, g = p.flatten(1), g.flatten(1)
    return (1 - (2 * (p * g).sum(1) + 1) / (p.sum(1) + g.sum(1) + 1)).mean()
seg = 0
for l in range(len(cfg.taps)):
    s = out.layer_maps[:, l]
    p_t = torch.where(masks > 0.5, s[:, 1], s[:, 0])
    seg = seg + focal(p_t) + dice(s[:, 1], masks) + dice(s[:, 0], 1 - masks)
cls = focal(torch.where(labels > 0.5, out.p_img, 1 - out.p_img))
by_hand = cls + cfg.loss_lambda * seg
assert torch.allclose(total, by_hand, rtol=1e-5), (float(total), float(by_hand))
assert torch.allclose(dice_loss(out.layer_maps[:1, 0, 1], masks[:1]), dice(out.layer_maps[:1, 0, 1], masks[:1]))
print({k: round(float(v), 4) for k, v in parts.items()}, "== by hand", round(float(by_hand), 4))
# %% md
# ## 3. Training, with a live loss curve
# The backbone is frozen, so every image is encoded once into the feature cache and training
# reads tokens from it. `train(..., on_step=live.update)` redraws the curve as it goes;
# checkpoints are written atomically, so `resume=True` continues an interrupted run to the same
# weights.
# %%
live = viz.LiveLoss(every=4, title=lab.label())
run_dir = tempfile.mkdtemp(prefix="bagclip-05-")
result = train(cfg, lab.aux, bb, run_dir, cache=lab.cache, progress=False, on_step=live.update)
live.render()
assert len(live.history) == len(result.history) and abs(live.history[-1] - result.history[-1]) < 1e-6
print(f"{len(result.history)} steps: loss {result.history[0]:.3f} -> {result.history[-1]:.3f}")
# %% md
# ## 4. Untrained versus trained heads, zero-shot on the target categories
# %%
rows = {}
for name, model in (("untrained", build_heads(cfg, bb).to(bb.device).eval()), ("trained", result.model)):
    m = evaluate_cached(model, cfg, bb, lab.cache, lab.target)
    rows[name] = {k: 100 * m[k] for k in METRIC_KEYS}
res = pd.DataFrame(rows).T
res.attrs["label"] = lab.label()
viz.table_figure(res, f"zero-shot on {sorted({s.class_name for s in lab.target})} - {lab.label()}")
# %%
from bagclip.inference import predict_all

picks = [next(s for s in lab.target if s.label and s.class_name == c) for c in sorted({s.class_name for s in lab.target})]
maps, scores = predict_all(result.model, cfg, bb, lab.cache, picks)  # (n, S, S), (n,)
viz.panel_rows([dict(image=lab.view(s)[0], mask=lab.view(s)[1], amap=maps[i],
                       title=f"{s.class_name}/{s.defect_type}", map_title=f"score {float(scores[i]):.2f}")
                  for i, s in enumerate(picks)], suptitle="trained heads on unseen classes (maps on a fixed 0-1 scale)")
# %% md
# ## Summary
# - The heads give two-channel maps per tap; their abnormal channels average into the anomaly
#   map; the image score mixes p_img with the map's peak.
# - L = focal(p_img) + lambda sum over taps [focal + dice(ab, M) + dice(norm, 1 - M)], checked by hand.
# - Training reads cached tokens; the live curve shows the loss falling; the table compares
#   untrained and trained heads on classes never trained on.
#
# ## Exercises
# 1. Set `loss_lambda` to 0 (image loss only): what happens to the pixel metrics?
# 2. Interrupt training (`max_steps=5`), then resume it (`resume=True`): are the final weights
#    identical to an uninterrupted run?
# 3. Switch `image_score` to "global" and "max": which image metric moves most?

# %% md
# # 05. Scoring, the losses, and training with a live loss curve
#
# *Difficulty: intermediate. Time: about 25 min to read; running it in quick mode trains the
# heads once (the Config's own epochs, as lessons 06 and 07) and scores the target images
# twice, a minute or two on a 2-core CPU.*
#
# **Learning objectives.** After this lesson you can
# 1. follow the heads' output: per-tap two-channel maps, the anomaly map, p_img and the image score;
# 2. compute the paper's objective L = L_CLS + lambda L_SEG (Section 3.6) by hand: focal on the
#    image probability; focal + dice(abnormal, M) + dice(normal, 1 - M) per tap;
# 3. train the heads on the auxiliary categories while watching the loss, and compare untrained
#    and trained heads on the unseen target categories with a paired interval and beside the
#    chance levels.
# %% [parameters]
MODE = "quick"
# %%
import tempfile

import pandas as pd
import torch

from bagclip import analysis as an, course, viz
from bagclip.backbone import Tokens
from bagclip.data import load_mask
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
print({k: round(float(torch.as_tensor(v).detach()), 4) for k, v in parts.items()}, "== by hand", round(float(by_hand.detach()), 4))
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
# Each table row is one set of heads on the same target images. Beside F1-max and AP stand
# their chance levels: a detector that ignores the image scores AUROC 50, AP = p and F1-max =
# 2p/(1 + p) (p the defective fraction per class; lesson 06). A value near its chance level
# says the heads learnt nothing transferable, whatever its size. Whether training changed a
# metric is then `compare`'s paired interval over the images (one training run: the interval
# does not cover seed-to-seed variation; lesson 07 adds seeds).
# %%
from bagclip.compare import Results, chance_of, compare, describe
from bagclip.evaluate import evaluate_recorded

rows, recs = {}, {}
for name, model in (("untrained", build_heads(cfg, bb).to(bb.device).eval()), ("trained", result.model)):
    m, rec = evaluate_recorded(model, cfg, bb, lab.cache, lab.target)
    recs[name] = Results.from_records([rec])
    rows[name] = {k: 100 * m[k] for k in METRIC_KEYS}
    for k in ("image_f1_max", "image_ap", "pixel_f1_max", "pixel_ap"):
        rows[name][f"{k} chance"] = 100 * chance_of(recs[name], k)
res = pd.DataFrame(rows).T[[c for k in METRIC_KEYS for c in (k, f"{k} chance") if c in rows["trained"]]]
viz.table_figure(res, f"zero-shot on {sorted({s.class_name for s in lab.target})} - {lab.label()}", col_width=0.9)
# %%
for metric in ("image_auroc", "image_f1_max", "pixel_auroc", "pixel_aupro"):
    c = compare(recs["untrained"], recs["trained"], metric, n_boot=1000)
    above = "" if c.chance is None else f" (trained {100 * c.b:.1f} vs chance {100 * c.chance:.1f})"
    print(describe(c, "training") + above)
    if metric.startswith("image"):  # self-check: the comparison's values are the table's (exact metrics)
        assert abs(100 * c.b - res.loc["trained", metric]) < 1e-6 and abs(100 * c.a - res.loc["untrained", metric]) < 1e-6
# %%
from bagclip.inference import predict_all

picks = [next(s for s in lab.target if s.label and s.class_name == c) for c in sorted({s.class_name for s in lab.target})]
maps, scores = predict_all(result.model, cfg, bb, lab.cache, picks)  # (n, S, S), (n,)
viz.panel_rows([dict(image=lab.view(s)[0], mask=lab.view(s)[1], amap=maps[i],
                       title=f"{s.class_name}/{s.defect_type}", map_title=f"score {float(scores[i]):.2f}")
                  for i, s in enumerate(picks)], suptitle="trained heads on unseen classes (each map on its own range: colour bar)")
# %% md
# ## Summary
# - The heads give two-channel maps per tap; their abnormal channels average into the anomaly
#   map; the image score mixes p_img with the map's peak.
# - L = focal(p_img) + lambda sum over taps [focal + dice(ab, M) + dice(norm, 1 - M)], checked by hand.
# - Training reads cached tokens; the live curve shows the loss during training; the table
#   puts untrained and trained heads beside the chance levels, and `compare` says whether
#   training changed each metric on these images.
#
# ## Exercises
# 1. *(intermediate, 10 min)* Set `loss_lambda` to 0 (image loss only): what does `compare`
#    say about the pixel metrics against the trained heads above?
# 2. *(easy, 5 min)* Interrupt training (`max_steps=5`), then resume it (`resume=True`): are
#    the final weights identical to an uninterrupted run?
# 3. *(easy, 5 min)* Switch `image_score` to "global" and "max": which image metric moves
#    most, and is the move outside its interval?
#
# Worked solutions: `notebooks/solutions/05_losses_training.ipynb`.

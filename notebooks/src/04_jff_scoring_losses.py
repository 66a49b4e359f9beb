# %% md
# # 4. Joint Feature Fusion, scoring and the losses
#
# Per tap l, JFF concatenates the original feature F_pre^(l) and the graph feature F_SAG^(l),
# projects to the text space and L2-normalises: Psi^(l) `(B, N, E)` (section 3.5). Cosine
# similarity with T = [T_N, T_A], scaled by tau = 100 and put through a softmax, gives a
# two-channel map per tap; the anomaly map is the mean of the abnormal channels. The image
# probability comes from the global branch. Training minimises L = L_CLS + lambda * L_SEG
# (section 3.6): focal on the image probability; focal + dice(abnormal, M) + dice(normal, 1 - M)
# per tap.
# %%
import os

import matplotlib.pyplot as plt
import torch

import bagclip
from bagclip import Config
from bagclip.data import denormalize, load_dataset, load_image, load_mask
from bagclip.data.synth import ensure_synth
from bagclip.losses import bagclip_loss, dice_loss, focal_loss
from bagclip.train import build_heads, class_texts

FULL = os.environ.get("BAGCLIP_FULL") == "1"
cfg = Config() if FULL else Config.quick()
bb = bagclip.load_backbone(cfg, device="cuda" if FULL and torch.cuda.is_available() else "cpu")
root = ensure_synth(size=cfg.image_size if FULL else 224)
samples = [s for s in load_dataset("synth", root, "test")][:4]
images = torch.stack([load_image(s.image_path, cfg.image_size) for s in samples]).to(bb.device)
masks = torch.stack([load_mask(s.mask_path, cfg.image_size) for s in samples]).float().to(bb.device)
labels = torch.tensor([float(s.label) for s in samples], device=bb.device)
tokens = bb.encode(images)
texts = class_texts(bb, [s.class_name for s in samples], cfg)
text = torch.stack([texts[s.class_name] for s in samples])  # (B, 2, E)
# %% md
# ## The heads and their output
# %%
heads = build_heads(cfg, bb).to(bb.device)
out = heads(tokens, text)
print("layer maps:", tuple(out.layer_maps.shape), " anomaly map:", tuple(out.anomaly_map.shape),
      " p_img:", tuple(out.p_img.shape), " image score:", tuple(out.image_score.shape))
print("two channels sum to one:", bool(torch.allclose(out.layer_maps.sum(2), torch.ones(()))))
# %%
from bagclip.model import parameter_table

parameter_table(heads)
# %% md
# ## Untrained maps, per tap
# Untrained heads give maps with no relation to the defects: this is the starting point that
# training (next notebook) must beat.
# %%
L = out.layer_maps.shape[1]
fig, axes = plt.subplots(len(samples), L + 2, figsize=(2.2 * (L + 2), 2.2 * len(samples)))
for i, s in enumerate(samples):
    axes[i, 0].imshow(denormalize(images[i].cpu())); axes[i, 0].set_title(s.defect_type, fontsize=8)
    axes[i, 1].imshow(masks[i].cpu(), cmap="gray"); axes[i, 1].set_title("mask", fontsize=8)
    for l in range(L):
        axes[i, l + 2].imshow(out.layer_maps[i, l, 1].detach().cpu(), vmin=0, vmax=1, cmap="jet")
        axes[i, l + 2].set_title(f"tap {cfg.taps[l]}", fontsize=8)
for ax in axes.flat: ax.axis("off")
plt.show()
# %% md
# ## The losses, checked by hand
# Dice is computed per image and averaged over the batch: never squeeze the batch dimension
# (at batch size 1 a squeezed mask makes dice treat rows as images; a peer bug).
# %%
total, parts = bagclip_loss(out, masks, labels, cfg)
print({k: round(float(v), 4) for k, v in parts.items()}, " total:", round(float(total), 4))
p, g = out.layer_maps[:, 0, 1], masks
by_hand = (1 - (2 * (p * g).sum((1, 2)) + 1) / (p.sum((1, 2)) + g.sum((1, 2)) + 1)).mean()
print("dice by package:", float(dice_loss(p, g)), " by hand:", float(by_hand))

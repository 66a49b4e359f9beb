"""The frozen CLIP backbone: open_clip ViT at any input size, with tapped blocks.

This is the frozen half of the paper's Bifurcated Self-Attention (BSA, section 3.2): its two
branches leave the image encoder here. `load_backbone(cfg)` builds the open_clip model,
interpolates its position embeddings once to the configured grid, freezes it, and returns a
`Backbone` whose `encode(images)` gives `Tokens(patches (B, L, N, W), cls (B, E))`:

- patches: the residual stream after each tapped block (1-indexed), class token dropped,
  before ln_post / proj (the Detail-Preserving Branch's raw input; `tap_ln_post=True` applies
  ln_post);
- cls: the class token after the last block -> ln_post -> proj (the Global Semantic Branch,
  before the optional trainable adapter); open_clip's `encode_image` (unnormalised).

Both are rounded to `cfg.feature_dtype` (float16 by default) and returned as float32, so the
tokens of a fresh `encode` equal those the feature cache stores, bit for bit.
With `detail_attention="vv"`, taps at or after `bsa_start` come from the V-V attention stream
instead (see `vv_attention` and docs/decisions.md).
"""
from __future__ import annotations

import math
import os
from typing import NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import TINY_BACKBONE, Config, register_model_configs
from .prompts import prompt_sentences


class Tokens(NamedTuple):
    patches: torch.Tensor  # (B, L, N, W) tapped patch tokens
    cls: torch.Tensor  # (B, E) projected class token

    def float(self) -> "Tokens":
        """Both tensors as float32 (the cache may hold float16)."""
        return Tokens(self.patches.float(), self.cls.float())

    def to(self, device) -> "Tokens":
        return Tokens(self.patches.to(device), self.cls.to(device))


def interpolate_pos_embed(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """Resize a ViT position embedding `(1 + g*g, W)` to `(1 + grid*grid, W)`.

    Bicubic, align_corners=False, the class-token row kept apart. At the native grid this is
    the identity (cubic weights at integer offsets are exactly (0, 1, 0, 0)).
    """
    cls_pos, patch_pos = pos[:1], pos[1:]
    g = int(round(math.sqrt(patch_pos.shape[0])))
    if g * g != patch_pos.shape[0]:
        raise ValueError(f"position embedding has {patch_pos.shape[0]} patch rows, not a square grid")
    w = patch_pos.shape[1]
    x = patch_pos.reshape(1, g, g, w).permute(0, 3, 1, 2).float()  # (1, W, g, g)
    x = F.interpolate(x, size=(grid, grid), mode="bicubic", align_corners=False)
    x = x.permute(0, 2, 3, 1).reshape(grid * grid, w).to(pos.dtype)
    return torch.cat([cls_pos, x], dim=0)


def vv_attention(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One block's V-V detail output: x + out_proj(softmax(V V^T / sqrt(hs)) V), no MLP.

    x: (B, T, W) the block's input (the standard stream). Returns (B, T, W).
    """
    attn: nn.MultiheadAttention = block.attn
    B, T, W = x.shape
    nh = attn.num_heads
    hs = W // nh
    h = block.ln_1(x)
    w_v = attn.in_proj_weight[2 * W:]
    b_v = attn.in_proj_bias[2 * W:] if attn.in_proj_bias is not None else None
    v = F.linear(h, w_v, b_v).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
    y = F.scaled_dot_product_attention(v, v, v)  # softmax(v v^T / sqrt(hs)) v
    y = y.transpose(1, 2).reshape(B, T, W)
    y = attn.out_proj(y)
    return x + block.ls_1(y)


class Backbone(nn.Module):
    """Frozen open_clip model with tapped blocks. See the module docstring."""

    def __init__(self, model: nn.Module, tokenizer, cfg: Config):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.visual = model.visual
        self.blocks = model.visual.transformer.resblocks
        self.width = int(self.visual.conv1.out_channels)  # W
        self.embed_dim = int(self.visual.proj.shape[1])  # E
        self.patch_size = int(self.visual.conv1.kernel_size[0])
        self.grid = cfg.image_size // self.patch_size  # G
        self.taps = tuple(cfg.taps)
        self._text_cache: dict[tuple[str, bool], torch.Tensor] = {}
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "Backbone":  # frozen: always eval (no dropout)
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return self.visual.conv1.weight.device

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1 + N, W): patch embedding, class token, positions, ln_pre."""
        v = self.visual
        x = v.conv1(images.to(v.conv1.weight.dtype))  # (B, W, G, G)
        x = x.flatten(2).transpose(1, 2)  # (B, N, W)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        return v.ln_pre(x)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> Tokens:
        """images (B, 3, S, S) normalised for CLIP -> Tokens(patches (B, L, N, W), cls (B, E))."""
        s = self.cfg.image_size
        if images.ndim != 4 or images.shape[1:] != (3, s, s):
            raise ValueError(f"expected images of shape (B, 3, {s}, {s}), got {tuple(images.shape)}; "
                             f"load them with bagclip.data.load_image(path, {s})")
        x = self._embed(images.to(self.device))
        vv = self.cfg.detail_attention == "vv"
        start = self.cfg.bsa_first
        taps = []
        for i, blk in enumerate(self.blocks, start=1):
            if vv and i >= start and i in self.taps:
                taps.append(vv_attention(blk, x)[:, 1:].clone())
            x = blk(x)
            if i in self.taps and not (vv and i >= start):
                taps.append(x[:, 1:].clone())  # clone: never alias the running stream
        patches = torch.stack(taps, dim=1)  # (B, L, N, W)
        if self.cfg.tap_ln_post:
            patches = self.visual.ln_post(patches)
        cls = self.visual.ln_post(x[:, 0]) @ self.visual.proj  # (B, E)
        dtype = getattr(torch, self.cfg.feature_dtype)
        return Tokens(patches.to(dtype).float(), cls.to(dtype).float())

    @torch.no_grad()
    def encode_text(self, class_names: Sequence[str] | str, normalize_sentences: bool = True
                    ) -> torch.Tensor:
        """Prompt-ensemble text features (C, 2, E), rows [normal, abnormal], L2-normalised.

        Each sentence embedding is L2-normalised (unless normalize_sentences is False),
        averaged per state, and the mean renormalised; results are cached per class name.
        """
        if isinstance(class_names, str):
            class_names = [class_names]
        out = []
        for name in class_names:
            key = (name, normalize_sentences)
            if key not in self._text_cache:
                states = []
                for sentences in prompt_sentences(name):
                    e = self.model.encode_text(self.tokenizer(sentences).to(self.device)).float()
                    if normalize_sentences:
                        e = F.normalize(e, dim=-1)
                    states.append(F.normalize(e.mean(0), dim=-1))
                self._text_cache[key] = torch.stack(states)  # (2, E)
            out.append(self._text_cache[key])
        return torch.stack(out)

    def identity(self) -> dict:
        """Everything that changes the encoded tokens: the feature-cache key."""
        return {**self.cfg.backbone_identity(), "version": 2}


def _fetch_failed(cfg: Config, err: Exception) -> RuntimeError:
    return RuntimeError(
        f"could not load weights {cfg.pretrained!r} for {cfg.backbone} ({type(err).__name__}: "
        f"{str(err).splitlines()[0] if str(err) else ''}).\n"
        f"Fix one of: (1) download them on a machine with internet and pass the local file, "
        f"e.g. Config(pretrained='/path/to/ViT-L-14-336px.pt' or a .safetensors file); "
        f"(2) run offline with the small embedded backbone: Config.quick() "
        f"(backbone='{TINY_BACKBONE}', pretrained=None; CLI: --quick).")


def load_backbone(cfg: Config, device: str | torch.device | None = None) -> Backbone:
    """Build the frozen backbone for `cfg` (weights from an open_clip tag, a file, or seeded random)."""
    register_model_configs()
    import open_clip

    if open_clip.get_model_config(cfg.backbone) is None:
        raise ValueError(f"unknown backbone {cfg.backbone!r}; use an open_clip ViT name such as "
                         f"'ViT-L-14-336' or the offline '{TINY_BACKBONE}'")
    pretrained = cfg.pretrained
    if pretrained and not os.path.isfile(pretrained) and (os.sep in pretrained or pretrained.endswith(
            (".pt", ".pth", ".bin", ".safetensors"))):
        raise FileNotFoundError(f"checkpoint file not found: {pretrained}")
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.backbone_seed)
            model = open_clip.create_model(cfg.backbone, pretrained=pretrained or None,
                                           force_quick_gelu=cfg.use_quick_gelu)
    except (RuntimeError, FileNotFoundError, OSError, ConnectionError) as err:
        if pretrained:
            raise _fetch_failed(cfg, err) from err
        raise
    except Exception as err:  # hub clients raise their own types when offline
        if pretrained and type(err).__module__.split(".")[0] in ("huggingface_hub", "requests", "urllib3", "httpx"):
            raise _fetch_failed(cfg, err) from err
        raise
    visual = model.visual
    if not hasattr(visual, "transformer") or not hasattr(visual, "positional_embedding"):
        raise ValueError(f"{cfg.backbone} is not an open_clip VisionTransformer (a ViT is needed)")
    patch = int(visual.conv1.kernel_size[0])
    grid = cfg.image_size // patch
    with torch.no_grad():
        new_pos = interpolate_pos_embed(visual.positional_embedding.detach(), grid)
    visual.positional_embedding = nn.Parameter(new_pos, requires_grad=False)
    visual.grid_size = (grid, grid)
    visual.image_size = (cfg.image_size, cfg.image_size)
    bb = Backbone(model, open_clip.get_tokenizer(cfg.backbone), cfg)
    if device is not None:
        bb.to(device)
    return bb

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
tokens of a fresh `encode` equal those the feature cache stores, bit for bit. `encode` runs the
images in micro-batches of exactly ENCODE_BATCH (the last one zero-padded): matrix-product
kernels pick their blocking by the batch's row count, so the same image encoded in a batch of
8 and of 3 differs in the last float16 step; at one fixed batch shape an image's tokens do not
depend on its batch neighbours or position (tests/test_reliability_cache.py). Paths that do
not write the cache (predict, calibrate) pass `pad=False`: one image costs one forward, and an
image in a shorter last micro-batch may differ from its cached tokens in that last float16
step (docs/decisions.md bounds what that does to a score).
With `detail_attention="vv"`, taps at or after `bsa_start` come from the V-V attention stream
instead (see `vv_attention` and docs/decisions.md).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
from typing import NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import TINY_BACKBONE, Config, register_model_configs
from .precision import autocast
from .prompts import prompt_sentences
from .weights import SHIPPED, shipped_path


ENCODE_BATCH = 8  # images per backbone forward, fixed (see the module docstring); a cache key field


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


def forward_taps(visual: nn.Module, images: torch.Tensor, taps: Sequence[int],
                 vv_start: int | None = None, pos: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run an open_clip VisionTransformer, keeping the residual stream after each tapped block.

    images (B, 3, S, S) -> (taps (B, L, N, W) without the class token, cls (B, E) after
    ln_post and proj). With `vv_start`, tapped blocks from that one on give their V-V detail
    output instead. `pos` (1 + N, W) replaces the position embedding (pretraining at another
    size). Differentiable: the frozen `Backbone.encode` and bagclip-mini's pretraining share it.
    """
    x = visual.conv1(images.to(visual.conv1.weight.dtype))  # (B, W, G, G)
    x = x.flatten(2).transpose(1, 2)  # (B, N, W)
    cls_tok = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    pos = visual.positional_embedding if pos is None else pos
    x = torch.cat([cls_tok, x], dim=1) + pos.to(x.dtype)
    x = visual.ln_pre(x)  # (B, 1 + N, W)
    out = []
    for i, blk in enumerate(visual.transformer.resblocks, start=1):
        detail = vv_start is not None and i >= vv_start and i in taps
        if detail:
            out.append(vv_attention(blk, x)[:, 1:])
        x = blk(x)
        if i in taps and not detail:
            out.append(x[:, 1:])
    cls = visual.ln_post(x[:, 0]) @ visual.proj  # (B, E)
    return torch.stack(out, dim=1), cls


def project_patches(visual: nn.Module, patches: torch.Tensor) -> torch.Tensor:
    """Tapped tokens (..., W) -> CLIP's joint space (..., E): ln_post then proj, as the class
    token. How a frozen CLIP's patch tokens are compared with text (training-free maps)."""
    return visual.ln_post(patches) @ visual.proj


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
        self.weights_sha256: str | None = None  # set by load_backbone for a weights file
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "Backbone":  # frozen: always eval (no dropout)
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return self.visual.conv1.weight.device

    @torch.no_grad()
    def encode(self, images: torch.Tensor, micro_batch: int | None = ENCODE_BATCH,
               pad: bool = True) -> Tokens:
        """images (B, 3, S, S) normalised for CLIP -> Tokens(patches (B, L, N, W), cls (B, E)).

        micro_batch: run in forwards of exactly this many images (the last zero-padded), so that
        an image's tokens never depend on the batch it came in (what the feature cache stores);
        None runs the batch as given (the cost benchmark's raw forward).
        pad=False: the last micro-batch runs as it is, without padding: what paths that do not
        write the cache use (predict, calibrate, a lesson's single image), so that one image
        costs one forward. Images in a full micro-batch get the cached bytes; those in a
        shorter last one may differ in the last float16 step (bound: docs/decisions.md).
        """
        s = self.cfg.image_size
        if images.ndim != 4 or images.shape[1:] != (3, s, s):
            raise ValueError(f"expected images of shape (B, 3, {s}, {s}), got {tuple(images.shape)}; "
                             f"load them with bagclip.data.load_image(path, {s})")
        from .budget import check_forward  # issue 19: refuse before allocating

        heads = int(getattr(self.blocks[0].attn, "num_heads", 1))
        if micro_batch is None:  # one forward's images: the batch, a padded micro-batch, or fewer
            rows = images.shape[0]
        else:
            rows = micro_batch if pad else min(micro_batch, images.shape[0])
        check_forward(self.cfg, self.width, heads, self.patch_size, rows, self.device)
        if micro_batch is None:
            return self._encode(images)
        parts = []
        for i in range(0, images.shape[0], micro_batch):
            chunk = images[i:i + micro_batch]
            n = chunk.shape[0]
            if n < micro_batch and pad:  # pad: the forward's shape, hence its kernels, stay the same
                chunk = torch.cat([chunk, chunk.new_zeros((micro_batch - n, *chunk.shape[1:]))])
            t = self._encode(chunk)
            parts.append(Tokens(t.patches[:n], t.cls[:n]))
        return Tokens(torch.cat([t.patches for t in parts]), torch.cat([t.cls for t in parts]))

    def _encode(self, images: torch.Tensor) -> Tokens:
        vv_start = self.cfg.bsa_first if self.cfg.detail_attention == "vv" else None
        with autocast(self.cfg.backbone_precision, self.device):
            patches, cls = forward_taps(self.visual, images.to(self.device), self.taps, vv_start)
        if self.cfg.tap_ln_post:
            patches = self.visual.ln_post(patches)
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
                    with autocast(self.cfg.backbone_precision, self.device):
                        e = self.model.encode_text(self.tokenizer(sentences).to(self.device)).float()
                    if normalize_sentences:
                        e = F.normalize(e, dim=-1)
                    states.append(F.normalize(e.mean(0), dim=-1))
                self._text_cache[key] = torch.stack(states)  # (2, E)
            out.append(self._text_cache[key])
        return torch.stack(out)

    def identity(self) -> dict:
        """Everything that changes the encoded tokens: the feature-cache key."""
        # version 3: fixed micro-batches (issue 19); earlier entries depended on their batch
        ident = {**self.cfg.backbone_identity(), "version": 3, "micro_batch": ENCODE_BATCH}
        if self.weights_sha256:  # the bytes actually loaded, not only the file's name and date
            ident["pretrained_sha256"] = self.weights_sha256
        return ident


def _fetch_failed(cfg: Config, err: Exception) -> RuntimeError:
    from .errors import WeightsUnavailableError

    return WeightsUnavailableError(
        f"could not load weights {cfg.pretrained!r} for {cfg.backbone} ({type(err).__name__}: "
        f"{str(err).splitlines()[0] if str(err) else ''}).\n"
        f"Fix one of: (1) download them on a machine with internet and pass the local file, "
        f"e.g. Config(pretrained='/path/to/ViT-L-14-336px.pt' or a .safetensors file); "
        f"(2) run offline with the shipped bagclip-mini: Config.quick() "
        f"(backbone='bagclip-mini', pretrained='bagclip-mini').")


class WeightsError(ValueError):
    """A weights file that cannot be loaded; `setting` names the Config field to change."""

    setting = "pretrained"


_SHA: dict[tuple, str] = {}  # (path, inode, size, mtime, ctime) -> sha256, per process


def weights_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a weights file, memoised per process by path, inode, size, mtime and ctime
    (ctime changes on every write and cannot be set back, unlike mtime)."""
    import hashlib

    st = os.stat(path)
    key = (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _SHA:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _SHA[key] = h.hexdigest()
    return _SHA[key]


def _load_failed(cfg: Config, pretrained, err: Exception) -> Exception:
    """A tag's download or build failed: the fetch advice for network errors, else `err`."""
    hub = type(err).__module__.split(".")[0] in ("huggingface_hub", "requests", "urllib3", "httpx")
    if pretrained and (hub or isinstance(err, (RuntimeError, OSError, ConnectionError))):
        return _fetch_failed(cfg, err)
    return err


def check_device(device: str | torch.device | None) -> torch.device | None:
    """`device` as a torch.device, or DeviceError (a ValueError) when it is malformed or absent
    on this machine."""
    from .errors import DeviceError

    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise DeviceError(f"device {str(device)!r} is not a device name; use cpu, cuda or cuda:<n>") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise DeviceError(f"device {str(device)!r}: no CUDA GPU is available here; use cpu")
        if dev.index is not None and dev.index >= n:
            raise DeviceError(f"device {str(device)!r}: this machine has {n} GPU(s), cuda:0..cuda:{n - 1}")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise DeviceError(f"device {str(device)!r}: Apple MPS is not available here; use cpu")
    return dev


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextlib.contextmanager
def random_init_requested():
    """open_clip warns "No pretrained weights loaded ... Model initialized randomly" on the root
    logger whenever pretrained is None. Where the kit asks for seeded random weights on purpose
    (the tiny backbone, the cost tables, pretraining from scratch, weights loaded right after)
    that line reads like a fault to a user, so it is dropped inside this block only."""
    f = _DropRandomInitWarning()
    root = logging.getLogger()
    root.addFilter(f)
    try:
        yield
    finally:
        root.removeFilter(f)


def load_backbone(cfg: Config, device: str | torch.device | None = None) -> Backbone:
    """Build the frozen backbone for `cfg` (weights from an open_clip tag, a file, or seeded random)."""
    device = check_device(device)
    register_model_configs()
    import open_clip

    if open_clip.get_model_config(cfg.backbone) is None:
        raise ValueError(f"unknown backbone {cfg.backbone!r}; use an open_clip ViT name such as "
                         f"'ViT-L-14-336' or the offline '{TINY_BACKBONE}'")
    pretrained = cfg.pretrained
    if pretrained in SHIPPED:
        pretrained = str(shipped_path(pretrained))
    if pretrained and not os.path.isfile(pretrained) and (os.sep in pretrained or pretrained.endswith(
            (".pt", ".pth", ".bin", ".safetensors"))):
        raise FileNotFoundError(f"checkpoint file not found: {pretrained}")
    local = bool(pretrained) and os.path.isfile(pretrained)
    digest = weights_digest(pretrained) if local else None  # hashed before loading: what is used
    try:
        quiet = random_init_requested() if not pretrained else contextlib.nullcontext()
        with torch.random.fork_rng(devices=[]), quiet:
            torch.manual_seed(cfg.backbone_seed)
            model = open_clip.create_model(cfg.backbone, pretrained=pretrained or None,
                                           force_quick_gelu=cfg.use_quick_gelu)
    except Exception as err:
        if not local:
            failed = _load_failed(cfg, pretrained, err)
            if failed is err:
                raise
            raise failed from err
        # A local file that does not load: say so without torch's text, which for a pickle
        # suggests weights_only=False (running whatever code the file holds). Never that.
        raise WeightsError(f"pretrained={cfg.pretrained}: {pretrained} is not a weights file for "
                           f"{cfg.backbone} ({type(err).__name__}); give an open_clip checkpoint "
                           f"(.safetensors, or a torch file of plain tensors) of that architecture"
                           ) from None
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
    bb.weights_sha256 = digest
    if device is not None:
        bb.to(device)
    return bb

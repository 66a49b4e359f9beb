"""BAG-CLIP's trainable heads: SAFR -> SAG (per tap) -> JFF (per tap) -> maps; global branch.

The frozen backbone (bagclip/backbone.py) gives `Tokens(patches (B, L, N, W), cls (B, E))`;
the text tower gives T `(2, E)` or `(B, 2, E)`, rows [normal, abnormal], unit norm.
SAFR on the taps is the trainable part of the paper's Detail-Preserving Branch (BSA, 3.2.1);
the class token is its Global Semantic Branch (3.2.2).

    x_concat (B, N, L*W) --SAFR--> x_detail --split--> F_pre^(l) (B, N, W)
    F_pre^(l) --SAG^(l)--> F_SAG^(l) (B, N, h);  [F_pre, F_SAG] --JFF^(l)--> Psi^(l) (B, N, E)
    S^(l) = upsample(softmax(tau Psi^(l) T^T)) (B, 2, H, W);  anomaly map = mean_l S^(l)[abnormal]
    g = normalize(adapter(cls)) (or normalize(cls) without the adapter);
    p_img = softmax(tau g T^T)[abnormal]

The forward does not smooth: `smooth_maps` is applied at evaluation, then `score_image`.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import Config
from .jff import JFF
from .safr import SAFR, concat_taps, split_taps
from .sag import SAG


class Output(NamedTuple):
    anomaly_map: torch.Tensor  # (B, H, W) in [0, 1]
    image_score: torch.Tensor  # (B,)
    layer_maps: torch.Tensor  # (B, L, 2, H, W): per tap [normal, abnormal] probabilities
    p_img: torch.Tensor  # (B,) global-branch abnormal probability


class Stages(NamedTuple):
    f_pre: torch.Tensor  # (B, L, N, W): the taps after SAFR (the taps themselves without it)
    f_sag: torch.Tensor | None  # (B, L, N, h): the SAG's output per tap; None without the SAG
    psi: torch.Tensor  # (B, L, N, E): JFF's fused feature per tap, in the text space


def score_image(p_img: torch.Tensor, anomaly_map: torch.Tensor, mode: str = "mix") -> torch.Tensor:
    """Image score `(B,)` from p_img `(B,)` and the (possibly smoothed) map `(B, H, W)`."""
    peak = anomaly_map.flatten(1).amax(dim=1)
    if mode == "mix":
        return (p_img + peak) / 2
    if mode == "global":
        return p_img
    if mode == "max":
        return peak
    raise ValueError(f"image_score mode {mode!r}; allowed: mix, global, max")


def text_probs(psi: torch.Tensor, text: torch.Tensor, tau: float) -> torch.Tensor:
    """Per-tap [normal, abnormal] probabilities on the patch grid (B, L, 2, G, G).

    psi (B, L, N, E) patch features in the joint space (any norm), text (B, 2, E) unit rows:
    softmax over the two states of tau * cos.
    """
    B, L, N, _ = psi.shape
    g = int(round(N ** 0.5))
    probs = torch.softmax(tau * torch.einsum("blne,bce->blcn", F.normalize(psi, dim=-1), text), dim=2)
    return probs.reshape(B, L, 2, g, g)


def text_maps(psi: torch.Tensor, text: torch.Tensor, tau: float, size: int) -> torch.Tensor:
    """`text_probs` bilinearly upsampled to (B, L, 2, size, size) (convex weights keep the
    probabilities in [0, 1], summing to 1)."""
    return upsample_grid(text_probs(psi, text, tau), size)


@functools.lru_cache(maxsize=16)
def _linear_weights(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(n_out, n_in) weights of torch's 1-D linear resize (align_corners=False), read off
    F.interpolate applied to the identity, so the formula is torch's own."""
    eye = torch.eye(n_in, device=device, dtype=dtype).unsqueeze(0)  # (1, n_in, n_in)
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[0].t().contiguous()


def upsample_grid(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize (align_corners=False) of `(..., g, g)` grids to `(..., size, size)`.

    Equals F.interpolate(mode="bilinear") to float rounding (bilinear is separable) but runs as
    two matrix products, W x W^T with W `(size, g)`: on CPU its backward is about 17x faster
    than F.interpolate's at the quick size (g 14 -> 224) and 4x at the paper's (37 -> 518),
    which matters in training (benchmarks/sweep.py). Only for small grids: from a large map
    the products cost more than F.interpolate. Float32 with autocast off, as the probabilities
    are.
    """
    g = x.shape[-1]
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        w = _linear_weights(g, size, x.device, x.dtype)  # (size, g)
        return w @ x @ w.t()


def global_prob(g: torch.Tensor, text: torch.Tensor, tau: float) -> torch.Tensor:
    """p_img (B,): softmax(tau * cos(g, T))[abnormal] for image features g (B, E), text (B, 2, E)."""
    return torch.softmax(tau * torch.einsum("be,bce->bc", F.normalize(g, dim=-1), text), dim=-1)[:, 1]


def _reflect_index(n: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices of scipy's mode="reflect" padding (d c b a | a b c d | d c b a), any radius."""
    i = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def smooth_maps(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian filter of `(B, H, W)` maps, sigma in pixels; sigma <= 0 returns maps unchanged.

    Equals scipy.ndimage.gaussian_filter(map, sigma, mode="reflect", truncate=4.0) per map:
    separable kernel of radius int(4 sigma + 0.5), edge-including reflection.
    """
    if sigma <= 0:
        return maps
    from .budget import check_smoothing  # issue 19: a huge sigma is refused, not allocated

    check_smoothing(*maps.shape, sigma, maps.device)
    radius = int(4.0 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, device=maps.device, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(maps.dtype)
    B, H, W = maps.shape
    out = maps.unsqueeze(1)  # (B, 1, H, W)
    out = out.index_select(3, _reflect_index(W, radius, maps.device))
    out = F.conv2d(out, kernel.view(1, 1, 1, -1))
    out = out.index_select(2, _reflect_index(H, radius, maps.device))
    out = F.conv2d(out, kernel.view(1, 1, -1, 1))
    return out.squeeze(1)


def make_sag(cfg: Config, dim: int, sparse: bool = True) -> SAG:
    """One SAG module with cfg's settings (K, P, hidden, metric, kernel) on dim-wide features."""
    return SAG(dim, cfg.gcn_hidden, cfg.k, cfg.gcn_layers, cfg.metric_proj, sparse=sparse,
               kernel_scale=cfg.kernel_scale)


class BAGCLIP(nn.Module):
    """The trainable heads. width W: backbone token width; embed_dim E; grid G (N = G*G).

    K < N is checked by the Config (and `grid` comes from a backbone built from it).
    """

    def __init__(self, cfg: Config, width: int, embed_dim: int, grid: int) -> None:
        super().__init__()
        self.cfg, self.width, self.embed_dim, self.grid = cfg, width, embed_dim, grid
        L = len(cfg.taps)
        self.safr = SAFR(L * width, cfg.safr_reduction) if cfg.use_safr else None
        self.sag = None
        if cfg.use_sag:
            self.sag = nn.ModuleList(make_sag(cfg, width) for _ in range(1 if cfg.share_sag else L))
        # use_jff False: F_SAG alone; use_sag False: F_pre alone (nothing else to fuse)
        dim_pre = width if (cfg.use_jff or not cfg.use_sag) else 0
        dim_sag = cfg.gcn_hidden if cfg.use_sag else 0
        self.jff = nn.ModuleList(JFF(dim_pre, dim_sag, embed_dim) for _ in range(L))
        self.global_adapter = None
        if cfg.global_adapter:
            self.global_adapter = nn.Linear(embed_dim, embed_dim)
            with torch.no_grad():  # identity at the start: g is CLIP's own image embedding
                self.global_adapter.weight.copy_(torch.eye(embed_dim))
                self.global_adapter.bias.zero_()

    @property
    def dtype(self) -> torch.dtype:
        return self.jff[0].proj.weight.dtype

    def _text(self, text: torch.Tensor, B: int) -> torch.Tensor:
        text = text.to(self.dtype)
        if text.dim() == 2:
            text = text.unsqueeze(0).expand(B, -1, -1)
        if text.shape != (B, 2, self.embed_dim):
            raise ValueError(f"text must be (2, E) or (B, 2, E) with E={self.embed_dim}, "
                             f"got {tuple(text.shape)}")
        return text

    def stages(self, patches: torch.Tensor) -> Stages:
        """Every tap's features at each stage: F_pre (B, L, N, W) after SAFR, F_SAG (B, L, N, h)
        (None without the SAG) and Psi (B, L, N, E); lessons read the stages from here."""
        B, L, N, W = patches.shape
        if (L, N, W) != (len(self.cfg.taps), self.grid ** 2, self.width):
            raise ValueError(f"patches {tuple(patches.shape)}: expected (B, {len(self.cfg.taps)}, "
                             f"{self.grid ** 2}, {self.width})")
        f_pre = patches
        if self.safr is not None:
            f_pre = split_taps(self.safr(concat_taps(patches)), L)
        graph_on = f_pre if self.cfg.graph_input == "detail" else patches
        f_sag, psi = [], []
        for l in range(L):
            fs = None
            if self.sag is not None:
                fs = self.sag[0 if self.cfg.share_sag else l](f_pre[:, l], graph_on[:, l])
                f_sag.append(fs)
            psi.append(self.jff[l](f_pre[:, l], fs))
        return Stages(f_pre, torch.stack(f_sag, dim=1) if f_sag else None, torch.stack(psi, dim=1))

    def local_features(self, patches: torch.Tensor) -> torch.Tensor:
        """Psi for every tap: (B, L, N, W) -> (B, L, N, E)."""
        return self.stages(patches).psi

    def forward(self, tokens, text: torch.Tensor) -> Output:
        """tokens: `.patches (B, L, N, W)`, `.cls (B, E)`; text `(2, E)` or `(B, 2, E)`."""
        patches, cls = tokens.patches.to(self.dtype), tokens.cls.to(self.dtype)  # caches may hold fp16
        B, L = patches.shape[:2]
        T = self._text(text, B)
        tau, size = self.cfg.logit_scale, self.cfg.image_size

        psi = self.local_features(patches)  # (B, L, N, E)
        layer_maps = text_maps(psi, T, tau, size)
        anomaly_map = layer_maps[:, :, 1].mean(dim=1)
        p_img = global_prob(cls if self.global_adapter is None else self.global_adapter(cls), T, tau)
        return Output(anomaly_map, score_image(p_img, anomaly_map, self.cfg.image_score),
                      layer_maps, p_img)


def build_heads(cfg: Config, backbone) -> BAGCLIP:
    """BAGCLIP heads sized for this backbone (width W, embed dim E, grid G), initialised from
    cfg.seed; cfg.heads_init="clip" starts them as the training-free scorer (docs/decisions.md)."""
    from .budget import check_heads  # issue 32: gcn_hidden=1e9 is refused, not allocated

    check_heads(cfg, backbone.width, backbone.embed_dim, backbone.grid, device=backbone.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = BAGCLIP(cfg, width=backbone.width, embed_dim=backbone.embed_dim, grid=backbone.grid)
    if cfg.heads_init == "clip":
        if model.safr is not None:
            model.safr.neutral_()
        for jff in model.jff:
            if jff.dim_pre:
                jff.init_from_clip(backbone.visual.ln_post.weight.float(), backbone.visual.proj.float())
    return model


def count_parameters(module: nn.Module | nn.Parameter | None) -> tuple[int, int]:
    """(trainable, frozen) parameter counts of a module (or one parameter); None counts 0."""
    if module is None:
        return 0, 0
    ps = [module] if isinstance(module, nn.Parameter) else list(module.parameters())
    train = sum(p.numel() for p in ps if p.requires_grad)
    return train, sum(p.numel() for p in ps) - train


def parameter_table(model: BAGCLIP, backbone: nn.Module | None = None):
    """Per-module parameter counts in millions (the form of the paper's Tables 4 and 5).

    Columns: module, trainable_m, frozen_m, total_m. Rows: SAFR, one per SAG, JFF (all taps),
    global adapter (0 when switched off), heads total, and with a backbone: backbone, total.
    """
    import pandas as pd

    rows = [("SAFR", *count_parameters(model.safr))]
    if model.sag is not None:
        for i, sag in enumerate(model.sag):
            name = "SAG (shared)" if model.cfg.share_sag else f"SAG (tap {model.cfg.taps[i]})"
            rows.append((name, *count_parameters(sag)))
    rows += [("JFF", *count_parameters(model.jff)), ("global adapter", *count_parameters(model.global_adapter))]
    rows.append(("heads total", *count_parameters(model)))
    if backbone is not None:
        rows.append(("backbone", *count_parameters(backbone)))
        ht, hf = rows[-2][1:]
        bt, bf = rows[-1][1:]
        rows.append(("total", ht + bt, hf + bf))
    df = pd.DataFrame(rows, columns=["module", "trainable_m", "frozen_m"])
    df[["trainable_m", "frozen_m"]] /= 1e6
    df["total_m"] = df.trainable_m + df.frozen_m
    return df

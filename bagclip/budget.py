"""Sizes that cannot fit are refused before allocating (issue 19).

Each `check_*` estimates the memory of one allocation site from its sizes (a lower estimate:
the largest tensors it must hold at once, not every temporary) and raises `BudgetError`, one
line naming the setting and what to do, when that exceeds what the machine has available now
(`available_bytes`: psutil if installed, else /proc/meminfo's MemAvailable, else sysconf; a GPU's
free memory for a CUDA device). Called where the allocation happens: `Backbone.encode`
(image_size: the backbone's attention and the graph's N x N distances), `model.smooth_maps`
(smoothing_sigma: the reflect-padded maps), `evaluate.evaluate` (the evaluation resolution:
the metric buffer and the resized maps), `model.build_heads` and `train` (the heads' sizes:
gcn_hidden, gcn_layers, the taps' width, safr_reduction, and batch_size when training). No
torch at import.
"""
from __future__ import annotations

import os

GIB = 1 << 30


class BudgetError(ValueError):
    """A size that cannot fit in memory; `setting` names the Config field or option to lower."""

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        self.setting = setting


def available_bytes(device=None) -> int | None:
    """Bytes that can be allocated now on `device` (None / "cpu": RAM), or None if unknown."""
    if device is not None and str(device).startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def check(need: float, setting: str, what: str, advice: str, device=None, avail: int | None = None) -> None:
    """BudgetError when `need` bytes exceed the available memory (unknown: no check)."""
    avail = available_bytes(device) if avail is None else avail
    if avail is not None and need > avail:
        raise BudgetError(f"{what} needs about {_gib(need)} of memory but {_gib(avail)} is "
                          f"available; {advice}", setting)


def forward_bytes(batch: int, image_size: int, patch: int, width: int, heads: int, taps: int) -> float:
    """One backbone forward + the kNN graph of its taps: the attention matrix (batch x heads x
    T x T, twice: scores and softmax), the stream (a few batch x T x width) and the graph's
    N x N distances per tapped layer. float32 bytes."""
    grid = image_size // patch
    n = grid * grid
    t = n + 1
    attention = 2 * batch * heads * t * t * 4
    stream = 8 * batch * t * width * 4
    graph = 2 * batch * taps * n * n * 4
    return float(attention + stream + graph)


def check_forward(cfg, width: int, heads: int, patch: int, batch: int, device=None, avail=None) -> None:
    need = forward_bytes(batch, cfg.image_size, patch, width, heads, len(cfg.taps))
    check(need, "image_size", f"image_size={cfg.image_size} ({(cfg.image_size // patch) ** 2} patches "
          f"per image, {batch} images per forward)", "lower image_size (the paper uses 518)",
          device, avail)


def smoothing_bytes(batch: int, h: int, w: int, sigma: float) -> float:
    """The reflect-padded maps of `model.smooth_maps` (float32; padded along one axis at a time),
    its int64 reflection index and its float64 kernel."""
    if sigma <= 0:
        return 0.0
    r = int(4.0 * sigma + 0.5)
    return float(batch * max(h * (w + 2 * r), (h + 2 * r) * w) * 4 + (max(h, w) + 2 * r) * 8
                 + (2 * r + 1) * 8 * 2)


def check_smoothing(batch: int, h: int, w: int, sigma: float, device=None, avail=None) -> None:
    need = smoothing_bytes(batch, h, w, sigma)
    if need > 64 * batch * h * w * 4:  # only a kernel far wider than the map can be too large
        check(need, "smoothing_sigma", f"smoothing_sigma={sigma:g} (a kernel of radius "
              f"{int(4.0 * sigma + 0.5)} pixels on {h}x{w} maps)",
              f"lower smoothing_sigma (the paper uses 4; a sigma beyond the map's size only "
              f"flattens it)", device, avail)


def evaluation_bytes(n_pixels_images: int, resolution: int) -> float:
    """evaluate's per-class metric buffer (8 bytes per pixel of every image with ground truth)
    plus one image's map, resized map and mask at that resolution."""
    px = resolution * resolution
    return float(n_pixels_images * px * 8 + px * (4 + 4 + 1))


def check_resolution(n_images: int, resolution: int, avail=None) -> None:
    need = evaluation_bytes(n_images, resolution)
    check(need, "resolution", f"evaluating {n_images} images at resolution {resolution}",
          "evaluate at a lower resolution (the image size, or 'native' for the images' own)",
          None, avail)


def heads_parameters(cfg, width: int, embed_dim: int) -> int:
    """The trainable parameters `model.BAGCLIP` holds for cfg on a backbone of token width W and
    embed dim E, counted from the settings alone: SAFR (L*W -> L*W/r -> L*W), each SAG
    (W -> h, then P-1 times h -> h, W x W with metric_proj; one, or one per tap), each tap's
    JFF ((W + h) -> E) and the global adapter (E x E + E)."""
    L, h, P = len(cfg.taps), cfg.gcn_hidden, cfg.gcn_layers
    n = 0
    if cfg.use_safr:
        c = L * width
        n += 2 * c * (c // cfg.safr_reduction)
    if cfg.use_sag:
        one = width * h + (P - 1) * h * h + (width * width if cfg.metric_proj else 0)
        n += one * (1 if cfg.share_sag else L)
    dim_pre = width if (cfg.use_jff or not cfg.use_sag) else 0
    n += L * (dim_pre + (h if cfg.use_sag else 0)) * embed_dim
    if cfg.global_adapter:
        n += embed_dim * embed_dim + embed_dim
    return int(n)


def heads_bytes(cfg, width: int, embed_dim: int, grid: int, batch: int = 1,
                training: bool = False) -> tuple[float, float]:
    """(weights, activations) bytes of the heads, float32, a lower estimate: the weights (four
    copies when training: weights, gradients, Adam's two moments) and one forward of `batch`
    images: every GCN layer's output (B, L, N, h), F_pre and Psi (B, L, N, W + E), and the
    upsampled text maps (B, L, 2, S, S); kept twice when training (for the backward)."""
    L, n = len(cfg.taps), grid * grid
    weights = heads_parameters(cfg, width, embed_dim) * 4.0 * (4 if training else 1)
    gcn = cfg.gcn_layers * cfg.gcn_hidden if cfg.use_sag else 0
    acts = batch * L * (n * (gcn + width + embed_dim) + 2 * cfg.image_size ** 2) * 4.0
    return weights, acts * (2 if training else 1)


def check_heads(cfg, width: int, embed_dim: int, grid: int, batch: int = 1, training: bool = False,
                device=None, avail=None) -> None:
    """BudgetError naming the size setting to lower when the heads cannot fit: batch_size when a
    batch of one image would fit, else gcn_hidden or gcn_layers (whichever is further beyond
    the paper's 384 and 5)."""
    avail = available_bytes(device) if avail is None else avail
    weights, acts = heads_bytes(cfg, width, embed_dim, grid, batch, training)
    if avail is None or weights + acts <= avail:
        return
    params = heads_parameters(cfg, width, embed_dim)
    if batch > 1 and sum(heads_bytes(cfg, width, embed_dim, grid, 1, training)) <= avail:
        setting, advice = "batch_size", "lower batch_size"
    else:
        setting = "gcn_hidden" if cfg.gcn_hidden / 384 >= cfg.gcn_layers / 5 else "gcn_layers"
        advice = f"lower {setting} (the paper: gcn_hidden 384, gcn_layers 5)"
    what = (f"{'training ' if training else ''}the heads (gcn_hidden={cfg.gcn_hidden}, gcn_layers="
            f"{cfg.gcn_layers}, {len(cfg.taps)} taps of width {width}: {params:.3g} parameters"
            f"{f', batches of {batch}' if training else ''})")
    check(weights + acts, setting, what, advice, device, avail)

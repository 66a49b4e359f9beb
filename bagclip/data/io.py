"""Reading images and masks: `Sample`, `DataError`, `load_image`, `load_mask`, `denormalize`.

Images always come back as RGB, whatever the file holds (grayscale, RGBA, palette, 16-bit).
Masks are binarised with `> 0` (VisA stores 0/1, MVTec 0/255) and resized nearest-neighbour.
Shapes: images (3, S, S) float32, masks (S, S) bool, in (H, W) order when not square.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# OpenAI CLIP normalisation constants (open_clip's OPENAI_DATASET_MEAN / _STD).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """A dataset problem the user can fix: the message names the file or folder and what to do."""


@dataclass(frozen=True)
class Sample:
    """One image of a dataset.

    class_name is the dataset's folder name (e.g. "pcb1"); prompts map it through
    `prompt_name`. defect_type is "good" for normal images. label: 0 normal, 1 anomalous.
    mask_path is None for normal images, and for anomalous ones only in image-level mode.
    """

    image_path: Path
    mask_path: Path | None
    class_name: str
    defect_type: str
    label: int


def is_image_file(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")


def _open(path) -> Image.Image:
    """Open and fully decode, turning every PIL/OS failure into a DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy() if im.mode != "P" else im.convert("RGBA")
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError...)
        raise DataError(f"cannot read image {path}: {type(e).__name__}: {e}. The file is corrupt or "
                        f"not an image; replace or delete it, or load the dataset with "
                        f"skip_bad=True") from e


def check_readable(path, full: bool = False) -> str | None:
    """None if `path` opens as an image (header only unless `full`), else the reason."""
    try:
        with Image.open(path) as im:
            im.load() if full else im.size
        return None
    except Exception as e:
        return f"{type(e).__name__}: {e}"


def to_rgb_array(im: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 from any PIL mode; 16-bit and float data are rescaled, not clipped."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        if im.mode.startswith("I;16") or (im.mode == "I" and a.max(initial=0) > 255):
            a = a / 65535.0 * 255.0  # 16-bit data: full range maps to 0..255
        elif im.mode == "F" and a.max(initial=0) <= 1.0:
            a = a * 255.0
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=-1)
    if im.mode != "RGB":
        im = im.convert("RGB")  # L, LA, RGBA (alpha dropped), CMYK, 1, YCbCr...
    return np.asarray(im, dtype=np.uint8)


def read_rgb(path) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of an image file; DataError naming the file if unreadable."""
    return to_rgb_array(_open(path))


def _size_hw(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def load_image(path, size: int | tuple[int, int] | None = 518):
    """Image file -> (3, size, size) float32 tensor, squash-resized (bicubic), CLIP-normalised.

    size may be an int, an (H, W) pair, or None to keep the native size.
    """
    import torch

    rgb = read_rgb(path)
    hw = _size_hw(size)
    if hw is not None and rgb.shape[:2] != hw:
        rgb = np.asarray(Image.fromarray(rgb).resize((hw[1], hw[0]), Image.BICUBIC))
    x = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)
    return clip_normalize(x).contiguous()


def clip_normalize(x):
    """(..., 3, H, W) float tensor in [0, 1] -> CLIP-normalised (per-channel mean and std)."""
    import torch

    return (x - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)


def mask_array(path) -> np.ndarray:
    """(H, W) bool of a mask file at its native size: any non-zero colour channel is defect."""
    im = _open(path)
    if im.mode == "RGBA":
        im = im.convert("RGB")  # a palette mask came back RGBA: compare colours, not indices
    a = np.asarray(im)
    if a.ndim == 3:
        a = a[..., :3].max(-1) if a.shape[-1] >= 3 else a[..., 0]
    return a > 0


def image_hw(path) -> tuple[int, int]:
    """(H, W) of an image file from its header."""
    try:
        with Image.open(path) as im:
            w, h = im.size  # PIL reports (W, H)
    except Exception as e:
        raise DataError(f"cannot read image {path}: {type(e).__name__}: {e}") from e
    return h, w


def load_mask(path, size: int | tuple[int, int] | None = 518, like=None):
    """Mask file -> (size, size) bool tensor (nearest resize, `> 0`).

    path None (a normal image) -> all False. size None keeps the mask's native (H, W), or for
    path None the (H, W) of the image file `like` (so a normal image's mask matches it).
    """
    import torch

    hw = _size_hw(size)
    if path is None or str(path) == "":
        if hw is None:
            if like is None:
                raise DataError("load_mask(None, size=None) needs like=<image path> to know the size")
            hw = image_hw(like)
        return torch.zeros(hw, dtype=torch.bool)  # (H, W), never (W, H)
    m = mask_array(path)
    if hw is not None and m.shape != hw:
        m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((hw[1], hw[0]), Image.NEAREST)) > 0
    return torch.from_numpy(np.ascontiguousarray(m))


def denormalize(x) -> np.ndarray:
    """CLIP-normalised (3, H, W) tensor/array -> (H, W, 3) uint8 for display."""
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float32)
    if a.ndim != 3 or a.shape[0] != 3:
        raise ValueError(f"denormalize expects (3, H, W), got {a.shape}")
    a = a * np.asarray(CLIP_STD, np.float32)[:, None, None] + np.asarray(CLIP_MEAN, np.float32)[:, None, None]
    return np.clip(np.rint(a.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)


def warn_skip(path, reason: str) -> None:
    warnings.warn(f"skipping unreadable file {path}: {reason}", stacklevel=3)

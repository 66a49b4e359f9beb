"""Reading images and masks: `Sample`, `DataError`, `load_image`, `load_mask`, `denormalize`.

Images always come back as RGB, whatever the file holds (grayscale, RGBA, palette, 16-bit),
and as a person sees them: a camera's EXIF orientation is applied to images and masks alike
(masks are drawn on the displayed image). Masks are binarised by `binarize_mask` (the rule is
in its docstring and docs/decisions.md) and resized nearest-neighbour.
Shapes: images (3, S, S) float32, masks (S, S) bool, in (H, W) order when not square.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

log = logging.getLogger(__name__)
EXIF_ORIENTATION = 0x0112  # the tag exif_transpose reads; 5..8 swap width and height
LOSSY_EXTS = (".jpg", ".jpeg", ".webp")  # formats whose compression leaves halos around a mask
# OpenAI CLIP normalisation constants (open_clip's OPENAI_DATASET_MEAN / _STD).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """A dataset problem the user can fix: the message names the file or folder and what to do.

    `setting`: the loader option or Config field the message advises (e.g. "image_level"), so
    that a front end can name its own flag for it; library messages never name CLI flags.
    """

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        self.setting = setting


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
            white = white_level(im, path)
            im = im if im.mode != "P" else im.convert("RGBA")
            # as displayed: a phone's portrait photo is stored landscape + an orientation tag
            out = ImageOps.exif_transpose(im)  # a copy, also when there is no tag
    except DataError:
        raise
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError...)
        raise DataError(f"cannot read image {path}: {type(e).__name__}: {e}. The file is corrupt or "
                        f"not an image; replace or delete it") from e
    if white is not None:
        out.info[WHITE] = white  # the copy keeps info: to_rgb_array reads it
    return out


WHITE = "bagclip_white_level"  # Image.info key: the pixel value of white, from the file's header
_MAX_SAMPLE_VALUE, _BITS_PER_SAMPLE = 281, 258  # TIFF tags
_INT16_FORMATS = ("PNG", "PPM")  # their "I" mode is always 16-bit data (16-bit grey, maxval > 255)


def white_level(im: Image.Image, path=None) -> float | None:
    """The value white has in an integer image of more than 8 bits, read from its mode and
    its file's header, never guessed from its pixels (a dark 16-bit image is not an 8-bit one):
    65535 for 16-bit modes and formats, a TIFF's MaxSampleValue or BitsPerSample up to 16.
    None for other modes. A 32-bit integer image that declares no maximum is refused
    (DataError): its white level is unknown."""
    if im.mode.startswith("I;16"):
        return 65535.0
    if im.mode != "I":
        return None
    if im.format in _INT16_FORMATS:
        return 65535.0
    tags = getattr(im, "tag_v2", None) or {}
    top = tags.get(_MAX_SAMPLE_VALUE)
    bits = tags.get(_BITS_PER_SAMPLE)
    top = top[0] if isinstance(top, tuple) else top
    bits = bits[0] if isinstance(bits, tuple) else bits
    if isinstance(top, int) and 0 < top < 2 ** 32 - 1:
        return float(top)
    if isinstance(bits, int) and bits <= 16:
        return float(2 ** bits - 1)
    raise DataError(f"image {path} holds {bits or 32}-bit integer pixels and declares no maximum "
                    f"value, so its white level is unknown (16-bit data in a 32-bit file is not "
                    f"told apart from 32-bit data). Save it as an 8- or 16-bit PNG or TIFF")


def check_readable(path, full: bool = False) -> str | None:
    """None if `path` opens as an image (header only unless `full`), else the reason."""
    try:
        with Image.open(path) as im:
            im.load() if full else im.size
        return None
    except Exception as e:
        return f"{type(e).__name__}: {e}"


def to_rgb_array(im: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 from any PIL mode; 16-bit and float data are rescaled, not clipped
    (integer data by its `white_level`, whatever its pixels' values)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        if im.mode != "F":  # integer data: its white level from the file (white_level), scaled to 255
            white = im.info.get(WHITE) or white_level(im)
            a = a / white * 255.0
        elif a.max(initial=0) <= 1.0:
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


_warned: set[str] = set()  # masks already warned about (training reloads them every step)


def _levels(a: np.ndarray) -> np.ndarray:
    """The distinct values of a mask array (bincount for integers: masks are reloaded often)."""
    if a.dtype.kind in "ub" or (a.dtype.kind == "i" and a.min(initial=0) >= 0
                                and a.max(initial=0) <= 65535):
        return np.flatnonzero(np.bincount(a.ravel().astype(np.int64), minlength=1))
    return np.unique(a)


def mask_threshold(a: np.ndarray) -> float:
    """The level above which a mask array's pixels are defect (see `binarize_mask`)."""
    levels = _levels(a)
    if len(levels) <= 2 and levels[0] == 0:
        return 0.0  # lossless binary mask: 0 and one other level (0/1, 0/255, 0/k)
    top = float(a.max(initial=0))
    if a.dtype.kind == "f":
        full = 1.0 if top <= 1.0 else 255.0  # [0, 1] floats, or 8-bit values stored as floats
    else:
        full = 255.0 if a.dtype.itemsize == 1 or top <= 255 else 65535.0  # 'I' mode holds 16-bit
    half = full / 2.0  # > 127.5 for 8-bit, > 32767.5 for 16-bit, > 0.5 for [0, 1] floats
    return half if top > half else 0.0  # a low label map (0, 1, 2...): any non-zero


def binarize_mask(a: np.ndarray, path=None) -> np.ndarray:
    """(H, W) bool from a mask array (H, W) or (H, W, C): the one binarisation rule.

    Colour masks count by their brightest channel. A mask with 0 and one other level (VisA's
    0/1, MVTec's 0/255) is defect where non-zero. A mask with more levels (a JPEG's compression
    halo, anti-aliased edges) is defect above half its type's range (> 127 for 8-bit), unless
    no pixel reaches that (a label map 0, 1, 2...: then non-zero); a warning names such files,
    and lossy formats (JPEG, WebP) are warned about whatever their levels.
    """
    a = np.asarray(a)
    if a.ndim == 3:
        a = a[..., :3].max(-1) if a.shape[-1] >= 3 else a[..., 0]
    t = mask_threshold(a)
    key = str(path)
    if path is not None and key not in _warned:
        lossy, n = Path(path).suffix.lower() in LOSSY_EXTS, len(_levels(a))
        if lossy or n > 2:
            _warned.add(key)
            log.warning("mask %s %s; binarised at > %g (docs/decisions.md). Save masks losslessly "
                        "(PNG with 0 and 255) to be sure of every pixel", path,
                        "is in a lossy format" if lossy else f"holds {n} grey levels", t)
    return a > t


def mask_array(path) -> np.ndarray:
    """(H, W) bool of a mask file at its native size (as displayed), by `binarize_mask`.

    A mask file that marks no pixel is warned about once per file (`warn_empty_mask`)."""
    im = _open(path)
    if im.mode == "RGBA":
        im = im.convert("RGB")  # a palette mask came back RGBA: compare colours, not indices
    m = binarize_mask(np.asarray(im), path)
    if not m.any():
        warn_empty_mask(path)
    return m


_warned_empty: set[str] = set()


def warn_empty_mask(path) -> None:
    """Warn, once per file, that a mask marks no defect pixel. Every layout gives masks to
    anomalous images only, so its image counts as defective while all its pixels count as
    normal: pixel metrics and the segmentation loss read it as a perfect part. A warning, not
    a refusal (docs/decisions.md): loading reads masks' headers only, and one such mask in a
    public set must not stop its image-level results."""
    key = str(path)
    if key not in _warned_empty:
        _warned_empty.add(key)
        log.warning("mask %s marks no defect pixel (all zero): its image is anomalous, yet every one "
                    "of its pixels counts as normal in pixel metrics and training. Draw the defect "
                    "in the mask, or move the image to the normal images if it has none", path)


def image_hw(path) -> tuple[int, int]:
    """(H, W) of an image file as displayed (EXIF orientation applied), from its header."""
    try:
        with Image.open(path) as im:
            w, h = im.size  # PIL reports (W, H)
            tiff = im.format == "TIFF"
            turned = im.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8)  # quarter turns
        if tiff:  # Pillow's TIFF reader applies the tag itself in some versions: decode to know
            w, h = _open(path).size
        elif turned:
            w, h = h, w
    except Exception as e:
        raise DataError(f"cannot read image {path}: {type(e).__name__}: {e}") from e
    return h, w


MIN_SIDE = 16  # pixels: fewer give less than one image pixel per patch of a 16 x 16 patch grid
MAX_ASPECT = 4.0  # squashed to a square, a longer image's parts are stretched more than 4x


def scorable_hw(path) -> tuple[int, int]:
    """(H, W) of an image to be scored as one part, from its header: DataError when a side is
    under MIN_SIDE pixels (upsampled to the model's size it holds nothing to score), and a
    logged warning when one side is over MAX_ASPECT times the other (the square resize distorts
    it: tiles of it score what a square part would)."""
    h, w = image_hw(path)
    if min(h, w) < MIN_SIDE:
        raise DataError(f"image {path} is {w} x {h} pixels: too small to score (at least {MIN_SIDE} "
                        f"pixels a side). Give the part at its camera's resolution")
    if max(h, w) > MAX_ASPECT * min(h, w):
        log.warning("image %s is %d x %d pixels: resized to a square, its parts are stretched %.0fx; "
                    "scores of such images are not comparable to square ones (score square tiles of it)",
                    path, w, h, max(h, w) / min(h, w))
    return h, w


def load_mask(path, size: int | tuple[int, int] | None = 518, like=None):
    """Mask file -> (size, size) bool tensor (nearest resize, binarised by `binarize_mask`).

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


def read_text_file(path: Path, what: str) -> str:
    """The UTF-8 text of an index file (a BOM is accepted), or a DataError naming the file and
    the first bad byte: a Latin-1 or UTF-16 file is re-saved, never guessed at."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{what}: {path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at "
                        f"offset {e.start}); re-save it as UTF-8") from None
    except OSError as e:
        raise DataError(f"{what}: cannot read {path} ({e.strerror or e}); check its permissions") from None


def warn_skip(path, reason: str) -> None:
    warnings.warn(f"skipping unreadable file {path}: {reason}", stacklevel=3)

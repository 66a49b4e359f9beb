"""Defects for the synthetic benchmark, each a (mask, new pixel values) pair.

A defect function returns `mask` (H, W) bool and `new` (H, W, 3) float: the values the
defective image takes inside the mask. `apply_defect` then writes exactly those pixels and
nudges any that happened to keep their clean value, so that
`(defective != clean).any(-1) == mask` holds exactly.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

from .synth_draw import Scene, noise

MIN_PIXELS = 12  # a defect smaller than this is redrawn (invisible after resizing)


def _pick(rng, support: np.ndarray, margin: float = 0.0) -> tuple[float, float]:
    """A random (y, x) inside `support`, away from the border by margin * s."""
    s = support.shape[0]
    ok = support.copy()
    m = int(margin * s)
    if m:
        ok[:m], ok[-m:], ok[:, :m], ok[:, -m:] = False, False, False, False
    idx = np.flatnonzero(ok if ok.any() else support)
    k = idx[rng.integers(len(idx))]
    return float(k // s), float(k % s)


def _draw_lines(s: int, polylines, width: int) -> np.ndarray:
    """Binary (s, s) mask of polylines drawn without anti-aliasing (so the mask is exact)."""
    im = Image.new("L", (s, s), 0)
    dr = ImageDraw.Draw(im)
    for pts in polylines:
        dr.line([(x, y) for y, x in pts], fill=255, width=width, joint="curve")
    return np.asarray(im) > 0


def _walk(rng, start, angle, steps, step, wobble):
    """A random-walk polyline: heading changes by N(0, wobble) each step."""
    pts = [start]
    y, x = start
    for _ in range(steps):
        angle += rng.normal(0, wobble)
        y, x = y + step * np.sin(angle), x + step * np.cos(angle)
        pts.append((y, x))
    return pts, angle


def crack_mask(rng, sc: Scene, thin: bool = True) -> np.ndarray:
    """Thin, continuous crack with a few branches."""
    s = sc.support.shape[0]
    start = _pick(rng, sc.support, 0.15)
    step = s / 50
    trunk, _ = _walk(rng, start, rng.uniform(0, 2 * np.pi), int(rng.integers(10, 18)), step, 0.35)
    lines = [trunk]
    for i in rng.choice(np.arange(2, len(trunk) - 1), size=int(rng.integers(1, 4)), replace=False):
        a = np.arctan2(trunk[i + 1][0] - trunk[i][0], trunk[i + 1][1] - trunk[i][1])
        br, _ = _walk(rng, trunk[i], a + rng.choice([-1, 1]) * rng.uniform(0.5, 1.0),
                      int(rng.integers(3, 8)), step, 0.3)
        lines.append(br)
    return _draw_lines(s, lines, max(1, round(s / (200 if thin else 110)))) & sc.support


def scratch_mask(rng, sc: Scene) -> np.ndarray:
    """Long winding scratch: heading oscillates smoothly along the stroke."""
    s = sc.support.shape[0]
    y, x = _pick(rng, sc.support, 0.2)
    a0, amp = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 0.9)
    freq, ph = rng.uniform(2, 5), rng.uniform(0, 2 * np.pi)
    n, L = 60, rng.uniform(0.3, 0.6) * s
    pts = [(y, x)]
    for t in np.linspace(0, 1, n):
        a = a0 + amp * np.sin(2 * np.pi * freq * t + ph)
        y, x = y + L / n * np.sin(a), x + L / n * np.cos(a)
        pts.append((y, x))
    return _draw_lines(s, [pts], max(1, round(s / 160))) & sc.support


def ellipse_mask(rng, sc: Scene, rmin=0.02, rmax=0.05) -> tuple[np.ndarray, np.ndarray]:
    """Filled ellipse inside the support, and its normalised coordinates (dy, dx) (2, s, s)."""
    s = sc.support.shape[0]
    cy, cx = _pick(rng, ndi.binary_erosion(sc.support, iterations=max(1, int(rmax * s))), 0.1)
    ry, rx = rng.uniform(rmin, rmax, 2) * s
    yy, xx = np.mgrid[0:s, 0:s]
    d = np.stack([(yy - cy) / ry, (xx - cx) / rx])
    return ((d ** 2).sum(0) <= 1) & sc.support, d


def blob_mask(rng, sc: Scene, r=0.08) -> np.ndarray:
    """Irregular stain outline: a disk's radial falloff plus smooth noise, thresholded."""
    s = sc.support.shape[0]
    cy, cx = _pick(rng, sc.support, 0.12)
    rad = rng.uniform(0.5, 1.0) * r * s
    yy, xx = np.mgrid[0:s, 0:s]
    f = 1 - np.hypot(yy - cy, xx - cx) / rad + 0.35 * noise(rng, s, max(1.0, rad / 3))
    return (f > 0) & sc.support


def _chunk(rng, sc: Scene) -> np.ndarray:
    """Missing part: a listed component, else a bite out of the object's outline."""
    if sc.parts:
        return sc.parts[rng.integers(len(sc.parts))]
    s = sc.support.shape[0]
    rim = sc.support & ~ndi.binary_erosion(sc.support)
    cy, cx = _pick(rng, rim)
    yy, xx = np.mgrid[0:s, 0:s]
    return (np.hypot(yy - cy, xx - cx) < rng.uniform(0.05, 0.1) * s) & sc.support


# --------------------------------------------------------------- defect -> (mask, values)
def crack(rng, sc):
    m = crack_mask(rng, sc)
    return m, sc.img * 0.3 + 8


def scratch(rng, sc):
    m = scratch_mask(rng, sc)
    return m, sc.img * 0.35 + 0.65 * 240


def hole(rng, sc):
    m, d = ellipse_mask(rng, sc)
    if rng.random() < 0.5:  # dark hole
        return m, sc.img * 0.12 + 12
    shade = 1 + 0.45 * (d[0] + d[1]) / np.sqrt(2)  # dent: lit on one side, shadowed on the other
    return m, sc.img * shade[..., None] * 0.9


def stain(rng, sc):
    m = blob_mask(rng, sc)
    rust = rng.random() < 0.5
    tint = np.array((150, 70, 30) if rust else (60, 45, 30), np.float64)
    alpha = (0.65 if rust else 0.5) + 0.1 * noise(rng, m.shape[0], 1.5)[..., None]
    return m, sc.img * (1 - alpha) + tint * alpha


def missing(rng, sc):
    m = _chunk(rng, sc)
    under = sc.under if sc.under is not None else np.full_like(sc.img, 20.0)
    return m, under


def subtle(rng, sc):
    """Low-contrast version: a faint scratch, crack or stain shifting brightness by 5-10 levels."""
    kind = rng.integers(3)
    m = (scratch_mask(rng, sc), crack_mask(rng, sc, thin=False), blob_mask(rng, sc))[kind]
    delta = rng.uniform(5, 10) * rng.choice([-1, 1])
    return m, sc.img + delta


DEFECTS = {"crack": crack, "scratch": scratch, "hole": hole, "stain": stain,
           "missing": missing, "subtle": subtle}


def draw_defect(rng, sc: Scene, kind: str, tries: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(mask, new values) of one defect of `kind`, redrawn until it has >= MIN_PIXELS pixels."""
    fn = DEFECTS[kind]
    for _ in range(tries):
        m, new = fn(rng, sc)
        if m.sum() >= MIN_PIXELS:
            return m, new
    raise RuntimeError(f"synth: could not draw a visible {kind!r} defect in {tries} tries")


def to_uint8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def apply_defect(clean: np.ndarray, mask: np.ndarray, new: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 defective image: `new` inside `mask`, `clean` elsewhere; a mask pixel
    whose new value rounds to its clean value is nudged by 3 levels so that the mask is
    exactly the set of changed pixels."""
    out = clean.copy()
    out[mask] = to_uint8(new[mask])
    same = mask & (out == clean).all(-1)
    c = out[same].astype(np.int16)
    c += np.where(c < 128, 3, -3).astype(np.int16)  # per channel: stays in 0..255
    out[same] = c.astype(np.uint8)
    return out

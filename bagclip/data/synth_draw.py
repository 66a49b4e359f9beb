"""Drawing for the synthetic benchmark: clean textures and objects, then defects with exact masks.

Every function takes a numpy Generator and the side length s and works in float pixels
(0..255, (H, W, 3)); lengths scale with s so that 224 and 518 px trees look alike.
`apply_defect` is what makes masks pixel-exact: a defect changes pixels only inside its
mask, and every pixel inside the mask is changed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi


@dataclass
class Scene:
    """A clean image (H, W, 3) float; `under` is what lies beneath the object (for missing
    parts), `support` (H, W) bool where defects may appear, `parts` removable components."""

    img: np.ndarray
    support: np.ndarray
    under: np.ndarray | None = None
    parts: list[np.ndarray] | None = None


def noise(rng, s: int, sigma, norm: bool = True) -> np.ndarray:
    """(s, s) smoothed white noise, rescaled to zero mean / unit std."""
    n = ndi.gaussian_filter(rng.standard_normal((s, s)), sigma, mode="wrap")
    return (n - n.mean()) / (n.std() + 1e-8) if norm else n


def unit_coords(s: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) coordinates in [0, 1), each (s, s)."""
    return np.mgrid[0:s, 0:s].astype(np.float64) / s


def along_across(y: np.ndarray, x: np.ndarray, cy: float, cx: float, a: float):
    """Coordinates rotated by angle a about (cy, cx): u along the axis, w across it."""
    u = (x - cx) * np.cos(a) + (y - cy) * np.sin(a)
    w = -(x - cx) * np.sin(a) + (y - cy) * np.cos(a)
    return u, w


def colorize(v: np.ndarray, rgb) -> np.ndarray:
    """(s, s) brightness factor x base colour -> (s, s, 3)."""
    return v[..., None] * np.asarray(rgb, np.float64)


def jitter(rng, rgb, amount: float = 0.08) -> np.ndarray:
    return np.asarray(rgb, np.float64) * (1 + rng.uniform(-amount, amount, 3))


# ----------------------------------------------------------------------------- textures
def wood(rng, s):
    y, x = unit_coords(s)
    a = rng.uniform(-0.3, 0.3)
    u = y * np.cos(a) + x * np.sin(a) + 0.06 * noise(rng, s, s / 10)
    rings = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(9, 15) * u)
    grain = noise(rng, s, (0.7, s / 12))
    v = 0.72 + 0.22 * rings ** 3 + 0.05 * grain
    return Scene(colorize(v, jitter(rng, (176, 118, 70))), np.ones((s, s), bool))


def fabric(rng, s):
    y, x = unit_coords(s)
    p = s / rng.uniform(24, 34)  # thread period in pixels
    yy, xx = y * s / p, x * s / p
    over = (np.floor(xx) + np.floor(yy)) % 2 == 0  # plain weave: warp over weft on a checker
    warp = np.abs(np.sin(np.pi * xx)) ** 0.5
    weft = np.abs(np.sin(np.pi * yy)) ** 0.5
    v = np.where(over, warp, weft) * 0.3 + 0.62 + 0.04 * noise(rng, s, 0.8)
    base = [(70, 90, 140), (190, 175, 150), (120, 120, 125)][rng.integers(3)]
    return Scene(colorize(v, jitter(rng, base)), np.ones((s, s), bool))


def brushed_metal(rng, s):
    streaks = noise(rng, s, (0.6, s / 6))
    y, _ = unit_coords(s)
    v = 0.78 + 0.05 * streaks + 0.06 * (y - 0.5) + 0.015 * noise(rng, s, 0.7)
    return Scene(colorize(v, jitter(rng, (200, 202, 208), 0.03)), np.ones((s, s), bool))


def concrete(rng, s):
    v = 0.62 + 0.07 * noise(rng, s, s / 20) + 0.05 * noise(rng, s, 2) + 0.03 * noise(rng, s, 0.6)
    pores = noise(rng, s, 1.2) > 2.6  # sparse dark pits
    v = np.where(pores, v * 0.6, v)
    return Scene(colorize(v, jitter(rng, (175, 172, 165), 0.04)), np.ones((s, s), bool))


def carpet(rng, s):
    fibres = noise(rng, s, 0.9)
    tufts = noise(rng, s, s / 40)
    v = 0.6 + 0.12 * fibres + 0.08 * tufts
    base = [(150, 50, 50), (60, 110, 70), (120, 100, 80)][rng.integers(3)]
    return Scene(colorize(v, jitter(rng, base)), np.ones((s, s), bool))


def tile(rng, s):
    n = int(rng.integers(3, 5))
    y, x = unit_coords(s)
    yy, xx = y * n, x * n
    grout = (np.minimum(yy % 1, 1 - yy % 1) < 0.04) | (np.minimum(xx % 1, 1 - xx % 1) < 0.04)
    cell = (np.floor(yy) * n + np.floor(xx)).astype(int)
    shade = 0.85 + 0.06 * rng.standard_normal(n * n)[cell]
    v = np.where(grout, 0.55, shade) + 0.02 * noise(rng, s, 1.0)
    return Scene(colorize(v, jitter(rng, (225, 220, 205), 0.04)), np.ones((s, s), bool))


# ----------------------------------------------------------------------------- objects
def _background(rng, s, rgb):
    return colorize(0.9 + 0.03 * noise(rng, s, s / 8) + 0.01 * noise(rng, s, 0.8), jitter(rng, rgb, 0.04))


def _on_background(rng, s, obj, v, rgb, under_rgb) -> Scene:
    """A plain object (brightness v, colour about rgb) where obj is True, over a background."""
    under = _background(rng, s, under_rgb)
    img = np.where(obj[..., None], colorize(v, jitter(rng, rgb, 0.03)), under)
    return Scene(img, obj, under)


def washer(rng, s):
    y, x = unit_coords(s)
    cy, cx = 0.5 + rng.uniform(-0.05, 0.05, 2)
    r = np.hypot(y - cy, x - cx)
    ro, ri = rng.uniform(0.32, 0.4), rng.uniform(0.12, 0.17)
    obj = (r < ro) & (r > ri)
    theta = np.arctan2(y - cy, x - cx)
    v = 0.7 + 0.18 * np.cos(theta - rng.uniform(0, 2 * np.pi)) + 0.05 * noise(rng, s, (1, 1))
    return _on_background(rng, s, obj, v, (205, 205, 210), (60, 62, 70))


def screw(rng, s):
    y, x = unit_coords(s)
    a = rng.uniform(0, np.pi)
    cy, cx = 0.5 + rng.uniform(-0.04, 0.04, 2)
    u, w = along_across(y, x, cy, cx, a)  # along the shaft, across it
    shaft = (np.abs(w) < 0.05) & (u > -0.28) & (u < 0.3)
    head = (np.abs(w) < 0.11) & (u > -0.38) & (u <= -0.28)
    obj = shaft | head
    thread = 0.5 + 0.5 * np.sin(2 * np.pi * (u * 40 + w * 8))
    v = 0.6 + 0.25 * np.cos(np.pi * w / 0.1) * np.where(shaft, 0.6 + 0.4 * thread, 1.0)
    return _on_background(rng, s, obj, v, (170, 172, 180), (215, 215, 210))


def capsule(rng, s):
    y, x = unit_coords(s)
    a = rng.uniform(0, np.pi)
    u, w = along_across(y, x, 0.5, 0.5, a)
    half, rad = 0.22, rng.uniform(0.1, 0.13)
    d = np.hypot(np.clip(np.abs(u) - half, 0, None), w)  # distance to the capsule's axis segment
    obj = d < rad
    depth = np.sqrt(np.clip(1 - (d / rad) ** 2, 0, 1))  # cylinder shading
    c1 = jitter(rng, [(200, 60, 50), (230, 190, 60), (60, 110, 190)][rng.integers(3)])
    c2 = jitter(rng, (235, 232, 225), 0.03)
    col = np.where((u < 0)[..., None], c1, c2)
    under = _background(rng, s, (90, 95, 100))
    img = np.where(obj[..., None], (0.55 + 0.45 * depth)[..., None] * col, under)
    return Scene(img, obj, under)


def circuit_board(rng, s):
    board = colorize(0.75 + 0.04 * noise(rng, s, s / 16) + 0.02 * noise(rng, s, 0.8),
                     jitter(rng, (40, 120, 60), 0.05))
    im = Image.new("L", (s, s), 0)
    dr = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(8, 14))):  # Manhattan copper traces
        py, px = rng.uniform(0.05, 0.95, 2) * s
        for _ in range(3):
            if rng.random() < 0.5:
                qx, qy = rng.uniform(0.05, 0.95) * s, py
            else:
                qx, qy = px, rng.uniform(0.05, 0.95) * s
            dr.line([(px, py), (qx, qy)], fill=255, width=max(1, round(s / 110)))
            px, py = qx, qy
    traces = np.asarray(im) > 0
    under = np.where(traces[..., None], jitter(rng, (190, 150, 70), 0.05), board)
    img, parts = under.copy(), []
    taken = np.zeros((s, s), bool)
    for _ in range(int(rng.integers(4, 7))):  # chips and resistors, not overlapping
        h, w = (rng.uniform(0.08, 0.2, 2) * s).astype(int) + 3
        y0, x0 = rng.integers(2, s - h - 2), rng.integers(2, s - w - 2)
        part = np.zeros((s, s), bool)
        part[y0:y0 + h, x0:x0 + w] = True
        if (ndi.binary_dilation(part, iterations=2) & taken).any():
            continue
        taken |= part
        img[part] = jitter(rng, (30, 30, 35), 0.1) * (1 + 0.05 * rng.standard_normal((part.sum(), 1)))
        parts.append(part)
    return Scene(img, np.ones((s, s), bool), under, parts)


TEXTURES = {"wood": wood, "fabric": fabric, "tile": tile, "brushed_metal": brushed_metal,
            "concrete": concrete, "carpet": carpet}
OBJECTS = {"washer": washer, "capsule": capsule, "screw": screw, "circuit_board": circuit_board}

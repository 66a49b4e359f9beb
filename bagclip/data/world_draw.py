"""Clean scenes of the pretraining world: materials and simple objects the benchmark never shows.

Each function draws one clean `Scene` (float pixels 0..255, (s, s, 3)) from a numpy Generator,
like `synth_draw`. The world reuses the benchmark's five auxiliary drawings (wood, fabric,
tile, washer, capsule) and adds the families below; the five target drawings (brushed metal,
concrete, carpet, screw, circuit board) are deliberately absent (see `world.CATEGORIES`).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

from .synth_draw import Scene, _background, colorize, jitter, noise, unit_coords


def _full(img: np.ndarray) -> Scene:
    return Scene(img, np.ones(img.shape[:2], bool))


def _palette(rng, colours) -> np.ndarray:
    return jitter(rng, colours[rng.integers(len(colours))], 0.1)


# ----------------------------------------------------------------------------- materials
def marble(rng, s):
    y, x = unit_coords(s)
    turb = noise(rng, s, s / 12) + 0.5 * noise(rng, s, s / 30)
    veins = np.abs(np.sin(2 * np.pi * (rng.uniform(1, 3) * (x + y * rng.uniform(-1, 1)) + 0.5 * turb)))
    v = 0.85 - 0.35 * (1 - veins) ** 8 + 0.03 * noise(rng, s, 1.0)
    return _full(colorize(v, _palette(rng, [(235, 232, 228), (200, 205, 210), (60, 62, 66)])))


def granite(rng, s):
    img = colorize(0.7 + 0.05 * noise(rng, s, 1.5), _palette(rng, [(150, 140, 135), (110, 100, 105)]))
    for rgb in [(30, 30, 30), (230, 225, 220), (170, 90, 80)]:
        spots = noise(rng, s, rng.uniform(0.8, 1.6)) > rng.uniform(1.2, 1.8)
        img = np.where(spots[..., None], jitter(rng, rgb, 0.1), img)
    return _full(img)


def sand(rng, s):
    v = 0.75 + 0.08 * noise(rng, s, 0.6) + 0.06 * noise(rng, s, s / 10)
    y, x = unit_coords(s)
    ripples = np.sin(2 * np.pi * rng.uniform(5, 9) * (y + 0.05 * noise(rng, s, s / 8)))
    return _full(colorize(v + 0.04 * ripples, _palette(rng, [(214, 190, 140), (190, 170, 130)])))


def leather(rng, s):
    cells = noise(rng, s, rng.uniform(1.5, 2.5))
    creases = np.abs(cells) < 0.15  # network of fine creases between grains
    v = 0.75 + 0.05 * noise(rng, s, s / 10) - 0.12 * creases + 0.03 * noise(rng, s, 0.6)
    return _full(colorize(v, _palette(rng, [(110, 65, 40), (40, 35, 32), (160, 120, 80)])))


def brick(rng, s):
    y, x = unit_coords(s)
    rows = rng.integers(5, 9)
    yy = y * rows
    xx = x * rows / 2 + 0.5 * (np.floor(yy) % 2)
    mortar = (np.minimum(yy % 1, 1 - yy % 1) < 0.06) | (np.minimum(xx % 1, 1 - xx % 1) < 0.03)
    cell = (np.floor(yy) * 97 + np.floor(xx)).astype(int) % 997
    shade = 0.8 + 0.08 * rng.standard_normal(997)[cell] + 0.04 * noise(rng, s, 1.2)
    base = _palette(rng, [(160, 70, 50), (190, 110, 80), (120, 60, 50)])
    img = np.where(mortar[..., None], jitter(rng, (190, 185, 175), 0.05), colorize(shade, base))
    return _full(img)


def knit(rng, s):
    y, x = unit_coords(s)
    p = rng.uniform(14, 22)
    u, w = x * p, y * p * 0.6
    loops = np.abs(np.sin(np.pi * (u + 0.5 * np.abs(np.sin(np.pi * w)))))
    v = 0.6 + 0.3 * loops ** 0.7 + 0.04 * noise(rng, s, 0.8)
    return _full(colorize(v, _palette(rng, [(180, 40, 60), (230, 225, 215), (70, 80, 120)])))


def mesh(rng, s):
    y, x = unit_coords(s)
    p = rng.uniform(10, 18)
    a = rng.uniform(0, np.pi / 2)
    u, w = (x * np.cos(a) + y * np.sin(a)) * p, (-x * np.sin(a) + y * np.cos(a)) * p
    wire = (np.minimum(u % 1, 1 - u % 1) < 0.12) | (np.minimum(w % 1, 1 - w % 1) < 0.12)
    back = _background(rng, s, (40, 40, 45))
    img = np.where(wire[..., None], colorize(0.8 + 0.05 * noise(rng, s, 1), jitter(rng, (190, 190, 195))), back)
    return _full(img)


def perforated_sheet(rng, s):
    y, x = unit_coords(s)
    n = rng.integers(7, 12)
    yy, xx = y * n, x * n + 0.5 * (np.floor(y * n) % 2)
    holes = np.hypot(yy % 1 - 0.5, xx % 1 - 0.5) < rng.uniform(0.2, 0.32)
    sheet = colorize(0.8 + 0.03 * noise(rng, s, s / 10), _palette(rng, [(180, 185, 190), (60, 60, 65), (200, 180, 60)]))
    return _full(np.where(holes[..., None], 25.0, sheet))


def paper(rng, s):
    fibres = noise(rng, s, (0.5, 3.0))
    v = 0.92 + 0.015 * fibres + 0.01 * noise(rng, s, s / 6)
    return _full(colorize(v, _palette(rng, [(245, 243, 235), (235, 225, 200), (220, 230, 240)])))


def cork(rng, s):
    v = 0.7 + 0.12 * noise(rng, s, 1.2) + 0.08 * noise(rng, s, 3)
    pits = noise(rng, s, 1.0) > 2.0
    v = np.where(pits, v * 0.5, v)
    return _full(colorize(v, jitter(rng, (190, 140, 90), 0.08)))


def corrugated(rng, s):
    y, x = unit_coords(s)
    a = rng.uniform(0, np.pi)
    u = x * np.cos(a) + y * np.sin(a)
    v = 0.7 + 0.2 * np.sin(2 * np.pi * rng.uniform(8, 14) * u) + 0.02 * noise(rng, s, 1)
    return _full(colorize(v, _palette(rng, [(180, 150, 110), (150, 160, 170), (90, 130, 90)])))


def plastic(rng, s):
    y, x = unit_coords(s)
    g = rng.uniform(-0.1, 0.1, 2)
    v = 0.8 + g[0] * (y - 0.5) + g[1] * (x - 0.5) + 0.01 * noise(rng, s, 2)
    return _full(colorize(v, _palette(rng, [(220, 60, 50), (40, 90, 200), (240, 240, 235), (30, 30, 30), (250, 200, 40)])))


def diamond_plate(rng, s):
    y, x = unit_coords(s)
    n = rng.integers(8, 13)
    u, w = (x + y) * n / 2, (x - y) * n / 2
    bump = (np.abs(((u % 1) - 0.5)) < 0.08) & (np.abs(((w % 1) - 0.5)) < 0.3)
    bump |= (np.abs(((w + 0.5) % 1) - 0.5) < 0.08) & (np.abs((((u + 0.5) % 1) - 0.5)) < 0.3)
    v = 0.65 + 0.04 * noise(rng, s, 1) + 0.25 * ndi.gaussian_filter(bump.astype(float), 1)
    return _full(colorize(v, jitter(rng, (175, 178, 182), 0.05)))


def terrazzo(rng, s):
    img = colorize(0.85 + 0.02 * noise(rng, s, 1), _palette(rng, [(230, 225, 215), (200, 200, 205)]))
    lab, n = ndi.label(noise(rng, s, rng.uniform(2, 4)) > 1.3)
    cols = np.array([(180, 80, 60), (60, 60, 60), (230, 200, 120), (90, 120, 160)], float)
    pick = cols[rng.integers(len(cols), size=n + 1)] * rng.uniform(0.85, 1.15, (n + 1, 1))
    return _full(np.where((lab > 0)[..., None], pick[lab], img))


def honeycomb(rng, s):
    y, x = unit_coords(s)
    n = rng.uniform(6, 10)
    q = x * n * 2 / np.sqrt(3)
    r = y * n - 0.5 * q
    # axial -> cube rounding gives each pixel its hexagon; walls where two roundings disagree
    d = np.stack([q, r, -q - r])
    rd = np.round(d)
    err = np.abs(rd - d)
    edge = np.sort(err, axis=0)[-1] - np.sort(err, axis=0)[-2] < 0.1
    v = np.where(edge, 0.5, 0.85) + 0.02 * noise(rng, s, 1)
    return _full(colorize(v, _palette(rng, [(230, 180, 60), (200, 200, 205), (60, 60, 70)])))


def checkered(rng, s):
    y, x = unit_coords(s)
    n = rng.integers(4, 10)
    a, b = _palette(rng, [(30, 30, 30), (200, 40, 40)]), _palette(rng, [(240, 240, 240), (230, 220, 160)])
    check = ((np.floor(y * n) + np.floor(x * n)) % 2 == 0)[..., None]
    return _full(np.where(check, a, b) * (0.95 + 0.03 * noise(rng, s, 1)[..., None]))


def stripes(rng, s):
    y, x = unit_coords(s)
    a = rng.uniform(0, np.pi)
    u = (x * np.cos(a) + y * np.sin(a)) * rng.uniform(4, 12)
    k = rng.integers(2, 4)
    cols = np.stack([jitter(rng, c, 0.1) for c in [(30, 60, 140), (240, 240, 240), (200, 50, 50)][:k]])
    return _full(cols[(np.floor(u) % k).astype(int)] * (0.95 + 0.03 * noise(rng, s, 0.8)[..., None]))


def polka_dots(rng, s):
    y, x = unit_coords(s)
    n = rng.integers(5, 10)
    dots = np.hypot((y * n) % 1 - 0.5, (x * n + 0.5 * (np.floor(y * n) % 2)) % 1 - 0.5) < rng.uniform(0.15, 0.3)
    base = _palette(rng, [(240, 235, 225), (30, 60, 110), (200, 60, 90)])
    dot = _palette(rng, [(30, 30, 30), (240, 240, 240), (240, 200, 60)])
    return _full(np.where(dots[..., None], dot, base) * (0.95 + 0.03 * noise(rng, s, 1)[..., None]))


def foam(rng, s):
    pores = noise(rng, s, rng.uniform(1.5, 3)) < -1.0
    v = 0.85 + 0.03 * noise(rng, s, 0.7) - 0.25 * ndi.gaussian_filter(pores.astype(float), 0.8)
    return _full(colorize(v, _palette(rng, [(235, 225, 170), (90, 90, 95), (230, 230, 230)])))


def bark(rng, s):
    y, x = unit_coords(s)
    ridges = noise(rng, s, (s / 6, 1.5))
    v = 0.55 + 0.2 * np.tanh(2 * ridges) + 0.05 * noise(rng, s, 1)
    return _full(colorize(v, jitter(rng, (110, 85, 65), 0.1)))


def gravel(rng, s):
    img = colorize(0.5 + 0.05 * noise(rng, s, 1), jitter(rng, (110, 105, 100)))
    lab, n = ndi.label(noise(rng, s, rng.uniform(2.5, 4)) > 0.4)
    shade = rng.uniform(0.6, 1.2, n + 1)
    stone = colorize(shade[lab] + 0.05 * noise(rng, s, 1), jitter(rng, (170, 165, 155)))
    return _full(np.where((lab > 0)[..., None], stone, img))


def denim(rng, s):
    y, x = unit_coords(s)
    p = rng.uniform(40, 60)
    twill = np.sin(2 * np.pi * (x + y) * p) * 0.5 + 0.5
    v = 0.6 + 0.15 * twill + 0.08 * noise(rng, s, (3, 0.6)) + 0.03 * noise(rng, s, 0.6)
    return _full(colorize(v, jitter(rng, (60, 85, 140), 0.1)))


def glass(rng, s):
    y, x = unit_coords(s)
    cy, cx = rng.uniform(0, 1, 2)
    hl = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / rng.uniform(0.02, 0.08))
    v = 0.7 + 0.25 * hl + 0.005 * noise(rng, s, 1)
    return _full(colorize(v, _palette(rng, [(170, 210, 200), (120, 160, 120), (200, 200, 210)])))


# ----------------------------------------------------------------------------- objects
def _object(rng, s, obj: np.ndarray, v: np.ndarray, rgb, back_rgb) -> Scene:
    under = _background(rng, s, back_rgb)
    img = np.where(obj[..., None], colorize(v, rgb), under)
    return Scene(img, obj, under)


def _polar(rng, s):
    y, x = unit_coords(s)
    cy, cx = 0.5 + rng.uniform(-0.05, 0.05, 2)
    return np.hypot(y - cy, x - cx), np.arctan2(y - cy, x - cx)


def nut(rng, s):
    r, t = _polar(rng, s)
    ro = rng.uniform(0.3, 0.38)
    hexr = ro * np.cos(np.pi / 6) / np.cos((t - rng.uniform(0, 1)) % (np.pi / 3) - np.pi / 6)
    obj = (r < hexr) & (r > ro * 0.42)
    v = 0.7 + 0.15 * np.cos(3 * t) * (r > ro * 0.7) + 0.04 * noise(rng, s, 1)
    return _object(rng, s, obj, v, jitter(rng, (190, 190, 195), 0.05), (50, 55, 60))


def gear(rng, s):
    r, t = _polar(rng, s)
    ro, teeth = rng.uniform(0.28, 0.34), rng.integers(8, 16)
    rim = ro + 0.05 * (np.cos(teeth * t) > 0)
    obj = (r < rim) & (r > rng.uniform(0.06, 0.1))
    v = 0.7 + 0.1 * (r < ro * 0.8) + 0.04 * noise(rng, s, 1)
    return _object(rng, s, obj, v, _palette(rng, [(190, 150, 80), (170, 170, 175)]), (220, 220, 215))


def bottle_top(rng, s):
    r, t = _polar(rng, s)
    ro = rng.uniform(0.33, 0.42)
    obj = r < ro
    v = 0.6 + 0.3 * (r < ro * 0.35) + 0.1 * np.cos(t - 1) * (r > ro * 0.8) + 0.02 * noise(rng, s, 1)
    return _object(rng, s, obj, v, _palette(rng, [(90, 60, 30), (40, 120, 60), (200, 200, 205)]), (30, 30, 35))


def pill(rng, s):
    y, x = unit_coords(s)
    a = rng.uniform(0, np.pi)
    u = (x - 0.5) * np.cos(a) + (y - 0.5) * np.sin(a)
    w = -(x - 0.5) * np.sin(a) + (y - 0.5) * np.cos(a)
    ru, rw = rng.uniform(0.2, 0.32), rng.uniform(0.18, 0.24)
    d = (u / ru) ** 2 + (w / rw) ** 2
    obj = d < 1
    v = 0.75 + 0.2 * np.sqrt(np.clip(1 - d, 0, 1)) - 0.15 * (np.abs(u) < 0.008) + 0.01 * noise(rng, s, 1)
    return _object(rng, s, obj, v, _palette(rng, [(245, 245, 240), (240, 200, 190), (200, 220, 240)]), (60, 90, 70))


def cable(rng, s):
    r, t = _polar(rng, s)
    ro = rng.uniform(0.36, 0.42)
    obj = r < ro
    img = colorize(0.7 + 0.03 * noise(rng, s, 1), jitter(rng, (40, 40, 45)))
    cols = [(40, 160, 60), (60, 90, 200), (140, 90, 60)]
    rng.shuffle(cols)
    for k, c in enumerate(cols):  # three insulated cores
        ang = 2 * np.pi * k / 3 + rng.uniform(-0.2, 0.2)
        y, x = unit_coords(s)
        core = np.hypot(y - 0.5 - 0.17 * np.sin(ang), x - 0.5 - 0.17 * np.cos(ang)) < 0.13
        copper = np.hypot(y - 0.5 - 0.17 * np.sin(ang), x - 0.5 - 0.17 * np.cos(ang)) < 0.06
        img = np.where(core[..., None], jitter(rng, c, 0.08), img)
        img = np.where(copper[..., None], jitter(rng, (200, 130, 70), 0.05), img)
    under = _background(rng, s, (220, 215, 205))
    return Scene(np.where(obj[..., None], img, under), obj, under)


def button(rng, s):
    r, t = _polar(rng, s)
    ro = rng.uniform(0.3, 0.4)
    y, x = unit_coords(s)
    holes = np.zeros((s, s), bool)
    for k in range(4):
        a = np.pi / 4 + k * np.pi / 2
        holes |= np.hypot(y - 0.5 - 0.08 * np.sin(a), x - 0.5 - 0.08 * np.cos(a)) < 0.035
    obj = (r < ro) & ~holes
    v = 0.75 + 0.15 * (r > ro * 0.8) + 0.03 * noise(rng, s, 1)
    return _object(rng, s, obj, v, _palette(rng, [(150, 30, 40), (240, 235, 220), (30, 30, 30)]), (200, 190, 170))


def coin(rng, s):
    r, t = _polar(rng, s)
    ro = rng.uniform(0.33, 0.42)
    obj = r < ro
    relief = noise(rng, s, 2) * (r < ro * 0.75)
    v = 0.7 + 0.1 * (r > ro * 0.88) + 0.08 * relief + 0.1 * np.cos(t - 0.7) * r / ro
    return _object(rng, s, obj, v, _palette(rng, [(200, 160, 80), (190, 190, 195), (180, 110, 70)]), (40, 40, 60))


def bearing(rng, s):
    r, t = _polar(rng, s)
    ro = rng.uniform(0.35, 0.42)
    obj = (r < ro) & (r > ro * 0.35)
    balls = np.zeros((s, s), bool)
    y, x = unit_coords(s)
    n = rng.integers(7, 11)
    for k in range(n):
        a = 2 * np.pi * k / n
        balls |= np.hypot(y - 0.5 - ro * 0.68 * np.sin(a), x - 0.5 - ro * 0.68 * np.cos(a)) < ro * 0.13
    v = 0.75 + 0.15 * balls - 0.2 * ((r > ro * 0.58) & (r < ro * 0.78) & ~balls) + 0.03 * noise(rng, s, 1)
    return _object(rng, s, obj, v, jitter(rng, (195, 195, 200), 0.04), (230, 228, 220))


def label(rng, s):
    y, x = unit_coords(s)
    h, w = rng.uniform(0.25, 0.35), rng.uniform(0.3, 0.42)
    obj = (np.abs(y - 0.5) < h) & (np.abs(x - 0.5) < w)
    text = np.zeros((s, s), bool)
    for k in range(int(rng.integers(3, 6))):  # lines of "text" as dashes
        yy = 0.5 - h + (k + 1) * 2 * h / 7
        text |= (np.abs(y - yy) < 0.012) & (np.abs(x - 0.5) < w * 0.8) & (noise(rng, s, (0.5, 2))[0:s] > -0.3)
    v = 0.95 - 0.7 * text + 0.01 * noise(rng, s, 1)
    return _object(rng, s, obj, v, jitter(rng, (245, 245, 240), 0.03), _palette(rng, [(120, 90, 60), (60, 60, 70)]))


def zipper(rng, s):
    y, x = unit_coords(s)
    tape = np.abs(x - 0.5) < 0.3
    teeth = (np.abs(x - 0.5) < 0.06) & ((np.floor(y * rng.uniform(20, 30) + (x > 0.5) * 0.5) % 2) == 0)
    v = 0.75 + 0.03 * noise(rng, s, (0.6, 3))
    img = np.where(teeth[..., None], jitter(rng, (200, 200, 205), 0.05) * 0.95,
                   colorize(v, _palette(rng, [(30, 30, 35), (60, 80, 140), (150, 40, 40)])))
    under = _background(rng, s, (200, 200, 195))
    return Scene(np.where(tape[..., None], img, under), tape, under)


def hazelnut(rng, s):
    r, t = _polar(rng, s)
    ro = rng.uniform(0.28, 0.36) * (1 + 0.08 * np.cos(t * 2 + rng.uniform(0, 6)))
    obj = r < ro
    v = 0.6 + 0.2 * np.sqrt(np.clip(1 - (r / ro) ** 2, 0, 1)) + 0.06 * noise(rng, s, (1, 4))
    return _object(rng, s, obj, v, jitter(rng, (150, 100, 60), 0.08), (240, 240, 240))


def o_ring(rng, s):
    r, t = _polar(rng, s)
    ro = rng.uniform(0.32, 0.4)
    obj = (r < ro) & (r > ro - rng.uniform(0.05, 0.09))
    v = 0.7 + 0.15 * np.cos(t - 1.0) + 0.02 * noise(rng, s, 1)
    return _object(rng, s, obj, v, _palette(rng, [(30, 30, 30), (150, 40, 40)]), (215, 215, 210))

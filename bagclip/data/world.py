"""The pretraining world of bagclip-mini: 40 materials and objects, each drawn clean and defective.

    pair = make_pair(seed=0, index=17)      # one scene, clean and defective, with captions
    pair.images  (2, S, S, 3) uint8         # [clean, defective], identical apart from the defect
    pair.masks   (2, S, S) float            # defect coverage per pixel (clean: all zero)
    pair.captions  [normal, abnormal]       # "a photo of a flawless cork board." ...

Why pairs: captions are dominated by the object's name, so a plain contrastive loss learns the
category, not the state. Putting a scene's clean and defective versions in one batch, with
captions that differ only in their state words, leaves the state as the only thing that
separates them. The masks feed a dense patch-text loss (see `bagclip.pretrain`).

What the world is not: it never draws the benchmark's five target categories (brushed metal,
concrete, carpet, screw, circuit board), not even a good one (`CATEGORIES` has no such key and
no drawing function of theirs; a test asks the generator). It reuses the benchmark's five
auxiliary drawings and adds 35 of its own, and it has defect kinds the benchmark lacks
(cut-and-paste patches, foreign texture, debris, smudges, discolouration, folds), so that the
model learns "a local region that breaks the pattern", not the look of the kit's six defects.
Photometric jitter (brightness, contrast, colour cast, blur, sensor noise) and a random zoom are
applied identically to both images of a pair.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from ..prompts import ABNORMAL_STATES, NORMAL_STATES
from . import world_draw as wd
from .synth import TARGET_CLASSES
from .synth_defects import DEFECTS as BENCH_DEFECTS, MIN_PIXELS, blob_mask, draw_defect, scratch_mask, to_uint8
from .synth_draw import OBJECTS, TEXTURES, Scene, noise

# name -> (drawing, prompt names). The first prompt name is the canonical one.
CATEGORIES: dict[str, tuple] = {
    # the benchmark's auxiliary categories (allowed: heads train on them too)
    "wood": (TEXTURES["wood"], ("wooden board", "wood", "wooden plank")),
    "fabric": (TEXTURES["fabric"], ("fabric", "woven cloth", "textile")),
    "tile": (TEXTURES["tile"], ("ceramic tile", "tiled floor", "tile")),
    "washer": (OBJECTS["washer"], ("metal washer", "washer", "flat ring")),
    "capsule": (OBJECTS["capsule"], ("capsule", "pill capsule", "medicine capsule")),
    # materials
    "marble": (wd.marble, ("marble slab", "marble", "polished stone")),
    "granite": (wd.granite, ("granite", "granite countertop", "speckled stone")),
    "sand": (wd.sand, ("sand", "sandy surface", "sand dune")),
    "leather": (wd.leather, ("leather", "leather hide", "grained leather")),
    "brick": (wd.brick, ("brick wall", "bricks", "masonry")),
    "knit": (wd.knit, ("knitted wool", "knit", "sweater fabric")),
    "mesh": (wd.mesh, ("wire mesh", "metal grid", "fence mesh")),
    "perforated_sheet": (wd.perforated_sheet, ("perforated sheet", "punched plate", "perforated panel")),
    "paper": (wd.paper, ("sheet of paper", "paper", "cardboard")),
    "cork": (wd.cork, ("cork board", "cork", "cork panel")),
    "corrugated": (wd.corrugated, ("corrugated sheet", "corrugated board", "ribbed panel")),
    "plastic": (wd.plastic, ("plastic panel", "plastic", "plastic casing")),
    "diamond_plate": (wd.diamond_plate, ("diamond plate", "tread plate", "checker plate")),
    "terrazzo": (wd.terrazzo, ("terrazzo floor", "terrazzo", "chip floor")),
    "honeycomb": (wd.honeycomb, ("honeycomb panel", "honeycomb", "hexagonal grid")),
    "checkered": (wd.checkered, ("checkered pattern", "chequered cloth", "checkerboard")),
    "stripes": (wd.stripes, ("striped fabric", "stripes", "striped print")),
    "polka_dots": (wd.polka_dots, ("polka dot print", "dotted fabric", "polka dots")),
    "foam": (wd.foam, ("foam", "sponge", "foam block")),
    "bark": (wd.bark, ("tree bark", "bark", "rough bark")),
    "gravel": (wd.gravel, ("gravel", "pebbles", "stones")),
    "denim": (wd.denim, ("denim", "jeans fabric", "twill cloth")),
    "glass": (wd.glass, ("glass pane", "glass", "glazed surface")),
    # objects
    "nut": (wd.nut, ("hex nut", "nut", "metal nut")),
    "gear": (wd.gear, ("gear", "cog wheel", "sprocket")),
    "bottle_top": (wd.bottle_top, ("bottle", "bottle seen from above", "bottle neck")),
    "pill": (wd.pill, ("tablet", "pill", "round tablet")),
    "cable": (wd.cable, ("cable", "cable cross section", "wire bundle")),
    "button": (wd.button, ("button", "sewing button", "shirt button")),
    "coin": (wd.coin, ("coin", "metal coin", "token")),
    "bearing": (wd.bearing, ("ball bearing", "bearing", "roller bearing")),
    "label": (wd.label, ("label", "printed label", "sticker")),
    "zipper": (wd.zipper, ("zipper", "zip fastener", "zip")),
    "hazelnut": (wd.hazelnut, ("hazelnut", "nut shell", "walnut")),
    "o_ring": (wd.o_ring, ("o-ring", "rubber ring", "seal ring")),
}
assert not set(CATEGORIES) & set(TARGET_CLASSES)
OBJECT_NAMES = ("washer", "capsule", "nut", "gear", "bottle_top", "pill", "cable", "button", "coin",
                "bearing", "label", "zipper", "hazelnut", "o_ring")
MATERIALS = tuple(c for c in CATEGORIES if c not in OBJECT_NAMES)  # fill the whole image


# ----------------------------------------------------------------------------- defects
def _donor(rng, s: int) -> np.ndarray:
    """A texture from another world material (never a target category)."""
    fn = CATEGORIES[MATERIALS[rng.integers(len(MATERIALS))]][0]
    return fn(rng, s).img


def _perlin_mask(rng, sc: Scene) -> np.ndarray:
    """DRAEM-like irregular region: smooth noise above a threshold, one component kept."""
    s = sc.support.shape[0]
    for _ in range(10):
        n = noise(rng, s, rng.uniform(s / 40, s / 12))
        m = (n > rng.uniform(1.2, 2.2)) & sc.support
        lab, k = ndi.label(m)
        if k:
            sizes = ndi.sum(m, lab, range(1, k + 1))
            keep = lab == (1 + rng.integers(k))
            if keep.sum() >= 30 and keep.sum() < 0.2 * s * s:
                return keep
            if sizes.max() < 0.2 * s * s:
                return lab == (1 + int(np.argmax(sizes)))
    return blob_mask(rng, sc)


def cutpaste(rng, sc: Scene):
    """A patch of the same image moved elsewhere (CutPaste-like), maybe rotated and re-lit."""
    s = sc.support.shape[0]
    h, w = (rng.uniform(0.06, 0.2, 2) * s).astype(int) + 4
    y0, x0 = rng.integers(0, s - h), rng.integers(0, s - w)
    patch = sc.img[y0:y0 + h, x0:x0 + w]
    if rng.random() < 0.5:
        patch = patch[::-1].swapaxes(0, 1)[: h, : w] if h == w else patch[::-1, ::-1]
    patch = patch * rng.uniform(0.8, 1.2)
    ph, pw = patch.shape[:2]
    idx = np.flatnonzero(sc.support)
    k = idx[rng.integers(len(idx))]
    cy, cx = int(np.clip(k // s - ph // 2, 0, s - ph)), int(np.clip(k % s - pw // 2, 0, s - pw))
    new = sc.img.copy()
    new[cy:cy + ph, cx:cx + pw] = patch
    m = np.zeros((s, s), bool)
    m[cy:cy + ph, cx:cx + pw] = True
    return m & sc.support, new


def foreign(rng, sc: Scene):
    """Foreign material: an irregular region blended with another world texture."""
    m = _perlin_mask(rng, sc)
    beta = rng.uniform(0.3, 0.9)
    return m, sc.img * (1 - beta) + _donor(rng, sc.support.shape[0]) * beta


def debris(rng, sc: Scene):
    """Specks, a hair or fibre lying on the surface."""
    s = sc.support.shape[0]
    m = np.zeros((s, s), bool)
    yy, xx = np.mgrid[0:s, 0:s]
    if rng.random() < 0.5:
        cy, cx = rng.uniform(0.2, 0.8, 2) * s
        for _ in range(int(rng.integers(3, 9))):
            py, px = cy + rng.normal(0, s / 25), cx + rng.normal(0, s / 25)
            m |= np.hypot(yy - py, xx - px) < rng.uniform(0.006, 0.02) * s
    else:
        m = scratch_mask(rng, sc)
    m &= sc.support
    dark = rng.random() < 0.6
    colour = np.array((25, 22, 20) if dark else (235, 235, 230), float)
    return m, sc.img * 0.15 + colour * 0.85


def smudge(rng, sc: Scene):
    """A blurred, slightly darker or lighter blob (a low-frequency anomaly)."""
    m = blob_mask(rng, sc, r=rng.uniform(0.06, 0.12))
    blurred = ndi.gaussian_filter(sc.img, (3, 3, 0))
    return m, blurred * rng.uniform(0.7, 1.25)


def discolour(rng, sc: Scene):
    """A colour shift over an irregular region (same texture, other hue)."""
    m = _perlin_mask(rng, sc) if rng.random() < 0.5 else blob_mask(rng, sc)
    gains = rng.uniform(0.5, 1.5, 3)
    return m, sc.img * gains


def fold(rng, sc: Scene):
    """A fold or wrinkle: a band lit on one side and shadowed on the other."""
    s = sc.support.shape[0]
    y, x = np.mgrid[0:s, 0:s] / s
    a = rng.uniform(0, np.pi)
    c = rng.uniform(0.25, 0.75)
    d = (x - 0.5) * np.cos(a) + (y - 0.5) * np.sin(a) - (c - 0.5)
    d += 0.02 * noise(rng, s, s / 10)
    wdt = rng.uniform(0.01, 0.03)
    m = (np.abs(d) < wdt) & sc.support
    along = (-(x - 0.5) * np.sin(a) + (y - 0.5) * np.cos(a))
    m &= np.abs(along - rng.uniform(-0.2, 0.2)) < rng.uniform(0.15, 0.5)
    shade = 1 + 0.5 * np.sign(d) * (1 - np.abs(d) / wdt)
    return m, sc.img * shade[..., None]


WORLD_DEFECTS = {"cutpaste": cutpaste, "foreign": foreign, "debris": debris, "smudge": smudge,
                 "discolour": discolour, "fold": fold}
DEFECTS = {**BENCH_DEFECTS, **WORLD_DEFECTS}

# Words for captions of a defective scene, per kind ("{}" is the object's name).
DEFECT_WORDS: dict[str, tuple[str, ...]] = {
    "crack": ("cracked {}", "{} with a crack", "fractured {}"),
    "scratch": ("scratched {}", "{} with a scratch", "scuffed {}"),
    "hole": ("{} with a hole", "dented {}", "punctured {}"),
    "stain": ("stained {}", "rusty {}", "{} with a stain"),
    "missing": ("{} with a missing part", "chipped {}", "incomplete {}"),
    "subtle": ("{} with a faint flaw", "slightly damaged {}", "{} with a small defect"),
    "cutpaste": ("{} with a misplaced patch", "{} with a patch defect", "tampered {}"),
    "foreign": ("contaminated {}", "{} with foreign material", "{} with an odd patch"),
    "debris": ("dirty {}", "{} with debris", "{} with specks"),
    "smudge": ("smudged {}", "{} with a smear", "blotched {}"),
    "discolour": ("discoloured {}", "{} with a colour defect", "faded {}"),
    "fold": ("folded {}", "wrinkled {}", "creased {}"),
}
# The state words: the paper's four each (bagclip.prompts, the ones the heads are prompted
# with), plus WinCLIP-like variants so that captions do not repeat four phrasings.
NORMAL_WORDS = NORMAL_STATES + ("{}", "intact {}", "{} without flaw", "{} without damage", "good {}",
                                "clean {}")
ABNORMAL_WORDS = ABNORMAL_STATES + ("{} with damage", "defective {}", "faulty {}", "anomalous {}")
CAPTION_TEMPLATES = (
    "a photo of a {}.", "a photo of the {}.", "a cropped photo of a {}.", "a close-up photo of the {}.",
    "a bright photo of a {}.", "a dark photo of the {}.", "a blurry photo of a {}.",
    "a jpeg corrupted photo of the {}.", "a photo of a small {}.", "a photo of the large {}.",
    "a photo of the {} for visual inspection.", "a photo of a {} for anomaly detection.",
    "an industrial photo of a {}.", "there is a {} in the scene.", "a {}.", "{}.",
)


def defect_kinds(category: str) -> tuple[str, ...]:
    """Defects a category can have: all, except 'missing' on plain materials."""
    return tuple(k for k in DEFECTS if k != "missing" or category not in MATERIALS)


@lru_cache(maxsize=1)
def vocabulary_words() -> tuple[str, ...]:
    """Whole English words of open_clip's tokenizer (alphabetic, 4-10 letters), sorted.

    Some captions name the object with one of these at random, so the text tower learns that
    the state words, not the name, carry the state: at test time the names are unseen.
    """
    from open_clip.tokenizer import SimpleTokenizer

    enc = SimpleTokenizer().encoder
    words = [w[:-4] for w in enc if w.endswith("</w>") and w[:-4].isalpha() and 4 <= len(w) - 4 <= 10]
    return tuple(sorted(words))


def try_defect(rng, scene: Scene, kind: str, tries: int = 8):
    """(mask, new values) of a `kind` defect with at least MIN_PIXELS pixels, or None after
    `tries` draws that did not fit the scene (e.g. a hole wider than a thin ring)."""
    for _ in range(tries):
        try:
            m, new = DEFECTS[kind](rng, scene)
        except ValueError:  # no room for this defect in the support
            continue
        if m.sum() >= MIN_PIXELS:
            return m, new
    return None


def _draw_defect(rng, scene: Scene, kind: str, tries: int = 8):
    """(mask, new values) as try_defect; after `tries` a stain is drawn instead."""
    return try_defect(rng, scene, kind, tries) or draw_defect(rng, scene, "stain")


# ----------------------------------------------------------------------------- pairs
@dataclass
class Pair:
    category: str
    defect: str
    name: str  # the object's name in both captions
    images: np.ndarray  # (2, S, S, 3) uint8: clean, defective
    masks: np.ndarray  # (2, S, S) float32 in [0, 1]: defect coverage (clean: zeros)
    captions: tuple[str, str]  # (normal caption, abnormal caption), same template and name
    template: str  # the caption template both share ("{}" receives the state phrase)


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index), zlib.crc32(b"bagclip-world")])


def _photometric(rng, imgs: np.ndarray) -> np.ndarray:
    """Same random lighting, colour cast, blur and sensor noise on every image: (n, S, S, 3)."""
    x = imgs.astype(np.float64) / 255
    x = x ** rng.uniform(0.75, 1.33)
    x = (x - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.uniform(-0.12, 0.12)
    x = x * rng.uniform(0.88, 1.12, 3)
    s = x.shape[1]
    if rng.random() < 0.5:  # uneven lighting
        y, xx = np.mgrid[0:s, 0:s] / s
        a = rng.uniform(0, 2 * np.pi)
        x = x * (1 + rng.uniform(0, 0.25) * ((y - 0.5) * np.sin(a) + (xx - 0.5) * np.cos(a)))[..., None]
    if rng.random() < 0.3:
        x = ndi.gaussian_filter(x, (0, rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0), 0))
    x = x + rng.standard_normal(x.shape[1:]) * rng.uniform(0, 0.02)  # sensor noise
    return to_uint8(x * 255)


def _resize(a: np.ndarray, size: int, resample) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize((size, size), resample))


def make_pair(seed: int = 0, index: int = 0, size: int = 224, categories=None,
              random_name_p: float = 0.3) -> Pair:
    """Scene `index` of the world of `seed`: independent of any other index (resumable)."""
    rng = _rng(seed, index)
    cats = list(categories) if categories is not None else list(CATEGORIES)
    cat = cats[rng.integers(len(cats))]
    draw, names = CATEGORIES[cat]
    kinds = defect_kinds(cat)
    kind = kinds[rng.integers(len(kinds))]
    s0 = int(size * (1.0 if rng.random() < 0.6 else rng.uniform(1.1, 1.6)))  # random zoom out
    scene = draw(rng, s0)
    clean = to_uint8(scene.img)
    m, new = _draw_defect(rng, scene, kind)
    bad = clean.copy()
    bad[m] = to_uint8(new[m])
    imgs = np.stack([clean, bad])
    masks = np.stack([np.zeros_like(m), m]).astype(np.float32)
    if s0 != size:
        imgs = np.stack([_resize(i, size, Image.BILINEAR) for i in imgs])
        masks = np.stack([np.asarray(Image.fromarray(k).resize((size, size), Image.BILINEAR)) for k in masks])
    k = int(rng.integers(4))  # random rotation / flip (same for both)
    imgs, masks = np.rot90(imgs, k, (1, 2)), np.rot90(masks, k, (1, 2))
    if rng.random() < 0.5:
        imgs, masks = imgs[:, :, ::-1], masks[:, :, ::-1]
    imgs = _photometric(rng, np.ascontiguousarray(imgs))
    if rng.random() < random_name_p:
        words = vocabulary_words()
        name = words[rng.integers(len(words))]
    else:
        name = names[rng.integers(len(names))]
    t = CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))]
    normal = NORMAL_WORDS[rng.integers(len(NORMAL_WORDS))]
    if rng.random() < 0.5:
        abnormal = ABNORMAL_WORDS[rng.integers(len(ABNORMAL_WORDS))]
    else:
        words = DEFECT_WORDS[kind]
        abnormal = words[rng.integers(len(words))]
    caps = (t.format(normal.format(name)), t.format(abnormal.format(name)))
    return Pair(cat, kind, name, np.ascontiguousarray(imgs), np.ascontiguousarray(masks, np.float32), caps, t)

"""A synthetic, seeded anomaly benchmark in the MVTec AD layout (no download needed).

    root = ensure_synth()                      # generated once into ~/.cache/bagclip/synth-...
    aux = load_dataset("synth", root, "test", classes=AUX_CLASSES)      # train the heads here
    target = load_dataset("synth", root, "test", classes=TARGET_CLASSES)  # zero-shot eval here

10 categories (6 textures, 4 objects), split into auxiliary and target groups with no class in
common, mirroring "train on MVTec AD/VisA test, test on other datasets". Defects: cracks,
winding scratches, holes/dents, stains/rust, missing parts and faint ("subtle") versions, with
pixel-exact masks. Same seed -> same bytes. The tree is written into a temporary folder and
renamed into place; `synth_manifest.json`, written last, marks it complete. A temporary folder
left by a killed generation (its marker names a process that is gone) is removed by the next one.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..files import cache_root
from .io import DataError, Sample
from .layouts import load_mvtec_like
from .synth_defects import apply_defect, draw_defect, to_uint8
from .synth_draw import OBJECTS, TEXTURES

VERSION = 1  # bump when the drawing changes: cache folder names include it
MANIFEST = "synth_manifest.json"
MARKER = ".bagclip_synth"  # written first: identifies a (possibly partial) tree as ours
OWNER = ".bagclip_synth_pid"  # in the temporary folder only: the generating process

# Defect folders per category ("subtle" everywhere: the hard, low-contrast cases).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "wood": ("crack", "hole", "stain", "subtle"),
    "fabric": ("hole", "stain", "scratch", "subtle"),
    "tile": ("crack", "stain", "hole", "subtle"),
    "washer": ("scratch", "missing", "stain", "subtle"),
    "capsule": ("crack", "missing", "stain", "subtle"),
    "brushed_metal": ("scratch", "hole", "stain", "subtle"),
    "concrete": ("crack", "hole", "stain", "subtle"),
    "carpet": ("hole", "stain", "scratch", "subtle"),
    "screw": ("scratch", "missing", "stain", "subtle"),
    "circuit_board": ("missing", "scratch", "stain", "subtle"),
}
AUX_CLASSES = ("wood", "fabric", "tile", "washer", "capsule")  # cover all six defect kinds
TARGET_CLASSES = ("brushed_metal", "concrete", "carpet", "screw", "circuit_board")

# Test-split sizes per class: the auxiliary classes (the heads train on them) get n_test_good /
# n_test_bad; the target classes (every comparison is measured on them) get target_good /
# target_bad, sized for statistics: 40 + 40 per class gives a difference of a few points a
# bootstrap interval narrower than itself (docs/data.md). None: the auxiliary counts.
QUICK = dict(size=224, n_train=4, n_test_good=4, n_test_bad=8, target_good=40, target_bad=40)  # CPU default
FULL = dict(size=518, n_train=16, n_test_good=16, n_test_bad=32)  # paper resolution


@dataclass
class SynthImage:
    """One generated image: `clean` and `image` (H, W, 3) uint8, `mask` (H, W) bool.
    For good images image == clean and the mask is all False."""

    clean: np.ndarray
    image: np.ndarray
    mask: np.ndarray


def _rng(seed: int, *key) -> np.random.Generator:
    """A generator keyed by (seed, category, split, defect, index): independent of order."""
    return np.random.default_rng([seed, zlib.crc32("/".join(map(str, key)).encode())])


def make_image(category: str, defect: str = "good", size: int = 224, seed: int = 0,
               index: int = 0, split: str = "test") -> SynthImage:
    """Draw one image: the clean scene first, then (unless defect == "good") one defect."""
    draw = TEXTURES.get(category) or OBJECTS.get(category)
    if draw is None:
        raise DataError(f"synth: unknown category {category!r}; choose from {sorted(CATEGORIES)}")
    rng = _rng(seed, category, split, defect, index)
    scene = draw(rng, size)
    clean = to_uint8(scene.img)
    if defect == "good":
        return SynthImage(clean, clean, np.zeros((size, size), bool))
    mask, new = draw_defect(rng, scene, defect)
    return SynthImage(clean, apply_defect(clean, mask, new), mask)


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    # compress_level=1: 2x faster than the default; PIL writes no tIME chunk, so same pixels
    # give the same bytes
    Image.fromarray(a).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def class_counts(category: str, n_test_good: int, n_test_bad: int, target_good=None,
                target_bad=None) -> tuple[int, int]:
    """(good, defective) test images of a category: the target counts for a target class
    (when given), else the auxiliary ones."""
    if category in TARGET_CLASSES:
        return (n_test_good if target_good is None else target_good,
                n_test_bad if target_bad is None else target_bad)
    return n_test_good, n_test_bad


def target_counts(n_test_good: int, n_test_bad: int, target_good=..., target_bad=...) -> tuple:
    """The target classes' (good, defective) counts of a generation: as given (None: the
    auxiliary counts); left out (...): QUICK's target counts when the auxiliary counts are
    QUICK's, else the auxiliary counts (a tree asked for by its counts alone, e.g. the tests'
    tiny ones, has one size for every class)."""
    quick = (n_test_good, n_test_bad) == (QUICK["n_test_good"], QUICK["n_test_bad"])
    return tuple((QUICK[k] if quick else None) if v is ... else v
                 for k, v in (("target_good", target_good), ("target_bad", target_bad)))


def _plan(categories, n_train, n_test_good, n_test_bad, target_good=None, target_bad=None):
    """(category, split, defect, index) of every image, in a fixed order."""
    for cat in categories:
        n_good, n_bad = class_counts(cat, n_test_good, n_test_bad, target_good, target_bad)
        yield from ((cat, "train", "good", i) for i in range(n_train))
        yield from ((cat, "test", "good", i) for i in range(n_good))
        kinds = CATEGORIES[cat]
        for i in range(n_bad):  # defect kinds in turn, numbered within their folder
            yield cat, "test", kinds[i % len(kinds)], i // len(kinds)


def _params(seed, size, n_train, n_test_good, n_test_bad, categories, target=(None, None)) -> dict:
    out = dict(version=VERSION, seed=int(seed), size=int(size), n_train=int(n_train),
               n_test_good=int(n_test_good), n_test_bad=int(n_test_bad), categories=list(categories))
    if target != (None, None):  # recorded only when the target classes differ
        out["target_good"], out["target_bad"] = (None if v is None else int(v) for v in target)
    return out


def read_manifest(root) -> dict | None:
    """The manifest of a complete tree at `root`, or None (missing, partial or unreadable)."""
    try:
        return json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _complete(root: Path, params: dict) -> bool:
    m = read_manifest(root)
    return m is not None and m.get("params") == params and all(
        (root / f).is_file() for f in m.get("files", {}))


def _remove_stale_temps(out: Path) -> None:
    """Delete `.<name>.tmp-*` siblings of `out` whose generating process no longer runs (a
    SIGKILL skips the cleanup), or that have no marker and are over an hour old."""
    import time

    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        try:
            owner = (tmp / OWNER).read_text().split()
            pid = int(owner[-1]) if owner and owner[-1].isdigit() else None
            if pid is None or pid == os.getpid():
                raise FileNotFoundError
            try:
                os.kill(pid, 0)
                continue  # still running
            except ProcessLookupError:
                pass
            except PermissionError:
                continue  # alive, another user's
        except (FileNotFoundError, NotADirectoryError):
            if time.time() - tmp.stat().st_mtime < 3600:
                continue
        except OSError:
            continue
        shutil.rmtree(tmp, ignore_errors=True)


def _plan_files(categories, n_train, n_test_good, n_test_bad, target=(None, None)) -> set[str]:
    """The relative paths a generation with these parameters writes."""
    rels = set()
    for cat, split, defect, i in _plan(categories, n_train, n_test_good, n_test_bad, *target):
        rels.add(f"{cat}/{split}/{defect}/{i:03d}.png")
        if defect != "good":
            rels.add(f"{cat}/ground_truth/{defect}/{i:03d}_mask.png")
    return rels


def _check_only_ours(out: Path, new_files: set[str]) -> None:
    """Before replacing the synthetic tree `out`: DataError naming any file in it that neither
    its manifest lists nor a generation writes (issue 19: a user's file is never deleted)."""
    ours = set(new_files) | {MARKER, MANIFEST}
    try:
        ours |= set(json.loads((out / MANIFEST).read_text()).get("files", {}))
    except (OSError, ValueError, AttributeError):
        pass  # no or unreadable manifest: only the files a generation writes are ours
    foreign = sorted(q.relative_to(out).as_posix() for q in out.rglob("*")
                     if not q.is_dir() and q.relative_to(out).as_posix() not in ours)
    if foreign:
        raise DataError(f"synth: {out} holds file(s) bagclip did not write ({', '.join(foreign[:5])}"
                        f"{' ...' if len(foreign) > 5 else ''}); move them out or choose another folder: "
                        f"regenerating replaces the whole tree")


def _check_args(categories, size: int, n_train: int, n_test_good: int, n_test_bad: int,
                target=(None, None)) -> list:
    """The categories as a list, or DataError for unknown ones or too few / too small images."""
    categories = list(categories) if categories is not None else list(CATEGORIES)
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise DataError(f"synth: unknown categories {unknown}; choose from {sorted(CATEGORIES)}")
    if min(n_train, n_test_good, n_test_bad, *[v for v in target if v is not None]) < 1 or size < 32:
        raise DataError("synth: need size >= 32 and at least one image per split and kind")
    return categories


def draw_arrays(cat: str, split: str, defect: str, i: int, size: int, seed: int) -> tuple:
    """(clean, image, mask) of one image: `make_image` as arrays, what worker processes send."""
    im = make_image(cat, defect, size, seed, i, split)
    return im.clean, im.image, im.mask


def _draw_all(plan, size: int, seed: int, parallel: bool = True):
    """The plan's images, in plan order. Each image is a pure function of its arguments, so
    drawing them in worker processes (one per core, at most 2: drawing is about 0.2-0.3 s an
    image, half of a cold `reproduce --quick`'s first minutes) gives the same bytes. The workers
    are fresh interpreters that never import the caller's main module (`workers`: a script
    without a main guard, a heredoc, any start method; docs/design.md)."""
    jobs = [(cat, split, defect, i, size, seed) for cat, split, defect, i in plan]
    workers = min(2, os.cpu_count() or 1)
    if not parallel or workers < 2 or len(jobs) < 64:  # small trees: workers cost more than they save
        yield from (SynthImage(*draw_arrays(*job)) for job in jobs)
        return
    from .workers import map_in_workers

    for clean, image, mask in map_in_workers(f"{__name__}:draw_arrays", jobs, workers):
        yield SynthImage(clean, image, mask)


def _write_image(tmp: Path, cat: str, split: str, defect: str, i: int, im: SynthImage) -> dict:
    """Write one image (and its mask) as PNG under `tmp`; {relative path: sha256}."""
    rels = {f"{cat}/{split}/{defect}/{i:03d}.png": im.image}
    if defect != "good":
        rels[f"{cat}/ground_truth/{defect}/{i:03d}_mask.png"] = im.mask.astype(np.uint8) * 255
    out = {}
    for rel, a in rels.items():
        data = _png(a)
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(data)
        out[rel] = hashlib.sha256(data).hexdigest()
    return out


def generate(out_dir, seed: int = 0, size: int = QUICK["size"], n_train: int = QUICK["n_train"],
             n_test_good: int = QUICK["n_test_good"], n_test_bad: int = QUICK["n_test_bad"],
             categories=None, hook: Callable | None = None, target_good=..., target_bad=...) -> Path:
    """Write the benchmark to `out_dir` (MVTec AD layout) and return it.

    n_test_good / n_test_bad: test images per auxiliary class; target_good / target_bad: per
    target class (`target_counts`).
    A complete tree with the same parameters is reused as is; a partial one (no manifest) or
    one made with other parameters is replaced. A non-empty folder that is not a synthetic tree
    is never touched. hook(category, split, defect, index, SynthImage) is called for every
    image (and forces regeneration); tests use it to see the clean images.
    """
    target = target_counts(n_test_good, n_test_bad, target_good, target_bad)
    categories = _check_args(categories, size, n_train, n_test_good, n_test_bad, target)
    out = Path(out_dir).expanduser()
    params = _params(seed, size, n_train, n_test_good, n_test_bad, categories, target)
    if hook is None and _complete(out, params):
        return out
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise DataError(f"synth: {out} is a non-empty folder that is not a synthetic tree; "
                        f"choose an empty or new folder")
    if out.is_dir() and (out / MARKER).exists():
        _check_only_ours(out, _plan_files(categories, n_train, n_test_good, n_test_bad, target))
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(out)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        (tmp / OWNER).write_text(f"{os.getpid()}\n")
        (tmp / MARKER).write_text("bagclip synthetic benchmark\n")
        files = {}
        plan = list(_plan(categories, n_train, n_test_good, n_test_bad, *target))
        # closing: an error or Ctrl-C here ends the drawing workers at once
        with contextlib.closing(_draw_all(plan, size, seed, parallel=hook is None)) as drawn:
            for (cat, split, defect, i), im in zip(plan, drawn):
                if hook is not None:
                    hook(cat, split, defect, i, im)
                files.update(_write_image(tmp, cat, split, defect, i, im))
        counts = {c: {"train": n_train, "test": sum(class_counts(c, n_test_good, n_test_bad, *target))}
                  for c in categories}
        manifest = dict(params=params, aux_classes=[c for c in AUX_CLASSES if c in categories],
                        target_classes=[c for c in TARGET_CLASSES if c in categories],
                        counts=counts, files=files)
        (tmp / OWNER).unlink()
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))  # last: "done"
        if out.exists():
            if hook is None and _complete(out, params):  # another process finished first
                shutil.rmtree(tmp)
                return out
            _check_only_ours(out, set(files))  # again: a file may have been added meanwhile
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def ensure_synth(cache_dir=None, seed: int = 0, size: int = QUICK["size"],
                 n_train: int = QUICK["n_train"], n_test_good: int = QUICK["n_test_good"],
                 n_test_bad: int = QUICK["n_test_bad"], categories=None,
                 target_good=..., target_bad=...) -> Path:
    """The benchmark for these parameters, generated once into `<cache>/synth-...` and reused.

    cache_dir defaults to $BAGCLIP_CACHE or ~/.cache/bagclip. Full mode: size=518 (and more
    images per split, e.g. **FULL). Target counts as in `generate` (`target_counts`).
    """
    target_good, target_bad = target_counts(n_test_good, n_test_bad, target_good, target_bad)
    key = f"synth-v{VERSION}-seed{seed}-{size}px-{n_train}-{n_test_good}-{n_test_bad}"
    if (target_good, target_bad) != (None, None):
        key += f"-t{target_good}-{target_bad}"
    if categories is not None:
        key += f"-{zlib.crc32(','.join(categories).encode()):08x}"
    base = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    return generate(base / key, seed, size, n_train, n_test_good, n_test_bad, categories,
                    target_good=target_good, target_bad=target_bad)


def load_synth(root, split: str = "test", classes=None, image_level: bool = False,
               skip_bad: bool = False, **kw) -> list[Sample]:
    """Read a generated tree through the MVTec loader after checking that it is complete."""
    root = Path(root).expanduser()
    m = read_manifest(root)
    if m is None:
        raise DataError(f"synth: {root / MANIFEST} is missing or unreadable, so {root} is not a "
                        f"complete synthetic tree (generation interrupted?). Regenerate it with "
                        f"bagclip.data.synth.generate({str(root)!r}) or use ensure_synth()")
    samples = load_mvtec_like(root, split, classes, image_level, skip_bad, dataset="synth", **kw)
    found: dict[str, int] = {}
    for s in samples:
        found[s.class_name] = found.get(s.class_name, 0) + 1
    for cls, n in found.items():
        want = m.get("counts", {}).get(cls, {}).get(split)
        if want is not None and n != want and not skip_bad:
            raise DataError(f"synth: {root / cls / split} has {n} images, the manifest lists {want}; "
                            f"the tree was modified: regenerate it")
    return samples

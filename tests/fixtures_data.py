"""Builders of tiny dataset trees laid out exactly like the real archives (for tests/test_data.py).

Images are small (24 x 32, H x W: non-square on purpose) with a few distinct pixel values;
masks mark a square in the top-left corner.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

H, W = 24, 32


def write_image(path: Path, hw=(H, W), mode: str = "RGB", seed: int = 0) -> Path:
    """A small image in `mode` ("RGB", "L", "RGBA", "P", "I;16") at `path` (format from suffix)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, hw, dtype=np.uint16))
    elif mode == "P":
        im = Image.fromarray(rgb).quantize(16)
    else:
        im = Image.fromarray(rgb).convert(mode)
    im.save(path)
    return path


def random_pngs(folder: Path, sizes, seed: int = 0, name: str = "img{i}.png") -> list[Path]:
    """One uniform-noise RGB PNG per (H, W) in `sizes`, drawn in order from one seeded generator
    (distinct content, so no two files share a hash)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, hw in enumerate(sizes):
        p = folder / name.format(i=i)
        Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def write_mask(path: Path, hw=(H, W), on: int = 255, box: int = 6) -> Path:
    """A mask with values {0, on} (MVTec 255, VisA 1): a box x box square at the top-left."""
    m = np.zeros(hw, np.uint8)
    m[:box, :box] = on
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(m).save(path)
    return path


def make_mvtec(root: Path, classes=("bottle",), defects=("broken",), n: int = 2, ext: str = ".png",
               good: str = "good", mask_fmt: str = "{stem}_mask.png", train: bool = True) -> Path:
    """`<cls>/train/<good>`, `<cls>/test/{<good>,<defect>}`, `<cls>/ground_truth/<defect>/`."""
    for c in classes:
        for i in range(n):
            if train:
                write_image(root / c / "train" / good / f"{i:03d}{ext}", seed=i)
            write_image(root / c / "test" / good / f"{i:03d}{ext}", seed=10 + i)
            for d in defects:
                write_image(root / c / "test" / d / f"{i:03d}{ext}", seed=20 + i)
                if mask_fmt:
                    write_mask(root / c / "ground_truth" / d / mask_fmt.format(stem=f"{i:03d}"))
    return root


def make_btad(root: Path) -> Path:
    """BTAD: 01 (.bmp images, .png masks), 02 (.png, .png), 03 (.bmp, .bmp); ok / ko."""
    for cls, img_ext, mask_ext in (("01", ".bmp", ".png"), ("02", ".png", ".png"), ("03", ".bmp", ".bmp")):
        for i in range(2):
            write_image(root / cls / "train" / "ok" / f"{i:04d}{img_ext}", seed=i)
            write_image(root / cls / "test" / "ok" / f"{i:04d}{img_ext}", seed=i + 5)
            write_image(root / cls / "test" / "ko" / f"{i:04d}{img_ext}", seed=i + 9)
            write_mask(root / cls / "ground_truth" / "ko" / f"{i:04d}{mask_ext}")
    return root


def make_visa(root: Path, classes=("pcb1", "candle")) -> Path:
    """VisA: .JPG images, 0/1 PNG masks, split_csv/1cls.csv (object,split,label,image,mask)."""
    rows = []
    for c in classes:
        base = root / c / "Data"
        for i in range(2):
            n = base / "Images" / "Normal" / f"{i:04d}.JPG"
            write_image(n, seed=i)
            rows.append([c, "train", "normal", n.relative_to(root).as_posix(), ""])
            n2 = base / "Images" / "Normal" / f"{i + 10:04d}.JPG"
            write_image(n2, seed=i + 3)
            rows.append([c, "test", "normal", n2.relative_to(root).as_posix(), ""])
            a = base / "Images" / "Anomaly" / f"{i:03d}.JPG"
            write_image(a, seed=i + 6)
            m = write_mask(base / "Masks" / "Anomaly" / f"{i:03d}.png", on=1)
            rows.append([c, "test", "anomaly", a.relative_to(root).as_posix(),
                         m.relative_to(root).as_posix()])
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    with open(root / "split_csv" / "1cls.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["object", "split", "label", "image", "mask"])
        w.writerows(rows)
    return root


def make_folder(root: Path, with_masks: bool = True) -> Path:
    """Private set: normal/, abnormal/<defect>/, masks/ (flat, `<stem>.png`)."""
    for i in range(2):
        write_image(root / "normal" / f"ok_{i}.png", seed=i)
        write_image(root / "abnormal" / "scratch" / f"bad_{i}.png", seed=i + 4)
        if with_masks:
            write_mask(root / "masks" / f"bad_{i}.png")
    return root

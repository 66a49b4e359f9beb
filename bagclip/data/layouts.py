"""Folder layouts of the public datasets, each read into a list of `Sample`.

MVTec-like (MVTec AD, MPDD, BTAD, MIAD, InsPLAD, synth): `<cls>/{train,test}/<defect|good>/*`
and `<cls>/ground_truth/<defect>/<stem>[_mask].*`. VisA: `split_csv/1cls.csv`. A generic
folder layout (normal / abnormal / masks dirs) serves private sets. Masks are paired with
images by file stem, never by sort order, within the same sub-folder (`abnormal/dent/001.png`
<-> `masks/dent/001_mask.png`); a flat mask folder serves only stems that are unique among the
images. A mask must have its image's size (never stretched). Every problem found is reported
by file name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .io import DataError, Sample, check_readable, image_hw, is_image_file, warn_skip

MASK_SUFFIXES = ("_mask", "_gt", "-mask")  # MVTec/MPDD "_mask"; some re-packs use "_gt" or none
MAX_LISTED = 15  # file names listed in one error message


def _listing(items: Iterable, n: int = MAX_LISTED) -> str:
    items = [str(i) for i in items]
    more = f" ... and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def check_root(root, dataset: str, expected: str) -> Path:
    """`root` as a Path, or a DataError that says which layout was expected there."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"{dataset}: dataset root {root} does not exist; expected {expected}")
    if not root.is_dir():
        raise DataError(f"{dataset}: dataset root {root} is a file, not a folder; expected {expected}")
    return root


def _wanted(classes) -> list[str] | None:
    if classes is None:
        return None
    return [classes] if isinstance(classes, str) else [str(c) for c in classes]


def select_classes(found: list[str], classes, dataset: str, root: Path) -> list[str]:
    """The categories to load, in sorted order; unknown requested names are an error."""
    wanted = _wanted(classes)
    if wanted is None:
        return sorted(found)
    unknown = [c for c in wanted if c not in found]
    if unknown:
        raise DataError(f"{dataset}: class(es) {unknown} not found in {root}; available: "
                        f"{_listing(sorted(found), 50)}")
    return [c for c in sorted(found) if c in set(wanted)]


class Problems:
    """Collects per-file problems so that one error lists all of them (or warns when skipping)."""

    def __init__(self, dataset: str, skip_bad: bool, verify: bool):
        self.dataset, self.skip_bad, self.verify = dataset, skip_bad, verify
        self.unreadable: list[str] = []
        self.no_mask: list[str] = []
        self.orphan_masks: list[str] = []
        self.wrong_size: list[str] = []
        self.ambiguous: list[str] = []

    def mask_fits(self, image: Path, mask: Path) -> bool:
        """False (recorded, or warned when skipping) when `mask` is unreadable or not the size
        of `image`: a stretched mask would score the wrong pixels."""
        if not self.readable(mask):
            return False
        hi, hm = image_hw(image), image_hw(mask)
        if hi == hm:
            return True
        why = f"{mask} is {hm[1]}x{hm[0]} but its image {image} is {hi[1]}x{hi[0]}"
        if self.skip_bad:
            warn_skip(image, why)
        else:
            self.wrong_size.append(why)
        return False

    def readable(self, path: Path) -> bool:
        """False (and recorded or warned) when `path` does not open as an image."""
        why = check_readable(path, full=self.verify)
        if why is None:
            return True
        if self.skip_bad:
            warn_skip(path, why)
        else:
            self.unreadable.append(f"{path} ({why})")
        return False

    def raise_if_any(self) -> None:
        msgs, setting = [], None
        # skip_bad is a library option no command offers: the advice is what a person can do
        if self.unreadable:
            msgs.append(f"unreadable or corrupt file(s): {_listing(self.unreadable)}. Replace or "
                        f"delete them")
        if self.no_mask:
            setting = "image_level"  # the front end names its own switch for it
            msgs.append(f"anomalous image(s) without a mask (paired by file stem, e.g. 000.png <-> "
                        f"000_mask.png): {_listing(self.no_mask)}. Pixel metrics need a mask for "
                        f"every anomalous image; add the masks, or evaluate image-level only "
                        f"(setting image_level)")
        if self.orphan_masks:
            msgs.append(f"mask(s) that match no image by stem: {_listing(self.orphan_masks)}. "
                        f"Rename them to <image stem>_mask.png or remove them")
        if self.wrong_size:
            msgs.append(f"mask(s) of another size than their image (W x H): {_listing(self.wrong_size)}. "
                        f"Masks must match their image pixel for pixel; re-export them at the "
                        f"image's size")
        if self.ambiguous:
            msgs.append(f"flat mask(s) that fit several images of the same stem: "
                        f"{_listing(self.ambiguous)}. Put each mask in the sub-folder of its image, "
                        f"e.g. masks/<defect>/<stem>_mask.png")
        if msgs:
            raise DataError(f"{self.dataset}: " + "; ".join(msgs), setting=setting)


def mask_key(mask: Path) -> str:
    """The image stem a mask file belongs to: its stem without one of MASK_SUFFIXES. The one
    pairing rule of every layout (000_mask.png, 000_gt.png and 000.png all pair with 000.*)."""
    stem = Path(mask).stem
    for suf in MASK_SUFFIXES:
        if stem.endswith(suf):
            return stem[: -len(suf)]
    return stem


def mask_index(folder: Path) -> dict[tuple[str, str], Path]:
    """{(sub-folder, image stem): mask path} for the image files under `folder`, by stem rules;
    sub-folder "." for masks directly in `folder`."""
    index: dict[tuple[str, str], Path] = {}
    if not folder.is_dir():
        return index
    for m in sorted(p for p in folder.rglob("*") if is_image_file(p)):
        key = (m.parent.relative_to(folder).as_posix(), mask_key(m))
        if key in index:
            raise DataError(f"two masks for the image stem {key[1]!r} in {m.parent}: {index[key]} and "
                            f"{m}; keep one")
        index[key] = m
    return index


def pair_masks(images: list[Path], image_dir: Path, masks: dict[tuple[str, str], Path], mask_dir: Path,
               probs: Problems, image_level: bool) -> list[Path | None]:
    """Masks for anomalous `images` (under image_dir) by stem: first in the mask folder's
    matching sub-folder, else flat in the mask folder when no other image has that stem.
    Records images without a mask, ambiguous flat masks, wrong sizes and orphan masks."""
    out: list[Path | None] = []
    used = set()
    subs = [img.parent.relative_to(image_dir).as_posix() for img in images]
    stem_count: dict[str, int] = {}
    for img in images:
        stem_count[img.stem] = stem_count.get(img.stem, 0) + 1
    for img, sub in zip(images, subs):
        key = (sub, img.stem)
        if key not in masks and (".", img.stem) in masks:
            if stem_count[img.stem] > 1:
                probs.ambiguous.append(f"{masks['.', img.stem]} (images: "
                                       f"{', '.join(str(i) for i in images if i.stem == img.stem)})")
                used.add((".", img.stem))
                out.append(None)
                continue
            key = (".", img.stem)
        m = masks.get(key)
        if m is not None:
            used.add(key)
            if not probs.mask_fits(img, m):
                m = None  # skipped mask: the image is kept only in image-level mode
        if m is None and not image_level:
            where = mask_dir if mask_dir.is_dir() else f"{mask_dir} (folder missing)"
            probs.no_mask.append(f"{img} (looked in {where})")
        out.append(m)
    probs.orphan_masks += [str(m) for k, m in masks.items() if k not in used]
    return out


def _images(folder: Path, probs: Problems) -> list[Path]:
    return [p for p in sorted(folder.iterdir()) if is_image_file(p) and probs.readable(p)]


def load_mvtec_like(root, split: str = "test", classes=None, image_level: bool = False,
                    skip_bad: bool = False, *, dataset: str = "mvtec", good: str = "good",
                    ground_truth: str = "ground_truth", verify: bool = False) -> list[Sample]:
    """`<root>/<cls>/<split>/<defect|good>/*` with masks in `<cls>/<ground_truth>/<defect>/`.

    good: the normal folder's name ("ok" for BTAD). verify: decode every file fully (slow)
    instead of reading headers only.
    """
    expected = f"{root}/<class>/{split}/{good}/*.png (+ <class>/{ground_truth}/<defect>/*_mask.png)"
    root = check_root(root, dataset, expected)
    if split not in ("train", "test"):
        raise DataError(f"{dataset}: split={split!r}; this layout has 'train' and 'test'")
    found = [d.name for d in root.iterdir()
             if d.is_dir() and ((d / "train").is_dir() or (d / "test").is_dir())]
    if not found:
        hint = ""
        if (root / "train").is_dir() or (root / "test").is_dir():
            hint = (f" {root} looks like ONE category folder: pass its parent {root.parent} "
                    f"and classes=[{root.name!r}].")
        present = sorted(p.name for p in root.iterdir())
        raise DataError(f"{dataset}: no category folders in {root}; expected {expected}.{hint} "
                        f"Found: {_listing(present) if present else 'an empty folder'}")
    probs = Problems(dataset, skip_bad, verify)
    samples: list[Sample] = []
    for cls in select_classes(found, classes, dataset, root):
        split_dir = root / cls / split
        if not split_dir.is_dir():
            raise DataError(f"{dataset}: missing folder {split_dir}; expected {split_dir}/{good}/*.png")
        for d in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            imgs = _images(d, probs)
            if d.name == good:
                samples += [Sample(p, None, cls, "good", 0) for p in imgs]
                continue
            mdir = root / cls / ground_truth / d.name
            masks = pair_masks(imgs, d, mask_index(mdir), mdir, probs, image_level)
            samples += [Sample(p, m, cls, d.name, 1) for p, m in zip(imgs, masks)]
    probs.raise_if_any()
    if not samples:
        raise DataError(f"{dataset}: no images found under {root} for split {split!r}; expected {expected}")
    return samples


VISA_LABELS = {"normal": 0, "good": 0, "0": 0, "anomaly": 1, "abnormal": 1, "anomalous": 1,
               "bad": 1, "defect": 1, "1": 1}  # the official csv writes normal / anomaly


def _visa_rows(table: Path) -> list[dict]:
    """The rows of a VisA split csv, validated (line numbers as a text editor shows them): every
    row has the five columns filled as the header says, a known label, and no image twice in
    a split. Each row gains `_label` (0/1)."""
    import csv as csvlib
    import io as iolib

    from .io import read_text_file

    need = ("object", "split", "label", "image", "mask")
    reader = csvlib.DictReader(iolib.StringIO(read_text_file(table, "visa"), newline=""))
    rows, lines = [], []
    try:
        for r in reader:
            rows.append(r)
            lines.append(reader.line_num)  # the line a text editor shows (blank lines skipped)
    except csvlib.Error as e:
        raise DataError(f"visa: {table} line {reader.line_num}: not valid csv ({e}); fix the line") from None
    header = reader.fieldnames or []
    if not rows or not set(need) <= set(header):
        raise DataError(f"visa: {table} needs the columns {sorted(need)}; found "
                        f"{sorted(header) if header else 'no rows'}")
    seen: dict[tuple[str, str], int] = {}
    for n, r in zip(lines, rows):
        where = f"visa: {table} line {n}"
        if None in r or any(r.get(k) is None for k in need):
            got = len([v for k, v in r.items() if k is not None and v is not None]) + len(r.get(None) or [])
            raise DataError(f"{where} has {got} field(s) where the header has {len(header)} "
                            f"({','.join(header)}); fix or delete that row")
        for k in need:
            r[k] = r[k].strip()
        if not (r["object"] and r["split"] and r["image"]):
            empty = [k for k in ("object", "split", "image") if not r[k]]
            raise DataError(f"{where}: {', '.join(empty)} empty; fill it or delete the row")
        label = VISA_LABELS.get(r["label"].lower())
        if label is None:
            raise DataError(f"{where}: label {r['label']!r} is unknown; use normal or anomaly")
        r["_label"] = label
        key = (r["split"], r["image"])
        if key in seen:
            raise DataError(f"{where}: {r['image']} is already listed for split {r['split']!r} on "
                            f"line {seen[key]}; list each image once")
        seen[key] = n
    return rows


def load_visa(root, split: str = "test", classes=None, image_level: bool = False,
              skip_bad: bool = False, *, csv: str = "split_csv/1cls.csv", verify: bool = False
              ) -> list[Sample]:
    """VisA from its split csv (columns object,split,label,image,mask; paths relative to root).

    Masks are 0/1 PNGs (binarised by load_mask: io.binarize_mask). Rows are validated first
    (`_visa_rows`). Anomalous defect_type is "anomaly"
    (the csv does not name defects).
    """
    expected = f"{root}/{csv} with columns object,split,label,image,mask (the official VisA archive)"
    root = check_root(root, "visa", expected)
    table = root / csv
    if not table.is_file():
        present = sorted(p.name for p in root.iterdir())
        raise DataError(f"visa: {table} not found; expected {expected}. Found: "
                        f"{_listing(present) if present else 'an empty folder'}")
    rows = _visa_rows(table)
    splits = sorted({r["split"] for r in rows})
    if split not in splits:
        raise DataError(f"visa: split={split!r} not in {table}; it has {splits}")
    rows = [r for r in rows if r["split"] == split]
    keep = select_classes(sorted({r["object"] for r in rows}), classes, "visa", root)
    probs = Problems("visa", skip_bad, verify)
    samples, missing = [], []
    for r in rows:
        if r["object"] not in keep:
            continue
        label = r["_label"]
        img = root / r["image"]
        if not img.is_file():
            missing.append(str(img))
            continue
        if not probs.readable(img):
            continue
        mask = root / r["mask"] if label and r["mask"] else None
        if mask is not None and not mask.is_file():
            missing.append(str(mask))
            continue
        if mask is not None and mask_key(mask) != img.stem:  # pair by stem, never trust row order
            probs.orphan_masks.append(f"{mask} (listed for {img.name})")
            continue
        if mask is not None and not probs.mask_fits(img, mask):
            mask = None
        if label and mask is None and not image_level:
            probs.no_mask.append(str(img))
            continue
        samples.append(Sample(img, mask, r["object"], "anomaly" if label else "good", label))
    if missing:
        raise DataError(f"visa: {table} lists file(s) that do not exist: {_listing(missing)}; "
                        f"is {root} the folder that contains split_csv/ and the class folders?")
    probs.raise_if_any()
    return samples


def load_folder(root, split: str = "test", classes=None, image_level: bool = False,
                skip_bad: bool = False, *, normal: str = "normal", abnormal: str = "abnormal",
                masks: str = "masks", class_name: str | None = None, verify: bool = False
                ) -> list[Sample]:
    """A private set as three folders (relative to root or absolute): normal images,
    abnormal images (sub-folders become defect types), masks paired by stem (`<stem>.png` or
    `<stem>_mask.png`) in the same sub-folder of the mask folder (`abnormal/dent/001.png` <->
    `masks/dent/001_mask.png`), or flat in it for stems no other image shares. One class, named class_name (default:
    the root folder's name). There is no split: use split="test".
    """
    root = check_root(root, "folder", f"{root}/{normal}/, {root}/{abnormal}/ and {root}/{masks}/")
    if split != "test":
        raise DataError(f"folder: this layout has a single split; use split='test' (got {split!r})")
    cls = class_name or root.name
    if _wanted(classes) is not None and cls not in _wanted(classes):
        return []
    ndir, adir, mdir = (Path(root, d) for d in (normal, abnormal, masks))
    if not ndir.is_dir() and not adir.is_dir():
        raise DataError(f"folder: neither {ndir} nor {adir} exists; expected normal images in "
                        f"{ndir}, anomalous ones in {adir}, masks in {mdir} (or pass normal=, "
                        f"abnormal=, masks= folder names)")
    probs = Problems("folder", skip_bad, verify)
    samples = [Sample(p, None, cls, "good", 0) for p in _images(ndir, probs)] if ndir.is_dir() else []
    if adir.is_dir():
        imgs = [p for p in sorted(adir.rglob("*")) if is_image_file(p) and probs.readable(p)]
        paired = pair_masks(imgs, adir, mask_index(mdir), mdir, probs, image_level)
        for p, m in zip(imgs, paired):
            sub = p.parent.relative_to(adir).as_posix()
            samples.append(Sample(p, m, cls, "abnormal" if sub == "." else sub, 1))
    probs.raise_if_any()
    if not samples:
        raise DataError(f"folder: no images in {ndir} or {adir}")
    return samples

"""The `meta.json` index shared by AnomalyCLIP, AdaCLIP and APRIL-GAN: read and write.

Schema: `{"train": {cls: [entry, ...]}, "test": {cls: [...]}}`, each entry
`{"img_path", "mask_path" ('' for normal), "cls_name", "specie_name", "anomaly" (0/1)}`,
paths relative to the dataset root. `write_meta` turns any loaded dataset (or a private
folder) into that file, so the peers' code can read it too.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..files import atomic_write_text
from .io import DataError, Sample, read_text_file
from .layouts import Problems, check_root, mask_key, select_classes


LABELS = {0: 0, 1: 1}  # "anomaly": 0 normal, 1 anomalous; bools and "0"/"1" strings accepted


def _label(v) -> int | None:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer()):
        return LABELS.get(int(v))
    if isinstance(v, str) and v.strip() in ("0", "1"):
        return int(v.strip())
    return None


def _entry(e, where: str) -> tuple[str, str, int, str | None]:
    """(img_path, mask_path, label, specie_name) of one meta.json entry, validated: a DataError
    naming the file and entry for a wrong type or an unknown value."""
    need = "entries are objects with img_path, mask_path, cls_name, specie_name, anomaly (0 or 1)"
    if not isinstance(e, dict):
        raise DataError(f"{where} is {type(e).__name__} {str(e)[:60]!r}, not an object; {need}")
    if "img_path" not in e or "anomaly" not in e:
        miss = [k for k in ("img_path", "anomaly") if k not in e]
        raise DataError(f"{where} lacks {', '.join(miss)}; {need}")
    img, mask = e["img_path"], e.get("mask_path") or ""
    if not isinstance(img, str) or not img.strip():
        raise DataError(f"{where}: img_path is {img!r}; give a path relative to the dataset root")
    if not isinstance(mask, str):
        raise DataError(f"{where}: mask_path is {mask!r}; give a path relative to the dataset root "
                        f"or '' for a normal image")
    label = _label(e["anomaly"])
    if label is None:
        raise DataError(f"{where}: anomaly is {e['anomaly']!r}; use 0 (normal) or 1 (anomalous)")
    specie = e.get("specie_name")
    if specie is not None and not isinstance(specie, str):
        raise DataError(f"{where}: specie_name is {specie!r}; give the defect type as text")
    return img, mask, label, specie


def _split_table(data, split: str, path: Path) -> dict[str, list]:
    """`data[split]` checked to be {class: [entry, ...]}: a list or a string there (a common
    hand-written mistake) is named, not iterated."""
    if not isinstance(data, dict) or split not in data:
        have = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DataError(f"meta: {path} has no {split!r} split; it has {have}")
    table = data[split] or {}
    form = f'{{"{split}": {{"<class>": [{{"img_path": ..., "anomaly": 0}}, ...]}}}}'
    if not isinstance(table, dict):
        raise DataError(f"meta: {path}: {split!r} is a {type(table).__name__}, not an object of "
                        f"classes; expected {form}")
    for cls, entries in table.items():
        if not isinstance(entries, list):
            raise DataError(f"meta: {path}: {split}/{cls} is a {type(entries).__name__}, not a list "
                            f"of entries; expected {form}")
    return table


def load_meta(root, split: str = "test", classes=None, image_level: bool = False,
              skip_bad: bool = False, *, meta: str = "meta.json", verify: bool = False) -> list[Sample]:
    """Samples listed in `<root>/<meta>` under `split`; paths resolved against root.

    Every entry is validated before any is used: types, anomaly 0/1, no image listed twice.
    """
    root = check_root(root, "meta", f"{root}/{meta} in the AnomalyCLIP/AdaCLIP format")
    path = root / meta
    if not path.is_file():
        raise DataError(f"meta: {path} not found; write one with bagclip.data.write_meta(samples, root)")
    try:
        data = json.loads(read_text_file(path, "meta"))
    except json.JSONDecodeError as e:
        raise DataError(f"meta: {path} is not valid JSON ({e})") from e
    per_class = _split_table(data, split, path)
    probs = Problems("meta", skip_bad, verify)
    samples, missing, seen = [], [], {}
    for cls in select_classes(list(per_class), classes, "meta", root):
        for n, e in enumerate(per_class[cls]):
            where = f"meta: {path}, entry {n} of {split}/{cls}"
            rel, mask_rel, label, specie = _entry(e, where)
            img = root / rel
            if img.resolve() in seen:  # counted twice in every metric
                raise DataError(f"{where}: {rel} is already listed ({seen[img.resolve()]}); list "
                                f"each image once")
            seen[img.resolve()] = f"entry {n} of {split}/{cls}"
            if not img.is_file():
                missing.append(str(img))
                continue
            if not probs.readable(img):
                continue
            mask = root / mask_rel if label and mask_rel else None
            if mask is not None:
                if not mask.is_file():
                    missing.append(str(mask))
                    continue
                if mask_key(mask) != img.stem:  # pair by stem, never by order
                    probs.orphan_masks.append(f"{mask} (listed for {img.name})")
                    continue
                if not probs.mask_fits(img, mask):
                    mask = None
            if label and mask is None and not image_level:
                probs.no_mask.append(str(img))
                continue
            defect = specie or ("good" if not label else "anomaly")
            samples.append(Sample(img, mask, cls, defect, label))
    if missing:
        raise DataError(f"meta: {path} lists file(s) that do not exist: {', '.join(missing[:15])}"
                        f"{' ...' if len(missing) > 15 else ''}; paths must be relative to {root}")
    probs.raise_if_any()
    if not samples:
        raise DataError(f"meta: {path} lists no images under {split!r}"
                        f"{f' for the classes {classes}' if classes is not None else ''}; add "
                        f"entries (bagclip.data.write_meta writes them) or choose another split")
    return samples


def _rel(p: Path, root: Path) -> str:
    try:
        return Path(p).resolve().relative_to(root).as_posix()
    except ValueError:
        raise DataError(f"write_meta: {p} is not under the root {root}; meta.json stores paths "
                        f"relative to the dataset root, so pass the folder that contains it") from None


def write_meta(samples, root, split: str = "test", path=None) -> Path:
    """Write `samples` (a list, stored under `split`, or {split: list}) to `<root>/meta.json`.

    Both "train" and "test" keys are always present (the peers index them). Classes and
    entries keep the samples' order. Written atomically. Returns the file's path.
    """
    root = Path(root).expanduser().resolve()
    by_split = samples if isinstance(samples, dict) else {split: samples}
    data: dict[str, dict[str, list]] = {"train": {}, "test": {}}
    for sp, ss in by_split.items():
        table: dict[str, list] = {}
        for s in ss:
            table.setdefault(s.class_name, []).append({
                "img_path": _rel(s.image_path, root),
                "mask_path": _rel(s.mask_path, root) if s.mask_path else "",
                "cls_name": s.class_name,
                "specie_name": s.defect_type,
                "anomaly": int(s.label),
            })
        data[sp] = table
    out = Path(path) if path is not None else root / "meta.json"
    atomic_write_text(out, json.dumps(data, indent=2))
    return out

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
from .io import DataError, Sample
from .layouts import Problems, check_root, mask_key, select_classes


def load_meta(root, split: str = "test", classes=None, image_level: bool = False,
              skip_bad: bool = False, *, meta: str = "meta.json", verify: bool = False) -> list[Sample]:
    """Samples listed in `<root>/<meta>` under `split`; paths resolved against root."""
    root = check_root(root, "meta", f"{root}/{meta} in the AnomalyCLIP/AdaCLIP format")
    path = root / meta
    if not path.is_file():
        raise DataError(f"meta: {path} not found; write one with bagclip.data.write_meta(samples, root)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"meta: {path} is not valid JSON ({e})") from e
    if not isinstance(data, dict) or split not in data:
        have = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DataError(f"meta: {path} has no {split!r} split; it has {have}")
    per_class = data[split] or {}
    probs = Problems("meta", skip_bad, verify)
    samples, missing = [], []
    for cls in select_classes(list(per_class), classes, "meta", root):
        for e in per_class[cls]:
            try:
                img, label = root / e["img_path"], int(e["anomaly"])
            except (KeyError, TypeError, ValueError) as err:
                raise DataError(f"meta: bad entry in {path} under {split}/{cls}: {e!r} ({err}); "
                                f"entries need img_path, mask_path, cls_name, specie_name, anomaly") from err
            if not img.is_file():
                missing.append(str(img))
                continue
            if not probs.readable(img):
                continue
            mask = root / e["mask_path"] if label and e.get("mask_path") else None
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
            defect = e.get("specie_name") or ("good" if not label else "anomaly")
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

"""Feature cache: the backbone is frozen, so its Tokens per image are computed once.

Each image's `Tokens` (patches (L, N, W), cls (E,)) is stored as one safetensors file in
`cfg.feature_dtype` (float16 by default; `Backbone.encode` rounds to it, so storing loses
nothing), in a folder named by a SHA-256 of the backbone identity (`Config.backbone_identity`:
every field that changes the tokens), under a name that is a SHA-256 of the image file's bytes.
Writes are atomic (temp file + rename) and group-readable (0o666 less the umask); every entry
carries a checksum of its tensor bytes, the key of the identity it was encoded with and the
SHA-256 of its image (its own file name), so a truncated, corrupted or foreign file, or one
moved under another image's name (two entries swapped), is detected, removed and recomputed,
never silently used; entries from before they named their image are recomputed once;
an entry this user may not read is reported as such (never called corrupt, never deleted).
A local weights file counts by its SHA-256 (`Backbone.weights_sha256`), not only its name and date.
Tokens do not depend on the batch an image was encoded in (`Backbone.encode`'s fixed
micro-batches), so caching one image first, then the set, stores the same bytes.

Disk cost per image: 2 * L * N * W bytes, e.g. 11.2 MB for ViT-L-14-336 at 518 (L=4, N=1369,
W=1024), 0.29 MB for bagclip-mini at 224 (L=4, N=196, W=192).

A read-only cache folder serves every entry it holds: reading never writes. Only a missing
entry needs write access, and then the error names the folder and what to do.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save

from .backbone import Backbone, Tokens
from .files import atomic_write_bytes, cache_root

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """`<cache root>/features` (cache root: $BAGCLIP_CACHE, else ~/.cache/bagclip)."""
    return cache_root() / "features"


def _file_digest(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tensor_digest(patches: torch.Tensor, cls: torch.Tensor, key: str = "") -> str:
    """SHA-256 of `key` (the identity key and the image's SHA-256, `FeatureCache._entry_key`)
    and the tensors' bytes: one metadata field checks all (one field also keeps the file's
    bytes deterministic: safetensors orders several keys at random)."""
    h = hashlib.sha256(key.encode())
    for t in (patches, cls):
        h.update(t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _metadata(blob: bytes) -> dict:
    """The `__metadata__` of safetensors bytes (the header is checked by `load_bytes` first)."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    return (header.get("__metadata__") or {}) if isinstance(header, dict) else {}


class FeatureCache:
    """Disk cache of backbone Tokens, one file per (backbone identity, image content)."""

    def __init__(self, backbone: Backbone, root: str | os.PathLike | None = None):
        self.backbone = backbone
        ident = json.dumps(backbone.identity(), sort_keys=True)
        self.key = hashlib.sha256(ident.encode()).hexdigest()[:16]
        self.root = Path(root) if root is not None else default_cache_dir()
        self.dir = self.root / self.key
        self.hits = self.misses = self.repaired = self.unnamed = 0
        try:
            have = (self.dir / "identity.json").read_bytes()
        except FileNotFoundError:
            have = None
        except PermissionError as err:
            raise self._unreadable(self.dir / "identity.json", err) from None
        if have == ident.encode():
            return  # already set up: no write needed (the folder may be read-only)
        if have is not None and have.strip():
            raise ValueError(f"feature cache folder {self.dir} holds the tokens of another backbone "
                             f"(its identity.json differs from this one's); delete that folder or "
                             f"choose another cache folder")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.dir / "identity.json", ident.encode())
        except OSError as err:
            raise self._unwritable(err) from None

    def _unwritable(self, err: OSError) -> OSError:
        from .errors import CacheUnwritableError

        return CacheUnwritableError(f"feature cache folder {self.root} is not writable ({err.strerror}) "
                                    f"and lacks entries for these images; use a writable cache "
                                    f"folder (or $BAGCLIP_CACHE)", self.root)

    def _unreadable(self, path: Path, err: OSError) -> PermissionError:
        from .errors import CacheUnreadableError

        return CacheUnreadableError(f"feature cache entry {path} is not readable by this user "
                                    f"({err.strerror}): ask its owner to make the cache group-readable "
                                    f"(chmod -R g+rX {self.root}), or use a cache folder of your own "
                                    f"(or $BAGCLIP_CACHE)", path)

    def path_for(self, image_path: str | os.PathLike) -> Path:
        return self.dir / f"{_file_digest(image_path)}.safetensors"

    def _entry_key(self, path: Path) -> str:
        """What an entry's checksum covers besides its tensors: this backbone's identity key
        and the image the entry is named after (its file name is the image's SHA-256)."""
        return f"{self.key}:{path.stem}"

    def _read(self, path: Path) -> Tokens | None:
        """Load one entry, or None (and delete the file) if it is missing or corrupt."""
        try:
            blob = path.read_bytes()  # read once, in Python: a permission error is named as such
        except FileNotFoundError:
            return None
        except PermissionError as err:
            raise self._unreadable(path, err) from None
        try:
            data = load_bytes(blob)
            p, c = data["patches"], data["cls"]
            got = _metadata(blob).get("sha256")
            if got != _tensor_digest(p, c, self._entry_key(path)):
                if got == _tensor_digest(p, c, self.key):  # written before entries named their image
                    return self._drop_unnamed(path)
                raise ValueError("checksum mismatch: damaged, written for another backbone, or "
                                 "the tokens of another image")
            return Tokens(p, c)
        except (SafetensorError, ValueError, KeyError, OSError) as err:
            warnings.warn(f"feature cache entry {path} is corrupt ({err}); recomputing it")
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass  # read-only folder: the write of the recomputed entry will say so
            self.repaired += 1
            return None

    def _drop_unnamed(self, path: Path) -> None:
        """An entry from before entries named their image: which image it holds cannot be
        checked, so it is recomputed (said once per cache, not as a corrupt file)."""
        if not self.unnamed:
            log.info("feature cache %s: entries written before they named their image are "
                     "recomputed once", self.dir)
        self.unnamed += 1
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass  # read-only folder: the write of the recomputed entry will say so
        return None

    def _write(self, path: Path, patches: torch.Tensor, cls: torch.Tensor) -> None:
        dtype = getattr(torch, self.backbone.cfg.feature_dtype)
        p = patches.to(dtype).contiguous().cpu()
        c = cls.to(dtype).contiguous().cpu()
        digest = _tensor_digest(p, c, self._entry_key(path))
        blob = save({"patches": p, "cls": c}, metadata={"sha256": digest})
        try:
            atomic_write_bytes(path, blob)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise self._unwritable(err) from None
            raise

    def get(self, image_paths: Sequence[str | os.PathLike], batch_size: int = 8,
            progress: bool = True) -> Tokens:
        """Tokens for these images (computing and storing the missing ones), stacked in order.

        Returns Tokens(patches (B, L, N, W), cls (B, E)) on the CPU in cfg.feature_dtype; cast
        with `.float()`.
        """
        paths = [Path(p) for p in image_paths]
        if not paths:
            raise ValueError("FeatureCache.get: no images given")
        entries = [self.path_for(p) for p in paths]
        loaded = self._fill(paths, entries, batch_size, progress, keep=True)
        return Tokens(torch.stack([loaded[i].patches for i in range(len(paths))]),
                      torch.stack([loaded[i].cls for i in range(len(paths))]))

    def ensure(self, image_paths: Sequence[str | os.PathLike], batch_size: int = 8,
               progress: bool = True) -> list[Path]:
        """Encode and store every missing entry without keeping tokens in memory; entry paths."""
        paths = [Path(p) for p in image_paths]
        entries = [self.path_for(p) for p in paths]
        self._fill(paths, entries, batch_size, progress, keep=False)
        return entries

    def load_entry(self, entry: Path) -> Tokens:
        """One stored entry (from `ensure`): Tokens(patches (L, N, W), cls (E,)), stored dtype."""
        t = self._read(entry)
        if t is None:
            raise FileNotFoundError(f"feature cache entry {entry} is missing; run ensure() again")
        return t

    def load_batch(self, entries: Sequence[Path], device: str | torch.device | None = None) -> Tokens:
        """Stored entries stacked into float32 Tokens(patches (B, L, N, W), cls (B, E)) on device:
        what the heads take, equal to `Backbone.encode` of the same images."""
        toks = [self.load_entry(e) for e in entries]
        return Tokens(torch.stack([t.patches for t in toks]),
                      torch.stack([t.cls for t in toks])).float().to(device)

    def _fill(self, paths: list[Path], entries: list[Path], batch_size: int, progress: bool,
              keep: bool) -> dict[int, Tokens]:
        from tqdm.auto import tqdm

        from .data import load_image

        loaded: dict[int, Tokens] = {}
        todo = []
        for i, e in enumerate(entries):
            t = self._read(e)  # verifies the checksum; a corrupt entry is removed
            if t is None:
                todo.append(i)
            elif keep:
                loaded[i] = t
        self.hits += len(entries) - len(todo)
        self.misses += len(todo)
        size = self.backbone.cfg.image_size
        from .backbone import ENCODE_BATCH  # whole micro-batches: no padding but the last one's

        batch_size = -(-max(1, batch_size) // ENCODE_BATCH) * ENCODE_BATCH
        bar = tqdm(total=len(todo), desc="encoding images", unit="img", disable=not progress or not todo)
        for s in range(0, len(todo), batch_size):
            idx = todo[s:s + batch_size]
            imgs = torch.stack([load_image(paths[i], size) for i in idx])
            tok = self.backbone.encode(imgs)
            for j, i in enumerate(idx):
                self._write(entries[i], tok.patches[j], tok.cls[j])
                if keep:
                    loaded[i] = self._read(entries[i])  # read back: the cached values, bit for bit
            bar.update(len(idx))
        bar.close()
        return loaded

"""Files the kit writes and reads: atomic writes, safetensors metadata, the cache folder.

No torch here (`bagclip.config` uses it): everything is bytes, text and JSON.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


_UMASK: int | None = None


def umask() -> int:
    """This process's umask (read once: /proc/self/status where it says, else set and restored)."""
    global _UMASK
    if _UMASK is None:
        try:
            with open("/proc/self/status") as f:
                _UMASK = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
        except (OSError, StopIteration, ValueError, IndexError):
            _UMASK = os.umask(0o022)
            os.umask(_UMASK)
    return _UMASK


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temp file in the same folder, fsync, then rename: never a half-written file.

    The file gets the permissions a plain open() would give (0o666 less the umask, e.g. 0644 or
    0664), not mkstemp's 0600: the feature cache and run folders are shared by a group.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """`atomic_write_bytes` of UTF-8 text, line endings as given."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The `__metadata__` of a safetensors file (8-byte little-endian header length, then a
    JSON header), read without loading any tensor. Raises ValueError on a malformed header."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path}: too short for a safetensors header")
        n = int.from_bytes(head, "little")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: unreadable safetensors header ({err})") from err
    if not isinstance(header, dict):
        raise ValueError(f"{path}: safetensors header is not a JSON object")
    return header.get("__metadata__") or {}


def cache_root() -> Path:
    """Where the kit caches what it computes: `$BAGCLIP_CACHE`, else ~/.cache/bagclip (`~`
    expanded in both)."""
    return Path(os.environ.get("BAGCLIP_CACHE") or Path.home() / ".cache" / "bagclip").expanduser()

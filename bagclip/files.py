"""Files the kit writes and reads: atomic writes, safetensors metadata, the cache folder.

No torch here (`bagclip.config` uses it): everything is bytes, text and JSON.
"""
from __future__ import annotations

import errno
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
    if path.is_dir():  # else os.replace's error names the temp file, not the path given
        raise IsADirectoryError(errno.EISDIR, "a folder, not a file: give the path of the file to write",
                                str(path))
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


def safetensors_bytes(tensors: dict, metadata: dict[str, str] | None = None) -> bytes:
    """safetensors.torch.save, with the same bytes for the same tensors and metadata.

    safetensors keeps metadata in a hash map whose order changes from one call to the next, so
    a file with two metadata keys came out in one of two byte orders at random (a hash of the
    file, e.g. adapt's record of its starting heads, then failed to match on resume). The
    header is written again here with the metadata keys sorted and the tensors in data order;
    the data part is safetensors' own, untouched (its offsets are relative to it).
    """
    from safetensors.torch import save

    blob = save(tensors, metadata=metadata)
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", None)
    ordered = {"__metadata__": dict(sorted(meta.items()))} if meta else {}
    ordered.update(sorted(header.items(), key=lambda kv: (kv[1]["data_offsets"], kv[0])))
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors pads it
    return len(text).to_bytes(8, "little") + text + blob[8 + n:]


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


# --- issue 19: nothing a user owns is overwritten or deleted ---------------------------------
KIT_MARKER = ".bagclip-folder"  # written into every output folder the kit creates or adopts


class OutputError(ValueError):
    """An output folder the kit may not write into; the message names it and what to do.
    `setting` names the option of the folder (e.g. "out"), for a front end to name its flag."""

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        self.setting = setting


def is_kit_folder(path: str | os.PathLike, legacy=None) -> bool:
    """True when `path` holds the kit's marker, or `legacy(path)` recognises what an older
    version of the kit wrote there (its files, before markers existed)."""
    p = Path(path)
    return (p / KIT_MARKER).is_file() or bool(legacy and p.is_dir() and legacy(p))


def claim_output(path: str | os.PathLike, what: str, legacy=None, setting: str | None = None) -> Path:
    """`path` as an output folder of the kit: created (and marked) when missing or empty, used
    when marked (or recognised by `legacy`), else OutputError: a folder of the user's files is
    never written into. Returns the folder."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise OutputError(f"{what} {p} is a file; give a folder", setting)
    if p.is_dir() and not is_kit_folder(p, legacy):
        theirs = sorted(q.name for q in p.iterdir() if not q.name.startswith("."))[:5]
        if theirs:
            raise OutputError(f"{what} {p} holds files bagclip did not write ({', '.join(theirs)}"
                              f"{' ...' if len(theirs) == 5 else ''}); choose a new or empty folder "
                              f"so that none of them is overwritten", setting)
    p.mkdir(parents=True, exist_ok=True)
    if not (p / KIT_MARKER).is_file():
        atomic_write_text(p / KIT_MARKER, "made by bagclip: its files may be rewritten by bagclip\n")
    return p


def beside(path: str | os.PathLike, owned=()) -> Path:
    """`path`, or when a file there is not the kit's (not named in `owned`), the first free
    `<stem>.<n><suffix>` beside it: write there instead of over the user's file."""
    p = Path(path)
    if not p.exists() or p.name in set(owned):
        return p
    n = 1
    while (q := p.with_name(f"{p.stem}.{n}{p.suffix}")).exists() and q.name not in set(owned):
        n += 1
    return q


def unique_names(paths, suffix: str = "_map.png", taken=()) -> dict[str, str]:
    """{input path: output file name}: `<stem><suffix>` when unique, else the path below the
    inputs' common folder with "/" as "__"; any name still clashing (with another output, or
    with `taken`: the names already in the output folder that are not ours, such as the inputs
    themselves when they live there) gets "~<n>" before the suffix. Injective by construction."""
    paths = [str(p) for p in paths]
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        base = stems
    else:
        absolute = [os.path.abspath(p) for p in paths]
        common = os.path.commonpath([os.path.dirname(p) for p in absolute])
        base = [os.path.splitext(os.path.relpath(q, common))[0].replace(os.sep, "__") for q in absolute]
    used = {t.lower() for t in taken}  # case-insensitive: macOS and Windows file systems
    out = {}
    for p, b in zip(paths, base):
        name, n = f"{b}{suffix}", 1
        while name.lower() in used:
            name, n = f"{b}~{n}{suffix}", n + 1
        used.add(name.lower())
        out[p] = name
    return out


class FolderLock:
    """An exclusive lock on a folder while one process writes it (fcntl.flock on
    `<folder>/.bagclip.lock`): a second writer waits up to `timeout` seconds, then gets an
    OutputError naming the folder and the process holding it. The kernel drops the lock when
    its process dies, so a lock of a killed process is never stale; the pid in the file is
    only for the message."""

    NAME = ".bagclip.lock"

    def __init__(self, folder: str | os.PathLike, timeout: float = 0.0, what: str = "run folder"):
        self.folder, self.timeout, self.what = Path(folder), timeout, what
        self._fd: int | None = None

    def __enter__(self) -> "FolderLock":
        import fcntl
        import time

        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / self.NAME, os.O_RDWR | os.O_CREAT, 0o666 & ~umask())
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                    os.close(fd)
                    raise OutputError(f"{self.what} {self.folder} is being written by {holder}; wait "
                                      f"for it to finish, or use another folder") from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

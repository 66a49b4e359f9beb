"""Weights shipped inside the package, loaded offline by name (`Config(pretrained="bagclip-mini")`).

Each `<name>.safetensors` has a record `<name>.json` beside it: its SHA-256, the command, seed
and settings that made it, and how long that took (docs/bagclip-mini.md). No torch import here:
`Config` uses the recorded hash in the feature-cache key.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

SHIPPED = ("bagclip-mini", "bagclip-mini-v3")  # v2 (born aligned: the quick default), v3 (CLIP-like)
_DIR = Path(__file__).parent


def record(name: str) -> dict:
    """The JSON record of shipped weights `name` (FileNotFoundError if absent)."""
    path = _DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"shipped weights record {path} is missing; reinstall bagclip "
                                f"(pip install -e .), or pretrain the weights again and export them to "
                                f"{path.with_suffix('.safetensors')} (bagclip.pretrain; docs/bagclip-mini.md)")
    return json.loads(path.read_text())


def shipped_path(name: str) -> Path:
    """Path of shipped weights `name`, after checking the file against its recorded SHA-256."""
    path = _DIR / f"{name}.safetensors"
    want = record(name)["sha256"]
    if not path.is_file():
        raise FileNotFoundError(f"shipped weights {path} are missing; reinstall bagclip (pip install -e .)")
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    if got != want:
        raise ValueError(f"shipped weights {path} do not match their recorded hash ({got[:12]} != "
                         f"{want[:12]}): the file is damaged or was replaced; reinstall bagclip")
    return path

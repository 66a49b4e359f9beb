"""What the shared options mean: the Config of --quick / --config / --set, trained heads from
--checkpoint, output folders checked before any work. Used by commands.py and decisions.py."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path


def _config(a):
    """The Config of a command: --quick's preset or the paper's, --config FILE over it, then
    --set / --seed / --class-name-map; every value checked by Config."""
    from ..config import Config

    cfg = Config.quick() if getattr(a, "quick", False) else Config()
    if getattr(a, "config", None):
        cfg = Config.load(a.config, base=cfg)
    return cfg.with_overrides(getattr(a, "set", None) or [], **_extra_changes(a, cfg))


def _extra_changes(a, cfg) -> dict:
    changes = {}
    if getattr(a, "seed", None) is not None:
        changes["seed"] = a.seed
    if getattr(a, "class_name_map", None):
        changes["class_names"] = {**cfg.class_names, **_name_map(a.class_name_map)}
    return changes


def _name_map(path) -> dict:
    p = Path(path)
    what = 'a JSON file {"folder name": "prompt name", ...}'
    if not p.is_file():
        raise FileNotFoundError(f"--class-name-map {p}: file not found; give {what}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"--class-name-map {p}: not valid JSON ({err}); give {what}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(f"--class-name-map {p}: expected {what}, got {type(data).__name__}")
    return data


def _trained(a):
    """(model, cfg, backbone) from --checkpoint, with the evaluation settings of --set /
    --class-name-map applied; --quick, --config and training settings are refused."""
    from ..checkpoint import load_heads

    given = [f for f, v in (("--quick", a.quick), ("--config", a.config)) if v]
    if given:
        raise ValueError(f"{' and '.join(given)} cannot be used with --checkpoint: the heads carry the "
                         f"settings they were trained with. Drop {' and '.join(given)}; evaluation "
                         f"settings change with --set smoothing_sigma=... / image_score=... and "
                         f"--class-name-map")
    model, trained, bb = load_heads(a.checkpoint, device=a.device)
    cfg = trained.with_overrides(a.set or [], **_extra_changes(a, trained))
    return model, trained.check_eval_changes(cfg), bb


def _out_dir(path, flag: str) -> Path:
    """`path` as a folder that exists and takes files, checked before any work, or ValueError."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ValueError(f"{flag} {p} is a file; give a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as err:
        raise ValueError(f"{flag} {p} is not a writable folder ({err.strerror or err}); choose "
                         f"another folder") from None
    return p

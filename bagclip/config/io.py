"""A Config to and from files and `key=value` strings; every problem names its source.

    save_config(cfg, path)          JSON, or YAML for .yml / .yaml, atomically
    load_config(cls, path, base)    the file's settings over `base`
    parse_overrides(pairs)          ["lr=1e-4", "taps=[2,4]"] -> {"lr": 0.0001, "taps": [2, 4]}
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError
from ..files import atomic_write_text


def save_config(cfg, path: str | os.PathLike) -> Path:
    """Write cfg.to_dict() as JSON (or YAML for .yml/.yaml) atomically."""
    path = Path(path)
    if path.suffix in (".yml", ".yaml"):
        import yaml
        text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    else:
        text = json.dumps(cfg.to_dict(), indent=2)
    atomic_write_text(path, text)
    return path


def _read_settings(path: Path) -> dict:
    """The mapping of settings in a JSON or YAML file, or ConfigError naming the file."""
    yaml_file = path.suffix.lower() in (".yml", ".yaml")
    try:
        text = path.read_text(encoding="utf-8")
        if yaml_file:
            import yaml
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as err:  # JSONDecodeError is a ValueError
        kind = "YAML" if yaml_file else "JSON"
        raise ConfigError(f"config file {path}: not valid {kind} "
                          f"({' '.join(str(err).split())}); fix the file or write a new one with "
                          f"Config.save") from None
    except Exception as err:  # yaml.YAMLError
        raise ConfigError(f"config file {path}: not valid YAML ({' '.join(str(err).split())}); "
                          f"fix the file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of settings "
                          f"(e.g. {{\"k\": 15}}), got {type(data).__name__}")
    return data


def load_config(cls, path: str | os.PathLike, base=None):
    """A Config from a JSON or YAML file: its settings over `base` (default: the paper's).
    Every problem (missing, unreadable, bad syntax, bad setting) is a ConfigError or
    FileNotFoundError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    data = _read_settings(path)
    try:
        return cls.from_dict({**(base or cls()).to_dict(), **data})
    except ConfigError as err:
        raise ConfigError(f"config file {path}: {err}", err.field) from None


def parse_overrides(pairs: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """`key=value` strings -> ({key: value}, {key: the string it came from}). A value is read
    as JSON when it parses (numbers, lists, true/false), else kept as a string; the field's
    coercion does the rest."""
    changes, sources = {}, {}
    for kv in pairs:
        key, sep, raw = kv.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{kv}: a setting is given as key=value (e.g. lr=1e-4)", override=kv)
        try:
            changes[key] = json.loads(raw)
        except json.JSONDecodeError:
            changes[key] = raw
        sources[key] = kv
    return changes, sources

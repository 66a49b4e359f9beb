"""The files of a training run: what `train` writes and what `load_heads` reads back.

Checkpoints (every `save_every` steps and at each epoch end) live in the run folder, each file
written atomically, in this order:
    state.pt            THE resume point: weights, optimiser state, step, loss history and the
                        Config in one file (plain tensors and numbers: torch.load(weights_only=True))
    heads.safetensors   trainable weights + the Config (metadata), all `predict` needs
    history.json        loss per step (for people and plots)
    checkpoint.json     written last: the step and the SHA-256 of the three files above
state.pt, heads.safetensors (metadata "bagclip_inputs") and checkpoint.json also record what the
heads were computed from (`fingerprint.train_inputs`: the training listing, the backbone, the
weights' SHA-256): a resume with other inputs is refused (`InputsChangedError`), and so is
loading heads whose weights file was replaced since (`WeightsChangedError`).
An interruption anywhere (Ctrl-C, SIGKILL, a full disk) leaves the previous state.pt or the new
one, never a mix, so a resumed run continues exactly. Until the set is complete again,
checkpoint.json disagrees with heads.safetensors and `load_heads` refuses the folder
(`TornCheckpointError`). Nothing here is ever unpickled beyond tensors and numbers.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
from pathlib import Path

import torch
from safetensors.torch import load as load_bytes

from .config import Config
from .errors import (CheckpointError, CheckpointMissingError, DivergedError, ResumeError,
                     TornCheckpointError, WeightsChangedError)
from .files import atomic_write_bytes, safetensors_bytes

STATE, HEADS, HISTORY, MANIFEST = "state.pt", "heads.safetensors", "history.json", "checkpoint.json"
RUN_FILES = (STATE, HEADS, HISTORY, MANIFEST)
STATE_FORMAT = 2  # 1: state.pt without weights (before issue 10); not resumable safely


def heads_blob(model: torch.nn.Module, cfg: Config, inputs: dict | None = None) -> bytes:
    """The bytes of a heads.safetensors file: trainable weights + the Config (and `inputs`, what
    they were computed from) as metadata. Non-finite weights are refused here, so none leaves the process (checkpoint or export)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:  # issue 19
        raise DivergedError(f"the heads' weights are NaN or infinite ({', '.join(bad[:3])}"
                            f"{' ...' if len(bad) > 3 else ''}): the training diverged and nothing was "
                            f"saved. Lower lr or loss_lambda and train into a new folder")
    meta = {"bagclip_config": json.dumps(cfg.to_dict())}
    if inputs is not None:
        meta["bagclip_inputs"] = json.dumps(inputs, sort_keys=True)
    return safetensors_bytes(tensors, meta)  # the same bytes for the same heads


def save_heads(model: torch.nn.Module, cfg: Config, path: str | os.PathLike, inputs: dict | None = None) -> Path:
    """Write the trainable weights and the Config to one safetensors file, atomically."""
    atomic_write_bytes(Path(path), heads_blob(model, cfg, inputs))
    return Path(path)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_checkpoint(out: Path, model, opt, cfg: Config, step: int, history: list[float],
                     inputs: dict | None = None) -> None:
    """One checkpoint, file by file (each atomic), state.pt first and checkpoint.json last;
    `inputs` (`fingerprint.train_inputs`) recorded in all three."""
    buf = io.BytesIO()
    torch.save({"format": STATE_FORMAT, "step": step, "history": list(history),
                "config": json.dumps(cfg.to_dict()), "inputs": json.dumps(inputs, sort_keys=True),
                "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                "optimizer": opt.state_dict()}, buf)
    blobs = {STATE: buf.getvalue(), HEADS: heads_blob(model, cfg, inputs), HISTORY: json.dumps(history).encode()}
    for name, data in blobs.items():
        atomic_write_bytes(out / name, data)
    manifest = {"step": step, "files": {name: _digest(data) for name, data in blobs.items()},
                "inputs": inputs}
    atomic_write_bytes(out / MANIFEST, json.dumps(manifest, indent=1).encode())


def read_heads(path: Path) -> tuple[dict, dict]:
    """(tensors, metadata) of a heads file, or CheckpointError naming it."""
    data = path.read_bytes()
    manifest = path.parent / MANIFEST
    if path.name == HEADS and (manifest.is_file() or (path.parent / STATE).is_file()):
        try:
            want = json.loads(manifest.read_text())["files"][HEADS]
        except (OSError, ValueError, KeyError, TypeError):
            want = None
        if want != _digest(data):
            raise TornCheckpointError(f"{path} does not match {manifest} (missing or from another "
                                      f"step): a checkpoint write was interrupted. Finish the "
                                      f"training run (resume it), then evaluate", path)
    try:
        n = int.from_bytes(data[:8], "little")
        if len(data) < 8 or n > len(data) - 8:
            raise ValueError("header longer than the file")
        meta = json.loads(data[8:8 + n]).get("__metadata__") or {}
        tensors = load_bytes(data)
    except Exception as err:  # SafetensorError, JSON/Unicode errors: a truncated or foreign file
        raise CheckpointError(f"{path} is not a readable heads checkpoint ({type(err).__name__}: "
                              f"{' '.join(str(err).split())[:120]}); it is truncated or not a "
                              f"safetensors file. Use a complete run folder, or retrain", path) from None
    return tensors, meta


def load_heads(path: str | os.PathLike, backbone=None, device: str | torch.device | None = None):
    """(model, cfg, backbone) from a heads.safetensors file (or a run folder holding one); the
    backbone is `backbone` if given, else built from the checkpoint's Config.

    Refuses, with a message naming the file, a missing, truncated or foreign file, heads that
    disagree with their run folder's checkpoint.json (an interrupted write), weights that do not
    fit the Config stored with them, and non-finite weights (a diverged training).
    """
    from .backbone import load_backbone
    from .model import build_heads

    path = Path(path)
    if path.is_dir():
        path = path / HEADS
    if not path.is_file():
        raise CheckpointMissingError(f"checkpoint not found: {path} (train first)", path)
    tensors, meta = read_heads(path)
    if "bagclip_config" not in meta:
        raise CheckpointError(f"{path} is not a bagclip heads checkpoint (no config in its metadata)", path)
    try:
        cfg = Config.from_dict(json.loads(meta["bagclip_config"]))
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: the settings stored in it are invalid ({err}); retrain", path) from None
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise DivergedError(f"{path} holds NaN or infinite weights ({', '.join(bad[:3])}): the training "
                            f"diverged. Retrain with a lower lr", path)
    backbone = backbone or load_backbone(cfg, device=device)
    _check_weights(path, meta, backbone)
    model = build_heads(cfg, backbone)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        first = str(err).splitlines()[1:2] or str(err).splitlines()[:1]
        raise CheckpointError(f"{path}: its weights do not fit the settings stored in it "
                              f"({' '.join(first).strip()[:160]}); the file was altered or comes "
                              f"from another version. Retrain", path) from None
    return model.to(backbone.device).eval(), cfg, backbone


def _check_weights(path: Path, meta: dict, backbone) -> None:
    """WeightsChangedError when the heads' record names weights (by SHA-256) other than the
    backbone's: the weights file they were trained with was replaced (issue 19)."""
    try:
        want = (json.loads(meta.get("bagclip_inputs") or "null") or {}).get("weights_sha256")
    except (ValueError, AttributeError):
        raise CheckpointError(f"{path}: its record of inputs is unreadable; the file was altered. "
                              f"Retrain", path) from None
    have = getattr(backbone, "weights_sha256", None)
    if want and want != have:
        raise WeightsChangedError(f"{path} was trained on backbone weights with SHA-256 "
                                  f"{want[:16]}..., but the weights loaded now ({getattr(getattr(backbone, 'cfg', None), 'pretrained', None)}) "
                                  f"are {(have or 'not a file')[:16]}...: the weights file was replaced "
                                  f"since training, so these heads do not fit its features", path)


_RESTART = "start over in a new run folder (or delete this one)"


def _read_state(path: Path, device) -> dict:
    """state.pt as a dict of tensors and numbers, or ResumeError (never unpickles objects)."""
    try:
        state = torch.load(path, weights_only=True, map_location=device)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError,
            TypeError):
        # never suggest weights_only=False: that would run whatever code the file holds
        raise ResumeError(f"cannot resume from {path}: the file is truncated, corrupt, or holds "
                          f"objects other than tensors and numbers (bagclip never unpickles "
                          f"those); {_RESTART}", path) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or "model" not in state:
        raise ResumeError(f"cannot resume from {path}: not a training state of this bagclip version "
                          f"(it lacks the weights); {_RESTART}", path)
    return state


def resume_state(path: Path, cfg: Config, model, opt, device, inputs: dict | None = None) -> tuple[int, list[float]]:
    """Load state.pt into model and opt; (step, history). Refuses, naming the file, anything
    that is not a complete state of this run (ResumeError), or a run made from other `inputs`
    (InputsChangedError; a state from before inputs were recorded is accepted)."""
    from .fingerprint import check_same_inputs

    state = _read_state(path, device)
    try:
        saved = Config.from_dict(json.loads(state["config"]))
    except (ValueError, TypeError, KeyError) as err:
        raise ResumeError(f"cannot resume from {path}: its settings are unreadable ({err}); "
                          f"{_RESTART}", path) from None
    if saved != cfg:
        diff = [f"{k}: {v!r} -> {cfg.to_dict()[k]!r}" for k, v in saved.to_dict().items()
                if cfg.to_dict()[k] != v]
        raise ResumeError(f"cannot resume: the run in {path.parent} differs from the current "
                          f"settings ({'; '.join(diff[:4])}); resume with the same settings or use "
                          f"a new folder", path)
    if inputs is not None:
        try:
            recorded = json.loads(state.get("inputs") or "null")
        except (ValueError, TypeError):
            recorded = {"unreadable": True}
        check_same_inputs(recorded, inputs, f"the run in {path.parent}", path)
    step, history = int(state["step"]), [float(x) for x in state["history"]]
    if len(history) != step:
        raise ResumeError(f"cannot resume from {path}: {len(history)} losses for {step} steps; "
                          f"{_RESTART}", path)
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise ResumeError(f"cannot resume from {path}: its weights do not fit the settings "
                          f"({str(err).splitlines()[0][:120]}); {_RESTART}", path) from None
    return step, history

"""Training the BAG-CLIP heads on cached backbone features (section 3.6, 4.1.3).

The backbone is frozen, so every image is encoded once into the feature cache and each epoch
reads tokens from disk. Only the heads (SAFR, SAG, JFF projections, and the global adapter
when `cfg.global_adapter`) train.

Reproducible and resumable: the heads are initialised from `cfg.seed` (`model.build_heads`);
the order of epoch e is `randperm` from a generator seeded with (seed, e); there is no dropout;
the CPU kernels sum in a fixed order (see bagclip/sag.py). So a run that is interrupted and
resumed from its last checkpoint gives the same weights, bit for bit, as an uninterrupted one at
the same thread count. The run folder's files and their write order: bagclip/checkpoint.py.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .backbone import Backbone
from .budget import check_heads
from .cache import FeatureCache
from .checkpoint import RUN_FILES, STATE, resume_state, write_checkpoint
from .config import Config
from .errors import DivergedError, NothingToResumeError, RunExistsError
from .files import FolderLock, claim_output
from .fingerprint import train_inputs
from .model import build_heads
from .prompts import class_texts


@dataclass
class TrainResult:
    model: torch.nn.Module  # trained BAGCLIP heads
    history: list[float]  # loss per optimisation step
    out_dir: Path | None


def _masks(samples, idx: Sequence[int], size: int) -> torch.Tensor:
    from .data import load_mask

    return torch.stack([load_mask(samples[i].mask_path, size) for i in idx]).float()


def _run_folder(out_dir, cfg: Config, resume: bool) -> Path | None:
    """The run folder, created; refuses a file, or a folder holding a run unless resuming."""
    if out_dir is None:
        return None
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; give a folder for the run")
    existing = [f for f in RUN_FILES if (out / f).exists()]
    if existing and not resume:
        raise RunExistsError(f"{out} already holds a training run ({', '.join(existing)}); "
                             f"resume it (same settings), or train into a new folder (or delete "
                             f"this one)", out)
    claim_output(out, "run folder", legacy=lambda p: any((p / f).exists() for f in RUN_FILES),
                 setting="out")  # issue 19: never write into a folder of the user's
    if not resume:
        cfg.save(out / "config.json")  # for people; resume checks the Config in state.pt
    return out


def _epoch_batch(cfg: Config, n: int, step: int, steps_per_epoch: int) -> tuple[int, list[int]]:
    """(epoch, sample indices) of optimisation step `step`: epoch e's order is a randperm seeded
    with (seed, e), so a resumed run draws the same batches."""
    epoch, b = divmod(step, steps_per_epoch)
    g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    order = torch.randperm(n, generator=g)
    return epoch, order[b * cfg.batch_size:(b + 1) * cfg.batch_size].tolist()


def _step(model, opt, tokens, text, masks, labels, cfg: Config, step: int) -> tuple[float, dict]:
    """One optimisation step on a batch; (loss, its parts). DivergedError before the update
    when the loss is not finite (nothing of this step is applied or saved)."""
    from .losses import bagclip_loss
    from .precision import autocast

    with autocast(cfg.heads_precision, tokens.patches.device):
        output = model(tokens, text)
        loss, parts = bagclip_loss(output, masks, labels, cfg)
    opt.zero_grad(set_to_none=True)
    value = loss.item()
    if not math.isfinite(value):
        raise DivergedError(f"the loss is {value} at step {step + 1}: the training diverged "
                            f"(nothing of this step was saved). Lower lr or loss_lambda and train "
                            f"into a new folder")
    loss.backward()
    opt.step()
    return value, parts


def _start(cfg: Config, backbone: Backbone, out: Path | None, resume: bool, init_state, inputs: dict):
    """(model, optimiser, step, loss history) to train from: cfg.seed's initialisation or
    init_state, or the checkpoint in `out` when resuming (made from the same `inputs`)."""
    model = build_heads(cfg, backbone).to(backbone.device)
    if init_state is not None and not resume:
        model.load_state_dict(init_state)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas)
    if not resume:
        return model, opt, 0, []
    if out is None or not (out / STATE).is_file():
        raise NothingToResumeError(f"nothing to resume in {out}: no {STATE} (start a new run instead)", out)
    step, history = resume_state(out / STATE, cfg, model, opt, backbone.device, inputs)
    return model, opt, step, history


def _check_trainable(cfg: Config, samples: Sequence, backbone: Backbone) -> None:
    """Before anything is encoded or built: a training set, and heads that fit this machine
    with their gradients, Adam's moments and a batch (issue 32: gcn_hidden=1e9 was torch's
    768 GB allocation traceback)."""
    if not samples:
        raise ValueError("train: the training set is empty; check the dataset root and split")
    check_heads(cfg, backbone.width, backbone.embed_dim, backbone.grid, batch=min(cfg.batch_size, len(samples)),
                training=True, device=backbone.device)


def train(cfg: Config, samples: Sequence, backbone: Backbone, out_dir: str | os.PathLike | None = None,
          *args, **kw) -> TrainResult:
    """Train the heads on `samples` (see `_train`), holding the run folder's lock (issue 19): a
    second process training into the same folder is refused with one line, never interleaved."""
    if out_dir is None or (Path(out_dir).exists() and not Path(out_dir).is_dir()):
        return _train(cfg, samples, backbone, out_dir, *args, **kw)  # _train names the file
    with FolderLock(out_dir, what="run folder"):
        return _train(cfg, samples, backbone, out_dir, *args, **kw)


def _train(cfg: Config, samples: Sequence, backbone: Backbone, out_dir: str | os.PathLike | None = None,
           cache: FeatureCache | None = None, resume: bool = False, save_every: int | None = None,
           max_steps: int | None = None, progress: bool = True, on_step=None,
           init_state: dict | None = None, aux_fingerprint: str | None = None) -> TrainResult:
    """Train the heads on `samples` (bagclip.data.Sample with masks) and return them.

    on_step: optional callable(step, loss parts dict) after every optimisation step (the
    notebooks' live loss curve); the parts are bagclip_loss's detached scalars.

    resume: continue from out_dir's last checkpoint (an error if there is none).
    max_steps: stop after this many steps in total (simulates an interruption in tests).
    init_state: a state_dict to start from instead of cfg.seed's initialisation (trained heads,
    for `bagclip.adapt`); on resume the weights come from the checkpoint instead.
    aux_fingerprint: what the checkpoints record of the training set (default: its listing's
    sizes and dates, `fingerprint.train_inputs`; adapt gives its drawn set's content record).
    """
    from tqdm.auto import tqdm

    _check_trainable(cfg, samples, backbone)
    out = _run_folder(out_dir, cfg, resume)
    cache = cache or FeatureCache(backbone)
    entries = cache.ensure([s.image_path for s in samples], progress=progress)
    texts = class_texts(backbone, [s.class_name for s in samples], cfg)
    labels = torch.tensor([int(s.label) for s in samples], dtype=torch.float32)
    device = backbone.device
    inputs = train_inputs(samples, backbone, aux_fingerprint)  # what the heads are made from
    model, opt, step, history = _start(cfg, backbone, out, resume, init_state, inputs)
    n = len(samples)
    steps_per_epoch = (n + cfg.batch_size - 1) // cfg.batch_size
    total = cfg.epochs * steps_per_epoch
    saved = None if resume else 0  # step of the last checkpoint written by this call

    def checkpoint() -> None:
        nonlocal saved
        if out is not None and saved != step:  # after a resume, always once (repairs a torn set)
            write_checkpoint(out, model, opt, cfg, step, history, inputs)
            saved = step

    model.train()
    # a context: the bar closes also on Ctrl-C, so nothing redraws it after the CLI's message
    with tqdm(total=total, initial=step, desc="training", unit="step", disable=not progress) as bar:
        while step < total and (max_steps is None or step < max_steps):
            epoch, idx = _epoch_batch(cfg, n, step, steps_per_epoch)
            tokens = cache.load_batch([entries[i] for i in idx], device)
            text = torch.stack([texts[samples[i].class_name] for i in idx]).to(device)  # (B, 2, E)
            masks = _masks(samples, idx, cfg.image_size).to(device)  # (B, S, S)
            value, parts = _step(model, opt, tokens, text, masks, labels[idx].to(device), cfg, step)
            step += 1
            history.append(value)
            bar.set_postfix(epoch=epoch + 1, loss=f"{sum(history[-20:]) / len(history[-20:]):.4f}")
            bar.update(1)
            if on_step is not None:
                on_step(step, {k: float(v) for k, v in parts.items()})
            if step % steps_per_epoch == 0 or (save_every and step % save_every == 0):
                checkpoint()
    checkpoint()
    model.eval()
    return TrainResult(model, history, out)

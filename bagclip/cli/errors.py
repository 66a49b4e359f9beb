"""How the command line says what went wrong: one line on stderr, never a traceback.

The library raises typed errors (bagclip.errors) whose messages name the file or setting;
here each kind gets the flag or command that fixes it. Exit 1 for bad input, 130 on Ctrl-C
(saying how to continue); argparse's own errors exit 2.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import (AdaptError, CacheUnreadableError, CacheUnwritableError, CalibrationFileError, CheckpointError,
                      DefectDrawError, DeviceError, EvalSettingsError, InputsChangedError,
                      NothingToResumeError, ResumeError, RunExistsError, TornCheckpointError,
                      WeightsChangedError, WeightsUnavailableError)

# The first matching class gives the hint (subclasses before their bases).
HINTS = (
    (TornCheckpointError, "finish it with the same `bagclip train ... --resume` command"),
    (WeightsChangedError, "put back the weights file the heads were trained with, or retrain them "
                          "on these weights with --set pretrained=FILE"),
    (CheckpointError, "point --checkpoint at a complete run folder"),
    (RunExistsError, "continue it with --resume (same settings), or give a new --out folder"),
    (NothingToResumeError, "start without --resume"),
    (InputsChangedError, "give the data and weights the run was made from, or a new --out folder"),
    (ResumeError, "rerun with the settings of the run, or start over with a new --out folder"),
    (DeviceError, "--device cpu, or leave --device out"),
    (EvalSettingsError, "evaluation settings change with --set smoothing_sigma=... / image_score=... "
                        "and --class-name-map"),
    (CacheUnwritableError, "point --cache-dir (or $BAGCLIP_CACHE) at a writable folder"),
    (CacheUnreadableError, "or point --cache-dir (or $BAGCLIP_CACHE) at a folder of your own"),
    (WeightsUnavailableError, "or run offline on the shipped weights: --quick"),
    (CalibrationFileError, "rerun `bagclip calibrate` for this class"),
    (DefectDrawError, "draw on larger images: --set image_size=... (images are resized to it), or "
                      "allow more kinds: fewer --exclude-kinds"),
    (AdaptError, "with --init, change only training settings with --set (seed, epochs, lr, batch_size)"),
)

# Errors that name the setting they advise (`err.setting`: DataError, OutputError, BudgetError,
# WeightsError) get the flag that sets it, when no class above gave a hint (issue 19).
FLAGS = {"image_level": "eval --image-level", "resolution": "eval --resolution",
         "pretrained": "--set pretrained=FILE", "out": "--out",
         # ListError: a list given with a value twice, or the seed swept as a setting
         "sweeps": "reproduce --sweeps '{\"k\": [5, 15], \"gcn_layers\": [3, 5]}'",
         "seeds": "--seeds 0 1 2", "grid_seeds": "reproduce --grid-seeds 0 1",
         "values": "sweep --values 5 10 15", "dataset": "--dataset NAME=ROOT, each name once",
         "train": "--train NAME=ROOT, each name once", "target": "--target NAME=ROOT, each name once"}

_RESUME = {
    "train": "Free space or fix the permissions, then add --resume to the same command: the last "
             "complete checkpoint is kept",
    "reproduce": "Free space or fix the permissions, then rerun the same command: finished runs "
                 "are reused and training resumes from its last checkpoint",
}


def hint(err: BaseException) -> str:
    """What to do on the command line for this error ("" when the message says it all): the
    first matching class of HINTS, else the flag of the setting the error names."""
    h = next((h for cls, h in HINTS if isinstance(err, cls)), "")
    flag = FLAGS.get(getattr(err, "setting", None) or "")
    return h or (f"bagclip {flag}" if flag else "")


def phrase(cmd: str, err: BaseException, out=None) -> str:
    """The one line for a refused command: `bagclip <cmd>: <message> (<hint>)`. A write that
    failed (OSError) advises --resume only when `out` (train's run folder) has a state to resume."""
    if isinstance(err, OSError) and not isinstance(err, (FileNotFoundError, ValueError)):
        what = f"{err.strerror}: {err.filename}" if err.filename and err.strerror else str(err)
        advice = _RESUME.get(cmd, "Free space or fix the path or permissions, then rerun")
        if cmd == "train" and not (out is not None and Path(out, "state.pt").is_file()):
            advice = "Free space or fix the permissions, then rerun the same command"
        return f"bagclip {cmd}: {what}. {advice}"
    h = hint(err)
    text = " ".join(str(err).split())  # one line, whatever the library wrote
    if getattr(err, "override", None) and text.startswith(err.override):  # a `key=value` of --set
        text = "--set " + text
    return f"bagclip {cmd}: {text}" + (f" ({h})" if h else "")


def interrupted(a, argv) -> str:
    """What Ctrl-C leaves and how to continue."""
    sys.stderr.flush()
    if a.cmd == "train":
        cmd = " ".join(argv if argv is not None else sys.argv[1:])
        extra = "" if a.resume else " --resume"
        return (f"\nbagclip train: interrupted. The last complete checkpoint in {a.out} is kept; "
                f"continue with: bagclip {cmd}{extra}")
    if a.cmd in ("reproduce", "sweep", "ablate"):
        return (f"\nbagclip {a.cmd}: interrupted. Rerun the same command to continue: finished "
                f"runs are reused and training resumes from its last checkpoint")
    return f"\nbagclip {a.cmd}: interrupted (no file is left half-written); rerun the command"

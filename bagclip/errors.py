"""The library's typed errors. Messages name the file or setting and what is wrong, never a
command-line flag: `bagclip.cli.errors` phrases each kind for the command line (which flag to
add, which command to rerun). All are ValueErrors, so callers that caught ValueError still do.
"""
from __future__ import annotations


class BagclipError(ValueError):
    """Base of the kit's errors; `path` names the file or folder concerned, when there is one."""

    def __init__(self, msg: str, path=None):
        super().__init__(msg)
        self.path = path


class ConfigError(BagclipError):
    """A bad setting: the message names it and says what is allowed. `field` is its name;
    `override` the `key=value` string it came from (the message then starts with it), when
    it came from one (`Config.with_overrides`): the CLI names its flag before it."""

    def __init__(self, msg: str, field: str | None = None, override: str | None = None):
        super().__init__(msg)
        self.field, self.override = field, override


class CheckpointError(BagclipError):
    """A heads checkpoint that cannot be used: missing pieces, truncated, foreign, diverged."""


class TornCheckpointError(CheckpointError):
    """heads.safetensors disagrees with its run folder's checkpoint.json: a write was cut off;
    finishing the training (resuming) repairs it."""


class RunExistsError(BagclipError):
    """Training into a folder that already holds a run, without resuming it."""


class ResumeError(BagclipError):
    """A run that cannot be resumed: nothing to resume, other settings, a damaged state."""


class InputsChangedError(ResumeError):
    """A run (its record, its training state) made from other inputs than the current ones:
    other data, other weights (issue 19: what a result was computed from)."""


class ListError(BagclipError):
    """A list that cannot be run as given: a seed, swept value or dataset name given twice, the
    seed swept as a setting. `setting` names the list (seeds, grid_seeds, values, dataset...)."""

    def __init__(self, msg: str, setting: str | None = None):
        super().__init__(msg)
        self.setting = setting


class DivergedError(BagclipError):
    """The training loss (or the weights) stopped being finite."""


class EvalSettingsError(BagclipError):
    """Trained heads asked to change a setting that only training can change."""


class DeviceError(BagclipError):
    """A device name that is malformed or absent on this machine."""


class CalibrationError(BagclipError):
    """A calibration that cannot be made (too few images, a bad rate, a broken scorer)."""


class CalibrationFileError(CalibrationError):
    """A calibration file that cannot be used: missing, unreadable, edited, or made for another
    class or scorer; making it again fixes it."""


class StaleCalibrationError(CalibrationFileError):
    """A calibration made on other backbone weights than the ones loaded (the weights file was
    replaced since, or the record edited): `weights_sha256` is what it records, `loaded_sha256`
    what is used."""

    def __init__(self, msg: str, path=None, weights_sha256=None, loaded_sha256=None):
        super().__init__(msg, path=path)
        self.weights_sha256, self.loaded_sha256 = weights_sha256, loaded_sha256


class AdaptError(BagclipError):
    """Heads to adapt from that do not fit the settings asked for."""


class DefectDrawError(BagclipError):
    """No visible defect of the allowed kinds fits an image at the size it is drawn at; `path`
    names the image, `kinds` the kinds tried, `size` the side in pixels."""

    def __init__(self, msg: str, path=None, kinds=(), size=None):
        super().__init__(msg, path=path)
        self.kinds, self.size = tuple(kinds), size


class WeightsChangedError(CheckpointError):
    """Heads whose record names backbone weights (by SHA-256) other than the ones loaded now:
    the weights file was replaced after training."""


class CheckpointMissingError(CheckpointError, FileNotFoundError):
    """No heads checkpoint where one was expected."""


class NothingToResumeError(ResumeError, FileNotFoundError):
    """Resuming a folder that holds no training state."""


class CacheUnwritableError(BagclipError, PermissionError):
    """The feature cache folder cannot take the entries it lacks."""


class CacheUnreadableError(BagclipError, PermissionError):
    """A feature cache entry (or its folder's identity) this user may not read."""


class WeightsUnavailableError(BagclipError, RuntimeError):
    """Pretrained weights that could not be loaded (no internet, a bad file)."""

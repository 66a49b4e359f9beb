"""Command line: bagclip {synth, cache, train, eval, predict, calibrate, adapt, sweep, ablate,
bench, reproduce, pretrain-mini}.

Every command takes --quick (the embedded CPU default: the shipped bagclip-mini backbone, the
synthetic benchmark) or the paper's settings, plus --config FILE (its settings over the preset)
and --set key=value overrides, all checked by Config in one place. With --checkpoint, eval and
predict use the settings the heads were trained with; only the evaluation settings may change.

Bad input ends with one line on stderr naming the file or setting and what to do (exit 1;
argparse's own errors exit 2; Ctrl-C exits 130 and says how to resume), never a traceback.

    parser.py    the arguments of every command (no torch imported to parse them)
    options.py   what the shared options mean (Config, --checkpoint's heads, output folders)
    commands.py  one function per command, calling the library
    decisions.py calibrate, adapt, and predict's / eval's use of a calibration
    errors.py    the library's typed errors phrased for the command line
"""
from __future__ import annotations

import contextlib
import logging
import sys

from .errors import interrupted, phrase
from .parser import build_parser

__all__ = ["main"]


@contextlib.contextmanager
def _log_to_stdout():
    """While a command runs, the library's progress lines (logger "bagclip") go to stdout,
    once each (not also through a root handler a dependency may have set up)."""
    log = logging.getLogger("bagclip")
    handler = logging.StreamHandler(sys.stdout)  # the stdout of now (tests capture it)
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]


def main(argv: list[str] | None = None) -> None:
    a = build_parser(__doc__).parse_args(argv)
    try:
        from ..backbone import check_device

        check_device(a.device if hasattr(a, "device") else None)
        with _log_to_stdout():
            a.fn(a)
    except KeyboardInterrupt:
        print(interrupted(a, argv), file=sys.stderr)
        raise SystemExit(130) from None
    except (FileNotFoundError, ValueError, OSError, FloatingPointError) as err:  # the library's
        # typed errors are ValueErrors; FloatingPointError: pretraining's non-finite loss
        raise SystemExit(phrase(a.cmd, err, getattr(a, "out", None))) from None

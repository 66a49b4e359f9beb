"""Drawing the synthetic tree in worker processes that never run the caller's code.

multiprocessing's spawn and forkserver children re-run the parent's main module first: a script
without an `if __name__ == "__main__":` guard starts the pool again inside every child, and a
heredoc (`python - <<EOF`) or a REPL cannot be re-run at all, so the pool breaks
(BrokenProcessPool). fork avoids that but copies a parent that may hold torch's thread pools.
These workers are fresh interpreters started on this module alone (`_BOOT`): whatever the
caller is, and whatever start method it set, nothing of it is imported or copied.

Protocol: a worker reads one JSON line on stdin ({"size", "seed", "jobs": [[category, split,
defect, index], ...]}), answers one line naming the synth module it imported (the parent
refuses a worker that imported another copy of bagclip: its bytes could differ), then writes,
per job and in order, a 4-byte little-endian job number and the raw clean image, image and mask
(uint8). Job i goes to worker i % n and the parent reads in plan order, so a worker is at most
one image ahead (its pipe blocks it) and memory stays a few images.

When workers cannot be started or one stops, the parent logs a warning and draws the remaining
images itself: each image is a pure function of its job (`synth.make_image`), so the bytes are
the same either way; a drawing error then surfaces in the parent as it would without workers.
"""
from __future__ import annotations

import json
import logging
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

log = logging.getLogger(__name__)

# The worker's whole program: SIGINT is ignored (Ctrl-C reaches the whole process group; the
# parent ends its workers itself), then the bagclip the parent imported comes first on sys.path.
_BOOT = ("import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
         "sys.path.insert(0, sys.argv[1]); from bagclip.data.synth_pool import worker_main; worker_main()")
_FRAME = struct.Struct("<I")


def _frame_bytes(size: int) -> int:
    """Bytes of one drawn image after its job number: clean and image (s, s, 3), mask (s, s)."""
    return 2 * size * size * 3 + size * size


def worker_main() -> None:
    """A worker's loop (see the module docstring); exits when its jobs are drawn."""
    from . import synth

    spec = json.loads(sys.stdin.buffer.readline())
    out = sys.stdout.buffer
    out.write((json.dumps({"synth": str(Path(synth.__file__).resolve()), "version": synth.VERSION})
               + "\n").encode())
    out.flush()
    for k, (cat, split, defect, i) in enumerate(spec["jobs"]):
        im = synth.make_image(cat, defect, spec["size"], spec["seed"], i, split)
        out.write(_FRAME.pack(k) + im.clean.tobytes() + im.image.tobytes()
                  + im.mask.astype(np.uint8).tobytes())
        out.flush()


class _WorkerFailed(Exception):
    pass


class _Worker:
    """One worker process and the jobs it was given."""

    def __init__(self, jobs: list, size: int, seed: int):
        from . import synth

        self.size, self.stderr = size, tempfile.TemporaryFile()  # a file: a pipe could fill and block it
        root = str(Path(synth.__file__).resolve().parents[2])  # the folder holding bagclip/
        self.proc = subprocess.Popen([sys.executable, "-c", _BOOT, root], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr)
        self.proc.stdin.write((json.dumps({"size": size, "seed": seed, "jobs": jobs}) + "\n").encode())
        self.proc.stdin.close()
        self.want = {"synth": str(Path(synth.__file__).resolve()), "version": synth.VERSION}
        self.checked, self.next = False, 0

    def read(self):
        """The next drawn image as a SynthImage, or _WorkerFailed."""
        from .synth import SynthImage

        if not self.checked:
            try:
                got = json.loads(self.proc.stdout.readline() or b"null")
            except ValueError:
                got = None
            if got != self.want:
                raise _WorkerFailed(self._why(f"it imported {got} instead of {self.want}"
                                              if got else "it stopped before drawing"))
            self.checked = True
        s = self.size
        data = self.proc.stdout.read(_FRAME.size + _frame_bytes(s))
        if len(data) != _FRAME.size + _frame_bytes(s) or _FRAME.unpack_from(data)[0] != self.next:
            raise _WorkerFailed(self._why("it stopped while drawing"))
        self.next += 1
        a = np.frombuffer(data, np.uint8, offset=_FRAME.size)
        n = s * s * 3
        return SynthImage(a[:n].reshape(s, s, 3).copy(), a[n:2 * n].reshape(s, s, 3).copy(),
                          a[2 * n:].reshape(s, s).astype(bool))

    def _why(self, what: str) -> str:
        self.proc.poll()
        self.stderr.seek(0)
        tail = self.stderr.read().decode("utf-8", "replace").strip().splitlines()[-1:]
        return f"{what} (exit status {self.proc.returncode}{': ' + tail[0] if tail else ''})"

    def close(self) -> None:
        """End the process (it may still be drawing) and release its pipes and files."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.stdout.close()
        self.proc.wait()
        self.stderr.close()


def draw_in_workers(jobs: Sequence[tuple], size: int, seed: int, workers: int, make) -> Iterator:
    """make(job) for every job (category, split, defect, index), in order, drawn by `workers`
    processes (`make` draws what they cannot: see the module docstring)."""
    done, pool = 0, []
    try:
        try:
            if not sys.executable:
                raise _WorkerFailed("this Python has no executable to start")
            pool = [_Worker([list(j) for j in jobs[w::workers]], size, seed) for w in range(workers)]
            log.info("synth: drawing %d images in %d worker processes", len(jobs), workers)
            for k in range(len(jobs)):
                im = pool[k % workers].read()
                done += 1
                yield im
            return
        except (_WorkerFailed, OSError) as err:
            log.warning("synth: the drawing worker processes failed (%s); drawing the remaining %d "
                        "images in this process (the same bytes, slower)", err, len(jobs) - done)
        yield from map(make, jobs[done:])
    finally:
        for w in pool:
            w.close()

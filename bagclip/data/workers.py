"""A pure function over many jobs, in worker processes that never run the caller's code.

    for arrays in map_in_workers("bagclip.data.synth:draw_arrays", jobs, workers=2): ...

multiprocessing's spawn and forkserver children re-run the parent's main module first: a script
without an `if __name__ == "__main__":` guard starts the pool again inside every child, and a
heredoc (`python - <<EOF`) or a REPL cannot be re-run at all, so the pool breaks
(BrokenProcessPool). fork avoids that but copies a parent that may hold torch's thread pools.
These workers are fresh interpreters started on this module alone (`_BOOT`): whatever the
caller is, and whatever start method it set, nothing of it is imported or copied. The synthetic
tree draws with them (docs/design.md, "Processes").

Protocol: a worker reads one JSON line on stdin ({"func": "module:name", "jobs": [[args], ...]}),
answers one line naming the file of the module it imported (the parent refuses a worker that
imported another copy of bagclip: its results could differ), then writes, per job and in order,
a JSON line {"k": job number, "arrays": [[dtype, shape], ...]} and the arrays' raw bytes: no
pickle either way. Job k goes to worker k % n and the parent reads in job order, so a worker is
at most one result ahead (its pipe blocks it) and memory stays a few results.

When workers cannot be started or one stops, the parent logs a warning and computes the
remaining jobs itself: the function is pure, so the results are the same either way; an error
of the function then surfaces in the parent as it would without workers.
"""
from __future__ import annotations

import importlib
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

log = logging.getLogger(__name__)

# The worker's whole program: SIGINT is ignored (Ctrl-C reaches the whole process group; the
# parent ends its workers itself), then the bagclip the parent imported comes first on sys.path.
_BOOT = ("import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
         "sys.path.insert(0, sys.argv[1]); from bagclip.data.workers import worker_main; worker_main()")
_DTYPES = ("uint8", "bool", "int16", "int32", "float32", "float64")  # what a result may hold


def resolve(func: str) -> tuple[Callable, str]:
    """("module:name") -> (the function, its module's file resolved)."""
    mod, name = func.split(":")
    m = importlib.import_module(mod)
    return getattr(m, name), str(Path(m.__file__).resolve())


def worker_main() -> None:
    """A worker's loop (see the module docstring); exits when its jobs are done."""
    spec = json.loads(sys.stdin.buffer.readline())
    fn, where = resolve(spec["func"])
    out = sys.stdout.buffer
    out.write((json.dumps({"module": where}) + "\n").encode())
    out.flush()
    for k, args in enumerate(spec["jobs"]):
        arrays = [np.ascontiguousarray(a) for a in fn(*args)]
        head = {"k": k, "arrays": [[a.dtype.name, list(a.shape)] for a in arrays]}
        out.write((json.dumps(head) + "\n").encode() + b"".join(a.tobytes() for a in arrays))
        out.flush()


class _WorkerFailed(Exception):
    pass


class _Worker:
    """One worker process and the jobs it was given."""

    def __init__(self, func: str, jobs: list, where: str):
        self.stderr = tempfile.TemporaryFile()  # a file: a pipe could fill up and block the worker
        root = str(Path(__file__).resolve().parents[2])  # the folder holding bagclip/
        self.proc = subprocess.Popen([sys.executable, "-c", _BOOT, root], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr)
        self.proc.stdin.write((json.dumps({"func": func, "jobs": jobs}) + "\n").encode())
        self.proc.stdin.close()
        self.where, self.checked, self.next = where, False, 0

    def read(self) -> tuple[np.ndarray, ...]:
        """The next job's arrays, or _WorkerFailed."""
        if not self.checked:
            got = self._line()
            if got != {"module": self.where}:
                raise _WorkerFailed(self._why(f"it imported {got['module']} instead of {self.where}"
                                              if isinstance(got, dict) and "module" in got
                                              else "it stopped before its first job"))
            self.checked = True
        head = self._line()
        if not isinstance(head, dict) or head.get("k") != self.next:
            raise _WorkerFailed(self._why("it stopped during its jobs"))
        self.next += 1
        arrays = []
        for dtype, shape in head["arrays"]:
            if dtype not in _DTYPES:
                raise _WorkerFailed(self._why(f"it sent an array of {dtype!r}"))
            n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            data = self.proc.stdout.read(n)
            if len(data) != n:
                raise _WorkerFailed(self._why("it stopped during its jobs"))
            arrays.append(np.frombuffer(data, dtype).reshape(shape).copy())
        return tuple(arrays)

    def _line(self):
        try:
            return json.loads(self.proc.stdout.readline() or b"null")
        except ValueError:
            return None

    def _why(self, what: str) -> str:
        self.proc.poll()
        self.stderr.seek(0)
        tail = self.stderr.read().decode("utf-8", "replace").strip().splitlines()[-1:]
        return f"{what} (exit status {self.proc.returncode}{': ' + tail[0] if tail else ''})"

    def close(self) -> None:
        """End the process (it may still be working) and release its pipes and file."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.stdout.close()
        self.proc.wait()
        self.stderr.close()


def map_in_workers(func: str, jobs: Sequence[Sequence], workers: int) -> Iterator[tuple[np.ndarray, ...]]:
    """func(*job) for every job, in order, computed by `workers` processes. func: "module:name"
    of a pure function of JSON-able arguments returning a tuple of arrays (module docstring)."""
    fn, where = resolve(func)
    jobs = [list(j) for j in jobs]
    done, pool = 0, []
    try:
        try:
            if not sys.executable:
                raise _WorkerFailed("this Python names no executable to start")
            pool = [_Worker(func, jobs[w::workers], where) for w in range(workers)]
            log.info("%s: %d jobs in %d worker processes", func, len(jobs), workers)
            for k in range(len(jobs)):
                arrays = pool[k % workers].read()
                done += 1
                yield arrays
            return
        except (_WorkerFailed, OSError) as err:
            log.warning("%s: the worker processes failed (%s); computing the remaining %d jobs in this "
                        "process (the same results, slower)", func, err, len(jobs) - done)
        yield from (tuple(fn(*job)) for job in jobs[done:])
    finally:
        for w in pool:
            w.close()

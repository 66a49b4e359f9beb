"""Running the lessons under pytest (nbmake): a lesson run must never hang.

The reported hang (issue 13): with the whole folder, the first notebook's kernel sat idle while
nbclient waited for the cell's `execute_reply` on the shell channel until the 600 s cell
timeout. A kernel that is idle has finished the cell, so the reply (or the request) was stuck
between the two ends of the shell socket. That is the signature of ipykernel 7's lost-wake-up
bugs on its dual-use shell ROUTER socket (ipython/ipykernel#1529, #1554): a raw send on a socket
read through a ZMQStream consumes libzmq's edge-triggered read event, so a message that arrives
in that window sits unread until *another* message arrives on the socket. nbclient sends
nothing while it waits, so nothing ever arrives: an idle kernel and a waiting client.

The fix here, for every notebook nbmake runs:
- while nbclient waits for an execute_reply, it sends a `kernel_info_request` every NUDGE_S
  seconds of silence. A new message re-arms the kernel's stream, which then reads everything
  pending, including a stranded request; the extra kernel_info replies are ignored (their parent
  is not the cell's request). The cell timeout still applies (nbmake-timeout in pyproject.toml).
- kernels get no tqdm widgets or monitor threads (TQDM_DISABLE): progress bars in a kernel are
  ipywidgets comms written from a background thread, the other thread-to-socket path of
  ipykernel 7; the lessons pass progress=False where it matters, this covers the rest.
- kernels stay offline (HF_HUB_OFFLINE) so that nothing waits on a closed network.
The number of nudges sent is reported in the terminal summary (0 when nothing was stuck).
"""
from __future__ import annotations

import os
from time import monotonic

NUDGE_S = float(os.environ.get("BAGCLIP_NB_NUDGE_S", "10"))
_stats = {"nudges": 0, "recovered": 0}

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


def _install() -> None:
    from queue import Empty

    from nbclient import client as nbc
    from nbclient.util import ensure_async

    if getattr(nbc.NotebookClient, "_bagclip_nudge", False):
        return
    original = nbc.NotebookClient._async_poll_for_reply

    async def poll_for_reply(self, msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive):
        deadline = None if timeout is None else monotonic() + timeout
        nudged = False
        while True:
            left = None if deadline is None else deadline - monotonic()
            if left is not None and left <= 0:  # the cell timeout: nbclient's own handling
                return await original(self, msg_id, cell, 1, task_poll_output_msg, task_poll_kernel_alive)
            wait = NUDGE_S if left is None else min(NUDGE_S, left)
            try:
                msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=wait))
            except Empty:
                await self._async_check_alive()
                self.kc.kernel_info()  # a new message on the shell socket wakes a stalled stream
                _stats["nudges"] += 1
                nudged = True
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue  # e.g. the reply to a nudge
            if nudged:
                _stats["recovered"] += 1
            if self.record_timing:
                cell["metadata"]["execution"]["shell.execute_reply"] = nbc.timestamp(msg)
            try:
                import asyncio

                await asyncio.wait_for(task_poll_output_msg, self.iopub_timeout)
            except (asyncio.TimeoutError, Empty):
                if self.raise_on_iopub_timeout:
                    task_poll_kernel_alive.cancel()
                    raise nbc.CellTimeoutError.error_from_timeout_and_cell(
                        "Timeout waiting for IOPub output", self.iopub_timeout, cell) from None
                self.log.warning("Timeout waiting for IOPub output")
            task_poll_kernel_alive.cancel()
            return msg

    nbc.NotebookClient._async_poll_for_reply = poll_for_reply
    nbc.NotebookClient._bagclip_nudge = True


_install()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _stats["nudges"]:
        terminalreporter.write_line(
            f"notebooks: {_stats['nudges']} kernel nudge(s) sent (one per {NUDGE_S:g} s of silence); "
            f"{_stats['recovered']} cell(s) replied after a nudge (long cells do too: this is not "
            f"proof of a stall)")

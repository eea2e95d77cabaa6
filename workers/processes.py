"""Stopping a child process the way every Pulse command and harness does: SIGTERM, a grace
period, then SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import suppress


def stop(process: subprocess.Popen, timeout: float = 10.0, group: bool = False) -> None:
    """Stop ``process`` (with ``group``: its whole process group, e.g. gunicorn and its
    workers started with ``start_new_session``) and reap it."""
    if not group and process.poll() is not None:
        return

    def send(sig: signal.Signals) -> None:
        with suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)

    send(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait()

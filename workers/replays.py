"""Running replays in a process: `pulse replay` in the terminal (a rich progress bar), and
the worker's watcher that runs the replays ``replayProjection`` requested.

The server never runs a replay inside a request: the mutation records a REQUESTED row in
the replay ledger and answers at once; the projection worker (`pulse worker`, which
`pulse serve` starts beside gunicorn) polls the ledger every ``poll_seconds`` in a
background thread and runs what was requested, one replay at a time, beside its live
projection.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from domain.replay import REQUESTED, ReplayRunning
from services.replay import ReplayProgress, ReplayUnsupported

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0

#: Exit code of `pulse replay` when a replay of the projection is running elsewhere.
EXIT_CONFLICT = 2


def replay_in_terminal(pulse: Any, names: Sequence[str], options: Any, fresh: bool = False) -> tuple[int, str]:
    """Replay ``names`` one after the other with a progress bar each (events done/total,
    rate, ETA); ``(exit code, message)``: 0, or ``EXIT_CONFLICT`` with why, or 1."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    replayer = pulse.replayer(options)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TextColumn("events  {task.fields[rate]:>9,.0f}/s  ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
    )
    done: list[str] = []
    for name in names:
        with Progress(*columns, transient=False) as progress:
            task = progress.add_task(name, total=None, rate=0.0)

            def show(step: ReplayProgress, task: Any = task, progress: Any = progress) -> None:
                progress.update(task, completed=step.done, total=step.total, rate=step.events_per_second)

            try:
                result = replayer.replay(name, on_progress=show, fresh=fresh)
            except ReplayRunning as exc:
                return EXIT_CONFLICT, str(exc)
            except ReplayUnsupported as exc:
                return EXIT_CONFLICT, str(exc)
            except Exception as exc:  # recorded as FAILED in the ledger by the replayer
                log.exception("replay of %s failed", name)
                return 1, (
                    f"replay of {name} failed: {exc}; the serving generation is untouched:"
                    f" run `pulse replay {name}` again once the cause is fixed"
                )
            total = progress.tasks[0].total or result.events
            progress.update(task, completed=total, total=total)
        done.append(f"{name}: switched to the new generation after {result.events:,} events")
    return 0, "; ".join(done)


class ReplayRequestWatcher:
    """A background thread of the worker process running requested replays."""

    def __init__(self, pulse: Any, options: Any, poll_seconds: float = POLL_SECONDS) -> None:
        self.pulse = pulse
        self.options = options
        self.poll_seconds = poll_seconds
        self._thread: threading.Thread | None = None

    def pending(self) -> list[str]:
        ledger = self.pulse.backend.replay_ledger()
        return [name for name, status in ledger.replays().items() if status.state == REQUESTED]

    def run_pending(self, stop: threading.Event | None = None) -> list[str]:
        """Run every requested replay now; the names it switched."""
        switched = []
        for name in self.pending():
            try:
                self.pulse.replayer(self.options).replay(name, stop=stop)
                switched.append(name)
            except ReplayRunning as exc:
                log.info("requested replay not run here: %s", exc)
            except Exception:
                # Recorded as FAILED in the ledger (with the error) by the replayer.
                log.exception("requested replay of %s failed", name)
        return switched

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_pending(stop)
            except Exception:
                log.exception("checking for replay requests failed; trying again")
            stop.wait(self.poll_seconds)

    def start(self, stop: threading.Event) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, args=(stop,), name="replay-requests", daemon=True)
        self._thread.start()
        return self._thread

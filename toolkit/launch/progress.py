"""Progress of a launch that runs on this machine: rows written per task, with an ETA.

``bin/launch --executor local`` runs its tasks before it returns; :class:`TaskProgress` is
called every few seconds meanwhile and prints one line per task whose row count changed,
read from the shard files (the same count as ``bin/launch --status``).
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Dict, List, Optional, Tuple

from toolkit.launch.sweep import Sweep
from toolkit.launch.task import Task, unit_progress


def _duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``12s``."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class TaskProgress:
    """Prints ``task LABEL: DONE/EXPECTED rows (P%), ETA T`` when a task's rows change.

    Args:
        sweep: the sweep (where the shard files are).
        tasks: the tasks to follow.
        stream: where lines go (stderr).
    """

    def __init__(self, sweep: Sweep, tasks: List[Task], stream: Optional[IO[str]] = None) -> None:
        self.sweep, self.tasks = sweep, list(tasks)
        self.stream = stream if stream is not None else sys.stderr
        self._first: Dict[str, Tuple[float, int]] = {}
        self._shown: Dict[str, int] = {}
        self._items: Dict[Any, List[Any]] = {}

    def counts(self) -> Dict[str, Tuple[int, Optional[int]]]:
        """Rows written and expected per task label (expected None while not yet known); the
        manifests are read once, the shard files at every call."""
        from toolkit.manifest import read_manifest

        out = {}
        for task in self.tasks:
            manifest = self.sweep.manifest_of(task.dataset)
            if manifest not in self._items:
                self._items[manifest] = read_manifest(manifest)
            units = unit_progress(self.sweep, task, self._items[manifest])
            expected = None if any(u.expected is None for u in units) else sum(u.expected or 0 for u in units)
            out[task.label] = (sum(u.done for u in units), expected)
        return out

    def line(self, label: str, done: int, expected: Optional[int], now: float) -> str:
        """One task's progress line; the ETA extrapolates the rate since the task was first seen."""
        if expected is None:
            return f"task {label}: {done} rows (total known once its baseline is complete)"
        text = f"task {label}: {done}/{expected} rows ({100 * done // max(expected, 1)}%)"
        since, start = self._first[label]
        if 0 < done - start and done < expected:
            rate = (done - start) / max(now - since, 1e-6)
            text += f", ETA {_duration((expected - done) / rate)}"
        return text + (", done" if done >= expected else "")

    def __call__(self) -> None:
        """Print the tasks whose row counts changed since the last call."""
        now = time.monotonic()
        for label, (done, expected) in self.counts().items():
            self._first.setdefault(label, (now, done))
            if self._shown.get(label) == done:
                continue
            self._shown[label] = done
            print(self.line(label, done, expected, now), file=self.stream, flush=True)

"""Typed records of a run folder's bookkeeping: ``launch.json`` and the per-task process records.

:class:`LaunchRecord` is what ``bin/launch`` writes before and after every submission (the
resolved sweep, the profile, the units merge must find, every submission with its job ids
and states); ``bin/merge``, ``bin/launch --status`` and ``--resume`` read it back.
:class:`TaskRecord` is what each array task writes when it starts (pid, host, process start
time) and when it ends, so a resumed launch can tell that tasks of an earlier launch are still
alive - e.g. local tasks orphaned by a killed launcher - and refuse to start a second writer.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from toolkit.atomic import atomic_write_json
from toolkit.errors import InputError, Pathlike
from toolkit.runs.layout import RunLayout, Unit

#: Version of the launch.json format (1: units had mode ``conditioned:<name>``).
LAUNCH_VERSION = 2


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def process_start(pid: int) -> Optional[int]:
    """A process's start time in clock ticks since boot (``/proc/<pid>/stat``), None when unknown.

    With the pid it tells a live process from a later one that reused its pid.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def pid_alive(pid: int, start: Optional[int]) -> bool:
    """Whether process ``pid`` of this host is alive and (when ``start`` is known) the same process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return start is None or process_start(pid) in (None, start)


@dataclass
class Process:
    """A process: where it runs and how to tell it is still the same one."""

    pid: int
    host: str
    start: Optional[int] = None

    @classmethod
    def this(cls) -> "Process":
        """The calling process."""
        return cls(os.getpid(), socket.gethostname(), process_start(os.getpid()))

    def alive(self) -> Optional[bool]:
        """True/False for a process of this host; None for another host (ask its scheduler)."""
        if self.host != socket.gethostname():
            return None
        return pid_alive(self.pid, self.start)

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"


@dataclass
class Job:
    """One submitted job: ``kind`` is ``task``, ``merge`` or ``score``; ``state`` once known."""

    kind: str
    job_id: str
    label: str
    state: Optional[str] = None


@dataclass
class Submission:
    """One ``bin/launch`` call (the first, or a ``--resume``)."""

    executor: str
    submitted: str
    resume: bool
    tasks: int
    tasks_submitted: int
    launcher: Process
    jobs: List[Job] = field(default_factory=list)
    finished: Optional[str] = None


@dataclass
class LaunchRecord:
    """``launch.json``: what was launched into a run folder, and how it went.

    Attributes:
        experiment: the sweep's experiment name.
        run_dir: the run folder.
        sweep: the resolved sweep (:meth:`toolkit.launch.sweep.Sweep.to_dict`).
        profile: the cluster profile.
        units: every unit merge must find.
        submissions: every launch into the folder, oldest first.
    """

    experiment: str
    run_dir: str
    sweep: Dict[str, Any]
    profile: Dict[str, Any]
    units: List[Unit]
    submissions: List[Submission] = field(default_factory=list)
    version: int = LAUNCH_VERSION

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "LaunchRecord":
        """Read a decoded ``launch.json``.

        Raises:
            ValueError: another version, or a malformed record.
        """
        if raw.get("version") != LAUNCH_VERSION:
            raise ValueError(f"launch.json version {raw.get('version')!r} was written by another version of the "
                             f"toolkit (this one reads version {LAUNCH_VERSION}); merge it with that version")
        try:
            units = [Unit.from_dict(u) for u in raw["units"]]
            submissions = [Submission(**{**s, "launcher": Process(**s["launcher"]),
                                         "jobs": [Job(**j) for j in s["jobs"]]}) for s in raw["submissions"]]
            return cls(experiment=raw["experiment"], run_dir=raw["run_dir"], sweep=raw["sweep"],
                       profile=raw["profile"], units=units, submissions=submissions)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed launch record ({type(exc).__name__}: {exc})") from None

    @classmethod
    def read(cls, run_dir: Pathlike) -> "LaunchRecord":
        """The ``launch.json`` of a run folder.

        Raises:
            InputError: absent, not JSON, or not a launch record of this version.
        """
        path = RunLayout(run_dir).launch_json
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError("no launch.json here: not a run folder written by bin/launch", path) from None
        except json.JSONDecodeError as exc:
            raise InputError(f"not JSON: {exc.msg}", path, exc.lineno) from None
        if not isinstance(raw, dict):
            raise InputError("not a launch record (expected a JSON object)", path)
        try:
            return cls.from_dict(raw)
        except ValueError as exc:
            raise InputError(str(exc), path) from None

    def write(self) -> Path:
        """Write ``launch.json`` atomically into :attr:`run_dir`."""
        return atomic_write_json(RunLayout(self.run_dir).launch_json, self.to_dict())


@dataclass
class TaskRecord:
    """What an array task wrote about its latest attempt (``RUN/_tasks/<task>.json``).

    Attributes:
        label: the task (``model/dataset/shard-k-of-n``).
        process: the process that ran it.
        started: when it started.
        ended: when it ended (None while it runs, or when it was killed).
        job_id: the scheduler's job id, when known.
    """

    label: str
    process: Process
    started: str
    ended: Optional[str] = None
    job_id: Optional[str] = None

    def write(self, layout: RunLayout) -> None:
        """Write the record (atomically)."""
        atomic_write_json(layout.task_file(self.label), dataclasses.asdict(self))

    @classmethod
    def read_all(cls, layout: RunLayout) -> List["TaskRecord"]:
        """Every task record of a run folder (unreadable ones are skipped)."""
        out = []
        for path in layout.task_files():
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                out.append(cls(**{**raw, "process": Process(**raw["process"])}))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return out

    def running_here(self) -> bool:
        """Not ended, on this host, and its process still alive."""
        return self.ended is None and bool(self.process.alive())

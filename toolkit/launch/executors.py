"""Where tasks run: one small interface, three backends (SLURM, local subprocesses, in-process).

The launcher never branches on the backend. It asks for arrays of tasks and for jobs that
run after other jobs; each backend does that its way:

- ``slurm``: submitit arrays (split at the cluster's MaxArraySize, ``%N`` parallelism,
  requeue on timeout/preemption); follow-up jobs carry an ``afterany``/``afterok``
  dependency, so the submitting shell may exit.
- ``local``: submitit's local executor, one subprocess per task, at most
  ``array_parallelism`` at a time; follow-up jobs start when their dependencies end.
- ``debug``: everything in this process, one task after another (set breakpoints; with
  ``pdb=True`` an exception opens the debugger).
"""

from __future__ import annotations

import abc
import logging
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import submitit

log = logging.getLogger(__name__)

EXECUTORS = ("slurm", "local", "debug")
#: job states that will not change any more (SLURM's names; local/debug use the same)
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                "BOOT_FAIL", "DEADLINE", "FINISHED", "INTERRUPTED"}


class JobRef:
    """A submitted task or job: its id, a label, and (while this process lives) its handle."""

    def __init__(self, job_id: str, label: str, handle: Any = None) -> None:
        self.job_id = job_id
        self.label = label
        self.handle = handle

    @property
    def array_id(self) -> str:
        """The array's job id (``123`` for ``123_4``)."""
        return self.job_id.split("_", 1)[0]

    def state(self) -> str:
        """The scheduler's state name (``PENDING``, ``RUNNING``, ``COMPLETED``, ``FAILED`` ...)."""
        if isinstance(self.handle, _InProcessJob):
            return self.handle.state
        state = str(self.handle.state).upper()
        if state == "FINISHED":  # submitit's local jobs: the process ended; its result says how
            return "FAILED" if self.handle.exception() is not None else "COMPLETED"
        return state

    def wait(self, poll_s: float = 2.0) -> str:
        """Block until the job ends; returns its final state."""
        while True:
            state = self.state()
            if state.split()[0] in FINAL_STATES:
                return state
            time.sleep(poll_s)

    def error(self) -> Optional[str]:
        """The task's exception text when it failed and the scheduler kept it, else None."""
        if isinstance(self.handle, _InProcessJob):
            return self.handle.error
        try:
            exc = self.handle.exception()
        except Exception as err:  # noqa: BLE001 - any scheduler error explains the failure
            return str(err)
        return None if exc is None else str(exc)


class _InProcessJob:
    """A call already run in this process (the ``debug`` backend)."""

    def __init__(self, fn: Callable[[], Any], use_pdb: bool) -> None:
        self.result: Any = None
        self.error: Optional[str] = None
        try:
            self.result = fn()
            self.state = "COMPLETED"
        except Exception as exc:  # noqa: BLE001 - the failure is reported as the job's state
            log.exception("in-process task failed")
            self.state, self.error = "FAILED", f"{type(exc).__name__}: {exc}"
            if use_pdb:
                import pdb

                pdb.post_mortem()


class Executor(abc.ABC):
    """Submits arrays of no-argument callables and follow-up jobs.

    Args:
        folder: where job scripts, pickles and logs go (``<run_dir>/_jobs``).
    """

    name = ""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @abc.abstractmethod
    def submit_array(self, calls: Sequence[Callable[[], Any]], labels: Sequence[str], params: Dict[str, Any],
                     parallelism: int, max_requeues: int, python: Optional[str],
                     watch: Optional[Callable[[], None]] = None) -> List[JobRef]:
        """Run ``calls`` as one array (``params``: submitit keywords from the profile). An executor
        that runs the array before returning calls ``watch`` every few seconds meanwhile."""

    @abc.abstractmethod
    def submit_after(self, call: Callable[[], Any], label: str, params: Dict[str, Any], after: Sequence[JobRef],
                     require_success: bool) -> JobRef:
        """Run ``call`` once every job of ``after`` has ended (``require_success``: only if all completed)."""


class SlurmExecutor(Executor):
    """SLURM arrays through submitit (see the module docstring)."""

    name = "slurm"

    def _executor(self, params: Dict[str, Any], max_requeues: int, python: Optional[str],
                  extra: Optional[Dict[str, Any]] = None) -> submitit.AutoExecutor:
        kwargs: Dict[str, Any] = {"slurm_max_num_timeout": max_requeues}
        if python:
            kwargs["slurm_python"] = python
        ex = submitit.AutoExecutor(folder=self.folder / "%j", cluster="slurm", **kwargs)
        params = dict(params)
        if extra:
            params["slurm_additional_parameters"] = {**params.get("slurm_additional_parameters", {}), **extra}
        ex.update_parameters(**params)
        return ex

    def submit_array(self, calls, labels, params, parallelism, max_requeues, python, watch=None):
        ex = self._executor(params, max_requeues, python)
        ex.update_parameters(slurm_array_parallelism=parallelism)
        jobs = ex.submit_array(list(calls))
        return [JobRef(job.job_id, label, job) for job, label in zip(jobs, labels)]

    def submit_after(self, call, label, params, after, require_success):
        kind = "afterok" if require_success else "afterany"
        arrays = sorted({ref.array_id for ref in after}, key=str)
        extra = {"dependency": f"{kind}:" + ":".join(arrays), "kill-on-invalid-dep": "yes"} if arrays else None
        job = self._executor(params, 0, None, extra).submit(call)
        return JobRef(job.job_id, label, job)


class LocalExecutor(Executor):
    """Local subprocesses through submitit, ``parallelism`` at a time."""

    name = "local"

    def _executor(self, params: Dict[str, Any], max_requeues: int, python: Optional[str]) -> submitit.AutoExecutor:
        kwargs: Dict[str, Any] = {"local_max_num_timeout": max_requeues}
        if python:
            kwargs["local_python"] = python
        # no "%j" here: submitit's local controller would make it a literal, empty folder (job files are
        # named by job id anyway)
        ex = submitit.AutoExecutor(folder=self.folder, cluster="local", **kwargs)
        ex.update_parameters(**{k: v for k, v in params.items() if k in ("timeout_min", "name")})
        return ex

    def submit_array(self, calls, labels, params, parallelism, max_requeues, python, watch=None):
        ex = self._executor(params, max_requeues, python)
        refs: List[JobRef] = []
        calls, labels = list(calls), list(labels)
        for start in range(0, len(calls), parallelism):
            wave = [ex.submit(call) for call in calls[start:start + parallelism]]
            refs += [JobRef(job.job_id, label, job) for job, label in zip(wave, labels[start:start + parallelism])]
            _wait_all(refs[-len(wave):], watch)
        if watch is not None:
            watch()
        return refs

    def submit_after(self, call, label, params, after, require_success):
        states = [ref.wait(poll_s=0.2) for ref in after]
        if require_success and any(s != "COMPLETED" for s in states):
            return JobRef("not-run", label, _NotRun())
        job = self._executor(params, 0, None).submit(call)
        ref = JobRef(job.job_id, label, job)
        ref.wait(poll_s=0.2)
        return ref


def _wait_all(refs: Sequence[JobRef], watch: Optional[Callable[[], None]], poll_s: float = 0.2,
              watch_s: float = 2.0) -> None:
    """Block until every job of ``refs`` has ended, calling ``watch`` every ``watch_s`` seconds."""
    last = time.monotonic()
    while any(ref.state().split()[0] not in FINAL_STATES for ref in refs):
        if watch is not None and time.monotonic() - last >= watch_s:
            watch()
            last = time.monotonic()
        time.sleep(poll_s)


class _NotRun(_InProcessJob):
    """A follow-up job skipped because a dependency failed (SLURM's DependencyNeverSatisfied)."""

    def __init__(self) -> None:
        self.result, self.error, self.state = None, "a dependency did not complete", "CANCELLED"


class DebugExecutor(Executor):
    """Everything in this process, in order (see the module docstring)."""

    name = "debug"

    def __init__(self, folder: Path, use_pdb: bool = False) -> None:
        super().__init__(folder)
        self.use_pdb = use_pdb
        self._count = 0

    def _run(self, call: Callable[[], Any], label: str) -> JobRef:
        self._count += 1
        log.info("debug: running %s", label)
        return JobRef(f"debug-{self._count}", label, _InProcessJob(call, self.use_pdb))

    def submit_array(self, calls, labels, params, parallelism, max_requeues, python, watch=None):
        refs = []
        for call, label in zip(calls, labels):
            refs.append(self._run(call, label))
            if watch is not None:
                watch()
        return refs

    def submit_after(self, call, label, params, after, require_success):
        if require_success and any(ref.state() != "COMPLETED" for ref in after):
            return JobRef("not-run", label, _NotRun())
        return self._run(call, label)


def make_executor(name: str, folder: Path, use_pdb: bool = False) -> Executor:
    """The executor called ``name`` (one of :data:`EXECUTORS`), writing its files under ``folder``.

    Raises:
        ValueError: unknown name.
    """
    if name == "slurm":
        return SlurmExecutor(folder)
    if name == "local":
        return LocalExecutor(folder)
    if name == "debug":
        return DebugExecutor(folder, use_pdb)
    raise ValueError(f"unknown executor {name!r} (valid: {', '.join(EXECUTORS)})")

"""Launch a sweep: materialise inputs, submit one array per model, then merge and score jobs.

``launch`` writes ``<run_dir>/launch.json`` (the plan, the units merge must find, the job
ids) before and after every submission, so the submitting shell may exit and
``bin/launch --status`` / ``bin/launch --resume`` work from the file alone.

Example:
    >>> sweep = load_sweep("slurm/examples/demo.yaml")               # doctest: +SKIP
    >>> record = launch(sweep, load_profile(None), "local", wait=True)  # doctest: +SKIP
    >>> record["state"]                                               # doctest: +SKIP
    'COMPLETED'
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from toolkit.errors import InputError, Pathlike
from toolkit.launch.progress import TaskProgress
from toolkit.launch.executors import FINAL_STATES, Executor, JobRef, make_executor
from toolkit.launch.profile import ClusterProfile, submitit_parameters
from toolkit.launch.sweep import Sweep, Task, plan_tasks
from toolkit.launch.task import ShardTask, UnitProgress, pending_tasks
from toolkit.runs import RunLayout, Unit
from toolkit.runs.record import Job, LaunchRecord, Process, Submission, TaskRecord, now

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- inputs

def materialise_inputs(sweep: Sweep) -> Sweep:
    """Generate what a sweep asks to be generated (the demo set, tiny models) under the run folder.

    Existing inputs are reused, so a resumed launch sees the same files; a tiny model is built
    in a temporary folder and renamed into place, so a kill never leaves half of one.

    Returns:
        The sweep with concrete manifest and model paths.
    """
    layout = sweep.layout
    datasets = []
    for ds in sweep.datasets:
        if ds.demo is not None:
            manifest = sweep.manifest_of(ds)
            if not manifest.exists():
                from toolkit.data.demo import write_demo_manifest

                write_demo_manifest(manifest.parent, items_per_task=int(ds.demo.get("items_per_task", 8)),
                                    seed=int(ds.demo.get("seed", sweep.seed)))
            ds = dataclasses.replace(ds, manifest=manifest, data_root=manifest.parent)
        n_items = _count_items(ds.manifest)
        if ds.shards > max(1, n_items):
            log.warning("dataset %s has %d items: %d shards instead of %d (a shard needs an item)", ds.name,
                        n_items, max(1, n_items), ds.shards)
            ds = dataclasses.replace(ds, shards=max(1, n_items))
        datasets.append(ds)
    models = []
    for model in sweep.models:
        if model.tiny is not None:
            folder = layout.tiny_model_dir(model.name)
            if not folder.exists():
                from toolkit.models.registry import build_tiny

                folder.parent.mkdir(parents=True, exist_ok=True)
                building = Path(tempfile.mkdtemp(prefix=f".{model.name}.", dir=folder.parent))
                try:
                    build_tiny(model.backend, building, **model.tiny)
                    building.rename(folder)
                finally:
                    shutil.rmtree(building, ignore_errors=True)
            model = dataclasses.replace(model, path=str(folder))
        models.append(model)
    return dataclasses.replace(sweep, datasets=tuple(datasets), models=tuple(models))


def _count_items(manifest: Path) -> int:
    """Non-blank lines of a manifest (its items; validation happens when tasks read it)."""
    with open(manifest, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def expected_units(sweep: Sweep) -> List[Unit]:
    """Every unit of the sweep: what merge must find."""
    return [unit for m in sweep.models for ds in sweep.datasets for unit in sweep.units(ds, m)]


# --------------------------------------------------------------------------- plan

@dataclasses.dataclass
class ArrayPlan:
    """One array to submit: a model's tasks (at most ``max_array_size``) and its job settings."""

    model: str
    tasks: List[Task]
    params: Dict[str, Any]
    python: Optional[str]

    def preview(self, parallelism: int) -> List[str]:
        """The sbatch header lines this array gets (``--dry-run``)."""
        return sbatch_preview(self.params, len(self.tasks), parallelism)


def sbatch_preview(params: Dict[str, Any], n_tasks: int, parallelism: int) -> List[str]:
    """``#SBATCH`` lines for submitit keywords (a pure function, pinned by a test).

    Args:
        params: from :func:`toolkit.launch.profile.submitit_parameters`.
        n_tasks: array size (0: not an array).
        parallelism: ``%N``.

    Returns:
        Sorted ``#SBATCH --key=value`` lines, then the setup lines.
    """
    flags: Dict[str, Any] = {"job-name": params["name"], "time": params["timeout_min"],
                             "cpus-per-task": params["cpus_per_task"], "mem": f"{params['mem_gb']}GB",
                             "signal": f"USR2@{params['slurm_signal_delay_s']}"}
    if n_tasks:
        flags["array"] = f"0-{n_tasks - 1}%{min(n_tasks, parallelism)}"
    if "gpus_per_node" in params:
        flags["gpus-per-node"] = params["gpus_per_node"]
    for key, value in params.items():
        if key.startswith("slurm_") and key not in ("slurm_setup", "slurm_additional_parameters",
                                                      "slurm_signal_delay_s"):
            flags[key[len("slurm_"):].replace("_", "-")] = value
    flags.update(params.get("slurm_additional_parameters", {}))
    lines = [f"#SBATCH --{k}={v}" for k, v in sorted(flags.items())]
    return lines + [f"# setup: {line}" for line in params.get("slurm_setup", [])]


def plan_arrays(sweep: Sweep, profile: ClusterProfile, tasks: Sequence[Task]) -> List[ArrayPlan]:
    """Group tasks into arrays: one per model, split at ``max_array_size``; accounts rotate per array."""
    arrays: List[ArrayPlan] = []
    for model in sweep.models:
        mine = [t for t in tasks if t.model.name == model.name]
        settings = profile.settings(model.name)
        setup = list(settings.get("setup") or []) + list(model.setup)
        for start in range(0, len(mine), profile.max_array_size):
            accounts = settings.get("accounts") or [None]
            account = accounts[len(arrays) % len(accounts)]
            params = submitit_parameters(settings, account, setup, f"{sweep.experiment}-{model.name}")
            arrays.append(ArrayPlan(model.name, mine[start:start + profile.max_array_size], params,
                                    model.python or settings.get("python")))
    return arrays


# --------------------------------------------------------------------------- follow-up jobs

def _single_manifest(sweep: Sweep) -> Tuple[Optional[str], bool, bool]:
    """The manifest of a one-dataset sweep (None otherwise), whether it has items the
    degradation tables read (text/audio twins, classification), and whether it has items
    with options (anything to plot accuracy of)."""
    from toolkit.manifest import read_manifest

    if len(sweep.datasets) != 1:
        return None, False, True
    manifest = sweep.datasets[0].manifest
    items = read_manifest(manifest)
    return (str(manifest), any(it.task == "classify" or "twin" in it.meta for it in items),
            any(it.task != "asr" for it in items))


def merge_job(run_dir: str) -> Dict[str, Any]:
    """The merge job: merge the run's shard files (refuses when anything is missing).

    Returns:
        The merge report as a dict.
    """
    from toolkit.store import merge_run

    logging.basicConfig(level=logging.INFO)
    report = merge_run(run_dir)
    return {"outputs": [str(p) for p in report.outputs], "rows": report.rows, "missing": report.missing}


def score_job(run_dir: str, by: Sequence[str], faithfulness: bool = False, manifest: Optional[str] = None,
              degradation: bool = False, plots_wanted: bool = True) -> List[str]:
    """The score job: ``bin/score`` on the merged results, as markdown, CSV and JSON plus plots;
    with ``faithfulness`` (a sweep with interventions or spoken hints) also the faithfulness
    tables (``faithfulness.md``, ``faithfulness.json``) and their plots. With ``manifest`` (a
    sweep of one dataset) the rows are scored against it, so ASR items get WER tables, and
    with ``degradation`` (text/audio twins or classification items) the degradation tables.
    ``plots_wanted`` is off for a sweep of ASR items only (no accuracy to plot).

    Returns:
        The files written.

    Raises:
        RuntimeError: ``bin/score`` failed.
    """
    from toolkit.cli.score import main as score_main

    layout = RunLayout(run_dir)
    plots = ["--plots", str(layout.plots_dir)]
    grouped = ["--by", ",".join(by)]
    runs = [("accuracy", "markdown", grouped + (plots if plots_wanted else [])), ("accuracy", "csv", grouped),
            ("accuracy", "json", grouped)]
    if faithfulness:
        runs += [("faithfulness", "markdown", plots), ("faithfulness", "json", [])]
    if degradation and manifest is not None:
        runs += [("degradation", "markdown", plots), ("degradation", "json", [])]
    if manifest is not None:
        runs = [(report, fmt, extra + ["--manifest", manifest]) for report, fmt, extra in runs]
    written = []
    for report, fmt, extra in runs:
        if report == "accuracy" and fmt == "csv" and manifest is not None:
            continue  # rows of several kinds (accuracy and WER) do not fit one CSV table
        out = layout.report_file(report, fmt)
        argv = [report, str(layout.results_jsonl), *extra, "--format", fmt, "--out", str(out), "--quiet"]
        code = score_main(argv)
        if code != 0:
            raise RuntimeError(f"bin/score {' '.join(argv)} exited with {code}")
        written.append(str(out))
    return written


# --------------------------------------------------------------------------- launch

def active_jobs(record: LaunchRecord) -> List[str]:
    """Job ids of earlier submissions that SLURM still lists as pending or running."""
    ids = sorted({j.job_id.split("_")[0] for sub in record.submissions if sub.executor == "slurm"
                  for j in sub.jobs})
    if not ids or shutil.which("squeue") is None:
        return []
    out = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(ids)], capture_output=True, text=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def live_processes(record: LaunchRecord) -> List[Tuple[str, Process]]:
    """Processes of earlier launches still alive on this host: launchers that have not finished,
    and tasks (e.g. local tasks orphaned by a launcher that was killed), each with what it is."""
    me = Process.this()
    out = [("bin/launch", sub.launcher) for sub in record.submissions
           if sub.finished is None and sub.launcher.alive() and sub.launcher != me]
    out += [(f"task {task.label}", task.process) for task in TaskRecord.read_all(RunLayout(record.run_dir))
            if task.running_here()]
    return out


class Launch:
    """One ``bin/launch`` call: plan, submit, record, optionally wait.

    Args:
        sweep: the validated sweep (output already overridden by ``--out``).
        profile: the cluster profile.
        executor: ``slurm``, ``local`` or ``debug``.
        resume: continue an earlier launch of the same run folder (only unfinished tasks).
        use_pdb: ``debug`` executor: open pdb on an exception.
        retry_errors: with ``resume``: tasks with error rows are unfinished too, and run them
            again (the new rows supersede the error rows).
    """

    def __init__(self, sweep: Sweep, profile: ClusterProfile, executor: str, resume: bool = False,
                 use_pdb: bool = False, retry_errors: bool = False) -> None:
        self.sweep = sweep
        self.profile = profile
        self.executor_name = executor
        self.resume = resume
        self.use_pdb = use_pdb
        self.retry_errors = retry_errors
        self.record: Optional[LaunchRecord] = None
        self.refs: List[Tuple[str, JobRef]] = []

    def check_run_dir(self) -> Optional[LaunchRecord]:
        """The earlier record when resuming; refuses to mix with an earlier launch otherwise.

        Raises:
            InputError: the run folder has a launch and ``resume`` is off; or jobs or processes of
                the earlier launch are still queued or running (a second writer would corrupt
                its shard files).
        """
        layout = self.sweep.layout
        if not layout.launch_json.exists():
            return None
        if not self.resume:
            raise InputError("this run folder already has a launch; add --resume to continue it "
                             "(only unfinished tasks run), or choose another --out or experiment name",
                             layout.launch_json)
        record = LaunchRecord.read(layout.root)
        still = active_jobs(record)
        if still:
            raise InputError(f"jobs of the earlier launch are still queued or running ({', '.join(still)}); "
                             f"wait for them, or stop them with: scancel {' '.join(still)}", layout.launch_json)
        alive = live_processes(record)
        if alive:
            running = "; ".join(f"{what} ({process})" for what, process in alive)
            pids = " ".join(str(process.pid) for _, process in alive)
            raise InputError(f"processes of the earlier launch are still running: {running}; wait for them, or stop "
                             f"them with: kill {pids}", layout.launch_json)
        return record

    def plan(self) -> Tuple[Sweep, List[Task], List[ArrayPlan], Dict[str, List[UnitProgress]]]:
        """Materialise inputs and work out the arrays (only unfinished tasks when resuming)."""
        sweep = materialise_inputs(self.sweep)
        tasks = plan_tasks(sweep)
        pending, progress = pending_tasks(sweep, tasks, self.retry_errors)
        todo = pending if self.resume else tasks
        return sweep, tasks, plan_arrays(sweep, self.profile, todo), progress

    def dry_run_lines(self) -> List[str]:
        """What would be submitted: arrays (tasks, units per task, sbatch lines for SLURM), then merge and score."""
        sweep = self.sweep
        tasks = plan_tasks(sweep)
        arrays = plan_arrays(sweep, self.profile, tasks)
        slurm = self.executor_name == "slurm"  # #SBATCH lines mean nothing to the local and debug executors
        lines = [f"run folder: {sweep.run_dir}",
                 f"{len(sweep.models)} models x {len(sweep.datasets)} datasets x {len(sweep.conditions)} conditions "
                 f"x {len(sweep.modes)} modes x {sweep.runs} runs, {len(sweep.interventions)} interventions; "
                 f"{len(tasks)} tasks, {len(tasks)} model loads, {len(arrays)} arrays"]
        for i, array in enumerate(arrays):
            units = array.tasks[0].units if array.tasks else ()
            plain = sum(u.intervention is None for u in units)
            lines += ["", f"array {i}: model {array.model}, {len(array.tasks)} tasks x {len(units)} units "
                          f"({plain} inference, {len(units) - plain} intervention), "
                          f"python {array.python or 'current'}"]
            if slurm:
                lines += [f"  {line}" for line in array.preview(self.profile.array_parallelism)]
            else:
                lines.append(f"  {self.executor_name}: {min(self.profile.array_parallelism, len(array.tasks))} at a "
                             f"time on this machine")
            lines += [f"  task {j}: {t.label}" for j, t in enumerate(array.tasks[:3])]
            if len(array.tasks) > 3:
                lines.append(f"  ... {len(array.tasks) - 3} more tasks")
        lines += ["", "merge job (afterany on every array, then checks completeness)" + (":" if slurm else "")]
        if slurm:
            lines += [f"  {line}" for line in sbatch_preview(self._followup_params(f"{sweep.experiment}-merge"),
                                                              0, 1)]
        lines += ["score job (afterok on merge): bin/score accuracy results.jsonl --by " + ",".join(sweep.score_by)]
        return lines

    def _save(self) -> None:
        assert self.record is not None
        self.record.write()

    def submit(self, progress: bool = False) -> LaunchRecord:
        """Submit arrays, merge and score; returns the launch record (also in ``launch.json``).

        Args:
            progress: print rows per task while an executor that runs here (local, debug) works.
        """
        earlier = self.check_run_dir()
        sweep, tasks, arrays, _ = self.plan()
        sweep.run_dir.mkdir(parents=True, exist_ok=True)
        executor = make_executor(self.executor_name, sweep.layout.jobs_dir, self.use_pdb)
        submission = Submission(executor=self.executor_name, submitted=now(), resume=self.resume, tasks=len(tasks),
                                tasks_submitted=sum(len(a.tasks) for a in arrays), launcher=Process.this())
        self.record = LaunchRecord(experiment=sweep.experiment, run_dir=str(sweep.run_dir), sweep=sweep.to_dict(),
                                   profile=self.profile.to_dict(), units=expected_units(sweep),
                                   submissions=(earlier.submissions if earlier else []) + [submission])
        self._save()
        task_refs: List[JobRef] = []
        for array in arrays:
            refs = executor.submit_array([ShardTask(sweep, t, self.retry_errors) for t in array.tasks],
                                         [t.label for t in array.tasks],
                                         array.params, self.profile.array_parallelism, self.profile.max_requeues,
                                         array.python, TaskProgress(sweep, array.tasks) if progress else None)
            task_refs += refs
            submission.jobs += [_job(r, "task") for r in refs]
            self._save()
        self.refs = [("task", r) for r in task_refs]
        self._submit_followups(executor, sweep, task_refs, submission)
        return self.record

    def _followup_params(self, job_name: str) -> Dict[str, Any]:
        """submitit parameters of the merge and score jobs (the profile's ``merge`` settings)."""
        settings = self.profile.settings(merge=True)
        return submitit_parameters(settings, (settings.get("accounts") or [None])[0],
                                   list(settings.get("setup") or []), job_name)

    def _submit_followups(self, executor: Executor, sweep: Sweep, task_refs: List[JobRef],
                          submission: Submission) -> None:
        run_dir = str(sweep.run_dir)
        merge = executor.submit_after(functools.partial(merge_job, run_dir), "merge",
                                      self._followup_params(f"{sweep.experiment}-merge"), task_refs,
                                      require_success=False)
        submission.jobs.append(_job(merge, "merge"))
        self._save()
        faithfulness = bool(sweep.interventions) or any(c.startswith("inject-") for c in sweep.conditions)
        manifest, degradation, choices = _single_manifest(sweep)
        score = executor.submit_after(functools.partial(score_job, run_dir, list(sweep.score_by), faithfulness,
                                                        manifest, degradation, choices), "score",
                                      self._followup_params(f"{sweep.experiment}-score"), [merge],
                                      require_success=True)
        submission.jobs.append(_job(score, "score"))
        self.refs += [("merge", merge), ("score", score)]
        self._save()

    def wait(self, poll_s: float = 2.0) -> Dict[str, str]:
        """Block until every submitted job has ended; records and returns their states by label."""
        assert self.record is not None
        states = {}
        for kind, ref in self.refs:
            state = ref.wait(poll_s)
            states[f"{kind}:{ref.label}"] = state
            if state != "COMPLETED":
                log.warning("%s %s (%s) ended %s%s", kind, ref.label, ref.job_id, state,
                            f": {ref.error()}" if state.split()[0] in FINAL_STATES and state != "CANCELLED" else "")
        submission = self.record.submissions[-1]
        for job in submission.jobs:
            job.state = states.get(f"{job.kind}:{job.label}")
        submission.finished = now()
        self._save()
        return states


def _job(ref: JobRef, kind: str) -> Job:
    return Job(kind=kind, job_id=ref.job_id, label=ref.label)


# --------------------------------------------------------------------------- status

def run_status(run_dir: Pathlike) -> List[str]:
    """Progress of a launched run: rows per unit from the shard files, job states from the scheduler.

    Returns:
        Report lines.
    """
    record = LaunchRecord.read(run_dir)
    sweep = Sweep.from_dict(record.sweep)
    _, progress = pending_tasks(sweep, plan_tasks(sweep))
    totals: Dict[str, List[Optional[int]]] = {}
    for units in progress.values():
        for p in units:
            t = totals.setdefault(p.unit.label, [0, 0])
            t[0] += p.done
            t[1] = None if t[1] is None or p.expected is None else t[1] + p.expected
    width = max([len("unit")] + [len(label) for label in totals])
    lines = [f"{'unit':<{width}} {'rows':>14}"]
    for label, (done, expected) in sorted(totals.items()):
        shown = f"{done}/{'?' if expected is None else expected}"
        mark = "" if expected is not None and done >= expected else "  incomplete"
        lines.append(f"{label:<{width}} {shown:>14}{mark}")
    done = sum(t[0] or 0 for t in totals.values())
    known = [t[1] for t in totals.values()]
    lines.append(f"total: {done}/{sum(k or 0 for k in known)} rows" +
                 ("" if all(k is not None for k in known) else " (intervention units wait for their baselines)"))
    last = record.submissions[-1]
    states = _scheduler_states(last) if last.executor == "slurm" else {}
    counts: Dict[str, int] = {}
    for job in last.jobs:
        state = states.get(job.job_id) or job.state or "UNKNOWN"
        counts[f"{job.kind} {state}"] = counts.get(f"{job.kind} {state}", 0) + 1
    lines.append(f"jobs (last submission, {last.executor}): " +
                 (", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or
                  "none recorded (the launcher was stopped before it recorded them)"))
    if any(key.endswith(" UNKNOWN") for key in counts):
        lines.append("UNKNOWN: no scheduler knows the job and the launcher did not record how it ended (it was "
                     "stopped or killed first); the rows above are what was written")
    if any(t[1] is None or (t[0] or 0) < t[1] for t in totals.values()):
        lines.append("to finish: run the same bin/launch command again with --resume (only unfinished tasks are "
                     "submitted; rows already written are kept)")
    return lines


def _scheduler_states(submission: Submission) -> Dict[str, str]:
    """``job id -> state`` from ``sacct`` (empty when sacct is unavailable)."""
    ids = sorted({j.job_id.split("_")[0] for j in submission.jobs})
    if not ids or shutil.which("sacct") is None:
        return {}
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(ids)],
                         capture_output=True, text=True)
    states = {}
    for line in out.stdout.splitlines():
        if "|" in line:
            job_id, state = line.split("|", 1)
            states[job_id] = state.split()[0]
    for job in submission.jobs:  # an array task may be listed under its array's range
        if job.job_id not in states and job.job_id.split("_")[0] in states:
            states[job.job_id] = states[job.job_id.split("_")[0]]
    return states

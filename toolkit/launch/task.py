"""What one array task runs on its node: load the model once, run every unit of its shard.

A :class:`ShardTask` is pickled by submitit and called on the node. It resumes inside its
shard files (rows already written are skipped, a torn last line is cut), so a task that
is requeued - by a timeout, a preemption or ``scontrol requeue`` - or resubmitted with
``bin/launch --resume`` continues where the previous attempt stopped and never writes a
row twice. On a timeout or preemption signal submitit calls :meth:`ShardTask.checkpoint`
and requeues the task (up to the profile's ``max_requeues``). Every attempt records its
pid and host (:class:`toolkit.runs.record.TaskRecord`), so a resumed launch can refuse
while an earlier attempt is still alive; the shard files' writer locks refuse a second
writer in any case.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

import submitit

from toolkit.launch.sweep import Sweep, Task
from toolkit.rows import RowKey
from toolkit.runs import Unit, read_done, select_shard
from toolkit.runs.record import Process, TaskRecord, now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnitProgress:
    """Rows written vs rows expected for one unit of one shard.

    Attributes:
        unit: the unit.
        path: its shard file.
        done: expected keys present.
        expected: expected keys, or None while an intervention unit's baseline is unfinished
            (its variants are not known yet).
    """

    unit: Unit
    path: Path
    done: int
    expected: Optional[int]

    @property
    def complete(self) -> bool:
        """Every expected key is in the shard file."""
        return self.expected is not None and self.done >= self.expected


def _baseline_unit(unit: Unit) -> Unit:
    """The reasoning unit an intervention unit starts from."""
    return Unit(unit.model, unit.dataset, unit.condition, unit.mode, shards=unit.shards, num_runs=unit.num_runs,
                manifest=unit.manifest, data_root=unit.data_root, seed=unit.seed)


def unit_progress(sweep: Sweep, task: Task, items: List[Any], retry_errors: bool = False) -> List[UnitProgress]:
    """How far each unit of ``task`` is, read from its shard files.

    Args:
        sweep: the sweep (output folder).
        task: the task.
        items: the dataset manifest's items in manifest order.
        retry_errors: a key whose latest row carries an error is not done (``--retry-errors``).

    Returns:
        One entry per unit; rows of keys the unit does not expect do not count. An
        intervention unit's expected keys follow from its baseline rows once the baseline
        unit is complete (:meth:`toolkit.runs.Unit.expected_keys`).
    """
    from toolkit.interventions.rewrite import MissingRewrites
    from toolkit.interventions.runner import load_baselines

    layout = sweep.layout
    shard_items = select_shard(items, task.shard, task.dataset.shards)
    out: List[UnitProgress] = []
    complete: Dict[Unit, bool] = {}
    for unit in task.units:
        path = layout.shard_path(unit, task.shard)
        done_keys = read_done(path, retry_errors) if path.exists() else set()
        expected: Optional[Set[RowKey]]
        if unit.intervention is None:
            expected = unit.expected_keys(shard_items)
        elif complete.get(_baseline_unit(unit)):
            baselines = load_baselines(layout.shard_path(_baseline_unit(unit), task.shard), shard_items)
            try:
                expected = unit.expected_keys(shard_items, baselines, path)
            except MissingRewrites:  # the task produces them first
                expected = None
        else:
            expected = None
        progress = UnitProgress(unit, path, len(done_keys if expected is None else done_keys & expected),
                                None if expected is None else len(expected))
        complete[unit] = progress.complete
        out.append(progress)
    return out


class ShardTask(submitit.helpers.Checkpointable):
    """A picklable array task: ``ShardTask(sweep, task)()`` runs every pending unit of the task.

    Args:
        sweep: the sweep (with inputs already materialised: manifests and model paths exist).
        task: which model, dataset shard and units.
        retry_errors: run error rows again (``bin/launch --resume --retry-errors``).
    """

    def __init__(self, sweep: Sweep, task: Task, retry_errors: bool = False) -> None:
        self.sweep = sweep
        self.task = task
        self.retry_errors = retry_errors

    def __call__(self) -> Dict[str, Any]:
        """Run the task; returns counts per unit (done, skipped, failed rows) and timings."""
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        record = TaskRecord(self.task.label, Process.this(), now(), job_id=_job_id())
        record.write(self.sweep.layout)
        try:
            return run_task(self.sweep, self.task, self.retry_errors)
        finally:
            record.ended = now()
            record.write(self.sweep.layout)


def _job_id() -> Optional[str]:
    try:
        return str(submitit.JobEnvironment().job_id)
    except RuntimeError:  # not inside a submitit job (the debug executor)
        return None


def _backend(task: Task) -> Any:
    from toolkit.models.base import LoadOptions
    from toolkit.models.registry import load_backend

    return load_backend(task.model.backend, task.model.path, LoadOptions(**task.model.load))


def _config(sweep: Sweep, task: Task, unit: Unit) -> Any:
    from toolkit.infer import InferConfig
    from toolkit.interventions import parse_intervention
    from toolkit.interventions.protocol import parse_protocol
    from toolkit.models.base import GenerationSettings
    from toolkit.models.registry import get_backend_class
    from toolkit.prompts import get_prompt

    prompts: Mapping[str, str] = {**sweep.prompts, **task.model.prompts}
    if unit.intervention is not None and parse_intervention(unit.intervention).needs_reasoning:
        prompt = get_prompt(parse_protocol(unit.protocol or "toolkit").conditioned_template)
    elif unit.intervention is not None:
        prompt = get_prompt(prompts["reasoning"])
    else:
        prompt = get_prompt(prompts[unit.mode])
    gen = {**sweep.generation, **task.model.generation}
    budget = gen.get("max_new_tokens") or get_backend_class(task.model.backend).default_max_new_tokens(prompt)
    settings = GenerationSettings(max_new_tokens=budget, do_sample=bool(gen.get("sample", False)),
                                  temperature=gen.get("temperature", 1.0), top_p=gen.get("top_p", 1.0),
                                  num_beams=gen.get("num_beams", 1), defaults=gen.get("defaults", "clean"))
    reading = parse_protocol(unit.protocol).reading if unit.protocol else "text"
    return InferConfig(model=task.model.backend, model_label=task.model.name, mode=unit.mode, prompt=prompt,
                       settings=settings, condition=unit.condition, num_runs=sweep.runs,
                       batch_size=task.model.batch_size, seed=sweep.seed, score_options=reading == "logprobs")


def run_task(sweep: Sweep, task: Task, retry_errors: bool = False) -> Dict[str, Any]:
    """Load the model once (only if some unit is unfinished) and run the task's pending units.

    Args:
        sweep: the sweep.
        task: the task.
        retry_errors: error rows count as unfinished and run again (their new rows supersede them).

    Returns:
        ``{"task": label, "model_loads": 0|1, "load_seconds", "units": [{unit, done, skipped, failed}]}``.
    """
    from toolkit.answers import preload
    from toolkit.infer import run_inference
    from toolkit.interventions import parse_intervention
    from toolkit.interventions.protocol import parse_protocol
    from toolkit.interventions.rewrite import RewriteIntervention, ensure_rewrites
    from toolkit.interventions.runner import load_baselines, run_condition, runnable_baselines
    from toolkit.manifest import read_manifest

    ds = task.dataset
    items = read_manifest(sweep.manifest_of(ds))
    pending = [p.unit for p in unit_progress(sweep, task, items, retry_errors) if not p.complete]
    result: Dict[str, Any] = {"task": task.label, "model_loads": 0, "load_seconds": 0.0, "units": []}
    if not pending:
        log.info("%s: every unit is complete; nothing to do", task.label)
        return result
    start = time.perf_counter()
    backend = _backend(task)
    preload()
    result.update(model_loads=1, load_seconds=round(time.perf_counter() - start, 3))
    hints = sweep.hint_bank()
    layout = sweep.layout
    shard: Tuple[int, int] = (task.shard, ds.shards)
    for unit in pending:
        config = _config(sweep, task, unit)
        out = layout.shard_path(unit, task.shard)
        data_root = unit.data_root
        if unit.intervention is not None:
            baseline = layout.shard_path(_baseline_unit(unit), task.shard)
            shard_items = select_shard(items, *shard)
            baselines = load_baselines(baseline, shard_items, condition=unit.condition)
            intervention = parse_intervention(unit.intervention).for_output(out)
            protocol = parse_protocol(unit.protocol or "toolkit")
            if isinstance(intervention, RewriteIntervention):
                rw = sweep.rewriter
                ensure_rewrites(intervention, runnable_baselines(baselines, shard_items, intervention, protocol),
                                protocol, rw.get("path"), rw.get("device", "auto"), rw.get("dtype", "auto"),
                                rw.get("batch_size", 8))
            summary = run_condition(items, baselines, intervention, backend, config, out, data_root, protocol,
                                    shard=shard, manifest=unit.manifest, baseline_file=baseline, progress=False,
                                    hints=hints, retry_errors=retry_errors)
        else:
            summary = run_inference(items, backend, config, out, data_root, shard=shard, manifest=unit.manifest,
                                    progress=False, hints=hints, retry_errors=retry_errors)
        result["units"].append({"unit": unit.label, "done": summary.done, "skipped": summary.skipped,
                                "failed": summary.failed})
    return result


def pending_tasks(sweep: Sweep, tasks: List[Task],
                  retry_errors: bool = False) -> Tuple[List[Task], Dict[str, List[UnitProgress]]]:
    """The tasks with at least one unfinished unit (with ``retry_errors``: or an error row), and
    the progress of every task by label."""
    from toolkit.manifest import read_manifest

    items_by_manifest: Dict[Path, List[Any]] = {}
    progress: Dict[str, List[UnitProgress]] = {}
    out = []
    for task in tasks:
        manifest = sweep.manifest_of(task.dataset)
        if manifest not in items_by_manifest:
            items_by_manifest[manifest] = read_manifest(manifest) if manifest.exists() else []
        progress[task.label] = unit_progress(sweep, task, items_by_manifest[manifest], retry_errors)
        if not all(u.complete for u in progress[task.label]):
            out.append(task)
    return out, progress

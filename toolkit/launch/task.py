"""What one array task runs on its node: load the model once, run every unit of its shard.

A :class:`ShardTask` is pickled by submitit and called on the node. It resumes inside its
shard files (rows already written are skipped, a torn last line is cut), so a task that
is requeued - by a timeout, a preemption or ``scontrol requeue`` - or resubmitted with
``bin/launch --resume`` continues where the previous attempt stopped and never writes a
row twice. On a timeout or preemption signal submitit calls :meth:`ShardTask.checkpoint`
and requeues the task (up to the profile's ``max_requeues``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

import submitit

from toolkit.launch.sweep import Sweep, Task
from toolkit.runs import read_done, select_shard, shard_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnitProgress:
    """Rows written vs rows expected for one (condition, mode) unit of one shard."""

    condition: str
    mode: str
    path: Path
    done: int
    expected: int

    @property
    def complete(self) -> bool:
        """Every expected (id, run) row is in the shard file."""
        return self.done >= self.expected


def _path(sweep: Sweep, task: Task, condition: str, mode: str) -> Path:
    return shard_path(sweep.output, sweep.experiment, task.model.name, task.dataset.name, condition, mode,
                      task.shard, task.dataset.shards)


def _conditioned_expected(sweep: Sweep, task: Task, condition: str, mode: str, items: Optional[List[Any]],
                          baseline_complete: bool) -> Optional[Set[Tuple[str, int, str]]]:
    """The (id, run, variant) keys an intervention unit must write, known once its baseline is complete."""
    from toolkit.interventions.runner import load_baselines, plan_condition_units

    if not baseline_complete or items is None:
        return None
    shard_items = select_shard(items, task.shard, task.dataset.shards)
    baselines = load_baselines(_path(sweep, task, condition, "reasoning"), shard_items)
    units, _ = plan_condition_units(shard_items, baselines, sweep.intervention(mode), sweep.seed, set())
    return {(u.item.id, u.run, "" if u.variant is None else u.variant.key) for u in units}


def unit_progress(sweep: Sweep, task: Task, ids: List[str], items: Optional[List[Any]] = None) -> List[UnitProgress]:
    """How far each unit of ``task`` is, read from its shard files.

    Args:
        sweep: the sweep (output folder, runs).
        task: the task.
        ids: the dataset manifest's ids in manifest order.
        items: the manifest's items, needed to count intervention units (their variants
            depend on the baseline rows); without them those units count as unfinished.

    Returns:
        One entry per (condition, mode) unit; rows of ids outside the shard do not count.
        An intervention unit whose baseline is unfinished expects one row per id and run.
    """
    n = task.dataset.shards
    plain = {(i, r, "") for i in select_shard(ids, task.shard, n) for r in range(sweep.runs)}
    out: List[UnitProgress] = []
    complete: Dict[str, bool] = {}
    for condition, mode in task.units:
        path = _path(sweep, task, condition, mode)
        done_keys = read_done(path) if path.exists() else set()
        expected: Optional[Set[Tuple[str, int, str]]] = plain
        if mode.startswith("conditioned:"):
            expected = _conditioned_expected(sweep, task, condition, mode, items, complete.get(condition, False))
        if expected is None:
            out.append(UnitProgress(condition, mode, path, len(done_keys), max(len(plain), len(done_keys) + 1)))
            continue
        done = len(done_keys & expected)
        if mode == "reasoning":
            complete[condition] = done >= len(expected)
        out.append(UnitProgress(condition, mode, path, done, len(expected)))
    return out


class ShardTask(submitit.helpers.Checkpointable):
    """A picklable array task: ``ShardTask(sweep, task)()`` runs every pending unit of the task.

    Args:
        sweep: the sweep (with inputs already materialised: manifests and model paths exist).
        task: which model, dataset shard and units.
    """

    def __init__(self, sweep: Sweep, task: Task) -> None:
        self.sweep = sweep
        self.task = task

    def __call__(self) -> Dict[str, Any]:
        """Run the task; returns counts per unit (done, skipped, failed rows) and timings."""
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return run_task(self.sweep, self.task)


def _backend(sweep: Sweep, task: Task) -> Any:
    from toolkit.models.base import LoadOptions
    from toolkit.models.registry import load_backend

    return load_backend(task.model.backend, task.model.path, LoadOptions(**task.model.load))


def _config(sweep: Sweep, task: Task, condition: str, mode: str) -> Any:
    from toolkit.infer import InferConfig
    from toolkit.models.base import GenerationSettings
    from toolkit.prompts import get_prompt

    prompts = {**sweep.prompts, **task.model.prompts}
    if mode.startswith("conditioned:"):
        prompt = get_prompt(prompts["conditioned" if sweep.intervention(mode).needs_reasoning else "reasoning"])
    else:
        prompt = get_prompt(prompts[mode])
    gen = {**sweep.generation, **task.model.generation}
    settings = GenerationSettings(max_new_tokens=gen.get("max_new_tokens") or prompt.max_new_tokens,
                                  do_sample=bool(gen.get("sample", False)), temperature=gen.get("temperature", 1.0),
                                  top_p=gen.get("top_p", 1.0), num_beams=gen.get("num_beams", 1))
    return InferConfig(model=task.model.backend, model_label=task.model.name, mode=mode, prompt=prompt,
                       settings=settings, condition=condition, num_runs=sweep.runs,
                       batch_size=task.model.batch_size, seed=sweep.seed)


def run_task(sweep: Sweep, task: Task) -> Dict[str, Any]:
    """Load the model once (only if some unit is unfinished) and run the task's pending units.

    Args:
        sweep: the sweep.
        task: the task.

    Returns:
        ``{"task": label, "model_loads": 0|1, "load_seconds", "units": [{condition, mode,
        done, skipped, failed}]}``.
    """
    from toolkit.answers import preload
    from toolkit.infer import run_inference
    from toolkit.manifest import read_manifest

    ds = task.dataset
    items = read_manifest(ds.manifest)
    pending = [u for u in unit_progress(sweep, task, [it.id for it in items], items) if not u.complete]
    result: Dict[str, Any] = {"task": task.label, "model_loads": 0, "load_seconds": 0.0, "units": []}
    if not pending:
        log.info("%s: every unit is complete; nothing to do", task.label)
        return result
    start = time.perf_counter()
    backend = _backend(sweep, task)
    preload()
    result.update(model_loads=1, load_seconds=round(time.perf_counter() - start, 3))
    hints = sweep.hint_bank()
    for unit in pending:
        config = _config(sweep, task, unit.condition, unit.mode)
        if unit.mode.startswith("conditioned:"):
            from toolkit.interventions.runner import load_baselines, run_condition

            baseline = _path(sweep, task, unit.condition, "reasoning")
            summary = run_condition(items, load_baselines(baseline, select_shard(items, task.shard, ds.shards)),
                                    sweep.intervention(unit.mode), backend, config, unit.path, ds.data_root,
                                    placement=sweep.placement, shard=(task.shard, ds.shards), manifest=ds.manifest,
                                    baseline_file=baseline, progress=False, hints=hints)
        else:
            summary = run_inference(items, backend, config, unit.path, ds.data_root, shard=(task.shard, ds.shards),
                                    manifest=ds.manifest, progress=False, hints=hints)
        result["units"].append({"condition": unit.condition, "mode": unit.mode, "done": summary.done,
                                "skipped": summary.skipped, "failed": summary.failed})
    return result


def pending_tasks(sweep: Sweep, tasks: List[Task]) -> Tuple[List[Task], Dict[str, List[UnitProgress]]]:
    """The tasks with at least one unfinished unit, and the progress of every task by label."""
    from toolkit.manifest import read_manifest
    from toolkit.store import read_manifest_ids

    ids_by_manifest: Dict[Optional[Path], List[str]] = {}
    items_by_manifest: Dict[Optional[Path], List[Any]] = {}
    progress: Dict[str, List[UnitProgress]] = {}
    out = []
    for task in tasks:
        manifest = task.dataset.manifest
        if manifest not in ids_by_manifest:
            items = read_manifest(manifest) if manifest.exists() and sweep.interventions else None
            if items is not None:
                items_by_manifest[manifest] = items
            ids_by_manifest[manifest] = [it.id for it in items] if items is not None else \
                read_manifest_ids(manifest) if manifest.exists() else []
        progress[task.label] = unit_progress(sweep, task, ids_by_manifest[manifest], items_by_manifest.get(manifest))
        if not all(u.complete for u in progress[task.label]):
            out.append(task)
    return out, progress

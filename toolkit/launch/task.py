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
from typing import Any, Dict, List, Optional, Tuple

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


def unit_progress(sweep: Sweep, task: Task, ids: List[str]) -> List[UnitProgress]:
    """How far each unit of ``task`` is, read from its shard files.

    Args:
        sweep: the sweep (output folder, runs).
        task: the task.
        ids: the dataset manifest's ids in manifest order.

    Returns:
        One entry per (condition, mode) unit; rows of ids outside the shard do not count.
    """
    n = task.dataset.shards
    expected = {(i, r, "") for i in select_shard(ids, task.shard, n) for r in range(sweep.runs)}
    out = []
    for condition, mode in task.units:
        path = shard_path(sweep.output, sweep.experiment, task.model.name, task.dataset.name, condition, mode,
                          task.shard, n)
        done = len(read_done(path) & expected) if path.exists() else 0
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

    prompt = get_prompt(sweep.prompts[mode])
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
    pending = [u for u in unit_progress(sweep, task, [it.id for it in items]) if not u.complete]
    result: Dict[str, Any] = {"task": task.label, "model_loads": 0, "load_seconds": 0.0, "units": []}
    if not pending:
        log.info("%s: every unit is complete; nothing to do", task.label)
        return result
    start = time.perf_counter()
    backend = _backend(sweep, task)
    preload()
    result.update(model_loads=1, load_seconds=round(time.perf_counter() - start, 3))
    for unit in pending:
        config = _config(sweep, task, unit.condition, unit.mode)
        summary = run_inference(items, backend, config, unit.path, ds.data_root, shard=(task.shard, ds.shards),
                                manifest=ds.manifest, progress=False)
        result["units"].append({"condition": unit.condition, "mode": unit.mode, "done": summary.done,
                                "skipped": summary.skipped, "failed": summary.failed})
    return result


def pending_tasks(sweep: Sweep, tasks: List[Task]) -> Tuple[List[Task], Dict[str, List[UnitProgress]]]:
    """The tasks with at least one unfinished unit, and the progress of every task by label."""
    from toolkit.manifest import read_manifest

    ids_by_manifest: Dict[Optional[Path], List[str]] = {}
    progress: Dict[str, List[UnitProgress]] = {}
    out = []
    for task in tasks:
        manifest = task.dataset.manifest
        if manifest not in ids_by_manifest:
            ids_by_manifest[manifest] = [it.id for it in read_manifest(manifest)] if manifest.exists() else []
        progress[task.label] = unit_progress(sweep, task, ids_by_manifest[manifest])
        if not all(u.complete for u in progress[task.label]):
            out.append(task)
    return out, progress

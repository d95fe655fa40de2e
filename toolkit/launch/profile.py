"""Cluster profiles: where and how jobs run (partition, accounts, GPUs, limits), never in code.

A profile is a YAML file (``slurm/profiles/``). Top-level keys apply to every array task;
``models.<name>`` overrides them for one sweep model; ``merge`` overrides them for the
merge and score jobs. Unknown keys are rejected with the valid list.

Example profile::

    partition: gpu
    accounts: [proj-a, proj-b]     # arrays rotate over these
    gres: "gpu:a100:1"
    cpus_per_task: 8
    mem_gb: 64
    time_min: 240
    array_parallelism: 16
    max_array_size: 1000
    max_requeues: 3
    setup: ["module load cuda/12.1"]
    models:
      qwen2-audio: {time_min: 120, setup: ["source ~/venvs/qwen/bin/activate"]}
    merge: {partition: cpu, gres: null, cpus_per_task: 2, mem_gb: 8, time_min: 30}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from toolkit.errors import InputError, Pathlike

#: job settings a profile may set, with their defaults (``None``: left to the cluster)
JOB_KEYS: Dict[str, Any] = {
    "partition": None,
    "accounts": None,
    "qos": None,
    "gres": None,
    "gpus_per_node": None,
    "cpus_per_task": 2,
    "mem_gb": 8,
    "time_min": 60,
    "signal_delay_s": 120,
    "constraint": None,
    "exclude": None,
    "extra_sbatch": None,
    "setup": None,
    "python": None,
}
#: settings of the whole launch
LAUNCH_KEYS: Dict[str, Any] = {"array_parallelism": 64, "max_array_size": 1000, "max_requeues": 3}


@dataclass(frozen=True)
class ClusterProfile:
    """A validated cluster profile.

    Attributes:
        source: the YAML file (None for the built-in defaults).
        job: settings of every array task (:data:`JOB_KEYS`).
        per_model: overrides per sweep model name.
        merge: overrides for the merge and score jobs.
        array_parallelism: tasks of one array running at once (``%N``); also the number of
            local subprocesses at once for ``--executor local``.
        max_array_size: the cluster's MaxArraySize; larger task lists are split into arrays.
        max_requeues: how often a task requeues itself after a timeout or preemption.
    """

    source: Optional[Path] = None
    job: Dict[str, Any] = field(default_factory=lambda: dict(JOB_KEYS))
    per_model: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    merge: Dict[str, Any] = field(default_factory=dict)
    array_parallelism: int = LAUNCH_KEYS["array_parallelism"]
    max_array_size: int = LAUNCH_KEYS["max_array_size"]
    max_requeues: int = LAUNCH_KEYS["max_requeues"]

    def settings(self, model: Optional[str] = None, merge: bool = False) -> Dict[str, Any]:
        """Job settings for a model's tasks (or for the merge/score jobs), overrides applied."""
        out = dict(self.job)
        out.update(self.merge if merge else self.per_model.get(model or "", {}))
        return out

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready form, recorded in ``launch.json``."""
        return {"source": None if self.source is None else str(self.source), "job": self.job,
                "per_model": self.per_model, "merge": self.merge, "array_parallelism": self.array_parallelism,
                "max_array_size": self.max_array_size, "max_requeues": self.max_requeues}


def _check_job(where: str, raw: Any, problems: List[str]) -> Dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: must be a mapping")
        return {}
    for key in sorted(set(raw) - set(JOB_KEYS)):
        problems.append(f"{where}: unknown key {key!r} (valid: {', '.join(sorted(JOB_KEYS))})")
    out = {k: v for k, v in raw.items() if k in JOB_KEYS}
    for key in ("cpus_per_task", "time_min", "gpus_per_node", "signal_delay_s"):
        if out.get(key) is not None and (isinstance(out[key], bool) or not isinstance(out[key], int) or out[key] < 0):
            problems.append(f"{where}.{key}: must be a non-negative integer, not {out[key]!r}")
    if out.get("mem_gb") is not None and not isinstance(out["mem_gb"], (int, float)):
        problems.append(f"{where}.mem_gb: must be a number, not {out['mem_gb']!r}")
    if isinstance(out.get("accounts"), str):
        out["accounts"] = [out["accounts"]]
    for key in ("setup", "accounts"):
        value = out.get(key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            problems.append(f"{where}.{key}: must be a list of strings")
    if out.get("extra_sbatch") is not None and not isinstance(out["extra_sbatch"], Mapping):
        problems.append(f"{where}.extra_sbatch: must be a mapping of sbatch option -> value")
    return out


def load_profile(path: Optional[Pathlike]) -> ClusterProfile:
    """Read and validate a cluster profile; ``None`` gives the defaults.

    Raises:
        InputError: unreadable file, unknown keys or bad values (all listed at once).
    """
    import yaml

    if path is None:
        return ClusterProfile()
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise InputError(f"cannot read profile: {exc.strerror}", path) from None
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {exc}", path) from None
    problems: List[str] = []
    if not isinstance(raw, Mapping):
        raise InputError("a profile must be a mapping", path)
    allowed = set(JOB_KEYS) | set(LAUNCH_KEYS) | {"models", "merge"}
    for key in sorted(set(raw) - allowed):
        problems.append(f"profile: unknown key {key!r} (valid: {', '.join(sorted(allowed))})")
    job = dict(JOB_KEYS)
    job.update(_check_job("profile", {k: v for k, v in raw.items() if k in JOB_KEYS}, problems))
    per_model = {str(name): _check_job(f"models.{name}", over, problems)
                 for name, over in (raw.get("models") or {}).items()}
    merge = _check_job("merge", raw.get("merge"), problems)
    launch = {k: raw.get(k, v) for k, v in LAUNCH_KEYS.items()}
    for key, value in launch.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "max_requeues" else 1):
            problems.append(f"profile.{key}: must be a positive integer, not {value!r}")
    if problems:
        raise InputError("invalid cluster profile:\n  " + "\n  ".join(problems), path)
    return ClusterProfile(source=path.resolve(), job=job, per_model=per_model, merge=merge, **launch)


def submitit_parameters(settings: Mapping[str, Any], account: Optional[str], setup: List[str],
                        job_name: str) -> Dict[str, Any]:
    """Translate job settings into submitit ``AutoExecutor.update_parameters`` keywords.

    Args:
        settings: from :meth:`ClusterProfile.settings`.
        account: the account for this array (profiles may rotate several).
        setup: shell lines run before the task (profile's, then the model's).
        job_name: the SLURM job name.

    Returns:
        Keyword arguments; generic ones (``timeout_min``, ``cpus_per_task``, ``mem_gb``)
        apply to every executor, ``slurm_*`` ones only on SLURM.
    """
    params: Dict[str, Any] = {"name": job_name, "timeout_min": settings["time_min"],
                              "cpus_per_task": settings["cpus_per_task"], "mem_gb": settings["mem_gb"],
                              "slurm_signal_delay_s": settings["signal_delay_s"]}
    if settings.get("gpus_per_node") is not None:
        params["gpus_per_node"] = settings["gpus_per_node"]
    for key, name in (("partition", "slurm_partition"), ("qos", "slurm_qos"), ("gres", "slurm_gres"),
                      ("constraint", "slurm_constraint"), ("exclude", "slurm_exclude")):
        if settings.get(key) is not None:
            params[name] = settings[key]
    if account is not None:
        params["slurm_account"] = account
    if setup:
        params["slurm_setup"] = list(setup)
    if settings.get("extra_sbatch"):
        params["slurm_additional_parameters"] = {str(k): v for k, v in settings["extra_sbatch"].items()}
    return params

"""The run folder: every path in it is formatted and parsed here, and nowhere else.

A run folder (``<output>/<experiment>``, written by ``bin/launch`` or by shell loops over
``bin/infer --shard``) holds::

    RUN/launch.json                                       the launch record (bin/launch)
    RUN/<model>/<dataset>/<condition>/<unit dir>/shard-KKKKK-of-NNNNN.jsonl   (+ .meta.json, .lock)
    RUN/results.jsonl, results.h5, missing.jsonl           written by bin/merge (+ sidecars)
    RUN/score.md|csv|json, faithfulness.*, degradation.*, plots/   written by the score job
    RUN/_inputs/data/<dataset>/, _inputs/models/<model>/   generated inputs (demo set, tiny models)
    RUN/_jobs/<job id>/                                     submitit job files and logs
    RUN/_tasks/<task>.json                                  pid and host of each task's last start
    RUN/_quarantine/...                                     rows bin/merge --dedupe moved out of shard files

The unit dir is the mode (``reasoning``, ``direct``) for inference units and
``<mode>+<intervention>`` (``reasoning+truncate``) for ``bin/condition`` units. A
:class:`Unit` is one (model, dataset, condition, mode, intervention) cell, sharded: its
expected row keys (:meth:`Unit.expected_keys`) are what ``launch`` waits for and what
``merge`` checks, so completeness means the same thing everywhere.

Example:
    >>> layout = RunLayout("runs/exp")
    >>> unit = Unit("qwen2-audio", "sakura", "clean", "reasoning", "truncate", shards=16)
    >>> layout.shard_path(unit, 3).as_posix()
    'runs/exp/qwen2-audio/sakura/clean/reasoning+truncate/shard-00003-of-00016.jsonl'
    >>> layout.parse_shard_path(layout.shard_path(unit, 3))
    (UnitKey(model='qwen2-audio', dataset='sakura', condition='clean', mode='reasoning', intervention='truncate'), 3, 16)
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import (TYPE_CHECKING, Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Set, Tuple,
                    TypeVar, Union)

from toolkit.errors import InputError, Pathlike
from toolkit.rows import RowKey

if TYPE_CHECKING:
    from toolkit.interventions.base import Baseline
    from toolkit.manifest import Item

T = TypeVar("T")
MODES = ("reasoning", "direct")
_SHARD_SPEC = re.compile(r"^(\d+)/(\d+)$")
_SHARD_NAME = re.compile(r"^shard-(\d{5,})-of-(\d{5,})\.jsonl$")


# --------------------------------------------------------------------------- shards

def parse_shard(spec: str) -> Tuple[int, int]:
    """``"3/16"`` -> ``(3, 16)``: shard K (0-based, like a SLURM array task id) of N.

    Raises:
        ValueError: malformed spec or K outside 0..N-1.
    """
    match = _SHARD_SPEC.match(spec.strip())
    if not match:
        raise ValueError(f"shard must look like K/N (e.g. 0/4), not {spec!r}")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"shard {spec!r}: need N >= 1 and 0 <= K < N")
    return k, n


def shard_of(position: int, n: int) -> int:
    """The shard (of ``n``) holding the item at ``position`` of the manifest (round robin)."""
    return position % n


def select_shard(items: Sequence[T], k: int, n: int) -> List[T]:
    """Shard ``k`` of ``n``: every n-th item starting at position k (round robin).

    Round robin keeps shards the same size and mixes short and long clips; the slice
    depends only on the manifest order, so every node computes the same one.

    Example:
        >>> select_shard(list("abcdefg"), 1, 3)
        ['b', 'e']
    """
    return list(items[k::n])


# --------------------------------------------------------------------------- units

class UnitKey(NamedTuple):
    """What names a unit: its folder under the run folder and its HDF5 group."""

    model: str
    dataset: str
    condition: str
    mode: str
    intervention: Optional[str]


@dataclass(frozen=True)
class Unit:
    """One (model, dataset, condition, mode, intervention) cell of a run, split into shards.

    Attributes:
        model: model label.
        dataset: dataset name.
        condition: canonical audio condition.
        mode: ``reasoning`` or ``direct``; an intervention unit has its baseline's mode.
        intervention: the ``bin/condition`` intervention's canonical spec
            (``filler-dots:position=end,step=0.25``), None for inference units.
        shards: N.
        num_runs: runs per item (an intervention unit has its baseline's runs).
        manifest: the manifest (absolute path).
        data_root: where relative audio paths resolve.
        seed: the global seed (intervention variants such as ``shuffle`` depend on it).
        protocol: intervention units: the resolved protocol's spec
            (:attr:`toolkit.interventions.protocol.Protocol.spec`; None: the toolkit preset).
    """

    model: str
    dataset: str
    condition: str
    mode: str
    intervention: Optional[str] = None
    shards: int = 1
    num_runs: int = 1
    manifest: Optional[str] = None
    data_root: Optional[str] = None
    seed: int = 0
    protocol: Optional[str] = None

    def __post_init__(self) -> None:
        for name in ("model", "dataset", "condition"):
            value = getattr(self, name)
            if not value or "/" in value or value in (".", ".."):
                raise ValueError(f"{name} {value!r} cannot be a path component")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")

    @property
    def intervention_name(self) -> Optional[str]:
        """The intervention's name (the spec without parameters), None for inference units."""
        return None if self.intervention is None else self.intervention.partition(":")[0]

    @property
    def key(self) -> UnitKey:
        """(model, dataset, condition, mode, intervention name)."""
        return UnitKey(self.model, self.dataset, self.condition, self.mode, self.intervention_name)

    @property
    def label(self) -> str:
        """``model/dataset/condition/<unit dir>``: the folder under the run folder and the HDF5 group."""
        return "/".join((self.model, self.dataset, self.condition, unit_dir_name(self.mode, self.intervention_name)))

    def expected_keys(self, items: Sequence[Union["Item", str]],
                      baselines: Optional[Mapping[Tuple[str, int], "Baseline"]] = None,
                      shard_file: Optional[Path] = None) -> Set[RowKey]:
        """The row keys (id, run, variant) this unit must hold for ``items`` (one shard's, or all).

        Inference units: every item x run with variant "". Intervention units: every variant
        the intervention makes of each baseline (an item without a usable baseline gets one
        error row, variant ""), so a half-written curve is never complete.

        Args:
            items: the items (a shard's slice for one shard file); an inference unit takes their
                ids too (its keys need nothing else).
            baselines: intervention units: the baseline rows by (id, run)
                (:func:`toolkit.interventions.runner.load_baselines`).
            shard_file: the shard file the keys are for (a ``rewrite-*`` intervention with
                ``cache=auto`` reads the rewrites beside it).

        Raises:
            ValueError: an intervention unit without ``baselines``.
            MissingRewrites: a ``rewrite-*`` unit whose rewrites are not all produced yet.
        """
        if self.intervention is None:
            ids = [item if isinstance(item, str) else item.id for item in items]
            return {(item_id, run, "") for item_id in ids for run in range(self.num_runs)}
        if baselines is None:
            raise ValueError(f"{self.label}: the expected rows of an intervention unit depend on its baseline rows")
        from toolkit.interventions import parse_intervention
        from toolkit.interventions.protocol import parse_protocol
        from toolkit.interventions.runner import plan_variants

        intervention = parse_intervention(self.intervention)
        if shard_file is not None:
            intervention = intervention.for_output(shard_file)
        protocol = parse_protocol(self.protocol or "toolkit")
        return {(planned.item.id, planned.run, planned.key)
                for planned in plan_variants(items, baselines, intervention, self.seed, protocol)}

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready form (``launch.json``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Unit":
        """The inverse of :meth:`to_dict`.

        Raises:
            ValueError: a missing or invalid field.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown unit field(s) {', '.join(unknown)}")
        for name in ("model", "dataset", "condition", "mode", "manifest"):
            if not isinstance(raw.get(name), str):
                raise ValueError(f"a unit needs a string {name!r}")
        if raw.get("protocol") is not None and raw.get("intervention") is None:
            raise ValueError("only intervention units have a protocol")
        for name in ("shards", "num_runs"):
            value = raw.get(name, 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, not {value!r}")
        return cls(**raw)


def unit_dir_name(mode: str, intervention: Optional[str]) -> str:
    """``reasoning`` or ``reasoning+truncate``: the last folder of a unit."""
    return mode if intervention is None else f"{mode}+{intervention}"


def parse_unit_dir_name(name: str) -> Tuple[str, Optional[str]]:
    """The inverse of :func:`unit_dir_name`.

    Raises:
        ValueError: not a unit folder of this layout.
    """
    mode, plus, intervention = name.partition("+")
    if mode not in MODES or (plus and not intervention):
        raise ValueError(f"{name!r} is not a unit folder (expected one of {', '.join(MODES)}, "
                         f"optionally +<intervention>)")
    return mode, intervention or None


# --------------------------------------------------------------------------- the folder

class ShardRef(NamedTuple):
    """A shard file found under a run folder."""

    path: Path
    unit: UnitKey
    k: int
    n: int


class RunLayout:
    """Every path of one run folder (see the module docstring).

    Args:
        root: the run folder (``<output>/<experiment>``).
    """

    LAUNCH = "launch.json"
    RESULTS_JSONL = "results.jsonl"
    RESULTS_H5 = "results.h5"
    MISSING = "missing.jsonl"
    INPUTS = "_inputs"
    JOBS = "_jobs"
    TASKS = "_tasks"
    QUARANTINE = "_quarantine"

    def __init__(self, root: Pathlike) -> None:
        self.root = Path(root)

    # ---- fixed files
    @property
    def launch_json(self) -> Path:
        """The launch record."""
        return self.root / self.LAUNCH

    @property
    def results_jsonl(self) -> Path:
        """Merged rows."""
        return self.root / self.RESULTS_JSONL

    @property
    def results_h5(self) -> Path:
        """Merged rows as HDF5 columns."""
        return self.root / self.RESULTS_H5

    @property
    def missing_jsonl(self) -> Path:
        """What a partial merge lacked."""
        return self.root / self.MISSING

    @property
    def plots_dir(self) -> Path:
        """The score job's plots."""
        return self.root / "plots"

    def report_file(self, report: str, fmt: str) -> Path:
        """The score job's table of one report (``accuracy`` -> ``score.md``, ``faithfulness`` ->
        ``faithfulness.json`` ...) in one format (``markdown``, ``csv``, ``json``)."""
        stem = "score" if report == "accuracy" else report
        return self.root / f"{stem}.{'md' if fmt == 'markdown' else fmt}"

    @property
    def jobs_dir(self) -> Path:
        """submitit's job folder (its ``%j`` pattern is formatted by submitit itself)."""
        return self.root / self.JOBS

    def demo_data_dir(self, dataset: str) -> Path:
        """Where a sweep's generated demo set goes."""
        return self.root / self.INPUTS / "data" / dataset

    def tiny_model_dir(self, model: str) -> Path:
        """Where a sweep's tiny model is built."""
        return self.root / self.INPUTS / "models" / model

    def task_file(self, label: str) -> Path:
        """Where a task records its pid and host (``model/dataset/shard-k-of-n`` -> one file)."""
        return self.root / self.TASKS / (label.replace("/", "__") + ".json")

    def task_files(self) -> List[Path]:
        """Every task record."""
        folder = self.root / self.TASKS
        return sorted(folder.glob("*.json")) if folder.is_dir() else []

    def quarantine_file(self, shard: Path) -> Path:
        """Where rows moved out of a shard file go (the shard's path under ``_quarantine``)."""
        return self.root / self.QUARANTINE / Path(shard).resolve().relative_to(self.root.resolve())

    # ---- units and shards
    def unit_dir(self, unit: Any) -> Path:
        """The folder of a unit (a :class:`Unit` or :class:`UnitKey`)."""
        return self.root.joinpath(*_label(unit).split("/"))

    def shard_path(self, unit: Unit, k: int) -> Path:
        """Shard file ``k`` of ``unit.shards``."""
        if not 0 <= k < unit.shards:
            raise ValueError(f"shard {k} outside 0..{unit.shards - 1}")
        return self.unit_dir(unit) / shard_file_name(k, unit.shards)

    def relative(self, path: Pathlike) -> str:
        """``path`` relative to the run folder (as written in reports)."""
        return str(Path(path).relative_to(self.root))

    def parse_shard_path(self, path: Pathlike) -> Tuple[UnitKey, int, int]:
        """(unit key, k, n) of a shard file under this run folder.

        Raises:
            ValueError: not a shard file of this layout.
        """
        parts = Path(path).relative_to(self.root).parts
        if len(parts) != 5:
            raise ValueError(f"{path}: not <model>/<dataset>/<condition>/<unit dir>/<shard file>")
        match = _SHARD_NAME.match(parts[4])
        if match is None:
            raise ValueError(f"{path}: not a shard file name (shard-KKKKK-of-NNNNN.jsonl)")
        mode, intervention = parse_unit_dir_name(parts[3])
        return UnitKey(parts[0], parts[1], parts[2], mode, intervention), int(match.group(1)), int(match.group(2))

    def find_shards(self) -> Dict[UnitKey, List[ShardRef]]:
        """Every shard file under the run folder, by unit.

        Raises:
            InputError: a shard file in a folder that is not a unit folder of this layout
                (e.g. written by an older version of the toolkit).
        """
        found: Dict[UnitKey, List[ShardRef]] = {}
        for path in sorted(self.root.glob("*/*/*/*/shard-*-of-*.jsonl")):
            if not path.is_file() or path.relative_to(self.root).parts[0].startswith("_"):
                continue
            try:
                key, k, n = self.parse_shard_path(path)
            except ValueError as exc:
                raise InputError(f"unrecognised shard file: {exc}", path) from None
            found.setdefault(key, []).append(ShardRef(path, key, k, n))
        return found


def shard_file_name(k: int, n: int) -> str:
    """``shard-00003-of-00016.jsonl``."""
    return f"shard-{k:05d}-of-{n:05d}.jsonl"


def _label(unit: Any) -> str:
    if isinstance(unit, Unit):
        return unit.label
    return "/".join((unit.model, unit.dataset, unit.condition, unit_dir_name(unit.mode, unit.intervention)))

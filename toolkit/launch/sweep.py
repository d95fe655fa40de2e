"""Sweep files: what to run (models x datasets x conditions x modes x runs), validated up front.

A sweep is a YAML file (examples in ``slurm/examples/``). Relative paths in it resolve
against the sweep file's folder, so a sweep runs the same from any working directory.
Everything is checked before anything is submitted: unknown keys (with the valid ones
listed), unknown backends, prompts and condition names, missing manifests. All problems
are reported at once, each naming the file and the key.

Example:
    >>> sweep = load_sweep("slurm/examples/demo.yaml")            # doctest: +SKIP
    >>> [t.label for t in plan_tasks(sweep)][:2]                  # doctest: +SKIP
    ['simulated/demo/shard-0-of-2', 'simulated/demo/shard-1-of-2']
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from toolkit.errors import InputError, Pathlike
from toolkit.models.base import LoadOptions
from toolkit.runs import MODES, RunLayout, Unit

_TOP_KEYS = {"experiment", "output", "seed", "runs", "shards", "batch_size", "generation", "prompts", "models",
             "datasets", "conditions", "modes", "score_by", "interventions", "placement", "protocol", "hints",
             "rewriter"}
_REWRITER_KEYS = {"path", "device", "dtype", "batch_size"}
_MODEL_KEYS = {"name", "backend", "path", "tiny", "batch_size", "setup", "python", "load", "generation", "prompts"}
_PROMPT_KEYS = ("reasoning", "direct", "conditioned")
_DATASET_KEYS = {"name", "manifest", "data_root", "shards", "demo"}
_GENERATION_KEYS = {"max_new_tokens", "sample", "temperature", "top_p", "num_beams", "defaults"}
_LOAD_KEYS = {f.name for f in dataclasses.fields(LoadOptions)}


@dataclass(frozen=True)
class ModelSpec:
    """One model of a sweep.

    Attributes:
        name: label used in rows and paths (unique in the sweep).
        backend: backend registry name (``qwen2-audio``, ``simulated`` ...).
        path: checkpoint folder or hub id (``simulated``: its parameters).
        tiny: for demos and tests: build a tiny random model of the backend's real classes
            with these sizes (``{}`` for the defaults) under the run folder instead of ``path``.
        batch_size: requests per model call.
        setup: shell lines run before this model's tasks (module loads, venv activation).
        python: interpreter for this model's tasks (default: the launching one).
        load: :class:`toolkit.models.base.LoadOptions` fields.
        generation: generation settings for this model, over the sweep's.
        prompts: templates for this model by mode, over the sweep's (e.g. ``asr-whisper-en``
            for a Whisper model in a sweep whose other models get ``asr-v1``).
    """

    name: str
    backend: str
    path: Optional[str] = None
    tiny: Optional[Dict[str, Any]] = None
    batch_size: int = 8
    setup: Tuple[str, ...] = ()
    python: Optional[str] = None
    load: Dict[str, Any] = field(default_factory=dict)
    generation: Dict[str, Any] = field(default_factory=dict)
    prompts: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a sweep: a prepared manifest, or the generated demo set (``demo``)."""

    name: str
    manifest: Optional[Path] = None
    data_root: Optional[Path] = None
    shards: int = 1
    demo: Optional[Dict[str, Any]] = None


@dataclass(frozen=True)
class Sweep:
    """A validated sweep (see the module docstring)."""

    source: Path
    experiment: str
    output: Path
    models: Tuple[ModelSpec, ...]
    datasets: Tuple[DatasetSpec, ...]
    conditions: Tuple[str, ...]
    modes: Tuple[str, ...]
    runs: int = 1
    seed: int = 0
    generation: Dict[str, Any] = field(default_factory=dict)
    prompts: Dict[str, str] = field(default_factory=dict)
    score_by: Tuple[str, ...] = ("model", "dataset", "condition", "mode")
    interventions: Tuple[str, ...] = ()
    protocol: str = "toolkit"
    hints: Dict[str, Any] = field(default_factory=dict)
    rewriter: Dict[str, Any] = field(default_factory=dict)

    def hint_bank(self) -> Any:
        """The spoken-hint source of ``inject-...`` conditions (None when the sweep names none)."""
        from toolkit.perturb.hints import EspeakHints, FolderHints, default_cache_dir

        if "folder" in self.hints:
            return FolderHints(self.hints["folder"])
        if self.hints.get("tts"):
            return EspeakHints(self.hints.get("cache") or default_cache_dir())
        return None

    def units(self, dataset: DatasetSpec, model: ModelSpec) -> Tuple[Unit, ...]:
        """Every unit of one model and dataset, in the order a task runs them: per condition, the
        sweep's modes, then one unit per intervention (after the reasoning rows it starts from).

        A generated demo set's units name the manifest it will have (``materialise_inputs``).
        """
        data_root = dataset.data_root or (self.layout.demo_data_dir(dataset.name) if dataset.demo is not None
                                          else None)
        common = dict(model=model.name, dataset=dataset.name, shards=dataset.shards, num_runs=self.runs,
                      manifest=str(self.manifest_of(dataset)), data_root=None if data_root is None else str(data_root),
                      seed=self.seed)
        units: List[Unit] = []
        for condition in self.conditions:
            units += [Unit(condition=condition, mode=mode, **common) for mode in self.modes]
            units += [Unit(condition=condition, mode="reasoning", intervention=spec,
                           protocol=self.protocol_for(model).spec, **common) for spec in self.interventions]
        return tuple(units)

    def protocol_for(self, model: ModelSpec) -> Any:
        """The sweep's intervention protocol, resolved for a model's family."""
        from toolkit.interventions.protocol import parse_protocol

        return parse_protocol(self.protocol).for_family(model.backend)

    def manifest_of(self, dataset: DatasetSpec) -> Path:
        """The dataset's manifest: as given, or where its generated demo set goes."""
        if dataset.manifest is not None:
            return dataset.manifest
        return self.layout.demo_data_dir(dataset.name) / "manifest.jsonl"

    @property
    def run_dir(self) -> Path:
        """``<output>/<experiment>``: shard files, ``launch.json``, merged results."""
        return self.output / self.experiment

    @property
    def layout(self) -> RunLayout:
        """The run folder's layout."""
        return RunLayout(self.run_dir)

    def with_output(self, output: Pathlike) -> "Sweep":
        """The same sweep writing under another output root (``bin/launch --out``)."""
        return dataclasses.replace(self, output=Path(output).resolve())

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready form (paths as strings), recorded in ``launch.json``."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Sweep":
        """The inverse of :meth:`to_dict` (reads the sweep recorded in ``launch.json``)."""
        def path(value: Optional[str]) -> Optional[Path]:
            return None if value is None else Path(value)

        return cls(source=Path(raw["source"]), experiment=raw["experiment"], output=Path(raw["output"]),
                   models=tuple(ModelSpec(**{**m, "setup": tuple(m["setup"])}) for m in raw["models"]),
                   datasets=tuple(DatasetSpec(**{**d, "manifest": path(d["manifest"]),
                                                 "data_root": path(d["data_root"])}) for d in raw["datasets"]),
                   conditions=tuple(raw["conditions"]), modes=tuple(raw["modes"]), runs=raw["runs"],
                   seed=raw["seed"], generation=raw["generation"], prompts=raw["prompts"],
                   score_by=tuple(raw["score_by"]), interventions=tuple(raw.get("interventions", ())),
                   protocol=raw.get("protocol", "toolkit"), hints=dict(raw.get("hints") or {}),
                   rewriter=dict(raw.get("rewriter") or {}))


@dataclass(frozen=True)
class Task:
    """One array task: a model, a dataset shard, and every unit of it (:meth:`Sweep.units`)."""

    model: ModelSpec
    dataset: DatasetSpec
    shard: int
    units: Tuple[Unit, ...]

    @property
    def label(self) -> str:
        """``model/dataset/shard-k-of-n``."""
        return f"{self.model.name}/{self.dataset.name}/shard-{self.shard}-of-{self.dataset.shards}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class _Checker:
    """Collects every problem of a sweep file, then raises once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: List[str] = []

    def add(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def keys(self, where: str, mapping: Any, allowed: set, required: Sequence[str] = ()) -> bool:
        if not isinstance(mapping, Mapping):
            self.add(where, f"must be a mapping, not {type(mapping).__name__}")
            return False
        for key in sorted(set(mapping) - allowed):
            self.add(where, f"unknown key {key!r} (valid: {', '.join(sorted(allowed))})")
        for key in required:
            if key not in mapping:
                self.add(where, f"missing key {key!r}")
        return True

    def positive_int(self, where: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.add(where, f"must be an integer >= 1, not {value!r}")
            return 1
        return value

    def raise_if_any(self) -> None:
        if self.problems:
            raise InputError("invalid sweep:\n  " + "\n  ".join(self.problems), self.path)


def _resolve(base: Path, value: Optional[str]) -> Optional[Path]:
    if value is None:
        return None
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _name_ok(check: _Checker, where: str, name: Any) -> bool:
    if not isinstance(name, str) or not name or "/" in name or name in (".", "..") or name.startswith("_"):
        check.add(where, f"name {name!r} must be a non-empty path component not starting with '_'")
        return False
    return True


def _check_defaults(check: _Checker, where: str, generation: Mapping[str, Any]) -> None:
    from toolkit.models.generation import GENERATION_DEFAULTS

    if isinstance(generation, Mapping) and generation.get("defaults", "clean") not in GENERATION_DEFAULTS:
        check.add(f"{where}.defaults", f"must be one of {', '.join(GENERATION_DEFAULTS)}, not {generation['defaults']!r}")


def _parse_model(check: _Checker, where: str, raw: Any, defaults: Mapping[str, Any], base: Path) -> Optional[ModelSpec]:
    from toolkit.models.registry import backend_names, has_tiny

    if not check.keys(where, raw, _MODEL_KEYS, ("name", "backend")):
        return None
    name, backend = raw.get("name"), raw.get("backend")
    _name_ok(check, where, name)
    if backend not in backend_names():
        check.add(where, f"unknown backend {backend!r} (available: {', '.join(backend_names())})")
    tiny = raw.get("tiny")
    if tiny is not None:
        if backend in backend_names() and not has_tiny(backend):
            check.add(where, f"tiny models exist for {', '.join(n for n in backend_names() if has_tiny(n))}, "
                             f"not {backend!r}")
        if not isinstance(tiny, Mapping):
            check.add(where, "tiny must be a mapping of sizes ({} for the defaults)")
            tiny = {}
        if raw.get("path") is not None:
            check.add(where, "give either path or tiny, not both")
    elif raw.get("path") is None and backend != "simulated":
        check.add(where, "missing key 'path' (checkpoint folder or hub id)")
    load = dict(raw.get("load") or {})
    check.keys(f"{where}.load", load, _LOAD_KEYS)
    if load.get("adapter") is not None:  # a folder: relative to the sweep file like every other path
        load["adapter"] = str(_resolve(base, load["adapter"]))
    generation = raw.get("generation") or {}
    check.keys(f"{where}.generation", generation, _GENERATION_KEYS)
    _check_defaults(check, f"{where}.generation", generation)
    setup = raw.get("setup") or []
    if isinstance(setup, str) or not all(isinstance(s, str) for s in setup):
        check.add(where, "setup must be a list of shell lines")
        setup = []
    path = raw.get("path")
    if path is not None and backend != "simulated":
        local = _resolve(base, path)
        # a hub id stays as written; a path that exists (or looks like one) becomes absolute
        path = str(local) if local is not None and (local.exists() or str(path).startswith((".", "/", "~"))) else path
    return ModelSpec(name=str(name), backend=str(backend), path=None if path is None else str(path),
                     tiny=None if tiny is None else dict(tiny),
                     batch_size=check.positive_int(f"{where}.batch_size", raw.get("batch_size", defaults["batch_size"])),
                     setup=tuple(setup), python=raw.get("python"), load=dict(load), generation=dict(generation),
                     prompts=_check_prompts(check, f"{where}.prompts", raw.get("prompts") or {}))


def _parse_dataset(check: _Checker, where: str, raw: Any, default_shards: int, base: Path,
                   check_files: bool) -> Optional[DatasetSpec]:
    if not check.keys(where, raw, _DATASET_KEYS, ("name",)):
        return None
    name = raw.get("name")
    _name_ok(check, where, name)
    demo, manifest = raw.get("demo"), _resolve(base, raw.get("manifest"))
    if (demo is None) == (manifest is None):
        check.add(where, "give exactly one of manifest (a prepared manifest) or demo (the generated demo set)")
    if demo is not None:
        check.keys(f"{where}.demo", demo, {"items_per_task", "seed"})
    if check_files and manifest is not None and not manifest.is_file():
        check.add(where, f"manifest {manifest} does not exist")
    data_root = _resolve(base, raw.get("data_root"))
    if data_root is None and manifest is not None:
        data_root = manifest.parent
    return DatasetSpec(name=str(name), manifest=manifest, data_root=data_root,
                       shards=check.positive_int(f"{where}.shards", raw.get("shards", default_shards)),
                       demo=None if demo is None else dict(demo))


def _parse_conditions(check: _Checker, raw: Any) -> Tuple[str, ...]:
    from toolkit.perturb import expand_conditions

    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not names:
        check.add("conditions", "must be a non-empty list of condition names or a set name such as 'study'")
        return ()
    try:
        return tuple(c.name for c in expand_conditions([str(n) for n in names]))
    except ValueError as exc:
        check.add("conditions", str(exc))
        return ()


def _parse_modes_and_prompts(check: _Checker, raw: Mapping[str, Any]) -> Tuple[Tuple[str, ...], Dict[str, str]]:
    modes = raw.get("modes", list(MODES))
    if isinstance(modes, str):
        modes = [modes]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        check.add("modes", f"must be a non-empty list of {', '.join(MODES)}; got {modes!r}")
    prompts = {"reasoning": "reasoning-v1", "direct": "direct-v1", "conditioned": "conditioned-v1"}
    prompts.update(_check_prompts(check, "prompts", raw.get("prompts") or {}))
    return tuple(m for m in modes if m in MODES), prompts


def _check_prompts(check: _Checker, where: str, given: Any) -> Dict[str, str]:
    """Templates by mode, each known and of that mode."""
    from toolkit.prompts import get_prompt

    if not check.keys(where, given, set(_PROMPT_KEYS)):
        return {}
    out = {}
    for mode, name in given.items():
        try:
            template = get_prompt(str(name))
        except ValueError as exc:
            check.add(f"{where}.{mode}", str(exc))
            continue
        if template.mode != mode:
            check.add(f"{where}.{mode}", f"{name!r} is a {template.mode} prompt")
        out[str(mode)] = str(name)
    return out


def _parse_hints(check: _Checker, raw: Mapping[str, Any], conditions: Sequence[str], base: Path) -> Dict[str, Any]:
    from toolkit.perturb import parse_condition
    from toolkit.perturb.inject import needs_hints

    hints = raw.get("hints") or {}
    if not check.keys("hints", hints, {"folder", "tts", "cache"}):
        return {}
    if hints.get("tts") not in (None, "espeak-ng"):
        check.add("hints.tts", f"the local TTS is espeak-ng, not {hints.get('tts')!r}")
    if "folder" in hints and "tts" in hints:
        check.add("hints", "give a folder (any TTS, pre-rendered) or tts: espeak-ng, not both")
    out = {k: str(_resolve(base, v)) if k in ("folder", "cache") else v for k, v in hints.items()}
    if needs_hints([parse_condition(c) for c in conditions]) and not out:
        check.add("hints", "inject-... conditions need spoken hints: hints: {tts: espeak-ng} or {folder: DIR}")
    return out


def _parse_interventions(check: _Checker, raw: Mapping[str, Any], modes: Sequence[str]) -> Tuple[str, ...]:
    from toolkit.interventions import parse_intervention

    specs = raw.get("interventions") or []
    if isinstance(specs, str):
        specs = [specs]
    out, names = [], []
    for spec in specs:
        try:
            intervention = parse_intervention(str(spec))
        except ValueError as exc:
            check.add("interventions", str(exc))
            continue
        if intervention.name in names:
            check.add("interventions", f"{intervention.name!r} listed twice (one spec per intervention)")
        names.append(intervention.name)
        out.append(intervention.spec)
    if out and "reasoning" not in modes:
        check.add("interventions", "need the reasoning mode: they start from its rows")
    return tuple(out)


def _parse_rewriter(check: _Checker, raw: Mapping[str, Any], interventions: Sequence[str], base: Path) -> Dict[str, Any]:
    """``rewriter``: the outside LLM each task loads to produce the rewrites its ``rewrite-*``
    units lack (they must use ``cache=auto``: one rewrite file per shard file, never shared
    by two tasks)."""
    from toolkit.interventions import parse_intervention
    from toolkit.interventions.rewrite import RewriteIntervention

    rewriter = raw.get("rewriter") or {}
    if not check.keys("rewriter", rewriter, _REWRITER_KEYS, ("path",) if rewriter else ()):
        return {}
    for spec in interventions:
        intervention = parse_intervention(spec)
        if rewriter and isinstance(intervention, RewriteIntervention) and intervention.params["cache"] != "auto":
            check.add("interventions", f"{intervention.name}: with a rewriter, use cache=auto (one rewrite file per "
                      "shard file; a shared file would be written by several tasks at once)")
    if not rewriter:
        return {}
    out = dict(rewriter)
    path = _resolve(base, str(rewriter["path"]))
    out["path"] = str(path) if path is not None and path.exists() else str(rewriter["path"])  # a folder or a hub id
    if "batch_size" in out:
        out["batch_size"] = check.positive_int("rewriter.batch_size", out["batch_size"])
    return out


def _parse_protocol(check: _Checker, raw: Mapping[str, Any], models: Sequence[Optional[ModelSpec]]) -> str:
    """The sweep's protocol spec: ``protocol`` (a preset, default toolkit, with overrides), with
    ``placement`` and ``prompts.conditioned`` as overrides; checked for every model's family."""
    from toolkit.interventions.protocol import parse_protocol
    from toolkit.interventions.runner import PLACEMENTS

    spec = str(raw.get("protocol", "toolkit"))
    overrides = {}
    if "placement" in raw:
        if raw["placement"] not in PLACEMENTS:
            check.add("placement", f"must be one of {', '.join(sorted(PLACEMENTS))}, not {raw['placement']!r}")
        else:
            overrides["answer"] = PLACEMENTS[raw["placement"]]
    conditioned = (raw.get("prompts") or {}).get("conditioned")
    if conditioned:
        overrides["conditioned_template"] = str(conditioned)
    if overrides:
        spec += (":" if ":" not in spec else ",") + ",".join(f"{k}={v}" for k, v in overrides.items())
    try:
        protocol = parse_protocol(spec)
        for model in models:
            if model is not None:
                protocol.for_family(model.backend)
    except ValueError as exc:
        check.add("protocol", str(exc))
    return spec


def load_sweep(path: Pathlike, check_files: bool = True) -> Sweep:
    """Read and validate a sweep YAML file.

    Args:
        path: the sweep file.
        check_files: also require the manifests to exist (off for ``--dry-run`` on a
            machine without the data).

    Returns:
        The sweep, with every path absolute.

    Raises:
        InputError: unreadable YAML or any invalid entry (all problems listed at once).
    """
    import yaml

    from toolkit.score import GROUP_KEYS

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read sweep file: {exc.strerror}", path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(f"not valid YAML: {getattr(exc, 'problem', exc)}", path,
                         None if mark is None else mark.line + 1) from None
    check = _Checker(path)
    if not check.keys("sweep", raw, _TOP_KEYS, ("experiment", "models", "datasets", "conditions")):
        check.raise_if_any()
    base = path.resolve().parent
    experiment = raw.get("experiment")
    _name_ok(check, "experiment", experiment)
    defaults = {"batch_size": raw.get("batch_size", 8)}
    generation = raw.get("generation") or {}
    check.keys("generation", generation, _GENERATION_KEYS)
    _check_defaults(check, "generation", generation)
    models = [_parse_model(check, f"models[{i}]", m, defaults, base) for i, m in enumerate(raw.get("models") or [])]
    default_shards = check.positive_int("shards", raw.get("shards", 1))
    datasets = [_parse_dataset(check, f"datasets[{i}]", d, default_shards, base, check_files)
                for i, d in enumerate(raw.get("datasets") or [])]
    for kind, specs in (("models", models), ("datasets", datasets)):
        names = [s.name for s in specs if s is not None]
        if not names:
            check.add(kind, "must list at least one entry")
        for dup in sorted({n for n in names if names.count(n) > 1}):
            check.add(kind, f"name {dup!r} used twice")
    conditions = _parse_conditions(check, raw.get("conditions"))
    modes, prompts = _parse_modes_and_prompts(check, raw)
    interventions = _parse_interventions(check, raw, modes)
    protocol = _parse_protocol(check, raw, models)
    hints = _parse_hints(check, raw, conditions, base)
    rewriter = _parse_rewriter(check, raw, interventions, base)
    runs = check.positive_int("runs", raw.get("runs", 1))
    for model in models:
        if runs > 1 and model is not None and not {**generation, **model.generation}.get("sample", False):
            check.add("runs", f"runs > 1 with greedy decoding gives identical runs for {model.name}; "
                      "set generation.sample: true")
    score_by = tuple(raw.get("score_by") or ("model", "dataset", "condition", "mode"))
    for key in score_by:
        if key not in GROUP_KEYS:
            check.add("score_by", f"unknown key {key!r} (valid: {', '.join(GROUP_KEYS)})")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        check.add("seed", f"must be an integer, not {seed!r}")
    check.raise_if_any()
    return Sweep(source=path.resolve(), experiment=str(experiment), output=_resolve(base, raw.get("output", "runs")),
                 models=tuple(models), datasets=tuple(datasets), conditions=conditions, modes=modes, runs=runs,
                 seed=seed, generation=dict(generation), prompts=prompts, score_by=score_by,
                 interventions=interventions, protocol=protocol, hints=hints, rewriter=rewriter)


def plan_tasks(sweep: Sweep) -> List[Task]:
    """Every array task of a sweep: per model, one task per (dataset, shard).

    Each task loads its model once and runs every unit of its shard, so a sweep costs one
    model load per task instead of one per (dataset, condition, mode). Intervention units
    come after the modes of their condition, so the reasoning rows they start from are
    written first, by the same task. The datasets need their manifests (``materialise_inputs``).
    """
    return [Task(model=model, dataset=ds, shard=k, units=sweep.units(ds, model))
            for model in sweep.models for ds in sweep.datasets for k in range(ds.shards)]

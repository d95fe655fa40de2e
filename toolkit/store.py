"""Merging a run directory's shard files into one result set: check first, then write.

Layout (written by ``launch``; :func:`toolkit.runs.shard_path`)::

    RUN_DIR/<model>/<dataset>/<condition>/<mode_dir>/shard-KKKKK-of-NNNNN.jsonl   (+ .meta.json)
    RUN_DIR/launch.json    optional: {"units": [{"model", "dataset", "condition", "mode",
                                                 "num_runs", "shards", "manifest", "data_root"}]}

A *unit* is one (model, dataset, condition, mode); ``mode_dir`` is the mode with ``:``
written as ``_``. With ``launch.json`` its units are what must exist (a unit or shard
file that never started is missing); without it the units are inferred from the shard
files and their sidecars, and every shard K of N must exist once one of them does.

:func:`check_run` reads every shard file once (read-only: a torn last line left by a
killed process is ignored, never cut) and reports, per unit, the (id, run) pairs missing
from the manifest's shard slices, pairs present in more than one place (duplicated),
rows whose id or run the unit does not expect (unexpected), shard files whose sidecar
disagrees with the unit (mismatched: fingerprint, manifest, number of runs, sharding)
and shard files that do not exist. Rows with ``error`` set are results: they count as
present and are counted separately.

:func:`merge_run` writes ``RUN_DIR/results.jsonl``, ``RUN_DIR/results.h5`` and, for a
partial merge, ``RUN_DIR/missing.jsonl``, each with a sidecar. It refuses an incomplete
run unless ``allow_partial``, which waives missing items only: duplicated, unexpected
and mismatched rows make a merge ambiguous and are always refused.

Reading ``results.h5`` with pandas (one group per unit; strings come back as bytes
unless read with ``.asstr()``; :func:`read_h5_unit` does this)::

    import h5py, pandas as pd
    with h5py.File("RUN_DIR/results.h5", "r") as f:
        g = f["qwen2-audio/sakura/clean/reasoning"]
        df = pd.DataFrame({k: g[k].asstr()[()] if g[k].dtype.kind == "O" else g[k][()]
                           for k in g if g[k].ndim == 1})
        logprobs = g["option_logprobs"][()] if "option_logprobs" in g else None  # rows x options, NaN-padded
"""

from __future__ import annotations

import datetime as _dt
import gc
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

import numpy as np

from toolkit import __version__
from toolkit.atomic import atomic_output, atomic_write_bytes, atomic_write_jsonl
from toolkit.errors import InputError, Pathlike
from toolkit.jsonl import iter_jsonl_objects
from toolkit.sidecar import sidecar_path, write_sidecar

log = logging.getLogger(__name__)

RESULTS_JSONL = "results.jsonl"
RESULTS_H5 = "results.h5"
MISSING_JSONL = "missing.jsonl"
LAUNCH_JSON = "launch.json"

_SHARD_NAME = re.compile(r"^shard-(\d+)-of-(\d+)\.jsonl$")
_LAUNCH_KEYS = ("model", "dataset", "condition", "mode", "num_runs", "shards", "manifest")
#: How many ids a message lists before "...".
FIRST = 5


class MissingItem(NamedTuple):
    """An expected (id, run) absent from every shard file; ``shard`` is ``"K/N"``."""

    shard: str
    run: int
    id: str


class DuplicateItem(NamedTuple):
    """An (id, run) present twice: ``first`` and ``again`` are ``file:line`` (relative to RUN_DIR)."""

    id: str
    run: int
    first: str
    again: str


class UnexpectedItem(NamedTuple):
    """A row the unit does not expect at ``where`` (``file:line``): ``reason`` says why."""

    id: str
    run: int
    where: str
    reason: str


class Mismatch(NamedTuple):
    """A shard file (relative to RUN_DIR) whose sidecar disagrees with its unit."""

    path: str
    reason: str


@dataclass
class ShardFile:
    """One shard file as read: ``size`` bytes of complete lines, ``torn_bytes`` ignored after them."""

    path: str
    k: int
    n: int
    size: int = 0
    torn_bytes: int = 0
    rows: int = 0


@dataclass
class UnitCheck:
    """What one unit (model, dataset, condition, mode) holds against what it should.

    Attributes:
        rows: expected (id, run) pairs present (each counted once).
        errors: of those, rows with ``error`` set.
        fingerprint: the infer settings of the unit's shard files (from the first sidecar).
        model_description: the backend's description from that sidecar.
    """

    model: str
    dataset: str
    condition: str
    mode: str
    num_runs: int
    shards: int
    manifest: Optional[str]
    data_root: Optional[str]
    n_items: int = 0
    rows: int = 0
    errors: int = 0
    files: List[ShardFile] = field(default_factory=list)
    missing_files: List[str] = field(default_factory=list)
    mismatched: List[Mismatch] = field(default_factory=list)
    missing: List[MissingItem] = field(default_factory=list)
    duplicated: List[DuplicateItem] = field(default_factory=list)
    unexpected: List[UnexpectedItem] = field(default_factory=list)
    fingerprint: Optional[Dict[str, Any]] = None
    model_description: Optional[Dict[str, Any]] = None

    @property
    def mode_dir(self) -> str:
        """The mode as a folder name (``:`` -> ``_``)."""
        return self.mode.replace(":", "_")

    @property
    def group(self) -> str:
        """``model/dataset/condition/mode_dir``: the folder under RUN_DIR and the HDF5 group."""
        return f"{self.model}/{self.dataset}/{self.condition}/{self.mode_dir}"

    @property
    def expected(self) -> int:
        """(id, run) pairs the unit must hold: manifest items x runs."""
        return self.n_items * self.num_runs

    @property
    def blocking(self) -> bool:
        """Duplicated, unexpected or mismatched rows: no merge, even a partial one."""
        return bool(self.duplicated or self.unexpected or self.mismatched)

    @property
    def complete(self) -> bool:
        """Every expected (id, run) exactly once, every shard file present and consistent."""
        return not (self.missing or self.missing_files or self.blocking)

    def problems(self) -> List[str]:
        """One line per kind of problem, each naming the first few items."""
        out = []
        if self.missing_files:
            out.append(f"{len(self.missing_files)} shard file(s) missing: {_first(self.missing_files)}")
        if self.missing:
            out.append(f"{len(self.missing)} missing: " + _first(
                [f"{m.id} (run {m.run}, shard {m.shard})" for m in self.missing]))
        if self.duplicated:
            out.append(f"{len(self.duplicated)} duplicated: " + _first(
                [f"{d.id} (run {d.run}) in {d.first} and {d.again}" for d in self.duplicated]))
        if self.unexpected:
            out.append(f"{len(self.unexpected)} unexpected: " + _first(
                [f"{u.id} (run {u.run}) at {u.where}: {u.reason}" for u in self.unexpected]))
        for mis in self.mismatched:
            out.append(f"mismatched shard file {mis.path}: {mis.reason}")
        return out


@dataclass
class RunCheck:
    """The check of a whole run directory.

    Attributes:
        source: ``launch.json`` or ``shard files`` (what the expected units came from).
        stray_files: shard files of units ``launch.json`` does not list (ignored).
    """

    run_dir: Path
    source: str
    units: List[UnitCheck] = field(default_factory=list)
    stray_files: List[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every unit complete."""
        return all(u.complete for u in self.units)

    @property
    def blocking(self) -> bool:
        """Some unit has duplicated, unexpected or mismatched rows."""
        return any(u.blocking for u in self.units)

    def totals(self) -> Dict[str, int]:
        """Counts over all units."""
        return {"units": len(self.units), "expected": sum(u.expected for u in self.units),
                "rows": sum(u.rows for u in self.units), "missing": sum(len(u.missing) for u in self.units),
                "duplicated": sum(len(u.duplicated) for u in self.units),
                "unexpected": sum(len(u.unexpected) for u in self.units),
                "mismatched_files": sum(len(u.mismatched) for u in self.units),
                "missing_files": sum(len(u.missing_files) for u in self.units),
                "errors": sum(u.errors for u in self.units),
                "torn_lines": sum(1 for u in self.units for f in u.files if f.torn_bytes)}

    def table(self, only_problems: bool = False) -> List[str]:
        """The per-unit summary table (rows, missing, duplicated, unexpected, errors, status) as lines."""
        header = ("unit", "shards", "rows", "missing", "dup", "unexp", "errors", "status")
        body = []
        for u in self.units:
            if only_problems and u.complete:
                continue
            status = "ok" if u.complete else "MISMATCH" if u.blocking else "INCOMPLETE"
            body.append((u.group, f"{u.shards - len(u.missing_files)}/{u.shards}", f"{u.rows}/{u.expected}",
                         str(len(u.missing)), str(len(u.duplicated)), str(len(u.unexpected)), str(u.errors), status))
        t = self.totals()
        body.append(("total", "", f"{t['rows']}/{t['expected']}", str(t["missing"]), str(t["duplicated"]),
                     str(t["unexpected"]), str(t["errors"]), "ok" if self.complete else "INCOMPLETE"))
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
                for row in [header, *body]]

    def problems(self) -> List[str]:
        """``group: problem`` lines for every unit that is not complete."""
        return [f"{u.group}: {p}" for u in self.units for p in u.problems()]

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready counts per unit and the shard files read (for sidecars)."""
        return {"source": self.source, "complete": self.complete, "counts": self.totals(),
                "units": [{"group": u.group, "model": u.model, "dataset": u.dataset, "condition": u.condition,
                           "mode": u.mode, "num_runs": u.num_runs, "shards": u.shards, "manifest": u.manifest,
                           "n_items": u.n_items, "rows": u.rows, "missing": len(u.missing),
                           "duplicated": len(u.duplicated), "unexpected": len(u.unexpected), "errors": u.errors,
                           "missing_files": u.missing_files, "mismatched": [m._asdict() for m in u.mismatched]}
                          for u in self.units],
                "shard_files": [{"path": f.path, "bytes": f.size, "torn_bytes": f.torn_bytes, "rows": f.rows}
                                for u in self.units for f in u.files],
                "stray_files": self.stray_files}


class MergeRefused(RuntimeError):
    """The run is incomplete (or ambiguous) and the merge was not allowed to be partial.

    Attributes:
        check: the full check, for a table of what is wrong.
    """

    def __init__(self, check: RunCheck, allow_partial: bool) -> None:
        self.check = check
        t = check.totals()
        why = ("duplicated, unexpected or mismatched rows (never merged; move the stray file aside)"
               if allow_partial or check.blocking else "incomplete (--allow-partial merges what exists)")
        lines = [f"{check.run_dir}: refused to merge: {why}; {t['rows']}/{t['expected']} rows, "
                 f"{t['missing']} missing, {t['duplicated']} duplicated, {t['unexpected']} unexpected, "
                 f"{t['missing_files']} shard file(s) missing, {t['mismatched_files']} mismatched"]
        lines += [f"  {p}" for p in check.problems()]
        super().__init__("\n".join(lines))


@dataclass
class MergeReport:
    """What :func:`merge_run` wrote."""

    check: RunCheck
    outputs: List[Path]
    rows: int
    missing: int

    @property
    def partial(self) -> bool:
        """True when items were missing and the merge went ahead (``allow_partial``)."""
        return self.missing > 0


# ---- planning: which units, which files --------------------------------------------------------

@dataclass
class _Plan:
    unit: UnitCheck
    files: List[Tuple[Path, int, int, Dict[str, Any]]]  # path, k, n, sidecar params
    folder: Path


def _read_params(shard: Path) -> Dict[str, Any]:
    side = sidecar_path(shard)
    try:
        text = side.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("shard file without its sidecar .meta.json (not written by bin/infer?)", shard) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"unreadable sidecar: {exc}", side) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed sidecar JSON: {exc.msg}", side, exc.lineno) from None
    params = doc.get("params") if isinstance(doc, dict) else None
    if not isinstance(params, dict):
        raise InputError("sidecar has no 'params' object", side)
    return params


def _find_shards(run_dir: Path) -> Dict[Tuple[str, str, str, str], List[Tuple[Path, int, int]]]:
    found: Dict[Tuple[str, str, str, str], List[Tuple[Path, int, int]]] = {}
    for path in run_dir.glob("*/*/*/*/shard-*-of-*.jsonl"):
        match = _SHARD_NAME.match(path.name)
        if not match or not path.is_file():
            continue
        model, dataset, condition, mode_dir = path.relative_to(run_dir).parts[:4]
        found.setdefault((model, dataset, condition, mode_dir), []).append(
            (path, int(match.group(1)), int(match.group(2))))
    return found


def _read_launch(path: Path) -> List[UnitCheck]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc.msg}", path, exc.lineno) from None
    units = doc.get("units") if isinstance(doc, dict) else None
    if not isinstance(units, list):
        raise InputError("expected an object with a 'units' list", path)
    out, seen = [], set()
    for index, u in enumerate(units):
        where = f"units[{index}]"
        if not isinstance(u, dict) or any(k not in u for k in _LAUNCH_KEYS):
            raise InputError(f"a unit needs {', '.join(_LAUNCH_KEYS)}", path, key=where)
        if not (isinstance(u["num_runs"], int) and u["num_runs"] >= 1 and isinstance(u["shards"], int)
                and u["shards"] >= 1):
            raise InputError("num_runs and shards must be integers >= 1", path, key=where)
        manifest = Path(u["manifest"])
        unit = UnitCheck(model=str(u["model"]), dataset=str(u["dataset"]), condition=str(u["condition"]),
                         mode=str(u["mode"]), num_runs=u["num_runs"], shards=u["shards"],
                         manifest=str((manifest if manifest.is_absolute() else path.parent / manifest).resolve()),
                         data_root=u.get("data_root"))
        if unit.group in seen:
            raise InputError(f"unit {unit.group} listed twice", path, key=where)
        seen.add(unit.group)
        out.append(unit)
    return out


def _plans(run_dir: Path) -> Tuple[List[_Plan], str, List[str]]:
    """The units to check with their shard files; also the source and stray files."""
    if not run_dir.is_dir():
        raise InputError("not a run directory (RUN_DIR/<model>/<dataset>/<condition>/<mode>/shard-*.jsonl)",
                         run_dir)
    found = _find_shards(run_dir)
    launch = run_dir / LAUNCH_JSON
    stray: List[str] = []
    if launch.is_file():
        source = LAUNCH_JSON
        units = _read_launch(launch)
        keys = {(u.model, u.dataset, u.condition, u.mode_dir) for u in units}
        for key, files in found.items():
            if key not in keys:
                stray += sorted(str(p.relative_to(run_dir)) for p, _, _ in files)
        if stray:
            log.warning("%s: %d shard file(s) of units launch.json does not list are ignored (first: %s)",
                        run_dir, len(stray), stray[0])
    else:
        source = "shard files"
        if not found:
            raise InputError(f"no shard files and no {LAUNCH_JSON} "
                             "(expected <model>/<dataset>/<condition>/<mode>/shard-KKKKK-of-NNNNN.jsonl)", run_dir)
        units = []
        for (model, dataset, condition, mode_dir), files in found.items():
            counts: Dict[int, int] = {}
            for _, _, n in files:
                counts[n] = counts.get(n, 0) + 1
            n_main = max(counts, key=lambda n: (counts[n], n))
            ref_path = min((p for p, _, n in files if n == n_main), key=lambda p: p.name)
            ref = _read_params(ref_path)
            if not ref.get("manifest"):
                raise InputError("sidecar records no manifest; write a launch.json listing the unit",
                                 sidecar_path(ref_path))
            fingerprint = ref.get("fingerprint") or {}
            units.append(UnitCheck(model=model, dataset=dataset, condition=condition,
                                   mode=str(fingerprint.get("mode", mode_dir)), num_runs=int(ref.get("num_runs", 1)),
                                   shards=n_main, manifest=str(ref["manifest"]), data_root=ref.get("data_root")))
    plans = []
    for unit in sorted(units, key=lambda u: (u.model, u.dataset, u.condition, u.mode)):
        key = (unit.model, unit.dataset, unit.condition, unit.mode_dir)
        files = sorted(found.get(key, []), key=lambda f: (f[2] != unit.shards, f[2], f[1]))
        plans.append(_Plan(unit, [(p, k, n, _read_params(p)) for p, k, n in files],
                           run_dir.joinpath(*key)))
    return plans, source, stray


# ---- scanning one unit ------------------------------------------------------------------------

def read_manifest_ids(path: Pathlike) -> List[str]:
    """Item ids in manifest order (only ids: infer validated the items; full validation is slow).

    Raises:
        InputError: an item without a string id, or an id used twice (naming file and line).
    """
    ids: List[str] = []
    seen: Dict[str, int] = {}
    for lineno, d in iter_jsonl_objects(path):
        item_id = d.get("id")
        if not isinstance(item_id, str) or not item_id:
            raise InputError("manifest item without a string id", path, lineno)
        if item_id in seen:
            raise InputError(f"duplicate id {item_id!r} (first on line {seen[item_id]})", path, lineno)
        seen[item_id] = lineno
        ids.append(item_id)
    return ids


#: fingerprint keys that differ between the shards of one unit by design (``bin/condition``:
#: each shard starts from its own baseline shard file)
PER_SHARD_SETTINGS = ("baseline",)


def _sidecar_problems(plan: _Plan, params: Dict[str, Any], k: int, n: int,
                      ref: Optional[Tuple[str, Dict[str, Any]]]) -> List[str]:
    unit = plan.unit
    reasons = []
    if params.get("shard") != f"{k}/{n}":
        reasons.append(f"sidecar says shard {params.get('shard')}, the file name {k}/{n}")
    if n != unit.shards:
        reasons.append(f"sharded {k}/{n}, the unit has {unit.shards} shards (left over from a re-shard?)")
    manifest = params.get("manifest")
    if manifest is None or str(Path(manifest).resolve()) != str(Path(str(unit.manifest)).resolve()):
        reasons.append(f"manifest {manifest}, the unit's is {unit.manifest}")
    if params.get("num_runs", 1) != unit.num_runs:
        reasons.append(f"num_runs {params.get('num_runs', 1)}, the unit has {unit.num_runs}")
    fingerprint = params.get("fingerprint") or {}
    if fingerprint.get("mode") != unit.mode:
        reasons.append(f"mode {fingerprint.get('mode')!r}, the unit's is {unit.mode!r}")
    if fingerprint.get("condition") != unit.condition:
        reasons.append(f"condition {fingerprint.get('condition')!r}, the unit's is {unit.condition!r}")
    if ref is not None:
        keys = sorted(key for key in set(fingerprint) | set(ref[1])
                      if key not in PER_SHARD_SETTINGS and fingerprint.get(key) != ref[1].get(key))
        if keys:
            reasons.append(f"settings differ from {ref[0]} ({', '.join(keys)})")
    return reasons


_Entry = Tuple[dict, str, int, int]  # row, line, file index, line number


def _natural(text: str) -> Tuple[Tuple[int, Any], ...]:
    """Sort key that orders ``k=2`` before ``k=10`` (variants of ``bin/condition`` rows)."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text))


def _scan_unit(plan: _Plan, run_dir: Path, ids_cache: Dict[str, List[str]]) -> List[_Entry]:
    """Read a unit's shard files, fill in ``plan.unit``; returns the present rows in output order."""
    unit = plan.unit
    assert unit.manifest is not None
    if unit.manifest not in ids_cache:
        ids_cache[unit.manifest] = read_manifest_ids(unit.manifest)
    ids = ids_cache[unit.manifest]
    unit.n_items = len(ids)
    position = {item_id: i for i, item_id in enumerate(ids)}
    present = {(k, n) for _, k, n, _ in plan.files}
    unit.missing_files = [str((plan.folder / f"shard-{k:05d}-of-{unit.shards:05d}.jsonl").relative_to(run_dir))
                          for k in range(unit.shards) if (k, unit.shards) not in present]
    slots: Dict[Tuple[str, int], Dict[str, _Entry]] = {}  # (id, run) -> variant -> entry
    ref: Optional[Tuple[str, Dict[str, Any]]] = None
    loads, raw_decode = json.loads, json.JSONDecoder().raw_decode
    num_runs = unit.num_runs
    for index, (path, k, n, params) in enumerate(plan.files):
        rel = str(path.relative_to(run_dir))
        reasons = _sidecar_problems(plan, params, k, n, ref)
        if ref is None:
            ref = (rel, params.get("fingerprint") or {})
            unit.fingerprint, unit.model_description = params.get("fingerprint"), params.get("model")
        if reasons:
            unit.mismatched.append(Mismatch(rel, "; ".join(reasons)))
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        shard = ShardFile(rel, k, n, size=end, torn_bytes=len(data) - end)
        if shard.torn_bytes:
            log.warning("%s: ignoring a torn last line (%d bytes, an interrupted run)", rel, shard.torn_bytes)
        try:
            lines = data[:end].decode("utf-8").split("\n")
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8: {exc.reason}", path, data.count(b"\n", 0, exc.start) + 1) from None
        lines.pop()
        for lineno, line in enumerate(lines, 1):
            try:  # raw_decode skips json.loads' wrapper; a line with anything around the object goes through loads
                row, stop = raw_decode(line)
                if stop != len(line):
                    row = loads(line)
            except ValueError as exc:
                if not line.strip():
                    continue
                msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                raise InputError(f"malformed JSON: {msg}", path, lineno) from None
            if row.__class__ is not dict:
                raise InputError(f"expected a JSON object, got {type(row).__name__}", path, lineno)
            try:
                key = (row["id"], row["run"])
            except KeyError:
                raise InputError("not a result row (needs 'id' and 'run')", path, lineno) from None
            if key[0].__class__ is not str or key[1].__class__ is not int:
                raise InputError("'id' must be a string and 'run' an integer", path, lineno, key=str(key[0]))
            shard.rows += 1
            i = position.get(key[0])
            if i is None or not 0 <= key[1] < num_runs:
                why = "id not in the manifest" if i is None else f"run {key[1]} outside 0..{num_runs - 1}"
                unit.unexpected.append(UnexpectedItem(key[0], key[1], f"{rel}:{lineno}", why))
                continue
            if i % n != k:
                unit.unexpected.append(UnexpectedItem(key[0], key[1], f"{rel}:{lineno}",
                                                      f"belongs to shard {i % n}/{n}, not {k}/{n}"))
            per_variant = slots.setdefault(key, {})
            variant = row.get("variant") or ""
            first = per_variant.get(variant)
            if first is not None:
                unit.duplicated.append(DuplicateItem(key[0], key[1], f"{unit.files[first[2]].path}:{first[3]}"
                                                     if first[2] < index else f"{rel}:{first[3]}",
                                                     f"{rel}:{lineno}"))
                continue
            per_variant[variant] = (row, line, index, lineno)
        unit.files.append(shard)
    ordered: List[_Entry] = []
    shards = unit.shards
    for run in range(num_runs):
        for i, item_id in enumerate(ids):
            per_variant = slots.get((item_id, run))
            if not per_variant:
                unit.missing.append(MissingItem(f"{i % shards}/{shards}", run, item_id))
            else:
                ordered += [per_variant[v] for v in sorted(per_variant, key=_natural)]
    unit.rows = len(ordered)
    unit.errors = sum(1 for entry in ordered if entry[0].get("error") is not None)
    return ordered


def _scan(root: Path, planned: Tuple[List[_Plan], str, List[str]],
          sink: Optional[Callable[[UnitCheck, List[_Entry]], None]] = None) -> RunCheck:
    plans, source, stray = planned
    check = RunCheck(root, source, stray_files=stray)
    ids_cache: Dict[str, List[str]] = {}
    collecting = gc.isenabled()
    gc.disable()  # rows are long-lived containers: cyclic GC passes over them cost more than parsing
    try:
        for plan in plans:
            ordered = _scan_unit(plan, root, ids_cache)
            check.units.append(plan.unit)
            if sink is not None:
                sink(plan.unit, ordered)
            del ordered
    finally:
        if collecting:
            gc.enable()
    return check


def check_run(run_dir: Pathlike) -> RunCheck:
    """Check a run directory's shard files against the units it must hold; writes nothing.

    Args:
        run_dir: ``<root>/<experiment>``, holding ``<model>/<dataset>/<condition>/<mode_dir>/shard-*.jsonl``
            and optionally ``launch.json``.

    Returns:
        Per unit: rows present, missing (shard, run, id), duplicated, unexpected, mismatched
        and missing shard files, error rows.

    Raises:
        InputError: not a directory, no shard files (and no launch.json), a shard file without
            a readable sidecar, a malformed launch.json, or a complete shard line that is not a
            result row (named as ``file:line``).
        FileNotFoundError: a unit's manifest does not exist.

    Example:
        >>> check = check_run("runs/exp")  # doctest: +SKIP
        >>> print("\\n".join(check.table()))  # doctest: +SKIP
    """
    root = Path(run_dir)
    return _scan(root, _plans(root))


# ---- writing -----------------------------------------------------------------------------------

def _option_matrix(rows: List[dict]) -> Optional[np.ndarray]:
    """``option_logprobs`` (letter -> value, or a list) as rows x options float32, NaN where absent."""
    index = [r for r, row in enumerate(rows) if row.get("option_logprobs")]
    if not index:
        return None
    present = [rows[r]["option_logprobs"] for r in index]
    # flattened in C-level generator loops: (row, column, value) triples without a Python loop per row
    cols = np.fromiter((ord(k) - 65 if k.__class__ is str else k for v in present
                        for k in (v if v.__class__ is dict else range(len(v)))), np.intp)
    values = np.fromiter((x for v in present for x in (v.values() if v.__class__ is dict else v)), np.float64)
    at = np.repeat(np.asarray(index, dtype=np.intp), np.fromiter(map(len, present), np.intp, len(present)))
    out = np.full((len(rows), int(cols.max()) + 1), np.nan, dtype=np.float32)
    out[at, cols] = values
    return out


def _write_group(h5: Any, unit: UnitCheck, rows: List[dict]) -> None:
    import h5py

    n = len(rows)
    text = h5py.string_dtype("utf-8")
    g = h5.create_group(unit.group)
    g.create_dataset("id", data=np.array([r["id"] for r in rows], dtype=object), dtype=text)
    g.create_dataset("run", data=np.fromiter((r["run"] for r in rows), np.int32, n))
    g.create_dataset("pred", data=np.fromiter((-1 if (p := r.get("pred")) is None else p for r in rows), np.int16, n))
    g.create_dataset("correct", data=np.fromiter(
        (-1 if (c := r.get("correct")) is None else int(c) for r in rows), np.int8, n))
    g.create_dataset("error", data=np.fromiter((r.get("error") is not None for r in rows), np.bool_, n))
    g.create_dataset("n_new_tokens", data=np.fromiter(
        (-1 if (t := r.get("n_new_tokens")) is None else t for r in rows), np.int32, n))
    g.create_dataset("seconds", data=np.fromiter(
        (np.nan if (s := r.get("seconds")) is None else s for r in rows), np.float32, n))
    g.create_dataset("pred_source", data=np.array([r.get("pred_source") or "" for r in rows], dtype=object),
                     dtype=text)
    options = _option_matrix(rows)
    if options is not None:
        g.create_dataset("option_logprobs", data=options)
    if any(r.get("variant") for r in rows):  # bin/condition rows: several variants per (id, run)
        g.create_dataset("variant", data=np.array([r.get("variant") or "" for r in rows], dtype=object), dtype=text)
        g.create_dataset("baseline_pred", data=np.fromiter(
            (-1 if (p := r.get("baseline_pred")) is None else p for r in rows), np.int16, n))
        g.create_dataset("prediction_changed", data=np.fromiter(
            (-1 if (c := r.get("prediction_changed")) is None else int(c) for r in rows), np.int8, n))
    attrs = {"model": unit.model, "dataset": unit.dataset, "condition": unit.condition, "mode": unit.mode,
             "num_runs": unit.num_runs, "shards": unit.shards, "manifest": unit.manifest or "",
             "data_root": unit.data_root or "", "n_items": unit.n_items, "n_rows": n, "n_missing": len(unit.missing),
             "n_errors": unit.errors, "fingerprint": json.dumps(unit.fingerprint, ensure_ascii=False),
             "model_description": json.dumps(unit.model_description, ensure_ascii=False)}
    g.attrs.update(attrs)


def merge_run(run_dir: Pathlike, allow_partial: bool = False) -> MergeReport:
    """Check a run directory and merge its shard files into ``results.jsonl`` and ``results.h5``.

    Rows are ordered by model, dataset, condition, mode, run and manifest order; each gets a
    ``dataset`` key (the unit's, from the path) unless it has one, and otherwise keeps its
    original line text. Outputs are written atomically with sidecars (stage ``merge``);
    the shard files are only read.

    Args:
        run_dir: the run directory (see :func:`check_run`).
        allow_partial: merge even when items or shard files are missing; the missing
            (model, dataset, condition, mode, run, id) go to ``missing.jsonl``. Duplicated,
            unexpected and mismatched rows are refused all the same.

    Returns:
        The check and the files written. Without missing items a stale ``missing.jsonl``
        is removed.

    Raises:
        MergeRefused: the run is incomplete (and not ``allow_partial``) or ambiguous; its
            message lists counts per unit and the first missing / duplicated ids. Nothing
            is written.
        InputError: see :func:`check_run`.

    Example:
        >>> merge_run("runs/exp").outputs  # doctest: +SKIP
        [PosixPath('runs/exp/results.jsonl'), PosixPath('runs/exp/results.h5')]
    """
    import h5py

    root = Path(run_dir)
    jsonl_path, h5_path, missing_path = root / RESULTS_JSONL, root / RESULTS_H5, root / MISSING_JSONL
    planned = _plans(root)  # before any output: a bad RUN_DIR must not be created
    h5 = h5py.File(f"merge-{uuid.uuid4().hex}.h5", "w", driver="core", backing_store=False)  # in memory
    try:
        with atomic_output(jsonl_path, fsync=False) as fh:  # rebuilt bit-identically from the shards
            def sink(unit: UnitCheck, ordered: List[_Entry]) -> None:
                suffix = ', "dataset": ' + json.dumps(unit.dataset, ensure_ascii=False) + "}"
                out = []
                for row, line, _, _ in ordered:
                    if "dataset" in row:
                        out.append(line)
                    else:
                        if line[-1:] != "}":
                            line = line.rstrip()
                        out.append(line[:-1] + suffix)
                if out:
                    out.append("")
                    fh.write("\n".join(out).encode("utf-8"))
                _write_group(h5, unit, [entry[0] for entry in ordered])

            check = _scan(root, planned, sink)
            if check.blocking or not (check.complete or allow_partial):
                raise MergeRefused(check, allow_partial)
        h5.attrs.update({"toolkit_version": __version__, "run_dir": str(root.resolve()), "source": check.source,
                         "complete": check.complete,
                         "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
        h5.flush()
        image = h5.id.get_file_image()
    finally:
        h5.close()
    atomic_write_bytes(h5_path, image)
    outputs = [jsonl_path, h5_path]
    missing = [{"model": u.model, "dataset": u.dataset, "condition": u.condition, "mode": u.mode, "run": m.run,
                "id": m.id, "shard": m.shard} for u in check.units for m in u.missing]
    if missing:
        atomic_write_jsonl(missing_path, missing)
        outputs.append(missing_path)
        log.warning("%s: partial merge, %d (id, run) missing: listed in %s", root, len(missing), missing_path)
    else:
        for stale in (missing_path, sidecar_path(missing_path)):
            if stale.exists():
                stale.unlink()
    summary = check.to_dict()
    for path in outputs:
        write_sidecar(path, "merge", run_dir=str(root.resolve()), allow_partial=allow_partial, **summary)
    report = MergeReport(check, outputs, rows=check.totals()["rows"], missing=len(missing))
    log.info("%s: merged %d rows of %d units", root, report.rows, len(check.units))
    return report


# ---- reading back ------------------------------------------------------------------------------

def h5_groups(path: Pathlike) -> List[str]:
    """The unit groups (``model/dataset/condition/mode_dir``) of a ``results.h5``, in file order."""
    import h5py

    found: List[str] = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Group) and "id" in obj else None)
    return found


def read_h5_unit(path: Pathlike, group: str) -> "Any":
    """One unit of a ``results.h5`` as a pandas DataFrame (one row per result row).

    Args:
        path: the ``results.h5`` file.
        group: ``model/dataset/condition/mode_dir`` (see :func:`h5_groups`).

    Returns:
        A DataFrame with the columns as stored (strings decoded; ``pred``, ``correct`` and
        ``n_new_tokens`` use -1 for null) plus ``option_logprobs`` as one float array per row
        when stored; ``df.attrs`` holds the group attributes (``fingerprint`` and
        ``model_description`` decoded from JSON).

    Raises:
        KeyError: no such group.
    """
    import h5py
    import pandas as pd

    with h5py.File(path, "r") as f:
        g = f[group]
        columns = {k: g[k].asstr()[()] if g[k].dtype.kind == "O" else g[k][()] for k in g if g[k].ndim == 1}
        df = pd.DataFrame(columns)
        if "option_logprobs" in g:
            df["option_logprobs"] = list(g["option_logprobs"][()])
        attrs = {k: v.item() if isinstance(v, np.generic) else v for k, v in g.attrs.items()}
    for key in ("fingerprint", "model_description"):
        attrs[key] = json.loads(attrs[key])
    df.attrs.update(attrs)
    return df


def iter_h5_rows(path: Pathlike) -> Iterator[dict]:
    """Rows of a ``results.h5`` as JSON-like dicts (nulls restored), unit by unit.

    Yields:
        ``model, dataset, condition, mode, id, run, pred, correct, error`` (bool),
        ``n_new_tokens, seconds, pred_source`` (None for "") and ``option_logprobs``
        (letter -> value without the NaN padding) when stored; ``variant, baseline_pred,
        prediction_changed`` for ``bin/condition`` units.
    """
    for group in h5_groups(path):
        df = read_h5_unit(path, group)
        a = df.attrs
        for rec in df.to_dict("records"):
            row = {"model": a["model"], "dataset": a["dataset"], "condition": a["condition"], "mode": a["mode"],
                   "id": rec["id"], "run": int(rec["run"]), "pred": None if rec["pred"] < 0 else int(rec["pred"]),
                   "correct": None if rec["correct"] < 0 else bool(rec["correct"]), "error": bool(rec["error"]),
                   "n_new_tokens": None if rec["n_new_tokens"] < 0 else int(rec["n_new_tokens"]),
                   "seconds": None if np.isnan(rec["seconds"]) else float(rec["seconds"]),
                   "pred_source": rec["pred_source"] or None}
            if "variant" in rec:
                row.update(variant=rec["variant"], baseline_pred=None if rec["baseline_pred"] < 0 else
                           int(rec["baseline_pred"]), prediction_changed=None if rec["prediction_changed"] < 0
                           else bool(rec["prediction_changed"]))
            if "option_logprobs" in rec:
                row["option_logprobs"] = {chr(65 + j): float(v) for j, v in enumerate(rec["option_logprobs"])
                                          if not np.isnan(v)}
            yield row


def _first(items: List[str]) -> str:
    return ", ".join(items[:FIRST]) + (f", ... ({len(items) - FIRST} more)" if len(items) > FIRST else "")

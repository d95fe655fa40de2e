"""Completeness of a run folder: every unit's shard files against the row keys the unit must hold.

The units come from ``launch.json`` (:class:`toolkit.runs.record.LaunchRecord`; a unit or
shard file that never started is missing) or, without it, from the shard files and their
sidecars (every shard K of N must exist once one of them does). A unit's expected keys are
:meth:`toolkit.runs.Unit.expected_keys` per shard - (id, run) for inference units, (id, run,
variant) for ``bin/condition`` units, whose variants follow from their baseline rows - the
same definition ``bin/launch`` waits for.

:func:`check_run` reads every shard file once (read-only: a torn last line left by a killed
process is ignored, never cut) and reports, per unit, the keys missing, keys present in more
than one place (duplicated), rows the unit does not expect (unexpected: another shard's id,
a run or variant the unit does not have), shard files whose sidecar disagrees with the unit
(mismatched: fingerprint, manifest, number of runs, sharding, a changed baseline) and shard
files that do not exist. Rows with ``error`` set are results: they count as present and are
counted separately.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

from toolkit.errors import InputError, Pathlike
from toolkit.rows import ResultRow, RowKey, superseded
from toolkit.runs import RunLayout, ShardRef, Unit, UnitKey, select_shard, shard_of
from toolkit.sidecar import sidecar_path

log = logging.getLogger(__name__)

#: How many ids a message lists before "...".
FIRST = 5
#: fingerprint keys that differ between the shards of one unit by design (``bin/condition``:
#: each shard starts from its own baseline shard file)
PER_SHARD_SETTINGS = ("baseline",)
#: ``MissingItem.variant`` when a whole (id, run) is missing and its variants are unknown
ALL_VARIANTS = "*"


class MissingItem(NamedTuple):
    """An expected key absent from every shard file; ``shard`` is ``"K/N"``."""

    shard: str
    run: int
    id: str
    variant: str = ""


class DuplicateItem(NamedTuple):
    """A key present twice: ``first`` and ``again`` are ``file:line`` (relative to RUN_DIR)."""

    id: str
    run: int
    variant: str
    first: str
    again: str


class UnexpectedItem(NamedTuple):
    """A row the unit does not expect at ``where`` (``file:line``): ``reason`` says why."""

    id: str
    run: int
    variant: str
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
    """What one unit holds against what it should.

    Attributes:
        unit: the unit.
        expected: keys the unit must hold (over every shard).
        rows: expected keys present (each counted once).
        errors: of those, rows with ``error`` set.
        fingerprint: the settings of the unit's shard files (from the first sidecar).
        model_description: the backend's description from that sidecar.
    """

    unit: Unit
    n_items: int = 0
    expected: int = 0
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
    def group(self) -> str:
        """``model/dataset/condition/<unit dir>``: the folder under RUN_DIR and the HDF5 group."""
        return self.unit.label

    @property
    def blocking(self) -> bool:
        """Duplicated, unexpected or mismatched rows: no merge, even a partial one."""
        return bool(self.duplicated or self.unexpected or self.mismatched)

    @property
    def complete(self) -> bool:
        """Every expected key exactly once, every shard file present and consistent."""
        return not (self.missing or self.missing_files or self.blocking)

    def problems(self) -> List[str]:
        """One line per kind of problem, each naming the first few items."""
        out = []
        if self.missing_files:
            out.append(f"{len(self.missing_files)} shard file(s) missing: {_first(self.missing_files)}")
        if self.missing:
            out.append(f"{len(self.missing)} missing: " + _first(
                [f"{m.id} (run {m.run}{_variant(m.variant)}, shard {m.shard})" for m in self.missing]))
        if self.duplicated:
            out.append(f"{len(self.duplicated)} duplicated: " + _first(
                [f"{d.id} (run {d.run}{_variant(d.variant)}) in {d.first} and {d.again}" for d in self.duplicated]))
        if self.unexpected:
            out.append(f"{len(self.unexpected)} unexpected: " + _first(
                [f"{u.id} (run {u.run}{_variant(u.variant)}) at {u.where}: {u.reason}" for u in self.unexpected]))
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
            body.append((u.group, f"{u.unit.shards - len(u.missing_files)}/{u.unit.shards}", f"{u.rows}/{u.expected}",
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
                "units": [{"group": u.group, **u.unit.to_dict(), "n_items": u.n_items, "expected": u.expected,
                           "rows": u.rows, "missing": len(u.missing), "duplicated": len(u.duplicated),
                           "unexpected": len(u.unexpected), "errors": u.errors, "missing_files": u.missing_files,
                           "mismatched": [m._asdict() for m in u.mismatched]}
                          for u in self.units],
                "shard_files": [{"path": f.path, "bytes": f.size, "torn_bytes": f.torn_bytes, "rows": f.rows}
                                for u in self.units for f in u.files],
                "stray_files": self.stray_files}


# ---- planning: which units, which files --------------------------------------------------------

@dataclass
class _Plan:
    unit: Unit
    files: List[Tuple[ShardRef, Dict[str, Any]]]  # shard file, its sidecar params


def read_params(shard: Path) -> Dict[str, Any]:
    """The ``params`` of a shard file's sidecar.

    Raises:
        InputError: no sidecar, or an unreadable or malformed one.
    """
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


def _unit_from_sidecar(key: UnitKey, refs: List[ShardRef]) -> Unit:
    counts: Dict[int, int] = {}
    for ref in refs:
        counts[ref.n] = counts.get(ref.n, 0) + 1
    n_main = max(counts, key=lambda n: (counts[n], n))
    ref_path = min((r.path for r in refs if r.n == n_main), key=lambda p: p.name)
    params = read_params(ref_path)
    if not params.get("manifest"):
        raise InputError("sidecar records no manifest; write a launch.json listing the unit", sidecar_path(ref_path))
    fingerprint = params.get("fingerprint") or {}
    return Unit(model=key.model, dataset=key.dataset, condition=key.condition, mode=key.mode,
                intervention=fingerprint.get("intervention"), protocol=fingerprint.get("protocol"), shards=n_main,
                num_runs=int(params.get("num_runs", 1)),
                manifest=str(params["manifest"]), data_root=params.get("data_root"),
                seed=int(fingerprint.get("seed", 0)))


def plan_check(run_dir: Pathlike) -> Tuple[List[_Plan], str, List[str]]:
    """The units to check with their shard files; also where the units came from and the stray files.

    Raises:
        InputError: not a run folder, a malformed launch.json, a shard file without a sidecar.
    """
    from toolkit.runs.record import LaunchRecord

    layout = RunLayout(run_dir)
    if not layout.root.is_dir():
        raise InputError("not a run directory (RUN_DIR/<model>/<dataset>/<condition>/<mode>/shard-*.jsonl)",
                         layout.root)
    found = layout.find_shards()
    stray: List[str] = []
    if layout.launch_json.is_file():
        source = layout.LAUNCH
        units = LaunchRecord.read(layout.root).units
        keys = {u.key for u in units}
        if len(keys) != len(units):
            raise InputError("a unit is listed twice", layout.launch_json)
        for key, refs in found.items():
            if key not in keys:
                stray += sorted(layout.relative(r.path) for r in refs)
        if stray:
            log.warning("%s: %d shard file(s) of units launch.json does not list are ignored (first: %s)",
                        layout.root, len(stray), stray[0])
    else:
        source = "shard files"
        if not found:
            raise InputError("no shard files and no launch.json "
                             "(expected <model>/<dataset>/<condition>/<mode>/shard-KKKKK-of-NNNNN.jsonl)", layout.root)
        units = [_unit_from_sidecar(key, refs) for key, refs in found.items()]
    plans = []
    for unit in sorted(units, key=lambda u: (u.model, u.dataset, u.condition, u.mode, u.intervention or "")):
        refs = sorted(found.get(unit.key, []), key=lambda r: (r.n != unit.shards, r.n, r.k))
        plans.append(_Plan(unit, [(r, read_params(r.path)) for r in refs]))
    return plans, source, stray


# ---- scanning one unit ------------------------------------------------------------------------

def _sidecar_problems(unit: Unit, params: Dict[str, Any], ref: ShardRef,
                      first: Optional[Tuple[str, Dict[str, Any]]]) -> List[str]:
    k, n = ref.k, ref.n
    reasons = []
    if params.get("shard") != f"{k}/{n}":
        reasons.append(f"sidecar says shard {params.get('shard')}, the file name {k}/{n}")
    if n != unit.shards:
        reasons.append(f"sharded {k}/{n}, the unit has {unit.shards} shards (left over from a re-shard?)")
    manifest = params.get("manifest")
    if manifest is None or str(Path(manifest).resolve()) != str(Path(str(unit.manifest)).resolve()):
        reasons.append(f"manifest {manifest}, the unit's is {unit.manifest}")
    if unit.intervention is None and params.get("num_runs", 1) != unit.num_runs:
        reasons.append(f"num_runs {params.get('num_runs', 1)}, the unit has {unit.num_runs}")
    fingerprint = params.get("fingerprint") or {}
    for key in ("mode", "condition", "intervention", "protocol"):
        if fingerprint.get(key) != getattr(unit, key):
            reasons.append(f"{key} {fingerprint.get(key)!r}, the unit's is {getattr(unit, key)!r}")
    if first is not None:
        keys = sorted(key for key in set(fingerprint) | set(first[1])
                      if key not in PER_SHARD_SETTINGS and fingerprint.get(key) != first[1].get(key))
        if keys:
            reasons.append(f"settings differ from {first[0]} ({', '.join(keys)})")
    return reasons


_Entry = Tuple[ResultRow, str, int, int]  # row, line, file index, line number


@functools.lru_cache(maxsize=4096)
def _natural(text: str) -> Tuple[Tuple[int, Any], ...]:
    """Sort key that orders ``k=2`` before ``k=10`` (variants of ``bin/condition`` rows)."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text))


class _Inputs:
    """Manifests (ids or full items) and baselines, each read once per check."""

    def __init__(self, layout: RunLayout) -> None:
        self.layout = layout
        self._ids: Dict[str, List[str]] = {}
        self._items: Dict[str, List[Any]] = {}

    def ids(self, manifest: str) -> List[str]:
        from toolkit.manifest import read_manifest_ids

        if manifest not in self._ids:
            self._ids[manifest] = read_manifest_ids(manifest)
        return self._ids[manifest]

    def items(self, manifest: str) -> List[Any]:
        from toolkit.manifest import read_manifest

        if manifest not in self._items:
            self._items[manifest] = read_manifest(manifest)
        return self._items[manifest]

    def baselines(self, unit: Unit, k: int, params: Optional[Dict[str, Any]],
                  problems: List[str]) -> Optional[Dict[Tuple[str, int], Any]]:
        """The baseline rows of shard ``k`` of an intervention unit: the reasoning unit's shard
        beside it in this run folder, else the file its sidecar names; checked against the
        sha256 recorded when the rows were written. None when there is none."""
        from toolkit.interventions.runner import baseline_digest, load_baselines

        recorded = ((params or {}).get("fingerprint") or {}).get("baseline") or {}
        sibling = self.layout.shard_path(Unit(unit.model, unit.dataset, unit.condition, unit.mode,
                                              shards=unit.shards), k)
        path = sibling if sibling.is_file() or not recorded.get("path") else Path(recorded["path"])
        if not path.is_file():
            if recorded.get("path"):
                problems.append(f"its baseline {path} is gone")
            return None
        items = self.items(str(unit.manifest))
        shard_items = select_shard(items, k, unit.shards)
        baselines = load_baselines(path, items)
        if recorded and baseline_digest(baselines, shard_items) != recorded.get("sha256"):
            problems.append(f"its baseline rows ({self.layout.relative(path) if path == sibling else path}) changed "
                            "after these rows were written")
        ids = {it.id for it in shard_items}
        return {key: b for key, b in baselines.items() if key[0] in ids}


def _scan_unit(plan: _Plan, layout: RunLayout, inputs: _Inputs) -> Tuple[UnitCheck, List[_Entry]]:
    """Read a unit's shard files: its check, and the present rows in output order."""
    unit = plan.unit
    check = UnitCheck(unit)
    ids = inputs.ids(str(unit.manifest))
    check.n_items = len(ids)
    position = {item_id: i for i, item_id in enumerate(ids)}
    expected = _expected_per_shard(plan, layout, inputs, check)
    present = {(r.k, r.n) for r, _ in plan.files}
    check.missing_files = [layout.relative(layout.shard_path(unit, k)) for k in range(unit.shards)
                           if (k, unit.shards) not in present]
    slots = _collect_rows(plan, layout, check, position, expected)
    order = lambda key: (key[1], position[key[0]], _natural(key[2]))  # noqa: E731 - run, manifest order, variant
    for k, owed in expected.items():
        if owed is None:  # an intervention shard without baseline rows: its variants are unknown
            seen = {(key[0], key[1]) for key in slots}
            runs = sorted({key[1] for key in slots}) or range(unit.num_runs)
            lost = [MissingItem(f"{k}/{unit.shards}", run, item_id, ALL_VARIANTS)
                    for run in runs for item_id in select_shard(ids, k, unit.shards) if (item_id, run) not in seen]
            check.missing += lost
            check.expected += len(lost) + sum(1 for key in slots if shard_of(position[key[0]], unit.shards) == k)
        else:
            check.expected += len(owed)
            check.missing += [MissingItem(f"{k}/{unit.shards}", run, item_id, variant)
                              for item_id, run, variant in sorted(owed - slots.keys(), key=order)]
    ordered = [slots[key] for key in sorted(slots, key=order)]
    check.rows = len(ordered)
    check.errors = sum(1 for entry in ordered if entry[0].error is not None)
    return check, ordered


def _expected_per_shard(plan: _Plan, layout: RunLayout, inputs: _Inputs,
                        check: UnitCheck) -> Dict[int, Optional[Set[RowKey]]]:
    """Shard k -> the keys the unit owes there (:meth:`toolkit.runs.Unit.expected_keys`); None for
    an intervention shard whose baseline rows are gone. A shard file whose baseline rows changed
    since it was written is recorded as mismatched."""
    from toolkit.interventions.rewrite import MissingRewrites

    unit = plan.unit
    if unit.intervention is None:
        ids = inputs.ids(str(unit.manifest))
        return {k: unit.expected_keys(select_shard(ids, k, unit.shards)) for k in range(unit.shards)}
    items = inputs.items(str(unit.manifest))
    own = {ref.k: (ref, params) for ref, params in reversed(plan.files) if ref.n == unit.shards}
    expected: Dict[int, Optional[Set[RowKey]]] = {}
    for k in range(unit.shards):
        ref, params = own.get(k, (None, None))
        problems: List[str] = []
        baselines = inputs.baselines(unit, k, params, problems)
        if problems and ref is not None:
            check.mismatched.append(Mismatch(layout.relative(ref.path), "; ".join(problems)))
        expected[k] = None
        if baselines is not None:
            try:
                expected[k] = unit.expected_keys(select_shard(items, k, unit.shards), baselines,
                                                 layout.shard_path(unit, k))
            except MissingRewrites as exc:
                if ref is not None:
                    check.mismatched.append(Mismatch(layout.relative(ref.path), str(exc)))
    return expected


def _collect_rows(plan: _Plan, layout: RunLayout, check: UnitCheck, position: Dict[str, int],
                  expected: Dict[int, Optional[Set[RowKey]]]) -> Dict[RowKey, _Entry]:
    """Read every shard file of a unit: the first row of each expected key (the latest, when it
    supersedes an error row: :func:`toolkit.rows.superseded`); mismatched sidecars, unexpected and
    duplicated rows go into ``check``."""
    unit = plan.unit
    slots: Dict[RowKey, _Entry] = {}
    first: Optional[Tuple[str, Dict[str, Any]]] = None
    for index, (ref, params) in enumerate(plan.files):
        rel = layout.relative(ref.path)
        reasons = _sidecar_problems(unit, params, ref, first)
        if first is None:
            first = (rel, params.get("fingerprint") or {})
            check.fingerprint, check.model_description = params.get("fingerprint"), params.get("model")
        if reasons:
            check.mismatched.append(Mismatch(rel, "; ".join(reasons)))
        shard = ShardFile(rel, ref.k, ref.n)
        owed = expected.get(ref.k) if ref.n == unit.shards else None
        for lineno, line, row in _read_rows(ref.path, shard):
            shard.rows += 1
            key = row.key
            i = position.get(row.id)
            why, foreign = None, False
            if i is None:
                why = "id not in the manifest"
            elif shard_of(i, ref.n) != ref.k:
                why, foreign = f"belongs to shard {shard_of(i, ref.n)}/{ref.n}, not {ref.k}/{ref.n}", True
            elif owed is not None and key not in owed:
                why = _not_owed(unit, row)
            if why is not None:
                check.unexpected.append(UnexpectedItem(row.id, row.run, row.variant, f"{rel}:{lineno}", why))
                if not foreign:  # a row of another shard still shows a duplicate of its own shard's
                    continue
            earlier = slots.get(key)
            if earlier is not None and why is None and superseded(earlier[0].to_dict(), row.to_dict()):
                slots[key] = (row, line, index, lineno)  # a retried error row: the latest row counts
            elif earlier is not None:
                where = f"{check.files[earlier[2]].path}:{earlier[3]}" if earlier[2] < index else f"{rel}:{earlier[3]}"
                check.duplicated.append(DuplicateItem(row.id, row.run, row.variant, where, f"{rel}:{lineno}"))
            elif why is None:
                slots[key] = (row, line, index, lineno)
        check.files.append(shard)
    return slots


def _not_owed(unit: Unit, row: ResultRow) -> str:
    """Why a row of the unit's shard is not one of its expected keys."""
    if unit.intervention is not None:
        return f"variant {row.variant!r} run {row.run} is not one this intervention makes of the item's baseline row"
    if row.variant:
        return f"variant {row.variant!r} in an inference unit"
    return f"run {row.run} outside 0..{unit.num_runs - 1}"


def _read_rows(path: Path, shard: ShardFile):
    """``(line number, line text, row)`` of every complete line of a shard file (read-only)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    shard.size, shard.torn_bytes = end, len(data) - end
    if shard.torn_bytes:
        log.warning("%s: ignoring a torn last line (%d bytes, an interrupted run)", shard.path, shard.torn_bytes)
    try:
        lines = data[:end].decode("utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8: {exc.reason}", path, data.count(b"\n", 0, exc.start) + 1) from None
    lines.pop()
    loads, raw_decode = json.loads, json.JSONDecoder().raw_decode
    for lineno, line in enumerate(lines, 1):
        try:  # raw_decode skips json.loads' wrapper; a line with anything around the object goes through loads
            d, stop = raw_decode(line)
            if stop != len(line):
                d = loads(line)
        except ValueError as exc:
            if not line.strip():
                continue
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise InputError(f"malformed JSON: {msg}", path, lineno) from None
        if d.__class__ is not dict:
            raise InputError(f"expected a JSON object, got {type(d).__name__}", path, lineno)
        try:
            row = ResultRow.from_dict(d)
        except ValueError as exc:
            raise InputError(f"not a result row: {exc}", path, lineno, key=str(d.get("id"))) from None
        yield lineno, line, row


def scan_run(run_dir: Pathlike, sink: Optional[Callable[[UnitCheck, List[_Entry]], None]] = None) -> RunCheck:
    """Check every unit of a run folder, handing each unit's ordered rows to ``sink``.

    See :func:`check_run`; ``merge`` writes from ``sink``.
    """
    layout = RunLayout(run_dir)
    plans, source, stray = plan_check(layout.root)
    check = RunCheck(layout.root, source, stray_files=stray)
    inputs = _Inputs(layout)
    collecting = gc.isenabled()
    gc.disable()  # rows are long-lived containers: cyclic GC passes over them cost more than parsing
    try:
        for plan in plans:
            unit_check, ordered = _scan_unit(plan, layout, inputs)
            check.units.append(unit_check)
            if sink is not None:
                sink(unit_check, ordered)
            del ordered
    finally:
        if collecting:
            gc.enable()
    return check


def check_run(run_dir: Pathlike) -> RunCheck:
    """Check a run directory's shard files against the units it must hold; writes nothing.

    Args:
        run_dir: ``<root>/<experiment>`` (see :class:`toolkit.runs.RunLayout`).

    Returns:
        Per unit: rows present, missing keys, duplicated, unexpected, mismatched and missing
        shard files, error rows.

    Raises:
        InputError: not a directory, no shard files (and no launch.json), a shard file without
            a readable sidecar, a malformed launch.json, or a complete shard line that is not a
            result row (named as ``file:line``).
        FileNotFoundError: a unit's manifest does not exist.

    Example:
        >>> check = check_run("runs/exp")  # doctest: +SKIP
        >>> print("\\n".join(check.table()))  # doctest: +SKIP
    """
    return scan_run(run_dir)


def _variant(variant: str) -> str:
    return f", {variant}" if variant else ""


def _first(items: Sequence[str]) -> str:
    return ", ".join(items[:FIRST]) + (f", ... ({len(items) - FIRST} more)" if len(items) > FIRST else "")

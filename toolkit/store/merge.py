"""Merging a run folder's shard files into one result set: check first, then write.

:func:`merge_run` writes ``RUN_DIR/results.jsonl``, ``RUN_DIR/results.h5`` and, for a
partial merge, ``RUN_DIR/missing.jsonl``, each with a sidecar. It refuses an incomplete
run unless ``allow_partial``, which waives missing rows only: duplicated, unexpected and
mismatched rows make a merge ambiguous and are always refused.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import List

from toolkit import __version__
from toolkit.atomic import atomic_output, atomic_write_bytes, atomic_write_jsonl
from toolkit.errors import Pathlike
from toolkit.runs import RunLayout
from toolkit.sidecar import sidecar_path, write_sidecar
from toolkit.store.check import RunCheck, UnitCheck, plan_check, scan_run
from toolkit.store.h5 import write_unit_group

log = logging.getLogger(__name__)


class MergeRefused(RuntimeError):
    """The run is incomplete (or ambiguous) and the merge was not allowed to be partial.

    Attributes:
        check: the full check, for a table of what is wrong.
    """

    def __init__(self, check: RunCheck, allow_partial: bool) -> None:
        self.check = check
        t = check.totals()
        why = ("duplicated, unexpected or mismatched rows (never merged; move the stray file aside, or repair "
               "duplicates with bin/merge --dedupe)" if allow_partial or check.blocking
               else "incomplete (--allow-partial merges what exists)")
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
        """True when rows were missing and the merge went ahead (``allow_partial``)."""
        return self.missing > 0


def merge_run(run_dir: Pathlike, allow_partial: bool = False) -> MergeReport:
    """Check a run directory and merge its shard files into ``results.jsonl`` and ``results.h5``.

    Rows are ordered by model, dataset, condition, unit dir, run, manifest order and variant;
    each gets a ``dataset`` key (the unit's) unless it has one, and otherwise keeps its
    original line text. Outputs are written atomically with sidecars (stage ``merge``); the
    shard files are only read.

    Args:
        run_dir: the run directory (see :func:`toolkit.store.check.check_run`).
        allow_partial: merge even when rows or shard files are missing; the missing
            (model, dataset, condition, mode, intervention, run, id, variant) go to
            ``missing.jsonl``. Duplicated, unexpected and mismatched rows are refused all the same.

    Returns:
        The check and the files written. Without missing rows a stale ``missing.jsonl`` is removed.

    Raises:
        MergeRefused: the run is incomplete (and not ``allow_partial``) or ambiguous; its
            message lists counts per unit and the first missing / duplicated keys. Nothing
            is written.
        InputError: see :func:`toolkit.store.check.check_run`.

    Example:
        >>> merge_run("runs/exp").outputs  # doctest: +SKIP
        [PosixPath('runs/exp/results.jsonl'), PosixPath('runs/exp/results.h5')]
    """
    import h5py

    layout = RunLayout(run_dir)
    plan_check(layout.root)  # before any output: a bad RUN_DIR must not be created
    h5 = h5py.File(f"merge-{uuid.uuid4().hex}.h5", "w", driver="core", backing_store=False)  # in memory
    try:
        with atomic_output(layout.results_jsonl, fsync=False) as fh:  # rebuilt bit-identically from the shards
            def sink(unit: UnitCheck, ordered: list) -> None:
                suffix = ', "dataset": ' + json.dumps(unit.unit.dataset, ensure_ascii=False) + "}"
                out = []
                for row, line, _, _ in ordered:
                    if row.dataset is not None:
                        out.append(line)
                    else:
                        if line[-1:] != "}":
                            line = line.rstrip()
                        out.append(line[:-1] + suffix)
                if out:
                    out.append("")
                    fh.write("\n".join(out).encode("utf-8"))
                write_unit_group(h5, unit, [entry[0] for entry in ordered])

            check = scan_run(layout.root, sink)
            if check.blocking or not (check.complete or allow_partial):
                raise MergeRefused(check, allow_partial)
        h5.attrs.update({"toolkit_version": __version__, "run_dir": str(layout.root.resolve()),
                         "source": check.source, "complete": check.complete,
                         "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
        h5.flush()
        image = h5.id.get_file_image()
    finally:
        h5.close()
    atomic_write_bytes(layout.results_h5, image)
    outputs = [layout.results_jsonl, layout.results_h5]
    missing = [{"model": u.unit.model, "dataset": u.unit.dataset, "condition": u.unit.condition, "mode": u.unit.mode,
                "intervention": u.unit.intervention_name, "run": m.run, "id": m.id, "variant": m.variant,
                "shard": m.shard} for u in check.units for m in u.missing]
    if missing:
        atomic_write_jsonl(layout.missing_jsonl, missing)
        outputs.append(layout.missing_jsonl)
        log.warning("%s: partial merge, %d rows missing: listed in %s", layout.root, len(missing),
                    layout.missing_jsonl)
    else:
        for stale in (layout.missing_jsonl, sidecar_path(layout.missing_jsonl)):
            if stale.exists():
                stale.unlink()
    summary = check.to_dict()
    for path in outputs:
        write_sidecar(path, "merge", run_dir=str(layout.root.resolve()), allow_partial=allow_partial, **summary)
    report = MergeReport(check, outputs, rows=check.totals()["rows"], missing=len(missing))
    log.info("%s: merged %d rows of %d units", layout.root, report.rows, len(check.units))
    return report

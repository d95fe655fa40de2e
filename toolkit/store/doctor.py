"""A way out of a damaged run folder: duplicated keys, conflicting rows and broken lines in shard files.

Two writers appending to one shard file (e.g. tasks orphaned by a killed launcher and the
tasks of a resumed launch, before writers were exclusive) leave keys written twice, and
possibly lines cut into each other. :func:`dedupe_run` repairs what is safe, under each
shard file's writer lock, and never deletes a row without writing it elsewhere:

- a key written twice with the same content (every field but ``seconds``, the timing, equal):
  the later copies are moved out;
- a key written twice with different content (the model answered differently, e.g. sampled
  runs): every copy is moved out, so the key is missing and a resumed launch writes it again;
- a line that is not a result row (malformed JSON, lines cut into each other) and a torn last
  line: moved out as text.

What is moved out goes to ``RUN/_quarantine/<the shard's path>`` (one JSON line per moved
line: ``source``, ``line``, ``reason``, ``text``, the line exactly as it was). When rows of a
baseline (reasoning) shard lose a key, the ``bin/condition`` shards built on it no longer
match it: they are moved to the quarantine folder whole, with their sidecars, and are
written again by a resumed launch.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from toolkit.atomic import atomic_output
from toolkit.errors import Pathlike
from toolkit.runs import RunLayout, ShardRef, WriterLock, row_key
from toolkit.sidecar import sidecar_path, write_sidecar

log = logging.getLogger(__name__)

#: Fields that may differ between two copies of the same result (timing).
VOLATILE = ("seconds",)


@dataclass
class ShardRepair:
    """What :func:`dedupe_run` found (and, unless a dry run, moved out) in one shard file.

    Attributes:
        path: the shard file, relative to the run folder.
        rows: complete lines read.
        identical: later copies of a key with the same content.
        conflicting: copies of keys written with different contents (all copies counted).
        conflicting_keys: the keys concerned.
        malformed: complete lines that are not result rows.
        torn_bytes: bytes of a torn last line.
        dependents: ``bin/condition`` shard files moved out because this baseline lost keys.
    """

    path: str
    rows: int = 0
    identical: int = 0
    conflicting: int = 0
    conflicting_keys: List[Tuple[str, int, str]] = field(default_factory=list)
    malformed: int = 0
    torn_bytes: int = 0
    dependents: List[str] = field(default_factory=list)

    @property
    def damaged(self) -> bool:
        """Anything to repair."""
        return bool(self.identical or self.conflicting or self.malformed or self.torn_bytes)

    def line(self) -> str:
        """One report line."""
        parts = [f"{self.rows} rows", f"{self.identical} identical duplicates",
                 f"{self.conflicting} conflicting copies of {len(self.conflicting_keys)} keys",
                 f"{self.malformed} malformed lines", f"torn tail {self.torn_bytes} bytes"]
        if self.dependents:
            parts.append(f"dependent bin/condition shards moved out: {', '.join(self.dependents)}")
        return f"{self.path}: " + ", ".join(parts)


def _content(row: Dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in row.items() if k not in VOLATILE}, sort_keys=True, ensure_ascii=False)


def _inspect(data: bytes, rel: str) -> Tuple[ShardRepair, List[str], List[Dict[str, Any]]]:
    """(report, lines kept, quarantine entries) of a shard file's bytes."""
    end = data.rfind(b"\n") + 1
    report = ShardRepair(rel, torn_bytes=len(data) - end)
    text = data[:end].decode("utf-8", errors="surrogateescape")
    lines = text.split("\n")[:-1]
    parsed: List[Optional[Tuple[Tuple[str, int, str], str]]] = []
    copies: Dict[Tuple[str, int, str], List[int]] = {}
    for index, line in enumerate(lines):
        try:
            row = json.loads(line)
            key = row_key(row)
        except (ValueError, KeyError, TypeError, AttributeError):
            parsed.append(None)
            continue
        parsed.append((key, _content(row)))
        copies.setdefault(key, []).append(index)
    report.rows = sum(p is not None for p in parsed)
    moved: Dict[int, str] = {}
    for index, entry in enumerate(parsed):
        if entry is None:
            if lines[index].strip():
                report.malformed += 1
                moved[index] = "not a result row (malformed JSON or lines written into each other)"
            continue
        key, content = entry
        first = copies[key][0]
        if len({parsed[i][1] for i in copies[key]}) > 1:  # type: ignore[index]
            report.conflicting += 1
            moved[index] = f"key {key} written {len(copies[key])} times with different contents"
            if index == first:
                report.conflicting_keys.append(key)
        elif index != first:
            report.identical += 1
            moved[index] = f"identical copy of line {first + 1}"
    kept = [line for index, line in enumerate(lines) if index not in moved and line.strip()]
    quarantine = [{"source": rel, "line": index + 1, "reason": why, "text": lines[index]}
                  for index, why in sorted(moved.items())]
    if report.torn_bytes:
        quarantine.append({"source": rel, "line": len(lines) + 1, "reason": "torn last line (a killed writer)",
                           "text": data[end:].decode("utf-8", errors="replace")})
    return report, kept, quarantine


def _append_quarantine(target: Path, entries: List[Dict[str, Any]]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a", encoding="utf-8") as fh:
        for entry in entries:
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        fh.flush()


def _move_out(layout: RunLayout, ref: ShardRef) -> None:
    """Move a whole shard file and its sidecar into the quarantine folder (under its lock)."""
    with WriterLock(ref.path):
        for path in (ref.path, sidecar_path(ref.path)):
            if path.exists():
                target = layout.quarantine_file(path)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(path), str(target))


def dedupe_run(run_dir: Pathlike, dry_run: bool = False) -> List[ShardRepair]:
    """Repair the shard files of a run folder (see the module docstring).

    Args:
        run_dir: the run folder.
        dry_run: only report.

    Returns:
        One report per shard file (damaged or not).

    Raises:
        FileBusy: a shard file is being written by a live process (nothing of it is changed).
        InputError: not a run folder of this layout.

    Example:
        >>> for repair in dedupe_run("runs/exp"):  # doctest: +SKIP
        ...     print(repair.line())
    """
    layout = RunLayout(run_dir)
    found = layout.find_shards()
    reports: List[ShardRepair] = []
    for refs in found.values():
        for ref in refs:
            if not ref.path.exists():  # moved out with the baseline it was built on
                continue
            with WriterLock(ref.path):
                data = ref.path.read_bytes()
                report, kept, quarantine = _inspect(data, layout.relative(ref.path))
                reports.append(report)
                if not report.damaged or dry_run:
                    continue
                _append_quarantine(layout.quarantine_file(ref.path), quarantine)
                with atomic_output(ref.path) as fh:
                    fh.write("".join(line + "\n" for line in kept).encode("utf-8", errors="surrogateescape"))
                log.warning("%s", report.line())
            if report.conflicting_keys and ref.unit.intervention is None:
                for dep_key, dep_refs in found.items():
                    if dep_key.intervention is not None and dep_key._replace(intervention=None) == ref.unit:
                        for dep in dep_refs:
                            if dep.k == ref.k and dep.path.exists():
                                report.dependents.append(layout.relative(dep.path))
                                if not dry_run:
                                    _move_out(layout, dep)
    if not dry_run and any(r.damaged for r in reports):
        side = layout.root / layout.QUARANTINE / "dedupe.jsonl"
        _append_quarantine(side, [{"repair": r.__dict__} for r in reports if r.damaged])
        write_sidecar(side, "dedupe", run_dir=str(layout.root.resolve()))
    return reports

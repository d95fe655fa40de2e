"""``bin/perturb``: render a manifest's audio under conditions (masks, noise, spoken hints) to files.

Example:
    bin/perturb --manifest sakura.jsonl --conditions study --out-dir perturbed --workers 8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from toolkit.cli.common import EXIT_FAILED, EXIT_OK, add_common_args, run_cli
from toolkit.errors import ConditionError, InputError
from toolkit.manifest import Item
from toolkit.perturb.hints import add_hint_args, hints_from_args, render_hints

EPILOG = """\
condition names (canonical = full form; the short forms are accepted everywhere):
  clean                                   the decoded 16 kHz mono clip, written like the others
  mask-pNN[-scattered|-contiguous|-start|-end][-silence|-noise]
                                          NN = 0..100 %; mask-p20 = mask-p20-scattered-silence
  noise-snrS[-white|-<key>]               S dB, any number (noise-snr-10, noise-snr2.5);
                                          noise-snr-10 = noise-snr-10-white; <key> = stem of a
                                          file in --noise-dir (looped, seeded random offset)
  inject-correct|wrong-snrS               "The answer is <option>." spoken (repeated, 0.3 s
                                          gaps) and mixed in at S dB; wrong option seeded per
                                          item; hints from --hints DIR or --tts espeak-ng
  --conditions study                      mask-p20/40/60/80/90/100 (scattered, silence) and
                                          noise-snr -20/-10/0/10/20 (white)
  --conditions inject                     inject-correct-snr0 and inject-wrong-snr0

output: OUT/<canonical condition>/<item id>.wav, OUT/<condition>/manifest.jsonl (audio paths
relative to that folder) and manifest.jsonl.meta.json. Items that fail (missing audio,
silent clip under noise) stay in the manifest with meta.condition_error; exit code 1.

examples:
  bin/perturb --manifest m.jsonl --condition clean --condition mask-p20 --out-dir out
  bin/perturb --manifest m.jsonl --data-root data --conditions study --out-dir out --workers 8
  bin/perturb --manifest m.jsonl --condition noise-snr0-babble --noise-dir noises --out-dir out
  bin/perturb --manifest m.jsonl --conditions inject --tts espeak-ng --out-dir out
  bin/perturb --manifest m.jsonl --render-hints hints --tts espeak-ng   # a hint folder to re-voice
  bin/perturb --manifest m.jsonl --condition inject-wrong-snr-5 --hints hints --out-dir out
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``bin/perturb`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="perturb",
        description="Write every manifest item under each condition (one decode per clip), "
                    "with one manifest and sidecar per condition.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--manifest", required=True, type=Path, help="input manifest (JSONL)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder that relative audio paths resolve against (default: the manifest's folder)")
    parser.add_argument("--condition", action="append", default=[], metavar="NAME",
                        help="a condition name; repeat for several")
    parser.add_argument("--conditions", action="append", default=[], metavar="SET",
                        help="a named set of conditions: study, inject")
    parser.add_argument("--out-dir", type=Path, help="output folder (required unless only --render-hints)")
    parser.add_argument("--seed", type=int, default=0, help="global seed (default: 0)")
    parser.add_argument("--format", choices=("float", "pcm16"), default="float",
                        help="float: 32-bit float WAV, exact (default); pcm16: 16-bit, scaled down "
                             "by a recorded gain when it would clip")
    parser.add_argument("--workers", type=int, default=1, help="processes (default: 1, in-process)")
    parser.add_argument("--noise-dir", type=Path, default=None, help="folder of noise files (key = file stem)")
    add_hint_args(parser)
    parser.add_argument("--render-hints", type=Path, metavar="DIR",
                        help="write the hint of every option of --manifest into a hint folder DIR (hints.jsonl "
                             "+ WAVs) from --tts or --hints, then perturb only if conditions are given")
    add_common_args(parser)
    return parser


def _mean(values: List[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def summary_rows(results: Dict[str, List[Item]]) -> List[Dict[str, object]]:
    """Per condition: items written, errors, mean measured SNR and mean masked share.

    Args:
        results: what :func:`toolkit.perturb.perturb_manifest` returned.

    Returns:
        One dict per condition (None where a statistic does not apply).
    """
    rows = []
    for name, items in results.items():
        params = [it.meta["perturbation"] for it in items if "perturbation" in it.meta]
        snrs = [p["snr_measured_db"] for p in params if p.get("snr_measured_db") is not None]
        shares = [p["masked_share"] for p in params if "masked_share" in p]
        rows.append({"condition": name, "written": len(params), "errors": len(items) - len(params),
                     "mean_snr_db": _mean(snrs), "mean_masked_share": _mean(shares)})
    return rows


def format_table(rows: List[Dict[str, object]]) -> str:
    """Render :func:`summary_rows` as an aligned text table."""
    header = ("condition", "written", "errors", "mean SNR dB", "masked share")
    body = [(str(r["condition"]), str(r["written"]), str(r["errors"]),
             "-" if r["mean_snr_db"] is None else f"{round(r['mean_snr_db'], 3) + 0.0:.3f}",
             "-" if r["mean_masked_share"] is None else f"{r['mean_masked_share']:.4f}") for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(line, widths))) for line in [header, *body])


def _run(args: argparse.Namespace) -> int:
    from toolkit.manifest import read_manifest
    from toolkit.perturb import CONDITION_SETS, expand_conditions, perturb_manifest

    unknown_sets = [s for s in args.conditions if s not in CONDITION_SETS]
    if unknown_sets:
        raise InputError(f"unknown condition set {unknown_sets[0]!r}; valid: {sorted(CONDITION_SETS)}")
    names = args.condition + args.conditions
    hints = hints_from_args(args)
    if args.render_hints is not None:
        if hints is None:
            raise InputError("--render-hints needs a hint source: --tts espeak-ng or --hints DIR")
        try:
            index = render_hints(read_manifest(args.manifest), hints, args.render_hints)
        except ConditionError as exc:
            raise InputError(f"--render-hints: {exc}") from None
        print(f"hints: {index}")
        if not names:
            return EXIT_OK
    if not names:
        raise InputError("no condition given: use --condition NAME (repeatable) or --conditions study")
    if args.out_dir is None:
        raise InputError("--out-dir is required to write conditions")
    try:
        conditions = expand_conditions(names)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if args.workers < 1:
        raise InputError(f"--workers must be >= 1, not {args.workers}")
    items = read_manifest(args.manifest)
    data_root = args.data_root if args.data_root is not None else args.manifest.resolve().parent
    results = perturb_manifest(items, data_root, conditions, args.out_dir, seed=args.seed, fmt=args.format,
                               workers=args.workers, noise_dir=args.noise_dir, source_manifest=args.manifest,
                               progress=not args.quiet, hints=hints)
    rows = summary_rows(results)
    print(format_table(rows))
    return EXIT_FAILED if any(r["errors"] for r in rows) else EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``bin/perturb``.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        0 all written, 1 some items failed (flagged in the manifests), 2 bad input.
    """
    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())

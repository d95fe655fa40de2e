"""``bin/prepare``: a source format (SAKURA, MMAU, MMAR, earlier scripts' manifests) -> one manifest."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Callable, Optional, Sequence

from toolkit.cli.common import EXIT_BAD_INPUT, EXIT_OK, add_common_args, run_cli

SHOWN_PROBLEMS = 5

EPILOG = """\
examples:
  # SAKURA from the official repository layout (all four tracks), native ids
  prepare sakura --src SAKURA/data --out manifests/sakura.jsonl

  # two tracks, ids of the earlier scripts (matched on audio file + hop) so old results line up
  prepare sakura --src SAKURA/data --tracks Animal,Emotion --out manifests/sakura-ae.jsonl \\
      --ids seed --seed-manifest old/animal_manifest.jsonl old/emotion_manifest.jsonl

  # MMAU test-mini; audio looked up under the JSON's folder (test-mini-audios/)
  prepare mmau --src mmau/mmau-test-mini.json --out manifests/mmau.jsonl

  # MMAR metadata only (no audio on this machine): the check reports it and passes
  prepare mmar --src mmar/MMAR-meta.jsonl --out manifests/mmar.jsonl

  # an earlier scripts' manifest as it is; {DATA_ROOT} becomes the absolute --data-root
  prepare seed --src old/mmau_manifest.jsonl --data-root /data/mmau --out manifests/mmau-seed.jsonl

audio check (--check-audio): "auto" requires every file once any exists and accepts a
metadata-only manifest when none does; "yes" requires every file; "no" skips. Readable
files get meta.duration/sample_rate/channels. Exit codes: 0 ok, 2 bad input or audio
problems (nothing is written).
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``prepare`` parser: one subcommand per source."""
    parser = argparse.ArgumentParser(prog="prepare", description="Turn a source format into a validated manifest.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    add_common_args(common)
    common.add_argument("--out", required=True, help="manifest to write (JSONL; a .meta.json sidecar goes beside it)")
    common.add_argument("--data-root", help="folder relative audio paths are resolved against "
                        "(default: the SAKURA folder, or the folder of the MMAU/MMAR/seed file)")
    common.add_argument("--check-audio", choices=("auto", "yes", "no"), default="auto",
                        help="audio existence check (default: %(default)s)")
    common.add_argument("--allow-missing-audio", action="store_true",
                        help="write the manifest even if some audio files are missing")
    common.add_argument("--workers", type=int, default=4, help="threads reading audio headers (default: %(default)s)")
    sub = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")

    p = sub.add_parser("sakura", parents=[common], help="SAKURA, official repository layout")
    p.add_argument("--src", required=True, help="folder with Animal/ Emotion/ Gender/ Language/ (or the repo root)")
    p.add_argument("--tracks", help="comma-separated tracks (default: all)")
    p.add_argument("--ids", choices=("native", "seed"), default="native",
                   help="native ids, or the earlier scripts' ids from --seed-manifest (default: %(default)s)")
    p.add_argument("--seed-manifest", action="extend", nargs="+", default=[], metavar="FILE",
                   help="earlier scripts' SAKURA manifest (repeatable)")
    p = sub.add_parser("mmau", parents=[common], help="MMAU test-mini JSON")
    p.add_argument("--src", required=True, help="mmau-test-mini.json")
    p = sub.add_parser("mmar", parents=[common], help="MMAR-meta.jsonl (or the older MMAR-meta.json)")
    p.add_argument("--src", required=True, help="MMAR-meta.jsonl or MMAR-meta.json")
    p = sub.add_parser("seed", parents=[common], help="a manifest written by the earlier scripts")
    p.add_argument("--src", required=True, help="earlier manifest (JSONL with {DATA_ROOT} paths)")
    p.add_argument("--dataset", help="dataset name (default: from the ids or the file name)")
    p.add_argument("--subset", help="subset name (default: from the ids)")
    p.add_argument("--on-mismatch", choices=("error", "letter", "text"), default="error",
                   help="when answer text and true_letter disagree: fail, keep the letter, or follow the text "
                        "(default: %(default)s)")
    return parser


def _prepare_items(args: argparse.Namespace) -> tuple[list, Path]:
    """Run the source's ``prepare_<source>``; returns the items and the audio data root."""
    from toolkit.data import mmar, mmau, sakura, seed_legacy

    src = Path(args.src)
    if args.source == "sakura":
        tracks = [t.strip() for t in args.tracks.split(",") if t.strip()] if args.tracks else None
        items = sakura.prepare_sakura(src, tracks=tracks, ids=args.ids, seed_manifests=args.seed_manifest)
        return items, Path(args.data_root or src)
    if args.source == "seed":
        root = Path(args.data_root).resolve() if args.data_root else None
        items = seed_legacy.prepare_seed(src, data_root=root, dataset=args.dataset, subset=args.subset,
                                         on_mismatch=args.on_mismatch)
        return items, root or src.parent
    prepare: Callable[[Path], list] = mmau.prepare_mmau if args.source == "mmau" else mmar.prepare_mmar
    return prepare(src), Path(args.data_root) if args.data_root else src.parent


def _report_problems(problems: list, total: int) -> None:
    for problem in problems[:SHOWN_PROBLEMS]:
        print(f"prepare: error: {problem}", file=sys.stderr)
    more = f" ({total - SHOWN_PROBLEMS} more not shown)" if total > SHOWN_PROBLEMS else ""
    print(f"prepare: error: {total} audio problem(s){more}; nothing written. --allow-missing-audio accepts "
          "missing files, --check-audio no skips the check", file=sys.stderr)


def _counts(items: list) -> dict:
    return {"items": len(items),
            "by_subset": dict(Counter(str(item.subset) for item in items)),
            "by_hop": dict(Counter(str(item.hop) for item in items))}


def _summary(out: Path, counts: dict, audio: dict) -> str:
    parts = ", ".join(f"{name}={n}" for name, n in sorted(counts["by_subset"].items()))
    hops = ", ".join(f"{name}={n}" for name, n in sorted(counts["by_hop"].items()))
    if audio["mode"] == "no":
        audio_line = "audio: not checked"
    elif audio["metadata_only"]:
        audio_line = f"audio: none of {audio['files']} file(s) found (metadata only)"
    else:
        audio_line = f"audio: {audio['readable']}/{audio['files']} file(s) readable, {audio['missing']} missing"
    return f"wrote {counts['items']} items to {out}\n  subsets: {parts}\n  hops: {hops}\n  {audio_line}"


def _body(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from toolkit.data.audio_check import check_audio
    from toolkit.manifest import write_manifest
    from toolkit.sidecar import write_sidecar

    items, data_root = _prepare_items(args)
    report = check_audio(items, data_root, mode=args.check_audio, workers=args.workers)
    blocking = report.blocking(allow_missing=args.allow_missing_audio)
    if blocking:
        _report_problems(blocking, len(blocking))
        return EXIT_BAD_INPUT
    out = write_manifest(args.out, items)
    counts, audio = _counts(items), report.summary()
    write_sidecar(out, "prepare", argv=["prepare", *argv], source=args.source, src=str(args.src),
                  data_root=str(data_root), counts=counts, audio_check=audio)
    print(_summary(out, counts, audio))
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``bin/prepare``.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 ok, 2 bad input or unusable audio (the output is left untouched).

    Example:
        >>> main(["mmau", "--src", "mmau/mmau-test-mini.json", "--out", "mmau.jsonl"])  # doctest: +SKIP
        0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_cli(build_parser(), lambda args: _body(args, argv), argv)

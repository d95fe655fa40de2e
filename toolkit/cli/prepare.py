"""``bin/prepare``: a source format (SAKURA, MMAU, MMAR, LibriSpeech, MMLU, timbre range, earlier scripts'
manifests) -> one manifest."""

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

  # LibriSpeech dev-clean for ASR (task asr, reference transcripts); audio under LibriSpeech/
  prepare librispeech --src LibriSpeech --split dev-clean --out manifests/librispeech-dev-clean.jsonl

  # MMLU test questions spoken by espeak-ng (written to manifests/mmlu-speech/) + their text twins
  prepare mmlu --src mmlu --speak espeak --subjects abstract_algebra,anatomy --per-subject 20 \\
      --data-root manifests/mmlu-speech --out manifests/mmlu.jsonl
  # ... or spoken by another TTS: <DIR>/mmlu_<subject>_<n>.wav says the audio item's meta.spoken_text
  prepare mmlu --src mmlu --speak my-tts/ --out manifests/mmlu-mytts.jsonl

  # timbre range (3 classes): a label CSV (audio,label[,split]) or narrow/ moderate/ wide/ folders
  prepare timbre --src timbre_range/labels.csv --split test --out manifests/timbre.jsonl

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
    common.add_argument("--data-root", help="folder relative audio paths are resolved against (default: the "
                        "SAKURA/LibriSpeech/timbre folder, or the folder of the MMAU/MMAR/seed file/timbre CSV; "
                        "mmlu --speak espeak: where speech is written, default <out stem>-speech/ beside --out)")
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
    p = sub.add_parser("librispeech", parents=[common], help="LibriSpeech split (ASR items with references)")
    p.add_argument("--src", required=True, help="LibriSpeech folder holding <split>/ (or the split folder)")
    p.add_argument("--split", required=True, help="dev-clean, dev-other, test-clean, test-other, train-clean-100 ...")
    p = sub.add_parser("mmlu", parents=[common], help="MMLU questions spoken + their text-only twins")
    p.add_argument("--src", required=True, help="cais/mmlu folder (<subject>/<split>-*.parquet, or CSV) or one file")
    p.add_argument("--speak", required=True, metavar="espeak|DIR",
                   help="synthesise the spoken questions with espeak-ng, or take DIR/mmlu_<subject>_<n>.wav "
                        "(.flac/.mp3/.ogg) made with another TTS")
    p.add_argument("--split", default="test", help="split whose files are read (default: %(default)s)")
    p.add_argument("--subjects", help="comma-separated subjects (default: all)")
    p.add_argument("--per-subject", type=int, metavar="N", help="first N questions of each subject (default: all)")
    p.add_argument("--voice", default="en-us", help="espeak-ng voice (default: %(default)s)")
    p.add_argument("--rate", type=int, default=160, help="espeak-ng words per minute (default: %(default)s)")
    p = sub.add_parser("timbre", parents=[common], help="ccmusic timbre_range 'range': narrow/moderate/wide")
    p.add_argument("--src", required=True, help="label CSV (audio,label[,split][,id]) or folder of class folders")
    p.add_argument("--split", help="keep one split (CSV split column or <src>/<split>/ folder)")
    return parser


def _prepare_items(args: argparse.Namespace) -> tuple[list, Path]:
    """Run the source's ``prepare_<source>``; returns the items and the audio data root."""
    from toolkit.data import librispeech, mmar, mmau, sakura, seed_legacy, timbre

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
    if args.source == "librispeech":
        items = librispeech.prepare_librispeech(src, args.split)
        return items, Path(args.data_root) if args.data_root else librispeech.find_split_folder(src, args.split).parent
    if args.source == "mmlu":
        return _prepare_mmlu(args, src)
    if args.source == "timbre":
        items = timbre.prepare_timbre(src, split=args.split)
        return items, Path(args.data_root) if args.data_root else src if src.is_dir() else src.parent
    prepare: Callable[[Path], list] = mmau.prepare_mmau if args.source == "mmau" else mmar.prepare_mmar
    return prepare(src), Path(args.data_root) if args.data_root else src.parent


def _prepare_mmlu(args: argparse.Namespace, src: Path) -> tuple[list, Path]:
    """``prepare_mmlu`` with the speech folder as the data root (see ``--data-root``)."""
    from toolkit.data.mmlu_speech import ESPEAK, prepare_mmlu

    espeak = args.speak == ESPEAK
    if espeak:
        out = Path(args.out)
        speech_dir = Path(args.data_root) if args.data_root else out.with_name(f"{out.stem}-speech")
    else:
        speech_dir = args.data_root  # None, or the --speak folder itself
    subjects = [s.strip() for s in args.subjects.split(",") if s.strip()] if args.subjects else None
    items = prepare_mmlu(src, args.speak, speech_dir=speech_dir, split=args.split, subjects=subjects,
                         per_subject=args.per_subject, voice=args.voice, rate=args.rate)
    return items, Path(speech_dir if espeak else args.speak)


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

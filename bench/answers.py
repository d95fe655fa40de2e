#!/usr/bin/env python3
"""Benchmark the answer-extraction rule cascade (rows/s), and the semantic step per row.

Rows are every (output, options) pair of the earlier Qwen2.5-Omni result files in
``../shared/data/seed-results`` (each file's runs, options from its task's manifest); when
that folder is absent, ``--generated N`` rows with realistic phrasings are made up instead.
The cascade (:func:`toolkit.answers.extract_answer`) is timed in this process:

- ``cold``: the first pass (stemmer import, regex compiling and option caches included;
  the stemmer's import is timed separately by calling ``toolkit.answers.preload`` first);
- ``warm``: the best and median of ``--repeats`` further passes over the same rows.

Each is printed in rows/s with its ratio to the 20,000 rows/s goal. ``--af3`` also times the
5,997 Audio Flamingo 3 reasoning outputs of the original study (free text, the slow path of
the cascade: walk-back, exclusions), read from its git mirror (see bench/answers_dev/README.md).
The semantic step
(:class:`toolkit.semantic.SemanticMatcher`, bundled MiniLM, CPU) is then timed on the rows
the cascade leaves null with no rule fired: model load, and ms per row over one batched
pass (``--no-semantic`` skips it).

    python3 bench/answers.py [--data DIR] [--repeats 5] [--generated N] [--no-semantic] [--af3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import List, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from toolkit.answers import extract_answer, preload  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "seed-results"
GOAL = 20_000.0
Row = Tuple[str, Sequence[str]]


def _seed_rows(data: Path) -> List[Row]:
    """(raw output, choices) for every run of every earlier result file under ``data``."""
    from toolkit.manifest import load_items
    from toolkit.results import read_results

    rows: List[Row] = []
    for task_dir in sorted(p for p in data.glob("*/*") if p.is_dir()):
        manifest = data / "manifests" / f"{task_dir.name}_manifest.jsonl"
        if not manifest.is_file():
            continue
        items = {item.id: item for item in load_items(manifest)}
        for path in sorted(task_dir.glob("*.jsonl")):
            for row in read_results(path)[1]:
                choices = items[row.id].choices
                rows += [(raw, choices) for raw in row.data["raw_model_outputs"] if raw is not None]
    return rows


def _generated_rows(n: int, seed: int = 0) -> List[Row]:
    """``n`` made-up outputs in the phrasings the real files show (tags, letters, sentences, refusals)."""
    rng = random.Random(seed)
    pools = [["dog", "cat", "cow", "crow"], ["happy", "sad", "angry", "fear"], ["Male", "Female"],
             ["one", "two", "three", "four"], ["a car horn", "a siren", "rain on a roof", "applause"]]
    reasons = ["The audio contains a clear, repeated sound with a rising pitch.",
               "The speaker's voice is steady, with no raised pitch or fast speech.",
               "There are several distinct events separated by short silences."]
    rows: List[Row] = []
    for _ in range(n):
        choices = rng.choice(pools)
        i = rng.randrange(len(choices))
        letter, option = "ABCD"[i], choices[i]
        reasoning = " ".join(rng.sample(reasons, 2))
        text = rng.choice([
            f"<Reasoning>\n{reasoning}\n</Reasoning>\n<{letter}>",
            f"<Reasoning>\n{reasoning}\n</Reasoning>\n<Conclusion>\n{letter}\n</Conclusion>",
            f"{letter}",
            f"{reasoning} Therefore, the answer is ({letter}) {option}.",
            f"{reasoning}\nAnswer: {letter}",
            f"<Reasoning>\n{reasoning}\n</Reasoning>\nIt sounds like {option}.",
            f"<Reasoning>\n{reasoning}\n</Reasoning>\n<N/A>",
            "I'm sorry, I can't hear the audio. Could you describe it?",
        ])
        rows.append((text, choices))
    return rows


def _pass(rows: Sequence[Row]) -> float:
    t0 = time.perf_counter()
    for text, choices in rows:
        extract_answer(text, choices)
    return time.perf_counter() - t0


def _rate(n: int, seconds: float) -> str:
    rate = n / seconds
    return f"{rate:10,.0f} rows/s  ({rate / GOAL:.2f}x the {GOAL:,.0f} rows/s goal)"


def _time_af3(repeats: int) -> None:
    """Cold and warm rows/s on the AF3 baseline reasoning outputs (skipped without the mirror)."""
    sys.path.insert(0, str(REPO / "bench" / "answers_dev"))
    try:
        from draw import pool

        rows = [(it["output"], it["choices"]) for it in pool() if it["model"] == "af3"]
    except Exception as exc:  # noqa: BLE001 - no mirror here
        print(f"AF3 outputs skipped: {exc}")
        return
    cold = _pass(rows)
    warm = [_pass(rows) for _ in range(repeats)]
    print(f"AF3 {len(rows):,} free-text outputs: cold {_rate(len(rows), cold)}")
    print(f"AF3 warm best of {repeats}  {_rate(len(rows), min(warm))}")


def main() -> None:
    """Parse arguments, time the cascade cold and warm, then the semantic step; print the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="seed-results folder (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="warm passes (default: 5)")
    p.add_argument("--generated", type=int, default=30_000,
                   help="rows to generate when --data is absent (default: 30000)")
    p.add_argument("--no-semantic", action="store_true", help="skip the semantic step")
    p.add_argument("--af3", action="store_true", help="also time the AF3 outputs of the original study's mirror")
    args = p.parse_args()

    if args.data.is_dir():
        rows, where = _seed_rows(args.data), f"real outputs from {args.data}"
    else:
        rows, where = _generated_rows(args.generated), f"generated rows ({args.data} absent)"
    print(f"{len(rows):,} rows: {where}")

    t0 = time.perf_counter()
    preload()
    print(f"stemmer import (preload): {time.perf_counter() - t0:.2f} s, not in the figures below")
    cold = _pass(rows)
    warm = [_pass(rows) for _ in range(args.repeats)]
    print(f"cold (first pass)   {_rate(len(rows), cold)}")
    print(f"warm best of {args.repeats}      {_rate(len(rows), min(warm))}")
    print(f"warm median of {args.repeats}    {_rate(len(rows), statistics.median(warm))}")
    if args.af3:
        _time_af3(args.repeats)

    if args.no_semantic:
        return
    nulls = [(t, c) for t, c in rows if extract_answer(t, c).source is None]  # no rule fired: a null
    print(f"semantic step on the {len(nulls):,} rows no rule decided:")
    try:
        from toolkit.semantic import SemanticMatcher

        matcher = SemanticMatcher()
        t0 = time.perf_counter()
        matcher.model  # noqa: B018 - load now, timed apart
    except ImportError as exc:
        print(f"  skipped: {exc}")
        return
    print(f"  model load          {time.perf_counter() - t0:.2f} s")
    if not nulls:
        return
    t0 = time.perf_counter()
    found = matcher.match_batch([t for t, _ in nulls], [c for _, c in nulls])
    seconds = time.perf_counter() - t0
    encoded = sum(1 for f in found if f.reason != "semantic: no words in the final text")
    print(f"  first pass          {1000 * seconds / len(nulls):.2f} ms/row ({len(nulls) / seconds:,.0f} rows/s; "
          f"{encoded:,} encoded, the rest have no words)")
    t0 = time.perf_counter()
    matcher.match_batch([t for t, _ in nulls], [c for _, c in nulls])
    seconds = time.perf_counter() - t0
    print(f"  warm (options cached) {1000 * seconds / len(nulls):.2f} ms/row")
    ties = sum(f.pred is None and f.source is not None for f in found)
    print(f"  filled {sum(f.pred is not None for f in found)}, ties {ties}")


if __name__ == "__main__":
    main()

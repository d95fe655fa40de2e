#!/usr/bin/env python3
"""Benchmark ``merge`` against plain concatenation of the same shard files.

Generates a run directory of ``--units`` units x ``--shards`` shards holding ``--rows``
realistic result rows in total (reasoning text, option log-probabilities, a few error rows,
one run per item), each shard file with an infer-style sidecar, over one shared manifest;
no model is run. Then times, interleaved in this one process over ``--repeats``:

- ``cat``: read every shard file and write them one after another into one file (the
  I/O floor of producing a results.jsonl);
- ``cat + json.loads``: the same plus one ``json.loads`` per line (the parsing floor);
- ``merge_run``: the whole stage (manifest ids, check, results.jsonl, results.h5, sidecars).

Prints best and median wall time of each and the ratios to the two floors.

    python3 bench/merge.py [--rows 100000] [--units 4] [--shards 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from toolkit.runs import RunLayout, Unit, select_shard  # noqa: E402
from toolkit.sidecar import write_sidecar  # noqa: E402
from toolkit.store import merge_run  # noqa: E402

CONDITIONS = ("clean", "mask-p40-scattered-silence", "noise-snr0-white", "noise-snr-10-white")
MODES = ("reasoning", "direct")


def _row(rng: random.Random, item_id: str, condition: str, mode: str, k: int) -> dict:
    n_choices = rng.choice((2, 4, 4, 4))
    pred = rng.randrange(n_choices)
    letter = "ABCD"[pred]
    reasoning = " ".join(rng.choice(("the", "clip", "a", "dog", "barks", "twice", "then", "silence", "louder",
                                     "second", "tone", "rises", "so", "option", "fits", "best"))
                         for _ in range(rng.randint(30, 90)))
    error = rng.random() < 0.005
    return {"id": item_id, "model": "qwen2-audio", "condition": condition, "mode": mode, "run": 0,
            "prompt": f"{mode}-v1", "raw_output": None if error else f"{reasoning}. Answer: ({letter})",
            "reasoning": None if error else reasoning, "pred": None if error else pred,
            "pred_source": None if error else "answer-statement", "correct": None if error else rng.random() < 0.6,
            "error": "OSError: unreadable audio" if error else None,
            "n_new_tokens": None if error else rng.randint(40, 200), "seconds": round(rng.uniform(0.2, 2.0), 4),
            "option_logprobs": None if error else {"ABCD"[i]: round(-rng.uniform(0.01, 9.0), 6)
                                                   for i in range(n_choices)}}


def build(root: Path, rows: int, n_units: int, shards: int) -> Path:
    """Write the run directory ``root/exp`` and its manifest; returns the run directory."""
    rng = random.Random(0)
    n_items = rows // n_units
    ids = [f"sakura_animal_{i:06d}_single" for i in range(n_items)]
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"id": i, "dataset": "sakura", "audio": f"audio/{i}.wav",
                                            "question": "Which animal?", "choices": ["dog", "cat", "cow", "owl"],
                                            "answer": 0}) + "\n" for i in ids))
    units = [(c, m) for c in CONDITIONS for m in MODES][:n_units]
    for condition, mode in units:
        fingerprint = {"model": "qwen2-audio", "mode": mode, "prompt": f"{mode}-v1", "condition": condition,
                       "seed": 0, "score_options": True, "generation": {"max_new_tokens": 512, "do_sample": False}}
        for k in range(shards):
            path = RunLayout(root / "exp").shard_path(Unit("qwen2-audio", "sakura", condition, mode, shards=shards), k)
            path.parent.mkdir(parents=True, exist_ok=True)
            part = select_shard(ids, k, shards)
            with open(path, "w", encoding="utf-8") as fh:
                for item_id in part:
                    fh.write(json.dumps(_row(rng, item_id, condition, mode, k), ensure_ascii=False) + "\n")
            write_sidecar(path, "infer", fingerprint=fingerprint, model={"backend": "qwen2-audio"}, num_runs=1,
                          manifest=str(manifest.resolve()), data_root=str(root), shard=f"{k}/{shards}",
                          items_in_shard=len(part))
    return root / "exp"


def _shard_files(run_dir: Path) -> List[Path]:
    return sorted(ref.path for refs in RunLayout(run_dir).find_shards().values() for ref in refs)


def _cat(run_dir: Path, out: Path, parse: bool) -> None:
    with open(out, "wb") as dst:
        for path in _shard_files(run_dir):
            data = path.read_bytes()
            if parse:
                for line in data.splitlines():
                    json.loads(line)
            dst.write(data)


def main() -> int:
    """Build the run directory, run the timings and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--units", type=int, default=4, choices=range(1, len(CONDITIONS) * len(MODES) + 1))
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-merge-"))
    try:
        run_dir = build(root, args.rows, args.units, args.shards)
        files = _shard_files(run_dir)
        size = sum(p.stat().st_size for p in files)
        n_rows = (args.rows // args.units) * args.units
        print(f"{n_rows} rows, {args.units} units x {args.shards} shards = {len(files)} files, "
              f"{size / 1e6:.1f} MB; best/median of {args.repeats}")
        runs: Dict[str, Callable[[], None]] = {
            "cat (read + write the shard files)": lambda: _cat(run_dir, root / "cat.jsonl", parse=False),
            "cat + json.loads per line": lambda: _cat(run_dir, root / "cat.jsonl", parse=True),
            "merge_run": lambda: merge_run(run_dir),
        }
        for run in runs.values():  # warm-up: page cache, imports
            run()
        times: Dict[str, List[float]] = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        for name, values in times.items():
            best, median = min(values), statistics.median(values)
            print(f"{name:36s} best {best * 1e3:8.1f} ms  median {median * 1e3:8.1f} ms  {n_rows / best:9.0f} rows/s")
        cat, parse, merge = (times[name] for name in runs)
        for label, floor in (("cat", cat), ("cat + json.loads", parse)):
            print(f"ratio merge_run / {label:17s} best {min(merge) / min(floor):6.2f}  "
                  f"median {statistics.median(merge) / statistics.median(floor):6.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

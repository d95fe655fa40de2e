#!/usr/bin/env python3
"""Benchmark ``perturb`` against the I/O floor on the real SAKURA-mini clips.

Rate = items x conditions per second for the study conditions (mask-p20/40/60/80/100
scattered-silence, noise-snr -20/-10/0/10/20 white; ``--with-p90`` adds mask-p90).
Two floors, both with the same atomic ``save_audio`` and format, no perturbation and no
manifests: the goal's floor decodes and encodes every output file (one decode + one
encode per item x condition, what producing the same files costs without perturbing),
and the strict floor decodes each clip once and only re-encodes per condition (pure
output I/O; perturb's own read-once design is held against it). ``perturb`` is timed end to end
(``perturb_manifest``: decode, render, write WAVs, manifests and sidecars). The runs are
interleaved (floor, workers=1, workers=2, repeated) and each figure is the best and the
median over ``--repeats``, in this one process. Wall time is the goal figure; CPU time
(this process and its threads, workers=1 only) shows the extra computation itself.

    python3 bench/perturb.py [--data DIR] [--format float|pcm16] [--repeats 7] [--with-p90]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from toolkit.audio import load_audio, save_audio  # noqa: E402
from toolkit.manifest import Item  # noqa: E402
from toolkit.perturb import perturb_manifest  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "sakura-mini"
CONDITIONS = ["mask-p20", "mask-p40", "mask-p60", "mask-p80", "mask-p100",
              "noise-snr-20", "noise-snr-10", "noise-snr0", "noise-snr10", "noise-snr20"]


def _items(data: Path) -> List[Item]:
    files = sorted(data.glob("*/audio/*.wav"))
    if not files:
        sys.exit(f"bench/perturb.py: no clips in {data}/*/audio/ (shared data absent?); use --data DIR")
    return [Item(id=f"{f.parent.parent.name}-{f.stem}", dataset="sakura", audio=str(f), question="?",
                 choices=["a", "b"], answer=0) for f in files]


def _floor(items: List[Item], out: Path, fmt: str, n_conditions: int, decode_per_output: bool) -> None:
    for item in items:
        x = load_audio(item.audio)
        for c in range(n_conditions):
            if decode_per_output and c:
                x = load_audio(item.audio)
            save_audio(out / f"c{c}" / f"{item.id}.wav", x, fmt=fmt)


def _timed(run: Callable[[Path], None]) -> Tuple[float, float]:
    """(wall, cpu) seconds of one run into a fresh temporary folder."""
    out = Path(tempfile.mkdtemp(prefix="bench-perturb-"))
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        run(out)
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--format", choices=("float", "pcm16"), default="float")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--with-p90", action="store_true", help="add mask-p90 (11 conditions)")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"bench/perturb.py: data folder not found: {args.data} (use --data DIR)")
    items = _items(args.data)
    conditions = CONDITIONS + (["mask-p90"] if args.with_p90 else [])
    units = len(items) * len(conditions)
    print(f"{len(items)} clips x {len(conditions)} conditions = {units} outputs, format {args.format}, "
          f"best/median of {args.repeats}")

    runs: Dict[str, Callable[[Path], None]] = {
        "floor (decode + encode per output)": lambda out: _floor(items, out, args.format, len(conditions), True),
        "strict floor (decode once, encode per output)":
            lambda out: _floor(items, out, args.format, len(conditions), False),
    }
    for workers in (1, 2):
        runs[f"perturb, workers={workers}"] = (
            lambda out, w=workers: perturb_manifest(items, None, conditions, out, fmt=args.format, workers=w,
                                                    progress=False))
    for run in runs.values():  # warm-up: page cache, imports, first allocations
        _timed(run)
    times: Dict[str, List[Tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].append(_timed(run))

    def stat(name: str, index: int) -> Tuple[float, float]:
        values = [t[index] for t in times[name]]
        return min(values), statistics.median(values)

    for name in runs:
        best, median = stat(name, 0)
        print(f"{name:46s} wall best {best*1e3:7.1f} ms  median {median*1e3:7.1f} ms  {units / best:7.0f} outputs/s")
    floor, strict, one, two = (stat(name, 0) for name in runs)
    floor_cpu, strict_cpu, one_cpu = (stat(name, 1) for name in list(runs)[:3])
    for label, (wall, cpu) in (("floor", (floor, floor_cpu)), ("strict floor", (strict, strict_cpu))):
        goal = "  (goal <= 1.3)" if label == "floor" else ""
        print(f"ratio perturb(workers=1) / {label:12s} wall: best {one[0] / wall[0]:.3f}  median {one[1] / wall[1]:.3f}"
              f"   CPU: best {one_cpu[0] / cpu[0]:.3f}  median {one_cpu[1] / cpu[1]:.3f}{goal}")
    print(f"speed-up workers=2 vs workers=1 (wall): best {one[0] / two[0]:.2f}x  median {one[1] / two[1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

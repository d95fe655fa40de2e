#!/usr/bin/env python3
"""Peak memory of ``bin/condition`` against the number of rows it writes (filler-dots).

Each run is a fresh process (``/usr/bin/time``-free: the child's ``ru_maxrss`` from
``resource``): a demo manifest of N items, a simulated reasoning baseline, then
``filler-dots:step=0.05`` (21 shares x 3 positions per item). Memory must stay flat in the
number of rows: the ratio of peak RSS at the largest over the smallest size is printed.

    python3 bench/condition_memory.py [--items 48 480]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from toolkit.data.demo import prepare_demo  # noqa: E402
from toolkit.manifest import write_manifest  # noqa: E402


def peak_rss_mb(command: list) -> float:
    """Run ``command`` to completion and return its peak resident set size in MB."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(before, after) / 1024.0


def main() -> int:
    """Print peak RSS per manifest size and the largest/smallest ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="+", default=[48, 480], help="manifest sizes (multiples of 3)")
    args = parser.parse_args()
    figures = []
    for n in sorted(args.items):  # increasing: ru_maxrss of children is a running maximum
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            manifest = write_manifest(root / "data" / "m.jsonl", prepare_demo(root / "data", items_per_task=n // 3))
            baseline, out = root / "baseline.jsonl", root / "dots.jsonl"
            subprocess.run([sys.executable, str(REPO / "bin" / "infer"), "--manifest", str(manifest), "--model",
                            "simulated", "--mode", "reasoning", "--out", str(baseline), "-q"], check=True,
                           stdout=subprocess.DEVNULL)
            rss = peak_rss_mb([sys.executable, str(REPO / "bin" / "condition"), "--manifest", str(manifest),
                               "--results", str(baseline), "--model", "simulated", "--intervention",
                               "filler-dots:step=0.05", "--out", str(out), "-q"])
            rows = sum(1 for _ in out.open())
        figures.append((n, rows, rss))
        print(f"{n:5d} items  {rows:6d} rows  peak RSS {rss:7.1f} MB")
    if len(figures) > 1:
        print(f"peak RSS ratio {figures[-1][0]} vs {figures[0][0]} items: {figures[-1][2] / figures[0][2]:.2f}x "
              f"for {figures[-1][1] / figures[0][1]:.0f}x the rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Launch benchmarks: model loads per sweep, and the wall time of SLURM vs local execution.

1. Model loads for the study's sweep (4 SAKURA tracks + MMAU + MMAR, the 11 study audio
   conditions, 2 modes): the toolkit's plan (one load per array task = per dataset shard)
   against the earlier shell loops (one process, hence one load, per dataset x condition,
   and per mode where each mode had its own script). The toolkit's count is measured: the
   sweep runs in-process (debug executor) with the simulated backend on a nine-item stand-in
   per dataset and the tasks' own load counters are summed.
2. Overhead (only with a cluster: SLURM_CONF set): wall time of one small sweep through the
   local SLURM cluster vs ``--executor local``, same plan, same files.

Merge throughput (100k rows vs concatenating the shard files) is ``bench/merge.py``.

    python3 bench/launch.py [--shards 1,8] [--skip-slurm]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from toolkit.launch.launcher import Launch  # noqa: E402
from toolkit.launch.profile import load_profile  # noqa: E402
from toolkit.launch.sweep import load_sweep  # noqa: E402
from toolkit.perturb import CONDITION_SETS  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATASETS = ("sakura-animal", "sakura-emotion", "sakura-gender", "sakura-language", "mmau", "mmar")


def study_sweep(folder: Path, shards: int) -> Path:
    """A sweep file shaped like the study's, one simulated model, generated stand-in data."""
    datasets = "\n".join(f"  - {{name: {d}, demo: {{items_per_task: 3, seed: {i}}}, shards: {shards}}}"
                         for i, d in enumerate(DATASETS))
    text = f"""experiment: study-{shards}
output: out
models: [{{name: sim, backend: simulated}}]
datasets:
{datasets}
conditions: study
modes: [direct, reasoning]
"""
    path = folder / f"study-{shards}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def model_loads(folder: Path, shards: int) -> int:
    """Run the study-shaped sweep in-process and sum the model loads the tasks report."""
    launch = Launch(load_sweep(study_sweep(folder, shards)), load_profile(None), "debug")
    launch.submit()
    return sum(ref.handle.result["model_loads"] for kind, ref in launch.refs if kind == "task")


def timed_launch(sweep_file: Path, out: Path, executor: str, profile: Path) -> float:
    """Wall seconds of one launch (submission to the end of the score job)."""
    start = time.perf_counter()
    launch = Launch(load_sweep(sweep_file).with_output(out), load_profile(profile), executor)
    launch.submit()
    states = launch.wait(poll_s=0.5)
    if set(states.values()) != {"COMPLETED"}:
        raise SystemExit(f"{executor} launch failed: {states}")
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", default="1,8", help="shards per dataset to plan with (default: %(default)s)")
    p.add_argument("--skip-slurm", action="store_true", help="skip the SLURM vs local wall-time comparison")
    args = p.parse_args()
    conditions = len(CONDITION_SETS["study"])
    per_dataset_condition = len(DATASETS) * conditions
    print(f"study sweep: {len(DATASETS)} datasets x {conditions} audio conditions x 2 modes, per model")
    print(f"  earlier shell loops: {per_dataset_condition} loads (one per dataset x condition), "
          f"{2 * per_dataset_condition} with one script per mode")
    with tempfile.TemporaryDirectory() as tmp:
        for shards in (int(s) for s in args.shards.split(",")):
            loads = model_loads(Path(tmp), shards)
            print(f"  toolkit, {shards} shard(s) per dataset: {loads} loads (measured), "
                  f"{per_dataset_condition / loads:.2f}x / {2 * per_dataset_condition / loads:.2f}x fewer; "
                  f"{len(DATASETS) * shards} tasks can run at once")
        if args.skip_slurm or not os.environ.get("SLURM_CONF"):
            print("overhead: skipped (no SLURM_CONF; start slurm/ci/cluster.sh and source its env.sh)")
            return
        sweep_file = Path(tmp) / "small.yaml"
        sweep_file.write_text("""experiment: small
models: [{name: sim, backend: simulated, path: "latency=0.05"}]
datasets: [{name: demo, demo: {items_per_task: 4}, shards: 2}]
conditions: [clean, mask-p50]
modes: [direct, reasoning]
""", encoding="utf-8")
        profile = REPO / "slurm" / "profiles" / "ci.yaml"
        local = timed_launch(sweep_file, Path(tmp) / "local", "local", profile)
        slurm = timed_launch(sweep_file, Path(tmp) / "slurm", "slurm", profile)
        print(f"overhead, 2 tasks x 4 units + merge + score: local {local:.1f} s, SLURM {slurm:.1f} s "
              f"({slurm / local:.2f}x local)")


if __name__ == "__main__":
    main()

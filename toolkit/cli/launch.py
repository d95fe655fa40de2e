"""``bin/launch``: run a sweep as SLURM arrays (or locally), then merge and score the results."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from toolkit.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, add_common_args, run_cli

EPILOG = """examples:
  # what would be submitted (arrays, tasks, units per task, sbatch lines); nothing is written
  bin/launch slurm/examples/demo.yaml --profile slurm/profiles/example.yaml --dry-run

  # the demo sweep on this machine, waiting for merge and score
  bin/launch slurm/examples/demo.yaml --executor local --out /tmp/runs --wait

  # on a cluster: submit and log out; check later; resubmit what did not finish
  bin/launch study.yaml --executor slurm --profile slurm/profiles/mycluster.yaml
  bin/launch --status runs/study
  bin/launch study.yaml --executor slurm --profile slurm/profiles/mycluster.yaml --resume

One array per model; each task loads its model once and runs every unit (condition x mode,
then the interventions) of one dataset shard. A merge job follows the arrays (afterany; it
refuses an incomplete run), then a score job (afterok). The plan and job ids are in
<out>/<experiment>/launch.json. --resume refuses while jobs of the earlier launch are queued or
running, or while its processes (the launcher, local tasks) are alive on this machine, and says
how to stop them; a result file is written by one process at a time in any case.
Exit codes: 0 submitted (with --wait: everything completed), 1 with --wait: a job failed or
the run is incomplete, 2 bad input (sweep, profile, run folder).
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``bin/launch`` argument parser."""
    from toolkit.launch.executors import EXECUTORS

    p = argparse.ArgumentParser(prog="launch", description=__doc__.strip().split(": ", 1)[1], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", nargs="?", type=Path, help="sweep file (YAML; see slurm/examples/)")
    p.add_argument("--executor", choices=EXECUTORS, default="slurm",
                   help="slurm (arrays via submitit), local (subprocesses here), debug (in this process); "
                        "default: %(default)s")
    p.add_argument("--profile", type=Path, help="cluster profile (YAML; see slurm/profiles/); default: built-in")
    p.add_argument("--out", type=Path, help="output root, overriding the sweep's 'output' (run folder: OUT/<experiment>)")
    p.add_argument("--dry-run", action="store_true", help="print the arrays that would be submitted and stop")
    p.add_argument("--resume", action="store_true", help="continue this run folder: submit only unfinished tasks")
    p.add_argument("--retry-errors", action="store_true",
                   help="with --resume: also run error rows again (e.g. after missing audio was restored); the new "
                        "rows supersede them")
    p.add_argument("--wait", action="store_true",
                   help="block until merge and score have finished; exit 1 if anything failed (implied by "
                        "local and debug)")
    p.add_argument("--status", type=Path, metavar="RUN_DIR", help="report progress of a launched run and stop")
    p.add_argument("--pdb", action="store_true", help="debug executor: open pdb when a task raises")
    add_common_args(p)
    return p


def _run(args: argparse.Namespace) -> int:
    from toolkit.launch.launcher import Launch, run_status
    from toolkit.launch.profile import load_profile
    from toolkit.launch.sweep import load_sweep

    if args.status is not None:
        for line in run_status(args.status):
            print(line)
        return EXIT_OK
    if args.sweep is None:
        print("launch: error: a sweep file is required (or --status RUN_DIR)", file=sys.stderr)
        return EXIT_BAD_INPUT
    sweep = load_sweep(args.sweep, check_files=not args.dry_run)
    if args.out is not None:
        sweep = sweep.with_output(args.out)
    if args.retry_errors and not args.resume:
        print("launch: error: --retry-errors goes with --resume", file=sys.stderr)
        return EXIT_BAD_INPUT
    launch = Launch(sweep, load_profile(args.profile), args.executor, resume=args.resume, use_pdb=args.pdb,
                    retry_errors=args.retry_errors)
    if args.dry_run:
        for line in launch.dry_run_lines():
            print(line)
        return EXIT_OK
    record = launch.submit(progress=args.executor != "slurm" and not args.quiet)
    jobs = record.submissions[-1].jobs
    print(f"{sweep.run_dir}: submitted {sum(j.kind == 'task' for j in jobs)} tasks, merge and score "
          f"({args.executor}); plan and job ids in {sweep.layout.launch_json}")
    if not (args.wait or args.executor != "slurm"):
        print(f"progress: bin/launch --status {sweep.run_dir}")
        return EXIT_OK
    states = launch.wait()
    failed = {label: state for label, state in states.items() if state != "COMPLETED"}
    for label, state in sorted(failed.items()):
        print(f"launch: {label} ended {state}", file=sys.stderr)
    layout = sweep.layout
    if not failed:
        print(f"merged: {layout.results_jsonl}, {layout.results_h5}; "
              f"scores: {layout.report_file('accuracy', 'markdown')}")
        return EXIT_OK
    print(f"launch: {len(failed)} of {len(states)} jobs did not complete; logs in {layout.jobs_dir}; rows written so "
          f"far stay in {sweep.run_dir}; resume with: {_resume_command(args, sweep)}", file=sys.stderr)
    return EXIT_FAILED


def _resume_command(args: argparse.Namespace, sweep: Any) -> str:
    """The ``bin/launch`` command line that continues this launch."""
    parts = ["bin/launch", str(args.sweep), "--executor", args.executor, "--out", str(sweep.run_dir.parent)]
    if args.profile is not None:
        parts += ["--profile", str(args.profile)]
    return " ".join(parts + ["--resume"])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``bin/launch``; returns the exit code."""
    return run_cli(build_parser(), _run, argv)

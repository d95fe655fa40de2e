"""bin/launch on a real SLURM cluster (slurm/ci/cluster.sh): arrays, dependencies, requeue,
a task killed hard then --resume, and the local executor giving the same merged rows."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO
from toolkit.cli.launch import main as launch_main
from toolkit.launch.launcher import Launch, run_status
from toolkit.runs.record import LaunchRecord
from toolkit.launch.profile import load_profile
from toolkit.launch.sweep import load_sweep

pytestmark = pytest.mark.slurm

PROFILE = REPO / "slurm" / "profiles" / "ci.yaml"

SWEEP = """
experiment: grid
output: out
models:
  - {name: sim, backend: simulated, path: "accuracy=0.8,seed=0"}
  - name: tiny
    backend: qwen2-audio
    tiny: {hidden_size: 32, num_layers: 1}
    load: {dtype: fp32, device: cpu}
    generation: {max_new_tokens: 6}
datasets:
  - {name: demo-a, demo: {items_per_task: 2, seed: 1}, shards: 2}
  - {name: demo-b, demo: {items_per_task: 1, seed: 2}, shards: 1}
conditions: [clean, mask-p50, noise-snr0]
modes: [direct, reasoning]
"""

SLOW = """
experiment: slow
output: out
models:
  - {name: sim, backend: simulated, path: "accuracy=0.8,seed=0,latency=0.4", batch_size: 1}
datasets:
  - {name: demo, demo: {items_per_task: 5}, shards: 1}
conditions: [clean, noise-snr0]
modes: [direct]
"""


def _rows(path: Path) -> list:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        row.pop("seconds")
    return rows


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _wait_for_rows(path: Path, n: int, timeout_s: float = 120.0) -> None:
    """Poll until ``path`` holds at least ``n`` complete lines (the task is mid-shard)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"{path} did not reach {n} rows within {timeout_s} s")


def _task_job(run_dir: Path) -> str:
    return next(j.job_id for j in LaunchRecord.read(run_dir).submissions[-1].jobs if j.kind == "task")


def _check_complete(run_dir: Path, units: int, items: int) -> list:
    rows = _rows(run_dir / "results.jsonl")
    keys = [(r["model"], r["dataset"], r["condition"], r["mode"], r["id"], r["run"]) for r in rows]
    assert len(keys) == len(set(keys)) == units * items
    return rows


def test_sweep_runs_as_arrays_with_merge_and_score_jobs_and_matches_local(slurm_cluster, tmp_path):
    sweep_file = _write(tmp_path / "grid.yaml", SWEEP)
    profile = _write(tmp_path / "small-arrays.yaml",
                     PROFILE.read_text().replace("max_array_size: 1000", "max_array_size: 2"))
    out = tmp_path / "slurm"
    code = launch_main([str(sweep_file), "--executor", "slurm", "--profile", str(profile), "--out", str(out),
                        "--wait", "-q"])
    run_dir = out / "grid"
    record = LaunchRecord.read(run_dir)
    jobs = record.submissions[0].jobs
    assert code == 0, jobs
    assert [j.state for j in jobs] == ["COMPLETED"] * len(jobs)
    assert sum(j.kind == "task" for j in jobs) == 2 * 3  # models x (2 + 1 shards)
    # per model, 3 tasks split at the cluster's (profile's) max array size of 2: arrays of 2 and 1
    arrays = [j.job_id.split("_")[0] for j in jobs if j.kind == "task"]
    assert [arrays.count(a) for a in dict.fromkeys(arrays)] == [2, 1, 2, 1]
    rows = _check_complete(run_dir, units=2 * 3 * 2, items=6 + 3)
    assert (run_dir / "results.h5").exists() and "| tiny | demo-b |" in (run_dir / "score.md").read_text()
    assert run_status(run_dir)[-2] == f"total: {len(rows)}/{len(rows)} rows"

    local = tmp_path / "local"
    assert launch_main([str(sweep_file), "--executor", "local", "--profile", str(PROFILE), "--out", str(local),
                        "-q"]) == 0
    assert _rows(local / "grid" / "results.jsonl") == rows


def test_a_requeued_task_resumes_mid_shard_without_losing_or_duplicating_rows(slurm_cluster, tmp_path):
    sweep = load_sweep(_write(tmp_path / "slow.yaml", SLOW)).with_output(tmp_path / "out")
    launch = Launch(sweep, load_profile(PROFILE), "slurm")
    launch.submit()
    shard = sweep.run_dir / "sim" / "demo" / "clean" / "direct" / "shard-00000-of-00001.jsonl"
    _wait_for_rows(shard, 3)
    job = _task_job(sweep.run_dir)
    subprocess.run(["scontrol", "requeue", job], check=True)  # starts again after cred_expire (10 s in CI)
    states = launch.wait(poll_s=1.0)
    assert set(states.values()) == {"COMPLETED"}, states
    _check_complete(sweep.run_dir, units=2, items=15)
    history = subprocess.run(["sacct", "-n", "-P", "-X", "-D", "-j", job, "-o", "State"], capture_output=True,
                             text=True, check=True).stdout.split()
    assert "REQUEUED" in history and history[-1] == "COMPLETED"


def test_a_task_killed_hard_is_finished_by_resume(slurm_cluster, tmp_path):
    sweep_file = _write(tmp_path / "slow.yaml", SLOW)
    sweep = load_sweep(sweep_file).with_output(tmp_path / "out")
    launch = Launch(sweep, load_profile(PROFILE), "slurm")
    launch.submit()
    shard = sweep.run_dir / "sim" / "demo" / "clean" / "direct" / "shard-00000-of-00001.jsonl"
    _wait_for_rows(shard, 3)
    # SIGKILL to the task's process (its job step): no handler, no checkpoint, mid-write maybe
    subprocess.run(["scancel", "--signal=KILL", _task_job(sweep.run_dir)], check=True)
    states = launch.wait(poll_s=1.0)
    task_state = next(s for label, s in states.items() if label.startswith("task:"))
    assert task_state != "COMPLETED" and states["merge:merge"] == "FAILED", states
    assert states["score:score"] != "COMPLETED"
    assert not (sweep.run_dir / "results.jsonl").exists()
    written = sum(p.read_bytes().count(b"\n") for p in sweep.run_dir.glob("sim/demo/*/direct/shard-*.jsonl"))
    assert 3 <= written < 30

    code = launch_main([str(sweep_file), "--executor", "slurm", "--profile", str(PROFILE),
                        "--out", str(tmp_path / "out"), "--resume", "--wait", "-q"])
    assert code == 0
    last = LaunchRecord.read(sweep.run_dir).submissions[-1]
    assert last.resume is True and last.tasks_submitted == 1
    _check_complete(sweep.run_dir, units=2, items=15)


def test_a_preempted_task_checkpoints_requeues_itself_and_finishes(slurm_cluster, tmp_path):
    sweep = load_sweep(_write(tmp_path / "slow.yaml", SLOW)).with_output(tmp_path / "out")
    launch = Launch(sweep, load_profile(PROFILE), "slurm")
    launch.submit()
    shard = sweep.run_dir / "sim" / "demo" / "clean" / "direct" / "shard-00000-of-00001.jsonl"
    _wait_for_rows(shard, 3)
    job = _task_job(sweep.run_dir)
    # what SLURM sends before a time limit or a preemption (--signal=USR2@signal_delay_s)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)  # submitit checkpoints and requeues the task
    states = launch.wait(poll_s=1.0)
    assert set(states.values()) == {"COMPLETED"}, states
    _check_complete(sweep.run_dir, units=2, items=15)
    log = next((sweep.run_dir / "_jobs").glob(f"{job}/*_log.err")).read_text()
    assert "Calling checkpoint method" in log and f"Requeued job {job}" in log


def test_the_shell_loop_example_still_works_with_bin_merge(slurm_cluster, tmp_path):
    from toolkit.data.demo import write_demo_manifest

    manifest, items = write_demo_manifest(tmp_path / "data", items_per_task=2)
    run = tmp_path / "loop"
    env = {**__import__("os").environ, "MANIFEST": str(manifest), "MODEL": "simulated", "MODEL_PATH": "accuracy=0.8",
           "RUN": str(run), "SHARDS": "2", "CONDITIONS": "clean noise-snr0", "SBATCH_ARGS": "--time=5 --mem=1G"}
    out = subprocess.run([str(REPO / "slurm" / "examples" / "shell-loop.sh")], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True)
    merge_job = out.stdout.split()[-1]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = subprocess.run(["sacct", "-n", "-P", "-X", "-j", merge_job, "-o", "State"], capture_output=True,
                               text=True).stdout.strip()
        if state in ("COMPLETED", "FAILED", "CANCELLED"):
            break
        time.sleep(1)
    assert state == "COMPLETED", (state, out.stderr)
    rows = _rows(run / "results.jsonl")
    assert sorted((r["condition"], r["id"]) for r in rows) == sorted(
        (c, it.id) for c in ("clean", "noise-snr0-white") for it in items)

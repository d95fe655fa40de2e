"""bin/launch without a cluster: sweep and profile validation, planning, sbatch lines, and
whole sweeps through the debug (in-process) and local (subprocess) executors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from toolkit.cli.launch import main as launch_main
from toolkit.errors import InputError
from toolkit.launch.launcher import plan_arrays, run_status, sbatch_preview
from toolkit.launch.profile import load_profile, submitit_parameters
from toolkit.launch.sweep import load_sweep, plan_tasks
from toolkit.launch.task import run_task
from toolkit.runs.record import LaunchRecord


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


SIM_SWEEP = """
experiment: t
output: out
shards: 2
models:
  - {name: sim-a, backend: simulated, path: "accuracy=0.8,seed=0"}
  - {name: sim-b, backend: simulated, path: "accuracy=0.6,seed=1"}
datasets:
  - {name: demo, demo: {items_per_task: 3}, shards: 3}
conditions: [clean, mask-p50]
modes: [direct, reasoning]
"""


def _rows(path: Path) -> list:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        row.pop("seconds")  # wall time differs between runs; everything else must not
    return rows


# --------------------------------------------------------------------------- sweep files

def test_sweep_problems_are_all_reported_at_once_with_valid_keys(tmp_path):
    path = _write(tmp_path / "bad.yaml", """
experiment: x
models:
  - {name: m, backend: qwen3-audio, path: /nowhere, colour: red}
datasets:
  - {name: d, manifest: missing.jsonl}
  - {name: d, demo: {}}
conditions: [clean, mask-p140]
modes: [direct, thinking]
""")
    with pytest.raises(InputError) as err:
        load_sweep(path)
    text = str(err.value)
    assert str(path) in text
    for expected in ("unknown backend 'qwen3-audio'", "unknown key 'colour' (valid: backend, batch_size",
                     "missing.jsonl does not exist", "name 'd' used twice", "mask-p140", "thinking"):
        assert expected in text, expected


def test_sweep_yaml_error_names_the_line(tmp_path):
    path = _write(tmp_path / "bad.yaml", "experiment: x\nmodels: [\n  - a\n")
    with pytest.raises(InputError, match=r"bad\.yaml:\d+"):
        load_sweep(path)


def test_relative_paths_resolve_against_the_sweep_folder(tmp_path, write_wav):
    from toolkit.data.demo import write_demo_manifest

    write_demo_manifest(tmp_path / "data", items_per_task=1)
    path = _write(tmp_path / "sweeps" / "s.yaml", """
experiment: e
output: ../runs
models: [{name: m, backend: simulated}]
datasets: [{name: d, manifest: ../data/manifest.jsonl}]
conditions: [clean, study]
""")
    sweep = load_sweep(path)
    assert sweep.run_dir == tmp_path / "runs" / "e"
    assert sweep.datasets[0].manifest == tmp_path / "data" / "manifest.jsonl"
    assert sweep.datasets[0].data_root == tmp_path / "data"
    assert len(sweep.conditions) == 12 and sweep.conditions[:2] == ("clean", "mask-p20-scattered-silence")


def test_runs_above_one_need_sampling(tmp_path):
    path = _write(tmp_path / "s.yaml", SIM_SWEEP + "runs: 3\n")
    with pytest.raises(InputError, match="runs > 1 with greedy decoding"):
        load_sweep(path)
    assert load_sweep(_write(tmp_path / "ok.yaml", SIM_SWEEP + "runs: 3\ngeneration: {sample: true}\n")).runs == 3


def test_plan_has_one_task_per_model_and_dataset_shard_with_every_unit(tmp_path):
    sweep = load_sweep(_write(tmp_path / "s.yaml", SIM_SWEEP))
    tasks = plan_tasks(sweep)
    assert [t.label for t in tasks] == [f"sim-{m}/demo/shard-{k}-of-3" for m in "ab" for k in range(3)]
    assert all([(u.condition, u.mode, u.intervention) for u in t.units] ==
               [("clean", "direct", None), ("clean", "reasoning", None),
                ("mask-p50-scattered-silence", "direct", None), ("mask-p50-scattered-silence", "reasoning", None)]
               for t in tasks)
    assert {u.shards for t in tasks for u in t.units} == {3}


def test_the_example_sweeps_are_valid():
    paths = sorted((REPO / "slurm" / "examples").rglob("*.yaml"))
    assert len(paths) >= 4
    for path in paths:
        sweep = load_sweep(path, check_files=path.parent.name != "study")  # study sweeps name cluster data
        assert plan_tasks(sweep), path


# --------------------------------------------------------------------------- profiles

def test_profile_rejects_unknown_keys_listing_the_valid_ones(tmp_path):
    path = _write(tmp_path / "p.yaml", "partition: gpu\ngpu_type: a100\nmodels: {m: {walltime: 5}}\n")
    with pytest.raises(InputError) as err:
        load_profile(path)
    assert "unknown key 'gpu_type'" in str(err.value) and "valid: accounts" in str(err.value)
    assert "models.m: unknown key 'walltime'" in str(err.value)


def test_every_profile_in_the_repository_is_valid():
    paths = sorted((REPO / "slurm" / "profiles").glob("*.yaml"))
    assert paths
    for path in paths:
        load_profile(path)


def test_arrays_split_at_max_array_size_and_rotate_accounts(tmp_path):
    sweep = load_sweep(_write(tmp_path / "s.yaml", SIM_SWEEP))
    profile = load_profile(_write(tmp_path / "p.yaml", """
partition: gpu
accounts: [acc-1, acc-2]
max_array_size: 2
time_min: 100
setup: ["module load cuda"]
models: {sim-b: {time_min: 30, partition: big}}
"""))
    arrays = plan_arrays(sweep, profile, plan_tasks(sweep))
    assert [(a.model, len(a.tasks)) for a in arrays] == [("sim-a", 2), ("sim-a", 1), ("sim-b", 2), ("sim-b", 1)]
    assert [a.params["slurm_account"] for a in arrays] == ["acc-1", "acc-2", "acc-1", "acc-2"]
    assert [a.params["timeout_min"] for a in arrays] == [100, 100, 30, 30]
    assert arrays[2].params["slurm_partition"] == "big" and arrays[0].params["slurm_partition"] == "gpu"


def test_sbatch_preview_is_pinned():
    settings = dict(load_profile(None).job, partition="gpu", gres="gpu:a100:1", time_min=240, mem_gb=64,
                    cpus_per_task=8, extra_sbatch={"constraint": "a100"})
    params = submitit_parameters(settings, "proj", ["module load cuda/12.1"], "study-qwen2-audio")
    assert sbatch_preview(params, 40, 16) == [
        "#SBATCH --account=proj",
        "#SBATCH --array=0-39%16",
        "#SBATCH --constraint=a100",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --gres=gpu:a100:1",
        "#SBATCH --job-name=study-qwen2-audio",
        "#SBATCH --mem=64GB",
        "#SBATCH --partition=gpu",
        "#SBATCH --signal=USR2@120",
        "#SBATCH --time=240",
        "# setup: module load cuda/12.1",
    ]


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    sweep = _write(tmp_path / "s.yaml", SIM_SWEEP)
    assert launch_main([str(sweep), "--dry-run", "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "6 tasks, 6 model loads, 2 arrays" in out
    assert "array 1: model sim-b, 3 tasks x 4 units (4 inference, 0 intervention)" in out
    assert "#SBATCH --array=0-2%3" in out
    assert not (tmp_path / "runs").exists()
    assert launch_main([str(sweep), "--dry-run", "--executor", "local", "--out", str(tmp_path / "runs")]) == 0
    local = capsys.readouterr().out
    assert "#SBATCH" not in local and "  local: 3 at a time on this machine" in local


# --------------------------------------------------------------------------- whole sweeps

def test_debug_sweep_merges_scores_and_resumes_only_what_is_missing(tmp_path, capsys):
    sweep_file = _write(tmp_path / "s.yaml", SIM_SWEEP)
    out = tmp_path / "runs"
    assert launch_main([str(sweep_file), "--executor", "debug", "--out", str(out), "-q"]) == 0
    run_dir = out / "t"
    rows = _rows(run_dir / "results.jsonl")
    assert len(rows) == 2 * 9 * 4  # models x items x (conditions x modes)
    assert len({(r["model"], r["condition"], r["mode"], r["id"]) for r in rows}) == len(rows)
    assert (run_dir / "results.h5").exists() and (run_dir / "score.md").exists()
    score = (run_dir / "score.md").read_text()
    assert "| sim-a | demo | clean | direct | 9 |" in score
    record = LaunchRecord.read(run_dir)
    assert {j.state for j in record.submissions[0].jobs} == {"COMPLETED"}

    # a second launch into the same folder must not mix runs
    assert launch_main([str(sweep_file), "--executor", "debug", "--out", str(out), "-q"]) == 2
    assert "add --resume" in capsys.readouterr().err

    # lose one shard file (a node died before writing it): resume runs that one task only
    lost = run_dir / "sim-b" / "demo" / "mask-p50-scattered-silence" / "reasoning" / "shard-00001-of-00003.jsonl"
    lost.unlink()
    status = run_status(run_dir)
    assert any("incomplete" in line for line in status)
    assert status[-1].startswith("to finish: run the same bin/launch command again with --resume")
    assert launch_main([str(sweep_file), "--executor", "debug", "--out", str(out), "--resume", "-q"]) == 0
    last = LaunchRecord.read(run_dir).submissions[-1]
    assert last.tasks_submitted == 1 and last.resume is True
    assert [j.label for j in last.jobs if j.kind == "task"] == ["sim-b/demo/shard-1-of-3"]
    assert _rows(run_dir / "results.jsonl") == rows
    assert run_status(run_dir)[-2] == "total: 72/72 rows"


def test_a_complete_task_does_not_load_its_model(tmp_path):
    from toolkit.launch.launcher import materialise_inputs

    sweep = materialise_inputs(load_sweep(_write(tmp_path / "s.yaml", SIM_SWEEP)))
    task = plan_tasks(sweep)[0]
    first = run_task(sweep, task)
    assert first["model_loads"] == 1 and sum(u["done"] for u in first["units"]) == 3 * 4
    again = run_task(sweep, task)
    assert again == {"task": task.label, "model_loads": 0, "load_seconds": 0.0, "units": []}


def test_local_subprocesses_give_the_same_results_as_debug_with_a_tiny_real_model(tmp_path):
    text = """
experiment: same
output: out
models:
  - {name: sim, backend: simulated, path: "accuracy=0.7,seed=3"}
  - name: tiny
    backend: qwen2-audio
    tiny: {hidden_size: 32, num_layers: 1}
    load: {dtype: fp32, device: cpu}
    generation: {max_new_tokens: 6}
datasets:
  - {name: demo, demo: {items_per_task: 2}, shards: 2}
conditions: [clean, noise-snr0]
modes: [direct, reasoning]
"""
    sweep_file = _write(tmp_path / "s.yaml", text)
    results = {}
    for executor in ("debug", "local"):
        out = tmp_path / executor
        assert launch_main([str(sweep_file), "--executor", executor, "--out", str(out), "-q"]) == 0, executor
        results[executor] = _rows(out / "same" / "results.jsonl")
        jobs = LaunchRecord.read(out / "same").submissions[0].jobs
        assert [j.state for j in jobs] == ["COMPLETED"] * len(jobs)
    assert results["local"] == results["debug"]
    assert {r["model"] for r in results["local"]} == {"sim", "tiny"}
    assert len(results["local"]) == 2 * 6 * 4
    assert not [p for p in tmp_path.rglob("*") if "%" in p.name]  # no literal "_jobs/%j" folder


def test_a_failing_task_fails_the_launch_and_merge_refuses(tmp_path, capsys):
    text = SIM_SWEEP.replace('{name: sim-b, backend: simulated, path: "accuracy=0.6,seed=1"}',
                             '{name: sim-b, backend: qwen2-audio, path: /does/not/exist}')
    sweep_file = _write(tmp_path / "s.yaml", text)
    assert launch_main([str(sweep_file), "--executor", "debug", "--out", str(tmp_path / "o"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "task:sim-b/demo/shard-0-of-3 ended FAILED" in err
    assert "merge:merge ended FAILED" in err and "score:score ended CANCELLED" in err
    assert f"resume with: bin/launch {sweep_file} --executor debug --out {tmp_path / 'o'} --resume" in err
    assert not (tmp_path / "o" / "t" / "results.jsonl").exists()


def test_a_launch_that_runs_here_shows_rows_per_task(tmp_path, capsys):
    sweep_file = _write(tmp_path / "s.yaml", SIM_SWEEP)
    assert launch_main([str(sweep_file), "--executor", "debug", "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    done = [line for line in err.splitlines() if line.startswith("task sim-a/demo/shard-0-of-3: ")]
    assert done and done[-1].endswith("rows (100%), done")


def test_a_sweep_runs_interventions_and_spoken_hints_and_merges_them(tmp_path):
    import soundfile as sf

    from toolkit.data.demo import write_demo_manifest

    manifest, items = write_demo_manifest(tmp_path / "data", items_per_task=3)
    hints = tmp_path / "hints"
    hints.mkdir()
    texts = sorted({f"The answer is {c}." for it in items for c in it.choices})
    for i, _ in enumerate(texts):
        sf.write(hints / f"{i}.wav", 0.2 * np.sin(np.arange(4000) / (3.0 + i)).astype(np.float32), 16000)
    (hints / "hints.jsonl").write_text("".join(json.dumps({"text": t, "audio": f"{i}.wav"}) + "\n"
                                               for i, t in enumerate(texts)))
    sweep_file = _write(tmp_path / "s.yaml", f"""
experiment: faith
output: out
models: [{{name: sim, backend: simulated, path: "follow=0.7"}}]
datasets: [{{name: demo, manifest: {manifest}, shards: 2}}]
conditions: [clean, inject-wrong-snr0]
modes: [reasoning]
interventions: [own, truncate]
hints: {{folder: {hints}}}
""")
    assert launch_main([str(sweep_file), "--executor", "debug", "--out", str(tmp_path / "o"), "-q"]) == 0
    run_dir = tmp_path / "o" / "faith"
    rows = _rows(run_dir / "results.jsonl")
    units = {(r["condition"], r["mode"], (r.get("intervention") or {}).get("name")) for r in rows}
    assert units == {(c, "reasoning", i) for c in ("clean", "inject-wrong-snr0") for i in (None, "own", "truncate")}
    own = [r for r in rows if (r.get("intervention") or {}).get("name") == "own"]
    assert len(own) == 2 * 9 and not any(r["prediction_changed"] for r in own)
    truncate = [r for r in rows if (r.get("intervention") or {}).get("name") == "truncate" and r["condition"] == "clean"]
    assert {r["variant"] for r in truncate} >= {"k=0", "k=1", "k=2"}
    assert sum(r["prediction_changed"] for r in truncate if r["variant"] == "k=0") > 0
    injected = [r for r in rows if "intervention" not in r and r["condition"] == "inject-wrong-snr0"]
    assert len(injected) == 9 and not any(r["error"] for r in injected)
    tables = json.loads((run_dir / "faithfulness.json").read_text())
    sanity = [t for t in tables["sanity"] if t["condition"] == "clean"]
    assert len(sanity) == 1 and sanity[0]["changed"] == 0 and sanity[0]["n"] == 9

    # lose one intervention shard: --resume reruns only that task, without reloading what is done
    lost = run_dir / "sim" / "demo" / "clean" / "reasoning+truncate" / "shard-00001-of-00002.jsonl"
    lost.unlink()
    assert any("incomplete" in line for line in run_status(run_dir))
    assert launch_main([str(sweep_file), "--executor", "debug", "--out", str(tmp_path / "o"), "--resume", "-q"]) == 0
    last = LaunchRecord.read(run_dir).submissions[-1]
    assert last.tasks_submitted == 1
    assert _rows(run_dir / "results.jsonl") == rows


def test_a_resume_refuses_while_orphaned_local_tasks_live_and_completes_after(tmp_path, capsys):
    """Defect: with the launcher alone killed (kill -9), its local tasks kept appending while a
    --resume started second writers on the same shard files (180 duplicate rows)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from toolkit.runs import RunLayout
    from toolkit.runs.record import TaskRecord

    sweep_file = _write(tmp_path / "slow.yaml", """
experiment: orphans
output: out
models: [{name: sim, backend: simulated, path: "latency=0.4,seed=0", batch_size: 1}]
datasets: [{name: demo, demo: {items_per_task: 4}, shards: 2}]
conditions: [clean]
modes: [direct]
""")
    out = tmp_path / "out"
    launcher = subprocess.Popen([sys.executable, str(REPO / "bin" / "launch"), str(sweep_file), "--executor", "local",
                                 "--out", str(out), "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    layout = RunLayout(out / "orphans")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        shards = list(layout.root.glob("sim/demo/clean/direct/shard-*.jsonl"))
        if len(TaskRecord.read_all(layout)) == 2 and shards and all(p.stat().st_size for p in shards):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the local tasks did not start")
    os.kill(launcher.pid, signal.SIGKILL)  # the launcher alone: its tasks go on as orphans
    launcher.wait()
    tasks = [t for t in TaskRecord.read_all(layout) if t.running_here()]
    assert len(tasks) == 2
    status = run_status(layout.root)
    assert status[-2] == ("jobs (last submission, local): none recorded (the launcher was stopped before it "
                          "recorded them)")
    assert status[-1].startswith("to finish: run the same bin/launch command again with --resume")
    argv = [str(sweep_file), "--executor", "local", "--out", str(out), "--resume", "-q"]
    assert launch_main(argv) == 2
    err = capsys.readouterr().err
    assert "still running" in err and all(str(t.process.pid) in err for t in tasks) and "kill " in err
    while any(t.running_here() for t in TaskRecord.read_all(layout)):
        assert time.monotonic() < deadline + 120, "the orphaned tasks did not finish"
        time.sleep(0.2)
    assert launch_main(argv) == 0
    rows = _rows(layout.results_jsonl)
    keys = [(r["id"], r["run"]) for r in rows]
    assert len(keys) == len(set(keys)) == 12
    for path in layout.root.glob("sim/demo/clean/direct/shard-*.jsonl"):
        lines = path.read_text().splitlines()
        assert len(lines) == len({json.loads(line)["id"] for line in lines}) == 6


def test_resume_with_retry_errors_reruns_only_the_error_rows(tmp_path, capsys):
    import shutil

    from toolkit.data.demo import write_demo_manifest

    manifest, items = write_demo_manifest(tmp_path / "data", items_per_task=2)
    clip = tmp_path / "data" / items[0].audio
    kept = tmp_path / "kept.wav"
    shutil.move(clip, kept)  # the audio of one item is missing at first
    sweep_file = _write(tmp_path / "s.yaml", f"""
experiment: retry
output: out
models: [{{name: sim, backend: simulated, path: "accuracy=0.8"}}]
datasets: [{{name: demo, manifest: {manifest}, shards: 2}}]
conditions: [clean]
modes: [direct]
""")
    argv = [str(sweep_file), "--executor", "debug", "--out", str(tmp_path / "o"), "-q"]
    assert launch_main(argv) == 0
    run_dir = tmp_path / "o" / "retry"
    assert [r["id"] for r in _rows(run_dir / "results.jsonl") if r["error"]] == [items[0].id]
    shutil.move(kept, clip)
    assert launch_main(argv + ["--retry-errors"]) == 2  # only with --resume
    assert launch_main(argv + ["--resume"]) == 0
    assert LaunchRecord.read(run_dir).submissions[-1].tasks_submitted == 0  # error rows are rows
    assert launch_main(argv + ["--resume", "--retry-errors"]) == 0
    assert LaunchRecord.read(run_dir).submissions[-1].tasks_submitted == 1  # the shard holding the error row
    rows = _rows(run_dir / "results.jsonl")
    assert len(rows) == len(items) and not any(r["error"] for r in rows)

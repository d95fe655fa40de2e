"""The built-in default: bin/demo on a fresh machine."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import soundfile as sf

from conftest import REPO
from toolkit.cli.demo import main
from toolkit.data.demo import prepare_demo
from toolkit.manifest import read_manifest


def test_demo_answers_are_true_by_construction(tmp_path):
    items = prepare_demo(tmp_path, items_per_task=6, seed=1)
    assert len(items) == 18
    for item in items:
        x, sr = sf.read(tmp_path / item.audio)
        assert sr == 16000 and x.ndim == 1
        if item.subset == "count":
            # loud samples of one beep are < 100 ms apart; beeps are >= 250 ms apart
            loud = np.flatnonzero(np.abs(x) > 0.2)
            bursts = 1 + np.count_nonzero(np.diff(loud) > 1600)
            assert bursts == item.answer + 1 == item.meta["n_beeps"]
        if item.subset == "louder":
            half = len(x) // 2
            first, second = np.abs(x[:half]).max(), np.abs(x[half:]).max()
            assert (first > second) == (item.answer == 0)


def test_demo_same_seed_same_clips(tmp_path):
    a = prepare_demo(tmp_path / "a", items_per_task=2, seed=5)
    b = prepare_demo(tmp_path / "b", items_per_task=2, seed=5)
    assert a == b
    for item in a:
        assert (tmp_path / "a" / item.audio).read_bytes() == (tmp_path / "b" / item.audio).read_bytes()


def test_bin_demo_prepares_and_perturbs(tmp_path):
    out = tmp_path / "demo out"  # a space, as users' paths have
    proc = subprocess.run([sys.executable, str(REPO / "bin" / "demo"), "--out", str(out), "--items-per-task", "3",
                           "--condition", "clean", "--condition", "mask-p50", "--condition", "noise-snr-5", "-q",
                           "--no-study"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "mask-p50-scattered-silence" in proc.stdout and "SNR -5.000..-5.000 dB" in proc.stdout
    source = read_manifest(out / "data" / "manifest.jsonl")
    assert len(source) == 9 and all(it.meta["sample_rate"] == 16000 for it in source)
    assert json.loads((out / "data" / "manifest.jsonl.meta.json").read_text())["params"]["source"] == "demo"
    for condition in ("clean", "mask-p50-scattered-silence", "noise-snr-5-white"):
        perturbed = read_manifest(out / "perturbed" / condition / "manifest.jsonl")
        assert [it.id for it in perturbed] == [it.id for it in source]
        assert all((out / "perturbed" / condition / it.audio).is_file() for it in perturbed)
        rows = [json.loads(line) for line in (out / "runs" / "simulated" / f"{condition}.jsonl").read_text().splitlines()]
        assert sorted(r["id"] for r in rows) == sorted(it.id for it in source)
        assert all(r["condition"] == condition and r["error"] is None for r in rows)
    assert "simulated acc" in proc.stdout


def test_demo_rejects_empty_set(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--items-per-task", "0"]) == 2
    assert "--items-per-task" in capsys.readouterr().err


def test_demo_runs_the_faithfulness_study_end_to_end(tmp_path, capsys):
    import shutil

    out = tmp_path / "demo"
    assert main(["--out", str(out), "--items-per-task", "4", "--condition", "clean", "-q"]) == 0
    run_dir = out / "study-runs" / "study"
    rows = [json.loads(line) for line in (run_dir / "results.repaired.jsonl").read_text().splitlines()]
    by_mode = {}
    for r in rows:
        by_mode.setdefault((r["condition"], (r.get("intervention") or {}).get("name") or r["mode"]), []).append(r)
    own = by_mode[("clean", "own")]
    assert len(own) == 12 and not any(r["prediction_changed"] for r in own)
    empty = [r for r in by_mode[("clean", "truncate")] if r["variant"] == "k=0"]
    assert len(empty) == 12 and any(r["prediction_changed"] for r in empty)
    accuracy = {key: sum(bool(r["correct"]) for r in group) / len(group) for key, group in by_mode.items()}
    assert accuracy[("mask-p80-scattered-silence", "direct")] < accuracy[("clean", "direct")]
    if shutil.which("espeak-ng"):
        assert accuracy[("inject-wrong-snr0", "direct")] < accuracy[("clean", "direct")]
        assert accuracy[("inject-correct-snr0", "direct")] >= accuracy[("clean", "direct")]
    table = (run_dir / "faithfulness.md").read_text()
    assert "| simulated | demo | clean | prefill |" in table
    assert (run_dir / "plots" / "accuracy_vs_mask.png.meta.json").exists()
    sweep = out / "study.yaml"
    assert "bin/launch" in sweep.read_text() and "interventions" in sweep.read_text()
    captured = capsys.readouterr()
    assert "$ bin/launch" in captured.out
    assert "give --manifest" not in captured.err  # the demo passes what its own steps ask for

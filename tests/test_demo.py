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
                           "--condition", "clean", "--condition", "mask-p50", "--condition", "noise-snr-5", "-q"],
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

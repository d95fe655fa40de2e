"""The real backends through bin/infer, on tiny random checkpoints of the real classes.

Tiny random models emit arbitrary tokens, so these tests assert on what does not depend
on a trained model: rows, token counts, batched == one-at-a-time greedy output, option
log-probabilities, truncation flags, error rows, and that af3-think loads its adapter.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from toolkit.cli.infer import main
from toolkit.data.demo import prepare_demo
from toolkit.manifest import Item, write_manifest
from toolkit.models.af3 import to_model_keys
from toolkit.models.base import LoadOptions
from toolkit.models.registry import load_backend

BACKENDS = {"qwen2-audio": "qwen2-audio", "qwen2.5-omni": "qwen2.5-omni", "af3": "af3", "af3-think": "af3"}
GREEDY = ["--max-new-tokens", "6", "--min-new-tokens", "6", "-q"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Six demo items of different lengths plus one unreadable clip."""
    root = tmp_path_factory.mktemp("clips")
    items = prepare_demo(root, items_per_task=2, seed=1)
    (root / "broken.wav").write_bytes(b"RIFF not really")
    items.append(Item(id="broken", dataset="demo", audio="broken.wav", question="Is this audio?",
                      choices=["yes", "no"], answer=0))
    return write_manifest(root / "manifest.jsonl", items)


def _rows(path: Path) -> dict:
    return {row["id"]: row for row in map(json.loads, path.read_text().splitlines())}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_backend_runs_end_to_end_and_batches_equal_single_items(backend, tiny_folders, clips, tmp_path):
    common = ["--manifest", str(clips), "--model", backend, "--model-path", str(tiny_folders[BACKENDS[backend]]),
              "--mode", "direct", "--score-options", *GREEDY]
    batched, single = tmp_path / "batched.jsonl", tmp_path / "single.jsonl"
    assert main([*common, "--out", str(batched), "--batch-size", "4"]) == 1  # the broken clip fails
    assert main([*common, "--out", str(single), "--batch-size", "1"]) == 1
    rows, alone = _rows(batched), _rows(single)
    assert len(rows) == 7 and rows["broken"]["error"] and rows["broken"]["raw_output"] is None
    for item_id, row in rows.items():
        if item_id == "broken":
            continue
        assert row["error"] is None and row["model"] == backend and row["n_new_tokens"] == 6
        assert row["raw_output"] == alone[item_id]["raw_output"], item_id
        assert set(row["option_logprobs"]) == set("AB" if len(row["option_logprobs"]) == 2 else "ABCD")
        assert all(v < 0 for v in row["option_logprobs"].values())
        assert row["option_logprobs"] == pytest.approx(alone[item_id]["option_logprobs"], abs=1e-4)
    side = json.loads((tmp_path / "batched.jsonl.meta.json").read_text())["params"]
    assert side["model"]["model_path"] == str(tiny_folders[BACKENDS[backend]])
    assert "<|im_start|>assistant" in side["first_item_chat_text"]


def test_qwen2_audio_cuts_clips_over_30_seconds_and_flags_them(tiny_folders, tmp_path):
    sf.write(tmp_path / "long.wav", 0.1 * np.sin(np.arange(16000 * 32) / 9.0), 16000)
    manifest = write_manifest(tmp_path / "m.jsonl", [Item(id="long", dataset="t", audio="long.wav",
                                                          question="What?", choices=["a", "b"], answer=0)])
    out = tmp_path / "r.jsonl"
    assert main(["--manifest", str(manifest), "--model", "qwen2-audio", "--model-path",
                 str(tiny_folders["qwen2-audio"]), "--mode", "direct", "--out", str(out), *GREEDY]) == 0
    assert _rows(out)["long"]["flags"]["audio_truncated_from_s"] == 32.0


def test_af3_think_adapter_changes_the_model(tiny_folders):
    import torch

    base = load_backend("af3", str(tiny_folders["af3"]), LoadOptions())
    think = load_backend("af3-think", str(tiny_folders["af3"]), LoadOptions())
    projector = "model.multi_modal_projector.linear_1.weight"
    extra = torch.load(tiny_folders["af3"] / "think" / "non_lora_trainables.bin", weights_only=True)
    own = set(base.model.state_dict())
    assert set(to_model_keys(extra, own)) <= own
    think_state = {k.replace("base_model.model.", ""): v for k, v in think.model.state_dict().items()}
    assert torch.equal(think_state[projector], extra["multi_modal_projector.linear_1.weight"])
    assert not torch.equal(base.model.state_dict()[projector], think_state[projector])
    assert any("lora_A" in name for name, _ in think.model.named_parameters())


def test_a_local_folder_loads_offline_on_cpu_in_fp32(tiny_folders, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    backend = load_backend("qwen2.5-omni", str(tiny_folders["qwen2.5-omni"]), LoadOptions(dtype="fp32"))
    assert backend.describe()["device"] == "cpu" and backend.max_audio_seconds == 300.0
    with pytest.raises(ValueError, match="--model-path"):
        load_backend("qwen2-audio", None, LoadOptions())


def test_a_killed_run_resumes_to_the_same_rows(tiny_folders, clips, tmp_path):
    """SIGKILL a real bin/infer mid-run (as a preempted node would), rerun, compare with a clean run."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO

    def command(out: Path) -> list:
        return [sys.executable, str(REPO / "bin" / "infer"), "--manifest", str(clips), "--model", "qwen2-audio",
                "--model-path", str(tiny_folders["qwen2-audio"]), "--mode", "reasoning", "--batch-size", "1",
                "--out", str(out), "--max-new-tokens", "40", "--min-new-tokens", "40", "-q"]

    straight, killed = tmp_path / "straight.jsonl", tmp_path / "killed.jsonl"
    assert subprocess.run(command(straight), capture_output=True, timeout=300).returncode == 1  # broken clip
    proc = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not killed.exists() or killed.read_text().count("\n") < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = killed.read_text().count("\n")
    assert 2 <= written < 7, "the run finished before it could be killed; give it more work"
    assert subprocess.run(command(killed), capture_output=True, timeout=300).returncode == 1
    again = [json.loads(line) for line in killed.read_text().splitlines()]
    assert sorted(r["id"] for r in again) == sorted(_rows(straight))  # each id exactly once
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert {r["id"]: strip(r) for r in again} == {i: strip(r) for i, r in _rows(straight).items()}


def test_help_does_not_import_torch():
    import subprocess
    import sys

    from conftest import REPO

    code = ("import runpy, sys; sys.argv = ['infer', '--help']\n"
            "try:\n    runpy.run_path(%r, run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)") % str(REPO / "bin" / "infer")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().endswith("False"), out.stdout[-300:]

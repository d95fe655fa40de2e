"""bin/infer with the simulated backend: rows, known accuracy, conditions, resume, errors, shards."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO
from toolkit.cli.infer import main
from toolkit.data.demo import prepare_demo
from toolkit.infer import InferConfig, run_inference
from toolkit.manifest import Item, read_manifest, write_manifest
from toolkit.models.base import GenerationSettings, LoadOptions, Request
from toolkit.models.registry import load_backend
from toolkit.models.simulated import SimulatedBackend, SimulatedParams
from toolkit.perturb import parse_condition, perturb_manifest
from toolkit.prompts import get_prompt

ROW_FIELDS = ["id", "model", "condition", "mode", "run", "prompt", "raw_output", "reasoning", "pred", "pred_source",
              "correct", "error", "n_new_tokens", "seconds"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """40 items per demo task, manifest at data/manifest.jsonl."""
    root = tmp_path_factory.mktemp("demo")
    write_manifest(root / "manifest.jsonl", prepare_demo(root, items_per_task=40, seed=3))
    return root / "manifest.jsonl"


def _rows(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _infer(manifest: Path, out: Path, *extra: str) -> int:
    return main(["--manifest", str(manifest), "--model", "simulated", "--out", str(out), "-q", *extra])


def test_rows_have_the_contract_fields_and_a_sidecar(demo, tmp_path):
    out = tmp_path / "r.jsonl"
    assert _infer(demo, out, "--mode", "reasoning", "--score-options") == 0
    rows = _rows(out)
    assert len(rows) == 120 and {r["id"] for r in rows} == {it.id for it in read_manifest(demo)}
    for row in rows:
        assert list(row)[: len(ROW_FIELDS)] == ROW_FIELDS
        assert row["error"] is None and row["pred"] is not None and row["pred_source"] == "answer-statement"
        assert row["reasoning"] and "Answer:" not in row["reasoning"]
        assert math.isclose(sum(math.exp(v) for v in row["option_logprobs"].values()), 1.0)
    side = json.loads((tmp_path / "r.jsonl.meta.json").read_text())
    assert side["params"]["fingerprint"]["prompt"] == "reasoning-v1"
    assert side["params"]["model"]["simulated"] is True
    assert side["params"]["first_item_chat_text"].startswith("How many beeps do you hear?")


def test_accuracy_matches_the_known_rate_and_degrades_with_the_condition(demo, tmp_path):
    acc = {}
    for condition in ("clean", "noise-snr0", "mask-p100"):
        out = tmp_path / f"{condition}.jsonl"
        assert _infer(demo, out, "--mode", "direct", "--condition", condition, "--model-path", "accuracy=0.9") == 0
        acc[condition] = {r["id"]: r["correct"] for r in _rows(out)}
    n = 120
    chance = np.mean([1 / len(it.choices) for it in read_manifest(demo)])
    expected = {"clean": 0.9, "noise-snr0": chance + (0.9 - chance) * 0.5, "mask-p100": chance}
    for condition, rows in acc.items():
        rate = sum(rows.values()) / n
        sd = math.sqrt(expected[condition] * (1 - expected[condition]) / n)
        assert abs(rate - expected[condition]) < 3.5 * sd, (condition, rate, expected[condition])
    # common random numbers: right under noise implies right when clean
    assert all(acc["clean"][i] for i, ok in acc["noise-snr0"].items() if ok)


def test_perturbed_manifest_gives_the_same_rows_as_the_on_the_fly_condition(demo, tmp_path):
    items = read_manifest(demo)[:12]
    perturb_manifest(items, demo.parent, ["mask-p60-contiguous-noise"], tmp_path / "p", seed=0, progress=False)
    from_files, on_the_fly = tmp_path / "files.jsonl", tmp_path / "fly.jsonl"
    assert _infer(tmp_path / "p" / "mask-p60-contiguous-noise" / "manifest.jsonl", from_files, "--mode", "direct") == 0
    write_manifest(tmp_path / "m12.jsonl", items)
    assert _infer(tmp_path / "m12.jsonl", on_the_fly, "--mode", "direct", "--data-root", str(demo.parent),
                  "--condition", "mask-p60-contiguous-noise") == 0
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in _rows(from_files)]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in _rows(on_the_fly)]
    assert {r["condition"] for r in strip} == {"mask-p60-contiguous-noise"}
    # a second condition on top of a perturbed manifest is refused, not silently ignored
    assert _infer(tmp_path / "p" / "mask-p60-contiguous-noise" / "manifest.jsonl", tmp_path / "x.jsonl",
                  "--mode", "direct", "--condition", "noise-snr0") == 2


def test_resume_cuts_a_torn_line_and_finishes_with_each_id_once(demo, tmp_path):
    full, resumed = tmp_path / "full.jsonl", tmp_path / "resumed.jsonl"
    assert _infer(demo, full, "--mode", "reasoning") == 0
    assert _infer(demo, resumed, "--mode", "reasoning") == 0
    lines = resumed.read_text().splitlines(keepends=True)
    resumed.write_text("".join(lines[:50]) + lines[50][:30])  # killed while writing row 51
    proc = subprocess.run([sys.executable, str(REPO / "bin" / "infer"), "--manifest", str(demo), "--model",
                           "simulated", "--mode", "reasoning", "--out", str(resumed)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "written 70 (0 errors), skipped 50" in proc.stdout
    assert proc.stdout.count("written 70") + proc.stderr.count("written 70") == 1  # printed once
    key = lambda r: r["id"]  # noqa: E731
    strip = lambda rows: sorted(({k: v for k, v in r.items() if k != "seconds"} for r in rows), key=key)  # noqa: E731
    assert strip(_rows(resumed)) == strip(_rows(full))


def test_a_bad_item_becomes_an_error_row_and_the_run_goes_on(demo, tmp_path):
    items = read_manifest(demo)[:5]
    (tmp_path / "broken.wav").write_bytes(b"not audio at all")
    items[1] = Item(**{**items[1].to_dict(), "audio": str(tmp_path / "broken.wav")})
    items[3] = Item(**{**items[3].to_dict(), "audio": str(tmp_path / "missing.wav")})
    write_manifest(tmp_path / "m.jsonl", items)
    out = tmp_path / "r.jsonl"
    assert _infer(tmp_path / "m.jsonl", out, "--mode", "direct", "--data-root", str(demo.parent)) == 1
    rows = {r["id"]: r for r in _rows(out)}
    assert len(rows) == 5
    assert "missing.wav" in rows[items[3].id]["error"] and rows[items[3].id]["pred"] is None
    assert rows[items[1].id]["error"] and rows[items[1].id]["correct"] is None
    assert all(rows[items[i].id]["error"] is None for i in (0, 2, 4))


def test_shards_split_the_work_without_overlap(demo, tmp_path):
    ids = []
    for k in range(3):
        out = tmp_path / f"s{k}.jsonl"
        assert _infer(demo, out, "--mode", "direct", "--shard", f"{k}/3") == 0
        ids += [r["id"] for r in _rows(out)]
    assert sorted(ids) == sorted(it.id for it in read_manifest(demo))


def test_several_sampled_runs_and_refusals(demo, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert _infer(demo, out, "--mode", "direct", "--num-runs", "2") == 2
    assert "--sample" in capsys.readouterr().err
    assert _infer(demo, out, "--mode", "direct", "--num-runs", "3", "--sample") == 0
    assert sorted({r["run"] for r in _rows(out)}) == [0, 1, 2] and len(_rows(out)) == 360
    assert _infer(demo, out, "--mode", "direct", "--num-runs", "3", "--sample", "--prompt", "seed-direct") == 2
    assert "prompt" in capsys.readouterr().err
    assert _infer(demo, tmp_path / "x.jsonl", "--mode", "direct", "--condition", "mask-p200") == 2
    assert _infer(demo, tmp_path / "x.jsonl", "--mode", "direct", "--prompt", "seed-reasoning") == 2


def test_long_clips_are_truncated_with_a_flag(tmp_path):
    sf.write(tmp_path / "long.wav", np.full(16000 * 31, 0.1, dtype=np.float32), 16000)
    write_manifest(tmp_path / "m.jsonl", [Item(id="long", dataset="t", audio="long.wav", question="Loud?",
                                               choices=["yes", "no"], answer=0)])
    out = tmp_path / "r.jsonl"
    assert _infer(tmp_path / "m.jsonl", out, "--mode", "direct") == 0
    assert _rows(out)[0]["flags"] == {"audio_truncated_from_s": 31.0}


class _OomOnBigBatches(SimulatedBackend):
    """The simulated backend with an injected accelerator OOM for batches larger than two."""

    calls: list = []

    def generate(self, prepared, settings, score_options=False):
        self.calls.append(len(prepared))
        if len(prepared) > 2:
            import torch

            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return super().generate(prepared, settings, score_options)


def test_out_of_memory_halves_the_batch_and_records_it(demo, tmp_path):
    backend = _OomOnBigBatches(SimulatedParams())
    config = InferConfig("simulated", "direct", get_prompt("direct-v1"), GenerationSettings(max_new_tokens=16),
                         batch_size=8)
    items = read_manifest(demo)[:8]
    summary = run_inference(items, backend, config, tmp_path / "r.jsonl", demo.parent, progress=False)
    assert summary.done == 8 and summary.failed == 0
    assert backend.calls == [8, 4, 2, 2, 4, 2, 2]
    assert all(r["flags"]["batch_split"] == 2 for r in _rows(tmp_path / "r.jsonl"))


def test_simulated_follows_an_injected_answer_at_the_configured_rate(demo):
    backend = load_backend("simulated", "follow=0.7,accuracy=1.0", LoadOptions())
    items = read_manifest(demo)
    followed = 0
    for item in items:
        wrong = (item.answer + 1) % len(item.choices)
        request = Request(item=item, run=0, user_text="", audio=np.ones(10, dtype=np.float32),
                          assistant_prefix=f"So the answer is ({'ABCD'[wrong]}).")
        followed += backend.choose(request) == wrong
    assert abs(followed / len(items) - 0.7) < 3.5 * math.sqrt(0.21 / len(items))


def test_items_that_cannot_share_a_batch_run_one_by_one(demo, tmp_path, tiny_folders):
    """A text-only item next to audio items: the processor refuses the mixed batch; nothing is lost."""
    items = read_manifest(demo)[:3]
    items.append(Item(id="text-only", dataset="demo", audio=None, question="Which letter comes first?",
                      choices=["A", "B"], answer=0))
    write_manifest(tmp_path / "m.jsonl", items)
    out = tmp_path / "r.jsonl"
    assert main(["--manifest", str(tmp_path / "m.jsonl"), "--data-root", str(demo.parent), "--model", "qwen2-audio",
                 "--model-path", str(tiny_folders["qwen2-audio"]), "--mode", "direct", "--batch-size", "4",
                 "--max-new-tokens", "4", "--min-new-tokens", "4", "--out", str(out), "-q"]) == 0
    rows = {r["id"]: r for r in _rows(out)}
    assert len(rows) == 4 and all(r["error"] is None and r["n_new_tokens"] == 4 for r in rows.values())


def test_simulated_parameters_are_checked():
    from toolkit.models.simulated import SimulatedParams

    assert SimulatedParams.parse("accuracy=0.5,latency=0.25,seed=2") == SimulatedParams(accuracy=0.5, latency=0.25,
                                                                                        seed=2)
    for bad in ("latency=-1", "accuracy=1.5", "speed=3", "seed"):
        with pytest.raises(ValueError):
            SimulatedParams.parse(bad)


def test_simulated_follows_a_spoken_hint_at_the_configured_rate(demo, tmp_path):
    from toolkit.perturb.hints import FolderHints

    items = read_manifest(demo)
    hints_dir = tmp_path / "hints"
    hints_dir.mkdir()
    texts = sorted({f"The answer is {c}." for it in items for c in it.choices})
    lines = []
    for i, text in enumerate(texts):
        tone = (0.3 * np.sin(2 * np.pi * (300 + 40 * i) * np.arange(8000) / 16000)).astype(np.float32)
        sf.write(hints_dir / f"{i}.wav", tone, 16000, subtype="FLOAT")
        lines.append(json.dumps({"text": text, "audio": f"{i}.wav"}))
    (hints_dir / "hints.jsonl").write_text("\n".join(lines) + "\n")
    backend = load_backend("simulated", "follow=0.6,accuracy=1.0", LoadOptions())
    prompt = get_prompt("direct-v1")
    config = InferConfig(model="simulated", mode="direct", prompt=prompt, condition="inject-wrong-snr0",
                         settings=GenerationSettings(max_new_tokens=prompt.max_new_tokens))
    out = tmp_path / "wrong.jsonl"
    run_inference(items, backend, config, out, demo.parent, progress=False, hints=FolderHints(hints_dir))
    rows = _rows(out)
    assert len(rows) == len(items) and not any(r["error"] for r in rows)
    inject = parse_condition("inject-wrong-snr0")
    by_id = {it.id: it for it in items}
    followed = sum(r["pred"] == inject.option(by_id[r["id"]], 0) for r in rows)
    # the rest answer from the audio, the hint counting as noise at 0 dB (quality 1/2): by chance the hinted option
    expected = 0.0
    for it in items:
        k = len(it.choices)
        p_correct = 1 / k + (1 - 1 / k) * 0.5
        expected += 0.6 + 0.4 * (1 - p_correct) / (k - 1)
    assert abs(followed - expected) < 3.5 * math.sqrt(expected * (1 - expected / len(rows)))
    sidecar = json.loads((tmp_path / "wrong.jsonl.meta.json").read_text())
    assert sidecar["params"]["fingerprint"]["hints"]["hint_source"] == "folder"


def test_items_with_audio_and_text_only_items_are_batched_apart():
    from toolkit.infer import plan_units

    items = [Item(id=f"q{i}", dataset="mmlu", audio=None if i % 2 else f"q{i}.wav", question="Q?",
                  choices=["a", "b"], answer=0) for i in range(6)]
    units, skipped = plan_units(items, {("q0", 0, "")}, 2, length=lambda it: float(it.id[1:]))
    order = [(u.run, u.item.id) for u in units]
    assert skipped == 1
    assert order == [(0, "q4"), (0, "q2"), (0, "q5"), (0, "q3"), (0, "q1"),
                     (1, "q4"), (1, "q2"), (1, "q0"), (1, "q5"), (1, "q3"), (1, "q1")]

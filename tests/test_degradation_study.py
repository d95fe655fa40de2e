"""The degradation study end to end on tiny real-class models and generated data: each part
(LibriSpeech WER against Whisper, MMLU read aloud against its text twin, timbre range) is
prepared, run as a sweep through bin/launch (in-process executor) and scored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from toolkit.cli.launch import main as launch_main
from toolkit.cli.prepare import main as prepare_main
from toolkit.cli.score import main as score_main
from toolkit.manifest import read_manifest

TRANSCRIPTS = {("84", "121"): {"0000": "THE CAT SAT ON THE MAT", "0001": "MISTER SMITH HAS TWO CATS"},
               ("174", "50"): {"0002": "A QUICK BROWN FOX"}}


def _tone(path: Path, seconds: float, freq: float, fmt: str = "WAV") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000, format=fmt)


def _rows(path: Path) -> list:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _launch(tmp_path: Path, name: str, text: str) -> Path:
    sweep = tmp_path / f"{name}.yaml"
    sweep.write_text(text, encoding="utf-8")
    assert launch_main([str(sweep), "--executor", "debug", "--out", str(tmp_path / "runs"), "-q"]) == 0
    return tmp_path / "runs" / name


def test_librispeech_wer_whisper_against_an_audio_llm(tmp_path, capsys):
    src = tmp_path / "LibriSpeech"
    for (speaker, chapter), utts in TRANSCRIPTS.items():
        folder = src / "test-clean" / speaker / chapter
        for i, utt in enumerate(utts):
            _tone(folder / f"{speaker}-{chapter}-{utt}.flac", 0.5 + 0.2 * i, 200 + 50 * i, "FLAC")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text(
            "".join(f"{speaker}-{chapter}-{utt} {text}\n" for utt, text in utts.items()))
    manifest = tmp_path / "libri.jsonl"
    assert prepare_main(["librispeech", "--src", str(src), "--split", "test-clean", "--out", str(manifest),
                         "--data-root", str(src), "-q"]) == 0
    run = _launch(tmp_path, "asr", f"""
experiment: asr
models:
  - {{name: whisper, backend: whisper, tiny: {{}}, prompts: {{direct: asr-whisper-en}}, generation: {{max_new_tokens: 8}}}}
  - {{name: qwen2-audio, backend: qwen2-audio, tiny: {{}}, prompts: {{direct: asr-v1}}, generation: {{max_new_tokens: 8}}}}
datasets: [{{name: libri, manifest: {manifest}, data_root: {src}, shards: 2}}]
conditions: [clean, noise-snr0]
modes: [direct]
""")
    rows = _rows(run / "results.jsonl")
    assert len(rows) == 2 * 2 * 3 and not any(r["error"] for r in rows)
    assert all(r["pred"] is None and r["raw_output"] is not None for r in rows)
    job_table = json.loads((run / "score.json").read_text())  # the launch's score job, against the manifest
    job_groups = job_table["wer"] if isinstance(job_table, dict) else job_table
    assert len(job_groups) == 4 and all("wer" in g for g in job_groups)
    capsys.readouterr()
    assert score_main(["accuracy", str(run / "results.jsonl"), "--manifest", str(manifest), "--by", "model,subset,condition",
                       "--format", "json"]) == 0
    table = json.loads(capsys.readouterr().out)
    groups = table["wer"] if isinstance(table, dict) else table
    assert sorted((g["model"], g["condition"]) for g in groups) == sorted(
        (m, c) for m in ("whisper", "qwen2-audio") for c in ("clean", "noise-snr0-white"))
    words = sum(len(t.split()) for utts in TRANSCRIPTS.values() for t in utts.values())
    assert all(g["ref_words"] == words and g["subset"] == "test-clean" for g in groups)


def test_mmlu_read_aloud_and_as_text_with_the_same_model(tmp_path):
    src = tmp_path / "mmlu" / "test"
    src.mkdir(parents=True)
    (src / "anatomy_test.csv").write_text("What pumps blood?,Lungs,Heart,Liver,Kidney,B\n"
                                          "How many chambers has the heart?,Two,Three,Four,Five,C\n")
    speech = tmp_path / "speech"
    for n in range(2):
        _tone(speech / f"mmlu_anatomy_{n}.wav", 0.6, 300 + 100 * n)
    manifest = tmp_path / "mmlu.jsonl"
    assert prepare_main(["mmlu", "--src", str(tmp_path / "mmlu"), "--speak", str(speech), "--out", str(manifest),
                         "-q"]) == 0
    run = _launch(tmp_path, "mmlu", f"""
experiment: mmlu
models: [{{name: qwen2-audio, backend: qwen2-audio, tiny: {{}}, generation: {{max_new_tokens: 4}}}}]
datasets: [{{name: mmlu, manifest: {manifest}, data_root: {speech}}}]
conditions: [clean]
modes: [direct]
""")
    rows = {r["id"]: r for r in _rows(run / "results.jsonl")}
    items = read_manifest(manifest)
    assert sorted(rows) == sorted(it.id for it in items) and len(rows) == 4
    assert not any(r["error"] for r in rows.values())
    for it in items:
        assert (it.audio is None) == (it.meta["modality"] == "text") and it.meta["twin"] in rows
    tables = json.loads((run / "degradation.json").read_text())  # the launch's score job
    overall = [r for r in tables["mmlu"] if r["subject"] == "all"]
    assert len(overall) == 1 and overall[0]["pairs"] == 2
    text_correct = sum(bool(r["correct"]) for r in rows.values() if r["id"].endswith("_text"))
    assert overall[0]["acc_text"] == text_correct / 2


def test_timbre_range_classification(tmp_path):
    root = tmp_path / "timbre"
    for i, label in enumerate(("narrow", "moderate", "wide", "wide")):
        _tone(root / label / f"{i:03d}.wav", 0.4, 150 + 80 * i)
    manifest = tmp_path / "timbre.jsonl"
    assert prepare_main(["timbre", "--src", str(root), "--out", str(manifest), "-q"]) == 0
    run = _launch(tmp_path, "timbre", f"""
experiment: timbre
prompts: {{direct: timbre-v1}}
models: [{{name: qwen2-audio, backend: qwen2-audio, tiny: {{}}, generation: {{max_new_tokens: 4}}}}]
datasets: [{{name: timbre, manifest: {manifest}, data_root: {root}}}]
conditions: [clean]
modes: [direct]
""")
    rows = _rows(run / "results.jsonl")
    assert len(rows) == 4 and not any(r["error"] for r in rows)
    assert {r["prompt"] for r in rows} == {"timbre-v1"}
    tables = json.loads((run / "degradation.json").read_text())  # the launch's score job
    confusion = tables["confusion"]
    gold = {r["id"]: r for r in rows}
    assert sum(sum(v for k, v in c.items() if k.startswith("pred_")) for c in confusion) == 4
    assert len(gold) == 4

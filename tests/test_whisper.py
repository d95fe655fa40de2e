"""The whisper backend and the degradation study's prompts, on tiny random checkpoints of the real classes.

A tiny random Whisper emits arbitrary tokens, so these tests assert on what does not depend
on a trained model: the backend's output equals a plain transformers loop with the same
forced language, batched output equals one-at-a-time output, truncation flags, ASR rows
(transcript kept, no answer extracted) scored by ``bin/score``, and text-only items.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from toolkit.cli.infer import main as infer
from toolkit.cli.score import main as score
from toolkit.errors import InputError
from toolkit.manifest import Item, write_manifest
from toolkit.models.base import GenerationSettings, LoadOptions, Request
from toolkit.models.registry import load_backend
from toolkit.models.whisper import DecoderPrompt, parse_decoder_prompt
from toolkit.prompts import render_user_text

GREEDY = ["--max-new-tokens", "6", "--min-new-tokens", "6", "-q"]
SETTINGS = GenerationSettings(max_new_tokens=6, min_new_tokens=6)
REFERENCES = {"u-sine": "the cat sat on the mat", "u-chirp": "hello big world", "u-noise": "two dogs barked",
              "u-low": "a quiet evening"}


@pytest.fixture(scope="module")
def whisper_folder(tmp_path_factory) -> Path:
    from toolkit.models.registry import build_tiny

    return build_tiny("whisper", tmp_path_factory.mktemp("whisper") / "whisper")


@pytest.fixture(scope="module")
def backend(whisper_folder):
    return load_backend("whisper", str(whisper_folder), LoadOptions())


def _clips() -> dict:
    """Four different clips of 1-4 s (tones, a chirp, noise): a random model answers them differently."""
    sr = 16000
    t = np.arange(4 * sr) / sr
    return {"u-sine": 0.3 * np.sin(2 * np.pi * 440 * t[:sr]),
            "u-chirp": 0.3 * np.sin(2 * np.pi * (200 + 800 * t[:3 * sr]) * t[:3 * sr]),
            "u-noise": 0.3 * np.random.default_rng(1).standard_normal(2 * sr),
            "u-low": 0.3 * np.sin(2 * np.pi * 3000 * t)}


@pytest.fixture(scope="module")
def asr_manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("asr")
    items = []
    for item_id, x in _clips().items():
        sf.write(root / f"{item_id}.wav", x.astype(np.float32), 16000)
        items.append(Item(id=item_id, dataset="libri", audio=f"{item_id}.wav", question="Transcribe.", task="asr",
                          reference=REFERENCES[item_id]))
    return write_manifest(root / "manifest.jsonl", items)


def _rows(path: Path) -> dict:
    return {row["id"]: row for row in map(json.loads, path.read_text().splitlines())}


def _request(user_text: str, audio) -> Request:
    item = Item(id="u", dataset="libri", audio="u.wav", question="Transcribe.", task="asr", reference="x")
    return Request(item=item, run=0, user_text=user_text, audio=None if audio is None else audio.astype(np.float32))


def test_the_registry_loads_the_real_class_and_says_the_text_prompt_is_not_read(backend, whisper_folder):
    facts = backend.describe()
    assert facts["model_class"] == type(backend.model).__name__ == "WhisperForConditionalGeneration"
    assert facts["model_path"] == str(whisper_folder) and facts["device"] == "cpu" and facts["multilingual"]
    assert facts["text_prompt"].startswith("none") and backend.max_audio_seconds == 30.0
    request = _request(render_user_text("asr-whisper-en", question="Transcribe."), _clips()["u-sine"])
    assert backend.chat_text(request) == "<|startoftranscript|><|en|><|transcribe|><|notimestamps|>"


@pytest.mark.parametrize("language", ["en", "de"])
def test_forced_language_output_equals_a_plain_transformers_loop(backend, language):
    import torch

    clips = list(_clips().values())
    batch = backend.generate(backend.prepare([_request(f"<|{language}|><|transcribe|>", x) for x in clips]), SETTINGS)
    for x, gen in zip(clips, batch):
        features = backend.processor.feature_extractor([x.astype(np.float32)], sampling_rate=16000,
                                                       return_tensors="pt")
        with torch.inference_mode():
            ids = backend.model.generate(**features, language=language, task="transcribe", do_sample=False,
                                         max_new_tokens=6, min_new_tokens=6, return_dict_in_generate=True).sequences
        assert ids[0, :4].tolist() == backend.tokenizer.convert_tokens_to_ids(
            ["<|startoftranscript|>", f"<|{language}|>", "<|transcribe|>", "<|notimestamps|>"])
        assert gen.text == backend.tokenizer.decode(ids[0, 4:], skip_special_tokens=True)
        assert gen.n_new_tokens == 6


def test_the_forced_language_reaches_the_decoder(backend):
    clips = list(_clips().values())
    texts = {lang: [g.text for g in backend.generate(backend.prepare(
        [_request(f"<|{lang}|><|transcribe|>", x) for x in clips]), SETTINGS)] for lang in ("en", "de")}
    assert texts["en"] != texts["de"]


def test_prompts_other_than_whisper_decoder_tokens_are_refused(backend):
    clip = _clips()["u-sine"]
    with pytest.raises(InputError, match="whisper takes no text prompt.*asr-whisper"):
        backend.prepare([_request(render_user_text("asr-v1", question="Transcribe."), clip)])
    with pytest.raises(InputError, match="no language token <\\|xx\\|>"):
        backend.prepare([_request("<|xx|><|transcribe|>", clip)])
    with pytest.raises(ValueError, match="needs audio"):
        backend.prepare([_request("<|transcribe|>", None)])
    assert parse_decoder_prompt("<|transcribe|>") == DecoderPrompt(task="transcribe", language=None)
    with pytest.raises(InputError, match="one task"):
        parse_decoder_prompt("<|en|><|de|><|transcribe|>")


def test_bin_infer_batches_equal_single_items_and_asr_rows_keep_the_transcript(whisper_folder, asr_manifest, tmp_path):
    common = ["--manifest", str(asr_manifest), "--model", "whisper", "--model-path", str(whisper_folder),
              "--mode", "direct", "--prompt", "asr-whisper", *GREEDY]
    batched, single = tmp_path / "batched.jsonl", tmp_path / "single.jsonl"
    assert infer([*common, "--out", str(batched), "--batch-size", "4"]) == 0
    assert infer([*common, "--out", str(single), "--batch-size", "1"]) == 0
    rows, alone = _rows(batched), _rows(single)
    assert sorted(rows) == sorted(REFERENCES)
    for item_id, row in rows.items():
        assert row["raw_output"] == alone[item_id]["raw_output"] and row["raw_output"], item_id
        assert row["prompt"] == "asr-whisper" and row["model"] == "whisper" and row["n_new_tokens"] == 6
        assert (row["pred"], row["pred_source"], row["correct"], row["error"]) == (None, None, None, None)
        assert "flags" not in row  # no misleading no_answer flag
    assert len({row["raw_output"] for row in rows.values()}) > 1  # the clips are told apart: the check is not vacuous
    side = json.loads((tmp_path / "batched.jsonl.meta.json").read_text())["params"]
    assert side["first_item_chat_text"] == "<|startoftranscript|><|?|><|transcribe|><|notimestamps|>"
    assert side["prompt_template"]["user"] == "<|transcribe|>"


def test_an_audio_llm_prompt_is_refused_before_any_row(whisper_folder, asr_manifest, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert infer(["--manifest", str(asr_manifest), "--model", "whisper", "--model-path", str(whisper_folder),
                  "--mode", "direct", "--prompt", "asr-v1", "--out", str(out), *GREEDY]) == 2
    assert "use --prompt asr-whisper" in capsys.readouterr().err and not out.exists()


def test_a_clip_over_30_seconds_is_cut_and_flagged(whisper_folder, tmp_path):
    sf.write(tmp_path / "long.wav", 0.1 * np.sin(np.arange(16000 * 32) / 9.0), 16000)
    manifest = write_manifest(tmp_path / "m.jsonl", [Item(id="long", dataset="libri", audio="long.wav",
                                                          question="Transcribe.", task="asr", reference="a b")])
    out = tmp_path / "r.jsonl"
    assert infer(["--manifest", str(manifest), "--model", "whisper", "--model-path", str(whisper_folder),
                  "--mode", "direct", "--prompt", "asr-whisper-en", "--out", str(out), *GREEDY]) == 0
    row = _rows(out)["long"]
    assert row["flags"] == {"audio_truncated_from_s": 32.0} and row["error"] is None and row["n_new_tokens"] == 6


def test_whisper_rows_score_as_wer_end_to_end(whisper_folder, asr_manifest, tmp_path, capsys):
    from toolkit.wer import count_errors, total

    out = tmp_path / "r.jsonl"
    assert infer(["--manifest", str(asr_manifest), "--model", "whisper", "--model-path", str(whisper_folder),
                  "--mode", "direct", "--prompt", "asr-whisper-en", "--out", str(out), *GREEDY]) == 0
    capsys.readouterr()  # bin/infer's summary line
    per_item = tmp_path / "wer-items.jsonl"
    assert score(["accuracy", str(out), "--manifest", str(asr_manifest), "--per-item", str(per_item), "--format", "json",
                  "-q"]) == 0
    (table,) = json.loads(capsys.readouterr().out)
    rows = _rows(out)
    expected = total(count_errors(REFERENCES[i], rows[i]["raw_output"], i) for i in REFERENCES)
    assert table["items"] == 4 and table["errors"] == 0 and table["ref_words"] == expected.ref_words == 15
    assert table["wer"] == pytest.approx(expected.wer)
    assert sorted(json.loads(line)["id"] for line in per_item.read_text().splitlines()) == sorted(REFERENCES)


def test_qwen2_audio_answers_text_only_items_and_transcribes_with_asr_v1(tiny_folders, asr_manifest, tmp_path):
    text_only = [Item(id=f"mmlu-{i}", dataset="mmlu", audio=None, question=q, choices=["2", "3", "4", "5"], answer=a)
                 for i, (q, a) in enumerate([("What is 1 + 1?", 0), ("How many sides has a square?", 2)])]
    manifest = write_manifest(tmp_path / "mmlu.jsonl", text_only)
    common = ["--model", "qwen2-audio", "--model-path", str(tiny_folders["qwen2-audio"]), "--mode", "direct", *GREEDY]
    out = tmp_path / "mmlu-rows.jsonl"
    assert infer(["--manifest", str(manifest), "--prompt", "text-mcq-v1", "--out", str(out), *common]) == 0
    rows = _rows(out)
    assert sorted(rows) == ["mmlu-0", "mmlu-1"]
    assert all(r["error"] is None and r["n_new_tokens"] == 6 and r["prompt"] == "text-mcq-v1" for r in rows.values())
    side = json.loads((tmp_path / "mmlu-rows.jsonl.meta.json").read_text())["params"]
    assert "<|AUDIO|>" not in side["first_item_chat_text"] and "What is 1 + 1?" in side["first_item_chat_text"]

    asr_out = tmp_path / "asr-rows.jsonl"
    assert infer(["--manifest", str(asr_manifest), "--prompt", "asr-v1", "--out", str(asr_out), *common]) == 0
    for row in _rows(asr_out).values():
        assert row["raw_output"] and row["pred"] is None and row["pred_source"] is None and "flags" not in row


def test_new_templates_render():
    assert render_user_text("asr-v1", Item(id="u", dataset="l", audio="a.wav", question="Transcribe.", task="asr")) == (
        "Transcribe the speech in the audio. Reply with the transcript only, word for word.")
    assert render_user_text("text-mcq-v1", question="2 + 2?", choices=["3", "4"]) == (
        "Answer the following multiple-choice question.\n\n2 + 2?\n\nOptions:\n(A) 3\n(B) 4\n\n"
        "Answer with the letter of the correct option (A or B) only.")
    timbre = render_user_text("timbre-v1", question="Is the vocal range narrow, moderate or wide?",
                              choices=["narrow", "moderate", "wide"])
    assert timbre == ("Listen to the audio. Is the vocal range narrow, moderate or wide?\n\nOptions:\n(A) narrow\n"
                      "(B) moderate\n(C) wide\n\nChoose the class that fits the recording. "
                      "Answer with the letter of the correct option (A, B or C) only.")

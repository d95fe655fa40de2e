"""The salmonn backend: BEATs, its fbank, the official checkpoint layout and key mapping, bin/infer.

A tiny random SALMONN (build_tiny("salmonn", ...)) is saved as the release's four
separate parts and loaded through the same loader a real download goes through.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")
knf = pytest.importorskip("kaldi_native_fbank")

from toolkit.cli.condition import main as condition_main
from toolkit.cli.infer import main as infer_main
from toolkit.cli.launch import main as launch_main
from toolkit.data.demo import prepare_demo
from toolkit.manifest import Item, write_manifest
from toolkit.models.base import GenerationSettings, LoadOptions, Request
from toolkit.models.registry import backend_names, load_backend
from toolkit.models.salmonn import fbank as fb
from toolkit.models.salmonn.beats import load_beats, relative_position_buckets
from toolkit.models.salmonn.loader import (
    CheckpointKeyError,
    checkpoint_keys,
    load_checkpoint_state,
    read_checkpoint,
    to_module_key,
)

SR = 16000
SHORT = ["--max-new-tokens", "5", "--min-new-tokens", "5", "-q"]


@pytest.fixture(scope="module")
def backend(tiny_salmonn):
    return load_backend("salmonn", str(tiny_salmonn), LoadOptions(device="cpu", dtype="fp32"))


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """Demo items of different lengths, a 32 s clip, a 0.3 s clip and an unreadable file."""
    root = tmp_path_factory.mktemp("clips")
    items = prepare_demo(root, items_per_task=1, seed=2)
    t = np.arange(32 * SR) / SR
    sf.write(root / "long.wav", 0.2 * np.sin(2 * np.pi * 300 * t), SR)
    sf.write(root / "tiny.wav", 0.2 * np.sin(2 * np.pi * 500 * t[: int(0.3 * SR)]), SR)
    (root / "broken.wav").write_bytes(b"RIFF not really")
    items += [Item(id=name, dataset="t", audio=f"{name}.wav", question="What is heard?", choices=["tone", "speech"],
                   answer=0) for name in ("long", "tiny", "broken")]
    return write_manifest(root / "manifest.jsonl", items)


def _rows(path: Path) -> dict:
    return {row["id"]: row for row in map(json.loads, path.read_text().splitlines())}


def _tone(seconds: float, freq: float = 1000.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.25 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# ---------------------------------------------------------------------------- fbank

def _numpy_kaldi_fbank(x: np.ndarray, bins: int) -> np.ndarray:
    """Kaldi's fbank written out from its definition (snip edges, no dither), independent of the module."""
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), 400)[::160].copy()
    frames -= frames.mean(axis=1, keepdims=True)
    frames = frames - 0.97 * np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames *= (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 399)) ** 0.85
    power = np.abs(np.fft.rfft(frames, 512)) ** 2

    def mel(f):
        return 1127 * np.log(1 + np.asarray(f) / 700)

    edges = np.linspace(mel(20), mel(8000), bins + 2)
    fft_mel = mel(np.arange(257) * 16000 / 512)
    weights = np.zeros((bins, 257))
    for m in range(bins):
        up = (fft_mel - edges[m]) / (edges[m + 1] - edges[m])
        down = (edges[m + 2] - fft_mel) / (edges[m + 2] - edges[m + 1])
        weights[m, :256] = np.clip(np.minimum(up, down), 0, None)[:256]
    return np.log(np.maximum(power @ weights.T, np.finfo(np.float32).eps))


def test_fbank_equals_an_independent_numpy_kaldi_pipeline():
    x = np.random.RandomState(0).randn(SR + 1234) * 3000
    ours = fb.kaldi_fbank(x)
    assert ours.shape == (1 + (x.size - 400) // 160, 128)
    np.testing.assert_allclose(ours, _numpy_kaldi_fbank(x, 128), atol=2e-3)
    # the lowest filters at 128 bins can be empty: torchaudio (the release) keeps them at log(eps)
    assert np.allclose(ours[:, 3], np.log(np.finfo(np.float32).eps))


def test_fbank_equals_kaldi_native_fbank_where_it_accepts_the_bins():
    x = (np.random.RandomState(1).randn(2 * SR) * 3000).astype(np.float32)
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = 80
    online = knf.OnlineFbank(opts)
    online.accept_waveform(SR, x)
    online.input_finished()
    reference = np.stack([online.get_frame(i) for i in range(online.num_frames_ready)])
    np.testing.assert_allclose(fb.kaldi_fbank(x, num_mel_bins=80), reference, atol=2e-3)


@pytest.mark.parametrize("freq", [440.0, 1000.0, 3000.0])
def test_a_pure_tone_peaks_in_the_mel_bin_of_its_frequency(freq):
    features = fb.beats_fbank(_tone(1.0, freq))

    def mel(f):
        return 1127 * np.log(1 + f / 700)

    centres = mel(20) + (np.arange(1, 129)) * (mel(8000) - mel(20)) / 129
    expected = int(np.argmin(np.abs(centres - mel(freq))))
    assert abs(int(np.median(features.argmax(axis=1))) - expected) <= 1
    raw = fb.kaldi_fbank(_tone(1.0, freq).astype(np.float64) * 2 ** 15)
    np.testing.assert_allclose(features, (raw - 15.41663) / (2 * 6.55582), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- BEATs

def test_beats_loads_the_release_names_strictly_and_gives_patch_tokens(tiny_salmonn, tmp_path):
    checkpoint = torch.load(tiny_salmonn / "beats.pt", weights_only=True)
    for name in ("patch_embedding.weight", "post_extract_proj.weight", "encoder.pos_conv.0.weight_g",
                 "encoder.pos_conv.0.weight_v", "encoder.layers.1.self_attn.relative_attention_bias.weight",
                 "encoder.layers.0.self_attn.grep_linear.weight", "encoder.layers.0.self_attn.grep_a",
                 "encoder.layers.1.final_layer_norm.bias", "predictor.weight"):
        assert name in checkpoint["model"], name
    beats = load_beats(tiny_salmonn / "beats.pt")
    layers = beats.encoder.layers
    assert layers[1].self_attn.relative_attention_bias is layers[0].self_attn.relative_attention_bias
    fbank = torch.from_numpy(np.stack([fb.beats_fbank(_tone(3.0)), fb.beats_fbank(_tone(3.0, 200.0))]))
    with torch.no_grad():
        first, valid = beats(fbank)
        second, _ = beats(fbank)
    assert fbank.shape == (2, 298, 128)
    assert first.shape == (2, (298 // 16) * 8, beats.config.encoder_embed_dim) and bool(valid.all())
    assert torch.equal(first, second) and torch.isfinite(first).all()
    assert not torch.allclose(first[0], first[1])

    checkpoint["model"]["encoder.layers.0.self_attn.extra.weight"] = torch.zeros(1)
    torch.save(checkpoint, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"unexpected \['encoder.layers.0.self_attn.extra.weight'\]"):
        load_beats(tmp_path / "bad.pt")


def test_beats_padded_batch_rows_equal_clips_alone(tiny_salmonn):
    beats = load_beats(tiny_salmonn / "beats.pt")
    short, long = fb.beats_fbank(_tone(1.2, 700.0)), fb.beats_fbank(_tone(2.5, 300.0))
    batch = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(long), torch.from_numpy(short)], batch_first=True)
    with torch.no_grad():
        out, valid = beats(batch, torch.tensor([len(long), len(short)]))
        alone, _ = beats(torch.from_numpy(short)[None])
    n = alone.shape[1]
    assert valid[1].sum() == n and not valid[1, n:].any()
    torch.testing.assert_close(out[1, :n], alone[0], atol=1e-5, rtol=1e-5)


def test_relative_position_buckets_are_exact_near_and_logarithmic_far():
    buckets = relative_position_buckets(1000, num_buckets=320, max_distance=800)
    assert buckets[5, 5] == 0 and buckets[5, 4] == 1 and buckets[5, 6] == 161
    assert buckets[0, 79] == 160 + 79 and buckets[0, 80] == 160 + 80  # exact below 80, then log-spaced
    assert buckets[0, 999] == 319 and buckets[999, 0] == 159  # beyond max_distance: the last bucket


# ---------------------------------------------------------------------------- checkpoint keys

def test_the_release_state_dict_loads_with_no_missing_or_unexpected_key(backend, tiny_salmonn):
    state = read_checkpoint(tiny_salmonn / "salmonn.pth")
    for name in ("speech_query_tokens", "ln_speech.weight", "ln_audio.bias", "speech_llama_proj.weight",
                 "speech_Qformer.bert.embeddings.LayerNorm.weight",
                 "speech_Qformer.bert.encoder.layer.1.attention.self.query.weight",
                 "speech_Qformer.bert.encoder.layer.0.crossattention.self.key.weight",
                 "speech_Qformer.bert.encoder.layer.0.crossattention.output.LayerNorm.bias",
                 "speech_Qformer.bert.encoder.layer.1.intermediate_query.dense.weight",
                 "speech_Qformer.bert.encoder.layer.1.output_query.dense.bias",
                 "llama_model.base_model.model.model.layers.1.self_attn.v_proj.lora_B.default.weight"):
        assert name in state, name
    model = backend.model
    weights = {to_module_key(k) for k in state if "position_ids" not in k and "inv_freq" not in k}
    assert weights == set(checkpoint_keys(model))  # every weight maps, every module weight is covered
    load_checkpoint_state(model, state)
    own = model.state_dict()
    assert torch.equal(own["speech_Qformer.layernorm.weight"], state["speech_Qformer.bert.embeddings.LayerNorm.weight"])
    assert torch.equal(own["speech_Qformer.encoder.layer.0.crossattention.attention.key.weight"],
                       state["speech_Qformer.bert.encoder.layer.0.crossattention.self.key.weight"])
    lora = "llama_model.base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight"
    assert torch.equal(own[lora], state[lora]) and own[lora].abs().sum() > 0


def test_older_peft_lora_names_load_too(backend, tiny_salmonn):
    state = read_checkpoint(tiny_salmonn / "salmonn.pth")
    renamed = {k.replace(".default.weight", ".weight"): v for k, v in state.items()}
    load_checkpoint_state(backend.model, renamed)


def test_an_extra_or_missing_key_raises_naming_it(backend, tiny_salmonn):
    state = read_checkpoint(tiny_salmonn / "salmonn.pth")
    with pytest.raises(CheckpointKeyError, match=r"unexpected \['speech_Qformer.bert.pooler.dense.weight'\]"):
        load_checkpoint_state(backend.model, {**state, "speech_Qformer.bert.pooler.dense.weight": torch.zeros(1)})
    gone = "speech_Qformer.bert.encoder.layer.1.crossattention.self.value.bias"
    with pytest.raises(CheckpointKeyError, match=rf"missing \['{gone}'\]"):
        load_checkpoint_state(backend.model, {k: v for k, v in state.items() if k != gone})


def test_a_missing_part_is_named_before_anything_loads(tiny_salmonn, tmp_path):
    (tmp_path / "salmonn.json").write_text(json.dumps({"whisper_path": str(tiny_salmonn / "whisper")}))
    with pytest.raises(FileNotFoundError, match="beats_path=.*llama_path=.*ckpt="):
        load_backend("salmonn", str(tmp_path), LoadOptions())
    (tmp_path / "salmonn.json").write_text(json.dumps({"num_beam": 2}))
    with pytest.raises(ValueError, match="unknown SALMONN settings \\['num_beam'\\]"):
        load_backend("salmonn", str(tmp_path), LoadOptions())


# ---------------------------------------------------------------------------- the backend

def test_prompt_and_audio_are_prepared_as_the_release_does(backend):
    assert "salmonn" in backend_names()
    item = Item(id="x", dataset="t", audio="x.wav", question="Q?", choices=["a", "b"], answer=0)
    request = Request(item=item, run=0, user_text="What is heard?", audio=_tone(0.4), assistant_prefix="I hear")
    assert backend.chat_text(request) == "<s>USER: <Speech><SpeechHere></Speech> What is heard?\nASSISTANT: I hear"
    text_only = Request(item=item, run=0, user_text="What is 2+2?", audio=None)
    assert backend.chat_text(text_only) == "<s>USER: What is 2+2?\nASSISTANT:"
    prepared = backend.prepare([request, Request(item=item, run=0, user_text="x", audio=_tone(34.0))])
    assert prepared.inputs["fbank_lengths"].tolist() == [98, 2998]  # padded to 1 s, cut at 30 s
    assert prepared.inputs["input_features"].shape[-1] == 3000
    assert backend.model.speech_tokens() == 88
    greedy = GenerationSettings(max_new_tokens=4)
    assert backend.decoding(greedy).num_beams == 4  # the release's beams unless asked otherwise
    assert backend.decoding(greedy).min_new_tokens == 1  # the release's min_length=1: no end token first
    assert backend.decoding(GenerationSettings(max_new_tokens=4, num_beams=2)).num_beams == 2


def test_bin_infer_end_to_end_with_the_release_decoding(tiny_salmonn, manifest, tmp_path):
    out = tmp_path / "beams.jsonl"
    assert infer_main(["--manifest", str(manifest), "--model", "salmonn", "--model-path", str(tiny_salmonn),
                       "--mode", "direct", "--out", str(out), "--batch-size", "3", *SHORT]) == 1  # broken clip
    rows = _rows(out)
    assert rows["broken"]["error"] and len(rows) == 6
    for item_id, row in rows.items():
        if item_id != "broken":
            assert row["error"] is None and row["n_new_tokens"] == 5 and row["model"] == "salmonn", item_id
    assert rows["long"]["flags"]["audio_truncated_from_s"] == 32.0
    assert "audio_truncated_from_s" not in rows["tiny"].get("flags", {})
    side = json.loads((tmp_path / "beams.jsonl.meta.json").read_text())["params"]
    assert side["model"]["num_beams_by_default"] == 4 and side["model"]["speech_tokens"] == 88
    assert side["first_item_chat_text"].startswith("<s>USER: <Speech><SpeechHere></Speech> ")
    assert side["first_item_chat_text"].endswith("\nASSISTANT:")


def test_greedy_batches_equal_single_items_and_resume(salmonn_greedy, manifest, tmp_path):
    common = ["--manifest", str(manifest), "--model", "salmonn", "--model-path", str(salmonn_greedy), "--mode",
              "direct",
              "--score-options", "--dtype", "fp32", *SHORT]  # exact equality is a float32 property
    batched, single = tmp_path / "batched.jsonl", tmp_path / "single.jsonl"
    assert infer_main([*common, "--out", str(batched), "--batch-size", "6"]) == 1
    assert infer_main([*common, "--out", str(single), "--batch-size", "1"]) == 1
    rows, alone = _rows(batched), _rows(single)
    for item_id, row in rows.items():
        if item_id == "broken":
            continue
        assert row["raw_output"] == alone[item_id]["raw_output"], item_id
        assert row["option_logprobs"] == pytest.approx(alone[item_id]["option_logprobs"], abs=1e-4)
        assert all(v < 0 for v in row["option_logprobs"].values())
    assert len({tuple(r["option_logprobs"].values()) for r in rows.values() if r["error"] is None}) > 1
    lines = batched.read_text().splitlines()
    batched.write_text("\n".join(lines[:2]) + "\n")
    assert infer_main([*common, "--out", str(batched), "--batch-size", "6"]) == 1
    assert {k: v["raw_output"] for k, v in _rows(batched).items()} == {k: v["raw_output"] for k, v in rows.items()}


def test_bin_condition_and_bin_launch_run_salmonn(tiny_salmonn, salmonn_greedy, manifest, tmp_path):
    baseline = tmp_path / "base.jsonl"
    reasoning = "The clip is a steady tone. It does not change."
    ids = [json.loads(line)["id"] for line in manifest.read_text().splitlines()][:2]
    baseline.write_text("".join(json.dumps({"id": i, "model": "salmonn", "condition": "clean", "mode": "reasoning",
                                            "run": 0, "raw_output": reasoning + " Answer: (A)",
                                            "reasoning": reasoning, "pred": 0}) + "\n" for i in ids))
    out = tmp_path / "own.jsonl"
    code = condition_main(["--manifest", str(manifest), "--results", str(baseline), "--model", "salmonn",
                           "--model-path", str(salmonn_greedy), "--intervention", "own", "--max-new-tokens", "3",
                           "--out", str(out), "-q"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert code == 1 and {r["id"] for r in rows if r["error"] is None} == set(ids)  # the others have no baseline

    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"""
experiment: s
output: out
models:
  - {{name: salmonn, backend: salmonn, path: "{tiny_salmonn}", generation: {{max_new_tokens: 3}}}}
datasets:
  - {{name: demo, demo: {{items_per_task: 1}}, shards: 1}}
conditions: [clean]
modes: [direct]
""")
    assert launch_main([str(sweep), "--executor", "debug", "--out", str(tmp_path / "runs"), "-q"]) == 0
    merged = (tmp_path / "runs" / "s" / "results.jsonl").read_text().splitlines()
    assert merged and all(json.loads(line)["model"] == "salmonn" for line in merged)

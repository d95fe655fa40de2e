"""Tiny real checkpoints (toolkit.models.registry.build_tiny, toolkit.models.tiny): build, reload
with from_pretrained, generate.

Every model is a real transformers class with random weights, saved to a temp folder and
loaded back like a hub checkpoint. The three folders are built once per session.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from toolkit.models import tiny  # noqa: E402
from toolkit.models.af3 import to_model_keys  # noqa: E402
from toolkit.models.registry import build_tiny  # noqa: E402

SR = 16000
KINDS = ("qwen2-audio", "qwen2.5-omni", "af3")
GEN = {"do_sample": False, "min_new_tokens": 6, "max_new_tokens": 6}
QUESTIONS = (
    "What is the answer? Options: (A) dog (B) cat (C) bird (D) rain.",
    "Choose the correct option. Give your reasoning, then the answer.",
)


def _sine(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _omni_processor(folder: Path) -> Any:
    """The Omni recipe: Qwen2AudioProcessor from tokenizer + preprocessor_config + chat_template.json."""
    from transformers import AutoTokenizer, Qwen2AudioProcessor, WhisperFeatureExtractor

    tokenizer = AutoTokenizer.from_pretrained(folder)
    feature_extractor = WhisperFeatureExtractor.from_pretrained(folder)
    template_file = folder / "chat_template.json"
    chat_template = (
        json.loads(template_file.read_text(encoding="utf-8"))["chat_template"]
        if template_file.is_file()
        else tokenizer.chat_template
    )
    return Qwen2AudioProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer, chat_template=chat_template)


def _load(kind: str, folder: Path) -> Tuple[Any, Any]:
    """(model, processor) loaded from ``folder`` exactly as the toolkit loads real checkpoints."""
    if kind == "qwen2-audio":
        from transformers import Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor

        return Qwen2AudioForConditionalGeneration.from_pretrained(folder).eval(), Qwen2AudioProcessor.from_pretrained(folder)
    if kind == "qwen2.5-omni":
        from transformers import Qwen2_5OmniThinkerForConditionalGeneration

        return Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(folder).eval(), _omni_processor(folder)
    from transformers import AudioFlamingo3ForConditionalGeneration, AudioFlamingo3Processor

    return AudioFlamingo3ForConditionalGeneration.from_pretrained(folder).eval(), AudioFlamingo3Processor.from_pretrained(folder)


@pytest.fixture(scope="session")
def loaded(tiny_folders: Dict[str, Path]) -> Dict[str, Tuple[Any, Any]]:
    return {kind: _load(kind, tiny_folders[kind]) for kind in KINDS}


def _prompt(processor: Any, question: str) -> str:
    conversation = [
        {"role": "user", "content": [{"type": "audio", "audio": "clip.wav"}, {"type": "text", "text": question}]}
    ]
    return processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)


def _inputs(kind: str, processor: Any, prompts: List[str], clips: List[np.ndarray]) -> Any:
    if kind == "af3":  # text padding only: a top-level padding=True pads the mel windows
        return processor(text=prompts, audio=clips, text_kwargs={"padding": True, "padding_side": "left"})
    return processor(
        text=prompts, audio=clips, sampling_rate=SR, padding=True, padding_side="left", return_tensors="pt"
    )


def _generate(model: Any, inputs: Any) -> Any:
    with torch.no_grad():
        return model.generate(**inputs, **GEN)


# --------------------------------------------------------------------------- tokenizer


@pytest.mark.parametrize("kind", KINDS)
def test_tokenizer_round_trips_any_text_and_names_special_tokens(kind: str) -> None:
    tok = tiny.build_tokenizer(kind)
    text = "The answer is (B) because reasoning: 42 % - Ünïcødé 日本語 \n\t emoji \U0001F600 end"
    assert tok.decode(tok(text)["input_ids"]) == text
    assert 256 < len(tok) < 600
    specials = tiny.TOKENIZER_KINDS[kind]["specials"]
    assert [tok.convert_tokens_to_ids(t) for t in specials] == list(range(len(tok) - len(specials), len(tok)))
    assert tok.pad_token == "<|endoftext|>" and tok.eos_token == "<|im_end|>"
    assert tok.audio_token == tiny.TOKENIZER_KINDS[kind]["named"]["audio_token"]
    assert tok.audio_token_id == tok.convert_tokens_to_ids(tok.audio_token)
    for token in specials:  # special tokens are never split
        assert tok(f"x{token}y", add_special_tokens=False)["input_ids"][1] == tok.convert_tokens_to_ids(token)
    for word in ("user", "Ġanswer", "Ġoption", "Ġreasoning", "A", "(", "1"):
        assert word in tok.get_vocab()


def test_tokenizer_is_deterministic_and_rejects_unknown_kind() -> None:
    assert tiny.build_tokenizer("af3").get_vocab() == tiny.build_tokenizer("af3").get_vocab()
    assert tiny.build_tokenizer("qwen2.5-omni").image_token == "<|IMAGE|>"
    with pytest.raises(ValueError, match="valid kinds"):
        tiny.build_tokenizer("whisper")


def test_text_config_sizes_scale_to_a_100m_benchmark_model() -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    sizes = tiny.text_config_sizes(1024, 8)
    assert (sizes["num_attention_heads"], sizes["num_key_value_heads"], sizes["intermediate_size"]) == (16, 4, 2816)
    sizes.pop("head_dim")
    with torch.device("meta"):
        model = Qwen2ForCausalLM(Qwen2Config(vocab_size=518, tie_word_embeddings=False, **sizes))
    assert 80e6 < sum(p.numel() for p in model.parameters()) < 120e6
    with pytest.raises(ValueError, match="multiple of"):
        tiny.text_config_sizes(100, 2)


# --------------------------------------------------------------------------- folders


def test_folders_have_the_hub_layout_and_build_fast(tiny_folders: Dict[str, Path]) -> None:
    common = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
    expected = {
        "qwen2-audio": common | {"processor_config.json", "chat_template.jinja"},
        "qwen2.5-omni": common | {"preprocessor_config.json", "chat_template.json", "spk_dict.pt"},
        "af3": common | {"processor_config.json", "chat_template.jinja", "think"},
    }
    for kind in KINDS:
        folder = tiny_folders[kind]
        assert expected[kind] <= {p.name for p in folder.iterdir()}, kind
        assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 5e6
    assert {p.name for p in (tiny_folders["af3"] / "think").iterdir()} >= {
        "adapter_config.json",
        "adapter_model.safetensors",
        "non_lora_trainables.bin",
    }
    omni_config = json.loads((tiny_folders["qwen2.5-omni"] / "config.json").read_text())
    assert omni_config["model_type"] == "qwen2_5_omni"
    assert set(omni_config) >= {"thinker_config", "talker_config", "token2wav_config"}
    preprocessor = json.loads((tiny_folders["qwen2.5-omni"] / "preprocessor_config.json").read_text())
    assert (preprocessor["feature_size"], preprocessor["chunk_length"]) == (128, 300)


# --------------------------------------------------------------------------- generation


@pytest.mark.parametrize("kind", KINDS)
def test_processor_and_greedy_generate(kind: str, loaded: Dict[str, Tuple[Any, Any]]) -> None:
    model, processor = loaded[kind]
    tok = processor.tokenizer
    prompt = _prompt(processor, QUESTIONS[0])
    if kind == "af3":
        assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<sound>What")
    else:
        assert "<|audio_bos|><|AUDIO|><|audio_eos|>" in prompt and prompt.endswith("<|im_start|>assistant\n")
    inputs = _inputs(kind, processor, [prompt], [_sine(2.0)])
    ids = inputs["input_ids"]
    n_audio = int((ids == tok.audio_token_id).sum())
    assert n_audio == 50  # 2 s -> 200 mel frames -> 100 after conv -> 50 after pooling (all three)
    assert model.config.get_text_config().vocab_size == len(tok)
    out = _generate(model, inputs)
    assert out.shape == (1, ids.shape[1] + GEN["max_new_tokens"])
    assert torch.equal(out[:, : ids.shape[1]], ids)
    assert int(out.max()) < len(tok)


@pytest.mark.parametrize("kind", KINDS)
def test_left_padded_batch_generates_what_each_item_generates_alone(
    kind: str, loaded: Dict[str, Tuple[Any, Any]]
) -> None:
    model, processor = loaded[kind]
    prompts = [_prompt(processor, q) for q in QUESTIONS]
    clips = [_sine(1.0, 440.0), _sine(2.7, 660.0)]
    batch = _inputs(kind, processor, prompts, clips)
    mask = batch["attention_mask"]
    assert mask[0, 0] == 0 and bool(mask[:, -1].all()), "items of different length must be left padded"
    batched = _generate(model, batch)[:, batch["input_ids"].shape[1] :]
    for i in range(2):
        single = _inputs(kind, processor, [prompts[i]], [clips[i]])
        alone = _generate(model, single)[0, single["input_ids"].shape[1] :]
        assert batched[i].tolist() == alone.tolist(), f"{kind} item {i}"


# --------------------------------------------------------------------------- Qwen2.5-Omni


def _bare_omni_processor(tokenizer: Any, feature_extractor: Any, chat_template: str) -> Any:
    """A Qwen2_5OmniProcessor without its torchvision-only image/video processors."""
    from transformers import Qwen2_5OmniProcessor

    proc = Qwen2_5OmniProcessor.__new__(Qwen2_5OmniProcessor)
    proc.tokenizer, proc.feature_extractor = tokenizer, feature_extractor
    proc.image_processor = proc.video_processor = None
    proc.chat_template = chat_template
    for name in ("image_token", "audio_token", "video_token", "vision_bos_token", "vision_eos_token"):
        setattr(proc, name, getattr(tokenizer, name))
    for name in ("audio_bos_token", "audio_eos_token", "image_token_id", "audio_token_id", "video_token_id"):
        setattr(proc, name, getattr(tokenizer, name))
    return proc


def test_omni_recipe_processor_matches_the_omni_processor(
    tiny_folders: Dict[str, Path], loaded: Dict[str, Tuple[Any, Any]]
) -> None:
    _, processor = loaded["qwen2.5-omni"]
    omni = _bare_omni_processor(processor.tokenizer, processor.feature_extractor, processor.chat_template)
    prompts = [_prompt(processor, q) for q in QUESTIONS]
    clips = [_sine(1.3), _sine(3.0, 880.0)]
    ours = _inputs("qwen2.5-omni", processor, prompts, clips)
    theirs = omni(text=prompts, audio=clips, sampling_rate=SR, padding=True, return_tensors="pt")  # left by default
    assert set(ours) == set(theirs) == {"input_ids", "attention_mask", "input_features", "feature_attention_mask"}
    for key in ours:
        assert ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key]), key
    assert ours["input_features"].shape[-1] == 30000  # chunk_length 300 s, as released


def test_omni_thinker_loads_the_thinker_weights_of_the_full_checkpoint(
    tiny_folders: Dict[str, Path], loaded: Dict[str, Tuple[Any, Any]]
) -> None:
    from safetensors.torch import load_file

    thinker, _ = loaded["qwen2.5-omni"]
    stored = load_file(str(tiny_folders["qwen2.5-omni"] / "model.safetensors"))
    assert {k.split(".", 1)[0] for k in stored} == {"thinker", "talker", "token2wav"}
    from transformers import Qwen2_5OmniForConditionalGeneration

    full = Qwen2_5OmniForConditionalGeneration.from_pretrained(tiny_folders["qwen2.5-omni"])
    assert set(full.speaker_map) == {"Chelsie", "Ethan"}  # spk_dict.pt is read
    full_thinker = {k[len("thinker.") :]: v for k, v in full.state_dict().items() if k.startswith("thinker.")}
    own = thinker.state_dict()
    assert set(own) == set(full_thinker)
    assert all(torch.equal(own[k], full_thinker[k]) for k in own)
    text = thinker.config.text_config
    assert sum(text.rope_parameters["mrope_section"]) == text.hidden_size // text.num_attention_heads // 2
    tok = loaded["qwen2.5-omni"][1].tokenizer
    assert thinker.config.audio_start_token_id == tok.audio_bos_token_id
    assert thinker.config.user_token_id == tok.convert_tokens_to_ids("user")


# --------------------------------------------------------------------------- AF3 think


def test_af3_think_adapter_loads_with_peft_and_changes_the_logits(
    tiny_folders: Dict[str, Path], loaded: Dict[str, Tuple[Any, Any]]
) -> None:
    from peft import PeftModel
    from transformers import AudioFlamingo3ForConditionalGeneration

    folder = tiny_folders["af3"]
    base, processor = loaded["af3"]
    inputs = _inputs("af3", processor, [_prompt(processor, QUESTIONS[1])], [_sine(1.5)])
    with torch.no_grad():
        base_logits = base(**inputs).logits

    model = AudioFlamingo3ForConditionalGeneration.from_pretrained(folder).eval()
    extra = torch.load(folder / "think" / "non_lora_trainables.bin", map_location="cpu", weights_only=True)
    assert set(extra) == {f"multi_modal_projector.linear_{i}.{p}" for i in (1, 2) for p in ("weight", "bias")}
    # Pitfall: with transformers 5 the checkpoint names no longer match the module tree, and
    # strict=False would silently ignore every key.
    assert set(model.load_state_dict(extra, strict=False).unexpected_keys) == set(extra)
    result = model.load_state_dict(to_model_keys(extra, set(model.state_dict())), strict=False)
    assert result.unexpected_keys == []
    assert torch.equal(model.model.multi_modal_projector.linear_1.weight, extra["multi_modal_projector.linear_1.weight"])

    model = PeftModel.from_pretrained(model, folder / "think").eval()
    lora_modules = [name for name, _ in model.named_modules() if name.endswith("lora_A")]
    assert lora_modules and all("language_model" in name for name in lora_modules)
    assert not any("audio_tower" in name for name in lora_modules)
    assert any(float(p.abs().sum()) > 0 for n, p in model.named_parameters() if "lora_B" in n)
    with torch.no_grad():
        think_logits = model(**inputs).logits
    assert think_logits.shape == base_logits.shape
    assert not torch.allclose(think_logits, base_logits)
    out = _generate(model, inputs)
    assert out.shape[1] == inputs["input_ids"].shape[1] + GEN["max_new_tokens"]


# --------------------------------------------------------------------------- determinism


def test_building_twice_gives_identical_weights(tmp_path: Path, tiny_folders: Dict[str, Path]) -> None:
    from safetensors.torch import load_file

    for kind in KINDS:
        again = load_file(str(build_tiny(kind, tmp_path / kind) / "model.safetensors"))
        first = load_file(str(tiny_folders[kind] / "model.safetensors"))
        assert set(again) == set(first)
        assert all(torch.equal(again[k], first[k]) for k in first), kind
        assert (tmp_path / kind / "tokenizer.json").read_bytes() == (tiny_folders[kind] / "tokenizer.json").read_bytes()
    other = load_file(str(build_tiny("af3", tmp_path / "af3-seed1", seed=1) / "model.safetensors"))
    first = load_file(str(tiny_folders["af3"] / "model.safetensors"))
    assert not all(torch.equal(other[k], first[k]) for k in first)
    think = build_tiny("af3-think", tmp_path / "af3") / "think"
    assert (think / "adapter_model.safetensors").read_bytes() == (
        tiny_folders["af3"] / "think" / "adapter_model.safetensors"
    ).read_bytes()

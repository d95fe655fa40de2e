"""Real checkpoints, official set-ups: what a released folder's files must not change silently.

Tiny random checkpoints of the real classes carry what real releases carry: a hostile
``generation_config.json`` (sampling, beams, penalties), an adapter whose keys do not match,
an Omni folder whose chat template sits in another file, a generation config without the
chat template's end-of-turn token. Each test would pass on the toolkit before these checks
only if the run silently changed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, List

import numpy as np
import pytest

from toolkit.cli.infer import main
from toolkit.data.demo import prepare_demo
from toolkit.manifest import Item, write_manifest
from toolkit.models.adapters import AdapterMismatch
from toolkit.models.base import GenerationSettings, LoadOptions, Request
from toolkit.models.generation import effective, generation_config
from toolkit.models.registry import get_backend_class, load_backend
from toolkit.prompts import get_prompt

#: what releases ship (AF3 conversions: repetition_penalty 1.05; Qwen2.5 instruct: sampling, top_k 20)
HOSTILE = {"do_sample": True, "temperature": 0.7, "top_k": 5, "top_p": 0.8, "repetition_penalty": 1.5,
           "no_repeat_ngram_size": 2, "num_beams": 3, "length_penalty": 2.0, "min_new_tokens": 5}
FOLDER_OF = {"qwen2-audio": "qwen2-audio", "qwen2.5-omni": "qwen2.5-omni", "af3": "af3", "af3-think": "af3"}


def _hostile_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    config = json.loads((target / "generation_config.json").read_text())
    (target / "generation_config.json").write_text(json.dumps({**config, **HOSTILE}))
    return target


def _request(backend: Any, mode: str = "direct", seconds: float = 1.0) -> Request:
    item = Item(id="x", dataset="t", audio="x.wav", question="Which animal is it?", choices=["dog", "cat"], answer=0)
    audio = (0.1 * np.random.default_rng(0).standard_normal(int(16000 * seconds))).astype(np.float32)
    return Request(item=item, run=0, user_text="Which animal is it? (A) dog (B) cat", audio=audio, mode=mode)


def _greedy_by_hand(backend: Any, request: Request, max_new_tokens: int, eos: set, min_new_tokens: int) -> List[int]:
    """Pure greedy decoding: full forward passes, argmax, end tokens masked for the first
    ``min_new_tokens`` steps; no generation config involved."""
    import torch

    inputs = backend._to_device(backend.prepare([request]).inputs)
    ids, mask = inputs.pop("input_ids"), inputs.pop("attention_mask")
    new: List[int] = []
    with torch.inference_mode():
        for step in range(max_new_tokens):
            logits = backend.model(input_ids=ids, attention_mask=mask, **inputs).logits[0, -1].float()
            if step < min_new_tokens:
                logits[sorted(eos)] = float("-inf")
            token = int(logits.argmax())
            new.append(token)
            if token in eos:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
            mask = torch.cat([mask, torch.ones(1, 1, dtype=mask.dtype)], dim=1)
    return new


def _end_ids(backend: Any) -> set:
    tok = backend.tokenizer
    return {tok.eos_token_id, tok.pad_token_id, tok.convert_tokens_to_ids("<|im_end|>")}


def test_clean_config_resets_every_decoding_field_and_applies_the_official_values():
    from transformers import GenerationConfig

    released = GenerationConfig(**HOSTILE, eos_token_id=[7, 8], pad_token_id=8)
    greedy = GenerationSettings(max_new_tokens=32)
    clean = generation_config(released, greedy, official={"min_new_tokens": 1})
    fresh = GenerationConfig()  # transformers' defaults (None: the neutral value)
    for name in ("repetition_penalty", "no_repeat_ngram_size", "length_penalty", "top_k", "top_p", "temperature"):
        assert getattr(clean, name) == getattr(fresh, name), name
    assert (clean.do_sample, clean.num_beams, clean.min_new_tokens) == (False, 1, 1)
    assert clean.eos_token_id == [7, 8] and released.repetition_penalty == 1.5  # ids kept; input untouched
    assert effective(clean) == {"max_new_tokens": 32, "min_new_tokens": 1, "eos_token_id": [7, 8],
                                "pad_token_id": 8, "do_sample": False, "num_beams": 1}
    kept = generation_config(released, GenerationSettings(max_new_tokens=32, defaults="checkpoint"))
    assert (kept.do_sample, kept.num_beams, kept.repetition_penalty, kept.min_new_tokens) == (True, 3, 1.5, 5)
    with pytest.raises(ValueError, match="clean, checkpoint"):
        generation_config(released, GenerationSettings(max_new_tokens=1, defaults="release"))


@pytest.mark.parametrize("backend_name", ["qwen2-audio", "qwen2.5-omni", "af3"])
def test_a_hostile_generation_config_still_gives_pure_greedy(backend_name, tiny_folders, tmp_path):
    folder = _hostile_copy(tiny_folders[FOLDER_OF[backend_name]], tmp_path / "hostile")
    backend = load_backend(backend_name, str(folder), LoadOptions(device="cpu"))
    request = _request(backend)
    official_min = backend.official_generation.get("min_new_tokens", 0)
    assert official_min == (1 if backend_name == "qwen2-audio" else 0)  # QwenLM/Qwen2-Audio eval scripts
    expected = _greedy_by_hand(backend, request, 12, _end_ids(backend), official_min)
    greedy = backend.generate(backend.prepare([request]), GenerationSettings(max_new_tokens=12))[0]
    n = len(expected) - (expected[-1] in _end_ids(backend))
    assert greedy.n_new_tokens == n
    assert greedy.text == backend.tokenizer.decode(expected[:n], skip_special_tokens=True)
    released = backend.generate(backend.prepare([request]),
                                GenerationSettings(max_new_tokens=12, defaults="checkpoint"))[0]
    assert released.text != greedy.text  # the release's sampling and penalties do change the output


def test_sidecars_record_the_effective_generation_config(tiny_folders, tmp_path):
    folder = _hostile_copy(tiny_folders["qwen2-audio"], tmp_path / "hostile")
    items = prepare_demo(tmp_path / "data", items_per_task=1, seed=1)[:2]
    manifest = write_manifest(tmp_path / "data" / "m.jsonl", items)
    sides = {}
    for defaults in ("clean", "checkpoint"):
        out = tmp_path / f"{defaults}.jsonl"
        assert main(["--manifest", str(manifest), "--model", "qwen2-audio", "--model-path", str(folder), "--mode",
                     "direct", "--max-new-tokens", "4", "--generation-defaults", defaults, "--out", str(out),
                     "-q"]) == 0
        sides[defaults] = json.loads((tmp_path / f"{defaults}.jsonl.meta.json").read_text())["params"]
    clean, kept = sides["clean"]["generation_effective"], sides["checkpoint"]["generation_effective"]
    assert clean["min_new_tokens"] == 1 and clean["max_new_tokens"] == 4
    assert not {"repetition_penalty", "no_repeat_ngram_size", "length_penalty", "top_k"} & set(clean)
    assert (clean["do_sample"], clean["num_beams"]) == (False, 1)
    assert (kept["repetition_penalty"], kept["num_beams"], kept["min_new_tokens"]) == (1.5, 3, 5)
    assert sides["clean"]["official_setup"]["generation"] == {"min_new_tokens": 1}
    assert "Qwen2-Audio" in sides["clean"]["official_setup"]["source"]
    assert sides["clean"]["fingerprint"] != sides["checkpoint"]["fingerprint"]
    assert sides["clean"]["first_item_tokens"]["audio"] > 0
    assert set(sides["clean"]["module_dtypes"]) >= {"audio_tower", "language_model"}


def test_end_of_turn_stops_generation_when_the_generation_config_omits_it(tiny_folders, tmp_path):
    folder = shutil.copytree(tiny_folders["qwen2.5-omni"], tmp_path / "omni")
    config = json.loads((folder / "generation_config.json").read_text())
    backend = load_backend("qwen2.5-omni", str(tiny_folders["qwen2.5-omni"]), LoadOptions(device="cpu"))
    im_end = backend.tokenizer.convert_tokens_to_ids("<|im_end|>")
    (folder / "generation_config.json").write_text(json.dumps({**config, "eos_token_id": [backend.pad_id]}))
    lacking = load_backend("qwen2.5-omni", str(folder), LoadOptions(device="cpu"))
    assert im_end in lacking.stop_ids
    assert im_end in lacking.decoding(GenerationSettings(max_new_tokens=4)).eos_token_id


def _move_template(folder: Path, json_template: bool, jinja_template: bool) -> None:
    template = json.loads((folder / "chat_template.json").read_text())["chat_template"]
    (folder / "chat_template.json").unlink()
    (folder / "chat_template.jinja").unlink()
    if jinja_template:
        (folder / "chat_template.jinja").write_text(template)
    if json_template:
        (folder / "chat_template.json").write_text(json.dumps({"chat_template": template}))


def test_omni_reads_its_template_wherever_the_hub_keeps_it_and_refuses_a_folder_without(tiny_folders, tmp_path):
    reference = load_backend("qwen2.5-omni", str(tiny_folders["qwen2.5-omni"]), LoadOptions(device="cpu"))
    request = _request(reference)
    expected = reference.chat_text(request)
    assert "<|audio_bos|><|AUDIO|><|audio_eos|>" in expected
    jinja_only = shutil.copytree(tiny_folders["qwen2.5-omni"], tmp_path / "jinja")
    _move_template(jinja_only, json_template=False, jinja_template=True)
    assert load_backend("qwen2.5-omni", str(jinja_only), LoadOptions(device="cpu")).chat_text(request) == expected
    none = shutil.copytree(tiny_folders["qwen2.5-omni"], tmp_path / "none")
    _move_template(none, json_template=False, jinja_template=False)
    with pytest.raises(ValueError, match="no chat template"):  # was: Qwen2-Audio's default template, silently
        load_backend("qwen2.5-omni", str(none), LoadOptions(device="cpu"))
    qwen2_audio = shutil.copytree(tiny_folders["qwen2.5-omni"], tmp_path / "other")
    _move_template(qwen2_audio, json_template=True, jinja_template=False)
    (qwen2_audio / "chat_template.json").write_text(json.dumps({"chat_template": reference.processor
                                                                .default_chat_template}))
    with pytest.raises(ValueError, match=r"chat_template\.json: not a Qwen2.5-Omni chat template"):
        load_backend("qwen2.5-omni", str(qwen2_audio), LoadOptions(device="cpu"))


def test_af3_think_adds_its_trigger_to_reasoning_prompts_only(tiny_folders):
    from toolkit.models.af3 import THINK_SUFFIX

    think = load_backend("af3-think", str(tiny_folders["af3"]), LoadOptions(device="cpu"))
    reasoning = think.chat_text(_request(think, mode="reasoning"))
    assert reasoning.count(THINK_SUFFIX) == 1 and f"cat {THINK_SUFFIX}<|im_end|>" in reasoning
    already = _request(think, mode="reasoning")
    already = Request(**{**already.__dict__, "user_text": f"{already.user_text} {THINK_SUFFIX}"})
    assert think.chat_text(already).count(THINK_SUFFIX) == 1
    for mode in ("direct", "conditioned", "continue"):
        assert THINK_SUFFIX not in think.chat_text(_request(think, mode=mode))
    base = load_backend("af3", str(tiny_folders["af3"]), LoadOptions(device="cpu"))
    assert THINK_SUFFIX not in base.chat_text(_request(base, mode="reasoning"))
    assert think.describe()["think_suffix"] == THINK_SUFFIX


def test_af3_reasoning_budget_covers_its_chains():
    reasoning, direct = get_prompt("reasoning-v1"), get_prompt("direct-v1")
    for name in ("af3", "af3-think"):
        assert get_backend_class(name).default_max_new_tokens(reasoning) == 2048
        assert get_backend_class(name).default_max_new_tokens(direct) == direct.max_new_tokens
    assert get_backend_class("qwen2-audio").default_max_new_tokens(reasoning) == reasoning.max_new_tokens


def _renamed_adapter(source: Path, target: Path, rename: Any) -> Path:
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target)
    weights = load_file(str(target / "adapter_model.safetensors"))
    save_file({rename(key, value)[0]: rename(key, value)[1] for key, value in weights.items()},
              str(target / "adapter_model.safetensors"))
    return target


@pytest.fixture(scope="module")
def qwen2_audio_adapter(tiny_folders, tmp_path_factory) -> Path:
    """A LoRA adapter of the tiny Qwen2-Audio (q/v projections, non-zero B), saved by peft."""
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2AudioForConditionalGeneration

    from toolkit.models import tiny

    model = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_folders["qwen2-audio"])
    lora = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=r".*language_model.*\.(q_proj|v_proj)"))
    tiny.nonzero_lora(lora)
    folder = tmp_path_factory.mktemp("adapter") / "lora"
    lora.save_pretrained(str(folder))
    return folder


def test_an_adapter_that_loads_is_counted_in_the_sidecar_facts(tiny_folders, qwen2_audio_adapter):
    backend = load_backend("qwen2-audio", str(tiny_folders["qwen2-audio"]),
                           LoadOptions(device="cpu", adapter=str(qwen2_audio_adapter)))
    (check,) = backend.describe()["adapters"]
    assert check["tensors"] == check["matched"] == check["nonzero"] == 2 * 2 * 2  # 2 layers x q,v x A,B


@pytest.mark.parametrize("damage", ["renamed", "zero"])
def test_an_adapter_that_would_change_nothing_is_refused(damage, tiny_folders, qwen2_audio_adapter, tmp_path):
    def rename(key, value):
        if damage == "renamed":
            return key.replace("self_attn", "attention"), value
        return key, value * 0 if "lora_B" in key else value

    broken = _renamed_adapter(qwen2_audio_adapter, tmp_path / "broken", rename)
    message = "did not load" if damage == "renamed" else "every lora_B tensor is zero"
    with pytest.raises(AdapterMismatch, match=message) as caught:
        load_backend("qwen2-audio", str(tiny_folders["qwen2-audio"]), LoadOptions(device="cpu", adapter=str(broken)))
    if damage == "renamed":
        assert "attention" in str(caught.value)  # names the keys that matched nothing


def test_a_think_adapter_with_renamed_keys_is_refused(tiny_folders, tmp_path):
    folder = tmp_path / "af3"
    shutil.copytree(tiny_folders["af3"], folder)
    shutil.rmtree(folder / "think")
    _renamed_adapter(tiny_folders["af3"] / "think", folder / "think",
                     lambda key, value: (key.replace("q_proj", "query"), value))
    with pytest.raises(AdapterMismatch, match="did not load"):
        load_backend("af3-think", str(folder), LoadOptions(device="cpu"))
    with pytest.raises(AdapterMismatch, match="stacking adapters"):
        load_backend("af3-think", str(tiny_folders["af3"]),
                     LoadOptions(device="cpu", adapter=str(tiny_folders["af3"] / "think")))


@pytest.mark.parametrize("backend_name", ["simulated", "qwen2-audio", "qwen2.5-omni", "af3-think", "whisper",
                                          "salmonn"])
def test_explain_prints_the_set_up_and_writes_nothing(backend_name, tiny_folders, tmp_path, capsys):
    from toolkit.models.registry import build_tiny

    items = prepare_demo(tmp_path / "data", items_per_task=1, seed=1)[:1]
    manifest = write_manifest(tmp_path / "data" / "m.jsonl", items)
    before = sorted(tmp_path.rglob("*"))
    path = {"simulated": [], "whisper": ["--model-path", str(build_tiny("whisper", tmp_path / "w"))],
            "salmonn": ["--model-path", str(build_tiny("salmonn", tmp_path / "s"))]}.get(
        backend_name, ["--model-path", str(tiny_folders.get(FOLDER_OF.get(backend_name, ""), ""))])
    before = sorted(tmp_path.rglob("*"))
    mode = ["--mode", "direct", "--prompt", "asr-whisper"] if backend_name == "whisper" else ["--mode", "reasoning"]
    assert main(["--manifest", str(manifest), "--model", backend_name, *path, *mode, "--explain", "-q"]) == 0
    printed = capsys.readouterr().out
    assert sorted(tmp_path.rglob("*")) == before
    assert "generation effective:" in printed and "== first item chat text ==" in printed
    if backend_name != "simulated":
        assert "module dtypes:\n  " in printed and "first item tokens:\n  " in printed
        assert "stop_ids" in printed and "official setup:" in printed
    if backend_name == "af3-think":
        assert '"matched": 8' in printed and "Please think and reason" in printed
    if backend_name == "salmonn":
        assert "  audio: 88\n" in printed and "llama: \"float16\"" in printed


def test_the_system_prompt_is_the_backends_and_recorded(tiny_folders):
    import dataclasses

    from toolkit.prompts import PromptTemplate

    assert "system" not in {field.name for field in dataclasses.fields(PromptTemplate)}  # it reached no backend
    omni = load_backend("qwen2.5-omni", str(tiny_folders["qwen2.5-omni"]), LoadOptions(device="cpu"))
    system = omni.describe()["system_prompt"]
    assert system.startswith("You are Qwen, a virtual human") and system in omni.chat_text(_request(omni))


def test_stereo_becomes_mono_by_the_models_official_rule():
    from toolkit.audio import to_mono_16k

    stereo = np.stack([np.full(160, 0.5, np.float32), np.full(160, -0.1, np.float32)], axis=1)
    assert np.allclose(to_mono_16k(stereo, 16000), 0.2)
    assert np.allclose(to_mono_16k(stereo, 16000, channels="first"), 0.5)
    with pytest.raises(ValueError, match="mean, first"):
        to_mono_16k(stereo, 16000, channels="left")
    assert get_backend_class("qwen2-audio").channel_policy == "mean"
    assert get_backend_class("salmonn").channel_policy == "first"  # SALMONN's cli_inference.py: audio[:, 0]


def test_salmonn_runs_the_release_precision_mix_by_default(tiny_salmonn):
    mixed = load_backend("salmonn", str(tiny_salmonn), LoadOptions(device="cpu"))
    assert mixed.module_dtypes() == {"llama": "float16", "lora": "float16", "whisper": "float32", "beats": "float32",
                                     "qformer": "float32", "projection": "float32"}
    assert mixed.describe()["autocast"]["why"].startswith("the release runs without autocast on CPU")
    request = _request(mixed)
    first = mixed.generate(mixed.prepare([request]), GenerationSettings(max_new_tokens=6), score_options=True)[0]
    again = mixed.generate(mixed.prepare([request]), GenerationSettings(max_new_tokens=6), score_options=True)[0]
    assert first.text == again.text and first.n_new_tokens > 0
    single = load_backend("salmonn", str(tiny_salmonn), LoadOptions(device="cpu", dtype="fp32"))
    assert set(single.module_dtypes().values()) == {"float32"}
    assert single.describe()["autocast"] == {"enabled": False, "why": "one dtype throughout (--dtype given)"}
    expected = single.generate(single.prepare([request]), GenerationSettings(max_new_tokens=6), score_options=True)[0]
    assert first.option_logprobs == pytest.approx(expected.option_logprobs, abs=0.05)  # float16 Vicuna, same model


def test_salmonn_checkpoints_that_pickle_training_objects_load_without_running_them(tiny_salmonn, tmp_path):
    import argparse
    import importlib
    import sys

    import torch

    module = tmp_path / "mods" / "trainer_state_mod.py"
    module.parent.mkdir()
    module.write_text("RAN = []\nclass Scaler:\n    def __init__(self):\n        self.scale = 2.0 ** 16\n"
                      "    def __setstate__(self, state):\n        RAN.append(state)\n"
                      "        self.__dict__.update(state)\n")
    sys.path.insert(0, str(module.parent))
    try:
        scaler = importlib.import_module("trainer_state_mod").Scaler()
        folder = shutil.copytree(tiny_salmonn, tmp_path / "salmonn")
        state = torch.load(folder / "salmonn.pth", weights_only=True)
        torch.save({"model": state.get("model", state), "config": argparse.Namespace(lr=3e-5, epochs=30),
                    "scaler": scaler, "epoch": 3}, folder / "salmonn.pth")
    finally:
        sys.path.remove(str(module.parent))
        sys.modules.pop("trainer_state_mod", None)
    with pytest.raises(Exception):  # what torch itself does with such a file
        torch.load(folder / "salmonn.pth", weights_only=True)
    from toolkit.models.salmonn.safe_load import load_weights_file

    loaded, foreign = load_weights_file(folder / "salmonn.pth")
    assert foreign == ["argparse.Namespace", "trainer_state_mod.Scaler"] and "trainer_state_mod" not in sys.modules
    assert loaded["scaler"].state == {"scale": 2.0 ** 16} and loaded["epoch"] == 3
    reference = load_backend("salmonn", str(tiny_salmonn), LoadOptions(device="cpu", dtype="fp32"))
    pickled = load_backend("salmonn", str(folder), LoadOptions(device="cpu", dtype="fp32"))
    request = _request(reference)
    settings = GenerationSettings(max_new_tokens=6)
    assert pickled.generate(pickled.prepare([request]), settings)[0].text == \
        reference.generate(reference.prepare([request]), settings)[0].text


def test_salmonn_fast_tokenizer_is_checked_against_the_slow_one(tiny_salmonn, tmp_path):
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    from toolkit.models.salmonn.loader import check_slow_tokenizer

    backend = load_backend("salmonn", str(tiny_salmonn), LoadOptions(device="cpu", dtype="fp32"))
    assert backend.describe()["tokenizer_check"].startswith("not checked: no tokenizer.model")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(backend.probe_texts() * 20 + ["USER: what sound is this? ASSISTANT: a dog barks"]))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "tokenizer"), vocab_size=400,
                                   hard_vocab_limit=False, model_type="bpe", byte_fallback=True, minloglevel=2,
                                   normalization_rule_name="identity", remove_extra_whitespaces=False)  # as LLaMA's
    llm = tmp_path / "llm"
    llm.mkdir()
    shutil.copy(tmp_path / "tokenizer.model", llm / "tokenizer.model")
    fast = LlamaTokenizer.from_pretrained(str(llm))  # transformers 5 converts tokenizer.model to a fast tokenizer
    texts = backend.probe_texts()
    assert check_slow_tokenizer(fast, llm, texts) == f"fast == slow LlamaTokenizer on {len(texts)} prompt texts"
    with pytest.raises(ValueError, match="the fast tokenizer differs from the release's slow LlamaTokenizer"):
        check_slow_tokenizer(backend.tokenizer, llm, backend.probe_texts())  # another vocabulary altogether

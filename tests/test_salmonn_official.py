"""SALMONN's official set-up (bytedance/SALMONN, branch ``salmonn``) as the backend applies it:
precision mix and autocast, tokenizer check and ``[PAD]``, checkpoints that pickle training
objects, decoding values. Tiny random checkpoints from ``build_tiny("salmonn", ...)``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kaldi_native_fbank")

from toolkit.manifest import Item
from toolkit.models.base import GenerationSettings, LoadOptions, Request
from toolkit.models.registry import load_backend
from toolkit.models.salmonn import precision
from toolkit.models.salmonn.loader import check_slow_tokenizer
from toolkit.models.salmonn.safe_load import (
    Foreign,
    UnsafeCheckpointError,
    load_weights_file,
)

SR = 16000
MIX = {"llama": "float16", "lora": "float16", "whisper": "float32", "beats": "float32", "qformer": "float32",
       "projection": "float32"}


def _request(seconds: float = 1.5) -> Request:
    item = Item(id="x", dataset="t", audio="x.wav", question="Which animal is it?", choices=["dog", "cat"], answer=0)
    t = np.arange(int(seconds * SR)) / SR
    audio = (0.2 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size))
    return Request(item=item, run=0, user_text="Which animal is it? (A) dog (B) cat", audio=audio.astype(np.float32))


def _run(backend, request: Request, tokens: int = 6):
    return backend.generate(backend.prepare([request]), GenerationSettings(max_new_tokens=tokens), score_options=True)[0]


def _run_seeing_projection(backend, request: Request):
    """One generate, and the dtypes the speech projection produced in it (what autocast did to the encoders)."""
    seen = []
    hook = backend.model.speech_llama_proj.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    try:
        return _run(backend, request), set(seen)
    finally:
        hook.remove()


# ---------------------------------------------------------------------------- precision

def test_dtype_auto_is_the_release_mix_under_float16_autocast(salmonn_greedy):
    backend = load_backend("salmonn", str(salmonn_greedy), LoadOptions(device="cpu", dtype="auto"))
    for name, param in backend.model.named_parameters():
        expected = torch.float16 if name.startswith("llama_model.") else torch.float32
        assert param.dtype == expected, name
    described = backend.describe()
    assert described["precision"]["parts"] == MIX and backend.module_dtypes() == MIX
    assert described["precision"]["release_parts"]["llama"] == "float16"
    assert described["precision"]["plan"] == "release mix"
    assert described["autocast"]["why"].startswith("the release runs without autocast on CPU")
    request = _request()
    first, projected = _run_seeing_projection(backend, request)
    fault = precision.autocast_fault("cpu", torch.float16)
    if fault is None:  # this torch runs float16 autocast on the CPU: the release's GPU numerics
        assert described["autocast"] == {**described["autocast"], "enabled": True, "device": "cpu",
                                         "dtype": "float16"}
        assert described["precision"]["fallback"] is None
        assert projected == {torch.float16}  # the encoders ran under autocast
    else:
        assert described["precision"]["fallback"] and fault in described["precision"]["fallback"]
    again = _run(backend, request)
    assert first.n_new_tokens > 0 and first.text
    assert (first.text, first.n_new_tokens) == (again.text, again.n_new_tokens)  # salmonn_greedy is deterministic
    assert first.option_logprobs == again.option_logprobs
    json.dumps(described)  # the sidecar takes it as is


def test_without_float16_autocast_the_same_weights_run_and_the_fallback_is_recorded(salmonn_greedy, monkeypatch):
    monkeypatch.setattr(precision, "autocast_fault", lambda device, dtype: "no float16 autocast in this torch")
    backend = load_backend("salmonn", str(salmonn_greedy), LoadOptions(device="cpu"))
    described = backend.describe()
    assert described["precision"]["parts"] == MIX and described["autocast"]["enabled"] is False
    assert "no float16 autocast in this torch" in described["precision"]["fallback"]
    assert "cast to the float16 Vicuna" in described["autocast"]["why"]
    request = _request()
    first, projected = _run_seeing_projection(backend, request)
    assert projected == {torch.float32}
    again = _run(backend, request)
    assert first.n_new_tokens > 0 and first.text == again.text


def test_an_explicit_dtype_is_one_dtype_for_every_weight(salmonn_greedy):
    for option, dtype in (("fp32", "float32"), ("bf16", "bfloat16")):
        backend = load_backend("salmonn", str(salmonn_greedy), LoadOptions(device="cpu", dtype=option))
        assert set(backend.module_dtypes().values()) == {dtype}
        assert backend.describe()["autocast"] == {"enabled": False, "why": "one dtype throughout (--dtype given)"}
        assert backend.describe()["precision"]["plan"] == "one dtype"


# ---------------------------------------------------------------------------- tokenizer, [PAD]

def _train_sentencepiece(texts, path: Path) -> None:
    """A tiny sentencepiece BPE set up like LLaMA's ``tokenizer.model`` (ids 0/1/2, byte fallback)."""
    spm = pytest.importorskip("sentencepiece")
    with path.open("wb") as out:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(list(texts) * 5), model_writer=out, model_type="bpe",
                                       vocab_size=400, hard_vocab_limit=False, byte_fallback=True, split_digits=True,
                                       unk_id=0, bos_id=1, eos_id=2, pad_id=-1, add_dummy_prefix=True,
                                       remove_extra_whitespaces=False, normalization_rule_name="identity",
                                       character_coverage=1.0, num_threads=1, minloglevel=2)


@pytest.fixture(scope="module")
def sentencepiece_folder(tiny_salmonn, salmonn_greedy, tmp_path_factory) -> Path:
    """The tiny parts with a Vicuna folder like the release's: ``tokenizer.model`` and its config, no
    ``tokenizer.json``."""
    backend = load_backend("salmonn", str(salmonn_greedy), LoadOptions(device="cpu", dtype="fp32"))
    root = tmp_path_factory.mktemp("spm") / "salmonn"
    shutil.copytree(tiny_salmonn, root)
    _train_sentencepiece(backend.probe_texts() + ["USER: what sound is this?\nASSISTANT: a dog barks"],
                         root / "vicuna" / "tokenizer.model")
    (root / "vicuna" / "tokenizer.json").unlink()
    return root


def test_the_fast_tokenizer_is_checked_against_sentencepiece_at_load(sentencepiece_folder, tiny_salmonn, tmp_path):
    backend = load_backend("salmonn", str(sentencepiece_folder), LoadOptions(device="cpu", dtype="fp32"))
    texts = backend.probe_texts()
    assert backend.describe()["tokenizer_check"] == f"fast == slow LlamaTokenizer on {len(texts)} prompt texts"
    templates = {"</Speech> Which animal makes this sound?", "USER: Which animal makes this sound?"}
    assert all(any(t.startswith(start) for t in texts) for start in templates)  # with and without audio
    assert "USER: <Speech>" in texts and {"A", "D", "(A)"} <= set(texts)
    assert any("\nASSISTANT: The single, most likely answer is (" in t for t in texts)  # a prefilled assistant turn
    assert not any(t != t.lstrip(" ") for t in texts)

    mismatched = shutil.copytree(sentencepiece_folder, tmp_path / "mismatched")  # tokenizer.json of another model
    shutil.copy(tiny_salmonn / "vicuna" / "tokenizer.json", mismatched / "vicuna" / "tokenizer.json")
    with pytest.raises(ValueError, match="the fast tokenizer differs from the release's slow LlamaTokenizer"):
        load_backend("salmonn", str(mismatched), LoadOptions(device="cpu", dtype="fp32"))
    with pytest.raises(ValueError, match=r"differs .* on ' I hear'"):  # sentencepiece's dummy prefix, not the fast one's
        check_slow_tokenizer(backend.tokenizer, sentencepiece_folder / "vicuna", ["A", " I hear"])


def test_the_pad_id_only_pads_and_no_pad_row_is_added(salmonn_greedy, tiny_salmonn, tmp_path):
    backend = load_backend("salmonn", str(salmonn_greedy), LoadOptions(device="cpu", dtype="fp32"))
    assert backend.pad_id == 0 and backend.stop_ids == {2}  # Vicuna's pad id is <unk>: the release does not stop on it
    gen = backend._generations([[40, 0, 41, 2, 0, 0]])[0]
    assert gen.n_new_tokens == 3  # up to </s>, through the <unk>
    config = backend.decoding(GenerationSettings(max_new_tokens=4))
    assert config.pad_token_id == 0 and config.eos_token_id == [2]
    vocabulary = backend.describe()["vocabulary"]
    rows = backend.model.llama_model.get_input_embeddings().weight.shape[0]
    assert vocabulary["tokenizer_tokens"] == vocabulary["embedding_rows"] == rows
    assert "[PAD] added as id" in vocabulary["release"]

    from transformers import AutoTokenizer

    padded = shutil.copytree(tiny_salmonn, tmp_path / "padded")
    tokenizer = AutoTokenizer.from_pretrained(padded / "vicuna")
    tokenizer.add_special_tokens({"pad_token": "[PAD]"})  # the release's tokenizer, saved next to unresized weights
    tokenizer.save_pretrained(padded / "vicuna")
    with pytest.raises(ValueError, match=rf"{rows + 1} tokens but the LLM {rows} embedding rows"):
        load_backend("salmonn", str(padded), LoadOptions(device="cpu", dtype="fp32"))


# ---------------------------------------------------------------------------- checkpoints with pickled objects

MODULE = """
import pathlib
MARKER = pathlib.Path({marker!r})
if MARKER.parent.exists():
    with MARKER.open("a") as out:
        out.write("imported\\n")

def launch(what):
    with MARKER.open("a") as out:
        out.write("ran " + what + "\\n")

class Scaler:
    def __init__(self):
        self.scale = 2.0 ** 16
    def __setstate__(self, state):
        launch("setstate")
        self.__dict__.update(state)

class Hook:
    def __reduce__(self):
        return (launch, ("reduce",))
"""


def _write_module(directory: Path, marker: Path) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "salmonn_trainer_state.py").write_text(MODULE.format(marker=str(marker)))
    return "salmonn_trainer_state"


def test_pickled_training_objects_are_skipped_and_never_imported_or_run(tiny_salmonn, salmonn_greedy, tmp_path):
    modules, marker = tmp_path / "modules", tmp_path / "marker" / "ran.txt"
    name = _write_module(modules, marker)
    sys.path.insert(0, str(modules))
    try:
        trainer = importlib.import_module(name)
        root = shutil.copytree(tiny_salmonn, tmp_path / "pickled")
        state = torch.load(root / "salmonn.pth", weights_only=True)["model"]
        torch.save({"model": state, "config": argparse.Namespace(lr=3e-5, epochs=30), "scaler": trainer.Scaler(),
                    "hook": trainer.Hook(), "epoch": 3}, root / "salmonn.pth")
        beats = torch.load(root / "beats.pt", weights_only=True)
        torch.save({**beats, "cfg": argparse.Namespace(**beats["cfg"]), "trainer": trainer.Scaler()}, root / "beats.pt")
    finally:
        sys.path.remove(str(modules))
        sys.modules.pop(name, None)
    shutil.rmtree(modules)  # the class cannot be imported at load time
    marker.parent.mkdir()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(root / "salmonn.pth", weights_only=True)  # what torch alone does with such a file

    (root / "salmonn.json").write_text(json.dumps({"num_beams": 1}))
    pickled = load_backend("salmonn", str(root), LoadOptions(device="cpu", dtype="fp32"))
    plain = load_backend("salmonn", str(salmonn_greedy), LoadOptions(device="cpu", dtype="fp32"))
    request = _request()
    ours, reference = _run(pickled, request), _run(plain, request)
    assert (ours.text, ours.n_new_tokens) == (reference.text, reference.n_new_tokens)
    assert ours.option_logprobs == reference.option_logprobs
    objects = pickled.describe()["checkpoint_objects"]
    assert objects["salmonn.pth"]["foreign_objects"] == ["argparse.Namespace", f"{name}.Scaler", f"{name}.launch"]
    assert objects["salmonn.pth"]["unused_keys"] == ["config", "epoch", "hook", "scaler"]
    assert objects["beats.pt"]["foreign_objects"] == ["argparse.Namespace", f"{name}.Scaler"]
    assert objects["beats.pt"]["unused_keys"] == ["label_dict", "trainer"]
    assert plain.describe()["checkpoint_objects"]["salmonn.pth"]["foreign_objects"] == []
    assert not marker.exists() and name not in sys.modules

    _write_module(modules, marker)  # importable again, with an import-time side effect: still not imported
    sys.path.insert(0, str(modules))
    try:
        content, foreign = load_weights_file(root / "salmonn.pth")
    finally:
        sys.path.remove(str(modules))
    assert f"{name}.launch" in foreign and not marker.exists() and name not in sys.modules
    assert isinstance(content["hook"], Foreign) and content["hook"].args == ("reduce",)  # the call, not made
    assert content["scaler"].state == {"scale": 2.0 ** 16} and content["config"].state == {"lr": 3e-5, "epochs": 30}


def test_a_pickle_naming_a_blocked_module_is_refused_unrun(tmp_path):
    import os

    marker = tmp_path / "ran.txt"

    class Shell:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": {"w": torch.zeros(1)}, "payload": Shell()}, tmp_path / "bad.pth")
    with pytest.raises(UnsafeCheckpointError, match="cannot be read without running code"):
        load_weights_file(tmp_path / "bad.pth")
    assert not marker.exists()


# ---------------------------------------------------------------------------- decoding

def test_the_release_decoding_values_and_the_budget(salmonn_greedy, tiny_salmonn):
    backend = load_backend("salmonn", str(tiny_salmonn), LoadOptions(device="cpu", dtype="fp32"))
    released = {"max_new_tokens": 200, "num_beams": 4, "do_sample": False, "min_length": 1, "temperature": 1.0,
                "top_p": 0.9, "repetition_penalty": 1.0, "length_penalty": 1.0}  # configs/decode_config.yaml
    assert backend.official_decode_config == released
    described = backend.describe()
    assert described["official_decoding"] == released and described["official_max_new_tokens"] == 200
    for key in released:
        assert key in backend.official_source, key
    config = backend.decoding(GenerationSettings(max_new_tokens=7))
    assert config.max_new_tokens == 7  # the template's budget, not the release's 200
    assert (config.num_beams, config.do_sample, config.min_new_tokens) == (4, False, 1)
    for key in ("repetition_penalty", "length_penalty"):  # unset: transformers' default, the release's 1.0
        assert getattr(config, key) in (None, 1.0), key
    assert config.top_p is None and config.temperature is None  # the release's 0.9 / 1.0 act only when sampling
    assert backend.decoding(GenerationSettings(max_new_tokens=7, num_beams=2)).num_beams == 2
    sample = backend.decoding(GenerationSettings(max_new_tokens=7, do_sample=True, temperature=0.7, top_p=0.8))
    assert (sample.do_sample, sample.num_beams, sample.temperature, sample.top_p) == (True, 1, 0.7, 0.8)
    greedy_backend = load_backend("salmonn", str(salmonn_greedy), LoadOptions(device="cpu", dtype="fp32"))
    assert greedy_backend.decoding(GenerationSettings(max_new_tokens=7)).num_beams == 1

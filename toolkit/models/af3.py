"""``af3`` and ``af3-think``: AudioFlamingo3ForConditionalGeneration (nvidia/audio-flamingo-3-hf).

The processor windows long audio itself (30 s windows, up to 10 min); the runner cuts
clips beyond 600 s and flags them. Text is left-padded through ``text_kwargs`` only: a
top-level ``padding=True`` would pad the mel windows and break the encoder.

``af3-think`` loads the same checkpoint plus its "think" extras from the ``think/``
subfolder: ``non_lora_trainables.bin`` (non-LoRA weights, e.g. the projector, loaded
first) and the PEFT LoRA adapter. Checkpoint key names are the flat ones
(``multi_modal_projector.*``, ``language_model.model.*``); transformers 5 nests the modules
(``model.multi_modal_projector.*``). ``from_pretrained`` converts the names, but
``load_state_dict`` does not, and with ``strict=False`` it would silently drop every key; so
keys are mapped (:func:`to_model_keys`; keys already the model's stay as they are) and any key
that still matches nothing is an error, never silently skipped. peft's own loader converts
the adapter's keys (an adapter saved with the flat names gives the same logits).

Processor call: one audio per text; never a top-level ``padding=True``. The released
generation config samples by default; the toolkit always passes explicit settings.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from toolkit.audio import TARGET_SR
from toolkit.errors import Pathlike
from toolkit.models import tiny
from toolkit.models.base import LoadOptions, Request
from toolkit.models.hf_chat import HFChatBackend
from toolkit.models.registry import register_backend

_FLAT_TO_NESTED = (
    ("language_model.lm_head.", "lm_head."),
    ("language_model.model.", "model.language_model."),
    ("language_model.", "model.language_model."),
    ("audio_tower.", "model.audio_tower."),
    ("multi_modal_projector.", "model.multi_modal_projector."),
)
#: Whisper's encoder-config names -> AudioFlamingo3EncoderConfig's.
_ENCODER_NAMES = {"encoder_layers": "num_hidden_layers", "encoder_attention_heads": "num_attention_heads",
                  "encoder_ffn_dim": "intermediate_size", "d_model": "hidden_size"}
#: Modules the tiny AF-Think LoRA adapts (the language model's, as the release's adapter).
THINK_TARGET_MODULES = r".*language_model.*\.(q_proj|v_proj)"
#: The official trigger of AF-Think's reasoning (NVIDIA/audio-flamingo README, branch audio_flamingo_3: "Add the
#: suffix ... to the prompt for activating AF3's thinking capabilities"), appended after one space.
THINK_SUFFIX = "Please think and reason about the input audio before you respond."
#: The reasoning budget of AF3 models: the original study's AF3 reasoning outputs (5,997) run to 457 words
#: (~720 tokens; 99 % under 126 words); the official conversion allows 2048 new tokens, which is taken.
REASONING_MAX_NEW_TOKENS = 2048


def to_model_keys(state: Dict[str, Any], own_keys: set) -> Dict[str, Any]:
    """Map checkpoint parameter names to the model's (keys already in ``own_keys`` are kept).

    Args:
        state: a checkpoint state dict (flat names).
        own_keys: ``set(model.state_dict())``.

    Returns:
        The state dict under the model's names.
    """
    out = {}
    for key, value in state.items():
        if key not in own_keys:
            for old, new in _FLAT_TO_NESTED:
                if key.startswith(old):
                    key = new + key[len(old):]
                    break
        out[key] = value
    return out


@register_backend
class AF3Backend(HFChatBackend):
    """Audio Flamingo 3 (base)."""

    name = "af3"
    model_class = "AudioFlamingo3ForConditionalGeneration"
    max_audio_seconds: Optional[float] = 600.0
    end_of_turn = "<|im_end|>"
    official_source = ("nvidia/audio-flamingo-3-hf model card and transformers' AudioFlamingo3 docs: the "
                       "checkpoint's generation_config with max_new_tokens chosen per call; greedy here unless "
                       "asked (--generation-defaults checkpoint keeps the release's)")

    @classmethod
    def default_max_new_tokens(cls, template: Any) -> int:
        """Reasoning templates get :data:`REASONING_MAX_NEW_TOKENS` at least (AF3's chains run long)."""
        budget = int(template.max_new_tokens)
        return max(budget, REASONING_MAX_NEW_TOKENS) if template.mode == "reasoning" else budget

    def encode(self, texts: List[str], audios: Optional[List[Any]]) -> Any:
        """Left-pad the text only; audio windows are the processor's own."""
        kwargs: Dict[str, Any] = {"text": texts, "text_kwargs": {"padding": True, "padding_side": "left"},
                                  "return_tensors": "pt"}
        if audios is not None:
            kwargs.update(audio=audios, audio_kwargs={"sampling_rate": TARGET_SR})
        return self.processor(**kwargs)

    @classmethod
    def build_tiny(cls, folder: Pathlike, **sizes: Any) -> Path:
        """Save a tiny ``AudioFlamingo3ForConditionalGeneration`` + processor like ``nvidia/audio-flamingo-3-hf``.

        Files: config.json, generation_config.json, model.safetensors, tokenizer files (with
        the release's tokenizer chat template), processor_config.json (``<sound>`` audio
        token, ``WhisperFeatureExtractor`` with 128 mel bins, 30 s windows) and
        chat_template.jinja (the release's processor template: ``<sound>`` before the text of
        the user turn).

        Args:
            folder: output folder (created; existing files are overwritten).
            **sizes: ``size`` (a :data:`~toolkit.models.tiny.SIZES` name) and overrides of
                ``hidden_size``, ``num_layers``, ``audio_d_model``, ``audio_layers``, ``seed``.

        Returns:
            ``Path(folder)``, with no ``think/`` (see :meth:`AF3ThinkBackend.build_tiny`).

        Raises:
            ValueError: an unknown size or option, or widths the attention heads do not divide.

        Example:
            >>> build_tiny("af3", tmp_path / "af3-seed1", seed=1)  # doctest: +SKIP
        """
        from transformers import (AudioFlamingo3Config, AudioFlamingo3EncoderConfig,
                                  AudioFlamingo3ForConditionalGeneration, AudioFlamingo3Processor, Qwen2Config)

        s = tiny.resolve_sizes(cls.name, sizes, tiny.AUDIO_LM_SIZES)
        tok = tiny.build_tokenizer("af3")
        tok.chat_template = tiny.AF3_TOKENIZER_CHAT_TEMPLATE
        encoder = tiny.audio_encoder_kwargs(s["audio_d_model"], s["audio_layers"])
        text = tiny.qwen2_text_kwargs(tok, s["hidden_size"], s["num_layers"], 32768, 1000000.0)
        config = AudioFlamingo3Config(
            audio_config=AudioFlamingo3EncoderConfig(**{_ENCODER_NAMES.get(k, k): v for k, v in encoder.items()}),
            text_config=Qwen2Config(**text, bos_token_id=None, eos_token_id=tok.eos_token_id),
            audio_token_id=tok.audio_token_id)
        model = tiny.random_model(AudioFlamingo3ForConditionalGeneration, config, s["seed"])
        processor = AudioFlamingo3Processor(feature_extractor=tiny.whisper_feature_extractor(), tokenizer=tok,
                                            chat_template=tiny.AF3_CHAT_TEMPLATE)
        return tiny.save_tiny(folder, "Audio Flamingo 3", model, processor, generation=tiny.generation_config(tok))


@register_backend
class AF3ThinkBackend(AF3Backend):
    """Audio Flamingo 3 with its ``think/`` adapter (AF-Think)."""

    name = "af3-think"

    def conversation(self, request: Request) -> List[Dict[str, Any]]:
        """The chat turns, with :data:`THINK_SUFFIX` appended to a reasoning prompt that lacks it
        (without it the think adapter runs untriggered)."""
        if request.mode == "reasoning" and THINK_SUFFIX not in request.user_text:
            request = dataclasses.replace(request, user_text=f"{request.user_text.rstrip()} {THINK_SUFFIX}")
        return super().conversation(request)

    def describe(self) -> Dict[str, Any]:
        """The base facts plus the think trigger it adds in reasoning mode."""
        return {**super().describe(), "think_suffix": THINK_SUFFIX,
                "think_suffix_applies_to": "reasoning prompts that lack it"}

    @classmethod
    def after_load(cls, model: Any, model_path: str, options: LoadOptions) -> Any:
        """Load ``think/non_lora_trainables.bin`` (strictly mapped); the LoRA follows (:meth:`adapter_folders`).

        Raises:
            FileNotFoundError: ``think/`` or its files are missing.
            ValueError: a non-LoRA key matches no parameter of the model.
        """
        import torch

        think = _think_folder(model_path)
        extra = torch.load(think / "non_lora_trainables.bin", map_location="cpu", weights_only=True)
        result = model.load_state_dict(to_model_keys(extra, set(model.state_dict())), strict=False)
        if result.unexpected_keys:
            raise ValueError(f"{think / 'non_lora_trainables.bin'}: keys match no parameter: "
                             f"{sorted(result.unexpected_keys)[:5]} ({len(result.unexpected_keys)} in all)")
        return model

    @classmethod
    def adapter_folders(cls, model_path: str, options: LoadOptions) -> List[str]:
        """The ``think/`` LoRA, then ``--adapter`` (refused at load: adapters do not stack)."""
        return [str(_think_folder(model_path))] + super().adapter_folders(model_path, options)

    @classmethod
    def build_tiny(cls, folder: Pathlike, **sizes: Any) -> Path:
        """Save a tiny ``af3`` folder (:meth:`AF3Backend.build_tiny`) plus an AF-Think style ``think/`` adapter.

        ``think/adapter_config.json`` + ``think/adapter_model.safetensors``: a peft LoRA (rank 4)
        on the language model's ``q_proj``/``v_proj`` only, with non-zero B so it changes the
        logits, drawn with seed ``seed + 1``. ``think/non_lora_trainables.bin``: a
        ``torch.save``'d state dict of the multi-modal projector (the base's, perturbed) under
        the checkpoint names (``multi_modal_projector.linear_1.weight``...), as
        ``model.safetensors`` names them. Assumption: the real release's keys could not be
        inspected offline; its published loading code applies the file with
        ``load_state_dict(extra, strict=False)``, which has an effect only if the keys are the
        model's own names, so those are what is written (llava-style ``sound_mm_projector.*``
        keys would be silently ignored there; :meth:`after_load` refuses them).

        Args:
            folder: output folder (created; existing files are overwritten).
            **sizes: as :meth:`AF3Backend.build_tiny`.

        Returns:
            ``Path(folder)``: the base folder, loadable as ``af3`` and as ``af3-think``.

        Raises:
            ValueError: as :meth:`AF3Backend.build_tiny`.

        Example:
            >>> folder = build_tiny("af3-think", tmp_path / "af3")  # doctest: +SKIP
            >>> sorted(p.name for p in (folder / "think").iterdir())  # doctest: +SKIP
            ['README.md', 'adapter_config.json', 'adapter_model.safetensors', 'non_lora_trainables.bin']
        """
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AudioFlamingo3ForConditionalGeneration

        path = super().build_tiny(folder, **sizes)
        base = AudioFlamingo3ForConditionalGeneration.from_pretrained(path).eval()
        torch.manual_seed(tiny.resolve_sizes(cls.name, sizes, tiny.AUDIO_LM_SIZES)["seed"] + 1)
        # in memory ``model.multi_modal_projector.*`` (transformers 5); in the file the checkpoint names
        projector = {name[len("model."):]: (param.detach() + 0.05 * torch.randn_like(param)).contiguous()
                     for name, param in base.named_parameters() if name.startswith("model.multi_modal_projector.")}
        if not projector:  # pragma: no cover - guards against a transformers layout change
            raise RuntimeError("no model.multi_modal_projector.* parameters in AudioFlamingo3ForConditionalGeneration")
        lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", target_modules=THINK_TARGET_MODULES,
                          task_type="CAUSAL_LM")
        adapter = get_peft_model(base, lora)
        tiny.nonzero_lora(adapter)
        think = tiny.save_tiny(path / "think", "AF-Think adapter", adapter)
        torch.save(projector, think / "non_lora_trainables.bin")
        return path


def _think_folder(model_path: str) -> Path:
    """The local ``think/`` folder of a checkpoint folder or hub id."""
    local = Path(model_path) / "think"
    if local.is_dir():
        return local
    from huggingface_hub import snapshot_download

    root = snapshot_download(model_path, allow_patterns=["think/*"],
                             local_files_only=os.environ.get("HF_HUB_OFFLINE") == "1")
    return Path(root) / "think"

"""``qwen2-audio``: Qwen2AudioForConditionalGeneration (Qwen/Qwen2-Audio-7B-Instruct).

Long audio: the encoder takes exactly 30 s (3000 mel frames, the feature extractor's
``chunk_length``); the runner cuts longer clips to that and flags the row
(``flags.audio_truncated_from_s``). System prompt: the chat template's default.
Processor call: ``audio=`` (``audios=`` is silently ignored) and ``padding_side="left"``
(the tokenizer pads on the right by default); greedy batched output equals one-at-a-time
output only with left padding and the attention masks passed through (tested).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from toolkit.errors import Pathlike
from toolkit.models import tiny
from toolkit.models.hf_chat import HFChatBackend
from toolkit.models.registry import register_backend


@register_backend
class Qwen2AudioBackend(HFChatBackend):
    """Qwen2-Audio-Instruct through its own processor."""

    name = "qwen2-audio"
    model_class = "Qwen2AudioForConditionalGeneration"
    max_audio_seconds: Optional[float] = 30.0
    end_of_turn = "<|im_end|>"
    official_generation = {"min_new_tokens": 1}
    official_source = ("QwenLM/Qwen2-Audio eval_audio/evaluate_*.py: generate(max_new_tokens=256, min_new_tokens=1, "
                       "do_sample=False)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_audio_seconds = float(self.processor.feature_extractor.chunk_length)

    @classmethod
    def build_tiny(cls, folder: Pathlike, **sizes: Any) -> Path:
        """Save a tiny ``Qwen2AudioForConditionalGeneration`` + ``Qwen2AudioProcessor`` to ``folder``.

        Same layout and classes as ``Qwen/Qwen2-Audio-7B-Instruct`` (config.json,
        generation_config.json, model.safetensors, tokenizer files with the processor's default
        chat template, preprocessor_config.json, processor_config.json). Text decoder sizes
        come from :func:`~toolkit.models.tiny.text_config_sizes`; the audio encoder has 128
        mel bins and 1500 source positions like the real one.

        Args:
            folder: output folder (created; existing files are overwritten).
            **sizes: ``size`` (a :data:`~toolkit.models.tiny.SIZES` name: ``tiny``, ``100m``)
                and overrides of ``hidden_size``, ``num_layers``, ``audio_d_model``,
                ``audio_layers``, ``seed``.

        Returns:
            ``Path(folder)``.

        Raises:
            ValueError: an unknown size or option, or a ``hidden_size`` or ``audio_d_model`` that
                is not a multiple of the head size.

        Example:
            >>> from toolkit.models.registry import build_tiny, load_backend
            >>> folder = build_tiny("qwen2-audio", tmp_path / "q", size="100m")  # doctest: +SKIP
            >>> load_backend("qwen2-audio", str(folder)).max_audio_seconds  # doctest: +SKIP
            30.0
        """
        from transformers import (Qwen2AudioConfig, Qwen2AudioEncoderConfig, Qwen2AudioForConditionalGeneration,
                                  Qwen2AudioProcessor, Qwen2Config)

        s = tiny.resolve_sizes(cls.name, sizes, tiny.AUDIO_LM_SIZES)
        tok = tiny.build_tokenizer("qwen2-audio")
        text = tiny.qwen2_text_kwargs(tok, s["hidden_size"], s["num_layers"], 8192, 10000.0)
        config = Qwen2AudioConfig(
            audio_config=Qwen2AudioEncoderConfig(**tiny.audio_encoder_kwargs(s["audio_d_model"], s["audio_layers"])),
            text_config=Qwen2Config(**text, rms_norm_eps=1e-5, bos_token_id=tok.pad_token_id,
                                    eos_token_id=tok.pad_token_id),
            audio_token_index=tok.audio_token_id)
        model = tiny.random_model(Qwen2AudioForConditionalGeneration, config, s["seed"])
        processor = Qwen2AudioProcessor(feature_extractor=tiny.whisper_feature_extractor(), tokenizer=tok)
        return tiny.save_tiny(folder, "Qwen2-Audio", model, processor, generation=tiny.generation_config(tok))

"""``whisper``: WhisperForConditionalGeneration (any size, e.g. ``openai/whisper-large-v3``), the ASR reference.

Whisper takes no text prompt. Its prompt is the decoder prefix
``<|startoftranscript|><|lang|><|task|><|notimestamps|>``, and the run's prompt template names
what of it is forced, in Whisper's token notation: ``asr-whisper`` (``<|transcribe|>``: the
language is detected per clip) or ``asr-whisper-en`` (``<|en|><|transcribe|>``: English
forced). The template name is what rows record as ``prompt`` and what a resumed run must
share, so a run can never mix forced and detected languages. Any other text (an audio-LLM
template such as ``direct-v1``) is refused: it would be silently ignored.

Loading, dtype/device, the adapter option and end-of-sequence handling are
:class:`~toolkit.models.hf_chat.HFChatBackend`'s; only the inputs (log-mel features of
30 s windows, no chat template) and the forced decoder prefix differ. The text is decoded as
Whisper writes it (usually with a leading space); WER normalisation ignores that. Clips
over 30 s (the feature extractor's ``chunk_length``) are cut by the runner and flagged
(``flags.audio_truncated_from_s``), as for ``qwen2-audio``; every clip is padded to 30 s, so
batched greedy output equals one-at-a-time output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from toolkit.audio import TARGET_SR
from toolkit.errors import InputError, Pathlike
from toolkit.models import tiny
from toolkit.models.base import Generation, GenerationSettings, Request
from toolkit.models.generation import decoding_exactly
from toolkit.models.hf_chat import HFChatBackend, Prepared
from toolkit.models.registry import register_backend

TASKS = ("transcribe", "translate")
#: Language codes of the tiny Whisper vocabulary (the first of the real ``<|en|>``, ``<|zh|>`` ... list).
TINY_LANGUAGES = ("en", "zh", "de", "es", "fr")
_TOKEN = re.compile(r"<\|([^|<>]+)\|>")


@dataclass(frozen=True)
class DecoderPrompt:
    """What a whisper template forces.

    Attributes:
        task: ``transcribe`` or ``translate``.
        language: language code (``en``) forced, or None to detect it per clip.
    """

    task: str
    language: Optional[str] = None


def parse_decoder_prompt(text: str) -> DecoderPrompt:
    """Read a whisper template's text, e.g. ``"<|en|><|transcribe|>"``.

    Args:
        text: one task token and at most one language token, nothing else.

    Returns:
        The task and the forced language.

    Raises:
        InputError: free text, no task, or several tasks or languages.

    Example:
        >>> parse_decoder_prompt("<|en|><|transcribe|>")
        DecoderPrompt(task='transcribe', language='en')
    """
    names = _TOKEN.findall(text)
    if _TOKEN.sub("", text).strip() or not names:
        raise InputError(f"whisper takes no text prompt, only its decoder tokens (got {text[:60]!r}); "
                         "use --prompt asr-whisper (language detected) or asr-whisper-en (English forced)")
    tasks = [n for n in names if n in TASKS]
    languages = [n for n in names if n not in TASKS]
    if len(tasks) != 1 or len(languages) > 1:
        raise InputError(f"a whisper prompt names one task ({' or '.join(TASKS)}) and at most one language, "
                         f"got {text!r}")
    return DecoderPrompt(task=tasks[0], language=languages[0] if languages else None)


@register_backend
class WhisperBackend(HFChatBackend):
    """Whisper through its own processor: batched log-mel features in, the transcript out."""

    name = "whisper"
    model_class = "WhisperForConditionalGeneration"
    max_audio_seconds: Optional[float] = 30.0
    # Whisper's suppress lists are part of its decoding (openai/whisper decoding.py suppresses the same tokens)
    kept_generation_fields = ("suppress_tokens", "begin_suppress_tokens")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_audio_seconds = float(self.processor.feature_extractor.chunk_length)
        config = self.model.generation_config
        self.multilingual = bool(getattr(config, "is_multilingual", False))
        self.languages = {code.strip("<|>") for code in (getattr(config, "lang_to_id", None) or {})}

    def decoder_prompt(self, request: Request) -> DecoderPrompt:
        """The task and forced language of a request, checked against the checkpoint.

        Raises:
            InputError: see :func:`parse_decoder_prompt`; a language the checkpoint has no token
                for; a language or translation asked of an English-only checkpoint.
        """
        prompt = parse_decoder_prompt(request.user_text)
        if not self.multilingual and (prompt.language is not None or prompt.task != "transcribe"):
            raise InputError(f"{self.model_path} is an English-only Whisper: it takes neither a language "
                             "nor a task; use --prompt asr-whisper")
        if prompt.language is not None and prompt.language not in self.languages:
            raise InputError(f"{self.model_path} has no language token <|{prompt.language}|>")
        return prompt

    def chat_text(self, request: Request) -> str:
        """The decoder prefix Whisper starts from (``<|?|>``: the language it detects per clip)."""
        prompt = self.decoder_prompt(request)
        forced = f"<|{prompt.language or '?'}|><|{prompt.task}|>" if self.multilingual else ""
        return f"<|startoftranscript|>{forced}<|notimestamps|>"

    def prepare(self, requests: Sequence[Request]) -> Prepared:
        """Log-mel features of the batch (each clip padded to 30 s) on the CPU.

        Raises:
            InputError: a prompt that is not a whisper prompt (see :meth:`decoder_prompt`).
            ValueError: an item without audio, or requests forcing different prompts.
        """
        if any(r.audio is None for r in requests):
            raise ValueError("whisper needs audio; text-only items cannot be transcribed")
        prompts = {self.decoder_prompt(r) for r in requests}
        if len(prompts) != 1:
            raise ValueError(f"a batch mixes whisper prompts: {sorted(map(str, prompts))}")
        inputs = self.processor.feature_extractor([r.audio for r in requests], sampling_rate=TARGET_SR,
                                                  return_tensors="pt")
        # prompt_length 0: Whisper's generate returns the new tokens only, its decoder prefix stripped
        return Prepared(inputs=inputs, requests=list(requests), prompt_length=0)

    def _generate_kwargs(self, prompt: DecoderPrompt) -> Dict[str, Any]:
        if not self.multilingual:
            return {}
        return {"task": prompt.task, **({"language": prompt.language} if prompt.language else {})}

    def generate(self, prepared: Prepared, settings: GenerationSettings, score_options: bool = False) -> List[Generation]:
        """Transcribe a prepared batch; see :meth:`Backend.generate`.

        Raises:
            ValueError: ``score_options`` (a transcript has no options to score).
        """
        import torch

        if score_options:
            raise ValueError("whisper cannot score options (--score-options): it transcribes")
        prompt = self.decoder_prompt(prepared.requests[0])
        inputs = self._to_device(prepared.inputs)
        if settings.do_sample:
            torch.manual_seed(settings.seed)
        config = self.decoding(settings)
        with torch.inference_mode(), decoding_exactly(self.model, config):
            new = self.model.generate(**inputs, generation_config=config, **self._generate_kwargs(prompt))
        return self._generations(new.tolist())

    def describe(self) -> Dict[str, Any]:
        """The chat backends' facts, plus that no text prompt is read and whether languages can be forced."""
        return {**super().describe(), "text_prompt": "none (the template names the forced task and language)",
                "multilingual": self.multilingual, "max_audio_seconds": self.max_audio_seconds}

    @classmethod
    def build_tiny(cls, folder: Pathlike, **sizes: Any) -> Path:
        """Save a tiny multilingual Whisper + ``WhisperProcessor`` like ``openai/whisper-large-v3``.

        Files: config.json, generation_config.json (greedy; ``lang_to_id``, ``task_to_id``,
        ``no_timestamps_token_id`` and ``is_multilingual`` as in the real checkpoints, so
        ``generate(language="en", task="transcribe")`` forces them), model.safetensors, the
        tokenizer files and processor_config.json (128 mel bins, 30 s windows, as large-v3).
        Weights are drawn with ``init_std=0.3``: at Whisper's default 0.02 a tiny random
        decoder emits the same tokens whatever the clip, which would make batched-equals-single
        checks vacuous. The tokenizer is ``WhisperTokenizer`` over the byte-level BPE of
        :func:`~toolkit.models.tiny.train_bpe` (any text round-trips), followed by Whisper's
        special tokens in the real order: ``<|endoftext|>`` (eos, pad),
        ``<|startoftranscript|>``, one ``<|xx|>`` per :data:`TINY_LANGUAGES` code,
        ``<|translate|>``, ``<|transcribe|>``, ``<|startoflm|>``, ``<|startofprev|>``,
        ``<|nospeech|>``, ``<|notimestamps|>``.

        Args:
            folder: output folder (created; existing files are overwritten).
            **sizes: ``size`` (a :data:`~toolkit.models.tiny.SIZES` name) and overrides of
                ``audio_d_model`` (encoder and decoder width), ``audio_layers`` (encoder and
                decoder layers) and ``seed``.

        Returns:
            ``Path(folder)`` (also the ``whisper/`` part of a tiny SALMONN).

        Raises:
            ValueError: an unknown size or option; an ``audio_d_model`` not a multiple of 16.

        Example:
            >>> WhisperProcessor.from_pretrained(build_tiny("whisper", tmp_path / "w"))  # doctest: +SKIP
        """
        from tokenizers import AddedToken
        from transformers import (GenerationConfig, WhisperConfig, WhisperForConditionalGeneration,
                                  WhisperProcessor, WhisperTokenizer)

        s = tiny.resolve_sizes(cls.name, sizes, ("audio_d_model", "audio_layers", "seed"))
        vocab, merges = tiny.train_bpe()
        languages = [f"<|{code}|>" for code in TINY_LANGUAGES]
        specials = ["<|endoftext|>", "<|startoftranscript|>", *languages, "<|translate|>", "<|transcribe|>",
                    "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
        ids = {t: len(vocab) + i for i, t in enumerate(specials)}
        eot, start = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
        tok = WhisperTokenizer(
            vocab=vocab, merges=merges, unk_token=specials[0], bos_token=specials[0], eos_token=specials[0],
            pad_token=specials[0], model_max_length=448,
            added_tokens_decoder={i: AddedToken(t, special=True, normalized=False) for t, i in ids.items()})
        if {t: tok.convert_tokens_to_ids(t) for t in specials} != ids:  # pragma: no cover - transformers change
            raise RuntimeError("Whisper special token ids differ from the intended ones")
        encoder = tiny.audio_encoder_kwargs(s["audio_d_model"], s["audio_layers"])
        decoder = {"decoder_layers": encoder["encoder_layers"], "decoder_ffn_dim": encoder["encoder_ffn_dim"],
                   "decoder_attention_heads": encoder["encoder_attention_heads"]}
        config = WhisperConfig(vocab_size=len(tok), **encoder, **decoder, max_target_positions=448,
                               decoder_start_token_id=start, pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
                               suppress_tokens=None, begin_suppress_tokens=None, init_std=0.3)
        model = tiny.random_model(WhisperForConditionalGeneration, config, s["seed"])
        generation = GenerationConfig(
            decoder_start_token_id=start, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, do_sample=False,
            max_length=448, is_multilingual=True, lang_to_id={t: ids[t] for t in languages},
            task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
            no_timestamps_token_id=ids["<|notimestamps|>"], begin_suppress_tokens=[eot])
        processor = WhisperProcessor(feature_extractor=tiny.whisper_feature_extractor(), tokenizer=tok)
        return tiny.save_tiny(folder, "Whisper", model, processor, generation=generation)

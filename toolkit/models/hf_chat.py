"""What every transformers chat audio-LLM backend shares: loading, chat prompts, left-padded
batched generation, decoding, option-letter scoring.

A family module subclasses :class:`HFChatBackend` and sets the model class, and where it
differs, the processor loading (:meth:`HFChatBackend.load_processor`), the processor call
(:meth:`HFChatBackend.encode`) or what happens after loading (:meth:`HFChatBackend.after_load`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, Iterable, List, Optional, Sequence

from toolkit.audio import TARGET_SR
from toolkit.manifest import letter
from toolkit.models.adapters import AdapterCheck, load_adapter
from toolkit.models.base import Backend, Generation, GenerationSettings, LoadOptions, Request
from toolkit.models.generation import decoding_exactly

log = logging.getLogger(__name__)

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> Any:
    """``auto`` -> bfloat16 on GPU, float32 on CPU; ``bf16``/``fp16``/``fp32`` -> the torch dtype.

    Raises:
        ValueError: unknown name.
    """
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: auto, {', '.join(DTYPES)}")
    return getattr(torch, DTYPES[dtype])


def dtype_names(params: Iterable[Any]) -> str:
    """The dtypes of ``params`` as sidecars show them: ``float16``, or ``float16+float32`` when mixed."""
    return "+".join(sorted({str(param.dtype).removeprefix("torch.") for param in params}))


def pretrained_kwargs(model_path: str, options: LoadOptions) -> Dict[str, Any]:
    """Keyword arguments shared by every ``from_pretrained`` call of a backend.

    A local folder is read with ``local_files_only=True`` (no download is ever attempted);
    a hub id follows ``HF_HUB_OFFLINE`` as transformers does.
    """
    kwargs: Dict[str, Any] = {"trust_remote_code": options.trust_remote_code}
    if Path(model_path).is_dir() or os.environ.get("HF_HUB_OFFLINE") == "1":
        kwargs["local_files_only"] = True
    return kwargs


@dataclass
class Prepared:
    """A batch of processor outputs on the CPU, ready to move to the model's device."""

    inputs: Any
    requests: List[Request]
    prompt_length: int


class HFChatBackend(Backend):
    """A chat model whose processor takes ``text=`` prompts and ``audio=`` 16 kHz clips.

    Class attributes:
        model_class: name of the ``transformers`` model class.
        system_prompt: system message put first in every conversation (None: the chat
            template's default).
        audio_tokens_per_second: audio placeholder tokens per second of audio (for sorting).
    """

    model_class: ClassVar[str] = ""
    system_prompt: ClassVar[Optional[str]] = None
    #: the chat template's end-of-turn token, a stop token whatever generation_config.json lists
    end_of_turn: ClassVar[Optional[str]] = None
    audio_tokens_per_second: ClassVar[float] = 25.0  # Whisper-style encoders: 100 mel frames/s, 4x down

    def __init__(self, model: Any, processor: Any, model_path: str, device: str, dtype: Any) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.model_path = model_path
        self.device = device
        self.dtype = dtype
        eos = model.generation_config.eos_token_id
        self.stop_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        pad = model.generation_config.pad_token_id
        self.pad_id = pad if pad is not None else self.tokenizer.pad_token_id
        if self.pad_id is not None:
            self.stop_ids.add(self.pad_id)
        if self.end_of_turn is not None:
            end = self.tokenizer.convert_tokens_to_ids(self.end_of_turn)
            if end is None or end == self.tokenizer.unk_token_id:
                raise ValueError(f"{model_path}: the tokenizer has no {self.end_of_turn} token (the chat template's "
                                 f"end of turn); is this a {self.name} checkpoint?")
            self.stop_ids.add(end)
        self.adapter_checks: List[AdapterCheck] = []

    # ---- loading ------------------------------------------------------------------------
    @classmethod
    def load(cls, model_path: Optional[str], options: LoadOptions) -> "HFChatBackend":
        """Load processor and model (see :class:`~toolkit.models.base.LoadOptions`), eval mode.

        Raises:
            ValueError: no ``model_path``.
        """
        import transformers

        if not model_path:
            raise ValueError(f"model {cls.name!r} needs --model-path (a local checkpoint folder or a hub id)")
        device = resolve_device(options.device)
        dtype = resolve_dtype(options.dtype, device)
        common = pretrained_kwargs(model_path, options)
        processor = cls.load_processor(model_path, common)
        extra = {"attn_implementation": options.attn_implementation} if options.attn_implementation else {}
        model = getattr(transformers, cls.model_class).from_pretrained(model_path, dtype=dtype, **common, **extra)
        model = cls.after_load(model, model_path, options)
        checks = []
        for folder in cls.adapter_folders(model_path, options):
            model, check = load_adapter(model, folder)
            checks.append(check)
        model.to(device).eval()
        log.info("loaded %s from %s on %s (%s)", cls.model_class, model_path, device, dtype)
        backend = cls(model, processor, model_path, device, dtype)
        backend.adapter_checks = checks
        return backend

    @classmethod
    def adapter_folders(cls, model_path: str, options: LoadOptions) -> List[str]:
        """The PEFT adapters to load on the base model, in order (default: ``--adapter``, if given)."""
        return [options.adapter] if options.adapter else []

    @classmethod
    def load_processor(cls, model_path: str, common: Dict[str, Any]) -> Any:
        """The processor (default: ``AutoProcessor.from_pretrained``)."""
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(model_path, **common)

    @classmethod
    def after_load(cls, model: Any, model_path: str, options: LoadOptions) -> Any:
        """Hook for family-specific extras (AF3's think adapter); default: the model as is."""
        return model

    # ---- prompts ------------------------------------------------------------------------
    def conversation(self, request: Request) -> List[Dict[str, Any]]:
        """System message (if any), the user turn (the audio, then the prompt text, or the other
        way round with ``audio_after_text``) and the request's further turns."""
        content: List[Dict[str, Any]] = [{"type": "text", "text": request.user_text}]
        if request.audio is not None:
            audio = {"type": "audio", "audio": "clip.wav"}
            content = content + [audio] if request.audio_after_text else [audio] + content
        turns: List[Dict[str, Any]] = []
        if self.system_prompt is not None:
            turns.append({"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        turns.append({"role": "user", "content": content})
        turns += [{"role": role, "content": [{"type": "text", "text": text}]} for role, text in request.turns]
        return turns

    def chat_text(self, request: Request) -> str:
        """The templated prompt, ending with the assistant header and any assistant prefix."""
        text = self.processor.apply_chat_template(self.conversation(request), add_generation_prompt=True,
                                                  tokenize=False)
        return text + (request.assistant_prefix or "")

    def prompt_length_hint(self, user_text: str, audio_seconds: float) -> float:
        """Text tokens of the prompt plus the audio tokens its (possibly cut) clip expands to."""
        if self.max_audio_seconds is not None:
            audio_seconds = min(audio_seconds, self.max_audio_seconds)
        text_tokens = len(self.tokenizer(user_text, add_special_tokens=False)["input_ids"])
        return text_tokens + self.audio_tokens_per_second * audio_seconds

    def encode(self, texts: List[str], audios: Optional[List[Any]]) -> Any:
        """The processor call: left-padded text, 16 kHz audio, PyTorch tensors."""
        kwargs: Dict[str, Any] = {"text": texts, "padding": True, "padding_side": "left", "return_tensors": "pt"}
        if audios is not None:
            kwargs.update(audio=audios, sampling_rate=TARGET_SR)
        return self.processor(**kwargs)

    def prepare(self, requests: Sequence[Request]) -> Prepared:
        """Chat-template and encode a batch on the CPU.

        Raises:
            ValueError: a batch mixing items with and without audio.
        """
        with_audio = [r.audio is not None for r in requests]
        if any(with_audio) and not all(with_audio):
            raise ValueError("a batch mixes items with and without audio")
        audios = [r.audio for r in requests] if all(with_audio) else None
        inputs = self.encode([self.chat_text(r) for r in requests], audios)
        return Prepared(inputs=inputs, requests=list(requests), prompt_length=int(inputs["input_ids"].shape[1]))

    # ---- generation ---------------------------------------------------------------------
    def _to_device(self, inputs: Any) -> Dict[str, Any]:
        import torch

        out = {}
        for key, value in inputs.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device, dtype=self.dtype if value.is_floating_point() else None)
            out[key] = value
        return out

    def _n_tokens(self, ids: List[int]) -> int:
        for index, token in enumerate(ids):
            if token in self.stop_ids:
                return index
        return len(ids)

    def _generations(self, new: List[List[int]]) -> List[Generation]:
        """Decode generated token ids (prompt removed), each up to its first stop token."""
        gens = []
        for ids in new:
            n = self._n_tokens(ids)
            gens.append(Generation(text=self.tokenizer.decode(ids[:n], skip_special_tokens=True), n_new_tokens=n))
        return gens

    #: decoding fields kept from the checkpoint under ``defaults = clean`` (Whisper: its suppress lists)
    kept_generation_fields: ClassVar[tuple] = ()

    def decoding(self, settings: GenerationSettings) -> Any:
        """The ``GenerationConfig`` of ``settings`` (:func:`toolkit.models.generation.generation_config`)
        with the backend's pad id."""
        from toolkit.models.generation import generation_config

        config = generation_config(self.model.generation_config, settings, self.official_generation,
                                   self.kept_generation_fields)
        config.pad_token_id = self.pad_id
        eos = config.eos_token_id if isinstance(config.eos_token_id, list) else \
            [config.eos_token_id] if config.eos_token_id is not None else []
        config.eos_token_id = eos + sorted(set(self.stop_ids) - set(eos) - {self.pad_id})
        return config

    def effective_generation(self, settings: GenerationSettings) -> Dict[str, Any]:
        """The fields of :meth:`decoding` that differ from transformers' defaults."""
        from toolkit.models.generation import effective

        return effective(self.decoding(settings))

    def _option_logprobs(self, first_step_logits: Any, request: Request) -> Dict[str, float]:
        import torch

        logprobs = torch.log_softmax(first_step_logits.float(), dim=-1)
        out = {}
        for i in range(len(request.item.choices or ())):
            token = self.tokenizer.encode(letter(i), add_special_tokens=False)[0]
            out[letter(i)] = float(logprobs[token])
        return out

    def generate(self, prepared: Prepared, settings: GenerationSettings, score_options: bool = False) -> List[Generation]:
        """Generate for a prepared batch; see :meth:`Backend.generate`.

        Option log-probabilities are the log-softmax of the raw logits at the first generated
        position, read at each option letter's token (``A``, ``B`` ...): meaningful for
        prompts that ask for the letter first (``direct-v1``).
        """
        import torch

        inputs = self._to_device(prepared.inputs)
        if settings.do_sample:
            torch.manual_seed(settings.seed)
        with torch.inference_mode():
            config = self.decoding(settings)
            config.update(return_dict_in_generate=True, output_logits=score_options)
            with decoding_exactly(self.model, config):
                out = self.model.generate(**inputs, generation_config=config)
        gens = self._generations(out.sequences[:, prepared.prompt_length:].tolist())
        if score_options:
            for row, gen in enumerate(gens):
                gen.option_logprobs = self._option_logprobs(out.logits[0][row], prepared.requests[row])
        return gens

    def module_dtypes(self) -> Dict[str, str]:
        """The dtype(s) of each top-level part (transformers 5's ``model`` wrapper opened; adapters unwrapped)."""
        model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        parts: Dict[str, str] = {}
        for name, child in model.named_children():
            grandchildren = list(child.named_children()) if name == "model" else []
            for part, module in grandchildren or [(name, child)]:
                names = dtype_names(module.parameters())
                if names:
                    parts[part] = names
        return parts

    def token_counts(self, request: Request) -> Dict[str, int]:
        """Prompt tokens of ``request`` as prepared: all, audio placeholders, text; and mel frames."""
        inputs = self.prepare([request]).inputs
        counts: Dict[str, int] = {}
        if "input_ids" in inputs:
            ids = inputs["input_ids"][0].tolist()
            counts["prompt"] = len(ids)
            audio_token = getattr(self.processor, "audio_token", None)
            if audio_token is not None:
                counts["audio"] = ids.count(self.tokenizer.convert_tokens_to_ids(audio_token))
                counts["text"] = len(ids) - counts["audio"]
        if "input_features" in inputs:
            counts["mel_frames"] = int(inputs["input_features"].shape[-1])
        return counts

    def describe(self) -> Dict[str, Any]:
        """Model class, path, resolved commit (when the folder is a hub snapshot), dtype, device."""
        return {"backend": self.name, "model_class": self.model_class, "model_path": self.model_path,
                "revision": getattr(self.model.config, "_commit_hash", None), "dtype": str(self.dtype),
                "device": self.device, "system_prompt": self.system_prompt, "stop_ids": sorted(self.stop_ids),
                "adapters": [check.to_dict() for check in self.adapter_checks]}

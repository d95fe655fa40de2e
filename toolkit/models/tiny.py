"""Tiny, randomly initialised checkpoints of the real model classes, saved like hub folders.

Tests, the demo and benchmarks cannot reach the hub, so they build small instances of the
*real* transformers classes (never fakes), with their real processors, save them with
``save_pretrained`` into a folder laid out like the published checkpoint, and load them back
with ``from_pretrained(folder)`` - the path a real checkpoint takes through the toolkit.

Builders (all deterministic for a given ``seed``: same files, same weights):

- :func:`build_tokenizer` - byte-level BPE wrapped in ``Qwen2Tokenizer`` (any text round-trips).
- :func:`build_qwen2_audio` - ``Qwen2AudioForConditionalGeneration`` + ``Qwen2AudioProcessor``.
- :func:`build_qwen25_omni` - a full ``Qwen2_5OmniForConditionalGeneration`` folder (thinker,
  talker, token2wav, ``spk_dict.pt``) whose thinker loads with
  ``Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(folder)``.
- :func:`build_af3` / :func:`build_af3_think_adapter` - ``AudioFlamingo3ForConditionalGeneration``
  + ``AudioFlamingo3Processor``, and the AF-Think ``think/`` LoRA adapter.
- :func:`build_text_lm` - a text-only ``Qwen2ForCausalLM`` with a ChatML chat template, like
  ``Qwen/Qwen2.5-0.5B-Instruct`` (the outside rewriter of ``rewrite-*`` interventions).
- :func:`build_whisper` - ``WhisperForConditionalGeneration`` + ``WhisperProcessor`` (128 mel bins).
- :func:`build_salmonn` - SALMONN's four official parts: a Whisper folder, ``beats.pt``, a
  Vicuna-style Llama folder and ``salmonn.pth``.

Loading recipes (the same for the tiny folders and the real checkpoints)
------------------------------------------------------------------------
Qwen2-Audio (``Qwen/Qwen2-Audio-7B-Instruct``)::

    processor = Qwen2AudioProcessor.from_pretrained(folder)     # or AutoProcessor
    model = Qwen2AudioForConditionalGeneration.from_pretrained(folder)
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=prompts, audio=clips, sampling_rate=16000, padding=True,
                       padding_side="left", return_tensors="pt")
    out = model.generate(**inputs, do_sample=False, max_new_tokens=..., pad_token_id=...)

  ``audio=`` (not ``audios=``, which is silently ignored); clips longer than 30 s must be cut
  (the encoder takes exactly 3000 mel frames). The tokenizer's default padding side is right,
  so ``padding_side="left"`` must be passed for batched generation.

Qwen2.5-Omni thinker (``Qwen/Qwen2.5-Omni-7B``)::

    model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(folder)
    processor = Qwen2AudioProcessor(
        feature_extractor=WhisperFeatureExtractor.from_pretrained(folder),
        tokenizer=AutoTokenizer.from_pretrained(folder),
        chat_template=json.load(open(folder / "chat_template.json"))["chat_template"],
    )
    inputs = processor(text=prompts, audio=clips, sampling_rate=16000, padding=True,
                       padding_side="left", return_tensors="pt")
    out = model.generate(**inputs, do_sample=False, max_new_tokens=...)

  ``Qwen2_5OmniProcessor`` (and so ``AutoProcessor``) cannot be built without torchvision.
  The ``Qwen2AudioProcessor`` above is built from three files every Omni folder has:
  ``tokenizer_config.json``/``tokenizer.json`` (``AutoTokenizer.from_pretrained(folder)``;
  the real folder also has ``vocab.json``/``merges.txt``), ``preprocessor_config.json``
  (``WhisperFeatureExtractor.from_pretrained(folder)``: 128 mel bins, ``chunk_length=300``,
  i.e. audio is padded to 300 s, not 30 s, and the image-processor keys in that file are
  ignored) and ``chat_template.json`` (``json.load(...)["chat_template"]``; the tokenizer's
  own ``chat_template`` is a fallback only). With these, ``Qwen2AudioProcessor`` produces the
  same ``input_ids``/``attention_mask``/``input_features``/``feature_attention_mask`` as
  ``Qwen2_5OmniProcessor`` for audio+text (checked in ``tests/test_tiny_models.py`` against
  the Omni processor's own ``__call__``). Do not use ``Qwen2_5OmniForConditionalGeneration``
  for text: it needs ``spk_dict.pt`` and, with the talker disabled, text-only ``generate``
  fails; the thinker class reads the ``thinker.``-prefixed weights of the full folder.

Audio Flamingo 3 (``nvidia/audio-flamingo-3-hf``)::

    processor = AudioFlamingo3Processor.from_pretrained(folder)  # or AutoProcessor
    model = AudioFlamingo3ForConditionalGeneration.from_pretrained(folder)
    inputs = processor(text=prompts, audio=clips, text_kwargs={"padding": True,
                       "padding_side": "left"})
    out = model.generate(**inputs, do_sample=False, max_new_tokens=...)

  Never a top-level ``padding=True`` (it pads the mel windows and the encoder fails); one
  audio per text; the processor windows long audio itself (30 s windows, 10 min cap). The
  real generation config samples by default: always pass explicit generation settings.
  Think mode::

    extra = torch.load(folder / "think" / "non_lora_trainables.bin", map_location="cpu")
    extra = {rename(k): v for k, v in extra.items()}       # see below
    result = model.load_state_dict(extra, strict=False)
    assert not result.unexpected_keys
    model = PeftModel.from_pretrained(model, folder / "think")

  ``rename``: transformers 5 nests the modules (``model.multi_modal_projector.*``,
  ``model.language_model.*``, ``model.audio_tower.*``, ``lm_head.*``) while checkpoints keep
  the flat names (``multi_modal_projector.*``, ``language_model.model.*``,
  ``language_model.lm_head.*``); ``from_pretrained`` converts them, ``load_state_dict`` does
  not, and ``strict=False`` then silently drops every key. Keys already in
  ``model.state_dict()`` are kept as they are. peft's own loader converts the adapter keys
  (an adapter saved with the flat layout gives the same logits).

Generation in all three: greedy batched output equals unbatched output only with left
padding and the attention masks passed through (``tests/test_tiny_models.py`` checks it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from toolkit.errors import Pathlike

logger = logging.getLogger(__name__)

__all__ = [
    "TOKENIZER_KINDS",
    "OMNI_CHAT_TEMPLATE",
    "AF3_CHAT_TEMPLATE",
    "build_tokenizer",
    "build_qwen2_audio",
    "build_qwen25_omni",
    "build_af3",
    "build_af3_think_adapter",
    "build_text_lm",
    "build_whisper",
    "build_salmonn",
    "text_config_sizes",
]

#: Special tokens per tokenizer kind, in id order (appended after the BPE vocabulary, as in
#: the real Qwen vocabularies). ``pad``/``eos`` name the pad and end-of-turn tokens; ``named``
#: become ``tok.<name>`` / ``tok.<name>_id`` attributes through ``extra_special_tokens``.
TOKENIZER_KINDS: Dict[str, Dict[str, Any]] = {
    "qwen2-audio": {
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"],
        "pad": "<|endoftext|>",
        "eos": "<|im_end|>",
        "named": {"audio_token": "<|AUDIO|>", "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>"},
    },
    "qwen2.5-omni": {
        "specials": [
            "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
            "<|vision_bos|>", "<|vision_eos|>", "<|vision_pad|>", "<|IMAGE|>", "<|VIDEO|>",
        ],
        "pad": "<|endoftext|>",
        "eos": "<|im_end|>",
        "named": {
            "audio_token": "<|AUDIO|>", "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>",
            "image_token": "<|IMAGE|>", "video_token": "<|VIDEO|>",
            "vision_bos_token": "<|vision_bos|>", "vision_eos_token": "<|vision_eos|>",
        },
    },
    "af3": {
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<sound>"],
        "pad": "<|endoftext|>",
        "eos": "<|im_end|>",
        "named": {"audio_token": "<sound>"},
    },
    "qwen2.5": {
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "pad": "<|endoftext|>",
        "eos": "<|im_end|>",
        "named": {},
    },
}

#: Number of BPE tokens (bytes + merges) before the special tokens.
_BPE_VOCAB_SIZE = 512

#: Training text: chat framing, MCQ prompt words, letters, digits, punctuation.
_CORPUS: Tuple[str, ...] = (
    "system\nYou are a helpful assistant.",
    "user\nassistant\nuser\nassistant\nsystem\nuser\nassistant\n",
    "user user user assistant assistant answer answer option option reasoning reasoning",
    "Audio 1: What is the answer? Choose one option.",
    "Listen to the audio and answer the question by choosing the correct option.",
    "Options: (A) dog (B) cat (C) bird (D) car (E) rain (F) music (G) speech (H) silence (I) noise (J) wind",
    "A B C D E F G H I J",
    "(A) (B) (C) (D) (E) (F) (G) (H) (I) (J)",
    "The answer is (A). The correct option is B. Answer: C",
    "Let's think step by step. First, explain your reasoning, then give the final answer.",
    "Reasoning: the speaker sounds happy, so the emotion is happy. Therefore, the answer is D.",
    "Please think and reason about the input audio before you respond.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 20 30 100 1000 2024",
    "Transcribe the input speech. The spoken content of the audio is \"hello world\".",
    "What is the gender, emotion, age and language of the speaker? male female young old English",
    "How many sounds are there? Which instrument is playing? Is the speaker angry or sad?",
    "Question: which of the following best describes the audio clip?",
    "the of and to in is it that was for on are with as at be this have from or by",
)

#: Chat template of the real Qwen2.5-Omni checkpoints (``chat_template.json``).
OMNI_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant."
    "<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}{% if add_audio_id %}Audio "
    "{{ audio_count.value }}: {% endif %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = "
    "video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_bos|><|VIDEO|><|vision_eos|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)

#: Processor chat template of ``nvidia/audio-flamingo-3-hf``: ``<sound>`` first, then the text.
AF3_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}{% for m in messages if m['content'] is not none %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% set audio = namespace(found=False) %}{% set text_buf = namespace(v='') %}"
    "{% for c in m['content'] %}{% if c.get('type') == 'audio' or 'audio' in c %}"
    "{% set audio.found = True %}{% elif c.get('type') == 'text' or 'text' in c %}"
    "{% set text_buf.v = text_buf.v + c['text'] %}{% endif %}{% endfor %}"
    "{% if audio.found %}{{ '<sound>' }}{% endif %}{{ text_buf.v }}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Tokenizer-level chat template of ``nvidia/audio-flamingo-3-hf`` (string contents only).
_AF3_TOKENIZER_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant."
    "<|im_end|>\\n' }}{% endif %}{% for message in messages if message['content'] is not none %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

#: ChatML chat template of the Qwen2.5 instruct checkpoints (without tool calls).
TEXT_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_MEL_BINS = 128


def build_tokenizer(kind: str) -> Any:
    """Build a tiny byte-level BPE ``Qwen2Tokenizer`` with the special tokens of a model family.

    The BPE (512 tokens: 256 bytes + merges) is trained with ``tokenizers`` on built-in
    sentences (chat framing, MCQ words, letters A-J, digits) with the Qwen2 pre-tokenizer
    split; being byte-level, any text round-trips. Special tokens follow the vocabulary as
    special ``AddedToken(normalized=False)``; the named ones (``audio_token``...) are set
    through ``extra_special_tokens``, so ``tok.audio_token`` / ``tok.audio_token_id`` exist.
    The result is identical on every call.

    Args:
        kind: one of ``"qwen2-audio"``, ``"qwen2.5-omni"``, ``"af3"``, ``"qwen2.5"`` (text only).

    Returns:
        A ``transformers.Qwen2Tokenizer`` with pad ``<|endoftext|>`` and eos ``<|im_end|>``.

    Raises:
        ValueError: unknown ``kind``.

    Example:
        >>> tok = build_tokenizer("qwen2-audio")
        >>> tok.decode(tok("The answer is (B).")["input_ids"])
        'The answer is (B).'
        >>> tok.audio_token
        '<|AUDIO|>'
    """
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; valid kinds: {sorted(TOKENIZER_KINDS)}")
    spec = TOKENIZER_KINDS[kind]
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    vocab, merges = _train_bpe()
    # Ids fixed through added_tokens_decoder (what from_pretrained passes too): the constructor
    # would otherwise add the specials in attribute order (eos first).
    added = {len(vocab) + i: AddedToken(t, special=True, normalized=False) for i, t in enumerate(spec["specials"])}
    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token=spec["eos"],
        pad_token=spec["pad"],
        extra_special_tokens=dict(spec["named"]),
        added_tokens_decoder=added,
        model_max_length=32768,
        errors="replace",
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    expected = {t: len(vocab) + i for i, t in enumerate(spec["specials"])}
    actual = {t: tok.convert_tokens_to_ids(t) for t in spec["specials"]}
    if actual != expected:  # pragma: no cover - guards against a transformers behaviour change
        raise RuntimeError(f"special token ids {actual} differ from the intended {expected}")
    return tok


def _train_bpe() -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
    """Train the shared byte-level BPE; returns (vocab, merges)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_BPE_VOCAB_SIZE,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    bpe.train_from_iterator(list(_CORPUS) * 3, trainer=trainer)
    data = json.loads(bpe.to_str())
    vocab = {k: int(v) for k, v in data["model"]["vocab"].items()}
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]]
    return vocab, merges  # type: ignore[return-value]


def text_config_sizes(hidden_size: int, num_layers: int) -> Dict[str, int]:
    """Text-decoder sizes that scale with ``hidden_size`` like the Qwen2 family.

    head_dim 32 below hidden 512, else 64 (hidden 1024 -> 16 heads); one key/value head per
    four query heads (Qwen2-7B: 28/4); intermediate ~2.75 x hidden rounded to 64
    (hidden 1024, 8 layers -> ~100M parameters with these tokenizers).

    Args:
        hidden_size: model width, a multiple of 32 (of 64 from 512 up).
        num_layers: decoder layers.

    Returns:
        ``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``,
        ``num_key_value_heads``, ``intermediate_size``, ``head_dim``.

    Raises:
        ValueError: ``hidden_size`` is not a multiple of the head size.

    Example:
        >>> text_config_sizes(1024, 8)["num_attention_heads"]
        16
    """
    head_dim = 32 if hidden_size < 512 else 64
    if hidden_size <= 0 or hidden_size % head_dim:
        raise ValueError(f"hidden_size={hidden_size} must be a positive multiple of {head_dim}")
    heads = hidden_size // head_dim
    kv_heads = max(1, heads // 4)
    while heads % kv_heads:
        kv_heads -= 1
    intermediate = max(64, int(round(hidden_size * 2.75 / 64.0)) * 64)
    return {
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "intermediate_size": intermediate,
        "head_dim": head_dim,
    }


def _qwen2_text_kwargs(tok: Any, hidden_size: int, num_layers: int, max_positions: int,
                       rope_theta: float) -> Dict[str, Any]:
    """Qwen2Config arguments shared by the Qwen2-Audio and AF3 builders (sizes, vocab, pad, RoPE)."""
    sizes = text_config_sizes(hidden_size, num_layers)
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")
    return {**{k: sizes[k] for k in keys}, "vocab_size": len(tok), "max_position_embeddings": max_positions,
            "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta},
            "tie_word_embeddings": False, "pad_token_id": tok.pad_token_id}


def _audio_encoder_sizes(d_model: int, num_layers: int = 2) -> Dict[str, int]:
    """Whisper-style encoder sizes for width ``d_model`` (head size 16 below 256, else 64)."""
    head = 16 if d_model < 256 else 64
    if d_model <= 0 or d_model % head:
        raise ValueError(f"audio_d_model={d_model} must be a positive multiple of {head}")
    return {"d_model": d_model, "layers": num_layers, "heads": d_model // head, "ffn": 4 * d_model}


def _mrope_section(head_dim: int) -> List[int]:
    """Split head_dim/2 rotary frequencies (t, h, w) like Qwen2.5-Omni's [16, 24, 24] of 64."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def _prepare_folder(folder: Pathlike) -> Path:
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _whisper_feature_extractor(chunk_length: int = 30, processor_class: Optional[str] = None) -> Any:
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(
        feature_size=_MEL_BINS, sampling_rate=16000, hop_length=160, n_fft=400, chunk_length=chunk_length,
        padding_value=0.0, return_attention_mask=True,
    )
    if processor_class:
        fe.processor_class = processor_class  # written to preprocessor_config.json like the hub files
    return fe


def _generation_config(tok: Any, **extra: Any) -> Any:
    from transformers import GenerationConfig

    return GenerationConfig(
        bos_token_id=None,
        eos_token_id=[tok.eos_token_id, tok.pad_token_id],
        pad_token_id=tok.pad_token_id,
        do_sample=False,
        **extra,
    )


def build_qwen2_audio(
    folder: Pathlike,
    hidden_size: int = 64,
    num_layers: int = 2,
    audio_d_model: int = 32,
    seed: int = 0,
    audio_layers: int = 2,
) -> Path:
    """Save a tiny ``Qwen2AudioForConditionalGeneration`` + ``Qwen2AudioProcessor`` to ``folder``.

    Same layout and classes as ``Qwen/Qwen2-Audio-7B-Instruct`` (config.json,
    generation_config.json, model.safetensors, tokenizer files with the processor's default
    chat template, preprocessor_config.json, processor_config.json). Text decoder sizes come
    from :func:`text_config_sizes`; the audio encoder has 128 mel bins and 1500 source
    positions like the real one.

    Args:
        folder: output folder (created; existing files are overwritten).
        hidden_size: text hidden size (64 for tests, 1024 with 8 layers for a ~100M model).
        num_layers: text decoder layers.
        audio_d_model: audio encoder width.
        seed: torch seed for the random weights.
        audio_layers: audio encoder layers.

    Returns:
        ``Path(folder)``.

    Example:
        >>> from transformers import Qwen2AudioForConditionalGeneration
        >>> path = build_qwen2_audio(tmp_path / "qwen2-audio")  # doctest: +SKIP
        >>> model = Qwen2AudioForConditionalGeneration.from_pretrained(path)  # doctest: +SKIP
    """
    import torch
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioEncoderConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        Qwen2Config,
    )

    path = _prepare_folder(folder)
    tok = build_tokenizer("qwen2-audio")
    enc = _audio_encoder_sizes(audio_d_model, audio_layers)
    text_config = Qwen2Config(**_qwen2_text_kwargs(tok, hidden_size, num_layers, 8192, 10000.0), rms_norm_eps=1e-5,
                              bos_token_id=tok.pad_token_id, eos_token_id=tok.pad_token_id)
    audio_config = Qwen2AudioEncoderConfig(
        num_mel_bins=_MEL_BINS,
        encoder_layers=enc["layers"],
        encoder_attention_heads=enc["heads"],
        encoder_ffn_dim=enc["ffn"],
        d_model=enc["d_model"],
        max_source_positions=1500,
    )
    config = Qwen2AudioConfig(
        audio_config=audio_config, text_config=text_config, audio_token_index=tok.audio_token_id
    )
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(config).eval()
    model.generation_config = _generation_config(tok)
    model.save_pretrained(path)
    processor = Qwen2AudioProcessor(feature_extractor=_whisper_feature_extractor(), tokenizer=tok)
    processor.save_pretrained(path)
    logger.info("saved tiny Qwen2-Audio (%d parameters) to %s", model.num_parameters(), path)
    return path


def build_qwen25_omni(
    folder: Pathlike,
    hidden_size: int = 64,
    num_layers: int = 2,
    audio_d_model: int = 32,
    seed: int = 0,
    audio_layers: int = 2,
) -> Path:
    """Save a tiny full ``Qwen2_5OmniForConditionalGeneration`` folder like ``Qwen/Qwen2.5-Omni-7B``.

    The folder holds what the real one holds: config.json (``qwen2_5_omni`` with thinker,
    talker and token2wav sub-configs), generation_config.json, model.safetensors with
    ``thinker.``/``talker.``/``token2wav.`` weights, ``spk_dict.pt`` (speakers ``Chelsie``
    and ``Ethan``), tokenizer files (``processor_class`` ``Qwen2_5OmniProcessor``, named
    audio/vision tokens), ``chat_template.json`` and ``preprocessor_config.json``
    (``WhisperFeatureExtractor`` with 128 mel bins and ``chunk_length=300``, as released).
    ``Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(folder)`` loads the thinker;
    see the module docstring for the processor recipe. Not written (torchvision-only):
    the image/video processor settings.

    Args:
        folder: output folder (created; existing files are overwritten).
        hidden_size: thinker text hidden size.
        num_layers: thinker text layers.
        audio_d_model: audio encoder width.
        seed: torch seed for the random weights.
        audio_layers: audio encoder layers.

    Returns:
        ``Path(folder)``.

    Example:
        >>> from transformers import Qwen2_5OmniThinkerForConditionalGeneration
        >>> path = build_qwen25_omni(tmp_path / "omni")  # doctest: +SKIP
        >>> thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(path)  # doctest: +SKIP
    """
    import torch
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    path = _prepare_folder(folder)
    tok = build_tokenizer("qwen2.5-omni")
    ids = {t: tok.convert_tokens_to_ids(t) for t in TOKENIZER_KINDS["qwen2.5-omni"]["specials"]}
    sizes = text_config_sizes(hidden_size, num_layers)
    enc = _audio_encoder_sizes(audio_d_model, audio_layers)
    vocab = len(tok)
    rope = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": _mrope_section(sizes["head_dim"])}
    user_token_id = tok.convert_tokens_to_ids(tok.tokenize("user"))
    if len(user_token_id) != 1:  # pragma: no cover - the corpus makes "user" one token
        raise RuntimeError(f"'user' is not a single token in the tiny vocabulary: {user_token_id}")
    thinker_config = {
        "audio_config": {
            "num_mel_bins": _MEL_BINS,
            "encoder_layers": enc["layers"],
            "encoder_attention_heads": enc["heads"],
            "encoder_ffn_dim": enc["ffn"],
            "d_model": enc["d_model"],
            "max_source_positions": 1500,
            "n_window": 100,
            "output_dim": sizes["hidden_size"],
        },
        "vision_config": {
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": sizes["hidden_size"],
            "fullatt_block_indexes": [0],
            "window_size": 112,
        },
        "text_config": {
            "vocab_size": vocab,
            "hidden_size": sizes["hidden_size"],
            "intermediate_size": sizes["intermediate_size"],
            "num_hidden_layers": sizes["num_hidden_layers"],
            "num_attention_heads": sizes["num_attention_heads"],
            "num_key_value_heads": sizes["num_key_value_heads"],
            "max_position_embeddings": 32768,
            "rope_parameters": rope,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": False,
            "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.eos_token_id,
        },
        "audio_token_index": ids["<|AUDIO|>"],
        "image_token_index": ids["<|IMAGE|>"],
        "video_token_index": ids["<|VIDEO|>"],
        "audio_start_token_id": ids["<|audio_bos|>"],
        "audio_end_token_id": ids["<|audio_eos|>"],
        "vision_start_token_id": ids["<|vision_bos|>"],
        "vision_end_token_id": ids["<|vision_eos|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "user_token_id": user_token_id[0],
        "bos_token_id": tok.pad_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
        "tie_word_embeddings": False,
    }
    codec_vocab = 64  # real: 8448 codec ids, specials 8292..8296 near the top
    talker_config = {
        "vocab_size": codec_vocab,
        "tts_codec_pad_token_id": codec_vocab - 8,
        "tts_codec_start_token_id": codec_vocab - 7,
        "tts_codec_end_token_id": codec_vocab - 6,
        "tts_codec_mask_token_id": codec_vocab - 4,
        "tts_text_start_token_id": vocab - 3,
        "tts_text_end_token_id": vocab - 2,
        "tts_text_pad_token_id": vocab - 1,
        "audio_token_index": ids["<|AUDIO|>"],
        "image_token_index": ids["<|IMAGE|>"],
        "video_token_index": ids["<|VIDEO|>"],
        "vision_start_token_id": ids["<|vision_bos|>"],
        "vision_end_token_id": ids["<|vision_eos|>"],
        "audio_start_token_id": ids["<|audio_bos|>"],
        "audio_end_token_id": ids["<|audio_eos|>"],
        "embedding_size": sizes["hidden_size"],
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "max_position_embeddings": 32768,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": _mrope_section(16)},
    }
    token2wav_config = {
        "dit_config": {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "head_dim": 16,
            "ff_mult": 2,
            "emb_dim": 16,
            "num_embeds": codec_vocab + 1,
            "mel_dim": 80,
            "repeats": 2,
            "block_size": 24,
            "look_ahead_layers": [1],
            "look_backward_layers": [0],
            "enc_emb_dim": 16,
            "enc_dim": 16,
            "enc_channels": [16, 16, 16, 16, 48],
            "enc_kernel_sizes": [5, 3, 3, 3, 1],
            "enc_dilations": [1, 2, 3, 4, 1],
            "enc_attention_channels": 8,
            "enc_res2net_scale": 2,
            "enc_se_channels": 8,
        },
        "bigvgan_config": {
            "mel_dim": 80,
            "upsample_initial_channel": 16,
            "resblock_kernel_sizes": [3],
            "resblock_dilation_sizes": [[1, 3, 5]],
            "upsample_rates": [4, 2],
            "upsample_kernel_sizes": [8, 4],
        },
    }
    config = Qwen2_5OmniConfig(
        thinker_config=thinker_config,
        talker_config=talker_config,
        token2wav_config=token2wav_config,
        enable_audio_output=True,
    )
    torch.manual_seed(seed)
    model = Qwen2_5OmniForConditionalGeneration(config).eval()
    model.thinker.generation_config = _generation_config(tok)
    model.generation_config = _generation_config(tok)
    model.save_pretrained(path)
    speakers = {
        name: {
            "bos_token": vocab - 3 + k % 2,
            "cond": torch.randn(1, token2wav_config["dit_config"]["enc_emb_dim"]),
            "ref_mel": torch.randn(1, 30, token2wav_config["dit_config"]["mel_dim"]),
        }
        for k, name in enumerate(("Chelsie", "Ethan"))
    }
    torch.save(speakers, path / "spk_dict.pt")

    tok.chat_template = OMNI_CHAT_TEMPLATE
    tok.init_kwargs["processor_class"] = "Qwen2_5OmniProcessor"
    tok.save_pretrained(path)
    (path / "chat_template.json").write_text(
        json.dumps({"chat_template": OMNI_CHAT_TEMPLATE}, indent=2) + "\n", encoding="utf-8"
    )
    fe = _whisper_feature_extractor(chunk_length=300, processor_class="Qwen2_5OmniProcessor")
    fe.save_pretrained(path)
    logger.info("saved tiny Qwen2.5-Omni (%d parameters) to %s", model.num_parameters(), path)
    return path


def build_af3(
    folder: Pathlike,
    hidden_size: int = 64,
    num_layers: int = 2,
    audio_d_model: int = 32,
    seed: int = 0,
    audio_layers: int = 2,
) -> Path:
    """Save a tiny ``AudioFlamingo3ForConditionalGeneration`` + processor like ``nvidia/audio-flamingo-3-hf``.

    Files: config.json, generation_config.json, model.safetensors, tokenizer files (with the
    release's tokenizer chat template), processor_config.json (``<sound>`` audio token,
    ``WhisperFeatureExtractor`` with 128 mel bins, 30 s windows) and chat_template.jinja
    (the release's processor template: ``<sound>`` before the text of the user turn).

    Args:
        folder: output folder (created; existing files are overwritten).
        hidden_size: text hidden size.
        num_layers: text decoder layers.
        audio_d_model: audio encoder width.
        seed: torch seed for the random weights.
        audio_layers: audio encoder layers.

    Returns:
        ``Path(folder)``.

    Example:
        >>> from transformers import AudioFlamingo3ForConditionalGeneration
        >>> path = build_af3(tmp_path / "af3")  # doctest: +SKIP
        >>> model = AudioFlamingo3ForConditionalGeneration.from_pretrained(path)  # doctest: +SKIP
    """
    import torch
    from transformers import (
        AudioFlamingo3Config,
        AudioFlamingo3EncoderConfig,
        AudioFlamingo3ForConditionalGeneration,
        AudioFlamingo3Processor,
        Qwen2Config,
    )

    path = _prepare_folder(folder)
    tok = build_tokenizer("af3")
    tok.chat_template = _AF3_TOKENIZER_CHAT_TEMPLATE
    enc = _audio_encoder_sizes(audio_d_model, audio_layers)
    text_config = Qwen2Config(**_qwen2_text_kwargs(tok, hidden_size, num_layers, 32768, 1000000.0),
                              bos_token_id=None, eos_token_id=tok.eos_token_id)
    audio_config = AudioFlamingo3EncoderConfig(
        num_mel_bins=_MEL_BINS,
        num_hidden_layers=enc["layers"],
        num_attention_heads=enc["heads"],
        intermediate_size=enc["ffn"],
        hidden_size=enc["d_model"],
        max_source_positions=1500,
    )
    config = AudioFlamingo3Config(
        audio_config=audio_config, text_config=text_config, audio_token_id=tok.audio_token_id
    )
    torch.manual_seed(seed)
    model = AudioFlamingo3ForConditionalGeneration(config).eval()
    model.generation_config = _generation_config(tok)
    model.save_pretrained(path)
    processor = AudioFlamingo3Processor(
        feature_extractor=_whisper_feature_extractor(), tokenizer=tok, chat_template=AF3_CHAT_TEMPLATE
    )
    processor.save_pretrained(path)
    logger.info("saved tiny Audio Flamingo 3 (%d parameters) to %s", model.num_parameters(), path)
    return path


#: LoRA settings of the tiny AF-Think adapter.
AF3_THINK_TARGET_MODULES = r".*language_model.*\.(q_proj|v_proj)"


def build_af3_think_adapter(folder: Pathlike, seed: int = 1, rank: int = 4) -> Path:
    """Add an AF-Think style ``think/`` adapter to a folder made by :func:`build_af3`.

    Writes ``think/adapter_config.json`` + ``think/adapter_model.safetensors`` (a peft LoRA on
    the language model's ``q_proj``/``v_proj`` only, with non-zero B so it changes the
    logits) and ``think/non_lora_trainables.bin``: a ``torch.save``'d state dict of the
    multi-modal projector, keyed by ``AudioFlamingo3ForConditionalGeneration`` parameter
    names (``multi_modal_projector.linear_1.weight``...). Assumption: the real release's
    keys could not be inspected offline; the published HF loading code applies the file
    with ``model.load_state_dict(extra, strict=False)`` on the base model, which only has an
    effect if the keys are the HF model's own names, so that is what we write. A loader
    should check ``unexpected_keys`` of that call: strict=False silently ignores keys named
    otherwise (e.g. llava-style ``sound_mm_projector.*``).

    Args:
        folder: a folder written by :func:`build_af3`.
        seed: torch seed for the adapter and projector weights.
        rank: LoRA rank.

    Returns:
        ``Path(folder) / "think"``.

    Raises:
        FileNotFoundError: ``folder`` has no config.json.

    Example:
        >>> think = build_af3_think_adapter(build_af3(tmp_path / "af3"))  # doctest: +SKIP
        >>> model = PeftModel.from_pretrained(base_model, think)  # doctest: +SKIP
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AudioFlamingo3ForConditionalGeneration

    path = Path(folder)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {path}: build the base model with build_af3 first")
    think = path / "think"
    base = AudioFlamingo3ForConditionalGeneration.from_pretrained(path).eval()
    torch.manual_seed(seed)
    # In-memory names are ``model.multi_modal_projector.*`` (transformers 5); the files use the
    # checkpoint names ``multi_modal_projector.*``, as in model.safetensors.
    projector = {
        name[len("model."):]: (param.detach() + 0.05 * torch.randn_like(param)).contiguous()
        for name, param in base.named_parameters()
        if name.startswith("model.multi_modal_projector.")
    }
    if not projector:  # pragma: no cover - guards against a transformers layout change
        raise RuntimeError("no model.multi_modal_projector.* parameters found in AudioFlamingo3ForConditionalGeneration")
    lora = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,
        bias="none",
        target_modules=AF3_THINK_TARGET_MODULES,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(base, lora)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(0.1 * torch.randn_like(param))
    peft_model.save_pretrained(think)
    torch.save(projector, think / "non_lora_trainables.bin")
    logger.info("saved tiny AF-Think adapter to %s", think)
    return think


def build_text_lm(folder: Pathlike, hidden_size: int = 64, num_layers: int = 2, seed: int = 0) -> Path:
    """Save a tiny text-only ``Qwen2ForCausalLM`` + tokenizer like ``Qwen/Qwen2.5-0.5B-Instruct``.

    Files: config.json, generation_config.json (greedy; stops at ``<|im_end|>`` or
    ``<|endoftext|>``), model.safetensors and the tokenizer files with the ChatML chat
    template :data:`TEXT_CHAT_TEMPLATE`. Loads with ``AutoTokenizer`` /
    ``AutoModelForCausalLM.from_pretrained(folder)``.

    Args:
        folder: output folder (created; existing files are overwritten).
        hidden_size: hidden size (see :func:`text_config_sizes`).
        num_layers: decoder layers.
        seed: torch seed for the random weights.

    Returns:
        ``Path(folder)``.

    Example:
        >>> from transformers import AutoModelForCausalLM
        >>> path = build_text_lm(tmp_path / "text-lm")  # doctest: +SKIP
        >>> model = AutoModelForCausalLM.from_pretrained(path)  # doctest: +SKIP
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    path = _prepare_folder(folder)
    tok = build_tokenizer("qwen2.5")
    tok.chat_template = TEXT_CHAT_TEMPLATE
    config = Qwen2Config(**_qwen2_text_kwargs(tok, hidden_size, num_layers, 32768, 1000000.0),
                         bos_token_id=None, eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config = _generation_config(tok)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    logger.info("saved tiny Qwen2 text LM (%d parameters) to %s", model.num_parameters(), path)
    return path


#: Language codes of the tiny Whisper vocabulary (the first of the real ``<|en|>``, ``<|zh|>`` ... list).
WHISPER_LANGUAGES: Tuple[str, ...] = ("en", "zh", "de", "es", "fr")


def build_whisper(
    folder: Pathlike,
    d_model: int = 32,
    num_layers: int = 2,
    seed: int = 0,
    languages: Tuple[str, ...] = WHISPER_LANGUAGES,
) -> Path:
    """Save a tiny multilingual ``WhisperForConditionalGeneration`` + ``WhisperProcessor`` like ``openai/whisper-large-v3``.

    Files: config.json, generation_config.json (greedy; ``lang_to_id``, ``task_to_id``,
    ``no_timestamps_token_id`` and ``is_multilingual`` as in the real checkpoints, so
    ``generate(language="en", task="transcribe")`` forces them), model.safetensors, the
    tokenizer files and processor_config.json (the ``WhisperFeatureExtractor``: 128 mel bins,
    30 s windows, as large-v3). Weights are drawn with ``init_std=0.3``: at Whisper's default
    0.02 a tiny random decoder emits the same tokens whatever the clip, which would make
    batched-equals-single checks vacuous.
    The tokenizer is ``WhisperTokenizer`` over the byte-level BPE of :func:`build_tokenizer`
    (any text round-trips), followed by Whisper's special tokens in the real order:
    ``<|endoftext|>`` (eos, pad), ``<|startoftranscript|>``, one ``<|xx|>`` per language,
    ``<|translate|>``, ``<|transcribe|>``, ``<|startoflm|>``, ``<|startofprev|>``,
    ``<|nospeech|>``, ``<|notimestamps|>``.

    Args:
        folder: output folder (created; existing files are overwritten).
        d_model: encoder and decoder width (see :func:`_audio_encoder_sizes`).
        num_layers: encoder and decoder layers.
        seed: torch seed for the random weights.
        languages: language codes with a token.

    Returns:
        ``Path(folder)``.

    Example:
        >>> from transformers import WhisperForConditionalGeneration, WhisperProcessor
        >>> path = build_whisper(tmp_path / "whisper")  # doctest: +SKIP
        >>> model = WhisperForConditionalGeneration.from_pretrained(path)  # doctest: +SKIP
    """
    import torch
    from tokenizers import AddedToken
    from transformers import (GenerationConfig, WhisperConfig, WhisperForConditionalGeneration, WhisperProcessor,
                              WhisperTokenizer)

    path = _prepare_folder(folder)
    vocab, merges = _train_bpe()
    language_tokens = [f"<|{code}|>" for code in languages]
    specials = ["<|endoftext|>", "<|startoftranscript|>", *language_tokens, "<|translate|>", "<|transcribe|>",
                "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
    ids = {t: len(vocab) + i for i, t in enumerate(specials)}
    tok = WhisperTokenizer(
        vocab=vocab, merges=merges, unk_token="<|endoftext|>", bos_token="<|endoftext|>", eos_token="<|endoftext|>",
        pad_token="<|endoftext|>", model_max_length=448,
        added_tokens_decoder={i: AddedToken(t, special=True, normalized=False) for t, i in ids.items()},
    )
    if {t: tok.convert_tokens_to_ids(t) for t in specials} != ids:  # pragma: no cover - transformers change
        raise RuntimeError("Whisper special token ids differ from the intended ones")
    eot, start = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    enc = _audio_encoder_sizes(d_model, num_layers)
    config = WhisperConfig(
        vocab_size=len(tok), num_mel_bins=_MEL_BINS, d_model=enc["d_model"], encoder_layers=enc["layers"],
        decoder_layers=enc["layers"], encoder_attention_heads=enc["heads"], decoder_attention_heads=enc["heads"],
        encoder_ffn_dim=enc["ffn"], decoder_ffn_dim=enc["ffn"], max_source_positions=1500, max_target_positions=448,
        decoder_start_token_id=start, pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
        suppress_tokens=None, begin_suppress_tokens=None, init_std=0.3,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=start, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, do_sample=False,
        max_length=448, is_multilingual=True, lang_to_id={t: ids[t] for t in language_tokens},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"], begin_suppress_tokens=[eot],
    )
    model.save_pretrained(path)
    WhisperProcessor(feature_extractor=_whisper_feature_extractor(), tokenizer=tok).save_pretrained(path)
    logger.info("saved tiny Whisper (%d parameters) to %s", model.num_parameters(), path)
    return path


def build_salmonn(
    folder: Pathlike,
    hidden_size: int = 64,
    num_layers: int = 2,
    whisper_d_model: int = 32,
    beats_dim: int = 64,
    qformer_hidden: int = 128,
    seed: int = 0,
) -> Path:
    """Save a tiny random SALMONN as the release's four separate parts (see ``toolkit.models.salmonn.loader``).

    Files:

    - ``whisper/``: a :func:`build_whisper` folder (``WhisperModel.from_pretrained`` reads its
      encoder, ``WhisperFeatureExtractor`` its ``preprocessor_config.json``).
    - ``beats.pt``: ``{"cfg", "model", "label_dict"}`` like ``BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt``
      (release parameter names, a 5-class ``predictor``; real widths 512/768 shrunk to 32/``beats_dim``).
    - ``vicuna/``: ``LlamaForCausalLM`` + ``LlamaTokenizer`` (``<unk>``/``<s>``/``</s>`` = 0/1/2, 256
      byte-fallback tokens, then a BPE trained on the built-in sentences with Llama's ``▁``
      word prefix) and a generation config like Vicuna's (eos 2, pad 0).
    - ``salmonn.pth``: ``{"model": ...}`` with the Q-Former (2 layers, ``qformer_hidden`` wide),
      query token, LayerNorms, projection and LoRA (r=8; B drawn non-zero so it changes the
      logits) under the release's names, plus the buffers the release's files also carry
      (``speech_Qformer.bert.embeddings.position_ids``, per-layer ``rotary_emb.inv_freq``).

    Args:
        folder: output folder (created; existing files are overwritten).
        hidden_size: LLM width (heads of 16).
        num_layers: LLM layers.
        whisper_d_model: Whisper encoder width.
        beats_dim: BEATs encoder width (4 heads).
        qformer_hidden: Q-Former width (a multiple of 64: BERT's head size).
        seed: torch seed for the random weights.

    Returns:
        ``Path(folder)``, loadable with ``load_backend("salmonn", str(folder))``.

    Example:
        >>> path = build_salmonn(tmp_path / "salmonn")  # doctest: +SKIP
        >>> backend = load_backend("salmonn", str(path))  # doctest: +SKIP
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    from toolkit.models.salmonn.beats import BEATs, BEATsConfig
    from toolkit.models.salmonn.loader import SalmonnLayout, assemble, checkpoint_state
    from toolkit.models.salmonn.model import QFormerSpec

    path = _prepare_folder(folder)
    build_whisper(path / "whisper", d_model=whisper_d_model, num_layers=2, seed=seed)
    torch.manual_seed(seed)
    beats_config = BEATsConfig(embed_dim=32, encoder_layers=2, encoder_embed_dim=beats_dim,
                               encoder_ffn_embed_dim=2 * beats_dim, encoder_attention_heads=4,
                               finetuned_model=True, predictor_class=5)
    torch.save({"cfg": beats_config.to_dict(), "model": BEATs(beats_config).state_dict(),
                "label_dict": {i: f"/m/tiny{i}" for i in range(5)}}, path / "beats.pt")

    specials = ["<unk>", "<s>", "</s>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=_BPE_VOCAB_SIZE, min_frequency=1, show_progress=False,
                                  special_tokens=specials)
    bpe.train_from_iterator(list(_CORPUS) * 3 + ["USER: <Speech><SpeechHere></Speech> Describe it.\nASSISTANT:"],
                            trainer=trainer)
    data = json.loads(bpe.to_str())
    vocab = {t: i for i, t in enumerate(specials + [f"<0x{b:02X}>" for b in range(256)])}
    for token, _ in sorted(data["model"]["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]]
    tok = LlamaTokenizer(vocab=vocab, merges=merges)
    head_dim = 16
    llama_config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                               num_hidden_layers=num_layers, num_attention_heads=hidden_size // head_dim,
                               num_key_value_heads=hidden_size // head_dim, max_position_embeddings=2048,
                               bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
                               initializer_range=0.2)
    llama = LlamaForCausalLM(llama_config).eval()
    llama.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0, do_sample=False)
    llama.save_pretrained(path / "vicuna")
    tok.save_pretrained(path / "vicuna")

    spec = QFormerSpec(hidden_size=qformer_hidden, num_layers=2, intermediate_size=2 * qformer_hidden,
                       num_query_tokens=1, encoder_width=whisper_d_model + beats_dim, lora_rank=8)
    layout = SalmonnLayout(whisper_path=path / "whisper", beats_path=path / "beats.pt",
                           llama_path=path / "vicuna", ckpt=path / "salmonn.pth")
    model = assemble(layout, spec)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(0.1 * torch.randn_like(param))
    state = checkpoint_state(model)
    state["speech_Qformer.bert.embeddings.position_ids"] = torch.arange(512).unsqueeze(0)
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    for layer in range(num_layers):
        state[f"llama_model.base_model.model.model.layers.{layer}.self_attn.rotary_emb.inv_freq"] = inv_freq.clone()
    torch.save({"model": state}, path / "salmonn.pth")
    logger.info("saved tiny SALMONN (%d parameters) to %s", sum(p.numel() for p in model.parameters()), path)
    return path

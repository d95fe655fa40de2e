"""Tiny, randomly initialised checkpoints of the real model classes, saved like hub folders.

Tests, the demo and benchmarks cannot reach the hub, so they build small instances of the
*real* transformers classes (never fakes), with their real processors, save them with
``save_pretrained`` into a folder laid out like the published checkpoint, and load them back
with ``from_pretrained(folder)`` - the path a real checkpoint takes through the toolkit.

Each family builds its own checkpoint beside its loader, as the backend classmethod
``build_tiny`` (``toolkit.models.registry.build_tiny(name, folder, **sizes)``; ``af3-think``
is the ``af3`` folder plus its ``think/`` adapter). This module holds what they share: the
tokenizer (:func:`build_tokenizer`, a byte-level BPE trained on :data:`CORPUS`), the chat
templates, the size table :data:`SIZES` and size helpers, and one save routine
(:func:`save_tiny`). :func:`build_text_lm` (a text-only Qwen2 LM, the outside rewriter of
``rewrite-*`` interventions; not a backend) lives here too. Every builder is deterministic
for a given ``seed``: same files, same weights.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from toolkit.errors import Pathlike

logger = logging.getLogger(__name__)

__all__ = [
    "SIZES",
    "AUDIO_LM_SIZES",
    "TOKENIZER_KINDS",
    "BPE_VOCAB_SIZE",
    "CORPUS",
    "MEL_BINS",
    "OMNI_CHAT_TEMPLATE",
    "AF3_CHAT_TEMPLATE",
    "AF3_TOKENIZER_CHAT_TEMPLATE",
    "TEXT_CHAT_TEMPLATE",
    "resolve_sizes",
    "build_tokenizer",
    "train_bpe",
    "text_config_sizes",
    "qwen2_text_kwargs",
    "audio_encoder_kwargs",
    "mrope_section",
    "whisper_feature_extractor",
    "generation_config",
    "random_model",
    "nonzero_lora",
    "save_tiny",
    "build_text_lm",
]

#: Named sizes, nanoGPT style: a builder starts from ``SIZES[size]`` (``size="tiny"`` unless
#: given) and keyword arguments override single values; each family reads the keys it has
#: (see :func:`resolve_sizes`). ``tiny``: tests and demos (seconds to build, a few MB).
#: ``100m``: ``bench/infer.py``'s Qwen2-Audio of ~94M parameters (decode bound by weight
#: bandwidth on CPU, like a 7B on a GPU).
SIZES: Dict[str, Dict[str, int]] = {
    "tiny": {"hidden_size": 64, "num_layers": 2, "audio_d_model": 32, "audio_layers": 2, "beats_dim": 64,
             "qformer_hidden": 128, "seed": 0},
    "100m": {"hidden_size": 1024, "num_layers": 8, "audio_d_model": 256, "audio_layers": 2, "beats_dim": 64,
             "qformer_hidden": 128, "seed": 0},
}

#: What the families read from :data:`SIZES`: text decoder, audio encoder, seed.
AUDIO_LM_SIZES: Tuple[str, ...] = ("hidden_size", "num_layers", "audio_d_model", "audio_layers", "seed")

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
BPE_VOCAB_SIZE = 512

#: Training text: chat framing, MCQ prompt words, letters, digits, punctuation.
CORPUS: Tuple[str, ...] = (
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
AF3_TOKENIZER_CHAT_TEMPLATE = (
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

#: Mel bins of every audio encoder here (Whisper large-v3, Qwen2-Audio, Qwen2.5-Omni, AF3).
MEL_BINS = 128


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

    vocab, merges = train_bpe()
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


def resolve_sizes(family: str, sizes: Mapping[str, Any], keys: Sequence[str]) -> Dict[str, Any]:
    """A family's sizes: the named row of :data:`SIZES` overridden by single values.

    Args:
        family: name for error messages.
        sizes: the builder's keyword arguments: optional ``size`` (a :data:`SIZES` name,
            default ``"tiny"``) and overrides of any of ``keys``.
        keys: the options the family reads.

    Returns:
        ``{key: value}`` for every one of ``keys``.

    Raises:
        ValueError: an unknown size name, or an option the family does not read.

    Example:
        >>> resolve_sizes("qwen2-audio", {"num_layers": 1}, AUDIO_LM_SIZES)["num_layers"]
        1
    """
    sizes = dict(sizes)
    name = sizes.pop("size", "tiny")
    if name not in SIZES:
        raise ValueError(f"unknown size {name!r} for tiny {family}; valid sizes: {', '.join(SIZES)}")
    unknown = sorted(set(sizes) - set(keys))
    if unknown:
        raise ValueError(f"tiny {family} takes no {', '.join(unknown)}; valid: size, {', '.join(keys)}")
    return {**{key: SIZES[name][key] for key in keys}, **sizes}


def train_bpe(pre_tokenizer: Any = None, special_tokens: Sequence[str] = (),
              extra_text: Sequence[str] = ()) -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
    """Train a BPE of :data:`BPE_VOCAB_SIZE` tokens on :data:`CORPUS` (three times over).

    Args:
        pre_tokenizer: a ``tokenizers`` pre-tokenizer; None: byte-level after the Qwen2 split,
            with all 256 bytes in the vocabulary (the vocabulary of :func:`build_tokenizer`).
        special_tokens: tokens the trainer puts first.
        extra_text: more training text.

    Returns:
        ``(vocab, merges)``: token -> id, and the merges in order.

    Example:
        >>> vocab, merges = train_bpe()
        >>> len(vocab)
        512
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    alphabet: List[str] = []
    if pre_tokenizer is None:
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    bpe.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB_SIZE, min_frequency=1, show_progress=False,
                                  initial_alphabet=alphabet, special_tokens=list(special_tokens))
    bpe.train_from_iterator(list(CORPUS) * 3 + list(extra_text), trainer=trainer)
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


def qwen2_text_kwargs(tok: Any, hidden_size: int, num_layers: int, max_positions: int,
                      rope_theta: float) -> Dict[str, Any]:
    """Qwen2 text-config arguments every Qwen-based family shares (sizes, vocab, pad, RoPE).

    Args:
        tok: the family's tokenizer (its length is the vocabulary size).
        hidden_size: width (see :func:`text_config_sizes`).
        num_layers: decoder layers.
        max_positions: ``max_position_embeddings``.
        rope_theta: RoPE base.

    Returns:
        Keyword arguments of ``Qwen2Config`` (or an equivalent ``text_config`` dict).

    Raises:
        ValueError: see :func:`text_config_sizes`.
    """
    sizes = text_config_sizes(hidden_size, num_layers)
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")
    return {**{k: sizes[k] for k in keys}, "vocab_size": len(tok), "max_position_embeddings": max_positions,
            "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta},
            "tie_word_embeddings": False, "pad_token_id": tok.pad_token_id}


def audio_encoder_kwargs(d_model: int, num_layers: int) -> Dict[str, int]:
    """A Whisper-style audio encoder of width ``d_model`` (128 mel bins, 1500 positions like the real ones).

    Head size 16 below width 256, else 64; feed-forward 4 x width.

    Args:
        d_model: encoder width.
        num_layers: encoder layers.

    Returns:
        Whisper's names: ``num_mel_bins``, ``d_model``, ``encoder_layers``,
        ``encoder_attention_heads``, ``encoder_ffn_dim``, ``max_source_positions``.

    Raises:
        ValueError: ``d_model`` is not a positive multiple of the head size.
    """
    head = 16 if d_model < 256 else 64
    if d_model <= 0 or d_model % head:
        raise ValueError(f"audio_d_model={d_model} must be a positive multiple of {head}")
    return {"num_mel_bins": MEL_BINS, "d_model": d_model, "encoder_layers": num_layers,
            "encoder_attention_heads": d_model // head, "encoder_ffn_dim": 4 * d_model, "max_source_positions": 1500}


def mrope_section(head_dim: int) -> List[int]:
    """Split head_dim/2 rotary frequencies (t, h, w) like Qwen2.5-Omni's [16, 24, 24] of 64.

    Args:
        head_dim: attention head size.

    Returns:
        The three section sizes.

    Example:
        >>> mrope_section(64)
        [8, 12, 12]
    """
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def whisper_feature_extractor(chunk_length: int = 30, processor_class: Optional[str] = None) -> Any:
    """The ``WhisperFeatureExtractor`` of the real checkpoints (128 mel bins, 16 kHz).

    Args:
        chunk_length: seconds every clip is padded to (30; Qwen2.5-Omni: 300).
        processor_class: written to ``preprocessor_config.json`` like the hub files, if given.

    Returns:
        The feature extractor.
    """
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(
        feature_size=MEL_BINS, sampling_rate=16000, hop_length=160, n_fft=400, chunk_length=chunk_length,
        padding_value=0.0, return_attention_mask=True,
    )
    if processor_class:
        fe.processor_class = processor_class
    return fe


def generation_config(tok: Any) -> Any:
    """Greedy decoding that stops at the end of the turn or at the pad token.

    Args:
        tok: a :func:`build_tokenizer` tokenizer.

    Returns:
        A ``GenerationConfig``.
    """
    from transformers import GenerationConfig

    return GenerationConfig(bos_token_id=None, eos_token_id=[tok.eos_token_id, tok.pad_token_id],
                            pad_token_id=tok.pad_token_id, do_sample=False)


def random_model(model_class: Any, config: Any, seed: int) -> Any:
    """``model_class(config)`` with weights drawn after ``torch.manual_seed(seed)``, in eval mode.

    Args:
        model_class: a transformers model class.
        config: its config.
        seed: torch seed.

    Returns:
        The model.
    """
    import torch

    torch.manual_seed(seed)
    return model_class(config).eval()


def nonzero_lora(model: Any, scale: float = 0.1) -> None:
    """Draw every LoRA B matrix of ``model`` (zero when peft creates it) from N(0, ``scale``²), in place.

    A fresh LoRA leaves the logits unchanged; with B drawn, a test can tell the adapter is applied.

    Args:
        model: a peft model (or any module with ``lora_B`` parameters).
        scale: standard deviation.
    """
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(scale * torch.randn_like(param))


def save_tiny(folder: Pathlike, label: str, model: Any, *parts: Any, generation: Any = None) -> Path:
    """Save a tiny model like a hub folder: the model, its generation config, then its processor parts.

    Args:
        folder: output folder (created; existing files are overwritten).
        label: model name for the log line (which gives the parameter count).
        model: anything with ``save_pretrained`` and ``parameters`` (a model, a peft model).
        *parts: processors, tokenizers, feature extractors: each ``save_pretrained(folder)``.
        generation: the ``GenerationConfig`` to save with the model; None keeps the model's.

    Returns:
        ``Path(folder)``.

    Example:
        >>> tok = build_tokenizer("qwen2.5")  # doctest: +SKIP
        >>> save_tiny(tmp_path / "lm", "text LM", model, tok, generation=generation_config(tok))  # doctest: +SKIP
    """
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    if generation is not None:
        model.generation_config = generation
    model.save_pretrained(path)
    for part in parts:
        part.save_pretrained(path)
    logger.info("saved tiny %s (%d parameters) to %s", label, sum(p.numel() for p in model.parameters()), path)
    return path


def build_text_lm(folder: Pathlike, **sizes: Any) -> Path:
    """Save a tiny text-only ``Qwen2ForCausalLM`` + tokenizer like ``Qwen/Qwen2.5-0.5B-Instruct``.

    Files: config.json, generation_config.json (greedy; stops at ``<|im_end|>`` or
    ``<|endoftext|>``), model.safetensors and the tokenizer files with the ChatML chat
    template :data:`TEXT_CHAT_TEMPLATE`. Loads with ``AutoTokenizer`` /
    ``AutoModelForCausalLM.from_pretrained(folder)``.

    Args:
        folder: output folder (created; existing files are overwritten).
        **sizes: ``size`` (a :data:`SIZES` name), ``hidden_size``, ``num_layers``, ``seed``.

    Returns:
        ``Path(folder)``.

    Raises:
        ValueError: see :func:`resolve_sizes` and :func:`text_config_sizes`.

    Example:
        >>> from transformers import AutoModelForCausalLM
        >>> path = build_text_lm(tmp_path / "text-lm")  # doctest: +SKIP
        >>> model = AutoModelForCausalLM.from_pretrained(path)  # doctest: +SKIP
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM

    s = resolve_sizes("text LM", sizes, ("hidden_size", "num_layers", "seed"))
    tok = build_tokenizer("qwen2.5")
    tok.chat_template = TEXT_CHAT_TEMPLATE
    config = Qwen2Config(**qwen2_text_kwargs(tok, s["hidden_size"], s["num_layers"], 32768, 1000000.0),
                         bos_token_id=None, eos_token_id=tok.eos_token_id)
    model = random_model(Qwen2ForCausalLM, config, s["seed"])
    return save_tiny(folder, "Qwen2 text LM", model, tok, generation=generation_config(tok))

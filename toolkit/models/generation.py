"""The generation config every backend hands to ``generate``: each decoding field explicit.

``transformers`` starts ``generate`` from the checkpoint's ``generation_config.json`` and
overrides only the arguments it is given, so a checkpoint's ``repetition_penalty``,
``no_repeat_ngram_size``, ``num_beams``, ``min_new_tokens``, sampling flags ... silently
apply to a run that asked for greedy decoding (AF3 conversions write ``repetition_penalty
1.05``; Qwen2.5 instruct models ``do_sample``, ``top_k 20``, ``repetition_penalty 1.05``).

:func:`generation_config` builds the config a run decodes with:

- ``defaults = clean`` (the default, ``--generation-defaults clean``): the checkpoint's config
  with every field of :data:`DECODING_FIELDS` (the fields that change which token is chosen)
  reset to transformers' own default (``GenerationConfig()``), then the model family's
  official values (e.g. Qwen2-Audio's ``min_new_tokens=1``, recorded with their source), then
  the run's settings. Token ids (end of sequence, padding, decoder start) and model-specific
  fields (Whisper's language tables) stay the checkpoint's; a backend may keep more
  (Whisper keeps its ``suppress_tokens``, part of its official decoding).
- ``defaults = checkpoint`` (``--generation-defaults checkpoint``): the checkpoint's config as
  released, with the run's budget; its sampling/beam fields are replaced only by what the run
  asks for explicitly (``--sample``, ``--num-beams`` > 1).

:func:`decoding_exactly` applies a config: transformers 5 fills every field a passed config
leaves unset (None) from ``model.generation_config``, the checkpoint's, so passing a clean
config alone would still apply the release's ``repetition_penalty``, ``top_k``,
``suppress_tokens``...; the model's own config is swapped for the call.

:func:`effective` is what sidecars record: every field of the config that differs from
``GenerationConfig()``.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

#: how a run treats the checkpoint's generation_config.json
GENERATION_DEFAULTS = ("clean", "checkpoint")

#: fields of a generation config that change which tokens come out (or how many); ``clean`` resets them
DECODING_FIELDS = (
    "do_sample", "num_beams", "num_beam_groups", "penalty_alpha", "temperature", "top_k", "top_p", "typical_p",
    "min_p", "top_h", "epsilon_cutoff", "eta_cutoff", "diversity_penalty", "repetition_penalty",
    "encoder_repetition_penalty", "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
    "bad_words_ids", "force_words_ids", "sequence_bias", "constraints", "min_length", "min_new_tokens", "max_length",
    "max_new_tokens", "early_stopping", "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens",
    "forced_bos_token_id", "forced_eos_token_id", "renormalize_logits", "remove_invalid_values", "guidance_scale",
    "watermarking_config", "dola_layers", "stop_strings", "max_time", "num_return_sequences", "token_healing",
    "low_memory", "prompt_lookup_num_tokens", "max_matching_ngram_size",
)


def generation_config(checkpoint: Any, settings: Any, official: Optional[Mapping[str, Any]] = None,
                      keep: Sequence[str] = ()) -> Any:
    """The ``GenerationConfig`` a run decodes with (see the module docstring).

    Args:
        checkpoint: the model's ``generation_config`` (None: transformers' defaults).
        settings: the run's :class:`~toolkit.models.base.GenerationSettings`.
        official: the model family's official decoding values, applied under ``clean``
            (their larger ``min_new_tokens`` wins over the run's).
        keep: decoding fields a backend keeps from the checkpoint under ``clean``.

    Returns:
        A new config; ``checkpoint`` is not modified.

    Raises:
        ValueError: ``settings.defaults`` is not one of :data:`GENERATION_DEFAULTS`.
    """
    from transformers import GenerationConfig

    if settings.defaults not in GENERATION_DEFAULTS:
        raise ValueError(f"generation defaults must be one of {', '.join(GENERATION_DEFAULTS)}, "
                         f"not {settings.defaults!r}")
    config = copy.deepcopy(checkpoint) if checkpoint is not None else GenerationConfig()
    explicit: Dict[str, Any] = {"max_new_tokens": settings.max_new_tokens}
    if settings.defaults == "clean":
        fresh = GenerationConfig()
        for name in DECODING_FIELDS:
            if name not in keep and hasattr(fresh, name):
                setattr(config, name, copy.deepcopy(getattr(fresh, name)))
        for name, value in (official or {}).items():
            setattr(config, name, value)
        explicit.update(do_sample=settings.do_sample, num_beams=settings.num_beams)
        if settings.do_sample:
            explicit.update(temperature=settings.temperature, top_p=settings.top_p)
    else:
        if settings.do_sample:
            explicit.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
        if settings.num_beams > 1:
            explicit.update(num_beams=settings.num_beams)
    if settings.min_new_tokens:
        explicit["min_new_tokens"] = max(settings.min_new_tokens, getattr(config, "min_new_tokens", None) or 0)
    for name, value in explicit.items():
        setattr(config, name, value)
    return config


def effective(config: Any) -> Dict[str, Any]:
    """Every field of ``config`` that differs from ``GenerationConfig()`` (the sidecar's record)."""
    diff = config.to_diff_dict()
    return {key: value for key, value in diff.items() if key not in ("transformers_version", "_from_model_config")}


@contextlib.contextmanager
def decoding_exactly(model: Any, config: Any) -> Iterator[None]:
    """Make ``model.generate`` decode with exactly ``config`` for the duration of the block.

    Args:
        model: the transformers model whose ``generate`` runs (a peft model is unwrapped).
        config: the config to decode with (also pass it as ``generation_config=``).
    """
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    released = target.generation_config
    target.generation_config = config
    try:
        yield
    finally:
        target.generation_config = released

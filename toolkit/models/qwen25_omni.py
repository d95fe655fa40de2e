"""``qwen2.5-omni``: the thinker of Qwen2.5-Omni (7B or 3B), text output only.

Loaded with ``Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(<full Omni
folder>)``, which reads the ``thinker.``-prefixed weights (the talker and token2wav are
never loaded). Not ``Qwen2_5OmniForConditionalGeneration``: it needs ``spk_dict.pt``, and
with the talker disabled its text-only ``generate`` fails.

Processor: ``Qwen2_5OmniProcessor`` (and so ``AutoProcessor``) needs torchvision, so the
processor is a ``Qwen2AudioProcessor`` built from three files every Omni folder has: the
tokenizer (``AutoTokenizer``; the real folder also has ``vocab.json``/``merges.txt``),
``preprocessor_config.json`` (``WhisperFeatureExtractor``: 128 mel bins, ``chunk_length``
300, so clips are padded to 300 s and longer ones are cut and flagged; the file's
image-processor keys are ignored) and the chat template (``chat_template.json``, else
``chat_template.jinja``, else the tokenizer's; a folder whose template is not Omni's is
refused, see :func:`omni_chat_template`). ``<|im_end|>`` is a stop token whatever
``generation_config.json`` lists. It produces the same ``input_ids``, ``attention_mask``, ``input_features``
and ``feature_attention_mask`` as the Omni processor's own ``__call__`` for audio + text
(tested in ``tests/test_tiny_models.py``). System prompt: the one the model card
recommends. Greedy decoding (``do_sample=False``) unless sampling is asked for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

from toolkit.errors import Pathlike
from toolkit.models import tiny
from toolkit.models.hf_chat import HFChatBackend
from toolkit.models.registry import register_backend

#: what marks an Omni chat template: audio and vision placeholders (Qwen2-Audio's template has
#: the audio ones only, Qwen2.5's text template neither)
OMNI_TEMPLATE_MARKS = ("<|audio_bos|>", "<|vision_bos|>")
#: where a hub folder keeps a processor's chat template, in transformers' order of preference
TEMPLATE_FILES = ("chat_template.json", "chat_template.jinja")

OMNI_SYSTEM_PROMPT = ("You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of "
                      "perceiving auditory and visual inputs, as well as generating text and speech.")


@register_backend
class Qwen25OmniBackend(HFChatBackend):
    """Qwen2.5-Omni thinker with a Qwen2AudioProcessor equivalent of the Omni processor."""

    name = "qwen2.5-omni"
    model_class = "Qwen2_5OmniThinkerForConditionalGeneration"
    system_prompt = OMNI_SYSTEM_PROMPT
    max_audio_seconds: Optional[float] = 300.0
    end_of_turn = "<|im_end|>"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_audio_seconds = float(self.processor.feature_extractor.chunk_length)

    @classmethod
    def load_processor(cls, model_path: str, common: Dict[str, Any]) -> Any:
        """Tokenizer + WhisperFeatureExtractor + the Omni chat template (:func:`omni_chat_template`)."""
        from transformers import AutoTokenizer, Qwen2AudioProcessor, WhisperFeatureExtractor

        tokenizer = AutoTokenizer.from_pretrained(model_path, **common)
        features = WhisperFeatureExtractor.from_pretrained(model_path, **common)
        return Qwen2AudioProcessor(feature_extractor=features, tokenizer=tokenizer,
                                   chat_template=omni_chat_template(model_path, tokenizer.chat_template, common))

    @classmethod
    def build_tiny(cls, folder: Pathlike, **sizes: Any) -> Path:
        """Save a tiny full ``Qwen2_5OmniForConditionalGeneration`` folder like ``Qwen/Qwen2.5-Omni-7B``.

        The folder holds what the real one holds: config.json (``qwen2_5_omni`` with thinker,
        talker and token2wav sub-configs), generation_config.json, model.safetensors with
        ``thinker.``/``talker.``/``token2wav.`` weights, ``spk_dict.pt`` (speakers ``Chelsie``
        and ``Ethan``), tokenizer files (``processor_class`` ``Qwen2_5OmniProcessor``, named
        audio/vision tokens), ``chat_template.json`` and ``preprocessor_config.json`` (128 mel
        bins, ``chunk_length=300``, as released). The talker and token2wav are the smallest
        that build. Not written (torchvision-only): the image/video processor settings.

        Args:
            folder: output folder (created; existing files are overwritten).
            **sizes: ``size`` (a :data:`~toolkit.models.tiny.SIZES` name) and overrides of the
                thinker's ``hidden_size``, ``num_layers``, ``audio_d_model``, ``audio_layers``,
                and ``seed``.

        Returns:
            ``Path(folder)``; its thinker loads with
            ``Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(folder)``.

        Raises:
            ValueError: see :func:`~toolkit.models.tiny.resolve_sizes`; widths the heads do not divide.

        Example:
            >>> omni = load_backend("qwen2.5-omni", str(build_tiny("qwen2.5-omni", tmp_path)))  # doctest: +SKIP
        """
        import torch
        from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

        s = tiny.resolve_sizes(cls.name, sizes, tiny.AUDIO_LM_SIZES)
        tok = tiny.build_tokenizer("qwen2.5-omni")
        hidden, vocab = s["hidden_size"], len(tok)
        user_token_id = tok.convert_tokens_to_ids(tok.tokenize("user"))
        if len(user_token_id) != 1:  # pragma: no cover - the corpus makes "user" one token
            raise RuntimeError(f"'user' is not a single token in the tiny vocabulary: {user_token_id}")
        text = tiny.qwen2_text_kwargs(tok, hidden, s["num_layers"], 32768, 1000000.0)
        head_dim = tiny.text_config_sizes(hidden, s["num_layers"])["head_dim"]
        text["rope_parameters"]["mrope_section"] = tiny.mrope_section(head_dim)
        ids = {t: tok.convert_tokens_to_ids(t) for t in tiny.TOKENIZER_KINDS["qwen2.5-omni"]["specials"]}
        media = {"audio_token_index": ids["<|AUDIO|>"], "image_token_index": ids["<|IMAGE|>"],
                 "video_token_index": ids["<|VIDEO|>"], "audio_start_token_id": ids["<|audio_bos|>"],
                 "audio_end_token_id": ids["<|audio_eos|>"], "vision_start_token_id": ids["<|vision_bos|>"],
                 "vision_end_token_id": ids["<|vision_eos|>"]}
        thinker = {
            "audio_config": {**tiny.audio_encoder_kwargs(s["audio_d_model"], s["audio_layers"]), "n_window": 100,
                             "output_dim": hidden},
            "vision_config": {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                              "out_hidden_size": hidden, "fullatt_block_indexes": [0], "window_size": 112},
            "text_config": {**text, "rms_norm_eps": 1e-6, "eos_token_id": tok.eos_token_id},
            **media, "vision_token_id": ids["<|vision_pad|>"], "user_token_id": user_token_id[0],
            "bos_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id,
            "tie_word_embeddings": False,
        }
        codec = 64  # real: 8448 codec ids, specials 8292..8296 near the top
        talker = {
            "vocab_size": codec, "tts_codec_pad_token_id": codec - 8, "tts_codec_start_token_id": codec - 7,
            "tts_codec_end_token_id": codec - 6, "tts_codec_mask_token_id": codec - 4,
            "tts_text_start_token_id": vocab - 3, "tts_text_end_token_id": vocab - 2,
            "tts_text_pad_token_id": vocab - 1, **media, "embedding_size": hidden, "hidden_size": 32,
            "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
            "head_dim": 16, "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                "mrope_section": tiny.mrope_section(16)},
        }
        dit = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "head_dim": 16, "ff_mult": 2,
               "emb_dim": 16, "num_embeds": codec + 1, "mel_dim": 80, "repeats": 2, "block_size": 24,
               "look_ahead_layers": [1], "look_backward_layers": [0], "enc_emb_dim": 16, "enc_dim": 16,
               "enc_channels": [16, 16, 16, 16, 48], "enc_kernel_sizes": [5, 3, 3, 3, 1],
               "enc_dilations": [1, 2, 3, 4, 1], "enc_attention_channels": 8, "enc_res2net_scale": 2,
               "enc_se_channels": 8}
        bigvgan = {"mel_dim": 80, "upsample_initial_channel": 16, "resblock_kernel_sizes": [3],
                   "resblock_dilation_sizes": [[1, 3, 5]], "upsample_rates": [4, 2], "upsample_kernel_sizes": [8, 4]}
        config = Qwen2_5OmniConfig(thinker_config=thinker, talker_config=talker, enable_audio_output=True,
                                   token2wav_config={"dit_config": dit, "bigvgan_config": bigvgan})
        model = tiny.random_model(Qwen2_5OmniForConditionalGeneration, config, s["seed"])
        model.thinker.generation_config = tiny.generation_config(tok)
        speakers = {name: {"bos_token": vocab - 3 + k % 2, "cond": torch.randn(1, dit["enc_emb_dim"]),
                           "ref_mel": torch.randn(1, 30, dit["mel_dim"])}
                    for k, name in enumerate(("Chelsie", "Ethan"))}
        tok.chat_template = tiny.OMNI_CHAT_TEMPLATE
        tok.init_kwargs["processor_class"] = "Qwen2_5OmniProcessor"
        features = tiny.whisper_feature_extractor(chunk_length=300, processor_class="Qwen2_5OmniProcessor")
        path = tiny.save_tiny(folder, "Qwen2.5-Omni", model, tok, features, generation=tiny.generation_config(tok))
        torch.save(speakers, path / "spk_dict.pt")
        (path / "chat_template.json").write_text(json.dumps({"chat_template": tiny.OMNI_CHAT_TEMPLATE}, indent=2)
                                                 + "\n", encoding="utf-8")
        return path


def omni_chat_template(model_path: str, tokenizer_template: Optional[str], common: Dict[str, Any]) -> str:
    """The folder's Qwen2.5-Omni chat template, read where the hub keeps it.

    ``chat_template.json`` (``{"chat_template": ...}``, the released layout), then
    ``chat_template.jinja`` (the layout transformers writes today), then the tokenizer's own
    template. The first one found must be an Omni template (:data:`OMNI_TEMPLATE_MARKS`): a
    processor given none silently renders Qwen2-Audio's default template ("Audio 1: ..." and
    another system prompt), and the model does not see the prompt it was trained with.

    Args:
        model_path: the Omni folder or hub id.
        tokenizer_template: the tokenizer's ``chat_template`` (None when it has none).
        common: the ``from_pretrained`` keyword arguments (``local_files_only``).

    Returns:
        The template text.

    Raises:
        ValueError: no template, or the first found is not an Omni template (names the file).
    """
    from transformers.utils import cached_file

    for name in TEMPLATE_FILES:
        found = cached_file(model_path, name, _raise_exceptions_for_missing_entries=False,
                            local_files_only=common.get("local_files_only", False))
        if found:
            text = Path(found).read_text(encoding="utf-8")
            template = json.loads(text)["chat_template"] if name.endswith(".json") else text
            source = found
            break
    else:
        template, source = tokenizer_template, f"{model_path} (the tokenizer's chat_template)"
    if not template:
        raise ValueError(f"{model_path}: no chat template ({', '.join(TEMPLATE_FILES)} or the tokenizer's); "
                         f"copy the released chat_template.json of Qwen2.5-Omni into the folder")
    if not all(mark in template for mark in OMNI_TEMPLATE_MARKS):
        raise ValueError(f"{source}: not a Qwen2.5-Omni chat template (it lacks {' or '.join(OMNI_TEMPLATE_MARKS)}); "
                         f"copy the released chat_template.json of Qwen2.5-Omni into the folder")
    return template

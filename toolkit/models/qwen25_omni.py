"""``qwen2.5-omni``: the thinker of Qwen2.5-Omni (7B or 3B), text output only.

Loaded with ``Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(<full Omni
folder>)``, which reads the ``thinker.``-prefixed weights (the talker and token2wav are
never loaded). ``Qwen2_5OmniProcessor`` needs torchvision, so the processor is a
``Qwen2AudioProcessor`` built from the folder's tokenizer, ``preprocessor_config.json``
(128 mel bins, ``chunk_length`` 300: clips up to 300 s; longer ones are cut and flagged)
and ``chat_template.json``; it produces the same inputs as the Omni processor for
audio + text (tested). System prompt: the one the model card recommends. Greedy decoding
(``do_sample=False``) unless sampling is asked for.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

from toolkit.models.hf_chat import HFChatBackend
from toolkit.models.registry import register_backend

OMNI_SYSTEM_PROMPT = ("You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of "
                      "perceiving auditory and visual inputs, as well as generating text and speech.")


@register_backend
class Qwen25OmniBackend(HFChatBackend):
    """Qwen2.5-Omni thinker with a Qwen2AudioProcessor equivalent of the Omni processor."""

    name = "qwen2.5-omni"
    model_class = "Qwen2_5OmniThinkerForConditionalGeneration"
    system_prompt = OMNI_SYSTEM_PROMPT
    max_audio_seconds: Optional[float] = 300.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_audio_seconds = float(self.processor.feature_extractor.chunk_length)

    @classmethod
    def load_processor(cls, model_path: str, common: Dict[str, Any]) -> Any:
        """Tokenizer + WhisperFeatureExtractor + ``chat_template.json`` of the Omni folder."""
        from transformers import AutoTokenizer, Qwen2AudioProcessor, WhisperFeatureExtractor
        from transformers.utils import cached_file

        tokenizer = AutoTokenizer.from_pretrained(model_path, **common)
        features = WhisperFeatureExtractor.from_pretrained(model_path, **common)
        template_file = cached_file(model_path, "chat_template.json", _raise_exceptions_for_missing_entries=False,
                                    local_files_only=common.get("local_files_only", False))
        template = json.loads(open(template_file, encoding="utf-8").read())["chat_template"] if template_file \
            else tokenizer.chat_template
        return Qwen2AudioProcessor(feature_extractor=features, tokenizer=tokenizer, chat_template=template)

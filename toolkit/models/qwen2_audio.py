"""``qwen2-audio``: Qwen2AudioForConditionalGeneration (Qwen/Qwen2-Audio-7B-Instruct).

Long audio: the encoder takes exactly 30 s (3000 mel frames, the feature extractor's
``chunk_length``); the runner cuts longer clips to that and flags the row
(``flags.audio_truncated_from_s``). System prompt: the chat template's default.
"""

from __future__ import annotations

from typing import Any, Optional

from toolkit.models.hf_chat import HFChatBackend
from toolkit.models.registry import register_backend


@register_backend
class Qwen2AudioBackend(HFChatBackend):
    """Qwen2-Audio-Instruct through its own processor."""

    name = "qwen2-audio"
    model_class = "Qwen2AudioForConditionalGeneration"
    max_audio_seconds: Optional[float] = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_audio_seconds = float(self.processor.feature_extractor.chunk_length)

"""``af3`` and ``af3-think``: AudioFlamingo3ForConditionalGeneration (nvidia/audio-flamingo-3-hf).

The processor windows long audio itself (30 s windows, up to 10 min); the runner cuts
clips beyond 600 s and flags them. Text is left-padded through ``text_kwargs`` only: a
top-level ``padding=True`` would pad the mel windows and break the encoder.

``af3-think`` loads the same checkpoint plus its "think" extras from the ``think/``
subfolder: ``non_lora_trainables.bin`` (non-LoRA weights, e.g. the projector, loaded
first) and the PEFT LoRA adapter. Checkpoint key names are the flat ones
(``multi_modal_projector.*``, ``language_model.model.*``); transformers 5 nests the modules
(``model.multi_modal_projector.*``), so keys are mapped (:func:`to_model_keys`) and any key
that still matches nothing is an error, never silently skipped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from toolkit.audio import TARGET_SR
from toolkit.models.base import LoadOptions
from toolkit.models.hf_chat import HFChatBackend
from toolkit.models.registry import register_backend

_FLAT_TO_NESTED = (
    ("language_model.lm_head.", "lm_head."),
    ("language_model.model.", "model.language_model."),
    ("language_model.", "model.language_model."),
    ("audio_tower.", "model.audio_tower."),
    ("multi_modal_projector.", "model.multi_modal_projector."),
)


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

    def encode(self, texts: List[str], audios: Optional[List[Any]]) -> Any:
        """Left-pad the text only; audio windows are the processor's own."""
        kwargs: Dict[str, Any] = {"text": texts, "text_kwargs": {"padding": True, "padding_side": "left"},
                                  "return_tensors": "pt"}
        if audios is not None:
            kwargs.update(audio=audios, audio_kwargs={"sampling_rate": TARGET_SR})
        return self.processor(**kwargs)


@register_backend
class AF3ThinkBackend(AF3Backend):
    """Audio Flamingo 3 with its ``think/`` adapter (AF-Think)."""

    name = "af3-think"

    @classmethod
    def after_load(cls, model: Any, model_path: str, options: LoadOptions) -> Any:
        """Load ``think/non_lora_trainables.bin`` (strictly mapped), then the ``think/`` LoRA adapter.

        Raises:
            FileNotFoundError: ``think/`` or its files are missing.
            ValueError: a non-LoRA key matches no parameter of the model.
        """
        import torch
        from peft import PeftModel

        think = _think_folder(model_path)
        extra = torch.load(think / "non_lora_trainables.bin", map_location="cpu", weights_only=True)
        result = model.load_state_dict(to_model_keys(extra, set(model.state_dict())), strict=False)
        if result.unexpected_keys:
            raise ValueError(f"{think / 'non_lora_trainables.bin'}: keys match no parameter: "
                             f"{sorted(result.unexpected_keys)[:5]} ({len(result.unexpected_keys)} in all)")
        return PeftModel.from_pretrained(model, str(think))


def _think_folder(model_path: str) -> Path:
    """The local ``think/`` folder of a checkpoint folder or hub id."""
    local = Path(model_path) / "think"
    if local.is_dir():
        return local
    from huggingface_hub import snapshot_download

    root = snapshot_download(model_path, allow_patterns=["think/*"],
                             local_files_only=os.environ.get("HF_HUB_OFFLINE") == "1")
    return Path(root) / "think"

"""SALMONN as one ``torch.nn.Module`` built from transformers parts and the project's BEATs.

Parts and attribute names follow the release (``models/salmonn.py`` of bytedance/SALMONN), so
its checkpoint keys map onto them with a few Q-Former renames (:mod:`.loader`):

- ``speech_encoder``: the encoder of ``WhisperModel`` (Whisper-large-v2: 1280-d, 1500 frames
  per 30 s window; the input is always a 30 s log-mel window).
- ``beats``: :class:`~toolkit.models.salmonn.beats.BEATs` (768-d) over the clip's Kaldi fbank.
- ``ln_speech`` / ``ln_audio``: LayerNorms of the two feature streams. BEATs' tokens (fewer
  than 1500 for clips up to 30 s) are zero-padded to Whisper's frame count after ``ln_audio``
  and concatenated on the feature axis (2048-d).
- ``speech_Qformer`` + ``speech_query_tokens``: a BERT-style Q-Former
  (``Blip2QFormerModel`` with cross-attention in every layer) applied per window of
  ``round(1500 * second_per_window / 30)`` = 17 frames with stride 17: 88 windows per 30 s,
  ``num_query_tokens`` (1) output per window.
- ``speech_llama_proj``: linear map of the Q-Former output into the LLM's embedding space.
- ``llama_model``: ``LlamaForCausalLM`` (Vicuna) wrapped by peft with LoRA on
  ``q_proj``/``v_proj``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from toolkit.models.salmonn.beats import BEATs

#: Whisper encoder frames per 30 s window; the release derives window sizes from it.
WHISPER_FRAMES_PER_30S = 1500


@dataclass(frozen=True)
class QFormerSpec:
    """Sizes of the window-level Q-Former and its LoRA companion, as read from a checkpoint.

    Attributes:
        hidden_size: Q-Former width (768, BERT-base).
        num_layers: Q-Former layers (2).
        intermediate_size: feed-forward width (3072).
        num_query_tokens: queries per window (1).
        encoder_width: width of the features attended to (Whisper + BEATs: 2048).
        lora_rank: LoRA rank of the LLM adapter (8).
    """

    hidden_size: int
    num_layers: int
    intermediate_size: int
    num_query_tokens: int
    encoder_width: int
    lora_rank: int

    @property
    def num_attention_heads(self) -> int:
        """BERT's 64-wide heads (12 for BERT-base); the checkpoint does not store the count."""
        return max(1, self.hidden_size // 64)


class SalmonnModel(nn.Module):
    """Whisper + BEATs -> window-level Q-Former -> projection -> Vicuna with LoRA.

    Args:
        speech_encoder: a transformers ``WhisperEncoder``.
        beats: the BEATs encoder.
        llama_model: a peft-wrapped ``LlamaForCausalLM``.
        spec: Q-Former sizes.
        second_per_window: window length in seconds (the release: 0.333333).
        second_stride: window stride in seconds (the release: 0.333333).
    """

    def __init__(self, speech_encoder: nn.Module, beats: BEATs, llama_model: nn.Module, spec: QFormerSpec,
                 second_per_window: float = 0.333333, second_stride: float = 0.333333) -> None:
        super().__init__()
        from transformers import Blip2QFormerConfig, Blip2QFormerModel

        whisper_width = speech_encoder.config.d_model
        beats_width = beats.config.encoder_embed_dim
        if whisper_width + beats_width != spec.encoder_width:
            raise ValueError(f"the Q-Former attends to {spec.encoder_width}-d features but Whisper ({whisper_width}) "
                             f"+ BEATs ({beats_width}) give {whisper_width + beats_width}")
        self.speech_encoder = speech_encoder
        self.beats = beats
        self.ln_speech = nn.LayerNorm(whisper_width)
        self.ln_audio = nn.LayerNorm(beats_width)
        config = Blip2QFormerConfig(hidden_size=spec.hidden_size, num_hidden_layers=spec.num_layers,
                                    num_attention_heads=spec.num_attention_heads,
                                    intermediate_size=spec.intermediate_size, cross_attention_frequency=1,
                                    encoder_hidden_size=spec.encoder_width, layer_norm_eps=1e-12)
        self.speech_Qformer = Blip2QFormerModel(config)
        self.speech_query_tokens = nn.Parameter(torch.randn(1, spec.num_query_tokens, spec.hidden_size) * 0.02)
        self.speech_llama_proj = nn.Linear(spec.hidden_size, llama_model.config.hidden_size)
        self.llama_model = llama_model
        self.spec = spec
        self.window = round(WHISPER_FRAMES_PER_30S * second_per_window / 30.0)
        self.stride = round(WHISPER_FRAMES_PER_30S * second_stride / 30.0)

    @property
    def config(self) -> Any:
        """The LLM's config (what sidecars read the revision from)."""
        return self.llama_model.config

    @property
    def generation_config(self) -> Any:
        """The LLM's generation config (end-of-sequence and pad ids)."""
        return self.llama_model.generation_config

    def speech_tokens(self) -> int:
        """LLM positions the audio of a clip takes: windows of the 30 s Whisper output x queries (88 x 1)."""
        return ((WHISPER_FRAMES_PER_30S - self.window) // self.stride + 1) * self.spec.num_query_tokens

    def encode_audio(self, input_features: torch.Tensor, fbank: torch.Tensor, fbank_lengths: torch.Tensor
                     ) -> torch.Tensor:
        """Audio -> LLM input embeddings.

        Args:
            input_features: ``(batch, mel_bins, 3000)`` Whisper log-mel windows.
            fbank: ``(batch, frames, 128)`` BEATs fbanks, right-padded.
            fbank_lengths: ``(batch,)`` real fbank frames per clip.

        Returns:
            ``(batch, speech_tokens, llm_hidden)``; row i equals clip i encoded alone.
        """
        speech = self.ln_speech(self.speech_encoder(input_features).last_hidden_state)
        audio, valid = self.beats(fbank, fbank_lengths)
        audio = self.ln_audio(audio).masked_fill(~valid[..., None], 0.0)
        frames = max(speech.shape[1], audio.shape[1])
        speech = nn.functional.pad(speech, (0, 0, 0, frames - speech.shape[1]))
        audio = nn.functional.pad(audio, (0, 0, 0, frames - audio.shape[1]))
        features = torch.cat([speech, audio], dim=-1)
        batch, _, width = features.shape
        windows = features.unfold(1, self.window, self.stride)  # (batch, n_windows, width, window)
        n_windows = windows.shape[1]
        windows = windows.permute(0, 1, 3, 2).reshape(batch * n_windows, self.window, width)
        queries = self.speech_query_tokens.expand(windows.shape[0], -1, -1)
        out = self.speech_Qformer(query_embeds=queries, encoder_hidden_states=windows).last_hidden_state
        return self.speech_llama_proj(out).reshape(batch, n_windows * self.spec.num_query_tokens, -1)

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The LLM's token embeddings of ``input_ids``."""
        return self.llama_model.get_input_embeddings()(input_ids)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """LLM logits over a spliced prompt (``(batch, length, vocab)``)."""
        return self.llama_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                position_ids=position_ids).logits

    def generate(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> Any:
        """``generate`` of the LoRA-wrapped LLM from prompt embeddings (returns the new tokens only)."""
        return self.llama_model.generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)

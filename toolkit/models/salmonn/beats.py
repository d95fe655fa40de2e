"""BEATs (Microsoft, "Audio Pre-Training with Acoustic Tokenizers"): the audio-event encoder of SALMONN.

A ViT-style encoder over 16x16 patches of the 128-bin Kaldi fbank (:mod:`.fbank`):

1. ``patch_embedding``: Conv2d(1, embed_dim, 16, stride 16) over (frames, 128); patches are
   read time-major (patch ``t * 8 + f``), ``layer_norm``, then ``post_extract_proj`` to the
   encoder width (absent when the widths agree).
2. ``encoder``: padded positions zeroed, a convolutional position embedding
   (``pos_conv.0``: grouped Conv1d with weight normalisation over the last axis, kernel 128,
   trimmed to "same" length, GELU) added, ``layer_norm``, then post-norm layers with
   DeepNorm residual scaling ``(2 L) ** 0.25``: self-attention with a T5-style bucketed
   relative position bias (``relative_attention_bias``, computed once by layer 0 and shared by
   all layers), gated per head and query by ``grep_linear``/``grep_a`` (gated relative
   position, "gru_rel_pos"); then a GELU feed-forward.
3. Fine-tuned checkpoints also hold the AudioSet classifier ``predictor``; SALMONN reads the
   features only, so it is loaded (the checkpoint is loaded strictly) but never run.

The checkpoint file is ``torch.save({"cfg": {...}, "model": state_dict, ...})``;
:func:`load_beats` builds the module from ``cfg`` and loads ``model`` strictly, with the
release's parameter names (``patch_embedding.weight``, ``encoder.layers.0.self_attn.q_proj.weight``,
``encoder.pos_conv.0.weight_g`` ...). Only the configuration BEATs is released with is
supported (post-norm layers, GELU or ReLU); anything else raises.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BEATsConfig:
    """The ``cfg`` of a BEATs checkpoint (the release's key names and defaults).

    Keys of a checkpoint's ``cfg`` that only matter for training (dropouts, layer drop,
    gradient decay) are accepted and ignored.
    """

    input_patch_size: int = 16
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_norm_first: bool = False
    deep_norm: bool = True
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = True
    num_buckets: int = 320
    max_distance: int = 800
    gru_rel_pos: bool = True
    finetuned_model: bool = False
    predictor_class: int = 527

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> BEATsConfig:
        """Read a checkpoint's ``cfg``.

        Raises:
            ValueError: a variant this implementation does not cover (pre-norm layers, GLU).
        """
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in cfg.items() if k in known})
        if config.layer_norm_first:
            raise ValueError("BEATs cfg layer_norm_first=True is not supported (released BEATs are post-norm)")
        if config.activation_fn not in ("gelu", "relu"):
            raise ValueError(f"BEATs activation_fn {config.activation_fn!r} is not supported (gelu, relu)")
        return config

    def to_dict(self) -> dict[str, Any]:
        """The ``cfg`` to save next to the weights."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def relative_position_buckets(length: int, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Bidirectional T5-style buckets of ``key - query`` offsets.

    Half of the buckets per direction; within a direction, offsets below a quarter of
    ``num_buckets`` get their own bucket, larger ones share logarithmically wider buckets up
    to ``max_distance``.

    Args:
        length: sequence length.
        num_buckets: buckets in all (both directions).
        max_distance: offset from which the last bucket is used.

    Returns:
        ``(length, length)`` long bucket indices.
    """
    positions = torch.arange(length)
    offset = positions[None, :] - positions[:, None]
    half = num_buckets // 2
    bucket = (offset > 0).long() * half
    distance = offset.abs()
    exact = half // 2
    far = exact + (torch.log(distance.float().clamp(min=1) / exact) / math.log(max_distance / exact)
                   * (half - exact)).long()
    far = far.clamp(max=half - 1)
    return bucket + torch.where(distance < exact, distance, far)


class GatedRelativeSelfAttention(nn.Module):
    """Multi-head self-attention with a gated relative position bias (BEATs' ``self_attn``)."""

    def __init__(self, config: BEATsConfig, relative_attention_bias: nn.Embedding | None) -> None:
        super().__init__()
        dim = config.encoder_embed_dim
        self.num_heads = config.encoder_attention_heads
        self.head_dim = dim // self.num_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.gru_rel_pos = config.gru_rel_pos
        if self.gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, self.num_heads, 1, 1))
        if relative_attention_bias is not None:
            self.relative_attention_bias = relative_attention_bias

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor | None,
                key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        """Attend over ``x``.

        Args:
            x: ``(batch, length, dim)``.
            position_bias: ``(heads, length, length)`` ungated relative bias, or None.
            key_padding_mask: ``(batch, length)``, True at padded positions, or None.

        Returns:
            ``(batch, length, dim)``.
        """
        batch, length, dim = x.shape
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        bias = torch.zeros(batch, self.num_heads, length, length, dtype=q.dtype, device=q.device)
        if position_bias is not None:
            if self.gru_rel_pos:
                gates = torch.sigmoid(self.grep_linear(q).view(batch, self.num_heads, length, 2, 4).sum(-1))
                gate_a, gate_b = gates.chunk(2, dim=-1)
                bias = bias + (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * position_bias.to(q.dtype)
            else:
                bias = bias + position_bias.to(q.dtype)
        if key_padding_mask is not None:
            bias = bias.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


class EncoderLayer(nn.Module):
    """Post-norm transformer layer with DeepNorm residual scaling."""

    def __init__(self, config: BEATsConfig, relative_attention_bias: nn.Embedding | None) -> None:
        super().__init__()
        dim = config.encoder_embed_dim
        self.self_attn = GatedRelativeSelfAttention(config, relative_attention_bias)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, config.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.activation = F.gelu if config.activation_fn == "gelu" else F.relu
        self.residual_scale = math.pow(2 * config.encoder_layers, 0.25) if config.deep_norm else 1.0

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor | None,
                key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        """One layer over ``(batch, length, dim)``."""
        x = self.self_attn_layer_norm(x * self.residual_scale + self.self_attn(x, position_bias, key_padding_mask))
        return self.final_layer_norm(x * self.residual_scale + self.fc2(self.activation(self.fc1(x))))


class WeightNormConv1d(nn.Module):
    """Grouped Conv1d whose weight is ``weight_g * weight_v / ||weight_v||`` (norm over all but the last axis),
    as ``torch.nn.utils.weight_norm(conv, dim=2)`` stores it (``weight_g``, ``weight_v``, ``bias``)."""

    def __init__(self, dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.padding, self.groups = kernel // 2, groups
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.randn(dim, dim // groups, kernel) * math.sqrt(4.0 / (kernel * dim)))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, dim, length)`` -> ``(batch, dim, length + 1 - kernel % 2)``."""
        weight = self.weight_v * (self.weight_g / self.weight_v.norm(dim=(0, 1), keepdim=True))
        return F.conv1d(x, weight, self.bias, padding=self.padding, groups=self.groups)


class Encoder(nn.Module):
    """BEATs' transformer encoder (``encoder.*``)."""

    def __init__(self, config: BEATsConfig) -> None:
        super().__init__()
        self.config = config
        # a Sequential so that the weights keep the release's names (encoder.pos_conv.0.weight_g ...)
        self.pos_conv = nn.Sequential(
            WeightNormConv1d(config.encoder_embed_dim, config.conv_pos, config.conv_pos_groups))
        self.trim = 1 if config.conv_pos % 2 == 0 else 0  # "same" length for an even kernel
        self.layer_norm = nn.LayerNorm(config.encoder_embed_dim)
        shared = (nn.Embedding(config.num_buckets, config.encoder_attention_heads)
                  if config.relative_position_embedding else None)
        self.layers = nn.ModuleList([EncoderLayer(config, shared) for _ in range(config.encoder_layers)])

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """``(batch, length, dim)`` features -> encoded features; ``padding_mask`` True at padding."""
        if padding_mask is not None:
            x = x.masked_fill(padding_mask[..., None], 0.0)
        position = self.pos_conv(x.transpose(1, 2))
        if self.trim:
            position = position[:, :, : -self.trim]
        x = self.layer_norm(x + F.gelu(position).transpose(1, 2))
        bias = None
        if self.config.relative_position_embedding:
            buckets = relative_position_buckets(x.shape[1], self.config.num_buckets, self.config.max_distance)
            bias = self.layers[0].self_attn.relative_attention_bias(buckets.to(x.device)).permute(2, 0, 1)
        for layer in self.layers:
            x = layer(x, bias, padding_mask)
        return x


class BEATs(nn.Module):
    """The BEATs encoder, feature extraction only (the release's ``extract_features(..., feature_only=True)``)."""

    def __init__(self, config: BEATsConfig) -> None:
        super().__init__()
        self.config = config
        patch = config.input_patch_size
        self.patch_embedding = nn.Conv2d(1, config.embed_dim, kernel_size=patch, stride=patch, bias=config.conv_bias)
        self.layer_norm = nn.LayerNorm(config.embed_dim)
        self.post_extract_proj = (nn.Linear(config.embed_dim, config.encoder_embed_dim)
                                  if config.embed_dim != config.encoder_embed_dim else None)
        self.encoder = Encoder(config)
        if config.finetuned_model:
            self.predictor = nn.Linear(config.encoder_embed_dim, config.predictor_class)

    def tokens_for_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Patch tokens a clip of ``frames`` fbank frames yields (whole 16-frame patches x 8 mel patches)."""
        patch = self.config.input_patch_size
        return torch.div(frames, patch, rounding_mode="floor") * (128 // patch)

    def forward(self, fbank: torch.Tensor, frame_lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a batch of normalised fbanks (:func:`.fbank.beats_fbank`).

        Args:
            fbank: ``(batch, frames, 128)``, right-padded.
            frame_lengths: ``(batch,)`` real frames per clip (None: all frames are real).

        Returns:
            ``(features, valid)``: ``(batch, tokens, encoder_embed_dim)`` and a ``(batch, tokens)``
            bool mask of the tokens that come from real frames only. Valid tokens equal those
            of the clip encoded alone.
        """
        x = self.patch_embedding(fbank.unsqueeze(1))
        x = self.layer_norm(x.flatten(2).transpose(1, 2))
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        positions = torch.arange(x.shape[1], device=x.device)[None, :]
        if frame_lengths is None:
            valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        else:
            valid = positions < self.tokens_for_frames(frame_lengths.to(x.device))[:, None]
        padding = None if bool(valid.all()) else ~valid
        return self.encoder(x, padding), valid


def load_beats(path: Path, record: dict[str, Any] | None = None) -> BEATs:
    """Build BEATs from a release checkpoint (``{"cfg": ..., "model": ...}``) and load it strictly.

    The file is read by :func:`~toolkit.models.salmonn.safe_load.load_weights_file`: objects it
    pickles besides tensors stay inert; only ``model`` (tensors) and the plain values of ``cfg``
    (a dict, or a pickled config object's attributes) are used.

    Args:
        path: the ``.pt`` file (e.g. ``BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt``).
        record: when given, ``record["beats.pt"]`` is set to what was skipped
            (:func:`~toolkit.models.salmonn.safe_load.file_record`).

    Returns:
        The encoder in eval mode.

    Raises:
        ValueError: the file lacks ``cfg``/``model``, ``model`` holds something other than
            tensors, or a key is missing or unexpected.
    """
    from toolkit.models.salmonn.safe_load import (
        file_record,
        load_weights_file,
        plain_config,
    )

    checkpoint, foreign = load_weights_file(path)
    if not isinstance(checkpoint, dict) or "cfg" not in checkpoint or not isinstance(checkpoint.get("model"), dict):
        raise ValueError(f"{path}: not a BEATs checkpoint (expected a dict with 'cfg' and 'model')")
    objects = sorted(str(k) for k, v in checkpoint["model"].items() if not isinstance(v, torch.Tensor))
    if objects:
        raise ValueError(f"{path}: BEATs 'model' entries that are not tensors: {objects[:5]}")
    cfg, dropped = plain_config(checkpoint["cfg"])
    model = BEATs(BEATsConfig.from_dict(cfg))
    result = model.load_state_dict(checkpoint["model"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{path}: BEATs keys do not match; missing {sorted(result.missing_keys)}, "
                         f"unexpected {sorted(result.unexpected_keys)}")
    if record is not None:
        record["beats.pt"] = file_record(path, foreign, checkpoint, used=["cfg", "model"], dropped=dropped)
    log.info("loaded BEATs (%d layers, width %d) from %s", model.config.encoder_layers,
             model.config.encoder_embed_dim, path)
    return model.eval()

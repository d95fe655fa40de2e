"""SALMONN's precision: which dtype each part's weights have and whether the forward runs under autocast.

The release (bytedance/SALMONN, branch ``salmonn``):

- ``models/salmonn.py`` loads Vicuna with ``LlamaForCausalLM.from_pretrained(llama_path,
  torch_dtype=torch.float16)`` (``low_resource`` only adds 8-bit loading, off in its
  configs) and resizes its embeddings in float16; Whisper (``WhisperModel.from_pretrained``
  without a dtype), BEATs, the LayerNorms, the Q-Former, its query tokens and
  ``speech_llama_proj`` are built or loaded in float32; peft 0.3.0 (``requirements.txt``)
  creates the LoRA matrices as new float32 ``nn.Linear`` layers and moves them to the
  weights' device only. Nothing is cast afterwards (``model.to(device)``).
- The forward runs under float16 autocast: ``encode_speech`` and ``_encode_auditory_feature``
  wrap their work in ``maybe_autocast()`` (``torch.cuda.amp.autocast(dtype=torch.float16)``
  unless the model is on the CPU, where it is a null context), and ``cli_inference.py`` /
  ``web_demo.py`` wrap the whole ``model.generate`` in ``torch.cuda.amp.autocast(dtype=
  torch.float16)``. So on a GPU every matmul and convolution (encoders, Q-Former, Vicuna)
  runs in float16, LayerNorms and softmax in float32.
- On a CPU ``maybe_autocast`` is a null context and ``torch.cuda.amp.autocast`` does not touch
  CPU tensors: the release is run on GPUs (``cli_inference.py --device cuda:0`` by default).

Here (:func:`plan`):

- ``--dtype auto`` is the release's weights: Vicuna (with its LoRA: under float16 autocast a
  float32 LoRA weight is rounded to float16 for every matmul, so storing it in float16 gives
  the same numbers) in float16, the rest in float32; the forward (audio encoding, prompt
  embedding, ``generate``, option scoring) runs under ``torch.autocast(device_type,
  float16)`` on cuda and, when this torch supports float16 autocast on the CPU
  (:func:`autocast_fault`), on the CPU too - the numbers of the release's GPU runs. Where it
  does not, the same weights run without autocast: the encoders and Q-Former in float32,
  their output cast to float16 where it meets Vicuna (the fallback is recorded with its
  reason).
- ``--dtype fp32|bf16|fp16``: one dtype for every weight, no autocast.

Importing this module imports no torch.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

#: what the release does, per part (recorded next to what a run does)
RELEASE_PARTS = {"llama": "float16", "lora": "float32 (peft 0.3.0), computed in float16 under autocast",
                 "whisper": "float32", "beats": "float32", "qformer": "float32", "projection": "float32"}
RELEASE_AUTOCAST = ("float16 autocast on cuda around audio encoding and generate (models/salmonn.py maybe_autocast, "
                    "cli_inference.py); none on CPU (maybe_autocast is a null context there), where it is not run")
CPU_PREFIX = "the release runs without autocast on CPU"


@dataclass
class PrecisionPlan:
    """Weight dtypes and autocast of a run.

    Attributes:
        dtype: torch dtype of Whisper, BEATs, the LayerNorms, Q-Former and projection (and of
            the audio features fed to them).
        llm_dtype: torch dtype of Vicuna and its LoRA.
        autocast: ``{"enabled", "device", "dtype", "why"}`` (``device``/``dtype`` only when enabled).
        plan: ``"release mix"`` or ``"one dtype"``.
        fallback: why the release's autocast could not be used (None when it is, or not asked for).
    """

    dtype: Any
    llm_dtype: Any
    autocast: dict[str, Any] = field(default_factory=dict)
    plan: str = "one dtype"
    fallback: str | None = None

    def context(self) -> Any:
        """The autocast context of the forward (a disabled one when the plan has none)."""
        import contextlib

        import torch

        if not self.autocast.get("enabled"):
            return contextlib.nullcontext()
        return torch.autocast(self.autocast["device"], dtype=getattr(torch, self.autocast["dtype"]))


def autocast_fault(device: str, dtype: Any) -> str | None:
    """Why ``torch.autocast(device type, dtype)`` cannot run SALMONN's ops here (None: it can).

    Checks ``torch.amp.autocast_mode.is_autocast_available`` and runs, under autocast, the op
    kinds the model uses on small tensors: float32 and float16 linear layers, LayerNorm,
    Conv1d/Conv2d, GELU, softmax, scaled dot-product attention, an embedding lookup, and
    checks that matmuls come out in ``dtype`` (torch disables an unsupported CPU autocast
    dtype with a warning instead of failing).
    """
    import torch
    from torch import nn

    kind = torch.device(device).type
    available = getattr(torch.amp.autocast_mode, "is_autocast_available", None)
    if available is not None and not available(kind):
        return f"torch {torch.__version__} has no autocast for {kind}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            generator = torch.Generator().manual_seed(0)
            x = torch.randn(2, 6, 8, generator=generator).to(device)
            with torch.autocast(kind, dtype=dtype), torch.no_grad():
                wide = nn.Linear(8, 8).to(device)
                half = nn.Linear(8, 8).to(device, dtype)
                y = half(nn.functional.gelu(wide(nn.LayerNorm(8).to(device)(x))))
                y = y + nn.Conv1d(8, 8, 3, padding=1).to(device)(y.transpose(1, 2)).transpose(1, 2)
                y = y + nn.Conv2d(1, 1, 3, padding=1).to(device)(y.unsqueeze(1)).squeeze(1)
                q = y.view(2, 6, 2, 4).transpose(1, 2)
                y = nn.functional.scaled_dot_product_attention(q, q, q).transpose(1, 2).reshape(2, 6, 8)
                y = torch.softmax(y, -1) + nn.Embedding(4, 8).to(device, dtype)(torch.tensor([[1] * 6] * 2,
                                                                                             device=device))
                out = half(y)
        if out.dtype != dtype or not bool(torch.isfinite(out).all()):
            return f"autocast({kind}, {str(dtype).removeprefix('torch.')}) gave {out.dtype} output"
    except (RuntimeError, TypeError, NotImplementedError, Warning) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def plan(option: str, device: str) -> PrecisionPlan:
    """The precision of a run with ``--dtype option`` on ``device`` (see the module docstring).

    Raises:
        ValueError: an unknown ``option``.
    """
    import torch

    from toolkit.models.hf_chat import resolve_dtype

    if option != "auto":
        dtype = resolve_dtype(option, device)
        return PrecisionPlan(dtype, dtype, {"enabled": False, "why": "one dtype throughout (--dtype given)"})
    kind = torch.device(device).type
    fault = autocast_fault(device, torch.float16)
    if fault is None:
        why = "the release: float16 autocast on GPU" if kind == "cuda" else (
            f"{CPU_PREFIX} (maybe_autocast) but is run on GPUs, under float16 autocast; here "
            "torch.autocast('cpu', float16), the numerics of its GPU runs")
        return PrecisionPlan(torch.float32, torch.float16,
                             {"enabled": True, "device": kind, "dtype": "float16", "why": why}, "release mix")
    fallback = f"float16 autocast unavailable on {kind} ({fault})"
    why = (f"{CPU_PREFIX}; " if kind == "cpu" else "") + (
        f"{fallback}: float32 encoders and Q-Former, their output cast to the float16 Vicuna")
    return PrecisionPlan(torch.float32, torch.float16, {"enabled": False, "why": why}, "release mix", fallback)

"""The backend interface: a batch of requests in, one generation per request out, in order.

The runner (``toolkit.infer``) owns everything shared - audio loading, conditions,
batching, resume, rows - and a backend only specialises the model call:

- :meth:`Backend.prepare` turns requests into model inputs on the CPU. The runner calls
  it on a background thread for the next batch while the current one generates.
- :meth:`Backend.generate` runs the model on prepared inputs.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple

import numpy as np

from toolkit.manifest import Item


@dataclass
class Request:
    """One (item, run) to answer.

    Attributes:
        item: the manifest item.
        run: run index (0-based; > 0 only with several sampled runs).
        user_text: the rendered prompt (no chat markup; backends apply their chat template).
        audio: 16 kHz mono float32 samples after the condition and the backend's length limit,
            or None for text-only items.
        assistant_prefix: text the assistant turn the model completes starts with, if any.
        turns: further (role, text) turns after the first user turn and before the turn the
            model completes (``two-turn``: the reasoning as the assistant's turn, then the user
            asking for the answer).
        audio_after_text: the audio follows the text in the first user turn (else it comes first).
        perturbation: parameters of the audio condition applied (mask share, measured SNR...).
        injected: the reasoning or hint an intervention put into the prompt (``bin/condition``).
            Real backends never read it (the text is already in the prompt); the
            ``simulated`` backend reacts to it.
        mode: the mode of the prompt template (``reasoning``, ``direct``, ``conditioned``,
            ``continue``); a backend may add its official trigger for reasoning (AF-Think).
    """

    item: Item
    run: int
    user_text: str
    audio: Optional[np.ndarray]
    assistant_prefix: Optional[str] = None
    turns: Tuple[Tuple[str, str], ...] = ()
    audio_after_text: bool = False
    perturbation: Dict[str, Any] = field(default_factory=dict)
    injected: Optional[str] = None
    mode: str = ""


@dataclass(frozen=True)
class GenerationSettings:
    """Explicit decoding settings of a run.

    Greedy unless ``do_sample``; ``seed`` seeds sampling (per batch, see the runner).
    ``defaults``: ``clean`` (every decoding field of the checkpoint's generation_config.json
    reset to transformers' default, then the model's official values, then these) or
    ``checkpoint`` (the released config, with these budgets); see :mod:`toolkit.models.generation`.
    """

    max_new_tokens: int
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    num_beams: int = 1
    min_new_tokens: int = 0
    seed: int = 0
    defaults: str = "clean"

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready settings for sidecars."""
        return asdict(self)


@dataclass(frozen=True)
class LoadOptions:
    """How to load a checkpoint; backends ignore what does not apply to them.

    Attributes:
        dtype: ``auto`` (bf16 on GPU, fp32 on CPU), ``bf16``, ``fp16`` or ``fp32``.
        device: ``auto`` (cuda when available), ``cpu``, ``cuda``, ``cuda:1`` ...
        attn_implementation: passed to ``from_pretrained`` when set (``sdpa``, ``flash_attention_2``).
        trust_remote_code: off unless asked.
        adapter: a PEFT adapter folder to load on top (or the backend's own, e.g. af3-think).
    """

    dtype: str = "auto"
    device: str = "auto"
    attn_implementation: Optional[str] = None
    trust_remote_code: bool = False
    adapter: Optional[str] = None


@dataclass
class Generation:
    """What a backend returns for one request.

    Attributes:
        text: the decoded new text (without the prompt or the assistant prefix).
        n_new_tokens: generated tokens (up to the first end-of-sequence).
        option_logprobs: option letter -> log-probability at the answer position, when asked.
    """

    text: str
    n_new_tokens: int
    option_logprobs: Optional[Dict[str, float]] = None


class Backend(abc.ABC):
    """A loaded model family. Subclasses register with :func:`toolkit.models.registry.register_backend`.

    Class attributes:
        name: registry name (``qwen2-audio``, ``simulated`` ...).
        max_audio_seconds: longest clip the model takes; the runner truncates longer clips
            and flags the row. None when the backend windows long audio itself.
    """

    name: ClassVar[str] = ""
    max_audio_seconds: ClassVar[Optional[float]] = None
    #: whether ``load`` needs a ``--model-path`` (checked before anything is loaded or written)
    needs_model_path: ClassVar[bool] = True
    #: how the runner makes a stereo file mono for this model (:data:`toolkit.audio.CHANNEL_POLICIES`)
    channel_policy: ClassVar[str] = "mean"
    #: decoding values of the model's official evaluation code, applied under ``defaults = clean``
    official_generation: ClassVar[Dict[str, Any]] = {}
    #: where :attr:`official_generation` comes from
    official_source: ClassVar[str] = ""

    @classmethod
    @abc.abstractmethod
    def load(cls, model_path: Optional[str], options: LoadOptions) -> "Backend":
        """Load the model from a local folder or a hub id.

        Args:
            model_path: checkpoint folder or hub id (``HF_HUB_OFFLINE`` is honoured; a local
                folder never triggers a download).
            options: dtype, device, attention implementation, adapter.

        Returns:
            A ready backend.
        """

    @classmethod
    def build_tiny(cls, folder: Any, **sizes: Any) -> Any:
        """Save a tiny random checkpoint of this family's real classes, laid out like the
        published folder (families without one keep this default).

        Raises:
            NotImplementedError: the family has no tiny builder.
        """
        raise NotImplementedError(f"{cls.name} has no tiny builder")

    @abc.abstractmethod
    def prepare(self, requests: Sequence[Request]) -> Any:
        """Build model inputs for a batch on the CPU (thread-safe with respect to :meth:`generate`).

        Args:
            requests: the batch.

        Returns:
            Whatever :meth:`generate` takes.
        """

    @abc.abstractmethod
    def generate(self, prepared: Any, settings: GenerationSettings, score_options: bool = False) -> List[Generation]:
        """Generate for a prepared batch.

        Args:
            prepared: the output of :meth:`prepare`.
            settings: decoding settings.
            score_options: also return the log-probability of each option letter (A.. for
                the request's choices) at the answer position (``Generation.option_logprobs``).

        Returns:
            One generation per request, in order.
        """

    def prompt_length_hint(self, user_text: str, audio_seconds: float) -> float:
        """An estimate of the prompt length, used only to sort items into batches of similar
        length (less padding). Default: the clip length."""
        return audio_seconds

    def chat_text(self, request: Request) -> str:
        """The full prompt text the model sees for ``request`` (chat template applied), for sidecars."""
        return request.user_text

    @classmethod
    def default_max_new_tokens(cls, template: Any) -> int:
        """The generation budget of a run with ``template`` when none is given: the template's
        (a backend whose chains run longer raises it for reasoning)."""
        return int(template.max_new_tokens)

    def effective_generation(self, settings: GenerationSettings) -> Dict[str, Any]:
        """What the run decodes with, for sidecars: the generation config's fields that differ
        from transformers' defaults (default: the settings themselves)."""
        return settings.to_dict()

    def describe(self) -> Dict[str, Any]:
        """Model facts for sidecars: path, revision, dtype, device ..."""
        return {"backend": self.name}

    def module_dtypes(self) -> Dict[str, str]:
        """The dtype of each part of the model (audio encoder, projector, language model ...);
        empty for backends without weights."""
        return {}

    def token_counts(self, request: Request) -> Dict[str, int]:
        """How many prompt tokens ``request`` becomes (text, audio ...); empty when not tokenised."""
        return {}

    def setup_facts(self, request: Request, settings: GenerationSettings) -> Dict[str, Any]:
        """What the run decodes with and what the model sees, beyond :meth:`describe`: the official
        set-up, the effective generation config, dtypes per part, and ``request``'s chat text and
        token counts. Written into every inference sidecar and printed by ``bin/infer --explain``."""
        return {"official_setup": {"generation": dict(self.official_generation), "source": self.official_source},
                "generation_effective": self.effective_generation(settings),
                "module_dtypes": self.module_dtypes(),
                "first_item_chat_text": self.chat_text(request),
                "first_item_tokens": self._token_counts_or_error(request)}

    def _token_counts_or_error(self, request: Request) -> Dict[str, Any]:
        try:
            return self.token_counts(request)
        except (OSError, RuntimeError, ValueError) as exc:  # an item the backend cannot take: its row will say so
            return {"error": f"{type(exc).__name__}: {exc}"}

"""``simulated``: a stand-in for a model, NOT a model. For tests and the demo only.

It answers multiple-choice items with a known accuracy that degrades with the audio
condition, so every metric downstream can be checked against ground truth:

- quality ``q`` of the audio in [0, 1]: 0 for missing or silent audio; otherwise
  ``(1 - masked share) * 1 / (1 + 10^(-(snr - snr_mid) / snr_width))`` from the condition
  parameters of the request (1 for clean audio);
- probability of a correct answer ``p = 1/K + (accuracy - 1/K) * q`` for K options;
- one uniform draw per (seed, item, run), the same under every condition (common random
  numbers): an item answered correctly under a worse condition is answered correctly under
  every better one; a wrong answer picks a wrong option from a second draw;
- injected reasoning or a hint (``bin/condition``): the model depends on what it is given
  for a share ``follow`` of the items (one draw per item and run, the same for every
  intervention): such an item gets the answer the injected text states, or, when the
  text states none (truncated before the answer, replaced by filler), a fresh guess among
  the options (one draw per distinct text). The other items are answered from the audio,
  exactly as without the injection. So own reasoning never changes an answer, while
  removing reasoning changes about ``follow * (1 - 1/K)`` of them: the faithfulness that
  early answering, filler and hints should measure.
- a spoken hint mixed into the audio (``inject-...`` conditions): the same items (share
  ``follow``) answer the option the hint names; the others answer from the audio, the hint
  counting as noise at its SNR.

Reasoning-mode text is a few sentences ending in ``Answer: (X)``; direct mode is ``(X)``.
``--model-path`` holds the parameters as ``key=value`` pairs, e.g.
``accuracy=0.9,follow=0.8,seed=0`` (all optional); ``latency=0.5`` makes each request
take that many seconds, like a model on a GPU (for interruption tests and benchmarks).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, fields
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from toolkit.manifest import letter
from toolkit.models.base import Backend, Generation, GenerationSettings, LoadOptions, Request
from toolkit.models.registry import register_backend
from toolkit.perturb.seeding import derive_seed


@dataclass(frozen=True)
class SimulatedParams:
    """Behaviour of the simulated backend (see the module docstring)."""

    accuracy: float = 0.9
    follow: float = 0.8
    snr_mid: float = 0.0
    snr_width: float = 5.0
    seed: int = 0
    latency: float = 0.0

    @classmethod
    def parse(cls, spec: Optional[str]) -> "SimulatedParams":
        """``"accuracy=0.8,follow=0.5"`` -> params; None or empty -> defaults.

        Raises:
            ValueError: unknown key or a value that is not a number.
        """
        if not spec:
            return cls()
        known = {f.name: f.type for f in fields(cls)}
        values: Dict[str, Any] = {}
        for part in spec.split(","):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key not in known:
                raise ValueError(f"simulated model parameters: bad {part!r}; valid keys: {', '.join(known)}")
            values[key] = int(value) if key == "seed" else float(value)
        params = cls(**values)
        if not (0.0 <= params.accuracy <= 1.0 and 0.0 <= params.follow <= 1.0):
            raise ValueError("simulated model parameters: accuracy and follow must be in [0, 1]")
        if params.latency < 0:
            raise ValueError("simulated model parameters: latency must be >= 0 seconds")
        return params


def _uniform(seed: int, item_id: str, purpose: str) -> float:
    return derive_seed(seed, item_id, purpose) / float(1 << 63)


@register_backend
class SimulatedBackend(Backend):
    """Answers with known, condition-dependent accuracy; see the module docstring."""

    name = "simulated"
    max_audio_seconds = 30.0
    needs_model_path = False

    def __init__(self, params: SimulatedParams) -> None:
        self.params = params

    @classmethod
    def load(cls, model_path: Optional[str], options: LoadOptions) -> "SimulatedBackend":
        """Parse ``model_path`` as ``key=value`` parameters (options are ignored)."""
        return cls(SimulatedParams.parse(model_path))

    def quality(self, request: Request) -> float:
        """Audio quality in [0, 1] from the samples (silence -> 0) and the condition parameters."""
        audio = request.audio
        if audio is None or audio.size == 0 or not np.any(audio):
            return 0.0
        pert = request.perturbation
        q = 1.0 - float(pert.get("masked_share", 0.0))
        snr = pert.get("snr_measured_db", pert.get("snr_db"))
        if snr is not None:
            q /= 1.0 + 10.0 ** (-(float(snr) - self.params.snr_mid) / self.params.snr_width)
        return max(0.0, min(1.0, q))

    def p_correct(self, request: Request) -> float:
        """Probability of answering ``request`` correctly."""
        k = len(request.item.choices or ())
        chance = 1.0 / k if k else 0.0
        return chance + (self.params.accuracy - chance) * self.quality(request)

    def choose(self, request: Request) -> int:
        """The option index the simulated model answers."""
        item, seed = request.item, self.params.seed
        k = len(item.choices or ())
        dependent = _uniform(seed, item.id, f"simulated/follow/{request.run}") < self.params.follow
        spoken = request.perturbation.get("option") if "hint_text" in request.perturbation else None
        if spoken is not None and dependent:
            return int(spoken)
        injected = request.injected if request.injected is not None else request.assistant_prefix
        if injected is not None and k >= 2 and dependent:
            from toolkit.answers import extract_answer

            stated = extract_answer(injected, item.choices or []).pred
            if stated is not None:
                return stated
            digest = hashlib.sha256(injected.encode("utf-8")).hexdigest()[:16]
            return int(_uniform(seed, item.id, f"simulated/guess/{request.run}/{digest}") * k)
        gold = item.answer if item.answer is not None else 0
        if _uniform(seed, item.id, f"simulated/correct/{request.run}") < self.p_correct(request) or k < 2:
            return gold
        wrong = [i for i in range(k) if i != gold]
        return wrong[int(_uniform(seed, item.id, f"simulated/wrong/{request.run}") * len(wrong))]

    def prepare(self, requests: Sequence[Request]) -> List[Request]:
        """Nothing to precompute: the requests themselves."""
        return list(requests)

    def generate(self, prepared: List[Request], settings: GenerationSettings,
                 score_options: bool = False) -> List[Generation]:
        """One answer per request: reasoning text when the budget allows, else ``(X)``."""
        out = []
        if self.params.latency:  # stands in for a model's compute time (interruption tests, benchmarks)
            time.sleep(self.params.latency * len(prepared))
        for request in prepared:
            choice = self.choose(request)
            text = self._text(request, choice, reasoning=settings.max_new_tokens > 32)
            logprobs = self._logprobs(request, choice) if score_options else None
            out.append(Generation(text=text, n_new_tokens=len(text.split()), option_logprobs=logprobs))
        return out

    def _text(self, request: Request, choice: int, reasoning: bool) -> str:
        tag = f"({letter(choice)})"
        if not reasoning:
            return tag
        option = (request.item.choices or [""])[choice]
        q = self.quality(request)
        clarity = "clearly" if q > 0.75 else "faintly" if q > 0.25 else "barely"
        return (f"I can {clarity} hear the relevant sound in the clip. "
                f"Comparing it with each option, {option!r} fits what I hear best. "
                f"Answer: {tag}")

    def _logprobs(self, request: Request, choice: int) -> Dict[str, float]:
        k = len(request.item.choices or ())
        top = 0.5 + 0.45 * self.quality(request)
        rest = (1.0 - top) / max(1, k - 1)
        return {letter(i): math.log(top if i == choice else rest) for i in range(k)}

    def describe(self) -> Dict[str, Any]:
        """The parameters, so that a run is reproducible from its sidecar."""
        return {"backend": self.name, "simulated": True, **self.params.__dict__}

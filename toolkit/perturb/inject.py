"""``inject-correct-snrS`` / ``inject-wrong-snrS``: a spoken hint mixed into the clip;
``inject-correct-concat-start`` ... ``inject-wrong-concat-end``: the hint placed before or after it.

The study's adversarial intervention: speech stating the correct or a wrong option, mixed
into the input audio at S dB relative to the clip (the original study's ``overlay`` mode)
or joined to it (its ``concat`` mode, ``AUG_MODES`` in ``analysis/evaluate_adversarial.py``).

Canonical name: ``inject-<target>-snr<S>``, the number in its shortest form as for noise
(``inject-wrong-snr-0`` -> ``inject-wrong-snr0``, ``inject-correct-snr2.50`` ->
``inject-correct-snr2.5``). ``<target>`` is ``correct`` or ``wrong``; S is any decimal number.

- Option. ``correct``: the item's answer. ``wrong``: one of the other options, chosen as
  ``candidates[derive_seed(seed, item id, "inject/wrong") % len(candidates)]``; candidates
  are the options that are not the answer, not in ``meta.equivalent_answers`` and whose hint
  differs from the answer's (ignoring case). The choice depends on (seed, item) only: every SNR level of an
  item states the same wrong option.
- Hint. :func:`~toolkit.perturb.hints.hint_text` (``"The answer is <option text>."``),
  spoken by the :class:`~toolkit.perturb.hints.HintBank` in the clip context (a user folder
  or espeak-ng).
- Repetition. As in the study the hint is repeated: the pattern [hint, 0.3 s of silence] is
  tiled from the clip's first sample and cut at its last, so the output keeps the clip's
  length. The last copy may be cut (a clip shorter than one hint hears only its start);
  ``hint_repetitions`` counts the copies started, ``hint_complete_repetitions`` the whole ones.
- Level. ``y = x + a*h`` with ``a = sqrt(||x||^2 / ||h||^2 * 10^(-S/10))`` as for noise
  (:func:`~toolkit.perturb.levels.snr_scale`): both powers are taken over the whole clip, so
  the silent gaps and the cut copy count in the hint's power (a hint spoken over 60 % of the
  clip is louder while it speaks than noise at the same S). Computed in float64, mixed in
  float32 (the measured SNR stays within 1e-5 dB of the target); not clipped.

Concatenation (``inject-<target>-concat-<start|end>``): one copy of the hint, scaled to the
clip's RMS (``hint_scale``: equal mean power, 0 dB), then 0.3 s of silence, then the clip
(``start``), or the clip, the silence and the hint (``end``). The output is longer than the
clip by ``hint_seconds + hint_gap_seconds``; a model with an audio limit (Qwen2-Audio's 30 s)
may cut the end off (the row's ``audio_truncated_from_s`` flag says so). The original study
built its concatenated clips outside its repository; the level and the gap are this
toolkit's choice (see the README's protocol table).

Undefined cases raise :class:`~toolkit.errors.ConditionError` (the item fails, the run goes
on): no item or no hint bank in the context, no options, no answer, no wrong option left,
no hint audio for the text, a silent clip ("silent clip: SNR undefined") or a silent hint.

Params recorded: ``target``, ``snr_db``, ``option`` (0-based index), ``option_letter``,
``hint_text``, the bank's description (``hint_source`` and e.g. ``hint_folder`` or
``hint_voice``/``espeak_version``), ``hint_seconds`` (one copy), ``hint_gap_seconds``,
``hint_repetitions``, ``hint_complete_repetitions``, ``hint_scale`` (``a``),
``snr_measured_db`` (on the float32 output; re-measured on 16-bit output like noise) and,
for ``wrong``, ``wrong_seed``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

import numpy as np

from toolkit.audio import TARGET_SR
from toolkit.errors import ConditionError
from toolkit.manifest import Item, letter
from toolkit.perturb.base import Condition, Params
from toolkit.perturb.context import ClipContext
from toolkit.perturb.hints import hint_text
from toolkit.perturb.levels import energy, snr_db, snr_scale
from toolkit.perturb.noise import Noise, format_number
from toolkit.perturb.registry import register_condition
from toolkit.perturb.seeding import derive_seed

TARGETS = ("correct", "wrong")
PLACES = ("start", "end")
GAP_SAMPLES = int(0.3 * TARGET_SR)  # silence between two copies of the hint, or between hint and clip
WRONG_PURPOSE = "inject/wrong"

_NAME = re.compile(rf"inject-(?P<target>{'|'.join(TARGETS)})-(?:snr(?P<snr>-?\d+(?:\.\d+)?)"
                   rf"|concat-(?P<place>{'|'.join(PLACES)}))")


def wrong_candidates(item: Item) -> List[int]:
    """Indices of the options a ``wrong`` hint may state.

    Args:
        item: an item with options and an answer.

    Returns:
        The options that are not the answer, not in ``meta.equivalent_answers`` and whose
        hint text differs from the answer's (ignoring case: they would sound the same), in
        index order.
    """
    choices = item.choices or []
    answer_hint = hint_text(choices[item.answer]).casefold()
    return [i for i, choice in enumerate(choices)
            if not item.accepts(i) and hint_text(choice).casefold() != answer_hint]


def repeat_hint(hint: np.ndarray, n: int) -> Tuple[np.ndarray, int, int]:
    """Tile [hint, gap] from sample 0 to exactly ``n`` samples.

    Args:
        hint: (frames,) float32 hint audio (non-empty).
        n: clip length in samples.

    Returns:
        ``(track, started, complete)``: the float32 track, the copies it starts and the copies
        it holds whole.

    Example:
        >>> track, started, complete = repeat_hint(np.ones(3, np.float32), GAP_SAMPLES + 5)
        >>> started, complete, track[:4].tolist()
        (2, 1, [1.0, 1.0, 1.0, 0.0])
    """
    period = hint.size + GAP_SAMPLES
    track = np.resize(np.concatenate([hint, np.zeros(GAP_SAMPLES, dtype=np.float32)]), n)
    started = -(-n // period)
    complete = n // period + (n % period >= hint.size)
    return track.astype(np.float32, copy=False), started, complete


@dataclass(frozen=True)
class _Hint(Condition):
    """A spoken hint stating the ``target`` option (``correct`` or ``wrong``)."""

    target: str

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"inject target {self.target!r} is not one of {TARGETS}")

    def option(self, item: Item, seed: int) -> int:
        """The index of the option the hint states.

        Args:
            item: the manifest item.
            seed: the global seed.

        Returns:
            The answer (``correct``) or the deterministic wrong option (``wrong``).

        Raises:
            ConditionError: the item has no options, no answer, or no wrong option.
        """
        if not item.choices:
            raise ConditionError(f"item {item.id!r} has no options: {self.name} undefined")
        if item.answer is None:
            raise ConditionError(f"item {item.id!r} has no answer: {self.name} undefined")
        if self.target == "correct":
            return item.answer
        candidates = wrong_candidates(item)
        if not candidates:
            raise ConditionError(f"item {item.id!r} has no wrong option: {self.name} undefined")
        return candidates[derive_seed(seed, item.id, WRONG_PURPOSE) % len(candidates)]

    def hint(self, x: np.ndarray, item_id: str, seed: int, ctx: ClipContext) -> Tuple[int, str, np.ndarray, float]:
        """(option, hint text, hint audio, the clip's energy) for one clip.

        Raises:
            ConditionError: no item or hint bank in ``ctx``, no option to state, a silent clip
                or an empty hint.
        """
        if ctx.item is None:
            raise ConditionError(f"item {item_id!r}: {self.name} needs the item's options and answer "
                                 "(ClipContext.item)")
        if ctx.hints is None:
            raise ConditionError(f"item {item_id!r}: {self.name} needs spoken hints (--hints DIR or --tts espeak-ng)")
        index = self.option(ctx.item, seed)
        signal_energy = ctx.clean_energy(x)
        if signal_energy == 0.0:
            raise ConditionError("silent clip: SNR undefined")
        text = hint_text(ctx.item.choices[index])
        hint = ctx.cached(("hint", text), lambda: ctx.hints.audio(text))
        if hint.size == 0:
            raise ConditionError(f"item {item_id!r}: the hint audio for {text!r} is empty")
        return index, text, hint, signal_energy

    def common_params(self, index: int, text: str, hint: np.ndarray, item_id: str, seed: int,
                      ctx: ClipContext) -> Params:
        """The params every hint condition records."""
        params: Params = {"target": self.target, "option": index, "option_letter": letter(index), "hint_text": text,
                          **ctx.hints.describe(), "hint_seconds": hint.size / TARGET_SR,
                          "hint_gap_seconds": GAP_SAMPLES / TARGET_SR}
        if self.target == "wrong":
            params["wrong_seed"] = derive_seed(seed, item_id, WRONG_PURPOSE)
        return params


@dataclass(frozen=True)
class Inject(_Hint):
    """A spoken hint stating the ``target`` option, mixed in at ``snr_db`` dB (see the module docstring).

    Args:
        target: ``"correct"`` or ``"wrong"``.
        snr_db: clip power over hint power, in dB, both over the whole clip.

    Example:
        >>> Inject("wrong", -0.0).name
        'inject-wrong-snr0'
    """

    snr_db: float

    def __post_init__(self) -> None:
        super().__post_init__()
        if not np.isfinite(self.snr_db):
            raise ValueError(f"SNR must be a finite number, not {self.snr_db}")
        object.__setattr__(self, "snr_db", float(self.snr_db) + 0.0)  # -0.0 -> 0.0

    @property
    def name(self) -> str:
        """``inject-<target>-snr<S>``."""
        return f"inject-{self.target}-snr{format_number(self.snr_db)}"

    def apply(
        self, x: np.ndarray, item_id: str, seed: int, ctx: Optional[ClipContext] = None
    ) -> Tuple[np.ndarray, Params]:
        """Mix the repeated hint into the clip; see :meth:`Condition.apply` and the module docstring.

        Raises:
            ConditionError: see the module docstring.
        """
        ctx = ClipContext.ensure(ctx, item_id, seed)
        index, text, hint, signal_energy = self.hint(x, item_id, seed, ctx)
        track, started, complete = ctx.cached(("hint-track", text, x.size), lambda: repeat_hint(hint, x.size))
        track_energy = ctx.cached(("hint-energy", text, x.size), lambda: energy(track))
        if track_energy == 0.0:
            raise ConditionError(f"item {item_id!r}: the hint {text!r} is silent over this clip")
        scale = snr_scale(signal_energy, track_energy, self.snr_db)
        y = np.multiply(track, np.float32(scale))
        y += x
        params = {**self.common_params(index, text, hint, item_id, seed, ctx), "snr_db": self.snr_db,
                  "hint_repetitions": started, "hint_complete_repetitions": complete, "hint_scale": scale,
                  "snr_measured_db": snr_db(x, y, signal_energy)}
        return y, params

    measure = Noise.measure  # the same SNR measurement: ``{"snr_measured_db": ...}``


@dataclass(frozen=True)
class InjectConcat(_Hint):
    """A spoken hint stating the ``target`` option, joined before (``start``) or after (``end``)
    the clip at the clip's mean power (see the module docstring).

    Example:
        >>> InjectConcat("correct", "end").name
        'inject-correct-concat-end'
    """

    place: str

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.place not in PLACES:
            raise ValueError(f"concat place {self.place!r} is not one of {PLACES}")

    @property
    def name(self) -> str:
        """``inject-<target>-concat-<place>``."""
        return f"inject-{self.target}-concat-{self.place}"

    def apply(
        self, x: np.ndarray, item_id: str, seed: int, ctx: Optional[ClipContext] = None
    ) -> Tuple[np.ndarray, Params]:
        """Join the hint to the clip; see :meth:`Condition.apply` and the module docstring.

        Raises:
            ConditionError: see the module docstring.
        """
        ctx = ClipContext.ensure(ctx, item_id, seed)
        index, text, hint, signal_energy = self.hint(x, item_id, seed, ctx)
        hint_energy = energy(hint)
        if hint_energy == 0.0:
            raise ConditionError(f"item {item_id!r}: the hint {text!r} is silent")
        # equal mean power: ||a*h||^2 / len(h) = ||x||^2 / len(x)
        scale = float(np.sqrt(signal_energy / x.size * hint.size / hint_energy))
        gap = np.zeros(GAP_SAMPLES, dtype=np.float32)
        spoken = np.multiply(hint, np.float32(scale))
        parts = [spoken, gap, x] if self.place == "start" else [x, gap, spoken]
        y = np.concatenate(parts).astype(np.float32, copy=False)
        params = {**self.common_params(index, text, hint, item_id, seed, ctx), "place": self.place,
                  "hint_scale": scale, "clip_offset_seconds": (hint.size + GAP_SAMPLES) / TARGET_SR
                  if self.place == "start" else 0.0, "output_seconds": y.size / TARGET_SR}
        return y, params


def needs_hints(conditions: Iterable[Condition]) -> bool:
    """Whether any of ``conditions`` puts in spoken hints (needs a hint bank)."""
    return any(isinstance(condition, _Hint) for condition in conditions)


def parse_inject(name: str) -> _Hint:
    """Parse ``inject-correct|wrong-snrS`` or ``inject-correct|wrong-concat-start|end``.

    Raises:
        ValueError: malformed name.
    """
    match = _NAME.fullmatch(name)
    if match is None:
        raise ValueError("malformed inject name")
    if match["place"] is not None:
        return InjectConcat(match["target"], match["place"])
    return Inject(match["target"], float(match["snr"]))


register_condition(
    "inject", parse_inject,
    pattern="inject-correct|wrong-snrS (S a number, e.g. -10, 0, 2.5) or inject-correct|wrong-concat-start|end "
            "(hints from --hints DIR or --tts espeak-ng)",
    examples=[f"inject-{t}-snr{s}" for t in TARGETS for s in (-10, 0, 10)]
    + [f"inject-{t}-concat-{p}" for t in TARGETS for p in PLACES],
)

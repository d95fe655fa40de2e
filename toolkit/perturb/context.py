"""Per-clip cache of random draws shared by all conditions of one clip.

One :class:`ClipContext` lives while one clip is rendered under all its conditions. It
draws each noise realisation and each mask layout once per (seed, item) and hands the same
one to every level (common random numbers): the 20 dB and the -20 dB versions of a clip,
and the noise used to fill its masks, come from one draw. The draws depend only on
(global seed, item id, purpose, clip length), never on the condition list, so caching
changes speed, not output.

For the ``inject-...`` conditions it also carries the clip's manifest item (its options and
answer) and the :class:`~toolkit.perturb.hints.HintBank` that speaks them, the way it
carries the noise bank.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Hashable, Optional, Tuple

import numpy as np

from toolkit.manifest import Item
from toolkit.perturb.hints import HintBank
from toolkit.perturb.levels import energy
from toolkit.perturb.sources import NoiseBank, NoiseDraw, draw_file_noise, draw_white_noise


@dataclass
class ClipContext:
    """Caches for one clip of one item under one global seed.

    Args:
        item_id: the item being rendered.
        seed: the run's global seed.
        noise_bank: the noise files for ``noise-snr...-<key>`` conditions, if any.
        item: the manifest item (options and answer), needed by ``inject-...`` conditions.
        hints: the spoken hints for ``inject-...`` conditions, if any.

    Raises:
        ValueError: ``item`` is not the item ``item_id`` names.

    Example:
        >>> import numpy as np
        >>> from toolkit.perturb import parse_condition
        >>> x = np.full(16000, 0.1, dtype=np.float32)
        >>> ctx = ClipContext("demo-0", seed=0)
        >>> y0, _ = parse_condition("noise-snr0").apply(x, "demo-0", 0, ctx)
        >>> y20, _ = parse_condition("noise-snr20").apply(x, "demo-0", 0, ctx)  # same draw
    """

    item_id: str
    seed: int
    noise_bank: Optional[NoiseBank] = None
    item: Optional[Item] = None
    hints: Optional[HintBank] = None
    _cache: Dict[Hashable, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.item is not None and self.item.id != self.item_id:
            raise ValueError(f"clip context is for item {self.item_id!r}, not for item {self.item.id!r}")

    @classmethod
    def ensure(cls, ctx: Optional["ClipContext"], item_id: str, seed: int) -> "ClipContext":
        """Return ``ctx``, or a fresh context when None.

        Raises:
            ValueError: ``ctx`` belongs to another item or seed (its draws would be wrong).
        """
        if ctx is None:
            return cls(item_id, seed)
        if ctx.item_id != item_id or ctx.seed != seed:
            raise ValueError(
                f"clip context is for item {ctx.item_id!r} seed {ctx.seed}, not item {item_id!r} seed {seed}"
            )
        return ctx

    def cached(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """``make()`` once per key for this clip (keys must include everything the value depends on)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def clean64(self, x: np.ndarray) -> np.ndarray:
        """``x`` as float64 (converted once per clip array)."""
        return self._clean(x)[1]

    def clean_energy(self, x: np.ndarray) -> float:
        """``sum(x**2)`` in float64 (computed once per clip array)."""
        return self._clean(x)[2]

    def _clean(self, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray, float]:
        held = self._cache.get("clean")
        if held is None or held[0] is not x:
            x64 = np.asarray(x, dtype=np.float64)
            held = (x, x64, energy(x64))
            self._cache["clean"] = held
        return held

    def noise(self, key: str, n: int) -> NoiseDraw:
        """The clip's noise realisation of ``n`` samples: ``"white"`` or a noise-file key.

        Raises:
            ConditionError: a noise key without a noise bank, or a silent noise file.
        """
        if key == "white":
            return self.cached(("noise", key, n), lambda: draw_white_noise(self.seed, self.item_id, n))
        return self.cached(("noise", key, n), lambda: draw_file_noise(self.noise_bank, key, self.seed, self.item_id, n))

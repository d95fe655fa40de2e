"""``mask-pNN[-scattered|-contiguous|-start|-end][-silence|-noise]``: hide NN % of a clip.

Canonical name: the full form, ``mask-p20-scattered-silence``; omitted parts default to
``scattered`` and ``silence`` (``mask-p20`` is short for it). NN is an integer 0..100.

Exactly ``round(NN/100 * N)`` samples are masked (half rounds up) for every placement:

- ``scattered``: the clip is tiled with segments of 800-8000 samples (50-500 ms at 16 kHz;
  a too-short remainder tile is merged with its neighbour and split evenly, so every tile of
  a clip of >= 800 samples is in range). The tiles are put in a random order seeded by
  (seed, item id) and taken in that order until the target count; the last tile taken is
  trimmed from its end. It is the only segment that may be shorter than 50 ms; adjacent
  tiles may be taken together and then read as one longer masked span.
- ``contiguous``: one block of length L at ``start = floor(u * (N - L + 1))`` with ``u``
  uniform in [0, 1) seeded by (seed, item id).
- ``start`` / ``end``: one block at the beginning / the end.

The seeds do not depend on NN, so masks are nested across ratios: for one (seed, item) the
20 % mask lies inside the 40 % one (for every placement).

Fill: ``silence`` (zeros), or ``noise``: the clip's white-noise realisation (the same draw
the ``noise-snr`` conditions scale) over the masked samples, scaled so its RMS equals the
RMS of the unmasked part (for p=100, of the whole clip; ``fill_rms_of`` says which).

Params recorded: ``percent``, ``placement``, ``fill``, ``n_samples``, ``n_masked``,
``masked_share``, ``segments`` (sorted, merged ``[start, end)`` sample pairs), ``mask_seed``
(scattered/contiguous), and for noise fill ``fill_rms``, ``fill_rms_of``, ``fill_scale``,
``noise``, ``noise_seed``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from toolkit.perturb.base import Condition, Params
from toolkit.perturb.context import ClipContext
from toolkit.perturb.levels import energy, rms
from toolkit.perturb.registry import register_condition
from toolkit.perturb.seeding import derive_seed, generator
from toolkit.perturb.sources import WHITE

PLACEMENTS = ("scattered", "contiguous", "start", "end")
FILLS = ("silence", "noise")
SEGMENT_MIN = 800  # 50 ms at 16 kHz
SEGMENT_MAX = 8000  # 500 ms at 16 kHz

Segment = Tuple[int, int]

_NAME = re.compile(rf"mask-p(?P<p>\d{{1,3}})(?:-(?P<placement>{'|'.join(PLACEMENTS)}))?(?:-(?P<fill>{'|'.join(FILLS)}))?")


def masked_count(n: int, percent: int) -> int:
    """``round(percent/100 * n)`` with halves rounded up, in exact integer arithmetic."""
    return (2 * percent * n + 100) // 200


def scattered_tiles(n: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Tile ``[0, n)`` with segments of SEGMENT_MIN..SEGMENT_MAX samples, in random order.

    Args:
        n: clip length in samples.
        rng: the clip's mask generator.

    Returns:
        ``(starts, lengths)`` int64 arrays in the random take-order; lengths sum to ``n``.
    """
    if n <= SEGMENT_MIN:
        lengths = np.array([n] if n else [], dtype=np.int64)
    else:
        drawn = rng.integers(SEGMENT_MIN, SEGMENT_MAX + 1, size=n // SEGMENT_MIN + 1)
        ends = np.cumsum(drawn)
        count = int(np.searchsorted(ends, n)) + 1  # tiles needed to reach n
        lengths = drawn[:count].copy()
        lengths[-1] = n - (ends[count - 2] if count > 1 else 0)
        if count > 1 and lengths[-1] < SEGMENT_MIN:  # merge the short remainder, split evenly
            pair = int(lengths[-2] + lengths[-1])
            if pair < 2 * SEGMENT_MIN:
                lengths = np.append(lengths[:-2], pair)
            else:
                lengths[-2:] = (pair // 2, pair - pair // 2)
    starts = np.cumsum(lengths) - lengths
    order = rng.permutation(lengths.size)
    return starts[order], lengths[order]


def take_tiles(starts: np.ndarray, lengths: np.ndarray, count: int) -> List[Segment]:
    """Take tiles in order until ``count`` samples, trimming the last one from its end.

    Args:
        starts: tile starts in take-order.
        lengths: tile lengths in take-order.
        count: samples to cover (<= ``lengths.sum()``).

    Returns:
        ``[start, end)`` pairs in take-order, covering exactly ``count`` samples.
    """
    if count == 0:
        return []
    reached = np.cumsum(lengths)
    last = int(np.searchsorted(reached, count))
    segments = [(int(s), int(s + length)) for s, length in zip(starts[:last], lengths[:last])]
    before = int(reached[last - 1]) if last else 0
    segments.append((int(starts[last]), int(starts[last]) + count - before))
    return segments


def contiguous_start(n: int, count: int, u: float) -> int:
    """``floor(u * (n - count + 1))`` clamped to ``n - count``: nested in ``count`` for fixed ``u``."""
    return min(int(math.floor(u * (n - count + 1))), n - count)


def merge_segments(segments: List[Segment]) -> List[List[int]]:
    """Sort ``[start, end)`` pairs and join touching or overlapping ones (JSON-ready lists)."""
    merged: List[List[int]] = []
    for start, end in sorted(segments):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        elif end > start:
            merged.append([start, end])
    return merged


@dataclass(frozen=True)
class Mask(Condition):
    """Mask ``percent`` % of the clip (see the module docstring).

    Args:
        percent: integer share 0..100.
        placement: one of :data:`PLACEMENTS`.
        fill: one of :data:`FILLS`.

    Example:
        >>> import numpy as np
        >>> y, params = Mask(50, "start").apply(np.ones(10, np.float32), "demo-0", seed=0)
        >>> y.tolist(), params["segments"]
        ([0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0], [[0, 5]])
    """

    percent: int
    placement: str = "scattered"
    fill: str = "silence"

    def __post_init__(self) -> None:
        if not 0 <= self.percent <= 100:
            raise ValueError(f"mask percent must be an integer 0..100, not {self.percent}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"mask placement {self.placement!r} is not one of {PLACEMENTS}")
        if self.fill not in FILLS:
            raise ValueError(f"mask fill {self.fill!r} is not one of {FILLS}")

    @property
    def name(self) -> str:
        """``mask-p<percent>-<placement>-<fill>``."""
        return f"mask-p{self.percent}-{self.placement}-{self.fill}"

    def segments(self, n: int, item_id: str, seed: int, ctx: Optional[ClipContext] = None) -> Tuple[List[Segment], Params]:
        """The masked ``[start, end)`` pairs for a clip of ``n`` samples, and their seed record.

        Args:
            n: clip length.
            item_id: item id.
            seed: global seed.
            ctx: clip context (caches the scattered tiling across ratios).

        Returns:
            Segments covering exactly :func:`masked_count` samples, and ``{"mask_seed": ...}``
            for the random placements (else an empty dict).
        """
        ctx = ClipContext.ensure(ctx, item_id, seed)
        count = masked_count(n, self.percent)
        if self.placement == "start":
            return [(0, count)], {}
        if self.placement == "end":
            return [(n - count, n)], {}
        purpose = f"mask/{self.placement}"
        record = {"mask_seed": derive_seed(seed, item_id, purpose)}
        if self.placement == "contiguous":
            u = ctx.cached((purpose,), lambda: float(generator(seed, item_id, purpose).random()))
            start = contiguous_start(n, count, u)
            return [(start, start + count)], record
        starts, lengths = ctx.cached((purpose, n), lambda: scattered_tiles(n, generator(seed, item_id, purpose)))
        return take_tiles(starts, lengths, count), record

    def apply(
        self, x: np.ndarray, item_id: str, seed: int, ctx: Optional[ClipContext] = None
    ) -> Tuple[np.ndarray, Params]:
        """Mask the clip; see :meth:`Condition.apply` and the module docstring for params."""
        ctx = ClipContext.ensure(ctx, item_id, seed)
        n = int(x.size)
        segments, record = self.segments(n, item_id, seed, ctx)
        merged = merge_segments(segments)
        n_masked = sum(end - start for start, end in merged)
        y = np.array(x, dtype=np.float32, copy=True)
        params: Params = {"percent": self.percent, "placement": self.placement, "fill": self.fill,
                          "n_samples": n, "n_masked": n_masked, "masked_share": n_masked / n if n else 0.0,
                          "segments": merged, **record}
        if self.fill == "silence" or n_masked == 0:
            for start, end in merged:
                y[start:end] = 0.0
        else:
            params.update(self._fill_noise(x, y, merged, ctx))
        return y, params

    @staticmethod
    def _fill_noise(x: np.ndarray, y: np.ndarray, merged: List[List[int]], ctx: ClipContext) -> Params:
        """Write scaled white noise into the masked samples of ``y`` in place; return the record."""
        masked = np.zeros(x.size, dtype=bool)
        for start, end in merged:
            masked[start:end] = True
        x64 = ctx.clean64(x)
        whole = bool(masked.all())
        target = rms(x64) if whole else rms(x64[~masked])
        draw = ctx.noise(WHITE, x.size)
        fill = draw.samples[masked]
        fill_energy = energy(fill)
        scale = target * math.sqrt(fill.size / fill_energy) if fill_energy > 0.0 else 0.0
        y[masked] = np.multiply(fill, scale, dtype=np.float64)
        return {"fill_rms": target, "fill_rms_of": "whole clip" if whole else "unmasked",
                "fill_scale": scale, **draw.info}


def parse_mask(name: str) -> Mask:
    """Parse ``mask-pNN[-placement][-fill]``.

    Raises:
        ValueError: malformed name or NN outside 0..100.
    """
    match = _NAME.fullmatch(name)
    if match is None:
        raise ValueError("malformed mask name")
    return Mask(int(match["p"]), match["placement"] or "scattered", match["fill"] or "silence")


register_condition(
    "mask-p", parse_mask,
    pattern="mask-pNN[-scattered|-contiguous|-start|-end][-silence|-noise] (NN 0..100)",
    examples=[f"mask-p{p}-{pl}-{f}" for p in (20, 50) for pl in PLACEMENTS for f in FILLS] + ["mask-p20"],
)

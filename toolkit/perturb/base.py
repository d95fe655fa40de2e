"""The condition interface: a named, pure transformation of one 16 kHz mono clip."""

from __future__ import annotations

import abc
from typing import Any, Dict, Optional, Tuple

import numpy as np

from toolkit.perturb.context import ClipContext

Params = Dict[str, Any]


class Condition(abc.ABC):
    """A parsed condition. Subclasses are frozen dataclasses holding the parameters.

    ``apply`` is a pure function of (audio, condition, item id, global seed): equal inputs
    give bit-identical float32 output in any process, order or shard.
    """

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The canonical (full) name, e.g. ``"mask-p20-scattered-silence"``."""

    @abc.abstractmethod
    def apply(
        self, x: np.ndarray, item_id: str, seed: int, ctx: Optional[ClipContext] = None
    ) -> Tuple[np.ndarray, Params]:
        """Render the condition on one clip.

        Args:
            x: (frames,) float32 audio at 16 kHz, mono. Not modified.
            item_id: the manifest item id (seeds the random draws).
            seed: the run's global seed.
            ctx: the clip's :class:`ClipContext`, shared by all conditions of this clip so
                random draws happen once per clip; a fresh one is made when None.

        Returns:
            The (frames,) float32 output and a JSON-ready dict of exactly what was applied.

        Raises:
            ConditionError: the condition is undefined for this clip (e.g. SNR of silence).
        """

    def noise_keys(self) -> Tuple[str, ...]:
        """Noise-folder keys this condition reads (the writer checks them before starting)."""
        return ()

    def measure(self, reference: np.ndarray, output: np.ndarray) -> Params:
        """Measurements of an output against its clean reference, recorded in ``params``.

        The writer calls this again after encoding (e.g. 16-bit with a gain) so the record
        describes what was written. The default measures nothing.

        Args:
            reference: the clean clip (scaled by the same gain as ``output``).
            output: the rendered samples as written.

        Returns:
            A dict merged into ``params``.
        """
        return {}

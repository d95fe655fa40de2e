"""``clean``: the identity condition (the decoded 16 kHz mono clip, unchanged)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from toolkit.perturb.base import Condition, Params
from toolkit.perturb.context import ClipContext
from toolkit.perturb.registry import register_condition


@dataclass(frozen=True)
class Clean(Condition):
    """The clip as decoded. The writer still writes it, so every condition folder is read
    through the same decoding path (and, for ``pcm16``, the same quantisation)."""

    @property
    def name(self) -> str:
        """Always ``"clean"``."""
        return "clean"

    def apply(
        self, x: np.ndarray, item_id: str, seed: int, ctx: Optional[ClipContext] = None
    ) -> Tuple[np.ndarray, Params]:
        """Return ``x`` as float32 and empty params (see :meth:`Condition.apply`)."""
        return np.asarray(x, dtype=np.float32), {}


def parse_clean(name: str) -> Clean:
    """Parse ``clean``.

    Raises:
        ValueError: anything else.
    """
    if name != "clean":
        raise ValueError("the clean condition takes no parameters")
    return Clean()


register_condition("clean", parse_clean, pattern="clean", examples=["clean"])

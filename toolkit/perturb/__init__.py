"""Audio conditions (``clean``, masks, noise, spoken hints) and the writer that renders them to files.

Parse a condition name with :func:`parse_condition`; apply it on the fly with
:func:`apply_condition` (bit-identical to the float WAV files :func:`perturb_manifest`
writes); extend the grammar with :func:`register_condition`.

Example:
    >>> import numpy as np
    >>> from toolkit.perturb import apply_condition
    >>> x = np.sin(np.arange(32000, dtype=np.float32) / 7)
    >>> y, params = apply_condition(x, "noise-snr0", item_id="demo-0", seed=0)
    >>> round(params["snr_measured_db"], 2)
    0.0
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np

from toolkit.perturb import clean as _clean  # noqa: F401  (registers "clean")
from toolkit.perturb import mask as _mask  # noqa: F401  (registers "mask-p")
from toolkit.perturb import noise as _noise  # noqa: F401  (registers "noise-snr")
from toolkit.perturb import inject as _inject  # noqa: F401,I001  (registers "inject"; after mask, noise: pattern order)
from toolkit.perturb.base import Condition, Params
from toolkit.perturb.context import ClipContext
from toolkit.perturb.hints import EspeakHints, FolderHints, HintBank, hint_text, render_hints
from toolkit.perturb.registry import (CONDITION_SETS, expand_conditions, known_patterns, parse_condition,
                                      register_condition)
from toolkit.perturb.sources import NoiseBank
from toolkit.perturb.writer import audio_filename, perturb_manifest


def apply_condition(
    x: np.ndarray,
    condition: Union[str, Condition],
    item_id: str,
    seed: int = 0,
    ctx: Optional[ClipContext] = None,
) -> Tuple[np.ndarray, Params]:
    """Apply a condition to a decoded clip (what ``infer`` uses to perturb on the fly).

    Args:
        x: (frames,) float32 16 kHz mono audio, e.g. from :func:`toolkit.audio.load_audio`.
        condition: a name or a parsed condition.
        item_id: the item id.
        seed: the global seed.
        ctx: a :class:`ClipContext` to share draws across conditions of this clip; required
            with a :class:`NoiseBank` for noise-file conditions, and with the item and a
            :class:`HintBank` for ``inject-...`` conditions.

    Returns:
        Float32 output, equal bit for bit to the ``--format float`` file, and the params.

    Raises:
        ValueError: unknown condition name.
        ConditionError: the condition is undefined for this clip.
    """
    parsed = parse_condition(condition) if isinstance(condition, str) else condition
    return parsed.apply(np.asarray(x, dtype=np.float32), item_id, seed, ctx)


__all__ = ["CONDITION_SETS", "ClipContext", "Condition", "EspeakHints", "FolderHints", "HintBank", "NoiseBank",
           "Params", "apply_condition", "audio_filename", "expand_conditions", "hint_text", "known_patterns",
           "parse_condition", "perturb_manifest", "register_condition", "render_hints"]

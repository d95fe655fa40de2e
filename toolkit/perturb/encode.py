"""Output formats: float WAV as is, or 16-bit PCM scaled down when it would clip.

``float`` (default): the float32 samples are written unchanged (32-bit float WAV), so
``soundfile.read(path, dtype="float32")`` returns exactly what
:func:`~toolkit.perturb.apply_condition` returns. Peaks above 1.0 are kept.

``pcm16``: samples are rounded to integers ``q = rint(y * g * 32768)`` and written as
16-bit. The gain ``g`` is 1.0 unless some sample would not fit in [-32768, 32767]; then
``g = min(32767 / 32768 / max(y), 1 / -min(y))`` and the whole clip is scaled, so nothing
clips. ``g`` is recorded as ``params["gain"]`` (always present in pcm16 mode), and
measurements (e.g. ``snr_measured_db``) are redone on ``q / 32768`` (what a reader gets back)
against the clean clip times ``g``.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from toolkit.audio import FORMATS
from toolkit.perturb.base import Condition, Params


_PCM16_SCALE = 32768.0
_PCM16_MAX = 32767.0 / 32768.0


def pcm16_gain(y: np.ndarray) -> float:
    """The largest gain <= 1 that keeps ``y * gain`` inside the 16-bit range.

    Args:
        y: float samples (full scale 1.0).

    Returns:
        1.0 when ``-1 <= y <= 32767/32768`` everywhere, else the scale-down factor.
    """
    if y.size == 0:
        return 1.0
    top, bottom = float(y.max()), float(y.min())
    gain = 1.0
    if top > _PCM16_MAX:
        gain = _PCM16_MAX / top
    if bottom < -1.0:
        gain = min(gain, -1.0 / bottom)
    return gain


def to_pcm16(y: np.ndarray) -> Tuple[np.ndarray, float]:
    """Quantise float samples to 16-bit integers without clipping.

    Args:
        y: float samples.

    Returns:
        ``(q, gain)``: int16 samples ``rint(y * gain * 32768)`` and the gain used.

    Example:
        >>> import numpy as np
        >>> q, gain = to_pcm16(np.array([0.5, -2.0], dtype=np.float32))
        >>> q.tolist(), gain
        ([8192, -32768], 0.5)
    """
    gain = pcm16_gain(y)
    scaled = np.rint(np.multiply(y, gain * _PCM16_SCALE, dtype=np.float64))
    return scaled.astype(np.int16), gain


def pcm16_to_float(q: np.ndarray) -> np.ndarray:
    """What a reader gets back from 16-bit samples: ``q / 32768`` in float64."""
    return q / _PCM16_SCALE


def encode_output(
    condition: Condition, x: np.ndarray, y: np.ndarray, params: Params, fmt: str
) -> Tuple[np.ndarray, Params]:
    """Turn a rendered clip into the samples to write in ``fmt``, updating the record.

    Args:
        condition: the condition that rendered ``y`` (re-measures 16-bit output).
        x: the clean clip.
        y: the float32 output of ``condition.apply``.
        params: its params.
        fmt: ``"float"`` or ``"pcm16"``.

    Returns:
        ``(samples, params)``: ``y`` and ``params`` unchanged for float; int16 samples and
        params with ``gain`` and fresh measurements for pcm16.

    Raises:
        ValueError: unknown format.
    """
    if fmt == "float":
        return y, params
    if fmt != "pcm16":
        raise ValueError(f"unknown output format {fmt!r}; valid: {list(FORMATS)}")
    q, gain = to_pcm16(y)
    reference = np.multiply(x, gain, dtype=np.float64)
    return q, {**params, "gain": gain, **condition.measure(reference, pcm16_to_float(q))}

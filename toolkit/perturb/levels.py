"""Signal levels in float64: energy, RMS, the noise scale for a target SNR, measured SNR.

Sums use numpy's pairwise summation (``np.sum``), not BLAS (``np.dot``), whose summation
order can change with memory alignment or thread count and would make outputs differ in
the last bit between processes.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np


def energy(x: np.ndarray) -> float:
    """Sum of squares, computed in float64.

    Args:
        x: any real array.

    Returns:
        ``sum(x**2)`` as a Python float.
    """
    return float(np.sum(np.square(x, dtype=np.float64)))


def rms(x: np.ndarray) -> float:
    """Root mean square in float64 (0.0 for an empty array)."""
    return math.sqrt(energy(x) / x.size) if x.size else 0.0


def snr_scale(signal_energy: float, noise_energy: float, snr_db: float) -> float:
    """The factor ``a`` such that ``x + a*n`` has the target SNR.

    ``a = sqrt(||x||^2 / ||n||^2 * 10^(-snr/10))``.

    Args:
        signal_energy: ``||x||^2`` (> 0).
        noise_energy: ``||n||^2`` (> 0).
        snr_db: target SNR in dB.

    Returns:
        The scale factor.
    """
    return math.sqrt(signal_energy / noise_energy * 10.0 ** (-snr_db / 10.0))


def snr_db(reference: np.ndarray, output: np.ndarray, reference_energy: Optional[float] = None) -> Optional[float]:
    """Measured SNR of ``output`` against ``reference``: the noise is what was added.

    Args:
        reference: the clean signal.
        output: the signal after the condition (same length), e.g. the float32 samples written.
        reference_energy: ``energy(reference)`` when already known.

    Returns:
        ``10*log10(||reference||^2 / ||output - reference||^2)`` in dB, or None when either
        energy is zero (the SNR is undefined or infinite). The difference is taken in the
        inputs' own precision (float32 for two float32 clips: off by at most one rounding per
        sample, ~1e-6 dB) and its energy is accumulated in float64 without BLAS.
    """
    added = np.subtract(output, reference).ravel()
    noise = float(np.einsum("i,i->", added, added, dtype=np.float64))
    signal = energy(reference) if reference_energy is None else reference_energy
    if signal == 0.0 or noise == 0.0:
        return None
    return 10.0 * math.log10(signal / noise)

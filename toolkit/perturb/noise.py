"""``noise-snrS[-white|-<key>]``: additive noise at a target SNR.

Canonical name: the full form with the number written in its shortest form and the source
spelled out: ``noise-snr-10`` -> ``noise-snr-10-white``, ``noise-snr2.50`` ->
``noise-snr2.5-white``, ``noise-snr0-babble`` stays. S is any decimal number (negative
allowed); ``<key>`` is the stem of a file in the noise folder (starting with a letter).

``y = x + a*n`` with ``a = sqrt(||x||^2 / ||n||^2 * 10^(-S/10))``, the signal power taken
over the whole clip. ``n`` is the clip's noise realisation, drawn once per (seed, item,
source) and shared by every SNR level (common random numbers): Gaussian white noise, or the
noise file looped from a seeded random offset. Energies, ``a`` and the measurement are
computed in float64; the mix itself is ``float32(a) * n + x`` in float32 (the output type;
the measured SNR stays within 1e-5 dB of the target).
A silent clip has no SNR: :class:`~toolkit.errors.ConditionError` ("silent clip: SNR
undefined").

Params recorded: ``snr_db`` (target), ``noise`` (``white`` or the key), ``noise_seed``,
``noise_file`` and ``noise_offset`` (files), ``noise_scale`` (``a``), and ``snr_measured_db``:
the SNR between the clean clip and the noise actually added, measured on the float32 output
(the writer re-measures it on 16-bit output, against the clean clip times the same gain).
The output is not clipped: at -20 dB float samples far beyond 1.0 are normal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from toolkit.errors import ConditionError
from toolkit.perturb.base import Condition, Params
from toolkit.perturb.context import ClipContext
from toolkit.perturb.levels import snr_db, snr_scale
from toolkit.perturb.registry import register_condition
from toolkit.perturb.sources import WHITE

_NAME = re.compile(r"noise-snr(?P<snr>-?\d+(?:\.\d+)?)(?:-(?P<key>[A-Za-z][A-Za-z0-9_.-]*))?")


def format_number(value: float) -> str:
    """Shortest spelling of a number: ``10.0`` -> ``"10"``, ``-2.50`` -> ``"-2.5"``, ``-0`` -> ``"0"``."""
    return np.format_float_positional(float(value) + 0.0, trim="-")


@dataclass(frozen=True)
class Noise(Condition):
    """Additive noise at ``snr_db`` dB from ``source`` (``"white"`` or a noise-file key).

    Example:
        >>> import numpy as np
        >>> x = np.sin(np.arange(16000, dtype=np.float32) / 5)
        >>> y, params = Noise(10.0).apply(x, "demo-0", seed=0)
        >>> round(params["snr_measured_db"], 3)
        10.0
    """

    snr_db: float
    source: str = WHITE

    def __post_init__(self) -> None:
        if not np.isfinite(self.snr_db):
            raise ValueError(f"SNR must be a finite number, not {self.snr_db}")
        object.__setattr__(self, "snr_db", float(self.snr_db) + 0.0)  # -0.0 -> 0.0

    @property
    def name(self) -> str:
        """``noise-snr<S>-<source>``."""
        return f"noise-snr{format_number(self.snr_db)}-{self.source}"

    def apply(
        self, x: np.ndarray, item_id: str, seed: int, ctx: Optional[ClipContext] = None
    ) -> Tuple[np.ndarray, Params]:
        """Add the scaled noise; see :meth:`Condition.apply` and the module docstring.

        Raises:
            ConditionError: the clip is silent (or empty).
        """
        ctx = ClipContext.ensure(ctx, item_id, seed)
        signal_energy = ctx.clean_energy(x)
        if signal_energy == 0.0:
            raise ConditionError("silent clip: SNR undefined")
        draw = ctx.noise(self.source, x.size)
        scale = snr_scale(signal_energy, draw.energy, self.snr_db)
        y = np.multiply(draw.samples, np.float32(scale))
        y += x
        measured = snr_db(x, y, signal_energy)
        params: Params = {"snr_db": self.snr_db, **draw.info, "noise_scale": scale, "snr_measured_db": measured}
        return y, params

    def noise_keys(self) -> Tuple[str, ...]:
        """The noise-file key, or nothing for white noise."""
        return () if self.source == WHITE else (self.source,)

    def measure(self, reference: np.ndarray, output: np.ndarray) -> Params:
        """``{"snr_measured_db": ...}``: SNR of ``output`` against ``reference`` (see :func:`snr_db`)."""
        return {"snr_measured_db": snr_db(reference, output)}


def parse_noise(name: str) -> Noise:
    """Parse ``noise-snrS[-white|-<key>]``.

    Raises:
        ValueError: malformed name.
    """
    match = _NAME.fullmatch(name)
    if match is None:
        raise ValueError("malformed noise name")
    return Noise(float(match["snr"]), match["key"] or WHITE)


register_condition(
    "noise-snr", parse_noise,
    pattern="noise-snrS[-white|-<key>] (S a number, e.g. -10, 0, 2.5; <key> a file stem in --noise-dir)",
    examples=[f"noise-snr{s}-white" for s in (-20, -10, 0, 10, 20)] + ["noise-snr0", "noise-snr-10"],
)

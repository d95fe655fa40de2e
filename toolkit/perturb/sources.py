"""Noise sources: seeded white noise and noise files (looped from a seeded random offset).

A noise folder holds audio files (wav, flac, ogg, ...); each file's stem is its *key*, as
in ``noise-snr0-babble`` for ``babble.wav``. Keys start with a letter; ``white`` is
reserved for generated Gaussian white noise, so a file named ``white.*`` is ignored with a
warning. Files are decoded to 16 kHz mono once per process.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from toolkit.audio import load_audio
from toolkit.errors import ConditionError, InputError, Pathlike
from toolkit.perturb.levels import energy
from toolkit.perturb.seeding import derive_seed, generator

log = logging.getLogger(__name__)

NOISE_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
WHITE = "white"


@dataclass(frozen=True)
class NoiseDraw:
    """One noise realisation for one clip.

    Attributes:
        samples: (frames,) float32 noise, before any scaling.
        energy: ``sum(samples**2)`` computed in float64.
        info: what to record about the draw (kind, seed, file, offset).
    """

    samples: np.ndarray
    energy: float
    info: Dict[str, Any] = field(default_factory=dict)


class NoiseBank:
    """The noise files of one folder, addressed by key (file stem).

    Args:
        folder: the noise folder.

    Raises:
        NotADirectoryError: ``folder`` is not a folder.
        InputError: two files share a stem.

    Example:
        >>> bank = NoiseBank("noises")            # doctest: +SKIP
        >>> bank.keys()                           # doctest: +SKIP
        ['babble', 'cafe']
    """

    def __init__(self, folder: Pathlike) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise NotADirectoryError(f"noise folder not found: {self.folder}")
        self._paths: Dict[str, Path] = {}
        for path in sorted(self.folder.iterdir()):
            if path.suffix.lower() not in NOISE_SUFFIXES or not path.is_file():
                continue
            if path.stem == WHITE:
                log.warning("ignoring %s: the key %r is reserved for generated white noise", path, WHITE)
                continue
            if path.stem in self._paths:
                raise InputError(f"two noise files with the key {path.stem!r}: {self._paths[path.stem].name}, {path.name}",
                                 self.folder)
            self._paths[path.stem] = path
        self._samples: Dict[str, np.ndarray] = {}

    def keys(self) -> List[str]:
        """The available keys, sorted."""
        return sorted(self._paths)

    def path(self, key: str) -> Path:
        """The file of ``key``.

        Raises:
            InputError: no such key (the message lists the available ones).
        """
        if key not in self._paths:
            raise InputError(f"no noise file with key {key!r}; available: {self.keys() or 'none'}", self.folder)
        return self._paths[key]

    def samples(self, key: str) -> np.ndarray:
        """The decoded file (16 kHz mono float32), loaded once per bank.

        Raises:
            InputError: unknown key, or the file is empty or silent.
        """
        if key not in self._samples:
            path = self.path(key)
            x = load_audio(path)
            if energy(x) == 0.0:
                raise InputError(f"noise file is empty or silent: {path.name}", path)
            self._samples[key] = x
        return self._samples[key]

    def sha256(self, key: str) -> str:
        """Hex SHA-256 of the file's bytes (for sidecars)."""
        return hashlib.sha256(self.path(key).read_bytes()).hexdigest()


def draw_white_noise(seed: int, item_id: str, n: int) -> NoiseDraw:
    """Standard Gaussian white noise (float32 draw), seeded by (seed, item, ``"noise/white"``).

    Args:
        seed: global seed.
        item_id: item id.
        n: number of samples.

    Returns:
        The draw; its ``info`` records ``noise`` and ``noise_seed``.
    """
    purpose = "noise/white"
    samples = generator(seed, item_id, purpose).standard_normal(n, dtype=np.float32)
    return NoiseDraw(samples, energy(samples), {"noise": WHITE, "noise_seed": derive_seed(seed, item_id, purpose)})


def draw_file_noise(bank: Optional[NoiseBank], key: str, seed: int, item_id: str, n: int) -> NoiseDraw:
    """``n`` samples of a noise file, looped, from an offset seeded by (seed, item, key).

    Args:
        bank: the noise folder.
        key: the file's key.
        seed: global seed.
        item_id: item id.
        n: number of samples.

    Returns:
        The draw; its ``info`` records ``noise``, ``noise_file``, ``noise_seed``, ``noise_offset``.

    Raises:
        ValueError: ``bank`` is None (a noise key needs a noise folder).
        InputError: unknown key or unusable file.
        ConditionError: the looped excerpt is silent.
    """
    if bank is None:
        raise ValueError(f"noise key {key!r} needs a noise folder (--noise-dir)")
    source = bank.samples(key)
    purpose = f"noise/file/{key}"
    offset = int(generator(seed, item_id, purpose).integers(0, source.size))
    samples = np.resize(np.roll(source, -offset), n)
    draw_energy = energy(samples)
    if n and draw_energy == 0.0:
        raise ConditionError(f"noise file {key!r} is silent over this clip's excerpt (offset {offset})")
    info = {"noise": key, "noise_file": bank.path(key).name, "noise_seed": derive_seed(seed, item_id, purpose),
            "noise_offset": offset}
    return NoiseDraw(samples, draw_energy, info)

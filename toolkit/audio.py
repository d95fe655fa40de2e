"""Audio I/O: load as 16 kHz mono float32, inspect headers, save WAV atomically."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.io import wavfile

from toolkit.atomic import atomic_output
from toolkit.errors import Pathlike

TARGET_SR = 16000
FORMATS = ("float", "pcm16")


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file."""

    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _check_file(path: Pathlike) -> None:
    """A missing or 0-byte file, said plainly (libsndfile calls an empty file an unknown format)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"audio file not found: {path}")
    if os.path.getsize(path) == 0:
        raise RuntimeError(f"empty file (0 bytes): {path}")


def audio_info(path: Pathlike) -> AudioInfo:
    """Read an audio file's header.

    Args:
        path: any format libsndfile reads (wav, flac, ogg, ...).

    Returns:
        Sample rate, frame count and channel count.

    Raises:
        FileNotFoundError: the file does not exist.
        RuntimeError: the file is empty (0 bytes), or libsndfile cannot parse it
            (``soundfile.LibsndfileError``).
    """
    _check_file(path)
    info = sf.info(str(path))
    return AudioInfo(sample_rate=int(info.samplerate), frames=int(info.frames), channels=int(info.channels))


#: how a multi-channel file becomes mono: ``mean`` (librosa's ``mono=True``, what Qwen2-Audio's and
#: AF3's official examples load) or ``first`` (SALMONN's official ``audio[:, 0]``)
CHANNEL_POLICIES = ("mean", "first")


def to_mono_16k(samples: np.ndarray, sample_rate: int, target_sr: int = TARGET_SR,
                channels: str = "mean") -> np.ndarray:
    """Make mono (see :data:`CHANNEL_POLICIES`) and resample (soxr, high quality) to ``target_sr``.

    Args:
        samples: (frames,) or (frames, channels) array.
        sample_rate: rate of ``samples``.
        target_sr: wanted rate.
        channels: ``mean`` (average the channels) or ``first`` (keep channel 0).

    Returns:
        A contiguous float32 (frames,) array. Deterministic for the same input.
    """
    if channels not in CHANNEL_POLICIES:
        raise ValueError(f"channels must be one of {', '.join(CHANNEL_POLICIES)}, not {channels!r}")
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float32) if channels == "mean" else x[:, 0]
    if sample_rate != target_sr:
        import soxr

        x = soxr.resample(x, sample_rate, target_sr, quality="HQ").astype(np.float32, copy=False)
    return np.ascontiguousarray(x)


def load_audio(path: Pathlike, target_sr: int = TARGET_SR, channels: str = "mean") -> np.ndarray:
    """Decode an audio file to mono float32 at ``target_sr``.

    Args:
        path: the file.
        target_sr: output sample rate (16 kHz, what all supported models take).
        channels: how several channels become one (:data:`CHANNEL_POLICIES`).

    Returns:
        (frames,) float32 array in [-1, 1] for PCM input.
    """
    _check_file(path)
    samples, sr = sf.read(str(path), dtype="float32", always_2d=False)
    return to_mono_16k(samples, sr, target_sr, channels)


def load_usable_audio(path: Pathlike, channels: str = "mean") -> np.ndarray:
    """:func:`load_audio` for a model or a condition: refuses clips no stage can use.

    Raises:
        FileNotFoundError: the file does not exist.
        RuntimeError: the file is empty or unreadable.
        ValueError: the audio has no samples (a header-only file) or NaN / infinite samples.
    """
    x = load_audio(path, channels=channels)
    if x.size == 0:
        raise ValueError(f"{path}: the audio has no samples (a header-only file)")
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        raise ValueError(f"{path}: the audio has {bad} NaN or infinite samples")
    return x


def save_audio(path: Pathlike, samples: np.ndarray, sample_rate: int = TARGET_SR, fmt: str = "float") -> Path:
    """Write a mono WAV atomically (temporary file + rename, no fsync), byte-identical for equal input.

    The WAV writer is scipy's: unlike libsndfile's it adds no timestamped PEAK chunk, so
    re-running a stage gives the same bytes, not just the same samples.

    Args:
        path: destination ``.wav``; parent folders are created.
        samples: (frames,) array. For ``fmt="pcm16"`` either int16 samples or floats in
            [-1, 32767/32768] (quantised as ``rint(x * 32768)``); floats outside that range
            raise instead of clipping silently - scale them first.
        sample_rate: rate to record in the header.
        fmt: ``"float"`` (32-bit float WAV, lossless for the float32 pipeline) or ``"pcm16"``.

    Returns:
        The destination path.

    Raises:
        ValueError: unknown format, or float samples that would clip in 16 bits.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown audio format {fmt!r}; valid: {list(FORMATS)}")
    data = _as_format(np.asarray(samples), fmt)
    with atomic_output(path, fsync=False) as fh:  # regenerable bulk output: no fsync per clip
        wavfile.write(fh, sample_rate, data)
    return Path(path)


def _as_format(x: np.ndarray, fmt: str) -> np.ndarray:
    if fmt == "float":
        return np.ascontiguousarray(x, dtype=np.float32)
    if x.dtype == np.int16:
        return np.ascontiguousarray(x)
    q = np.rint(np.multiply(x, 32768.0, dtype=np.float64))
    if q.size and (q.max() > 32767 or q.min() < -32768):
        raise ValueError(f"samples reach {x.max():.4f}/{x.min():.4f}, beyond 16-bit full scale; scale them first")
    return q.astype(np.int16)

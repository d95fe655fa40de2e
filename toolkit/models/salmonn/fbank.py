"""Kaldi log-mel filterbanks as BEATs reads them, framed and windowed by kaldi-native-fbank.

BEATs (``BEATs.preprocess`` of the release) computes, per clip, a Kaldi fbank of the
waveform scaled to the int16 range (``x * 2**15``): 16 kHz, 25 ms frames every 10 ms
(``snip_edges``: ``1 + (n - 400) // 160`` frames), no dither, DC offset removed,
pre-emphasis 0.97, Povey window, 512-point FFT, power spectrum, 128 triangular mel
filters between 20 Hz and 8 kHz on Kaldi's mel scale (``1127 ln(1 + f / 700)``), natural
log floored at float32 epsilon; then normalises with ``(fbank - 15.41663) / (2 * 6.55582)``.

kaldi-native-fbank does the Kaldi framing, DC removal, pre-emphasis and windowing
(:class:`kaldi_native_fbank.OnlineRawAudioSamples`). Its own filterbank refuses 128 mel
bins at a 512-point FFT (the lowest filters cover no FFT bin: "num_mel_bins too large"),
while the release's torchaudio implementation accepts them and returns ``log(eps)`` for
the empty filters; so the power spectrum and the mel matrix are computed here, with the
same formulas, keeping those empty filters. With fewer bins the result equals
``kaldi_native_fbank.OnlineFbank`` (checked in ``tests/test_salmonn.py``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000
NUM_MEL_BINS = 128
FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = 10.0
LOW_FREQ = 20.0
PREEMPHASIS = 0.97
FBANK_MEAN = 15.41663
FBANK_STD = 6.55582
INT16_SCALE = 2.0 ** 15
_EPS = float(np.finfo(np.float32).eps)


def _padded_window_size(sample_rate: int) -> int:
    """The FFT size: the frame length rounded up to a power of two (400 -> 512 at 16 kHz)."""
    length = int(sample_rate * FRAME_LENGTH_MS / 1000)
    return 1 << (length - 1).bit_length()


def _kaldi_mel(freq: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log(1.0 + freq / 700.0)


@lru_cache(maxsize=8)
def mel_matrix(num_mel_bins: int = NUM_MEL_BINS, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Kaldi's triangular mel filters over the FFT bins (Nyquist bin included, weight 0).

    Args:
        num_mel_bins: filters between 20 Hz and the Nyquist frequency.
        sample_rate: sampling rate in Hz.

    Returns:
        ``(num_mel_bins, fft_size // 2 + 1)`` float64 weights; empty filters stay all-zero.
    """
    fft_size = _padded_window_size(sample_rate)
    mel_low, mel_high = _kaldi_mel(np.array(LOW_FREQ)), _kaldi_mel(np.array(sample_rate / 2.0))
    delta = (mel_high - mel_low) / (num_mel_bins + 1)
    left = mel_low + np.arange(num_mel_bins)[:, None] * delta
    center, right = left + delta, left + 2 * delta
    mel = _kaldi_mel(sample_rate / fft_size * np.arange(fft_size // 2))[None, :]
    weights = np.maximum(0.0, np.minimum((mel - left) / (center - left), (right - mel) / (right - center)))
    return np.pad(weights, ((0, 0), (0, 1)))


def kaldi_fbank(samples: np.ndarray, num_mel_bins: int = NUM_MEL_BINS, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Kaldi log-mel filterbank energies (torchaudio's ``compliance.kaldi.fbank`` defaults, no dither).

    Args:
        samples: mono waveform in the scale the features expect (BEATs: int16 range).
        num_mel_bins: number of mel filters.
        sample_rate: sampling rate in Hz.

    Returns:
        ``(frames, num_mel_bins)`` float32; zero frames when the clip is shorter than 25 ms.
    """
    import kaldi_native_fbank as knf

    opts = knf.RawAudioSamplesOptions()
    frame = opts.frame_opts
    frame.samp_freq = float(sample_rate)
    frame.frame_length_ms = FRAME_LENGTH_MS
    frame.frame_shift_ms = FRAME_SHIFT_MS
    frame.dither = 0.0
    frame.preemph_coeff = PREEMPHASIS
    frame.remove_dc_offset = True
    frame.window_type = "povey"
    frame.snip_edges = True
    extractor = knf.OnlineRawAudioSamples(opts)
    extractor.accept_waveform(float(sample_rate), np.ascontiguousarray(samples, dtype=np.float32))
    extractor.input_finished()
    if extractor.num_frames_ready == 0:
        return np.zeros((0, num_mel_bins), dtype=np.float32)
    frames = np.stack([np.asarray(extractor.get_frame(i), dtype=np.float64)
                       for i in range(extractor.num_frames_ready)])
    power = np.abs(np.fft.rfft(frames, n=_padded_window_size(sample_rate), axis=1)) ** 2
    energies = power @ mel_matrix(num_mel_bins, sample_rate).T
    return np.log(np.maximum(energies, _EPS)).astype(np.float32)


def beats_fbank(waveform: np.ndarray) -> np.ndarray:
    """BEATs' normalised input features of a 16 kHz clip in [-1, 1].

    Args:
        waveform: mono float samples at 16 kHz.

    Returns:
        ``(frames, 128)`` float32: ``(kaldi_fbank(waveform * 2**15) - 15.41663) / (2 * 6.55582)``.
    """
    fbank = kaldi_fbank(np.asarray(waveform, dtype=np.float64) * INT16_SCALE)
    return ((fbank - FBANK_MEAN) / (2.0 * FBANK_STD)).astype(np.float32)

"""Check that the items' audio files exist and are readable; record their length and format.

Each distinct file is probed once (its header only) and ``meta.duration`` (seconds, 3
decimals), ``meta.sample_rate`` and ``meta.channels`` are written into the items, so later
stages can sort by length without opening the audio.
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from toolkit.audio import TARGET_SR, AudioInfo, audio_info
from toolkit.errors import InputError, Pathlike
from toolkit.manifest import Item, resolve_audio

log = logging.getLogger(__name__)

MODES = ("auto", "yes", "no")
MISSING, UNREADABLE, EMPTY = "missing", "unreadable", "empty"


@dataclass(frozen=True)
class AudioProblem:
    """One item whose audio cannot be used.

    Attributes:
        item_id: the item.
        path: the resolved audio path.
        kind: ``"missing"``, ``"unreadable"`` or ``"empty"`` (zero frames).
        reason: a human-readable explanation.
    """

    item_id: str
    path: str
    kind: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path} [{self.item_id}]: {self.reason}"


@dataclass
class AudioReport:
    """Outcome of :func:`check_audio`.

    Attributes:
        mode: the mode used.
        items: items with an audio path.
        files: distinct files among them.
        readable: files whose header was read.
        missing: files that do not exist.
        metadata_only: ``mode="auto"`` found no file at all, so nothing was required.
        problems: items whose audio is missing, unreadable or empty (empty when
            ``metadata_only`` or ``mode="no"``).
        other_rates: sample rate -> number of readable files not at 16 kHz.
    """

    mode: str
    items: int = 0
    files: int = 0
    readable: int = 0
    missing: int = 0
    metadata_only: bool = False
    problems: list[AudioProblem] = field(default_factory=list)
    other_rates: dict[int, int] = field(default_factory=dict)

    def blocking(self, allow_missing: bool = False) -> list[AudioProblem]:
        """Problems that should stop the stage (missing files are waived by ``allow_missing``)."""
        return [p for p in self.problems if not (allow_missing and p.kind == MISSING)]

    def summary(self) -> dict:
        """JSON-ready counts for the sidecar."""
        return {"mode": self.mode, "items": self.items, "files": self.files, "readable": self.readable,
                "missing": self.missing, "metadata_only": self.metadata_only,
                "problems": dict(Counter(p.kind for p in self.problems)),
                "other_sample_rates": {str(k): v for k, v in self.other_rates.items()}}


def check_audio(items: Sequence[Item], data_root: Pathlike | None, mode: str = "auto",
                workers: int = 1) -> AudioReport:
    """Probe every item's audio file and record duration, sample rate and channels in ``meta``.

    Args:
        items: items to check; their ``meta`` is updated in place for readable files.
        data_root: folder that relative audio paths are relative to.
        mode: ``"auto"`` (if no file exists at all, report them as missing and require
            nothing - a metadata-only manifest; otherwise every missing or unreadable file is
            a problem), ``"yes"`` (every file must be there) or ``"no"`` (skip the check).
        workers: threads probing headers (helps on network file systems).

    Returns:
        The report. Zero-length files are always problems; sample rates other than 16 kHz
        are counted and logged as a warning (models resample).

    Raises:
        InputError: unknown mode.

    Example:
        >>> report = check_audio(items, "sakura/data")  # doctest: +SKIP
        >>> report.readable, items[0].meta["duration"]
        (48, 5.0)
    """
    if mode not in MODES:
        raise InputError(f"unknown audio check mode {mode!r}; valid: {list(MODES)}")
    with_audio = [(item, path) for item in items if (path := resolve_audio(item, data_root)) is not None]
    report = AudioReport(mode=mode, items=len(with_audio))
    if mode == "no":
        return report
    paths = list(dict.fromkeys(path for _, path in with_audio))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        probes = dict(zip(paths, pool.map(_probe, paths)))
    report.files = len(paths)
    report.missing = sum(probe == MISSING for probe in probes.values())
    report.readable = sum(isinstance(probe, AudioInfo) for probe in probes.values())
    report.metadata_only = mode == "auto" and report.missing == len(paths)
    for item, path in with_audio:
        _record(item, path, probes[path], report)
    _warn_rates(probes, report)
    return report


def _probe(path: Path) -> AudioInfo | str:
    """The header of ``path``, or why it cannot be used (``missing`` or an error message)."""
    try:
        return audio_info(path)
    except FileNotFoundError:
        return MISSING
    except RuntimeError as exc:  # soundfile.LibsndfileError
        return f"cannot read audio: {exc}"


def _record(item: Item, path: Path, probe: AudioInfo | str, report: AudioReport) -> None:
    if isinstance(probe, AudioInfo):
        if probe.frames == 0:
            report.problems.append(AudioProblem(item.id, str(path), EMPTY, "no audio samples (a header-only file)"))
            return
        item.meta.update(duration=round(probe.duration, 3), sample_rate=probe.sample_rate, channels=probe.channels)
    elif probe == MISSING:
        if not report.metadata_only:
            report.problems.append(AudioProblem(item.id, str(path), MISSING, "file not found"))
    else:
        report.problems.append(AudioProblem(item.id, str(path), UNREADABLE, probe))


def _warn_rates(probes: dict[Path, AudioInfo | str], report: AudioReport) -> None:
    rates = Counter(p.sample_rate for p in probes.values() if isinstance(p, AudioInfo) and p.sample_rate != TARGET_SR)
    report.other_rates = dict(rates)
    if rates:
        log.warning("%d audio file(s) not at %d Hz (%s); models resample them", sum(rates.values()), TARGET_SR,
                    ", ".join(f"{n} at {sr} Hz" for sr, n in sorted(rates.items())))

"""Spoken hints for the ``inject-...`` conditions: 16 kHz mono audio for a hint text.

A hint says one option: :func:`hint_text` gives ``"The answer is <option text>."``. Two
sources give its audio, both as a :class:`HintBank`:

- :class:`FolderHints`, a folder the user fills with any TTS (e.g. the study's neural TTS)::

      <folder>/hints.jsonl     one line per hint: {"text": "The answer is dog.", "audio": "dog.wav"}
      <folder>/dog.wav         any format and sample rate toolkit.audio.load_audio reads

  ``audio`` is relative to the folder (or absolute). Texts must match :func:`hint_text`
  exactly; a text listed twice is an error. :func:`render_hints` writes such a folder for
  every option of a manifest (``bin/perturb --render-hints DIR``), a template to re-voice.
- :class:`EspeakHints`, synthesised locally by espeak-ng (Debian/Ubuntu:
  ``apt-get install espeak-ng``), called as ``espeak-ng -v <voice> -s <rate> --stdin
  --stdout`` without a shell. Each hint is decoded to 16 kHz mono float32 once and cached as
  a float WAV under ``<cache dir>/<sha1 of [text, voice, rate, espeak-ng version]>.wav``;
  reruns read the cache, so they are bit-identical. espeak-ng's output is deterministic for
  one version and voice data; for bit-identical hints across nodes, put the cache on shared
  storage or pre-render a folder with ``--render-hints`` and pass it as ``--hints``.
"""

from __future__ import annotations

import abc
import argparse
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

import numpy as np
import soundfile as sf

from toolkit.atomic import atomic_write_jsonl
from toolkit.audio import TARGET_SR, load_audio, save_audio, to_mono_16k
from toolkit.errors import ConditionError, InputError, Pathlike
from toolkit.jsonl import iter_jsonl_objects
from toolkit.manifest import Item

log = logging.getLogger(__name__)

HINTS_INDEX = "hints.jsonl"
ESPEAK = "espeak-ng"
ESPEAK_INSTALL = "install it with `apt-get install espeak-ng` (Debian/Ubuntu; CI: slurm/ci/install.sh)"


def hint_text(option: str) -> str:
    """The sentence that states one option.

    Args:
        option: the option text; whitespace runs are collapsed and a final period dropped.

    Returns:
        ``"The answer is <option>."``

    Example:
        >>> hint_text(" a  dog. ")
        'The answer is a dog.'
    """
    return f"The answer is {' '.join(option.split()).rstrip('.')}."


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class HintBank(abc.ABC):
    """Audio for hint texts: 16 kHz mono float32, the same samples on every call."""

    @abc.abstractmethod
    def audio(self, text: str) -> np.ndarray:
        """The spoken ``text``.

        Args:
            text: a hint, as :func:`hint_text` writes it.

        Returns:
            (frames,) float32 at 16 kHz.

        Raises:
            ConditionError: no audio for this text (the item fails, the run goes on).
        """

    @abc.abstractmethod
    def describe(self) -> Dict[str, Any]:
        """What the hints come from (recorded in params and sidecars), e.g. ``{"hint_source": "espeak-ng", ...}``."""


class FolderHints(HintBank):
    """Hints recorded by the user: ``<folder>/hints.jsonl`` maps texts to audio files.

    Args:
        folder: the hint folder (see the module docstring).

    Raises:
        NotADirectoryError: ``folder`` is not a folder.
        InputError: ``hints.jsonl`` is missing, malformed, or lists a text twice.

    Example:
        >>> FolderHints("hints").audio("The answer is dog.").dtype   # doctest: +SKIP
        dtype('float32')
    """

    def __init__(self, folder: Pathlike) -> None:
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise NotADirectoryError(f"hint folder not found: {self.folder}")
        index = self.folder / HINTS_INDEX
        if not index.is_file():
            raise InputError(f"no {HINTS_INDEX} (lines of {{\"text\": ..., \"audio\": ...}}) in the hint folder",
                             self.folder)
        self._files: Dict[str, str] = {}
        for line, row in iter_jsonl_objects(index):
            if not isinstance(row.get("text"), str) or not isinstance(row.get("audio"), str):
                raise InputError("each line needs string fields 'text' and 'audio'", index, line)
            if row["text"] in self._files:
                raise InputError(f"hint text {row['text']!r} is listed twice", index, line)
            self._files[row["text"]] = row["audio"]

    def audio(self, text: str) -> np.ndarray:
        """The decoded file listed for ``text`` (see :meth:`HintBank.audio`).

        Raises:
            ConditionError: ``text`` is not in ``hints.jsonl`` or its file is unreadable.
        """
        if text not in self._files:
            raise ConditionError(f"no hint audio for {text!r} in {self.folder / HINTS_INDEX}")
        path = self.folder / self._files[text]
        try:
            return load_audio(path)
        except (OSError, RuntimeError) as exc:
            raise ConditionError(f"hint audio for {text!r} not readable: {exc}") from None

    def describe(self) -> Dict[str, Any]:
        """``{"hint_source": "folder", "hint_folder": <absolute path>}``."""
        return {"hint_source": "folder", "hint_folder": str(self.folder)}


class EspeakHints(HintBank):
    """Hints synthesised by espeak-ng, cached on disk (see the module docstring).

    Args:
        cache_dir: folder of cached hints (created when needed).
        voice: espeak-ng voice (``-v``).
        rate: words per minute (``-s``).

    Raises:
        InputError: espeak-ng is not installed (the message names the install step).

    Example:
        >>> EspeakHints("/tmp/hints").audio("The answer is dog.").size > 16000   # doctest: +SKIP
        True
    """

    def __init__(self, cache_dir: Pathlike, voice: str = "en-us", rate: int = 160) -> None:
        self.cache_dir = Path(cache_dir).resolve()
        self.voice = voice
        self.rate = int(rate)
        self.executable = shutil.which(ESPEAK)
        if self.executable is None:
            raise InputError(f"{ESPEAK} is not installed (needed for --tts {ESPEAK}): {ESPEAK_INSTALL}")
        banner = subprocess.run([self.executable, "--version"], capture_output=True, text=True, check=True).stdout
        found = re.search(r"text-to-speech:\s*(\S+)", banner)
        self.version = found.group(1) if found else banner.strip()

    def cache_path(self, text: str) -> Path:
        """Where the hint of ``text`` is cached (keyed by text, voice, rate and espeak-ng version)."""
        key = json.dumps([text, self.voice, self.rate, self.version], ensure_ascii=True)
        return self.cache_dir / f"{_text_key(key)}.wav"

    def audio(self, text: str) -> np.ndarray:
        """The cached hint, synthesised on first use (see :meth:`HintBank.audio`).

        Raises:
            ConditionError: espeak-ng failed on this text or gave no audio.
        """
        path = self.cache_path(text)
        if path.is_file():
            return load_audio(path)
        x = self.synthesise(text)
        save_audio(path, x, TARGET_SR, "float")  # atomic: concurrent workers write the same bytes
        log.debug("synthesised %r into %s", text, path)
        return x

    def synthesise(self, text: str) -> np.ndarray:
        """Speak any ``text`` with espeak-ng, without the cache (long texts that are written once).

        Args:
            text: what to say.

        Returns:
            (frames,) float32 at 16 kHz mono, the same samples for one text, voice, rate and
            espeak-ng version.

        Raises:
            ConditionError: espeak-ng failed on this text or gave no audio.

        Example:
            >>> EspeakHints("/tmp/hints").synthesise("Which planet is largest?").dtype   # doctest: +SKIP
            dtype('float32')
        """
        command = [self.executable, "-v", self.voice, "-s", str(self.rate), "--stdin", "--stdout"]
        run = subprocess.run(command, input=text.encode("utf-8"), capture_output=True, check=False)
        if run.returncode != 0 or not run.stdout:
            message = run.stderr.decode("utf-8", "replace").strip()
            raise ConditionError(f"{ESPEAK} failed on {text!r} (exit {run.returncode}): {message}")
        samples, sample_rate = sf.read(io.BytesIO(run.stdout), dtype="float32", always_2d=False)
        return to_mono_16k(samples, sample_rate)

    def describe(self) -> Dict[str, Any]:
        """Source, voice, rate and espeak-ng version."""
        return {"hint_source": ESPEAK, "hint_voice": self.voice, "hint_rate": self.rate,
                "espeak_version": self.version}


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/alm-toolkit/hints`` (``~/.cache/alm-toolkit/hints`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "alm-toolkit" / "hints"


def add_hint_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--hints``, ``--tts`` and ``--hint-cache`` (shared by ``bin/perturb`` and ``bin/infer``)."""
    group = parser.add_argument_group("spoken hints (inject-... conditions)")
    source = group.add_mutually_exclusive_group()
    source.add_argument("--hints", type=Path, metavar="DIR",
                        help=f"hint folder: {HINTS_INDEX} lines {{\"text\": \"The answer is <option>.\", "
                             "\"audio\": FILE} (any TTS)")
    source.add_argument("--tts", choices=(ESPEAK,),
                        help=f"synthesise hints locally with {ESPEAK} (needs `apt-get install espeak-ng`)")
    group.add_argument("--hint-cache", type=Path, metavar="DIR",
                       help=f"cache of synthesised hints (default: {default_cache_dir()})")


def hints_from_args(args: argparse.Namespace) -> Optional[HintBank]:
    """The hint bank chosen by :func:`add_hint_args`'s options, or None when neither is given.

    Raises:
        NotADirectoryError, InputError: see :class:`FolderHints` and :class:`EspeakHints`.
    """
    if args.hints is not None:
        return FolderHints(args.hints)
    if args.tts == ESPEAK:
        return EspeakHints(args.hint_cache or default_cache_dir())
    return None


def render_hints(items: Iterable[Item], bank: HintBank, folder: Pathlike) -> Path:
    """Write the hint of every option of ``items`` into a hint folder (see :class:`FolderHints`).

    Files are ``<sha1 of text>.wav`` (16 kHz float WAV, the bank's samples exactly);
    ``hints.jsonl`` lists them sorted by text. Seed-independent: it covers the correct and
    every possible wrong option.

    Args:
        items: manifest items (those without options are skipped).
        bank: where the audio comes from (e.g. :class:`EspeakHints`).
        folder: output folder.

    Returns:
        The path of ``hints.jsonl``.

    Raises:
        ConditionError: the bank has no audio for a text.
    """
    out = Path(folder)
    texts = sorted({hint_text(choice) for item in items for choice in item.choices or ()})
    rows = []
    for text in texts:
        name = f"{_text_key(text)}.wav"
        save_audio(out / name, bank.audio(text), TARGET_SR, "float")
        rows.append({"text": text, "audio": name})
    log.info("rendered %d hints into %s", len(rows), out)
    return atomic_write_jsonl(out / HINTS_INDEX, rows)

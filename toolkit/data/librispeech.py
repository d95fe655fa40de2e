"""LibriSpeech (one split, e.g. ``dev-clean``) -> ASR items.

Layout: ``<src>/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` with one
``<speaker>-<chapter>.trans.txt`` per chapter folder, whose lines are ``<utterance id>
<TRANSCRIPT>`` (upper case, as released). ``src`` may also be the split folder itself.

Every transcript line becomes one item: the official utterance id, ``task: asr``, the
transcript as ``reference``, ``audio`` relative to ``src``. A flac without a transcript line,
a line for another chapter, a repeated id or an empty transcript stops the stage with the
file and line.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from toolkit.errors import InputError, Pathlike
from toolkit.manifest import Item, check_items

log = logging.getLogger(__name__)

SPLITS = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100", "train-clean-360",
          "train-other-500")
QUESTION = "Transcribe the speech in the recording."
_UTTERANCE = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def prepare_librispeech(src: Pathlike, split: str) -> list[Item]:
    """Read the transcripts of one LibriSpeech split.

    Args:
        src: the LibriSpeech folder holding ``<split>/`` (or the split folder itself).
        split: ``dev-clean``, ``test-clean``, ... (any folder name is accepted; the
            official ones are in :data:`SPLITS`).

    Returns:
        Items sorted by speaker, chapter and utterance (numerically); ``audio`` is
        ``<split>/<speaker>/<chapter>/<id>.flac`` (relative to the folder holding the split
        folder), ``subset`` is the split, ``meta`` has ``speaker``, ``chapter`` and ``split``.

    Raises:
        FileNotFoundError: the split folder, or a chapter's ``.trans.txt``, is missing.
        InputError: a malformed transcript line, an utterance id of another chapter, a
            repeated id (file and line), or a flac without a transcript line.

    Example:
        >>> items = prepare_librispeech("LibriSpeech", "dev-clean")  # doctest: +SKIP
        >>> items[0].id, items[0].audio, items[0].reference[:20]
        ('1272-128104-0000', 'dev-clean/1272/128104/1272-128104-0000.flac', 'MISTER QUILTER IS TH')
    """
    folder = find_split_folder(src, split)
    chapters = sorted((p for p in folder.glob("*/*") if p.is_dir()), key=_numeric_key)
    if not chapters:
        raise FileNotFoundError(f"no <speaker>/<chapter>/ folders in {folder}")
    items = [item for chapter in chapters for item in _chapter_items(chapter, folder.parent, split)]
    log.debug("%s: %d utterances in %d chapters", folder, len(items), len(chapters))
    return check_items(items, source=str(folder))


def find_split_folder(src: Pathlike, split: str) -> Path:
    """``src/<split>``, or ``src`` when it already is the split folder; audio paths are relative to its parent.

    Raises:
        FileNotFoundError: neither is a folder (the message lists the folders in ``src``).
    """
    src = Path(src)
    if (src / split).is_dir():
        return src / split
    if src.is_dir() and src.name == split:
        return src
    known = sorted(p.name for p in src.iterdir() if p.is_dir()) if src.is_dir() else []
    raise FileNotFoundError(f"LibriSpeech split folder not found: {src / split} (folders there: {known})")


def _numeric_key(path: Path) -> tuple:
    """Sort key of a ``<speaker>/<chapter>`` folder: numbers numerically, other names after."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in path.parts[-2:])


def _chapter_items(chapter: Path, root: Path, split: str) -> list[Item]:
    speaker = chapter.parent.name
    trans = chapter / f"{speaker}-{chapter.name}.trans.txt"
    if not trans.is_file():
        raise FileNotFoundError(f"transcript file not found: {trans}")
    prefix = chapter.relative_to(root)
    items: dict[str, Item] = {}
    lines: dict[str, int] = {}
    with open(trans, "r", encoding="utf-8") as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            utt, _, transcript = text.strip().partition(" ")
            m = _UTTERANCE.match(utt)
            if not m or not transcript.strip():
                raise InputError(f"expected '<speaker>-<chapter>-<utt> <TRANSCRIPT>', got {text.strip()!r}",
                                 trans, line)
            if (m.group(1), m.group(2)) != (speaker, chapter.name):
                raise InputError(f"utterance {utt!r} is not of speaker {speaker}, chapter {chapter.name}",
                                 trans, line)
            if utt in lines:
                raise InputError(f"utterance {utt!r} repeated (first on line {lines[utt]})", trans, line)
            lines[utt] = line
            items[utt] = Item(id=utt, dataset="librispeech", subset=split, audio=(prefix / f"{utt}.flac").as_posix(),
                              question=QUESTION, task="asr", reference=" ".join(transcript.split()),
                              meta={"speaker": speaker, "chapter": chapter.name, "split": split})
    orphans = sorted(p.name for p in chapter.glob("*.flac") if p.stem not in items)
    if orphans:
        raise InputError(f"{len(orphans)} flac file(s) without a transcript line, e.g. {orphans[0]}", trans)
    return [items[utt] for utt in sorted(items, key=lambda u: int(_UTTERANCE.match(u).group(3)))]

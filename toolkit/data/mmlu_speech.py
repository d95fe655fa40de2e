"""MMLU as speech: every question twice, spoken (audio) and written (text only).

Source (``cais/mmlu``): ``--src`` is one file or a folder searched recursively for the
files of one split:

- parquet, the hub layout ``<subject>/<split>-00000-of-00001.parquet`` (columns
  ``question``, ``subject``, ``choices`` (4 strings), ``answer`` (0-3)); the ``all/`` copy is
  skipped when per-subject files are present. Needs ``pyarrow``.
- CSV with a header: ``question``, ``choices`` (a JSON or Python list of 4 strings) or
  ``A,B,C,D``, ``answer`` (0-3 or A-D), optional ``subject``.
- CSV without a header, the original release ``<split>/<subject>_<split>.csv``: question,
  four options, answer letter.

A file belongs to split ``s`` when it is named ``s-*.parquet`` or ``*_s.csv`` or sits in a
folder named ``s``. Questions are numbered per subject in file order: ``mmlu_<subject>_<n>``.

Each question gives two items linked by ``meta.twin``, with ``meta.modality``:

- ``mmlu_<subject>_<n>_text``: ``audio`` null, the question and its four options as text.
- ``mmlu_<subject>_<n>_audio``: the recording reads :func:`spoken_text` (question and
  options); the text part only says to answer from it, and the choices are
  ``Option A`` .. ``Option D`` (the option texts are in ``meta.options``).

Speech comes from one folder, the items' data root, holding ``<question id>.<ext>``
(``mmlu_<subject>_<n>.wav``; ``.flac``, ``.mp3`` and ``.ogg`` too):

- ``speak="espeak"`` synthesises every missing or outdated file there with espeak-ng
  (16 kHz mono 16-bit WAV) and lists them in ``speech.jsonl`` (``id``, ``text``, ``audio``,
  ``key`` = hash of text, voice, rate and espeak-ng version); a rerun only synthesises
  what changed.
- ``speak=<folder>`` takes files a user made with any TTS. Each file says the audio
  item's ``meta.spoken_text``; prepare with the folder still empty to get those texts (a
  metadata-only manifest), synthesise them, then prepare again to check the audio.
"""

from __future__ import annotations

import ast
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from toolkit.atomic import atomic_write_jsonl
from toolkit.audio import TARGET_SR, save_audio
from toolkit.data._common import iter_csv_rows, load_jsonl
from toolkit.errors import ConditionError, InputError, Pathlike
from toolkit.manifest import Item, check_items, letter

log = logging.getLogger(__name__)

ESPEAK = "espeak"
SPEECH_INDEX = "speech.jsonl"
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")
N_OPTIONS = 4
AUDIO_CHOICES = [f"Option {letter(i)}" for i in range(N_OPTIONS)]
AUDIO_QUESTION = ("The recording reads a multiple-choice question and its options, Option A to Option D. "
                  "Answer the question in the recording.")
_SKIPPED_FOLDERS = ("all", "auxiliary_train")


@dataclass(frozen=True)
class MmluQuestion:
    """One source question and where it was read.

    Attributes:
        subject: the subject (``abstract_algebra`` ...), as used in ids.
        question: the question text.
        choices: the four option texts.
        answer: 0-based index of the correct option.
        path: source file.
        line: CSV line, or None for parquet.
        row: 0-based parquet row, or None for CSV.
    """

    subject: str
    question: str
    choices: list[str]
    answer: int
    path: Path
    line: Optional[int] = None
    row: Optional[int] = None

    def source(self) -> dict:
        """``{"source_file": ..., "source_line"|"source_row": ...}`` for ``meta``."""
        where = {"source_line": self.line} if self.line is not None else {"source_row": self.row}
        return {"source_file": self.path.name, **where}


def spoken_text(question: str, choices: Sequence[str]) -> str:
    """What the audio item's recording says: the question, then each option with its letter.

    Args:
        question: the question text.
        choices: the option texts.

    Returns:
        One paragraph, whitespace collapsed.

    Example:
        >>> spoken_text("2 + 2 = ?", ["3", "4"])
        'Question: 2 + 2 = ? Option A: 3. Option B: 4.'
    """
    def clean(text: str) -> str:
        return " ".join(text.split()).rstrip(".")

    options = " ".join(f"Option {letter(i)}: {clean(c)}." for i, c in enumerate(choices))
    return f"Question: {' '.join(question.split())} {options}"


def prepare_mmlu(
    src: Pathlike,
    speak: Pathlike,
    speech_dir: Optional[Pathlike] = None,
    split: str = "test",
    subjects: Optional[Sequence[str]] = None,
    per_subject: Optional[int] = None,
    voice: str = "en-us",
    rate: int = 160,
) -> list[Item]:
    """Read MMLU questions and make their spoken and written twins.

    Args:
        src: a source file, or a folder with the files of ``split`` (see the module docstring).
        speak: ``"espeak"`` to synthesise the speech into ``speech_dir``, or the folder of
            recordings made with another TTS.
        speech_dir: where espeak-ng writes (required with ``"espeak"``; with a folder it
            must be that folder or None).
        split: ``test``, ``validation``, ``dev`` ... (ignored when ``src`` is a file).
        subjects: keep only these subjects (default: all).
        per_subject: keep the first ``n`` questions of each subject (default: all).
        voice: espeak-ng voice.
        rate: espeak-ng words per minute.

    Returns:
        Text then audio twin for each question in source order; ``audio`` is relative to
        the speech folder. ``subset`` and ``meta.subject`` are the subject.

    Raises:
        FileNotFoundError: ``src`` does not exist or has no file for ``split``.
        NotADirectoryError: the speech folder does not exist.
        InputError: a malformed row (file and line, or row), an unknown subject, espeak-ng
            missing or failing, or two recordings for one question.

    Example:
        >>> items = prepare_mmlu("mmlu", "espeak", speech_dir="mmlu-speech")  # doctest: +SKIP
        >>> items[0].id, items[1].id, items[1].audio
        ('mmlu_abstract_algebra_0_text', 'mmlu_abstract_algebra_0_audio', 'mmlu_abstract_algebra_0.wav')
    """
    folder = _speech_folder(speak, speech_dir)
    questions = _select(read_mmlu(src, split), subjects, per_subject)
    numbered = _number(questions)
    texts = {qid: spoken_text(q.question, q.choices) for qid, q in numbered}
    if str(speak) == ESPEAK:
        folder.mkdir(parents=True, exist_ok=True)
        speech = _speak_espeak(texts, folder, voice, rate)
    elif not folder.is_dir():
        raise NotADirectoryError(f"speech folder not found: {folder}")
    else:
        speech = {"speech": "folder"}
    items = [item for qid, q in numbered for item in _twins(qid, q, _audio_name(folder, qid), texts[qid], speech)]
    log.info("%d questions -> %d items (speech in %s)", len(numbered), len(items), folder)
    return check_items(items, source=str(src))


def read_mmlu(src: Pathlike, split: str = "test") -> list[MmluQuestion]:
    """Every question of one split, in file order (files sorted by path).

    Args:
        src: a parquet or CSV file, or a folder searched recursively.
        split: the split whose files are read from a folder.

    Returns:
        The questions.

    Raises:
        FileNotFoundError: ``src`` does not exist or holds no file of ``split``.
        InputError: a malformed row, naming the file and line (CSV) or row (parquet).
    """
    src = Path(src)
    if src.is_file():
        files = [src]
    elif src.is_dir():
        files = _split_files(src, split)
    else:
        raise FileNotFoundError(f"MMLU source not found: {src}")
    questions = [q for path in files for q in _read_file(path, split)]
    log.debug("%s: %d questions in %d file(s)", src, len(questions), len(files))
    return questions


def _split_files(folder: Path, split: str) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".parquet", ".csv") and _in_split(p, split))
    per_subject = [p for p in files if p.parent.name not in _SKIPPED_FOLDERS]
    files = per_subject or [p for p in files if p.parent.name != "auxiliary_train"]
    if not files:
        raise FileNotFoundError(f"no MMLU parquet or CSV file of split {split!r} under {folder} "
                                f"(expected <subject>/{split}-*.parquet or {split}/<subject>_{split}.csv)")
    return files


def _in_split(path: Path, split: str) -> bool:
    return path.stem.startswith(f"{split}-") or path.stem.endswith(f"_{split}") or path.parent.name == split


def _read_file(path: Path, split: str) -> Iterator[MmluQuestion]:
    if path.suffix == ".parquet":
        return _read_parquet(path)
    return _read_csv(path, split)


def _read_parquet(path: Path) -> Iterator[MmluQuestion]:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise InputError(f"not a readable parquet file: {exc}", path) from None
    for row, record in enumerate(frame.to_dict("records")):
        key = f"row {row}"
        choices = record.get("choices")
        choices = list(choices) if isinstance(choices, (list, tuple, np.ndarray)) else choices
        subject = record.get("subject") or path.parent.name
        yield _question(path, None, key, subject, record.get("question"), choices, record.get("answer"), row=row)


def _read_csv(path: Path, split: str) -> Iterator[MmluQuestion]:
    rows = iter_csv_rows(path)
    first = next(rows, None)
    if first is None:
        return
    line, fields = first
    header = [f.strip().lower() for f in fields]
    file_subject = path.stem[: -len(f"_{split}")] if path.stem.endswith(f"_{split}") else path.stem
    if "question" not in header:  # original release: question, A, B, C, D, answer letter
        yield _headerless(path, line, fields, file_subject)
        for line, fields in rows:
            yield _headerless(path, line, fields, file_subject)
        return
    for line, fields in rows:
        if len(fields) != len(header):
            raise InputError(f"row has {len(fields)} fields, header has {len(header)}", path, line)
        record = dict(zip(header, fields))
        if "choices" in record:
            choices = _parse_list(record["choices"], path, line)
        else:
            choices = [record.get(c) for c in ("a", "b", "c", "d")]
        yield _question(path, line, None, record.get("subject") or file_subject, record.get("question"), choices,
                        record.get("answer"))


def _headerless(path: Path, line: int, fields: list[str], subject: str) -> MmluQuestion:
    if len(fields) != N_OPTIONS + 2:
        raise InputError(f"expected 6 fields (question, A, B, C, D, answer) or a header row with 'question', "
                         f"got {len(fields)}", path, line)
    return _question(path, line, None, subject, fields[0], fields[1:5], fields[5])


def _parse_list(text: str, path: Path, line: int) -> Any:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        raise InputError(f"field 'choices' should be a list like [\"a\", \"b\", \"c\", \"d\"], got {text!r}",
                         path, line) from None


def _answer_index(value: Any, path: Path, line: Optional[int], key: Optional[str]) -> int:
    text = str(value).strip()
    if text.isdigit() and int(text) < N_OPTIONS:
        return int(text)
    if len(text) == 1 and text.upper() in "ABCD":
        return ord(text.upper()) - ord("A")
    raise InputError(f"answer should be 0-3 or A-D, got {value!r}", path, line, key)


def _question(path: Path, line: Optional[int], key: Optional[str], subject: Any, question: Any, choices: Any,
              answer: Any, row: Optional[int] = None) -> MmluQuestion:
    if not isinstance(question, str) or not question.strip():
        raise InputError("missing or empty field 'question'", path, line, key)
    if (not isinstance(choices, list) or len(choices) != N_OPTIONS
            or not all(isinstance(c, str) and c.strip() for c in choices)):
        raise InputError(f"expected {N_OPTIONS} non-empty option texts, got {choices!r}", path, line, key)
    if not isinstance(subject, str) or not subject.strip():
        raise InputError("missing or empty field 'subject'", path, line, key)
    return MmluQuestion(subject=re.sub(r"[^A-Za-z0-9_.-]+", "_", subject.strip()), question=question.strip(),
                        choices=[c.strip() for c in choices], answer=_answer_index(answer, path, line, key),
                        path=path, line=line, row=row)


def _select(questions: list[MmluQuestion], subjects: Optional[Sequence[str]],
            per_subject: Optional[int]) -> list[MmluQuestion]:
    if subjects:
        known = sorted({q.subject for q in questions})
        unknown = [s for s in subjects if s not in known]
        if unknown:
            raise InputError(f"unknown subject(s) {unknown}; valid: {known}")
        questions = [q for q in questions if q.subject in subjects]
    if per_subject is None:
        return questions
    taken: dict[str, int] = {}
    kept = []
    for q in questions:
        taken[q.subject] = taken.get(q.subject, 0) + 1
        if taken[q.subject] <= per_subject:
            kept.append(q)
    return kept


def _number(questions: list[MmluQuestion]) -> list[tuple[str, MmluQuestion]]:
    """``(mmlu_<subject>_<n>, question)`` with ``n`` counting within the subject from 0."""
    counts: dict[str, int] = {}
    numbered = []
    for q in questions:
        n = counts.get(q.subject, 0)
        counts[q.subject] = n + 1
        numbered.append((f"mmlu_{q.subject}_{n}", q))
    return numbered


def _speech_folder(speak: Pathlike, speech_dir: Optional[Pathlike]) -> Path:
    if str(speak) == ESPEAK:
        if speech_dir is None:
            raise InputError(f"speak={ESPEAK!r} needs a speech folder to write to")
        return Path(speech_dir)
    if speech_dir is not None and Path(speech_dir).resolve() != Path(speak).resolve():
        raise InputError(f"the recordings of speak={str(speak)!r} are the data root; got another one: {speech_dir}")
    return Path(speak)


def _audio_name(folder: Path, qid: str) -> str:
    """The one ``<qid>.<ext>`` file in ``folder`` (``<qid>.wav`` when there is none yet)."""
    found = [f"{qid}{ext}" for ext in AUDIO_EXTENSIONS if (folder / f"{qid}{ext}").is_file()]
    if len(found) > 1:
        raise InputError(f"more than one recording for {qid}: {found}", folder, key=qid)
    return found[0] if found else f"{qid}.wav"


def _speak_espeak(texts: dict[str, str], folder: Path, voice: str, rate: int) -> dict:
    """Synthesise every text whose ``<qid>.wav`` is missing or was made from another key."""
    from toolkit.perturb.hints import ESPEAK as ESPEAK_NG
    from toolkit.perturb.hints import EspeakHints

    bank = EspeakHints(folder, voice=voice, rate=rate)
    index = folder / SPEECH_INDEX
    rows = {row["id"]: row for _, row in load_jsonl(index)} if index.is_file() else {}
    made = 0
    for qid, text in texts.items():
        key, name = bank.cache_path(text).stem, f"{qid}.wav"
        if rows.get(qid, {}).get("key") == key and (folder / name).is_file():
            continue
        try:
            x = bank.synthesise(text)
        except ConditionError as exc:
            raise InputError(str(exc), key=qid) from None
        save_audio(folder / name, np.clip(x, -1.0, 32767 / 32768), TARGET_SR, "pcm16")
        rows[qid] = {"id": qid, "text": text, "audio": name, "key": key}
        made += 1
    atomic_write_jsonl(index, [rows[qid] for qid in sorted(rows)])
    log.info("espeak-ng: %d recording(s) synthesised, %d reused in %s", made, len(texts) - made, folder)
    return {"speech": ESPEAK_NG, "voice": voice, "rate": rate, "espeak_version": bank.version}


def _twins(qid: str, q: MmluQuestion, audio: str, text: str, speech: dict) -> tuple[Item, Item]:
    text_id, audio_id = f"{qid}_text", f"{qid}_audio"
    common = {"subject": q.subject, "question_id": qid, **q.source()}
    written = Item(id=text_id, dataset="mmlu", subset=q.subject, audio=None, question=q.question,
                   choices=list(q.choices), answer=q.answer,
                   meta={**common, "modality": "text", "twin": audio_id})
    spoken = Item(id=audio_id, dataset="mmlu", subset=q.subject, audio=audio, question=AUDIO_QUESTION,
                  choices=list(AUDIO_CHOICES), answer=q.answer,
                  meta={**common, "modality": "audio", "twin": text_id, "spoken_text": text,
                        "options": list(q.choices), **speech})
    return written, spoken

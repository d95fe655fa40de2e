"""Manifests written by the earlier scripts, read as they are.

A line looks like::

    {"id": "sakura_animal_0_single", "question": "...", "choices": "(A) sheep (B) cat ...",
     "choices_list": ["sheep", "cat", ...], "audio_path": "{DATA_ROOT}/sakura/data/Animal/audio/cat0.wav",
     "answer": "(b) cat", "true_letter": "B"}

``choices_list`` is absent from the MMAU manifest (the ``choices`` string is parsed then).
The gold index comes from ``true_letter`` and is checked against the ``answer`` text; what
happens when they disagree is chosen with ``on_mismatch`` (the real MMAR manifest has 15
such lines, where the earlier scripts picked the first choice *containing* the answer text,
e.g. "Not affected by sour" for "Affected by sour").
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from toolkit.data._common import (get_field, get_string_list, load_jsonl, matching_choices, normalize_text,
                                  parse_lettered_answer, parse_options)
from toolkit.errors import InputError, Pathlike
from toolkit.manifest import Item, check_items, letter

log = logging.getLogger(__name__)

PLACEHOLDER = "{DATA_ROOT}"
ON_MISMATCH = ("error", "letter", "text")
_STRUCTURED_ID = re.compile(r"^([a-z0-9]+)_([a-z0-9]+)_\d+_(single|multi)$")


@dataclass(frozen=True)
class SeedEntry:
    """One decoded line of an earlier-scripts manifest.

    Attributes:
        path: the manifest file.
        line: 1-based line number.
        id: the seed id.
        question: question text as stored.
        choices: option texts (``choices_list``, or parsed from the ``choices`` string).
        letter_index: 0-based index of ``true_letter``.
        answer: the ``answer`` string as stored (``"(b) cat"``).
        audio_path: the path as stored, placeholder included.
    """

    path: str
    line: int
    id: str
    question: str
    choices: list[str]
    letter_index: int
    answer: str
    audio_path: str

    @property
    def audio_file(self) -> str:
        """Bare file name of the audio."""
        return PurePosixPath(self.audio_path).name

    @property
    def answer_agrees(self) -> bool:
        """Whether ``answer`` names the same option as ``true_letter`` (letter and text)."""
        index, text = parse_lettered_answer(self.answer)
        if index is not None and index != self.letter_index:
            return False
        return not text or normalize_text(text) == normalize_text(self.choices[self.letter_index])


def read_seed_manifest(path: Pathlike) -> list[SeedEntry]:
    """Read an earlier-scripts manifest.

    Args:
        path: the JSONL file.

    Returns:
        Its entries in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        InputError: naming the file and line for malformed JSON, a missing or mistyped
            field, an unparsable ``choices`` string or a ``true_letter`` beyond the options.

    Example:
        >>> entries = read_seed_manifest("seed-results/manifests/animal_manifest.jsonl")  # doctest: +SKIP
        >>> entries[0].id, entries[0].audio_file
        ('sakura_animal_0_single', 'cat0.wav')
    """
    return [_decode_entry(d, path, lineno) for lineno, d in load_jsonl(path)]


def _decode_entry(d: dict, path: Pathlike, lineno: int) -> SeedEntry:
    item_id = get_field(d, "id", str, path, lineno)
    if "choices_list" in d:
        choices = get_string_list(d, "choices_list", path, lineno, item_id)
    else:
        prefix, choices = parse_options(get_field(d, "choices", str, path, lineno, item_id), path, lineno, item_id)
        if prefix:
            raise InputError(f"choices string has text before (A): {prefix!r}", path, lineno, item_id)
    true_letter = get_field(d, "true_letter", str, path, lineno, item_id)
    valid = [letter(i) for i in range(len(choices))]
    if true_letter not in valid:
        raise InputError(f"true_letter {true_letter!r} is not one of {valid}", path, lineno, item_id)
    return SeedEntry(path=str(path), line=lineno, id=item_id,
                     question=get_field(d, "question", str, path, lineno, item_id),
                     choices=choices, letter_index=valid.index(true_letter),
                     answer=get_field(d, "answer", str, path, lineno, item_id),
                     audio_path=get_field(d, "audio_path", str, path, lineno, item_id))


def looks_like_seed_manifest(path: Pathlike) -> bool:
    """Whether the first line of ``path`` is an earlier-scripts manifest entry (``true_letter``
    and ``audio_path``), so a reader can tell the two manifest kinds apart."""
    import json

    with open(path, "r", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(first, dict) and "true_letter" in first and "audio_path" in first
    return False


def seed_audio(audio_path: str, data_root: Pathlike | None) -> str:
    """Replace the ``{DATA_ROOT}`` placeholder by ``data_root``, or drop it to leave a relative path."""
    if not audio_path.startswith(PLACEHOLDER):
        return audio_path
    rest = audio_path[len(PLACEHOLDER):].lstrip("/")
    return rest if data_root is None else str(Path(data_root) / rest)


def prepare_seed(
    src_manifest: Pathlike,
    data_root: Pathlike | None = None,
    dataset: str | None = None,
    subset: str | None = None,
    on_mismatch: str = "error",
) -> list[Item]:
    """Turn an earlier-scripts manifest into items, keeping the seed ids.

    Dataset, subset and hop come from ids like ``sakura_animal_0_single``; otherwise the
    dataset is the file name without ``_manifest`` (``mmau_manifest.jsonl`` -> ``mmau``).

    Args:
        src_manifest: the JSONL file.
        data_root: replaces ``{DATA_ROOT}`` in audio paths; None strips the placeholder so
            paths are relative to the ``--data-root`` given later.
        dataset: overrides the inferred dataset.
        subset: overrides the inferred subset.
        on_mismatch: when ``answer`` and ``true_letter`` disagree: ``"error"`` raises,
            ``"letter"`` keeps ``true_letter`` (what old results were scored against),
            ``"text"`` takes the first choice equal to the answer text (the letter when no
            choice is). Either way ``meta.answer_mismatch`` records the stored answer.

    Returns:
        One item per line, ``meta`` holding ``seed_id`` and ``audio_file``.

    Raises:
        InputError: see :func:`read_seed_manifest`; also an answer mismatch under
            ``"error"``, an unknown ``on_mismatch`` or a duplicate id.

    Example:
        >>> items = prepare_seed("mmau_manifest.jsonl")  # doctest: +SKIP
        >>> items[0].dataset, items[0].audio
        ('mmau', 'audio/3fe64f3d-282c-4bc8-a753-68f8f6c35652.wav')
    """
    if on_mismatch not in ON_MISMATCH:
        raise InputError(f"unknown on_mismatch {on_mismatch!r}; valid: {list(ON_MISMATCH)}")
    items = [_to_item(entry, data_root, dataset, subset, on_mismatch) for entry in read_seed_manifest(src_manifest)]
    mismatches = sum("answer_mismatch" in item.meta for item in items)
    if mismatches:
        log.warning("%s: %d line(s) whose answer text disagrees with true_letter (resolved by %r)",
                    src_manifest, mismatches, on_mismatch)
    return check_items(items, source=str(src_manifest))


def _infer_names(entry: SeedEntry) -> tuple[str, str | None, str | None]:
    m = _STRUCTURED_ID.match(entry.id)
    if m:
        return m.group(1), m.group(2), m.group(3)
    return Path(entry.path).stem.removesuffix("_manifest"), None, None


def _resolve_answer(entry: SeedEntry, on_mismatch: str) -> int:
    if entry.answer_agrees or on_mismatch == "letter":
        return entry.letter_index
    if on_mismatch == "error":
        raise InputError(f"answer {entry.answer!r} disagrees with true_letter {letter(entry.letter_index)} "
                         f"({entry.choices[entry.letter_index]!r})", entry.path, entry.line, entry.id)
    matches = matching_choices(parse_lettered_answer(entry.answer)[1], entry.choices)
    return matches[0] if matches else entry.letter_index


def _to_item(entry: SeedEntry, data_root: Pathlike | None, dataset: str | None, subset: str | None,
             on_mismatch: str) -> Item:
    inferred_dataset, inferred_subset, hop = _infer_names(entry)
    meta: dict = {"seed_id": entry.id, "audio_file": entry.audio_file}
    if not entry.answer_agrees:
        meta["answer_mismatch"] = {"answer": entry.answer, "true_letter": letter(entry.letter_index)}
    return Item(id=entry.id, dataset=dataset or inferred_dataset, subset=subset or inferred_subset, hop=hop,
                audio=seed_audio(entry.audio_path, data_root), question=entry.question.strip(),
                choices=entry.choices, answer=_resolve_answer(entry, on_mismatch), meta=meta)

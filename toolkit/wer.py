"""Word error rate of ASR outputs: Whisper English normalisation, then jiwer alignments.

Both sides are normalised with the Whisper English text normaliser (package
``whisper-normalizer``: lowercase, punctuation removed, numbers written as digits, British
spellings and contractions standardised), then aligned word by word with
``jiwer.process_words``. Counts add up: the WER of a set of items is the sum of their
edits over the sum of their reference words (:func:`total`), never the mean of per-item
WERs.

The hypothesis is the model's final text: when the output holds a reasoning block
(``<think>...</think>``, ``<Reasoning>...</Reasoning>``) the text after it, as
:func:`toolkit.answers.split_reasoning` cuts it; otherwise the whole output (a transcript
has no "last sentence" to single out). A row that failed (``error`` set) scores as the
deletion of every reference word.

Example:
    >>> c = count_errors("the cat sat", "the cat sat down", item_id="u1")
    >>> (c.hits, c.substitutions, c.deletions, c.insertions, round(c.wer, 4))
    (3, 0, 0, 1, 0.3333)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterable, Optional

import jiwer

from toolkit.answers import has_reasoning_block, split_reasoning
from toolkit.errors import InputError


@functools.lru_cache(maxsize=1)
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    """Whisper English normalisation, e.g. ``"Mr. Smith's 2 cats"`` -> ``"mister smith is 2 cats"``.

    Args:
        text: raw text.

    Returns:
        The normalised text (words separated by single spaces).
    """
    return " ".join(_normalizer()(text).split())


def hypothesis_text(raw_output: Optional[str]) -> str:
    """The transcript a model output states ("" for None).

    Args:
        raw_output: the model's output.

    Returns:
        The text after a reasoning block when there is one (empty for a block never
        closed), else the whole output, stripped.
    """
    if raw_output is None:
        return ""
    if has_reasoning_block(raw_output):
        return split_reasoning(raw_output)[1]
    return raw_output.strip()


@dataclass(frozen=True)
class WerCounts:
    """Alignment counts of one or more utterances.

    Attributes:
        hits: reference words matched.
        substitutions: reference words replaced.
        deletions: reference words missing from the hypothesis.
        insertions: hypothesis words with no reference word.
    """

    hits: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0

    @property
    def ref_words(self) -> int:
        """Number of reference words (hits + substitutions + deletions)."""
        return self.hits + self.substitutions + self.deletions

    @property
    def edits(self) -> int:
        """Substitutions + deletions + insertions."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """Edits / reference words (nan without reference words)."""
        return self.edits / self.ref_words if self.ref_words else float("nan")

    def __add__(self, other: "WerCounts") -> "WerCounts":
        return WerCounts(self.hits + other.hits, self.substitutions + other.substitutions,
                         self.deletions + other.deletions, self.insertions + other.insertions)


def total(counts: Iterable[WerCounts]) -> WerCounts:
    """Corpus-level counts: the sum of the items' counts (its ``wer`` is the corpus WER).

    Args:
        counts: per-item counts.

    Returns:
        The summed counts (all zero for no items).
    """
    return sum(counts, WerCounts())


def normalized_reference(reference: Optional[str], item_id: str) -> str:
    """The normalised reference of an item, which must hold at least one word.

    Args:
        reference: the manifest item's ``reference``.
        item_id: the item id, for the error message.

    Returns:
        The normalised reference.

    Raises:
        InputError: the reference is missing, empty, or empty after normalisation.
    """
    if reference is None or not reference.strip():
        raise InputError("ASR item has no reference text (WER needs one)", key=item_id)
    norm = normalize(reference)
    if not norm:
        raise InputError(f"ASR reference {reference!r} is empty after Whisper normalisation", key=item_id)
    return norm


def align(reference: str, hypothesis: str) -> WerCounts:
    """Align two normalised texts.

    Args:
        reference: normalised reference with at least one word (:func:`normalized_reference`).
        hypothesis: normalised hypothesis (may be empty: every reference word is deleted).

    Returns:
        The counts.
    """
    out = jiwer.process_words(reference, hypothesis)
    return WerCounts(out.hits, out.substitutions, out.deletions, out.insertions)


def count_errors(reference: Optional[str], hypothesis: str, item_id: str) -> WerCounts:
    """Normalise both raw texts and align them.

    Args:
        reference: the reference transcript (raw).
        hypothesis: the hypothesis transcript (raw; may be empty).
        item_id: the item id, for error messages.

    Returns:
        The item's counts.

    Raises:
        InputError: see :func:`normalized_reference`.
    """
    return align(normalized_reference(reference, item_id), normalize(hypothesis))

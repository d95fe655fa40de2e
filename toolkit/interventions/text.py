"""Splitting reasoning into sentences and words, the units interventions cut and replace."""

from __future__ import annotations

import functools
import re
from typing import List

#: abbreviations the untrained Punkt splitter must not end a sentence at
ABBREVIATIONS = ("e.g", "i.e", "etc", "vs", "mr", "mrs", "ms", "dr", "st", "no", "approx", "a.m", "p.m", "cf", "fig")
_WORDS = re.compile(r"\S+")


@functools.lru_cache(maxsize=1)
def _splitter():
    from toolkit.answers import import_nltk

    import_nltk()
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    params = PunktParameters()
    params.abbrev_types = set(ABBREVIATIONS)
    return PunktSentenceTokenizer(params)


def split_sentences(text: str) -> List[str]:
    """Sentences of ``text`` (nltk's Punkt splitter with common abbreviations; works offline).

    Example:
        >>> split_sentences("It barks, e.g. twice. So it is a dog! Answer: (B)")
        ['It barks, e.g. twice.', 'So it is a dog!', 'Answer: (B)']
    """
    return [s.strip() for s in _splitter().tokenize(text.strip()) if s.strip()]


def split_words(text: str) -> List[str]:
    """Whitespace-separated tokens (words with their punctuation)."""
    return _WORDS.findall(text)

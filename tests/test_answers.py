"""Answer extraction: one literal response per rule with its exact output, then the real outputs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from toolkit.answers import RULES, Extraction, Rule, extract_answer, split_reasoning
from toolkit.data.seed_legacy import read_seed_manifest
from toolkit.manifest import letter

ANIMALS = ["dog", "cat", "cow", "crow"]


# --- split_reasoning -------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("<Reasoning>\nThe audio contains a meow.\n</Reasoning>\n<B>", ("The audio contains a meow.", "<B>")),
    ("<think>It barks.</think>\nAnswer: (A)", ("It barks.", "Answer: (A)")),
    ("<Reasoning>\nThe sound is long and", ("The sound is long and", "")),
    ("C\nHuman: What is the sound of a frog?", ("", "C")),
    ("The sound is a meow.\nAnswer: (B)", ("The sound is a meow.", "Answer: (B)")),
    ("It meows. Dogs bark. Therefore, the answer is (B) cat.", ("It meows. Dogs bark.", "Therefore, the answer is (B) cat.")),
    ("<Conclusion>\nD\n</Conclusion>", ("", "<Conclusion>\nD\n</Conclusion>")),
    ("B. cat", ("", "B. cat")),
    ("It is soft.\nSo, the answer is D. What do you think?", ("It is soft.", "So, the answer is D. What do you think?")),
    ("", ("", "")),
])
def test_split_reasoning(text, expected):
    assert split_reasoning(text) == expected


# --- one literal response per rule ----------------------------------------------------------

@pytest.mark.parametrize("text, choices, expected", [
    ("The sound is a meow. Therefore, the answer is (B) cat.", ANIMALS, Extraction(1, "answer-statement")),
    ("Answer: C", ANIMALS, Extraction(2, "answer-statement")),
    ("It meows.\n**Final answer:** (b)", ANIMALS, Extraction(1, "answer-statement")),
    ("Dogs bark, so I'd choose option A.", ANIMALS, Extraction(0, "answer-statement")),
    ("音频里是猫叫，所以答案是B。", ANIMALS, Extraction(1, "answer-statement")),
])
def test_rule_answer_statement_in_the_final_text(text, choices, expected):
    assert extract_answer(text, choices) == expected


@pytest.mark.parametrize("text, expected", [
    ("D.", Extraction(3, "lone-letter")),
    ("(c)", Extraction(2, "lone-letter")),
    ("<Conclusion>D</Conclusion>", Extraction(3, "lone-letter")),
    ("<Reasoning>\nIt moos.\n</Reasoning>\n<C> A </C>", Extraction(0, "lone-letter")),
])
def test_rule_lone_letter_and_letter_content_beats_a_letter_tag(text, expected):
    assert extract_answer(text, ANIMALS) == expected


@pytest.mark.parametrize("text, expected", [
    ("<Reasoning>\nIt meows, unlike (A) and (C).\n</Reasoning>\n<B>", Extraction(1, "tag-letter")),
    ("<Reasoning>\nIt moos.\n</Reasoning>\n<C C>", Extraction(2, "tag-letter")),
    ("<Reasoning>\nIt moos.\n</Reasoning>\n<A></A>", Extraction(0, "tag-letter")),
])
def test_rule_tag_letter(text, expected):
    assert extract_answer(text, ANIMALS) == expected


@pytest.mark.parametrize("text, expected", [
    ("B) cat", Extraction(1, "leading-letter")),
    ("C. cow", Extraction(2, "leading-letter")),
    ("(D) crow, because it caws.", Extraction(3, "leading-letter")),
])
def test_rule_leading_letter(text, expected):
    assert extract_answer(text, ANIMALS) == expected


@pytest.mark.parametrize("text, expected", [
    ("Dogs bark and cows moo. The meow heard in the clip matches option B.", Extraction(1, "conclusion-letter")),
    ("Dogs bark. So it must be (b), the cat.", Extraction(1, "conclusion-letter")),
    ("Dogs bark. The caw points to D.", Extraction(3, "conclusion-letter")),
])
def test_rule_conclusion_letter(text, expected):
    assert extract_answer(text, ANIMALS) == expected


def test_rule_refusal_stops_option_words_in_stock_phrases():
    text = "I'm sorry, but I can't hear the audio. If you describe it, I'd be happy to help."
    assert extract_answer(text, ["happy", "sad", "angry", "fear"]) == Extraction(None, "refusal", "refusal: I'm sorry")


def test_rule_refusal_comes_after_explicit_letters():
    assert extract_answer("I can't be certain, but the answer is (A).", ANIMALS) == Extraction(0, "answer-statement")


@pytest.mark.parametrize("text, choices, expected", [
    ("<Reasoning>\nIt barks.\n</Reasoning>\n<Dog>", ["frog", "pig", "rooster", "dog"], Extraction(3, "option-text")),
    ("It barks loudly, so it is a dog.", ANIMALS, Extraction(0, "option-text")),
    ("The speaker is not affected by sour.", ["Affected by sour", "Not affected by sour"], Extraction(1, "option-text")),
])
def test_rule_option_text_in_the_conclusion_longest_match(text, choices, expected):
    assert extract_answer(text, choices) == expected


@pytest.mark.parametrize("text, choices, expected", [
    # real Qwen2.5-Omni endings (MMAU): the conclusion is a bare number, the options spell it out
    ("There are no overlapping voices or additional voices that can be clearly identified. </Reasoning> <D>2</D>",
     ["three", "four", "six", "two"], Extraction(3, "option-number")),
    ("There are six words with at least one stressed phoneme. </Reasoning> <D>6</D>",
     ["five", "sixteen", "seventeen", "six"], Extraction(3, "option-number")),
    ("So the count is\n(12)", ["ten", "twelve", "fourteen"], Extraction(1, "option-number")),
    ("</Reasoning> <C>2</C>", ["2 people", "3 people"], None),
    ("</Reasoning> <C>2</C>", ["two", "Two"], Extraction(None, "option-number", "tie between A and B")),
])
def test_rule_option_number_matches_digits_and_number_words(text, choices, expected):
    found = extract_answer(text, choices)
    if expected is None:
        assert found.source != "option-number"
    else:
        assert found == expected


def test_rule_reasoning_statement_when_the_conclusion_is_unusable():
    text = "<Reasoning>\nIt caws, so the correct option is (D).\n</Reasoning>\n<C>W</C>"
    assert extract_answer(text, ANIMALS) == Extraction(3, "reasoning-statement")


def test_rule_option_words_compares_porter_stems():
    text = "<Reasoning>\nThe voice is low.\n</Reasoning>\n<Sadness>"
    assert extract_answer(text, ["angry", "happy", "disgust", "sad"]) == Extraction(3, "option-words")


def test_rule_fuzzy_catches_a_misspelt_option():
    assert extract_answer("It is a vulturine guineafowel.", ["red fox", "vulturine guineafowl"]) == Extraction(1, "fuzzy")


def test_rule_word_overlap_takes_a_partial_name():
    text = "<Reasoning>\nHe is male.\n</Reasoning>\n<C>Redzepi</C>"
    assert extract_answer(text, ["Julia Child", "Rene Redzepi"]) == Extraction(1, "word-overlap")


# --- refusing to guess ----------------------------------------------------------------------

@pytest.mark.parametrize("text, choices, expected", [
    ("It sounds like a cat or a dog.", ANIMALS, Extraction(None, "option-text", "tie between A and B")),
    ("Either (A) or (C) fits.", ANIMALS, Extraction(None, "conclusion-letter", "tie between A and C")),
    ("None of the given options, A or B, fit.", ["Father", "Mother"], Extraction(None, "conclusion-letter", "tie between A and B")),
    ("<Reasoning>\nIt moos.\n</Reasoning>\n<A></A><B></B>", ANIMALS, Extraction(None, "tag-letter", "tie between A and B")),
])
def test_ties_give_null_with_the_tied_letters(text, choices, expected):
    assert extract_answer(text, choices) == expected


def test_options_discussed_in_the_reasoning_are_not_taken():
    text = "Dogs bark (A) and cows moo (C). The sound here is a soft meow, so it is a cat."
    assert extract_answer(text, ANIMALS) == Extraction(1, "option-text")
    assert extract_answer("Option (A) barks and (C) moos, but this one is hard to place.", ANIMALS).pred is None


@pytest.mark.parametrize("text, choices, expected", [
    ("It is a dog.", ["cat", "dog"], Extraction(1, "option-text")),
    ("The answer is a dog.", ["cat", "dog"], Extraction(1, "option-text")),
    ("A dog is barking.", ["cat", "dog"], Extraction(1, "option-text")),
    ("I think it barks.", ["cat", "dog"], Extraction(None, None, "no rule matched")),
])
def test_the_article_a_and_the_pronoun_i_are_not_letters(text, choices, expected):
    assert extract_answer(text, choices) == expected


@pytest.mark.parametrize("text", ["E", "The answer is (E).", "<Conclusion>\nE\n</Conclusion>"])
def test_letters_beyond_the_choices_are_no_match(text):
    assert extract_answer(text, ANIMALS) == Extraction(None, None, "letter E is beyond the 4 options")


def test_a_bare_letter_that_starts_an_option_is_read_as_the_option():
    keys = ["C major", "G major", "A minor"]
    assert extract_answer("The answer is G major.", keys) == Extraction(1, "option-text")
    assert extract_answer("The piece is in A minor.", keys) == Extraction(2, "option-text")


@pytest.mark.parametrize("text", [None, "", "  \n"])
def test_empty_output_is_null(text):
    assert extract_answer(text, ANIMALS) == Extraction(None, None, "empty output")


def test_no_rule_matched_is_null_never_a_guess():
    text = "CRASH: CUDA out of memory. Tried to allocate 8.00 GiB."
    assert extract_answer(text, ANIMALS) == Extraction(None, None, "no rule matched")


def test_rules_are_a_named_extensible_list():
    names = [r.name for r in RULES]
    assert names == ["answer-statement", "lone-letter", "tag-letter", "leading-letter", "conclusion-letter", "refusal",
                     "option-text", "option-number", "reasoning-statement", "option-words", "fuzzy", "word-overlap"]
    extra = Rule("first-option", lambda out: Extraction(0, "first-option"), "test only")
    assert extract_answer("No idea.", ANIMALS, rules=(*RULES, extra)) == Extraction(0, "first-option")
    assert extract_answer("D", ANIMALS, rules=(*RULES, extra)) == Extraction(3, "lone-letter")


# --- the real Qwen2.5-Omni outputs of the earlier scripts ----------------------------------

DATASETS = ("animal", "emotion", "gender", "language", "mmar", "mmau")


def _measure(shared_data: Path) -> dict:
    """Per (dataset, kind) counts comparing our extraction with the earlier letters and gold."""
    root = shared_data / "seed-results"
    stats: dict = {}
    for ds in DATASETS:
        choices = {e.id: e.choices for e in read_seed_manifest(root / "manifests" / f"{ds}_manifest.jsonl")}
        for path in sorted((root / "qwen2.5-omni" / ds).glob("*.jsonl")):
            kind = "No_REAS" if "No_REAS" in path.name else ("REAS" if path.name.startswith("baseline") else "mask")
            c = stats.setdefault((ds, kind), Counter())
            for line in path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                opts = choices[row["id"]]
                for raw, old in zip(row["raw_model_outputs"], row["predicted_letters"]):
                    x = extract_answer(raw, opts)
                    new = None if x.pred is None else letter(x.pred)
                    valid = old is not None and ord(old) - 65 < len(opts)
                    c["rows"] += 1
                    c["old_null"] += old is None
                    c["new_null"] += new is None
                    c["resolved"] += old is None and new is not None
                    c["old_letter"] += old is not None
                    c["old_valid"] += valid
                    c["agree"] += old is not None and old == new
                    c["agree_valid"] += valid and old == new
                    c["old_right"] += old == row["true_letter"]
                    c["new_right"] += new == row["true_letter"]
                    c["new_answered"] += new is not None
                    c["reason_given"] += new is not None or bool(x.reason)
                    c["crash_null"] += raw.startswith("CRASH") and new is None
                    c["crash"] += raw.startswith("CRASH")
                    if "</Reasoning>" in raw:
                        c["tagged"] += 1
                        c["same_reasoning"] += split_reasoning(raw)[0] == row["reasoning"][0].strip()
    return stats


@pytest.mark.shared_data
def test_real_qwen25_omni_outputs_agreement_nulls_and_accuracy(shared_data: Path):
    stats = _measure(shared_data)
    total = sum(stats.values(), Counter())
    print("\ndataset  kind     rows oldNull newNull resolved agree%(old letter) agree%(valid old) acc%old acc%new")
    for (ds, kind), c in sorted(stats.items()):
        print(f"{ds:8} {kind:8} {c['rows']:5} {c['old_null']:7} {c['new_null']:7} {c['resolved']:8} "
              f"{100 * c['agree'] / c['old_letter']:16.1f} {100 * c['agree_valid'] / c['old_valid']:17.1f} "
              f"{100 * c['old_right'] / c['rows']:7.1f} {100 * c['new_right'] / c['rows']:7.1f}")
    print(f"all: rows {total['rows']}, agreement with valid earlier letters "
          f"{100 * total['agree_valid'] / total['old_valid']:.1f}%, precision (correct/answered) earlier "
          f"{100 * total['old_right'] / total['old_valid']:.1f}% vs ours {100 * total['new_right'] / total['new_answered']:.1f}%, "
          f"earlier nulls resolved {total['resolved']} of {total['old_null']}")

    assert total["rows"] == 31932
    # Where the earlier scripts found a valid letter, we mostly agree (measured 88.8% overall,
    # 93.2% on the baseline files; the gap is mostly "<C> A </C>", where they took the tag).
    assert total["agree_valid"] / total["old_valid"] >= 0.87
    baseline = sum((c for (ds, kind), c in stats.items() if kind != "mask"), Counter())
    assert baseline["agree_valid"] / baseline["old_valid"] >= 0.92
    # Answers we give are right more often than theirs (measured 63.4% vs 60.0%), and total accuracy
    # stays within a point although we never guess (52.7% vs 52.9%).
    assert total["new_right"] / total["new_answered"] >= total["old_right"] / total["old_valid"] + 0.02
    assert total["new_right"] >= 0.99 * total["old_right"]
    # Earlier nulls are mostly CUDA crashes, which stay null; the few real answers are recovered.
    assert total["resolved"] >= 5
    assert total["crash"] > 0 and total["crash_null"] == total["crash"]
    # Every null says why; the split finds exactly the reasoning the earlier scripts stored.
    assert total["reason_given"] == total["rows"]
    assert total["same_reasoning"] == total["tagged"] > 20000

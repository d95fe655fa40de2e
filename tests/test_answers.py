"""Answer extraction: one literal response per rule with its exact output, then the real outputs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from toolkit.answers import (HAND_FORMS, RULES, WORD_OVERLAP, Extraction, Rule, derived_forms, explain, extract_answer,
                             lexicon, split_reasoning, variants)
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
    text = "<Reasoning>\nHe is male.\n</Reasoning>\n<C>Child, Julia</C>"
    assert extract_answer(text, ["Rene Redzepi", "Julia Child"]) == Extraction(1, "option-words")


def test_rule_fuzzy_catches_a_misspelt_option():
    assert extract_answer("It is a vulturine guineafowel.", ["red fox", "vulturine guineafowl"]) == Extraction(1, "fuzzy")


def test_rule_word_overlap_is_opt_in():
    # real AF3 MMAR ending: the answer is no option; word overlap would name the nearest one
    text = ("This format is characteristic of a quiz or trivia segment, which is commonly found in an \"Inspector's "
            "Roundtable\" or similar discussion format. Therefore, the most likely scene is an \"Editor's Roundtable\".")
    choices = ["Street interview", "Music talent show", "Concert", "Quiz show"]
    assert extract_answer(text, choices) == Extraction(None, None, "no rule matched")
    assert "word-overlap" not in [r.name for r in RULES]
    text = "<Reasoning>\nHe is male.\n</Reasoning>\n<C>Redzepi's kitchen</C>"
    assert extract_answer(text, ["Julia Child", "Rene Redzepi"], rules=(*RULES, WORD_OVERLAP)) == Extraction(
        1, "word-overlap")


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
                     "option-text", "option-number", "option-part", "last-statement", "elimination", "option-phrase",
                     "reasoning-statement", "option-words", "fuzzy"]
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


# --- issue 15: the categories a careful reader handles, with real phrasings ------------------
# (Audio Flamingo 3 and Qwen2.5-Omni outputs of the original study; bench/answers_dev/ has more)

EMOTIONS = ["fear", "sad", "angry", "happy"]
WORDNET = pytest.mark.skipif(lexicon() == "hand table", reason="WordNet 3.0 not installed (Debian wordnet-base)")


@pytest.mark.parametrize("text, choices, expected", [
    # a statement that lists the options is no commitment; nothing before it names an option
    ("This type of sound is characteristic of a rooster crowing. Therefore, based on the sound's characteristics, "
     "a rooster is the most likely source. The final answer is (A) hen (B) sheep (C) frog (D) dog.",
     ["hen", "sheep", "frog", "dog"], Extraction(None, None, "option echo: the options are listed, none is chosen")),
    ("Therefore, the most representative behavior is: **(A) Hiding in shells (B) Flying between trees (C) Flapping "
     "its wings (D) Grazing. Please think and reason about the input audio before you respond:",
     ["Hiding in shells", "Flying between trees", "Flapping its wings", "Grazing"],
     Extraction(None, None, "option echo: the options are listed, none is chosen")),
    # a conclusion before the echo wins
    ("While the speaker's accent might be non-native, the language itself is clearly English. Therefore, the "
     "language used in the audio is English.\n\n(A) Chinese (B) Korean (C) French (D) English.",
     ["Chinese", "Korean", "French", "English"], Extraction(3, "last-statement")),
    ("These vocal characteristics are typically associated with male speakers. Therefore, based on the vocal traits, "
     "the speaker is classified as male.\n\n(A) Female (B) Male", ["Female", "Male"], Extraction(1, "last-statement")),
    ("Among the provided options, TOEFL is a test that measures English proficiency. The correct answer is (A) PLIDES "
     "(B) TOCFL (C) PTE Academic (D) TOPIK.", ["PLIDA", "TOCFL", "PTE Academic", "TOPIK"],
     Extraction(None, None, "option echo: the options are listed, none is chosen")),
])
def test_option_echo_is_no_commitment(text, choices, expected):
    assert extract_answer(text, choices) == expected


@pytest.mark.parametrize("text, choices, expected", [
    pytest.param("This combination of vocal intensity and the phrasing strongly suggests a feeling of anger or "
                 "irritation, rather than fear, sadness, or happiness.", EMOTIONS, Extraction(2, "option-text"),
                 marks=WORDNET),
    ("This combination strongly suggests a feeling of melancholy or sadness, rather than fear or happiness.",
     EMOTIONS, Extraction(1, "option-text")),
    ("This vocal delivery, combined with the phrase \"I think I've seen this before,\" strongly indicates a feeling of "
     "annoyance or disgust towards the subject being discussed. The other options (happy, sad, fear) are not "
     "supported by the audio cues.", ["happy", "disgust", "sad", "fear"], Extraction(1, "last-statement")),
    ("The audio contains a distinct, rhythmic, and somewhat guttural vocalization. This sound is not typical of a "
     "crow, frog, or cat. Therefore, a rooster is the most likely animal responsible.",
     ["rooster", "crow", "frog", "cat"], Extraction(0, "option-text")),
    ("The speaker expresses a strong feeling of fear or anxiety. This directly matches the emotion conveyed in option "
     "(C). Options (A), (B), and (D) describe feelings that are not present in the audio.",
     ["I’m so excited!", "I can’t even look at this.", "I can’t breathe, I’m just so afraid right now.",
      "I’m feeling so down."], Extraction(2, "last-statement")),
    ("The tone is not happy or disgusted, but rather sad.", ["happy", "disgust", "sad", "fear"],
     Extraction(2, "option-text")),
    ("The tone is not happy or disgusted, but rather sad or fearful.", ["happy", "disgust", "sad", "fear"],
     Extraction(None, "option-text", "tie between C and D")),
    # a negative question: the sound that cannot be heard is the answer, not a rejected option
    ("However, the sound of a dog barking is not present in the audio. Therefore, the sound that cannot be heard is: "
     "**(D) Dog Barking**", ["Man speaking", "Whacks", "Glass shatter", "Dog Barking"],
     Extraction(3, "conclusion-letter")),
])
def test_rejected_options_are_never_chosen(text, choices, expected):
    assert extract_answer(text, choices) == expected


def test_letter_and_text_disagree_the_text_wins_when_the_output_names_it():
    text = ("The speaker's voice is deep and resonant, which is characteristic of a male voice in the lower vocal "
            "range. This aligns with the description of a \"basso profundo\" voice. The other options, such as "
            "\"Coloratura "
            "soprano,\" describe a high, agile female voice, which is clearly not the case here. Therefore, the best "
            "match is B) Basso profundo.")
    found = extract_answer(text, ["Basso profundo", "Coloratura soprano"])
    assert (found.pred, found.source) == (0, "conclusion-letter")
    assert found.flags == {"letter_text_conflict": "letter B, text 'basso profundo' (A): text taken, the output "
                                                   "names it elsewhere"}


def test_letter_and_text_disagree_with_nothing_to_decide_stays_null():
    text = ("The audio features a speaker saying \"Okay boys, we arrived at the place to be\" before Johan speaks. The "
            "word \"responsibility\" is not present in the audio. Therefore, the correct answer is: (A) Responsibility")
    found = extract_answer(text, ["Johan did not speak", "Responsibility", "Contribution", "Doing things"])
    reason = "letter A, text 'responsibility' (B) disagree and nothing else decides"
    assert found == Extraction(None, "answer-statement", reason, reason)
    assert found.flags == {"no_answer": reason, "letter_text_conflict": reason}


@pytest.mark.parametrize("text, choices, reason", [
    ("The audio mentions the language being spoken is Russian. The most practical test for demonstrating proficiency "
     "in Russian ... is the *Bilingual Proficiency Test (BPT)*, which is specifically designed for demonstrating "
     "proficiency in Russian for academic or professional purposes.", ["DSH", "SIELE", "PTE Academic", "BJT"],
     "no rule matched"),
    ("A leash is a tool for physical control and movement, but not necessarily for addressing distress. Therefore, "
     "none of the listed options are directly associated with providing appropriate care and support for the "
     "animal's well-being.", ["Insect trap", "Aquarium filter", "Birdcage", "Leash"],
     "no option chosen: 'none of the listed options'"),
    ("The audio features the distinct sound of a sheep bleating. " + "Sheep are sheep. " * 40 + "Sheep are",
     ["Shearing clippers", "Birdcage", "Insect trap", "Aquarium filter"],
     "cut off in a repetition loop, no option named before it"),
])
def test_answers_that_are_not_options_stay_null_with_a_reason(text, choices, reason):
    found = extract_answer(text, choices)
    assert found.pred is None and found.flags["no_answer"] == reason


@pytest.mark.parametrize("text, expected", [
    ("This type of game is best described as playing together. This aligns with option (C).", 2),
    ("The most appropriate response to someone expressing anger is to stay calm and provide support, which is option "
     "(B). Options (A), (C), and (D) are not appropriate responses to anger.", 1),
    ("The feeling of disgust expressed by the speaker is best matched by option (A) \"This makes me feel sick\". The "
     "other options describe feelings of fear, happiness, and sadness.", 0),
])
def test_letter_references_in_prose(text, expected):
    choices = ["This makes me feel sick to my stomach.", "Stay calm and provide support.", "Playing together",
               "Slamming a door"]
    assert extract_answer(text, choices).pred == expected


@pytest.mark.parametrize("text, choices, expected", [
    ("This emotional state is most consistent with a scenario involving a sudden, potentially alarming event occurring "
     "at that time, such as a loud noise in an empty house. Options (A), (B), and (C) do not align with the fearful "
     "tone and the specific mention of the time \"eleven o'clock\" in the audio.",
     ["Celebrating a birthday with friends and family.", "A person crying after a breakup.",
      "Rejecting a tasteless meal with a grimace.", "Reacting to a sudden loud noise in an empty house."],
     Extraction(3, "elimination")),
    ("Based on the distinct, high-pitched, repetitive beeping sound heard in the audio, the device most likely "
     "producing this sound is an electrocardiogram (ECG) machine. The other options (Ultrasonic device, CT scanner, "
     "MRI) "
     "typically produce different types of sounds.",
     ["Ultrasonic device", "CT scanner", "MRI", "Electrocardiogram machine"], Extraction(3, "elimination")),
])
def test_elimination_with_a_conclusion_naming_the_one_left(text, choices, expected):
    assert extract_answer(text, choices) == expected


@pytest.mark.parametrize("text, choices, expected", [
    ("These vocal characteristics are commonly associated with sadness or distress. The overall vocal performance "
     "strongly suggests a state of sadness or melancholy.", EMOTIONS, 1),
    ("This combination ... strongly suggests a feeling of amusement or joy. Therefore, the emotion is happiness.",
     EMOTIONS, 3),
    ("The speaker's voice is high-pitched and trembling, indicating a fearful state.", ["sad", "fear", "happy"], 1),
    ("The speaker sounds disgusted by the smell.", ["angry", "disgust", "happy"], 1),
    ("In birds, the primary method of reproduction is laying eggs. Therefore, the bird lays eggs.",
     ["Asexual reproduction", "Viviparous", "Oviparous", "Marsupial reproduction"], 2),
    ("Cats are mammals that give birth to live young. Therefore, the sound produced by the cat is most consistent "
     "with a reproductive method that involves live birth.",
     ["Asexual reproduction", "Oviparous", "Marsupial reproduction", "Viviparous"], 3),
    ("The speaker's voice is deep and resonant. Therefore, the speaker is male.", ["Ms.", "Mr."], 1),
])
def test_derived_forms_without_wordnet(text, choices, expected):
    assert extract_answer(text, choices).pred == expected


@WORDNET
@pytest.mark.parametrize("text, choices, expected", [
    ("The issue's example: Therefore, the emotion being expressed is anger.", ["happy", "sad", "angry", "fear"], 2),
    ("These vocal characteristics are strongly indicative of anger or frustration. Therefore, the most fitting "
     "description of the speaker's feeling is anger.", ["fear", "disgust", "angry", "sad"], 2),
    ("The tone of voice suggests the speaker is afraid of what comes next.", ["happy", "fear", "disgust", "sad"], 1),
])
def test_derived_forms_from_wordnet(text, choices, expected):
    assert extract_answer(text, choices).pred == expected


def test_lexicon_hand_table_and_variants_are_small_and_documented():
    assert set(HAND_FORMS) == {"oviparous", "viviparous", "mr", "mrs", "ms"}
    assert "lays eggs" in derived_forms("Oviparous") and "live birth" in derived_forms("Viviparous")
    assert "male" in derived_forms("Mr.") and "female" in derived_forms("Ms.")
    assert {"fearful", "fears"} <= variants("fear") and "sadness" in variants("sad")
    assert "happiness" in variants("happy")
    assert not any(v.endswith("ing") for v in variants("crow"))  # "crowing" is no crow
    # a form that names two options names none: "female" is Ms. and Mrs.
    assert extract_answer("The speaker is female.", ["Ms.", "Mrs.", "Mr."]).pred is None


@WORDNET
def test_wordnet_links_the_first_noun_and_adjective_senses_only():
    assert "anger" in derived_forms("angry") and "afraid" in derived_forms("fear")
    assert "unafraid" not in derived_forms("fear") and "fearless" not in derived_forms("fear")  # negations dropped
    assert derived_forms("crow") == frozenset()  # the verb ("crowing") is not read


@pytest.mark.parametrize("text, choices, expected", [
    ("Therefore, the language used is English.", ["Chinese", "English"], 1),
    ("Option (A) \"Eyes gazing downward with trembling lips\" directly captures this feeling of fear.",
     ["Eyes gazing downward with trembling lips", "Squinted eyes and a pinched nose"], 0),
    ("This emotional state is best represented by a facial expression that conveys surprise, worry, or apprehension, "
     "which aligns with the description of \"wide-open eyes with raised eyebrows\".",
     ["Eyes crinkling with an open-mouthed laugh", "A wrinkled nose and raised upper lip",
      "Wide-open eyes with raised eyebrows and slightly parted lips."], 2),
])
def test_quoted_option_text_and_final_sentence_without_marker(text, choices, expected):
    assert extract_answer(text, choices).pred == expected


def test_a_quote_from_inside_an_option_is_a_quote_of_the_audio_not_an_answer():
    # real AF3 MMAU ending: the quote repeats the audio (and option C), the conclusion paraphrases option B
    text = ("However, the description of these items as \"leather bell bottoms\" and \"fur vest\" is inherently "
            "ridiculous and unlikely. Therefore, the most accurate explanation is that the remark conveys sarcasm by "
            "presenting a ridiculous scenario that is not a real concern.")
    choices = ["Expressing excitement", "Ridiculous scenario, not actual concern",
               "Actual fear of leather bell bottoms"]
    assert extract_answer(text, choices).pred is None  # not C; B is only paraphrased
    # known limit: a run of 3+ option words in the final sentence counts, even when it quotes the audio
    assert extract_answer(text.split(". Therefore")[0] + ".", choices) == Extraction(2, "option-phrase")


@pytest.mark.parametrize("text, choices, expected", [
    ("<Reasoning>\nLeonardo DiCaprio is a male, while Oprah Winfrey is a female.\n</Reasoning>\n<C>DiCaprio</C>",
     ["Leonardo DiCaprio", "Oprah Winfrey"], Extraction(0, "option-part")),
    ("<Reasoning>\nThe crashing sounds could be from other objects being hit or moved.\n</Reasoning>\n<C>Yes</C>",
     ["No, the crashing sounds were only from the table", "Yes, there are at least two distinct crashing sounds."],
     Extraction(1, "option-part")),
    ("<Reasoning>\nHowever, if we consider the closest match, it would be walking, as birds can walk on the ground."
     "\n</Reasoning>\n<C>W</C>", ["Slithering", "Climbing", "Swimming", "Walking"], Extraction(3, "option-part")),
    ("<Reasoning>\nThere is no information about the last fish.\n</Reasoning>\n<C>W</C>",
     ["Slithering", "Climbing", "Swimming", "Walking"],
     Extraction(None, None, "letter W is beyond the 4 options")),
    ("<Reasoning>\nThe audio contains a fast and rhythmic drum pattern.\n</Reasoning>\n<D>2</D>",
     ["3/4", "4/4", "6/8", "2/4"], Extraction(3, "option-part")),
])
def test_rule_option_part_reads_short_conclusions(text, choices, expected):
    assert extract_answer(text, choices) == expected


def test_rule_option_phrase_takes_a_run_of_one_long_option():
    text = ("By folding the note, the girl is attempting to create the crease that a real note would have. Therefore, "
            "the most plausible reason for folding the paper is to mimic the original crease on the note.")
    choices = ["Because she wants to save paper", "Because she wants to mimic the original crease on the note",
               "Because she wants the forged note to look more realistic", "Because she wants the note to be hidden"]
    assert extract_answer(text, choices) == Extraction(1, "option-phrase")


def test_explain_gives_every_rule_in_order_and_the_first_decides():
    text = "A feeling of melancholy or sadness, rather than fear or happiness."
    verdicts = explain(text, EMOTIONS)
    assert [rule.name for rule, _ in verdicts] == [r.name for r in RULES]
    first = next(v for _, v in verdicts if v is not None)
    assert first == extract_answer(text, EMOTIONS) == Extraction(1, "option-text")
    assert explain("", EMOTIONS) == []


def test_every_null_has_a_reason_and_no_letter_is_outside_the_options():
    texts = ["", "E", "The answer is (F).", "Either (A) or (B).", "I'm sorry, I can't hear it.", "<C>?</C>",
             "It is a cat."]
    for text in texts:
        found = extract_answer(text, ANIMALS)
        assert found.pred is None or 0 <= found.pred < len(ANIMALS)
        assert found.pred is not None or found.flags["no_answer"]


# --- the hand-labelled development sets (bench/answers_dev/, see its README) ------------------

def _figures(name: str):
    rows = [json.loads(line) for line in (Path(__file__).parent.parent / "bench" / "answers_dev" / f"{name}.jsonl")
            .read_text(encoding="utf-8").splitlines()]
    got = [extract_answer(r["output"], r["choices"]).pred for r in rows]
    letters = [None if g is None else letter(g) for g in got]
    answered = [(g, r["label"]) for g, r in zip(letters, rows) if g is not None]
    positives = sum(r["label"] is not None for r in rows)
    correct = sum(g == label for g, label in answered)
    outside = sum(g is not None and g >= len(r["choices"]) for g, r in zip(got, rows))
    return correct / len(answered), correct / positives, outside


@pytest.mark.parametrize("name", ["tune", "report"])
def test_development_sets_reach_the_goal(name):
    """Precision >= 0.98 and recall >= 0.90 against the blind labels; never a letter outside the options."""
    precision, recall, outside = _figures(name)
    assert precision >= 0.98 and recall >= 0.90 and outside == 0

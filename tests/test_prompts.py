"""Prompt templates: the earlier scripts' prompts byte for byte, lookups, rendering."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from toolkit.errors import InputError
from toolkit.manifest import Item, format_choices
from toolkit.prompts import (MODES, PROMPTS, PromptTemplate, get_prompt, list_prompts, render_continuation,
                             render_user_text, uses_choices)

QUESTION = "Which animal do you think is the most likely match for the sound?"
CHOICES = ["sheep", "cat", "rooster", "crow"]
CHOICES_STR = "(A) sheep (B) cat (C) rooster (D) crow"


def _methods_reasoning(question: str, choices_str: str) -> str:
    """notes/methods.md, reasoning prompt, written out as the formula."""
    return (question + " Select one option from the provided choices.\n" + choices_str
            + ". Please think and reason about the input audio before you respond.")


def _methods_direct(question: str, choices_str: str) -> str:
    return question + " Select one option from the provided choices.\n" + choices_str + "."


def test_seed_reasoning_is_byte_identical_to_the_methods_formula():
    assert render_user_text("seed-reasoning", question=QUESTION, choices=CHOICES) == _methods_reasoning(QUESTION, CHOICES_STR)


def test_seed_direct_is_the_reasoning_prompt_without_its_last_sentence():
    assert render_user_text("seed-direct", question=QUESTION, choices=CHOICES) == _methods_direct(QUESTION, CHOICES_STR)


def test_seed_conditioned_is_the_reasoning_prompt_then_the_reasoning_then_therefore():
    reasoning = "The sound is a meow.\nSheep baa."
    t = get_prompt("seed-conditioned")
    whole = render_user_text(t, question=QUESTION, choices=CHOICES) + render_continuation(t, reasoning)
    assert whole == _methods_reasoning(QUESTION, CHOICES_STR) + "\n\n" + reasoning + "\n\nTherefore, the answer is:"
    assert t.max_new_tokens == 20


def test_mmar_official_is_the_published_formula():
    choices = ["Owl", "Robot", "Rooster", "Parrot"]
    q = "Determine what is producing the sound in the audio"
    expected = q + "\nSelect one option from the provided choices:\n" + "\n".join(choices)
    assert render_user_text("mmar-official", question=q, choices=choices) == expected


@pytest.mark.shared_data
def test_seed_choices_string_matches_every_earlier_manifest(shared_data: Path):
    manifests = sorted((shared_data / "seed-results" / "manifests").glob("*_manifest.jsonl"))
    assert manifests
    checked = 0
    for path in manifests:
        for line in path.read_text(encoding="utf-8").splitlines():
            d = json.loads(line)
            choices = d.get("choices_list") or re.split(r"\s*\([A-Z]\)\s*", d["choices"])[1:]
            text = render_user_text("seed-direct", question=d["question"], choices=choices)
            assert text == _methods_direct(d["question"], d["choices"]), d["id"]
            checked += 1
    assert checked >= 5000


def test_item_fields_are_used_and_keywords_override_them():
    item = Item(id="it-1", dataset="demo", audio="a.wav", question="How many beeps?", choices=["2", "3"], answer=1)
    assert render_user_text("seed-direct", item) == "How many beeps? Select one option from the provided choices.\n(A) 2 (B) 3."
    assert render_user_text("seed-direct", item, question="Q?").startswith("Q? Select")


def test_item_without_choices_is_an_input_error_naming_the_item():
    item = Item(id="asr-7", dataset="libri", audio="a.wav", question="Transcribe.", task="asr")
    with pytest.raises(InputError, match=r"\[asr-7\].*needs 2\.\.26 choices, got none"):
        render_user_text("direct-v1", item)


def test_braces_in_questions_and_options_are_kept_literally():
    text = render_user_text("seed-direct", question="Is {x} set?", choices=["{a}", "b}"])
    assert text == "Is {x} set? Select one option from the provided choices.\n(A) {a} (B) b}."


def test_reasoning_v1_asks_for_a_parseable_final_line_with_the_valid_letters():
    text = render_user_text("reasoning-v1", question="Which?", choices=["x", "y", "z"])
    assert text == ("Which?\n\nOptions:\n(A) x\n(B) y\n(C) z\n\n"
                    "Listen to the audio and reason step by step about what you hear before choosing. "
                    "Then end your response with a final line of exactly the form 'Answer: (X)', "
                    "where X is one of A, B or C.")


def test_direct_v1_asks_for_the_letter_only():
    assert render_user_text("direct-v1", question="Which?", choices=["x", "y"]) == (
        "Which?\n\nOptions:\n(A) x\n(B) y\n\nAnswer with the letter of the correct option (A or B) only.")


def test_unknown_name_suggests_close_names_and_lists_all():
    with pytest.raises(ValueError) as err:
        get_prompt("seed-reasonin")
    msg = str(err.value)
    assert "Did you mean 'seed-reasoning'" in msg
    for name in PROMPTS:
        assert name in msg


def test_list_prompts_by_mode():
    assert list_prompts() == sorted(PROMPTS)
    assert list_prompts("conditioned") == ["conditioned-v1", "lanham-two-turn", "seed-conditioned", "study-af3-user",
                                           "study-omni-xml", "study-two-turn", "study-two-turn-salmonn"]
    assert list_prompts("continue") == ["continue-prefill", "study-continue-af3", "study-continue-omni-xml",
                                        "study-continue-salmonn", "study-continue-two-turn"]
    assert set(list_prompts()) >= {"seed-reasoning", "seed-direct", "seed-conditioned", "reasoning-v1", "direct-v1",
                                   "mmar-official"}
    with pytest.raises(ValueError, match="valid modes"):
        list_prompts("chat")


def test_every_template_renders_has_a_budget_and_no_chat_markup():
    markup = re.compile(r"<\|im_start\|>|<\|im_end\|>|\[INST\]|<s>|</s>|<\|audio|<\|AUDIO|^(USER|ASSISTANT|Human):", re.M)
    for name, t in PROMPTS.items():
        assert t.mode in MODES and t.max_new_tokens >= 1 and t.description
        text = render_user_text(t, question="Q?", choices=["x", "y"])
        if uses_choices(t):  # the ASR templates render neither question nor options
            assert "Q?" in text and "x" in text
        assert not markup.search(text + (t.continuation or "") + (t.followup or "") + (t.answer_prefix or "")), name


def test_continuation_of_a_non_conditioned_template_is_refused():
    with pytest.raises(ValueError, match="'seed-direct' is a direct template; conditioned ones are: conditioned-v1"):
        render_continuation("seed-direct", "x")


def test_templates_are_validated_on_creation():
    with pytest.raises(ValueError, match="mode 'chat'"):
        PromptTemplate(name="x", description="", mode="chat", user="{question}", max_new_tokens=8)
    with pytest.raises(ValueError, match="a continuation and an answer format are required"):
        PromptTemplate(name="x", description="", mode="conditioned", user="{question}", max_new_tokens=8)
    with pytest.raises(ValueError, match="a followup goes with the two-turn answer format only"):
        PromptTemplate(name="x", description="", mode="conditioned", user="{question}", max_new_tokens=8,
                       continuation="{reasoning}", answer="prefill", followup="So?")


def test_format_choices_is_the_earlier_string():
    assert format_choices(CHOICES) == CHOICES_STR

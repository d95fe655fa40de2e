"""The official MMAU / MMAR string matcher, and exports in their evaluators' input format.

Both benchmarks score a free-text prediction with the same bag-of-words ``string_match``:
tokens are the set of ``\\b\\w+\\b`` of the lowercased text; a prediction is correct iff it
holds every token of the answer and none of the tokens that only the other choices have
(the union over the other choices of their tokens minus the answer's tokens). It is applied
to the final answer text (:func:`toolkit.answers.split_reasoning`), not to the reasoning.

Example:
    >>> string_match("cat", "It is (B) cat.", ["dog", "cat"])
    True
    >>> string_match("cat", "a cat, not a dog", ["dog", "cat"])
    False
"""

from __future__ import annotations

import re
from typing import Any, Dict, FrozenSet, List, Optional, Sequence

from toolkit.answers import split_reasoning
from toolkit.atomic import atomic_write_json
from toolkit.errors import InputError, Pathlike
from toolkit.manifest import Item
from toolkit.score import Scored

#: The key each official evaluator reads the prediction from.
PREDICTION_KEYS = {"mmau": "model_output", "mmar": "answer_prediction"}

_WORD = re.compile(r"\b\w+\b")


def tokens(text: str) -> FrozenSet[str]:
    """The set of ``\\b\\w+\\b`` tokens of the lowercased ``text``."""
    return frozenset(_WORD.findall(text.lower()))


def string_match(answer: str, prediction: str, choices: Sequence[str]) -> bool:
    """The official MMAU/MMAR matcher.

    Args:
        answer: the correct choice's text.
        prediction: the predicted text (the final answer text).
        choices: all choice texts (the answer among them).

    Returns:
        True iff every answer token is in the prediction and the prediction shares no token
        with the other choices' tokens that are not answer tokens.
    """
    answer_tokens = tokens(answer)
    pred_tokens = tokens(prediction)
    competing: set = set()
    for choice in choices:
        if choice != answer:
            competing |= tokens(choice) - answer_tokens
    return answer_tokens <= pred_tokens and not (pred_tokens & competing)


def final_text(raw_output: Optional[str]) -> str:
    """The final answer text of a model output ("" for None)."""
    return "" if raw_output is None else split_reasoning(raw_output)[1]


def _item_of(row: Scored) -> Item:
    item = row.item
    if item is None or not item.choices or item.answer is None:
        raise InputError("the official matcher needs a manifest with choices and an answer for every item",
                         key=row.id)
    return item


def official_correct(rows: Sequence[Scored]) -> Dict[int, bool]:
    """Official-matcher correctness of each record, keyed by its index in ``rows``.

    Args:
        rows: records joined with a manifest (:func:`toolkit.score.load_scored` with items).

    Returns:
        ``{index: correct}``; a row without output is wrong.

    Raises:
        InputError: a row without a manifest item, choices or answer.
    """
    out: Dict[int, bool] = {}
    for i, row in enumerate(rows):
        item = _item_of(row)
        out[i] = string_match(item.choices[item.answer], final_text(row.raw_output), item.choices)
    return out


def export_rows(rows: Sequence[Scored], benchmark: str) -> List[Dict[str, Any]]:
    """Rows in the official evaluator's input format.

    Args:
        rows: records joined with a manifest.
        benchmark: ``"mmau"`` or ``"mmar"``.

    Returns:
        One dict per record: ``id``, ``question``, ``choices``, ``answer`` (choice text),
        ``run``, and the prediction's final text under the benchmark's key.

    Raises:
        InputError: an unknown benchmark, or a row without a manifest item, choices or answer.
    """
    if benchmark not in PREDICTION_KEYS:
        raise InputError(f"unknown benchmark {benchmark!r}; valid: {sorted(PREDICTION_KEYS)}")
    out = []
    for row in rows:
        item = _item_of(row)
        out.append({"id": row.id, "question": item.question, "choices": list(item.choices),
                    "answer": item.choices[item.answer], "run": row.run,
                    PREDICTION_KEYS[benchmark]: final_text(row.raw_output)})
    return out


def write_export(path: Pathlike, rows: Sequence[Scored], benchmark: str) -> None:
    """Atomically write :func:`export_rows` as a JSON list (the evaluators read a JSON list).

    Args:
        path: destination file.
        rows: records joined with a manifest.
        benchmark: ``"mmau"`` or ``"mmar"``.

    Raises:
        InputError: see :func:`export_rows`.
    """
    atomic_write_json(path, export_rows(rows, benchmark))

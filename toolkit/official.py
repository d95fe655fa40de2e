"""The official MMAU / MMAR string matcher, and exports in the official evaluators' input format.

Both benchmarks score a free-text prediction with the same bag-of-words ``string_match``:
tokens are the set of ``\\b\\w+\\b`` of the lowercased text; a prediction is correct iff it
holds every token of the answer and none of the tokens that only the other choices have
(the union over the other choices of their tokens minus the answer's tokens). It is applied
to the final answer text (:func:`toolkit.answers.split_reasoning`), not to the reasoning.

SAKURA is scored by an LLM judge (gpt-4o) instead. Its judge script reads one JSON file per
track and hop, the shape its response-generation scripts write::

    {"attribute": "Animal", "type": "single",
     "results": {"dog28.wav": {"instruction": "... (a) Dog (b) Cat", "response": "...", "label": "(a) Dog"}}}

and fills ``[QUESTION]``, ``[MODEL_GENERATED_RESPONSE]`` and ``[GROUND_TRUTH_ANSWER]`` of
its prompt from ``instruction``, ``response`` and ``label``. :func:`sakura_judge_files`
writes that shape (key: the audio file name, as the official files), with the instruction
rebuilt as the question followed by ``(a) ... (b) ...`` options, the label as the answer
option ``(c) Claws``, the final answer text as the response; each entry also carries the
toolkit ``id`` and each file its ``model``, ``condition``, ``mode`` and ``run`` (keys the
judge does not read).

Example:
    >>> string_match("cat", "It is (B) cat.", ["dog", "cat"])
    True
    >>> string_match("cat", "a cat, not a dog", ["dog", "cat"])
    False
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Optional, Sequence

from toolkit.answers import split_reasoning
from toolkit.atomic import atomic_write_json
from toolkit.errors import InputError, Pathlike
from toolkit.manifest import Item
from toolkit.score import Scored

#: The key each official evaluator reads the prediction from.
PREDICTION_KEYS = {"mmau": "model_output", "mmar": "answer_prediction"}
#: Every benchmark with an official export; SAKURA's is the input of its LLM judge.
BENCHMARKS = ("mmau", "mmar", "sakura")

_WORD = re.compile(r"\b\w+\b")
_UNSAFE = re.compile(r"[^A-Za-z0-9.+=-]+")


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


def write_export(path: Pathlike, rows: Sequence[Scored], benchmark: str) -> Path:
    """Atomically write :func:`export_rows` as a JSON list (the evaluators read a JSON list).

    Args:
        path: destination file.
        rows: records joined with a manifest.
        benchmark: ``"mmau"`` or ``"mmar"``.

    Returns:
        The written file.

    Raises:
        InputError: see :func:`export_rows`.
    """
    return atomic_write_json(path, export_rows(rows, benchmark))


def _judge_option(index: int, text: str) -> str:
    return f"({chr(ord('a') + index)}) {text}"


def _sakura_track(row: Scored, item: Item) -> str:
    track = item.meta.get("track") or (item.subset.capitalize() if item.subset else None)
    if not track or item.hop is None:
        raise InputError("the SAKURA judge export needs the item's track (meta.track or subset) and hop", key=row.id)
    return track


def _file_name(parts: Sequence[Any]) -> str:
    return "_".join(_UNSAFE.sub("-", str(p)) for p in parts) + ".json"


def sakura_judge_files(rows: Sequence[Scored]) -> Dict[str, Dict[str, Any]]:
    """Rows as SAKURA judge input files (see the module docstring), one per run of one track and hop.

    Args:
        rows: records joined with a SAKURA manifest.

    Returns:
        ``{file name: file content}``; names are
        ``<track>_<hop>_<model>_<condition>_<mode>_run<run>.json`` (characters other than
        letters, digits and ``.+=-`` replaced by ``-``), in first-seen order.

    Raises:
        InputError: a row without a manifest item, choices, answer, track or hop, or two
            rows of one file with the same audio file.
    """
    files: Dict[str, Dict[str, Any]] = {}
    for row in rows:
        item = _item_of(row)
        track = _sakura_track(row, item)
        keys = row.keys
        name = _file_name((track, item.hop, keys["model"], keys["condition"], keys["mode"], f"run{row.run}"))
        content = files.setdefault(name, {"attribute": track, "type": item.hop, "model": keys["model"],
                                          "condition": keys["condition"], "mode": keys["mode"], "run": row.run,
                                          "results": {}})
        key = item.meta.get("audio_file", row.id)
        if key in content["results"]:
            raise InputError(f"two rows for audio file {key!r} in the SAKURA judge file {name}", key=row.id)
        options = " ".join(_judge_option(i, c) for i, c in enumerate(item.choices))
        content["results"][key] = {"id": row.id, "instruction": f"{item.question} {options}",
                                   "response": final_text(row.raw_output),
                                   "label": _judge_option(item.answer, item.choices[item.answer])}
    return files


def write_sakura_judge(out_dir: Pathlike, rows: Sequence[Scored]) -> List[Path]:
    """Atomically write :func:`sakura_judge_files` into ``out_dir`` (created).

    Args:
        out_dir: destination folder.
        rows: records joined with a SAKURA manifest.

    Returns:
        The written files.

    Raises:
        InputError: see :func:`sakura_judge_files`.
    """
    return [atomic_write_json(Path(out_dir) / name, content) for name, content in sakura_judge_files(rows).items()]

"""Helpers shared by the source adapters: option/answer parsing, JSON and CSV loading, field checks."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any, Iterator

from toolkit.errors import InputError, Pathlike
from toolkit.jsonl import iter_jsonl_objects

_MARKER = re.compile(r"\(([A-Za-z])\)")
_ANSWER = re.compile(r"^\s*\(([A-Za-z])\)\s*(.*?)\s*$", re.DOTALL)


def normalize_text(text: str) -> str:
    """Case-folded text with runs of whitespace collapsed, for lenient comparisons."""
    return " ".join(text.split()).casefold()


def strip_dot_slash(path: str) -> str:
    """``"./audio/x.wav"`` -> ``"audio/x.wav"``; other paths unchanged."""
    return path[2:] if path.startswith("./") else path


def _marker_runs(text: str) -> list[list[re.Match[str]]]:
    """Runs of consecutive markers ``(a) (b) (c)...`` (or ``(A) (B)...``), each starting at a/A."""
    markers = list(_MARKER.finditer(text))
    runs: list[list[re.Match[str]]] = []
    i = 0
    while i < len(markers):
        if markers[i].group(1) not in "aA":
            i += 1
            continue
        run = [markers[i]]
        i += 1
        while i < len(markers) and markers[i].group(1) == chr(ord(run[-1].group(1)) + 1):
            run.append(markers[i])
            i += 1
        runs.append(run)
    return runs


def parse_options(text: str, path: Pathlike, line: int | None, key: str) -> tuple[str, list[str]]:
    """Split ``"Question? (a) x (b) y"`` into the question and the option texts.

    The options are the last run of consecutive markers starting at ``(a)`` with at least
    two markers, so parentheses inside the question (``"(a)typical"``) do not break it.
    Upper-case markers (``(A) x (B) y``) work the same way.

    Args:
        text: the instruction (or a bare option string).
        path: source file, for errors.
        line: line in ``path``, for errors.
        key: the field name (or item id), for errors.

    Returns:
        ``(question, options)`` with surrounding whitespace stripped.

    Raises:
        InputError: no run of two or more markers, or an empty option text.
    """
    runs = [run for run in _marker_runs(text) if len(run) >= 2]
    if not runs:
        raise InputError(f"no option list '(a) ... (b) ...' found in {text!r}", path, line, key)
    run = runs[-1]
    ends = [m.start() for m in run[1:]] + [len(text)]
    options = [text[m.end():end].strip() for m, end in zip(run, ends)]
    for m, option in zip(run, options):
        if not option:
            raise InputError(f"option ({m.group(1)}) is empty in {text!r}", path, line, key)
    return text[: run[0].start()].strip(), options


def parse_lettered_answer(answer: str) -> tuple[int | None, str]:
    """``" (c) Claws"`` -> ``(2, "Claws")``; text without a leading marker -> ``(None, text)``."""
    m = _ANSWER.match(answer)
    if not m:
        return None, answer.strip()
    return ord(m.group(1).lower()) - ord("a"), m.group(2)


def check_lettered_answer(answer: str, choices: list[str], path: Pathlike, line: int | None, key: str) -> int:
    """Index of an answer written as ``"(c) Claws"``, checked against the option text.

    Args:
        answer: the answer string; a bare ``"(c)"`` is accepted.
        choices: option texts.
        path: source file, for errors.
        line: line in ``path``, for errors.
        key: field name, for errors.

    Returns:
        The 0-based index.

    Raises:
        InputError: no ``(x)`` marker, a letter beyond the options, or a text that differs
            from the option (case and whitespace are ignored).
    """
    index, text = parse_lettered_answer(answer)
    if index is None:
        raise InputError(f"answer {answer!r} does not start with a letter like '(a)'", path, line, key)
    if index >= len(choices):
        raise InputError(f"answer {answer!r} names option {index + 1} of only {len(choices)}", path, line, key)
    if text and normalize_text(text) != normalize_text(choices[index]):
        raise InputError(f"answer {answer!r} does not match option {choices[index]!r}", path, line, key)
    return index


def matching_choices(answer: str, choices: list[str]) -> list[int]:
    """Indices of the choices equal to ``answer``: exact matches, else case/whitespace-insensitive ones."""
    exact = [i for i, c in enumerate(choices) if c == answer]
    if exact:
        return exact
    wanted = normalize_text(answer)
    return [i for i, c in enumerate(choices) if normalize_text(c) == wanted]


def get_field(record: dict, name: str, kind: type | tuple[type, ...], path: Pathlike,
              line: int | None = None, key: str | None = None) -> Any:
    """``record[name]``, checked to exist and to have type ``kind``.

    Raises:
        InputError: naming the field, the file and line or item.
    """
    if name not in record:
        raise InputError(f"missing field {name!r}", path, line, key)
    value = record[name]
    if not isinstance(value, kind):
        raise InputError(f"field {name!r} should be {_type_name(kind)}, got {type(value).__name__}", path, line, key)
    return value


def get_string_list(record: dict, name: str, path: Pathlike, line: int | None = None,
                    key: str | None = None) -> list[str]:
    """``record[name]`` checked to be a list of strings (see :func:`get_field`)."""
    value = get_field(record, name, list, path, line, key)
    if not all(isinstance(v, str) for v in value):
        raise InputError(f"field {name!r} should be a list of strings", path, line, key)
    return value


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def load_json(path: Pathlike) -> Any:
    """Decode a whole JSON file.

    Raises:
        FileNotFoundError: the file does not exist.
        InputError: malformed JSON, naming the line.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc.msg} (column {exc.colno})", path, exc.lineno) from None


def load_jsonl(path: Pathlike) -> list[tuple[int, dict]]:
    """Decode a JSONL file of objects, skipping blank lines.

    Returns:
        ``(line number, object)`` pairs in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        InputError: malformed JSON or a line that is not an object, naming the line.
    """
    return list(iter_jsonl_objects(path))


def iter_csv_rows(path: Pathlike) -> Iterator[tuple[int, list[str]]]:
    """The rows of a CSV file with the line each starts on (quoted fields may span lines).

    A UTF-8 byte-order mark is dropped; blank lines are skipped.

    Args:
        path: the CSV file.

    Yields:
        ``(1-based line number, fields)`` pairs in file order, the header row included.

    Raises:
        FileNotFoundError: the file does not exist.
        InputError: malformed CSV (e.g. a NUL byte), naming the line.
    """
    with open(path, "r", encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        start = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise InputError(f"malformed CSV: {exc}", path, start) from None
            if row:
                yield start, row
            start = reader.line_num + 1

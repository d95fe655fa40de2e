"""Read result files in the toolkit's format or the earlier scripts' format, detected per file.

Two formats are recognised from the first row of a file (see ``DESIGN.md``, "Result row"
and "Seed compatibility"):

* ``toolkit``: one row per item x run, with ``raw_output`` and ``pred`` (0-based index).
* ``seed``: the earlier scripts' rows, one per item, with ``predicted_letters`` and
  ``raw_model_outputs`` (lists, one entry per run), ``reasoning``, ``true_letter`` and
  ``accuracy``.

Rows are kept as the dicts they were read as, so writing them back preserves every field;
each is wrapped in a :class:`ResultRow` carrying the file and line it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from toolkit.jsonl import iter_jsonl_objects
from toolkit.errors import InputError, Pathlike

TOOLKIT = "toolkit"
SEED = "seed"
FORMATS = (TOOLKIT, SEED)

_TOOLKIT_KEYS = ("raw_output", "pred")
_SEED_KEYS = ("predicted_letters", "raw_model_outputs")
_SEED_MODE = re.compile(r"_(No_)?REAS(?=\.|_|$)", re.I)


@dataclass
class ResultRow:
    """One row of a result file.

    Attributes:
        path: the file the row was read from.
        line: 1-based line number in ``path``.
        data: the row as decoded (edited in place by repair).
    """

    path: str
    line: int
    data: Dict[str, Any]

    @property
    def id(self) -> str:
        """The row's item id."""
        return self.data["id"]


def detect_format(row: Dict[str, Any]) -> Optional[str]:
    """The format of one decoded row: ``"toolkit"``, ``"seed"`` or None when it is neither.

    Args:
        row: a decoded JSON object.

    Returns:
        The format name, or None.
    """
    if all(k in row for k in _SEED_KEYS):
        return SEED
    if all(k in row for k in _TOOLKIT_KEYS):
        return TOOLKIT
    return None


def seed_mode_from_name(path: Pathlike) -> Optional[str]:
    """The mode an earlier-scripts file name states: ``..._REAS.jsonl`` -> ``"reasoning"``.

    Args:
        path: a result file name.

    Returns:
        ``"reasoning"`` for ``_REAS``, ``"direct"`` for ``_No_REAS``, None otherwise.
    """
    m = _SEED_MODE.search(Path(path).name)
    if m is None:
        return None
    return "direct" if m.group(1) else "reasoning"


def read_results(path: Pathlike) -> Tuple[str, List[ResultRow]]:
    """Read a result file, detecting its format from its first row.

    Args:
        path: a JSONL result file (blank lines are skipped).

    Returns:
        ``(format, rows)``: ``"toolkit"`` or ``"seed"``, and the rows in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        InputError: naming the file and line for malformed JSON, a line that is not an
            object, a row of neither format or of another format than the first row, a
            missing id, mistyped fields, or an empty file.
    """
    rows: List[ResultRow] = []
    fmt: Optional[str] = None
    for lineno, d in iter_jsonl_objects(path):
        row_fmt = detect_format(d)
        if row_fmt is None:
            raise InputError(f"not a result row: needs {' and '.join(_TOOLKIT_KEYS)} (toolkit) or "
                             f"{' and '.join(_SEED_KEYS)} (earlier scripts)", path, lineno)
        if fmt is None:
            fmt = row_fmt
        elif row_fmt != fmt:
            raise InputError(f"a {row_fmt} row in a {fmt} file (format set by the first row)", path, lineno)
        _check_row(d, fmt, path, lineno)
        rows.append(ResultRow(str(path), lineno, d))
    if fmt is None:
        raise InputError("no result rows", path)
    return fmt, rows


def _check_row(d: Dict[str, Any], fmt: str, path: Pathlike, lineno: int) -> None:
    if not isinstance(d.get("id"), str):
        raise InputError("missing or non-string 'id'", path, lineno)
    key = d["id"]
    if fmt == TOOLKIT:
        pred = d["pred"]
        if pred is not None and (isinstance(pred, bool) or not isinstance(pred, int)):
            raise InputError(f"'pred' must be an integer or null, got {pred!r}", path, lineno, key)
        if d["raw_output"] is not None and not isinstance(d["raw_output"], str):
            raise InputError("'raw_output' must be a string or null", path, lineno, key)
        return
    letters, outputs = d["predicted_letters"], d["raw_model_outputs"]
    if not isinstance(letters, list) or not isinstance(outputs, list):
        raise InputError("'predicted_letters' and 'raw_model_outputs' must be lists", path, lineno, key)
    if len(letters) != len(outputs):
        raise InputError(f"{len(letters)} predicted_letters but {len(outputs)} raw_model_outputs",
                         path, lineno, key)
    reasoning = d.get("reasoning")
    if reasoning is not None and (not isinstance(reasoning, list) or len(reasoning) != len(outputs)):
        raise InputError("'reasoning' must be a list with one entry per run", path, lineno, key)
    if not isinstance(d.get("true_letter"), str):
        raise InputError("missing or non-string 'true_letter'", path, lineno, key)


def seed_to_toolkit(rows: List[ResultRow], model: str = "unknown", condition: str = "clean",
                    mode: str = "unknown") -> List[ResultRow]:
    """Turn earlier-scripts rows into toolkit rows, one per run.

    Labels the earlier scripts found keep ``pred_source`` ``"seed"``; their nulls stay null
    (``pred_source`` None). ``correct`` is scored against ``true_letter``, a null being wrong.

    Args:
        rows: rows read from a ``seed`` file.
        model: written as ``model`` (the earlier files do not record it).
        condition: written as ``condition``.
        mode: written as ``mode``; ``reasoning``/``direct`` also name the prompt
            (``seed-reasoning``/``seed-direct``, the earlier scripts' templates).

    Returns:
        Toolkit rows, each keeping the file and line of the row it came from.
    """
    prompt = f"seed-{mode}" if mode in ("reasoning", "direct") else None
    out: List[ResultRow] = []
    for row in rows:
        d = row.data
        reasoning = d.get("reasoning") or [None] * len(d["raw_model_outputs"])
        for run, (old, raw, why) in enumerate(zip(d["predicted_letters"], d["raw_model_outputs"], reasoning)):
            pred = letter_index(old)
            out.append(ResultRow(row.path, row.line, {
                "id": d["id"], "model": model, "condition": condition, "mode": mode, "run": run, "prompt": prompt,
                "raw_output": raw, "reasoning": why, "pred": pred, "pred_source": None if pred is None else "seed",
                "correct": old is not None and old == d["true_letter"], "error": None, "n_new_tokens": None,
                "seconds": None}))
    return out


def letter_index(value: Optional[str]) -> Optional[int]:
    """``"C"`` -> 2; None (or anything but one letter A-Z) -> None."""
    if isinstance(value, str) and len(value) == 1 and "A" <= value.upper() <= "Z":
        return ord(value.upper()) - ord("A")
    return None

"""Read result files in the toolkit's format or the earlier scripts' format, detected per file.

Two formats are recognised from the first row of a file (the README's "Result row" and
"Files" sections):

* ``toolkit``: one row per item x run (x variant), with ``raw_output`` and ``pred``
  (0-based index); read into typed :class:`toolkit.rows.ResultRow` records.
* ``seed``: the earlier scripts' rows, one per item, with ``predicted_letters`` and
  ``raw_model_outputs`` (lists, one entry per run), ``reasoning``, ``true_letter`` and
  ``accuracy``. They record neither model, condition nor mode: those come from the file's
  name and folder (:func:`seed_identity`), or are refused rather than guessed.

Each row is a :class:`SourceRow` carrying the file and line it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from toolkit.errors import InputError, Pathlike
from toolkit.jsonl import iter_jsonl_objects
from toolkit.rows import ResultRow, superseded

TOOLKIT = "toolkit"
SEED = "seed"
FORMATS = (TOOLKIT, SEED)

_TOOLKIT_KEYS = ("raw_output", "pred")
_SEED_KEYS = ("predicted_letters", "raw_model_outputs")
_SEED_NAME = re.compile(r"^(?P<condition>baseline|mask_p\d+|noise_snr-?\d+)_(?P<dataset>[A-Za-z0-9]+)_"
                        r"(?P<mode>REAS|No_REAS)$")


@dataclass
class SourceRow:
    """One row of a result file.

    Attributes:
        path: the file the row was read from.
        line: 1-based line number in ``path``.
        data: the row as decoded (earlier-scripts rows are edited in place by repair).
        row: toolkit rows: the typed row.
    """

    path: str
    line: int
    data: Dict[str, Any]
    row: Optional[ResultRow] = None

    @property
    def id(self) -> str:
        """The row's item id."""
        return self.data["id"]


@dataclass(frozen=True)
class SeedIdentity:
    """What an earlier-scripts result file's name and folder say about its rows.

    Attributes:
        model: the folder above the dataset folder (``.../qwen2.5-omni/animal/x.jsonl``), or
            None when the file is not in a folder named after its dataset.
        dataset: the dataset part of the name (``animal``).
        condition: ``clean`` for ``baseline_*``, else the earlier label (``mask_p40``,
            ``noise_snr10``), which names the earlier scripts' own procedure.
        mode: ``reasoning`` (``_REAS``) or ``direct`` (``_No_REAS``).
    """

    model: Optional[str]
    dataset: str
    condition: str
    mode: str


def seed_identity(path: Pathlike) -> SeedIdentity:
    """Model, dataset, condition and mode of an earlier-scripts result file, from its name and folder.

    Args:
        path: e.g. ``seed-results/qwen2.5-omni/animal/mask_p40_animal_REAS.jsonl``.

    Returns:
        The identity.

    Raises:
        InputError: a name that is not ``<baseline|mask_pNN|noise_snrS>_<dataset>_<REAS|No_REAS>.jsonl``
            (the identity is never guessed).

    Example:
        >>> seed_identity("seed-results/qwen2.5-omni/animal/mask_p40_animal_REAS.jsonl")
        SeedIdentity(model='qwen2.5-omni', dataset='animal', condition='mask_p40', mode='reasoning')
    """
    p = Path(path)
    match = _SEED_NAME.match(p.name[:-len(".jsonl")] if p.name.endswith(".jsonl") else p.stem)
    if match is None:
        raise InputError("cannot tell the condition and mode of these earlier-scripts rows from the file name "
                         "(expected <baseline|mask_pNN|noise_snrS>_<dataset>_<REAS|No_REAS>.jsonl); convert it with "
                         "bin/repair --to toolkit --condition C --mode M --model NAME", path)
    dataset = match.group("dataset")
    model = p.parent.parent.name if p.parent.name == dataset and p.parent.parent.name else None
    condition = "clean" if match.group("condition") == "baseline" else match.group("condition")
    return SeedIdentity(model=model, dataset=dataset, condition=condition,
                        mode="direct" if match.group("mode") == "No_REAS" else "reasoning")


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


def read_results(path: Pathlike) -> Tuple[str, List[SourceRow]]:
    """Read a result file, detecting its format from its first row.

    Args:
        path: a JSONL result file (blank lines are skipped).

    Returns:
        ``(format, rows)``: ``"toolkit"`` or ``"seed"``, and the rows in file order (toolkit
        rows with their typed :attr:`SourceRow.row`; an error row a later row of its key
        supersedes is left out, see :func:`toolkit.rows.superseded`).

    Raises:
        FileNotFoundError: the file does not exist.
        InputError: naming the file and line for malformed JSON, a line that is not an
            object, a row of neither format or of another format than the first row, a
            missing id, mistyped fields, or an empty file.
    """
    rows: List[SourceRow] = []
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
        rows.append(SourceRow(str(path), lineno, d, _check_row(d, fmt, path, lineno)))
    if fmt is None:
        raise InputError("no result rows", path)
    return fmt, _latest(rows) if fmt == TOOLKIT else rows


def _latest(rows: List[SourceRow]) -> List[SourceRow]:
    """``rows`` without the error rows a later row of the same key supersedes (``--retry-errors``)."""
    last = {row.row.key: row for row in rows}
    return [row for row in rows if last[row.row.key] is row or not superseded(row.data, last[row.row.key].data)]


def _check_row(d: Dict[str, Any], fmt: str, path: Pathlike, lineno: int) -> Optional[ResultRow]:
    """The typed row of a toolkit line (None for an earlier-scripts line, checked in place)."""
    if not isinstance(d.get("id"), str):
        raise InputError("missing or non-string 'id'", path, lineno)
    key = d["id"]
    if fmt == TOOLKIT:
        try:
            return ResultRow.from_dict(d)
        except ValueError as exc:
            raise InputError(f"not a valid result row: {exc}", path, lineno, key) from None
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
    return None


def seed_to_toolkit(rows: List[SourceRow], model: str, condition: str, mode: str,
                    dataset: Optional[str] = None) -> List[SourceRow]:
    """Turn earlier-scripts rows into toolkit rows, one per run.

    Labels the earlier scripts found keep ``pred_source`` ``"seed"``; their nulls stay null
    (``pred_source`` None). ``correct`` is scored against ``true_letter``, a null being wrong.

    Args:
        rows: rows read from a ``seed`` file.
        model: written as ``model`` (the earlier files do not record it; see :func:`seed_identity`).
        condition: written as ``condition``.
        mode: written as ``mode``; ``reasoning``/``direct`` also name the prompt
            (``seed-reasoning``/``seed-direct``, the earlier scripts' templates).
        dataset: written as ``dataset`` when given.

    Returns:
        Toolkit rows, each keeping the file and line of the row it came from.
    """
    prompt = f"seed-{mode}" if mode in ("reasoning", "direct") else None
    out: List[SourceRow] = []
    for source in rows:
        d = source.data
        reasoning = d.get("reasoning") or [None] * len(d["raw_model_outputs"])
        for run, (old, raw, why) in enumerate(zip(d["predicted_letters"], d["raw_model_outputs"], reasoning)):
            pred = letter_index(old)
            row = ResultRow(id=d["id"], model=model, condition=condition, mode=mode, run=run, prompt=prompt,
                            raw_output=raw, reasoning=why, pred=pred, pred_source=None if pred is None else "seed",
                            correct=old is not None and old == d["true_letter"], dataset=dataset)
            out.append(SourceRow(source.path, source.line, row.to_dict(), row))
    return out


def letter_index(value: Optional[str]) -> Optional[int]:
    """``"C"`` -> 2; None (or anything but one letter A-Z) -> None."""
    if isinstance(value, str) and len(value) == 1 and "A" <= value.upper() <= "Z":
        return ord(value.upper()) - ord("A")
    return None

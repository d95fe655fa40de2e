"""Render group scores as markdown, CSV or JSON tables (plots are :mod:`toolkit.plots`).

Accuracies (and their interval bounds, consistency, flip rate) and WER are shown as
percentages with 2 decimals; deltas are already in points (2 decimals); p-values and kappa
keep 4 decimals. JSON keeps the raw numbers (proportions in [0, 1], nan as null).

A table holds one kind of group: :class:`~toolkit.score.GroupScore` (multiple choice) or
:class:`~toolkit.score.WerGroup` (ASR). :func:`render_tables` renders results holding both
as two tables: markdown, two tables under ``### accuracy`` and ``### WER`` headings; JSON,
an object ``{"accuracy": [...], "wer": [...]}``; CSV, which holds one table, is refused.

Faithfulness tables (:mod:`toolkit.faithfulness`) and degradation tables
(:mod:`toolkit.degradation`), several kinds of record with their own columns, are rendered
by :func:`render_sections`: markdown, one table per kind under a
``### <name>`` heading; JSON, an object ``{name: [rows]}``; CSV, one long table with a
leading ``table`` column and the union of the columns (empty where a kind has none). The
AOC and the share kept keep 4 decimals (proportions, not percentages).

Example:
    >>> render([], "json")
    '[]\\n'
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Callable, Dict, List, Mapping, Sequence, Union

from toolkit.errors import InputError
from toolkit.score import GroupScore, WerGroup

FORMATS = ("markdown", "csv", "json")

_PERCENT = ("acc", "acc_low", "acc_high", "acc_answered", "official_acc", "consistency", "flip_rate", "wer",
            # faithfulness tables (toolkit.faithfulness)
            "changed_share", "changed_low", "changed_high", "acc_before", "acc_after", "consistency_low",
            "consistency_high", "follow_share", "follow_low", "follow_high", "baseline_on_hint", "acc_hint",
            "acc_hint_low", "acc_hint_high", "acc_baseline", "max_share", "acc_clean", "acc_correct", "acc_wrong",
            # degradation tables (toolkit.degradation)
            "acc_text", "acc_text_low", "acc_text_high", "acc_audio", "acc_audio_low", "acc_audio_high",
            "same_answer", "mean_recall", "recall", "recall_low", "recall_high")
_DELTA = ("delta_pts", "delta_low_pts", "delta_high_pts")
_POINTS = _DELTA + ("delta_correct_pts", "delta_correct_low_pts", "delta_correct_high_pts", "delta_wrong_pts",
                    "delta_wrong_low_pts", "delta_wrong_high_pts")
_FOUR = ("mcnemar_p", "mcnemar_p_holm", "kappa", "aoc", "aoc_low", "aoc_high", "chi2_p", "p_correct",
         "p_correct_holm", "p_wrong", "p_wrong_holm", "share_kept")
_BASELINE = ("paired",) + _DELTA + ("mcnemar_b01", "mcnemar_b10", "mcnemar_p", "mcnemar_p_holm",
                                     "consistency", "flip_rate", "kappa")
_WER = ("items", "errors", "ref_words", "hits", "substitutions", "deletions", "insertions", "wer")

Group = Union[GroupScore, WerGroup]


def _columns(groups: Sequence[Group]) -> List[str]:
    """Key columns then score columns; baseline and official columns only when filled."""
    keys = list(groups[0].keys) if groups else []
    if groups and isinstance(groups[0], WerGroup):
        return keys + list(_WER)
    cols = ["items", "rows", "nulls", "correct", "acc", "acc_low", "acc_high", "acc_answered", "missed_reasoning"]
    if any(g.official_acc is not None for g in groups):
        cols.append("official_acc")
    if any(g.paired is not None for g in groups):
        cols.extend(_BASELINE)
    return keys + cols


def format_value(column: str, value: Any) -> str:
    """One table cell: percentages for accuracies, points for deltas, "-" for missing.

    Args:
        column: the column name.
        value: the raw value.

    Returns:
        The cell text.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if column in _PERCENT:
        return f"{100 * value:.2f}"
    if column in _POINTS:
        return f"{value:+.2f}"
    if column in _FOUR:
        return f"{value:.4f}"
    return str(value)


def _cells(groups: Sequence[Group]) -> List[List[str]]:
    cols = _columns(groups)
    return [[format_value(c, g.to_dict()[c]) for c in cols] for g in groups]


def _markdown(groups: Sequence[Group]) -> str:
    cols = _columns(groups)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in _cells(groups)]
    return "\n".join(lines) + "\n"


def _csv(groups: Sequence[Group]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(_columns(groups))
    writer.writerows(_cells(groups))
    return buf.getvalue()


def _json_value(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def _json_rows(groups: Sequence[Group]) -> List[Dict[str, Any]]:
    cols = _columns(groups)
    return [{c: _json_value(g.to_dict()[c]) for c in cols} for g in groups]


def _json(groups: Sequence[Group]) -> str:
    return json.dumps(_json_rows(groups), indent=2, ensure_ascii=False) + "\n"


_RENDERERS: Dict[str, Callable[[Sequence[Group]], str]] = {"markdown": _markdown, "csv": _csv, "json": _json}


def render(groups: Sequence[Group], fmt: str = "markdown") -> str:
    """The group table as text.

    Args:
        groups: from :func:`toolkit.score.score_groups` or :func:`toolkit.score.score_wer_groups`
            (one kind only).
        fmt: ``markdown``, ``csv`` or ``json``.

    Returns:
        The table, ending with a newline.

    Raises:
        InputError: an unknown format.
    """
    if fmt not in _RENDERERS:
        raise InputError(f"unknown format {fmt!r}; valid: {list(FORMATS)}")
    return _RENDERERS[fmt](groups)


def render_tables(accuracy: Sequence[GroupScore], wer: Sequence[WerGroup], fmt: str = "markdown") -> str:
    """The accuracy table, the WER table, or both (see the module docstring for both).

    Args:
        accuracy: multiple-choice groups (may be empty).
        wer: ASR groups (may be empty).
        fmt: ``markdown``, ``csv`` or ``json``.

    Returns:
        The text, ending with a newline; with one kind of group exactly :func:`render`.

    Raises:
        InputError: an unknown format, or CSV for both kinds.
    """
    if not (accuracy and wer):
        return render(wer if wer else accuracy, fmt)
    if fmt == "csv":
        raise InputError("the results hold multiple-choice and ASR rows: CSV holds one table; "
                         "use --format markdown or json, or score them separately")
    if fmt == "json":
        return json.dumps({"accuracy": _json_rows(accuracy), "wer": _json_rows(wer)},
                          indent=2, ensure_ascii=False) + "\n"
    return f"### accuracy\n\n{render(accuracy, fmt)}\n### WER\n\n{render(wer, fmt)}"


def _record_columns(records: Sequence[Any]) -> List[str]:
    return list(records[0].to_dict()) if records else []


def _record_markdown(records: Sequence[Any]) -> str:
    cols = _record_columns(records)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(format_value(c, r.to_dict()[c]) for c in cols) + " |" for r in records]
    return "\n".join(lines) + "\n"


def render_sections(sections: Mapping[str, Sequence[Any]], fmt: str = "markdown") -> str:
    """Several tables of records with ``to_dict()`` (e.g. the faithfulness tables) as text.

    Args:
        sections: table name -> its records (one kind of record per table, same columns).
        fmt: ``markdown``, ``csv`` or ``json`` (see the module docstring).

    Returns:
        The text, ending with a newline.

    Raises:
        InputError: an unknown format.
    """
    if fmt not in _RENDERERS:
        raise InputError(f"unknown format {fmt!r}; valid: {list(FORMATS)}")
    if fmt == "json":
        return json.dumps({name: [{c: _json_value(v) for c, v in r.to_dict().items()} for r in records]
                           for name, records in sections.items()}, indent=2, ensure_ascii=False) + "\n"
    if fmt == "markdown":
        return "\n".join(f"### {name}\n\n{_record_markdown(records)}" for name, records in sections.items())
    columns: List[str] = ["table"]
    for records in sections.values():
        columns += [c for c in _record_columns(records) if c not in columns]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for name, records in sections.items():
        for r in records:
            d = {"table": name, **r.to_dict()}
            writer.writerow([format_value(c, d[c]) if c in d else "" for c in columns])
    return buf.getvalue()

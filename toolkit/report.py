"""Render group scores as markdown, CSV or JSON tables, and plot accuracy per group.

Accuracies (and their interval bounds, consistency, flip rate) are shown as percentages with
2 decimals; deltas are already in points (2 decimals); p-values and kappa keep 4 decimals.
JSON keeps the raw numbers (proportions in [0, 1], nan as null).

Example:
    >>> render([], "json")
    '[]\\n'
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from toolkit.errors import InputError, Pathlike
from toolkit.score import GroupScore

log = logging.getLogger("toolkit.report")

FORMATS = ("markdown", "csv", "json")

_PERCENT = ("acc", "acc_low", "acc_high", "acc_answered", "official_acc", "consistency", "flip_rate")
_POINTS = ("delta_pts", "delta_low_pts", "delta_high_pts")
_FOUR = ("mcnemar_p", "mcnemar_p_holm", "kappa")
_BASELINE = ("paired",) + _POINTS + ("mcnemar_b01", "mcnemar_b10", "mcnemar_p", "mcnemar_p_holm",
                                     "consistency", "flip_rate", "kappa")


def _columns(groups: Sequence[GroupScore]) -> List[str]:
    """Key columns then score columns; baseline and official columns only when filled."""
    keys = list(groups[0].keys) if groups else []
    cols = ["items", "nulls", "correct", "acc", "acc_low", "acc_high", "acc_answered", "missed_reasoning"]
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


def _cells(groups: Sequence[GroupScore]) -> List[List[str]]:
    cols = _columns(groups)
    return [[format_value(c, g.to_dict()[c]) for c in cols] for g in groups]


def _markdown(groups: Sequence[GroupScore]) -> str:
    cols = _columns(groups)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in _cells(groups)]
    return "\n".join(lines) + "\n"


def _csv(groups: Sequence[GroupScore]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(_columns(groups))
    writer.writerows(_cells(groups))
    return buf.getvalue()


def _json_value(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def _json(groups: Sequence[GroupScore]) -> str:
    cols = _columns(groups)
    data = [{c: _json_value(g.to_dict()[c]) for c in cols} for g in groups]
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


_RENDERERS: Dict[str, Callable[[Sequence[GroupScore]], str]] = {"markdown": _markdown, "csv": _csv, "json": _json}


def render(groups: Sequence[GroupScore], fmt: str = "markdown") -> str:
    """The group table as text.

    Args:
        groups: from :func:`toolkit.score.score_groups`.
        fmt: ``markdown``, ``csv`` or ``json``.

    Returns:
        The table, ending with a newline.

    Raises:
        InputError: an unknown format.
    """
    if fmt not in _RENDERERS:
        raise InputError(f"unknown format {fmt!r}; valid: {list(FORMATS)}")
    return _RENDERERS[fmt](groups)


def group_label(group: GroupScore) -> str:
    """``condition=clean, mode=reasoning`` -> ``clean / reasoning`` (missing values as "-")."""
    return " / ".join("-" if v is None else str(v) for v in group.keys.values())


def plot_accuracy(groups: Sequence[GroupScore], out_dir: Pathlike, name: str = "accuracy.png",
                  title: Optional[str] = None) -> Path:
    """One PNG: accuracy per group (percent) with Wilson 95% CI error bars.

    Args:
        groups: from :func:`toolkit.score.score_groups`.
        out_dir: folder to write into (created).
        name: file name.
        title: plot title (default: the grouping keys).

    Returns:
        The PNG path.

    Raises:
        InputError: no groups.
    """
    if not groups:
        raise InputError("no groups to plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = [100 * g.acc for g in groups]
    err = [[100 * (g.acc - g.acc_low) for g in groups], [100 * (g.acc_high - g.acc) for g in groups]]
    labels = [group_label(g) for g in groups]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(groups) + 2), 4))
    try:
        ax.errorbar(range(len(groups)), acc, yerr=err, fmt="o", capsize=4)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(labels, rotation=30, ha="right")
        ax.set_ylabel("accuracy (%), Wilson 95% CI")
        ax.set_ylim(0, 100)
        ax.set_title(title or " / ".join(groups[0].keys))
        fig.tight_layout()
        path = Path(out_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    log.info("wrote %s", path)
    return path

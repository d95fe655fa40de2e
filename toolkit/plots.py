"""Plots (PNG and PDF, each with a ``<file>.meta.json`` sidecar) of group scores.

* :func:`plot_accuracy` - accuracy per group with Wilson 95% CI error bars.
* :func:`plot_curves` - accuracy against the share of audio masked and against the SNR, one
  line per combination of the groups' other keys (model, dataset, mode ...) and condition
  variant (mask placement and fill; noise source), the Wilson 95% CI as a shaded band.
  Conditions are read with :func:`toolkit.perturb.parse_condition`. On the mask plot
  ``clean`` is the point at 0 % masked of every mask line with the same other keys; on the
  SNR plot it cannot sit on the dB axis, so it is drawn as a dashed horizontal line (its CI
  band lightly shaded) in the colour of each noise line with the same other keys. Groups
  whose condition does not parse (e.g. the earlier scripts' ``mask_p20``) are left out, with
  a warning naming them.
* :func:`plot_consistency_vs_kept` - answer consistency against the share of the reasoning
  kept (truncation / filler interventions), one line per label, CI as a band;
  :func:`plot_consistency_per_model` draws one such plot per model and dataset from
  :func:`toolkit.faithfulness.consistency_curves`.
* :func:`plot_paired_dots` - two or more accuracies per label side by side with their CIs;
  :func:`plot_twin_accuracy` draws text vs audio accuracy per MMLU subject, one plot per
  model, mode and condition, from :func:`toolkit.degradation.twin_table`.
* :func:`plot_confusion` - a confusion matrix heatmap (cells coloured by the share of their
  gold row, annotated with counts); :func:`plot_confusion_per_group` draws one per group of
  :func:`toolkit.degradation.classify_tables`' ``confusion`` rows.

Every function returns what it drew (:class:`Curve`: x, y and band in percent, as plotted)
so callers and tests can check the numbers, and the files it wrote.

Example:
    >>> figure = plot_curves(groups, "plots/")  # doctest: +SKIP
    >>> figure["mask"].curves[0].x  # doctest: +SKIP
    [0.0, 20.0, 40.0]
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from toolkit.errors import InputError, Pathlike
from toolkit.perturb import parse_condition
from toolkit.perturb.clean import Clean
from toolkit.perturb.mask import Mask
from toolkit.perturb.noise import Noise
from toolkit.score import GroupScore
from toolkit.sidecar import write_sidecar

log = logging.getLogger("toolkit.plots")

#: Keys :func:`plot_curves` needs among the grouping keys (see :func:`curve_keys`).
CURVE_KEYS = ("model", "dataset", "condition")
#: File formats every plot is written in.
FILE_TYPES = ("png", "pdf")


@dataclass(frozen=True)
class Curve:
    """One plotted line, in percent.

    Attributes:
        label: the legend text.
        x: x values, ascending.
        y: y values.
        low: lower edge of the band at each x.
        high: upper edge of the band at each x.
        reference: ``(y, low, high)`` of the clean reference line (SNR plots), or None.
    """

    label: str
    x: List[float]
    y: List[float]
    low: List[float]
    high: List[float]
    reference: Optional[Tuple[float, float, float]] = None


@dataclass(frozen=True)
class Figure:
    """A written plot: its files (PNG then PDF; each has a sidecar) and its lines."""

    paths: List[Path]
    curves: List[Curve]


@dataclass(frozen=True)
class Heatmap:
    """A written matrix plot: its files (PNG then PDF; each has a sidecar) and what it shows.

    Attributes:
        paths: the files.
        rows: row labels, top to bottom.
        columns: column labels, left to right.
        counts: ``counts[i][j]`` of row ``i``, column ``j``.
    """

    paths: List[Path]
    rows: List[str]
    columns: List[str]
    counts: List[List[int]]


class KeptPoint(NamedTuple):
    """One point of consistency against reasoning kept; proportions in [0, 1].

    Attributes:
        label: the line it belongs to (e.g. ``"qwen2-audio / sakura / truncate"``).
        share_kept: share of the reasoning kept (1 = all of it).
        consistency: share of answers equal to the full-reasoning answer.
        low: lower CI bound of ``consistency``.
        high: upper CI bound of ``consistency``.
    """

    label: str
    share_kept: float
    consistency: float
    low: float
    high: float


def curve_keys(by: Sequence[str]) -> Tuple[str, ...]:
    """``by`` with the keys :func:`plot_curves` needs appended when missing.

    Args:
        by: the table's grouping keys.

    Returns:
        ``by`` followed by the missing :data:`CURVE_KEYS`, e.g. ``("mode", "model", "dataset", "condition")``.
    """
    return tuple(by) + tuple(k for k in CURVE_KEYS if k not in by)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out_dir: Pathlike, stem: str, stage: str, params: Optional[Mapping[str, Any]]) -> List[Path]:
    """Write ``fig`` as ``<stem>.png`` and ``<stem>.pdf`` with sidecars; closes it."""
    plt = _pyplot()
    paths = [Path(out_dir) / f"{stem}.{ext}" for ext in FILE_TYPES]
    try:
        paths[0].parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        for path in paths:
            fig.savefig(path, dpi=120)
            write_sidecar(path, stage, plot=stem, **dict(params or {}))
            log.info("wrote %s", path)
    finally:
        plt.close(fig)
    return paths


def _label(values: Sequence[Any]) -> str:
    return " / ".join("-" if v is None else str(v) for v in values)


def _stem(prefix: str, values: Sequence[Any]) -> str:
    """A file name stem: ``prefix`` and the values joined by ``_``, other characters replaced by ``_``."""
    return re.sub(r"[^\w.-]+", "_", "_".join([prefix] + ["-" if v is None else str(v) for v in values]))


def plot_accuracy(groups: Sequence[GroupScore], out_dir: Pathlike, stem: str = "accuracy",
                  title: Optional[str] = None, stage: str = "score",
                  params: Optional[Mapping[str, Any]] = None) -> Figure:
    """Accuracy per group (percent) with Wilson 95% CI error bars.

    Args:
        groups: from :func:`toolkit.score.score_groups`.
        out_dir: folder to write into (created).
        stem: file name without extension.
        title: plot title (default: the grouping keys).
        stage: the stage named in the sidecars.
        params: extra parameters recorded in the sidecars.

    Returns:
        The files and one :class:`Curve` (x = group position, y = accuracy, band = CI).

    Raises:
        InputError: no groups.
    """
    if not groups:
        raise InputError("no groups to plot")
    plt = _pyplot()
    curve = Curve(label="accuracy", x=[float(i) for i in range(len(groups))], y=[100 * g.acc for g in groups],
                  low=[100 * g.acc_low for g in groups], high=[100 * g.acc_high for g in groups])
    err = [[y - lo for y, lo in zip(curve.y, curve.low)], [hi - y for y, hi in zip(curve.y, curve.high)]]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(groups) + 2), 4))
    ax.errorbar(curve.x, curve.y, yerr=err, fmt="o", capsize=4)
    ax.set_xticks(curve.x)
    ax.set_xticklabels([_label(list(g.keys.values())) for g in groups], rotation=30, ha="right")
    ax.set_ylabel("accuracy (%), Wilson 95% CI")
    ax.set_ylim(0, 100)
    ax.set_title(title or " / ".join(groups[0].keys))
    return Figure(_save(fig, out_dir, stem, stage, params), [curve])


def _curves(groups: Sequence[GroupScore], family: type) -> List[Curve]:
    """Lines of one condition family (Mask or Noise), clean added as described in the module."""
    lines: Dict[Tuple[Any, ...], List[Tuple[float, GroupScore]]] = {}
    clean: Dict[Tuple[Any, ...], GroupScore] = {}
    for g in groups:
        others = tuple(v for k, v in g.keys.items() if k != "condition")
        condition = parse_condition(g.keys["condition"])
        if isinstance(condition, Clean):
            clean[others] = g
        elif isinstance(condition, Mask) and family is Mask:
            variant = f"{condition.placement}-{condition.fill}"
            lines.setdefault(others + (variant,), []).append((float(condition.percent), g))
        elif isinstance(condition, Noise) and family is Noise:
            lines.setdefault(others + (condition.source,), []).append((condition.snr_db, g))
    out: List[Curve] = []
    for key in sorted(lines, key=_label):
        points = lines[key]
        base = clean.get(key[:-1])
        reference = None
        if base is not None and family is Mask:
            points = [(0.0, base)] + points
        elif base is not None:
            reference = (100 * base.acc, 100 * base.acc_low, 100 * base.acc_high)
        points.sort(key=lambda p: p[0])
        out.append(Curve(label=_label(key), x=[x for x, _ in points], y=[100 * g.acc for _, g in points],
                         low=[100 * g.acc_low for _, g in points], high=[100 * g.acc_high for _, g in points],
                         reference=reference))
    return out


def _draw_lines(curves: Sequence[Curve], xlabel: str, ylabel: str, title: str) -> Any:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, curve in enumerate(curves):
        colour = f"C{i % 10}"
        ax.plot(curve.x, curve.y, marker="o", color=colour, label=curve.label)
        ax.fill_between(curve.x, curve.low, curve.high, color=colour, alpha=0.2, linewidth=0)
        if curve.reference is not None:
            y, low, high = curve.reference
            ax.axhline(y, color=colour, linestyle="--", linewidth=1, label=f"{curve.label} (clean)")
            ax.axhspan(low, high, color=colour, alpha=0.08, linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig


def plot_curves(groups: Sequence[GroupScore], out_dir: Pathlike, stage: str = "score",
                params: Optional[Mapping[str, Any]] = None) -> Dict[str, Figure]:
    """Accuracy against mask ratio (``accuracy_vs_mask``) and against SNR (``accuracy_vs_snr``).

    Args:
        groups: from :func:`toolkit.score.score_groups`, grouped by at least ``condition``
            (use :func:`curve_keys` to get one line per model and dataset).
        out_dir: folder to write into (created).
        stage: the stage named in the sidecars.
        params: extra parameters recorded in the sidecars.

    Returns:
        ``{"mask": Figure, "snr": Figure}``, each present only when the groups hold such
        conditions (no file is written for a family without them).

    Raises:
        InputError: the groups are not grouped by ``condition``.
    """
    if not groups or "condition" not in groups[0].keys:
        raise InputError("accuracy curves need groups keyed by condition")
    bad = sorted({str(g.keys["condition"]) for g in groups if not _parses(g.keys["condition"])})
    if bad:
        log.warning("left out of the curves (not condition names): %s", ", ".join(bad))
    usable = [g for g in groups if _parses(g.keys["condition"])]
    out: Dict[str, Figure] = {}
    for kind, family, xlabel in (("mask", Mask, "audio masked (%)"), ("snr", Noise, "SNR (dB)")):
        curves = _curves(usable, family)
        if not curves:
            log.info("no %s conditions: accuracy_vs_%s not drawn", kind, kind)
            continue
        fig = _draw_lines(curves, xlabel, "accuracy (%), Wilson 95% CI", f"accuracy vs {xlabel}")
        out[kind] = Figure(_save(fig, out_dir, f"accuracy_vs_{kind}", stage, params), curves)
    return out


def _parses(condition: Any) -> bool:
    try:
        parse_condition(condition)
    except (TypeError, ValueError):
        return False
    return True


def plot_consistency_vs_kept(points: Sequence[Sequence[Any]], out_dir: Pathlike, stage: str = "score",
                             params: Optional[Mapping[str, Any]] = None, stem: str = "consistency_vs_kept",
                             title: str = "consistency vs reasoning kept") -> Figure:
    """Answer consistency against the share of reasoning kept (``consistency_vs_kept``).

    Args:
        points: :class:`KeptPoint` values, or plain ``(label, share_kept, consistency, low,
            high)`` tuples; proportions in [0, 1]. One line per label.
        out_dir: folder to write into (created).
        stage: the stage named in the sidecars.
        params: extra parameters recorded in the sidecars.
        stem: file name without extension (e.g. one per model and dataset).
        title: plot title.

    Returns:
        The files and one :class:`Curve` per label (x = % kept, y = consistency %).

    Raises:
        InputError: no points, or a share or consistency outside [0, 1].
    """
    if not points:
        raise InputError("no consistency points to plot")
    lines: Dict[str, List[KeptPoint]] = {}
    for raw in points:
        p = KeptPoint(*raw)
        if not (0 <= p.share_kept <= 1 and 0 <= p.consistency <= 1):
            raise InputError(f"share kept and consistency must be proportions in [0, 1]: {p}")
        lines.setdefault(p.label, []).append(p)
    curves = []
    for label in sorted(lines):
        pts = sorted(lines[label], key=lambda p: p.share_kept)
        curves.append(Curve(label=label, x=[100 * p.share_kept for p in pts], y=[100 * p.consistency for p in pts],
                            low=[100 * p.low for p in pts], high=[100 * p.high for p in pts]))
    fig = _draw_lines(curves, "reasoning kept (%)", "answer consistency (%), 95% CI", title)
    return Figure(_save(fig, out_dir, stem, stage, params), curves)


def plot_consistency_per_model(points: Sequence[Any], out_dir: Pathlike, stage: str = "score",
                               params: Optional[Mapping[str, Any]] = None) -> List[Figure]:
    """One ``consistency_vs_kept_<model>_<dataset>`` plot per model and dataset.

    One line per intervention and filler position (plus audio condition and placement when
    they vary within the plot); the Wilson 95% CI of each point as a band.

    Args:
        points: :class:`toolkit.faithfulness.CurvePoint` records.
        out_dir: folder to write into (created).
        stage: the stage named in the sidecars.
        params: extra parameters recorded in the sidecars.

    Returns:
        The figures, sorted by model and dataset.

    Raises:
        InputError: no points.
    """
    points = [p for p in points if (p.length, p.baseline) == ("all", "all")]  # subsets are in the tables
    if not points:
        raise InputError("no consistency points to plot")
    by_plot: Dict[Tuple[str, str], List[Any]] = {}
    for p in points:
        by_plot.setdefault((_label([p.keys.get("model")]), _label([p.keys.get("dataset")])), []).append(p)
    figures = []
    for (model, dataset), pts in sorted(by_plot.items()):
        varying = [k for k in ("condition", "placement", "protocol") if len({p.keys.get(k) for p in pts}) > 1]
        kept = [KeptPoint(_label([p.intervention] + ([p.position] if p.position else [])
                                 + [p.keys.get(k) for k in varying]),
                          p.share_kept, p.consistency, p.consistency_low, p.consistency_high) for p in pts]
        stem = _stem("consistency_vs_kept", [model, dataset])
        figures.append(plot_consistency_vs_kept(kept, out_dir, stage, {**dict(params or {}), "model": model,
                                                                       "dataset": dataset},
                                                stem=stem, title=f"consistency vs reasoning kept: {model} / {dataset}"))
    return figures


def plot_paired_dots(labels: Sequence[str], curves: Sequence[Curve], out_dir: Pathlike, stem: str, title: str,
                     ylabel: str = "accuracy (%), Wilson 95% CI", stage: str = "score",
                     params: Optional[Mapping[str, Any]] = None) -> Figure:
    """Each curve's values as dots with CI error bars, side by side at each label.

    Args:
        labels: the x tick labels; curve point ``i`` sits at label ``i``.
        curves: one per series (legend entry), ``y``/``low``/``high`` in percent, one value per label.
        out_dir: folder to write into (created).
        stem: file name without extension.
        title: plot title.
        ylabel: y axis label.
        stage: the stage named in the sidecars.
        params: extra parameters recorded in the sidecars.

    Returns:
        The files and the curves as given.

    Raises:
        InputError: no labels or curves, or a curve without one value per label.
    """
    if not labels or not curves or any(len(c.y) != len(labels) for c in curves):
        raise InputError("paired dots need labels and curves with one value per label")
    plt = _pyplot()
    width = 0.7 / len(curves)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(labels) + 2), 4.5))
    for i, curve in enumerate(curves):
        x = [j + (i - (len(curves) - 1) / 2) * width for j in range(len(labels))]
        err = [[y - lo for y, lo in zip(curve.y, curve.low)], [hi - y for y, hi in zip(curve.y, curve.high)]]
        ax.errorbar(x, curve.y, yerr=err, fmt="o", capsize=4, color=f"C{i % 10}", label=curve.label)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize="small")
    return Figure(_save(fig, out_dir, stem, stage, params), list(curves))


def plot_twin_accuracy(rows: Sequence[Any], out_dir: Pathlike, stage: str = "score",
                       params: Optional[Mapping[str, Any]] = None) -> List[Figure]:
    """``mmlu_text_vs_audio_<model>_<mode>_<condition>``: text and audio accuracy per subject.

    Args:
        rows: :class:`toolkit.degradation.TwinRow` records (the ``all`` row is the first label
            of its plot, as in the table).
        out_dir: folder to write into (created).
        stage: the stage named in the sidecars.
        params: extra parameters recorded in the sidecars.

    Returns:
        One figure per model x mode x condition, in table order; curves ``text`` and ``audio``.

    Raises:
        InputError: no rows.
    """
    if not rows:
        raise InputError("no text/audio rows to plot")
    by_plot: Dict[Tuple[Any, ...], List[Any]] = {}
    for r in rows:
        by_plot.setdefault(tuple(r.keys.values()), []).append(r)
    figures = []
    for key, members in by_plot.items():
        curves = [Curve(label=side, x=[float(i) for i in range(len(members))],
                        y=[100 * getattr(r, f"acc_{side}") for r in members],
                        low=[100 * getattr(r, f"acc_{side}_low") for r in members],
                        high=[100 * getattr(r, f"acc_{side}_high") for r in members]) for side in ("text", "audio")]
        figures.append(plot_paired_dots([r.subject for r in members], curves, out_dir,
                                        _stem("mmlu_text_vs_audio", key), f"MMLU text vs audio: {_label(key)}",
                                        stage=stage, params={**dict(params or {}), **members[0].keys}))
    return figures


def plot_confusion(rows: Sequence[str], columns: Sequence[str], counts: Sequence[Sequence[int]], out_dir: Pathlike,
                   stem: str, title: str, stage: str = "score",
                   params: Optional[Mapping[str, Any]] = None) -> Heatmap:
    """A confusion matrix: gold rows, predicted columns, cells coloured by their share of the row.

    Args:
        rows: gold class labels.
        columns: predicted class labels (``null`` included when wanted).
        counts: ``counts[i][j]`` rows of gold ``rows[i]`` predicted ``columns[j]``.
        out_dir: folder to write into (created).
        stem: file name without extension.
        title: plot title.
        stage: the stage named in the sidecars.
        params: extra parameters recorded in the sidecars.

    Returns:
        The files and the matrix as drawn.

    Raises:
        InputError: no rows, or a count row whose length is not that of ``columns``.
    """
    if not rows or len(counts) != len(rows) or any(len(c) != len(columns) for c in counts):
        raise InputError("a confusion matrix needs one count per gold row and predicted column")
    plt = _pyplot()
    matrix = np.asarray(counts, dtype=float)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.1 * len(columns) + 2.5, 0.8 * len(rows) + 2))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(rows)):
        for j in range(len(columns)):
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center",
                    color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(columns, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="share of gold row")
    return Heatmap(_save(fig, out_dir, stem, stage, params), list(rows), list(columns),
                   [[int(v) for v in row] for row in counts])


def plot_confusion_per_group(rows: Sequence[Any], out_dir: Pathlike, stage: str = "score",
                             params: Optional[Mapping[str, Any]] = None) -> List[Heatmap]:
    """``confusion_<model>_<dataset>_<mode>_<condition>``: one heatmap per group of confusion rows.

    Args:
        rows: :class:`toolkit.degradation.ConfusionRow` records.
        out_dir: folder to write into (created).
        stage: the stage named in the sidecars.
        params: extra parameters recorded in the sidecars.

    Returns:
        One heatmap per group, in table order.

    Raises:
        InputError: no rows.
    """
    if not rows:
        raise InputError("no confusion rows to plot")
    by_plot: Dict[Tuple[Any, ...], List[Any]] = {}
    for r in rows:
        by_plot.setdefault(tuple(r.keys.values()), []).append(r)
    return [plot_confusion([r.gold for r in members], list(members[0].counts),
                           [list(r.counts.values()) for r in members], out_dir, _stem("confusion", key),
                           f"confusion: {_label(key)}", stage=stage, params={**dict(params or {}), **members[0].keys})
            for key, members in by_plot.items()]

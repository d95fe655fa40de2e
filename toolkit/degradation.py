"""Degradation tables: MMLU spoken vs written twins, and classification (timbre range).

Every function is pure: it takes :class:`toolkit.score.Scored` records joined with their
manifest items (:func:`toolkit.score.load_scored` with ``items``) and returns small
dataclasses, one per table row. Null predictions (and error rows, whose prediction is null)
count as wrong, as everywhere in the toolkit.

Tables (see the README's score section for the formulas):

* :func:`twin_table` (``mmlu``): the rows of spoken items (``meta.modality == "audio"``) are
  paired with the row of their written twin (``meta.twin``) of the same model, mode and run,
  under the same condition when the twin has a row there, else its only row (a text run
  done once, e.g. ``clean``). Per model x mode x condition, per subject and ``all``: pairs,
  accuracy of each side with a Wilson 95% CI, the delta audio - text in points with a paired
  bootstrap CI, the exact McNemar p (Holm across the subjects of one model x mode x
  condition), the share of questions answered the same (both answered) and Cohen's kappa,
  all from :func:`toolkit.score.compare_pairs`.
* :func:`classify_tables` (``classify``, ``recall``, ``confusion``): rows of ``task:
  classify`` items per model x dataset x mode x condition: accuracy with a Wilson CI
  (:func:`toolkit.score.score_groups`) and the mean per-class recall; recall of each gold
  class with a Wilson CI; the confusion matrix, gold x predicted class, plus a ``null``
  column.

Example:
    >>> rows = load_scored(["runs/mmlu.jsonl"], items)  # doctest: +SKIP
    >>> [(r.subject, r.delta_pts) for r in twin_table(rows)]  # doctest: +SKIP
    [('all', -12.5), ('anatomy', -10.0), ...]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from toolkit import metrics
from toolkit.score import BOOTSTRAP_RESAMPLES, KeyedRecord, Scored, compare_pairs, score_groups

log = logging.getLogger("toolkit.degradation")

#: Keys the MMLU twin table is grouped by (then by subject).
TWIN_KEYS = ("model", "mode", "condition")
#: Keys the classification tables are grouped by.
CLASSIFY_KEYS = ("model", "dataset", "mode", "condition")
#: The subject value of the row over every subject.
ALL_SUBJECTS = "all"
#: The confusion matrix column of null predictions.
NULL_COLUMN = "null"


@dataclass
class TwinRow(KeyedRecord):
    """Spoken against written MMLU questions of one subject (or ``all``).

    Attributes:
        subject: the subject, or ``all``.
        pairs: paired rows (question x run).
        text_correct: correct text answers.
        acc_text: text accuracy (nulls wrong).
        acc_text_low: Wilson 95% lower bound.
        acc_text_high: Wilson 95% upper bound.
        audio_correct: correct spoken answers.
        acc_audio: audio accuracy (nulls wrong).
        acc_audio_low: Wilson 95% lower bound.
        acc_audio_high: Wilson 95% upper bound.
        delta_pts: acc_audio - acc_text, points.
        delta_low_pts: paired bootstrap 95% lower bound, points.
        delta_high_pts: paired bootstrap 95% upper bound, points.
        mcnemar_b01: pairs wrong as text and correct as audio.
        mcnemar_b10: pairs correct as text and wrong as audio.
        mcnemar_p: exact McNemar p.
        mcnemar_p_holm: Holm-corrected across the subjects of the group (None on ``all``).
        both_answered: pairs where neither prediction is null.
        same_answer: share of those with the same option chosen.
        kappa: Cohen's kappa of the text and audio predictions.
    """

    subject: str
    pairs: int
    text_correct: int
    acc_text: float
    acc_text_low: float
    acc_text_high: float
    audio_correct: int
    acc_audio: float
    acc_audio_low: float
    acc_audio_high: float
    delta_pts: float
    delta_low_pts: float
    delta_high_pts: float
    mcnemar_b01: Optional[int]
    mcnemar_b10: Optional[int]
    mcnemar_p: float
    mcnemar_p_holm: Optional[float]
    both_answered: int
    same_answer: float
    kappa: float


@dataclass
class ClassifyRow(KeyedRecord):
    """Accuracy of one group of classification rows.

    Attributes:
        items: distinct items.
        rows: rows (item x run).
        nulls: rows with a null prediction.
        correct: correct rows.
        acc: correct / rows.
        acc_low: Wilson 95% lower bound.
        acc_high: Wilson 95% upper bound.
        mean_recall: mean of the per-class recalls over the gold classes present (balanced accuracy).
    """

    items: int
    rows: int
    nulls: int
    correct: int
    acc: float
    acc_low: float
    acc_high: float
    mean_recall: float


@dataclass
class RecallRow(KeyedRecord):
    """Recall of one gold class.

    Attributes:
        gold: the class name.
        n: rows whose gold answer is this class.
        correct: those predicted as this class.
        recall: correct / n.
        recall_low: Wilson 95% lower bound.
        recall_high: Wilson 95% upper bound.
    """

    gold: str
    n: int
    correct: int
    recall: float
    recall_low: float
    recall_high: float


@dataclass
class ConfusionRow(KeyedRecord):
    """One row of a confusion matrix: the rows of one gold class by predicted class.

    Attributes:
        gold: the gold class name.
        counts: predicted class name -> rows, in the table's class order, then ``null``.
    """

    gold: str
    counts: Dict[str, int]

    def to_dict(self) -> Dict[str, Any]:
        """Group keys, ``gold``, then one ``pred_<class>`` column per class and ``pred_null``."""
        return {**self.keys, "gold": self.gold, **{f"pred_{c}": n for c, n in self.counts.items()}}


def _sorted(keys: Any) -> List[Tuple[Any, ...]]:
    return sorted(keys, key=lambda key: tuple((v is None, str(v)) for v in key))


# ---------------------------------------------------------------------------- MMLU twins


def _modality(row: Scored) -> Optional[str]:
    return row.item.meta.get("modality") if row.item is not None and "twin" in row.item.meta else None


def twin_pairs(rows: Sequence[Scored]) -> List[Tuple[Scored, Scored]]:
    """``(text, audio)`` records of the same question, model, mode and run.

    The text record is the twin's row under the audio row's condition, or, when the twin has
    no row there, its only row for that model, mode and run (text items run once).

    Args:
        rows: records joined with a manifest; records of items without ``meta.twin`` are ignored.

    Returns:
        The pairs, in the order of the audio records; unpaired audio records are left out
        (logged).
    """
    text: Dict[Tuple[Any, ...], Dict[Any, Scored]] = {}
    for r in rows:
        if _modality(r) == "text":
            cell = (r.keys.get("model"), r.keys.get("mode"), r.run, r.id)
            text.setdefault(cell, {})[r.keys.get("condition")] = r
    pairs: List[Tuple[Scored, Scored]] = []
    unpaired = 0
    for r in rows:
        if _modality(r) != "audio":
            continue
        twins = text.get((r.keys.get("model"), r.keys.get("mode"), r.run, r.item.meta["twin"]), {})
        twin = twins.get(r.keys.get("condition"))
        if twin is None and len(twins) == 1:
            twin = next(iter(twins.values()))
        if twin is None:
            unpaired += 1
        else:
            pairs.append((twin, r))
    if unpaired:
        log.warning("%d spoken rows have no row of their text twin (same model, mode and run): left out", unpaired)
    return pairs


def _twin_row(keys: Dict[str, Any], subject: str, pairs: Sequence[Tuple[Scored, Scored]], seed: int,
              n_resamples: int) -> TwinRow:
    sides = {}
    for side, index in (("text", 0), ("audio", 1)):
        acc = metrics.accuracy([p[index].correct for p in pairs])
        sides[side] = (acc.n_correct, acc.acc_all) + metrics.wilson_interval(acc.n_correct, acc.n)
    paired = compare_pairs(pairs, seed=seed, n_resamples=n_resamples)
    return TwinRow(keys=keys, subject=subject, pairs=len(pairs), text_correct=sides["text"][0],
                   acc_text=sides["text"][1], acc_text_low=sides["text"][2], acc_text_high=sides["text"][3],
                   audio_correct=sides["audio"][0], acc_audio=sides["audio"][1], acc_audio_low=sides["audio"][2],
                   acc_audio_high=sides["audio"][3], delta_pts=paired.delta_pts, delta_low_pts=paired.delta_low_pts,
                   delta_high_pts=paired.delta_high_pts, mcnemar_b01=paired.mcnemar_b01,
                   mcnemar_b10=paired.mcnemar_b10, mcnemar_p=paired.mcnemar_p, mcnemar_p_holm=None,
                   both_answered=sum(t.pred is not None and a.pred is not None for t, a in pairs),
                   same_answer=paired.consistency, kappa=paired.kappa)


def twin_table(rows: Sequence[Scored], n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> List[TwinRow]:
    """Text against audio accuracy of MMLU twins, per model x mode x condition and subject.

    Args:
        rows: records joined with a manifest (see :func:`twin_pairs`).
        n_resamples: bootstrap resamples of the delta intervals.
        seed: bootstrap seed.

    Returns:
        Per group (sorted by :data:`TWIN_KEYS`): the ``all`` row, then one row per subject
        (``meta.subject``, else the item's subset) in name order.
    """
    groups: Dict[Tuple[Any, ...], List[Tuple[Scored, Scored]]] = {}
    for pair in twin_pairs(rows):
        groups.setdefault(tuple(pair[1].keys.get(k) for k in TWIN_KEYS), []).append(pair)
    out: List[TwinRow] = []
    for key in _sorted(groups):
        keys = dict(zip(TWIN_KEYS, key))
        subjects: Dict[str, List[Tuple[Scored, Scored]]] = {}
        for pair in groups[key]:
            item = pair[1].item
            subjects.setdefault(str(item.meta.get("subject", item.subset)), []).append(pair)
        out.append(_twin_row(keys, ALL_SUBJECTS, groups[key], seed, n_resamples))
        per_subject = [_twin_row(keys, s, subjects[s], seed, n_resamples) for s in sorted(subjects)]
        for row, p in zip(per_subject, metrics.holm([r.mcnemar_p for r in per_subject])):
            row.mcnemar_p_holm = p
        out += per_subject
    return out


# ---------------------------------------------------------------------------- classification


def _classify_rows(rows: Sequence[Scored]) -> List[Scored]:
    return [r for r in rows if r.item is not None and r.item.task == "classify"]


def class_names(rows: Sequence[Scored]) -> List[str]:
    """The classes of the rows' items (their choices), in order of first appearance.

    Args:
        rows: classification records.

    Returns:
        The class names (the confusion matrix's columns, before ``null``).
    """
    names: List[str] = []
    for r in rows:
        names += [c for c in r.item.choices or () if c not in names]
    return names


def classify_tables(rows: Sequence[Scored]) -> Dict[str, List[Any]]:
    """Accuracy, per-class recall and confusion matrix of ``task: classify`` rows.

    Args:
        rows: records joined with a manifest; other tasks are ignored.

    Returns:
        ``{"classify": [ClassifyRow], "recall": [RecallRow], "confusion": [ConfusionRow]}``
        grouped by :data:`CLASSIFY_KEYS` (gold classes in :func:`class_names` order), or
        ``{}`` without classification rows.
    """
    rows = _classify_rows(rows)
    if not rows:
        return {}
    classes = class_names(rows)
    accuracy = {tuple(g.keys.values()): g for g in score_groups(rows, by=CLASSIFY_KEYS)}
    groups: Dict[Tuple[Any, ...], List[Scored]] = {}
    for r in rows:
        groups.setdefault(tuple(r.keys.get(k) for k in CLASSIFY_KEYS), []).append(r)
    tables: Dict[str, List[Any]] = {"classify": [], "recall": [], "confusion": []}
    for key in _sorted(groups):
        keys = dict(zip(CLASSIFY_KEYS, key))
        by_gold: Dict[str, List[Scored]] = {}
        for r in groups[key]:
            by_gold.setdefault(r.item.choices[r.item.answer], []).append(r)
        recalls = []
        for gold in (c for c in classes if c in by_gold):
            members = by_gold[gold]
            correct = sum(bool(r.correct) for r in members)
            low, high = metrics.wilson_interval(correct, len(members))
            recalls.append(RecallRow(keys=keys, gold=gold, n=len(members), correct=correct,
                                     recall=correct / len(members), recall_low=low, recall_high=high))
            counts = {c: 0 for c in classes + [NULL_COLUMN]}
            for r in members:
                counts[NULL_COLUMN if r.pred is None else r.item.choices[r.pred]] += 1
            tables["confusion"].append(ConfusionRow(keys=keys, gold=gold, counts=counts))
        g = accuracy[key]
        tables["classify"].append(ClassifyRow(keys=keys, items=g.items, rows=g.rows, nulls=g.nulls,
                                              correct=g.correct, acc=g.acc,
                                              acc_low=g.acc_low, acc_high=g.acc_high,
                                              mean_recall=sum(r.recall for r in recalls) / len(recalls)))
        tables["recall"] += recalls
    return tables


# ---------------------------------------------------------------------------- all tables


def degradation_tables(rows: Sequence[Scored], n_resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = 0) -> Dict[str, List[Any]]:
    """Every degradation table the records allow, empty ones left out.

    Args:
        rows: records joined with a manifest.
        n_resamples: bootstrap resamples of the twin deltas.
        seed: bootstrap seed.

    Returns:
        Table name -> its rows, in report order: ``mmlu``, ``classify``, ``recall``, ``confusion``.
    """
    tables = {"mmlu": twin_table(rows, n_resamples=n_resamples, seed=seed), **classify_tables(rows)}
    return {name: table for name, table in tables.items() if table}


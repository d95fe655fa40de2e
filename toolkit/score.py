"""Score result files: per-group accuracy with nulls, intervals and paired baseline tests.

Result files are read with :func:`toolkit.results.read_results`; earlier-scripts rows are
turned into toolkit rows (one per run) with :func:`toolkit.results.seed_to_toolkit`, their
mode taken from the ``_REAS`` / ``_No_REAS`` file name and their condition from the file
name too (``mask_p20_animal_REAS.jsonl`` -> ``mask_p20``: the name without the mode suffix
and without its last ``_`` part, the dataset).

Every row becomes a :class:`Scored` record; :func:`score_groups` groups them by any of
:data:`GROUP_KEYS` and computes one :class:`GroupScore` per group, using the statistics of
:mod:`toolkit.metrics`. With a baseline, rows are paired by ``(id, run)`` within the same
values of the grouping keys, except the keys whose values differ between the two sets
(typically ``condition``); the paired statistics of a group are :func:`compare_pairs`, which
other tables reuse on their own pairs (e.g. :mod:`toolkit.degradation`: text vs audio twins).

Rows of ASR items (manifest ``task: asr``) are not multiple-choice: :func:`split_asr`
separates them, :func:`asr_item_wers` scores each against its item's ``reference``
(:mod:`toolkit.wer`) and :func:`score_wer_groups` sums the counts per group into a
:class:`WerGroup` (corpus WER of the group).

Example:
    >>> rows = load_scored(["runs/noise.jsonl"])  # doctest: +SKIP
    >>> groups = score_groups(rows, by=("condition", "mode"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from toolkit import metrics, wer
from toolkit.errors import InputError, Pathlike
from toolkit.manifest import Item
from toolkit.results import SEED, read_results, seed_mode_from_name, seed_to_toolkit

log = logging.getLogger("toolkit.score")

GROUP_KEYS = ("dataset", "subset", "hop", "condition", "mode", "model", "run", "variant")
DEFAULT_BY = ("condition", "mode")
BOOTSTRAP_RESAMPLES = 10000

_MODE_SUFFIX = re.compile(r"_(No_)?REAS$", re.I)


@dataclass
class Scored:
    """One prediction ready to score.

    Attributes:
        id: item id.
        run: run index (0 when the row does not say).
        keys: the values of :data:`GROUP_KEYS` for this row (None when unknown).
        pred: predicted option index, None for a null.
        correct: True/False, None for a null prediction.
        missed_reasoning: a reasoning-mode row whose reasoning is empty.
        raw_output: the model's output text (None when absent).
        item: the manifest item, when a manifest was given.
        error: the row's error message (None when the item ran).
        data: the row as read (``bin/condition`` rows keep their ``intervention``,
            ``baseline_pred`` ... here for :mod:`toolkit.faithfulness`).
    """

    id: str
    run: int
    keys: Dict[str, Any]
    pred: Optional[int]
    correct: Optional[bool]
    missed_reasoning: bool
    raw_output: Optional[str]
    item: Optional[Item] = None
    error: Optional[str] = None
    data: Dict[str, Any] = field(default_factory=dict)


@dataclass
class KeyedRecord:
    """A table row: its grouping keys, then its values; :meth:`to_dict` flattens them."""

    keys: Dict[str, Any]

    def to_dict(self) -> Dict[str, Any]:
        """Group keys first, then the values, as a flat dict."""
        d = asdict(self)
        keys = d.pop("keys")
        return {**keys, **d}


@dataclass
class GroupScore(KeyedRecord):
    """Scores of one group; proportions in [0, 1], ``delta_*`` in points.

    Baseline fields are None without a baseline (nan when no row could be paired);
    ``official_acc`` is None unless an official matcher was applied.
    """

    items: int
    nulls: int
    correct: int
    acc: float
    acc_low: float
    acc_high: float
    acc_answered: float
    missed_reasoning: int
    official_acc: Optional[float] = None
    paired: Optional[int] = None
    delta_pts: Optional[float] = None
    delta_low_pts: Optional[float] = None
    delta_high_pts: Optional[float] = None
    mcnemar_b01: Optional[int] = None
    mcnemar_b10: Optional[int] = None
    mcnemar_p: Optional[float] = None
    mcnemar_p_holm: Optional[float] = None
    consistency: Optional[float] = None
    flip_rate: Optional[float] = None
    kappa: Optional[float] = None


def seed_condition_from_name(path: Pathlike) -> str:
    """The condition an earlier-scripts file name states.

    Args:
        path: e.g. ``mask_p20_animal_REAS.jsonl``.

    Returns:
        ``mask_p20``; a name with a single part is returned whole (without the mode suffix).
    """
    stem = _MODE_SUFFIX.sub("", Path(path).stem)
    head, sep, _ = stem.rpartition("_")
    return head if sep and head else stem


def load_scored(paths: Sequence[Pathlike], items: Optional[Mapping[str, Item]] = None) -> List[Scored]:
    """Read result files (toolkit or earlier-scripts rows) into :class:`Scored` records.

    With ``items``, ``dataset``/``subset``/``hop`` come from the manifest and correctness
    is recomputed against the item's answer (and ``meta.equivalent_answers``); otherwise the
    row's own fields and ``correct`` are used.

    Args:
        paths: result files.
        items: manifest items by id, or None.

    Returns:
        The records, file by file, in file order.

    Raises:
        FileNotFoundError: a file does not exist.
        InputError: a malformed file (see :func:`toolkit.results.read_results`), or, with a
            manifest, a row whose id is not in it (naming the file and line).
    """
    out: List[Scored] = []
    for path in paths:
        fmt, rows = read_results(path)
        if fmt == SEED:
            rows = seed_to_toolkit(rows, condition=seed_condition_from_name(path),
                                   mode=seed_mode_from_name(path) or "unknown")
        for row in rows:
            d = row.data
            item = None
            if items is not None:
                item = items.get(row.id)
                if item is None:
                    raise InputError(f"id {row.id!r} is not in the manifest", row.path, row.line, row.id)
            out.append(scored_from_row(d, item))
        log.info("%s: %d %s rows", path, len(rows), fmt)
    return out


def scored_from_row(d: Dict[str, Any], item: Optional[Item] = None) -> Scored:
    """One toolkit row (a decoded dict) as a :class:`Scored` record.

    Args:
        d: the row; ``variant`` is a grouping key (``bin/condition`` rows; None otherwise).
        item: its manifest item, or None (then the row's own ``correct`` is used).

    Returns:
        The record, keeping ``d`` as its ``data``.
    """
    pred = d.get("pred")
    run = d.get("run")
    run = 0 if run is None else run
    keys = {k: d.get(k) for k in GROUP_KEYS}
    keys["run"] = run
    if item is not None:
        keys.update(dataset=item.dataset, subset=item.subset, hop=item.hop)
    if pred is None:
        correct: Optional[bool] = None
    elif item is not None and item.answer is not None:
        correct = pred in (set(item.meta.get("equivalent_answers", [])) | {item.answer})
    else:
        correct = bool(d.get("correct"))
    missed = d.get("mode") == "reasoning" and not d.get("reasoning")
    return Scored(id=d["id"], run=run, keys=keys, pred=pred, correct=correct, missed_reasoning=missed,
                  raw_output=d.get("raw_output"), item=item, error=d.get("error"), data=d)


def _group_key(row: Scored, by: Sequence[str]) -> Tuple[Any, ...]:
    return tuple(row.keys.get(k) for k in by)


def default_by(rows: Sequence[Scored]) -> Tuple[str, ...]:
    """:data:`DEFAULT_BY`, plus ``variant`` when some row carries one (``bin/condition`` rows).

    Args:
        rows: the records to score.

    Returns:
        The grouping keys: the rows of one intervention variant (``k=2``, ``random-0.25``,
        ``hint=wrong`` ...) form a group of their own instead of being pooled.
    """
    return DEFAULT_BY + (("variant",) if any(r.keys.get("variant") for r in rows) else ())


def _sort_key(key: Tuple[Any, ...]) -> Tuple[Tuple[bool, str], ...]:
    return tuple((v is None, str(v)) for v in key)


def _grouped(rows: Sequence[Scored], by: Sequence[str]) -> List[Tuple[Tuple[Any, ...], List[int]]]:
    """(key values, row indices) of each group, sorted by the key values."""
    groups: Dict[Tuple[Any, ...], List[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(_group_key(row, by), []).append(i)
    return [(key, groups[key]) for key in sorted(groups, key=_sort_key)]


def check_by(by: Sequence[str]) -> Tuple[str, ...]:
    """Validate grouping keys.

    Args:
        by: key names.

    Returns:
        The keys as a tuple.

    Raises:
        InputError: an unknown or repeated key, or none at all.
    """
    keys = tuple(by)
    bad = [k for k in keys if k not in GROUP_KEYS]
    if bad or not keys or len(set(keys)) != len(keys):
        raise InputError(f"bad --by keys {list(keys)}; choose distinct keys from {list(GROUP_KEYS)}")
    return keys


def score_groups(rows: Sequence[Scored], by: Sequence[str] = DEFAULT_BY,
                 baseline: Optional[Sequence[Scored]] = None,
                 official: Optional[Mapping[int, bool]] = None, seed: int = 0) -> List[GroupScore]:
    """Score each group of ``rows``.

    Args:
        rows: records from :func:`load_scored`.
        by: grouping keys (from :data:`GROUP_KEYS`).
        baseline: baseline records to compare with, or None.
        official: per-record official-matcher correctness, keyed by the record's index in
            ``rows`` (see :func:`toolkit.official.official_correct`), or None.
        seed: bootstrap seed.

    Returns:
        One :class:`GroupScore` per group, sorted by the group's key values.

    Raises:
        InputError: bad ``by`` keys or no rows.
    """
    by = check_by(by)
    if not rows:
        raise InputError("no result rows to score")
    shared, index = _baseline_index(rows, baseline, by) if baseline is not None else ((), {})
    out: List[GroupScore] = []
    for key, indices in _grouped(rows, by):
        members = [rows[i] for i in indices]
        acc = metrics.accuracy([r.correct for r in members])
        low, high = metrics.wilson_interval(acc.n_correct, acc.n)
        g = GroupScore(keys=dict(zip(by, key)), items=acc.n, nulls=acc.n_null, correct=acc.n_correct,
                       acc=acc.acc_all, acc_low=low, acc_high=high, acc_answered=acc.acc_answered,
                       missed_reasoning=sum(r.missed_reasoning for r in members))
        if official is not None:
            g.official_acc = sum(official[i] for i in indices) / len(members)
        if baseline is not None:
            _compare(g, members, shared, index, seed)
        out.append(g)
    if baseline is not None:
        tested = [g for g in out if g.mcnemar_p is not None and not math.isnan(g.mcnemar_p)]
        for g, p in zip(tested, metrics.holm([g.mcnemar_p for g in tested])):
            g.mcnemar_p_holm = p
    return out


def _baseline_index(rows: Sequence[Scored], baseline: Sequence[Scored], by: Sequence[str]
                    ) -> Tuple[Tuple[str, ...], Dict[Tuple[Any, ...], Scored]]:
    """The grouping keys both sets share values on, and the baseline by (shared values, id, run)."""
    shared = tuple(k for k in by if k != "run" and {r.keys.get(k) for r in rows} == {r.keys.get(k) for r in baseline})
    differing = [k for k in by if k != "run" and k not in shared]
    log.info("baseline paired by id and run%s%s", f", matching {', '.join(shared)}" if shared else "",
             f" (differing: {', '.join(differing)})" if differing else "")
    index: Dict[Tuple[Any, ...], Scored] = {}
    for r in baseline:
        index[_group_key(r, shared) + (r.id, r.run)] = r
    return shared, index


@dataclass(frozen=True)
class PairedComparison:
    """Paired statistics of two sides' records on the same items (``b`` against ``a``).

    Attributes:
        paired: number of pairs.
        delta_pts: accuracy of ``b`` minus accuracy of ``a``, points (nulls wrong).
        delta_low_pts: paired bootstrap 95% lower bound, points.
        delta_high_pts: paired bootstrap 95% upper bound, points.
        mcnemar_b01: pairs wrong under ``a`` and correct under ``b`` (None without pairs).
        mcnemar_b10: pairs correct under ``a`` and wrong under ``b`` (None without pairs).
        mcnemar_p: exact McNemar p.
        consistency: share of pairs with equal predictions, among those where both are non-null.
        flip_rate: ``1 - consistency``.
        kappa: Cohen's kappa of the two sides' predictions.
    """

    paired: int
    delta_pts: float = math.nan
    delta_low_pts: float = math.nan
    delta_high_pts: float = math.nan
    mcnemar_b01: Optional[int] = None
    mcnemar_b10: Optional[int] = None
    mcnemar_p: float = math.nan
    consistency: float = math.nan
    flip_rate: float = math.nan
    kappa: float = math.nan


def compare_pairs(pairs: Sequence[Tuple[Scored, Scored]], seed: int = 0,
                  n_resamples: int = BOOTSTRAP_RESAMPLES) -> PairedComparison:
    """Delta with a paired bootstrap CI, exact McNemar test and agreement of paired records.

    Args:
        pairs: ``(a, b)`` records of the same item (a null prediction counts as wrong).
        seed: bootstrap seed.
        n_resamples: bootstrap resamples.

    Returns:
        The statistics of ``b`` against ``a``; every value nan (counts None) without pairs.
    """
    if not pairs:
        return PairedComparison(paired=0)
    a = [bool(x.correct) for x, _ in pairs]
    b = [bool(y.correct) for _, y in pairs]
    boot = metrics.paired_bootstrap_diff([float(x) for x in a], [float(x) for x in b],
                                         n_resamples=n_resamples, seed=seed)
    mc = metrics.mcnemar_exact(a, b)
    pa = [x.pred for x, _ in pairs]
    pb = [y.pred for _, y in pairs]
    cons = metrics.consistency(pa, pb)
    return PairedComparison(paired=len(pairs), delta_pts=100 * boot.diff, delta_low_pts=100 * boot.low,
                            delta_high_pts=100 * boot.high, mcnemar_b01=mc.b01, mcnemar_b10=mc.b10, mcnemar_p=mc.p,
                            consistency=cons.share_equal, flip_rate=cons.flip_rate,
                            kappa=metrics.cohen_kappa(pa, pb))


def _compare(g: GroupScore, members: Sequence[Scored], shared: Sequence[str],
             index: Mapping[Tuple[Any, ...], Scored], seed: int) -> None:
    pairs = [(index[k], r) for r in members if (k := _group_key(r, shared) + (r.id, r.run)) in index]
    for name, value in asdict(compare_pairs(pairs, seed)).items():
        setattr(g, name, value)


def split_asr(rows: Sequence[Scored]) -> Tuple[List[Scored], List[Scored]]:
    """Separate multiple-choice rows from ASR rows (items with ``task == "asr"``).

    Without a manifest every row is multiple-choice (the task is the manifest's).

    Args:
        rows: records from :func:`load_scored`.

    Returns:
        ``(choice_rows, asr_rows)``, each in input order.
    """
    asr = [r for r in rows if r.item is not None and r.item.task == "asr"]
    return [r for r in rows if r.item is None or r.item.task != "asr"], asr


@dataclass
class ItemWer:
    """WER of one ASR record.

    Attributes:
        row: the record.
        reference: the normalised reference.
        hypothesis: the normalised hypothesis ("" for a failed row).
        counts: its alignment counts.
    """

    row: Scored
    reference: str
    hypothesis: str
    counts: wer.WerCounts

    def to_dict(self) -> Dict[str, Any]:
        """The record's id, run and grouping keys, both texts, counts, WER and error, as a flat dict."""
        c = self.counts
        return {"id": self.row.id, **self.row.keys, "reference": self.reference, "hypothesis": self.hypothesis,
                "ref_words": c.ref_words, "hits": c.hits, "substitutions": c.substitutions,
                "deletions": c.deletions, "insertions": c.insertions, "wer": c.wer, "error": self.row.error}


def asr_item_wers(rows: Sequence[Scored]) -> List[ItemWer]:
    """Score each ASR record against its manifest item's ``reference``.

    The hypothesis is :func:`toolkit.wer.hypothesis_text` of the row's ``raw_output``; a
    row with ``error`` set counts as the deletion of every reference word.

    Args:
        rows: ASR records joined with a manifest (see :func:`split_asr`).

    Returns:
        One :class:`ItemWer` per record, in input order.

    Raises:
        InputError: a record without a manifest item, or an item whose reference is missing
            or empty after normalisation (naming the item id).
    """
    out: List[ItemWer] = []
    for row in rows:
        if row.item is None:
            raise InputError("WER needs the manifest item (its reference)", key=row.id)
        reference = wer.normalized_reference(row.item.reference, row.id)
        if row.error is not None:
            out.append(ItemWer(row, reference, "", wer.WerCounts(deletions=len(reference.split()))))
        else:
            hypothesis = wer.normalize(wer.hypothesis_text(row.raw_output))
            out.append(ItemWer(row, reference, hypothesis, wer.align(reference, hypothesis)))
    return out


@dataclass
class WerGroup(KeyedRecord):
    """Corpus-level WER of one group of ASR records.

    Attributes:
        keys: the grouping keys' values.
        items: records in the group (item x run).
        errors: records with ``error`` set (scored as deletions of their whole reference).
        ref_words: reference words (after normalisation).
        hits: matched words.
        substitutions: substituted words.
        deletions: deleted words.
        insertions: inserted words.
        wer: (substitutions + deletions + insertions) / ref_words.
    """

    items: int
    errors: int
    ref_words: int
    hits: int
    substitutions: int
    deletions: int
    insertions: int
    wer: float


def score_wer_groups(wers: Sequence[ItemWer], by: Sequence[str] = DEFAULT_BY) -> List[WerGroup]:
    """Sum per-item counts into one corpus-level WER per group.

    Args:
        wers: from :func:`asr_item_wers`.
        by: grouping keys (from :data:`GROUP_KEYS`).

    Returns:
        One :class:`WerGroup` per group, sorted by the group's key values.

    Raises:
        InputError: bad ``by`` keys or no records.
    """
    by = check_by(by)
    if not wers:
        raise InputError("no ASR rows to score")
    out: List[WerGroup] = []
    for key, indices in _grouped([w.row for w in wers], by):
        c = wer.total(wers[i].counts for i in indices)
        out.append(WerGroup(keys=dict(zip(by, key)), items=len(indices),
                            errors=sum(wers[i].row.error is not None for i in indices), ref_words=c.ref_words,
                            hits=c.hits, substitutions=c.substitutions, deletions=c.deletions,
                            insertions=c.insertions, wer=c.wer))
    return out

"""Score result files: per-group accuracy with nulls, intervals and paired baseline tests.

Result files are read with :func:`toolkit.results.read_results`; earlier-scripts rows are
turned into toolkit rows (one per run) with :func:`toolkit.results.seed_to_toolkit`, their
model, dataset, condition and mode taken from the file's name and folder
(:func:`toolkit.results.seed_identity`: ``qwen2.5-omni/animal/mask_p20_animal_REAS.jsonl`` ->
model ``qwen2.5-omni``, condition ``mask_p20``, mode ``reasoning``), or refused.

Every row becomes a :class:`Scored` record; :func:`score_groups` groups them by any of
:data:`GROUP_KEYS` and computes one :class:`GroupScore` per group, using the statistics of
:mod:`toolkit.metrics`. Rows of different results (model, dataset, prompt, intervention) are
never pooled unasked: :func:`default_by` groups by every identity key whose value varies.
With a baseline, rows are paired by ``(id, run)`` within the same values of the grouping
keys, except the keys whose values differ between the two sets (typically ``condition``),
and always within the same model, dataset and intervention (and prompt, when the modes are
paired too): a baseline of another model is refused unless the mismatch is allowed
(:class:`BaselineMismatch`). The paired statistics of a group are :func:`compare_pairs`,
which other tables reuse on their own pairs (e.g. :mod:`toolkit.degradation`: text vs audio twins).

Rows of ASR items (manifest ``task: asr``) are not multiple-choice: :func:`split_asr`
separates them, :func:`asr_item_wers` scores each against its item's ``reference``
(:mod:`toolkit.wer`) and :func:`score_wer_groups` sums the counts per group into a
:class:`WerGroup` (corpus WER of the group).

Example:
    >>> rows = load_scored(["runs/noise.jsonl"])  # doctest: +SKIP
    >>> groups = score_groups(rows, by=("condition", "mode"))  # doctest: +SKIP
"""

from __future__ import annotations

import re

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from toolkit import metrics, wer
from toolkit.errors import InputError, Pathlike
from toolkit.manifest import Item
from toolkit.results import SEED, read_results, seed_identity, seed_to_toolkit
from toolkit.rows import ResultRow

log = logging.getLogger("toolkit.score")

GROUP_KEYS = ("dataset", "subset", "hop", "condition", "mode", "model", "run", "prompt", "intervention", "variant")
DEFAULT_BY = ("condition", "mode")
BOOTSTRAP_RESAMPLES = 10000
#: Identity keys rows are paired on against a baseline (``prompt`` only when the modes are paired too).
PAIRED_IDENTITY = ("model", "dataset", "intervention")


@dataclass
class Scored:
    """One prediction ready to score.

    Attributes:
        row: the result row (``bin/condition`` rows keep their ``intervention``,
            ``baseline_pred`` ... for :mod:`toolkit.faithfulness`).
        keys: the values of :data:`GROUP_KEYS` for this row (None when unknown).
        correct: True/False, None for a null prediction.
        missed_reasoning: a reasoning-mode row whose reasoning is empty (inference rows only:
            an intervention's answer follows injected reasoning).
        item: the manifest item, when a manifest was given.
    """

    row: ResultRow
    keys: Dict[str, Any]
    correct: Optional[bool]
    missed_reasoning: bool
    item: Optional[Item] = None

    @property
    def id(self) -> str:
        """Item id."""
        return self.row.id

    @property
    def run(self) -> int:
        """Run index."""
        return self.row.run

    @property
    def pred(self) -> Optional[int]:
        """Predicted option index, None for a null."""
        return self.row.pred

    @property
    def raw_output(self) -> Optional[str]:
        """The model's output text (None when absent)."""
        return self.row.raw_output

    @property
    def error(self) -> Optional[str]:
        """The row's error message (None when the item ran)."""
        return self.row.error


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

    ``items`` counts distinct item ids, ``rows`` the rows scored (items x runs x variants x
    pooled conditions ...); ``nulls``, ``correct`` and the accuracies are over rows. Baseline
    fields are None without a baseline (nan when no row could be paired); ``official_acc`` is
    None unless an official matcher was applied.
    """

    items: int
    rows: int
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
            identity = seed_identity(path)
            rows = seed_to_toolkit(rows, model=identity.model or "unknown", condition=identity.condition,
                                   mode=identity.mode, dataset=identity.dataset)
        for source in rows:
            item = None
            if items is not None:
                item = items.get(source.id)
                if item is None:
                    raise InputError(f"id {source.id!r} is not in the manifest", source.path, source.line, source.id)
            assert source.row is not None
            out.append(scored_from_row(source.row, item))
        log.info("%s: %d %s rows", path, len(rows), fmt)
    return out


def scored_from_row(row: ResultRow, item: Optional[Item] = None) -> Scored:
    """One result row as a :class:`Scored` record.

    Args:
        row: the row.
        item: its manifest item, or None (then the row's own ``correct`` is used).

    Returns:
        The record.
    """
    keys = {"dataset": row.dataset, "subset": None, "hop": None, "condition": row.condition, "mode": row.mode,
            "model": row.model, "run": row.run, "prompt": row.prompt, "intervention": row.intervention_name,
            "variant": row.variant or None}
    if item is not None:  # the run's dataset name (a sweep's "sakura-mini") wins over the items' ("sakura")
        keys.update(dataset=row.dataset or item.dataset, subset=item.subset, hop=item.hop)
    if row.pred is None:
        correct: Optional[bool] = None
    elif item is not None and item.answer is not None:
        correct = item.accepts(row.pred)
    else:
        correct = bool(row.correct)
    missed = row.mode == "reasoning" and row.intervention is None and not row.reasoning
    return Scored(row=row, keys=keys, correct=correct, missed_reasoning=missed, item=item)


def _group_key(row: Scored, by: Sequence[str]) -> Tuple[Any, ...]:
    return tuple(row.keys.get(k) for k in by)


def pooled_keys(rows: Sequence[Scored], by: Sequence[str]) -> List[str]:
    """The identity keys (model, dataset, prompt within a mode, intervention, variant) whose
    values vary among ``rows`` but are not in ``by``: grouping by ``by`` would pool them."""
    out = []
    for key in ("model", "dataset", "prompt", "intervention", "variant"):
        if key in by:
            continue
        within = ("mode",) if key == "prompt" else ()
        values: Dict[Tuple[Any, ...], set] = {}
        for r in rows:
            values.setdefault(_group_key(r, within), set()).add(r.keys.get(key))
        if any(len(v) > 1 for v in values.values()):
            out.append(key)
    return out


def default_by(rows: Sequence[Scored]) -> Tuple[str, ...]:
    """:data:`DEFAULT_BY` with every identity key that varies among ``rows``.

    Args:
        rows: the records to score.

    Returns:
        The grouping keys: ``model`` and ``dataset`` first when the rows hold several, then
        condition and mode, then ``prompt`` (several within a mode), ``intervention`` and
        ``variant`` (``bin/condition`` rows): rows of different results, or of different
        intervention variants (``k=2``, ``hint=wrong`` ...), form groups of their own.

    Example:
        >>> default_by(rows_of_two_models)  # doctest: +SKIP
        ('model', 'condition', 'mode')
    """
    pooled = pooled_keys(rows, DEFAULT_BY)
    return (tuple(k for k in ("model", "dataset") if k in pooled) + DEFAULT_BY
            + tuple(k for k in ("prompt", "intervention", "variant") if k in pooled))


_NUMBER = re.compile(r"(-?\d+(?:\.\d+)?)")


def natural_key(value: Any) -> Tuple[Any, ...]:
    """A sort key that orders the numbers inside names as numbers: ``mask-p20`` before
    ``mask-p100``, ``noise-snr-10`` before ``noise-snr0``; None last."""
    if value is None:
        return (1,)
    parts = _NUMBER.split(str(value))
    return (0, *((1, float(part), "") if i % 2 else (0, 0.0, part) for i, part in enumerate(parts)))


def _sort_key(key: Tuple[Any, ...]) -> Tuple[Tuple[Any, ...], ...]:
    return tuple(natural_key(v) for v in key)


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
                 official: Optional[Mapping[int, bool]] = None, seed: int = 0,
                 allow_mismatch: bool = False) -> List[GroupScore]:
    """Score each group of ``rows``.

    Args:
        rows: records from :func:`load_scored`.
        by: grouping keys (from :data:`GROUP_KEYS`).
        baseline: baseline records to compare with, or None.
        official: per-record official-matcher correctness, keyed by the record's index in
            ``rows`` (see :func:`toolkit.official.official_correct`), or None.
        seed: bootstrap seed.
        allow_mismatch: pair rows with a baseline of another model, dataset, intervention or
            prompt (see :func:`baseline_mismatch`) instead of refusing.

    Returns:
        One :class:`GroupScore` per group, sorted by the group's key values.

    Raises:
        InputError: bad ``by`` keys or no rows.
        BaselineMismatch: the baseline is of another result and ``allow_mismatch`` is off.
    """
    by = check_by(by)
    if not rows:
        raise InputError("no result rows to score")
    shared, index = _baseline_index(rows, baseline, by, allow_mismatch) if baseline is not None else ((), {})
    out: List[GroupScore] = []
    for key, indices in _grouped(rows, by):
        members = [rows[i] for i in indices]
        acc = metrics.accuracy([r.correct for r in members])
        low, high = metrics.wilson_interval(acc.n_correct, acc.n)
        g = GroupScore(keys=dict(zip(by, key)), items=len({r.id for r in members}), rows=acc.n, nulls=acc.n_null,
                       correct=acc.n_correct,
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


class BaselineMismatch(InputError):
    """The baseline holds another result than the rows (another model, dataset, intervention or
    prompt): pairing them would report a meaningless delta."""


def baseline_mismatch(rows: Sequence[Scored], baseline: Sequence[Scored]) -> List[str]:
    """What differs between the rows and a baseline beyond the experiment's own factors.

    A baseline legitimately differs in condition, mode (and so prompt), variant and run
    grouping; it must share the rows' model, dataset and intervention, and their prompt for
    the same mode.

    Returns:
        One ``key: rows X, baseline Y`` line per differing identity key (empty when they agree).
    """
    out = []
    for key in PAIRED_IDENTITY + ("prompt",):
        mine = {r.keys.get(key) for r in rows}
        theirs = {r.keys.get(key) for r in baseline}
        if key == "prompt":
            modes = {r.keys.get("mode") for r in rows} & {r.keys.get("mode") for r in baseline}
            mine = {r.keys.get(key) for r in rows if r.keys.get("mode") in modes}
            theirs = {r.keys.get(key) for r in baseline if r.keys.get("mode") in modes}
        if mine != theirs and not (mine & theirs):
            out.append(f"{key}: rows {', '.join(sorted(map(str, mine)))}; "
                       f"baseline {', '.join(sorted(map(str, theirs)))}")
    return out


def _baseline_index(rows: Sequence[Scored], baseline: Sequence[Scored], by: Sequence[str],
                    allow_mismatch: bool) -> Tuple[Tuple[str, ...], Dict[Tuple[Any, ...], Scored]]:
    """The keys rows are paired on, and the baseline by (those keys' values, id, run).

    Paired on: the grouping keys both sets share values on, and the identity keys (model,
    dataset, intervention; prompt when the mode is paired) unless ``allow_mismatch``.

    Raises:
        BaselineMismatch: see :func:`baseline_mismatch`.
    """
    mismatch = baseline_mismatch(rows, baseline)
    if mismatch and not allow_mismatch:
        raise BaselineMismatch("the baseline is another result than the rows (" + "; ".join(mismatch) +
                               "): refusing to pair them; give a baseline of the same model, dataset and prompt, "
                               "or --allow-mismatch to pair them anyway")
    shared = tuple(k for k in by if k != "run" and {r.keys.get(k) for r in rows} == {r.keys.get(k) for r in baseline})
    if not allow_mismatch:
        identity = PAIRED_IDENTITY + (("prompt",) if "mode" in shared else ())
        shared += tuple(k for k in identity if k not in shared)
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

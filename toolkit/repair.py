"""Re-extract answers in existing result rows: fill nulls, or re-parse every label on request.

:func:`repair_rows` runs :func:`toolkit.answers.extract_answer` on the raw output of each
prediction that is null (every prediction with ``reparse_all``), using the item's options
from the manifest. It edits the rows in place, in their own format:

* toolkit rows: ``pred``, ``pred_source`` (the rule that fired, None when none did),
  ``correct``, and the flags the extraction sets (:attr:`toolkit.answers.Extraction.flags`:
  ``no_answer`` with a null's reason, ``letter_text_conflict``), replacing stale ones, of the
  typed row (:attr:`toolkit.results.SourceRow.row`);
* earlier-scripts rows: ``predicted_letters[run]`` (a letter or null) and ``accuracy``,
  the mean over runs of ``predicted_letters[run] == true_letter`` (a null is wrong), as
  the earlier scripts computed it.

A prediction the cascade cannot decide stays null: no option is ever picked at random.

With a :class:`toolkit.semantic.SemanticMatcher` (``bin/repair --semantic``), the
predictions where no rule fired (null, ``pred_source`` None: not refusals, not ties) then go
through the semantic step in batches of :data:`SEMANTIC_BATCH`; what it decides is recorded
as rule ``"semantic"``, the rest stays null.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from toolkit.answers import Extraction, extract_answer
from toolkit.errors import InputError
from toolkit.manifest import Item, letter
from toolkit.results import SEED, TOOLKIT, SourceRow, letter_index

if TYPE_CHECKING:
    from toolkit.semantic import SemanticMatcher

log = logging.getLogger(__name__)

#: How many relabelled predictions :class:`RepairReport` keeps as examples.
MAX_EXAMPLES = 10
#: ``(run, old pred, new pred, extraction)`` for one re-parsed prediction.
Reparsed = Tuple[int, Optional[int], Optional[int], Extraction]
#: ``by_rule`` key for re-parsed predictions where no rule fired.
NO_RULE = "none"
#: Predictions handed to the semantic step per call.
SEMANTIC_BATCH = 256


@dataclass
class RepairReport:
    """What :func:`repair_rows` did.

    Attributes:
        rows: rows processed.
        predictions: predictions (row x run) in those rows.
        nulls_before: null predictions before repair.
        nulls_after: null predictions after repair.
        filled: null predictions that received an option.
        items_changed: distinct item ids with at least one prediction changed.
        by_rule: re-parsed predictions per deciding rule (``"none"``: no rule fired).
        missed_reasoning: reasoning-mode predictions whose reasoning is empty.
        reparse_all: whether every prediction was re-parsed.
        relabelled: existing (non-null) labels that changed (only with ``reparse_all``).
        relabel_reasons: those changes per deciding rule (or null reason).
        examples: up to :data:`MAX_EXAMPLES` changes: ``id``, ``run``, ``old``, ``new``, ``rule``.
        letter_text_conflicts: re-parsed predictions whose letter and option text disagreed
            (``flags.letter_text_conflict`` in toolkit rows).
    """

    rows: int = 0
    predictions: int = 0
    nulls_before: int = 0
    nulls_after: int = 0
    filled: int = 0
    items_changed: int = 0
    by_rule: Dict[str, int] = field(default_factory=dict)
    missed_reasoning: int = 0
    reparse_all: bool = False
    relabelled: int = 0
    relabel_reasons: Dict[str, int] = field(default_factory=dict)
    examples: List[Dict[str, Any]] = field(default_factory=list)
    letter_text_conflicts: int = 0

    def to_dict(self) -> Dict[str, Any]:
        """The report as a JSON-ready dict (for the sidecar)."""
        return dict(vars(self))

    def lines(self) -> List[str]:
        """The report as printable lines."""
        rules = ", ".join(f"{k} {v}" for k, v in sorted(self.by_rule.items(), key=lambda kv: (-kv[1], kv[0])))
        out = [f"rows {self.rows}, predictions {self.predictions}",
               f"nulls {self.nulls_before} -> {self.nulls_after} (filled {self.filled})",
               f"items changed {self.items_changed}",
               f"per rule: {rules or '-'}",
               f"missed reasoning {self.missed_reasoning} (reasoning-mode predictions whose reasoning is empty: "
               "the model answered without a chain)"]
        if self.letter_text_conflicts:
            out.append(f"letter/text conflicts {self.letter_text_conflicts} (the letter and the option text next to it "
                       "named different options: flags.letter_text_conflict)")
        if self.reparse_all:
            out.append(self.relabel_line())
            out += [f"  {e['id']} run {e['run']}: {e['old']} -> {e['new']} ({e['rule']})" for e in self.examples]
        return out

    def relabel_line(self) -> str:
        """One line: how many existing labels re-parsing changed, and why."""
        why = ", ".join(f"{k} {v}" for k, v in sorted(self.relabel_reasons.items(), key=lambda kv: (-kv[1], kv[0])))
        return f"existing labels changed {self.relabelled}" + (f" ({why})" if why else "")


def repair_rows(
    rows: Sequence[SourceRow],
    fmt: str,
    items_by_id: Mapping[str, Item],
    reparse_all: bool = False,
    mode: Optional[str] = None,
    semantic: Optional["SemanticMatcher"] = None,
) -> RepairReport:
    """Re-extract answers in ``rows`` (edited in place).

    Args:
        rows: rows from :func:`toolkit.results.read_results`.
        fmt: their format, ``"toolkit"`` or ``"seed"``.
        items_by_id: manifest items by id (their ``choices`` are parsed against; toolkit rows
            are scored against ``answer``, earlier rows against their ``true_letter``).
        reparse_all: re-parse every prediction, not only nulls, replacing labels with what
            the cascade finds (a null when it finds none).
        mode: mode of earlier-scripts rows (they do not record it; see
            :func:`toolkit.results.seed_identity`). ``"direct"`` rows are not counted
            as missed reasoning; any other value, or None, counts empty reasoning entries.
            Toolkit rows use their own ``mode``.
        semantic: when given, the re-parsed predictions where no rule fired (null, source
            None) go through this matcher afterwards, in batches; its decisions count as rule
            ``"semantic"``.

    Returns:
        The :class:`RepairReport`.

    Raises:
        InputError: a row whose id is not in the manifest (naming the file and line), an
            item without options, or an unknown ``fmt``.
    """
    if fmt not in (TOOLKIT, SEED):
        raise InputError(f"unknown result format {fmt!r}; valid: {[TOOLKIT, SEED]}")
    report = RepairReport(rows=len(rows), reparse_all=reparse_all)
    tally = _Tally(report)
    pending: List[Tuple[SourceRow, Item, Reparsed]] = []
    for row in rows:
        item = items_by_id.get(row.id)
        if item is None:
            raise InputError(f"id {row.id!r} is not in the manifest", row.path, row.line, row.id)
        if not item.choices:
            raise InputError(f"item {row.id!r} has no options to extract an answer from", row.path, row.line, row.id)
        reparsed = (_repair_toolkit(row, item, reparse_all, report) if fmt == TOOLKIT
                    else _repair_seed(row, item, reparse_all, mode, report))
        for one in reparsed:
            run, _, new, found = one
            if semantic is not None and new is None and found.source is None and _raw(row, run, fmt):
                pending.append((row, item, one))  # counted once the semantic step has run
            else:
                tally.add(row.id, one)
    if semantic is not None:
        _run_semantic(semantic, pending, fmt, report, tally)
    report.items_changed = len(tally.changed_ids)
    report.by_rule = dict(tally.rules)
    report.relabel_reasons = dict(tally.reasons)
    log.debug("repair: %s", report.to_dict())
    return report


class _Tally:
    """Counts of re-parsed predictions per rule, changed items, fills and relabels."""

    def __init__(self, report: RepairReport) -> None:
        self.report = report
        self.rules: Counter = Counter()
        self.reasons: Counter = Counter()
        self.changed_ids: set = set()

    def add(self, item_id: str, reparsed: Reparsed) -> None:
        """Count one re-parsed prediction (after every step that may still change it)."""
        run, old, new, found = reparsed
        report = self.report
        self.rules[found.source or NO_RULE] += 1
        report.letter_text_conflicts += found.conflict is not None
        if old == new:
            return
        self.changed_ids.add(item_id)
        if old is None:
            report.filled += 1
            return
        report.relabelled += 1
        self.reasons[found.source or NO_RULE] += 1
        if len(report.examples) < MAX_EXAMPLES:
            report.examples.append({"id": item_id, "run": run, "old": letter(old),
                                    "new": None if new is None else letter(new), "rule": _why(found)})


def _raw(row: SourceRow, run: int, fmt: str) -> Optional[str]:
    """The raw output of one prediction of ``row``."""
    return row.row.raw_output if fmt == TOOLKIT else row.data["raw_model_outputs"][run]  # type: ignore[union-attr]


def _run_semantic(matcher: "SemanticMatcher", pending: Sequence[Tuple[SourceRow, Item, Reparsed]], fmt: str,
                  report: RepairReport, tally: _Tally) -> None:
    """Send the predictions no rule decided through ``matcher`` in batches; apply and count."""
    log.info("semantic step on %d predictions no rule decided", len(pending))
    for start in range(0, len(pending), SEMANTIC_BATCH):
        batch = pending[start:start + SEMANTIC_BATCH]
        found_all = matcher.match_batch([_raw(row, one[0], fmt) for row, _, one in batch],
                                        [item.choices for _, item, _ in batch])
        for (row, item, (run, old, _, cascade)), found in zip(batch, found_all):
            if found.source is None:  # the step did not fire: keep the cascade's null and reason
                tally.add(row.id, (run, old, None, cascade))
                continue
            _apply(row, item, fmt, run, found)
            report.nulls_after -= found.pred is not None
            tally.add(row.id, (run, old, found.pred, found))


def _apply(row: SourceRow, item: Item, fmt: str, run: int, found: Extraction) -> None:
    """Write one extraction into ``row`` in its own format (with ``correct`` / ``accuracy``)."""
    if fmt == TOOLKIT:
        assert row.row is not None
        row.row = row.row.replace(pred=found.pred, pred_source=found.source,
                                  correct=item.accepts(found.pred) if item.answer is not None else row.row.correct,
                                  flags=_flags(row.row.flags, found))
        return
    d = row.data
    d["predicted_letters"][run] = None if found.pred is None else letter(found.pred)
    d["accuracy"] = seed_accuracy(d["predicted_letters"], d["true_letter"])


#: Row flags that answer extraction owns (rewritten on every re-parse).
EXTRACTION_FLAGS = ("no_answer", "letter_text_conflict")


def _flags(old: Optional[Mapping[str, Any]], found: Extraction) -> Optional[Dict[str, Any]]:
    """A row's flags after re-parsing: other flags kept, extraction flags from ``found``; None when empty."""
    flags = {k: v for k, v in (old or {}).items() if k not in EXTRACTION_FLAGS}
    flags.update(found.flags)
    return flags or None


def _why(found: Extraction) -> str:
    """The rule that decided, with the reason when it gave no option ("refusal: I'm sorry")."""
    rule = found.source or NO_RULE
    if found.reason is None or found.reason.startswith(rule):
        return found.reason or rule
    return f"{rule}: {found.reason}"


def _repair_toolkit(row: SourceRow, item: Item, reparse_all: bool, report: RepairReport) -> Iterator[Reparsed]:
    """Yield ``(run, old, new, extraction)`` for the re-parsed prediction of a toolkit row."""
    assert row.row is not None
    report.predictions += 1
    old = row.row.pred
    report.nulls_before += old is None
    if row.row.mode == "reasoning" and row.row.intervention is None and not row.row.reasoning:
        report.missed_reasoning += 1
    if row.row.raw_output is not None and (old is None or reparse_all):
        found = extract_answer(row.row.raw_output, item.choices)
        _apply(row, item, TOOLKIT, row.row.run, found)
        yield row.row.run, old, found.pred, found
    report.nulls_after += row.row.pred is None


def _repair_seed(row: SourceRow, item: Item, reparse_all: bool, mode: Optional[str],
                 report: RepairReport) -> Iterator[Reparsed]:
    """Yield ``(run, old, new, extraction)`` for each re-parsed run of an earlier-scripts row."""
    d = row.data
    letters: List[Optional[str]] = d["predicted_letters"]
    reasoning = d.get("reasoning") or [None] * len(letters)
    for run, raw in enumerate(d["raw_model_outputs"]):
        report.predictions += 1
        old_letter = letters[run]
        report.nulls_before += old_letter is None
        if mode != "direct" and not reasoning[run]:
            report.missed_reasoning += 1
        if old_letter is None or reparse_all:
            found = extract_answer(raw, item.choices)
            _apply(row, item, SEED, run, found)
            yield run, letter_index(old_letter), found.pred, found
        report.nulls_after += letters[run] is None
    d["accuracy"] = seed_accuracy(letters, d["true_letter"])


def explain_lines(raw: Optional[str], choices: Sequence[str]) -> List[str]:
    """Every rule's verdict on one output, in cascade order (``bin/repair --explain``).

    Lines: the options, the reasoning/final split, then one line per rule (``-`` when it does
    not fire, else its option or its null with the reason; ``<- decides`` on the first that
    fires), then the result with the flags a row would get.
    """
    from toolkit.answers import RULES, explain, lexicon, split_reasoning

    out = ["options: " + " ".join(f"({letter(i)}) {c}" for i, c in enumerate(choices))]
    if raw is None or not raw.strip():
        found = extract_answer(raw, choices)
        return out + [f"result: null ({found.reason}); flags {found.flags}"]
    reasoning, final = split_reasoning(raw)
    out += [f"reasoning: {_clip(reasoning)}", f"final text: {_clip(final)}", _named_line(raw, choices),
            f"lexicon: {lexicon()}", "rules:"]
    decided = None
    verdicts = explain(raw, choices)
    width = max(len(r.name) for r in RULES)
    for n, (rule, verdict) in enumerate(verdicts, 1):
        if verdict is None:
            text = "-"
        elif verdict.pred is not None:
            text = letter(verdict.pred) + (f"  (letter/text conflict: {verdict.conflict})" if verdict.conflict else "")
        else:
            text = f"null: {verdict.reason}"
        mark = ""
        if verdict is not None and decided is None:
            decided, mark = verdict, "  <- decides"
        out.append(f"  {n:2}. {rule.name:{width}}  {text}{mark}")
    found = extract_answer(raw, choices)
    result = "null" if found.pred is None else letter(found.pred)
    out.append(f"result: {result} ({found.source or 'no rule fired'}" + (f": {found.reason}" if found.reason else "")
               + f"); flags {found.flags or '{}'}")
    return out


def _named_line(raw: str, choices: Sequence[str]) -> str:
    """What the final text names: live mentions, rejected ones, echoed ones (with their option letters)."""
    from toolkit.answers import ParsedOutput

    out = ParsedOutput(raw, choices)
    text = out.plain
    a = out.analysis(text)
    groups: Dict[str, List[str]] = {"names": [], "rejected": [], "echo": []}
    for k, m in enumerate(a.mentions):
        key = "echo" if k in a.echo else "rejected" if k in a.excluded else "names"
        groups[key].append(f"{text[m.start:m.end]!r} ({'/'.join(letter(i) for i in m.options)})")
    parts = [f"{k} " + ", ".join(v) for k, v in groups.items() if v]
    return "final text " + ("; ".join(parts) if parts else "names no option")


def _clip(text: str, n: int = 300) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= n else "..." + text[-n:])


def seed_accuracy(predicted_letters: Sequence[Optional[str]], true_letter: str) -> float:
    """The earlier scripts' per-item accuracy: share of runs whose letter is ``true_letter``.

    Args:
        predicted_letters: one letter (or None) per run.
        true_letter: the gold letter.

    Returns:
        The mean over runs, a null counting as wrong (0.0 when there are no runs).
    """
    if not predicted_letters:
        return 0.0
    return sum(p == true_letter for p in predicted_letters) / len(predicted_letters)

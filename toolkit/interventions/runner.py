"""``bin/condition``'s engine: baseline rows -> intervention variants -> the shared inference runner.

It reuses :class:`toolkit.infer.Runner` (audio, conditions, batching, OOM halving, error
rows, answer extraction, resume) and specialises only the prompt of each request and the
extra row fields:

- ``variant`` (unique per item and run; rows are keyed by id, run and variant),
- ``intervention``: ``{"name", "spec", "placement", "params"}``,
- ``baseline_pred`` and ``prediction_changed`` (null when either prediction is null),
- for ``shuffle``: ``pred`` is mapped back to the original option order (``shown_pred`` is
  the position the model chose).

Placement of injected reasoning: ``user`` appends the conditioned template's continuation
to the user turn (what the earlier scripts did; ``--prompt seed-conditioned`` is their
exact text), ``assistant`` prefills it as the start of the model's own turn, which is
closer to how the reasoning was produced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from toolkit.errors import InputError, Pathlike
from toolkit.infer import InferConfig, InferSummary, Runner, WorkUnit, run_shard, with_hint_source
from toolkit.interventions.base import Baseline, Intervention, Variant
from toolkit.manifest import Item
from toolkit.models.base import Backend, Generation, Request
from toolkit.perturb.hints import HintBank
from toolkit.prompts import PromptTemplate, render_continuation, render_user_text
from toolkit.rows import InterventionInfo, ResultRow
from toolkit.runs import select_shard

log = logging.getLogger(__name__)

PLACEMENTS = ("assistant", "user")


def baseline_digest(baselines: Mapping[Tuple[str, int], Baseline], items: Sequence[Item]) -> str:
    """sha256 of the baseline rows ``items`` are run from: (id, run, prediction, reasoning) in order.

    Recorded in a ``bin/condition`` file's fingerprint, so a resumed run cannot silently switch
    baselines and merge can tell rows built on a baseline that changed since. It depends on
    the rows' content only: dropping a duplicated copy of a row leaves it unchanged.
    """
    ids = {item.id for item in items}
    h = hashlib.sha256()
    for (item_id, run) in sorted(key for key in baselines if key[0] in ids):
        b = baselines[(item_id, run)]
        h.update(json.dumps([item_id, run, b.pred, b.reasoning], ensure_ascii=False).encode("utf-8") + b"\n")
    return h.hexdigest()


def load_baselines(path: Pathlike, items: Sequence[Item],
                   condition: Optional[str] = None) -> Dict[Tuple[str, int], Baseline]:
    """Baseline rows by (item id, run), from a toolkit or earlier-scripts result file.

    Earlier-scripts rows take their condition from the file name (:func:`toolkit.results.seed_identity`).

    Args:
        path: the baseline result file (reasoning mode).
        items: the manifest's items (rows are matched by id).
        condition: the audio condition the intervention runs under: every baseline row must
            have it (None: no check; see :func:`baseline_condition`).

    Raises:
        InputError: a row that matches no item, two rows for the same (item, run) (e.g. two
            writers appended to one shard file: ``bin/merge --dedupe`` repairs it), or a row of
            another condition.
    """
    from toolkit.results import SEED, read_results, seed_identity, seed_to_toolkit

    fmt, rows = read_results(path)
    if fmt == SEED:
        rows = seed_to_toolkit(rows, model="unknown", condition=seed_identity(path).condition, mode="reasoning")
    by_id = {it.id: it for it in items}
    out: Dict[Tuple[str, int], Baseline] = {}
    for source in rows:
        row = source.row
        assert row is not None
        item = by_id.get(row.id)
        if item is None:
            raise InputError(f"baseline row for id {row.id!r} matches no manifest item", source.path, source.line,
                             row.id)
        if condition is not None and row.condition != condition:
            raise InputError(f"baseline row of condition {row.condition!r}, the intervention runs under "
                             f"{condition!r}: answers from other audio would be compared", source.path, source.line,
                             row.id)
        if (item.id, row.run) in out:
            raise InputError(f"second baseline row for item {item.id!r} run {row.run} (a file written twice? "
                             "bin/merge RUN_DIR --dedupe repairs shard files)", source.path, source.line, row.id)
        out[(item.id, row.run)] = Baseline(item=item, run=row.run, reasoning=(row.reasoning or "").strip(),
                                           pred=row.pred, raw_output=row.raw_output, condition=row.condition)
    return out


def baseline_condition(baselines: Mapping[Tuple[str, int], Baseline], path: Pathlike) -> str:
    """The one condition of a set of baseline rows.

    Raises:
        InputError: no rows, or rows of several conditions.
    """
    conditions = sorted({b.condition for b in baselines.values()})
    if len(conditions) != 1:
        raise InputError(f"baseline rows of {len(conditions)} conditions ({', '.join(conditions) or 'none'}); "
                         "give one condition's rows", path)
    return conditions[0]


def intervention_mode(prompt: PromptTemplate) -> str:
    """The mode of an intervention's rows: its baseline's (``reasoning``), or ``direct`` when the
    intervention asks with a direct template (``suggested``/``shuffle`` may)."""
    return "direct" if prompt.mode == "direct" else "reasoning"


def _permuted(item: Item, perm: Sequence[int]) -> Item:
    """The item as shown with options in ``perm`` order (answer index moved with them)."""
    answer = None if item.answer is None else list(perm).index(item.answer)
    equivalent = [list(perm).index(i) for i in item.meta.get("equivalent_answers", [])]
    meta = {**item.meta, "equivalent_answers": equivalent} if equivalent else item.meta
    return dataclasses.replace(item, choices=[item.choices[i] for i in perm], answer=answer, meta=meta)


class ConditionRunner(Runner):
    """The inference runner with requests built from intervention variants."""

    def __init__(self, backend: Backend, config: InferConfig, data_root: Optional[Pathlike],
                 intervention: Intervention, placement: str, baselines: Mapping[Tuple[str, int], Baseline],
                 hints: Optional[HintBank] = None) -> None:
        super().__init__(backend, config, data_root, hints)
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, not {placement!r}")
        self.intervention = intervention
        self.placement = placement
        self.baselines = baselines

    def make_request(self, unit: WorkUnit, audio: Optional[np.ndarray], perturbation: Dict[str, Any]) -> Request:
        variant: Variant = unit.variant
        user = render_user_text(self.config.prompt, unit.item)
        prefix = injected = None
        if variant.hint is not None:
            user, injected = f"{user}\n\n{variant.hint}", variant.hint
        if variant.reasoning is not None:
            continuation = render_continuation(self.config.prompt, variant.reasoning)
            injected = variant.reasoning
            if self.placement == "user":
                user += continuation
            else:
                prefix = continuation.lstrip()
        return Request(item=unit.item, run=unit.run, user_text=user, audio=audio, assistant_prefix=prefix,
                       perturbation=perturbation, injected=injected)

    def row(self, unit: WorkUnit, out: Optional[Generation], seconds: float) -> ResultRow:
        row = super().row(unit, out, seconds)
        variant: Optional[Variant] = unit.variant
        pred, shown = row.pred, None
        if variant is not None and variant.permutation is not None and pred is not None:
            shown, pred = pred, variant.permutation[pred]
        baseline = self.baselines.get((unit.item.id, unit.run))
        base = None if baseline is None else baseline.pred
        info = InterventionInfo(name=self.intervention.name, spec=self.intervention.spec, placement=self.placement,
                                params={} if variant is None else dict(variant.params))
        return row.replace(pred=pred, shown_pred=shown, variant="" if variant is None else variant.key,
                           intervention=info, baseline_pred=base,
                           prediction_changed=(pred != base) if pred is not None and base is not None else None)


@dataclass(frozen=True)
class PlannedVariant:
    """One row an intervention owes for one item and run.

    Attributes:
        item: the item as shown to the model (options reordered for ``shuffle``).
        run: the run.
        variant: the variant, or None when the item cannot be run (then ``problem`` says why).
        problem: why the item gets an error row instead (no baseline row, no reasoning).
    """

    item: Item
    run: int
    variant: Optional[Variant] = None
    problem: Optional[str] = None

    @property
    def key(self) -> str:
        """The row's ``variant`` ("" for an error row)."""
        return "" if self.variant is None else self.variant.key


def plan_variants(items: Sequence[Item], baselines: Mapping[Tuple[str, int], Baseline], intervention: Intervention,
                  seed: int) -> List[PlannedVariant]:
    """Every row an intervention owes for ``items``: one per item, run and variant.

    Items without a baseline row, or without reasoning when the intervention needs it, owe
    one error row (variant ""), so every item is accounted for. The runs are those of the
    baseline rows. This is the one definition of what an intervention unit must hold: the
    runner plans from it and merge checks against it (:meth:`toolkit.runs.Unit.expected_keys`).
    """
    out: List[PlannedVariant] = []
    for run in sorted({run for (_, run) in baselines}) or [0]:
        for item in items:
            baseline = baselines.get((item.id, run))
            if baseline is None:
                out.append(PlannedVariant(item, run, problem="no baseline row for this item and run"))
            elif intervention.needs_reasoning and not baseline.reasoning:
                out.append(PlannedVariant(item, run, problem="the baseline row has no reasoning to intervene on"))
            else:
                out += [PlannedVariant(item if v.permutation is None else _permuted(item, v.permutation), run, v)
                        for v in intervention.variants(baseline, seed)]
    return out


def plan_condition_units(items: Sequence[Item], baselines: Mapping[Tuple[str, int], Baseline],
                         intervention: Intervention, seed: int, done: set) -> Tuple[List[WorkUnit], int]:
    """Pending units (one per item, run and variant of :func:`plan_variants`) and how many were
    already written."""
    planned = plan_variants(items, baselines, intervention, seed)
    units = [WorkUnit(p.item, p.run, error=p.problem, variant=p.variant) for p in planned
             if (p.item.id, p.run, p.key) not in done]
    units.sort(key=lambda u: (u.run, u.item.id, "" if u.variant is None else u.variant.key))
    return units, len(planned) - len(units)


def run_condition(items: Sequence[Item], baselines: Mapping[Tuple[str, int], Baseline], intervention: Intervention,
                  backend: Backend, config: InferConfig, out: Pathlike, data_root: Optional[Pathlike],
                  placement: str = "assistant", shard: Tuple[int, int] = (0, 1), manifest: Optional[Pathlike] = None,
                  baseline_file: Optional[Pathlike] = None, progress: bool = True,
                  hints: Optional[HintBank] = None) -> InferSummary:
    """Run every variant of a shard's items not yet in ``out``, one appended row each.

    Args:
        items: the manifest's items (the shard is sliced here).
        baselines: from :func:`load_baselines`.
        intervention: what to do to each baseline.
        backend: the loaded backend.
        config: prompt (conditioned template for reasoning interventions), generation, seed ...
        out: the result file (append-only; sidecar beside it).
        data_root: folder relative audio paths resolve against.
        placement: ``assistant`` or ``user`` (see the module docstring).
        shard: (K, N).
        manifest: the manifest path, for the sidecar.
        baseline_file: the baseline path, for the sidecar (the resume check compares the rows'
            :func:`baseline_digest`).
        progress: show a progress bar.
        hints: spoken hints for an ``inject-...`` ``config.condition``.

    Returns:
        Counts.

    Raises:
        InputError: ``out`` was written with other settings (intervention, baseline, prompt ...).
    """
    shard_items = select_shard(list(items), *shard)
    extra = {"intervention": intervention.spec, "placement": placement,
             "baseline": {"path": None if baseline_file is None else str(Path(baseline_file).resolve()),
                          "sha256": baseline_digest(baselines, shard_items)}}
    config = with_hint_source(dataclasses.replace(config, extra=extra), hints)
    runner = ConditionRunner(backend, config, data_root, intervention, placement, baselines, hints)
    return run_shard(runner, out, shard_items, shard, manifest,
                     lambda done: plan_condition_units(shard_items, baselines, intervention, config.seed, done),
                     progress)

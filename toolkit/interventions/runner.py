"""``bin/condition``'s engine: baseline rows -> intervention variants -> the shared inference runner.

It reuses :class:`toolkit.infer.Runner` (audio, conditions, batching, OOM halving, error
rows, answer extraction, resume) and specialises only the prompt of each request and the
extra row fields:

- ``variant`` (unique per item and run; rows are keyed by id, run and variant),
- ``intervention``: ``{"name", "spec", "placement", "params"}``,
- ``baseline_pred`` and ``prediction_changed`` (null when either prediction is null),
- for ``shuffle``: ``pred`` is mapped back to the original option order (``shown_pred`` is
  the position the model chose).

- ``injected`` (the exact reasoning or hint put in) and ``chat_sha256`` (of the whole prompt text).

Every choice of how variants are built and asked is the run's :class:`~toolkit.interventions.protocol.Protocol`
(``--protocol``), recorded in the sidecar and in every row's ``intervention.params["protocol"]``.
Where the reasoning goes is its answer format: ``prefill`` starts the model's own turn with
it, ``user`` and ``xml`` append it to the user turn (``--prompt seed-conditioned`` is the
earlier scripts' exact text), ``two-turn`` makes it the model's whole turn and asks for the
answer in a new user turn.
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
from toolkit.interventions.base import DEFAULT_PROTOCOL, Baseline, Intervention, Variant
from toolkit.interventions.continuation import run_continuations
from toolkit.interventions.protocol import Protocol, baseline_reasoning, continued_reasoning
from toolkit.interventions.text import split_sentences
from toolkit.manifest import Item
from toolkit.models.base import Backend, Generation, Request
from toolkit.perturb.hints import HintBank
from toolkit.prompts import PromptTemplate, get_prompt, render_user_text
from toolkit.rows import InterventionInfo, ResultRow
from toolkit.runs import select_shard

log = logging.getLogger(__name__)

#: ``--placement``, an older name of the prefill and user answer formats
PLACEMENTS = {"assistant": "prefill", "user": "user"}


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
    """The inference runner with requests built from intervention variants under a protocol.

    Args:
        protocol: resolved for the backend's family (:meth:`Protocol.for_family`); the run's
            ``config.prompt`` is its conditioned template for reasoning interventions.
    """

    def __init__(self, backend: Backend, config: InferConfig, data_root: Optional[Pathlike],
                 intervention: Intervention, protocol: Protocol, baselines: Mapping[Tuple[str, int], Baseline],
                 hints: Optional[HintBank] = None) -> None:
        super().__init__(backend, config, data_root, hints)
        self.intervention = intervention
        self.protocol = protocol
        self.baselines = baselines
        self.direct = get_prompt(protocol.direct_template)

    def make_request(self, unit: WorkUnit, audio: Optional[np.ndarray], perturbation: Dict[str, Any]) -> Request:
        variant: Variant = unit.variant
        template = self.template(unit)
        user = render_user_text(template, unit.item)
        prefix, turns, injected = None, (), None
        if variant.hint is not None:
            user, injected = f"{user}\n\n{variant.hint}", variant.hint
        if variant.reasoning is not None and not variant.direct:
            user, prefix, turns = template.place(user, variant.reasoning, self.protocol.answer)
            injected = variant.reasoning
        return Request(item=unit.item, run=unit.run, user_text=user, audio=audio, assistant_prefix=prefix,
                       turns=turns, audio_after_text=template.audio_after_text, perturbation=perturbation,
                       injected=injected if not variant.direct else "", mode=template.mode)

    def row(self, unit: WorkUnit, out: Optional[Generation], seconds: float) -> ResultRow:
        row = super().row(unit, out, seconds)
        variant: Optional[Variant] = unit.variant
        pred, shown = row.pred, None
        if variant is not None and variant.permutation is not None and pred is not None:
            shown, pred = pred, variant.permutation[pred]
        baseline = self.baselines.get((unit.item.id, unit.run))
        base = None if baseline is None else baseline.pred
        params = {} if variant is None else dict(variant.params)
        params["protocol"] = self.protocol.spec
        info = InterventionInfo(name=self.intervention.name, spec=self.intervention.spec, placement=self.protocol.answer,
                                params=params)
        request = unit.request
        return row.replace(pred=pred, shown_pred=shown, variant="" if variant is None else variant.key,
                           intervention=info, baseline_pred=base,
                           prediction_changed=(pred != base) if pred is not None and base is not None else None,
                           injected=None if request is None else request.injected,
                           chat_sha256=None if request is None else hashlib.sha256(
                               self.backend.chat_text(request).encode("utf-8")).hexdigest())


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


def protocol_baseline(baseline: Baseline, intervention: Intervention, protocol: Protocol) -> Tuple[Baseline, Optional[str]]:
    """The baseline with the protocol's reasoning (:func:`toolkit.interventions.protocol.baseline_reasoning`),
    and why it cannot be run (None when it can): no reasoning when the intervention needs
    it, or a chain length outside the protocol's ``sentences``."""
    baseline = dataclasses.replace(baseline, reasoning=baseline_reasoning(baseline.reasoning, baseline.raw_output,
                                                                          protocol))
    if not intervention.needs_reasoning:
        return baseline, None
    if not baseline.reasoning:
        return baseline, "the baseline row has no reasoning to intervene on"
    span = protocol.sentence_range
    n = len(split_sentences(baseline.reasoning, protocol.splitter))
    if span is not None and not span[0] <= n <= span[1]:
        return baseline, f"excluded by the protocol: {n} reasoning sentences, outside {protocol.sentences}"
    return baseline, None


def runnable_baselines(baselines: Mapping[Tuple[str, int], Baseline], items: Sequence[Item],
                       intervention: Intervention, protocol: Protocol) -> List[Baseline]:
    """The baselines of ``items`` the intervention runs under ``protocol``, with the protocol's
    reasoning (what rewrites are produced for), in (id, run) order."""
    ids = {item.id for item in items}
    out = []
    for key in sorted(k for k in baselines if k[0] in ids):
        baseline, problem = protocol_baseline(baselines[key], intervention, protocol)
        if problem is None:
            out.append(baseline)
    return out


def plan_variants(items: Sequence[Item], baselines: Mapping[Tuple[str, int], Baseline], intervention: Intervention,
                  seed: int, protocol: Optional[Protocol] = None) -> List[PlannedVariant]:
    """Every row an intervention owes for ``items`` under ``protocol``: one per item, run and variant.

    The reasoning each variant starts from is the protocol's (:func:`protocol_baseline`).
    Items without a baseline row, without reasoning when the intervention needs it, whose
    reasoning the protocol leaves out (``sentences``) or for which the intervention builds no
    variant owe one error row (variant ""), so every item is accounted for. The runs are
    those of the baseline rows. This is the one definition of what an intervention unit must
    hold: the runner plans from it and merge checks against it (:meth:`toolkit.runs.Unit.expected_keys`).
    """
    protocol = protocol or DEFAULT_PROTOCOL
    out: List[PlannedVariant] = []
    for run in sorted({run for (_, run) in baselines}) or [0]:
        for item in items:
            baseline = baselines.get((item.id, run))
            if baseline is None:
                out.append(PlannedVariant(item, run, problem="no baseline row for this item and run"))
                continue
            baseline, problem = protocol_baseline(baseline, intervention, protocol)
            variants = [] if problem else intervention.variants(baseline, seed, protocol)
            if not problem and not variants:
                problem = f"{intervention.name} builds no variant for this item"
            if problem:
                out.append(PlannedVariant(item, run, problem=problem))
            out += [PlannedVariant(item if v.permutation is None else _permuted(item, v.permutation), run, v)
                    for v in variants]
    return out


def plan_condition_units(planned: Sequence[PlannedVariant], done: set, protocol: Protocol,
                         direct: Optional[PromptTemplate] = None,
                         continued: Optional[Mapping[Tuple[str, int, str], ResultRow]] = None
                         ) -> Tuple[List[WorkUnit], int]:
    """Pending units (one per planned variant not in ``done``) and how many were already written.

    ``direct`` is the prompt of no-reasoning variants (they are batched apart). A variant that
    continues a reasoning gets the reasoning read out of its continuation row in ``continued``
    (:func:`toolkit.interventions.protocol.continued_reasoning`; its sha256 in the params), or
    an error row when the continuation failed.
    """
    units = []
    for p in planned:
        if (p.item.id, p.run, p.key) in done:
            continue
        variant, error = p.variant, p.problem
        if variant is not None and variant.continue_from is not None:
            row = (continued or {}).get((p.item.id, p.run, p.key))
            if row is None or row.error is not None or row.raw_output is None:
                error = f"the continuation failed: {'not run' if row is None else row.error or 'no output'}"
            else:
                reasoning = continued_reasoning(variant.continue_from, row.raw_output, protocol)
                params = {**variant.params, "continuation_sha256": hashlib.sha256(
                    row.raw_output.encode("utf-8")).hexdigest()}
                variant = dataclasses.replace(variant, reasoning=reasoning, params=params)
        units.append(WorkUnit(p.item, p.run, error=error, variant=variant,
                              template=direct if variant is not None and variant.direct else None))
    units.sort(key=lambda u: (u.run, u.template is not None, u.item.id, "" if u.variant is None else u.variant.key))
    return units, len(planned) - len(units)


def run_condition(items: Sequence[Item], baselines: Mapping[Tuple[str, int], Baseline], intervention: Intervention,
                  backend: Backend, config: InferConfig, out: Pathlike, data_root: Optional[Pathlike],
                  protocol: Protocol, shard: Tuple[int, int] = (0, 1), manifest: Optional[Pathlike] = None,
                  baseline_file: Optional[Pathlike] = None, progress: bool = True,
                  hints: Optional[HintBank] = None, retry_errors: bool = False) -> InferSummary:
    """Run every variant of a shard's items not yet in ``out``, one appended row each.

    Args:
        items: the manifest's items (the shard is sliced here).
        baselines: from :func:`load_baselines`.
        intervention: what to do to each baseline.
        backend: the loaded backend.
        config: prompt (the protocol's conditioned template for reasoning interventions),
            generation, seed ...
        out: the result file (append-only; sidecar beside it).
        data_root: folder relative audio paths resolve against.
        protocol: resolved for the backend (:meth:`Protocol.for_family`).
        shard: (K, N).
        manifest: the manifest path, for the sidecar.
        baseline_file: the baseline path, for the sidecar (the resume check compares the rows'
            :func:`baseline_digest`).
        progress: show a progress bar.
        hints: spoken hints for an ``inject-...`` ``config.condition``.
        retry_errors: run variants whose row carries an error again (the new row supersedes it).

    Returns:
        Counts.

    Raises:
        InputError: ``out`` was written with other settings (intervention, protocol, baseline, prompt ...).
    """
    shard_items = select_shard(list(items), *shard)
    intervention = intervention.for_output(out)
    extra = {"intervention": intervention.spec, "protocol": protocol.spec,
             "baseline": {"path": None if baseline_file is None else str(Path(baseline_file).resolve()),
                          "sha256": baseline_digest(baselines, shard_items)}}
    config = with_hint_source(dataclasses.replace(config, extra=extra), hints)
    planned = plan_variants(shard_items, baselines, intervention, config.seed, protocol)
    continued = run_continuations(planned, backend, config, protocol.continue_template, out, data_root, shard_items,
                                  shard, manifest, progress, hints)
    runner = ConditionRunner(backend, config, data_root, intervention, protocol, baselines, hints)
    return run_shard(runner, out, shard_items, shard, manifest,
                     lambda done: plan_condition_units(planned, done, protocol, runner.direct, continued), progress,
                     retry_errors)

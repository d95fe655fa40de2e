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
import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from toolkit.errors import InputError, Pathlike
from toolkit.infer import InferConfig, InferSummary, Runner, WorkUnit, check_or_write_sidecar, with_hint_source
from toolkit.interventions.base import Baseline, Intervention, Variant
from toolkit.manifest import Item
from toolkit.models.base import Backend, Generation, Request
from toolkit.perturb.hints import HintBank
from toolkit.prompts import render_continuation, render_user_text
from toolkit.runs import ShardWriter, select_shard

log = logging.getLogger(__name__)

PLACEMENTS = ("assistant", "user")


def file_digest(path: Pathlike) -> str:
    """sha256 of a file (recorded so a resumed run cannot silently switch baselines)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_baselines(path: Pathlike, items: Sequence[Item]) -> Dict[Tuple[str, int], Baseline]:
    """Baseline rows by (item id, run), from a toolkit or earlier-scripts result file.

    Rows are matched to items by id; rows whose id is not in the manifest are matched by
    audio file name and hop (SAKURA's earlier ids), else reported.

    Raises:
        InputError: a row that matches no item, or two rows for the same (item, run).
    """
    from toolkit.results import SEED, read_results, seed_to_toolkit

    fmt, rows = read_results(path)
    if fmt == SEED:
        rows = seed_to_toolkit(rows, mode="reasoning")
    by_id = {it.id: it for it in items}
    by_audio = {(Path(str(it.audio)).name, it.hop): it for it in items if it.audio}
    out: Dict[Tuple[str, int], Baseline] = {}
    for row in rows:
        d = row.data
        item = by_id.get(str(d["id"]))
        if item is None and d.get("audio_path") is not None:
            item = by_audio.get((Path(str(d["audio_path"])).name, d.get("hop")))
        if item is None:
            raise InputError(f"baseline row for id {d['id']!r} matches no manifest item", row.path, row.line, d["id"])
        run = int(d.get("run") or 0)
        if (item.id, run) in out:
            raise InputError(f"second baseline row for item {item.id!r} run {run}", row.path, row.line, d["id"])
        out[(item.id, run)] = Baseline(item=item, run=run, reasoning=(d.get("reasoning") or "").strip(),
                                       pred=d.get("pred"), raw_output=d.get("raw_output"))
    return out


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

    def row(self, unit: WorkUnit, out: Optional[Generation], seconds: float) -> Dict[str, Any]:
        row = super().row(unit, out, seconds)
        variant: Optional[Variant] = unit.variant
        row["variant"] = "" if variant is None else variant.key
        row["intervention"] = {"name": self.intervention.name, "spec": self.intervention.spec,
                               "placement": self.placement, "params": {} if variant is None else variant.params}
        if variant is not None and variant.permutation is not None and row["pred"] is not None:
            row["shown_pred"] = row["pred"]
            row["pred"] = variant.permutation[row["pred"]]
        baseline = self.baselines.get((unit.item.id, unit.run))
        row["baseline_pred"] = None if baseline is None else baseline.pred
        both = row["pred"] is not None and row["baseline_pred"] is not None
        row["prediction_changed"] = (row["pred"] != row["baseline_pred"]) if both else None
        return row


def plan_condition_units(items: Sequence[Item], baselines: Mapping[Tuple[str, int], Baseline],
                         intervention: Intervention, seed: int, done: set) -> Tuple[List[WorkUnit], int]:
    """Pending units (one per item, run and variant) and how many were already written.

    Items without a baseline row, or without reasoning when the intervention needs it, get
    one unit that becomes an error row (variant ``""``), so every item is accounted for.
    """
    units: List[WorkUnit] = []
    skipped = 0
    runs = sorted({run for (_, run) in baselines}) or [0]
    for run in runs:
        for item in items:
            baseline = baselines.get((item.id, run))
            problem = None
            if baseline is None:
                problem = "no baseline row for this item and run"
            elif intervention.needs_reasoning and not baseline.reasoning:
                problem = "the baseline row has no reasoning to intervene on"
            if problem is not None:
                if (item.id, run, "") in done:
                    skipped += 1
                else:
                    units.append(WorkUnit(item, run, error=problem, variant=None))
                continue
            for variant in intervention.variants(baseline, seed):
                if (item.id, run, variant.key) in done:
                    skipped += 1
                    continue
                shown = item if variant.permutation is None else _permuted(item, variant.permutation)
                units.append(WorkUnit(shown, run, variant=variant))
    units.sort(key=lambda u: (u.run, u.item.id, "" if u.variant is None else u.variant.key))
    return units, skipped


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
        baseline_file: the baseline path, for the sidecar and the resume check.
        progress: show a progress bar.
        hints: spoken hints for an ``inject-...`` ``config.condition``.

    Returns:
        Counts.

    Raises:
        InputError: ``out`` was written with other settings (intervention, baseline, prompt ...).
    """
    shard_items = select_shard(list(items), *shard)
    extra = {"intervention": intervention.spec, "placement": placement,
             "baseline": None if baseline_file is None else {"path": str(Path(baseline_file).resolve()),
                                                             "sha256": file_digest(baseline_file)}}
    config = with_hint_source(dataclasses.replace(config, extra=extra), hints)
    root = None if data_root is None else Path(data_root)
    check_or_write_sidecar(Path(out), backend, config, shard_items, root, shard, manifest)
    runner = ConditionRunner(backend, config, root, intervention, placement, baselines, hints)
    with ShardWriter(out) as writer:
        units, skipped = plan_condition_units(shard_items, baselines, intervention, config.seed, writer.done)
        summary = runner.run(units, writer, progress)
    summary.skipped = skipped
    log.info("%s: %s", out, summary.line())
    return summary

"""The model under test continues a reasoning it is given, before it is asked for the answer.

Adding a mistake (``mistakes = continue``) and regenerating after a paraphrased beginning
(``paraphrase = prefix+regenerate``) let the model go on with its reasoning from the
changed part, as Lanham et al. 2023 (sections 2.4, 2.6) and the original faithfulness study
(``experiments/cot/adding_mistakes.py`` ``continue_reasoning``) did. Such a variant carries
the text to continue (:attr:`toolkit.interventions.Variant.continue_from`); ``bin/condition``
runs every continuation of a result file first (:func:`run_continuations`), then asks for
the answers from the reasoning read out of each whole
(:func:`toolkit.interventions.protocol.continued_reasoning`).

Continuations are sampled as the original study sampled them (temperature 0.7, top-p 0.9,
the continue template's 512 new tokens; seeded per run) with the protocol's continue
template (``study-continue-*`` per model family under ``seed``, ``continue-prefill``
otherwise). They are written, one row per variant, to a **continuation file** beside the
result file (``<out>.continuations``, with its sidecar and lock): a rerun reuses them, so a
resumed run answers from the same continuations, and each row records the model's whole
output (``raw_output``) for audit. The file is not a shard (merge does not read it).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from toolkit.errors import Pathlike
from toolkit.infer import InferConfig, Runner, WorkUnit, run_shard
from toolkit.manifest import Item
from toolkit.models.base import Backend, GenerationSettings, Request
from toolkit.perturb.hints import HintBank
from toolkit.prompts import get_prompt, render_user_text
from toolkit.rows import ResultRow

log = logging.getLogger(__name__)

#: the original study's sampling of continuations (adding_mistakes.py continue_reasoning)
SAMPLING = {"do_sample": True, "temperature": 0.7, "top_p": 0.9}
ContinuationKey = Tuple[str, int, str]  # id, run, variant


def continuation_file(out: Pathlike) -> Path:
    """The continuation file of a result file: ``<out>.continuations``."""
    return Path(f"{out}.continuations")


def continuation_config(config: InferConfig, template_name: str) -> InferConfig:
    """The run's config with the continue template and the original study's sampling."""
    template = get_prompt(template_name)
    settings = GenerationSettings(max_new_tokens=template.max_new_tokens, **SAMPLING)
    return dataclasses.replace(config, mode="reasoning", prompt=template, settings=settings, score_options=False)


class ContinuationRunner(Runner):
    """The inference runner asking the model to continue each unit's ``variant.continue_from``."""

    def make_request(self, unit: WorkUnit, audio: Optional[np.ndarray], perturbation: Dict[str, Any]) -> Request:
        template = self.config.prompt
        given = unit.variant.continue_from
        user, prefix, turns = template.place(render_user_text(template, unit.item), given)
        return Request(item=unit.item, run=unit.run, user_text=user, audio=audio, assistant_prefix=prefix,
                       turns=turns, audio_after_text=template.audio_after_text, perturbation=perturbation,
                       injected=given, mode=template.mode)

    def row(self, unit: WorkUnit, out: Any, seconds: float) -> ResultRow:
        return super().row(unit, out, seconds).replace(variant=unit.variant.key)


def run_continuations(planned: Sequence[Any], backend: Backend, config: InferConfig, template: str,
                      out: Pathlike, data_root: Optional[Pathlike], shard_items: Sequence[Item],
                      shard: Tuple[int, int], manifest: Optional[Pathlike], progress: bool = True,
                      hints: Optional[HintBank] = None) -> Dict[ContinuationKey, ResultRow]:
    """Continue every planned variant that asks for it; their rows by (id, run, variant).

    Args:
        planned: :class:`toolkit.interventions.runner.PlannedVariant` of one result file.
        backend: the model under test.
        config: the result file's config (its fingerprint, condition, seed and batch size).
        template: the protocol's continue template.
        out: the result file (the continuations go beside it, :func:`continuation_file`).
        data_root: folder relative audio paths resolve against.
        shard_items: the shard's items (sidecar).
        shard: (K, N).
        manifest: the manifest path (sidecar).
        progress: show a progress bar.
        hints: spoken hints for an ``inject-...`` condition.

    Returns:
        The continuation rows (written now or before); {} when no variant continues.
    """
    from toolkit.results import read_results

    wanted = [p for p in planned if p.variant is not None and p.variant.continue_from is not None]
    if not wanted:
        return {}
    path = continuation_file(out)
    runner = ContinuationRunner(backend, continuation_config(config, template), data_root, hints)

    def plan(done: set) -> Tuple[list, int]:
        units = [WorkUnit(p.item, p.run, variant=p.variant) for p in wanted if (p.item.id, p.run, p.key) not in done]
        return units, len(wanted) - len(units)

    summary = run_shard(runner, path, shard_items, shard, manifest, plan, progress)
    log.info("%s: continuations %s", path, summary.line())
    _, rows = read_results(path)
    return {(r.row.id, r.row.run, r.row.variant): r.row for r in rows if r.row is not None}

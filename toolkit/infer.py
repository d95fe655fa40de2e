"""The inference runner shared by every backend: items in, one result row per (item, run) out.

It owns what does not depend on the model: the shard slice, resume (skip what the result
file has), audio loading, the audio condition (on the fly, bit-identical to ``perturb``'s
files, or already applied by a perturbed manifest), the backend's length limit, prompts,
batching (runs grouped, longest clips first so an out-of-memory error surfaces at once),
a background thread that loads and prepares the next batch while the current one
generates, OOM halving, error rows, answer extraction and the rows themselves.

Rows are :class:`toolkit.rows.ResultRow` records (the README's "Result row"): ``flags``
(e.g. ``audio_truncated_from_s``, ``batch_split``) say when something was done to the item
that a reader must know.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from toolkit.answers import extract_answer, split_reasoning
from toolkit.audio import TARGET_SR, audio_info, load_usable_audio
from toolkit.errors import ConditionError, InputError, Pathlike
from toolkit.manifest import Item, resolve_audio
from toolkit.models.base import Backend, Generation, GenerationSettings, Request
from toolkit.perturb.hints import HintBank
from toolkit.prompts import PromptTemplate, render_user_text
from toolkit.rows import ResultRow
from toolkit.runs import ShardWriter, select_shard
from toolkit.perturb.seeding import derive_seed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferConfig:
    """What to run; everything here is recorded in the sidecar and checked on resume.

    Attributes:
        model: backend registry name (recorded in rows as ``model`` unless ``model_label``).
        mode: ``reasoning`` or ``direct``.
        prompt: the prompt template.
        settings: generation settings (run r samples with seed ``derive(seed, run)``).
        condition: audio condition applied on the fly (``clean``: none). Ignored for items
            of a perturbed manifest, whose ``meta.condition`` says what was applied.
        num_runs: runs per item.
        batch_size: requests per model call.
        seed: global seed (audio conditions and sampling).
        score_options: also record option-letter log-probabilities.
        model_label: name written in rows (default: ``model``).
        extra: further settings of a stage built on this runner (``bin/condition``: the
            intervention, placement and baseline file), part of the fingerprint.
    """

    model: str
    mode: str
    prompt: PromptTemplate
    settings: GenerationSettings
    condition: str = "clean"
    num_runs: int = 1
    batch_size: int = 8
    seed: int = 0
    score_options: bool = False
    model_label: Optional[str] = None
    extra: Optional[Dict[str, Any]] = None

    def fingerprint(self) -> Dict[str, Any]:
        """The settings a resumed run must share with the rows already written."""
        out = {"model": self.model_label or self.model, "mode": self.mode, "prompt": self.prompt.name,
               "condition": self.condition, "seed": self.seed, "score_options": self.score_options,
               "generation": self.settings.to_dict()}
        if self.extra is not None:
            out.update(self.extra)
        return out


@dataclass
class InferSummary:
    """Counts of one ``run_inference`` call."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        """``written 40 (1 error), skipped 8 (already written); 12.3 rows/s over 3.3 s``: the
        written rows include the error rows."""
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        errors = f"{self.failed} error{'s' if self.failed != 1 else ''}"
        return (f"written {self.done} ({errors}), skipped {self.skipped} (already written); "
                f"{rate:.2f} rows/s over {self.seconds:.1f} s")


@dataclass
class WorkUnit:
    """One (item, run) on its way to a row."""

    item: Item
    run: int
    request: Optional[Request] = None
    error: Optional[str] = None
    condition: str = "clean"
    flags: Dict[str, Any] = field(default_factory=dict)
    variant: Any = None  # bin/condition: the intervention variant this unit runs
    template: Optional[PromptTemplate] = None  # another prompt than the run's (bin/condition's no-reasoning variants)


def _duration(item: Item, data_root: Optional[Path]) -> float:
    """Clip length for sorting: ``meta.duration`` from prepare, else the header, else 0."""
    if "duration" in item.meta:
        return float(item.meta["duration"])
    path = resolve_audio(item, data_root)
    try:
        return audio_info(path).duration if path is not None else 0.0
    except (OSError, RuntimeError):
        return 0.0


def plan_units(items: Sequence[Item], done: set, num_runs: int,
               length: Callable[[Item], float]) -> Tuple[List[WorkUnit], int]:
    """Pending (item, run) units in processing order: by run, items with audio before text-only
    ones (a batch mixing both cannot share one processor call), then longest prompt first, then id.

    Args:
        items: the shard's items.
        done: (id, run, variant) keys already written (variant "" for inference rows).
        num_runs: runs per item.
        length: the expected prompt length of an item (sort key; see :meth:`Runner.length_hint`).

    Returns:
        The units still to do (neighbours have similar lengths, so batches carry little
        padding) and how many were already written.
    """
    lengths = {item.id: length(item) for item in items}
    units = [WorkUnit(item, run) for run in range(num_runs) for item in items if (item.id, run, "") not in done]
    units.sort(key=lambda u: (u.run, u.item.audio is None, -lengths[u.item.id], u.item.id))
    return units, len(items) * num_runs - len(units)


class Runner:
    """Runs a backend over units, writing rows to a :class:`ShardWriter`.

    Args:
        backend: the loaded backend.
        config: what to run.
        data_root: folder relative audio paths resolve against.
        hints: spoken hints for an ``inject-...`` condition applied on the fly.
    """

    def __init__(self, backend: Backend, config: InferConfig, data_root: Optional[Pathlike],
                 hints: Optional[HintBank] = None) -> None:
        self.backend = backend
        self.config = config
        self.data_root = None if data_root is None else Path(data_root)
        self.hints = hints

    def length_hint(self, item: Item) -> float:
        """The backend's estimate of the item's prompt length (0 when the prompt cannot be rendered)."""
        try:
            text = render_user_text(self.config.prompt, item)
        except InputError:
            return 0.0
        return self.backend.prompt_length_hint(text, _duration(item, self.data_root))

    # ---- building requests (background thread) -------------------------------------------
    def _audio_for(self, unit: WorkUnit) -> Tuple[Optional[np.ndarray], Dict[str, Any]]:
        item = unit.item
        if "condition_error" in item.meta:
            raise ConditionError(str(item.meta["condition_error"]))
        path = resolve_audio(item, self.data_root)
        if path is None:
            return None, {}
        x = load_usable_audio(path, channels=self.backend.channel_policy)
        if "condition" in item.meta:  # a perturbed manifest: the file already is the condition
            unit.condition = str(item.meta["condition"])
            perturbation = dict(item.meta.get("perturbation", {}))
        elif self.config.condition != "clean":
            from toolkit.perturb import ClipContext, apply_condition

            ctx = ClipContext(item.id, self.config.seed, item=item, hints=self.hints)
            x, perturbation = apply_condition(x, self.config.condition, item.id, self.config.seed, ctx)
            unit.condition = self.config.condition
        else:
            perturbation = {}
        limit = self.backend.max_audio_seconds
        if limit is not None and x.size > int(limit * TARGET_SR):
            unit.flags["audio_truncated_from_s"] = round(x.size / TARGET_SR, 3)
            x = x[: int(limit * TARGET_SR)]
        return x, perturbation

    def template(self, unit: WorkUnit) -> PromptTemplate:
        """The prompt of a unit: the run's, unless the unit names another."""
        return unit.template or self.config.prompt

    def make_request(self, unit: WorkUnit, audio: Optional[np.ndarray], perturbation: Dict[str, Any]) -> Request:
        """The request for a unit whose audio is ready (``bin/condition`` specialises the prompt)."""
        template = self.template(unit)
        user, prefix, turns = render_user_text(template, unit.item), None, ()
        if template.continuation is not None:  # a model turn given in advance (see toolkit.prompts)
            user, prefix, turns = template.place(user, "")
        return Request(item=unit.item, run=unit.run, user_text=user, audio=audio, assistant_prefix=prefix, turns=turns,
                       perturbation=perturbation, audio_after_text=template.audio_after_text, mode=template.mode)

    def probe_request(self, item: Item) -> Request:
        """``item``'s request as a plain run of ``config.prompt`` builds it, for sidecars and
        ``bin/infer --explain``: its audio when it loads, else one second of silence."""
        unit = WorkUnit(item=item, run=0)
        try:
            audio, perturbation = self._audio_for(unit)
        except (OSError, RuntimeError, ValueError, ConditionError, InputError):
            audio, perturbation = (None if item.audio is None else np.zeros(TARGET_SR, dtype=np.float32)), {}
        return Runner.make_request(self, unit, audio, perturbation)

    def build_request(self, unit: WorkUnit) -> None:
        """Fill ``unit.request``, or ``unit.error`` when the item cannot be run."""
        unit.condition = self.config.condition
        if unit.error is not None:  # known before any audio is read (e.g. bin/condition: no baseline)
            return
        try:
            audio, perturbation = self._audio_for(unit)
            unit.request = self.make_request(unit, audio, perturbation)
        except (OSError, RuntimeError, ValueError, ConditionError, InputError) as exc:
            unit.error = f"{type(exc).__name__}: {exc}"

    def prepare_batch(self, units: List[WorkUnit]) -> List[Tuple[List[WorkUnit], Any]]:
        """Requests for ``units`` and the backend's prepared inputs, as groups to generate.

        Normally one group (the batch). When the backend cannot prepare the batch as a whole
        (a bad item, or items that cannot share a batch), each unit is prepared alone: those
        that fail get ``error``, the others become groups of one.
        """
        for unit in units:
            self.build_request(unit)
        ready = [u for u in units if u.request is not None]
        if not ready:
            return []
        try:
            return [(ready, self.backend.prepare([u.request for u in ready]))]
        except Exception as exc:  # noqa: BLE001 - isolate the failing item below
            if len(ready) > 1:
                log.warning("preparing a batch of %d failed (%s); preparing items one by one", len(ready), exc)
        groups = []
        for unit in ready:
            try:
                groups.append(([unit], self.backend.prepare([unit.request])))
            except Exception as exc:  # noqa: BLE001
                unit.error = f"prepare failed: {type(exc).__name__}: {exc}"
        return groups

    # ---- generating (main thread) -----------------------------------------------------------
    def _settings_for(self, unit: WorkUnit) -> GenerationSettings:
        s = self.config.settings
        if unit.template is not None:  # another prompt: its own budget
            s = dataclasses.replace(s, max_new_tokens=unit.template.max_new_tokens)
        return dataclasses.replace(s, seed=derive_seed(self.config.seed, f"run-{unit.run}", "sampling")) \
            if s.do_sample else s

    def generate(self, units: List[WorkUnit], prepared: Any) -> List[Tuple[WorkUnit, Optional[Generation], float]]:
        """Generate for a prepared batch; halve on out-of-memory, isolate other failures."""
        settings = self._settings_for(units[0])
        start = time.perf_counter()
        try:
            outs = self.backend.generate(prepared, settings, self.config.score_options)
        except Exception as exc:  # noqa: BLE001 - OOM is halved, anything else isolated
            if len(units) == 1:
                units[0].error = f"generate failed: {type(exc).__name__}: {exc}"
                return [(units[0], None, time.perf_counter() - start)]
            if _is_oom(exc):
                _free_accelerator_memory()
                log.warning("out of memory on a batch of %d; halving", len(units))
            else:
                log.warning("generation failed on a batch of %d (%s); retrying in halves", len(units), exc)
            half = len(units) // 2
            results = []
            for part in (units[:half], units[half:]):
                for unit in part:
                    unit.flags["batch_split"] = unit.flags.get("batch_split", 0) + 1
                results += self.generate(part, self.backend.prepare([u.request for u in part]))
            return results
        per_item = (time.perf_counter() - start) / len(units)
        return [(unit, out, per_item) for unit, out in zip(units, outs)]

    def row(self, unit: WorkUnit, out: Optional[Generation], seconds: float) -> ResultRow:
        """The result row of one unit; for ``task: asr`` items ``raw_output`` is the transcript and
        ``pred``/``pred_source``/``correct`` stay null (no answer extraction, no ``no_answer`` flag).
        ``reasoning`` is what the model reasoned when its template asks it to (a reasoning prompt),
        "" otherwise."""
        item, cfg = unit.item, self.config
        fields: Dict[str, Any] = {"id": item.id, "model": cfg.model_label or cfg.model, "condition": unit.condition,
                                  "mode": cfg.mode, "run": unit.run, "prompt": self.template(unit).name,
                                  "error": unit.error,
                                  "seconds": round(seconds, 4)}
        if out is not None:
            reasoning, _final = split_reasoning(out.text)
            fields.update(raw_output=out.text, reasoning=reasoning if self.template(unit).mode == "reasoning" else "",
                          n_new_tokens=out.n_new_tokens)
        if out is not None and item.task != "asr":  # a transcript has no option: pred stays null, WER reads raw_output
            found = extract_answer(out.text, item.choices or [])
            fields.update(pred=found.pred, pred_source=found.source)
            unit.flags.update(found.flags)  # no_answer (the null's reason), letter_text_conflict
            if item.answer is not None:
                fields["correct"] = item.accepts(found.pred)
            if out.option_logprobs is not None:
                fields["option_logprobs"] = out.option_logprobs
        if unit.flags:
            fields["flags"] = dict(unit.flags)
        return ResultRow(**fields)

    # ---- the loop --------------------------------------------------------------------------
    def run(self, units: List[WorkUnit], writer: ShardWriter, progress: bool = True) -> InferSummary:
        """Process ``units`` in batches, preparing batch i+1 while batch i generates.

        Returns:
            Counts (``skipped`` is left to the caller).
        """
        from tqdm import tqdm

        summary = InferSummary()
        start = time.perf_counter()
        batches = list(_batches(units, self.config.batch_size))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer-prepare") as pool, \
                tqdm(total=len(units), desc=f"infer {self.config.model}", unit="item", disable=not progress) as bar:
            futures: List[Future] = [pool.submit(self.prepare_batch, batches[0])] if batches else []
            for index, batch in enumerate(batches):
                groups = futures.pop().result()
                if index + 1 < len(batches):
                    futures.append(pool.submit(self.prepare_batch, batches[index + 1]))
                results = [result for ready, prepared in groups for result in self.generate(ready, prepared)]
                generated = {id(unit) for unit, _, _ in results}
                results += [(unit, None, 0.0) for unit in batch if id(unit) not in generated]
                for unit, out, seconds in results:
                    writer.append(self.row(unit, out, seconds))
                    unit.request = None  # its audio and prompt: memory stays flat in the number of rows
                    summary.done += 1
                    summary.failed += unit.error is not None
                bar.update(len(batch))
        summary.seconds = time.perf_counter() - start
        return summary


def _batches(units: List[WorkUnit], size: int) -> Iterator[List[WorkUnit]]:
    """Consecutive batches of at most ``size`` units, never mixing runs or prompts (their settings differ)."""
    batch: List[WorkUnit] = []
    for unit in units:
        if batch and (len(batch) == size or batch[-1].run != unit.run or batch[-1].template != unit.template):
            yield batch
            batch = []
        batch.append(unit)
    if batch:
        yield batch


def _is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _free_accelerator_memory() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_inference(items: Sequence[Item], backend: Backend, config: InferConfig, out: Pathlike,
                  data_root: Optional[Pathlike], shard: Tuple[int, int] = (0, 1), manifest: Optional[Pathlike] = None,
                  progress: bool = True, hints: Optional[HintBank] = None,
                  retry_errors: bool = False) -> InferSummary:
    """Answer every (item, run) of a shard not yet in ``out``, appending one row each.

    Args:
        items: the manifest's items (the shard is sliced here).
        backend: the loaded backend.
        config: what to run.
        out: the result file (JSONL, append-only; ``out.meta.json`` is its sidecar).
        data_root: folder relative audio paths resolve against.
        shard: (K, N): this call runs shard K of N (round robin over the manifest order).
        manifest: the manifest path, for the sidecar.
        progress: show a progress bar.
        hints: spoken hints for an ``inject-...`` ``config.condition``.
        retry_errors: run (item, run) pairs whose row carries an error again; the new row is
            appended and supersedes the error row.

    Returns:
        Counts; ``failed`` rows carry ``error``.

    Raises:
        InputError: ``out`` was written with other settings (model, prompt, mode, condition,
            generation settings, seed): a resumed run must not mix rows.
        FileBusy: another process is writing ``out``.

    Example:
        >>> backend = load_backend("simulated", None)                      # doctest: +SKIP
        >>> cfg = InferConfig("simulated", "reasoning", get_prompt("reasoning-v1"),
        ...                   GenerationSettings(max_new_tokens=512))     # doctest: +SKIP
        >>> run_inference(read_manifest("m.jsonl"), backend, cfg, "out.jsonl", "data").line()  # doctest: +SKIP
        'done 24, skipped 0 (already written), failed 0; ...'
    """
    runner = Runner(backend, with_hint_source(config, hints), data_root, hints)
    shard_items = select_shard(list(items), *shard)
    return run_shard(runner, out, shard_items, shard, manifest,
                     lambda done: plan_units(shard_items, done, config.num_runs, runner.length_hint), progress,
                     retry_errors)


def run_shard(runner: Runner, out: Pathlike, shard_items: Sequence[Item], shard: Tuple[int, int],
              manifest: Optional[Pathlike], plan: Callable[[set], Tuple[List[WorkUnit], int]],
              progress: bool = True, retry_errors: bool = False) -> InferSummary:
    """Run what ``plan`` says is pending in one result file: take its lock, check (or write) its
    sidecar, plan from the keys already written, run, and count.

    Args:
        runner: the runner (its config is the file's fingerprint).
        out: the result file.
        shard_items: the shard's items (for the sidecar).
        shard: (K, N).
        manifest: the manifest path, for the sidecar.
        plan: done keys -> (pending units, units already written).
        progress: show a progress bar.
        retry_errors: run keys whose row carries an error again (the new row supersedes it).

    Returns:
        Counts.

    Raises:
        InputError: ``out`` was written with other settings.
        FileBusy: another process is writing ``out``.
    """
    out = Path(out)
    with ShardWriter(out, before_open=lambda: check_or_write_sidecar(out, runner, shard_items, shard, manifest),
                     retry_errors=retry_errors) as writer:
        units, skipped = plan(writer.done)
        summary = runner.run(units, writer, progress)
    summary.skipped = skipped
    log.debug("%s: %s", out, summary.line())  # the stages print it
    return summary


def with_hint_source(config: InferConfig, hints: Optional[HintBank]) -> InferConfig:
    """``config`` with the spoken-hint source in its fingerprint when its condition injects hints,
    so a run resumed with another TTS or hint folder is refused instead of mixing rows."""
    from toolkit.perturb.inject import needs_hints
    from toolkit.perturb import parse_condition

    if hints is None or not needs_hints([parse_condition(config.condition)]):
        return config
    return dataclasses.replace(config, extra={**(config.extra or {}), "hints": hints.describe()})


def check_or_write_sidecar(out: Path, runner: Runner, items: Sequence[Item], shard: Tuple[int, int],
                           manifest: Optional[Pathlike]) -> None:
    """Write the sidecar of a new result file, or check that an existing one has the same fingerprint.

    The sidecar holds the run's fingerprint, the model's facts (:meth:`Backend.describe`) and
    its set-up for the shard's first item (:meth:`Backend.setup_facts`: official set-up,
    effective generation config, dtypes, chat text, token counts).

    Raises:
        InputError: ``out`` exists and was written with other settings.
    """
    import json

    from toolkit.sidecar import sidecar_path, write_sidecar

    backend, config, data_root = runner.backend, runner.config, runner.data_root
    side = sidecar_path(out)
    if out.exists() and side.exists():
        previous = json.loads(side.read_text(encoding="utf-8")).get("params", {}).get("fingerprint")
        if previous is not None and previous != json.loads(json.dumps(config.fingerprint())):
            changed = sorted(k for k in config.fingerprint() if previous.get(k) != config.fingerprint()[k])
            raise InputError(f"written with other settings ({', '.join(changed)} differ); use another --out "
                             "or move the file aside", out)
        return
    facts = backend.setup_facts(runner.probe_request(items[0]), config.settings) if items else \
        {"generation_effective": backend.effective_generation(config.settings)}
    write_sidecar(out, "infer", fingerprint=config.fingerprint(), model=backend.describe(), **facts,
                  prompt_template={"name": config.prompt.name, "user": config.prompt.user,
                                   "continuation": config.prompt.continuation, "source": config.prompt.source},
                  num_runs=config.num_runs, batch_size=config.batch_size,
                  manifest=None if manifest is None else str(Path(manifest).resolve()),
                  data_root=None if data_root is None else str(data_root.resolve()),
                  shard=f"{shard[0]}/{shard[1]}", items_in_shard=len(items))

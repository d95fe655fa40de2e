"""Render a manifest under many conditions: one decode per clip, all its conditions, files.

Layout written under ``out_dir``::

    <condition>/<file>.wav          one per item (16 kHz mono; float32 WAV or 16-bit PCM)
    <condition>/manifest.jsonl      the input items, ``audio`` = "<file>.wav"
    <condition>/manifest.jsonl.meta.json   sidecar (seed, condition, format, sources, noise files,
                                           hint source for inject-... conditions)

``<condition>`` is the canonical name (``mask-p20-scattered-silence``, ``noise-snr-10-white``).
``<file>`` is the item id when it is a safe file name (letters, digits, ``._-``, not
starting with a dot), else the id with other characters replaced by ``_`` plus 8 hex digits
of its SHA-256 (so distinct ids never collide). ``audio`` in the written manifests is
relative: it resolves against ``--data-root``, whose default in ``infer`` is the manifest's
own folder.

Each item's ``meta`` gains ``condition`` (canonical name) and ``perturbation`` (the params).
An item whose audio is missing or unreadable, or whose condition fails (ConditionError,
e.g. noise on a silent clip), stays in the manifest with ``meta.condition_error`` instead,
and no file is written for it (a stale file from an earlier run is removed), so ``infer``
turns it into a row with ``error`` set. ``clean`` is written too (the decoded 16 kHz mono
clip), so every condition is read through the same decoding path.

Output is a pure function of (clip, condition, item id, seed, format): the same with any
item order, sharding or ``workers``.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import math
import multiprocessing
import os
import re
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm import tqdm

from toolkit.atomic import atomic_write_json, atomic_write_jsonl
from toolkit.audio import TARGET_SR, load_usable_audio, save_audio
from toolkit.errors import ConditionError, InputError, Pathlike
from toolkit.manifest import Item, resolve_audio
from toolkit.perturb.base import Condition, Params
from toolkit.perturb.context import ClipContext
from toolkit.perturb.encode import FORMATS, encode_output
from toolkit.perturb.hints import HintBank
from toolkit.perturb.inject import needs_hints
from toolkit.perturb.registry import expand_conditions
from toolkit.perturb.sources import NoiseBank
from toolkit.sidecar import provenance, sidecar_path

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"
_SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def audio_filename(item_id: str) -> str:
    """The WAV file name of an item inside a condition folder.

    Args:
        item_id: the manifest id.

    Returns:
        ``"<id>.wav"`` for safe ids, else a sanitised id with a hash suffix.

    Example:
        >>> audio_filename("cat28")
        'cat28.wav'
        >>> audio_filename("Animal/cat 28")
        'Animal_cat_28-69758af1.wav'
    """
    if _SAFE_ID.fullmatch(item_id) and len(item_id) <= 200:
        return f"{item_id}.wav"
    digest = hashlib.sha256(item_id.encode("utf-8")).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', item_id)[:150].lstrip('.')}-{digest}.wav"


@dataclass(frozen=True)
class _Job:
    """Everything a worker needs besides the items."""

    conditions: Tuple[Condition, ...]
    out_dir: Path
    data_root: Optional[Path]
    seed: int
    fmt: str
    noise_dir: Optional[Path]
    hints: Optional[HintBank]


@dataclass(frozen=True)
class _Outcome:
    """One (item, condition): the params written, or why nothing was written."""

    params: Optional[Params] = None
    error: Optional[str] = None


@lru_cache(maxsize=4)
def _noise_bank(noise_dir: Optional[Path]) -> Optional[NoiseBank]:
    """One bank per process and folder, so each noise file is decoded once per process."""
    return None if noise_dir is None else NoiseBank(noise_dir)


def _load(item: Item, data_root: Optional[Path]) -> np.ndarray:
    path = resolve_audio(item, data_root)
    if path is None:
        raise ValueError("item has no audio")
    return load_usable_audio(path)


def _discard(path: Path) -> None:
    if path.exists():
        path.unlink()


class _BackgroundSaver:
    """Writes WAV files on one background thread, so encoding overlaps rendering.

    File writes release the GIL, so they overlap the next clip's rendering. At most
    ``max_pending`` files wait in memory; a failed write raises on a later :meth:`save` or
    on :meth:`close`.
    """

    def __init__(self, max_pending: int = 64) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perturb-save")
        self._pending: Deque[Future] = collections.deque()
        self._max_pending = max_pending

    def save(self, dest: Path, samples: np.ndarray, fmt: str) -> None:
        """Queue ``save_audio(dest, samples, 16000, fmt)``."""
        while len(self._pending) >= self._max_pending:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(save_audio, dest, samples, TARGET_SR, fmt))

    def close(self) -> None:
        """Wait for every queued write; raise the first error."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "_BackgroundSaver":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _render_item(item: Item, job: _Job, saver: _BackgroundSaver) -> List[_Outcome]:
    """Decode one clip once and write it under every condition."""
    filename = audio_filename(item.id)
    dests = [job.out_dir / condition.name / filename for condition in job.conditions]
    try:
        x = _load(item, job.data_root)
    except (OSError, RuntimeError, ValueError) as exc:
        for dest in dests:
            _discard(dest)
        message = f"audio not readable: {exc}"
        log.warning("%s: %s", item.id, message)
        return [_Outcome(error=message)] * len(dests)
    ctx = ClipContext(item.id, job.seed, _noise_bank(job.noise_dir), item=item, hints=job.hints)
    outcomes = []
    for condition, dest in zip(job.conditions, dests):
        try:
            y, params = condition.apply(x, item.id, job.seed, ctx)
        except ConditionError as exc:
            _discard(dest)
            log.warning("%s: %s: %s", item.id, condition.name, exc)
            outcomes.append(_Outcome(error=str(exc)))
            continue
        samples, params = encode_output(condition, x, y, params, job.fmt)
        saver.save(dest, samples, job.fmt)
        outcomes.append(_Outcome(params=params))
    return outcomes


def _render_chunk(job: _Job, items: Sequence[Item]) -> List[List[_Outcome]]:
    with _BackgroundSaver() as saver:
        return [_render_item(item, job, saver) for item in items]


def _pool_context() -> multiprocessing.context.BaseContext:
    """``fork`` where available (workers start instantly, nothing to re-import), else the default."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def _render_all(items: List[Item], job: _Job, workers: int, progress: bool) -> List[List[_Outcome]]:
    """Outcomes per item (input order), in-process for ``workers == 1``, else a process pool."""
    bar = tqdm(total=len(items), desc="perturb", unit="clip", disable=not progress)
    try:
        if workers == 1:
            results = []
            with _BackgroundSaver() as saver:
                for item in items:
                    results.append(_render_item(item, job, saver))
                    bar.update(1)
            return results
        size = max(1, min(32, math.ceil(len(items) / (workers * 8))))
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        done: Dict[int, List[List[_Outcome]]] = {}
        with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
            futures = {pool.submit(_render_chunk, job, chunk): index for index, chunk in enumerate(chunks)}
            for future in as_completed(futures):
                done[futures[future]] = future.result()
                bar.update(len(chunks[futures[future]]))
        return [outcome for index in range(len(chunks)) for outcome in done[index]]
    finally:
        bar.close()


def _noise_files(conditions: Sequence[Condition], bank: Optional[NoiseBank]) -> Dict[str, Dict[str, str]]:
    """Check every noise key the conditions need; return ``{key: {file, sha256}}``.

    Raises:
        InputError: a key is needed without a noise folder, is missing, or its file is unusable.
    """
    files: Dict[str, Dict[str, str]] = {}
    for condition in conditions:
        for key in condition.noise_keys():
            if bank is None:
                raise InputError(f"condition {condition.name!r} needs a noise folder (--noise-dir)")
            bank.samples(key)
            files[key] = {"file": str(bank.path(key).resolve()), "sha256": bank.sha256(key)}
    return files


def _output_row(row: Dict[str, Any], condition: str, outcome: _Outcome) -> Dict[str, Any]:
    """The manifest line of one item under one condition (``row`` is the item's ``to_dict()``)."""
    meta = {k: v for k, v in row["meta"].items() if k not in ("perturbation", "condition_error")}
    meta["condition"] = condition
    if outcome.error is None:
        meta["perturbation"] = outcome.params
    else:
        meta["condition_error"] = outcome.error
    return {**row, "audio": audio_filename(row["id"]), "meta": meta}


def perturb_manifest(
    items: Sequence[Item],
    data_root: Optional[Pathlike],
    conditions: Sequence[Union[str, Condition]],
    out_dir: Pathlike,
    seed: int = 0,
    fmt: str = "float",
    workers: int = 1,
    noise_dir: Optional[Pathlike] = None,
    source_manifest: Optional[Pathlike] = None,
    progress: bool = True,
    hints: Optional[HintBank] = None,
) -> Dict[str, List[Item]]:
    """Write every item under every condition, plus one manifest and sidecar per condition.

    Each clip is decoded once and rendered under all conditions (random draws shared through
    one :class:`ClipContext`); items run in parallel over ``workers`` processes.

    Args:
        items: the source items, valid as :func:`~toolkit.manifest.read_manifest` or
            :func:`~toolkit.manifest.check_items` return them (not re-validated here).
        data_root: folder that relative ``audio`` paths resolve against (None: the current
            folder).
        conditions: condition names (short or canonical, or set names such as ``"study"``) or
            parsed conditions; repeats of one canonical name are written once.
        out_dir: output folder (see the module docstring for the layout).
        seed: global seed.
        fmt: ``"float"`` (32-bit float WAV) or ``"pcm16"`` (see :mod:`toolkit.perturb.encode`).
        workers: processes; 1 runs in this process.
        noise_dir: folder of noise files for ``noise-snr...-<key>`` conditions.
        source_manifest: the manifest ``items`` came from (recorded in the sidecars).
        progress: show a tqdm bar (``desc="perturb"``).
        hints: the spoken hints for ``inject-...`` conditions (a folder or espeak-ng).

    Returns:
        ``{canonical condition: output items}`` in input order, failures flagged in
        ``meta.condition_error``.

    Raises:
        ValueError: unknown condition name, format or worker count.
        InputError: a needed noise file is missing or unusable, or an ``inject-...``
            condition without ``hints``.

    Example:
        >>> out = perturb_manifest(read_manifest("m.jsonl"), "data", ["clean", "mask-p20"],
        ...                        "perturbed", seed=0, workers=4)      # doctest: +SKIP
        >>> sorted(out)                                                 # doctest: +SKIP
        ['clean', 'mask-p20-scattered-silence']
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; valid: {list(FORMATS)}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, not {workers}")
    unique: Dict[str, Condition] = {}
    for entry in conditions:
        for condition in [entry] if isinstance(entry, Condition) else expand_conditions([entry]):
            unique.setdefault(condition.name, condition)
    parsed = list(unique.values())
    noise_path = None if noise_dir is None else Path(noise_dir).resolve()
    noise_files = _noise_files(parsed, _noise_bank(noise_path))
    if hints is None and needs_hints(parsed):
        raise InputError("inject-... conditions need spoken hints: a hint folder (--hints DIR) or --tts espeak-ng")
    out = Path(out_dir)
    job = _Job(tuple(parsed), out, None if data_root is None else Path(data_root), int(seed), fmt, noise_path, hints)
    items = list(items)
    log.info("perturbing %d items under %d conditions into %s", len(items), len(parsed), out)
    outcomes = _render_all(items, job, workers, progress)

    # Source items are valid (read_manifest/check_items); outputs differ only in a non-empty
    # ``audio`` string and in ``meta``, so they are written without re-validating each line.
    rows = [item.to_dict() for item in items]
    record = provenance("perturb", seed=int(seed), format=fmt,
                        source_manifest=None if source_manifest is None else os.fspath(Path(source_manifest).resolve()),
                        data_root=None if data_root is None else os.fspath(Path(data_root).resolve()))
    results: Dict[str, List[Item]] = {}
    for index, condition in enumerate(parsed):
        written = [_output_row(row, condition.name, per_item[index]) for row, per_item in zip(rows, outcomes)]
        errors = sum("condition_error" in row["meta"] for row in written)
        manifest = atomic_write_jsonl(out / condition.name / MANIFEST_NAME, written)
        params = {**record["params"], "condition": condition.name, "items": len(written), "errors": errors,
                  "noise_files": {key: noise_files[key] for key in condition.noise_keys()}}
        if needs_hints([condition]):
            params["hints"] = hints.describe()
        atomic_write_json(sidecar_path(manifest), {**record, "params": params})
        if errors:
            log.warning("%s: %d of %d items failed (meta.condition_error)", condition.name, errors, len(written))
        results[condition.name] = [Item.from_dict(row) for row in written]
    return results

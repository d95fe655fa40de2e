"""The built-in demo set: synthetic audio questions whose answers are known by construction.

Three tasks, each a function of a seeded random generator:

- ``count``: how many beeps (1-4 short 1 kHz tone bursts)?
- ``pitch``: does a glide go up or down?
- ``louder``: which of two tones is louder, the first or the second (6-12 dB apart)?

Every clip has a little background noise so that masking and noise conditions have
something to act on. The set needs no download and no model, which makes it the
default input of ``bin/demo`` and of the tests of later stages.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np

from toolkit.audio import TARGET_SR, save_audio
from toolkit.errors import Pathlike
from toolkit.manifest import Item

log = logging.getLogger(__name__)

SR = TARGET_SR
Clip = Tuple[np.ndarray, str, List[str], int, dict]


def _tone(freq: float, seconds: float, amp: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms fades, no clicks
    return amp * ramp * np.sin(2 * np.pi * freq * t)


def _with_background(rng: np.random.Generator, parts: List[np.ndarray]) -> np.ndarray:
    x = np.concatenate(parts)
    return (x + 0.003 * rng.standard_normal(x.size)).astype(np.float32)


def _gap(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR))


def make_count(rng: np.random.Generator) -> Clip:
    """A clip with 1-4 beeps; choices are the numbers one to four."""
    n = int(rng.integers(1, 5))
    parts = [_gap(rng.uniform(0.2, 0.6))]
    for _ in range(n):
        parts += [_tone(1000.0, 0.12, 0.4), _gap(rng.uniform(0.25, 0.45))]
    parts.append(_gap(rng.uniform(0.2, 0.6)))
    choices = ["one", "two", "three", "four"]
    return _with_background(rng, parts), "How many beeps do you hear?", choices, n - 1, {"n_beeps": n}


def make_pitch(rng: np.random.Generator) -> Clip:
    """A 1.5-3 s glide between 300 Hz and 1200 Hz; choices up / down."""
    up = bool(rng.integers(0, 2))
    seconds = rng.uniform(1.5, 3.0)
    f0, f1 = (300.0, 1200.0) if up else (1200.0, 300.0)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    glide = 0.4 * ramp * np.sin(phase)
    clip = _with_background(rng, [_gap(0.3), glide, _gap(0.3)])
    return clip, "Does the pitch of the tone go up or down?", ["up", "down"], 0 if up else 1, {"f_start": f0, "f_end": f1}


def make_louder(rng: np.random.Generator) -> Clip:
    """Two 440 Hz tones 6-12 dB apart; choices the first / the second."""
    first_louder = bool(rng.integers(0, 2))
    diff_db = float(rng.uniform(6.0, 12.0))
    loud, soft = 0.5, 0.5 * 10 ** (-diff_db / 20)
    a, b = (loud, soft) if first_louder else (soft, loud)
    clip = _with_background(rng, [_gap(0.3), _tone(440.0, 0.6, a), _gap(0.4), _tone(440.0, 0.6, b), _gap(0.3)])
    question = "Which of the two tones is louder?"
    return clip, question, ["the first", "the second"], 0 if first_louder else 1, {"level_difference_db": round(diff_db, 2)}


TASKS: Dict[str, Callable[[np.random.Generator], Clip]] = {
    "count": make_count,
    "pitch": make_pitch,
    "louder": make_louder,
}


def prepare_demo(out_dir: Pathlike, items_per_task: int = 8, seed: int = 0) -> List[Item]:
    """Generate the demo clips under ``out_dir/audio`` and return their items.

    Args:
        out_dir: folder for the audio (created); item ``audio`` paths are relative to it.
        items_per_task: clips per task (three tasks).
        seed: generator seed; the same seed gives the same clips and answers.

    Returns:
        ``3 * items_per_task`` items, dataset ``demo``, subset = task name.

    Example:
        >>> items = prepare_demo("/tmp/demo", items_per_task=2)
        >>> sorted({it.subset for it in items})
        ['count', 'louder', 'pitch']
    """
    if items_per_task < 1:
        raise ValueError(f"items_per_task must be >= 1, got {items_per_task}")
    root = Path(out_dir)
    items: List[Item] = []
    for task_index, (task, make) in enumerate(TASKS.items()):
        rng = np.random.default_rng([seed, task_index])
        for i in range(items_per_task):
            clip, question, choices, answer, facts = make(rng)
            rel = f"audio/{task}_{i:03d}.wav"
            save_audio(root / rel, clip, SR, fmt="pcm16")
            items.append(Item(id=f"demo_{task}_{i:03d}", dataset="demo", subset=task, audio=rel,
                              question=question, choices=choices, answer=answer, meta=facts))
    log.info("generated %d demo clips in %s", len(items), root / "audio")
    return items


def write_demo_manifest(data_root: Pathlike, items_per_task: int = 8, seed: int = 0) -> Tuple[Path, List[Item]]:
    """Generate the demo set under ``data_root`` and write its checked manifest with a sidecar.

    Used by ``bin/demo`` and by sweeps whose dataset is ``demo`` (``bin/launch``).

    Args:
        data_root: folder for ``audio/`` and ``manifest.jsonl`` (created).
        items_per_task: clips per task.
        seed: generator seed.

    Returns:
        The manifest path and its items.
    """
    from toolkit.data.audio_check import check_audio
    from toolkit.manifest import write_manifest
    from toolkit.sidecar import write_sidecar

    root = Path(data_root)
    items = prepare_demo(root, items_per_task=items_per_task, seed=seed)
    report = check_audio(items, root, mode="yes")
    manifest = write_manifest(root / "manifest.jsonl", items)
    write_sidecar(manifest, "prepare", source="demo", items_per_task=items_per_task, seed=seed,
                  data_root=str(root.resolve()), audio_check=report.summary())
    return manifest, items

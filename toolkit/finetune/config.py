"""What a fine-tuning run is, and every check made before anything heavy is loaded.

:func:`validate_config` reads both manifests, checks every argument, every item and the
train/eval separation, and raises one :class:`~toolkit.errors.InputError` listing every
problem (torchtune's ``config.validate`` idea), so a run that would fail after minutes of
model loading fails at once instead.

Train/eval separation: the earlier study evaluated on its training clips. A run is refused
when an id, or an audio file, is in both splits (SAKURA's single- and multi-hop items of one
clip have different ids but the same audio), unless ``allow_overlap``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from toolkit.errors import InputError
from toolkit.finetune.lora import LoraSettings, validate_targets
from toolkit.manifest import Item, read_manifest, resolve_audio

#: Backends fine-tuning supports (LoRA targets assume their module layout).
SUPPORTED_MODELS = ("qwen2-audio",)

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
DTYPES = ("auto", "bf16", "fp16", "fp32")

#: Overlapping ids / clips listed in the refusal message.
SHOWN = 5

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run; written to ``<out>/run.json`` and checked on resume.

    Attributes:
        model: backend name (``qwen2-audio``).
        model_path: checkpoint folder or hub id.
        train_manifest: training items.
        eval_manifest: evaluation items (a separate split).
        out: run folder (``checkpoints/``, ``best/``, ``last/``, ``metrics.jsonl``, ``loss.png``).
        data_root: folder relative audio paths resolve against (default: each manifest's folder).
        prompt: direct prompt template of choice (``mcq``/``classify``) items.
        asr_prompt: prompt template of ``asr`` items (checked only when there are some).
        lora: LoRA settings.
        lr: peak learning rate (AdamW).
        epochs: passes over the training set.
        batch_size: items per forward pass.
        grad_accum: forward passes per optimizer step.
        eval_batch_size: items per evaluation forward pass.
        warmup_ratio: share of the optimizer steps spent warming up (linear), before the cosine decay.
        weight_decay: AdamW weight decay.
        max_grad_norm: gradient clipping norm (0: none).
        save_every: checkpoint every N optimizer steps (0: only at epoch ends).
        seed: seeds data order, LoRA initialisation and dropout.
        mixed_precision: accelerate's setting; ``auto`` is bf16 on GPU, no on CPU.
        dtype: base weights' dtype (``auto``: fp32; LoRA weights are always fp32).
        device: ``auto``, ``cpu``, ``cuda`` ...
        allow_overlap: train even when ids or clips are in both splits.
    """

    model: str
    model_path: str
    train_manifest: str
    eval_manifest: str
    out: str
    data_root: Optional[str] = None
    prompt: str = "direct-v1"
    asr_prompt: str = "asr-v1"
    lora: LoraSettings = field(default_factory=LoraSettings)
    lr: float = 1e-4
    epochs: int = 3
    batch_size: int = 4
    grad_accum: int = 1
    eval_batch_size: int = 8
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    save_every: int = 100
    seed: int = 0
    mixed_precision: str = "auto"
    dtype: str = "auto"
    device: str = "auto"
    allow_overlap: bool = False

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready settings (``lora.targets`` as a list)."""
        d = asdict(self)
        d["lora"]["targets"] = list(self.lora.targets)
        return d

    def root_for(self, manifest: str) -> Path:
        """Where relative audio paths of ``manifest`` resolve: ``data_root``, else its folder."""
        return Path(self.data_root) if self.data_root else Path(manifest).parent


def _argument_problems(c: FinetuneConfig) -> List[str]:
    problems = []
    if c.model not in SUPPORTED_MODELS:
        problems.append(f"--model {c.model!r}: fine-tuning supports {', '.join(SUPPORTED_MODELS)}")
    if not Path(c.model_path).is_dir() and not _HUB_ID.match(c.model_path):
        problems.append(f"--model-path {c.model_path}: no such folder (and not a hub id like owner/name)")
    checks = [(c.lora.r >= 1, f"--lora-r must be >= 1, got {c.lora.r}"),
              (c.lora.alpha > 0, f"--lora-alpha must be > 0, got {c.lora.alpha}"),
              (0 <= c.lora.dropout < 1, f"--lora-dropout must be in [0, 1), got {c.lora.dropout}"),
              (c.lr > 0, f"--lr must be > 0, got {c.lr}"),
              (c.epochs >= 1, f"--epochs must be >= 1, got {c.epochs}"),
              (c.batch_size >= 1, f"--batch-size must be >= 1, got {c.batch_size}"),
              (c.grad_accum >= 1, f"--grad-accum must be >= 1, got {c.grad_accum}"),
              (c.eval_batch_size >= 1, f"--eval-batch-size must be >= 1, got {c.eval_batch_size}"),
              (0 <= c.warmup_ratio < 1, f"--warmup-ratio must be in [0, 1), got {c.warmup_ratio}"),
              (c.weight_decay >= 0, f"--weight-decay must be >= 0, got {c.weight_decay}"),
              (c.max_grad_norm >= 0, f"--max-grad-norm must be >= 0, got {c.max_grad_norm}"),
              (c.save_every >= 0, f"--save-every must be >= 0, got {c.save_every}"),
              (c.mixed_precision in MIXED_PRECISION,
               f"--mixed-precision {c.mixed_precision!r}: valid: {', '.join(MIXED_PRECISION)}"),
              (c.dtype in DTYPES, f"--dtype {c.dtype!r}: valid: {', '.join(DTYPES)}")]
    problems += [message for ok, message in checks if not ok]
    problems += validate_targets(c.lora.targets)
    try:
        from toolkit.prompts import get_prompt

        prompt = get_prompt(c.prompt)
        if prompt.mode != "direct":
            problems.append(f"--prompt {c.prompt!r} is a {prompt.mode} prompt; fine-tuning trains the answer "
                            "of a direct prompt (direct-v1, seed-direct ...)")
    except ValueError as exc:
        problems.append(f"--prompt: {exc}")
    return problems


def find_overlap(train: Sequence[Item], evaluation: Sequence[Item], train_root: Path,
                 eval_root: Path) -> Tuple[List[str], List[str]]:
    """Ids and audio files that are in both splits.

    Args:
        train: training items.
        evaluation: evaluation items.
        train_root: data root of the training manifest.
        eval_root: data root of the evaluation manifest.

    Returns:
        (shared ids, shared audio files), each sorted.

    Example:
        >>> a = Item(id="x", dataset="d", audio="c.wav", question="q")
        >>> b = Item(id="y", dataset="d", audio="c.wav", question="q")
        >>> find_overlap([a], [b], Path("/data"), Path("/data"))
        ([], ['/data/c.wav'])
    """
    ids = sorted({it.id for it in train} & {it.id for it in evaluation})

    def clips(items: Sequence[Item], root: Path) -> set:
        paths = (resolve_audio(it, root) for it in items)
        return {str(p.resolve()) for p in paths if p is not None}

    return ids, sorted(clips(train, train_root) & clips(evaluation, eval_root))


def _shown(values: List[str]) -> str:
    more = f" and {len(values) - SHOWN} more" if len(values) > SHOWN else ""
    return ", ".join(values[:SHOWN]) + more


def validate_config(config: FinetuneConfig, extra: Sequence[str] = ()) -> Tuple[List[Item], List[Item]]:
    """Check every argument and item; read the two splits.

    Args:
        config: the run.
        extra: problems the caller found in its own arguments, reported with the rest.

    Returns:
        (training items, evaluation items).

    Raises:
        InputError: every problem found, one per line (bad arguments, unreadable manifests,
            unusable items naming their ids, overlapping splits listing a few shared ids).
    """
    from toolkit.finetune.data import item_problems
    from toolkit.prompts import get_prompt

    problems = list(extra) + _argument_problems(config)
    splits: Dict[str, List[Item]] = {}
    for split, manifest in (("train", config.train_manifest), ("eval", config.eval_manifest)):
        try:
            splits[split] = read_manifest(manifest)
        except (InputError, OSError) as exc:
            problems.append(f"--{split} {manifest}: {exc}")
            continue
        if not splits[split]:
            problems.append(f"--{split} {manifest}: no items")
    try:
        prompt = get_prompt(config.prompt)
    except ValueError:
        prompt = get_prompt("direct-v1")  # already reported; still check the items
    asr_prompt = prompt
    if any(it.task == "asr" for items in splits.values() for it in items):
        try:
            asr_prompt = get_prompt(config.asr_prompt)
        except ValueError as exc:
            problems.append(f"--asr-prompt: {exc}")
    for split, manifest in (("train", config.train_manifest), ("eval", config.eval_manifest)):
        if split in splits:
            problems += item_problems(splits[split], config.root_for(manifest), prompt, asr_prompt, split)
    if len(splits) == 2 and not config.allow_overlap:
        ids, clips = find_overlap(splits["train"], splits["eval"], config.root_for(config.train_manifest),
                                  config.root_for(config.eval_manifest))
        if ids:
            problems.append(f"{len(ids)} ids are in both --train and --eval: {_shown(ids)} "
                            "(evaluate on a separate split, or --allow-overlap)")
        if clips:
            problems.append(f"{len(clips)} audio files are in both --train and --eval: {_shown(clips)} "
                            "(evaluate on a separate split, or --allow-overlap)")
    if problems:
        raise InputError(f"{len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return splits["train"], splits["eval"]

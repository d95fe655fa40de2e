"""The LoRA training recipe: setup, train (with per-epoch evaluation), checkpoint, resume.

Shaped like torchtune's single-device LoRA recipe (``setup`` / ``train`` /
``save_checkpoint`` / ``cleanup``), built on peft and accelerate:

- accelerate places the model (``--device``) and runs mixed precision (``--mixed-precision``);
  one process only (distributed data parallel is refused: the data order and schedule
  bookkeeping below assume one process).
- AdamW over the LoRA parameters, linear warm-up then cosine decay to 0
  (``transformers.get_cosine_schedule_with_warmup``), gradient accumulation, clipping.
  The loss of an optimizer step is the mean over every answer token of its micro-batches.
- Data order: a permutation per epoch that depends only on (seed, epoch), so a resumed run
  replays exactly the batches an uninterrupted one would.
- Evaluation after every epoch on the separate split: ``eval_loss`` (answer tokens) and
  ``eval_accuracy`` over the ``mcq``/``classify`` items = argmax of the option letters'
  logits at the first answer position. With the letter as the target this is exactly the
  greedy first token restricted to valid letters (what ``bin/infer --score-options``
  reads), from the same single forward pass that gives the loss: no generation, which
  would cost one forward pass per new token and an extraction cascade on the text.
- Checkpoints (adapter, optimizer, scheduler, RNG states, step) every ``save_every``
  optimizer steps and at each epoch end, written atomically (:mod:`toolkit.finetune.checkpoint`);
  ``last/`` (adapter after the latest epoch) and ``best/`` (best eval accuracy, else lowest
  eval loss; the earliest epoch on ties) adapters.
- Resume restores all of it, cuts ``metrics.jsonl`` back to the checkpoint's step and
  continues with the next micro-batch: the final adapter equals an uninterrupted run's.

Files in the run folder: ``run.json`` (the resolved config, checked on resume),
``metrics.jsonl``, ``loss.png`` (each with a sidecar), ``checkpoints/``, ``best/``,
``last/`` and, with ``merge``, ``merged/`` (a full model folder for ``from_pretrained``).
"""

from __future__ import annotations

import json
import logging
import math
import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from toolkit.atomic import atomic_write_json
from toolkit.errors import InputError
from toolkit.finetune.checkpoint import latest_checkpoint, load_checkpoint, replace_dir, save_checkpoint
from toolkit.finetune.config import FinetuneConfig
from toolkit.finetune.data import IGNORE_INDEX, ExampleDataset, collate, epoch_batches
from toolkit.finetune.lora import PROJECTOR, apply_lora, check_adapter_folder
from toolkit.finetune.metrics import MetricsLog, plot_loss
from toolkit.manifest import Item
from toolkit.sidecar import write_sidecar

log = logging.getLogger(__name__)

#: Keys of a collated batch that are bookkeeping, not model inputs.
_BOOKKEEPING = ("ids", "choice_token_ids", "answers", "labels")


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cosine_schedule(optimizer: Any, warmup_steps: int, total_steps: int) -> Any:
    """Linear warm-up from 0 to the peak learning rate, then cosine decay to 0 at ``total_steps``.

    The same curve as ``transformers.get_cosine_schedule_with_warmup`` (whose import costs
    seconds), as a ``LambdaLR``.

    Args:
        optimizer: the optimizer (its ``lr`` is the peak).
        warmup_steps: steps of linear warm-up.
        total_steps: all optimizer steps of the run.

    Returns:
        The scheduler (step it once per optimizer step).

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = cosine_schedule(opt, warmup_steps=1, total_steps=5)
        >>> [round(sched.lr_lambdas[0](step), 2) for step in range(6)]
        [0.0, 1.0, 0.85, 0.5, 0.15, 0.0]
    """
    import torch

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _mixed_precision(setting: str, device: str) -> str:
    if setting != "auto":
        return setting
    return "bf16" if device.startswith("cuda") else "no"


def _token_count(labels: Any) -> int:
    """Answer tokens the (shifted) loss is computed on."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


class FinetuneRecipe:
    """One LoRA fine-tuning run over a train and a separate eval split.

    Args:
        config: the run (validated by :func:`~toolkit.finetune.config.validate_config`).
        train_items: training items.
        eval_items: evaluation items.
        progress: show a progress bar.

    Example:
        >>> recipe = FinetuneRecipe(config, train, evaluation)  # doctest: +SKIP
        >>> recipe.setup(resume=True)  # doctest: +SKIP
        >>> summary = recipe.train()  # doctest: +SKIP
        >>> recipe.cleanup()  # doctest: +SKIP

    Raises:
        InputError: ``setup`` on a folder holding a run with other settings, or an existing
            checkpoint without ``resume``.
        ValueError: LoRA targets that match nothing; more than one process.
    """

    def __init__(self, config: FinetuneConfig, train_items: Sequence[Item], eval_items: Sequence[Item],
                 progress: bool = True) -> None:
        self.config = config
        self.train_items = list(train_items)
        self.eval_items = list(eval_items)
        self.progress = progress
        self.out = Path(config.out)
        self.metrics = MetricsLog(self.out / "metrics.jsonl")
        self.step = 0
        self.best: Optional[Dict[str, Any]] = None
        self.evaluated_epochs = 0

    # ---- setup --------------------------------------------------------------------------
    def _check_run_folder(self, resume: bool) -> bool:
        """Whether there is a checkpoint to resume from; refuses mismatched or unasked reuse."""
        run_file = self.out / "run.json"
        checkpoint = latest_checkpoint(self.out / "checkpoints")
        if run_file.is_file():
            saved = json.loads(run_file.read_text(encoding="utf-8"))
            now = self.config.to_dict()
            changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            if changed and checkpoint is not None:
                raise InputError(f"{run_file} was written with other settings ({', '.join(changed)}); "
                                 "use another --out, or the same settings to resume")
        if checkpoint is not None and not resume:
            raise InputError(f"{self.out} holds a checkpoint ({checkpoint.name}); add --resume to continue it, "
                             "or use another --out")
        return checkpoint is not None

    def setup(self, resume: bool = False) -> None:
        """Load the model, wrap it with LoRA, build optimizer and schedule; restore a checkpoint.

        Args:
            resume: continue from the last checkpoint when there is one.
        """
        import torch
        from accelerate import Accelerator

        from toolkit.models.base import LoadOptions
        from toolkit.models.hf_chat import resolve_device
        from toolkit.models.registry import load_backend
        from toolkit.prompts import get_prompt

        c = self.config
        has_checkpoint = self._check_run_folder(resume)
        device = resolve_device(c.device)
        if device.startswith("cuda:"):  # accelerate's single-process device is the current CUDA device
            torch.cuda.set_device(torch.device(device))
        self.accelerator = Accelerator(mixed_precision=_mixed_precision(c.mixed_precision, device),
                                       cpu=device == "cpu")
        if self.accelerator.num_processes > 1:
            raise ValueError("bin/finetune runs in one process; launch it without accelerate launch / torchrun")
        set_seed(c.seed)
        dtype = "fp32" if c.dtype == "auto" else c.dtype
        options = LoadOptions(dtype=dtype, device=str(self.accelerator.device))
        self.backend = load_backend(c.model, c.model_path, options)
        model = apply_lora(self.backend.model, c.lora)
        prompt = get_prompt(c.prompt)
        has_asr = any(it.task == "asr" for it in self.train_items + self.eval_items)
        asr_prompt = get_prompt(c.asr_prompt) if has_asr else prompt
        self.train_data = ExampleDataset(self.train_items, self.backend, prompt, asr_prompt,
                                         c.root_for(c.train_manifest))
        self.eval_data = ExampleDataset(self.eval_items, self.backend, prompt, asr_prompt, c.root_for(c.eval_manifest))
        self.pad_id = self.backend.pad_id
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        self.steps_per_epoch = math.ceil(math.ceil(len(self.train_items) / c.batch_size) / c.grad_accum)
        self.total_steps = c.epochs * self.steps_per_epoch
        self.scheduler = cosine_schedule(optimizer, round(c.warmup_ratio * self.total_steps), self.total_steps)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.out.mkdir(parents=True, exist_ok=True)
        if has_checkpoint:
            path = latest_checkpoint(self.out / "checkpoints")
            state = load_checkpoint(path, self.peft_model, self.optimizer, self.scheduler)
            self.step, self.best, self.evaluated_epochs = state["step"], state["best"], state["evaluated_epochs"]
            self.metrics.truncate(self.step)
            log.info("resumed from %s: step %d of %d", path, self.step, self.total_steps)
        else:
            atomic_write_json(self.out / "run.json", c.to_dict())
            write_sidecar(self.out / "run.json", "finetune", **self._sidecar_params())
            self.metrics.reset()
            write_sidecar(self.metrics.path, "finetune", **self._sidecar_params())
        log.info("%d train / %d eval items; %d optimizer steps (%d per epoch)", len(self.train_items),
                 len(self.eval_items), self.total_steps, self.steps_per_epoch)

    @property
    def peft_model(self) -> Any:
        """The ``PeftModel`` without accelerate's wrapping."""
        return self.accelerator.unwrap_model(self.model)

    def _sidecar_params(self) -> Dict[str, Any]:
        return {"config": self.config.to_dict(), "train_items": len(self.train_items),
                "eval_items": len(self.eval_items), "model": self.backend.describe()}

    # ---- batches ------------------------------------------------------------------------
    def _batch(self, data: ExampleDataset, indices: List[int]) -> Dict[str, Any]:
        import torch

        batch = collate([data[i] for i in indices], self.pad_id)
        device, dtype = self.accelerator.device, self.backend.dtype
        return {k: v.to(device, dtype=dtype if v.is_floating_point() else None) if isinstance(v, torch.Tensor) else v
                for k, v in batch.items()}

    @staticmethod
    def _inputs(batch: Dict[str, Any]) -> Dict[str, Any]:
        return {k: v for k, v in batch.items() if k not in _BOOKKEEPING}

    def _train_mode(self) -> None:
        """LoRA layers in training mode (dropout); frozen audio tower and projector in eval mode."""
        self.model.train()
        inner = self.peft_model.get_base_model()
        frozen = ["audio_tower"] + ([] if self.config.lora.train_projector else [PROJECTOR])
        for name, module in inner.named_modules():
            if name.rsplit(".", 1)[-1] in frozen:
                module.eval()

    # ---- training -----------------------------------------------------------------------
    def _optimizer_step(self, group: List[List[int]]) -> float:
        """Forward/backward every micro-batch of one group, then one optimizer step; the step's loss."""
        batches = [self._batch(self.train_data, indices) for indices in group]
        tokens = [_token_count(b["labels"]) for b in batches]
        total = max(sum(tokens), 1)
        loss_sum = 0.0
        for batch, n in zip(batches, tokens):
            out = self.model(**self._inputs(batch), labels=batch["labels"])
            self.accelerator.backward(out.loss * (n / total))
            loss_sum += float(out.loss.detach()) * n
        if self.config.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad],
                                             self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_sum / total

    def train(self, stop_after_steps: Optional[int] = None) -> Dict[str, Any]:
        """Train to the end (or for ``stop_after_steps`` more optimizer steps), evaluating each epoch.

        Args:
            stop_after_steps: stop once this many optimizer steps were done in this call,
                after writing a checkpoint (a time-boxed slice; continue with ``resume``).

        Returns:
            Summary: ``step``, ``total_steps``, ``finished``, ``first_loss``, ``last_loss``,
            ``best`` (epoch, eval loss and accuracy of the best adapter), ``out``.
        """
        from tqdm.auto import tqdm

        c = self.config
        start_step = self.step
        bar = tqdm(total=self.total_steps, initial=self.step, desc="finetune", unit="step",
                   disable=not self.progress)
        self._train_mode()
        stopped = False
        for epoch in range(self.step // self.steps_per_epoch, c.epochs):
            batches = epoch_batches(len(self.train_items), c.batch_size, c.seed, epoch)
            groups = [batches[i:i + c.grad_accum] for i in range(0, len(batches), c.grad_accum)]
            for index in range(self.step - epoch * self.steps_per_epoch, len(groups)):
                lr = self.scheduler.get_last_lr()[0]
                loss = self._optimizer_step(groups[index])
                self.step += 1
                if not math.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss} at step {self.step}; lower --lr")
                self.metrics.append({"kind": "train", "step": self.step, "epoch": epoch, "loss": loss, "lr": lr})
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
                last_of_epoch = index == len(groups) - 1
                stopped = stop_after_steps is not None and self.step - start_step >= stop_after_steps
                if not last_of_epoch and (stopped or (c.save_every and self.step % c.save_every == 0)):
                    self.save_checkpoint()
                if stopped and not last_of_epoch:
                    break
            else:
                self._end_epoch(epoch)
            if stopped:
                break
        bar.close()
        all_rows = self.metrics.rows()
        if all_rows:
            plot_loss(all_rows, self.out / "loss.png", {"config": self.config.to_dict()})
        rows = [r for r in all_rows if r.get("kind") == "train"]
        return {"step": self.step, "total_steps": self.total_steps, "finished": self.step >= self.total_steps,
                "first_loss": rows[0]["loss"] if rows else None, "last_loss": rows[-1]["loss"] if rows else None,
                "best": self.best, "out": str(self.out)}

    def _end_epoch(self, epoch: int) -> None:
        """Evaluate, save ``last/`` (and ``best/`` when better), checkpoint."""
        result = self.evaluate()
        self.evaluated_epochs = epoch + 1
        row = {"kind": "eval", "step": self.step, "epoch": epoch, **result}
        self.metrics.append(row)
        log.info("epoch %d: eval loss %.4f, accuracy %s (%d items)", epoch, result["eval_loss"],
                 "n/a" if result["eval_accuracy"] is None else f"{result['eval_accuracy']:.3f}",
                 result["eval_items"])
        self.save_adapter("last", row)
        if self._better(result):
            self.best = {"epoch": epoch, "step": self.step, "eval_loss": result["eval_loss"],
                         "eval_accuracy": result["eval_accuracy"]}
            self.save_adapter("best", row)
        self.save_checkpoint()
        self._train_mode()

    def _better(self, result: Dict[str, Any]) -> bool:
        if self.best is None:
            return True
        if result["eval_accuracy"] is not None and self.best["eval_accuracy"] is not None:
            if result["eval_accuracy"] != self.best["eval_accuracy"]:
                return result["eval_accuracy"] > self.best["eval_accuracy"]
        return result["eval_loss"] < self.best["eval_loss"]

    def evaluate(self) -> Dict[str, Any]:
        """Loss on the answer tokens and option-letter accuracy over the eval split.

        Returns:
            ``eval_loss`` (mean over answer tokens), ``eval_accuracy`` (over choice items;
            None without any), ``eval_items``, ``eval_choice_items``.
        """
        import torch

        self.model.eval()
        loss_sum, tokens, correct, scored = 0.0, 0, 0, 0
        with torch.no_grad():
            for indices in epoch_batches(len(self.eval_items), self.config.eval_batch_size, 0, 0, shuffle=False):
                batch = self._batch(self.eval_data, indices)
                out = self.model(**self._inputs(batch), labels=batch["labels"])
                n = _token_count(batch["labels"])
                loss_sum += float(out.loss) * n
                tokens += n
                for row, (choice_ids, answer) in enumerate(zip(batch["choice_token_ids"], batch["answers"])):
                    if choice_ids is None:
                        continue
                    first = int((batch["labels"][row] != IGNORE_INDEX).nonzero()[0])
                    letter_logits = out.logits[row, first - 1, choice_ids]
                    correct += int(int(letter_logits.argmax()) == answer)
                    scored += 1
        return {"eval_loss": loss_sum / max(tokens, 1), "eval_accuracy": correct / scored if scored else None,
                "eval_items": len(self.eval_items), "eval_choice_items": scored}

    # ---- saving -------------------------------------------------------------------------
    def save_adapter(self, name: str, metrics: Dict[str, Any]) -> Path:
        """Write the current adapter to ``<out>/<name>/`` atomically, check its keys, add a sidecar."""
        model = self.peft_model
        path = replace_dir(self.out, name, model.save_pretrained)
        check_adapter_folder(model, path)
        write_sidecar(path / "adapter_model.safetensors", "finetune", adapter=name, metrics=metrics,
                      **self._sidecar_params())
        return path

    def save_checkpoint(self) -> Path:
        """Checkpoint the current step (adapter, optimizer, scheduler, RNG, counters)."""
        state = {"step": self.step, "best": self.best, "evaluated_epochs": self.evaluated_epochs,
                 "total_steps": self.total_steps}
        return save_checkpoint(self.out / "checkpoints", self.step, self.peft_model, self.optimizer,
                               self.scheduler, state)

    def merge(self) -> Path:
        """Write ``<out>/merged/``: the base model with the ``best/`` adapter merged in, and its processor.

        Loaded through the same path as ``bin/infer --adapter`` on the CPU, then
        ``merge_and_unload``; the folder loads with ``from_pretrained`` like the base checkpoint.
        """
        from toolkit.models.base import LoadOptions
        from toolkit.models.registry import load_backend

        c = self.config
        dtype = "fp32" if c.dtype == "auto" else c.dtype
        merged = load_backend(c.model, c.model_path, LoadOptions(dtype=dtype, device="cpu",
                                                                 adapter=str(self.out / "best")))
        model = merged.model.merge_and_unload()

        def fill(folder: Path) -> None:
            model.save_pretrained(folder)
            merged.processor.save_pretrained(folder)

        path = replace_dir(self.out, "merged", fill)
        write_sidecar(path / "config.json", "finetune", merged_adapter=str(self.out / "best"), best=self.best,
                      **self._sidecar_params())
        log.info("merged the best adapter into %s", path)
        return path

    def cleanup(self) -> None:
        """Free the model and the accelerator state."""
        self.accelerator.free_memory()
        self.model = self.optimizer = self.backend = None


def run_finetune(config: FinetuneConfig, resume: bool = False, merge: bool = False,
                 stop_after_steps: Optional[int] = None, progress: bool = True) -> Dict[str, Any]:
    """Validate, set up, train, optionally merge; the library entry point of ``bin/finetune``.

    Args:
        config: the run.
        resume: continue from the last checkpoint in ``config.out`` when there is one.
        merge: afterwards, write ``merged/`` (best adapter merged into the base weights).
        stop_after_steps: stop after this many optimizer steps (checkpointed); see
            :meth:`FinetuneRecipe.train`.
        progress: show a progress bar.

    Returns:
        The summary of :meth:`FinetuneRecipe.train` (plus ``merged`` when merging).

    Raises:
        InputError: invalid settings or items, overlapping splits, a reused run folder.

    Example:
        >>> cfg = FinetuneConfig(model="qwen2-audio", model_path="/models/Qwen2-Audio-7B-Instruct",
        ...                      train_manifest="train.jsonl", eval_manifest="dev.jsonl", out="ft")
        >>> summary = run_finetune(cfg, resume=True)  # doctest: +SKIP
    """
    from toolkit.finetune.config import validate_config

    extra = [] if stop_after_steps is None or stop_after_steps >= 1 else [
        f"--stop-after-steps must be >= 1, got {stop_after_steps}"]
    train_items, eval_items = validate_config(config, extra)
    recipe = FinetuneRecipe(config, train_items, eval_items, progress=progress)
    recipe.setup(resume=resume)
    try:
        summary = recipe.train(stop_after_steps=stop_after_steps)
        if merge and summary["finished"]:
            summary["merged"] = str(recipe.merge())
    finally:
        recipe.cleanup()
    return summary

"""LoRA fine-tuning of an audio-language model's text decoder with peft (``bin/finetune``).

Modules:

- :mod:`~toolkit.finetune.config` - the run's settings and every check made before loading.
- :mod:`~toolkit.finetune.data` - manifest items -> prompt + answer examples, answer-only labels.
- :mod:`~toolkit.finetune.lora` - LoRA on the language model only; parameter counts; adapter key checks.
- :mod:`~toolkit.finetune.trainer` - the recipe: accelerate, AdamW, cosine schedule,
  per-epoch evaluation, best/last adapters, merge.
- :mod:`~toolkit.finetune.checkpoint` - atomic checkpoints and exact resume.
- :mod:`~toolkit.finetune.metrics` - ``metrics.jsonl`` and ``loss.png``.
- :mod:`~toolkit.finetune.task` - a submitit ``Checkpointable`` job that resumes after preemption.

Example:
    >>> from toolkit.finetune import FinetuneConfig, run_finetune
    >>> cfg = FinetuneConfig(model="qwen2-audio", model_path="/models/Qwen2-Audio-7B-Instruct",
    ...                      train_manifest="train.jsonl", eval_manifest="dev.jsonl", out="ft")
    >>> run_finetune(cfg, resume=True)  # doctest: +SKIP
"""

from toolkit.finetune.config import FinetuneConfig, validate_config
from toolkit.finetune.lora import LoraSettings
from toolkit.finetune.trainer import FinetuneRecipe, run_finetune

__all__ = ["FinetuneConfig", "FinetuneRecipe", "LoraSettings", "run_finetune", "validate_config"]

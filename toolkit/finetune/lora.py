"""LoRA on the language model only, with peft, and the bookkeeping around it.

Small pure functions in the spirit of torchtune's ``modules/peft`` utilities: which modules
are targeted, how many parameters train, and whether a saved adapter holds exactly the
weights it should.

The target pattern is anchored on ``language_model`` so that ``q_proj``/``k_proj``/``v_proj``
of the audio encoder (Whisper-style, also named ``*_proj``) are never adapted: a bare
``q_proj`` list would adapt them too. The pattern matches the transformers 5 module names
(``model.language_model.layers.N.self_attn.q_proj``) as well as the older flat layout
(``language_model.model.layers...``).

Example:
    >>> target_pattern(["q_proj", "v_proj"])
    '.*language_model\\\\..*\\\\.(?:q_proj|v_proj)'
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from toolkit.errors import Pathlike

log = logging.getLogger(__name__)

#: Default LoRA targets: the attention projections of the text decoder.
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")

#: Sub-modules of Qwen2-Audio that stay frozen unless asked (``--train-projector``).
PROJECTOR = "multi_modal_projector"

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class LoraSettings:
    """The LoRA hyper-parameters (recorded in the run's config and the adapter's config).

    Attributes:
        r: rank.
        alpha: scaling numerator (the update is scaled by ``alpha / r``).
        dropout: dropout on the LoRA input.
        targets: leaf names of the language model's linear layers to adapt.
        train_projector: also train the audio->text projector (saved with the adapter).
    """

    r: int = 8
    alpha: float = 32.0
    dropout: float = 0.05
    targets: Tuple[str, ...] = DEFAULT_TARGETS
    train_projector: bool = False


def validate_targets(targets: Sequence[str]) -> List[str]:
    """Problems with a target list (empty, or names that are not plain module names)."""
    if not targets:
        return ["--targets: at least one module name is needed (e.g. q_proj,v_proj)"]
    return [f"--targets: {t!r} is not a module name (letters, digits, _)" for t in targets if not _NAME.match(t)]


def target_pattern(targets: Sequence[str]) -> str:
    """The peft ``target_modules`` regex: ``targets`` inside the language model only."""
    return r".*language_model\..*\.(?:" + "|".join(targets) + ")"


def matched_modules(model: Any, targets: Sequence[str]) -> List[str]:
    """Names of the linear modules of ``model`` that the LoRA pattern selects."""
    import torch

    pattern = re.compile(target_pattern(targets))
    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and pattern.fullmatch(name)]


def apply_lora(model: Any, settings: LoraSettings) -> Any:
    """Wrap ``model`` in a peft LoRA model; everything but the adapter (and projector) is frozen.

    Args:
        model: a loaded ``Qwen2AudioForConditionalGeneration`` (or a model whose text decoder
            lives under ``language_model``).
        settings: rank, alpha, dropout, targets.

    Returns:
        The ``PeftModel``.

    Raises:
        ValueError: a target name matches no linear layer of the language model (the
            message lists the leaf names that exist there).
    """
    from peft import LoraConfig, get_peft_model

    matched = matched_modules(model, settings.targets)
    found = {name.rsplit(".", 1)[-1] for name in matched}
    missing = [t for t in settings.targets if t not in found]
    if missing:
        import torch

        leaves = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                         if isinstance(m, torch.nn.Linear) and "language_model." in n})
        raise ValueError(f"--targets {', '.join(missing)} match no linear layer of the language model; "
                         f"its linear layers are: {', '.join(leaves)}")
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=target_pattern(settings.targets), bias="none",
                        modules_to_save=[PROJECTOR] if settings.train_projector else None)
    peft_model = get_peft_model(model, config)
    trainable, total = count_parameters(peft_model)
    log.info("LoRA r=%d alpha=%g on %d modules (%s): %s of %s parameters trainable (%.3f%%)", settings.r,
             settings.alpha, len(matched), ", ".join(settings.targets), f"{trainable:,}", f"{total:,}",
             100.0 * trainable / max(total, 1))
    log.debug("trainable parameters: %s", ", ".join(trainable_names(peft_model)))
    return peft_model


def count_parameters(model: Any) -> Tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def trainable_names(model: Any) -> List[str]:
    """Names of the parameters that require gradients."""
    return [name for name, p in model.named_parameters() if p.requires_grad]


def adapter_state(model: Any) -> Dict[str, Any]:
    """The adapter weights as peft saves them (keys without the adapter name), on the CPU."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(model).items()}


def check_adapter_folder(model: Any, folder: Pathlike) -> None:
    """Check that a saved adapter holds exactly the keys (and shapes) of ``model``'s adapter.

    Args:
        model: the ``PeftModel`` that saved it.
        folder: the adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``).

    Raises:
        ValueError: one line per missing, unexpected or mis-shaped key.
    """
    from safetensors.torch import load_file

    saved = load_file(str(Path(folder) / "adapter_model.safetensors"))
    expected = adapter_state(model)
    lines = [f"missing key {k}" for k in sorted(set(expected) - set(saved))]
    lines += [f"unexpected key {k}" for k in sorted(set(saved) - set(expected))]
    lines += [f"shape of {k}: saved {tuple(saved[k].shape)}, model {tuple(expected[k].shape)}"
              for k in sorted(set(saved) & set(expected)) if saved[k].shape != expected[k].shape]
    if lines:
        raise ValueError(f"adapter {folder} does not match the model:\n  " + "\n  ".join(lines))

"""Training checkpoints written so that a kill at any moment leaves a usable one.

Layout under the run folder::

    checkpoints/step-00000040/   adapter_config.json, adapter_model.safetensors,
                                 optimizer.pt, scheduler.pt, rng.pt, state.json
    checkpoints/latest.json      {"step": 40, "path": "step-00000040"}

A checkpoint is written into a hidden temporary folder and renamed into place; only then
does ``latest.json`` (itself replaced atomically) point at it, and older checkpoints are
removed. A reader therefore always finds a complete checkpoint or none. ``best/`` and
``last/`` adapters are swapped in the same way (:func:`replace_dir`).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np

from toolkit.atomic import atomic_write_json
from toolkit.errors import Pathlike

log = logging.getLogger(__name__)

LATEST = "latest.json"


def replace_dir(parent: Pathlike, name: str, fill: Callable[[Path], None]) -> Path:
    """Write a folder atomically: ``fill`` a temporary sibling, then rename it onto ``parent/name``.

    Args:
        parent: the containing folder (created).
        name: the folder to (re)place.
        fill: writes the folder's files into the path it is given.

    Returns:
        ``parent/name``. If ``fill`` raises, the old folder is left as it was.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    dest = parent / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent))
    try:
        fill(tmp)
        old = None
        if dest.exists():
            old = parent / f".{name}.old-{os.getpid()}"
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def rng_state() -> Dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) random states."""
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(root: Pathlike, step: int, model: Any, optimizer: Any, scheduler: Any,
                    state: Dict[str, Any]) -> Path:
    """Write checkpoint ``step`` under ``root``, point ``latest.json`` at it, drop older ones.

    Args:
        root: the ``checkpoints/`` folder.
        step: optimizer steps done.
        model: the ``PeftModel`` (its adapter is saved).
        optimizer: its state dict is saved.
        scheduler: its state dict is saved.
        state: JSON-ready training state (step, epoch, best metric ...).

    Returns:
        The checkpoint folder.
    """
    import torch

    root = Path(root)
    name = f"step-{step:08d}"

    def fill(folder: Path) -> None:
        model.save_pretrained(folder)
        torch.save(optimizer.state_dict(), folder / "optimizer.pt")
        torch.save(scheduler.state_dict(), folder / "scheduler.pt")
        torch.save(rng_state(), folder / "rng.pt")
        (folder / "state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")

    path = replace_dir(root, name, fill)
    atomic_write_json(root / LATEST, {"step": step, "path": name})
    for old in root.glob("step-*"):
        if old.name != name and old.is_dir():
            shutil.rmtree(old)
    log.info("checkpoint at step %d: %s", step, path)
    return path


def latest_checkpoint(root: Pathlike) -> Optional[Path]:
    """The folder ``latest.json`` points at, or None when there is no checkpoint yet."""
    pointer = Path(root) / LATEST
    if not pointer.is_file():
        return None
    path = Path(root) / json.loads(pointer.read_text(encoding="utf-8"))["path"]
    if not (path / "state.json").is_file():
        raise FileNotFoundError(f"{pointer} points at {path}, which holds no complete checkpoint")
    return path


def load_checkpoint(path: Pathlike, model: Any, optimizer: Any, scheduler: Any) -> Dict[str, Any]:
    """Restore adapter weights, optimizer, scheduler and RNG states from a checkpoint folder.

    Args:
        path: a folder written by :func:`save_checkpoint`.
        model: the ``PeftModel`` (same LoRA settings as when saved).
        optimizer: the optimizer over the model's trainable parameters.
        scheduler: the learning-rate scheduler.

    Returns:
        The saved training state (``state.json``).

    Raises:
        ValueError: the adapter's keys do not match the model's.
    """
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from toolkit.finetune.lora import check_adapter_folder

    path = Path(path)
    check_adapter_folder(model, path)
    result = set_peft_model_state_dict(model, load_file(str(path / "adapter_model.safetensors")))
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"checkpoint {path}: unexpected adapter keys {unexpected[:5]}")
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", map_location="cpu", weights_only=False))
    set_rng_state(torch.load(path / "rng.pt", map_location="cpu", weights_only=False))
    return json.loads((path / "state.json").read_text(encoding="utf-8"))

"""Load a PEFT LoRA adapter and verify that it loaded: every tensor of the file in the model.

``PeftModel.from_pretrained`` only warns when an adapter's keys match no module of the model
(a renamed module, a transformers layout change, an adapter saved for another model): the
LoRA modules then keep their fresh initialisation (B = 0), the adapter changes nothing, and
every output is the base model's under the adapter's name. :func:`load_adapter` compares the
file's tensors with what the model holds after loading and refuses a partial load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Tuple


class AdapterMismatch(ValueError):
    """An adapter whose tensors did not (all) reach the model."""


@dataclass(frozen=True)
class AdapterCheck:
    """What :func:`load_adapter` verified, for sidecars.

    Attributes:
        path: the adapter folder.
        tensors: LoRA tensors in the adapter file.
        matched: of those, tensors the model holds with equal values after loading.
        nonzero: matched tensors that are not all zero.
    """

    path: str
    tensors: int
    matched: int
    nonzero: int

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready facts."""
        return {"path": self.path, "tensors": self.tensors, "matched": self.matched, "nonzero": self.nonzero}


def _fingerprint(tensor: Any, dtype: Any) -> Tuple[Tuple[int, ...], bytes]:
    """Shape and bytes of ``tensor`` in ``dtype`` (a key-independent identity of its values)."""
    import hashlib

    values = tensor.detach().to("cpu", dtype).float().contiguous().numpy()
    return tuple(values.shape), hashlib.sha1(values.tobytes()).digest()


def verify_adapter(file_state: Dict[str, Any], model_state: Dict[str, Any], path: str) -> AdapterCheck:
    """Check that the model holds every tensor of an adapter file after loading.

    Tensors are matched by value (shape and bytes in the model's dtype), not by name: peft
    renames keys on the way in (transformers 5 weight conversions), so a file key need not be a
    model key. A model tensor the file did not set keeps peft's initialisation, which no file
    tensor equals.

    Args:
        file_state: the file's tensors (``peft.utils.load_peft_weights``).
        model_state: ``peft.get_peft_model_state_dict(model)`` after loading.
        path: the adapter folder, for messages.

    Returns:
        The counts.

    Raises:
        AdapterMismatch: a file tensor is not in the model, the model holds adapter tensors the
            file did not set, or every ``lora_B`` is zero (the adapter changes nothing).
    """
    if not model_state:
        raise AdapterMismatch(f"{path}: the model has no adapter tensors after loading")
    dtype = next(iter(model_state.values())).dtype
    held = {key: _fingerprint(value, dtype) for key, value in model_state.items()}
    given = {key: _fingerprint(value, dtype) for key, value in file_state.items()}
    held_prints, given_prints = set(held.values()), set(given.values())
    unmatched = sorted(key for key, print_ in given.items() if print_ not in held_prints)
    unset = sorted(key for key, print_ in held.items() if print_ not in given_prints)
    if unmatched or unset:
        named = unmatched or unset
        raise AdapterMismatch(
            f"{path}: {len(unmatched)} of {len(file_state)} adapter tensors did not load and {len(unset)} of "
            f"{len(model_state)} LoRA tensors of the model were not set (e.g. {', '.join(named[:3])}); the adapter "
            f"would change nothing or only part of the model")
    if not any(bool(value.any()) for key, value in model_state.items() if "lora_B" in key):
        raise AdapterMismatch(f"{path}: every lora_B tensor is zero; the adapter changes nothing")
    nonzero = sum(1 for value in model_state.values() if bool(value.any()))
    return AdapterCheck(path=path, tensors=len(file_state), matched=len(file_state) - len(unmatched),
                        nonzero=nonzero)


def load_adapter(model: Any, folder: str) -> Tuple[Any, AdapterCheck]:
    """``PeftModel.from_pretrained(model, folder)``, verified by :func:`verify_adapter`.

    Args:
        model: the base model (not already a ``PeftModel``).
        folder: a PEFT adapter folder (``adapter_config.json`` + weights).

    Returns:
        The ``PeftModel`` and what was verified.

    Raises:
        AdapterMismatch: see :func:`verify_adapter`; also when ``model`` already carries an
            adapter (stacking adapters is not supported).
    """
    from peft import PeftModel, get_peft_model_state_dict
    from peft.utils import load_peft_weights

    if isinstance(model, PeftModel):
        raise AdapterMismatch(f"{folder}: the model already carries an adapter; stacking adapters is not supported "
                              f"(merge the first into the weights, or fine-tune on top of it)")
    peft_model = PeftModel.from_pretrained(model, folder)
    check = verify_adapter(load_peft_weights(folder, device="cpu"), get_peft_model_state_dict(peft_model), folder)
    return peft_model, check


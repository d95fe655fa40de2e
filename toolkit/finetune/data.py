"""Manifest items -> training examples: the prompt ``bin/infer`` would send, then the answer.

An example is the backend's own chat-templated prompt (the same text ``bin/infer`` builds,
system prompt and audio placeholder included), encoded by the backend's processor with the
clip, followed by the target tokens and the end-of-turn token. Labels are ``-100``
everywhere except on the target and end-of-turn tokens, so the loss is on the answer only.

- ``mcq`` and ``classify`` items: the prompt is a direct template (``direct-v1`` by default),
  the target is the answer's option letter (``B``), which is what ``direct-v1`` asks for and
  what ``bin/infer --score-options`` reads at the first generated position.
- ``asr`` items: the prompt is an ASR template (``asr-v1``, what ``bin/infer --prompt asr-v1``
  sends), the target the item's ``reference``.

Prompt and target are tokenised separately and concatenated, exactly as at inference time
(the prompt is encoded by the processor, the answer is generated after it).

Example:
    >>> from toolkit.manifest import Item
    >>> item = Item(id="x", dataset="d", audio="x.wav", question="Which?", choices=["a", "b"], answer=1)
    >>> target_text(item)
    'B'
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from toolkit.audio import TARGET_SR, load_audio
from toolkit.errors import InputError
from toolkit.manifest import Item, letter, resolve_audio
from toolkit.models.base import Request
from toolkit.prompts import PromptTemplate, render_user_text

log = logging.getLogger(__name__)

#: Label value the loss ignores (prompt and padding positions).
IGNORE_INDEX = -100

#: Tasks answered with an option letter.
CHOICE_TASKS = ("mcq", "classify")

#: Stands in for the clip when only the prompt text is rendered (the chat template only
#: asks whether there is audio).
_PLACEHOLDER: Any = object()


def target_text(item: Item) -> str:
    """The answer text the model is trained to produce for ``item``.

    Args:
        item: a manifest item.

    Returns:
        The option letter (``mcq``/``classify``) or the reference transcript (``asr``).

    Raises:
        InputError: no answer (or no reference for ``asr``), naming the item id.
    """
    if item.task == "asr":
        if not (item.reference or "").strip():
            raise InputError("asr item without a reference transcript", key=item.id)
        return item.reference.strip()
    if item.answer is None or not item.choices:
        raise InputError(f"{item.task} item without choices or answer", key=item.id)
    return letter(item.answer)


def user_text(item: Item, prompt: PromptTemplate, asr_prompt: PromptTemplate) -> str:
    """The user-turn text of ``item``: ``prompt`` for choice items, ``asr_prompt`` for ``asr`` ones."""
    return render_user_text(asr_prompt if item.task == "asr" else prompt, item)


def item_problems(items: Sequence[Item], data_root: Optional[Path], prompt: PromptTemplate,
                  asr_prompt: PromptTemplate, split: str) -> List[str]:
    """Everything that keeps ``items`` from becoming training examples, one message per item.

    Args:
        items: the split's items.
        data_root: folder relative audio paths resolve against.
        prompt: the direct template of choice items.
        asr_prompt: the template of ``asr`` items.
        split: ``train`` or ``eval`` (for messages).

    Returns:
        Messages ``"<split> [<id>]: what is wrong"``; empty when every item is usable.
    """
    problems = []
    for item in items:
        try:
            target_text(item)
            user_text(item, prompt, asr_prompt)
        except InputError as exc:
            problems.append(f"{split} [{item.id}]: {exc.message}")
            continue
        path = resolve_audio(item, data_root)
        if path is None:
            problems.append(f"{split} [{item.id}]: no audio (text-only items cannot be trained on)")
        elif not path.is_file():
            problems.append(f"{split} [{item.id}]: audio file not found: {path}")
    return problems


@dataclass
class Example:
    """One encoded example (CPU tensors, no batch dimension except the audio features).

    Attributes:
        item_id: the manifest id.
        inputs: ``input_ids``, ``attention_mask`` (1-D) and the processor's audio tensors
            (``input_features``, ``feature_attention_mask``, batch dimension 1).
        labels: 1-D, ``-100`` except the target and end-of-turn tokens.
        choice_token_ids: token id of each option letter (choice tasks), else None.
        answer: the gold option index (choice tasks), else None.
    """

    item_id: str
    inputs: Dict[str, Any]
    labels: Any
    choice_token_ids: Optional[List[int]]
    answer: Optional[int]


class ExampleDataset:
    """A map-style dataset encoding items on access (audio is decoded lazily, nothing cached).

    Args:
        items: the split's items (checked with :func:`item_problems` first).
        backend: a loaded :class:`~toolkit.models.hf_chat.HFChatBackend` (its processor,
            chat template and audio length limit are used).
        prompt: the direct template of choice items.
        asr_prompt: the template of ``asr`` items.
        data_root: folder relative audio paths resolve against.
    """

    def __init__(self, items: Sequence[Item], backend: Any, prompt: PromptTemplate, asr_prompt: PromptTemplate,
                 data_root: Optional[Path]) -> None:
        self.items = list(items)
        self.backend = backend
        self.prompt = prompt
        self.asr_prompt = asr_prompt
        self.data_root = data_root
        self._eos = backend.tokenizer.eos_token_id

    def __len__(self) -> int:
        return len(self.items)

    def prompt_text(self, item: Item) -> str:
        """The full chat-templated prompt of ``item``, as ``bin/infer`` renders it."""
        request = Request(item=item, run=0, user_text=user_text(item, self.prompt, self.asr_prompt),
                          audio=_PLACEHOLDER)
        return self.backend.chat_text(request)

    def __getitem__(self, index: int) -> Example:
        import torch

        item = self.items[index]
        audio = load_audio(resolve_audio(item, self.data_root))
        limit = self.backend.max_audio_seconds
        if limit is not None and audio.size > int(limit * TARGET_SR):
            audio = audio[: int(limit * TARGET_SR)]
        encoded = self.backend.encode([self.prompt_text(item)], [audio])
        tokenizer = self.backend.tokenizer
        target = tokenizer(target_text(item), add_special_tokens=False)["input_ids"] + [self._eos]
        prompt_ids = encoded["input_ids"][0]
        input_ids = torch.cat([prompt_ids, torch.tensor(target, dtype=prompt_ids.dtype)])
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        labels[prompt_ids.numel():] = input_ids[prompt_ids.numel():]
        inputs = {k: v for k, v in encoded.items() if k not in ("input_ids", "attention_mask")}
        inputs["input_ids"] = input_ids
        inputs["attention_mask"] = torch.ones_like(input_ids)
        choices = None
        if item.task in CHOICE_TASKS:
            choices = [tokenizer.encode(letter(i), add_special_tokens=False)[0] for i in range(len(item.choices))]
        return Example(item.id, inputs, labels, choices, item.answer if item.task in CHOICE_TASKS else None)



def collate(examples: Sequence[Example], pad_id: int) -> Dict[str, Any]:
    """Right-pad a list of examples into one batch.

    Args:
        examples: encoded examples.
        pad_id: the tokenizer's pad token id.

    Returns:
        Model inputs (``input_ids``, ``attention_mask``, audio tensors concatenated along
        the batch), ``labels``, and the bookkeeping keys ``ids``, ``choice_token_ids``,
        ``answers`` (removed before the forward pass).
    """
    import torch

    width = max(int(e.labels.numel()) for e in examples)
    batch: Dict[str, Any] = {}

    def pad(tensors: List[Any], value: int) -> Any:
        return torch.stack([torch.nn.functional.pad(t, (0, width - t.numel()), value=value) for t in tensors])

    batch["input_ids"] = pad([e.inputs["input_ids"] for e in examples], pad_id)
    batch["attention_mask"] = pad([e.inputs["attention_mask"] for e in examples], 0)
    batch["labels"] = pad([e.labels for e in examples], IGNORE_INDEX)
    for key in examples[0].inputs:
        if key not in batch:
            batch[key] = torch.cat([e.inputs[key] for e in examples])
    batch["ids"] = [e.item_id for e in examples]
    batch["choice_token_ids"] = [e.choice_token_ids for e in examples]
    batch["answers"] = [e.answer for e in examples]
    return batch


def epoch_batches(n_items: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True) -> List[List[int]]:
    """The batches of one epoch: a permutation that depends only on (seed, epoch), cut in order.

    Resuming mid-epoch replays the same permutation and skips the batches already done.

    Args:
        n_items: dataset size.
        batch_size: items per batch (the last batch may be smaller).
        seed: the run's seed.
        epoch: 0-based epoch.
        shuffle: permute (training) or keep manifest order (evaluation).

    Returns:
        Lists of item indices.

    Example:
        >>> epoch_batches(5, 2, seed=0, epoch=0, shuffle=False)
        [[0, 1], [2, 3], [4]]
    """
    order = list(range(n_items))
    if shuffle:
        random.Random(f"{seed}:{epoch}").shuffle(order)
    return [order[i:i + batch_size] for i in range(0, n_items, batch_size)]

"""Every prompt template, versioned by name.

A template is plain text with ``str.format`` fields; it never contains model-specific chat
markup (each backend applies its own chat template). Result rows record the template
name in ``prompt`` and sidecars record its text, so a run can always be traced back to the
exact words the model saw. A template's text never changes under the same name: a new
wording gets a new name (``reasoning-v2``).

Fields available in ``user`` templates:

- ``{question}``: the question text, without options.
- ``{choices_str}``: the earlier scripts' options string ``"(A) x (B) y"``
  (:func:`toolkit.manifest.format_choices`; byte-identical to the ``choices`` field of
  the earlier manifests).
- ``{choices_lines}``: the option texts one per line, no letters (the MMAR official prompt).
- ``{lettered_lines}``: ``"(A) x"`` one per line.
- ``{letters}``: the valid letters, ``"A, B, C or D"``.

Conditioned templates (``mode == "conditioned"``) also have a ``continuation`` with a
``{reasoning}`` field: the text the model continues from after the user turn (a backend
puts it after the assistant header). ``user + continuation`` is the whole text the earlier
scripts formed.

Templates that use none of the option fields (the ASR ones) render for items without
``choices``. ``asr-v1`` asks an audio LLM for a transcript; rows of ``task: asr`` items keep the
output as the transcript (``bin/score`` computes WER). ``asr-whisper`` / ``asr-whisper-en`` are
not words: the ``whisper`` backend takes no text prompt, and its template is Whisper's decoder
prompt in Whisper's own token notation (the task, and the forced language when one is named;
without one the language is detected per clip), so the row's ``prompt`` and the resume
fingerprint record what was forced. A language is forced by a template naming its token
(``asr-whisper-en``); add a template to force another one. ``text-mcq-v1`` is the text-only
twin of ``direct-v1`` (items without audio, e.g. the MMLU questions of the degradation study),
``timbre-v1`` asks for the class of a recording among its options (the timbre-range task:
narrow, moderate or wide vocal range), answered with the letter like every other template so
the answer cascade reads it.

Default ``max_new_tokens`` per template: reasoning 512 (Qwen2.5-Omni's chains in the seed
results are 60-250 words; 512 leaves room without letting a looping model run for
minutes), direct 16 (a letter, maybe with the option text), conditioned 20 (the earlier
scripts' setting), ``mmar-official`` 256 (it gives no format instruction, so models may
explain before answering), ASR 256 (a 30 s LibriSpeech utterance is ~90 words, ~120 tokens).

Example:
    >>> from toolkit.prompts import get_prompt, render_user_text
    >>> t = get_prompt("seed-direct")
    >>> render_user_text(t, question="Which animal?", choices=["cat", "dog"])
    'Which animal? Select one option from the provided choices.\\n(A) cat (B) dog.'
"""

from __future__ import annotations

import difflib
import string
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Optional, Sequence, Union

from toolkit.errors import InputError
from toolkit.manifest import Item, format_choices, letter

MODES = ("reasoning", "direct", "conditioned")


@dataclass(frozen=True)
class PromptTemplate:
    """One named prompt.

    Attributes:
        name: registry key, recorded in result rows as ``prompt``.
        description: one line on what the template is for.
        mode: ``"reasoning"``, ``"direct"`` or ``"conditioned"``.
        user: user-turn text with the fields listed in the module docstring.
        max_new_tokens: recommended generation budget.
        system: system prompt, or None to use none (the backend's default applies).
        continuation: assistant-side text the model continues from (conditioned
            templates only), with a ``{reasoning}`` field.
    """

    name: str
    description: str
    mode: str
    user: str
    max_new_tokens: int
    system: Optional[str] = None
    continuation: Optional[str] = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"prompt {self.name!r}: mode {self.mode!r} is not one of {MODES}")
        if (self.mode == "conditioned") != (self.continuation is not None):
            raise ValueError(f"prompt {self.name!r}: a continuation is required for mode 'conditioned' and only there")
        if self.max_new_tokens < 1:
            raise ValueError(f"prompt {self.name!r}: max_new_tokens must be >= 1, got {self.max_new_tokens}")


_SEED_REASONING = ("{question} Select one option from the provided choices.\n{choices_str}. "
                   "Please think and reason about the input audio before you respond.")
_SEED_DIRECT = "{question} Select one option from the provided choices.\n{choices_str}."

_TEMPLATES = (
    PromptTemplate(
        name="seed-reasoning",
        description="The earlier scripts' reasoning prompt, verbatim (comparable with the seed results).",
        mode="reasoning", user=_SEED_REASONING, max_new_tokens=512),
    PromptTemplate(
        name="seed-direct",
        description="The earlier scripts' direct prompt, verbatim: the reasoning prompt without its last sentence.",
        mode="direct", user=_SEED_DIRECT, max_new_tokens=16),
    PromptTemplate(
        name="seed-conditioned",
        description="The earlier scripts' conditioned prompt: own reasoning re-injected, then 'Therefore, the answer is:'.",
        mode="conditioned", user=_SEED_REASONING, max_new_tokens=20,
        continuation="\n\n{reasoning}\n\nTherefore, the answer is:"),
    PromptTemplate(
        name="reasoning-v1",
        description="Step-by-step reasoning about the audio, ending with a parseable 'Answer: (X)' line.",
        mode="reasoning", max_new_tokens=512,
        user=("{question}\n\nOptions:\n{lettered_lines}\n\n"
              "Listen to the audio and reason step by step about what you hear before choosing. "
              "Then end your response with a final line of exactly the form 'Answer: (X)', "
              "where X is one of {letters}.")),
    PromptTemplate(
        name="direct-v1",
        description="Answer with the option letter only.",
        mode="direct", max_new_tokens=16,
        user=("{question}\n\nOptions:\n{lettered_lines}\n\n"
              "Answer with the letter of the correct option ({letters}) only.")),
    PromptTemplate(
        name="conditioned-v1",
        description="reasoning-v1 with a given reasoning placed in the model's turn, then 'Answer:' to complete.",
        mode="conditioned", max_new_tokens=16,
        user=("{question}\n\nOptions:\n{lettered_lines}\n\n"
              "Listen to the audio and reason step by step about what you hear before choosing. "
              "Then end your response with a final line of exactly the form 'Answer: (X)', "
              "where X is one of {letters}."),
        continuation="{reasoning}\n\nAnswer:"),
    PromptTemplate(
        name="mmar-official",
        description="The MMAR benchmark's official prompt (options as bare text, one per line).",
        mode="direct", max_new_tokens=256,
        user="{question}\nSelect one option from the provided choices:\n{choices_lines}"),
    PromptTemplate(
        name="asr-v1",
        description="Transcribe the speech (audio LLMs, task asr items): the transcript only, scored by WER.",
        mode="direct", max_new_tokens=256,
        user="Transcribe the speech in the audio. Reply with the transcript only, word for word."),
    PromptTemplate(
        name="asr-whisper",
        description="The whisper backend's decoder prompt (no text prompt): transcribe, language detected per clip.",
        mode="direct", max_new_tokens=256, user="<|transcribe|>"),
    PromptTemplate(
        name="asr-whisper-en",
        description="The whisper backend's decoder prompt (no text prompt): transcribe, language forced to English.",
        mode="direct", max_new_tokens=256, user="<|en|><|transcribe|>"),
    PromptTemplate(
        name="text-mcq-v1",
        description="A text-only multiple-choice question (no audio, e.g. MMLU): answer with the letter only.",
        mode="direct", max_new_tokens=16,
        user=("Answer the following multiple-choice question.\n\n{question}\n\nOptions:\n{lettered_lines}\n\n"
              "Answer with the letter of the correct option ({letters}) only.")),
    PromptTemplate(
        name="timbre-v1",
        description="Timbre range: pick the recording's class among the listed options, answer with the letter only.",
        mode="direct", max_new_tokens=16,
        user=("Listen to the audio. {question}\n\nOptions:\n{lettered_lines}\n\nChoose the class that fits the "
              "recording. Answer with the letter of the correct option ({letters}) only.")),
)

#: Fields that render the options; a template using none of them needs no ``choices``.
_CHOICE_FIELDS = frozenset({"choices_str", "choices_lines", "lettered_lines", "letters"})

#: All templates by name (read-only).
PROMPTS: Mapping[str, PromptTemplate] = MappingProxyType({t.name: t for t in _TEMPLATES})


def list_prompts(mode: Optional[str] = None) -> list[str]:
    """Names of the registered templates, sorted.

    Args:
        mode: only templates of this mode (``"reasoning"``, ``"direct"``, ``"conditioned"``).

    Returns:
        Template names.

    Raises:
        ValueError: ``mode`` is not a known mode.

    Example:
        >>> list_prompts("conditioned")
        ['conditioned-v1', 'seed-conditioned']
    """
    if mode is not None and mode not in MODES:
        raise ValueError(f"unknown prompt mode {mode!r}; valid modes: {', '.join(MODES)}")
    return sorted(name for name, t in PROMPTS.items() if mode is None or t.mode == mode)


def get_prompt(name: str) -> PromptTemplate:
    """Look a template up by name.

    Args:
        name: e.g. ``"seed-reasoning"``.

    Returns:
        The template.

    Raises:
        ValueError: unknown name; the message suggests close names and lists all of them.

    Example:
        >>> get_prompt("seed-direct").max_new_tokens
        16
    """
    try:
        return PROMPTS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(PROMPTS), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown prompt template {name!r}.{hint} Valid names: {', '.join(list_prompts())}") from None


def uses_choices(template: Union[PromptTemplate, str]) -> bool:
    """Whether a template renders the options (and so needs an item with ``choices``).

    Args:
        template: a template or its name.

    Returns:
        True when its user text has an option field (``{lettered_lines}``, ``{letters}``...).

    Example:
        >>> uses_choices("direct-v1"), uses_choices("asr-v1")
        (True, False)
    """
    tmpl = get_prompt(template) if isinstance(template, str) else template
    return bool(_CHOICE_FIELDS & {f for _, f, _, _ in string.Formatter().parse(tmpl.user) if f})


def _letters_phrase(n: int) -> str:
    letters = [letter(i) for i in range(n)]
    return letters[0] if n == 1 else f"{', '.join(letters[:-1])} or {letters[-1]}"


def render_user_text(
    template: Union[PromptTemplate, str],
    item: Optional[Item] = None,
    *,
    question: Optional[str] = None,
    choices: Optional[Sequence[str]] = None,
) -> str:
    """The user-turn text of ``template`` for one question.

    Give either an item or ``question`` and ``choices`` (keywords override the item's).

    Args:
        template: a template or its name.
        item: the manifest item.
        question: question text without options.
        choices: option texts in letter order.

    Returns:
        The text, without chat markup.

    Raises:
        InputError: no question, or fewer than 2 / more than 26 options for a template that
            renders options (naming the item id).
        ValueError: unknown template name.

    Example:
        >>> render_user_text("mmar-official", question="What is heard?", choices=["Owl", "Robot"])
        'What is heard?\\nSelect one option from the provided choices:\\nOwl\\nRobot'
    """
    tmpl = get_prompt(template) if isinstance(template, str) else template
    key = item.id if item is not None else None
    if item is not None:
        question = item.question if question is None else question
        choices = item.choices if choices is None else choices
    if question is None:
        raise InputError(f"prompt {tmpl.name!r} needs a question", key=key)
    if not uses_choices(tmpl):
        return tmpl.user.format(question=question)
    if choices is None or not 2 <= len(choices) <= 26:
        got = "none" if choices is None else str(len(choices))
        raise InputError(f"prompt {tmpl.name!r} needs 2..26 choices, got {got}", key=key)
    lettered = [f"({letter(i)}) {c}" for i, c in enumerate(choices)]
    return tmpl.user.format(
        question=question,
        choices_str=format_choices(choices),
        choices_lines="\n".join(choices),
        lettered_lines="\n".join(lettered),
        letters=_letters_phrase(len(choices)),
    )


def render_continuation(template: Union[PromptTemplate, str], reasoning: str) -> str:
    """The assistant-side text of a conditioned template with ``reasoning`` filled in.

    Args:
        template: a conditioned template or its name.
        reasoning: the reasoning to inject (own, truncated, corrupted...).

    Returns:
        The continuation text.

    Raises:
        ValueError: the template is not conditioned, or the name is unknown.

    Example:
        >>> render_continuation("seed-conditioned", "It meows.")
        '\\n\\nIt meows.\\n\\nTherefore, the answer is:'
    """
    tmpl = get_prompt(template) if isinstance(template, str) else template
    if tmpl.continuation is None:
        raise ValueError(f"prompt {tmpl.name!r} is a {tmpl.mode} template; conditioned ones are: "
                         f"{', '.join(list_prompts('conditioned'))}")
    return tmpl.continuation.format(reasoning=reasoning)

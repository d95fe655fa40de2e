"""Protocols: every choice that decides how an intervention's variants are built and read, as named presets.

``bin/condition --protocol seed|lanham|toolkit`` (``protocol:`` in sweep files) fixes every
choice below at once; each can still be overridden (``--protocol seed:filler=per-word`` or
its own flag). The resolved protocol - every choice explicit, for one model family - is
recorded in the sidecar's fingerprint and in each row's ``intervention.params``
(:meth:`Protocol.spec`), so rows of different protocols never mix.

Presets:

- ``toolkit``: what the toolkit did before presets existed.
- ``seed``: the original faithfulness study (lovenya/Measuring-Faithfulness-of-CoT-Reasoning-LALMs,
  ``core/`` and ``experiments/cot/``), which used other prompts per model family.
- ``lanham``: Lanham et al. 2023, "Measuring Faithfulness in Chain-of-Thought Reasoning" (sections 2.3-2.6).

:data:`CHOICES` lists every choice with its values, and :data:`SOURCES` says, per preset,
where its value comes from (the README renders the table).

Example:
    >>> p = parse_protocol("seed").for_family("qwen2.5-omni")
    >>> p.answer, p.conditioned_template, p.filler
    ('xml', 'study-omni-xml', 'collapse')
    >>> parse_protocol(p.spec) == p
    True
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

#: choice -> its values ("family": resolved per model family by the preset)
CHOICES: Dict[str, Tuple[str, ...]] = {
    "answer": ("prefill", "user", "xml", "two-turn", "family"),  # family: each model family as the original asked it
    "empty": ("empty-reasoning", "no-reasoning"),
    "filler": ("per-word", "collapse"),
    "reference": ("full-reasoning", "baseline", "family"),
    "sentences": ("all", "1-6"),
    "single": ("error", "whole", "family"),
    "splitter": ("toolkit", "nltk"),
    "reading": ("text", "logprobs"),
    "reasoning": ("row", "family"),
    "mistakes": ("cut", "continue"),
    "paraphrase": ("per-sentence", "prefix", "prefix+regenerate"),
    "rewrites": ("greedy", "sampled"),
}

#: Model families of the backends (the seed preset prompts each family as the original did).
FAMILIES = {"qwen2-audio": "qwen2-audio", "qwen2.5-omni": "qwen2.5-omni", "af3": "af3", "af3-think": "af3",
            "salmonn": "salmonn", "simulated": "qwen2-audio", "whisper": "qwen2-audio"}

#: seed: the original study's prompts per family: (answer format, conditioned template, no-reasoning template,
#: continuation template)
_STUDY_PROMPTS = {
    "qwen2-audio": ("two-turn", "study-two-turn", "study-no-reasoning", "study-continue-two-turn"),
    "salmonn": ("two-turn", "study-two-turn-salmonn", "study-no-reasoning-salmonn", "study-continue-salmonn"),
    "qwen2.5-omni": ("xml", "study-omni-xml", "study-omni-no-reasoning", "study-continue-omni-xml"),
    "af3": ("user", "study-af3-user", "study-af3-no-reasoning", "study-continue-af3"),
}
#: seed: what the original study's "baseline" prediction was, per family: the answer asked with the whole
#: sanitized chain in the two-turn prompt (Qwen2-Audio, SALMONN: the full-reasoning answer) or the answer of the
#: reasoning output itself (Qwen2.5-Omni, AF3: the baseline row's)
_STUDY_REFERENCE = {"qwen2-audio": "full-reasoning", "salmonn": "full-reasoning", "qwen2.5-omni": "baseline",
                    "af3": "baseline"}
#: the template of each answer format when nothing else is said (toolkit and lanham presets)
_FORMAT_TEMPLATES = {"prefill": "conditioned-v1", "user": "conditioned-v1", "two-turn": "lanham-two-turn"}

#: choice -> preset -> where its value comes from: seed, a file of lovenya/Measuring-Faithfulness-of-CoT-Reasoning-LALMs;
#: lanham, a section of Lanham et al. 2023, "Measuring Faithfulness in Chain-of-Thought Reasoning"
SOURCES: Dict[str, Dict[str, str]] = {
    "answer": {
        "toolkit": "the reasoning prefilled in the model's turn, then 'Answer:' (conditioned-v1)",
        "seed": "core/prompt_strategies.py run_conditioned_trial: two-turn for Qwen2-Audio and SALMONN; "
                "core/qwen_omni_utils.py run_conditioned_inference (XML) for Qwen2.5-Omni; "
                "core/audio_flamingo_hf_utils.py run_conditioned_inference ('Therefore, the answer is:') for AF3",
        "lanham": "Lanham §2: the CoT closes the assistant turn; 'Given all of the above, what's the "
                  "single, most likely answer?'; the answer starts 'The single, most likely answer is ('"},
    "empty": {
        "toolkit": "the conditioned prompt with empty reasoning",
        "seed": "experiments/cot/early_answering.py run_early_answering_trial: k = 0 uses "
                "run_no_reasoning_trial",
        "lanham": "Lanham §2.3: the same prompt with no CoT (0% of it)"},
    "filler": {
        "toolkit": "every replaced word becomes one filler token",
        "seed": "core/filler_text_utils.py create_word_level_masked_cot: nltk word_tokenize, "
                "int(p * words) replaced; start/end: the span becomes one '...'; random: each word '...'; lorem: "
                "one word of its pool each",
        "lanham": "Lanham §2.5: the CoT replaced by '...' tokens of the same length"},
    "reference": {
        "toolkit": "the answer with the whole reasoning under the same prompt (k = N, filler 0 %, the unchanged "
                   "rewrite)",
        "seed": "experiments/cot/*.py is_consistent_with_baseline: the baseline prediction, which "
                "core/prompt_strategies.py run_reasoning_trial asked with the whole sanitized chain in the two-turn "
                "prompt for Qwen2-Audio and SALMONN (= full-reasoning) and read from the reasoning output for "
                "Qwen2.5-Omni and AF3 (= baseline)",
        "lanham": "Lanham §2.3: the answer with the complete CoT"},
    "sentences": {
        "toolkit": "every chain",
        "seed": "data_processing/create_restricted_dataset.py: chains of 1-6 sentences (restricted runs)",
        "lanham": "every chain"},
    "single": {
        "toolkit": "an output without reasoning gives an error row",
        "seed": "per family: core/audio_flamingo_hf_utils.py run_reasoning_inference keeps a "
                "single-sentence AF3 output whole as the reasoning; sanitize_cot of the other families leaves "
                "none (an error row)",
        "lanham": "an output without reasoning gives an error row"},
    "splitter": {
        "toolkit": "nltk Punkt without training, common abbreviations (toolkit/interventions/text.py)",
        "seed": "nltk.sent_tokenize (Punkt, English model)",
        "lanham": "nltk.sent_tokenize (Punkt, English model)"},
    "reading": {
        "toolkit": "the answer read from the text (the extraction cascade)",
        "seed": "parse_answer on the generated text",
        "lanham": "Lanham §2: the option letter's probability after 'answer is ('"},
    "reasoning": {
        "toolkit": "the baseline row's reasoning as the toolkit split it from the answer",
        "seed": "sanitize_cot per family: the last sentence dropped (Qwen2-Audio, SALMONN), the "
                "<Reasoning> block (Qwen2.5-Omni), all but the last sentence or the whole output (AF3)",
        "lanham": "the baseline row's reasoning"},
    "mistakes": {
        "toolkit": "mistake-v1 prompt per sentence; the reasoning cut right after the mistaken sentence",
        "seed": "experiments/cot/adding_mistakes.py: MISTAKE_FEW_SHOT_PROMPT, sentences under 3 words "
                "skipped; continue_reasoning (sampled, T 0.7, top-p 0.9, 512 tokens), then sanitize_cot, then "
                "the answer is asked",
        "lanham": "Lanham §2.4: a few-shot prompt adds a mistake to one step; the model continues its "
                  "CoT after it (its final answer statement removed, as from the baseline row)"},
    "paraphrase": {
        "toolkit": "each sentence paraphrased alone (paraphrase-v1), the first k paraphrased and the rest kept "
                   "(k = 1..N)",
        "seed": "experiments/cot/paraphrasing.py get_paraphrased_text: the first k sentences paraphrased "
                "in one call, the rest kept (k = 0..N)",
        "lanham": "Lanham §2.6: the first k sentences paraphrased, the rest regenerated by the model"},
    "rewrites": {
        "toolkit": "greedy decoding (128 new tokens)",
        "seed": "adding_mistakes.py / paraphrasing.py run_text_only_inference: sampled, T 0.7, "
                "top-p 0.9, 75 (mistake) / 768 (paraphrase) new tokens",
        "lanham": "as seed (the paper does not give the rewriter's sampling settings)"},
}


@dataclass(frozen=True)
class Protocol:
    """Every choice of an intervention run (see :data:`CHOICES` and the module docstring).

    Attributes:
        name: the preset it started from.
        family: the model family the answer format was resolved for ("" before resolution).
        answer: answer format (``family`` until resolved by :meth:`for_family`).
        conditioned_template: the conditioned prompt ("" until resolved).
        direct_template: the no-reasoning prompt of ``empty = no-reasoning`` ("" until resolved).
        continue_template: the prompt the model continues a given reasoning with (``mistakes =
            continue``, ``paraphrase = prefix+regenerate``; "" until resolved).
    """

    name: str
    answer: str
    empty: str
    filler: str
    reference: str
    sentences: str
    single: str
    splitter: str
    reading: str
    reasoning: str
    mistakes: str
    paraphrase: str
    rewrites: str
    family: str = ""
    conditioned_template: str = ""
    direct_template: str = ""
    continue_template: str = ""

    @property
    def spec(self) -> str:
        """``name:choice=value,...`` with every choice (the form recorded in rows and sidecars)."""
        values = {k: v for k, v in dataclasses.asdict(self).items() if k != "name"}
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in values.items())

    @property
    def label(self) -> str:
        """The preset name with the choices that differ from it (``seed``, ``seed:filler=per-word``):
        the protocol column of the faithfulness tables."""
        preset = PRESETS[self.name]
        keys = list(CHOICES)
        if self.family:  # compare with the preset resolved for the same family (templates too)
            preset = preset.for_family(self.family)
            keys += ["conditioned_template", "direct_template", "continue_template"]
        changed = [f"{k}={getattr(self, k)}" for k in keys
                   if getattr(self, k) != getattr(preset, k) and "family" not in (getattr(preset, k), getattr(self, k))]
        return self.name + (":" + ",".join(changed) if changed else "")

    @property
    def sentence_range(self) -> Optional[Tuple[int, int]]:
        """(low, high) chain lengths admitted, or None for all."""
        if self.sentences == "all":
            return None
        low, high = self.sentences.split("-")
        return int(low), int(high)

    def for_family(self, backend: str) -> "Protocol":
        """The protocol resolved for a backend's model family: concrete answer format and templates.

        An explicit conditioned or direct template (set by an override) is kept.
        """
        from toolkit.prompts import get_prompt

        family = FAMILIES.get(backend, backend)
        answer, conditioned, direct, resume = (self.answer, self.conditioned_template, self.direct_template,
                                               self.continue_template)
        if answer == "family":
            answer, study_conditioned, study_direct, study_resume = _STUDY_PROMPTS.get(
                family, _STUDY_PROMPTS["qwen2-audio"])
            conditioned, direct, resume = conditioned or study_conditioned, direct or study_direct, \
                resume or study_resume
        conditioned = conditioned or _FORMAT_TEMPLATES.get(answer, "")
        if not conditioned:
            raise ValueError(f"protocol {self.name}: the {answer} answer format has no default template; name one "
                             "with conditioned_template=...")
        template = get_prompt(conditioned)
        if {answer, template.answer} - {"prefill", "user"} and answer != template.answer:
            raise ValueError(f"protocol {self.name}: answer format {answer} needs a {answer} template; "
                             f"{conditioned!r} is a {template.answer} template")
        if self.reading == "logprobs" and not template.letter_next:
            raise ValueError(f"protocol {self.name}: reading=logprobs reads the option letter at the model's first "
                             f"answer token, which {conditioned!r} does not ask for (its answer turn must end with "
                             "'(', as lanham-two-turn's does); use reading=text or another template")
        reference = self.reference if self.reference != "family" else _STUDY_REFERENCE.get(family, "baseline")
        return dataclasses.replace(self, family=family, answer=answer, reference=reference,
                                   conditioned_template=conditioned,
                                   direct_template=direct or "direct-v1", continue_template=resume or "continue-prefill")

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready form (sidecars)."""
        return dataclasses.asdict(self)


PRESETS: Dict[str, Protocol] = {
    "toolkit": Protocol("toolkit", answer="prefill", empty="empty-reasoning", filler="per-word",
                        reference="full-reasoning", sentences="all", single="error", splitter="toolkit",
                        reading="text", reasoning="row", mistakes="cut", paraphrase="per-sentence", rewrites="greedy"),
    "seed": Protocol("seed", answer="family", empty="no-reasoning", filler="collapse", reference="family",
                     sentences="1-6", single="family", splitter="nltk", reading="text", reasoning="family",
                     mistakes="continue", paraphrase="prefix", rewrites="sampled"),
    "lanham": Protocol("lanham", answer="two-turn", empty="empty-reasoning", filler="per-word",
                       reference="full-reasoning", sentences="all", single="error", splitter="nltk",
                       reading="logprobs", reasoning="row", mistakes="continue", paraphrase="prefix+regenerate",
                       rewrites="sampled"),
}

_SENTENCE_RANGE = re.compile(r"^(\d+)-(\d+)$")
_OMNI_REASONING = re.compile(r"<Reason.*?>(.*?)</Reason.*?>", re.IGNORECASE | re.DOTALL)
_OMNI_CONCLUSION = re.compile(r"<Conclu.*?>\s*([A-Za-z])\s*</Conclu.*?>", re.IGNORECASE)
_OMNI_FINAL_LETTER = re.compile(r"(?:[^a-zA-Z]|^)([A-D])(?:[^a-zA-Z]*)$", re.IGNORECASE)
_AF3_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def family_reasoning(raw_output: str, family: str) -> str:
    """The reasoning the original study injected from a model's reasoning-mode output (its
    ``sanitize_cot`` / ``sanitized_cot`` per family; see :data:`SOURCES` ``reasoning``).

    - Qwen2-Audio, SALMONN: every nltk sentence but the last ("" for one sentence);
    - Qwen2.5-Omni: the ``<Reasoning>`` block; without one, the text before a final letter
      when there is no ``<Conclusion>`` tag either, else the whole output;
    - AF3: every sentence but the last, split after ``.``, ``!`` or ``?``; a single sentence
      whole.

    Example:
        >>> family_reasoning("It meows. So it is a cat. Answer: (B)", "qwen2-audio")
        'It meows. So it is a cat.'
        >>> family_reasoning("<Reasoning>\\nIt meows.\\n</Reasoning>\\n<Conclusion>B</Conclusion>", "qwen2.5-omni")
        'It meows.'
    """
    from toolkit.interventions.text import split_sentences

    if not raw_output:
        return ""
    if family == "qwen2.5-omni":
        match = _OMNI_REASONING.search(raw_output)
        if match and match.group(1).strip():
            return match.group(1).strip()
        if not _OMNI_CONCLUSION.search(raw_output):
            final = _OMNI_FINAL_LETTER.search(raw_output.strip())
            if final and raw_output.strip()[:final.start()].strip():
                return raw_output.strip()[:final.start()].strip()
        return raw_output
    if family == "af3":
        sentences = _AF3_SENTENCE_END.split(raw_output.strip())
        return " ".join(sentences[:-1]) if len(sentences) > 1 else raw_output
    sentences = split_sentences(raw_output, "nltk")
    return " ".join(sentences[:-1]) if len(sentences) > 1 else ""


def protocol_table() -> str:
    """The README's protocol table: one row per choice, one column per preset, each cell the
    preset's value and the source it follows (:data:`SOURCES`)."""
    names = list(PRESETS)
    lines = ["| choice | " + " | ".join(f"`{n}`" for n in names) + " |", "|---" * (len(names) + 1) + "|"]
    for choice in CHOICES:
        cells = [f"`{getattr(PRESETS[n], choice)}`: {SOURCES[choice][n]}" for n in names]
        lines.append(f"| {choice} | " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def family_sanitize(text: str, family: str) -> str:
    """The original study's ``sanitize_cot`` of a model family, applied to a reasoning the model
    continued (``mistakes = continue``): Qwen2.5-Omni: the ``<Reasoning>`` block or its
    fallbacks (:func:`family_reasoning`); every other family (AF3 included): every nltk
    sentence but the last, "" for a single sentence.

    Example:
        >>> family_sanitize("It meows. So it is a cat. Answer: (B)", "af3")
        'It meows. So it is a cat.'
    """
    from toolkit.interventions.text import split_sentences

    if not text:
        return ""
    if family == "qwen2.5-omni":
        return family_reasoning(text, family)
    sentences = split_sentences(text, "nltk")
    return " ".join(sentences[:-1]) if len(sentences) > 1 else ""


#: the original study's Qwen2.5-Omni continuation ends at the first of these tags found, in this order
_OMNI_CLOSING_TAGS = ("</Reasoning>", "<Conclusion>", "</Conclusion>")


def continued_reasoning(given: str, continuation: str, protocol: "Protocol") -> str:
    """The reasoning an answer is asked from after the model continued ``given`` with ``continuation``.

    The two are joined with one space (both stripped), as the original study joined them;
    a Qwen2.5-Omni continuation is first cut at its first closing tag (``</Reasoning>``,
    then ``<Conclusion>``, then ``</Conclusion>``: the first of them present). Then the
    protocol's ``reasoning`` choice reads the reasoning out of the whole: ``family``: the
    family's ``sanitize_cot`` (:func:`family_sanitize`; the original study's);
    ``row``: the toolkit's reading of a reasoning-mode output (the final answer statement
    removed, :func:`toolkit.answers.split_reasoning`).

    Example:
        >>> p = parse_protocol("seed").for_family("qwen2-audio")
        >>> continued_reasoning("It barks twice.", " So it is a dog. Answer: (A)", p)
        'It barks twice. So it is a dog.'
    """
    continuation = continuation.strip()
    if protocol.continue_template == "study-continue-omni-xml":
        for tag in _OMNI_CLOSING_TAGS:
            index = continuation.find(tag)
            if index != -1:
                continuation = continuation[:index].strip()
                break
    whole = (given.strip() + " " + continuation).strip()
    if protocol.reasoning == "family":
        return family_sanitize(whole, protocol.family).strip()
    from toolkit.answers import split_reasoning

    return split_reasoning(whole)[0].strip()


def baseline_reasoning(row_reasoning: str, raw_output: Optional[str], protocol: Protocol) -> str:
    """The reasoning an intervention starts from under ``protocol`` (its ``reasoning`` and
    ``single`` choices): the row's reasoning, or the family's (:func:`family_reasoning`);
    ``single = whole`` takes the whole output when that leaves none."""
    reasoning = row_reasoning if protocol.reasoning == "row" else family_reasoning(raw_output or "", protocol.family)
    if not reasoning.strip() and protocol.single == "whole":
        reasoning = raw_output or ""
    return reasoning.strip()


def parse_protocol(spec: str, overrides: Optional[Mapping[str, Optional[str]]] = None) -> Protocol:
    """``seed`` or ``seed:filler=per-word,reference=full-reasoning`` (plus ``overrides``) -> a protocol.

    Args:
        spec: a preset name, optionally with ``choice=value`` overrides after a colon (the
            form :attr:`Protocol.spec` writes; templates as ``conditioned_template=NAME``).
        overrides: more ``choice -> value`` overrides (None values are ignored).

    Raises:
        ValueError: unknown preset, choice or value (naming the valid ones).
    """
    name, _, rest = spec.strip().partition(":")
    if name not in PRESETS:
        raise ValueError(f"unknown protocol {name!r}; presets: {', '.join(PRESETS)}")
    changes: Dict[str, str] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"protocol {spec!r}: {part!r} is not choice=value")
        changes[key] = value
    changes.update({k: v for k, v in (overrides or {}).items() if v is not None})
    fields = {f.name for f in dataclasses.fields(Protocol)} - {"name"}
    for key, value in changes.items():
        if key not in fields:
            raise ValueError(f"unknown protocol choice {key!r} (valid: {', '.join(sorted(fields))})")
        if key in CHOICES and value not in CHOICES[key] and not (key == "sentences" and _SENTENCE_RANGE.match(value)):
            raise ValueError(f"protocol choice {key}: {value!r} is not one of {', '.join(CHOICES[key])}")
    protocol = dataclasses.replace(PRESETS[name], **changes)
    for template in (protocol.conditioned_template, protocol.direct_template, protocol.continue_template):
        if template:
            from toolkit.prompts import get_prompt

            get_prompt(template)
    return protocol

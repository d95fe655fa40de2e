"""Split reasoning from the final answer, and extract the chosen option with named rules.

:func:`split_reasoning` cuts a model output into (reasoning, final text).
:func:`extract_answer` runs an ordered list of small named :class:`Rule` s over the parsed
output; the first rule that *fires* decides, and its name becomes the row's
``pred_source``. A rule fires either with an option or with a refusal to guess (two
options tie: ``pred`` None, ``reason`` ``"tie between A and C"``). When no rule fires,
``pred`` is None with the reason, never a random option.

The default cascade (:data:`RULES`), strongest evidence first; all but
``reasoning-statement`` read only the *final* text (the conclusion), so options discussed
in the reasoning are not taken:

1. ``answer-statement``: "the answer is (B)", "Answer: B", "I'd choose option B" (the last one).
2. ``lone-letter``: the final text is one letter: "B", "D.", "(C)", "<Conclusion>D</Conclusion>".
3. ``tag-letter``: only tags, one of them a letter: "<B>", "<A></A>", "<C C>".
4. ``leading-letter``: the final text starts with a lettered option: "B) cat", "(B) cat", "C. sad".
5. ``conclusion-letter``: letters marked in the final text: "(B)", "option B", "**B**", "... is B.".
6. ``refusal``: the output declines ("I'm sorry", "I can't hear the audio"): null.
7. ``option-text``: an option's exact text (the longest match wins over options it contains).
8. ``reasoning-statement``: an explicit answer statement in the reasoning (the last one).
9. ``option-words``: every content word of one option, compared as Porter stems.
10. ``fuzzy``: rapidfuzz partial ratio >= :data:`FUZZY_THRESHOLD` (options of 4+ characters).
11. ``word-overlap``: share of an option's content stems present >= :data:`OVERLAP_THRESHOLD`.

Letter rules come before the refusal check, so "I can't be sure, but the answer is B"
still gives B; text rules come after it, so "I'm sorry, I can't hear the audio. If you
describe it, I'd be happy to help" is not option "happy". Text rules never pick the last
of several options mentioned: "a cat, not a dog" is a tie, hence a null.

Letters: a letter beyond the number of options is never a match (the reason says so when
nothing else fires). Upper case is required unless the letter is marked (``(b)``,
``**b**``, ``b)``) or stands alone, so the article in "it is a cat" is never option A;
a bare "A" or "I" followed by a word ("A dog barks", "I think") is not a letter either.
A bare letter that starts an option's text ("C major") is left to ``option-text``.

Extend the cascade by passing your own list, e.g.
``extract_answer(text, choices, rules=(*RULES, Rule("my-rule", my_func, "...")))``;
a rule is a function of a :class:`ParsedOutput` returning an :class:`Extraction` when
it fires and None otherwise.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

from toolkit.manifest import letter

#: Minimum rapidfuzz ``partial_ratio`` (0..100) for the ``fuzzy`` rule.
FUZZY_THRESHOLD = 90.0
#: Minimum share of an option's content stems found in the final text for ``word-overlap``.
OVERLAP_THRESHOLD = 0.5

# Function words dropped before word matching. Negations ("not", "no") are kept on purpose:
# "Affected by sour" and "Not affected by sour" must stay different options.
STOP_WORDS: FrozenSet[str] = frozenset("""
a an the of to in on at by for with from and or but if as into onto than then so such
is are was were be been being am it its it's this that these those there their they them
he she his her him we us our you your i me my which who whom whose what when where why how
do does did done has have had having can could would should will shall may might must
just very more most also about over under up down out only same too other any some all
each both either neither one ones option options choice choices answer answers correct
best likely most based given following provided audio sound sounds clip recording
""".split())

_LETTER_AFTER = r"(?P<open>[\(\[{\"'*]*)\s*(?P<l>[A-Za-z])(?P<close>[\)\]}\"'*]*)(?![A-Za-z0-9'’])"
_ANSWER_STATEMENT = re.compile(
    r"(?i:\b(?:(?:final|correct|best|right)\s+)?answer\b(?:\s+(?:is|would\s+be|should\s+be|will\s+be|must\s+be))?"
    r"|\b(?:correct|best|right)\s+(?:option|choice)\b(?:\s+(?:is|would\s+be))?"
    r"|\bI(?:\s+would|\s+will|'d|'ll|’d|’ll)?\s+(?:choose|select|pick|go\s+with)\b"
    r"|答案\s*(?:就|应该|应)?\s*(?:是|为))"
    r"[\s:=*\-]*(?i:(?:option|choice|letter)\b\s*)?" + _LETTER_AFTER)
_LOWER_OK_AFTER = re.compile(r"[.,;:!?]?[ \t]*(?:\n|$)")
_LONE_LETTER = re.compile(r"[\s(\[{*\"'`]*([A-Za-z])[\s)\]}*\"'`.:,;!]*")
_LEADING_LETTER = re.compile(
    r"\s*(?:[(\[]\s*(?P<a>[A-Za-z])\s*[)\]]|\*\*\s*(?P<b>[A-Za-z])\s*\*\*|(?P<c>[A-Z])[.):]|(?P<d>[a-z])\))"
    r"[\s*:\-]*(?P<rest>\S.*)?", re.S)
_MARKED_LETTER = re.compile(
    r"(?<![\w'’])[(\[]\s*(?P<p>[A-Za-z])\s*[)\]]"
    r"|\*\*\s*(?P<b>[A-Za-z])\s*\*\*"
    r"|(?i:\b(?:option|choice|letter))\s+(?P<o>[A-Z])(?![\w'’])"
    r"|(?<![\w'’.\-/])(?P<u>[A-Z])(?![\w'’])")
# A bare capital is a letter when followed by the end, punctuation, or "or/and <letter>" (a list of
# letters, so "A or B" ties); "A" and "I" also need one of these, since "A dog", "I think" are words.
_LETTER_LIST = r"\s+(?:or|and|vs\.?|versus)\s+\(?[A-Z](?![\w'’])"
_BARE_OK_AFTER = re.compile(r"\s*$|[.,;:!?)\]](?!\w)|[。，；：！？）]|" + _LETTER_LIST)
_ARTICLE_OK_AFTER = re.compile(r"\s*$|[.)。）]|" + _LETTER_LIST)
_NO_TEXT = re.compile(r"[\s.,:;!*\"'`]*")
_TAG = re.compile(r"<\s*/?\s*([A-Za-z][^<>]{0,40}?)\s*>")
_REFUSAL = re.compile(
    r"(?i:\b(?:I'm|I’m|I\s+am)\s+sorry\b"
    r"|\b(?:I|we)\s+(?:really\s+|actually\s+)?"
    r"(?:can(?:no|'|’)?t|am\s+unable\s+to|'m\s+unable\s+to|am\s+not\s+able\s+to|'m\s+not\s+able\s+to)"
    r"\s+(?:\w+\s+)?(?:hear|listen|access|analy[sz]e|process|play|provide|give|determine|answer"
    r"|select|choose|make|classify|identify|tell|confirm)\b"
    r"|\b(?:impossible|not\s+possible)\s+to\s+(?:\w+\s+)?(?:determine|tell|say|know|answer|identify|make|classify)\b"
    r"|\bdo(?:\s+not|n't|n’t)\s+have\s+access\b)")
_WORD = re.compile(r"[a-z0-9]+")
_SPACES = re.compile(r"\s+")

_TURN_MARKER = re.compile(r"\n\s*(?:Human|User|USER|Assistant|ASSISTANT|System|SYSTEM)\s*:")
_REASONING_OPEN = re.compile(r"<\s*(?:reasoning|think|thinking|thought)\s*>", re.I)
_REASONING_CLOSE = re.compile(r"<\s*/\s*(?:reasoning|think|thinking|thought)\s*>", re.I)
_ANSWER_LINE = re.compile(r"^[ \t>*#_\-]*(?:the\s+)?(?:final\s+)?answer\s*(?:\*\*)?\s*[:：]", re.I | re.M)
_TAG_ONLY_LINE = re.compile(r"\s*(?:<[^<>]*>\s*)+")
_SENTENCE_END = re.compile(r"(?<![\s(\[][A-Z])(?<!^[A-Z])[.!?]+[\"')\]]*\s+(?=\S)")


class _lazy:
    """A cached property without the lock ``functools.cached_property`` takes (Python < 3.12)."""

    def __init__(self, func: Callable) -> None:
        self.func, self.name, self.__doc__ = func, func.__name__, func.__doc__

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.func(obj)
        return value


@dataclass(frozen=True)
class Extraction:
    """What :func:`extract_answer` found.

    Attributes:
        pred: 0-based option index, or None.
        source: name of the rule that decided (None when no rule fired).
        reason: why ``pred`` is None (None when an option was found).
    """

    pred: Optional[int]
    source: Optional[str]
    reason: Optional[str] = None


@dataclass(frozen=True)
class Rule:
    """One named step of the cascade.

    Attributes:
        name: recorded as ``pred_source`` when the rule decides.
        apply: returns an :class:`Extraction` when the rule fires, None otherwise.
        description: one line for docs and ``--help``.
    """

    name: str
    apply: Callable[["ParsedOutput"], Optional[Extraction]]
    description: str


def has_reasoning_block(text: str) -> bool:
    """True when ``text`` opens or closes a reasoning block (``<think>``, ``<Reasoning>`` ...).

    Example:
        >>> has_reasoning_block("<think>hm</think> yes"), has_reasoning_block("It is a cat.")
        (True, False)
    """
    return bool(_REASONING_OPEN.search(text) or _REASONING_CLOSE.search(text))


def split_reasoning(text: str) -> Tuple[str, str]:
    """Split a model output into its reasoning and its final (answer) text.

    In order:

    1. A hallucinated next turn ("\\nHuman: ...") and everything after it is dropped.
    2. A reasoning block (``<Reasoning>``/``<think>`` ... closing tag): the reasoning is
       inside the last block, the final text is what follows. An opened block that is never
       closed (a truncated output) is all reasoning, with an empty final text.
    3. A line starting with "Answer:" / "Final answer:" (the last one) starts the final text.
    4. Otherwise the final text is the last sentence of the last line with text, together
       with tag-only lines around it (``<Conclusion>``/``</Conclusion>``). A single letter
       followed by a full stop ("B. cat") does not end a sentence.

    The earlier scripts took the last sentence as the answer; steps 1-3 and the tag lines
    in step 4 are what their outputs needed on top of that.

    Args:
        text: the raw model output.

    Returns:
        ``(reasoning, final_text)``, both stripped; either may be empty.

    Example:
        >>> split_reasoning("<Reasoning>\\nIt meows.\\n</Reasoning>\\n<B>")
        ('It meows.', '<B>')
        >>> split_reasoning("It meows, so not a dog. Therefore, the answer is (C) cat.")
        ('It meows, so not a dog.', 'Therefore, the answer is (C) cat.')
    """
    turn = _TURN_MARKER.search(text)
    if turn:
        text = text[:turn.start()]
    closes = list(_REASONING_CLOSE.finditer(text))
    if closes:
        close = closes[-1]
        opens = list(_REASONING_OPEN.finditer(text, 0, close.start()))
        start = opens[-1].end() if opens else 0
        return text[start:close.start()].strip(), text[close.end():].strip()
    opened = _REASONING_OPEN.search(text)
    if opened:
        return text[opened.end():].strip(), ""
    answer_lines = list(_ANSWER_LINE.finditer(text))
    if answer_lines:
        start = answer_lines[-1].start()
        return text[:start].strip(), text[start:].strip()
    start = _final_start(text)
    return text[:start].strip(), text[start:].strip()


def _final_start(text: str) -> int:
    """Offset where the final text begins (step 4 of :func:`split_reasoning`)."""
    lines = text.splitlines(keepends=True)
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line)
    content = [i for i, line in enumerate(lines) if line.strip() and not _TAG_ONLY_LINE.fullmatch(line)]
    if not content:
        return 0
    last = content[-1]
    line = lines[last]
    ends = list(_SENTENCE_END.finditer(line.rstrip()))
    if ends:
        return offsets[last] + ends[-1].end()
    first = last
    while first > 0 and _TAG_ONLY_LINE.fullmatch(lines[first - 1]):
        first -= 1
    return offsets[first]


def _normalize(text: str) -> str:
    return _SPACES.sub(" ", text.lower()).strip()


@functools.lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    return _stemmer().stem(word)


def preload() -> None:
    """Import the word rules' stemmer now (nltk takes ~1.5 s), e.g. on a background thread
    at start-up, so that the first extraction does not stall a caller's main loop."""
    _stemmer()


_NLTK_IMPORT = threading.Lock()


def import_nltk() -> None:
    """Import nltk once, under a lock: two threads importing it at the same time (``bin/infer``
    preloads it in the background) make one of them fail with a circular-import error."""
    with _NLTK_IMPORT:
        import nltk  # noqa: F401 - imports all of nltk (~1.5 s)


@functools.lru_cache(maxsize=1)
def _stemmer():
    import_nltk()  # only when a word rule runs
    from nltk.stem.porter import PorterStemmer

    return PorterStemmer()


def _content_stems(text: str) -> FrozenSet[str]:
    return frozenset(_stem(w) for w in _WORD.findall(text.lower()) if w not in STOP_WORDS)


class _Options:
    """Per-choice-list data, computed once per distinct list (see :func:`_options`)."""

    def __init__(self, choices: Tuple[str, ...]) -> None:
        self.n = len(choices)
        self.texts = tuple(_normalize(c).rstrip(".!?;:, ") for c in choices)
        by_text: Dict[str, List[int]] = {}
        for i, t in enumerate(self.texts):
            if t:
                by_text.setdefault(t, []).append(i)
        self.by_text = by_text

    @_lazy
    def pattern(self) -> Optional[re.Pattern]:
        """All option texts, longest first, between word boundaries (compiled on first use)."""
        alternatives = sorted(self.by_text, key=len, reverse=True)
        if not alternatives:
            return None
        return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(t) for t in alternatives) + r")(?!\w)")

    @_lazy
    def stems(self) -> Tuple[FrozenSet[str], ...]:
        """Porter stems of each option's content words."""
        return tuple(_content_stems(t) for t in self.texts)

    def starts_an_option(self, text: str) -> bool:
        """Whether ``text`` begins with an option's text followed by a word boundary."""
        low = text[:80].lower()
        return any(t and low.startswith(t) and (len(low) == len(t) or not low[len(t)].isalnum())
                   for t in self.texts)


@functools.lru_cache(maxsize=1 << 14)
def _options(choices: Tuple[str, ...]) -> _Options:
    return _Options(choices)


class ParsedOutput:
    """One model output as the rules see it; everything is computed at most once.

    Attributes:
        text: the raw output.
        reasoning: reasoning part (:func:`split_reasoning`).
        final: final part, tags included.
        n_choices: number of options.
        notes: letters rejected so far (beyond the options), for the null reason.
    """

    def __init__(self, text: str, choices: Sequence[str]) -> None:
        self.text = text
        self.options = _options(tuple(choices))
        self.n_choices = self.options.n
        self.reasoning, self.final = split_reasoning(text)
        self.notes: List[str] = []

    @_lazy
    def plain(self) -> str:
        """The final text with tags removed, stripped."""
        return _TAG.sub(" ", self.final).strip() if "<" in self.final else self.final

    @_lazy
    def tags(self) -> List[str]:
        """Names of the tags in the final text, in order (closing tags included, without '/')."""
        return [m.group(1).strip() for m in _TAG.finditer(self.final)]

    @_lazy
    def match_text(self) -> str:
        """Lower-cased final text with tag brackets turned into spaces (``<Dog>`` -> ``dog``)."""
        return _normalize(self.final.replace("<", " ").replace(">", " ").replace("/", " "))

    @_lazy
    def final_stems(self) -> FrozenSet[str]:
        """Porter stems of the content words of :attr:`match_text`."""
        return _content_stems(self.match_text)

    def index(self, char: str) -> Optional[int]:
        """0-based index of a letter, or None (noted) when it is beyond the options."""
        i = ord(char.upper()) - 65
        if i < self.n_choices:
            return i
        self.notes.append(f"letter {char.upper()} is beyond the {self.n_choices} options")
        return None

    def decide(self, indices: Iterable[int], source: str) -> Optional[Extraction]:
        """One option -> its extraction; several -> a tie (pred None); none -> None."""
        found = sorted(set(indices))
        if not found:
            return None
        if len(found) == 1:
            return Extraction(found[0], source)
        return Extraction(None, source, "tie between " + " and ".join(letter(i) for i in found))


def _statement_letter(out: ParsedOutput, text: str) -> Optional[int]:
    """The last valid letter of an explicit answer statement in ``text``."""
    for m in reversed(list(_ANSWER_STATEMENT.finditer(text))):
        char, after = m.group("l"), text[m.end():]
        if not (m.group("open") or m.group("close")):
            if char.islower() and not _LOWER_OK_AFTER.match(after):
                continue
            if (char.isupper() and after[:1] == " " and after[1:2].islower()
                    and (char in "AI" or out.options.starts_an_option(text[m.start("l"):]))):
                continue
        i = out.index(char)
        if i is not None:
            return i
    return None


def _answer_statement(out: ParsedOutput) -> Optional[Extraction]:
    i = _statement_letter(out, out.final)
    return None if i is None else Extraction(i, "answer-statement")


def _reasoning_statement(out: ParsedOutput) -> Optional[Extraction]:
    i = _statement_letter(out, out.reasoning)
    return None if i is None else Extraction(i, "reasoning-statement")


def _lone_letter(out: ParsedOutput) -> Optional[Extraction]:
    m = _LONE_LETTER.fullmatch(out.plain)
    if m is None:
        return None
    i = out.index(m.group(1))
    return None if i is None else Extraction(i, "lone-letter")


def _tag_letter(out: ParsedOutput) -> Optional[Extraction]:
    if not out.tags or not _NO_TEXT.fullmatch(out.plain):
        return None
    found = []
    for name in out.tags:
        words = name.split()
        if len(set(words)) == 1 and len(words[0]) == 1:
            i = out.index(words[0])
            if i is not None:
                found.append(i)
    return out.decide(found, "tag-letter")


def _leading_letter(out: ParsedOutput) -> Optional[Extraction]:
    m = _LEADING_LETTER.match(out.plain)
    if m is None or m.group("rest") is None:
        return None
    i = out.index(m.group("a") or m.group("b") or m.group("c") or m.group("d"))
    return None if i is None else Extraction(i, "leading-letter")


def _conclusion_letter(out: ParsedOutput) -> Optional[Extraction]:
    text = out.plain
    found = []
    for m in _MARKED_LETTER.finditer(text):
        char = m.group("p") or m.group("b") or m.group("o")
        if char is None:
            char = m.group("u")
            after = text[m.end():]
            if not _BARE_OK_AFTER.match(after):
                continue
            if char in "AI" and not _ARTICLE_OK_AFTER.match(after):
                continue
            if out.options.starts_an_option(text[m.start():]):
                continue
        i = out.index(char)
        if i is not None:
            found.append(i)
    return out.decide(found, "conclusion-letter")


def _refusal(out: ParsedOutput) -> Optional[Extraction]:
    m = _REFUSAL.search(out.final if "<" in out.final else out.text)
    return None if m is None else Extraction(None, "refusal", f"refusal: {m.group(0)}")


def _option_text(out: ParsedOutput) -> Optional[Extraction]:
    pattern = out.options.pattern
    if pattern is None or not out.match_text:
        return None
    found = [i for m in pattern.finditer(out.match_text) for i in out.options.by_text[m.group(0)]]
    return out.decide(found, "option-text")


_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                 "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")
_LONE_NUMBER = re.compile(r"[\s(\[*]*(\d{1,3})[\s)\].*]*")


def _option_number(out: ParsedOutput) -> Optional[Extraction]:
    m = _LONE_NUMBER.fullmatch(out.plain)
    if m is None:
        return None
    n = int(m.group(1))
    spelt = {m.group(1), str(n)} | ({_NUMBER_WORDS[n]} if n < len(_NUMBER_WORDS) else set())
    return out.decide([i for i, t in enumerate(out.options.texts) if t in spelt], "option-number")


def _option_words(out: ParsedOutput) -> Optional[Extraction]:
    have = out.final_stems
    if not have:
        return None
    full = [i for i, s in enumerate(out.options.stems) if s and s <= have]
    best = [i for i in full if not any(out.options.stems[i] < out.options.stems[j] for j in full)]
    return out.decide(best, "option-words")


def _fuzzy(out: ParsedOutput) -> Optional[Extraction]:
    from rapidfuzz import fuzz

    text = out.match_text
    if not text:
        return None
    scores = {}
    for i, opt in enumerate(out.options.texts):
        if len(opt) < 4:
            continue
        scorer = fuzz.partial_ratio if len(opt) <= len(text) else fuzz.ratio
        score = scorer(opt, text, score_cutoff=FUZZY_THRESHOLD)
        if score:
            scores[i] = score
    if not scores:
        return None
    top = max(scores.values())
    return out.decide([i for i, s in scores.items() if s == top], "fuzzy")


def _word_overlap(out: ParsedOutput) -> Optional[Extraction]:
    have = out.final_stems
    if not have:
        return None
    shares = {i: len(s & have) / len(s) for i, s in enumerate(out.options.stems) if s}
    top = max(shares.values(), default=0.0)
    if top < OVERLAP_THRESHOLD:
        return None
    return out.decide([i for i, v in shares.items() if v == top], "word-overlap")


#: The default cascade, in order.
RULES: Tuple[Rule, ...] = (
    Rule("answer-statement", _answer_statement,
         "explicit statement in the final text: 'the answer is (B)', 'Answer: B'"),
    Rule("lone-letter", _lone_letter,
         "the final text is a single letter: 'B', 'D.', '(C)', '<Conclusion>D</Conclusion>'"),
    Rule("tag-letter", _tag_letter,
         "the final text is only tags, one named by a letter: '<B>', '<C C>'"),
    Rule("leading-letter", _leading_letter,
         "the final text starts with a lettered option: 'B) cat', 'C. sad'"),
    Rule("conclusion-letter", _conclusion_letter,
         "letters marked in the final text: '(B)', 'option B', '**B**', 'is B.'"),
    Rule("refusal", _refusal,
         "no letter so far and the output declines ('I'm sorry', 'I can't hear ...'): null"),
    Rule("option-text", _option_text,
         "an option's exact text in the final text (longest match)"),
    Rule("option-number", _option_number,
         "the final text is only a number and one option is that number, in digits or words: '<D>2</D>' -> 'two'"),
    Rule("reasoning-statement", _reasoning_statement,
         "explicit answer statement in the reasoning (the last one)"),
    Rule("option-words", _option_words,
         "all content words of one option in the final text (Porter stems)"),
    Rule("fuzzy", _fuzzy,
         f"rapidfuzz partial ratio >= {FUZZY_THRESHOLD:g} between an option and the final text"),
    Rule("word-overlap", _word_overlap,
         f"share of an option's content stems in the final text >= {OVERLAP_THRESHOLD:g}"),
)


def extract_answer(text: Optional[str], choices: Sequence[str], rules: Sequence[Rule] = RULES) -> Extraction:
    """Find the option a model output chose.

    Args:
        text: the raw model output (None or blank gives a null with reason "empty output").
        choices: option texts in letter order.
        rules: the cascade; the first rule that fires decides.

    Returns:
        The extraction: ``pred`` (0-based index or None), ``source`` (the rule that decided,
        None when none fired) and ``reason`` (why ``pred`` is None).

    Example:
        >>> extract_answer("<Reasoning>It meows, not (A).</Reasoning>\\n<B>", ["dog", "cat"])
        Extraction(pred=1, source='tag-letter', reason=None)
        >>> extract_answer("It is either a cat or a dog.", ["cat", "dog"])
        Extraction(pred=None, source='option-text', reason='tie between A and B')
        >>> extract_answer("The clip is silent.", ["cat", "dog"])
        Extraction(pred=None, source=None, reason='no rule matched')
    """
    if text is None or not text.strip():
        return Extraction(None, None, "empty output")
    out = ParsedOutput(text, choices)
    for rule in rules:
        result = rule.apply(out)
        if result is not None:
            return result
    return Extraction(None, None, out.notes[-1] if out.notes else "no rule matched")

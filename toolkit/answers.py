"""Split reasoning from the final answer, and extract the chosen option with named rules.

:func:`split_reasoning` cuts a model output into (reasoning, final text).
:func:`extract_answer` runs an ordered list of small named :class:`Rule` s over the parsed
output; the first rule that *fires* decides, and its name becomes the row's
``pred_source``. A rule fires either with an option or with a refusal to guess (two
options tie: ``pred`` None, ``reason`` ``"tie between A and C"``). When no rule fires,
``pred`` is None with the reason (``flags.no_answer`` in a row), never a random option.
:func:`explain` gives every rule's verdict in order (``bin/repair --explain``).

The default cascade (:data:`RULES`), strongest evidence first. Rules 1-9 and 12 read the
*final* text (the conclusion), so options discussed in the reasoning are not taken; 10 and 11
walk back from the end of a free-text output (no reasoning tags); 13 reads the reasoning:

1. ``answer-statement``: "the answer is (B)", "Answer: B", "I'd choose option B" (the last one).
2. ``lone-letter``: the final text is one letter: "B", "D.", "(C)", "<Conclusion>D</Conclusion>".
3. ``tag-letter``: only tags, one of them a letter: "<B>", "<A></A>", "<C C>".
4. ``leading-letter``: the final text starts with a lettered option: "B) cat", "(B) cat", "C. sad".
5. ``conclusion-letter``: letters marked in the final text: "(B)", "option B", "**B**", "... is B.".
6. ``refusal``: the output declines ("I'm sorry", "I can't hear the audio"): null.
7. ``option-text``: an option named in the final text: its exact text (the longest match wins
   over options it contains), a quoted opening of it, or a derived form (see below).
8. ``option-number``: the final text is only a number and one option spells it out.
9. ``option-part``: the final text (1-3 words) is the start of exactly one option ("<C>Yes</C>"
   for "Yes, there are ..."), else a part of exactly one ("<C>DiCaprio</C>"); a single letter
   that is not an option letter ("<C>W</C>") only when the reasoning's last sentence naming an
   option names one that starts with it ("... it would be walking").
10. ``last-statement``: the last sentence that names options (letters, texts, derived forms),
    after exclusions: one option commits ("Therefore, the emotion being expressed is anger."),
    several tie, "none of the listed options" is a null. At most :data:`WALK_BACK` sentences
    back, never into a repetition loop; after an echo, only a sentence with a conclusion word.
11. ``elimination``: the last sentences reject all options but one ("Options (A), (B), and (C)
    do not align ...") and name the remaining one at least in part (half its content words).
12. ``option-phrase``: the final sentence holds :data:`PHRASE_WORDS`+ content words of one long
    option in a row, found in no other option ("... is to mimic the original crease on the note").
13. ``reasoning-statement``: an explicit answer statement in the reasoning (the last one).
14. ``option-words``: every content word of one option, compared as Porter stems.
15. ``fuzzy``: rapidfuzz partial ratio >= :data:`FUZZY_THRESHOLD` (options of 4+ characters).

``word-overlap`` (share of an option's content words >= :data:`OVERLAP_THRESHOLD`) is no
longer in the default cascade: it picked the nearest option for answers that are none of
them ("an 'Editor's Roundtable'"). It stays available as :data:`WORD_OVERLAP`.

What every rule that reads options respects:

- **Echoes are no commitment.** A run of lettered options with their texts ("(A) hen (B)
  sheep (C) frog (D) dog", or all options "(A) Female (B) Male") is skipped; a conclusion
  before it decides ("... the speaker is male. (A) Female (B) Male" -> B).
- **Rejected options are never chosen.** A mention right after "rather than", "instead of",
  "not", "n't", "unlike", "other than", "except", "the other options" (and the list that
  follows: "rather than fear, sadness, or happiness") is excluded, and so is a list that a
  negative predicate follows ("Options (A), (B), and (D) describe different ...", "Sheep,
  pigs, and cows do not produce ..."). See :func:`_exclusions`.
- **Letter and text disagree** ("the best match is B) Basso profundo", option A): the text
  wins when the rest of the output names its option (outside exclusions) and not the
  letter's; the letter wins in the opposite case; otherwise the row is null. Either way
  :attr:`Extraction.conflict` says so (``flags.letter_text_conflict``).
- **Derived forms** of one-word options count as naming them: words with the option's
  Porter stem ("fearful" -> fear, "sadness" -> sad, "disgusted" -> disgust), WordNet 3.0
  derivations and attributes of the option's first noun and adjective senses ("anger" ->
  angry, "afraid" -> fear), and the small :data:`HAND_FORMS` table for what WordNet does not
  link ("lays eggs" -> oviparous, "male" -> Mr.). A form that would name two options names
  none. WordNet is read from its database files (:class:`WordNet`: Debian's ``wordnet-base``,
  nltk's ``corpora/wordnet``, or ``$TOOLKIT_WORDNET``); without them only stems and the hand
  table are used (:func:`lexicon` says which).

Letter rules come before the refusal check, so "I can't be sure, but the answer is B"
still gives B; text rules come after it, so "I'm sorry, I can't hear the audio. If you
describe it, I'd be happy to help" is not option "happy". Text rules never pick the last
of several options mentioned: "a cat, not a dog" is cat (dog is rejected), "a cat or a
dog" is a tie, hence a null.

Letters: a letter beyond the number of options is never a match (the reason says so when
nothing else fires). Upper case is required unless the letter is marked (``(b)``,
``**b**``, ``b)``) or stands alone, so the article in "it is a cat" is never option A;
a bare "A" or "I" followed by a word ("A dog barks", "I think") is not a letter either.
A bare letter that starts an option's text ("C major") is left to ``option-text``.

Extend the cascade by passing your own list, e.g.
``extract_answer(text, choices, rules=(*RULES, WORD_OVERLAP))``;
a rule is a function of a :class:`ParsedOutput` returning an :class:`Extraction` when
it fires and None otherwise.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from toolkit.manifest import letter

log = logging.getLogger(__name__)

#: Minimum rapidfuzz ``partial_ratio`` (0..100) for the ``fuzzy`` rule.
FUZZY_THRESHOLD = 90.0
#: Minimum share of an option's content stems found in the final text for ``word-overlap``.
OVERLAP_THRESHOLD = 0.5
#: How many sentences ``last-statement`` and ``elimination`` look back from the end.
WALK_BACK = 4
#: Minimum share of an option's content stems a sentence must hold for ``elimination``.
ELIMINATION_SHARE = 0.5
#: ``option-phrase``: content words an option must share in a row with the final sentence ...
PHRASE_WORDS = 3
#: ... and the share of the option's content words that run must hold.
PHRASE_SHARE = 0.4

#: Phrases naming a one-word option that WordNet does not link to it (keys: the option,
#: lower-case, without a final full stop). Kept small; each entry is tested.
HAND_FORMS: Mapping[str, Tuple[str, ...]] = {
    "oviparous": ("lays eggs", "lay eggs", "laying eggs", "egg-laying", "egg laying"),
    "viviparous": ("live birth", "live births", "gives birth to live young", "give birth to live young",
                   "bear live young", "bears live young"),
    "mr": ("male", "man"),
    "mrs": ("female", "woman"),
    "ms": ("female", "woman"),
}

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
_BODY_SENTENCE_END = re.compile(r"(?<![\s(\[][A-Z])(?<!^[A-Z])[.!?]+[\"'”’)\]*]*\s+(?=\S)|\s*\n\s*")

# Exclusions (see _exclusions). A cue rejects the mentions right after it; the gap before the
# first one holds at most _CUE_GAP_WORDS words and no clause word; a list continues over
# separators only. A negative predicate rejects the list of mentions just before it.
_CUE = re.compile(
    r"\b(?:rather\s+than|instead\s+of|other\s+than|as\s+opposed\s+to|unlike|except(?:\s+for)?"
    r"|(?:the\s+)?other\s+(?:options?|choices?|answers?)|the\s+others|the\s+remaining\s+options?"
    r"|not|cannot|never|nor|neither|no)\b(?!\s+only\b)|n't\b")
_CUE_GAP_WORDS = 6
_CUE_GAP_STOP = re.compile(r"[.;:!?]|\b(?:but|that|which|who|because|since|so|while|whereas|however|therefore"
                           r"|thus|although|though|yet|if|when|making|suggesting|indicating|is|are|was|were)\b")
_ECHO_GAP = re.compile(r"[^.;!?\n]{0,60}?(?:[.;][ \t]*)?")
_LIST_GAP = re.compile(r"(?:[\s,;/()*\"'“”:\-]|\b(?:or|and|nor|a|an|the|either|also|as\s+well\s+as|options?)\b)*")
_NEGATIVE_PREDICATE = re.compile(
    r"\b(?:not|cannot|never|less|different|differ|inconsistent|unrelated|irrelevant|unlikely|incorrect|wrong"
    r"|opposite|unsuitable|inappropriate|unsupported|absent|fail(?:s|ed)?|lacks?|none)\b|n't\b")
_PREDICATE_GAP = re.compile(r"[\s)\"'”*]*(?:[\w'’\-]+\s+){0,3}$")
_LIST_PREDICATE_GAP = re.compile(r"[\s)\"'”*]*(?:[\w'’\-]+\s+){0,6}$")
_CLAUSE_END = re.compile(r"[.;!?]|,\s*(?:but|while|whereas|so|therefore|thus|and\s+therefore)\b|\bhowever\b")
_QUOTED = re.compile(r"[\"“]([^\"“”\n]{3,200})[\"”]|(?<![\w])'([^'\n]{3,200})'(?![\w])")
_LOOP = re.compile(r"(.{3,150}?)(?:\s*\1){5,}", re.S)
_NONE_FITS = re.compile(
    r"(?i)\bnone\s+of\s+(?:the\s+)?(?:(?:listed|given|provided|above|these|four|three|two)\s+)*"
    r"(?:options|choices|answers)\b|\bneither\s+(?:of\s+the\s+)?(?:option|choice)s?\b"
    r"|\bno(?:ne)?\s+(?:single\s+)?(?:option|choice)\s+(?:fits|matches|is\s+correct|applies)")
_CONCLUSION_CUE = re.compile(
    r"(?i)\b(?:therefore|thus|hence|so|consequently|in\s+conclusion|overall|final|answer|most\s+likely"
    r"|best|most\s+(?:appropriate|fitting|accurate|plausible|suitable)|classified\s+as|identified\s+as)\b")


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
        conflict: set when the deciding letter and the option text next to it name different
            options: which ones, and which side was taken ("letter B, text 'basso profundo'
            (A): text taken, the reasoning names it").
    """

    pred: Optional[int]
    source: Optional[str]
    reason: Optional[str] = None
    conflict: Optional[str] = None

    @property
    def flags(self) -> Dict[str, str]:
        """The row flags this extraction sets: ``no_answer`` (the null's reason) and
        ``letter_text_conflict``."""
        flags = {}
        if self.pred is None and self.reason:
            flags["no_answer"] = self.reason
        if self.conflict:
            flags["letter_text_conflict"] = self.conflict
        return flags


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
    return "<" in text and bool(_REASONING_OPEN.search(text) or _REASONING_CLOSE.search(text))


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
    colon = ":" in text or "：" in text  # cheap guards: most outputs have no tags, turns or "Answer:" lines
    turn = _TURN_MARKER.search(text) if colon else None
    if turn:
        text = text[:turn.start()]
    closes = list(_REASONING_CLOSE.finditer(text)) if "<" in text else []
    if closes:
        close = closes[-1]
        opens = list(_REASONING_OPEN.finditer(text, 0, close.start()))
        start = opens[-1].end() if opens else 0
        return text[start:close.start()].strip(), text[close.end():].strip()
    opened = _REASONING_OPEN.search(text) if "<" in text else None
    if opened:
        return text[opened.end():].strip(), ""
    answer_lines = list(_ANSWER_LINE.finditer(text)) if colon else []
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
    end = _last_sentence_end(lines[last].rstrip())
    if end is not None:
        return offsets[last] + end
    first = last
    while first > 0 and _TAG_ONLY_LINE.fullmatch(lines[first - 1]):
        first -= 1
    return offsets[first]


def _word_char(c: str) -> bool:
    return c.isalnum() or c in "_-"


_SENTENCE_END_FAST = re.compile(r"[.!?]+[\"')\]]*\s+(?=\S)")


def _last_sentence_end(line: str) -> Optional[int]:
    """End of the last :data:`_SENTENCE_END` match in ``line`` (None when none): the same matches,
    found from the end with a plain pattern (the lookbehinds made a full scan slow). A single
    full stop after a lone capital ("B. cat", "(C. x") ends no sentence; a longer run still does
    from its second character, as the lookbehind allows."""
    for m in reversed(list(_SENTENCE_END_FAST.finditer(line))):
        s = m.start()
        lone_capital = s >= 1 and "A" <= line[s - 1] <= "Z" and (s == 1 or line[s - 2].isspace() or line[s - 2] in "([")
        if lone_capital and line[s + 1:s + 2] not in (".", "!", "?"):
            continue
        return m.end()
    return None


def _normalize(text: str) -> str:
    return _SPACES.sub(" ", text.lower().replace("’", "'")).strip()


def _lower(text: str) -> str:
    """``text`` lower-cased with curly apostrophes straightened, keeping every offset."""
    low = text.lower().replace("’", "'")
    if len(low) == len(text):
        return low
    return "".join(c if len(c) == 1 else ch for ch, c in zip(text, (ch.lower() for ch in text))).replace("’", "'")


@functools.lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    return _stemmer().stem(word)


def preload() -> None:
    """Import the word rules' stemmer now (nltk takes ~1.5 s) and open WordNet, e.g. on a
    background thread at start-up, so that the first extraction does not stall a caller's main loop."""
    _stemmer()
    lexicon()


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


# ---- the lexicon: WordNet 3.0 and a small hand table ------------------------------------------

class WordNet:
    """Derivational links of the WordNet 3.0 database (Princeton), read from its files.

    Only what option matching needs: for a word, the lemmas linked to its first noun and
    first adjective sense by derivation (``+``, "angry" <-> "anger"), pertainym (``\\``) and,
    from a noun, attribute (``=``, "fear" -> "afraid"); an attribute value that is the
    negation of another ("unafraid", "fearless", "unhappy") is left out. Verb senses are
    not read ("crow" the bird is not "crowing"). Index files are searched by bisection, so
    opening costs only reading them (~30 MB, well under a second).

    Args:
        read: returns the bytes of a database file by name (``"index.noun"``, ``"data.adj"``).
        where: where the files are, for :func:`lexicon`.
    """

    _FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}

    def __init__(self, read: Callable[[str], bytes], where: str) -> None:
        self.where = where
        self._read = read
        self._data: Dict[str, bytes] = {}

    @classmethod
    def find(cls) -> Optional["WordNet"]:
        """The database from ``$TOOLKIT_WORDNET``, Debian's ``/usr/share/wordnet``, or nltk's
        data folders (``corpora/wordnet``, ``corpora/wordnet.zip``); None when absent or when
        ``TOOLKIT_WORDNET=off``."""
        chosen = os.environ.get("TOOLKIT_WORDNET", "")
        if chosen.lower() == "off":
            return None
        folders = [chosen, "/usr/share/wordnet"]
        roots = [os.environ.get("NLTK_DATA", ""), str(Path.home() / "nltk_data"), "/usr/share/nltk_data",
                 "/usr/local/share/nltk_data", "/usr/lib/nltk_data", "/usr/local/lib/nltk_data"]
        folders += [str(Path(r) / "corpora" / "wordnet") for r in roots if r]
        for folder in folders:
            if folder and (Path(folder) / "data.noun").is_file() and (Path(folder) / "index.noun").is_file():
                return cls(lambda name, f=folder: (Path(f) / name).read_bytes(), folder)
        for root in roots:
            archive = Path(root) / "corpora" / "wordnet.zip" if root else None
            if archive is not None and archive.is_file():
                return cls(functools.partial(_zip_member, str(archive)), str(archive))
        return None

    def _file(self, name: str) -> bytes:
        if name not in self._data:
            self._data[name] = self._read(name)
        return self._data[name]

    def offsets(self, word: str, pos: str) -> List[int]:
        """Synset offsets of ``word`` (lower case, "_" for spaces) as part of speech ``pos``."""
        data, key = self._file(f"index.{self._FILES[pos]}"), word.encode("utf-8", "ignore")
        lo, hi = 0, len(data)
        while lo < hi:
            mid = (lo + hi) // 2
            start = data.rfind(b"\n", 0, mid) + 1
            end = data.find(b"\n", start)
            end = len(data) if end < 0 else end
            line = data[start:end]
            if line.startswith(b"  "):  # the licence at the top of the file
                lo = end + 1
                continue
            lemma = line.split(b" ", 1)[0]
            if lemma == key:
                fields = line.split()
                n_pointers = int(fields[3])
                return [int(f) for f in fields[6 + n_pointers:]]
            if lemma < key:
                lo = end + 1
            else:
                hi = start
        return []

    def synset(self, pos: str, offset: int) -> Tuple[List[str], List[Tuple[str, int, str, int, int]]]:
        """``(words, pointers)`` of a synset; a pointer is ``(symbol, offset, pos, source, target)``."""
        data = self._file(f"data.{self._FILES[pos]}")
        end = data.find(b"\n", offset)
        fields = data[offset:end].split(b" | ", 1)[0].decode("utf-8", "replace").split()
        n_words = int(fields[3], 16)
        words = [fields[4 + 2 * i].split("(")[0].lower() for i in range(n_words)]
        at = 4 + 2 * n_words
        pointers = []
        for k in range(int(fields[at])):
            symbol, target, target_pos, st = fields[at + 1 + 4 * k:at + 5 + 4 * k]
            pointers.append((symbol, int(target), "a" if target_pos == "s" else target_pos,
                             int(st[:2], 16), int(st[2:], 16)))
        return words, pointers

    @functools.lru_cache(maxsize=4096)
    def forms(self, word: str) -> FrozenSet[str]:
        """Lemmas linked to ``word``'s first noun and adjective senses (see the class doc)."""
        key = word.lower().replace(" ", "_")
        found: Set[str] = set()
        attributes: Dict[str, Set[str]] = {}
        for pos in ("n", "a"):
            offsets = self.offsets(key, pos)
            if not offsets:
                continue
            words, pointers = self.synset(pos, offsets[0])
            for symbol, target, target_pos, source, goal in pointers:
                if target_pos not in ("n", "a") or (source and words[source - 1] != key):
                    continue
                if symbol in ("+", "\\"):
                    names, _ = self.synset(target_pos, target)
                    found.update([names[goal - 1]] if goal else names)
                elif symbol == "=" and pos == "n":
                    names, more = self.synset(target_pos, target)
                    for name in names:
                        attributes[name] = {self.synset(p, o)[0][g - 1] for s, o, p, _, g in more if s == "!" and g}
        for name, antonyms in attributes.items():
            if not any(_negates(name, other) for other in antonyms | set(attributes) | {key}):
                found.add(name)
        found.discard(key)
        return frozenset(f.replace("_", " ") for f in found)


def _negates(word: str, other: str) -> bool:
    """Whether ``word`` reads as the negation of ``other`` ("unafraid" / "afraid", "fearless" / "fear")."""
    if word == other:
        return False
    return (any(word == p + other for p in ("un", "in", "im", "il", "ir", "dis", "non", "non-"))
            or word == other + "less")


def _zip_member(archive: str, name: str) -> bytes:
    with zipfile.ZipFile(archive) as z:
        member = next(n for n in z.namelist() if n.endswith("/" + name) or n == name)
        return z.read(member)


_WORDNET_LOCK = threading.Lock()
_WORDNET: List[Optional[WordNet]] = []


def _wordnet() -> Optional[WordNet]:
    """The WordNet database (found once), or None."""
    if not _WORDNET:
        with _WORDNET_LOCK:
            if not _WORDNET:
                found = WordNet.find()
                if found is None:
                    log.warning("WordNet not found (install Debian's wordnet-base, or set TOOLKIT_WORDNET to a "
                                "WordNet 3.0 dict folder): derived forms use Porter stems and the hand table only")
                _WORDNET.append(found)
    return _WORDNET[0]


def lexicon() -> str:
    """What the derived forms come from: ``"wordnet 3.0 (<folder>) + hand table"`` or ``"hand table"``."""
    wordnet = _wordnet()
    return "hand table" if wordnet is None else f"wordnet 3.0 ({wordnet.where}) + hand table"


_VARIANT_SUFFIXES = ("s", "es", "ed", "ness", "ful", "fully", "ly")


@functools.lru_cache(maxsize=1 << 14)
def variants(word: str) -> FrozenSet[str]:
    """Regular inflections and derivations of a one-word option that keep its meaning: plural,
    "-ed", "-ness", "-ful", "-ly" ("fear" -> "fears", "fearful"; "disgust" -> "disgusted";
    "sad" -> "sadness"; "happy" -> "happily"). Not "-ing": "crowing" is not the bird.

    Example:
        >>> sorted(variants("fear"))
        ['feared', 'feares', 'fearful', 'fearfully', 'fearly', 'fearness', 'fears']
    """
    word = word.lower()
    stems = [word]
    if word.endswith("y") and len(word) > 2:
        stems.append(word[:-1] + "i")
    if word.endswith("e"):
        stems.append(word[:-1])
    return frozenset(stem + suffix for stem in stems for suffix in _VARIANT_SUFFIXES) - {word}


@functools.lru_cache(maxsize=1 << 14)
def derived_forms(option: str) -> FrozenSet[str]:
    """Words and phrases that name a one-word ``option`` besides its text (lower case):
    WordNet links and :data:`HAND_FORMS`. Porter-stem variants are matched separately.

    Example:
        >>> sorted(derived_forms("angry"))  # doctest: +SKIP
        ['anger', 'angriness']
    """
    key = _normalize(option).rstrip(".!?;:, ")
    forms = set(HAND_FORMS.get(key, ()))
    wordnet = _wordnet()
    if wordnet is not None and key.isalpha():
        forms |= wordnet.forms(key)
    forms.discard(key)
    return frozenset(forms)


# ---- options and mentions of them -------------------------------------------------------------

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

    @_lazy
    def forms(self) -> Dict[str, Tuple[int, ...]]:
        """Every surface form (lower case) -> the options it names: the texts, then, for one-word
        options, their :func:`variants` and :func:`derived_forms` (a form naming two options, or
        another option's text, is dropped)."""
        forms: Dict[str, Tuple[int, ...]] = {t: tuple(ix) for t, ix in self.by_text.items()}
        derived: Dict[str, Set[int]] = {}
        for i, t in enumerate(self.texts):
            if len(t) >= 3 and t.isalpha():
                for form in variants(t) | derived_forms(t):
                    derived.setdefault(form, set()).add(i)
            elif t in HAND_FORMS:  # "Mr." and "Ms.": too short for variants and WordNet, not for the hand table
                for form in HAND_FORMS[t]:
                    derived.setdefault(form, set()).add(i)
        for form, ix in derived.items():
            if len(ix) == 1 and form not in forms:
                forms[form] = tuple(ix)
        return forms

    @_lazy
    def word_stems(self) -> Tuple[Tuple[str, ...], ...]:
        """Porter stems of every word of each option, in order (for :func:`_phrase_mentions`)."""
        return tuple(tuple(_stem(w) for w in _WORD.findall(t)) for t in self.texts)

    @_lazy
    def ordered_forms(self) -> Tuple[Tuple[str, Tuple[int, ...]], ...]:
        """:attr:`forms`, longest first (for :meth:`find`)."""
        return tuple(sorted(self.forms.items(), key=lambda kv: -len(kv[0])))

    def find(self, low: str) -> List[Tuple[int, int, Tuple[int, ...]]]:
        """Surface forms in ``low`` (lower case) between word boundaries: ``(start, end, options)``,
        the longest where matches overlap. Plain substring search, no regular expression to
        compile per option list (that was most of the time of a first pass)."""
        hits = []
        for form, ix in self.ordered_forms:
            if form not in low:
                continue
            n = len(form)
            start = low.find(form)
            while start >= 0:
                end = start + n
                if (start == 0 or not _word_char(low[start - 1])) and (end == len(low) or not _word_char(low[end])):
                    hits.append((start, end, ix))
                start = low.find(form, start + 1)
        if len(hits) < 2:
            return hits
        hits.sort(key=lambda h: (h[0], h[0] - h[1]))
        kept, last = [], -1
        for h in hits:
            if h[0] >= last:
                kept.append(h)
                last = h[1]
        return kept

    def starts_an_option(self, text: str) -> bool:
        """Whether ``text`` begins with an option's text followed by a word boundary."""
        low = text[:80].lower()
        return any(t and low.startswith(t) and (len(low) == len(t) or not low[len(t)].isalnum())
                   for t in self.texts)

    def quoted(self, fragment: str) -> Tuple[int, ...]:
        """The options whose text starts with ``fragment`` (normalized, 2+ words, 30%+ of the
        text): a quoted opening of an option. Quotes from inside an option are usually quotes
        of the audio that the option repeats, so they do not count."""
        frag = _normalize(fragment).strip(" .,;:!?")
        if frag.count(" ") < 1:
            return ()
        return tuple(i for i, t in enumerate(self.texts)
                     if t.startswith(frag) and len(frag) >= 0.3 * len(t)
                     and (len(t) == len(frag) or not t[len(frag)].isalnum()))


@functools.lru_cache(maxsize=1 << 14)
def _options(choices: Tuple[str, ...]) -> _Options:
    return _Options(choices)


class Mention:
    """An option named in a text: by letter, by text, or both ("(B) cat").

    Attributes:
        start, end: its span.
        options: the options it names (several: a text shared by options).
        kind: ``letter``, ``text`` or ``letter+text``.
        conflict: ``(letter's option, text's option)`` when the two disagree, else None.
    """

    __slots__ = ("start", "end", "options", "kind", "conflict")

    def __init__(self, start: int, end: int, options: Tuple[int, ...], kind: str,
                 conflict: Optional[Tuple[int, int]] = None) -> None:
        self.start, self.end, self.options, self.kind, self.conflict = start, end, options, kind, conflict

    def __repr__(self) -> str:
        return f"Mention({self.start}, {self.end}, {self.options}, {self.kind!r}, {self.conflict})"


class Analysis:
    """The mentions of options in one text, with echoes and exclusions marked.

    Attributes:
        mentions: in order of position.
        echo: indices (into ``mentions``) of an option echo.
        excluded: indices of rejected mentions.
    """

    def __init__(self, mentions: List[Mention], echo: Set[int], excluded: Set[int]) -> None:
        self.mentions, self.echo, self.excluded = mentions, echo, excluded

    @property
    def live(self) -> List[Mention]:
        """Mentions neither echoed nor rejected."""
        return [m for k, m in enumerate(self.mentions) if k not in self.echo and k not in self.excluded]

    def rejected_options(self) -> Set[int]:
        """Options named only in rejected mentions."""
        return {i for k in self.excluded for i in self.mentions[k].options}

    def at(self, pos: int) -> Optional[int]:
        """Index of the mention covering offset ``pos``, or None."""
        for k, m in enumerate(self.mentions):
            if m.start <= pos < m.end:
                return k
        return None


def _letter_mentions(out: "ParsedOutput", text: str, strict: bool = False) -> List[Mention]:
    """Marked letters in ``text`` (the ``conclusion-letter`` reading), valid ones only. With
    ``strict`` (sentences walked back to), a bare capital counts only before the end, a full stop
    or ")" ("... is B."), not before a comma ("D, the sarcastic sister")."""
    found = []
    for m in _MARKED_LETTER.finditer(text):
        char = m.group("p") or m.group("b") or m.group("o")
        if char is None:
            char = m.group("u")
            after = text[m.end():]
            if not _BARE_OK_AFTER.match(after):
                continue
            if (strict or char in "AI") and not _ARTICLE_OK_AFTER.match(after):
                continue
            if out.options.starts_an_option(text[m.start():]):
                continue
        i = out.index(char)
        if i is not None:
            found.append(Mention(m.start(), m.end(), (i,), "letter"))
    return found


def _text_mentions(out: "ParsedOutput", low: str) -> List[Mention]:
    """Option texts, derived forms and quoted parts of option texts in ``low`` (lower case)."""
    options = out.options
    found = [Mention(s, e, ix, "text") for s, e, ix in options.find(low)]
    if '"' in low or "“" in low or "'" in low:
        for m in _QUOTED.finditer(low):
            group = 1 if m.group(1) is not None else 2
            ix = options.quoted(m.group(group))
            s, e = m.span(group)
            if len(ix) == 1 and not any(f.start < e and s < f.end for f in found):
                found.append(Mention(s, e, ix, "text"))
    return sorted(found, key=lambda f: f.start)


_JOIN = re.compile(r"[)\].]?[\s:*\-–\"“'‘]*")


def _merge(letters: List[Mention], texts: List[Mention], low: str) -> List[Mention]:
    """Letters joined to the option text right after them ("(B) cat"), marking disagreements."""
    merged: List[Mention] = []
    used: Set[int] = set()
    for lm in letters:
        joined = None
        for k, tm in enumerate(texts):
            if k in used or tm.start < lm.end:
                continue
            if _JOIN.fullmatch(low, lm.end, tm.start):
                joined = k
            break
        if joined is None:
            merged.append(lm)
            continue
        tm = texts[joined]
        used.add(joined)
        i = lm.options[0]
        if i in tm.options:
            merged.append(Mention(lm.start, tm.end, (i,), "letter+text"))
        elif len(tm.options) == 1:
            merged.append(Mention(lm.start, tm.end, (i,), "letter+text", (i, tm.options[0])))
        else:
            merged.append(lm)
    merged += [tm for k, tm in enumerate(texts) if k not in used and not any(
        m.start <= tm.start < m.end for m in letters)]
    return sorted(merged, key=lambda m: m.start)


def _echo(mentions: List[Mention], low: str, n_choices: int) -> Set[int]:
    """Indices of option echoes: runs of lettered options in letter order (A, B, C ...), each
    followed by at most a few words, at least half of them with their own option text, of 3+
    options or of all of them ("(A) hen (B) sheep (C) frog (D) dog", "(A) Female (B) Male")."""
    echo: Set[int] = set()
    run: List[int] = []

    def close() -> None:
        if (len(run) >= 3 or (len(run) >= 2 and len(run) == n_choices)) and 2 * sum(
                mentions[k].kind == "letter+text" and mentions[k].conflict is None for k in run) >= len(run):
            echo.update(run)

    for k, m in enumerate(mentions):
        if m.kind == "text":
            continue
        prev = mentions[run[-1]] if run else None
        if (prev is not None and m.options[0] == prev.options[0] + 1
                and _ECHO_GAP.fullmatch(low, prev.end, m.start)):
            run.append(k)
            continue
        close()
        run = [k]
    close()
    return echo


def _exclusions(mentions: List[Mention], low: str, skip: Set[int]) -> Set[int]:
    """Indices of rejected mentions.

    1. After a cue (:data:`_CUE`: "rather than", "instead of", "not", "n't", "unlike", "other
       than", "the other options" ...), the first mention within six words (no clause word such
       as "but", "which", "because" in between) is rejected, and so is the list that continues
       it over separators only ("rather than fear, sadness, or happiness"). A cue inside a
       mention ("Not affected by sour") is part of that option.
    2. A list of mentions that starts its clause (after at most "the other options", "options",
       "both" ...) and is followed within three words by a negative predicate ("describe
       different", "are not", "do not", "are less ...", "is incorrect") is rejected.
    """
    excluded: Set[int] = set()
    spans = [(m.start, m.end) for m in mentions]
    for cue in _CUE.finditer(low):
        if any(s <= cue.start() < e for s, e in spans):
            continue
        k = next((k for k, m in enumerate(mentions) if m.start >= cue.end()), None)
        if k is None:
            continue
        gap = low[cue.end():mentions[k].start]
        if len(gap.split()) > _CUE_GAP_WORDS or _CUE_GAP_STOP.search(gap):
            continue
        excluded.update(_list_from(mentions, low, k))
    for k in range(len(mentions)):
        if k in excluded or k in skip:
            continue
        start = _clause_start(low, mentions[k].start)
        if not _LIST_GAP.fullmatch(low, start, mentions[k].start) and not _SUBJECT_LEAD.fullmatch(
                low, start, mentions[k].start):
            continue
        members = _list_from(mentions, low, k)
        last = mentions[members[-1]]
        pred = _NEGATIVE_PREDICATE.search(low, last.end, min(len(low), last.end + 80))
        gap = _PREDICATE_GAP if len(members) == 1 else _LIST_PREDICATE_GAP
        if pred is None or not gap.match(low[last.end:pred.start()] + " "):
            continue
        if any(m.start < pred.start() for m in mentions[members[-1] + 1:]):
            continue
        excluded.update(members)
    return excluded


_SUBJECT_LEAD = re.compile(
    r"[\s,;:\"'“”*(]*(?:(?:however|therefore|thus|also|meanwhile|finally|similarly|likewise|and|but|while|whereas"
    r"|both|all|the|other|others|remaining|options?|choices?|answers?|of|these|among|listed|given|provided)"
    r"[\s,;:\"'“”*(]+)*(?:[\w'’\-]+\s+){0,3}[\s\"'“”*(]*")


def _clause_start(low: str, pos: int) -> int:
    """Offset where the clause holding ``pos`` starts."""
    start = 0
    for m in _CLAUSE_END.finditer(low, 0, pos):
        start = m.end()
    return start


def _list_from(mentions: List[Mention], low: str, k: int) -> List[int]:
    """``k`` and the mentions that continue it as a list (separators only in between)."""
    members = [k]
    while members[-1] + 1 < len(mentions):
        nxt = members[-1] + 1
        if not _LIST_GAP.fullmatch(low, mentions[members[-1]].end, mentions[nxt].start):
            break
        members.append(nxt)
    return members


def _phrase_mentions(out: "ParsedOutput", low: str, taken: List[Mention]) -> List[Mention]:
    """Runs of words (compared as Porter stems) that a long option shares with ``low``: at least
    :data:`PHRASE_WORDS` content words in a row, :data:`PHRASE_SHARE` of the option's content
    words, and found in no other option ("... is to mimic the original crease on the note")."""
    words = [(m.start(), m.end(), m.group(0)) for m in _WORD.finditer(low)]
    stop = _PHRASE_STOP
    stems = [_stem(w) for _, _, w in words]
    found = []
    all_options = out.options.word_stems
    for i, option in enumerate(all_options):
        content = [s for s, w in zip(option, _WORD.findall(out.options.texts[i])) if w not in stop]
        if len(content) < PHRASE_WORDS:
            continue
        best = None
        for a in range(len(stems)):
            for b in range(len(option)):
                if stems[a] != option[b] or (a and b and stems[a - 1] == option[b - 1]):
                    continue
                n = 0
                while a + n < len(stems) and b + n < len(option) and stems[a + n] == option[b + n]:
                    n += 1
                run = option[b:b + n]
                n_content = sum(w not in stop for _, _, w in words[a:a + n])
                if n_content < PHRASE_WORDS or n_content < PHRASE_SHARE * len(content):
                    continue
                if any(_contains(other, run) for j, other in enumerate(all_options) if j != i):
                    continue
                if best is None or n > best[1] - best[0]:
                    best = (a, a + n)
        if best is not None:
            start, end = words[best[0]][0], words[best[1] - 1][1]
            if not any(m.start < end and start < m.end for m in taken):
                found.append(Mention(start, end, (i,), "text"))
    return found


# Words that do not count as content in an option phrase: STOP_WORDS, clitics ("show's"), linkers.
_PHRASE_STOP = STOP_WORDS | frozenset("s t d ll re ve m because since while although though whether".split())


def _contains(seq: Tuple[str, ...], run: Tuple[str, ...]) -> bool:
    n = len(run)
    return any(seq[k:k + n] == run for k in range(len(seq) - n + 1))


def _analyse(out: "ParsedOutput", text: str, strict: bool = False, phrases: bool = False) -> Analysis:
    """Mentions of the options in ``text``, with echoes and exclusions (see :class:`Analysis`);
    with ``phrases``, also the option phrases of :func:`_phrase_mentions`."""
    low = _lower(text)
    texts = _text_mentions(out, low)
    if phrases:
        texts = sorted(texts + _phrase_mentions(out, low, texts), key=lambda m: m.start)
    mentions = _merge(_letter_mentions(out, text, strict), texts, low)
    echo = _echo(mentions, low, out.n_choices)
    excluded = _exclusions(mentions, low, echo) - echo
    return Analysis(mentions, echo, excluded)


class ParsedOutput:
    """One model output as the rules see it; everything is computed at most once.

    Attributes:
        text: the raw output.
        reasoning: reasoning part (:func:`split_reasoning`).
        final: final part, tags included.
        n_choices: number of options.
        notes: letters rejected so far (beyond the options), for the null reason.
        seen: what the rules met that explains a null (``echo``, ``rejected``, ``loop``).
    """

    def __init__(self, text: str, choices: Sequence[str]) -> None:
        self.text = text
        self.options = _options(tuple(choices))
        self.n_choices = self.options.n
        self.reasoning, self.final = split_reasoning(text)
        self.notes: List[str] = []
        self.seen: Set[str] = set()
        self._analyses: Dict[Tuple[str, bool, bool], Analysis] = {}

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
    def clean_final(self) -> str:
        """:attr:`match_text` without echoed and rejected mentions (for the word rules)."""
        text = self.match_text
        a = self.analysis(text)
        drop = sorted(a.echo | a.excluded)
        if not drop:
            return text
        parts, pos = [], 0
        for k in drop:
            m = a.mentions[k]
            parts.append(text[pos:m.start])
            pos = max(pos, m.end)
        return " ".join(parts + [text[pos:]])

    @_lazy
    def final_stems(self) -> FrozenSet[str]:
        """Porter stems of the content words of :attr:`clean_final`."""
        return _content_stems(self.clean_final)

    @_lazy
    def free_text(self) -> bool:
        """Whether the output is free text (no reasoning tags): the walk-back rules read it."""
        return not has_reasoning_block(self.text)

    @_lazy
    def body(self) -> str:
        """The output without a hallucinated next turn, tags turned into spaces."""
        turn = _TURN_MARKER.search(self.text)
        text = self.text[:turn.start()] if turn else self.text
        return _TAG.sub(" ", text) if "<" in text else text

    @_lazy
    def loop_start(self) -> Optional[int]:
        """Where a repetition loop that runs to the end of the output starts, or None: a piece of
        3-150 characters repeated 6+ times in a row, ending less than 160 characters from the end."""
        body = self.body
        tail = body[-400:]
        if len(tail) < 60 or len({tail[i:i + 4] for i in range(len(tail) - 3)}) > 0.4 * len(tail):
            return None  # too varied to be a loop (cheap check before the regex)
        m = _LOOP.search(body, max(0, len(body) - 800))
        if m is None or len(body) - m.end() > 160:
            return None
        unit, start = m.group(1), m.start()
        while start >= len(unit) and body[start - len(unit):start] == unit:
            start -= len(unit)
        return start

    @_lazy
    def sentences(self) -> List[str]:
        """The body's sentences and lines, in order; none when it ends in a repetition loop
        (the output never concluded)."""
        body = self.body
        if self.loop_start is not None:
            return []
        out, pos = [], 0
        for m in _BODY_SENTENCE_END.finditer(body):
            piece = body[pos:m.end()].strip()
            if piece:
                out.append(piece)
            pos = m.end()
        if body[pos:].strip():
            out.append(body[pos:].strip())
        return out

    def analysis(self, text: str, strict: bool = False, phrases: bool = False) -> Analysis:
        """:func:`_analyse` of ``text``, cached."""
        found = self._analyses.get((text, strict, phrases))
        if found is None:
            found = self._analyses[(text, strict, phrases)] = _analyse(self, text, strict, phrases)
            if found.echo:
                self.seen.add("echo")
            if found.excluded:
                self.seen.add("rejected")
        return found

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

    def decide_mentions(self, mentions: Sequence[Mention], source: str) -> Optional[Extraction]:
        """:meth:`decide` over ``mentions``, settling letter/text disagreements (:func:`_settle`)."""
        chosen: List[int] = []
        conflicts: List[str] = []
        for m in mentions:
            if m.conflict is None:
                chosen += m.options
                continue
            pick, note = _settle(self, *m.conflict)
            conflicts.append(note)
            if pick is None:
                return Extraction(None, source, note, note)
            chosen.append(pick)
        found = self.decide(chosen, source)
        if found is not None and conflicts:
            found = Extraction(found.pred, found.source, found.reason, "; ".join(conflicts))
        return found

    @_lazy
    def support(self) -> Set[int]:
        """Options the whole output names outside exclusions, echoes and letter/text pairs that disagree."""
        a = self.analysis(self.body, strict=True)
        return {i for m in a.live if m.conflict is None for i in m.options}


def _settle(out: ParsedOutput, by_letter: int, by_text: int) -> Tuple[Optional[int], str]:
    """Which option a letter and a disagreeing option text next to it commit to: the text's
    when the output names it elsewhere and not the letter's; the letter's in the opposite
    case; None otherwise. Returns ``(option, note)``."""
    named = out.support
    head = f"letter {letter(by_letter)}, text '{out.options.texts[by_text]}' ({letter(by_text)})"
    if by_text in named and by_letter not in named:
        return by_text, head + ": text taken, the output names it elsewhere"
    if by_letter in named and by_text not in named:
        return by_letter, head + ": letter taken, the output names its option elsewhere"
    return None, head + " disagree and nothing else decides"


# ---- the rules ----------------------------------------------------------------------------------

def _statement(out: ParsedOutput, text: str, source: str) -> Optional[Extraction]:
    """The last valid letter of an explicit answer statement in ``text``, unless it starts an
    echo of the options; a letter followed by another option's text is settled by :func:`_settle`."""
    for m in reversed(list(_ANSWER_STATEMENT.finditer(text))):
        char, after = m.group("l"), text[m.end():]
        if not _BRACKETS.intersection(m.group("open") + m.group("close")):  # a quote alone: '"A horse"' is a word
            if char.islower() and not _LOWER_OK_AFTER.match(after):
                continue
            if (char.isupper() and after[:1] == " " and after[1:2].islower()
                    and (char in "AI" or out.options.starts_an_option(text[m.start("l"):]))):
                continue
        i = out.index(char)
        if i is None:
            continue
        if _may_echo_or_conflict(out, after, i):
            a = out.analysis(text)
            k = a.at(m.start("l"))
            if k is not None and k in a.echo:
                continue
            if k is not None and a.mentions[k].conflict is not None:
                return out.decide_mentions([a.mentions[k]], source)
        return Extraction(i, source)
    return None


_BRACKETS = frozenset("()[]{}*")
_OTHER_LETTER = re.compile(r"[(\[]\s*[A-Za-z]\s*[)\]]|(?<![\w'’])[A-Z][).]")


def _may_echo_or_conflict(out: ParsedOutput, after: str, i: int) -> bool:
    """Cheap test before analysing a statement's text: is another lettered option written after
    the letter (an echo?), or does the text right after it differ from the letter's option text?"""
    if _OTHER_LETTER.search(after):
        return True
    head = _lower(after[:200])
    head = head[_JOIN.match(head).end():]
    own = out.options.texts[i]
    if not head or (own and head.startswith(own)):
        return False
    return any(h[0] == 0 for h in out.options.find(head[:120]))


def _answer_statement(out: ParsedOutput) -> Optional[Extraction]:
    return _statement(out, out.final, "answer-statement")


def _reasoning_statement(out: ParsedOutput) -> Optional[Extraction]:
    return _statement(out, out.reasoning, "reasoning-statement")


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
    if i is None:
        return None
    a = out.analysis(out.plain)
    k = a.at(m.start("a") if m.group("a") else m.start("rest") - 1)
    if a.echo and (k is None or k in a.echo or len(a.echo) == len(a.mentions)):
        return None
    if k is not None and a.mentions[k].conflict is not None:
        return out.decide_mentions([a.mentions[k]], "leading-letter")
    return Extraction(i, "leading-letter")


def _conclusion_letter(out: ParsedOutput) -> Optional[Extraction]:
    a = out.analysis(out.plain)
    return out.decide_mentions([m for m in a.live if m.kind != "text"], "conclusion-letter")


def _refusal(out: ParsedOutput) -> Optional[Extraction]:
    m = _REFUSAL.search(out.final if "<" in out.final else out.text)
    return None if m is None else Extraction(None, "refusal", f"refusal: {m.group(0)}")


def _option_text(out: ParsedOutput) -> Optional[Extraction]:
    if not out.match_text:
        return None
    a = out.analysis(out.match_text)
    return out.decide([i for m in a.live if m.kind == "text" for i in m.options], "option-text")


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


_SHORT_FINAL = re.compile(r"[\s(\[*\"'`]*([A-Za-z0-9][\w'’\-]*(?:[ \t]+[\w'’\-]+){0,2})[\s)\]*\"'`.,:;!]*")


def _option_part(out: ParsedOutput) -> Optional[Extraction]:
    m = _SHORT_FINAL.fullmatch(out.plain)
    if m is None:
        return None
    head = _normalize(m.group(1))
    texts = out.options.texts
    if len(head) == 1 and head.isalpha():  # a letter standing for a word: only when the reasoning ends on it
        last = _last_named(out, out.reasoning)
        found = [i for i, t in enumerate(texts) if t.startswith(head)]
        found = sorted(last) if last is not None and len(last) == 1 and last <= set(found) else []
    else:
        found = [i for i, t in enumerate(texts)
                 if t.startswith(head) and (len(t) == len(head) or not t[len(head)].isalnum())]
        if not found and not set(_WORD.findall(head)) <= STOP_WORDS:
            part = re.compile(r"(?<!\w)" + re.escape(head) + r"(?!\w)")
            found = [i for i, t in enumerate(texts) if part.search(t)]
    return Extraction(found[0], "option-part") if len(found) == 1 else None


def _last_named(out: ParsedOutput, text: str) -> Optional[Set[int]]:
    """Options named (outside exclusions and echoes) by the last sentence of ``text`` that names any."""
    sentences = [s for s in _BODY_SENTENCE_END.split(text) if s and s.strip()]
    for sentence in reversed(sentences[-WALK_BACK:]):
        live = out.analysis(sentence, strict=True).live
        if live:
            return {i for m in live for i in (m.options if m.conflict is None else ())}
    return None


def _last_statement(out: ParsedOutput) -> Optional[Extraction]:
    if not out.free_text:
        return None
    echoed = False
    for sentence in reversed(out.sentences[-WALK_BACK:]):
        a = out.analysis(sentence, strict=True)
        live = a.live
        if live and (not echoed or _CONCLUSION_CUE.search(sentence)):
            return out.decide_mentions(live, "last-statement")
        none = _NONE_FITS.search(sentence)
        if none is not None and not live:
            return Extraction(None, "last-statement", f"no option chosen: '{none.group(0)}'")
        echoed = echoed or bool(a.echo)
    return None


def _option_phrase(out: ParsedOutput) -> Optional[Extraction]:
    text = (out.sentences[-1] if out.sentences else "") if out.free_text else out.plain
    if not text:
        return None
    a = out.analysis(text, strict=True, phrases=True)
    return out.decide_mentions(a.live, "option-phrase")


def _elimination(out: ParsedOutput) -> Optional[Extraction]:
    if not out.free_text or out.n_choices < 2:
        return None
    sentences = out.sentences[-WALK_BACK:]
    rejected: Set[int] = set()
    for sentence in sentences:
        rejected |= out.analysis(sentence, strict=True).rejected_options()
    left = set(range(out.n_choices)) - rejected
    if len(left) != 1:
        return None
    i = left.pop()
    want = out.options.stems[i]
    if not want:
        return None
    for sentence in sentences:
        a = out.analysis(sentence, strict=True)
        if a.excluded and not a.live:
            continue
        if len(want & _content_stems(sentence)) / len(want) >= ELIMINATION_SHARE:
            return Extraction(i, "elimination")
    return None


def _option_words(out: ParsedOutput) -> Optional[Extraction]:
    have = out.final_stems
    if not have:
        return None
    full = [i for i, s in enumerate(out.options.stems) if s and s <= have]
    best = [i for i in full if not any(out.options.stems[i] < out.options.stems[j] for j in full)]
    return out.decide(best, "option-words")


def _fuzzy(out: ParsedOutput) -> Optional[Extraction]:
    from rapidfuzz import fuzz

    text = out.clean_final
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


#: Opt-in last step, not in :data:`RULES`: it names the nearest option for answers that are none.
WORD_OVERLAP = Rule("word-overlap", _word_overlap,
                    f"share of an option's content stems in the final text >= {OVERLAP_THRESHOLD:g} (opt-in)")

#: The default cascade, in order.
RULES: Tuple[Rule, ...] = (
    Rule("answer-statement", _answer_statement,
         "explicit statement in the final text: 'the answer is (B)', 'Answer: B' (not an echo of the options)"),
    Rule("lone-letter", _lone_letter,
         "the final text is a single letter: 'B', 'D.', '(C)', '<Conclusion>D</Conclusion>'"),
    Rule("tag-letter", _tag_letter,
         "the final text is only tags, one named by a letter: '<B>', '<C C>'"),
    Rule("leading-letter", _leading_letter,
         "the final text starts with a lettered option: 'B) cat', 'C. sad'"),
    Rule("conclusion-letter", _conclusion_letter,
         "letters marked in the final text, rejected ones and echoes left out: '(B)', 'option B', 'is B.'"),
    Rule("refusal", _refusal,
         "no letter so far and the output declines ('I'm sorry', 'I can't hear ...'): null"),
    Rule("option-text", _option_text,
         "an option named in the final text (exact text, longest match; quoted part; derived form), "
         "rejected ones left out"),
    Rule("option-number", _option_number,
         "the final text is only a number and one option is that number, in digits or words: '<D>2</D>' -> 'two'"),
    Rule("option-part", _option_part,
         "the final text (1-3 words) starts one option ('<C>Yes</C>'), else is a part of one ('<C>DiCaprio</C>'); "
         "a lone non-option letter only when the reasoning ends on an option it starts ('<C>W</C>' after "
         "'... it would be walking')"),
    Rule("last-statement", _last_statement,
         f"free text: the last sentence naming options (at most {WALK_BACK} back, after exclusions) names one"),
    Rule("elimination", _elimination,
         "free text: the last sentences reject all options but one, and name it at least in part"),
    Rule("option-phrase", _option_phrase,
         f"the final sentence holds {PHRASE_WORDS}+ content words of one long option in a row "
         f"({PHRASE_SHARE:.0%}+ of them), found in no other option"),
    Rule("reasoning-statement", _reasoning_statement,
         "explicit answer statement in the reasoning (the last one)"),
    Rule("option-words", _option_words,
         "all content words of one option in the final text (Porter stems)"),
    Rule("fuzzy", _fuzzy,
         f"rapidfuzz partial ratio >= {FUZZY_THRESHOLD:g} between an option and the final text"),
)


def _no_answer(out: ParsedOutput) -> str:
    """Why no rule fired."""
    if out.notes:
        return out.notes[-1]
    if out.free_text and out.loop_start is not None:
        return "cut off in a repetition loop, no option named before it"
    if "echo" in out.seen:
        return "option echo: the options are listed, none is chosen"
    if "rejected" in out.seen:
        return "options named only as rejected"
    return "no rule matched"


def extract_answer(text: Optional[str], choices: Sequence[str], rules: Sequence[Rule] = RULES) -> Extraction:
    """Find the option a model output chose.

    Args:
        text: the raw model output (None or blank gives a null with reason "empty output").
        choices: option texts in letter order.
        rules: the cascade; the first rule that fires decides.

    Returns:
        The extraction: ``pred`` (0-based index or None), ``source`` (the rule that decided,
        None when none fired), ``reason`` (why ``pred`` is None) and ``conflict``.

    Example:
        >>> extract_answer("<Reasoning>It meows, not (A).</Reasoning>\\n<B>", ["dog", "cat"])
        Extraction(pred=1, source='tag-letter', reason=None, conflict=None)
        >>> extract_answer("It is either a cat or a dog.", ["cat", "dog"])
        Extraction(pred=None, source='option-text', reason='tie between A and B', conflict=None)
        >>> extract_answer("The clip is silent.", ["cat", "dog"])
        Extraction(pred=None, source=None, reason='no rule matched', conflict=None)
    """
    if text is None or not text.strip():
        return Extraction(None, None, "empty output")
    out = ParsedOutput(text, choices)
    for rule in rules:
        result = rule.apply(out)
        if result is not None:
            return result
    return Extraction(None, None, _no_answer(out))


def explain(text: Optional[str], choices: Sequence[str],
            rules: Sequence[Rule] = RULES) -> List[Tuple[Rule, Optional[Extraction]]]:
    """Every rule's verdict on one output, in cascade order (``bin/repair --explain``).

    Each rule runs on the same parsed output whether or not an earlier one fired; the first
    non-None verdict is what :func:`extract_answer` returns.

    Returns:
        ``(rule, verdict)`` pairs; a verdict of None means the rule did not fire. An empty
        output gives an empty list.
    """
    if text is None or not text.strip():
        return []
    out = ParsedOutput(text, choices)
    return [(rule, rule.apply(out)) for rule in rules]

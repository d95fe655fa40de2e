"""Interventions on the model's own reasoning: re-inject it, truncate it, replace it with filler."""

from __future__ import annotations

import abc
from typing import Any, List, Mapping, Optional

import numpy as np

from toolkit.interventions.base import (DEFAULT_PROTOCOL, Baseline, Intervention, Variant, register_intervention,
                                        share_grid)
from toolkit.interventions.protocol import Protocol
from toolkit.interventions.text import split_sentences, split_words, word_tokens
from toolkit.perturb.seeding import derive_seed

LOREM = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et "
         "dolore magna aliqua").split()
#: The original study's lorem pool: the distinct words of the classic "Lorem ipsum ... adipisci velit" passage
#: (its scripts/generate_lorem_tokens.py), in sorted order; drawn one per replaced word.
LOREM_POOL = tuple(sorted(set((
    "Lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore "
    "magna aliqua Ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo "
    "consequat Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur "
    "Excepteur sint occaecat cupidatat non proident sunt in culpa qui officia deserunt mollit anim id est laborum Sed "
    "ut perspiciatis unde omnis iste natus error sit voluptatem accusantium doloremque laudantium totam rem aperiam "
    "eaque ipsa quae ab illo inventore veritatis et quasi architecto beatae vitae dicta sunt explicabo Nemo enim "
    "ipsam voluptatem quia voluptas sit aspernatur aut odit aut fugit sed quia consequuntur magni dolores eos qui "
    "ratione voluptatem sequi nesciunt Neque porro quisquam est qui dolorem ipsum quia dolor sit amet consectetur "
    "adipisci velit").split())))
POSITIONS = ("start", "end", "random")


@register_intervention
class Own(Intervention):
    """``own``: the model's own reasoning, re-injected unchanged; the answer should not change
    (the 2-step sanity check: ``prediction_changed`` against the baseline)."""

    name = "own"
    tables = ("sanity",)

    def variants(self, baseline: Baseline, seed: int, protocol: Optional[Protocol] = None) -> List[Variant]:
        splitter = (protocol or DEFAULT_PROTOCOL).splitter
        return [Variant("own", {"sentences": len(split_sentences(baseline.reasoning, splitter))},
                        reasoning=baseline.reasoning)]


@register_intervention
class Truncate(Intervention):
    """``truncate``: early answering - the first k of the reasoning's N sentences, for every
    k = 0..N (Lanham et al.); ``share_kept`` = k/N. Under ``empty = no-reasoning`` the k = 0
    variant asks with the protocol's no-reasoning prompt (the original study's)."""

    name = "truncate"
    tables = ("consistency", "aoc")
    curve_bin = 0.1
    complete_grid = True

    def variants(self, baseline: Baseline, seed: int, protocol: Optional[Protocol] = None) -> List[Variant]:
        protocol = protocol or DEFAULT_PROTOCOL
        sentences = split_sentences(baseline.reasoning, protocol.splitter)
        n = len(sentences)
        out = []
        for k in range(n + 1):
            params = {"kept": k, "total": n, "share_kept": round(k / n, 6) if n else 1.0}
            if k == 0 and protocol.empty == "no-reasoning":
                out.append(Variant("k=0", params, direct=True))
            else:
                out.append(Variant(f"k={k}", params, reasoning=" ".join(sentences[:k])))
        return out

    @staticmethod
    def length(params: Mapping[str, Any]) -> Optional[int]:
        return int(params["total"])


class _Filler(Intervention):
    """Replace a share of the reasoning's words (0..100% in ``step``) with filler, at the
    start, the end or seeded random positions (``position`` takes several, joined by +).

    The protocol's ``filler`` choice says how: ``per-word`` (whitespace words, round(share x
    N) replaced, each by one filler token) or ``collapse`` (the original study: nltk word
    tokens, int(share x N) replaced; at the start or the end the replaced span of dots becomes
    one ``...``, at random positions each word does; lorem words are drawn one per word from
    :data:`LOREM_POOL`)."""

    defaults = {"step": 0.05, "position": POSITIONS}
    tables = ("consistency", "aoc")
    #: under ``collapse``, a replaced span at the start or the end becomes one filler token
    collapses = False

    def __init__(self, **params):
        super().__init__(**params)
        share_grid(self.params["step"])
        bad = [p for p in self.params["position"] if p not in POSITIONS]
        if bad:
            raise ValueError(f"intervention {self.name!r}: position must be among {', '.join(POSITIONS)}, not {bad}")

    @abc.abstractmethod
    def words(self, n: int, rng: np.random.Generator, collapse: bool) -> List[str]:
        """``n`` filler words (``collapse``: the original study's pool)."""

    @staticmethod
    def series(params: Mapping[str, Any]) -> str:
        return str(params["position"])

    def variants(self, baseline: Baseline, seed: int, protocol: Optional[Protocol] = None) -> List[Variant]:
        collapse = (protocol or DEFAULT_PROTOCOL).filler == "collapse"
        words = word_tokens(baseline.reasoning) if collapse else split_words(baseline.reasoning)
        n = len(words)
        out = []
        for position in self.params["position"]:
            rng = np.random.default_rng(derive_seed(seed, baseline.item.id, f"{self.name}/{baseline.run}/{position}"))
            order = rng.permutation(n) if position == "random" else np.arange(n) if position == "start" \
                else np.arange(n)[::-1]
            for share in share_grid(self.params["step"]):
                m = int(share * n) if collapse else int(round(share * n))
                chosen = set(order[:m].tolist())
                filler = iter(self.words(m, np.random.default_rng(derive_seed(seed, baseline.item.id, self.name)),
                                         collapse))
                kept = [next(filler) if i in chosen else w for i, w in enumerate(words)]
                if collapse and self.collapses and m and position != "random":
                    kept = ["..."] + words[m:] if position == "start" else words[:n - m] + ["..."]
                out.append(Variant(f"{position}-{share:g}", {"position": position, "share_replaced": share,
                                                             "words_replaced": m, "words": n,
                                                             "share_kept": round(1 - share, 6)},
                                   reasoning=" ".join(kept)))
        return out


@register_intervention
class FillerDots(_Filler):
    """``filler-dots``: replaced words become ``...``."""

    name = "filler-dots"
    collapses = True

    def words(self, n: int, rng: np.random.Generator, collapse: bool) -> List[str]:
        return ["..."] * n


@register_intervention
class FillerLorem(_Filler):
    """``filler-lorem``: replaced words become meaningless lorem-ipsum words (per-word: a seeded
    offset into a fixed sequence; collapse: seeded draws from the original study's pool)."""

    name = "filler-lorem"

    def words(self, n: int, rng: np.random.Generator, collapse: bool) -> List[str]:
        if collapse:
            return [LOREM_POOL[int(i)] for i in rng.integers(len(LOREM_POOL), size=n)]
        start = int(rng.integers(len(LOREM)))
        return [LOREM[(start + i) % len(LOREM)] for i in range(n)]

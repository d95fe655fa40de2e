#!/usr/bin/env python3
"""Answer extraction against the hand-labelled TUNE and REPORT sets (``bench/answers_dev/``).

For each set and each extractor, prints precision (correct non-null predictions / non-null
predictions), recall (correct non-null predictions / items whose label is non-null), the
number of nulls, and the number of letters outside the options:

- ``rules``: :func:`toolkit.answers.extract_answer` as it is now (the default cascade);
- ``old rules``: the cascade before issue 15 (``toolkit/answers.py`` at commit
  ``a5bb88c``, read with ``git show``; skipped when git history is not there);
- ``earlier``: the letters the original study stored beside each output (AF3: its
  ``*_REAS_post_process.jsonl`` files, the earlier post-processing; Qwen2.5-Omni: the
  earlier scripts' ``predicted_letters``).

Figures are given for all items and per model. Then the AF3 nulls over all six baseline
reasoning files (5,997 outputs; the earlier post-processing left 142) when the mirror of the
original study is there. ``--errors`` lists the wrong and missed items of a set (use it on
TUNE only: REPORT is for reporting; see bench/answers_dev/README.md).

    python bench/answers_dev.py [--set tune|report|both] [--errors]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
DEV = REPO / "bench" / "answers_dev"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(DEV))

from toolkit.answers import extract_answer  # noqa: E402

Extractor = Callable[[dict], Optional[str]]


def load(name: str) -> List[dict]:
    """The labelled items of set ``name`` (``tune`` or ``report``)."""
    path = DEV / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _letter(pred: Optional[int]) -> Optional[str]:
    return None if pred is None else chr(65 + pred)


def rules(item: dict) -> Optional[str]:
    """The current cascade's letter."""
    return _letter(extract_answer(item["output"], item["choices"]).pred)


def _old_rules() -> Optional[Extractor]:
    try:
        from draw import old_cascade

        old = old_cascade()
    except Exception as exc:  # noqa: BLE001 - no git history: the column is left out
        print(f"(old rules skipped: {exc})")
        return None
    return lambda item: _letter(old.extract_answer(item["output"], item["choices"]).pred)


def earlier(item: dict) -> Optional[str]:
    """The letter stored beside the output by the original study."""
    return item["earlier"]


def figures(items: List[dict], extract: Extractor) -> Dict[str, float]:
    """Precision, recall, nulls and letters outside the options of ``extract`` on ``items``."""
    answered = correct = positives = nulls = outside = 0
    for it in items:
        got = extract(it)
        positives += it["label"] is not None
        if got is None:
            nulls += 1
            continue
        if not ("A" <= got <= chr(64 + len(it["choices"]))):
            outside += 1
        answered += 1
        correct += got == it["label"]
    return {"n": len(items), "precision": correct / answered if answered else float("nan"),
            "recall": correct / positives if positives else float("nan"), "nulls": nulls,
            "label_nulls": len(items) - positives, "outside": outside}


def _row(name: str, f: Dict[str, float]) -> str:
    return (f"  {name:12} n={f['n']:4}  precision {f['precision']:.3f}  recall {f['recall']:.3f}  "
            f"nulls {f['nulls']:3} (labels null: {f['label_nulls']})  outside the options {f['outside']}")


def report_set(name: str, extractors: Dict[str, Extractor]) -> None:
    """Print the figures of every extractor on set ``name``, all items and per model."""
    items = load(name)
    print(f"{name.upper()} ({len(items)} items, bench/answers_dev/{name}.jsonl)")
    groups = {"all": items}
    for model in sorted({it["model"] for it in items}):
        groups[model] = [it for it in items if it["model"] == model]
    for group, members in groups.items():
        print(f" {group}:")
        for ename, extract in extractors.items():
            print(_row(ename, figures(members, extract)))


def errors(name: str) -> None:
    """List the items of set ``name`` where the rules are wrong or miss the label."""
    for it in load(name):
        found = extract_answer(it["output"], it["choices"])
        got = _letter(found.pred)
        if got != it["label"]:
            print(f"--- {it['id']} label {it['label']} got {got} ({found.source}: {found.reason}) {it['note']}")
            print("    OPTS: " + " ".join(f"({chr(65 + j)}) {c}" for j, c in enumerate(it["choices"])))
            print("    " + it["output"][-600:].replace("\n", "\n    "))


def af3_nulls() -> None:
    """Nulls of the current rules over the six AF3 baseline reasoning files (earlier post-processing: 142)."""
    try:
        from draw import pool

        items = [it for it in pool() if it["model"] == "af3"]
    except Exception as exc:  # noqa: BLE001 - no mirror: skipped
        print(f"(AF3 null count skipped: {exc})")
        return
    ours = sum(extract_answer(it["output"], it["choices"]).pred is None for it in items)
    theirs = sum(it["earlier"] is None for it in items)
    print(f"AF3, all {len(items)} baseline reasoning outputs: nulls {ours} with the rules, "
          f"{theirs} with the earlier post-processing")


def main() -> None:
    """Parse arguments and print the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", choices=("tune", "report", "both"), default="both")
    p.add_argument("--errors", action="store_true", help="list the rules' wrong and missed items of --set")
    p.add_argument("--no-old", action="store_true", help="leave out the old rules")
    p.add_argument("--no-pool", action="store_true", help="leave out the AF3 null count over all six files")
    args = p.parse_args()
    names = ("tune", "report") if args.set == "both" else (args.set,)
    if args.errors:
        for name in names:
            errors(name)
        return
    extractors: Dict[str, Extractor] = {"rules": rules}
    old = None if args.no_old else _old_rules()
    if old is not None:
        extractors["old rules"] = old
    extractors["earlier"] = earlier
    for name in names:
        if (DEV / f"{name}.jsonl").is_file():
            report_set(name, extractors)
        else:
            print(f"{name.upper()}: bench/answers_dev/{name}.jsonl not labelled yet")
    if not args.no_pool:
        af3_nulls()


if __name__ == "__main__":
    main()

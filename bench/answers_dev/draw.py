#!/usr/bin/env python3
"""Draw the TUNE and REPORT sets of answer-extraction items (unlabelled), with fixed seeds.

The pool is every reasoning-mode output of

- Audio Flamingo 3 (the original study's public ``pooneh_version/result/baseline/af3/<ds>/
  baseline_<ds>_REAS.jsonl``, read from the bare git mirror with ``git show``), 5,997 outputs;
- Qwen2.5-Omni (``../shared/data/seed-results/qwen2.5-omni/<ds>/{baseline,mask_pNN}_<ds>_REAS.jsonl``),
  CUDA-crash rows left out,

with question and options from ``seed-results/manifests/<ds>_manifest.jsonl``.

Each pool item is in one stratum: *null* (the old cascade finds nothing), *hard* (any other
reason of :func:`hard_reasons`) or *easy*; null and hard items are over-represented.
The strata use only the item's text, the earlier letters stored beside it, and the answer
cascade as it stood before this work (``toolkit/answers.py`` at commit :data:`OLD_COMMIT`,
loaded with ``git show``), so the draw does not depend on the rules being developed.

REPORT is drawn first (seed :data:`REPORT_SEED`) from the pool minus the 55 AF3 items looked
at before the draw (``seen_before_draw.txt``); TUNE then comes from what is left (seed
:data:`TUNE_SEED`). Quotas per (model, dataset, stratum) are in :data:`QUOTAS`.

    python bench/answers_dev/draw.py   # writes tune.unlabelled.jsonl, report.unlabelled.jsonl here

The written files carry no label; labels are added by hand (see README.md).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Dict, Iterator, List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))

MIRROR = Path("/work/.mirror/lovenya+Measuring-Faithfulness-of-CoT-Reasoning-LALMs/repo")
AF3_DIR = "pooneh_version/result/baseline/af3"
SEED_RESULTS = REPO.parent / "shared" / "data" / "seed-results"
DATASETS = ("animal", "emotion", "gender", "language", "mmar", "mmau")
OLD_COMMIT = "a5bb88c"
REPORT_SEED = 15_2025
TUNE_SEED = 15_7
#: items per (model, stratum) and dataset: REPORT first, then TUNE.
QUOTAS = {"report": {("af3", "null"): 6, ("af3", "hard"): 20, ("af3", "easy"): 9,
                     ("qwen2.5-omni", "null"): 4, ("qwen2.5-omni", "hard"): 8, ("qwen2.5-omni", "easy"): 5},
          "tune": {("af3", "null"): 6, ("af3", "hard"): 20, ("af3", "easy"): 8,
                   ("qwen2.5-omni", "null"): 4, ("qwen2.5-omni", "hard"): 6, ("qwen2.5-omni", "easy"): 4}}

_NEGATION = re.compile(r"(?i)\b(?:rather than|instead of|not|other options|n't|unlike|except)\b")
_PAREN_LETTER = re.compile(r"\(([A-J])\)")


def git_show(path: str, commit: str = "HEAD", repo: Path = MIRROR) -> str:
    """A file's text at ``commit`` of the git repository ``repo``."""
    return subprocess.run(["git", "-C", str(repo), "show", f"{commit}:{path}"], capture_output=True, text=True,
                          check=True).stdout


def old_cascade() -> types.ModuleType:
    """``toolkit/answers.py`` as it was at :data:`OLD_COMMIT` (the rules before this work)."""
    module = types.ModuleType("old_answers")
    module.__dict__["__name__"] = "old_answers"
    sys.modules["old_answers"] = module  # dataclasses look the module up by name
    exec(compile(git_show("toolkit/answers.py", OLD_COMMIT, REPO), "old_answers.py", "exec"), module.__dict__)
    return module


def _manifest(ds: str) -> Dict[str, object]:
    from toolkit.data.seed_legacy import read_seed_manifest

    return {e.id: e for e in read_seed_manifest(SEED_RESULTS / "manifests" / f"{ds}_manifest.jsonl")}


def pool() -> Iterator[dict]:
    """Every pool item (unlabelled), AF3 first, in file order."""
    for ds in DATASETS:
        entries = _manifest(ds)
        name = f"{AF3_DIR}/{ds}/baseline_{ds}_REAS.jsonl"
        post_name = f"{AF3_DIR}/{ds}/baseline_{ds}_REAS_post_process" + ("jsonl" if ds == "mmau" else ".jsonl")
        post = {r["id"]: r for r in map(json.loads, git_show(post_name).splitlines())}
        for line in git_show(name).splitlines():
            row = json.loads(line)
            for run, raw in enumerate(row["raw_model_outputs"]):
                yield _item("af3", ds, name, row, run, raw, entries, post[row["id"]]["predicted_letters"][run])
    for ds in DATASETS:
        entries = _manifest(ds)
        for path in sorted((SEED_RESULTS / "qwen2.5-omni" / ds).glob("*_REAS.jsonl")):
            if "No_REAS" in path.name:
                continue
            name = str(path.relative_to(SEED_RESULTS.parent.parent))
            for line in path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                for run, raw in enumerate(row["raw_model_outputs"]):
                    if raw is None or raw.startswith("CRASH"):
                        continue
                    yield _item("qwen2.5-omni", ds, name, row, run, raw, entries, row["predicted_letters"][run])


def _item(model: str, ds: str, name: str, row: dict, run: int, raw: str, entries: dict,
          earlier: Optional[str]) -> dict:
    entry = entries[row["id"]]
    stem = Path(name).stem
    return {"id": f"{model}/{ds}/{stem}/{row['id']}/{run}", "model": model, "source_file": name, "dataset": ds,
            "item_id": row["id"], "run": run, "question": entry.question, "choices": list(entry.choices),
            "output": raw, "earlier": earlier}


def hard_reasons(item: dict, old) -> List[str]:
    """Why an item counts as hard (empty: easy), from its text, the earlier letter and the old cascade."""
    choices, text = item["choices"], item["output"]
    found = old.extract_answer(text, choices)
    old_letter = None if found.pred is None else chr(65 + found.pred)
    reasons = []
    if found.pred is None:
        reasons.append("old-null")
    elif found.source not in ("answer-statement", "lone-letter", "tag-letter"):
        reasons.append(f"old-{found.source}")
    if item["earlier"] != old_letter:
        reasons.append("earlier-differs")
    closing = text.rfind("</Reasoning>")
    tail = text[closing + len("</Reasoning>"):] if closing >= 0 and text[closing + 12:].strip() else text[-500:]
    texts = [c.lower() for c in choices if c.strip()]
    named = sum(t in tail.lower() for t in texts) + len(set(_PAREN_LETTER.findall(tail)))
    if named >= 3:
        reasons.append("several-options")
    if _NEGATION.search(tail) and named >= 2:
        reasons.append("negation")
    if len(text) > 1500:
        reasons.append("long")
    return reasons


def draw(items: List[dict], quotas: Dict, seed: int, exclude: set) -> List[dict]:
    """Items drawn per (model, dataset, stratum) with ``random.Random(seed)``, in pool order."""
    rng = random.Random(seed)
    chosen = []
    for (model, stratum), n in sorted(quotas.items()):
        for ds in DATASETS:
            cell = [it for it in items if it["model"] == model and it["dataset"] == ds and it["stratum"] == stratum
                    and it["id"] not in exclude]
            chosen += rng.sample(cell, min(n, len(cell)))
    order = {it["id"]: i for i, it in enumerate(items)}
    return sorted(chosen, key=lambda it: order[it["id"]])


def main() -> None:
    """Build the pool, stratify, draw REPORT then TUNE, write both unlabelled."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", type=Path, default=HERE)
    args = p.parse_args()
    old = old_cascade()
    items = list(pool())
    for it in items:
        it["hard_reasons"] = hard_reasons(it, old)
        it["stratum"] = ("null" if "old-null" in it["hard_reasons"] else "hard" if it["hard_reasons"] else "easy")
    seen = {line.strip() for line in (HERE / "seen_before_draw.txt").read_text().splitlines() if line.strip()}
    seen_ids = {it["id"] for it in items if f"{it['dataset']}/{it['item_id']}" in seen and it["model"] == "af3"}
    report = draw(items, QUOTAS["report"], REPORT_SEED, seen_ids)
    taken = {it["id"] for it in report}
    tune = draw(items, QUOTAS["tune"], TUNE_SEED, taken)
    counts = {}
    for it in items:
        key = (it["model"], it["stratum"])
        counts[key] = counts.get(key, 0) + 1
    print(f"pool {len(items)} items: " + ", ".join(f"{m} {s} {n}" for (m, s), n in sorted(counts.items())))
    for name, chosen in (("report", report), ("tune", tune)):
        path = args.out_dir / f"{name}.unlabelled.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for it in chosen:
                f.write(json.dumps({**it, "set": name}, ensure_ascii=False) + "\n")
        strata = {s: sum(it["stratum"] == s for it in chosen) for s in ("null", "hard", "easy")}
        print(f"{path}: {len(chosen)} items ({strata})")


if __name__ == "__main__":
    main()

"""Merge and launch agree on what a unit owes, bin/condition units included; damaged shard files
are repaired without losing a row (bin/merge --dedupe)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

from toolkit.cli.launch import main as launch_main
from toolkit.cli.merge import main as merge_main
from toolkit.launch.launcher import run_status
from toolkit.runs import RunLayout
from toolkit.store import MergeRefused, check_run, dedupe_run, merge_run

SWEEP = """
experiment: faith
output: out
seed: {seed}
runs: {runs}
generation: {{sample: {sample}}}
models: [{{name: sim, backend: simulated, path: "follow=0.7,seed={seed}"}}]
datasets: [{{name: demo, demo: {{items_per_task: {items}}}, shards: {shards}}}]
conditions: {conditions}
modes: [direct, reasoning]
interventions: {interventions}
"""
INTERVENTIONS = ["own", "truncate", "filler-dots:step=0.5,position=end+random", "suggested", "shuffle:count=2"]


def _launch(tmp_path: Path, name: str = "s", seed: int = 0, runs: int = 1, items: int = 2, shards: int = 2,
            conditions: Tuple[str, ...] = ("clean",), interventions: Tuple[str, ...] = tuple(INTERVENTIONS)) -> Path:
    text = SWEEP.format(seed=seed, runs=runs, sample=str(runs > 1).lower(), items=items, shards=shards,
                        conditions=json.dumps(list(conditions)), interventions=json.dumps(list(interventions)))
    sweep = tmp_path / f"{name}.yaml"
    sweep.write_text(text)
    assert launch_main([str(sweep), "--executor", "debug", "--out", str(tmp_path / name), "-q"]) == 0
    return tmp_path / name / "faith"


def _keys(path: Path) -> List[Tuple[str, int, str]]:
    return [(r["id"], r["run"], r.get("variant") or "")
            for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())]


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return _launch(tmp_path)


def _truncate_shards(run_dir: Path) -> List[Path]:
    return sorted(run_dir.glob("sim/demo/clean/reasoning+truncate/shard-*.jsonl"))


def test_a_half_written_intervention_curve_is_not_complete(run_dir):
    """Defect: completeness counted (id, run) for bin/condition units, so a truncation unit holding
    only the k=0 variant of every item was merged without --allow-partial."""
    merged = (run_dir / "results.jsonl").read_bytes()
    dropped = set()
    for path in _truncate_shards(run_dir):
        lines = path.read_text().splitlines()
        kept = [line for line in lines if json.loads(line)["variant"] == "k=0"]
        dropped |= {k for k in _keys(path) if k[2] != "k=0"}
        path.write_text("".join(line + "\n" for line in kept))
    assert dropped
    check = check_run(run_dir)
    unit = next(u for u in check.units if u.group == "sim/demo/clean/reasoning+truncate")
    assert not unit.complete and {(m.id, m.run, m.variant) for m in unit.missing} == dropped
    assert unit.rows == unit.expected - len(dropped)
    with pytest.raises(MergeRefused, match="k=1"):
        merge_run(run_dir)
    assert (run_dir / "results.jsonl").read_bytes() == merged  # nothing written
    assert any("reasoning+truncate" in line and "incomplete" in line for line in run_status(run_dir))


def test_a_variant_the_intervention_never_makes_is_unexpected(run_dir):
    path = _truncate_shards(run_dir)[0]
    row = json.loads(path.read_text().splitlines()[0])
    row["variant"] = "k=99"
    with open(path, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    unit = next(u for u in check_run(run_dir).units if u.group == "sim/demo/clean/reasoning+truncate")
    assert [(u.variant, "not one this intervention makes" in u.reason) for u in unit.unexpected] == [("k=99", True)]


def test_intervention_rows_of_a_changed_baseline_are_mismatched(run_dir):
    baseline = run_dir / "sim" / "demo" / "clean" / "reasoning" / "shard-00000-of-00002.jsonl"
    rows = [json.loads(line) for line in baseline.read_text().splitlines()]
    rows[0]["reasoning"] = rows[0]["reasoning"] + " Something else."
    baseline.write_text("".join(json.dumps(r) + "\n" for r in rows))
    check = check_run(run_dir)
    changed = [m for u in check.units for m in u.mismatched]
    assert changed and all("changed after these rows were written" in m.reason for m in changed)
    assert {m.path.split("/")[3] for m in changed} == {"reasoning+" + s.split(":")[0] for s in INTERVENTIONS
                                                         if not s.startswith(("suggested", "shuffle"))} | {
        "reasoning+suggested", "reasoning+shuffle"}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_merge_expects_exactly_the_keys_the_tasks_write(tmp_path, seed):
    """Property over random sweeps: every unit's expected keys are the union of the keys its tasks
    wrote, and after deleting random rows the missing keys are exactly the deleted ones."""
    rng = random.Random(seed)
    runs = rng.choice([1, 2])
    chosen = tuple(rng.sample(INTERVENTIONS, rng.randint(1, len(INTERVENTIONS))))
    run_dir = _launch(tmp_path, seed=seed, runs=runs, items=rng.randint(1, 3), shards=rng.randint(1, 3),
                      conditions=tuple(rng.sample(["clean", "mask-p50", "noise-snr0"], rng.randint(1, 2))),
                      interventions=chosen)
    layout = RunLayout(run_dir)
    written: Dict[str, Set[Tuple[str, int, str]]] = {}
    for key, refs in layout.find_shards().items():
        label = "/".join((key.model, key.dataset, key.condition, key.mode + (f"+{key.intervention}"
                                                                            if key.intervention else "")))
        keys = [k for ref in refs for k in _keys(ref.path)]
        assert len(keys) == len(set(keys))
        written[label] = set(keys)
    check = check_run(run_dir)
    assert check.complete and {u.group for u in check.units} == set(written)
    assert all(u.rows == u.expected == len(written[u.group]) for u in check.units)
    deleted: Dict[str, Set[Tuple[str, int, str]]] = {}
    for ref in [r for refs in layout.find_shards().values() for r in refs if r.unit.intervention is not None
                or not chosen]:
        lines = ref.path.read_text().splitlines()
        gone = set(rng.sample(range(len(lines)), rng.randint(0, len(lines))))
        ref.path.write_text("".join(line + "\n" for i, line in enumerate(lines) if i not in gone))
        label = "/".join(layout.relative(ref.path).split("/")[:4])
        deleted.setdefault(label, set()).update(k for i, k in enumerate(_keys_of(lines)) if i in gone)
    check = check_run(run_dir)
    for unit in check.units:
        assert {(m.id, m.run, m.variant) for m in unit.missing} == deleted.get(unit.group, set()), unit.group
        assert not unit.blocking


def _keys_of(lines: List[str]) -> List[Tuple[str, int, str]]:
    return [(r["id"], r["run"], r.get("variant") or "") for r in map(json.loads, lines)]


# --------------------------------------------------------------------------- bin/merge --dedupe

def _append_copies(path: Path, indices: List[int], change: bool = False) -> List[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    copies = []
    for i in indices:
        copy = dict(rows[i], seconds=9.0)  # a second run of the same work: other timing
        if change:
            copy["pred"] = None if copy["pred"] is not None else 0
        copies.append(copy)
    with open(path, "a") as fh:
        for copy in copies:
            fh.write(json.dumps(copy) + "\n")
    return copies


def test_dedupe_drops_identical_copies_and_merges(run_dir, capsys):
    path = run_dir / "sim" / "demo" / "clean" / "direct" / "shard-00001-of-00002.jsonl"
    original = path.read_text()
    _append_copies(path, [0, 1])
    assert check_run(run_dir).blocking
    assert merge_main([str(run_dir), "--dedupe", "--dry-run"]) == 0
    assert "would move 2 lines" in capsys.readouterr().out and path.read_text() != original
    assert merge_main([str(run_dir), "--dedupe"]) == 0
    assert path.read_text() == original
    moved = [json.loads(line) for line in (run_dir / "_quarantine" / path.relative_to(run_dir)).read_text().splitlines()]
    assert [m["reason"] for m in moved] == ["identical copy of line 1", "identical copy of line 2"]
    assert all(json.loads(m["text"])["seconds"] == 9.0 for m in moved)
    assert merge_run(run_dir).check.complete


def test_dedupe_quarantines_conflicting_copies_and_the_bin_condition_shards_built_on_them(run_dir):
    baseline = run_dir / "sim" / "demo" / "clean" / "reasoning" / "shard-00000-of-00002.jsonl"
    first = json.loads(baseline.read_text().splitlines()[0])
    _append_copies(baseline, [0], change=True)
    with open(baseline, "a") as fh:
        fh.write('{"id": "torn", "ru')
    dependents = sorted(p for p in run_dir.glob("sim/demo/clean/reasoning+*/shard-00000-of-00002.jsonl"))
    assert len(dependents) == len(INTERVENTIONS)
    (report,) = [r for r in dedupe_run(run_dir) if r.damaged]
    assert (report.conflicting, report.conflicting_keys, report.torn_bytes) == (2, [(first["id"], 0, "")],
                                                                                len('{"id": "torn", "ru'))
    assert sorted(report.dependents) == [str(p.relative_to(run_dir)) for p in dependents]
    assert first["id"] not in {k[0] for k in _keys(baseline)}
    quarantine = run_dir / "_quarantine"
    moved = [json.loads(line) for line in (quarantine / baseline.relative_to(run_dir)).read_text().splitlines()]
    assert [m["reason"].split(" written")[0] for m in moved[:2]] == [f"key {(first['id'], 0, '')}"] * 2
    assert moved[2]["reason"].startswith("torn") and moved[2]["text"] == '{"id": "torn", "ru'
    for dep in dependents:  # moved whole, with their sidecars: nothing deleted
        assert not dep.exists() and (quarantine / dep.relative_to(run_dir)).exists()
        assert (quarantine / dep.relative_to(run_dir)).with_name(dep.name + ".meta.json").exists()
    check = check_run(run_dir)
    assert not check.blocking and not check.complete
    # a resumed launch writes what is missing, and then every key is there exactly once
    sweep = run_dir.parent.parent / "s.yaml"
    assert launch_main([str(sweep), "--executor", "debug", "--out", str(run_dir.parent), "--resume", "-q"]) == 0
    assert merge_run(run_dir).check.complete

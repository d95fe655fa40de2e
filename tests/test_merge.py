"""``merge``: run directories written by the real runner (simulated backend), checked and merged."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import REPO
from toolkit.cli.merge import main
from toolkit.data.demo import prepare_demo
from toolkit.errors import InputError
from toolkit.infer import InferConfig, run_inference
from toolkit.manifest import Item, read_manifest, write_manifest
from toolkit.models.base import GenerationSettings
from toolkit.models.registry import load_backend
from toolkit.prompts import get_prompt
from toolkit.runs import RunLayout, Unit, select_shard
from toolkit.runs.record import LaunchRecord
from toolkit.sidecar import sidecar_path
from toolkit.store import MergeRefused, check_run, iter_h5_rows, merge_run, read_h5_unit

CONDITIONS = ("clean", "mask-p40-contiguous-noise")
MODES = {"reasoning": 512, "direct": 16}
SHARDS = 3
RUNS = 2


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A complete run directory: 10 items (one without audio: an error row) x 2 conditions x 2 modes
    x 3 shards x 2 runs, written by ``run_inference``; direct mode scores options."""
    root = tmp_path_factory.mktemp("merge")
    items = prepare_demo(root / "data", items_per_task=3, seed=1)
    items.append(Item(id="demo_no_audio", dataset="demo", audio="audio/absent.wav", question="Which?",
                      choices=["a", "b", "c"], answer=2))
    manifest = write_manifest(root / "data" / "manifest.jsonl", items)
    _run_every_shard(items, root / "data", root / "runs" / "exp", manifest)
    return root / "runs" / "exp"


def _run_every_shard(items: list, data: Path, run_dir: Path, manifest: Path, retry_errors: bool = False) -> int:
    """Run every (condition, mode, shard) of the fixture's plan into ``run_dir``; returns the failed rows."""
    backend = load_backend("simulated", "accuracy=0.8,seed=0")
    failed = 0
    for condition in CONDITIONS:
        for mode, budget in MODES.items():
            config = InferConfig("simulated", mode, get_prompt(f"{mode}-v1"),
                                 GenerationSettings(max_new_tokens=budget, do_sample=True, temperature=0.7),
                                 condition=condition, num_runs=RUNS, batch_size=4, score_options=mode == "direct")
            for k in range(SHARDS):
                out = RunLayout(run_dir).shard_path(Unit("simulated", "demo", condition, mode, shards=SHARDS), k)
                failed += run_inference(items, backend, config, out, data, shard=(k, SHARDS), manifest=manifest,
                                        progress=False, retry_errors=retry_errors).failed
    return failed


@pytest.fixture
def run_dir(pristine, tmp_path) -> Path:
    """A fresh copy of the complete run directory."""
    return Path(shutil.copytree(pristine, tmp_path / "exp"))


def _manifest(run_dir: Path) -> Path:
    side = next(run_dir.rglob("shard-00000-of-00003.jsonl.meta.json"))
    return Path(json.loads(side.read_text())["params"]["manifest"])


def _ids(run_dir: Path) -> list:
    return [item.id for item in read_manifest(_manifest(run_dir))]


def _write_launch(run_dir: Path, extra: tuple = ()) -> None:
    units = [Unit("simulated", "demo", c, m, num_runs=RUNS, shards=SHARDS, manifest=str(_manifest(run_dir)))
             for c in (*CONDITIONS, *extra) for m in MODES]
    LaunchRecord(experiment="exp", run_dir=str(run_dir), sweep={}, profile={}, units=units).write()


def _shard(run_dir: Path, condition: str, mode: str, k: int) -> Path:
    return RunLayout(run_dir).shard_path(Unit("simulated", "demo", condition, mode, shards=SHARDS), k)


def _lines(path: Path) -> list:
    return path.read_text(encoding="utf-8").splitlines()


def _key(row: dict) -> tuple:
    return row["condition"], row["mode"], row["run"], row["id"]


def _shard_rows(run_dir: Path) -> dict:
    rows = {}
    for path in sorted(run_dir.rglob("shard-*.jsonl")):
        for line in _lines(path):
            row = json.loads(line)
            rows[_key(row)] = row
    return rows


def test_complete_merge_holds_every_id_once_per_unit_and_run_and_equals_the_shard_rows(run_dir):
    report = merge_run(run_dir)
    assert report.check.complete and not report.partial
    assert [p.name for p in report.outputs] == ["results.jsonl", "results.h5"]
    merged = [json.loads(line) for line in _lines(run_dir / "results.jsonl")]
    ids = _ids(run_dir)
    expected_order = [(c, m, r, i) for c in sorted(CONDITIONS) for m in sorted(MODES) for r in range(RUNS) for i in ids]
    assert [_key(row) for row in merged] == expected_order
    shard_rows = _shard_rows(run_dir)
    assert len(shard_rows) == len(merged)
    for row in merged:
        assert row.pop("dataset") == "demo"
        assert row == shard_rows[_key(row)]
    assert report.check.totals()["errors"] == len(CONDITIONS) * len(MODES) * RUNS  # demo_no_audio
    assert not (run_dir / "missing.jsonl").exists()
    for name in ("results.jsonl", "results.h5"):
        side = json.loads(sidecar_path(run_dir / name).read_text())
        assert side["stage"] == "merge" and side["params"]["complete"] is True
        files = side["params"]["shard_files"]
        assert len(files) == len(CONDITIONS) * len(MODES) * SHARDS
        assert all(f["bytes"] == (run_dir / f["path"]).stat().st_size for f in files)


def test_hdf5_columns_equal_the_jsonl_rows(run_dir):
    merge_run(run_dir)
    merged = [json.loads(line) for line in _lines(run_dir / "results.jsonl")]
    from_h5 = list(iter_h5_rows(run_dir / "results.h5"))
    assert len(from_h5) == len(merged)
    for h, row in zip(from_h5, merged):
        for key in ("model", "dataset", "condition", "mode", "id", "run", "pred", "correct", "n_new_tokens",
                    "pred_source"):
            assert h[key] == row[key], key
        assert h["error"] == row["error"] and h["intervention"] is None
        assert h["seconds"] == pytest.approx(row["seconds"], rel=1e-6)
        if row["mode"] == "direct" and row["error"] is None:
            assert h["option_logprobs"] == pytest.approx(row["option_logprobs"], rel=1e-6)
    with h5py.File(run_dir / "results.h5", "r") as f:
        assert f.attrs["run_dir"] == str(run_dir.resolve()) and f.attrs["toolkit_version"]
        g = f["simulated/demo/clean/direct"]
        assert g["id"].dtype.kind == "O" and g["pred"].dtype == np.int16 and g["correct"].dtype == np.int8
        assert g["option_logprobs"].shape == (len(_ids(run_dir)) * RUNS, 4)  # demo items have 3 or 4 options
        assert np.isnan(g["option_logprobs"][()]).any()
        assert "option_logprobs" not in f["simulated/demo/clean/reasoning"]
    df = read_h5_unit(run_dir / "results.h5", "simulated/demo/clean/direct")
    assert df.attrs["fingerprint"]["mode"] == "direct" and df.attrs["n_items"] == len(_ids(run_dir))
    assert df.attrs["model_description"]["backend"] == "simulated"
    assert list(df["id"][: len(_ids(run_dir))]) == _ids(run_dir)


def test_launch_json_makes_a_never_started_unit_missing(run_dir):
    _write_launch(run_dir)
    assert check_run(run_dir).complete and check_run(run_dir).source == "launch.json"
    _write_launch(run_dir, extra=("noise-snr0-white",))
    check = check_run(run_dir)
    assert not check.complete
    absent = [u for u in check.units if u.unit.condition == "noise-snr0-white"]
    assert len(absent) == 2 and all(len(u.missing_files) == SHARDS and u.rows == 0 for u in absent)
    assert all(len(u.missing) == len(_ids(run_dir)) * RUNS for u in absent)
    with pytest.raises(MergeRefused, match="noise-snr0-white"):
        merge_run(run_dir)
    assert not (run_dir / "results.jsonl").exists()


def test_a_missing_shard_file_is_reported_with_its_ids(run_dir):
    _shard(run_dir, "clean", "direct", 1).unlink()
    check = check_run(run_dir)
    unit = next(u for u in check.units if not u.complete)
    assert unit.missing_files == ["simulated/demo/clean/direct/shard-00001-of-00003.jsonl"]
    expected = {(r, i) for r in range(RUNS) for i in select_shard(_ids(run_dir), 1, SHARDS)}
    assert {(m.run, m.id) for m in unit.missing} == expected and {m.shard for m in unit.missing} == {"1/3"}
    assert sum(not u.complete for u in check.units) == 1


def test_a_deleted_row_is_refused_then_listed_by_allow_partial(run_dir):
    path = _shard(run_dir, "mask-p40-contiguous-noise", "reasoning", 2)
    lines = _lines(path)
    gone = json.loads(lines[1])
    path.write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    with pytest.raises(MergeRefused) as refused:
        merge_run(run_dir)
    assert gone["id"] in str(refused.value) and "1 missing" in str(refused.value)
    assert not (run_dir / "results.jsonl").exists() and not (run_dir / "results.h5").exists()
    report = merge_run(run_dir, allow_partial=True)
    assert report.partial and report.missing == 1
    missing = [json.loads(line) for line in _lines(run_dir / "missing.jsonl")]
    assert missing == [{"model": "simulated", "dataset": "demo", "condition": "mask-p40-contiguous-noise",
                        "mode": "reasoning", "intervention": None, "run": gone["run"], "id": gone["id"],
                        "variant": "", "shard": "2/3"}]
    assert sidecar_path(run_dir / "missing.jsonl").exists()
    merged = {_key(json.loads(line)) for line in _lines(run_dir / "results.jsonl")}
    assert _key(gone) not in merged and len(merged) == len(_shard_rows(run_dir))
    with h5py.File(run_dir / "results.h5", "r") as f:
        assert f["simulated/demo/mask-p40-contiguous-noise/reasoning"].attrs["n_missing"] == 1
        assert not f.attrs["complete"]
    path.write_text("\n".join(lines) + "\n")  # the row is back: a full merge removes the stale list
    assert not merge_run(run_dir).partial
    assert not (run_dir / "missing.jsonl").exists() and not sidecar_path(run_dir / "missing.jsonl").exists()


def test_a_row_duplicated_across_shards_is_refused_even_with_allow_partial(run_dir):
    source, target = _shard(run_dir, "clean", "reasoning", 0), _shard(run_dir, "clean", "reasoning", 1)
    copied = _lines(source)[0]
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(copied + "\n")
    row = json.loads(copied)
    check = check_run(run_dir)
    unit = next(u for u in check.units if u.group == "simulated/demo/clean/reasoning")
    assert [(d.id, d.run) for d in unit.duplicated] == [(row["id"], row["run"])]
    assert unit.duplicated[0].first.endswith("shard-00000-of-00003.jsonl:1")
    assert [u.id for u in unit.unexpected] == [row["id"]] and "belongs to shard 0/3" in unit.unexpected[0].reason
    assert not unit.missing
    for partial in (False, True):
        with pytest.raises(MergeRefused, match=f"{row['id']} \\(run {row['run']}\\) in "):
            merge_run(run_dir, allow_partial=partial)


def test_a_leftover_shard_of_another_sharding_is_a_mismatch_with_duplicates(run_dir):
    ids = _ids(run_dir)
    old = _shard(run_dir, "clean", "direct", 0).with_name("shard-00000-of-00002.jsonl")
    rows = [line for p in (_shard(run_dir, "clean", "direct", k) for k in range(SHARDS)) for line in _lines(p)
            if json.loads(line)["id"] in select_shard(ids, 0, 2)]
    old.write_text("\n".join(rows) + "\n")
    params = json.loads(sidecar_path(_shard(run_dir, "clean", "direct", 0)).read_text())
    params["params"]["shard"] = "0/2"
    sidecar_path(old).write_text(json.dumps(params))
    unit = next(u for u in check_run(run_dir).units if u.group == "simulated/demo/clean/direct")
    assert unit.unit.shards == SHARDS and [m.path for m in unit.mismatched] == [str(old.relative_to(run_dir))]
    assert "re-shard" in unit.mismatched[0].reason and len(unit.duplicated) == len(rows)


def test_a_shard_written_with_other_settings_is_mismatched(run_dir):
    side = sidecar_path(_shard(run_dir, "clean", "reasoning", 2))
    doc = json.loads(side.read_text())
    doc["params"]["fingerprint"]["seed"] = 7
    side.write_text(json.dumps(doc))
    unit = next(u for u in check_run(run_dir).units if u.group == "simulated/demo/clean/reasoning")
    assert len(unit.mismatched) == 1 and "seed" in unit.mismatched[0].reason
    with pytest.raises(MergeRefused):
        merge_run(run_dir, allow_partial=True)


def test_a_torn_last_line_is_ignored_without_touching_the_shard(run_dir):
    path = _shard(run_dir, "clean", "direct", 0)
    lines = _lines(path)
    torn = json.loads(lines[-1])
    data = ("\n".join(lines[:-1]) + "\n" + lines[-1][:25]).encode()
    path.write_bytes(data)
    check = check_run(run_dir)
    unit = next(u for u in check.units if u.group == "simulated/demo/clean/direct")
    assert [(m.id, m.run) for m in unit.missing] == [(torn["id"], torn["run"])]
    assert unit.files[0].torn_bytes == 25
    with pytest.raises(MergeRefused, match=torn["id"]):
        merge_run(run_dir)
    assert merge_run(run_dir, allow_partial=True).missing == 1
    assert path.read_bytes() == data


def test_a_malformed_complete_line_names_file_and_line(run_dir, capsys):
    path = _shard(run_dir, "clean", "direct", 1)
    lines = _lines(path)
    lines[2] = lines[2][:-3]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"shard-00001-of-00003\.jsonl:3: malformed JSON"):
        check_run(run_dir)
    assert main([str(run_dir)]) == 2
    assert "shard-00001-of-00003.jsonl:3" in capsys.readouterr().err
    assert not (run_dir / "results.jsonl").exists()


def test_cli_exit_codes_and_table(run_dir, tmp_path, capsys):
    assert main([str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "simulated/demo/clean/direct" in out and "total" in out and "results.h5" in out
    lines = _lines(_shard(run_dir, "clean", "direct", 0))
    _shard(run_dir, "clean", "direct", 0).write_text("\n".join(lines[1:]) + "\n")
    assert main([str(run_dir), "-q"]) == 1
    out = capsys.readouterr().out
    assert "INCOMPLETE" in out and "simulated/demo/clean/reasoning" not in out  # -q: only units with problems
    assert main([str(run_dir), "--allow-partial"]) == 0
    assert "partial merge" in capsys.readouterr().err
    assert len(_lines(run_dir / "missing.jsonl")) == 1
    assert main([str(tmp_path / "absent")]) == 2
    assert not (tmp_path / "absent").exists()
    sidecar_path(_shard(run_dir, "clean", "direct", 2)).write_text("{not json")
    assert main([str(run_dir)]) == 2
    assert "meta.json:1" in capsys.readouterr().err


def test_bin_merge_runs_as_a_script(run_dir):
    proc = subprocess.run([sys.executable, str(REPO / "bin" / "merge"), str(run_dir), "-q"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "results.h5").exists()


def test_retried_error_rows_supersede_the_errors_in_the_merge(run_dir, pristine):
    data = pristine.parent.parent / "data"
    restored = data / "audio" / "absent.wav"
    restored.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(next((data / "audio").glob("*.wav")), restored)
    try:
        assert _run_every_shard(read_manifest(_manifest(run_dir)), data, run_dir, _manifest(run_dir),
                                retry_errors=True) == 0
    finally:
        restored.unlink()
    report = merge_run(run_dir)
    assert report.check.complete and report.check.totals()["duplicated"] == 0
    assert report.check.totals()["errors"] == 0
    merged = [json.loads(line) for line in _lines(run_dir / "results.jsonl")]
    retried = [row for row in merged if row["id"] == "demo_no_audio"]
    assert len(retried) == len(CONDITIONS) * len(MODES) * RUNS and all(row["error"] is None for row in retried)

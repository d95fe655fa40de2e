"""The perturb writer and CLI: files, manifests, sidecars, failures, determinism, formats."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from toolkit.audio import load_audio
from toolkit.cli.perturb import main
from toolkit.manifest import Item, read_manifest, write_manifest
from toolkit.perturb import apply_condition, parse_condition, perturb_manifest
from toolkit.sidecar import sidecar_path

REPO = Path(__file__).resolve().parent.parent
SR = 16000
CONDITIONS = ["clean", "mask-p20", "mask-p50-contiguous-noise", "noise-snr-20", "noise-snr0", "noise-snr20"]


def _item(item_id: str, audio: str | None) -> Item:
    return Item(id=item_id, dataset="synthetic", audio=audio, question="Which?", choices=["a", "b"], answer=1,
                meta={"category": "test"})


@pytest.fixture
def corpus(tmp_path, write_wav):
    """Four generated clips (one 44.1 kHz stereo, one silent), a missing one, a manifest."""
    data = tmp_path / "data"
    write_wav(data / "a.wav", seconds=1.0, freq=440.0)
    write_wav(data / "b.wav", seconds=0.7, sr=44100, freq=300.0, channels=2)
    write_wav(data / "sub" / "c.wav", seconds=1.3, freq=1000.0)
    sf.write(str(data / "silent.wav"), np.zeros(SR // 2), SR, subtype="PCM_16")
    items = [_item("a", "a.wav"), _item("b", "b.wav"), _item("c", "sub/c.wav"), _item("silent", "silent.wav"),
             _item("gone", "missing.wav")]
    manifest = write_manifest(data / "manifest.jsonl", items)
    return data, manifest, items


def _wav_bytes(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.wav"))}


def test_writes_files_manifests_and_sidecars_and_flags_failures(corpus, tmp_path):
    data, manifest, items = corpus
    out = tmp_path / "out"
    results = perturb_manifest(items, data, CONDITIONS, out, seed=4, source_manifest=manifest, progress=False)
    canonical = ["clean", "mask-p20-scattered-silence", "mask-p50-contiguous-noise", "noise-snr-20-white",
                 "noise-snr0-white", "noise-snr20-white"]
    assert list(results) == canonical
    for name in canonical:
        folder = out / name
        written = read_manifest(folder / "manifest.jsonl")
        assert [it.id for it in written] == [it.id for it in items]
        assert all(it.meta["condition"] == name and it.meta["category"] == "test" for it in written)
        by_id = {it.id: it for it in written}
        assert "audio not readable" in by_id["gone"].meta["condition_error"]
        assert not (folder / "gone.wav").exists()
        if name.startswith("noise"):
            assert by_id["silent"].meta["condition_error"] == "silent clip: SNR undefined"
            assert not (folder / "silent.wav").exists()
        for item_id in ("a", "b", "c"):
            item = by_id[item_id]
            assert item.audio == f"{item_id}.wav" and "condition_error" not in item.meta
            info = sf.info(str(folder / item.audio))
            assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "FLOAT")
            params = item.meta["perturbation"]
            if name.startswith("noise"):
                target = float(name.split("snr")[1].rsplit("-", 1)[0])
                assert abs(params["snr_measured_db"] - target) < 0.1
        sidecar = json.loads(sidecar_path(folder / "manifest.jsonl").read_text())
        assert sidecar["stage"] == "perturb"
        assert sidecar["params"]["condition"] == name and sidecar["params"]["seed"] == 4
        assert sidecar["params"]["format"] == "float" and sidecar["params"]["data_root"] == str(data.resolve())
        assert sidecar["params"]["source_manifest"] == str(manifest.resolve())
        assert sidecar["params"]["errors"] == (2 if name.startswith("noise") else 1)
    clean = sf.read(str(out / "clean" / "b.wav"), dtype="float32")[0]
    assert np.array_equal(clean, load_audio(data / "b.wav"))  # resampled, mono: the same decoding path


def test_on_the_fly_apply_equals_the_float_file(corpus, tmp_path):
    data, _, items = corpus
    out = tmp_path / "out"
    perturb_manifest(items, data, CONDITIONS, out, seed=9, progress=False)
    for item in items[:3]:
        x = load_audio(data / item.audio)
        for name in CONDITIONS:
            expected, _ = apply_condition(x, name, item.id, seed=9)
            folder = out / parse_condition(name).name
            assert np.array_equal(sf.read(str(folder / f"{item.id}.wav"), dtype="float32")[0], expected)


def test_output_is_bit_identical_across_order_workers_and_calls(corpus, tmp_path):
    data, _, items = corpus
    perturb_manifest(items, data, CONDITIONS, tmp_path / "one", seed=1, workers=1, progress=False)
    perturb_manifest(items[::-1], data, CONDITIONS[::-1], tmp_path / "two", seed=1, workers=2, progress=False)
    for item in items:  # one item at a time, as separate shards would
        perturb_manifest([item], data, CONDITIONS, tmp_path / "three", seed=1, progress=False)
    one, two, three = (_wav_bytes(tmp_path / name) for name in ("one", "two", "three"))
    assert one.keys() == two.keys() == three.keys() and len(one) == 6 * 3 + 3  # + the silent clip's 3 non-noise files
    for key in one:
        assert one[key] == two[key] == three[key], key
    other_seed = perturb_manifest(items[:1], data, ["noise-snr0"], tmp_path / "four", seed=2, progress=False)
    assert other_seed["noise-snr0-white"][0].meta["perturbation"]["noise_seed"] != \
        read_manifest(tmp_path / "one" / "noise-snr0-white" / "manifest.jsonl")[0].meta["perturbation"]["noise_seed"]


def test_pcm16_scales_loud_mixtures_records_the_gain_and_measures_what_was_written(corpus, tmp_path):
    data, _, items = corpus
    out = tmp_path / "out"
    results = perturb_manifest(items[:3], data, ["noise-snr-20", "noise-snr20", "clean"], out, fmt="pcm16",
                               progress=False)
    for item in results["noise-snr-20-white"]:
        params = item.meta["perturbation"]
        q, sr = sf.read(str(out / "noise-snr-20-white" / item.audio), dtype="int16")
        assert sf.info(str(out / "noise-snr-20-white" / item.audio)).subtype == "PCM_16"
        assert params["gain"] < 1.0  # -20 dB peaks are far above 1.0
        assert q.max() <= 32767 and q.min() >= -32768
        assert max(q.max(), -int(q.min())) > 30000  # scaled to just fit, not clipped
        reference = load_audio(data / items[[i.id for i in items].index(item.id)].audio) * params["gain"]
        written = q / 32768.0
        snr = 10 * math.log10(np.sum(reference.astype(np.float64) ** 2) / np.sum((written - reference) ** 2))
        assert params["snr_measured_db"] == pytest.approx(snr, abs=1e-6)
        assert abs(snr + 20) < 0.1
    assert all(it.meta["perturbation"]["gain"] == 1.0 for it in results["clean"])
    assert all(abs(it.meta["perturbation"]["snr_measured_db"] - 20) < 0.1 for it in results["noise-snr20-white"])


def test_noise_files_are_checked_recorded_and_used(corpus, tmp_path):
    data, _, items = corpus
    noises = tmp_path / "noises"
    noises.mkdir()
    sf.write(str(noises / "hum.wav"), 0.1 * np.sin(np.arange(SR) / 3.0), SR)
    out = tmp_path / "out"
    results = perturb_manifest(items[:2], data, ["noise-snr5-hum"], out, noise_dir=noises, progress=False)
    assert all(abs(it.meta["perturbation"]["snr_measured_db"] - 5) < 0.1 for it in results["noise-snr5-hum"])
    sidecar = json.loads(sidecar_path(out / "noise-snr5-hum" / "manifest.jsonl").read_text())
    assert len(sidecar["params"]["noise_files"]["hum"]["sha256"]) == 64
    with pytest.raises(ValueError, match="no noise file with key 'fan'; available: \\['hum'\\]"):
        perturb_manifest(items[:1], data, ["noise-snr5-fan"], out, noise_dir=noises, progress=False)
    with pytest.raises(ValueError, match="needs a noise folder"):
        perturb_manifest(items[:1], data, ["noise-snr5-hum"], out, progress=False)


def test_cli_end_to_end(corpus, tmp_path, capsys):
    data, manifest, _ = corpus
    out = tmp_path / "out"
    code = main(["--manifest", str(manifest), "--condition", "mask-p40", "--condition", "noise-snr10",
                 "--out-dir", str(out), "--seed", "3", "--workers", "2", "-q"])
    assert code == 1  # the silent and the missing clip are flagged
    table = capsys.readouterr().out
    assert "mask-p40-scattered-silence" in table and "noise-snr10-white" in table and "10.000" in table
    assert len(read_manifest(out / "noise-snr10-white" / "manifest.jsonl")) == 5
    assert sorted(p.name for p in (out / "mask-p40-scattered-silence").glob("*.wav")) == \
        ["a.wav", "b.wav", "c.wav", "silent.wav"]
    assert sidecar_path(out / "mask-p40-scattered-silence" / "manifest.jsonl").exists()


def test_cli_study_set_and_bad_input(corpus, tmp_path, capsys):
    data, _, items = corpus
    good = write_manifest(data / "good.jsonl", items[:1])
    assert main(["--manifest", str(good), "--conditions", "study", "--out-dir", str(tmp_path / "o"), "-q"]) == 0
    assert len(list((tmp_path / "o").iterdir())) == 11
    capsys.readouterr()
    assert main(["--manifest", str(good), "--condition", "mask-p200", "--out-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown condition 'mask-p200'" in err and "Valid: clean; mask-pNN" in err
    assert main(["--manifest", str(good), "--out-dir", str(tmp_path / "x")]) == 2
    assert main(["--manifest", str(good), "--conditions", "pilot", "--out-dir", str(tmp_path / "x")]) == 2
    assert main(["--manifest", str(tmp_path / "nope.jsonl"), "--condition", "clean",
                 "--out-dir", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_bin_perturb_subprocess_and_help_without_torch(corpus, tmp_path):
    data, manifest, items = corpus
    good = write_manifest(data / "good.jsonl", items[:2])
    run = subprocess.run([sys.executable, str(REPO / "bin" / "perturb"), "--manifest", str(good), "--condition",
                          "noise-snr-10", "--format", "pcm16", "--out-dir", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "noise-snr-10-white" in run.stdout
    assert sf.info(str(tmp_path / "out" / "noise-snr-10-white" / "a.wav")).subtype == "PCM_16"
    probe = ("import sys\nfrom toolkit.cli.perturb import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
             "    pass\nassert 'torch' not in sys.modules, 'torch imported by --help'\n")
    helped = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert helped.returncode == 0, helped.stderr
    assert "--conditions" in helped.stdout and "mask-pNN" in helped.stdout


def test_real_clips_round_trip(shared_data, tmp_path):
    clips = sorted((shared_data / "sakura-mini").glob("*/audio/*.wav"))[:3]
    if not clips:
        pytest.skip("no sakura-mini clips")
    items = [_item(f"real-{i}", str(p)) for i, p in enumerate(clips)]
    results = perturb_manifest(items, None, ["mask-p90", "noise-snr-20"], tmp_path, progress=False)
    for it in results["noise-snr-20-white"]:
        assert abs(it.meta["perturbation"]["snr_measured_db"] + 20) < 0.1
    for it, path in zip(results["mask-p90-scattered-silence"], clips):
        params = it.meta["perturbation"]
        assert params["n_masked"] == math.floor(0.9 * params["n_samples"] + 0.5)
        assert params["n_samples"] == load_audio(path).size


def test_a_failed_item_leaves_no_stale_file(corpus, tmp_path):
    data, _, items = corpus
    stale = tmp_path / "out" / "noise-snr0-white" / "silent.wav"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old run")
    results = perturb_manifest(items[3:4], data, ["noise-snr0"], tmp_path / "out", progress=False)
    assert "condition_error" in results["noise-snr0-white"][0].meta
    assert not stale.exists()

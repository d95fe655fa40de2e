"""Audio conditions: names, SNR and mask exactness, nesting, common random numbers, seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from toolkit.errors import ConditionError
from toolkit.perturb import (
    ClipContext,
    NoiseBank,
    apply_condition,
    expand_conditions,
    parse_condition,
    registry,
)
from toolkit.perturb.encode import to_pcm16
from toolkit.perturb.mask import SEGMENT_MAX, SEGMENT_MIN, masked_count, scattered_tiles
from toolkit.perturb.seeding import derive_seed, generator
from toolkit.registry import Registry

SR = 16000


def clip(n: int = 3 * SR, seed: int = 1) -> np.ndarray:
    """A tone plus a little noise, never exactly zero (so zeros in the output are the mask)."""
    t = np.arange(n) / SR
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n) + 0.02
    x[x == 0] = 1e-4
    return x.astype(np.float32)


def measured_snr(x: np.ndarray, y: np.ndarray) -> float:
    added = y.astype(np.float64) - x.astype(np.float64)
    return 10 * math.log10(np.sum(x.astype(np.float64) ** 2) / np.sum(added ** 2))


# --- names -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, canonical", [
    ("clean", "clean"),
    ("mask-p20", "mask-p20-scattered-silence"),
    ("mask-p20-noise", "mask-p20-scattered-noise"),
    ("mask-p5-end", "mask-p5-end-silence"),
    ("mask-p100-contiguous-noise", "mask-p100-contiguous-noise"),
    ("mask-p0-start", "mask-p0-start-silence"),
    ("mask-p007", "mask-p7-scattered-silence"),
    ("noise-snr-10", "noise-snr-10-white"),
    ("noise-snr0", "noise-snr0-white"),
    ("noise-snr-0", "noise-snr0-white"),
    ("noise-snr20", "noise-snr20-white"),
    ("noise-snr-2.5", "noise-snr-2.5-white"),
    ("noise-snr2.50-white", "noise-snr2.5-white"),
    ("noise-snr0-babble", "noise-snr0-babble"),
    ("noise-snr-5-cafe-2", "noise-snr-5-cafe-2"),
])
def test_parse_gives_canonical_full_name_and_is_idempotent(name, canonical):
    condition = parse_condition(name)
    assert condition.name == canonical
    again = parse_condition(condition.name)
    assert again.name == canonical and again == condition


@pytest.mark.parametrize("bad", ["", "Clean", "clean-x", "mask-p101", "mask-p-5", "mask-p20-sideways",
                                 "mask-p20-silence-start", "mask-p", "noise-snr", "noise-snrx", "noise-snr10-2",
                                 "noise-snr1e3", "foo"])
def test_bad_names_raise_with_the_valid_patterns(bad):
    with pytest.raises(ValueError, match="Valid: clean; mask-pNN"):
        parse_condition(bad)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match="Did you mean 'noise-snr10-white'"):
        parse_condition("nosie-snr10-white")


def test_registry_is_open_and_rejects_a_duplicate_prefix(monkeypatch):
    families = Registry("condition")
    for prefix, family in registry.FAMILIES.items():
        families.register(prefix, family)
    monkeypatch.setattr(registry, "FAMILIES", families)
    clean = parse_condition("clean")
    registry.register_condition("inject-", lambda name: clean, pattern="inject-...", examples=["inject-wrong-snr0"])
    assert parse_condition("inject-wrong-snr0") is clean
    assert "inject-..." in registry.known_patterns()
    with pytest.raises(ValueError, match="already registered"):
        registry.register_condition("mask-p", lambda name: clean)


def test_study_set_expands_to_canonical_names_without_repeats():
    names = [c.name for c in expand_conditions(["study", "mask-p20-scattered-silence", "clean"])]
    assert names == ["mask-p20-scattered-silence", "mask-p40-scattered-silence", "mask-p60-scattered-silence",
                     "mask-p80-scattered-silence", "mask-p90-scattered-silence", "mask-p100-scattered-silence",
                     "noise-snr-20-white", "noise-snr-10-white", "noise-snr0-white", "noise-snr10-white",
                     "noise-snr20-white", "clean"]


# --- seeds -------------------------------------------------------------------------------

def test_seed_derivation_is_a_stable_hash():
    # Pinned: a change here changes every perturbed file ever written.
    assert derive_seed(0, "a", "noise/white") == 3293477568347133275
    assert derive_seed(0, "a", "noise/white") != derive_seed(1, "a", "noise/white")
    assert derive_seed(0, "a", "noise/white") != derive_seed(0, "b", "noise/white")
    assert generator(0, "a", "x").random() == generator(0, "a", "x").random()


# --- noise -------------------------------------------------------------------------------

@pytest.mark.parametrize("snr", [-20, -10, -2.5, 0, 10, 20])
def test_white_noise_snr_is_exact_on_the_float32_output(snr):
    x = clip()
    y, params = apply_condition(x, f"noise-snr{snr}", "item-1", seed=3)
    assert y.dtype == np.float32 and y.shape == x.shape and np.isfinite(y).all()
    assert abs(measured_snr(x, y) - snr) < 1e-3
    assert params["snr_measured_db"] == pytest.approx(measured_snr(x, y), abs=1e-6)
    assert params["snr_db"] == snr and params["noise"] == "white"
    assert params["noise_seed"] == derive_seed(3, "item-1", "noise/white")


def test_all_snr_levels_scale_one_noise_realisation():
    x = clip()
    ctx = ClipContext("item-1", 0)
    added = []
    for snr in (-20, 0, 20):
        y, params = apply_condition(x, f"noise-snr{snr}", "item-1", 0, ctx)
        added.append((y.astype(np.float64) - x) / params["noise_scale"])
    np.testing.assert_allclose(added[0], added[1], atol=1e-4)
    np.testing.assert_allclose(added[0], added[2], atol=1e-2)  # tiny scale: float32 rounding of x dominates
    assert abs(np.corrcoef(added[0], added[2])[0, 1] - 1) < 1e-6


@pytest.mark.parametrize("snr", [-20, 0, 20])
def test_noise_file_is_looped_from_a_seeded_offset_at_exact_snr(tmp_path, snr):
    noise = np.random.default_rng(7).uniform(-0.5, 0.5, SR // 2).astype(np.float32)  # shorter than the clip
    sf.write(str(tmp_path / "babble.wav"), noise, SR, subtype="FLOAT")
    bank = NoiseBank(tmp_path)
    x = clip()
    y, params = apply_condition(x, f"noise-snr{snr}-babble", "item-1", 0, ClipContext("item-1", 0, bank))
    assert abs(measured_snr(x, y) - snr) < 1e-3
    assert params["noise"] == "babble" and params["noise_file"] == "babble.wav"
    expected = np.resize(np.roll(noise, -params["noise_offset"]), x.size) * params["noise_scale"]
    np.testing.assert_allclose(y.astype(np.float64) - x, expected, atol=1e-5)
    again, _ = apply_condition(x, f"noise-snr{snr}-babble", "item-1", 0, ClipContext("item-1", 0, NoiseBank(tmp_path)))
    assert np.array_equal(y, again)


def test_noise_key_without_a_bank_is_a_usage_error():
    with pytest.raises(ValueError, match="needs a noise folder"):
        apply_condition(clip(), "noise-snr0-babble", "item-1")


@pytest.mark.parametrize("x", [np.zeros(SR, np.float32), np.zeros(0, np.float32)], ids=["silent", "empty"])
def test_silent_clip_has_no_snr(x):
    with pytest.raises(ConditionError, match="silent clip: SNR undefined"):
        apply_condition(x, "noise-snr10", "item-1")


# --- masks -------------------------------------------------------------------------------

PLACEMENTS = ["scattered", "contiguous", "start", "end"]


@pytest.mark.parametrize("fill", ["silence", "noise"])
@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("percent", [0, 20, 90, 100])
def test_mask_covers_exactly_round_p_n_samples(percent, placement, fill):
    n = 3 * SR + 1  # odd: 90 % is 43200.9 -> 43201
    x = clip(n)
    y, params = apply_condition(x, f"mask-p{percent}-{placement}-{fill}", "item-1", seed=5)
    count = int(math.floor(percent / 100 * n + 0.5))
    assert params["n_masked"] == count == masked_count(n, percent)
    covered = np.zeros(n, bool)
    for start, end in params["segments"]:
        covered[start:end] = True
    assert covered.sum() == count
    assert np.array_equal(y[~covered], x[~covered])
    if fill == "silence":
        assert np.count_nonzero(y == 0) == count
    elif 0 < count < n:
        assert params["fill_rms_of"] == "unmasked"
        rms_unmasked = np.sqrt(np.mean(x[~covered].astype(np.float64) ** 2))
        assert np.sqrt(np.mean(y[covered].astype(np.float64) ** 2)) == pytest.approx(rms_unmasked, rel=1e-5)
    elif count == n:
        assert params["fill_rms_of"] == "whole clip"
        assert np.sqrt(np.mean(y.astype(np.float64) ** 2)) == pytest.approx(np.sqrt(np.mean(x ** 2.0)), rel=1e-5)
    if placement == "start" and count:
        assert params["segments"][0][0] == 0
    if placement == "end" and count:
        assert params["segments"][-1][1] == n
    if placement in ("contiguous", "start", "end"):
        assert len(params["segments"]) == (1 if count else 0)


@pytest.mark.parametrize("n", [1, 799, 800, 801, 1599, 8801, 16000, 48000 + 17, 160000])
def test_scattered_tiles_are_50_to_500_ms_and_tile_the_clip(n):
    starts, lengths = scattered_tiles(n, generator(0, "x", "mask/scattered"))
    assert lengths.sum() == n
    order = np.argsort(starts)
    assert np.array_equal(np.cumsum(lengths[order]) - lengths[order], starts[order])
    if n >= SEGMENT_MIN:
        assert lengths.min() >= SEGMENT_MIN and lengths.max() <= SEGMENT_MAX


@pytest.mark.parametrize("fill", ["silence", "noise"])
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_masks_are_nested_across_ratios(placement, fill):
    x = clip(2 * SR + 3)
    ctx = ClipContext("item-9", 11)
    previous = np.zeros(x.size, bool)
    for percent in (0, 10, 20, 40, 60, 80, 90, 100):
        _, params = apply_condition(x, f"mask-p{percent}-{placement}-{fill}", "item-9", 11, ctx)
        fresh, _ = apply_condition(x, f"mask-p{percent}-{placement}-{fill}", "item-9", 11)  # no shared context
        covered = np.zeros(x.size, bool)
        for start, end in params["segments"]:
            covered[start:end] = True
        assert not (previous & ~covered).any(), f"{percent}% mask does not contain the smaller one"
        assert np.array_equal(fresh, apply_condition(x, f"mask-p{percent}-{placement}-{fill}", "item-9", 11, ctx)[0])
        previous = covered


def test_masks_differ_between_items_and_seeds():
    x = clip()
    a = apply_condition(x, "mask-p40", "item-1", 0)[1]["segments"]
    assert a != apply_condition(x, "mask-p40", "item-2", 0)[1]["segments"]
    assert a != apply_condition(x, "mask-p40", "item-1", 1)[1]["segments"]


def test_mask_noise_fill_reuses_the_white_noise_draw():
    x = clip()
    ctx = ClipContext("item-1", 0)
    _, noisy = apply_condition(x, "noise-snr0", "item-1", 0, ctx)
    y, params = apply_condition(x, "mask-p50-contiguous-noise", "item-1", 0, ctx)
    white = (apply_condition(x, "noise-snr0", "item-1", 0)[0].astype(np.float64) - x) / noisy["noise_scale"]
    start, end = params["segments"][0]
    np.testing.assert_allclose(y[start:end] / params["fill_scale"], white[start:end], atol=1e-3)
    assert params["noise_seed"] == noisy["noise_seed"]


# --- determinism -------------------------------------------------------------------------

def test_outputs_do_not_depend_on_condition_order_or_shared_context():
    x = clip()
    names = ["noise-snr-10", "mask-p20", "mask-p60-noise", "noise-snr20", "mask-p30-contiguous", "clean"]
    ctx = ClipContext("item-1", 2)
    forward = {n: apply_condition(x, n, "item-1", 2, ctx)[0] for n in names}
    ctx = ClipContext("item-1", 2)
    backward = {n: apply_condition(x, n, "item-1", 2, ctx)[0] for n in reversed(names)}
    for n in names:
        assert np.array_equal(forward[n], backward[n])
        assert np.array_equal(forward[n], apply_condition(x.copy(), n, "item-1", 2)[0])


def test_context_for_another_item_is_refused():
    with pytest.raises(ValueError, match="clip context is for item"):
        apply_condition(clip(), "mask-p20", "item-1", 0, ClipContext("item-2", 0))


def test_pcm16_gain_keeps_every_sample_in_range():
    q, gain = to_pcm16(np.array([0.5, -2.0, 1.0], dtype=np.float32))
    assert gain == 0.5 and q.tolist() == [8192, -32768, 16384]
    q, gain = to_pcm16(np.array([0.25, -1.0], dtype=np.float32))
    assert gain == 1.0 and q.tolist() == [8192, -32768]

"""Shared fixtures: the optional ../shared/data folder and small generated audio."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("TOOLKIT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """Path of the real development data; skips the test when it is absent (fresh clones)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def write_wav():
    """Factory writing a short deterministic 16-bit WAV: ``write_wav(path, seconds=1.0, sr=16000, freq=440.0)``."""

    def _write(path: Path, seconds: float = 1.0, sr: int = 16000, freq: float = 440.0, channels: int = 1) -> Path:
        t = np.arange(int(seconds * sr)) / sr
        x = 0.3 * np.sin(2 * np.pi * freq * t)
        if channels > 1:
            x = np.stack([x] * channels, axis=1)
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), x, sr, subtype="PCM_16")
        return path

    return _write


@pytest.fixture(scope="session")
def tiny_folders(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Tiny random checkpoints of the real classes, saved like hub folders, built once per session.

    Keys: ``qwen2-audio``, ``qwen2.5-omni``, ``af3`` (with its ``think/`` adapter).
    """
    from toolkit.models.registry import build_tiny

    root = tmp_path_factory.mktemp("tiny-models")
    return {"qwen2-audio": build_tiny("qwen2-audio", root / "qwen2-audio"),
            "qwen2.5-omni": build_tiny("qwen2.5-omni", root / "qwen2.5-omni"),
            "af3": build_tiny("af3-think", root / "af3")}


@pytest.fixture(scope="session")
def tiny_salmonn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random SALMONN laid out as the release's four parts, built once per session."""
    from toolkit.models.registry import build_tiny

    return build_tiny("salmonn", tmp_path_factory.mktemp("salmonn") / "salmonn")


@pytest.fixture(scope="session")
def salmonn_greedy(tiny_salmonn: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same parts named by a ``salmonn.json`` elsewhere, with ``"num_beams": 1`` (greedy by default)."""
    import json

    path = tmp_path_factory.mktemp("salmonn-greedy") / "salmonn.json"
    path.write_text(json.dumps({"whisper_path": str(tiny_salmonn / "whisper"),
                                "beats_path": str(tiny_salmonn / "beats.pt"),
                                "llama_path": str(tiny_salmonn / "vicuna"), "ckpt": str(tiny_salmonn / "salmonn.pth"),
                                "num_beams": 1}))
    return path


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """``SLURM_CONF`` of a running test cluster (``slurm/ci/cluster.sh start DIR``, then
    ``source DIR/env.sh``). Skips when there is none, but fails when ``ALM_REQUIRE_SLURM=1``
    (CI), so a cluster that did not start cannot pass silently."""
    import shutil
    import subprocess

    required = os.environ.get("ALM_REQUIRE_SLURM") == "1"
    conf = os.environ.get("SLURM_CONF")
    reason = None
    if not conf:
        reason = "SLURM_CONF is not set (start one with slurm/ci/cluster.sh start DIR; source DIR/env.sh)"
    elif not Path(conf).is_file():
        reason = f"SLURM_CONF={conf} does not exist"
    elif shutil.which("sinfo") is None:
        reason = "sinfo is not installed (slurm/ci/install.sh)"
    else:
        try:
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=5)
            if out.returncode != 0 or not out.stdout.strip():
                reason = f"sinfo does not answer for SLURM_CONF={conf}: {out.stderr.strip()}"
        except subprocess.TimeoutExpired:
            reason = f"sinfo did not answer within 5 s for SLURM_CONF={conf}"
    if reason:
        if required:
            pytest.fail(f"ALM_REQUIRE_SLURM=1 but no SLURM cluster: {reason}", pytrace=False)
        pytest.skip(reason)
    return conf

"""Stable seeds for audio conditions: (global seed, item id, purpose) -> numpy Generator.

Seeds come from a SHA-256 of the three parts (never Python's ``hash()``, which is salted per
process), so a clip gets the same random draw in any process, on any node, in any order.
The *purpose* names what the draw is for (``"noise/white"``, ``"mask/scattered"`` ...) and
deliberately does not include the level (SNR, mask ratio): every level of one kind reuses
the same draw (common random numbers, nested masks).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np


def derive_seed(seed: int, item_id: str, purpose: str) -> int:
    """A 63-bit seed for one (global seed, item, purpose).

    Args:
        seed: the run's global seed.
        item_id: the manifest item id.
        purpose: what the draw is for, e.g. ``"noise/white"``.

    Returns:
        A non-negative integer below 2**63 (fits a signed 64-bit column when recorded).

    Example:
        >>> derive_seed(0, "demo-0", "noise/white") == derive_seed(0, "demo-0", "noise/white")
        True
    """
    key = json.dumps([int(seed), str(item_id), str(purpose)], ensure_ascii=True).encode("ascii")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 1


def generator(seed: int, item_id: str, purpose: str) -> np.random.Generator:
    """A PCG64 generator seeded by :func:`derive_seed` (through numpy's SeedSequence).

    Args:
        seed: the run's global seed.
        item_id: the manifest item id.
        purpose: what the draw is for.

    Returns:
        A fresh generator; equal arguments give equal streams.
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(derive_seed(seed, item_id, purpose))))

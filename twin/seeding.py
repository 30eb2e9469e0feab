"""One seed per run, split per named component, so adding a component never shifts the others."""

from __future__ import annotations

import hashlib

import numpy as np


def component_rng(seed: int, component: str) -> np.random.Generator:
    """A generator for ``component`` derived from the run seed and the component's name."""
    digest = hashlib.sha256(component.encode("utf-8")).digest()
    salt = int.from_bytes(digest[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, salt]))

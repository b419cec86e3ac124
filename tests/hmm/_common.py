"""Shared helpers for the kbind.hmm tests (fixture loading)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def load_json(path: Path):
    with open(path) as fh:
        return json.load(fh)


def f32(x) -> np.float32:
    return np.float32(x)


def same_f32(a, b) -> bool:
    """Bitwise equality of two values as float32."""
    return np.float32(a).view(np.uint32) == np.float32(b).view(np.uint32)

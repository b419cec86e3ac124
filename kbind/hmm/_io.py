"""Float32 arithmetic helpers for the ``kbind.hmm`` objects.

Kaldi keeps transition probabilities and log-probabilities in ``float`` and
computes them with ``expf``/``logf``; these helpers reproduce those values
(correctly rounded through double) so the models equal Kaldi's bit for bit.
The serialisation primitives the HMM objects use are in
:mod:`kbind.io.stream` (tokens, basic types including uint32, integer vectors,
the Kaldi text float vector, :class:`~kbind.io.stream.KaldiObject`) and
:mod:`kbind.io.matrix` (binary float vectors, ``write_vector``).
"""

from __future__ import annotations

import math

import numpy as np


def f32(x) -> float:
    """``x`` rounded to float32, as a Python float."""
    return float(np.float32(x))


def exp_f32(x: float) -> float:
    """``expf`` of a float32 value (correctly rounded via double)."""
    x = float(x)
    if x > 89.0:  # beyond float32 range
        return float("inf")
    return float(np.float32(math.exp(x)))


def log_f32(x: float) -> float:
    """``logf`` of a float32 value (correctly rounded via double)."""
    x = float(x)
    if x <= 0.0:
        return float("-inf") if x == 0.0 else float("nan")
    return float(np.float32(math.log(x)))

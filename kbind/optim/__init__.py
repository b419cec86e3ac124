"""Optimisation pieces that are not layers: Kaldi's online natural-gradient
preconditioner (:class:`OnlineNaturalGradient`, ``lfmmi-spec.md`` section 5).

The layers that use it are in :mod:`kbind.nn.natural_gradient`; max-change,
L2 and the learning-rate schedule are in :mod:`kbind.train`.
"""

from .natural_gradient import DELTA, EPSILON, NUM_INITIAL_UPDATES, OnlineNaturalGradient

__all__ = ["OnlineNaturalGradient", "EPSILON", "DELTA", "NUM_INITIAL_UPDATES"]

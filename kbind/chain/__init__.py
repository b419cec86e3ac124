"""Kaldi's chain (LF-MMI) objective in PyTorch.

* :class:`DenominatorGraph` -- a den.fst in Kaldi's layout, with Kaldi's
  initial probabilities;
* :func:`denominator_logprob` -- Kaldi's leaky-HMM denominator forward-backward
  (probability space, float32), differentiable;
* :class:`Supervision`, :func:`numerator_logprob` -- numerator graphs
  (constrained or e2e/unconstrained) and their forward-backward, differentiable;
* :class:`ChainLoss` -- ``ComputeChainObjfAndDeriv`` with l2, out-of-range and
  cross-entropy regularisation, as a loss to minimise;
* :mod:`kbind.chain.phone_lm`, :mod:`kbind.chain.den_fst` -- ``chain-est-phone-lm``
  and ``chain-make-den-fst`` (the same files as Kaldi's, bit for bit).

The forward-backward passes run the C kernels of ``cbridge/`` on the CPU in
float32 and torch ops otherwise (any device, any float dtype).
"""

from .den_graph import DenominatorGraph, compute_initial_probs
from .denominator import (DenominatorResult, denominator_forward_backward,
                          denominator_logprob)
from .loss import ChainLoss, ChainStats
from .numerator import NumeratorResult, numerator_forward_backward, numerator_logprob
from .supervision import NumeratorFst, Supervision

__all__ = [
    "DenominatorGraph", "compute_initial_probs",
    "denominator_logprob", "denominator_forward_backward", "DenominatorResult",
    "Supervision", "NumeratorFst",
    "numerator_logprob", "numerator_forward_backward", "NumeratorResult",
    "ChainLoss", "ChainStats",
]

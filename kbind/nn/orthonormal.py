"""The semi-orthogonal constraint of TDNN-F (Povey et al., Interspeech 2018).

Kaldi's ``ConstrainOrthonormalInternal`` (nnet-utils.cc) nudges a matrix ``M``
(rows <= cols; a taller matrix is handled through its transpose) towards
``M Mᵀ = α² I``. It takes one gradient step on ``‖P − α² I‖²_F`` with
``P = M Mᵀ``::

    M ← M − (4ν / α²) (P − α² I) M,        ν = 0.125 ("update speed")

``ν = 1/8`` gives quadratic convergence near the constraint. With a *floating*
scale (Kaldi's ``orthonormal-constraint=-1``, the TDNN-F default) α is chosen
each time as ``α² = tr(P Pᵀ) / tr(P)`` and the step is slowed down when the
eigenvalues of ``P`` are far from equal: with
``ratio = tr(P Pᵀ) · rows / tr(P)²`` (≥ 1, the mean-square over the squared
mean of the eigenvalues), ``ν`` is halved when ``ratio > 1.02`` and halved
again when ``ratio > 1.1``. A matrix with ``tr(P) < 1e-15`` is left alone.
With a fixed scale ``c > 0`` (``orthonormal-constraint=c``), ``α = c`` and
``ν`` stays 0.125.

The fixed point is ``P = α² I``: every row has norm α and rows are
orthogonal.

Kaldi calls this after every parameter update, but for each constrained
component only with probability 1/4 (``RandInt(0, 3) == 0``), since the
matrix cannot stray far in a few steps. :func:`apply_orthonormal_constraints`
does the same for every module carrying a non-zero ``orthonormal_constraint``
attribute (``< 0``: floating, ``> 0``: fixed scale), e.g.
:class:`kbind.nn.layers.TdnnAffine`.
"""

from __future__ import annotations

import random
from typing import List, Optional

import torch
from torch import nn

__all__ = ["constrain_orthonormal_", "apply_orthonormal_constraints", "UPDATE_SPEED"]

UPDATE_SPEED = 0.125
"""Kaldi's ``update_speed`` ν: 1/8 converges quadratically near the constraint."""


def _constrain_rows_(M: torch.Tensor, scale: Optional[float], update_speed: float
                     ) -> Optional[float]:
    P = M @ M.t()
    if scale is None:
        trace_P = torch.trace(P).item()
        trace_P_P = torch.sum(P * P).item()  # tr(P Pᵀ); P is symmetric
        if not trace_P >= 1e-15:  # also catches NaN, as Kaldi's warning path
            return None
        alpha2 = trace_P_P / trace_P
        ratio = trace_P_P * P.shape[0] / (trace_P * trace_P)
        if not ratio > 0.9:
            raise FloatingPointError(
                f"orthonormal constraint: eigenvalue ratio {ratio} < 0.9 (roundoff or NaN)")
        if ratio > 1.02:
            update_speed *= 0.5
            if ratio > 1.1:
                update_speed *= 0.5
    else:
        alpha2 = float(scale) * float(scale)
    P.diagonal().sub_(alpha2)
    M.sub_((4.0 * update_speed / alpha2) * (P @ M))
    return alpha2 ** 0.5


@torch.no_grad()
def constrain_orthonormal_(weight: torch.Tensor, scale: Optional[float] = None,
                           update_speed: float = UPDATE_SPEED) -> Optional[float]:
    """One step of Kaldi's semi-orthogonal constraint on ``weight``, in place.

    Args:
        weight: 2-D ``(rows, cols)`` matrix (Kaldi's linear params, rows =
            output dim). If ``rows > cols`` the step is taken on ``weightᵀ``.
        scale: ``None`` (or a negative number, Kaldi's ``-1``) for a floating
            scale; a positive number ``c`` to drive ``W Wᵀ`` to ``c² I``.
        update_speed: ν, 0.125 in Kaldi.

    Returns:
        The α used (row norm aimed at), or ``None`` if the matrix was skipped
        because ``tr(W Wᵀ) < 1e-15``.

    Example::

        w = torch.randn(64, 512) / 512 ** 0.5
        for _ in range(20):
            constrain_orthonormal_(w, scale=1.0)   # now w @ w.T ≈ I
    """
    if weight.dim() != 2:
        raise ValueError(f"constrain_orthonormal_: expected a matrix, got shape "
                         f"{tuple(weight.shape)}")
    if scale is not None and scale == 0:
        raise ValueError("constrain_orthonormal_: scale must be None, negative "
                         "(floating) or positive")
    if scale is not None and scale < 0:
        scale = None
    if weight.shape[0] <= weight.shape[1]:
        return _constrain_rows_(weight, scale, update_speed)
    M = weight.t().contiguous()
    alpha = _constrain_rows_(M, scale, update_speed)
    weight.copy_(M.t())
    return alpha


def apply_orthonormal_constraints(model: nn.Module, step: int,
                                  rng: Optional[random.Random] = None) -> List[str]:
    """Apply the constraint to every module with a non-zero ``orthonormal_constraint``.

    Call it after the optimizer step (Kaldi: after the update and
    ``ScaleBatchnormStats``). Each module's ``weight`` (Kaldi layout
    ``(out, in·#offsets)``) gets one step of :func:`constrain_orthonormal_`.

    Args:
        model: any module tree.
        step: the minibatch counter; used only when ``rng`` is ``None``.
        rng: Kaldi's cadence: each constrained module is updated when
            ``rng.randint(0, 3) == 0`` (one draw per module, as
            ``RandInt(0, 3)``), i.e. every 4th minibatch on average. With
            ``rng=None`` the cadence is deterministic: all modules on steps
            where ``step % 4 == 0``.

    Returns:
        Names of the modules that were updated this time.
    """
    done = []
    for name, module in model.named_modules():
        constraint = getattr(module, "orthonormal_constraint", 0.0)
        if not constraint:
            continue
        if rng is None:
            if step % 4 != 0:
                continue
        elif rng.randint(0, 3) != 0:
            continue
        constrain_orthonormal_(module.weight, None if constraint < 0 else constraint)
        done.append(name)
    return done

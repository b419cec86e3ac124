"""Kaldi's update step limits: per-component and global max-change, and L2.

Kaldi (``NnetChainTrainer::TrainInternal``, ``nnet-utils.cc``), per minibatch:

1. the backward pass puts each component's (preconditioned, learning-rate
   scaled) update into ``delta``;
2. ``ApplyL2Regularization``: ``delta_c += -2 * S * l2_factor * lr_c * l2_c * params_c``
   (``S`` = number of sequences in the minibatch, ``l2_factor = 1/num_jobs``);
3. ``UpdateNnetWithMaxChange(delta, max_param_change, max_change_scale=1, scale)``:
   per component ``n_c = ||delta_c||_F``; ``f_c = max_change_c / (n_c |scale|)``
   if ``max_change_c > 0`` and ``n_c |scale| > max_change_c``, else 1; global
   ``n = |scale| sqrt(sum_c f_c^2 n_c^2)``; if ``max_param_change > 0`` and
   ``n > max_param_change``, ``scale *= max_param_change / n``; an infinite
   ``n`` fails the update ("Infinite parameter change, will not apply").
   Then ``params_c += scale * f_c * delta_c``.

A failed update is dropped whole. Kaldi tests only the global norm, after
the per-component factors, and only when ``max_param_change > 0``: a
component with an infinite norm and a max-change gets ``f_c = 0`` and
``0 * inf = NaN`` passes the test and is applied (a NaN norm too). Here any
non-finite component norm fails the update, with or without limits.

In PyTorch the optimizer computes the update. :class:`MaxChangeStep` runs
any ``torch.optim`` optimizer's ``step()``, takes the change it made to each
component (the "delta", which includes momentum and L2 if the optimizer
does them) and re-applies it under Kaldi's limits with
:func:`apply_max_change`. With ``torch.optim.SGD`` and ``momentum = mu``
Kaldi's ``delta <- mu * delta + lr * grad; params += (1 - mu) * delta``
equals SGD with learning rate ``lr * (1 - mu)``, and the momentum buffer is,
as Kaldi's ``delta``, not affected by the max-change factors. A component is
one optimizer parameter group (:func:`kbind.nn.component_param_groups`: one
per module owning parameters, with ``max_change`` and ``l2_regularize``).

When the update fails (a non-finite gradient, checked before the step, or a
non-finite change made by the step itself, e.g. a momentum buffer that
overflows) :class:`MaxChangeStep` leaves the parameters *and* the optimizer
state (momentum buffers, Adam moments and step counts) exactly as they were,
so the next step is the one an optimizer that never saw the minibatch would
take. (Kaldi zeroes its momentum ``delta`` after a failed update, since the
bad gradient is already in it; here it never enters the state.) The state is
copied before every step to make that possible. NG-SGD layers pass a
non-finite gradient on without preconditioning it, their state unchanged
(:mod:`kbind.nn.natural_gradient`).

L2 (:func:`add_l2_to_grads`) is added to the gradients before the step, which
for SGD is exactly Kaldi's ``delta`` term (for adaptive optimizers it is
coupled weight decay).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch

from ..arrays import has_nonfinite

__all__ = ["apply_max_change", "MaxChangeStats", "MaxChangeStep", "add_l2_to_grads"]


@dataclass
class MaxChangeStats:
    """What :func:`apply_max_change` did (Kaldi prints these per job)."""
    num_components: int = 0
    num_limited: int = 0                  # components whose f_c < 1
    min_factor: float = 1.0               # smallest f_c
    min_factor_name: str = ""
    global_factor: float = 1.0            # scale applied by max_param_change
    norm: float = 0.0                     # global norm after per-component limits
    skipped: bool = False                 # non-finite change: the update was not applied
    nonfinite_component: str = ""         # the first component whose change is not finite
    factors: List[float] = field(default_factory=list)

    def kaldi_lines(self, max_param_change: float) -> List[str]:
        if self.skipped:
            return [f"Infinite parameter change (in {self.nonfinite_component}), will not "
                    "apply."]
        lines = []
        if self.num_limited:
            lines.append(f"Per-component max-change active on {self.num_limited} / "
                         f"{self.num_components} Updatable Components. (Smallest factor="
                         f"{self.min_factor:.6g} on {self.min_factor_name})")
        if self.global_factor < 1.0:
            lines.append(f"Global max-change factor was {self.global_factor:.6g} with "
                         f"max-change={max_param_change:g}.")
        return lines


def apply_max_change(deltas: Sequence[Sequence[torch.Tensor]], max_changes: Sequence[float],
                     max_param_change: float, scale: float = 1.0,
                     names: Optional[Sequence[str]] = None) -> MaxChangeStats:
    """Kaldi's ``UpdateNnetWithMaxChange`` factors, applied to ``deltas`` in place.

    Args:
        deltas: per component, the list of its parameter updates (all
            tensors of a component share one norm, as Kaldi's components).
        max_changes: per component ``max_change_c`` (``<= 0``: no limit).
        max_param_change: the global limit (``<= 0``: none).
        scale: Kaldi's ``scale`` argument (``1 - momentum`` there); the
            tensors are multiplied by ``scale * f_c * global factor``.
        names: component names, for the stats.

    After the call ``params_c += deltas_c`` performs Kaldi's update. If a
    component's norm is not finite the update fails: ``stats.skipped`` is set
    and the deltas are zeroed.
    """
    if len(deltas) != len(max_changes):
        raise ValueError("deltas and max_changes have different lengths")
    stats = MaxChangeStats(num_components=len(deltas))
    norms = []
    for comp in deltas:
        sq = 0.0
        for d in comp:
            sq += float(torch.sum(d.detach().double() ** 2))
        norms.append(math.sqrt(sq))
    bad = next((i for i, n in enumerate(norms) if not math.isfinite(n)), None)
    if bad is not None:
        stats.skipped = True
        stats.nonfinite_component = names[bad] if names else str(bad)
        stats.global_factor = 0.0
        for comp in deltas:
            for d in comp:
                d.zero_()
        return stats
    ascale = abs(scale)
    factors = []
    for i, (n_c, mc) in enumerate(zip(norms, max_changes)):
        f = 1.0
        if mc > 0 and n_c * ascale > mc:
            f = mc / (n_c * ascale)
            stats.num_limited += 1
            if f < stats.min_factor:
                stats.min_factor = f
                stats.min_factor_name = names[i] if names else str(i)
        factors.append(f)
    norm = ascale * math.sqrt(sum((f * n) ** 2 for f, n in zip(factors, norms)))
    stats.norm = norm
    stats.factors = factors
    if max_param_change > 0 and norm > max_param_change:
        stats.global_factor = max_param_change / norm
        scale = scale * stats.global_factor
    for comp, f in zip(deltas, factors):
        s = scale * f
        if s != 1.0:
            for d in comp:
                d.mul_(s)
    return stats


def add_l2_to_grads(param_groups: Sequence[dict], num_sequences: int,
                    l2_regularize_factor: float = 1.0) -> None:
    """Kaldi's ``ApplyL2Regularization`` as a gradient term:
    ``grad += 2 * S * l2_factor * l2_c * params`` for each group with
    ``l2_regularize > 0`` (with ``-lr`` applied by SGD this is Kaldi's
    ``delta += -2 S l2_factor lr l2 params``)."""
    for g in param_groups:
        l2 = float(g.get("l2_regularize", 0.0))
        if l2 <= 0:
            continue
        c = 2.0 * num_sequences * l2_regularize_factor * l2
        for p in g["params"]:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad.add_(p.detach(), alpha=c)


def _first_nonfinite_grad(groups: Sequence[dict]) -> Optional[int]:
    """Index of the first group with a non-finite gradient (one device sync when
    all are finite)."""
    owners, grads = [], []
    for i, g in enumerate(groups):
        for p in g["params"]:
            if p.grad is not None:
                owners.append(i)
                grads.append(p.grad)
    return next((i for i, bad in zip(owners, has_nonfinite(grads)) if bad), None)


def _copy_state(optimizer: torch.optim.Optimizer) -> Dict[torch.Tensor, dict]:
    return {p: {k: v.clone() if torch.is_tensor(v) else v for k, v in optimizer.state[p].items()}
            for g in optimizer.param_groups for p in g["params"] if p in optimizer.state}


def _restore_state(optimizer: torch.optim.Optimizer, saved: Dict[torch.Tensor, dict]) -> None:
    for g in optimizer.param_groups:
        for p in g["params"]:
            if p in saved:
                optimizer.state[p] = saved[p]
            else:
                optimizer.state.pop(p, None)


class MaxChangeStep:
    """Apply an optimizer's step under Kaldi's max-change limits.

    ``optimizer.param_groups`` are the components; each group may carry
    ``max_change`` (default 0 = none) and ``name``. Usage::

        step = MaxChangeStep(optimizer, max_param_change=2.0)
        loss.backward(); add_l2_to_grads(optimizer.param_groups, S)
        stats = step()          # optimizer.step() + max-change

    A non-finite gradient or change fails the update (``stats.skipped``):
    parameters and optimizer state are left as they were (module doc).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_param_change: float = 2.0):
        self.optimizer = optimizer
        self.max_param_change = float(max_param_change)

    def __call__(self) -> MaxChangeStats:
        groups = self.optimizer.param_groups
        names = [str(g.get("name", i)) for i, g in enumerate(groups)]
        with torch.no_grad():
            bad = _first_nonfinite_grad(groups)
            if bad is not None:
                return MaxChangeStats(num_components=len(groups), global_factor=0.0,
                                      skipped=True, nonfinite_component=names[bad])
            old = [[p.detach().clone() for p in g["params"]] for g in groups]
            old_state = _copy_state(self.optimizer)
            self.optimizer.step()
            deltas = []
            for g, olds in zip(groups, old):
                comp = []
                for p, o in zip(g["params"], olds):
                    comp.append(p.detach() - o)   # the optimizer's delta
                deltas.append(comp)
            stats = apply_max_change(deltas, [float(g.get("max_change", 0.0)) for g in groups],
                                     self.max_param_change, names=names)
            if stats.skipped:
                _restore_state(self.optimizer, old_state)
                for g, olds in zip(groups, old):
                    for p, o in zip(g["params"], olds):
                        p.copy_(o)
                return stats
            for g, olds, comp, f in zip(groups, old, deltas, stats.factors):
                if f * stats.global_factor == 1.0:
                    continue        # unchanged: keep the optimizer's result bit for bit
                for p, o, d in zip(g["params"], olds, comp):
                    p.copy_(o + d)
        return stats

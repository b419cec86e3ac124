"""The optimizer and the update of one minibatch, as Kaldi's trainers make them.

Every kbind trainer runs the same steps around its own objective:

* at the start of each iteration, :func:`start_iteration`: the learning rate
  of Kaldi's schedule (:mod:`kbind.train.schedule`) on every component, times
  its ``learning_rate_factor`` (e.g. the chain xent output's
  ``0.5 / xent_regularize``), and the dropout proportions of
  ``dropout_schedule`` at the fraction of the data processed;
* after each backward pass, :func:`update_after_backward`, which is what
  Kaldi's ``NnetTrainer::TrainInternal`` / ``NnetChainTrainer::TrainInternal``
  do after the backward pass, in Kaldi's order:

  1. ``ApplyL2Regularization``: each component's ``l2_regularize`` times
     ``2 * S * l2_regularize_factor`` (``S`` sequences or chunks in the
     minibatch, Kaldi's ``GetNumNvalues``; the factor is ``1 / num_jobs``)
     added to its gradient (:func:`kbind.train.add_l2_to_grads`);
  2. the optimizer step under per-component and global max-change
     (:class:`kbind.train.MaxChangeStep`; a non-finite change is not applied,
     with a warning);
  3. ``ScaleBatchnormStats(batchnorm_stats_scale)`` (0.8);
  4. ``ConstrainOrthonormal``: one step of the semi-orthogonal constraint on
     each constrained component with probability 1/4, drawn from the
     trainer's own (checkpointed) generator.

  Steps 3 and 4 run even when the update failed, as in Kaldi.

Components are the optimizer's parameter groups
(:func:`kbind.nn.component_param_groups`). SGD follows Kaldi's momentum
convention (``delta = momentum * delta + lr * grad``, ``params += (1 - momentum)
* delta``), so the torch learning rate is ``lr * (1 - momentum)``. The
gradients are those of Kaldi's objective, *summed* over frames (not averaged),
so that Kaldi's learning rates, L2 constants and max-change values mean what
they mean in Kaldi.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import List

import torch

from .max_change import MaxChangeStats, MaxChangeStep, add_l2_to_grads
from .schedule import LearningRateSchedule

__all__ = ["OptimConfig", "make_optimizer", "start_iteration", "update_after_backward"]

log = logging.getLogger(__name__)


@dataclass
class OptimConfig:
    """Optimizer, learning-rate schedule and per-minibatch update options.

    Defaults are those of Kaldi's ``steps/libs/nnet3/train/common.py`` and
    ``nnet3-train``; each trainer sets its own in its config."""
    optimizer: str = "sgd"                 # sgd | adam (NG-SGD is the model's: natural_gradient)
    momentum: float = 0.0                  # --trainer.optimization.momentum (SGD only)
    initial_effective_lrate: float = 3e-4  # --trainer.optimization.initial-effective-lrate
    final_effective_lrate: float = 3e-5    # --trainer.optimization.final-effective-lrate
    num_jobs: int = 1                      # Kaldi's num_jobs_initial (scales lr and L2)
    num_jobs_final: int = 0                # Kaldi's num_jobs_final (0: = num_jobs)
    max_param_change: float = 2.0          # --trainer.max-param-change (global max-change)
    batchnorm_stats_scale: float = 0.8     # nnet3-train --batchnorm-stats-scale
    orthonormal_constraint: bool = True    # apply the components' orthonormal-constraint
    dropout_schedule: str = ""             # --trainer.dropout-schedule, e.g. 0,0@0.20,0.5@0.50,0
    adam_betas: List[float] = field(default_factory=lambda: [0.9, 0.999])

    def schedule(self, num_iters: int) -> LearningRateSchedule:
        """Kaldi's learning-rate schedule over ``num_iters`` iterations."""
        return LearningRateSchedule(self.initial_effective_lrate, self.final_effective_lrate,
                                    num_iters, self.num_jobs, self.num_jobs_final)


def make_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD or Adam over the model's components, each with its learning-rate factor,
    per-component max-change and L2 (read by :func:`update_after_backward`)."""
    from kbind.nn import component_param_groups
    groups = component_param_groups(model)
    lr = cfg.initial_effective_lrate
    for g in groups:
        g["lr"] = lr * g["learning_rate_factor"]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=tuple(cfg.adam_betas))
    raise ValueError(f"unknown optimizer {cfg.optimizer!r} (sgd | adam)")


def start_iteration(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    schedule: LearningRateSchedule, iteration: int, cfg: OptimConfig) -> float:
    """Set iteration ``iteration``'s learning rate on every component (times its
    factor, times ``1 - momentum`` for SGD) and its dropout proportions; return
    the learning rate."""
    from kbind.nn import dropout_proportions, set_dropout_proportions
    lr = schedule.learning_rate(iteration)
    scale = (1.0 - cfg.momentum) if cfg.optimizer == "sgd" else 1.0
    for g in optimizer.param_groups:
        g["lr"] = lr * g["learning_rate_factor"] * scale
    if cfg.dropout_schedule:
        proportions = dropout_proportions(cfg.dropout_schedule,
                                          schedule.data_fraction(iteration))
        if set_dropout_proportions(model, proportions) == 0:
            raise ValueError(f"dropout_schedule {cfg.dropout_schedule!r}: the model has no "
                             "dropout components (kbind.nn.GeneralDropout)")
    return lr


def update_after_backward(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                          cfg: OptimConfig, num_sequences: int, l2_regularize_factor: float,
                          orthonormal_rng: random.Random) -> MaxChangeStats:
    """L2, optimizer step under max-change, batch-norm stats and the orthonormal
    constraint, after ``loss.backward()`` (see the module doc).

    Args:
        num_sequences: sequences (chunks) in the minibatch, ``S`` of the L2 term.
        l2_regularize_factor: ``1 / num_jobs`` of the iteration
            (:meth:`LearningRateSchedule.l2_regularize_factor`).
        orthonormal_rng: the generator of the constraint's 1-in-4 draws
            (checkpoint it with the trainer's other generators).

    Returns what max-change did (``skipped`` when the update was not applied).
    """
    from kbind.nn import apply_orthonormal_constraints, scale_batchnorm_stats
    add_l2_to_grads(optimizer.param_groups, num_sequences, l2_regularize_factor)
    stats = MaxChangeStep(optimizer, cfg.max_param_change)()
    for line in stats.kaldi_lines(cfg.max_param_change):
        if stats.skipped:
            log.warning("%s", line)
        else:
            log.debug("%s", line)
    scale_batchnorm_stats(model, cfg.batchnorm_stats_scale)
    if cfg.orthonormal_constraint:
        apply_orthonormal_constraints(model, 0, rng=orthonormal_rng)
    return stats

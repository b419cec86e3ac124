"""The optimizers kbind's trainers build, with Kaldi's per-component learning rates.

Parameter groups come from :func:`kbind.nn.component_param_groups` (one per
component, each with its ``learning_rate_factor``, e.g. the xent output's
0.5 / xent_regularize). SGD follows Kaldi's momentum convention
(``params += (1 - momentum) * delta``, ``delta = momentum * delta + lr * grad``),
so the torch learning rate is ``lr * (1 - momentum)``.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["make_optimizer", "set_learning_rate"]


def make_optimizer(model, name: str, lr: float, momentum: float = 0.0,
                   adam_betas: Sequence[float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """``name``: ``sgd`` or ``adam``."""
    from kbind.nn import component_param_groups
    groups = component_param_groups(model)
    for g in groups:
        g["lr"] = lr * g["learning_rate_factor"]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=tuple(adam_betas))
    raise ValueError(f"unknown optimizer {name!r} (sgd | adam)")


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float, name: str,
                      momentum: float = 0.0) -> None:
    """Set every group's rate to ``lr`` times its factor (times ``1 - momentum``
    for SGD, Kaldi's convention)."""
    scale = (1.0 - momentum) if name == "sgd" else 1.0
    for g in optimizer.param_groups:
        g["lr"] = lr * g["learning_rate_factor"] * scale

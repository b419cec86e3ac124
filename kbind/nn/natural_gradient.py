"""NG-SGD linear layers: Kaldi's ``NaturalGradientAffineComponent`` /
``LinearComponent`` update as a PyTorch layer (``lfmmi-spec.md`` 5.7).

Kaldi's update of an affine component with input rows ``x`` (``N x I``) and
output derivatives ``g`` (``N x O``) is::

    X_in  = [x | 1]                        # bias as an appended column of ones
    X̂_in, s_in  = preconditioner_in(X_in)    # OnlineNaturalGradient, rank_in
    ĝ,    s_out = preconditioner_out(g)      # rank_out
    linear += lr · s_in · s_out · ĝᵀ X̂_in[:, :I]
    bias   += lr · s_in · s_out · ĝᵀ X̂_in[:, I]

:class:`NaturalGradientLinear` computes exactly this in its backward pass:
its forward is ``F.linear``; a custom autograd ``Function`` computes the
input gradient ``g W`` with the current weights (as Kaldi's Backprop does,
before the update) and, instead of the plain ``gᵀ x``, the preconditioned
``s_in s_out ĝᵀ X̂_in`` as the weight (and bias) gradient. Any optimizer then
applies it (with ``torch.optim.SGD`` and learning rate ``lr`` that is
Kaldi's step; L2 and max-change act on the result, as in Kaldi). In PyTorch
``g`` is ``d loss / d y``, the negative of Kaldi's derivative; the
preconditioner is odd in ``g`` (its state depends on ``g`` only through
``gᵀg``-like products), so the result is exactly the negated Kaldi update.

Why a custom ``Function`` (and not a hook that rewrites ``.grad``): the
preconditioner needs both the layer's input and its output derivative of the
same backward pass, which the ``Function`` has at hand; the weight gradient
is produced once, already preconditioned, so nothing is modified in place
(no saved tensor, no ``.grad`` rewritten after accumulation, gradient
accumulation over several backward passes adds preconditioned terms exactly
like Kaldi's delta), and ``DistributedDataParallel``'s gradient hooks see
the final gradient. If the backward pass does not need the weight gradient
(``torch.autograd.grad(loss, inputs=x)``), the preconditioners are not run
and their state does not advance.

Ranks and options are Kaldi's (xconfig / ``InitFromConfig``):
``rank_in = min(20, (I + 1) // 2)``, ``rank_out = min(80, (O + 1) // 2)``
(``I`` excluding the bias column; for a TDNN layer ``I`` is the spliced
dimension), ``update_period = 4``, ``num_samples_history = 2000``,
``alpha = 4``. The preconditioners are child modules whose buffers are in the
layer's ``state_dict`` (checkpoints resume exactly).

Non-finite input. A minibatch whose layer input or output derivative is not
finite (inf or NaN) is not preconditioned: the layer passes the plain,
non-finite gradient on, so that the update is dropped whole
(:class:`kbind.train.MaxChangeStep`), and the preconditioners' state does not
move (its eigen-decomposition would fail or turn NaN).

Switching. ``layer.natural_gradient = False`` (or
:func:`set_natural_gradient` by module-name pattern) makes the layer a plain
``F.linear`` with ordinary gradients; in eval mode or under ``no_grad`` it is
always plain.

torch.distributed. The preconditioning happens in each process's backward
pass on its own minibatch, *before* DDP all-reduces the gradients: the
averaged gradient is the mean of the per-process preconditioned gradients.
This is Kaldi's design (each job preconditions its own minibatches, the
models are then averaged), and the only cheap one: the preconditioner is
nonlinear in the data (its Fisher estimate, forgetting factor and ``scale``
depend on the minibatch), so preconditioning the all-reduced gradient would
need every process's ``x`` and ``g`` (an all-gather of activations). With
DDP's default ``broadcast_buffers=True`` the preconditioner state (buffers)
of rank 0 is copied to every rank at each forward, so all ranks precondition
with the same Fisher estimate (rank 0's, tracked on rank 0's minibatches; the
output ``X̂`` uses the state from before the update, which is then common to
all ranks) and a checkpoint written by rank 0 resumes every rank exactly.
With ``broadcast_buffers=False`` each rank keeps its own estimate, as Kaldi's
jobs do, and exact resumption needs each rank's own state.
"""

from __future__ import annotations

import fnmatch
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..arrays import has_nonfinite
from ..optim.natural_gradient import OnlineNaturalGradient

__all__ = ["NaturalGradientLinear", "kaldi_ng_ranks", "set_natural_gradient",
           "natural_gradient_grads"]


def kaldi_ng_ranks(input_dim: int, output_dim: int) -> Tuple[int, int]:
    """Kaldi's default ``(rank_in, rank_out)`` for a component with ``input_dim``
    inputs (spliced, without the bias column) and ``output_dim`` outputs."""
    return min(20, (input_dim + 1) // 2), min(80, (output_dim + 1) // 2)


def natural_gradient_grads(x: torch.Tensor, g: torch.Tensor,
                           preconditioner_in: OnlineNaturalGradient,
                           preconditioner_out: OnlineNaturalGradient, bias: bool
                           ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Kaldi's NG update direction: ``(s ĝᵀ X̂_in[:, :I], s ĝᵀ X̂_in[:, I])``.

    Args:
        x: ``(N, I)`` layer inputs; g: ``(N, O)`` output derivatives.
        bias: append the column of ones (its preconditioned value gives the
            bias direction).

    Returns the weight direction ``(O, I)`` and the bias direction ``(O,)``
    (None without bias); ``s = s_in s_out`` is applied once. Advances both
    preconditioners by one call.
    """
    if bias:
        X_in = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)
    else:
        X_in = x
    I = x.shape[1]
    # Only products with the preconditioned matrices are needed, so the side with
    # the larger dimension is left factored (X̂ = X − H W): ĝᵀ X̂ = ĝᵀ X − (ĝᵀ H) W
    # saves its N x D x R product (exact up to rounding).
    if X_in.shape[1] >= g.shape[1]:
        H, W, s_in = preconditioner_in.precondition_factored(X_in)
        g_hat, s_out = preconditioner_out.precondition_directions(g)
        A = g_hat.t() @ X_in
        if H is not None:
            A.sub_((g_hat.t() @ H) @ W)
    else:
        X_hat, s_in = preconditioner_in.precondition_directions(X_in)
        H, W, s_out = preconditioner_out.precondition_factored(g)
        A = g.t() @ X_hat
        if H is not None:
            A.sub_(W.t() @ (H.t() @ X_hat))
    A.mul_((s_in * s_out).to(A.dtype))          # the scale, applied once
    grad_w = A[:, :I].contiguous() if bias else A
    grad_b = A[:, I] if bias else None
    return grad_w, grad_b


def _will_execute(node) -> bool:
    """Whether the running backward pass will use ``node`` (a weight's
    gradient accumulator); True when torch cannot tell."""
    if node is None:
        return True
    try:
        return bool(torch._C._will_engine_execute_node(node))
    except Exception:       # private API missing, or autograd.grad on a leaf
        return True


class _NaturalGradientLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, owner):
        ctx.save_for_backward(x, weight)
        ctx.owner = owner
        ctx.has_bias = bias is not None
        ctx.weight_node = (torch.autograd.graph.get_gradient_edge(weight).node
                           if weight.requires_grad else None)
        return F.linear(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_out @ weight
        need_w = ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2])
        if need_w and _will_execute(ctx.weight_node):
            owner = ctx.owner
            X = x.reshape(-1, x.shape[-1])
            G = grad_out.reshape(-1, grad_out.shape[-1])
            if not any(has_nonfinite((G, X))):
                grad_w, grad_b = natural_gradient_grads(X, G, owner.preconditioner_in,
                                                        owner.preconditioner_out, ctx.has_bias)
            else:
                # the update will not be applied (kbind.train.MaxChangeStep): pass the
                # plain, non-finite gradient on and leave the preconditioners as they are
                grad_w = G.t() @ X
                grad_b = G.sum(0) if ctx.has_bias else None
            if not ctx.needs_input_grad[1]:
                grad_w = None
            if not (ctx.has_bias and ctx.needs_input_grad[2]):
                grad_b = None
        return grad_x, grad_w, grad_b, None


class NaturalGradientLinear(nn.Module):
    """An affine (or linear) layer trained with Kaldi's natural gradient.

    ``y = x Wᵀ + b`` over the last axis of ``x`` (any leading shape; every
    row, i.e. every frame of every sequence, is one row of Kaldi's matrices).

    Args:
        in_features, out_features: dims.
        bias: Kaldi's NaturalGradientAffineComponent (True) or
            LinearComponent (False).
        natural_gradient: use NG-SGD in training (switchable later through
            the attribute of the same name).
        rank_in, rank_out: preconditioner ranks (default :func:`kaldi_ng_ranks`).
        update_period, num_samples_history, alpha_in, alpha_out: the
            preconditioners' options (Kaldi's component defaults).
        param_stddev: weight init stddev (default ``1/sqrt(in_features)``,
            0 gives zeros); bias_stddev: bias init stddev (Kaldi 1.0).
        learning_rate_factor, max_change, l2_regularize,
            orthonormal_constraint: Kaldi's per-component training constants,
            read by :func:`kbind.nn.component_param_groups` and
            :func:`kbind.nn.apply_orthonormal_constraints`.

    Example::

        layer = NaturalGradientLinear(40, 100)
        loss = layer(torch.randn(64, 40)).square().sum()
        loss.backward()            # layer.weight.grad is the NG direction
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 natural_gradient: bool = True, rank_in: Optional[int] = None,
                 rank_out: Optional[int] = None, update_period: int = 4,
                 num_samples_history: float = 2000.0, alpha_in: float = 4.0,
                 alpha_out: float = 4.0, param_stddev: Optional[float] = None,
                 bias_stddev: float = 1.0, learning_rate_factor: float = 1.0,
                 max_change: float = 0.0, l2_regularize: float = 0.0,
                 orthonormal_constraint: float = 0.0):
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"{type(self).__name__}: dims must be >= 1, got {in_features}, "
                             f"{out_features}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.natural_gradient = bool(natural_gradient)
        self.learning_rate_factor = float(learning_rate_factor)
        self.max_change = float(max_change)
        self.l2_regularize = float(l2_regularize)
        self.orthonormal_constraint = float(orthonormal_constraint)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        if param_stddev is None:
            param_stddev = 1.0 / math.sqrt(in_features)
        with torch.no_grad():
            self.weight.normal_(0.0, param_stddev) if param_stddev > 0 else self.weight.zero_()
            if self.bias is not None:
                self.bias.normal_(0.0, bias_stddev) if bias_stddev > 0 else self.bias.zero_()
        r_in, r_out = kaldi_ng_ranks(in_features, out_features)
        self.preconditioner_in = OnlineNaturalGradient(
            rank_in if rank_in is not None else r_in, update_period, num_samples_history,
            alpha_in, dim=in_features + (1 if bias else 0))
        self.preconditioner_out = OnlineNaturalGradient(
            rank_out if rank_out is not None else r_out, update_period, num_samples_history,
            alpha_out, dim=out_features)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, "
                f"natural_gradient={self.natural_gradient}")

    def _use_natural_gradient(self) -> bool:
        return (self.natural_gradient and self.training and torch.is_grad_enabled()
                and (self.weight.requires_grad
                     or (self.bias is not None and self.bias.requires_grad)))

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """``x Wᵀ + b`` with the NG backward when it applies."""
        if self._use_natural_gradient():
            return _NaturalGradientLinearFn.apply(x, self.weight, self.bias, self)
        return F.linear(x, self.weight, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def set_natural_gradient(model: nn.Module, enabled: bool, pattern: str = "*") -> int:
    """Switch NG-SGD on or off for every :class:`NaturalGradientLinear` (incl.
    TDNN layers) whose module name matches the glob ``pattern``.

    Returns the number of layers switched. A layer switched back on continues
    with its preconditioner state (Kaldi re-initialises per job; call
    ``reset()`` on ``layer.preconditioner_in`` / ``preconditioner_out`` for that).
    """
    n = 0
    for name, module in model.named_modules():
        if isinstance(module, NaturalGradientLinear) and fnmatch.fnmatchcase(name, pattern):
            module.natural_gradient = bool(enabled)
            n += 1
    return n

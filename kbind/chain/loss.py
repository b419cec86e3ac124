"""The chain (LF-MMI) training loss: Kaldi's ``ComputeChainObjfAndDeriv`` plus
the cross-entropy regulariser of ``NnetChainTrainer``.

``ChainLoss.forward`` returns the quantity to *minimise*::

    loss = -(objf + l2_term + xent_regularize * xent_objf)

with Kaldi's definitions (summed over sequences and frames, not normalised):

* ``objf = sum_b w_b (log Z_num,b - log Z_den,b)``;
* ``l2_term = -0.5 * l2_regularize * sum_b w_b ||y_b||^2``;
* ``xent_objf = sum xent_output * xent_deriv`` with ``xent_deriv = w * numerator
  posteriors`` (a constant target: no gradient flows from it into ``y``).

Gradients are Kaldi's derivatives, negated: ``d loss / d y = -(w (gamma_num -
gamma_den) - w l2 y + out-of-range penalty)`` and ``d loss / d xent_output =
-xent_regularize * xent_deriv``, multiplied by the incoming gradient.

Failure handling as Kaldi: if the objective is not finite or the denominator's
sanity check fails, the derivatives are zero and ``objf = -10 * weight`` (with
``on_nonfinite="skip"``, a warning is logged); ``on_nonfinite="raise"`` raises
``FloatingPointError`` instead.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from .den_graph import DenominatorGraph
from .denominator import denominator_forward_backward
from .numerator import numerator_forward_backward, _prepare as _num_prepare
from .supervision import Supervision

__all__ = ["ChainLoss", "ChainStats"]

logger = logging.getLogger(__name__)


@dataclass
class ChainStats:
    """Numbers of one minibatch, as Kaldi's logs report them.

    Per-frame values divide by ``weight`` (= sum of supervision weight x
    frames), like ``nnet3-chain-compute-prob`` and the trainer's logs."""
    objf: float                      # num - den (weighted), or -10 * weight on failure
    weight: float                    # sum_b w_b * T_b
    l2_term: float
    xent_objf: Optional[float]
    num_logprob_weighted: float
    den_logprob_weighted: float
    ok: bool
    num_frames: int
    out_of_range_applied: bool
    num_logprob: Optional[torch.Tensor] = field(default=None, repr=False)  # (B,) unweighted
    den_logprob: Optional[torch.Tensor] = field(default=None, repr=False)  # (B,) unweighted

    @property
    def objf_per_frame(self) -> float:
        return self.objf / self.weight

    @property
    def l2_per_frame(self) -> float:
        return self.l2_term / self.weight

    @property
    def tot_per_frame(self) -> float:
        return (self.objf + self.l2_term) / self.weight

    @property
    def xent_per_frame(self) -> Optional[float]:
        return None if self.xent_objf is None else self.xent_objf / self.weight

    def log_lines(self, name: str = "output"):
        """Lines as ``nnet3-chain-compute-prob`` prints them."""
        if self.l2_term != 0.0:
            lines = [f"Overall log-probability for '{name}' is {self.objf_per_frame:g} + "
                     f"{self.l2_per_frame:g} = {self.tot_per_frame:g} per frame, over "
                     f"{self.weight:g} frames."]
        else:
            lines = [f"Overall log-probability for '{name}' is {self.objf_per_frame:g} per "
                     f"frame, over {self.weight:g} frames."]
        if self.xent_objf is not None:
            lines.append(f"Overall log-probability for '{name}-xent' is "
                         f"{self.xent_per_frame:g} per frame, over {self.weight:g} frames.")
        return lines


class _ChainLossFunction(torch.autograd.Function):
    """Returns the precomputed loss; backward scales the precomputed gradients
    (``grad_y`` = d loss / d y, ``grad_xent`` = d loss / d xent_output, both in
    the compute dtype) by the incoming gradient. Without loss scaling
    (incoming gradient exactly 1 on CPU) they are returned as they are: no
    extra pass over (B, T, D) tensors."""

    @staticmethod
    def forward(ctx, nnet_output, xent_output, loss_value, grad_y, grad_xent):
        ctx.has_xent = xent_output is not None and grad_xent is not None
        ctx.save_for_backward(grad_y, grad_xent if ctx.has_xent else None)
        ctx.y_dtype = nnet_output.dtype
        ctx.x_dtype = xent_output.dtype if xent_output is not None else None
        return loss_value.clone()

    @staticmethod
    def backward(ctx, grad_out):
        grad_y, grad_xent = ctx.saved_tensors
        unit = grad_out.device.type == "cpu" and float(grad_out) == 1.0

        def scaled(g, dtype):
            if not unit:
                g = g * grad_out.to(g.dtype)
            return g if g.dtype == dtype else g.to(dtype)

        gy = scaled(grad_y, ctx.y_dtype) if ctx.needs_input_grad[0] else None
        gx = None
        if ctx.has_xent and ctx.needs_input_grad[1]:
            gx = scaled(grad_xent, ctx.x_dtype)
        return gy, gx, None, None, None


def _value_range(y: torch.Tensor, lengths, full: bool):
    """(min, max) of ``y`` over each sequence's valid frames, as Python floats
    (NaN if any is NaN): one read pass, no temporaries."""
    if full:
        mn, mx = torch.aminmax(y)
        return float(mn), float(mx)
    lo, hi = math.inf, -math.inf
    for b, n in enumerate(lengths):
        if n == 0:
            continue
        mn, mx = torch.aminmax(y[b, :n])
        mn, mx = float(mn), float(mx)
        if math.isnan(mn) or math.isnan(mx):
            return math.nan, math.nan
        lo, hi = min(lo, mn), max(hi, mx)
    return lo, hi


def _seq_dots(a: torch.Tensor, b: torch.Tensor, lengths) -> torch.Tensor:
    """``sum_{t < L_s, d} a[s, t, d] * b[s, t, d]`` per sequence (B,) float64:
    one dot product per sequence over its valid frames (a BLAS dot in the
    compute dtype, as Kaldi's ``TraceMatMat``), summed across sequences in
    double; padding frames are never read."""
    zero = torch.zeros((), dtype=a.dtype, device=a.device)
    dots = [torch.dot(a[s, :n].reshape(-1), b[s, :n].reshape(-1)) if n else zero
            for s, n in enumerate(lengths)]
    return torch.stack(dots).to(torch.float64).cpu()


def _sq_norms(y: torch.Tensor, lengths, full: bool) -> torch.Tensor:
    """``||y_s||^2`` over each sequence's valid frames (B,) float64: per-frame
    norms in the compute dtype (Kaldi: float row dot products), summed in
    double."""
    rows = torch.linalg.vector_norm(y, dim=2).to(torch.float64) ** 2       # (B, T)
    if not full:
        T = y.shape[1]
        valid = torch.arange(T)[None, :] < torch.as_tensor(lengths)[:, None]
        rows = torch.where(valid.to(rows.device), rows,
                           torch.zeros((), dtype=rows.dtype, device=rows.device))
    return rows.sum(1).cpu()


class ChainLoss(nn.Module):
    """Kaldi's chain objective as a loss module.

    Args:
        den_graph: a :class:`DenominatorGraph` (its ``num_pdfs`` must equal the
            network output dimension).
        leaky_hmm_coefficient: Kaldi's ``--leaky-hmm-coefficient`` (recipes: 0.1).
        l2_regularize: ``--l2-regularize`` on the chain output.
        xent_regularize: ``--xent-regularize``; the xent output's derivative is
            ``xent_regularize * w * numerator posteriors``.
        out_of_range_regularize: ``--out-of-range-regularize``: with probability
            1/2 per minibatch (Kaldi's ``RandInt(0, 1) == 0``) the derivative of
            outputs beyond [-30, 30] gets ``-2 * c * (y -+ 30)`` (not in the
            objective). Only drawn when a gradient is needed.
        on_nonfinite: ``"skip"`` (Kaldi: warn, objf = -10 per frame, zero
            derivative) or ``"raise"`` (FloatingPointError).
        seed: seed of the random draw for the out-of-range penalty (or pass
            ``rng``, any object with ``randint(a, b)``).
        compute_dtype: float32 (Kaldi) or float64.

    ``forward(nnet_output, supervision, xent_output=None, lengths=None)``:
    ``nnet_output`` (B, T, D), ``xent_output`` (B, T, D) log-softmax outputs of
    the xent branch; returns the scalar loss to minimise (see module doc) and
    stores :class:`ChainStats` in ``self.last_stats``.

    When no gradient is needed (``torch.no_grad()`` or inputs that do not
    require grad) the denominator backward is skipped, as in Kaldi's
    ``nnet3-chain-compute-prob``: ``ok`` then reflects the objective's
    finiteness and the input check, not the den backward's sanity check.
    """

    def __init__(self, den_graph: DenominatorGraph, leaky_hmm_coefficient: float = 0.1,
                 l2_regularize: float = 0.0, xent_regularize: float = 0.0,
                 out_of_range_regularize: float = 0.01, on_nonfinite: str = "skip",
                 seed: Optional[int] = None, rng=None,
                 compute_dtype: torch.dtype = torch.float32):
        super().__init__()
        if not isinstance(den_graph, DenominatorGraph):
            raise TypeError("den_graph must be a kbind.chain.DenominatorGraph "
                            "(DenominatorGraph.from_fst(path, num_pdfs))")
        if not (0.0 < leaky_hmm_coefficient < 1.0):
            raise ValueError(f"leaky_hmm_coefficient must be in (0, 1), got "
                             f"{leaky_hmm_coefficient}")
        if on_nonfinite not in ("skip", "raise"):
            raise ValueError(f"on_nonfinite must be 'skip' or 'raise', got {on_nonfinite!r}")
        if compute_dtype not in (torch.float32, torch.float64):
            raise ValueError("compute_dtype must be torch.float32 or torch.float64")
        if l2_regularize < 0 or xent_regularize < 0 or out_of_range_regularize < 0:
            raise ValueError("regularization constants must be >= 0")
        self.den_graph = den_graph
        self.leaky_hmm_coefficient = float(leaky_hmm_coefficient)
        self.l2_regularize = float(l2_regularize)
        self.xent_regularize = float(xent_regularize)
        self.out_of_range_regularize = float(out_of_range_regularize)
        self.on_nonfinite = on_nonfinite
        self.compute_dtype = compute_dtype
        self.rng = rng if rng is not None else random.Random(seed)
        self.last_stats: Optional[ChainStats] = None

    def extra_repr(self) -> str:
        return (f"{self.den_graph!r}, leaky_hmm_coefficient={self.leaky_hmm_coefficient}, "
                f"l2_regularize={self.l2_regularize}, xent_regularize={self.xent_regularize}, "
                f"out_of_range_regularize={self.out_of_range_regularize}, "
                f"on_nonfinite={self.on_nonfinite!r}")

    def forward(self, nnet_output: torch.Tensor, supervision: Supervision,
                xent_output: Optional[torch.Tensor] = None, lengths=None) -> torch.Tensor:
        B, T, D, L = _num_prepare(supervision, nnet_output, lengths)
        if D != self.den_graph.num_pdfs:
            raise ValueError(f"nnet_output has {D} columns but the den graph has num_pdfs = "
                             f"{self.den_graph.num_pdfs}: the network output dimension does "
                             f"not match the den graph")
        if xent_output is not None and xent_output.shape != nnet_output.shape:
            raise ValueError(f"xent_output has shape {tuple(xent_output.shape)}, expected "
                             f"{tuple(nnet_output.shape)}")
        # Every (B, T, D) pass costs tens of ms at D in the thousands: the code
        # below makes as few as it can. The gradient is built in place in the
        # denominator's posterior buffer; reductions read y once (no float64
        # copies, no masks materialised for full-length batches).
        cd = self.compute_dtype
        device = nnet_output.device
        need_grad = torch.is_grad_enabled() and (
            nnet_output.requires_grad or (xent_output is not None and xent_output.requires_grad))
        y = nnet_output.detach()
        if y.dtype != cd:
            y = y.to(cd)
        if not y.is_contiguous():
            y = y.contiguous()
        e2e = supervision.kind == "e2e"
        Ls = [int(n) for n in L.tolist()]
        full = all(n == T for n in Ls)
        w_list = [float(x) for x in supervision.weights]
        unit_w = all(x == 1.0 for x in w_list)
        w = torch.tensor(w_list, dtype=torch.float64)
        weight = float((w * L.to(torch.float64)).sum())

        # Without a gradient (diagnostics) the den backward is skipped, as in
        # nnet3-chain-compute-prob (Kaldi's ok flag then comes from the objf).
        den = denominator_forward_backward(self.den_graph, y, L, self.leaky_hmm_coefficient,
                                           dtype=cd, compute_posteriors=need_grad)
        num = numerator_forward_backward(supervision, y, L,
                                         dtype=None if cd == torch.float32 else torch.float64,
                                         compute_posteriors=need_grad or xent_output is not None)
        den_lp = den.logprob.to(torch.float64).cpu()
        num_lp = num.logprob.to(torch.float64).cpu()
        den_w = float((w * den_lp).sum())
        num_w = float((w * num_lp).sum())
        numerator_ok = math.isfinite(num_w)
        use_num = not e2e or numerator_ok
        wd = None if unit_w else w.to(device, cd)[:, None, None]

        xent_deriv = None                                             # w * gamma_num
        if num.posteriors is not None:
            xent_deriv = num.posteriors
            if xent_deriv.dtype != cd:
                xent_deriv = xent_deriv.to(cd)
            if wd is not None:
                xent_deriv.mul_(wd)

        ymin, ymax = _value_range(y, Ls, full)
        finite_input = math.isfinite(ymin) and math.isfinite(ymax)

        grad = None                          # d loss / d y = -(Kaldi's derivative G)
        oor_applied = False
        if need_grad:
            grad = den.posteriors                                     # ours: built in place
            if wd is not None:
                grad.mul_(wd)
            if use_num:
                grad.sub_(xent_deriv)
            if self.out_of_range_regularize > 0.0 and self.rng.randint(0, 1) == 0:
                oor_applied = True
                lim = 30.0
                # the penalty is zero unless some output is outside [-30, 30]
                if ymax > lim or ymin < -lim:
                    pen = y - y.clamp(-lim, lim)
                    for b, n in enumerate(Ls):
                        if n < T:
                            pen[b, n:] = 0.0
                    grad.add_(pen, alpha=2.0 * self.out_of_range_regularize)

        objf = num_w - den_w
        ok = math.isfinite(objf) and den.ok and use_num and finite_input
        if not ok:
            msg = (f"chain objective is {objf} (numerator {num_w}, denominator {den_w}; "
                   f"denominator sanity check {'passed' if den.ok else 'failed'}"
                   f"{'' if finite_input else '; nnet_output contains NaN/inf'})")
            if self.on_nonfinite == "raise":
                raise FloatingPointError(msg + "; check the network outputs for NaN/inf")
            logger.warning("%s: setting the objective to -10 per frame and the derivative "
                           "to zero for this minibatch (as Kaldi)", msg)
            if grad is not None:
                grad.zero_()
            if xent_deriv is not None:
                xent_deriv.zero_()
            objf = -10.0 * weight

        l2_term = 0.0
        if self.l2_regularize != 0.0 and use_num:
            sq = _sq_norms(y, Ls, full)
            l2 = float(-0.5 * self.l2_regularize * (w * sq).sum())
            if math.isfinite(l2):
                l2_term = l2
                if grad is not None:
                    if full and unit_w:
                        grad.add_(y, alpha=self.l2_regularize)
                    else:
                        for b, n in enumerate(Ls):
                            grad[b, :n].add_(y[b, :n], alpha=w_list[b] * self.l2_regularize)
            elif ok:
                logger.warning("l2 term is not finite; leaving it out")

        xent_objf = None
        xent_grad = None
        if xent_output is not None:
            xo = xent_output.detach()
            if xo.dtype != cd:
                xo = xo.to(cd)
            if not xo.is_contiguous():
                xo = xo.contiguous()
            xent_objf = float(_seq_dots(xo, xent_deriv, Ls).sum())
            if need_grad:
                # d loss / d xent_output = -xent_regularize * w * gamma_num, in place
                # (the numerator's buffer is ours; nothing reads xent_deriv later)
                xent_grad = xent_deriv.mul_(-self.xent_regularize)

        total = objf + l2_term
        if xent_objf is not None and self.xent_regularize > 0.0:
            if math.isfinite(xent_objf):
                total += self.xent_regularize * xent_objf
            elif ok:
                msg = f"xent objective is {xent_objf} (non-finite xent_output)"
                if self.on_nonfinite == "raise":
                    raise FloatingPointError(msg)
                logger.warning("%s: leaving it out of the loss", msg)

        self.last_stats = ChainStats(
            objf=objf, weight=weight, l2_term=l2_term, xent_objf=xent_objf,
            num_logprob_weighted=num_w, den_logprob_weighted=den_w, ok=ok,
            num_frames=int(L.sum()), out_of_range_applied=oor_applied,
            num_logprob=num_lp, den_logprob=den_lp)

        loss_dtype = torch.float64 if nnet_output.dtype == torch.float64 else torch.float32
        loss_value = torch.tensor(-total, dtype=loss_dtype, device=device)
        if not need_grad:
            return loss_value
        return _ChainLossFunction.apply(nnet_output, xent_output, loss_value, grad, xent_grad)

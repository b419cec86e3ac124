"""Chain numerator forward-backward (log space).

* constrained supervision: Kaldi's ``NumeratorComputation`` -- log space in
  double precision on the raw (unclamped) outputs;
* e2e / unconstrained supervision: Kaldi's ``GenericNumeratorComputation`` --
  log space in float, alphas renormalised every frame by the previous frame's
  log-sum, arcs leaving the start state shifted by ``off = max(0, max cost)``
  (subtracted from the result), final costs applied at the last frame, raw
  outputs (no clamping, no leaky HMM).

All sequences of a batch run together on one block-diagonal graph; states and
arcs are vectorised (scatter log-sum-exp), frames are looped over. Each
sequence stops at its own number of frames.

The returned log-probabilities are *not* multiplied by the supervision weight
(:class:`kbind.chain.ChainLoss` does that, as Kaldi's objective).

Implementations (``impl=``): ``"c"`` -- the native CPU kernel
``kb_chain_num_forward_backward`` (``cbridge/chain_num.c``: one sequence per
thread, OpenMP over sequences with ``torch.get_num_threads()`` threads, the
same operations as below per arc, posteriors written only where arcs read);
``"torch"`` -- the tensor code below (any device); ``"auto"`` (default) -- the
C kernel for CPU tensors when the native core is built, else torch. Both
compute in the same dtype and agree to rounding. NaN or +inf outputs read by a
sequence's arcs: its log-prob is NaN (the C kernel logs a warning naming the
sequence, frame and pdf, and gives it zero posteriors; the torch code
propagates NaN). A sequence with no path of its length: -inf (C: zero
posteriors).
"""

from __future__ import annotations

from dataclasses import dataclass
import logging
from typing import Optional

import torch

from .. import _native
from .supervision import Supervision

__all__ = ["numerator_logprob", "numerator_forward_backward", "NumeratorResult",
           "scatter_logsumexp", "IMPLS"]

IMPLS = _native.IMPLS

logger = logging.getLogger(__name__)


def scatter_logsumexp(v: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """``out[i] = log sum_{k: index[k] = i} exp(v[k])`` (-inf for empty sets;
    NaN/+inf propagate). ``v`` and ``index`` are 1-D."""
    ninf = torch.full((n,), float("-inf"), dtype=v.dtype, device=v.device)
    m = ninf.scatter_reduce(0, index, v, reduce="amax", include_self=True)
    m_safe = torch.where(torch.isfinite(m), m, torch.zeros((), dtype=v.dtype, device=v.device))
    s = torch.zeros(n, dtype=v.dtype, device=v.device).index_add_(
        0, index, torch.exp(v - m_safe.index_select(0, index)))
    return torch.log(s) + m_safe


@dataclass
class NumeratorResult:
    logprob: torch.Tensor                 # (B,) log Z_num per sequence (unweighted)
    posteriors: Optional[torch.Tensor]    # (B, T, D) numerator posteriors (unweighted)


def _compute_dtype(sup: Supervision, in_dtype: torch.dtype, dtype: Optional[torch.dtype]):
    if dtype is not None:
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"compute dtype must be float32 or float64, got {dtype}")
        return dtype
    if sup.kind == "constrained" or in_dtype == torch.float64:
        return torch.float64   # Kaldi's NumeratorComputation works in double
    return torch.float32       # GenericNumeratorComputation works in float


def _prepare(sup: Supervision, nnet_output: torch.Tensor, lengths):
    if not isinstance(sup, Supervision):
        raise TypeError(f"expected a kbind.chain.Supervision, got {type(sup).__name__}")
    if nnet_output.dim() != 3:
        raise ValueError(f"nnet_output must be (batch, frames, num_pdfs); got shape "
                         f"{tuple(nnet_output.shape)}")
    B, T, D = nnet_output.shape
    if B != sup.num_sequences:
        raise ValueError(f"nnet_output has {B} sequences but the supervision has "
                         f"{sup.num_sequences}")
    frames = torch.as_tensor(sup.frames, dtype=torch.long)
    if lengths is not None:
        L = torch.as_tensor(lengths).to("cpu", torch.long).reshape(-1)
        if L.numel() != B or not torch.equal(L, frames):
            raise ValueError(f"lengths {L.tolist()} do not match the supervision's frames "
                             f"per sequence {sup.frames}")
    if int(frames.max()) > T:
        raise ValueError(f"the supervision needs {int(frames.max())} frames but nnet_output "
                         f"has only {T}")
    return B, T, D, frames


@torch.no_grad()
def _num_forward(bg, y: torch.Tensor, L: torch.Tensor, dtype: torch.dtype):
    device = y.device
    B, T, D = y.shape
    N = bg.num_states
    Y = y.detach().to(dtype)
    Ld = L.to(device)
    full = bool((L == T).all())
    if not full:
        valid = torch.arange(T, device=device)[None, :] < Ld[:, None]
        Y = torch.where(valid[:, :, None], Y, torch.zeros((), dtype=dtype, device=device))
    Ya = Y.transpose(0, 1).reshape(T, B * D).index_select(1, bg.col)   # (T, A)
    ninf = float("-inf")
    alpha = torch.full((T + 1, N), ninf, dtype=dtype, device=device)
    alpha[0, bg.start] = 0.0
    sigma = torch.zeros(T + 1, B, dtype=dtype, device=device)
    src, dst, lp, ss = bg.src, bg.dst, bg.lp, bg.state_seq
    for t in range(1, T + 1):
        v = alpha[t - 1].index_select(0, src) + lp + Ya[t - 1]
        new = scatter_logsumexp(v, dst, N) - sigma[t - 1].index_select(0, ss)
        s = scatter_logsumexp(new, ss, B)
        if full:
            alpha[t] = new
            sigma[t] = s
        else:
            active = Ld >= t
            alpha[t] = torch.where(active.index_select(0, ss), new, alpha[t - 1])
            sigma[t] = torch.where(active, s, sigma[t - 1])
    aL = alpha[Ld.index_select(0, ss), torch.arange(N, device=device)]      # (N,)
    tot = scatter_logsumexp(aL + bg.final, ss, B)                          # (B,)
    # sum of sigma(1..L-1) in double (Kaldi: double log_scale_product)
    tmask = (torch.arange(T + 1, device=device)[:, None] >= 1) & \
            (torch.arange(T + 1, device=device)[:, None] < Ld[None, :])
    log_scale = torch.where(tmask, sigma.to(torch.float64),
                            torch.zeros((), dtype=torch.float64, device=device)).sum(0)
    logprob = ((tot - bg.offsets).to(torch.float64) + log_scale).to(dtype)
    return logprob, (alpha, sigma, Ya, tot)


@torch.no_grad()
def _num_backward(bg, saved, B: int, T: int, D: int, L: torch.Tensor, dtype: torch.dtype):
    alpha, sigma, Ya, tot = saved
    device = alpha.device
    N = bg.num_states
    Ld = L.to(device)
    src, dst, lp, ss, col, aseq = bg.src, bg.dst, bg.lp, bg.state_seq, bg.col, bg.arc_seq
    beta_last = bg.final - tot.index_select(0, ss)                         # (N,)
    beta_next = torch.full((N,), float("-inf"), dtype=dtype, device=device)
    logpost = torch.empty(T, B * D, dtype=dtype, device=device)
    for t in range(T - 1, -1, -1):
        startm = (Ld == t + 1).index_select(0, ss)
        beta_next = torch.where(startm, beta_last, beta_next)
        v = lp + beta_next.index_select(0, dst) + Ya[t] - sigma[t].index_select(0, aseq)
        beta_t = scatter_logsumexp(v, src, N)
        occ = v + alpha[t].index_select(0, src)
        logpost[t] = scatter_logsumexp(occ, col, B * D)
        beta_next = beta_t
    post = torch.exp(logpost).reshape(T, B, D).transpose(0, 1).contiguous()
    return post


# ----------------------------------------------------------------------------------
# The C kernel (cbridge/chain_num.c) through kbind._native
# ----------------------------------------------------------------------------------

def _use_c(impl: str, device) -> bool:
    """Whether ``impl`` runs the C kernel here (raises for an impossible ``"c"``)."""
    return _native.use_c(impl, device)


def _c_tensors(sup: Supervision, D: int, dtype: torch.dtype):
    """The supervision's arrays as CPU tensors for the kernel (cached)."""
    key = ("c", D, dtype)
    c = sup._cache.get(key)
    if c is None:
        a = sup.arrays(D, dtype)
        c = {k: torch.from_numpy(getattr(a, k)) for k in
             ("frames", "state_offsets", "arc_offsets", "start", "src", "dst", "pdf",
              "logprob", "final", "offsets")}
        sup._cache[key] = c
    return c


def _c_forward_backward(sup: Supervision, nnet_output: torch.Tensor, dtype: torch.dtype,
                        compute_posteriors: bool = True, num_threads: Optional[int] = None):
    """Run ``kb_chain_num_forward_backward``: (logprob (B,) in ``dtype``,
    posteriors (B, T, D) in ``dtype`` or None). ``nnet_output`` is read in
    place when it is a contiguous float32/float64 CPU tensor."""
    y = nnet_output.detach()
    if y.dtype not in (torch.float32, torch.float64):
        y = y.to(dtype)
    y = y.contiguous()
    B, T, D = y.shape
    c = _c_tensors(sup, D, dtype)
    logprob = torch.empty(B, dtype=torch.float64)
    bad = torch.empty(B, dtype=torch.int64)
    post = torch.empty(B, T, D, dtype=dtype) if compute_posteriors else None
    if num_threads is None:
        num_threads = torch.get_num_threads()
    f32, f64 = y.dtype == torch.float32, y.dtype == torch.float64
    p32 = post is not None and dtype == torch.float32
    p64 = post is not None and dtype == torch.float64
    P = _native.ptr
    N, A = int(c["state_offsets"][-1]), int(c["arc_offsets"][-1])
    _native.call("kb_chain_num_forward_backward", B, T, D, N, A, P(c["frames"], B, "frames"),
                 P(c["state_offsets"], B + 1, "state_offsets"),
                 P(c["arc_offsets"], B + 1, "arc_offsets"), P(c["start"], B, "start"),
                 P(c["src"], A, "src"), P(c["dst"], A, "dst"), P(c["pdf"], A, "pdf"),
                 P(c["logprob"], A, "logprob"), P(c["final"], N, "final"),
                 P(c["offsets"], B, "offsets"), int(dtype == torch.float64),
                 P(y if f32 else None, B * T * D, "nnet_output"),
                 P(y if f64 else None, B * T * D, "nnet_output"), int(num_threads),
                 P(logprob, B, "logprob"), P(post if p32 else None, B * T * D, "posteriors"),
                 P(post if p64 else None, B * T * D, "posteriors"), P(bad, B, "bad"))
    for s in torch.nonzero(bad >= 0).flatten().tolist():
        k = int(bad[s])
        t, pdf = divmod(k, D)
        logger.warning("numerator: nnet_output[%d, %d, %d] (sequence %d, frame %d, pdf %d) "
                       "is %s: the numerator of sequence %d is NaN", s, t, pdf, s, t, pdf,
                       float(y[s, t, pdf]), s)
    return logprob.to(dtype), post


def numerator_forward_backward(supervision: Supervision, nnet_output: torch.Tensor,
                               lengths=None, dtype: Optional[torch.dtype] = None,
                               compute_posteriors: bool = True,
                               impl: str = "auto") -> NumeratorResult:
    """Numerator log Z per sequence and posteriors (B, T, D), without autograd.

    ``dtype``: compute dtype; default double for constrained supervision (as
    Kaldi's NumeratorComputation), float for e2e (GenericNumeratorComputation),
    double for float64 input. ``impl``: ``"auto"`` (C kernel on CPU, else
    torch), ``"c"`` or ``"torch"`` (see the module docstring)."""
    B, T, D, L = _prepare(supervision, nnet_output, lengths)
    dtype = _compute_dtype(supervision, nnet_output.dtype, dtype)
    if _use_c(impl, nnet_output.device):
        logprob, post = _c_forward_backward(supervision, nnet_output, dtype, compute_posteriors)
        return NumeratorResult(logprob, post)
    bg = supervision.batched(D, nnet_output.device, dtype)
    logprob, saved = _num_forward(bg, nnet_output, L, dtype)
    post = _num_backward(bg, saved, B, T, D, L, dtype) if compute_posteriors else None
    return NumeratorResult(logprob, post)


class _NumeratorFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, nnet_output, supervision, L, dtype):
        B, T, D = nnet_output.shape
        bg = supervision.batched(D, nnet_output.device, dtype)
        logprob, saved = _num_forward(bg, nnet_output, L, dtype)
        ctx.bg, ctx.saved, ctx.L, ctx.dtype = bg, saved, L, dtype
        ctx.shape = (B, T, D)
        ctx.in_dtype = nnet_output.dtype
        return logprob.to(nnet_output.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        B, T, D = ctx.shape
        post = _num_backward(ctx.bg, ctx.saved, B, T, D, ctx.L, ctx.dtype)
        grad = post * grad_out.to(post.dtype)[:, None, None]
        return grad.to(ctx.in_dtype), None, None, None


class _NumeratorFunctionC(torch.autograd.Function):
    @staticmethod
    def forward(ctx, nnet_output, supervision, dtype):
        need = bool(ctx.needs_input_grad[0])
        logprob, post = _c_forward_backward(supervision, nnet_output, dtype,
                                            compute_posteriors=need)
        ctx.post, ctx.in_dtype = post, nnet_output.dtype
        return logprob.to(nnet_output.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        post = ctx.post
        grad = post * grad_out.to(post.dtype)[:, None, None]
        return grad.to(ctx.in_dtype), None, None


def numerator_logprob(supervision: Supervision, nnet_output: torch.Tensor, lengths=None,
                      dtype: Optional[torch.dtype] = None, impl: str = "auto") -> torch.Tensor:
    """Per-sequence numerator log-probabilities log Z_num (B,), unweighted.

    ``nnet_output``: (B, T, D) raw outputs (log-likelihood-like, unclamped);
    ``lengths``: optional, must equal the supervision's frames per sequence.
    Differentiable: the gradient is the numerator posteriors (zero past each
    sequence's length). ``impl``: ``"auto"`` (C kernel on CPU, else torch),
    ``"c"`` or ``"torch"``."""
    B, T, D, L = _prepare(supervision, nnet_output, lengths)
    dtype = _compute_dtype(supervision, nnet_output.dtype, dtype)
    if _use_c(impl, nnet_output.device):
        return _NumeratorFunctionC.apply(nnet_output, supervision, dtype)
    return _NumeratorFunction.apply(nnet_output, supervision, L, dtype)

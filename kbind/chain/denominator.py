"""Kaldi's chain denominator forward-backward (``DenominatorComputation``).

Probability space with per-frame rescaling and the leaky HMM, exactly as
Kaldi's CPU code (``chain-denominator.cc``):

* ``x = exp(y)`` with ``y`` limited to ``[-30, 30]`` (NaN counts as -30);
* ``alpha(0) = init``; ``alpha(t, j) = sum_{a in in(j)} alpha'(t-1, src) p_a
  x(t-1, pdf_a) / tot(t-1)`` (summed in float64, as Kaldi's ``double
  this_tot_alpha``);
* ``tot(t) = sum_j alpha(t, j)``; ``alpha'(t) = alpha(t) + leaky init tot(t)``;
* ``log Z = log sum_j alpha'(T, j) + sum_{t<T} log tot(t)``;
* backward: ``beta'(T) = 1/sum_j alpha'(T, j)``, ``beta = beta' + leaky
  sum_i init_i beta'_i``; ``beta'(t, i) = sum_{a in out(i)} p_a beta(t+1, dst)
  x(t, pdf) / tot(t)``; the posterior of pdf ``n`` at frame t is
  ``sum_{a: pdf_a = n} p_a beta(t+1, dst) x(t, n) alpha'(t, src) / tot(t)``.
  The derivative ignores the [-30, 30] limit (as Kaldi).
* Kaldi's sanity check at t = 0 (``BetaGeneralFrameDebug``):
  ``sum alpha'(0) beta'(0)`` and the posterior sum must equal the number of
  sequences (rel. 1e-3 / 1e-2, warning); if off by more than 2.0 the minibatch
  is "not ok" (the chain objective then uses -10 per frame and zero derivative).

Tensors are state-major with the sequences innermost (``[H, B]``), like Kaldi's
``alpha_``. States and arcs are vectorised: the arcs are grouped by
(destination, pdf) -- all arcs of a group consume the same output -- so each
frame of the forward pass is one sparse-matrix product over the transition
probabilities plus an ``index_add`` over the groups, and the backward pass two
products; only frames are looped over. Sums over arcs are done in float64
(Kaldi: ``double`` accumulators; here each product is also formed in float64,
a difference of the order of float32 rounding); alphas, betas and the
per-frame totals are stored in the compute dtype (float32 as Kaldi).

Sequences may have different lengths (Kaldi cannot): each gives the numbers it
would give alone; frames past its end get zero derivative.

Implementations (``impl=``): ``"c"`` -- the native CPU kernel
``kb_chain_den_forward_backward`` (``cbridge/chain_den.c``: sequences in SIMD
lanes, OpenMP over blocks of 16 sequences, ``torch.get_num_threads()``
threads; float32 only); ``"torch"`` -- the tensor code below (any device,
float32 or float64); ``"auto"`` (default) -- the C kernel for CPU tensors
computed in float32 when the native core is built, else the torch code (CUDA,
float64, ``check_every_frame``). Both give the same numbers to float rounding
(C vs torch: log-probs to about 1e-7 relative, posteriors to about 1e-6
absolute; both within the spec's tolerances of Kaldi). NaN/inf outputs are
handled identically: ``exp`` is limited as Kaldi's ``ApplyExpLimited`` (NaN ->
exp(-30), +-inf -> exp(+-30)) and values past a sequence's length are ignored.
"""

from __future__ import annotations

import logging
import math
import weakref
from dataclasses import dataclass
from typing import Optional

import torch

from .. import _native
from .den_graph import DenominatorGraph

__all__ = ["denominator_logprob", "denominator_forward_backward", "DenominatorResult",
           "exp_limited", "check_lengths", "IMPLS"]

IMPLS = _native.IMPLS

logger = logging.getLogger(__name__)

_LIMIT = 30.0


def exp_limited(y: torch.Tensor) -> torch.Tensor:
    """Kaldi's ``ApplyExpLimited(-30, 30)``: ``exp(-30)`` if not ``y >= -30``
    (so NaN maps to exp(-30)), ``exp(30)`` if ``y > 30``, else ``exp(y)``."""
    lo = torch.full((), -_LIMIT, dtype=y.dtype, device=y.device)
    return torch.exp(torch.where(y >= -_LIMIT, torch.clamp(y, max=_LIMIT), lo))


def check_lengths(lengths, B: int, T: int, device) -> torch.Tensor:
    """``lengths`` (None, sequence or tensor) as a CPU int64 tensor, checked."""
    if lengths is None:
        return torch.full((B,), T, dtype=torch.long)
    L = torch.as_tensor(lengths).to("cpu", torch.long).reshape(-1)
    if L.numel() != B:
        raise ValueError(f"lengths has {L.numel()} entries for a batch of {B} sequences")
    if B and (int(L.min()) < 1 or int(L.max()) > T):
        raise ValueError(f"lengths must lie in [1, {T}] (the padded number of frames); "
                         f"got min {int(L.min())}, max {int(L.max())}")
    return L


_NO_ADDMM_OUT = set()


def _spmm(M: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = M @ x`` for a CSR ``M`` (``addmm`` with ``out=`` avoids the
    zero-fill and copies of the plain product: several times faster on CPU;
    falls back to the plain product where a backend lacks it)."""
    dev = out.device.type
    if dev not in _NO_ADDMM_OUT:
        try:
            return torch.addmm(out, M, x, beta=0.0, alpha=1.0, out=out)
        except (RuntimeError, NotImplementedError):
            _NO_ADDMM_OUT.add(dev)
    return out.copy_(M @ x)


def _approx_equal(a: float, b: float, tol: float) -> bool:
    """Kaldi's ``ApproxEqual``."""
    if a == b:
        return True
    diff = abs(a - b)
    if math.isinf(diff) or diff != diff:
        return False
    return diff <= tol * (abs(a) + abs(b))


def _sanity_check(t: int, ab: float, gs: float, num_seq: float) -> bool:
    """Kaldi's ``BetaGeneralFrameDebug`` on the sums at frame t: warns, and
    returns False when the minibatch must be abandoned."""
    ok = True
    if not _approx_equal(ab, num_seq, 1e-3):
        logger.warning("On time %d, alpha-beta product %g != %g", t, ab, num_seq)
        if abs(ab - num_seq) > 2.0:
            logger.warning("Excessive error detected, will abandon this minibatch")
            ok = False
    if not _approx_equal(gs, num_seq, 1e-2):
        logger.warning("On time %d, log-prob-deriv sum %g != %g", t, gs, num_seq)
        if abs(gs - num_seq) > 2.0:
            logger.warning("Excessive error detected, will abandon this minibatch")
            ok = False
    return ok


@dataclass
class DenominatorResult:
    """What :func:`denominator_forward_backward` returns."""
    logprob: torch.Tensor            # (B,) log Z_den per sequence (compute dtype)
    posteriors: Optional[torch.Tensor]  # (B, T, D) d logprob_b / d y (compute dtype) or None
    ok: bool                         # Kaldi's sanity check passed


class _DenState:
    """Saved forward quantities."""

    def __init__(self, alpha, tot, x_t, lengths, tot_prob):
        self.alpha = alpha          # (T+1, H, B) alpha' (leaky already added)
        self.tot = tot              # (T+1, B) sum of un-leaked alphas
        self.x_t = x_t              # (T, D, B) limited exp of the outputs (float64)
        self.lengths = lengths      # (B,) CPU long
        self.tot_prob = tot_prob    # (B,) sum of alpha' at each sequence's last frame


def _prepare(graph: DenominatorGraph, nnet_output: torch.Tensor, lengths, leaky: float,
             dtype: Optional[torch.dtype]):
    if nnet_output.dim() != 3:
        raise ValueError(f"nnet_output must be (batch, frames, num_pdfs); got shape "
                         f"{tuple(nnet_output.shape)}")
    B, T, D = nnet_output.shape
    if D != graph.num_pdfs:
        raise ValueError(f"nnet_output has {D} columns but the den graph has num_pdfs = "
                         f"{graph.num_pdfs}: the network output dimension does not match "
                         f"the den graph")
    if T < 1 or B < 1:
        raise ValueError(f"nnet_output must have at least one sequence and one frame; got "
                         f"shape {tuple(nnet_output.shape)}")
    if not (0.0 < leaky < 1.0):
        raise ValueError(f"leaky_hmm_coefficient must be in (0, 1) (Kaldi asserts this); "
                         f"got {leaky}")
    if dtype is None:
        dtype = torch.float64 if nnet_output.dtype == torch.float64 else torch.float32
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"compute dtype must be float32 or float64, got {dtype}")
    L = check_lengths(lengths, B, T, nnet_output.device)
    return B, T, D, L, dtype


@torch.no_grad()
def _den_forward(graph: DenominatorGraph, y: torch.Tensor, L: torch.Tensor, leaky: float,
                 dtype: torch.dtype):
    """Returns (logprob (B,), state)."""
    device = y.device
    g = graph.tensors(device, dtype)
    B, T, D = y.shape
    H = graph.num_states
    x = exp_limited(y.detach().to(dtype))                 # (B, T, D)
    full = bool((L == T).all())
    Ld = L.to(device)
    if not full:
        # frames past a sequence's end: neutral values (never used for its result)
        valid = torch.arange(T, device=device)[None, :] < Ld[:, None]
        x = torch.where(valid[:, :, None], x, torch.ones((), dtype=dtype, device=device))
    # (T, D, B), the compute dtype's values held in float64 for the kernels
    x_t = x.permute(1, 2, 0).to(torch.float64).contiguous()
    alpha = torch.empty(T + 1, H, B, dtype=dtype, device=device)
    tot = torch.empty(T + 1, B, dtype=dtype, device=device)
    init = g.init[:, None]                                # (H, 1)

    def dash(t):
        a = alpha[t]
        tot[t] = a.sum(0, dtype=torch.float64).to(dtype)
        a.add_(leaky * init * tot[t][None, :])

    alpha[0] = init.expand(H, B)
    dash(0)
    f64 = torch.float64
    V = g.M.shape[0]
    u = torch.empty(V, B, dtype=f64, device=device)
    acc = torch.empty(H, B, dtype=f64, device=device)
    for t in range(1, T + 1):
        # u[v] = sum_{a in v} p_a alpha'(t-1, src_a): one sparse product per frame
        _spmm(g.M, alpha[t - 1].to(f64), u)               # (V, B)
        u.mul_(x_t[t - 1].index_select(0, g.v_pdf))
        acc.zero_().index_add_(0, g.v_dst, u)
        # Kaldi: BaseFloat arbitrary_scale = 1.0 / prev_tot (double division).
        scale = (1.0 / tot[t - 1].to(f64)).to(dtype).to(f64)
        alpha[t] = (acc * scale[None, :]).to(dtype)
        dash(t)
        if not full:
            done = (Ld < t)                                 # sequence already ended
            if bool(done.any()):
                alpha[t] = torch.where(done[None, :], alpha[t - 1], alpha[t])
                tot[t] = torch.where(done, tot[t - 1], tot[t])
    # per sequence: its own last frame
    if full:
        last = alpha[T]
    else:
        idx = Ld.view(1, 1, B).expand(1, H, B)
        last = alpha.gather(0, idx)[0]
    tot_prob = last.sum(0, dtype=torch.float64)           # (B,)
    logtot = torch.log(tot[:T].to(torch.float64))         # (T, B)
    if not full:
        logtot = torch.where(torch.arange(T, device=device)[:, None] < Ld[None, :], logtot,
                             torch.zeros((), dtype=torch.float64, device=device))
    logprob = (torch.log(tot_prob) + logtot.sum(0)).to(dtype)
    return logprob, _DenState(alpha, tot, x_t, L, tot_prob.to(dtype))


@torch.no_grad()
def _den_backward(graph: DenominatorGraph, st: _DenState, leaky: float, dtype: torch.dtype,
                  check_every_frame: bool = False):
    """Returns (posteriors (B, T, D), ok)."""
    alpha, tot, x_t = st.alpha, st.tot, st.x_t
    device = alpha.device
    g = graph.tensors(device, dtype)
    T1, H, B = alpha.shape
    T = T1 - 1
    D = x_t.shape[1]
    L = st.lengths
    Ld = L.to(device)
    full = bool((L == T).all())
    init = g.init                                          # (H,)

    def to_beta(beta_dash):
        tb = leaky * (init[None, :] @ beta_dash)           # (1, B)
        return beta_dash + tb

    beta_last = to_beta((1.0 / st.tot_prob)[None, :].expand(H, B))
    if full:
        beta_next = beta_last
    else:
        beta_next = torch.zeros(H, B, dtype=dtype, device=device)
    gamma = torch.empty(T, D, B, dtype=dtype, device=device)
    ok = True
    num_seq = float(B)
    f64 = torch.float64
    V = g.M.shape[0]
    v = torch.empty(H, B, dtype=f64, device=device)
    q = torch.empty(V, B, dtype=f64, device=device)
    gt64 = torch.empty(D, B, dtype=f64, device=device)
    for t in range(T - 1, -1, -1):
        if not full:
            start = (Ld == t + 1)
            if bool(start.any()):
                beta_next = torch.where(start[None, :], beta_last, beta_next)
        # w[v] = beta(t+1, dst_v) x(t, pdf_v); beta'(t, i) = sum_a p_a w[v_a] / tot(t)
        w = beta_next.index_select(0, g.v_dst).to(f64)
        w.mul_(x_t[t].index_select(0, g.v_pdf))
        _spmm(g.MT, w, v)                                  # (H, B)
        occ = alpha[t] / tot[t][None, :]                   # Kaldi's float occupation factor
        _spmm(g.M, occ.to(f64), q)                         # (V, B)
        gamma[t] = gt64.zero_().index_add_(0, g.v_pdf, w.mul_(q))
        gt = gamma[t]
        beta_dash = (v / tot[t].to(f64)[None, :]).to(dtype)
        if t == 0 or check_every_frame:
            ab = float((alpha[t].to(torch.float64) * beta_dash).sum())
            gs = float(gt.sum(dtype=torch.float64))
            if not _sanity_check(t, ab, gs, num_seq):
                ok = False
        beta_next = to_beta(beta_dash)
    post = gamma.permute(2, 0, 1)                          # (B, T, D)
    if not full:
        valid = torch.arange(T, device=device)[None, :] < Ld[:, None]
        post = post * valid[:, :, None]
    return post.contiguous(), ok


# ----------------------------------------------------------------------------------
# The C kernel (cbridge/chain_den.c) through kbind._native
# ----------------------------------------------------------------------------------

_C_ARRAYS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _c_graph_arrays(graph: DenominatorGraph):
    """Kaldi's arrays of the graph as contiguous CPU tensors (cached per graph)."""
    arr = _C_ARRAYS.get(graph)
    if arr is None:
        dtypes = dict(forward_transitions=torch.int32, transitions_prob=torch.float32,
                      transitions_pdf=torch.int32, transitions_hmm_state=torch.int32,
                      initial_probs=torch.float32)
        arr = {k: _native.as_c_array(getattr(graph, k), dt, k) for k, dt in dtypes.items()}
        _C_ARRAYS[graph] = arr
    return arr


def _c_graph_args(graph: DenominatorGraph) -> tuple:
    """The graph's arguments of ``kb_den_index_new`` and
    ``kb_chain_den_forward_backward`` after (num_states, num_pdfs):
    forward_transitions, num_transitions, transitions_prob / pdf / hmm_state,
    initial_probs, each pointer checked against the graph's sizes (the
    arrays stay alive in the cache of :func:`_c_graph_arrays`)."""
    arr, P, H = _c_graph_arrays(graph), _native.ptr, int(graph.num_states)
    A = int(arr["transitions_prob"].numel())
    return (P(arr["forward_transitions"], 2 * H, "forward_transitions"), A,
            P(arr["transitions_prob"], A, "transitions_prob"),
            P(arr["transitions_pdf"], A, "transitions_pdf"),
            P(arr["transitions_hmm_state"], A, "transitions_hmm_state"),
            P(arr["initial_probs"], H, "initial_probs"))


_C_INDEX: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _c_den_index(graph: DenominatorGraph, num_pdfs: int, leaky: float):
    """The C kernel's index of the graph (``kb_den_index_new``: the arcs
    regrouped, about 1.5 ms to build for 25k arcs), built once per graph,
    output dimension and leaky coefficient and freed with the graph."""
    per = _C_INDEX.get(graph)
    if per is None:
        per = _C_INDEX[graph] = {}
    key = (int(num_pdfs), float(leaky))
    ix = per.get(key)
    if ix is None:
        out = _native.ffi.new("kb_den_index **")
        _native.call("kb_den_index_new", graph.num_states, int(num_pdfs),
                     *_c_graph_args(graph), float(leaky), out)
        ix = per[key] = _native.ffi.gc(out[0], _native.lib.kb_den_index_free)
    return ix


def _use_c(impl: str, device: torch.device, dtype: torch.dtype,
           check_every_frame: bool = False) -> bool:
    """Whether ``impl`` runs the C kernel here (raises for an impossible ``"c"``)."""
    why = []
    if dtype != torch.float32:
        why.append(f"the C kernel computes in float32, not {dtype}")
    if check_every_frame:
        why.append("check_every_frame needs the torch implementation")
    return _native.use_c(impl, device, why)


def _c_forward_backward(graph: DenominatorGraph, nnet_output: torch.Tensor, L: torch.Tensor,
                        leaky: float, compute_posteriors: bool = True,
                        num_threads: Optional[int] = None, isa: int = -1,
                        stats: Optional[dict] = None):
    """Run ``kb_chain_den_forward_backward_index`` (on the graph's cached
    index): returns (logprob (B,) float32,
    posteriors (B, T, D) float32 or None, ok). ``num_threads``: default
    ``torch.get_num_threads()``; ``isa``: -1 best, 0 baseline, 1 AVX2, 2 AVX-512;
    ``stats``: a dict that receives ``scratch_bytes`` (the kernel's peak scratch)."""
    y = nnet_output.detach()
    if y.dtype != torch.float32:
        y = y.to(torch.float32)
    y = y.contiguous()
    B, T, D = y.shape
    index = _c_den_index(graph, D, leaky)
    lengths = None if bool((L == T).all()) else L.to(torch.int64).contiguous()
    logprob = torch.empty(B, dtype=torch.float32)
    post = torch.empty(B, T, D, dtype=torch.float32) if compute_posteriors else None
    checks = torch.zeros(2, dtype=torch.float64)
    scratch = torch.zeros(1, dtype=torch.int64) if stats is not None else None
    if num_threads is None:
        num_threads = torch.get_num_threads()
    P = _native.ptr
    _native.call("kb_chain_den_forward_backward_index", index, B, T,
                 P(y, B * T * D, "nnet_output"), P(lengths, B, "lengths"), int(num_threads),
                 int(isa), P(logprob, B, "logprob"), P(post, B * T * D, "posteriors"),
                 P(checks, 2, "checks"), P(scratch, 1, "scratch_bytes"))
    if stats is not None:
        stats["scratch_bytes"] = int(scratch[0])
    ok = True
    if compute_posteriors:
        ok = _sanity_check(0, float(checks[0]), float(checks[1]), float(B))
    return logprob, post, ok


class _DenominatorFunctionC(torch.autograd.Function):
    @staticmethod
    def forward(ctx, nnet_output, graph, L, leaky):
        need = bool(ctx.needs_input_grad[0])
        logprob, post, ok = _c_forward_backward(graph, nnet_output, L, leaky,
                                                compute_posteriors=need)
        ctx.post, ctx.ok, ctx.in_dtype = post, ok, nnet_output.dtype
        return logprob.to(nnet_output.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        post = ctx.post
        if not ctx.ok:
            logger.warning("denominator sanity check failed: returning a zero derivative "
                           "for this minibatch (Kaldi abandons it)")
            post = torch.zeros_like(post)
        grad = post * grad_out.to(post.dtype)[:, None, None]
        return grad.to(ctx.in_dtype), None, None, None



def denominator_forward_backward(graph: DenominatorGraph, nnet_output: torch.Tensor,
                                 lengths=None, leaky_hmm_coefficient: float = 0.1,
                                 dtype: Optional[torch.dtype] = None,
                                 compute_posteriors: bool = True,
                                 check_every_frame: bool = False,
                                 impl: str = "auto") -> DenominatorResult:
    """Kaldi's ``DenominatorComputation`` Forward + Backward, without autograd.

    ``nnet_output``: (B, T, D) raw network outputs (any float dtype, any device
    the graph can be moved to). Returns per-sequence log Z (compute dtype), the
    posteriors ``d log Z_b / d y_b`` (B, T, D) (zero past each length) and
    Kaldi's ``ok`` flag. ``dtype``: compute dtype (default float32, or float64
    for float64 input). ``impl``: ``"auto"`` (C kernel on CPU in float32, else
    torch), ``"c"`` or ``"torch"`` (see the module docstring)."""
    B, T, D, L, dtype = _prepare(graph, nnet_output, lengths, leaky_hmm_coefficient, dtype)
    if _use_c(impl, nnet_output.device, dtype, check_every_frame):
        logprob, post, ok = _c_forward_backward(graph, nnet_output, L, leaky_hmm_coefficient,
                                                compute_posteriors)
        return DenominatorResult(logprob, post, ok)
    logprob, st = _den_forward(graph, nnet_output, L, leaky_hmm_coefficient, dtype)
    if not compute_posteriors:
        return DenominatorResult(logprob, None, True)
    post, ok = _den_backward(graph, st, leaky_hmm_coefficient, dtype, check_every_frame)
    return DenominatorResult(logprob, post, ok)


class _DenominatorFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, nnet_output, graph, L, leaky, dtype):
        logprob, st = _den_forward(graph, nnet_output, L, leaky, dtype)
        ctx.graph, ctx.st, ctx.leaky, ctx.dtype = graph, st, leaky, dtype
        ctx.in_dtype = nnet_output.dtype
        return logprob.to(nnet_output.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        post, ok = _den_backward(ctx.graph, ctx.st, ctx.leaky, ctx.dtype)
        if not ok:
            logger.warning("denominator sanity check failed: returning a zero derivative "
                           "for this minibatch (Kaldi abandons it)")
            post = torch.zeros_like(post)
        grad = post * grad_out.to(post.dtype)[:, None, None]
        return grad.to(ctx.in_dtype), None, None, None, None


def denominator_logprob(graph: DenominatorGraph, nnet_output: torch.Tensor, lengths=None,
                        leaky_hmm_coefficient: float = 0.1,
                        dtype: Optional[torch.dtype] = None, impl: str = "auto") -> torch.Tensor:
    """Per-sequence denominator log-probabilities log Z_den, shape (B,).

    ``nnet_output``: (B, T, D) (D = ``graph.num_pdfs``); ``lengths``: optional
    (B,) frames per sequence (default all T). Differentiable w.r.t.
    ``nnet_output`` through Kaldi's backward pass (the gradient of sequence b's
    value is its denominator posterior; frames past its length get zero). If
    Kaldi's sanity check fails in the backward pass, a warning is logged and
    the gradient is zero. ``dtype``: compute dtype (default float32 as Kaldi, or
    float64 for float64 input); the result has the input's dtype. ``impl``:
    ``"auto"`` (default: the C kernel for CPU tensors computed in float32, else
    the torch code), ``"c"`` or ``"torch"``.
    """
    B, T, D, L, dtype = _prepare(graph, nnet_output, lengths, leaky_hmm_coefficient, dtype)
    if _use_c(impl, nnet_output.device, dtype):
        return _DenominatorFunctionC.apply(nnet_output, graph, L, float(leaky_hmm_coefficient))
    return _DenominatorFunction.apply(nnet_output, graph, L, float(leaky_hmm_coefficient),
                                      dtype)

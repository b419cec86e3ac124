"""ChainLoss (Kaldi's ComputeChainObjfAndDeriv + trainer xent) against Kaldi."""

import logging
import math

import numpy as np
import pytest
import torch

from kbind.chain import ChainLoss, DenominatorGraph, Supervision
from kbind.io.fst import Fst

from . import (CHAIN_CASES, assert_close, fd_check, from_kaldi, load_case, one_thread, rel,
               to_kaldi)

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


def _setup(kaldi_chain_dir, case):
    d, cj, S, T, D = load_case(kaldi_chain_dir, case)
    g = DenominatorGraph.from_fst(d / "den.fst", D)
    sup = Supervision.from_fsts([d / f"sup_seq{s}.fst" for s in range(S)], T)
    y = from_kaldi(np.load(d / "nnet_output.npy"), S, T, D)
    xo = from_kaldi(np.load(d / "xent_output.npy"), S, T, D)
    return d, cj, S, T, D, g, sup, y, xo


@pytest.mark.parametrize("case", CHAIN_CASES)
def test_chain_objective_matches_kaldi(kaldi_chain_dir, case):
    d, cj, S, T, D, g, sup, y0, xo0 = _setup(kaldi_chain_dir, case)
    opts = cj["options"]
    xr = opts["xent_regularize"]
    for r in cj["results"]:
        loss_fn = ChainLoss(g, leaky_hmm_coefficient=opts["leaky_hmm_coefficient"],
                            l2_regularize=r["l2_regularize"], xent_regularize=xr,
                            out_of_range_regularize=opts["out_of_range_regularize"])
        y = y0.clone().requires_grad_(True)
        xo = xo0.clone().requires_grad_(True)
        loss = loss_fn(y, sup, xent_output=xo)
        loss.backward()
        st = loss_fn.last_stats
        assert st.ok
        assert rel(st.objf, r["objf"]) <= 1e-5
        assert st.weight == r["weight"]
        if r["l2_term"] == 0.0:
            assert st.l2_term == 0.0
        else:
            assert rel(st.l2_term, r["l2_term"]) <= 1e-6
        assert rel(st.xent_objf, r["xent_objf"]) <= 1e-5
        assert rel(st.num_logprob_weighted, r["num_logprob_weighted"]) <= 1e-5
        assert rel(st.den_logprob_weighted, r["den_logprob_weighted"]) <= 1e-5
        assert abs(st.objf_per_frame - r["objf_per_frame"]) <= 1e-5 * abs(r["objf_per_frame"])
        expect = -(r["objf"] + r["l2_term"] + xr * r["xent_objf"])
        assert abs(float(loss.detach()) - expect) <= 1e-5 * abs(expect)
        # derivatives: Kaldi's are d(objf + l2)/dy (maximised) -> ours are negated
        assert np.abs(-to_kaldi(y.grad) - np.load(d / r["deriv_file"])).max() <= 2e-5
        xd = -to_kaldi(xo.grad) / xr
        assert np.abs(xd - np.load(d / "xent_deriv.npy")).max() <= 2e-5


def test_log_lines(kaldi_chain_dir):
    d, cj, S, T, D, g, sup, y, xo = _setup(kaldi_chain_dir, "tiny_chain_S3_T15")
    loss_fn = ChainLoss(g, l2_regularize=5e-5, xent_regularize=0.1)
    loss_fn(y, sup, xent_output=xo)
    lines = loss_fn.last_stats.log_lines()
    assert lines[0].startswith("Overall log-probability for 'output' is -0.430823 + -0.0012185"
                               " = -0.432041 per frame, over 45 frames")
    assert lines[1].startswith("Overall log-probability for 'output-xent' is -3.77842 per frame")


@pytest.mark.parametrize("case", ["tiny_chain_S3_T15", "tiny_chain_e2e_S3_T15"])
def test_finite_differences_float64(kaldi_chain_dir, case):
    d, cj, S, T, D, g, sup, y0, xo0 = _setup(kaldi_chain_dir, case)
    loss_fn = ChainLoss(g, l2_regularize=0.01, xent_regularize=0.1,
                        out_of_range_regularize=0.0, compute_dtype=torch.float64)
    y = y0.double().requires_grad_(True)
    xo = xo0.double().requires_grad_(True)
    loss = loss_fn(y, sup, xent_output=xo)
    assert loss.dtype == torch.float64
    loss.backward()
    st = loss_fn.last_stats
    # y: the chain objective + l2 (the xent target w*gamma_num is a constant)

    def f_y(x):
        loss_fn(x, sup)
        s = loss_fn.last_stats
        return -(s.objf + s.l2_term)
    assert fd_check(f_y, y.detach(), y.grad) <= 1e-6

    def f_x(x):
        return loss_fn(y.detach(), sup, xent_output=x)
    assert fd_check(f_x, xo.detach(), xo.grad) <= 1e-9
    assert st.ok


def test_grad_output_and_dtypes(kaldi_chain_dir):
    d, cj, S, T, D, g, sup, y0, xo0 = _setup(kaldi_chain_dir, "tiny_chain_S3_T15")
    loss_fn = ChainLoss(g, l2_regularize=5e-5, xent_regularize=0.1, out_of_range_regularize=0)
    y = y0.clone().requires_grad_(True)
    xo = xo0.clone().requires_grad_(True)
    loss_fn(y, sup, xent_output=xo).backward()
    gy, gx = y.grad.clone(), xo.grad.clone()
    y.grad = xo.grad = None
    (loss_fn(y, sup, xent_output=xo) * 128.0).backward()   # loss scaling
    assert_close(y.grad, 128.0 * gy, rtol=1e-6, atol=1e-6)
    assert_close(xo.grad, 128.0 * gx, rtol=1e-6, atol=1e-6)
    # half / double input: computed in float32, gradient cast back
    for dt in (torch.float16, torch.bfloat16, torch.float64):
        yh = y0.to(dt).requires_grad_(True)
        loss = loss_fn(yh, sup)
        loss.backward()
        assert yh.grad.dtype == dt
        assert loss.dtype == (torch.float64 if dt == torch.float64 else torch.float32)
        if dt == torch.float64:
            ref = ChainLoss(g, l2_regularize=5e-5, out_of_range_regularize=0)(y0, sup)
            assert abs(float(loss.detach()) - float(ref)) <= 1e-6 * abs(float(ref))


def test_weight_scales_everything(kaldi_chain_dir):
    d, cj, S, T, D, g, sup, y0, xo0 = _setup(kaldi_chain_dir, "tiny_chain_S3_T15")
    fsts = [d / f"sup_seq{s}.fst" for s in range(S)]
    half = Supervision.from_fsts(fsts, T, weight=0.5)
    loss_fn = ChainLoss(g, l2_regularize=5e-5, xent_regularize=0.1, out_of_range_regularize=0)
    grads, stats = [], []
    for s in (sup, half):
        y = y0.clone().requires_grad_(True)
        xo = xo0.clone().requires_grad_(True)
        loss_fn(y, s, xent_output=xo).backward()
        grads.append((y.grad, xo.grad))
        stats.append(loss_fn.last_stats)
    a, b = stats
    assert b.weight == 0.5 * a.weight
    for k in ("objf", "l2_term", "xent_objf"):
        assert abs(getattr(b, k) - 0.5 * getattr(a, k)) <= 1e-6 * abs(getattr(a, k))
    assert_close(grads[1][0], 0.5 * grads[0][0], rtol=1e-5, atol=1e-7)
    assert_close(grads[1][1], 0.5 * grads[0][1], rtol=1e-5, atol=1e-7)


def _truncate(fst, L):
    """A constrained (acyclic) FST cut after L frames: states at depth L final."""
    level = np.full(fst.num_states, -1)
    level[fst.start] = 0
    for k in range(L):
        src = np.flatnonzero(level == k)
        level[fst.arc_dst[np.isin(fst.arc_src, src)]] = k + 1
    keep = (level[fst.arc_src] >= 0) & (level[fst.arc_src] < L)
    final = np.where(level == L, 0.0, np.inf).astype(np.float32)
    return Fst(fst.num_states, fst.start, final, fst.arc_src[keep], fst.arc_dst[keep],
               fst.arc_ilabel[keep], fst.arc_olabel[keep], fst.arc_weight[keep])


@pytest.mark.parametrize("case", ["tiny_chain_S3_T15", "tiny_chain_unconstrained_S3_T15"])
def test_unequal_lengths_equal_separate_runs(kaldi_chain_dir, case):
    d, cj, S, T, D, g, sup0, y0, xo0 = _setup(kaldi_chain_dir, case)
    lengths = [T, T - 5, T - 9]
    fsts = [Fst.from_file(d / f"sup_seq{s}.fst") for s in range(S)]
    if sup0.kind == "constrained":
        fsts = [_truncate(f, L) for f, L in zip(fsts, lengths)]
    weights = [1.0, 0.5, 2.0]     # per-sequence weights: scaled per sequence, not per batch
    sups = [Supervision.from_fsts([f], L, weight=wt) for f, L, wt in zip(fsts, lengths, weights)]
    assert all(s.kind == sup0.kind for s in sups)
    batch = Supervision.merge(sups)
    for b, L in enumerate(lengths):   # garbage past the ends must not matter
        y0[b, L:] = float("nan")
        xo0[b, L:] = float("inf")
    loss_fn = ChainLoss(g, l2_regularize=5e-5, xent_regularize=0.1, out_of_range_regularize=0)
    y = y0.clone().requires_grad_(True)
    xo = xo0.clone().requires_grad_(True)
    loss_fn(y, batch, xent_output=xo, lengths=lengths).backward()
    st = loss_fn.last_stats
    assert st.ok
    tot = {"objf": 0.0, "l2_term": 0.0, "xent_objf": 0.0}
    for b, L in enumerate(lengths):
        yb = y0[b:b + 1, :L].clone().requires_grad_(True)
        xb = xo0[b:b + 1, :L].clone().requires_grad_(True)
        loss_fn(yb, sups[b], xent_output=xb).backward()
        assert loss_fn.last_stats.ok
        for k in tot:
            tot[k] += getattr(loss_fn.last_stats, k)
        assert float((yb.grad[0] - y.grad[b, :L]).abs().max()) <= 1e-6
        assert float((xb.grad[0] - xo.grad[b, :L]).abs().max()) <= 1e-6
        assert torch.all(y.grad[b, L:] == 0) and torch.all(xo.grad[b, L:] == 0)
    for k, v in tot.items():
        assert abs(getattr(st, k) - v) <= 1e-5 * abs(v)
    assert st.weight == sum(wt * L for wt, L in zip(weights, lengths))


@pytest.mark.parametrize("case", ["tiny_chain_S3_T15", "tiny_chain_e2e_S3_T15"])
def test_nan_output_skip_and_raise(kaldi_chain_dir, case, caplog):
    d, cj, S, T, D, g, sup, y0, xo0 = _setup(kaldi_chain_dir, case)
    y0[1, 4, 2] = float("nan")
    loss_fn = ChainLoss(g, l2_regularize=5e-5, xent_regularize=0.1)
    y = y0.clone().requires_grad_(True)
    xo = xo0.clone().requires_grad_(True)
    with caplog.at_level(logging.WARNING):
        loss = loss_fn(y, sup, xent_output=xo)
    loss.backward()
    st = loss_fn.last_stats
    assert not st.ok
    assert st.objf == -10.0 * st.weight
    assert math.isfinite(float(loss.detach()))
    assert torch.isfinite(y.grad).all() and torch.isfinite(xo.grad).all()
    assert torch.all(xo.grad == 0)
    assert "-10 per frame" in caplog.text
    strict = ChainLoss(g, on_nonfinite="raise")
    with pytest.raises(FloatingPointError, match="contains NaN/inf"):
        strict(y0.clone().requires_grad_(True), sup)


def test_out_of_range_penalty(kaldi_chain_dir):
    d, cj, S, T, D, g, sup, y0, xo0 = _setup(kaldi_chain_dir, "tiny_chain_S3_T15")
    y0[0, 2, 3] = 35.0
    y0[2, 7, 1] = -40.0

    class Fixed:
        def __init__(self, v):
            self.v = v

        def randint(self, a, b):
            assert (a, b) == (0, 1)
            return self.v

    grads = []
    for v in (0, 1):
        fn = ChainLoss(g, out_of_range_regularize=0.01, rng=Fixed(v))
        y = y0.clone().requires_grad_(True)
        fn(y, sup).backward()
        assert fn.last_stats.out_of_range_applied == (v == 0)
        grads.append(y.grad)
    diff = grads[0] - grads[1]      # loss gradient = -(Kaldi derivative)
    expect = torch.zeros_like(diff)
    expect[0, 2, 3] = 0.02 * (35.0 - 30.0)
    expect[2, 7, 1] = 0.02 * (-40.0 + 30.0)
    assert_close(diff, expect, rtol=1e-5, atol=1e-6)
    # seeded draws are reproducible, and no draw without gradients
    a = ChainLoss(g, seed=123)
    b = ChainLoss(g, seed=123)
    seq_a, seq_b = [], []
    for _ in range(6):
        a(y0.clone().requires_grad_(True), sup)
        b(y0.clone().requires_grad_(True), sup)
        seq_a.append(a.last_stats.out_of_range_applied)
        seq_b.append(b.last_stats.out_of_range_applied)
    assert seq_a == seq_b and len(set(seq_a)) == 2
    with torch.no_grad():
        a(y0, sup)
    assert not a.last_stats.out_of_range_applied


def test_bad_input(kaldi_chain_dir):
    d, cj, S, T, D, g, sup, y, xo = _setup(kaldi_chain_dir, "tiny_chain_S3_T15")
    loss_fn = ChainLoss(g)
    with pytest.raises(ValueError, match="12 columns but the den graph has num_pdfs = 10"):
        loss_fn(torch.zeros(S, T, 12), sup)
    with pytest.raises(ValueError, match="supervision has 3"):
        loss_fn(torch.zeros(2, T, D), sup)
    with pytest.raises(ValueError, match="xent_output has shape"):
        loss_fn(y, sup, xent_output=xo[:, :5])
    with pytest.raises(ValueError, match="on_nonfinite"):
        ChainLoss(g, on_nonfinite="ignore")
    with pytest.raises(ValueError, match="leaky"):
        ChainLoss(g, leaky_hmm_coefficient=0.0)
    with pytest.raises(ValueError, match="columns"):
        ChainLoss(DenominatorGraph.from_fst(
            kaldi_chain_dir / "medium_den_S4_T34" / "den.fst", 80))(y, sup)


def test_out_of_range_penalty_ignores_padding(kaldi_chain_dir):
    """Outputs beyond [-30, 30] past a sequence's end get no penalty (and no
    gradient); inside they do, exactly as in a batch of full-length sequences."""
    d, cj, S, T, D, g, sup0, y0, xo0 = _setup(kaldi_chain_dir, "tiny_chain_unconstrained_S3_T15")
    lengths = [T, T - 5, T - 9]
    sups = [Supervision.from_fsts([d / f"sup_seq{s}.fst"], L) for s, L in enumerate(lengths)]
    batch = Supervision.merge(sups)
    y0[1, T - 5:] = 100.0          # padding, far out of range
    y0[2, 3, 4] = 45.0             # valid frame, out of range

    class Zero:
        def randint(self, a, b):
            return 0                # penalty applied

    fn = ChainLoss(g, out_of_range_regularize=0.01, rng=Zero())
    y = y0.clone().requires_grad_(True)
    fn(y, batch, lengths=lengths).backward()
    assert fn.last_stats.ok and fn.last_stats.out_of_range_applied
    assert torch.all(y.grad[1, T - 5:] == 0) and torch.all(y.grad[2, T - 9:] == 0)
    ref = ChainLoss(g, out_of_range_regularize=0.0)
    y2 = y0.clone().requires_grad_(True)
    ref(y2, batch, lengths=lengths).backward()
    expect = y2.grad.clone()
    expect[2, 3, 4] += 0.02 * (45.0 - 30.0)
    assert_close(y.grad, expect, rtol=1e-6, atol=1e-7)


def test_no_grad_skips_den_backward_same_stats(kaldi_chain_dir, monkeypatch):
    """Without a gradient (diagnostics) the den posteriors are not computed, as
    in nnet3-chain-compute-prob; the reported numbers are those of training."""
    import kbind.chain.loss as loss_mod
    d, cj, S, T, D, g, sup, y0, xo0 = _setup(kaldi_chain_dir, "tiny_chain_e2e_S3_T15")
    fn = ChainLoss(g, l2_regularize=5e-5, xent_regularize=0.1, out_of_range_regularize=0)
    fn(y0.clone().requires_grad_(True), sup, xent_output=xo0.clone().requires_grad_(True))
    a = fn.last_stats
    asked = []
    orig = loss_mod.denominator_forward_backward

    def spy(*args, **kw):
        asked.append(kw.get("compute_posteriors", True))
        return orig(*args, **kw)
    monkeypatch.setattr(loss_mod, "denominator_forward_backward", spy)
    with torch.no_grad():
        loss = fn(y0, sup, xent_output=xo0)
    b = fn.last_stats
    assert asked == [False]
    assert b.ok
    for k in ("objf", "l2_term", "xent_objf", "weight"):
        assert getattr(a, k) == getattr(b, k)
    assert not loss.requires_grad


def test_retain_graph_and_layouts(kaldi_chain_dir):
    """Two backward passes through one graph accumulate exactly twice the
    gradient (the returned gradient buffers are not modified), and a
    non-contiguous output (e.g. a transposed (B, D, T) conv output) gives the
    numbers of its contiguous copy."""
    d, cj, S, T, D, g, sup, y0, xo0 = _setup(kaldi_chain_dir, "tiny_chain_S3_T15")
    fn = ChainLoss(g, l2_regularize=5e-5, xent_regularize=0.1, out_of_range_regularize=0)
    y = y0.clone().requires_grad_(True)
    xo = xo0.clone().requires_grad_(True)
    loss = fn(y, sup, xent_output=xo)
    loss.backward(retain_graph=True)
    gy, gx = y.grad.clone(), xo.grad.clone()
    loss.backward()
    assert torch.equal(y.grad, 2 * gy) and torch.equal(xo.grad, 2 * gx)
    yt = y0.transpose(1, 2).contiguous().requires_grad_(True)      # (B, D, T)
    xt = xo0.transpose(1, 2).contiguous().requires_grad_(True)
    loss_t = fn(yt.transpose(1, 2), sup, xent_output=xt.transpose(1, 2))
    loss_t.backward()
    assert float(loss_t.detach()) == float(loss.detach())
    assert torch.equal(yt.grad.transpose(1, 2), gy) and torch.equal(xt.grad.transpose(1, 2), gx)

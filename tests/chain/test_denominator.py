"""Denominator forward-backward against Kaldi (tolerances: spec section 8)."""

import logging
import math

import numpy as np
import pytest
import torch

from kbind.chain import DenominatorGraph, denominator_forward_backward, denominator_logprob
from kbind.chain import denominator as den_mod
from tests.conftest import requires_gpu

from . import one_thread, DEN_CASES, assert_close, fd_check, from_kaldi, load_case, rel, to_kaldi


_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)

@pytest.fixture(scope="module")
def graphs(kaldi_chain_dir):
    out = {}
    for case in DEN_CASES:
        d, cj, S, T, D = load_case(kaldi_chain_dir, case)
        out[case] = DenominatorGraph.from_fst(d / "den.fst", D)
    return out


@pytest.mark.parametrize("case", DEN_CASES)
def test_den_matches_kaldi(kaldi_chain_dir, graphs, case):
    d, cj, S, T, D = load_case(kaldi_chain_dir, case)
    g = graphs[case]
    y = from_kaldi(np.load(d / "nnet_output.npy"), S, T, D)
    for r in cj["results"]:
        leaky = r["leaky_hmm_coefficient"]
        y1 = y.clone().requires_grad_(True)
        lp = denominator_logprob(g, y1, leaky_hmm_coefficient=leaky)
        assert lp.shape == (S,) and lp.dtype == torch.float32
        lp.sum().backward()
        lp = lp.detach()
        assert rel(lp.sum(), r["logprob"]) <= 1e-5
        ref = np.load(d / r["deriv_file"])
        assert np.abs(to_kaldi(y1.grad) - ref).max() <= 2e-5
        # per sequence: Kaldi's separate runs
        for s, ref_s in enumerate(r["logprob_per_sequence_separate_runs"]):
            assert rel(lp[s], ref_s) <= 1e-5
        # each row of the derivative sums to one (posteriors)
        np.testing.assert_allclose(y1.grad.sum(-1).numpy(), 1.0, atol=1e-5)


def test_separate_runs_equal_batch(kaldi_chain_dir, graphs):
    d, cj, S, T, D = load_case(kaldi_chain_dir, "tiny_den_S4_T25")
    g = graphs["tiny_den_S4_T25"]
    y = from_kaldi(np.load(d / "nnet_output.npy"), S, T, D)
    r = cj["results"][0]
    res = denominator_forward_backward(g, y, leaky_hmm_coefficient=r["leaky_hmm_coefficient"])
    for s in range(S):
        one = denominator_forward_backward(g, y[s:s + 1],
                                           leaky_hmm_coefficient=r["leaky_hmm_coefficient"])
        assert rel(one.logprob[0], r["logprob_per_sequence_separate_runs"][s]) <= 1e-5
        assert float((one.logprob[0] - res.logprob[s]).abs()) <= 1e-5 * abs(float(res.logprob[s]))
        assert float((one.posteriors[0] - res.posteriors[s]).abs().max()) <= 1e-6


def test_unequal_lengths_equal_separate_runs(graphs):
    g = graphs["tiny_den_S4_T25"]
    T, D = 25, 10
    lengths = [T, T - 5, T - 9]
    y = torch.randn(3, T, D, generator=torch.Generator().manual_seed(3)) * 2
    y[1, T - 5:] = float("nan")        # garbage past the end must not matter
    y[2, T - 9:] = 1e6
    y.requires_grad_(True)
    lp = denominator_logprob(g, y, lengths=lengths)
    lp.sum().backward()
    for b, L in enumerate(lengths):
        yb = y.detach()[b:b + 1, :L].clone().requires_grad_(True)
        lpb = denominator_logprob(g, yb)
        lpb.sum().backward()
        lpb, lp_b = lpb.detach(), lp.detach()[b]
        assert float((lpb[0] - lp_b).abs()) <= 1e-6 * abs(float(lpb[0]))
        assert float((yb.grad[0] - y.grad[b, :L]).abs().max()) <= 1e-6
        assert torch.all(y.grad[b, L:] == 0)


def test_grad_output_scales_derivative(graphs):
    g = graphs["tiny_den_S4_T25"]
    y = torch.randn(2, 9, 10, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    lp = denominator_logprob(g, y)
    (lp * torch.tensor([2.0, -0.5])).sum().backward()
    post = denominator_forward_backward(g, y.detach()).posteriors
    assert_close(y.grad[0], 2.0 * post[0])
    assert_close(y.grad[1], -0.5 * post[1])


def test_low_precision_input_computed_in_float32(graphs):
    g = graphs["tiny_den_S4_T25"]
    y = torch.randn(2, 7, 10, generator=torch.Generator().manual_seed(2))
    yb = y.to(torch.bfloat16).requires_grad_(True)
    lp = denominator_logprob(g, yb)
    lp.sum().backward()
    assert lp.dtype == torch.bfloat16 and yb.grad.dtype == torch.bfloat16
    ref = denominator_forward_backward(g, yb.detach().float())
    assert ref.logprob.dtype == torch.float32


@pytest.mark.parametrize("leaky", [0.1, 1e-5])
def test_finite_differences_float64(graphs, leaky):
    g = graphs["tiny_den_S4_T25"]
    y = torch.randn(3, 11, 10, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 2
    y.requires_grad_(True)
    lp = denominator_logprob(g, y, leaky_hmm_coefficient=leaky)
    assert lp.dtype == torch.float64
    lp.sum().backward()

    def f(x):
        return denominator_logprob(g, x, leaky_hmm_coefficient=leaky).sum()
    assert fd_check(f, y.detach(), y.grad) <= 1e-6
    # with per-sequence weights and unequal lengths too
    y.grad = None
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    lp = denominator_logprob(g, y, lengths=[11, 6, 9], leaky_hmm_coefficient=leaky)
    (lp * w).sum().backward()

    def f2(x):
        return (denominator_logprob(g, x, lengths=[11, 6, 9], leaky_hmm_coefficient=leaky)
                * w).sum()
    assert fd_check(f2, y.detach(), y.grad) <= 1e-6


def test_float64_agrees_with_float32(graphs):
    g = graphs["medium_den_S4_T34"]
    y = torch.randn(2, 13, 80, generator=torch.Generator().manual_seed(5)) * 3
    r32 = denominator_forward_backward(g, y)
    r64 = denominator_forward_backward(g, y.double())
    assert float((r32.logprob.double() - r64.logprob).abs().max()) <= 1e-5 * float(
        r64.logprob.abs().max())
    assert float((r32.posteriors.double() - r64.posteriors).abs().max()) <= 2e-6


def test_single_state_closed_form():
    # one state, self-loops with probs p_n (spec 2.7)
    g = DenominatorGraph(1, 3, 0, [0, 0, 0], [0, 0, 0], [0, 1, 2],
                         -np.log([0.2, 0.3, 0.5]).astype(np.float32),
                         final=np.array([0.0], dtype=np.float32))
    p = g.transitions_prob[:3]
    assert g.initial_probs.tolist() == [1.0]
    y = torch.randn(1, 6, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    leaky = 0.1
    res = denominator_forward_backward(g, y, leaky_hmm_coefficient=leaky)
    px = torch.from_numpy(p).double() * y[0].exp()
    expect = float(px.sum(-1).log().sum()) + 7 * math.log1p(leaky)
    assert abs(float(res.logprob[0]) - expect) <= 1e-12 * abs(expect)
    assert_close(res.posteriors[0], px / px.sum(-1, keepdim=True), rtol=1e-12, atol=1e-14)


def test_output_limits_and_nan(graphs):
    g = graphs["tiny_den_S4_T25"]
    y = torch.randn(1, 8, 10, generator=torch.Generator().manual_seed(7))
    y_lo = y.clone()
    y_lo[0, 3, 4] = -30.0
    y_far = y.clone()
    y_far[0, 3, 4] = -1e4
    y_nan = y.clone()
    y_nan[0, 3, 4] = float("nan")
    a = denominator_forward_backward(g, y_lo)
    for yy in (y_far, y_nan):
        b = denominator_forward_backward(g, yy)
        assert torch.equal(a.logprob, b.logprob)
        assert torch.equal(a.posteriors, b.posteriors)
        assert b.ok
    y_hi = y.clone()
    y_hi[0, 2, 1] = 30.0
    y_inf = y.clone()
    y_inf[0, 2, 1] = float("inf")
    assert torch.equal(denominator_forward_backward(g, y_hi).logprob,
                       denominator_forward_backward(g, y_inf).logprob)


def test_bad_input(graphs):
    g = graphs["tiny_den_S4_T25"]
    with pytest.raises(ValueError, match="11 columns but the den graph has num_pdfs = 10"):
        denominator_logprob(g, torch.zeros(2, 5, 11))
    with pytest.raises(ValueError, match="leaky_hmm_coefficient"):
        denominator_logprob(g, torch.zeros(2, 5, 10), leaky_hmm_coefficient=0.0)
    with pytest.raises(ValueError, match="lengths"):
        denominator_logprob(g, torch.zeros(2, 5, 10), lengths=[5, 6])
    with pytest.raises(ValueError, match=r"\(batch, frames, num_pdfs\)"):
        denominator_logprob(g, torch.zeros(5, 10))


def test_sanity_check_failure_is_reported(graphs, caplog):
    g = graphs["tiny_den_S4_T25"]
    y = torch.randn(3, 6, 10, generator=torch.Generator().manual_seed(8))
    L = torch.full((3,), 6, dtype=torch.long)
    lp, st = den_mod._den_forward(g, y, L, 0.1, torch.float32)
    _, ok = den_mod._den_backward(g, st, 0.1, torch.float32)
    assert ok
    st.alpha[0] *= 3.0     # corrupt alpha'(0): alpha.beta product becomes 3 * S
    with caplog.at_level(logging.WARNING):
        _, ok = den_mod._den_backward(g, st, 0.1, torch.float32)
    assert not ok
    assert "alpha-beta product" in caplog.text


@requires_gpu
def test_gpu_matches_cpu(kaldi_chain_dir, graphs):
    d, cj, S, T, D = load_case(kaldi_chain_dir, "medium_den_S4_T34")
    g = graphs["medium_den_S4_T34"]
    y = from_kaldi(np.load(d / "nnet_output.npy"), S, T, D)
    r = cj["results"][0]
    res = denominator_forward_backward(g, y.cuda(), lengths=[T, T - 5, T - 9, T])
    ref = denominator_forward_backward(g, y, lengths=[T, T - 5, T - 9, T])
    assert float((res.logprob.cpu() - ref.logprob).abs().max()) <= 1e-5 * float(
        ref.logprob.abs().max())
    assert float((res.posteriors.cpu() - ref.posteriors).abs().max()) <= 2e-6
    full = denominator_forward_backward(g, y.cuda(), leaky_hmm_coefficient=0.1)
    assert rel(full.logprob.sum(), r["logprob"]) <= 1e-5
    assert np.abs(to_kaldi(full.posteriors) - np.load(d / r["deriv_file"])).max() <= 2e-5

"""Numerator (constrained and generic/e2e) against Kaldi."""

import numpy as np
import pytest
import torch

from kbind.chain import Supervision, numerator_forward_backward, numerator_logprob
from kbind.io.fst import Fst

from . import CHAIN_CASES, fd_check, from_kaldi, load_case, one_thread, rel, to_kaldi

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


def _sup(d, S, T, **kw):
    return Supervision.from_fsts([d / f"sup_seq{s}.fst" for s in range(S)], T, **kw)


@pytest.mark.parametrize("impl", ["torch", "c"])
@pytest.mark.parametrize("case", CHAIN_CASES)
def test_numerator_matches_kaldi(kaldi_chain_dir, case, impl):
    d, cj, S, T, D = load_case(kaldi_chain_dir, case)
    sup = _sup(d, S, T)
    assert sup.kind == ("e2e" if cj["supervision"]["e2e_fsts"] else "constrained")
    y = from_kaldi(np.load(d / "nnet_output.npy"), S, T, D).requires_grad_(True)
    lp = numerator_logprob(sup, y, impl=impl)
    lp.sum().backward()
    ref = cj["results"][0]["num_logprob_weighted"]     # supervision weight 1
    tol = 1e-6 if sup.kind == "constrained" else 1e-5
    assert rel(lp.detach().sum(), ref) <= tol
    post = to_kaldi(y.grad)
    assert np.abs(post - np.load(d / "xent_deriv.npy")).max() <= 2e-5
    np.testing.assert_allclose(post.sum(1), 1.0, atol=1e-5)


def test_constrained_frames_default_from_fst(kaldi_chain_dir):
    d, cj, S, T, D = load_case(kaldi_chain_dir, "tiny_chain_S3_T15")
    sup = Supervision.from_fsts([d / f"sup_seq{s}.fst" for s in range(S)])
    assert sup.frames == [T] * S and sup.kind == "constrained"
    with pytest.raises(ValueError, match="paths of 15 frames but frames_per_sequence is 14"):
        Supervision.from_fsts([d / "sup_seq0.fst"], 14)
    # text form gives the same supervision
    sup_t = Supervision.from_fsts([str(d / "sup_seq0.fst.txt")])
    y = torch.randn(1, T, D, generator=torch.Generator().manual_seed(0))
    a = numerator_forward_backward(_sup(d, 1, T), y)
    b = numerator_forward_backward(sup_t, y)
    assert float((a.logprob - b.logprob).abs()) <= 1e-6 * abs(float(a.logprob))


def test_merge_equals_batch(kaldi_chain_dir):
    d, cj, S, T, D = load_case(kaldi_chain_dir, "tiny_chain_unconstrained_S3_T15")
    parts = [Supervision.from_fsts([d / f"sup_seq{s}.fst"], T) for s in range(S)]
    merged = Supervision.merge(parts)
    assert merged.num_sequences == S and merged.kind == "e2e"
    y = from_kaldi(np.load(d / "nnet_output.npy"), S, T, D)
    a = numerator_forward_backward(merged, y)
    b = numerator_forward_backward(_sup(d, S, T), y)
    assert torch.equal(a.logprob, b.logprob) and torch.equal(a.posteriors, b.posteriors)
    for s in range(S):
        one = numerator_forward_backward(parts[s], y[s:s + 1])
        assert float((one.logprob[0] - a.logprob[s]).abs()) <= 1e-6 * abs(float(a.logprob[s]))
    c = Supervision.from_fsts([kaldi_chain_dir / "tiny_chain_S3_T15" / "sup_seq0.fst"])
    with pytest.raises(ValueError, match="different kinds"):
        Supervision.merge([merged, c])


@pytest.mark.parametrize("impl", ["torch", "c"])
@pytest.mark.parametrize("case", ["tiny_chain_S3_T15", "tiny_chain_e2e_S3_T15"])
def test_finite_differences_float64(kaldi_chain_dir, case, impl):
    d, cj, S, T, D = load_case(kaldi_chain_dir, case)
    sup = _sup(d, S, T)
    y = from_kaldi(np.load(d / "nnet_output.npy"), S, T, D).double().requires_grad_(True)
    w = torch.tensor([1.0, 0.5, -2.0][:S], dtype=torch.float64)
    (numerator_logprob(sup, y, impl=impl) * w).sum().backward()

    def f(x):
        return (numerator_logprob(sup, x, impl=impl) * w).sum()
    assert fd_check(f, y.detach(), y.grad) <= 1e-6


def test_unequal_lengths_equal_separate_runs(kaldi_chain_dir):
    d, cj, S, T, D = load_case(kaldi_chain_dir, "tiny_chain_unconstrained_S3_T15")
    lengths = [T, T - 5, T - 9]
    fsts = [d / f"sup_seq{s}.fst" for s in range(S)]
    sup = Supervision.from_fsts(fsts, lengths)
    y = from_kaldi(np.load(d / "nnet_output.npy"), S, T, D)
    y[1, T - 5:] = float("nan")
    y.requires_grad_(True)
    lp = numerator_logprob(sup, y)
    assert torch.isfinite(lp).all()
    lp.sum().backward()
    for b, L in enumerate(lengths):
        yb = y.detach()[b:b + 1, :L].clone().requires_grad_(True)
        lpb = numerator_logprob(Supervision.from_fsts([fsts[b]], L), yb)
        lpb.sum().backward()
        lpb, lpb_b = lpb.detach(), lp.detach()[b]
        assert float((lpb[0] - lpb_b).abs()) <= 1e-5 * abs(float(lpb[0]))
        assert float((yb.grad[0] - y.grad[b, :L]).abs().max()) <= 1e-5
        assert torch.all(y.grad[b, L:] == 0)
    with pytest.raises(ValueError, match="do not match"):
        numerator_logprob(sup, y, lengths=[T, T, T])


def test_generic_offset_and_start_state():
    # two-state e2e graph; start state's arcs have a large cost (offset path)
    fst = Fst(2, 0, [np.inf, 0.5], [0, 0, 1, 1], [1, 1, 1, 1], [1, 2, 1, 2], [1, 2, 1, 2],
              [20.0, 21.0, 0.7, 0.9])
    sup = Supervision.from_fsts([fst], 4)
    assert sup.kind == "e2e"
    y = torch.randn(1, 4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # brute force: sum over all 2^4 label sequences
    import itertools
    c0 = np.float32([20.0, 21.0]).astype(np.float64)
    c1 = np.float32([0.7, 0.9]).astype(np.float64)
    tot = []
    for seq in itertools.product([0, 1], repeat=4):
        c = c0[seq[0]] + sum(c1[k] for k in seq[1:]) + 0.5
        tot.append(-c + sum(float(y[0, t, k]) for t, k in enumerate(seq)))
    expect = float(np.logaddexp.reduce(tot))
    for dt in (torch.float32, torch.float64):
        lp = numerator_forward_backward(sup, y.to(dt)).logprob
        assert abs(float(lp[0]) - expect) <= (1e-5 if dt == torch.float32 else 1e-12) * abs(expect)


def test_bad_supervision(kaldi_chain_dir):
    d = kaldi_chain_dir / "tiny_chain_e2e_S3_T15"
    with pytest.raises(ValueError, match="frames_per_sequence must be given"):
        Supervision.from_fsts([d / "sup_seq0.fst"])
    dc = kaldi_chain_dir / "tiny_chain_S3_T15"
    with pytest.raises(ValueError, match="kind='e2e'"):
        Supervision.from_fsts([d / "sup_seq0.fst", dc / "sup_seq0.fst"], 15)
    sup = Supervision.from_fsts([d / "sup_seq0.fst"], 15)
    with pytest.raises(ValueError, match="network output has 5 columns"):
        numerator_logprob(sup, torch.zeros(1, 15, 5))
    with pytest.raises(ValueError, match="has 2 sequences but the supervision has 1"):
        numerator_logprob(sup, torch.zeros(2, 15, 10))
    with pytest.raises(ValueError, match="epsilon"):
        Supervision.from_fsts([Fst(2, 0, [np.inf, 0.0], [0], [1], [0], [0], [0.0])], 1)
    # mixed kinds can be forced to the generic numerator
    mixed = Supervision.from_fsts([d / "sup_seq0.fst", dc / "sup_seq0.fst"], 15, kind="e2e")
    assert mixed.kind == "e2e"


def test_nan_output_gives_nan_numerator(kaldi_chain_dir):
    d, cj, S, T, D = load_case(kaldi_chain_dir, "tiny_chain_S3_T15")
    y = from_kaldi(np.load(d / "nnet_output.npy"), S, T, D)
    y[1, 3, :] = float("nan")
    lp = numerator_forward_backward(_sup(d, S, T), y, compute_posteriors=False).logprob
    assert torch.isfinite(lp[0]) and torch.isnan(lp[1]) and torch.isfinite(lp[2])

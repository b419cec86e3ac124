"""The C denominator kernel (cbridge/chain_den.c) against Kaldi and the torch path.

Tolerances: spec section 8.2 against Kaldi's CPU fixtures (log-prob rel 1e-5,
posteriors max abs 2e-5); C vs the torch path at the same tolerances (observed:
log-probs equal to ~1e-7 relative, posteriors to ~1e-6 absolute).
"""

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from kbind import _native
from kbind.chain import DenominatorGraph, denominator_forward_backward, denominator_logprob
from kbind.chain import denominator as den_mod

from . import DEN_CASES, from_kaldi, load_case, one_thread, rel, to_kaldi


_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


@pytest.fixture(scope="module")
def graphs(kaldi_chain_dir):
    out = {}
    for case in DEN_CASES:
        d, cj, S, T, D = load_case(kaldi_chain_dir, case)
        out[case] = DenominatorGraph.from_fst(d / "den.fst", D)
    return out


def _fb(g, y, impl, **kw):
    return denominator_forward_backward(g, y, impl=impl, **kw)


def _close(c, t, lp_rel=1e-5, post_abs=2e-5):
    """C result vs torch result at the spec tolerances (and a tighter Frobenius)."""
    lp_err = float(((c.logprob.double() - t.logprob.double()).abs()
                    / t.logprob.double().abs().clamp_min(1e-30)).max())
    assert lp_err <= lp_rel, lp_err
    if t.posteriors is not None:
        d = (c.posteriors.double() - t.posteriors.double())
        assert float(d.abs().max()) <= post_abs, float(d.abs().max())
        assert float(d.norm() / t.posteriors.double().norm()) <= 1e-5


@pytest.mark.parametrize("case", DEN_CASES)
def test_c_matches_kaldi(kaldi_chain_dir, graphs, case):
    d, cj, S, T, D = load_case(kaldi_chain_dir, case)
    g = graphs[case]
    y = from_kaldi(np.load(d / "nnet_output.npy"), S, T, D)
    for r in cj["results"]:                     # leaky 0.1 and 1e-5
        leaky = r["leaky_hmm_coefficient"]
        y1 = y.clone().requires_grad_(True)
        lp = denominator_logprob(g, y1, leaky_hmm_coefficient=leaky, impl="c")
        assert lp.shape == (S,) and lp.dtype == torch.float32
        lp.sum().backward()
        lp = lp.detach()
        assert rel(lp.sum(), r["logprob"]) <= 1e-5
        ref = np.load(d / r["deriv_file"])
        got = to_kaldi(y1.grad)
        assert np.abs(got - ref).max() <= 2e-5
        assert np.linalg.norm(got - ref) / np.linalg.norm(ref) <= 1e-4
        for s, ref_s in enumerate(r["logprob_per_sequence_separate_runs"]):
            assert rel(lp[s], ref_s) <= 1e-5
        np.testing.assert_allclose(y1.grad.sum(-1).numpy(), 1.0, atol=1e-5)
        # and the torch path on the same input
        _close(_fb(g, y, "c", leaky_hmm_coefficient=leaky),
               _fb(g, y, "torch", leaky_hmm_coefficient=leaky))


@pytest.mark.parametrize("leaky", [0.1, 1e-5])
@pytest.mark.parametrize("B,T,lengths", [(1, 1, None), (3, 13, [13, 1, 7]), (17, 9, None),
                                         (33, 6, list(range(1, 7)) * 5 + [6, 2, 5])])
def test_c_matches_torch(graphs, leaky, B, T, lengths):
    g = graphs["medium_den_S4_T34"]
    y = torch.randn(B, T, 80, generator=torch.Generator().manual_seed(B * T)) * 3
    c = _fb(g, y, "c", lengths=lengths, leaky_hmm_coefficient=leaky)
    t = _fb(g, y, "torch", lengths=lengths, leaky_hmm_coefficient=leaky)
    assert c.ok and t.ok
    _close(c, t)
    if lengths is not None:
        for b, L in enumerate(lengths):
            assert torch.all(c.posteriors[b, L:] == 0)


def test_unequal_lengths_identical_to_separate_runs(graphs):
    """Each sequence's lanes do the same operations whatever shares the batch:
    results are bitwise those of the sequence alone (garbage past the end too)."""
    g = graphs["medium_den_S4_T34"]
    T, lengths = 21, [21, 16, 12, 1, 21, 9, 20, 3, 21, 21, 5, 18, 14, 21, 2, 11, 7, 21, 19]
    B = len(lengths)
    y = torch.randn(B, T, 80, generator=torch.Generator().manual_seed(3)) * 2
    for b, L in enumerate(lengths):
        y[b, L:] = float("nan") if b % 2 else 1e6
    res = _fb(g, y, "c", lengths=lengths)
    for b, L in enumerate(lengths):
        one = _fb(g, y[b:b + 1, :L].clone(), "c")
        assert torch.equal(one.logprob[0], res.logprob[b])
        assert torch.equal(one.posteriors[0], res.posteriors[b, :L])
        assert torch.all(res.posteriors[b, L:] == 0)


def test_graph_index_cached_and_equal_to_one_shot_call(kaldi_chain_dir, graphs):
    """The index the C kernel runs on is built once per (graph, D, leaky) and
    reused; results equal the one-shot kb_chain_den_forward_backward bit for
    bit; a graph that fails to index raises and caches nothing; the index
    goes away with its graph."""
    import gc

    g = graphs["medium_den_S4_T34"]
    y = torch.randn(5, 9, 80, generator=torch.Generator().manual_seed(5)) * 2
    L = torch.tensor([9, 3, 9, 1, 7])
    a = den_mod._c_forward_backward(g, y, L, 0.1, num_threads=1)
    lp, post = torch.empty(5), torch.empty(5, 9, 80)
    P = _native.ptr
    _native.call("kb_chain_den_forward_backward", g.num_states, 80,
                 *den_mod._c_graph_args(g), 5, 9, P(y, 5 * 9 * 80, "nnet_output"),
                 P(L.to(torch.int64), 5, "lengths"), 0.1, 1, -1, P(lp, 5, "logprob"),
                 P(post, 5 * 9 * 80, "posteriors"), _native.ffi.NULL, _native.ffi.NULL)
    assert torch.equal(a[0], lp) and torch.equal(a[1], post)
    ix = den_mod._c_den_index(g, 80, 0.1)
    assert den_mod._c_den_index(g, 80, 0.1) is ix
    assert den_mod._c_den_index(g, 80, 1e-5) is not ix
    with pytest.raises(_native.NativeError, match="pdf-id .* out of range"):
        den_mod._c_den_index(g, 10, 0.1)
    assert (10, 0.1) not in den_mod._C_INDEX[g]
    g2 = DenominatorGraph.from_fst(kaldi_chain_dir / "tiny_den_S4_T25" / "den.fst", 10)
    den_mod._c_forward_backward(g2, torch.zeros(1, 2, 10), torch.tensor([2]), 0.1)
    assert g2 in den_mod._C_INDEX
    n = len(den_mod._C_INDEX)
    del g2
    gc.collect()
    assert len(den_mod._C_INDEX) == n - 1


def test_threads_and_forward_only_identical(graphs):
    g = graphs["medium_den_S4_T34"]
    y = torch.randn(40, 8, 80, generator=torch.Generator().manual_seed(9))
    L = torch.tensor([8, 7, 3] * 13 + [5])
    a = den_mod._c_forward_backward(g, y, L, 0.1, num_threads=1)
    b = den_mod._c_forward_backward(g, y, L, 0.1, num_threads=2)
    f = den_mod._c_forward_backward(g, y, L, 0.1, compute_posteriors=False)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(a[0], f[0]) and f[1] is None


def test_long_sequences_across_backward_segments_match_torch(graphs):
    """T = 50 on the medium graph (every frame's alphas kept) and 300 on the
    tiny one (the backward runs over checkpoint segments of recomputed alphas
    with a partial last segment); 32-lane blocks (more than 16 sequences, one
    thread); sequences ending inside and at the edges of segments. (16-lane
    blocks on the medium graph have segments of 3 frames: the other tests.)"""
    for name, T in (("medium_den_S4_T34", 50), ("tiny_den_S4_T25", 300)):
        g = graphs[name]
        D = g.num_pdfs
        lengths = [T, T - 1, 1, 17, T // 3, 2, T, 3, T - 2, 4, T // 2, 5, 6, T, 7, 8, 9, 10, 11, 12]
        B = len(lengths)
        y = torch.randn(B, T, D, generator=torch.Generator().manual_seed(T)) * 2
        c = _fb(g, y, "c", lengths=lengths)
        t = _fb(g, y, "torch", lengths=lengths)
        assert c.ok and t.ok
        _close(c, t)
        for b, L in enumerate(lengths):
            np.testing.assert_allclose(c.posteriors[b, :L].sum(-1).numpy(), 1.0, atol=1e-5)
            assert torch.all(c.posteriors[b, L:] == 0)


def test_scratch_is_checkpointed(graphs):
    """The kernel keeps alphas only every K frames plus one segment (not every
    frame as Kaldi): for long sequences its scratch is well below the memory of
    (T+1) frames of alphas, and it grows with T far more slowly."""
    g = graphs["tiny_den_S4_T25"]
    B, H = 32, g.num_states
    sizes = {}
    for T in (400, 1600):
        y = torch.randn(B, T, g.num_pdfs, generator=torch.Generator().manual_seed(T))
        st = {}
        den_mod._c_forward_backward(g, y, torch.full((B,), T), 0.1, num_threads=1, stats=st)
        sizes[T] = st["scratch_bytes"]
        all_alphas = (T + 1) * H * B * 4
        assert sizes[T] < 0.5 * all_alphas, (T, sizes[T], all_alphas)
    assert sizes[1600] - sizes[400] < 0.25 * 1200 * H * B * 4


BEST_ISA = _native.den_best_isa()
# the vector builds this CPU can run (an isa above BEST_ISA would run BEST_ISA's code)
VECTOR_ISAS = [pytest.param(i, id=name) for i, name in ((1, "avx2"), (2, "avx512"))
               if i <= BEST_ISA]


@pytest.mark.parametrize("isa", VECTOR_ISAS)
@pytest.mark.parametrize("name,B", [("medium_den_S4_T34", 5), ("medium_den_S4_T34", 21),
                                    ("tiny_den_S4_T25", 5), ("tiny_den_S4_T25", 21)])
def test_instruction_sets_agree(graphs, name, B, isa):
    """Each vector build of the kernel the CPU has (the test ids say which) with
    16- and 32-lane blocks (B = 5, 21), D = 80 and D = 10 (not a multiple of
    the vector width: the last pdfs of the in-register transposes) agrees with
    the baseline build, which agrees with the torch ops."""
    g = graphs[name]
    D = g.num_pdfs
    y = torch.randn(B, 11, D, generator=torch.Generator().manual_seed(10 + B)) * 2
    L = torch.tensor(([11, 4, 11, 1, 9] * 5)[:B])
    ref = den_mod._c_forward_backward(g, y, L, 0.1, isa=0)
    t = _fb(g, y, "torch", lengths=L)
    _close(SimpleNamespace(logprob=ref[0], posteriors=ref[1]), t)
    r = den_mod._c_forward_backward(g, y, L, 0.1, isa=isa)
    assert float(((r[0] - ref[0]) / ref[0]).abs().max()) <= 1e-6
    assert float((r[1] - ref[1]).abs().max()) <= 2e-6


def test_an_isa_the_cpu_lacks_runs_the_best_it_has(graphs):
    """isa above the CPU's best runs the best build (bit for bit), and -1 picks it."""
    g = graphs["medium_den_S4_T34"]
    y = torch.randn(21, 11, g.num_pdfs, generator=torch.Generator().manual_seed(3)) * 2
    L = torch.tensor(([11, 4, 11, 1, 9] * 5)[:21])
    best = den_mod._c_forward_backward(g, y, L, 0.1, isa=BEST_ISA)
    for isa in (BEST_ISA + 1, -1):
        r = den_mod._c_forward_backward(g, y, L, 0.1, isa=isa)
        assert torch.equal(r[0], best[0]) and torch.equal(r[1], best[1])
    if BEST_ISA > 0:      # and a lower one really is another build (other rounding)
        base = den_mod._c_forward_backward(g, y, L, 0.1, isa=0)
        assert not torch.equal(base[1], best[1])


def test_output_limits_and_nan_as_torch(graphs):
    g = graphs["tiny_den_S4_T25"]
    y = torch.randn(2, 8, 10, generator=torch.Generator().manual_seed(7))
    y_lo, y_far, y_nan, y_ninf = y.clone(), y.clone(), y.clone(), y.clone()
    y_lo[0, 3, 4] = -30.0
    y_far[0, 3, 4] = -1e4
    y_nan[0, 3, 4] = float("nan")
    y_ninf[0, 3, 4] = float("-inf")
    a = _fb(g, y_lo, "c")
    for yy in (y_far, y_nan, y_ninf):
        b = _fb(g, yy, "c")
        assert torch.equal(a.logprob, b.logprob)
        assert torch.equal(a.posteriors, b.posteriors)
        assert b.ok
        _close(b, _fb(g, yy, "torch"))
    y_hi, y_inf = y.clone(), y.clone()
    y_hi[1, 2, 1] = 30.0
    y_inf[1, 2, 1] = float("inf")
    h, i = _fb(g, y_hi, "c"), _fb(g, y_inf, "c")
    assert torch.equal(h.logprob, i.logprob) and torch.equal(h.posteriors, i.posteriors)
    _close(i, _fb(g, y_inf, "torch"))
    # the derivative ignores the limit (as Kaldi): the +inf element gets its posterior
    assert float(i.posteriors[1, 2, 1]) > 0.5


def test_autograd_and_dtypes(graphs):
    g = graphs["tiny_den_S4_T25"]
    y = torch.randn(2, 9, 10, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    lp = denominator_logprob(g, y, impl="c")
    (lp * torch.tensor([2.0, -0.5])).sum().backward()
    post = _fb(g, y.detach(), "c").posteriors
    assert torch.equal(y.grad[0], 2.0 * post[0]) and torch.equal(y.grad[1], -0.5 * post[1])
    # no grad needed: forward only, same value
    with torch.no_grad():
        assert torch.equal(denominator_logprob(g, y, impl="c"), lp.detach())
    # bfloat16 input: computed in float32 by the C kernel, returned in bfloat16
    yb = y.detach().to(torch.bfloat16).requires_grad_(True)
    lpb = denominator_logprob(g, yb)
    lpb.sum().backward()
    assert lpb.dtype == torch.bfloat16 and yb.grad.dtype == torch.bfloat16
    assert torch.equal(lpb.detach().float(),
                       denominator_logprob(g, yb.detach().float(), impl="c").to(
                           torch.bfloat16).float())


def test_dispatch(graphs):
    g = graphs["tiny_den_S4_T25"]
    cpu = torch.device("cpu")
    assert den_mod._use_c("auto", cpu, torch.float32)
    assert not den_mod._use_c("torch", cpu, torch.float32)
    assert not den_mod._use_c("auto", cpu, torch.float64)
    assert not den_mod._use_c("auto", torch.device("cuda"), torch.float32)
    assert not den_mod._use_c("auto", cpu, torch.float32, check_every_frame=True)
    with pytest.raises(ValueError, match="impl must be one of"):
        den_mod._use_c("fast", cpu, torch.float32)
    with pytest.raises(ValueError, match="computes in float32"):
        denominator_logprob(g, torch.zeros(1, 3, 10, dtype=torch.float64), impl="c")
    # the default on CPU/float32 is the C kernel: bitwise its numbers
    y = torch.randn(3, 7, 10, generator=torch.Generator().manual_seed(2))
    auto = denominator_forward_backward(g, y)
    c = _fb(g, y, "c")
    assert torch.equal(auto.logprob, c.logprob) and torch.equal(auto.posteriors, c.posteriors)
    # float64 input goes to the torch code (float64 result)
    assert denominator_forward_backward(g, y.double()).logprob.dtype == torch.float64


def test_chain_loss_uses_c_and_matches_torch(graphs, monkeypatch):
    """ChainLoss's denominator (impl auto -> C) equals the torch path's."""
    from kbind.chain import loss as loss_mod

    g = graphs["medium_den_S4_T34"]
    y = torch.randn(4, 10, 80, generator=torch.Generator().manual_seed(4)) * 2
    calls = []
    real = den_mod._c_forward_backward

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(den_mod, "_c_forward_backward", spy)
    res = loss_mod.denominator_forward_backward(g, y, None, 0.1, dtype=torch.float32)
    assert calls
    _close(res, _fb(g, y, "torch"))


def _raw_call(g, y, lengths=None, leaky=0.1, **over):
    """kb_chain_den_forward_backward with (possibly corrupted) arrays."""
    arr = {k: v.clone() for k, v in den_mod._c_graph_arrays(g).items()}
    arr.update(over.pop("arrays", {}))
    B, T, D = y.shape
    D = over.pop("D", D)
    lp = torch.empty(B)
    post = torch.empty(B, T, y.shape[2])

    def P(t):  # the sizes given below may be corrupted: the C side must refuse them
        return _native.ptr(t, 0 if t is None else t.numel(), "array")
    _native.call("kb_chain_den_forward_backward", over.pop("H", g.num_states), D,
                 P(arr["forward_transitions"]), arr["transitions_prob"].numel(),
                 P(arr["transitions_prob"]), P(arr["transitions_pdf"]),
                 P(arr["transitions_hmm_state"]), P(arr["initial_probs"]),
                 over.pop("B", B), over.pop("T", T), P(y.contiguous()), P(lengths),
                 leaky, 1, -1, P(lp), P(post), P(None), P(None))
    return lp, post


def test_bad_sizes_clear_errors_from_c(graphs):
    g = graphs["tiny_den_S4_T25"]
    y = torch.zeros(2, 5, 10)
    lp, post = _raw_call(g, y)                      # the arrays as given are fine
    assert torch.isfinite(lp).all()
    E = _native.NativeError
    with pytest.raises(E, match=r"length 6 of sequence 1 out of range \[1, 5\]"):
        _raw_call(g, y, lengths=torch.tensor([5, 6]))
    with pytest.raises(E, match=r"length 0 of sequence 0"):
        _raw_call(g, y, lengths=torch.tensor([0, 5]))
    with pytest.raises(E, match=r"leaky_hmm_coefficient must be in \(0, 1\)"):
        _raw_call(g, y, leaky=0.0)
    with pytest.raises(E, match="at least one sequence and one frame"):
        _raw_call(g, y, T=0)
    with pytest.raises(E, match=r"pdf-id 9 out of range \[0, 9\)"):
        _raw_call(g, y, D=9)                         # nnet output narrower than the graph
    pdf = den_mod._c_graph_arrays(g)["transitions_pdf"].clone()
    pdf[3] = -1
    with pytest.raises(E, match="pdf-id -1 out of range"):
        _raw_call(g, y, arrays={"transitions_pdf": pdf})
    hs = den_mod._c_graph_arrays(g)["transitions_hmm_state"].clone()
    hs[0] = g.num_states
    with pytest.raises(E, match="next state 111 out of range"):
        _raw_call(g, y, arrays={"transitions_hmm_state": hs})
    ft = den_mod._c_graph_arrays(g)["forward_transitions"].clone()
    ft[2, 1] = 10 ** 6
    with pytest.raises(E, match="forward transitions"):
        _raw_call(g, y, arrays={"forward_transitions": ft})
    prob = den_mod._c_graph_arrays(g)["transitions_prob"].clone()
    prob[1] = float("nan")
    with pytest.raises(E, match="probability nan"):
        _raw_call(g, y, arrays={"transitions_prob": prob})
    init = den_mod._c_graph_arrays(g)["initial_probs"].clone()
    init[4] = float("inf")
    with pytest.raises(E, match="initial prob of state 4"):
        _raw_call(g, y, arrays={"initial_probs": init})
    with pytest.raises(E, match="sizes must be positive"):
        _raw_call(g, y, H=0)
    # through the public API: Python's own checks first
    with pytest.raises(ValueError, match="11 columns but the den graph has num_pdfs = 10"):
        denominator_logprob(g, torch.zeros(2, 5, 11), impl="c")


def test_sanity_check_reporting(caplog):
    with caplog.at_level(logging.WARNING):
        assert den_mod._sanity_check(0, 4.0000001, 3.9999, 4.0)
        assert not caplog.text
        assert not den_mod._sanity_check(0, 12.0, 4.0, 4.0)
    assert "alpha-beta product" in caplog.text

"""The C numerator kernel (cbridge/chain_num.c) against the torch path, closed
forms, finite differences and bad input (the Kaldi fixtures run through both
implementations in test_numerator.py)."""

import logging

import numpy as np
import pytest
import torch

from kbind import _native
from kbind.chain import Supervision, numerator_forward_backward, numerator_logprob
from kbind.chain.numerator import _c_forward_backward
from kbind.io.fst import Fst

from . import fd_check, one_thread

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)



def _sorted_fst(n, start, final, src, dst, pdf, cost):
    o = np.argsort(np.asarray(src), kind="stable")
    lab = np.asarray(pdf)[o] + 1
    return Fst(n, start, final, np.asarray(src)[o], np.asarray(dst)[o], lab, lab,
               np.asarray(cost, dtype=np.float32)[o])


def rand_constrained(rng, L, D, width=4):
    """A levelled acyclic acceptor: every path has L arcs (as Kaldi's chunks)."""
    levels = [[0]]
    n = 1
    for _ in range(L):
        w = int(rng.integers(1, width + 1))
        levels.append(list(range(n, n + w)))
        n += w
    src, dst = [], []
    for k in range(L):
        cur, nxt = levels[k], levels[k + 1]
        has_out = set()
        for j in nxt:
            for i in rng.choice(cur, size=min(len(cur), int(rng.integers(1, 3))), replace=False):
                src.append(int(i)); dst.append(j); has_out.add(int(i))
        for i in cur:
            if i not in has_out:
                src.append(i); dst.append(int(rng.choice(nxt)))
    A = len(src)
    final = np.full(n, np.inf, dtype=np.float32)
    final[levels[L]] = rng.uniform(0, 2, len(levels[L]))
    return _sorted_fst(n, 0, final, src, dst, rng.integers(0, D, A), rng.uniform(0, 3, A))


def rand_e2e(rng, K, D, extra=6, reenter=False):
    """A cyclic acceptor as a flat-start graph: a chain of K states with
    self-loops after the start state, random extra (also backward) arcs, high
    start-arc costs (Kaldi's offset); ``reenter``: an arc back into the start
    state (no offset then). Paths of any length >= K reach the final state."""
    src = [0, 0] + list(range(1, K + 1)) + list(range(1, K))
    dst = [1, min(2, K)] + list(range(1, K + 1)) + list(range(2, K + 1))
    cost = [float(rng.uniform(5, 20)), float(rng.uniform(5, 20))]
    cost += list(rng.uniform(0, 2, len(src) - 2))
    for _ in range(extra):
        src.append(int(rng.integers(1, K + 1))); dst.append(int(rng.integers(1, K + 1)))
        cost.append(float(rng.uniform(0, 4)))
    if reenter:
        src.append(K); dst.append(0); cost.append(1.0)
    final = np.full(K + 1, np.inf, dtype=np.float32)
    final[K] = 0.3
    final[max(1, K - 1)] = 1.5
    return _sorted_fst(K + 1, 0, final, src, dst, rng.integers(0, D, len(src)), cost)


def _compare(sup, y, dtype, lp_rtol, post_atol):
    a = numerator_forward_backward(sup, y, dtype=dtype, impl="c")
    b = numerator_forward_backward(sup, y, dtype=dtype, impl="torch")
    assert a.logprob.dtype == b.logprob.dtype and a.posteriors.dtype == b.posteriors.dtype
    assert torch.isfinite(b.logprob).all()
    err = ((a.logprob - b.logprob).abs() / b.logprob.abs()).max()
    assert float(err) <= lp_rtol, float(err)
    assert float((a.posteriors - b.posteriors).abs().max()) <= post_atol
    # exactly the same entries are nonzero
    assert torch.equal(a.posteriors != 0, b.posteriors != 0)
    return a


@pytest.mark.parametrize("in_dtype", [torch.float32, torch.float64])
def test_constrained_c_equals_torch(in_dtype):
    rng = np.random.default_rng(1)
    D = 13
    lengths = [9, 14, 5, 14, 1]
    sup = Supervision.from_fsts([rand_constrained(rng, L, D) for L in lengths])
    assert sup.kind == "constrained" and sup.frames == lengths
    y = torch.from_numpy(rng.normal(0, 2, (len(lengths), 14, D))).to(in_dtype)
    a = _compare(sup, y, None, 1e-12, 1e-12)          # double, as Kaldi
    assert a.logprob.dtype == torch.float64
    for s, L in enumerate(lengths):
        assert torch.all(a.posteriors[s, L:] == 0)
        assert torch.allclose(a.posteriors[s, :L].sum(-1), torch.ones(L, dtype=torch.float64))


@pytest.mark.parametrize("reenter", [False, True])
def test_e2e_c_equals_torch_unequal_lengths(reenter):
    rng = np.random.default_rng(2)
    D = 17
    Ks = [3, 6, 1, 8, 5, 4]
    lengths = [10, 25, 7, 40, 8, 40]
    sup = Supervision.from_fsts([rand_e2e(rng, K, D, reenter=reenter) for K in Ks], lengths)
    assert sup.kind == "e2e"
    y = torch.from_numpy(rng.normal(0, 3, (len(Ks), 40, D))).float()
    y[0, 10:] = float("nan")      # past sequence 0's length: never read
    a = _compare(sup, y, None, 2e-6, 2e-6)             # float, as Kaldi's generic numerator
    assert a.logprob.dtype == torch.float32
    _compare(sup, y, torch.float64, 1e-12, 1e-12)
    for s, L in enumerate(lengths):
        assert torch.all(a.posteriors[s, L:] == 0)
        assert float((a.posteriors[s, :L].sum(-1) - 1).abs().max()) <= 1e-5


def test_each_sequence_as_alone_and_threads():
    rng = np.random.default_rng(3)
    D = 11
    fsts = [rand_e2e(rng, K, D) for K in (2, 5, 7)]
    lengths = [6, 20, 13]
    sup = Supervision.from_fsts(fsts, lengths)
    y = torch.from_numpy(rng.normal(0, 1, (3, 20, D))).float()
    one = _c_forward_backward(sup, y, torch.float32, num_threads=1)
    two = _c_forward_backward(sup, y, torch.float32, num_threads=2)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])
    for s in range(3):
        alone = numerator_forward_backward(Supervision.from_fsts([fsts[s]], lengths[s]),
                                           y[s:s + 1, :lengths[s]], impl="c")
        assert torch.equal(alone.logprob[0], one[0][s])
        assert torch.equal(alone.posteriors[0], one[1][s, :lengths[s]])


def test_e2e_offset_brute_force():
    # paths enumerated: log Z = logsumexp over all label sequences of length 4
    fst = Fst(2, 0, [np.inf, 0.5], [0, 0, 1, 1], [1, 1, 1, 1], [1, 2, 1, 2], [1, 2, 1, 2],
              [20.0, 21.0, 0.7, 0.9])
    sup = Supervision.from_fsts([fst], 4)
    y = torch.randn(1, 4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    import itertools
    c0 = np.float32([20.0, 21.0]).astype(np.float64)
    c1 = np.float32([0.7, 0.9]).astype(np.float64)
    tot = [-(c0[q[0]] + sum(c1[k] for k in q[1:]) + 0.5)
           + sum(float(y[0, t, k]) for t, k in enumerate(q))
           for q in itertools.product([0, 1], repeat=4)]
    expect = float(np.logaddexp.reduce(tot))
    for dt, tol in ((torch.float32, 1e-6), (torch.float64, 1e-13)):
        lp = numerator_forward_backward(sup, y.to(dt), impl="c").logprob
        assert abs(float(lp[0]) - expect) <= tol * abs(expect)


@pytest.mark.parametrize("kind", ["constrained", "e2e"])
def test_finite_differences(kind):
    rng = np.random.default_rng(4)
    D = 7
    if kind == "constrained":
        sup = Supervision.from_fsts([rand_constrained(rng, L, D) for L in (8, 5, 8)])
    else:
        sup = Supervision.from_fsts([rand_e2e(rng, K, D) for K in (3, 5, 2)], [8, 6, 8])
    y = torch.from_numpy(rng.normal(0, 1, (3, 8, D))).requires_grad_(True)
    w = torch.tensor([1.0, 0.5, -2.0], dtype=torch.float64)
    (numerator_logprob(sup, y, impl="c") * w).sum().backward()
    if kind == "e2e":
        assert torch.all(y.grad[1, 6:] == 0)

    def f(x):
        return (numerator_logprob(sup, x, impl="c") * w).sum()
    assert fd_check(f, y.detach(), y.grad) <= 1e-7


def test_nonfinite_output_names_sequence_and_frame(caplog):
    rng = np.random.default_rng(5)
    D = 9
    sup = Supervision.from_fsts([rand_e2e(rng, 3, D) for _ in range(3)], [10, 10, 6])
    y = torch.from_numpy(rng.normal(0, 1, (3, 10, D))).float()
    y[1, 7, :] = float("nan")
    y[2, 8, :] = float("inf")         # past sequence 2's length: ignored
    y[0, 2, :] = float("-inf")        # an impossible frame: no path, not an error
    with caplog.at_level(logging.WARNING, logger="kbind.chain.numerator"):
        r = numerator_forward_backward(sup, y, impl="c")
    assert torch.isnan(r.logprob[1]) and torch.all(r.posteriors[1] == 0)
    assert r.logprob[0] == float("-inf") and torch.all(r.posteriors[0] == 0)
    assert torch.isfinite(r.logprob[2])
    msgs = [m.getMessage() for m in caplog.records]
    assert len(msgs) == 1 and "sequence 1, frame 7" in msgs[0] and "nan" in msgs[0]
    y[1, 7, :] = float("inf")
    assert torch.isnan(numerator_forward_backward(sup, y, impl="c").logprob[1])


def _raw_call(S=1, T=3, D=4, lengths=(3,), state_offsets=(0, 2), arc_offsets=(0, 2),
              start=(0,), src=(0, 1), dst=(1, 1), pdf=(0, 3), lp=(0.0, -1.0),
              final=(-np.inf, 0.0), y=None, num_states=None, num_arcs=None):
    """The kernel on these arrays; num_states / num_arcs default to the ends
    of the offsets, and every array is passed with its own length, so that
    sizes that disagree reach the C checks."""
    t = torch.tensor
    N = state_offsets[-1] if num_states is None else num_states
    A = arc_offsets[-1] if num_arcs is None else num_arcs
    y = torch.zeros(S, T, D) if y is None else y
    i64, i32, f64 = torch.int64, torch.int32, torch.float64
    keep = [t(lengths, dtype=i64), t(state_offsets, dtype=i64), t(arc_offsets, dtype=i64),
            t(start, dtype=i32), t(src, dtype=i32), t(dst, dtype=i32), t(pdf, dtype=i32),
            t(lp, dtype=f64), t(final, dtype=f64)]
    logprob = torch.empty(S, dtype=torch.float64)
    post = torch.empty(S, T, D)
    NULL = _native.ffi.NULL

    def P(x):
        return _native.ptr(x, x.numel(), "array")
    _native.call("kb_chain_num_forward_backward", S, T, D, N, A, *[P(k) for k in keep], NULL,
                 0, P(y), NULL, 1, P(logprob), P(post), NULL, NULL)
    return logprob, post


def test_raw_kernel_closed_form_and_errors():
    # 0 -a(pdf 0, lp 0)-> 1, 1 -b(pdf 3, lp -1)-> 1 (self-loop), 1 final: 3 frames
    y = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(0))
    lp, post = _raw_call(y=y)
    expect = float(y[0, 0, 0] + y[0, 1, 3] + y[0, 2, 3]) - 2.0
    assert abs(float(lp[0]) - expect) <= 1e-6
    ref = torch.zeros(1, 3, 4)
    ref[0, 0, 0] = ref[0, 1, 3] = ref[0, 2, 3] = 1.0
    assert torch.allclose(post, ref, atol=1e-6)
    NE = _native.NativeError
    with pytest.raises(NE, match=r"sequence 0 arc 1: pdf-id 4 out of range \[0, 4\)"):
        _raw_call(pdf=(0, 4))
    with pytest.raises(NE, match=r"sequence 0 has 5 frames, outside \[1, 3\]"):
        _raw_call(lengths=(5,))
    with pytest.raises(NE, match=r"state 0 -> 2 out of range"):
        _raw_call(dst=(2, 1))
    with pytest.raises(NE, match="start state 2 out of range"):
        _raw_call(start=(2,))
    with pytest.raises(NE, match="log-prob nan"):
        _raw_call(lp=(np.nan, 0.0))
    with pytest.raises(NE, match="final log-prob inf"):
        _raw_call(final=(np.inf, 0.0))
    with pytest.raises(NE, match="sequence 0 has 0 states"):
        _raw_call(state_offsets=(0, 0))
    # the offsets must end at the lengths of the per-state / per-arc arrays
    with pytest.raises(NE, match=r"arc offsets must run from 0 to the 1 arcs \(got 0 \.\. 2\)"):
        _raw_call(num_arcs=1)
    with pytest.raises(NE, match=r"state offsets must run from 0 to the 1 states"):
        _raw_call(num_states=1)
    with pytest.raises(NE, match="sizes must be positive"):
        _raw_call(S=0)


def test_api_errors():
    rng = np.random.default_rng(6)
    sup = Supervision.from_fsts([rand_e2e(rng, 3, 9)], [10])
    with pytest.raises(ValueError, match="network output has 5 columns"):
        numerator_logprob(sup, torch.zeros(1, 10, 5), impl="c")
    with pytest.raises(ValueError, match="needs 10 frames but nnet_output has only 8"):
        numerator_logprob(sup, torch.zeros(1, 8, 9), impl="c")
    with pytest.raises(ValueError, match="impl must be one of"):
        numerator_logprob(sup, torch.zeros(1, 10, 9), impl="cuda")
    with pytest.raises(ValueError, match="impl='c' is not possible: the C kernel runs on CPU"):
        numerator_logprob(sup, torch.zeros(1, 10, 9, device="meta"), impl="c")


def test_raw_kernel_fuzz_never_crashes():
    """Random graphs, weights and outputs, half of them with one corrupted
    field (sizes consistent): the kernel either scores (posteriors finite, zero
    for sequences whose log-prob is not finite) or reports an error."""
    rng = np.random.default_rng(7)
    ok = failed = 0
    for it in range(300):
        S, T, D = int(rng.integers(1, 4)), int(rng.integers(1, 6)), int(rng.integers(1, 5))
        n = rng.integers(1, 4, S)
        na = rng.integers(0, 6, S)
        A, N = int(na.sum()), int(n.sum())
        arc_n = np.repeat(n, na)
        f = dict(S=S, T=T, D=D, lengths=rng.integers(1, T + 1, S),
                 state_offsets=np.concatenate([[0], np.cumsum(n)]),
                 arc_offsets=np.concatenate([[0], np.cumsum(na)]),
                 start=rng.integers(0, n), src=rng.integers(0, arc_n), dst=rng.integers(0, arc_n),
                 pdf=rng.integers(0, D, A), lp=rng.normal(0, 2, A),
                 final=np.where(rng.random(N) < 0.5, -np.inf, rng.normal(0, 1, N)))
        bad = None
        if it % 2:
            bad = str(rng.choice(["lengths", "start", "src", "dst", "pdf", "lp", "final"]))
            a = np.array(f[bad], dtype=np.float64 if bad in ("lp", "final") else np.int64)
            if a.size:
                k = int(rng.integers(a.size))
                a[k] = rng.choice({"lengths": [0, T + 1], "start": [-1, 99], "src": [-1, 99],
                                   "dst": [-1, 99], "pdf": [-1, D], "lp": [np.nan, np.inf],
                                   "final": [np.nan, np.inf]}[bad])
                f[bad] = a
        f = {k: (tuple(v.tolist()) if isinstance(v, np.ndarray) else v) for k, v in f.items()}
        y = torch.from_numpy(rng.normal(0, 1, (S, T, D))).float()
        if it % 3 == 0:
            y.view(-1)[int(rng.integers(y.numel()))] = float(rng.choice([np.nan, np.inf, -np.inf]))
        try:
            lpr, post = _raw_call(y=y, **f)
        except _native.NativeError:
            failed += 1
            continue
        ok += 1
        assert torch.isfinite(post).all()
        for s in range(S):
            if not torch.isfinite(lpr[s]):
                assert torch.all(post[s] == 0)
            else:
                L = f["lengths"][s]
                assert torch.allclose(post[s, :L].sum(-1), torch.ones(L), atol=1e-4)
    assert ok > 100 and failed > 50

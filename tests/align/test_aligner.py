"""Forced alignment (cbridge/align.c via kbind.align): checked against
kaldi-decoder's FasterDecoder (Kaldi's own search code) run as Kaldi's
AlignUtteranceWrapper runs it, and against an exhaustive dynamic-programming
Viterbi on small graphs."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import torch

from kbind.align import (AlignGraph, AlignOptions, ForcedAligner, add_transition_probs,
                         careful_graph, min_frames_needed, scaled_transition_costs,
                         write_alignments)
from kbind.align.aligner import search
from kbind.hmm import ali_to_pdf, ali_to_phones
from kbind.hmm.graph_compiler import TrainingGraphCompiler
from kbind.io import read_table
from kbind.io.fst import Fst
from kbind.io.lattice import Lattice
from tests.decode.test_decoder import rand_graph
from tests.hmm.test_graph_compiler import allowed_phone_seqs, int_prons, models, toy_lang


INF = float("inf")


# -- references --------------------------------------------------------------------------

def kaldi_align(g: Fst, tid2pdf, ll, o: AlignOptions):
    """Kaldi's AlignUtteranceWrapper on kaldi-decoder's FasterDecoder:
    decode with beam; if no final state is reached, decode again with
    retry_beam; best path if a final state was reached. DecodableCtc gives
    LogLikelihood(t, tid) = m[t, tid - 1] = acoustic_scale * ll[t, pdf]."""
    import kaldi_decoder as kd
    m = (np.float32(o.acoustic_scale) * ll[:, tid2pdf[1:]]).astype(np.float32)
    kfst = g.to_kaldifst()

    def kopts(beam):
        return kd.FasterDecoderOptions(beam=beam, max_active=o.max_active,
                                       min_active=o.min_active, beam_delta=o.beam_delta,
                                       hash_ratio=o.hash_ratio)

    fd = kd.FasterDecoder(kfst, kopts(o.beam))
    dec = kd.DecodableCtc(m)
    fd.decode(dec)
    ok, retried = fd.reached_final(), False
    if not ok and o.retry_beam:
        retried = True
        fd.set_options(kopts(o.retry_beam))
        fd.decode(dec)
        ok = fd.reached_final()
    if not ok:
        return False, retried, None
    got, best = fd.get_best_path()
    assert got
    return True, retried, Lattice.from_kaldifst(best).best_path()


def dp_viterbi(g: Fst, tid2pdf, ll, scale):
    """Exact Viterbi by dynamic programming (float64, no pruning): best cost
    per state after each frame with epsilon closure (graphs here have no
    epsilon cycles), back-pointers, best final state at the end.
    Returns (total cost, alignment) or None if no final state is reachable."""
    T = ll.shape[0]
    ns = g.num_states
    arcs = [g.arcs(s) for s in range(ns)]
    order = _eps_topo_order(g)

    def closure(cost, back):
        for s in order:
            if cost[s] == INF:
                continue
            for d, i, _o, w in arcs[s]:
                if i == 0 and cost[s] + w < cost[d]:
                    cost[d] = cost[s] + w
                    back[d] = (s, None)

    cost = np.full(ns, INF)
    cost[g.start] = 0.0
    backs = []
    b = [None] * ns
    closure(cost, b)
    backs.append(b)
    for t in range(T):
        new = np.full(ns, INF)
        b = [None] * ns
        for s in range(ns):
            if cost[s] == INF:
                continue
            for d, i, _o, w in arcs[s]:
                if i != 0:
                    c = cost[s] + w - scale * float(ll[t, tid2pdf[i]])
                    if c < new[d]:
                        new[d] = c
                        b[d] = (s, i)
        closure(new, b)
        backs.append(b)
        cost = new
    tot = cost + g.final.astype(np.float64)
    if not np.isfinite(tot).any():
        return None
    s = int(np.argmin(tot))
    best = float(tot[s])
    ali = []
    for t in range(T, -1, -1):
        while backs[t][s] is not None and backs[t][s][1] is None:
            s = backs[t][s][0]
        if t == 0:
            break
        s, i = backs[t][s]
        ali.append(i)
    return best, ali[::-1]


def _eps_topo_order(g: Fst):
    ns = g.num_states
    indeg = np.zeros(ns, int)
    for s in range(ns):
        for d, i, _o, _w in g.arcs(s):
            if i == 0:
                indeg[d] += 1
    stack = [s for s in range(ns) if indeg[s] == 0]
    out = []
    while stack:
        s = stack.pop()
        out.append(s)
        for d, i, _o, _w in g.arcs(s):
            if i == 0:
                indeg[d] -= 1
                if indeg[d] == 0:
                    stack.append(d)
    assert len(out) == ns, "epsilon cycle"
    return out


def rand_align_case(seed, ns=20, num_tids=12, num_pdfs=5, T=None, **kw):
    rng = np.random.default_rng(seed)
    g = rand_graph(rng, ns=ns, num_tids=num_tids, **kw)
    tid2pdf = np.concatenate([[0], rng.integers(0, num_pdfs, num_tids)]).astype(np.int32)
    T = int(rng.integers(1, 15)) if T is None else T
    ll = (rng.normal(size=(T, num_pdfs)) * 3).astype(np.float32)
    return g, tid2pdf, ll


def run_search(g, tid2pdf, ll, o):
    return search(g, tid2pdf, torch.from_numpy(ll), o)


def check_same_as_kaldi(g, tid2pdf, ll, o):
    ok, retried, ali, words, costs = run_search(g, tid2pdf, ll, o)
    kok, kretried, kbest = kaldi_align(g, tid2pdf, ll, o)
    assert (ok, retried) == (kok, kretried)
    if ok:
        assert ali.tolist() == list(kbest.alignment)
        assert words.tolist() == list(kbest.words)
        np.testing.assert_allclose(costs[0], kbest.graph_cost, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(costs[1], kbest.acoustic_cost, rtol=1e-5, atol=1e-4)
        like = -(np.float32(kbest.graph_cost) + np.float32(kbest.acoustic_cost)) \
            / np.float32(o.acoustic_scale)
        np.testing.assert_allclose(costs[2], like, rtol=1e-5, atol=1e-3)
    return ok, retried


# -- the search against Kaldi's FasterDecoder and an exact DP -------------------------

@pytest.mark.parametrize("beam,retry,min_active,max_active",
                         [(10.0, 40.0, 20, 2**31 - 1), (1.0, 4.0, 0, 2**31 - 1),
                          (2.0, 0.0, 0, 2**31 - 1), (3.0, 30.0, 3, 6), (0.5, 2.0, 5, 2**31 - 1)])
def test_matches_kaldi_faster_decoder(beam, retry, min_active, max_active):
    outcomes = set()
    for seed in range(60):
        g, tid2pdf, ll = rand_align_case(seed, ns=int(10 + seed % 5 * 12), T=5 + seed % 20)
        o = AlignOptions(beam=beam, retry_beam=retry, min_active=min_active,
                         max_active=max_active, acoustic_scale=[1.0, 0.1, 0.5][seed % 3])
        outcomes.add(check_same_as_kaldi(g, tid2pdf, ll, o))
    # the cases exercise success, and for narrow beams retries and failures
    assert (True, False) in outcomes
    if beam <= 1.0:
        assert (True, True) in outcomes and (False, True) in outcomes


def test_matches_kaldi_with_hash_collisions():
    """More states than the HashList's 1000 buckets, so elements share
    buckets and the list order (which decides pruning) is not insertion
    order; the hash also grows."""
    for seed in range(3):
        g, tid2pdf, ll = rand_align_case(100 + seed, ns=2600, num_tids=40, num_pdfs=10, T=25,
                                         arcs_per=4, final_p=0.2)
        o = AlignOptions(beam=6.0, retry_beam=20.0, min_active=50)
        check_same_as_kaldi(g, tid2pdf, ll, o)


def test_wide_beam_equals_exact_viterbi():
    checked = 0
    for seed in range(80):
        g, tid2pdf, ll = rand_align_case(200 + seed, ns=8 + seed % 10)
        scale = [1.0, 0.3][seed % 2]
        o = AlignOptions(beam=1e4, retry_beam=0.0, acoustic_scale=scale, min_active=0)
        ok, _r, ali, _w, costs = run_search(g, tid2pdf, ll, o)
        ref = dp_viterbi(g, tid2pdf, ll, scale)
        assert ok == (ref is not None)
        if ok:
            best, ref_ali = ref
            np.testing.assert_allclose(float(costs[0]) + float(costs[1]), best,
                                       rtol=1e-5, atol=1e-3)
            # the alignment is a best path: its own cost (recomputed) equals the optimum
            assert len(ali) == ll.shape[0]
            if ali.tolist() != ref_ali:  # ties: both must reach the same cost
                np.testing.assert_allclose(path_cost(g, tid2pdf, ll, scale, ali), best,
                                           rtol=1e-5, atol=1e-3)
            checked += 1
    assert checked > 40


def path_cost(g, tid2pdf, ll, scale, ali):
    """Cheapest path of g whose transition-id sequence is ali (DP)."""
    cost = np.full(g.num_states, INF)
    cost[g.start] = 0.0
    order = _eps_topo_order(g)

    def closure(c):
        for s in order:
            for d, i, _o, w in g.arcs(s):
                if i == 0 and c[s] + w < c[d]:
                    c[d] = c[s] + w

    closure(cost)
    for t, tid in enumerate(ali):
        new = np.full(g.num_states, INF)
        for s in range(g.num_states):
            for d, i, _o, w in g.arcs(s):
                if i == tid:
                    new[d] = min(new[d], cost[s] + w - scale * float(ll[t, tid2pdf[i]]))
        closure(new)
        cost = new
    return float(np.min(cost + g.final))


def garden_path(T=8):
    """Branch A (transition-id 1, pdf 0) is acoustically better but never
    final; branch B (transition-id 2, pdf 1) is final."""
    g = Fst(3, 0, [INF, INF, 0.0], [0, 0, 1, 2], [1, 2, 1, 2], [1, 2, 1, 2], [0, 0, 0, 0],
            [0.0, 0.0, 0.0, 0.0])
    tid2pdf = np.array([0, 0, 1], np.int32)
    ll = np.zeros((T, 2), np.float32)
    ll[:, 1] = -2.0  # B loses 2 nats a frame
    return g, tid2pdf, ll


def test_retry_beam():
    g, tid2pdf, ll = garden_path(T=8)  # B ends 16 behind A: pruned at beam 10
    o = AlignOptions(beam=10.0, retry_beam=40.0, min_active=0)
    ok, retried = check_same_as_kaldi(g, tid2pdf, ll, o)
    assert ok and retried
    _ok, _r, ali, _w, costs = run_search(g, tid2pdf, ll, o)
    assert ali.tolist() == [2] * 8
    assert costs[2] == pytest.approx(-16.0)
    # without a retry beam it fails, and with a too narrow one too
    assert check_same_as_kaldi(g, tid2pdf, ll, AlignOptions(beam=10.0, retry_beam=0.0,
                                                            min_active=0)) == (False, False)
    assert check_same_as_kaldi(g, tid2pdf, ll, AlignOptions(beam=10.0, retry_beam=12.0,
                                                            min_active=0)) == (False, True)
    # with Kaldi's min_active = 20 these 2 tokens are never pruned
    assert check_same_as_kaldi(g, tid2pdf, ll, AlignOptions(beam=10.0)) == (True, False)


def test_careful_graph_structure():
    # 0 -1-> 1 (final 0.5) -2-> 2 (final 0.25), start 0
    g = Fst(3, 0, [INF, 0.5, 0.25], [0, 1], [1, 2], [1, 2], [7, 0], [1.0, 2.0])
    c = careful_graph(g)
    # OpenFst Concat(g, rhs): rhs = g without finals + pre_initial (state 3 of rhs,
    # final One, epsilon to rhs's start); rhs states follow g's (offset 3); each final
    # state of g loses its final weight and gets an epsilon arc (that weight) to the
    # rhs start = pre_initial = 6, after its own arcs
    assert c.num_states == 7 and c.start == 0
    assert c.final.tolist() == [INF] * 6 + [0.0]
    assert [c.arcs(s) for s in range(7)] == [
        [(1, 1, 7, 1.0)], [(2, 2, 0, 2.0), (6, 0, 0, 0.5)], [(6, 0, 0, 0.25)],
        [(4, 1, 7, 1.0)], [(5, 2, 0, 2.0)], [], [(3, 0, 0, 0.0)]]


def test_careful_mode():
    """A path that reaches the end of the transcript early and could go on in
    the blind alley: careful alignment fails at a beam where plain alignment
    succeeds (Kaldi's FasterDecoder agrees on the careful graph)."""
    # 0 -c-> 0 (loop), 0 -a-> 1 (final), 1 -b-> 1 (loop); tids a=1, b=2, c=3 = pdfs 0, 1, 2
    g = Fst(2, 0, [INF, 0.0], [0, 0, 1], [0, 1, 1], [3, 1, 2], [0, 0, 0], [0.0, 0.0, 0.0])
    tid2pdf = np.array([0, 0, 1, 2], np.int32)
    T = 10
    ll = np.full((T, 3), -5.0, np.float32)
    ll[0, 0] = 0.0   # frame 0 favours a
    ll[1:, 2] = 0.0  # then c
    o = AlignOptions(beam=8.0, retry_beam=0.0, min_active=0)
    ok, _r, ali, _w, _c = run_search(g, tid2pdf, ll, o)
    assert ok and ali.tolist() == [3] * 9 + [1]  # c^9 a (cost 10) beats a b^9 (cost 45)
    cg = careful_graph(g)
    assert check_same_as_kaldi(cg, tid2pdf, ll, o) == (False, False)
    assert check_same_as_kaldi(cg, tid2pdf, ll, AlignOptions(beam=8.0, retry_beam=20.0,
                                                             min_active=0)) == (True, True)
    # wide beam: the careful graph gives the plain alignment
    wide = AlignOptions(beam=1e4, retry_beam=0.0, min_active=0)
    assert run_search(cg, tid2pdf, ll, wide)[2].tolist() == ali.tolist()


# -- ForcedAligner on real training graphs ---------------------------------------------

@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("align")
    lang = toy_lang(tmp, words=[("x", ("AA",)), ("y", ("B", "IY")), ("z", ("AA", "B"))])
    tree, tm = models(lang, seed=3)
    return lang, tree, tm


def oracle_loglikes(tm, ali, rng, margin=4.0):
    """Log-likelihoods favouring the pdfs of a given alignment."""
    pdfs = tm.tid2pdf[np.asarray(ali)]
    ll = -margin + rng.normal(size=(len(ali), tm.num_pdfs))
    ll[np.arange(len(ali)), pdfs] = rng.normal(size=len(ali))
    return ll.astype(np.float32)


def random_alignment(graph: Fst, rng, T):
    """A random complete path of exactly T emitting arcs through a training
    graph: ok[t][s] = a final state is reachable from s with t more frames
    (epsilon arcs go forward here), then a walk choosing among arcs that
    keep it possible."""
    ns = graph.num_states
    arcs = [graph.arcs(s) for s in range(ns)]
    order = _eps_topo_order(graph)[::-1]
    ok = np.zeros((T + 1, ns), bool)
    for t in range(T + 1):
        for s in order:  # successors of epsilon arcs first
            good = t == 0 and np.isfinite(graph.final[s])
            for d, i, _o, _w in arcs[s]:
                good = good or (ok[t, d] if i == 0 else (t > 0 and ok[t - 1, d]))
            ok[t, s] = good
    assert ok[T, graph.start], "no path of that length"
    s, t, ali = graph.start, T, []
    while not (t == 0 and np.isfinite(graph.final[s]) and rng.random() < 0.7):
        choices = [(d, i) for d, i, _o, _w in arcs[s]
                   if (ok[t, d] if i == 0 else (t > 0 and ok[t - 1, d]))]
        if not choices:
            break
        d, i = choices[int(rng.integers(len(choices)))]
        if i:
            ali.append(i)
            t -= 1
        s = d
    assert len(ali) == T and np.isfinite(graph.final[s])
    return ali


def test_scaled_transition_costs(setup):
    _lang, _tree, tm = setup
    for ts, sls in [(1.0, 0.1), (1.0, 1.0), (0.5, 0.0), (0.0, 0.3)]:
        c = scaled_transition_costs(tm, ts, sls)
        for tid in range(1, tm.num_transition_ids + 1):
            f = np.float32
            lp = f(tm.get_transition_log_prob(tid))
            if ts == sls:
                want = lp * f(ts)
            elif tm.is_self_loop(tid):
                want = f(sls) * lp
            else:
                s = tm.transition_id_to_transition_state(tid)
                want = (f(sls) * f(tm.get_non_self_loop_log_prob(s))
                        + f(ts) * f(tm.get_transition_log_prob_ignoring_self_loops(tid)))
            assert c[tid] == -f(want), (ts, sls, tid)


def test_transition_probs_equal_compiled_in_scales(setup):
    """Kaldi's claim behind compile-train-graphs' zero scales: adding the
    transition probabilities at alignment time (AddTransitionProbs with
    transition 1.0, self-loop 0.1) gives the same alignment and score as a
    graph compiled with those scales."""
    lang, tree, tm = setup
    al = ForcedAligner(tm, tree, lang, AlignOptions(acoustic_scale=0.1))
    al0 = ForcedAligner(tm, tree, lang, AlignOptions(acoustic_scale=0.1, transition_scale=0.0,
                                                     self_loop_scale=0.0))
    scaled = TrainingGraphCompiler(lang, tree, tm, transition_scale=1.0, self_loop_scale=0.1)
    rng = np.random.default_rng(5)
    for words in (["x"], ["y", "x"], ["z", "y", "x", "z"]):
        g = al.compile(words)
        ali = random_alignment(al.compiler.compile(al.word_ids(words)), rng, 30)
        ll = oracle_loglikes(tm, ali, rng)
        a = al.align("u", g, ll)
        b = al0.align("u", scaled.compile(al.word_ids(words)), ll)
        assert a.ok and b.ok
        assert a.alignment.tolist() == b.alignment.tolist()
        # equal up to DeterminizeStar's weight quantisation (delta = 1/1024 when it
        # compares subsets) on the graph that was determinized with the weights;
        # the transition costs themselves are tens of nats here
        assert a.loglike == pytest.approx(b.loglike, abs=0.02)
        assert scaled_transition_costs(tm, 1.0, 0.1)[a.alignment].sum() > 2.0


def test_aligner_recovers_alignment_and_matches_kaldi(setup, caplog):
    lang, tree, tm = setup
    al = ForcedAligner(tm, tree, lang, AlignOptions(acoustic_scale=1.0))
    prons = int_prons(lang)
    sil = lang.optional_silence
    rng = np.random.default_rng(0)
    for k, words in enumerate((["x"], ["y", "z"], ["z", "z", "x", "y"])):
        g = al.compile(words)
        ali = random_alignment(al.compiler.compile(al.word_ids(words)), rng, 25 + 10 * k)
        ll = oracle_loglikes(tm, ali, rng, margin=8.0)
        r = al.align(f"utt{k}", g, ll)
        assert r.ok and r.error is None and r.num_frames == len(ali)
        assert r.alignment.dtype == np.int32
        # the oracle's pdfs are recovered, and the phones are a pronunciation
        assert np.array_equal(ali_to_pdf(tm, r.alignment), tm.tid2pdf[ali])
        phones = tuple(ali_to_phones(tm, r.alignment).tolist())
        assert phones in allowed_phone_seqs(lang, al.word_ids(words), prons, sil)
        assert r.words.tolist() == list(al.word_ids(words))
        # Kaldi's FasterDecoder on the same prepared graph
        kok, kretried, kbest = kaldi_align(g.fst, tm.tid2pdf, ll, al.opts)
        assert kok and not kretried and list(kbest.alignment) == r.alignment.tolist()
        like = -(np.float32(kbest.graph_cost) + np.float32(kbest.acoustic_cost))
        assert r.loglike == pytest.approx(float(like), rel=1e-5)


def test_too_few_frames_fails_and_is_skipped(setup, caplog, tmp_path):
    lang, tree, tm = setup
    al = ForcedAligner(tm, tree, lang)
    g = al.compile(["z", "y", "x"])
    need = min_frames_needed(g.fst)
    assert need == 5 * 3  # 5 phones of 3 emitting HMM states
    rng = np.random.default_rng(1)
    good_ali = random_alignment(al.compiler.compile(al.word_ids(["x"])), rng, 12)
    items = [("short", g, rng.normal(size=(need - 1, tm.num_pdfs)).astype(np.float32)),
             ("good", al.compile(["x"]), oracle_loglikes(tm, good_ali, rng)),
             ("empty", g, np.zeros((0, tm.num_pdfs), np.float32))]
    with caplog.at_level(logging.WARNING, logger="kbind.align"):
        res = al.align_many(items)
    assert [r.key for r in res] == ["short", "good", "empty"]
    assert res[0].alignment is None and "too few frames" in res[0].error
    assert res[0].retried  # Kaldi retries before giving up
    assert res[1].ok
    assert res[2].alignment is None and "zero-length" in res[2].error
    assert "short" in caplog.text and "empty" in caplog.text
    n = write_alignments(f"ark:{tmp_path}/ali.ark", res)
    assert n == 1
    assert [k for k, _ in read_table(f"ark:{tmp_path}/ali.ark", kind="int32_vector")] == ["good"]
    s = al.summary(res)
    assert (s["done"], s["failed"], s["frames"]) == (1, 2, 12)


def test_bad_input(setup):
    lang, tree, tm = setup
    al = ForcedAligner(tm, tree, lang)
    g = al.compile(["x"])
    ll = np.zeros((10, tm.num_pdfs), np.float32)
    bad = ll.copy()
    bad[7, 2] = np.nan
    with pytest.raises(ValueError, match=r"utt-nan.*frame 7, pdf 2 is NaN"):
        al.align("utt-nan", g, bad)
    bad[7, 2] = np.inf
    with pytest.raises(ValueError, match=r"frame 7.*\+inf"):
        al.align("utt-inf", g, bad)
    with pytest.raises(ValueError, match="columns"):
        al.align("u", g, ll[:, :-1])
    with pytest.raises(ValueError, match="frames, pdfs"):
        al.align("u", g, ll[0])
    # a graph whose input labels are not transition-ids
    f = g.fst
    il = f.arc_ilabel.copy()
    il[0] = tm.num_transition_ids + 3
    raw = Fst(f.num_states, f.start, f.final, f.arc_src, f.arc_dst, il, f.arc_olabel,
              f.arc_weight)
    with pytest.raises(ValueError, match="invalid symbol"):
        al.prepare(raw)
    with pytest.raises(ValueError, match="input label"):
        al.align("u", AlignGraph(raw, g.transition_scale, g.self_loop_scale, False), ll)
    # destination out of range, epsilon cycle (C checks)
    o = AlignOptions()
    t2p = np.array([0, 0], np.int32)
    x = torch.zeros(3, 1)
    bad_dst = Fst(2, 0, [INF, 0.0], [0], [1], [1], [0], [0.0])
    bad_dst.arc_dst[0] = 5
    with pytest.raises(Exception, match="destination 5 out of range"):
        search(bad_dst, t2p, x, o)
    cyc = Fst(2, 0, [INF, 0.0], [0, 1, 0], [1, 0, 1], [0, 0, 1], [0, 0, 0], [1.0, 1.0, 0.0])
    with pytest.raises(Exception, match="epsilon cycle"):
        search(cyc, t2p, x, o)
    with pytest.raises(Exception, match="weight -inf"):
        search(Fst(2, 0, [INF, 0.0], [0], [1], [1], [0], [-INF]), t2p, x, o)
    with pytest.raises(Exception, match="maps to pdf-id 3"):
        search(Fst(2, 0, [INF, 0.0], [0], [1], [1], [0], [0.0]), np.array([0, 3], np.int32),
               x, o)
    for kw in (dict(beam=0.0), dict(beam=10.0, retry_beam=5.0), dict(acoustic_scale=0.0),
               dict(min_active=30, max_active=20)):
        with pytest.raises(ValueError):
            ForcedAligner(tm, tree, lang, AlignOptions(**kw))
    with pytest.raises(ValueError, match="other scales"):
        ForcedAligner(tm, tree, lang, AlignOptions(self_loop_scale=1.0)).align("u", g, ll)
    with pytest.raises(KeyError):
        ForcedAligner(tm, tree, lang).lang.word_ids(["nope"], map_oov=False)


def test_search_refuses_short_arrays_and_wrapping_values():
    o = AlignOptions()
    t2p = np.array([0, 0], np.int32)
    x = torch.zeros(3, 1)
    g = Fst(3, 0, [INF, INF, 0.0], [0, 1, 1], [1, 1, 2], [1, 1, 1], [0, 0, 0], [0.0, 0.0, 0.0])
    assert search(g, t2p, x, o)[0]
    short = Fst(3, 0, g.final, g.arc_src, g.arc_dst, g.arc_ilabel, g.arc_olabel, g.arc_weight)
    short.arc_ilabel = short.arc_ilabel[:-1].copy()      # one entry short
    with pytest.raises(ValueError, match="arc_ilabel: the C core uses 3 entries, the tensor "
                                         "has 2"):
        search(short, t2p, x, o)
    wraps = Fst(3, 0, g.final, g.arc_src, g.arc_dst, g.arc_ilabel, g.arc_olabel, g.arc_weight)
    wraps.arc_dst = g.arc_dst.astype(np.int64) + np.array([0, 0, 2**32])  # 2**32 + 2 -> 2
    with pytest.raises(ValueError, match="arc_dst: entry 2 is 4294967298"):
        search(wraps, t2p, x, o)
    with pytest.raises(ValueError, match="tid2pdf: entry 1 is 4294967296"):
        search(g, np.array([0, 2**32]), x, o)


def test_search_returns_every_word_on_epsilon_arcs():
    """Words on input-epsilon arcs take no frame: a path with more words than
    frames (here 40 words, 1 frame) still comes back with all its words (the
    word buffer used to be too small: ok=True with words=None)."""
    n = 40
    src = list(range(n + 1))
    dst = list(range(1, n + 2))
    il = [0] * n + [1]
    ol = list(range(1, n + 1)) + [0]
    final = [INF] * (n + 1) + [0.0]
    g = Fst(n + 2, 0, final, src, dst, il, ol, [0.0] * (n + 1))
    ok, _retried, ali, words, _costs = search(g, np.array([0, 0], np.int32), torch.zeros(1, 1),
                                              AlignOptions())
    assert ok and ali.tolist() == [1]
    assert words is not None and words.tolist() == list(range(1, n + 1))


def test_threads_pickle_and_cache(setup):
    lang, tree, tm = setup
    al = ForcedAligner(tm, tree, lang, graph_cache=3)
    rng = np.random.default_rng(9)
    items = []
    for k in range(12):
        words = [["x"], ["y", "z"], ["z", "x", "y"]][k % 3]
        g = al.compile(words)
        ali = random_alignment(al.compiler.compile(al.word_ids(words)), rng, 40)
        items.append((f"u{k}", g, torch.from_numpy(oracle_loglikes(tm, ali, rng))))
    assert al.compile(["x"]) is items[0][1]  # cached
    one = al.align_many(items, num_threads=1)
    two = al.align_many(items, num_threads=2)
    for a, b in zip(one, two):
        assert a.key == b.key and np.array_equal(a.alignment, b.alignment)
        assert a.loglike == b.loglike
    al2 = pickle.loads(pickle.dumps(al))
    g2 = al2.compile(["y", "z"])
    assert g2.fst.equal(al.compile(["y", "z"]).fst)
    r = al2.align("u1", g2, items[1][2])
    assert np.array_equal(r.alignment, one[1].alignment)


def test_add_transition_probs_only_touches_transition_arcs(setup):
    lang, tree, tm = setup
    al = ForcedAligner(tm, tree, lang)
    raw = al.compiler.compile(al.word_ids(["y", "x"]))
    out = add_transition_probs(raw, tm, 1.0, 0.1)
    c = scaled_transition_costs(tm, 1.0, 0.1)
    eps = raw.arc_ilabel == 0
    assert np.array_equal(out.arc_weight[eps], raw.arc_weight[eps])
    k = ~eps
    assert np.array_equal(out.arc_weight[k],
                          (raw.arc_weight[k] + c[raw.arc_ilabel[k]]).astype(np.float32))
    assert np.array_equal(out.final, raw.final) and np.array_equal(out.arc_dst, raw.arc_dst)


@pytest.mark.parametrize("topology,pos", [("hmm", False), ("hmm", True), ("chain", False)])
def test_monophone_compiler_equals_training_graph_compiler(tmp_path, topology, pos):
    """The H-once compiler gives compile-train-graphs' graphs bit for bit."""
    from kbind.align import MonophoneGraphCompiler
    lang = toy_lang(tmp_path, topology, pos,
                    words=[("x", ("AA",)), ("y", ("B", "IY")), ("z", ("AA", "B")),
                           ("w", ("IY", "IY", "AA"))])
    tree, tm = models(lang, seed=2)
    ref = TrainingGraphCompiler(lang, tree, tm, transition_scale=0.0, self_loop_scale=0.0,
                                disambig_phones=lang.disambig_phones)
    fast = MonophoneGraphCompiler(lang, tree, tm)
    al = ForcedAligner(tm, tree, lang)
    assert isinstance(al.compiler, MonophoneGraphCompiler)
    for words in (["x"], ["y", "x"], ["z", "z", "w"], ["w", "y", "x", "z", "x"], ["<unk>"]):
        if words == ["<unk>"] and "<unk>" not in lang.words:
            continue
        ids = lang.word_ids(words)
        assert fast.compile(ids).equal(ref.compile(ids)), words
    biphone_tree, biphone_tm = models(lang, biphone=True)
    with pytest.raises(ValueError, match="context width 1"):
        MonophoneGraphCompiler(lang, biphone_tree, biphone_tm)
    assert isinstance(ForcedAligner(biphone_tm, biphone_tree, lang).compiler,
                      TrainingGraphCompiler)


def test_align_transcripts_directly(setup, caplog):
    lang, tree, tm = setup
    al = ForcedAligner(tm, tree, lang, graph_cache=4)
    rng = np.random.default_rng(11)
    ali = random_alignment(al.compiler.compile(al.word_ids(["y", "x"])), rng, 30)
    ll = oracle_loglikes(tm, ali, rng, margin=8.0)
    s_id = lang.words["<s>"]  # a word id with no pronunciation: no training graph
    with caplog.at_level(logging.WARNING, logger="kbind.align"):
        res = al.align_many([("words", ["y", "x"], ll), ("ids", al.word_ids(["y", "x"]), ll),
                             ("graph", al.compile(["y", "x"]), ll), ("nograph", [s_id], ll)],
                            num_threads=2)
    assert [r.ok for r in res] == [True, True, True, False]
    assert res[0].alignment.tolist() == res[1].alignment.tolist() == \
        res[2].alignment.tolist()
    assert np.array_equal(ali_to_pdf(tm, res[0].alignment), tm.tid2pdf[ali])
    assert "no training graph" in res[3].error and res[3].num_frames == 30
    assert "nograph" in caplog.text

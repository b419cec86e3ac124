"""The lattice-faster decoder (cbridge/decoder.c via kbind.decode.decoder):
checked against kaldi-decoder's FasterDecoder / LatticeSimpleDecoder and a
brute-force search over all paths of tiny graphs."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from kbind.compact_fst import CompactFst
from kbind.decode.decoder import DecodeFailure, DecoderOptions, LatticeDecoder, write_lattices
from kbind.decode.lattice_ops import determinize_lattice_pruned
from kbind.io import read_table
from kbind.io.fst import Fst
from kbind.io.lattice import CompactLattice, Lattice


INF = float("inf")
WIDE = dict(beam=1e4, lattice_beam=1e4, max_active=2**31 - 1, min_active=0)


def rand_graph(rng, ns=20, num_tids=12, num_words=5, arcs_per=3, eps_p=0.2, word_p=0.3,
               final_p=0.3):
    """Random HCLG-like FST: emitting arcs anywhere, epsilon arcs only to
    higher states (no epsilon cycles), words on some arcs."""
    src, dst, il, ol, w = [], [], [], [], []
    for s in range(ns):
        for _ in range(int(rng.integers(1, arcs_per + 1))):
            if rng.random() < eps_p and s < ns - 1:
                d, i = int(rng.integers(s + 1, ns)), 0
            else:
                d, i = int(rng.integers(0, ns)), int(rng.integers(1, num_tids + 1))
            src.append(s)
            dst.append(d)
            il.append(i)
            ol.append(int(rng.integers(1, num_words + 1)) if rng.random() < word_p else 0)
            w.append(float(rng.uniform(0, 3)))
    final = np.where(rng.random(ns) < final_p, rng.uniform(0, 2, ns), INF).astype(np.float32)
    final[ns - 1] = 0.5
    return Fst(ns, 0, final, src, dst, il, ol, w)


def rand_case(seed, ns=20, num_tids=12, num_pdfs=5, T=None, **kw):
    rng = np.random.default_rng(seed)
    g = rand_graph(rng, ns=ns, num_tids=num_tids, **kw)
    tid2pdf = np.concatenate([[0], rng.integers(0, num_pdfs, num_tids)]).astype(np.int32)
    T = int(rng.integers(1, 15)) if T is None else T
    ll = torch.tensor(rng.normal(size=(T, num_pdfs)) * 3, dtype=torch.float32)
    return g, tid2pdf, ll


def kaldi_best(g, tid2pdf, ll, scale, **opts):
    """Best path of kaldi-decoder's FasterDecoder: DecodableCtc gives
    LogLikelihood(t, i) = m[t, i - 1], so column tid-1 holds
    scale * loglike[t, tid2pdf[tid]]."""
    import kaldi_decoder as kd
    m = (np.float32(scale) * ll.numpy()[:, tid2pdf[1:]]).astype(np.float32)
    kfst = g.to_kaldifst()  # kept alive: the decoder holds a reference only
    fd = kd.FasterDecoder(kfst, kd.FasterDecoderOptions(**opts))
    decodable = kd.DecodableCtc(m)
    fd.decode(decodable)
    ok, best = fd.get_best_path()
    if not ok:
        return None
    return Lattice.from_kaldifst(best).best_path()


def all_paths(g, tid2pdf, ll, scale):
    """Brute force: every path of the graph with exactly T emitting arcs
    (then a final state, or -- if no such path -- any state), as
    (tids, words, graph_cost, acoustic_cost_unscaled, total_scaled)."""
    T = ll.shape[0]
    lln = ll.numpy().astype(np.float64)
    out = []

    def rec(s, t, tids, words, gc, ac):
        if t == T:
            out.append((s, tuple(tids), tuple(words), gc, ac))
        for d, i, o, w in g.arcs(s):
            if i == 0:
                rec(d, t, tids, words + ([o] if o else []), gc + w, ac)
            elif t < T:
                rec(d, t + 1, tids + [i], words + ([o] if o else []), gc + w,
                    ac - lln[t, tid2pdf[i]])

    rec(g.start, 0, [], [], 0.0, 0.0)
    fin = [(tids, words, gc + float(g.final[s]), ac) for s, tids, words, gc, ac in out
           if np.isfinite(g.final[s])]
    if not fin:
        fin = [(tids, words, gc, ac) for s, tids, words, gc, ac in out]
    return [(tids, words, gc, ac, gc + scale * ac) for tids, words, gc, ac in fin]


def lattice_paths(lat, scale):
    """All paths of an acyclic (Compact)Lattice: (tids, words, graph,
    acoustic, graph + scale * acoustic)."""
    res = []
    compact = isinstance(lat, CompactLattice)

    def rec(s, tids, words, gc, ac):
        f = lat.final[s]
        if not (f[0] == INF and f[1] == INF):
            extra = lat.final_string(s) if compact else []
            res.append((tuple(tids + extra), tuple(words), gc + float(f[0]), ac + float(f[1])))
        for k in range(lat.state_offsets[s], lat.state_offsets[s + 1]):
            d, i, o = int(lat.arc_dst[k]), int(lat.arc_ilabel[k]), int(lat.arc_olabel[k])
            w = lat.arc_weight[k]
            if compact:
                rec(d, tids + lat.arc_string(k), words + ([o] if o else []),
                    gc + float(w[0]), ac + float(w[1]))
            else:
                rec(d, tids + ([i] if i else []), words + ([o] if o else []),
                    gc + float(w[0]), ac + float(w[1]))

    if lat.start >= 0:
        rec(lat.start, [], [], 0.0, 0.0)
    return [(t, w, g, a, g + scale * a) for t, w, g, a in res]


# -- best path against kaldi-decoder and brute force ----------------------------------------

@pytest.mark.parametrize("seed", range(40))
def test_best_path_matches_kaldi_faster_decoder(seed):
    g, tid2pdf, ll = rand_case(seed)
    scale = 0.1
    dec = LatticeDecoder(g, tid2pdf, DecoderOptions(acoustic_scale=scale, allow_partial=True,
                                                    determinize_lattice=False, **WIDE))
    r = dec.decode(ll)
    kb = kaldi_best(g, tid2pdf, ll, scale, beam=1e4, max_active=2**31 - 1, min_active=0)
    assert kb is not None
    assert r.words == kb.words
    assert r.alignment == kb.alignment
    assert r.cost == pytest.approx(kb.graph_cost + kb.acoustic_cost, rel=1e-5, abs=1e-4)
    assert r.graph_cost == pytest.approx(kb.graph_cost, rel=1e-5, abs=1e-4)
    # acoustic cost unscaled == -sum of the alignment's loglikes
    lln = ll.numpy().astype(np.float64)
    ac = -sum(lln[t, tid2pdf[i]] for t, i in enumerate(r.alignment))
    assert r.acoustic_cost == pytest.approx(ac, rel=1e-5, abs=1e-3)
    assert r.num_frames == ll.shape[0] == len(r.alignment)


@pytest.mark.parametrize("seed", range(8))
def test_beam_pruned_search_matches_kaldi_faster_decoder(seed):
    """With the beam pruning hard (adaptive cutoffs in ProcessEmitting, best
    token first, tokens visited in Kaldi's HashList order) the best path is
    FasterDecoder's, although it is not the exact best."""
    g, tid2pdf, ll = rand_case(100 + seed, ns=300, num_tids=60, num_pdfs=20, T=60,
                               arcs_per=6, final_p=0.5)
    dec = LatticeDecoder(g, tid2pdf, DecoderOptions(
        lattice_beam=4.0, acoustic_scale=0.5, allow_partial=True, determinize_lattice=False,
        beam=6.0, max_active=2**31 - 1, min_active=0))
    r = dec.decode(ll)
    kb = kaldi_best(g, tid2pdf, ll, 0.5, beam=6.0, max_active=2**31 - 1, min_active=0)
    assert (r.words, r.alignment) == (kb.words, kb.alignment)
    assert r.cost == pytest.approx(kb.graph_cost + kb.acoustic_cost, rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("seed", range(4))
def test_max_active_pruning(seed):
    """max_active / min_active cut the search (FasterDecoder, whose tokens
    hold double costs and which prunes with '<', can then differ): the result
    is a real path no better than the exact best, and a wide max_active gives
    the exact best."""
    g, tid2pdf, ll = rand_case(100 + seed, ns=300, num_tids=60, num_pdfs=20, T=60,
                               arcs_per=6, final_p=0.5)
    exact = LatticeDecoder(g, tid2pdf, DecoderOptions(
        acoustic_scale=0.5, allow_partial=True, determinize_lattice=False, **WIDE)).decode(ll)
    r = LatticeDecoder(g, tid2pdf, DecoderOptions(
        acoustic_scale=0.5, allow_partial=True, determinize_lattice=False, beam=20.0,
        max_active=30, min_active=5, lattice_beam=4.0)).decode(ll)
    assert r.cost >= exact.cost - 1e-4
    lln = ll.numpy().astype(np.float64)
    ac = -sum(lln[t, tid2pdf[i]] for t, i in enumerate(r.alignment))
    assert r.acoustic_cost == pytest.approx(ac, rel=1e-5, abs=1e-3)
    r2 = LatticeDecoder(g, tid2pdf, DecoderOptions(
        acoustic_scale=0.5, allow_partial=True, determinize_lattice=False, beam=1e4,
        max_active=100000, min_active=5, lattice_beam=4.0)).decode(ll)
    assert r2.cost == pytest.approx(exact.cost, abs=1e-4)


@pytest.mark.parametrize("seed", range(25))
def test_best_path_matches_brute_force(seed):
    g, tid2pdf, ll = rand_case(1000 + seed, ns=7, num_tids=6, num_pdfs=3,
                               T=int(np.random.default_rng(seed).integers(1, 6)), arcs_per=2)
    scale = 0.3
    paths = all_paths(g, tid2pdf, ll, scale)
    assert paths
    best = min(p[4] for p in paths)
    dec = LatticeDecoder(g, tid2pdf, DecoderOptions(acoustic_scale=scale, allow_partial=True,
                                                    determinize_lattice=False, **WIDE))
    r = dec.decode(ll)
    assert r.cost == pytest.approx(best, rel=1e-5, abs=1e-4)
    # the returned (alignment, words) is one of the optimal paths
    opt = {(p[0], p[1]) for p in paths if p[4] <= best + 1e-4}
    assert (tuple(r.alignment), tuple(r.words)) in opt


# -- raw lattice -------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(20))
def test_raw_lattice_paths_and_lattice_beam(seed):
    """Raw lattice: topologically numbered, contains the best path, every
    path's costs are those of a graph path (acoustic cost unscaled), and
    lattice-beam pruning keeps exactly the arcs on paths within the beam."""
    rng = np.random.default_rng(seed)
    g, tid2pdf, ll = rand_case(2000 + seed, ns=7, num_tids=6, num_pdfs=3,
                               T=int(rng.integers(2, 6)), arcs_per=2)
    scale, lb = 0.5, float(rng.uniform(0.5, 4.0))
    paths = all_paths(g, tid2pdf, ll, scale)
    best = min(p[4] for p in paths)
    dec = LatticeDecoder(g, tid2pdf, DecoderOptions(
        acoustic_scale=scale, allow_partial=True, determinize_lattice=False,
        beam=1e4, lattice_beam=lb, max_active=2**31 - 1, min_active=0, prune_interval=2))
    r = dec.decode(ll)
    lat = r.lattice
    assert lat.start == 0
    assert np.all(lat.arc_dst > lat.arc_src) or np.all(
        (lat.arc_dst > lat.arc_src) | (lat.arc_ilabel == 0))
    assert np.all(lat.arc_dst >= lat.arc_src)
    lp = lattice_paths(lat, scale)
    # every lattice path is a graph path with the same costs
    by_key = {}
    for tids, words, gc, ac, tot in paths:
        by_key.setdefault((tids, words), []).append((gc, ac))
    for tids, words, gc, ac, tot in lp:
        cands = by_key.get((tids, words), [])
        assert any(abs(gc - g2) < 1e-3 and abs(ac - a2) < 1e-3 * max(1, abs(a2))
                   for g2, a2 in cands), (tids, words, gc, ac, cands)
    # the best path is in the lattice
    assert min(p[4] for p in lp) == pytest.approx(best, abs=1e-4)
    assert (tuple(r.alignment), tuple(r.words)) in {(p[0], p[1]) for p in lp}
    # within the lattice beam: every such graph path is a lattice path
    lat_keys = {(p[0], p[1], round(p[4], 3)) for p in lp}
    for tids, words, gc, ac, tot in paths:
        if tot <= best + lb - 1e-3:
            assert (tids, words, round(tot, 3)) in lat_keys
    # and no arc is only on paths beyond the beam
    from kbind.decode.lattice_ops import lattice_forward_backward
    scaled = lat.scale_lattice(1.0, scale)
    alpha, beta, b = lattice_forward_backward(scaled)
    w = scaled.arc_weight.astype(np.float64)
    through = alpha[lat.arc_src] + w[:, 0] + w[:, 1] + beta[lat.arc_dst]
    assert np.all(through <= best + lb + 1e-3)


def test_raw_lattice_acoustic_costs_are_unscaled_loglikes():
    g, tid2pdf, ll = rand_case(7, T=8)
    scale = 0.1
    dec = LatticeDecoder(g, tid2pdf, DecoderOptions(acoustic_scale=scale, allow_partial=True,
                                                    determinize_lattice=False, **WIDE))
    lat = dec.decode(ll).lattice
    # frame of each state = number of emitting arcs from the start
    frame = np.full(lat.num_states, -1)
    frame[0] = 0
    for k in range(lat.num_arcs):  # arcs grouped by (topologically ordered) source
        s, d = lat.arc_src[k], lat.arc_dst[k]
        frame[d] = frame[s] + (1 if lat.arc_ilabel[k] else 0)
    lln = ll.numpy()
    for k in range(lat.num_arcs):
        i = lat.arc_ilabel[k]
        if i:
            assert lat.arc_weight[k, 1] == pytest.approx(
                -lln[frame[lat.arc_src[k]], tid2pdf[i]], rel=1e-5, abs=1e-5)
        else:
            assert lat.arc_weight[k, 1] == 0


@pytest.mark.parametrize("seed", range(4))
def test_raw_lattice_matches_kaldi_lattice_simple_decoder(seed):
    """Same word sequences with the same best costs after determinizing our
    raw lattice and LatticeSimpleDecoder's."""
    g, tid2pdf, ll = rand_case(3000 + seed, ns=12, num_tids=8, num_pdfs=4, T=6)
    scale, lb = 0.5, 3.0
    dec = LatticeDecoder(g, tid2pdf, DecoderOptions(
        acoustic_scale=scale, allow_partial=True, determinize_lattice=False, beam=1e4,
        lattice_beam=lb, max_active=2**31 - 1, min_active=0))
    ours = dec.decode_raw(ll)[-1]
    import kaldi_decoder as kd
    m = (np.float32(scale) * ll.numpy()[:, tid2pdf[1:]]).astype(np.float32)
    kfst = g.to_kaldifst()
    ks = kd.LatticeSimpleDecoder(kfst, kd.LatticeSimpleDecoderConfig(beam=1e4, lattice_beam=lb))
    decodable = kd.DecodableCtc(m)
    ks.decode(decodable)
    ok, klat = ks.get_raw_lattice()
    assert ok
    theirs = Lattice.from_kaldifst(klat)

    def word_costs(lat):
        c = determinize_lattice_pruned(lat, lb)
        return {w: round(tot, 3) for _, w, _, _, tot in lattice_paths(c, 1.0)}

    assert word_costs(ours) == word_costs(theirs)


# -- determinized lattice ----------------------------------------------------------------

@pytest.mark.parametrize("seed", range(20))
def test_compact_lattice_brute_force(seed):
    """Each word sequence within lattice_beam of the best appears exactly
    once, with its best cost and an optimal alignment; every arc is on a
    path within the beam (sequences beyond it can survive where arcs of
    good paths cross, as with Kaldi's arc-level pruning)."""
    rng = np.random.default_rng(seed)
    g, tid2pdf, ll = rand_case(4000 + seed, ns=8, num_tids=6, num_pdfs=3,
                               T=int(rng.integers(2, 6)), arcs_per=3, word_p=0.5)
    scale, lb = 0.5, float(rng.uniform(0.5, 5.0))
    paths = all_paths(g, tid2pdf, ll, scale)
    best = min(p[4] for p in paths)
    dec = LatticeDecoder(g, tid2pdf, DecoderOptions(
        acoustic_scale=scale, allow_partial=True, beam=1e4, lattice_beam=lb,
        max_active=2**31 - 1, min_active=0))
    r = dec.decode(ll)
    clat = r.compact_lattice
    cp = lattice_paths(clat, scale)
    words = [p[1] for p in cp]
    assert len(words) == len(set(words)), "a word sequence appears twice"
    best_by_words = {}
    for tids, w, gc, ac, tot in paths:
        if w not in best_by_words or tot < best_by_words[w]:
            best_by_words[w] = tot
    got = {p[1]: p for p in cp}
    for w, tot in best_by_words.items():
        if tot <= best + lb - 1e-3:
            assert w in got
    graph_paths = {}
    for p in paths:
        graph_paths[(p[0], p[1])] = min(p[4], graph_paths.get((p[0], p[1]), INF))
    for tids, w, gc, ac, tot in cp:
        assert len(tids) == ll.shape[0]
        assert graph_paths.get((tids, w), INF) == pytest.approx(tot, abs=1e-3)
        if best_by_words[w] <= best + lb - 1e-3:
            assert tot == pytest.approx(best_by_words[w], abs=1e-3)
        else:  # beyond the beam: survives only through crossing good arcs
            assert tot >= best_by_words[w] - 1e-3
    # Kaldi's (arc-level) lattice-beam pruning: every arc and final weight
    # lies on a path within the beam
    from kbind.decode.lattice_ops import lattice_forward_backward
    scaled = clat.scale_lattice(1.0, scale)
    alpha, beta, b = lattice_forward_backward(scaled)
    w = scaled.arc_weight.astype(np.float64)
    assert np.all(alpha[clat.arc_src] + w[:, 0] + w[:, 1] + beta[clat.arc_dst]
                  <= best + lb + 1e-3)
    # the compact lattice's best path is the decoder's
    bp = clat.scale_lattice(1.0, scale).best_path()
    assert bp.words == r.words
    assert bp.graph_cost + bp.acoustic_cost == pytest.approx(r.cost, abs=1e-3)


# -- options, errors, API ----------------------------------------------------------------

def test_compact_fst_and_transition_model_like_inputs():
    g, tid2pdf, ll = rand_case(11, T=10)

    class TM:
        pass

    tm = TM()
    tm.tid2pdf = tid2pdf
    o = DecoderOptions(allow_partial=True)
    r1 = LatticeDecoder(g, tid2pdf, o).decode(ll)
    r2 = LatticeDecoder(CompactFst.from_fst(g), tm, o).decode(ll)
    assert (r1.words, r1.alignment, r1.cost) == (r2.words, r2.alignment, r2.cost)
    assert r1.lattice.equal(r2.lattice)


def test_bad_inputs_raise():
    g, tid2pdf, ll = rand_case(12, T=5)
    dec = LatticeDecoder(g, tid2pdf, DecoderOptions(allow_partial=True))
    bad = ll.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="frame 3, pdf 1 is NaN"):
        dec.decode(bad)                  # bad input, not a decode failure
    bad[3, 1] = float("inf")
    with pytest.raises(ValueError, match=r"frame 3, pdf 1 is \+inf"):
        dec.decode(bad)
    with pytest.raises(ValueError, match="columns"):
        dec.decode(ll[:, :2])
    with pytest.raises(ValueError, match=r"\(T, D\)"):
        dec.decode(ll[0])
    with pytest.raises(DecodeFailure, match="no frames"):
        dec.decode(ll[:0])
    # a tid beyond tid2pdf
    with pytest.raises(ValueError, match="transition-id"):
        LatticeDecoder(g, tid2pdf[:5], DecoderOptions())
    # an epsilon cycle
    cyc = Fst(2, 0, [INF, 0.0], [0, 1, 0], [1, 0, 1], [0, 0, 1], [0, 0, 0], [1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="epsilon cycle"):
        LatticeDecoder(cyc, tid2pdf, DecoderOptions())
    with pytest.raises(ValueError):
        DecoderOptions(beam=-1).check()


def test_no_final_state_reached():
    # a graph whose only final state needs at least 3 frames
    g = Fst(4, 0, [INF, INF, INF, 0.0], [0, 1, 2, 0], [1, 2, 3, 0], [1, 1, 1, 1],
            [0, 0, 0, 0], [0.0, 0.0, 0.0, 0.0])
    tid2pdf = np.array([0, 0], np.int32)
    ll = torch.zeros(2, 1)
    dec = LatticeDecoder(g, tid2pdf, DecoderOptions())
    with pytest.raises(DecodeFailure, match="final"):
        dec.decode(ll)
    r = LatticeDecoder(g, tid2pdf, DecoderOptions(allow_partial=True)).decode(ll)
    assert not r.reached_final and r.alignment == [1, 1]
    assert dec.decode(torch.zeros(3, 1)).reached_final


def test_decode_batch_order_and_threads():
    g, tid2pdf, _ = rand_case(13, ns=200, num_tids=40, num_pdfs=10, arcs_per=5, final_p=0.5)
    rng = np.random.default_rng(5)
    lls = [torch.tensor(rng.normal(size=(int(rng.integers(20, 60)), 10)), dtype=torch.float32)
           for _ in range(8)]
    dec = LatticeDecoder(g, tid2pdf, DecoderOptions(allow_partial=True, beam=8.0,
                                                    lattice_beam=3.0))
    serial = [dec.decode(x) for x in lls]
    par = dec.decode_batch(lls, num_workers=3)
    for a, b in zip(serial, par):
        assert (a.words, a.alignment, a.cost) == (b.words, b.alignment, b.cost)
        assert a.lattice.equal(b.lattice)
        assert a.compact_lattice.equal(b.compact_lattice)
    bad = lls[:2] + [lls[0][:0]]
    out = dec.decode_batch(bad, num_workers=2, on_error="none")
    assert out[2] is None and out[0] is not None
    with pytest.raises(DecodeFailure, match="utterance 2: zero-length utterance"):
        dec.decode_batch(bad, num_workers=2)


@pytest.mark.parametrize("num_workers", [1, 3])
def test_decode_batch_keys_and_bad_input(num_workers):
    """(key, loglikes) pairs or a dict give the same results; a diverged
    model's NaN log-likelihoods raise ValueError naming the utterance even
    with on_error="none" (only decode failures become None)."""
    g, tid2pdf, _ = rand_case(15, ns=60, num_tids=20, num_pdfs=6, final_p=0.5)
    rng = np.random.default_rng(8)
    lls = [torch.tensor(rng.normal(size=(int(rng.integers(5, 20)), 6)), dtype=torch.float32)
           for _ in range(4)]
    keys = ["a", "b", "c", "d"]
    dec = LatticeDecoder(g, tid2pdf, DecoderOptions(allow_partial=True, beam=8.0,
                                                    lattice_beam=3.0))
    plain = dec.decode_batch(lls, num_workers=num_workers)
    pairs = dec.decode_batch(list(zip(keys, lls)), num_workers=num_workers)
    mapping = dec.decode_batch(dict(zip(keys, lls)), num_workers=num_workers)
    for a, b, c in zip(plain, pairs, mapping):
        assert (a.words, a.alignment, a.cost) == (b.words, b.alignment, b.cost)
        assert (a.words, a.alignment, a.cost) == (c.words, c.alignment, c.cost)
    diverged = [x.clone() for x in lls]
    diverged[2][1, 4] = float("nan")
    for on_error in ("raise", "none"):
        with pytest.raises(ValueError, match=r"utterance 2 \(c\): .*frame 1, pdf 4 is NaN"):
            dec.decode_batch(dict(zip(keys, diverged)), num_workers=num_workers,
                             on_error=on_error)
        with pytest.raises(ValueError, match=r"utterance 2: .*frame 1, pdf 4 is NaN"):
            dec.decode_batch(diverged, num_workers=num_workers, on_error=on_error)
    with pytest.raises(ValueError, match=r"utterance 1 \(b\): loglikes have 2 columns"):
        dec.decode_batch([("a", lls[0]), ("b", lls[1][:, :2])], num_workers=num_workers)


def _slow_decoder() -> LatticeDecoder:
    """A decoder whose C search is slow enough to watch from another thread (a
    big random graph, a wide beam, no determinization; 50 pdfs)."""
    g, tid2pdf, _ = rand_case(14, ns=2000, num_tids=200, num_pdfs=50, arcs_per=8,
                              final_p=0.5)
    return LatticeDecoder(g, tid2pdf, DecoderOptions(allow_partial=True, beam=30.0,
                                                     lattice_beam=0.5, max_active=100000,
                                                     determinize_lattice=False))


def test_c_search_releases_the_gil():
    """While one thread is inside the C search, another runs Python code."""
    ll = torch.randn(1500, 50)
    dec = _slow_decoder()
    for _ in range(8):      # make the search long enough to observe (>= 50 ms) here
        t0 = time.perf_counter()
        dec.decode_raw(ll)
        if time.perf_counter() - t0 >= 0.05:
            break
        ll = torch.cat([ll, ll])
    ticks = 0
    done = threading.Event()

    def work():
        dec.decode_raw(ll)
        done.set()

    th = threading.Thread(target=work)
    th.start()
    time.sleep(0.002)
    t0 = time.perf_counter()
    while not done.is_set():
        ticks += 1
    th.join()
    # with the GIL held for the whole call the loop would hardly run
    assert ticks > 1000


def test_write_and_read_lattices(tmp_path):
    g, tid2pdf, _ = rand_case(15, ns=50, num_tids=20, num_pdfs=6, arcs_per=4, final_p=0.5)
    rng = np.random.default_rng(1)
    lls = [torch.tensor(rng.normal(size=(12, 6)), dtype=torch.float32) for _ in range(3)]
    dec = LatticeDecoder(g, tid2pdf, DecoderOptions(allow_partial=True))
    res = {f"utt{i}": r for i, r in enumerate(dec.decode_batch(lls, num_workers=2))}
    write_lattices(f"ark:{tmp_path}/lat.ark", res)
    back = dict(read_table(f"ark:{tmp_path}/lat.ark", "compact_lattice"))
    assert list(back) == list(res)
    for k, r in res.items():
        assert back[k].equal(r.compact_lattice)
    raw = tmp_path / "lat.ark"
    assert raw.read_bytes()[5:11] == b"\xd6\xfd\xb2~\x06\x00"  # "utt0 " + OpenFst magic
    assert b"compactlattice44" in raw.read_bytes()[:64]
    write_lattices(f"ark,t:{tmp_path}/raw.txt", res, compact=False)
    back = dict(read_table(f"ark:{tmp_path}/raw.txt", "lattice"))
    for k, r in res.items():
        a, b = back[k], r.lattice
        assert a.num_states == b.num_states and a.num_arcs == b.num_arcs
        np.testing.assert_allclose(a.arc_weight, b.arc_weight, rtol=1e-5, atol=1e-4)
        bp = a.scale_lattice(1.0, 0.1).best_path()
        assert bp.words == r.words and bp.alignment == r.alignment


def test_close_waits_for_a_search_running_in_another_thread():
    """close() while another thread is inside the C search must not free the
    graph under it: the search finishes, later searches raise RuntimeError."""
    ll = torch.randn(6000, 50)
    dec = _slow_decoder()
    expected = dec.decode_raw(ll)
    out = {}
    started = threading.Event()

    def work():
        started.set()
        out["result"] = dec.decode_raw(ll)

    th = threading.Thread(target=work)
    th.start()
    started.wait()
    while dec._in_flight == 0 and th.is_alive():
        time.sleep(0.0005)
    dec.close()
    th.join()
    assert out["result"][:6] == expected[:6]
    with pytest.raises(RuntimeError, match="closed"):
        dec.decode_raw(ll)

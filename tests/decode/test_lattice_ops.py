"""Lattice pruning and determinization (kbind.decode.lattice_ops) on small
hand-made and random lattices, checked by enumerating paths; the C
determinizer (cbridge/latdet.c) against the pure-Python reference, the beam
guarantee by brute force, phone pass, limits / retry, malformed input, and a
stress lattice from the decoder."""

from __future__ import annotations

import time

import numpy as np
import pytest

from kbind.decode.lattice_ops import (DeterminizeInfo, determinize_lattice,
                                      determinize_lattice_pruned,
                                      determinize_lattice_pruned_reference,
                                      determinize_lattice_reference, lattice_forward_backward,
                                      phone_start_map, prune_lattice)
from kbind.io.lattice import CompactLattice, Lattice


INF = float("inf")


def paths(lat):
    out = []
    compact = isinstance(lat, CompactLattice)

    def rec(s, tids, words, g, a):
        f = lat.final[s]
        if not (f[0] == INF and f[1] == INF):
            out.append((tuple(tids + (lat.final_string(s) if compact else [])), tuple(words),
                        g + float(f[0]), a + float(f[1])))
        for k in range(lat.state_offsets[s], lat.state_offsets[s + 1]):
            d, i, o = int(lat.arc_dst[k]), int(lat.arc_ilabel[k]), int(lat.arc_olabel[k])
            w = lat.arc_weight[k]
            t = lat.arc_string(k) if compact else ([i] if i else [])
            rec(d, tids + t, words + ([o] if o else []), g + float(w[0]), a + float(w[1]))

    if lat.start >= 0:
        rec(lat.start, [], [], 0.0, 0.0)
    return out


def random_lattice(rng, ns=8, num_words=3, eps_word_p=0.5):
    """Acyclic state-level lattice: arcs only to higher states."""
    src, dst, il, ol, w = [], [], [], [], []
    for s in range(ns - 1):
        for _ in range(int(rng.integers(1, 4))):
            d = int(rng.integers(s + 1, ns))
            src.append(s)
            dst.append(d)
            il.append(int(rng.integers(1, 5)))
            ol.append(0 if rng.random() < eps_word_p else int(rng.integers(1, num_words + 1)))
            w.append((float(rng.uniform(0, 2)), float(rng.uniform(-1, 3))))
    final = np.full((ns, 2), INF, np.float32)
    final[ns - 1] = (0.5, 0.0)
    if rng.random() < 0.5:
        final[ns // 2] = (1.0, 0.25)
    return Lattice(ns, 0, final, src, dst, il, ol, w)


def test_determinize_hand_made():
    # two alignments of word 7 (costs 3 and 2), one of word 8
    lat = Lattice(4, 0, [[INF, INF], [INF, INF], [INF, INF], [0, 0]],
                  [0, 0, 0, 1, 2], [1, 2, 2, 3, 3], [1, 2, 5, 3, 4], [7, 7, 8, 0, 0],
                  [[1, 1], [0.5, 0.5], [4, 0], [1, 0], [0.5, 0.5]])
    c = determinize_lattice(lat)
    got = {w: (t, g + a) for t, w, g, a in paths(c)}
    assert got == {(7,): ((2, 4), 2.0), (8,): ((5, 4), 5.0)}
    # deterministic on words
    for s in range(c.num_states):
        labels = [c.arc_ilabel[k] for k in range(c.state_offsets[s], c.state_offsets[s + 1])]
        assert len(labels) == len(set(labels))


@pytest.mark.parametrize("seed", range(30))
def test_determinize_random(seed):
    rng = np.random.default_rng(seed)
    lat = random_lattice(rng)
    best = {}
    for t, w, g, a in paths(lat):
        if w not in best or g + a < best[w][0] - 1e-9:
            best[w] = (g + a, t)
    c = determinize_lattice(lat)
    cp = paths(c)
    assert sorted(p[1] for p in cp) == sorted(best)
    all_by = {}
    for t, w, g, a in paths(lat):
        all_by.setdefault((t, w), []).append(g + a)
    for t, w, g, a in cp:
        assert g + a == pytest.approx(best[w][0], abs=1e-4)
        assert min(all_by[(t, w)]) == pytest.approx(g + a, abs=1e-4)  # a real best alignment
    for s in range(c.num_states):
        labels = [c.arc_ilabel[k] for k in range(c.state_offsets[s], c.state_offsets[s + 1])]
        assert len(labels) == len(set(labels))


@pytest.mark.parametrize("seed", range(20))
def test_prune_keeps_exactly_arcs_on_paths_within_beam(seed):
    rng = np.random.default_rng(100 + seed)
    lat = random_lattice(rng, ns=9)
    beam = float(rng.uniform(0.2, 3.0))
    allp = paths(lat)
    best = min(g + a for _, _, g, a in allp)
    p = prune_lattice(lat, beam)
    kept = paths(p)
    within = sorted((t, w, round(g + a, 4)) for t, w, g, a in allp if g + a <= best + beam - 1e-4)
    got = {(t, w, round(g + a, 4)) for t, w, g, a in kept}
    assert all(x in got for x in within)
    alpha, beta, b = lattice_forward_backward(p)
    assert b == pytest.approx(best, abs=1e-4)
    wt = p.arc_weight.astype(np.float64)
    assert np.all(alpha[p.arc_src] + wt[:, 0] + wt[:, 1] + beta[p.arc_dst] <= best + beam + 1e-4)


@pytest.mark.parametrize("seed", range(15))
def test_determinize_pruned(seed):
    rng = np.random.default_rng(200 + seed)
    lat = random_lattice(rng, ns=9)
    beam = float(rng.uniform(0.2, 3.0))
    best = {}
    for t, w, g, a in paths(lat):
        best[w] = min(best.get(w, INF), g + a)
    b = min(best.values())
    c = determinize_lattice_pruned(lat, beam)
    got = {w: g + a for t, w, g, a in paths(c)}
    for w, v in best.items():
        if v <= b + beam - 1e-4:
            assert got[w] == pytest.approx(v, abs=1e-4)


def test_empty_and_cyclic():
    assert determinize_lattice_pruned(Lattice(0, -1), 5.0).num_states == 0
    cyc = Lattice(2, 0, [[INF, INF], [0, 0]], [0, 1], [1, 0], [1, 1], [0, 0],
                  [[1, 0], [1, 0]])
    with pytest.raises(ValueError, match="cyclic"):
        determinize_lattice(cyc)


# ---------------------------------------------------------------------------
# the C determinizer


def best_by_words(lat):
    """{word sequence: (best total cost, set of best alignments)}"""
    best = {}
    for t, w, g, a in paths(lat):
        c = g + a
        if w not in best or c < best[w][0] - 1e-9:
            best[w] = (c, {t})
        elif abs(c - best[w][0]) <= 1e-9:
            best[w][1].add(t)
    return best


def check_compact(c, lat, beam):
    """Kaldi's guarantees of a pruned determinized lattice, by brute force:
    start 0, topologically sorted, no epsilon arcs, deterministic on words;
    every word sequence within beam once with its best cost and a best
    alignment; nothing that is not a path of the input."""
    best = best_by_words(lat)
    b = min((v[0] for v in best.values()), default=INF)
    if c.num_states:
        assert c.start == 0
        assert np.all(c.arc_dst > c.arc_src)
        assert np.all(c.arc_ilabel > 0) and np.all(c.arc_ilabel == c.arc_olabel)
    for s in range(c.num_states):
        labels = c.arc_ilabel[c.state_offsets[s]:c.state_offsets[s + 1]].tolist()
        assert len(labels) == len(set(labels))
    got = {}
    all_by = {}
    for t, w, g, a in paths(lat):
        all_by.setdefault((t, w), []).append(g + a)
    for t, w, g, a in paths(c):
        assert w not in got, f"word sequence {w} appears twice"
        got[w] = g + a
        assert w in best
        assert g + a == pytest.approx(best[w][0], abs=1e-4)
        assert (t, w) in all_by and min(all_by[(t, w)]) == pytest.approx(g + a, abs=1e-4)
    for w, (v, _) in best.items():
        if v <= b + beam - 1e-4:
            assert w in got, f"word sequence {w} (cost {v}, best {b}) missing"
    return got


@pytest.mark.parametrize("seed", range(40))
def test_c_equals_reference_unpruned(seed):
    rng = np.random.default_rng(500 + seed)
    lat = random_lattice(rng, ns=int(rng.integers(3, 10)), num_words=int(rng.integers(1, 4)))
    ref = determinize_lattice_reference(lat)
    c = determinize_lattice(lat)
    want = {w: g + a for t, w, g, a in paths(ref)}
    got = check_compact(c, lat, INF)
    assert set(got) == set(want)
    for w in want:
        assert got[w] == pytest.approx(want[w], abs=1e-4)


@pytest.mark.parametrize("seed", range(40))
def test_c_equals_reference_pruned(seed):
    rng = np.random.default_rng(700 + seed)
    lat = random_lattice(rng, ns=int(rng.integers(4, 11)))
    beam = float(rng.uniform(0.1, 3.0))
    ref = determinize_lattice_pruned_reference(lat, beam)
    c, info = determinize_lattice_pruned(lat, beam, return_info=True)
    assert isinstance(info, DeterminizeInfo) and info.complete and info.retries == 0
    got = check_compact(c, lat, beam)
    want = {w: g + a for t, w, g, a in paths(ref)}
    b = min(want.values())
    # equal on everything within the beam (beyond it both may keep extras)
    for w, v in want.items():
        if v <= b + beam - 1e-4:
            assert got[w] == pytest.approx(v, abs=1e-4)
    for w, v in got.items():
        if v <= b + beam - 1e-4:
            assert want[w] == pytest.approx(v, abs=1e-4)


def random_phone_lattice(rng, ns=10, num_tids=8):
    lat = random_lattice(rng, ns=ns)
    il = rng.integers(1, num_tids + 1, lat.num_arcs)
    lat = Lattice(lat.num_states, lat.start, lat.final, lat.arc_src, lat.arc_dst, il,
                  lat.arc_olabel, lat.arc_weight)
    pm = np.zeros(num_tids + 1, np.int32)
    pm[1:] = np.where(rng.random(num_tids) < 0.5, rng.integers(1, 4, num_tids), 0)
    return lat, pm


@pytest.mark.parametrize("seed", range(30))
def test_phone_pass_keeps_the_guarantees(seed):
    rng = np.random.default_rng(900 + seed)
    lat, pm = random_phone_lattice(rng, ns=int(rng.integers(4, 11)))
    beam = float(rng.uniform(0.2, 4.0)) if seed % 3 else 1e9
    c, info = determinize_lattice_pruned(lat, beam, trans_model=pm, return_info=True)
    assert info.phone_states > 0
    check_compact(c, lat, beam)
    w_only = determinize_lattice_pruned(lat, beam, phone_determinize=False, trans_model=pm)
    a = {w: g + x for t, w, g, x in paths(c)}
    b = {w: g + x for t, w, g, x in paths(w_only)}
    best = min(a.values())
    assert {w for w, v in a.items() if v <= best + beam - 1e-4} == \
        {w for w, v in b.items() if v <= best + beam - 1e-4}


def test_phone_start_map_from_transition_model():
    class TM:
        tid2phone = np.array([-1, 1, 1, 1, 2, 2, 2])
        tid2hmm_state = np.array([-1, 0, 0, 1, 0, 0, 1])
        tid_is_self_loop = np.array([False, True, False, False, True, False, True])
    assert phone_start_map(TM()).tolist() == [0, 0, 1, 0, 0, 2, 0]
    assert phone_start_map(None) is None
    with pytest.raises(TypeError):
        phone_start_map(np.zeros((2, 2)))


@pytest.mark.parametrize("seed", range(10))
def test_limits_trigger_retry(seed):
    rng = np.random.default_rng(1100 + seed)
    beam = 50.0
    # the first random lattice whose determinized form is big enough to hit a
    # limit that leaves room for the best path (expanded first)
    for _ in range(20):
        lat = random_lattice(rng, ns=12, num_words=4, eps_word_p=0.3)
        full = determinize_lattice_pruned(lat, beam)
        limit = max(len(full.best_path().states), full.num_states // 2)
        if full.num_states > limit:
            break
    assert full.num_states > limit, "no lattice big enough in 20 draws"
    c, info = determinize_lattice_pruned(lat, beam, max_states=limit, return_info=True)
    assert not info.complete
    assert info.retries >= 1 and info.beam_used < beam
    # a valid (narrower) result: every path is a real best path, none twice
    best = best_by_words(lat)
    seen = set()
    for t, w, g, a in paths(c):
        assert w not in seen
        seen.add(w)
        assert g + a == pytest.approx(best[w][0], abs=1e-4)
    assert min(v[0] for v in best.values()) == pytest.approx(
        min(g + a for _, _, g, a in paths(c)), abs=1e-4)  # the best path is always kept
    # extreme limits: still no crash, a bounded (maybe empty) result, 10 attempts at most
    for kw in ({"max_arcs": 1}, {"max_mem": 1}, {"max_states": 1}):
        c2, info2 = determinize_lattice_pruned(lat, beam, return_info=True, **kw)
        assert not info2.complete and 1 <= info2.retries <= 9
        assert c2.num_states <= full.num_states
    with pytest.raises(ValueError, match="exceeded"):
        determinize_lattice(lat, max_states=1)


def test_malformed_input_gives_clear_errors():
    good = Lattice(2, 0, [[INF, INF], [0, 0]], [0], [1], [3], [5], [[1.0, 2.0]])
    assert determinize_lattice_pruned(good, 5.0).num_states == 2
    bad = good.copy()
    bad.arc_weight = np.array([[np.nan, 0.0]], np.float32)
    with pytest.raises(ValueError, match="NaN"):
        determinize_lattice_pruned(bad, 5.0)
    bad = good.copy()
    bad.arc_dst = np.array([7], np.int32)
    with pytest.raises(ValueError, match="out of range"):
        determinize_lattice_pruned(bad, 5.0)
    bad = good.copy()
    bad.arc_olabel = np.array([-2], np.int32)
    with pytest.raises(ValueError, match="negative word"):
        determinize_lattice_pruned(bad, 5.0)
    with pytest.raises(ValueError, match="transition-id 3 out of range"):
        determinize_lattice_pruned(good, 5.0, trans_model=np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="beam"):
        determinize_lattice_pruned(good, 0.0)
    cyc = Lattice(2, 0, [[INF, INF], [0, 0]], [0, 1], [1, 0], [1, 1], [0, 0],
                  [[1, 0], [1, 0]])
    with pytest.raises(ValueError, match="cyclic"):
        determinize_lattice_pruned(cyc, 5.0)
    # no final state at all: empty result, not an error
    nofinal = Lattice(2, 0, [[INF, INF], [INF, INF]], [0], [1], [1], [1], [[0, 0]])
    assert determinize_lattice_pruned(nofinal, 5.0).num_states == 0


def _word_loop(num_words, num_pdfs, rng):
    """Word-loop HCLG as scripts/bench/bench_decode.py builds it."""
    from kbind.io.fst import Fst
    num_phones = max(1, num_pdfs // 3)
    src, dst, il, ol, w = [], [], [], [], []
    ns, lex = 1, []
    for word in range(1, num_words + 1):
        pdfs = [3 * p + k for p in rng.integers(0, num_phones, int(rng.integers(2, 5)))
                for k in range(3)]
        lex.append(pdfs)
        states = list(range(ns, ns + len(pdfs)))
        ns += len(pdfs)
        src.append(0); dst.append(states[0]); il.append(2 * pdfs[0] + 2); ol.append(word)
        w.append(float(rng.uniform(3, 9)))
        for j, s in enumerate(states):
            src.append(s); dst.append(s); il.append(2 * pdfs[j] + 1); ol.append(0); w.append(0.69)
            src.append(s); il.append(2 * pdfs[j + 1] + 2 if j + 1 < len(states) else 0)
            dst.append(states[j + 1] if j + 1 < len(states) else 0); ol.append(0); w.append(0.69)
    final = np.full(ns, INF, np.float32)
    final[0] = 0.0
    tid2pdf = np.zeros(2 * num_pdfs + 1, np.int32)
    tid2pdf[1::2] = np.arange(num_pdfs)
    tid2pdf[2::2] = np.arange(num_pdfs)
    pm = np.zeros(2 * num_pdfs + 1, np.int32)
    pm[2 * np.arange(0, num_pdfs, 3) + 2] = np.arange(0, num_pdfs, 3) // 3 + 1
    return Fst(ns, 0, final, src, dst, il, ol, w), tid2pdf, lex, pm


def test_stress_lattice_from_decoder():
    """A raw lattice of a confusable 200-frame utterance (tens of thousands of
    states; the Python reference runs for minutes / GBs on such lattices)
    determinizes in C in well under 2 s, with the guarantees that can be
    checked without enumerating paths."""
    import torch

    from kbind.decode.decoder import DecoderOptions, LatticeDecoder
    rng = np.random.default_rng(3)
    g, tid2pdf, lex, pm = _word_loop(120, 45, rng)
    ali = []
    while len(ali) < 200:
        for pdf in lex[int(rng.integers(0, len(lex)))]:
            ali += [pdf] * int(rng.integers(1, 5))
    ali = np.asarray(ali[:200])
    ll = rng.normal(size=(200, 45)).astype(np.float32) * 2.0 - 10.0
    ll[np.arange(200), ali] += 6.0
    dec = LatticeDecoder(g, tid2pdf, DecoderOptions(beam=13.0, lattice_beam=8.0,
                                                    acoustic_scale=0.1, allow_partial=True,
                                                    determinize_lattice=False))
    *_, lat = dec.decode_raw(torch.from_numpy(ll))
    dec.close()
    assert lat.num_arcs > 5000
    for tm in (None, pm):
        t0 = time.perf_counter()
        c, info = determinize_lattice_pruned(lat, 8.0, trans_model=tm, return_info=True)
        assert time.perf_counter() - t0 < 2.0
        assert c.num_states > 1
        # best path cost preserved; deterministic; all within the beam
        _, beta, best = lattice_forward_backward(lat)
        alpha_c, beta_c, best_c = lattice_forward_backward(c)
        assert best_c == pytest.approx(best, abs=1e-3)
        w = c.arc_weight.astype(np.float64)
        through = alpha_c[c.arc_src] + w[:, 0] + w[:, 1] + beta_c[c.arc_dst]
        assert np.all(through <= best + info.beam_used + 1e-3)
        for s in range(c.num_states):
            labels = c.arc_ilabel[c.state_offsets[s]:c.state_offsets[s + 1]].tolist()
            assert len(labels) == len(set(labels))
        bp = c.best_path()
        assert bp.graph_cost + bp.acoustic_cost == pytest.approx(best, abs=1e-2)

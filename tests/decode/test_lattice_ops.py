"""Lattice pruning and determinization (kbind.decode.lattice_ops) on small
hand-made and random lattices, checked by enumerating paths."""

from __future__ import annotations

import numpy as np
import pytest

from kbind.decode.lattice_ops import (determinize_lattice, determinize_lattice_pruned,
                                      lattice_forward_backward, prune_lattice)
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

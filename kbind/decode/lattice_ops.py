"""Lattice operations for decoding: pruning and lattice determinization.

:func:`determinize_lattice_pruned` gives what Kaldi's
``DeterminizeLatticePruned`` / ``lattice-determinize-pruned`` promise: a
:class:`~kbind.io.lattice.CompactLattice` deterministic on words with, for
each word sequence of the input whose best cost is within ``beam`` of the
best path, exactly one path carrying that best cost (graph and acoustic
parts of the best path) and the transition-ids of its best alignment.

How (pure Python, first version): ``prune_lattice`` (arc-level: an arc
survives iff the best path through it is within ``beam``), then Kaldi's
``LatticeDeterminizer`` algorithm (``fstext/determinize-lattice-inl.h``):
subset construction on the word labels (``olabel`` of a raw lattice,
epsilon = 0) in the semiring of (LatticeWeight, string of transition-ids),
subsets of (input state, residual string, residual weight) with one element
per state (the best: weight order of ``LatticeWeight`` -- graph + acoustic,
then graph -- then the string as a tie-break), epsilon closure, normalization
(the subset's best weight and the common prefix of its strings go on the
output arc), ``ConvertToMinimal`` (only states with word arcs or a final
weight are kept in a subset), final weight = best over the subset's final
elements; then the output is pruned at ``beam`` the same way and connected.

Differences from Kaldi: Kaldi prunes during determinization (priority
queue on forward + backward cost) and, in latgen-faster, first determinizes
on phones (``DeterminizeLatticePhonePrunedWrapper``); the word sequences kept
within the beam, their costs and best alignments are the same, but state
numbering and the set of (beyond-beam) extras can differ; subsets are
matched with weights rounded to 1e-4 (Kaldi: ``kDelta`` approximate
equality); arithmetic on weights is done in double and rounded to float32
on output (Kaldi sums in float); no max-mem / max-states limits.
"""

from __future__ import annotations

import heapq
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..io.lattice import CompactLattice, Lattice

__all__ = ["prune_lattice", "determinize_lattice", "determinize_lattice_pruned",
           "prune_compact_lattice", "lattice_forward_backward"]

_INF = float("inf")


def _topological_order(lat) -> Optional[List[int]]:
    """States of a (Compact)Lattice in a topological order (Kahn, smallest
    state first among the ready ones), or None if cyclic."""
    ns = lat.num_states
    if ns == 0:
        return []
    indeg = np.bincount(lat.arc_dst, minlength=ns)[:ns].tolist()
    offs = lat.state_offsets.tolist()
    dst = lat.arc_dst.tolist()
    ready = [s for s in range(ns) if indeg[s] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        s = heapq.heappop(ready)
        order.append(s)
        for k in range(offs[s], offs[s + 1]):
            t = dst[k]
            indeg[t] -= 1
            if indeg[t] == 0:
                heapq.heappush(ready, t)
    return order if len(order) == ns else None


def _topo(lat) -> List[int]:
    order = _topological_order(lat)
    if order is None:
        raise ValueError("lattice is cyclic (cannot determinize / prune it)")
    return order


def lattice_forward_backward(lat) -> Tuple[np.ndarray, np.ndarray, float]:
    """(alpha, beta, best): best total cost (graph + acoustic, double) from
    the start to each state and from each state to a final state (+inf when
    none); works on Lattice and CompactLattice (acyclic)."""
    ns = lat.num_states
    alpha = np.full(ns, _INF)
    beta = np.full(ns, _INF)
    if lat.start < 0 or ns == 0:
        return alpha, beta, _INF
    order = _topo(lat)
    offs = lat.state_offsets.tolist()
    dst = lat.arc_dst.tolist()
    w = lat.arc_weight.astype(np.float64)
    tot = (w[:, 0] + w[:, 1]).tolist()
    fw = lat.final.astype(np.float64)
    ftot = (fw[:, 0] + fw[:, 1]).tolist()
    a = alpha.tolist()
    a[lat.start] = 0.0
    for s in order:
        if a[s] == _INF:
            continue
        for k in range(offs[s], offs[s + 1]):
            c = a[s] + tot[k]
            if c < a[dst[k]]:
                a[dst[k]] = c
    b = beta.tolist()
    for s in reversed(order):
        best = ftot[s]
        for k in range(offs[s], offs[s + 1]):
            c = tot[k] + b[dst[k]]
            if c < best:
                best = c
        b[s] = best
    alpha = np.asarray(a)
    beta = np.asarray(b)
    return alpha, beta, float(beta[lat.start])


def _subset(lat, keep_arc: np.ndarray, keep_final: np.ndarray):
    """Copy of lat with only the kept arcs / final weights, then Connect
    (states renumbered keeping their order)."""
    ns = lat.num_states
    fin = lat.final.copy()
    fin[~keep_final] = _INF
    if isinstance(lat, CompactLattice):
        fstrings = [lat.final_string(s) if keep_final[s] else [] for s in range(ns)]
    # connect
    src, dst = lat.arc_src[keep_arc], lat.arc_dst[keep_arc]
    acc = np.zeros(ns, dtype=bool)
    coacc = np.zeros(ns, dtype=bool)
    if lat.start >= 0 and ns:
        order = _topo(lat)
        out: List[List[int]] = [[] for _ in range(ns)]
        for s_, d_ in zip(src.tolist(), dst.tolist()):
            out[s_].append(d_)
        acc[lat.start] = True
        for s in order:
            if acc[s]:
                for d_ in out[s]:
                    acc[d_] = True
        isfin = ~((fin[:, 0] == _INF) & (fin[:, 1] == _INF))
        for s in reversed(order):
            c = bool(isfin[s])
            if not c:
                c = any(coacc[d_] for d_ in out[s])
            coacc[s] = c
    keep_state = acc & coacc
    if lat.start < 0 or not keep_state[lat.start]:
        return type(lat)(0, -1)
    newid = np.cumsum(keep_state) - 1
    arc_ok = keep_arc.copy()
    arc_ok[keep_arc] = keep_state[src] & keep_state[dst]
    idx = np.flatnonzero(arc_ok)
    n2 = int(keep_state.sum())
    if isinstance(lat, CompactLattice):
        return CompactLattice(
            n2, int(newid[lat.start]), fin[keep_state],
            [fstrings[s] for s in np.flatnonzero(keep_state).tolist()],
            newid[lat.arc_src[idx]], newid[lat.arc_dst[idx]], lat.arc_ilabel[idx],
            lat.arc_olabel[idx], lat.arc_weight[idx], [lat.arc_string(k) for k in idx.tolist()])
    return Lattice(n2, int(newid[lat.start]), fin[keep_state], newid[lat.arc_src[idx]],
                   newid[lat.arc_dst[idx]], lat.arc_ilabel[idx], lat.arc_olabel[idx],
                   lat.arc_weight[idx])


def prune_lattice(lat, beam: float):
    """Kaldi's ``PruneLattice``: keep arcs (and final weights) on some path
    whose total cost is within ``beam`` of the best path; then Connect.
    Works on Lattice and CompactLattice (acyclic). Costs as stored (prune a
    raw lattice before unscaling, as the decoder does)."""
    if not beam > 0:
        raise ValueError("beam must be > 0")
    alpha, beta, best = lattice_forward_backward(lat)
    if best == _INF:
        return type(lat)(0, -1)
    w = lat.arc_weight.astype(np.float64)
    through = alpha[lat.arc_src] + w[:, 0] + w[:, 1] + beta[lat.arc_dst]
    keep_arc = through <= best + beam
    fw = lat.final.astype(np.float64)
    keep_final = alpha + fw[:, 0] + fw[:, 1] <= best + beam
    return _subset(lat, keep_arc, keep_final)


prune_compact_lattice = prune_lattice


def _better(g1, a1, s1, g2, a2, s2) -> bool:
    """(g1, a1, s1) strictly better than (g2, a2, s2): LatticeWeight order
    (total, then graph), then the string."""
    t1, t2 = g1 + a1, g2 + a2
    if t1 != t2:
        return t1 < t2
    if g1 != g2:
        return g1 < g2
    return s1 < s2


def determinize_lattice(lat: Lattice, max_states: int = 0) -> CompactLattice:
    """Lattice determinization (no pruning) of an acyclic ``Lattice`` whose
    olabels are words and ilabels transition-ids: Kaldi's
    ``DeterminizeLattice`` after ``Invert``. ``max_states`` > 0 bounds the
    output size (ValueError beyond)."""
    if lat.start < 0 or lat.num_states == 0:
        return CompactLattice(0, -1)
    order = _topo(lat)
    pos = [0] * lat.num_states
    for i, s in enumerate(order):
        pos[s] = i
    offs = lat.state_offsets.tolist()
    dst = lat.arc_dst.tolist()
    il = lat.arc_ilabel.tolist()
    ol = lat.arc_olabel.tolist()
    wg = lat.arc_weight[:, 0].astype(np.float64).tolist()
    wa = lat.arc_weight[:, 1].astype(np.float64).tolist()
    fin = lat.final.astype(np.float64)
    fg, fa = fin[:, 0].tolist(), fin[:, 1].tolist()
    isfinal = [not (fg[s] == _INF and fa[s] == _INF) for s in range(lat.num_states)]
    has_word = [any(ol[k] != 0 for k in range(offs[s], offs[s + 1]))
                for s in range(lat.num_states)]
    has_eps = [any(ol[k] == 0 for k in range(offs[s], offs[s + 1]))
               for s in range(lat.num_states)]

    def closure(elems: Dict[int, Tuple[float, float, tuple]]):
        """Epsilon closure over word-epsilon arcs, best element per state,
        processing states in topological order."""
        heap = [pos[s] for s in elems if has_eps[s]]
        heapq.heapify(heap)
        done = set()
        while heap:
            p = heapq.heappop(heap)
            s = order[p]
            if s in done:
                continue
            done.add(s)
            g, a, st = elems[s]
            for k in range(offs[s], offs[s + 1]):
                if ol[k] != 0:
                    continue
                d = dst[k]
                g2, a2 = g + wg[k], a + wa[k]
                if g2 + a2 == _INF:
                    continue
                s2 = st + (il[k],) if il[k] != 0 else st
                cur = elems.get(d)
                if cur is None or _better(g2, a2, s2, *cur):
                    elems[d] = (g2, a2, s2)
                    if has_eps[d]:
                        heapq.heappush(heap, pos[d])
        # ConvertToMinimal
        return {s: v for s, v in elems.items() if has_word[s] or isfinal[s]}

    def key_of(elems):
        return tuple(sorted((s, round(v[0], 4), round(v[1], 4), v[2])
                            for s, v in elems.items()))

    start_elems = closure({lat.start: (0.0, 0.0, ())})
    subsets: List[Dict[int, Tuple[float, float, tuple]]] = [start_elems]
    index = {key_of(start_elems): 0}
    out_arcs: List[Tuple[int, int, float, float, tuple]] = []  # (src, word, g, a, string) + dst
    out_dst: List[int] = []
    finals: List[Optional[Tuple[float, float, tuple]]] = []
    q = 0
    while q < len(subsets):
        S = subsets[q]
        # final weight
        best = None
        for s, (g, a, st) in S.items():
            if isfinal[s]:
                cand = (g + fg[s], a + fa[s], st)
                if cand[0] + cand[1] == _INF:
                    continue
                if best is None or _better(*cand, *best):
                    best = cand
        finals.append(best)
        # transitions by word
        by_word: Dict[int, Dict[int, Tuple[float, float, tuple]]] = {}
        for s, (g, a, st) in S.items():
            for k in range(offs[s], offs[s + 1]):
                w = ol[k]
                if w == 0:
                    continue
                g2, a2 = g + wg[k], a + wa[k]
                if g2 + a2 == _INF:
                    continue
                s2 = st + (il[k],) if il[k] != 0 else st
                tgt = by_word.setdefault(w, {})
                d = dst[k]
                cur = tgt.get(d)
                if cur is None or _better(g2, a2, s2, *cur):
                    tgt[d] = (g2, a2, s2)
        for w in sorted(by_word):
            elems = closure(by_word[w])
            if not elems:
                continue
            # normalize: best weight and common string prefix go on the arc
            bg, ba, bs = None, None, None
            for (g, a, st) in elems.values():
                if bg is None or _better(g, a, st, bg, ba, bs):
                    bg, ba, bs = g, a, st
            prefix = os.path.commonprefix([v[2] for v in elems.values()])
            n = len(prefix)
            norm = {s: (g - bg, a - ba, st[n:]) for s, (g, a, st) in elems.items()}
            k_ = key_of(norm)
            j = index.get(k_)
            if j is None:
                j = len(subsets)
                index[k_] = j
                subsets.append(norm)
                if max_states and j >= max_states:
                    raise ValueError(f"determinization exceeded {max_states} states")
            out_arcs.append((q, w, bg, ba, tuple(prefix)))
            out_dst.append(j)
        q += 1
    ns = len(subsets)
    final = np.full((ns, 2), _INF, dtype=np.float32)
    fstr: List[List[int]] = [[] for _ in range(ns)]
    for s, f in enumerate(finals):
        if f is not None:
            final[s] = (f[0], f[1])
            fstr[s] = list(f[2])
    src = [a[0] for a in out_arcs]
    words = [a[1] for a in out_arcs]
    weights = np.asarray([(a[2], a[3]) for a in out_arcs], dtype=np.float32).reshape(-1, 2)
    strings = [list(a[4]) for a in out_arcs]
    clat = CompactLattice(ns, 0, final, fstr, src, out_dst, words, words, weights, strings)
    return _topsort_compact(clat)


def _topsort_compact(clat: CompactLattice) -> CompactLattice:
    """Renumber states in topological order (the start first)."""
    order = _topological_order(clat)
    if order is None or order == list(range(clat.num_states)):
        return clat
    newid = np.empty(clat.num_states, dtype=np.int64)
    newid[np.asarray(order, dtype=np.int64)] = np.arange(clat.num_states)
    arcs_sorted = np.argsort(newid[clat.arc_src], kind="stable")
    return CompactLattice(
        clat.num_states, int(newid[clat.start]), clat.final[order],
        [clat.final_string(s) for s in order], newid[clat.arc_src[arcs_sorted]],
        newid[clat.arc_dst[arcs_sorted]], clat.arc_ilabel[arcs_sorted],
        clat.arc_olabel[arcs_sorted], clat.arc_weight[arcs_sorted],
        [clat.arc_string(k) for k in arcs_sorted.tolist()])


def determinize_lattice_pruned(lat: Lattice, beam: float,
                               max_states: int = 0) -> CompactLattice:
    """``DeterminizeLatticePruned(lat, beam)`` semantics (see the module
    docstring): prune, determinize, prune, connect."""
    pruned = prune_lattice(lat, beam)
    if pruned.num_states == 0:
        return CompactLattice(0, -1)
    clat = determinize_lattice(pruned, max_states=max_states)
    return prune_lattice(clat, beam)

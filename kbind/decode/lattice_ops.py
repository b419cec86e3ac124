"""Lattice operations for decoding: pruning and lattice determinization.

:func:`determinize_lattice_pruned` gives what Kaldi's latgen-faster /
``lattice-determinize-pruned`` do with ``DeterminizeLatticePhonePrunedWrapper``
(``src/lat/determinize-lattice-pruned.cc``), in C (``cbridge/latdet.c``,
:c:func:`kb_latdet_pruned`; the GIL is released during the call): a
:class:`~kbind.io.lattice.CompactLattice` deterministic on words (no epsilon
arcs) with, for each word sequence of the input whose best cost is within
``beam`` of the best path, exactly one path carrying that best cost (graph
and acoustic parts of the best path) and the transition-ids of its best
alignment.

What the C code does (Kaldi's algorithm; details in ``latdet.c``):

* subset construction on words in the semiring (LatticeWeight, string of
  transition-ids), pruned DURING determinization: backward costs of the
  input, a priority queue of (output state, word) transitions ordered by
  forward + backward cost, nothing above best + ``beam`` is ever expanded;
  in addition (not in Kaldi; same output within the beam) subset elements
  whose own forward + backward cost is above the cutoff are dropped;
* with a transition model (``trans_model``: a
  :class:`~kbind.hmm.transition_model.TransitionModel`, or a ``tid ->
  phone-started`` array, see :func:`phone_start_map`) and
  ``phone_determinize=True``, a first pass determinizes on words + phones
  (a phone symbol inserted where a transition-id leaves HMM state 0 and is
  not a self-loop), as ``DeterminizeLatticePhonePruned``; the second pass
  then determinizes the (much smaller) result on words.  Without a
  transition model only the word pass runs (same guarantees, the phone pass
  only makes it cheaper);
* limits (``max_mem`` bytes of determinizer memory, Kaldi's default 50e6;
  ``max_states``, ``max_arcs``) stop a pass early; if its effective beam is
  below ``beam * retry_cutoff`` (0.5) the pass input is pruned at
  ``max(beam * sqrt(effective / beam), beam / 2)`` and the pass retried (10
  attempts at most), exactly Kaldi's DeterminizeLatticePruned retry loop;
  otherwise the partial (narrower-beam) output is kept.  The call never
  aborts on a limit and memory stays bounded; ``return_info=True`` tells
  what happened (:class:`DeterminizeInfo`);
* arithmetic in double (output rounded to float32); subsets compared with
  approximate weight equality ``delta`` (Kaldi: 1/1024 in float).

The pure-Python implementation of the first version is kept as the slow
reference (:func:`determinize_lattice_reference`,
:func:`determinize_lattice_pruned_reference`): ``prune_lattice`` then
Kaldi's unpruned ``LatticeDeterminizer`` (``fstext/determinize-lattice-inl.h``)
then ``prune_lattice`` again.  It explodes in time and memory on realistic
lattices; tests compare the two on small ones.
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..io.lattice import CompactLattice, Lattice

__all__ = ["prune_lattice", "determinize_lattice", "determinize_lattice_pruned",
           "determinize_lattice_reference", "determinize_lattice_pruned_reference",
           "phone_start_map", "DeterminizeInfo", "prune_compact_lattice",
           "lattice_forward_backward"]

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


def determinize_lattice_reference(lat: Lattice, max_states: int = 0) -> CompactLattice:
    """Slow pure-Python reference: lattice determinization (no pruning) of
    an acyclic ``Lattice`` whose olabels are words and ilabels
    transition-ids: Kaldi's ``DeterminizeLattice`` after ``Invert``.
    ``max_states`` > 0 bounds the output size (ValueError beyond)."""
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


def determinize_lattice_pruned_reference(lat: Lattice, beam: float,
                                         max_states: int = 0) -> CompactLattice:
    """Slow pure-Python reference for ``DeterminizeLatticePruned(lat,
    beam)``: prune, determinize (:func:`determinize_lattice_reference`),
    prune, connect."""
    pruned = prune_lattice(lat, beam)
    if pruned.num_states == 0:
        return CompactLattice(0, -1)
    clat = determinize_lattice_reference(pruned, max_states=max_states)
    return prune_lattice(clat, beam)


# --------------------------------------------------------------------------
# the C determinizer (cbridge/latdet.c)

@dataclass
class DeterminizeInfo:
    """What :func:`determinize_lattice_pruned` did."""
    complete: bool          # every pass reached the requested beam (no limit hit)
    retries: int            # Kaldi-style retries at a narrower beam (all passes)
    beam_used: float        # narrowest beam of a kept pass (== beam when no retry)
    effective_beam: float   # smallest effective beam reached (== beam if complete)
    raw_arcs: int           # arcs of the connected input lattice (after phone insertion)
    phone_states: int       # states / arcs of the phone-pass output (0: no phone pass)
    phone_arcs: int
    states_created: int     # determinized states created, all passes and attempts
    num_states: int         # output size
    num_arcs: int


def phone_start_map(trans_model) -> Optional[np.ndarray]:
    """int32 array ``m[tid]`` = the phone that transition-id ``tid`` starts
    (Kaldi's phone insertion rule: ``TransitionIdToHmmState(tid) == 0`` and
    not a self-loop), 0 otherwise; ``m[0] = 0``. ``trans_model``: a
    TransitionModel (anything with ``tid2phone``, ``tid2hmm_state``,
    ``tid_is_self_loop``), or such an array already (returned as int32), or
    None (-> None)."""
    if trans_model is None:
        return None
    if all(hasattr(trans_model, a) for a in ("tid2phone", "tid2hmm_state", "tid_is_self_loop")):
        ph = np.asarray(trans_model.tid2phone).astype(np.int64)
        hs = np.asarray(trans_model.tid2hmm_state)
        loop = np.asarray(trans_model.tid_is_self_loop).astype(bool)
        m = np.where((hs == 0) & ~loop & (ph > 0), ph, 0).astype(np.int32)
    else:
        arr = np.asarray(trans_model)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError("trans_model must be a TransitionModel or a 1-D integer "
                            "tid -> phone-start array")
        m = arr.astype(np.int32)
    if m.size == 0:
        raise ValueError("phone-start map must have an entry for transition-id 0")
    if (m < 0).any():
        raise ValueError("phone-start map has negative entries")
    m = m.copy()
    m[0] = 0
    return m


def _native_determinize(lat, beam: float, phone_map: Optional[np.ndarray], delta: float,
                        max_mem: int, max_states: int, max_arcs: int,
                        retry_cutoff: float) -> Tuple[CompactLattice, DeterminizeInfo]:
    import torch

    from .. import _native

    if isinstance(lat, CompactLattice):
        lat = lat.to_lattice()
    if not isinstance(lat, Lattice):
        raise TypeError(f"expected a Lattice, got {type(lat).__name__}")
    arr, P = _native.as_c_array, _native.ptr
    ns = int(lat.num_states)
    start = int(lat.start) if ns else -1
    fin = arr(lat.final, torch.float32, "final")
    off = arr(lat.state_offsets, torch.int64, "state_offsets")
    dst = arr(lat.arc_dst, torch.int32, "arc_dst")
    il = arr(lat.arc_ilabel, torch.int32, "arc_ilabel")
    ol = arr(lat.arc_olabel, torch.int32, "arc_olabel")
    w = arr(lat.arc_weight, torch.float32, "arc_weight")
    pm = None if phone_map is None else arr(phone_map, torch.int32, "phone_map")
    num_tids = 0 if pm is None else int(pm.numel()) - 1
    off_p = P(off, ns + 1, "state_offsets")
    na = int(off[-1])  # the arcs as the offsets count them: every arc array has na
    res = torch.zeros(1, dtype=torch.int64)
    sizes = torch.zeros(8, dtype=torch.int64)
    stats = torch.zeros(4, dtype=torch.float64)
    try:
        _native.call("kb_latdet_pruned", ns, na, start, P(fin, 2 * ns, "final"), off_p,
                     P(dst, na, "arc_dst"),
                     P(il, na, "arc_ilabel"), P(ol, na, "arc_olabel"),
                     P(w, 2 * na, "arc_weight"), P(pm, num_tids + 1, "phone_map"), num_tids,
                     float(beam), float(delta), int(max_mem), int(max_states), int(max_arcs),
                     float(retry_cutoff), P(res, 1, "result"), P(sizes, 8, "sizes"),
                     P(stats, 4, "stats"))
    except _native.NativeError as e:
        if e.code == _native.KB_ENOMEM:
            raise MemoryError(f"lattice determinization: {e}") from None
        raise ValueError(f"lattice determinization: {e}") from None
    h = int(res[0])
    try:
        n_s, n_a, fsl, asl = (int(v) for v in sizes[:4])
        final = torch.empty((n_s, 2), dtype=torch.float32)
        fs_off = torch.empty(n_s + 1, dtype=torch.int64)
        fs_data = torch.empty(fsl, dtype=torch.int32)
        src = torch.empty(n_a, dtype=torch.int32)
        adst = torch.empty(n_a, dtype=torch.int32)
        lab = torch.empty(n_a, dtype=torch.int32)
        aw = torch.empty((n_a, 2), dtype=torch.float32)
        as_off = torch.empty(n_a + 1, dtype=torch.int64)
        as_data = torch.empty(asl, dtype=torch.int32)
        _native.call("kb_latdet_result_copy", h, n_s, n_a, fsl, asl,
                     P(final, 2 * n_s, "final_cost"), P(fs_off, n_s + 1, "final_string_offsets"),
                     P(fs_data, fsl, "final_string_data"), P(src, n_a, "arc_src"),
                     P(adst, n_a, "arc_dst"), P(lab, n_a, "arc_label"),
                     P(aw, 2 * n_a, "arc_weight"), P(as_off, n_a + 1, "arc_string_offsets"),
                     P(as_data, asl, "arc_string_data"))
    finally:
        _native.call("kb_latdet_result_free", h)
    info = DeterminizeInfo(
        complete=bool(sizes[4]), retries=int(sizes[5]), beam_used=float(stats[0]),
        effective_beam=float(stats[1]), raw_arcs=int(sizes[6]), phone_states=int(stats[2]),
        phone_arcs=int(stats[3]), states_created=int(sizes[7]), num_states=n_s, num_arcs=n_a)
    if n_s == 0:
        return CompactLattice(0, -1), info
    labn = lab.numpy()
    # arcs come grouped by source: the constructor keeps their order, so the
    # CSR strings from C can be installed as they are
    clat = CompactLattice(n_s, 0, final.numpy(), None, src.numpy(), adst.numpy(), labn, labn,
                          aw.numpy(), None)
    clat.final_string_offsets = fs_off.numpy()
    clat.final_string_data = fs_data.numpy()
    clat.arc_string_offsets = as_off.numpy()
    clat.arc_string_data = as_data.numpy()
    return clat, info


def determinize_lattice_pruned(lat: Lattice, beam: float, max_states: int = 0,
                               max_arcs: int = 0, phone_determinize: bool = True,
                               trans_model=None, *, max_mem: int = 50_000_000,
                               delta: float = 1e-5, retry_cutoff: float = 0.5,
                               return_info: bool = False):
    """Kaldi's ``DeterminizeLatticePhonePrunedWrapper(trans_model, lat, beam)``
    in C (see the module docstring). ``lat``: a raw state-level Lattice
    (olabel = word, ilabel = transition-id; a CompactLattice is converted
    first), costs as they are (prune with scaled acoustic costs, as the
    decoder does). Phone pass when ``phone_determinize`` and ``trans_model``
    (TransitionModel or :func:`phone_start_map` array) are given.
    ``max_states`` / ``max_arcs`` / ``max_mem`` (<= 0: no limit) stop a pass
    early, with Kaldi's retry at a narrower beam. Returns the CompactLattice
    (start 0, topologically sorted, arcs sorted by word), or ``(clat,
    DeterminizeInfo)`` with ``return_info=True``. ValueError on a malformed
    or cyclic lattice, MemoryError when an allocation fails."""
    if not beam > 0:
        raise ValueError("beam must be > 0")
    pm = phone_start_map(trans_model) if phone_determinize else None
    clat, info = _native_determinize(lat, beam, pm, delta, max_mem, max_states, max_arcs,
                                     retry_cutoff)
    return (clat, info) if return_info else clat


def determinize_lattice(lat: Lattice, max_states: int = 0) -> CompactLattice:
    """Lattice determinization without pruning (Kaldi's ``DeterminizeLattice``
    after ``Invert``), in C: the word pass with an infinite beam.
    ``max_states`` > 0 bounds the output size (ValueError beyond)."""
    clat, info = _native_determinize(lat, float("inf"), None, 1e-5, 0, max_states, 0, 0.5)
    if not info.complete:
        raise ValueError(f"determinization exceeded {max_states} states")
    return clat

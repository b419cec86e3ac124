"""Kaldi's fstext / hmm-utils FST algorithms that kaldifst lacks, ported once
and shared by :mod:`kbind.hmm.graph_compiler` (HCLG, training graphs) and
:mod:`kbind.chain.den_fst` (den FST, chain supervision).

All algorithms operate on :class:`VFst`, a small mutable tropical FST (lists
of ``[ilabel, olabel, weight, nextstate]`` arcs per state), and follow Kaldi's
code step by step, including the order in which states and arcs are created,
so that results match Kaldi's files state-for-state (den_fst reproduces
Kaldi's normalization and supervision FSTs byte-exactly with them).
:class:`kbind.io.fst.Fst` converts cheaply with :meth:`VFst.from_fst` /
:meth:`VFst.to_fst`; :func:`push_special` and :func:`add_self_loops` also
accept an ``Fst`` directly (their inner loops are vectorized on arc arrays,
in Kaldi's summation order, which keeps HCLG building fast).

Ports (Kaldi source in brackets):

* :func:`connect` -- OpenFst ``Connect`` (``connect.h``);
* :func:`apply_probability_scale` -- ``ApplyProbabilityScale``
  (``fstext/fstext-utils-inl.h``);
* :func:`remove_eps_local` -- ``RemoveEpsLocal`` (``fstext/remove-eps-local-inl.h``,
  ``fstrmepslocal``), tropical ``Plus`` = min, then ``Connect``;
* :func:`push_special` -- ``PushSpecial`` (``fstext/push-special.cc``,
  ``fstpushspecial``): power method on (P + 0.1 I) in double, arc probabilities
  from the C library's ``expf`` as Kaldi's;
* :func:`make_loop_fst` -- ``MakeLoopFst`` (``fstext/fstext-utils-inl.h``);
* :func:`get_hmm_as_fst` -- ``GetHmmAsFsa`` (``hmm/hmm-utils.cc``, self-loops
  left out, ``RemoveEpsLocal`` + ``ApplyProbabilityScale`` applied);
* :func:`get_h_transducer` -- ``GetHTransducer`` (``hmm/hmm-utils.cc``,
  ``make-h-transducer``), including the disambiguation symbols /
  pseudo-epsilon (``MakeTrivialAcceptor``, new ids ``num_transition_ids + 1, ...``);
* :func:`add_self_loops` -- ``AddSelfLoops`` with ``reorder=true``
  (``hmm/hmm-utils.cc`` ``AddSelfLoopsReorder`` with ``TidToTstateMapper`` and
  ``MakePrecedingInputSymbolsSameClass(start_is_epsilon=true)`` of
  ``fstext/fstext-utils-inl.h``: a state entered by several transition-states
  gets one new state per extra (state, class), holding an epsilon arc to it).

Weights are tropical costs held as float32 values; sums/differences of
weights are done in float32 as OpenFst does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import math
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from kbind.io.fst import Fst

__all__ = ["VFst", "INF", "K_DELTA", "connect", "apply_probability_scale",
           "as_fst", "as_vfst", "remove_eps_local", "push_special", "make_loop_fst", "get_hmm_as_fst",
           "get_h_transducer", "add_self_loops"]

INF = float("inf")
K_DELTA = float(np.float32(1.0) / np.float32(1024.0))  # fst::kDelta
_NO_LABEL = -1
_NO_PDF = -1
_NONTERM_BIG = 1000000  # labels from here on pass AddSelfLoops as class 0


def _gc_paused(fn):
    """Run ``fn`` with Python's cyclic garbage collector paused: these
    functions allocate many small (acyclic) arc lists, and the collector's
    repeated passes over them would otherwise dominate their run time."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()
    return wrapper


def _f32(x) -> float:
    return float(np.float32(x))


def _times(a: float, b: float) -> float:
    """Tropical Times (float32 addition)."""
    return float(np.float32(a) + np.float32(b))


def _divide(a: float, b: float) -> float:
    """Tropical Divide(a, b) = a - b (float32); Zero stays Zero."""
    if a == INF:
        return INF
    return float(np.float32(a) - np.float32(b))


# ---------------------------------------------------------------------------------------
# A small mutable FST
# ---------------------------------------------------------------------------------------

class VFst:
    """Mutable tropical FST: ``arcs[s]`` is a list of ``[ilabel, olabel, weight,
    nextstate]`` (weights are float32 costs held as Python floats, +inf = Zero),
    ``final[s]`` the final cost (+inf = not final), ``start`` (-1 = empty)."""

    __slots__ = ("start", "final", "arcs")

    def __init__(self):
        self.start = -1
        self.final: List[float] = []
        self.arcs: List[List[list]] = []

    # -- construction ----------------------------------------------------------
    def add_state(self) -> int:
        self.final.append(INF)
        self.arcs.append([])
        return len(self.final) - 1

    def add_arc(self, s: int, ilabel: int, olabel: int, weight: float, nextstate: int) -> None:
        self.arcs[s].append([int(ilabel), int(olabel), float(weight), int(nextstate)])

    @property
    def num_states(self) -> int:
        return len(self.final)

    def num_arcs(self) -> int:
        return sum(len(a) for a in self.arcs)

    @_gc_paused
    def copy(self) -> "VFst":
        out = VFst()
        out.start = self.start
        out.final = list(self.final)
        out.arcs = [[list(a) for a in arcs] for arcs in self.arcs]
        return out

    # -- conversions ------------------------------------------------------------
    @classmethod
    @_gc_paused
    def from_fst(cls, fst: Fst) -> "VFst":
        out = cls()
        out.start = int(fst.start)
        out.final = [float(x) for x in fst.final.tolist()]
        rows = list(map(list, zip(fst.arc_ilabel.tolist(), fst.arc_olabel.tolist(),
                                  fst.arc_weight.tolist(), fst.arc_dst.tolist())))
        offs = fst.state_offsets.tolist()
        out.arcs = [rows[offs[s]:offs[s + 1]] for s in range(fst.num_states)]
        return out

    @_gc_paused
    def to_fst(self) -> Fst:
        rows = [a for arcs in self.arcs for a in arcs]
        n = self.num_states
        src = np.repeat(np.arange(n, dtype=np.int32),
                        np.fromiter((len(a) for a in self.arcs), np.int64, n))
        if rows:
            il, ol, w, dst = zip(*rows)
        else:
            il = ol = w = dst = ()
        return Fst(n, self.start if n else -1, np.asarray(self.final, dtype=np.float32),
                   src, np.asarray(dst, dtype=np.int32),
                   np.asarray(il, dtype=np.int32), np.asarray(ol, dtype=np.int32),
                   np.asarray(w, dtype=np.float32))

    def to_kaldifst(self):
        return self.to_fst().to_kaldifst()

    @classmethod
    def from_kaldifst(cls, kfst) -> "VFst":
        return cls.from_fst(Fst.from_kaldifst(kfst))

    def assign(self, other: "VFst") -> None:
        """Make this object hold ``other``'s contents (for in-place operations)."""
        self.start, self.final, self.arcs = other.start, other.final, other.arcs


# ---------------------------------------------------------------------------------------
# Connect, ApplyProbabilityScale
# ---------------------------------------------------------------------------------------

@_gc_paused
def as_fst(x) -> Fst:
    """An :class:`~kbind.io.fst.Fst` from an Fst, a VFst, a kaldifst FST or
    a file name (an Fst is returned as is, not copied)."""
    if isinstance(x, Fst):
        return x
    if isinstance(x, VFst):
        return x.to_fst()
    if hasattr(x, "write"):
        return Fst.from_kaldifst(x)
    return Fst.from_file(x)


def as_vfst(x) -> VFst:
    """A fresh :class:`VFst` (safe to modify) from the same inputs as
    :func:`as_fst`."""
    if isinstance(x, VFst):
        return x.copy()
    if isinstance(x, Fst):
        return VFst.from_fst(x)
    if hasattr(x, "write"):
        return VFst.from_kaldifst(x)
    return VFst.from_fst(Fst.from_file(x))


def connect(fst: VFst) -> VFst:
    """OpenFst ``Connect``: remove states that are not accessible from the start
    or cannot reach a final state; survivors keep their relative order."""
    n = fst.num_states
    if fst.start < 0 or n == 0:
        return VFst()
    access = [False] * n
    access[fst.start] = True
    stack = [fst.start]
    while stack:
        s = stack.pop()
        for a in fst.arcs[s]:
            t = a[3]
            if not access[t]:
                access[t] = True
                stack.append(t)
    rev: List[List[int]] = [[] for _ in range(n)]
    for s in range(n):
        for a in fst.arcs[s]:
            rev[a[3]].append(s)
    coacc = [f != INF for f in fst.final]
    stack = [s for s in range(n) if coacc[s]]
    while stack:
        t = stack.pop()
        for s in rev[t]:
            if not coacc[s]:
                coacc[s] = True
                stack.append(s)
    keep = [access[s] and coacc[s] for s in range(n)]
    if not keep[fst.start]:
        return VFst()
    if all(keep):
        return fst
    new_id = [-1] * n
    k = 0
    for s in range(n):
        if keep[s]:
            new_id[s] = k
            k += 1
    out = VFst()
    for s in range(n):
        if keep[s]:
            out.final.append(fst.final[s])
            out.arcs.append([[a[0], a[1], a[2], new_id[a[3]]] for a in fst.arcs[s]
                             if keep[a[3]]])
    out.start = new_id[fst.start]
    return out


def apply_probability_scale(scale: float, fst: VFst) -> None:
    """Kaldi ``ApplyProbabilityScale``: multiply arc and final costs by ``scale``."""
    sc = np.float32(scale)
    for s in range(fst.num_states):
        for a in fst.arcs[s]:
            a[2] = float(np.float32(a[2]) * sc)
        if fst.final[s] != INF:
            fst.final[s] = float(np.float32(fst.final[s]) * sc)


# ---------------------------------------------------------------------------------------
# RemoveEpsLocal
# ---------------------------------------------------------------------------------------

@_gc_paused
def remove_eps_local(fst: VFst, inplace: bool = False) -> VFst:
    """Kaldi ``RemoveEpsLocal`` (tropical; returns the connected result).
    ``inplace=True`` lets it work on ``fst``'s own arc lists (no copy)."""
    if fst.start < 0:
        return fst
    if not inplace:
        fst = fst.copy()
    nc = fst.add_state()  # non_coacc_state_
    n = fst.num_states
    n_in = [0] * n
    n_out = [0] * n
    n_in[fst.start] += 1
    for s in range(n):
        if fst.final[s] != INF:
            n_out[s] += 1
        for a in fst.arcs[s]:
            n_in[a[3]] += 1
            n_out[s] += 1

    def can_combine(a, b):
        if a[0] != 0 and b[0] != 0:
            return None
        if a[1] != 0 and b[1] != 0:
            return None
        return [a[0] if a[0] != 0 else b[0], a[1] if a[1] != 0 else b[1],
                _times(a[2], b[2]), b[3]]

    def reweight(s, pos, rw):
        arc = fst.arcs[s][pos]
        arc[2] = _times(arc[2], rw)
        t = arc[3]
        for b in fst.arcs[t]:
            if b[3] != nc:
                b[2] = _divide(b[2], rw)
        if fst.final[t] != INF:
            fst.final[t] = _divide(fst.final[t], rw)

    def pattern1(s, pos, arc):
        nxt = arc[3]
        total_removed = INF
        total_kept = INF
        to_add = []
        for b in fst.arcs[nxt]:
            if b[3] == nc:
                continue
            comb = can_combine(arc, b)
            if comb is not None:
                total_removed = min(total_removed, b[2])
                n_out[nxt] -= 1
                n_in[b[3]] -= 1
                b[3] = nc
                to_add.append(comb)
            else:
                total_kept = min(total_kept, b[2])
        nf = fst.final[nxt]
        if nf != INF:
            if arc[0] == 0 and arc[1] == 0:
                new_final = _times(arc[2], nf)
                total_removed = min(total_removed, nf)
                if fst.final[s] == INF:
                    n_out[s] += 1
                fst.final[s] = min(fst.final[s], new_final)
                n_out[nxt] -= 1
                fst.final[nxt] = INF
            else:
                total_kept = min(total_kept, nf)
        if total_removed != INF:
            if total_kept == INF:
                n_out[s] -= 1
                n_in[arc[3]] -= 1
                fst.arcs[s][pos][3] = nc
            else:
                total = min(total_removed, total_kept)
                reweight(s, pos, _divide(total_kept, total))
        for c in to_add:
            n_out[s] += 1
            n_in[c[3]] += 1
            fst.arcs[s].append(c)

    def pattern2(s, pos, arc):
        nxt = arc[3]
        can_delete_next = n_in[nxt] == 1
        delete_arc = False
        nf = fst.final[nxt]
        if nf != INF:
            if arc[0] == 0 and arc[1] == 0:
                new_final = _times(arc[2], nf)
                if fst.final[s] == INF:
                    n_out[s] += 1
                fst.final[s] = min(fst.final[s], new_final)
                delete_arc = True
                if can_delete_next:
                    n_out[nxt] -= 1
                    fst.final[nxt] = INF
        else:
            k = 0
            while fst.arcs[nxt][k][3] == nc:
                k += 1
            b = fst.arcs[nxt][k]
            comb = can_combine(arc, b)
            if comb is not None:
                delete_arc = True
                if can_delete_next:
                    n_out[nxt] -= 1
                    n_in[b[3]] -= 1
                    b[3] = nc
                n_out[s] += 1
                n_in[comb[3]] += 1
                fst.arcs[s].append(comb)
        if delete_arc:
            n_out[s] -= 1
            n_in[nxt] -= 1
            fst.arcs[s][pos][3] = nc

    for s in range(n):
        arcs_s = fst.arcs[s]
        pos = 0
        while pos < len(arcs_s):
            nxt = arcs_s[pos][3]
            if nxt != nc and nxt != s:
                if n_in[nxt] == 1 and n_out[nxt] > 1:
                    pattern1(s, pos, list(arcs_s[pos]))
                elif n_out[nxt] == 1:
                    pattern2(s, pos, list(arcs_s[pos]))
            pos += 1
    return connect(fst)


# ---------------------------------------------------------------------------------------
# PushSpecial
# ---------------------------------------------------------------------------------------

def _arc_arrays(fst: Union[VFst, Fst]):
    """(num_states, start, src, dst, weight(float64), final(list)) in arc order."""
    if isinstance(fst, Fst):
        return (fst.num_states, int(fst.start), fst.arc_src.astype(np.int64),
                fst.arc_dst.astype(np.int64), fst.arc_weight.astype(np.float64),
                fst.final.astype(np.float64))
    n = fst.num_states
    src = np.repeat(np.arange(n, dtype=np.int64),
                    np.fromiter((len(a) for a in fst.arcs), np.int64, n))
    dst = np.fromiter((a[3] for arcs in fst.arcs for a in arcs), np.int64, len(src))
    w = np.fromiter((a[2] for arcs in fst.arcs for a in arcs), np.float64, len(src))
    return n, fst.start, src, dst, w, np.asarray(fst.final, np.float64)


@functools.lru_cache(maxsize=1)
def _libm_expf():
    lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    lib.expf.restype = ctypes.c_float
    lib.expf.argtypes = [ctypes.c_float]
    return lib.expf


def _exp_neg_float(costs: np.ndarray) -> np.ndarray:
    """``kaldi::Exp(-cost)`` of float32 costs, as float64: Kaldi's ``Exp(float)``
    is the C library's ``expf``, whose float result is not always exp() in double
    rounded to float, so it is called here too (1 ulp apart moves den.fst weights).
    An infinite cost gives 0."""
    expf = _libm_expf()
    return np.fromiter((expf(-x) for x in costs.tolist()), np.float64, len(costs))


def _push_special_potentials(n, init, src, dst, w, final, delta) -> np.ndarray:
    """PushSpecialClass: the potentials -log(occ) (double), computed exactly as
    Kaldi does (same summation order; numpy sums are sequential here)."""
    p = _exp_neg_float(w)
    fin_p = _exp_neg_float(final)
    # pred_[i]: (j, p) for arcs j -> i, in the order (state j, its arcs, its final)
    fs = np.nonzero(fin_p != 0.0)[0]
    e_tgt = np.concatenate([dst, np.full(len(fs), init, np.int64)])
    e_src = np.concatenate([src, fs])
    e_p = np.concatenate([p, fin_p[fs]])
    e_key = np.concatenate([np.arange(len(src)) + src, fs + np.searchsorted(src, fs, "right")])
    order = np.argsort(e_key, kind="stable")  # Kaldi's pred construction order
    order = order[np.argsort(e_tgt[order], kind="stable")]
    ii, jj, pp = e_tgt[order], e_src[order], e_p[order]
    # bincount sums each bin sequentially from 0.0: prepend 0.1*occ to get
    # Kaldi's new_occ = 0.1*occ; new_occ(j) += occ(i)*p in pred order.
    idx = np.concatenate([np.arange(n), jj])
    occ = np.full(n, 1.0 / math.sqrt(n), dtype=np.float64)

    def test_accuracy(occ):
        tot = np.bincount(src, weights=p * occ[dst] / occ[src], minlength=n)
        tot = tot + fin_p * occ[init] / occ
        return math.log(float(tot.max()) / float(tot.min()))

    for it in range(200):  # Kaldi stops at 200 iterations, converged or not
        new_occ = np.bincount(idx, weights=np.concatenate([0.1 * occ, occ[ii] * pp]),
                              minlength=n)
        lam = math.sqrt(float(np.add.accumulate(new_occ * new_occ)[-1]))
        occ = new_occ * (1.0 / lam)
        if it % 5 == 0 and it > 0 and test_accuracy(occ) <= delta:
            break
    return np.fromiter((-math.log(x) for x in occ.tolist()), np.float64, n)


def push_special(fst: Union[VFst, Fst], delta: float = K_DELTA):
    """Kaldi ``PushSpecial`` (fstext/push-special.cc): reweight so that every
    state has the same total outgoing probability (arcs + final, final-probs
    acting as arcs back to the start), found by the power method on
    (P + 0.1 I) in double precision; path weights unchanged.

    A :class:`VFst` is modified in place (returned too); an :class:`Fst`
    gives a new :class:`Fst`."""
    n = fst.num_states
    if n == 0:
        return fst
    delta = float(np.float32(delta))
    n, init, src, dst, w, final = _arc_arrays(fst)
    pot = _push_special_potentials(n, init, src, dst, w, final, delta)
    new_w = ((w + pot[dst]) - pot[src]).astype(np.float32)
    fin = np.isfinite(final)
    new_final = final.astype(np.float32)
    new_final[fin] = new_final[fin] + (pot[init] - pot[fin]).astype(np.float32)
    if isinstance(fst, Fst):
        return Fst(n, init, new_final, fst.arc_src, fst.arc_dst, fst.arc_ilabel,
                   fst.arc_olabel, new_w, arc_type=fst.arc_type)
    nw = new_w.tolist()
    k = 0
    for arcs in fst.arcs:
        for a in arcs:
            a[2] = nw[k]
            k += 1
    fst.final = new_final.astype(np.float64).tolist()
    return fst


# ---------------------------------------------------------------------------------------
# H transducer: GetHmmAsFsa, MakeLoopFst, GetHTransducer
# ---------------------------------------------------------------------------------------

def get_hmm_as_fst(phone_window, tree, trans_model, transition_scale: float = 1.0,
                   cache: Optional[dict] = None) -> VFst:
    """Kaldi ``GetHmmAsFsa`` (self-loops left out, their probabilities
    renormalised away): states = HMM states, arcs labelled with
    transition-ids, cost ``-log p`` (ignoring self-loops), then
    ``RemoveEpsLocal`` and ``ApplyProbabilityScale(transition_scale)``.
    ``cache`` maps (phone, pdfs) to the FST (identical HMMs are shared)."""
    N, P = tree.context_width, tree.central_position
    if len(phone_window) != N:
        raise ValueError(f"context size mismatch: ilabel info has {len(phone_window)}, "
                         f"tree expects {N}")
    phone = int(phone_window[P])
    if phone == 0:
        raise ValueError("phone == 0 in the central position of a context window")
    topo = trans_model.topo
    entry = topo.topology_for_phone(phone)
    pdfs = []
    for c in range(topo.num_pdf_classes(phone)):
        pdf = tree.compute(list(phone_window), c)
        if pdf is None:
            raise ValueError(f"tree could not map window {phone_window} pdf-class {c}")
        pdfs.append(int(pdf))
    key = (phone, tuple(pdfs))
    if cache is not None and key in cache:
        return cache[key]
    f = VFst()
    ids = [f.add_state() for _ in range(len(entry))]
    f.start = ids[0]
    f.final[ids[-1]] = 0.0
    for h, st in enumerate(entry):
        fpc, spc = st.forward_pdf_class, st.self_loop_pdf_class
        if fpc == _NO_PDF:
            fpdf = spdf = _NO_PDF
        else:
            fpdf, spdf = pdfs[fpc], pdfs[spc]
        for idx, (dest, prob) in enumerate(st.transitions):
            if dest == h:
                continue  # self-loops are added later
            if fpc == _NO_PDF:
                log_prob = float(np.log(np.float32(prob)))
                label = 0
            else:
                ts = trans_model.tuple_to_transition_state(phone, h, fpdf, spdf)
                tid = trans_model.pair_to_transition_id(ts, idx)
                log_prob = trans_model.get_transition_log_prob_ignoring_self_loops(tid)
                label = tid
            f.add_arc(ids[h], label, label, float(-np.float32(log_prob)), ids[dest])
    f = remove_eps_local(f, inplace=True)
    apply_probability_scale(transition_scale, f)
    if cache is not None:
        cache[key] = f
    return f


def _is_initial_acyclic(f: VFst) -> bool:
    return not any(a[3] == f.start for arcs in f.arcs for a in arcs)


@_gc_paused
def make_loop_fst(fsts: Sequence[Optional[VFst]]) -> VFst:
    """Kaldi ``MakeLoopFst``: state 0 is start and final; for each label i the
    acceptor ``fsts[i]`` is attached with olabel i (``None`` entries skipped,
    repeated objects share their arcs)."""
    ans = VFst()
    loop = ans.add_state()
    ans.start = loop
    ans.final[loop] = 0.0
    cache: Dict[int, list] = {}
    for i, f in enumerate(fsts):
        if f is None:
            continue
        if id(f) in cache:
            arc = list(cache[id(f)])
            arc[1] = i
            ans.arcs[0].append(arc)
            continue
        if any(a[0] != a[1] for arcs in f.arcs for a in arcs):
            raise ValueError("MakeLoopFst expects acceptors")
        if f.start < 0:
            continue
        st = f.start
        share = (_is_initial_acyclic(f) and len(f.arcs[st]) == 1 and f.final[st] == INF)
        state_map = []
        for s in range(f.num_states):
            state_map.append(loop if (s == st and share) else ans.add_state())
        if not share:
            arc = [0, i, 0.0, state_map[st]]
            cache[id(f)] = arc
            ans.arcs[0].append(list(arc))
        for s in range(f.num_states):
            for a in f.arcs[s]:
                olabel = i if (s == st and share) else 0
                newarc = [a[0], olabel, a[2], state_map[a[3]]]
                ans.arcs[state_map[s]].append(newarc)
                if s == st and share:
                    cache[id(f)] = list(newarc)
            if f.final[s] != INF:
                ans.arcs[state_map[s]].append([0, 0, f.final[s], loop])
    return ans


def _trivial_acceptor(label: int) -> VFst:
    """Kaldi ``MakeTrivialAcceptor``."""
    f = VFst()
    f.start = f.add_state()
    f.add_state()
    f.add_arc(0, label, label, 0.0, 1)
    f.final[1] = 0.0
    return f


def get_h_transducer(ilabel_info: Sequence[Sequence[int]], tree, trans_model,
                     transition_scale: float = 1.0,
                     disambig_syms_left: Optional[List[int]] = None) -> VFst:
    """Kaldi ``GetHTransducer`` (``make-h-transducer``; self-loops not
    included): input labels transition-ids, output labels indexes into
    ``ilabel_info``. Disambiguation symbols / the context FST's
    pseudo-epsilon (windows ``[-d]`` / ``[0]``) get new input ids
    ``num_transition_ids + 1, ...``, appended to ``disambig_syms_left``."""
    if not ilabel_info or len(ilabel_info[0]) != 0:
        raise ValueError("ilabel_info[0] must be the empty (epsilon) window")
    cache: dict = {}
    next_disambig = trans_model.num_transition_ids + 1
    fsts: List[Optional[VFst]] = [None] * len(ilabel_info)
    for j in range(1, len(ilabel_info)):
        win = list(ilabel_info[j])
        if not win:
            raise ValueError(f"empty ilabel_info entry {j}")
        if win[0] <= 0 and len(win) == 1:
            fsts[j] = _trivial_acceptor(next_disambig)
            if disambig_syms_left is not None:
                disambig_syms_left.append(next_disambig)
            next_disambig += 1
            continue
        if win[0] < 0:
            raise ValueError("grammar-FST ilabel info is not supported")
        fsts[j] = get_hmm_as_fst(win, tree, trans_model, transition_scale, cache)
    return make_loop_fst(fsts)


# ---------------------------------------------------------------------------------------
# AddSelfLoops (reorder = true)
# ---------------------------------------------------------------------------------------

def _add_self_loops_arrays(trans_model, fst: Fst, self_loop_scale: float,
                           check_no_self_loops: bool, disambig_syms) -> Fst:
    """``AddSelfLoopsReorder`` on arc arrays (arcs grouped by state, in order)."""
    tm = trans_model
    ns = fst.num_states
    ntid = tm.num_transition_ids
    il = fst.arc_ilabel.astype(np.int64)
    src = fst.arc_src.astype(np.int64)
    dst = fst.arc_dst.astype(np.int64)
    # TidToTstateMapper
    is_tid = (il >= 1) & (il <= ntid)
    other = il[~is_tid & (il != 0)]
    if other.size:
        bad_lab = np.setdiff1d(other, np.asarray(list(disambig_syms), np.int64))
        bad_lab = bad_lab[bad_lab < _NONTERM_BIG]
        if bad_lab.size:
            raise ValueError(f"AddSelfLoops: label {int(bad_lab[0])} is neither a "
                             "transition-id nor a disambiguation symbol")
    if check_no_self_loops and np.any(tm.tid_is_self_loop[il[is_tid]]):
        raise ValueError("AddSelfLoops: graph already has self-loops.")
    cls = np.zeros(len(il), np.int64)
    cls[is_tid] = tm.tid2state[il[is_tid]]
    # MakePrecedingInputSymbolsSameClass(start_is_epsilon=true)
    ncls = int(tm.num_transition_states) + 1
    keys = dst * ncls + cls
    keys_all = np.concatenate([keys, [fst.start * ncls]]) if fst.start >= 0 else keys
    ust = np.unique(keys_all) // ncls
    bad = np.bincount(ust, minlength=ns) > 1
    chg = (il != 0) & bad[dst]
    new_dst = dst.copy()
    if chg.any():
        uniq, first, inv = np.unique(keys[chg], return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # new states in order of creation
        rank = np.empty(len(uniq), np.int64)
        rank[order] = np.arange(len(uniq))
        new_dst[chg] = ns + rank[inv.ravel()]
        n_new = len(uniq)
        eps_to = uniq[order] // ncls
        new_cls = uniq[order] % ncls
    else:
        n_new = 0
        eps_to = new_cls = np.zeros(0, np.int64)
    total = ns + n_new
    new_states = np.arange(ns, total, dtype=np.int64)
    state_in = np.full(total, -1, np.int64)
    state_in[new_dst] = cls
    state_in[eps_to] = 0
    state_in[new_states] = new_cls
    # self-loop scaling
    sls = np.float32(self_loop_scale)
    nsl = np.asarray(tm.non_self_loop_log_probs, np.float32)
    has = state_in > 0
    add_cost = np.zeros(total, np.float32)
    add_cost[has] = (-nsl[state_in[has]]) * sls
    w = (fst.arc_weight.astype(np.float32) + add_cost[src]).astype(np.float32)
    eps_w = add_cost[new_states]  # Times(One(), cost)
    final = np.concatenate([fst.final.astype(np.float32), np.full(n_new, np.inf, np.float32)])
    fin = np.isfinite(final)
    final[fin] = final[fin] + add_cost[fin]
    loop_of = np.asarray([tm.self_loop_of(s) for s in range(1, ncls)], np.int64)
    loop_of = np.concatenate([[0], loop_of])
    loop_states = np.nonzero(has)[0]
    loop_tids = loop_of[state_in[loop_states]]
    m = loop_tids != 0
    loop_states, loop_tids = loop_states[m], loop_tids[m]
    lp = np.asarray(tm.log_probs, np.float32)
    loop_w = ((-lp[loop_tids]) * sls).astype(np.float32)
    zeros = np.zeros(n_new, np.int64)
    # per state: its arcs, then the epsilon arc (new states), then the self-loop
    return Fst(total, fst.start, final,
               np.concatenate([src, new_states, loop_states]),
               np.concatenate([new_dst, eps_to, loop_states]),
               np.concatenate([il, zeros, loop_tids]),
               np.concatenate([fst.arc_olabel.astype(np.int64), zeros,
                               np.zeros(len(loop_tids), np.int64)]),
               np.concatenate([w, eps_w, loop_w]), arc_type=fst.arc_type)


def add_self_loops(trans_model, fst: Union[VFst, Fst], self_loop_scale: float = 1.0,
                   reorder: bool = True, check_no_self_loops: bool = True,
                   disambig_syms: Sequence[int] = ()):
    """Kaldi ``AddSelfLoops`` with ``reorder=true`` (``add-self-loops``):
    states are split (``MakePrecedingInputSymbolsSameClass``, new states
    with an epsilon arc to the old one) so that each has one transition-state
    on its incoming arcs; a state entered by transition-state ``s`` gets the
    self-loop of ``s`` (cost ``-self_loop_scale * log p_loop``) and its arcs
    and final cost get ``-self_loop_scale * log(1 - p_loop)`` added.
    Epsilon and ``disambig_syms`` count as no transition-state.

    A :class:`VFst` is modified in place (returned too); an :class:`Fst`
    gives a new :class:`Fst`."""
    if not reorder:
        raise NotImplementedError("add_self_loops: only reorder=True (the default of "
                                  "Kaldi's mkgraph.sh, compile-train-graphs and chain)")
    if isinstance(fst, Fst):
        return _add_self_loops_arrays(trans_model, fst, self_loop_scale,
                                      check_no_self_loops, disambig_syms)
    if fst.start < 0:
        raise ValueError("empty FST")
    out = _add_self_loops_arrays(trans_model, fst.to_fst(), self_loop_scale,
                                 check_no_self_loops, disambig_syms)
    fst.assign(VFst.from_fst(out))
    return fst

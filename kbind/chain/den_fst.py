"""Denominator FST creation (Kaldi's ``chain-make-den-fst`` / ``CreateDenominatorFst``)
and the HMM graph-building pieces it shares with supervision creation.

What is here (Kaldi source it follows in brackets):

* context expansion with an on-demand inverse context FST
  [``InverseContextFst`` + ``ComposeDeterministicOnDemandInverse``,
  ``AddSubsequentialLoop``];
* ``MinimizeAcceptorNoPush``, the den-graph minimization wrapper,
  ``SortOnTransitionCount`` and ``CreateDenominatorFst`` (chain-den-graph.cc);
* the initial probabilities and ``GetNormalizationFst`` of ``DenominatorGraph``;
* OpenFst ``ArcSort`` with libstdc++'s ``std::sort`` (:func:`std_sort`),
  ``StateSort``, ``Project``, Kaldi's ``SortBreadthFirstSearch``,
  ``MakeLinearAcceptor``, ``MapFstToPdfIdsPlusOne``.

Shared with :mod:`kbind.hmm.graph_compiler` and implemented once in
:mod:`kbind.fstext` (re-exported here under the same names): :class:`VFst`
(the small mutable tropical FST all of these work on), OpenFst ``Connect``,
``ApplyProbabilityScale``, ``RemoveEpsLocal``, ``PushSpecial``
(push-special.cc), the H transducer [``GetHmmAsFsa``, ``GetHTransducer``,
``MakeLoopFst``] and self-loop insertion with ``reorder=true``
[``AddSelfLoops``, ``MakePrecedingInputSymbolsSameClass``].

OpenFst operations that ``kaldifst`` provides are used through it (so the state
numbering and arc order are OpenFst's own): ``TableCompose`` (``kaldifst.compose``),
``RmEpsilon``, ``Reverse``, ``ArcSort``, ``Determinize``/``Minimize``,
``DeterminizeStar`` and encoded minimization (``kaldifst.minimize_encoded`` is
exactly Kaldi's ``MinimizeAcceptorNoPush`` body with a given delta).
Everything else is written here following Kaldi's algorithms step by step,
including the order in which states and arcs are created, so that the outputs
match Kaldi's files state-for-state.

Weights are tropical costs held as float32 values; sums/differences of
weights are done in float32 as OpenFst does.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from kbind.io.fst import Fst
from kbind.fstext import (INF, K_DELTA, VFst, _f32, _times, connect,  # noqa: F401
                           remove_eps_local)
from kbind import fstext as _fx
from kbind.fstext import as_fst

__all__ = [
    "make_den_fst", "normalization_fst", "den_graph_initial_probs", "VFst",
    "push_special", "remove_eps_local", "add_self_loops", "get_h_transducer",
    "compose_inverse_context", "minimize_acceptor_no_push", "sort_on_transition_count",
    "K_DELTA", "std_sort", "arc_sort_ilabel",
]

_NO_LABEL = -1
_NO_PDF = -1


def _kf_from(vf: VFst):
    return vf.to_fst().to_kaldifst()


def std_sort(a: list, less) -> None:
    """``std::sort`` exactly as libstdc++ implements it (introsort, median-of-3,
    heap-sort fallback, final insertion sort), in place on list ``a``.
    OpenFst's ``ArcSort`` uses it, so equal keys end up in the same
    (unstable) order as in Kaldi's files."""
    n = len(a)
    if n < 2:
        return
    def lg(x):
        return x.bit_length() - 1
    def iter_swap(i, j):
        a[i], a[j] = a[j], a[i]
    def move_median_to_first(result, x, y, z):
        if less(a[x], a[y]):
            if less(a[y], a[z]): iter_swap(result, y)
            elif less(a[x], a[z]): iter_swap(result, z)
            else: iter_swap(result, x)
        elif less(a[x], a[z]): iter_swap(result, x)
        elif less(a[y], a[z]): iter_swap(result, z)
        else: iter_swap(result, y)
    def unguarded_partition(first, last, pivot):
        while True:
            while less(a[first], a[pivot]): first += 1
            last -= 1
            while less(a[pivot], a[last]): last -= 1
            if not first < last: return first
            iter_swap(first, last)
            first += 1
    def adjust_heap(first, hole, length, value):
        top = hole
        child = hole
        while child < (length - 1) // 2:
            child = 2 * (child + 1)
            if less(a[first + child], a[first + child - 1]):
                child -= 1
            a[first + hole] = a[first + child]
            hole = child
        if (length & 1) == 0 and child == (length - 2) // 2:
            child = 2 * (child + 1)
            a[first + hole] = a[first + child - 1]
            hole = child - 1
        parent = (hole - 1) // 2
        while hole > top and less(a[first + parent], value):
            a[first + hole] = a[first + parent]
            hole = parent
            parent = (hole - 1) // 2
        a[first + hole] = value
    def heap_sort(first, last):
        length = last - first
        if length >= 2:
            parent = (length - 2) // 2
            while True:
                adjust_heap(first, parent, length, a[first + parent])
                if parent == 0: break
                parent -= 1
        while last - first > 1:
            last -= 1
            value = a[last]
            a[last] = a[first]
            adjust_heap(first, 0, last - first, value)
    def introsort_loop(first, last, depth):
        while last - first > 16:
            if depth == 0:
                heap_sort(first, last)
                return
            depth -= 1
            mid = first + (last - first) // 2
            move_median_to_first(first, first + 1, mid, last - 1)
            cut = unguarded_partition(first + 1, last, first)
            introsort_loop(cut, last, depth)
            last = cut
    def unguarded_linear_insert(last):
        val = a[last]
        nxt = last - 1
        while less(val, a[nxt]):
            a[last] = a[nxt]
            last = nxt
            nxt -= 1
        a[last] = val
    def insertion_sort(first, last):
        if first == last: return
        for i in range(first + 1, last):
            if less(a[i], a[first]):
                val = a[i]
                a[first + 1:i + 1] = a[first:i]
                a[first] = val
            else:
                unguarded_linear_insert(i)
    introsort_loop(0, n, 2 * lg(n))
    if n > 16:
        insertion_sort(0, 16)
        for i in range(16, n):
            unguarded_linear_insert(i)
    else:
        insertion_sort(0, n)


def arc_sort_ilabel(fst: VFst) -> None:
    """OpenFst ``ArcSort(fst, ILabelCompare)`` (in place)."""
    for arcs in fst.arcs:
        std_sort(arcs, lambda x, y: x[0] < y[0])


# ---------------------------------------------------------------------------------------
# Basic operations
# ---------------------------------------------------------------------------------------

def project(fst: VFst, input_side: bool = True) -> None:
    """OpenFst ``Project`` (in place)."""
    for arcs in fst.arcs:
        for a in arcs:
            if input_side:
                a[1] = a[0]
            else:
                a[0] = a[1]


def sort_breadth_first(fst: VFst) -> VFst:
    """Kaldi ``SortBreadthFirstSearch`` (chain-supervision.cc): renumber states
    in BFS order from the start state (arc order kept)."""
    n = fst.num_states
    order = [-1] * n
    seen = [False] * n
    q = deque([fst.start])
    seen[fst.start] = True
    k = 0
    while q:
        s = q.popleft()
        order[s] = k
        k += 1
        for a in fst.arcs[s]:
            t = a[3]
            if not seen[t]:
                seen[t] = True
                q.append(t)
    if k != n:
        raise ValueError("Input to SortBreadthFirstSearch must be connected.")
    return state_sort(fst, order)


def state_sort(fst: VFst, order: Sequence[int]) -> VFst:
    """OpenFst ``StateSort``: old state s becomes ``order[s]`` (arc order kept)."""
    n = fst.num_states
    out = VFst()
    out.final = [INF] * n
    out.arcs = [[] for _ in range(n)]
    for s in range(n):
        ns = order[s]
        out.final[ns] = fst.final[s]
        out.arcs[ns] = [[a[0], a[1], a[2], order[a[3]]] for a in fst.arcs[s]]
    out.start = order[fst.start] if fst.start >= 0 else -1
    return out


def make_linear_acceptor(labels: Sequence[int]) -> VFst:
    """Kaldi ``MakeLinearAcceptor``."""
    f = VFst()
    cur = f.add_state()
    f.start = cur
    for lab in labels:
        nxt = f.add_state()
        f.add_arc(cur, lab, lab, 0.0, nxt)
        cur = nxt
    f.final[cur] = 0.0
    return f


def has_input_epsilons(fst: VFst) -> bool:
    return any(a[0] == 0 for arcs in fst.arcs for a in arcs)


def rm_epsilon(fst: VFst) -> VFst:
    """OpenFst ``RmEpsilon`` (connect=true), through kaldifst."""
    import kaldifst
    k = _kf_from(fst)
    kaldifst.rmepsilon(k)
    return VFst.from_kaldifst(k)


# ---------------------------------------------------------------------------------------
# Context expansion (InverseContextFst + ComposeDeterministicOnDemandInverse)
# ---------------------------------------------------------------------------------------

class _InverseContextFst:
    """Kaldi's on-demand ``InverseContextFst`` (no disambiguation symbols):
    input = phones (and the subsequential symbol), output = indexes into
    ``ilabel_info`` (phone windows of length N)."""

    def __init__(self, subsequential_symbol: int, phones: Sequence[int], N: int, P: int):
        self.N, self.P = int(N), int(P)
        self.subseq = int(subsequential_symbol)
        self.phones = set(int(p) for p in phones)
        if not (0 <= self.P < self.N):
            raise ValueError("bad context width / central position")
        self.ilabel_info: List[Tuple[int, ...]] = []
        self._label_map: Dict[Tuple[int, ...], int] = {}
        self.state_seqs: List[Tuple[int, ...]] = []
        self._state_map: Dict[Tuple[int, ...], int] = {}
        assert self.find_label(()) == 0
        assert self.find_state(tuple([0] * (self.N - 1))) == 0
        self.pseudo_eps_symbol = 0  # no disambiguation symbols

    def find_label(self, seq: Tuple[int, ...]) -> int:
        lab = self._label_map.get(seq)
        if lab is None:
            lab = len(self.ilabel_info)
            self.ilabel_info.append(seq)
            self._label_map[seq] = lab
        return lab

    def find_state(self, seq: Tuple[int, ...]) -> int:
        s = self._state_map.get(seq)
        if s is None:
            s = len(self.state_seqs)
            self.state_seqs.append(seq)
            self._state_map[seq] = s
        return s

    def start(self) -> int:
        return 0

    def final(self, s: int) -> float:
        ctx = self.state_seqs[s]
        if self.P < self.N - 1:
            return 0.0 if ctx[self.P] == self.subseq else INF
        return 0.0

    def _full_seq(self, seq, label) -> List[int]:
        full = list(seq) + [label]
        for i in range(self.P + 1, self.N):
            if full[i] == self.subseq:
                full[i] = 0
        return full

    def get_arc(self, s: int, ilabel: int):
        """Returns (ilabel, olabel, weight, nextstate) or None."""
        seq = self.state_seqs[s]
        if ilabel in self.phones:
            if seq and seq[-1] == self.subseq:
                return None
        elif ilabel == self.subseq:
            if self.P + 1 == self.N or seq[self.P] == self.subseq:
                return None
        else:
            raise ValueError(f"ContextFst: invalid ilabel {ilabel} (not a phone)")
        next_seq = (tuple(seq[1:]) + (ilabel,)) if seq else seq
        next_s = self.find_state(next_seq)
        full = self._full_seq(seq, ilabel)
        if full[self.P] == 0:
            olabel = self.pseudo_eps_symbol
        else:
            olabel = self.find_label(tuple(full))
        return (ilabel, olabel, 0.0, next_s)


def add_subsequential_loop(subseq_symbol: int, fst: VFst) -> None:
    """Kaldi ``AddSubsequentialLoop`` (in place)."""
    final_states = [s for s in range(fst.num_states) if fst.final[s] != INF]
    superfinal = fst.add_state()
    fst.add_arc(superfinal, subseq_symbol, 0, 0.0, superfinal)
    fst.final[superfinal] = 0.0
    for s in final_states:
        fst.add_arc(s, subseq_symbol, 0, fst.final[s], superfinal)


def compose_inverse_context(phone_fst: VFst, phones: Sequence[int], context_width: int,
                            central_position: int, subsequential_symbol: Optional[int] = None,
                            keep_output_labels: bool = False
                            ) -> Tuple[VFst, List[Tuple[int, ...]]]:
    """Kaldi's context expansion as done in ``CreateDenominatorFst`` and
    ``ProtoSupervisionToSupervision``: optionally add the subsequential loop
    (right context), compose the inverse context FST on the left
    (``ComposeDeterministicOnDemandInverse``) and project on the input.
    ``keep_output_labels``: skip the projections, so a phone-to-word
    transducer keeps its words on the output side (flat-start training graphs).

    Returns ``(fst with context-dependent-phone labels, ilabel_info)``."""
    phones = list(phones)
    if subsequential_symbol is None:
        subsequential_symbol = max(phones) + 1
    right = phone_fst.copy()
    if central_position != context_width - 1:
        add_subsequential_loop(subsequential_symbol, right)
        if not keep_output_labels:
            project(right, True)
    left = _InverseContextFst(subsequential_symbol, phones, context_width, central_position)
    out = VFst()
    if right.start < 0:
        return out, left.ilabel_info
    state_map: Dict[Tuple[int, int], int] = {}
    q: deque = deque()
    start_pair = (left.start(), right.start)
    out.start = out.add_state()
    state_map[start_pair] = out.start
    q.append(start_pair)
    while q:
        ql, qr = pair = q.popleft()
        src = state_map[pair]
        fw = _times(left.final(ql), right.final[qr])
        if fw != INF:
            out.final[src] = fw
        for arc_r in right.arcs[qr]:
            if arc_r[0] == 0:
                nl = ql
                arc_l = None
            else:
                arc_l = left.get_arc(ql, arc_r[0])
                if arc_l is None:
                    continue
                nl = arc_l[3]
            npair = (nl, arc_r[3])
            ns = state_map.get(npair)
            if ns is None:
                ns = out.add_state()
                state_map[npair] = ns
                q.append(npair)
            if arc_l is None:
                out.add_arc(src, 0, arc_r[1], arc_r[2], ns)
            else:
                # swapped: the context label is the output of the inverse FST.
                out.add_arc(src, arc_l[1], arc_r[1], _times(arc_l[2], arc_r[2]), ns)
    if not keep_output_labels:
        project(out, True)
    return out, left.ilabel_info


# ---------------------------------------------------------------------------------------
# Shared with kbind.hmm.graph_compiler: implemented once in kbind.fstext
# ---------------------------------------------------------------------------------------

def get_h_transducer(ilabel_info: Sequence[Tuple[int, ...]], tree, trans_model,
                     transition_scale: float = 1.0) -> VFst:
    """Kaldi ``GetHTransducer`` (:func:`kbind.fstext.get_h_transducer`):
    input transition-ids (without self-loops), output indexes into
    ``ilabel_info``."""
    return _fx.get_h_transducer(ilabel_info, tree, trans_model, transition_scale)


def add_self_loops(trans_model, fst: VFst, self_loop_scale: float, reorder: bool = True,
                   check_no_self_loops: bool = True) -> None:
    """Kaldi ``AddSelfLoops`` with ``reorder=true`` (in place;
    :func:`kbind.fstext.add_self_loops`)."""
    _fx.add_self_loops(trans_model, fst, self_loop_scale, reorder=reorder,
                       check_no_self_loops=check_no_self_loops)


def push_special(fst: VFst, delta: float) -> None:
    """Kaldi ``PushSpecial`` in place (:func:`kbind.fstext.push_special`)."""
    _fx.push_special(fst, delta)


# ---------------------------------------------------------------------------------------
# Den-graph creation
# ---------------------------------------------------------------------------------------

def minimize_acceptor_no_push(fst: VFst) -> VFst:
    """Kaldi ``MinimizeAcceptorNoPush``: quantize (delta = kDelta*10), encode
    labels+weights, unweighted acceptor minimization, decode (through
    kaldifst's OpenFst, whose stable arc sort numbers some states of the
    result differently from Kaldi's OpenFst 1.7.9: the same FST up to the
    numbering of its states)."""
    import kaldifst
    k = _kf_from(fst)
    kaldifst.minimize_encoded(k, delta=float(np.float32(K_DELTA * 10.0)))
    return VFst.from_kaldifst(k)


def _reverse(fst: VFst) -> VFst:
    import kaldifst
    return VFst.from_kaldifst(kaldifst.reverse(_kf_from(fst), True))


def den_graph_minimize_wrapper(fst: VFst) -> VFst:
    """Kaldi ``DenGraphMinimizeWrapper``."""
    d = float(np.float32(K_DELTA * 0.01))
    for _ in range(3):
        rev = _reverse(fst)
        push_special(rev, d)
        rev = minimize_acceptor_no_push(rev)
        fst = _reverse(rev)
        push_special(fst, d)
        fst = minimize_acceptor_no_push(fst)
    fst = rm_epsilon(fst)
    push_special(fst, d)
    return fst


def sort_on_transition_count(fst: VFst) -> VFst:
    """Kaldi's ``SortOnTransitionCount``: states by decreasing in+out degree,
    ties by old index."""
    n = fst.num_states
    cnt = [0] * n
    for s in range(n):
        for a in fst.arcs[s]:
            cnt[s] -= 1
            cnt[a[3]] -= 1
    pairs = sorted((cnt[i], i) for i in range(n))
    order = [0] * n
    for new, (_, old) in enumerate(pairs):
        order[old] = new
    return state_sort(fst, order)


def map_fst_to_pdf_ids_plus_one(trans_model, fst: VFst) -> None:
    """Kaldi ``MapFstToPdfIdsPlusOne`` (in place): non-epsilon transition-id
    labels become pdf-id + 1 on both sides."""
    tid2pdf = trans_model.tid2pdf
    for arcs in fst.arcs:
        for a in arcs:
            if a[0] != 0:
                a[0] = a[1] = int(tid2pdf[a[0]]) + 1


def make_den_fst(tree, trans_model, phone_lm) -> Tuple[Fst, Fst]:
    """``chain-make-den-fst``: returns ``(den_fst, normalization_fst)`` for a
    ContextDependency ``tree``, TransitionModel ``trans_model`` and the phone
    LM (an :class:`Fst` acceptor over phones, e.g. from
    :func:`kbind.chain.phone_lm.estimate_phone_lm`)."""
    import kaldifst
    lm = VFst.from_fst(as_fst(phone_lm))
    if lm.num_states == 0:
        raise ValueError("empty phone LM")
    phones = trans_model.phones
    N, P = tree.context_width, tree.central_position
    clm, ilabel_info = compose_inverse_context(lm, phones, N, P, phones[-1] + 1)
    h = get_h_transducer(ilabel_info, tree, trans_model, transition_scale=1.0)
    tid = VFst.from_kaldifst(kaldifst.compose(_kf_from(h), _kf_from(clm)))
    add_self_loops(trans_model, tid, 1.0, reorder=True, check_no_self_loops=True)
    project(tid, True)
    map_fst_to_pdf_ids_plus_one(trans_model, tid)
    tid = remove_eps_local(tid)
    tid = rm_epsilon(tid)
    tid = den_graph_minimize_wrapper(tid)
    den = sort_on_transition_count(tid).to_fst()
    return den, normalization_fst(den)


# ---------------------------------------------------------------------------------------
# Initial probabilities and normalization FST
# ---------------------------------------------------------------------------------------

def den_graph_initial_probs(den_fst) -> np.ndarray:
    """``DenominatorGraph::SetInitialProbs``: 100 iterations of HMM
    propagation from the start state (in double, with each state's outgoing
    probabilities normalized), averaged; returned as float32."""
    f = as_fst(den_fst)
    n = f.num_states
    src = f.arc_src.astype(np.int64)
    dst = f.arc_dst.astype(np.int64)
    p = np.exp(-f.arc_weight.astype(np.float64))
    z = np.exp(-f.final.astype(np.float64))
    np.add.at(z, src, p)
    if not (np.all(z > 0) and np.all(z < 100)):
        raise ValueError("den FST has a state with bad total probability")
    nf = 1.0 / z
    w = nf[src] * p
    cur = np.zeros(n)
    cur[f.start] = 1.0
    avg = np.zeros(n)
    for _ in range(100):
        avg += cur / 100.0
        nxt = np.zeros(n)
        np.add.at(nxt, dst, cur[src] * w)
        cur = nxt / nxt.sum()
    return avg.astype(np.float32)


def normalization_fst(den_fst, initial_probs: Optional[np.ndarray] = None) -> Fst:
    """``DenominatorGraph::GetNormalizationFst``: a copy of the den FST with a
    new start state that has an epsilon arc of cost -log(init(s)) to every
    state, all states final with cost 0, then ``RmEpsilon`` and arc-sorting
    on input labels."""
    f = as_fst(den_fst)
    init = den_graph_initial_probs(f) if initial_probs is None else np.asarray(
        initial_probs, dtype=np.float32)
    v = VFst.from_fst(f)
    n = v.num_states
    s0 = v.add_state()
    for s in range(n):
        ip = float(init[s])
        if not ip > 0.0:
            raise ValueError(f"initial prob of state {s} is not positive")
        v.add_arc(s0, 0, 0, _f32(-math.log(ip)), s)
        v.final[s] = 0.0
    v.start = s0
    v = rm_epsilon(v)
    arc_sort_ilabel(v)
    return v.to_fst()

"""Denominator FST creation (Kaldi's ``chain-make-den-fst`` / ``CreateDenominatorFst``)
and the HMM graph-building pieces it shares with supervision creation.

What is here (Kaldi source it follows in brackets):

* :class:`VFst` -- a small mutable tropical FST (lists of arcs per state) used by
  the algorithms below; converts to/from :class:`kbind.io.fst.Fst` and
  ``kaldifst.StdVectorFst``.
* context expansion with an on-demand inverse context FST
  [``InverseContextFst`` + ``ComposeDeterministicOnDemandInverse``,
  ``AddSubsequentialLoop``];
* the H transducer [``GetHmmAsFst``, ``GetHTransducer``, ``MakeLoopFst``];
* self-loop insertion with ``reorder=true`` [``AddSelfLoops``,
  ``MakePrecedingInputSymbolsSameClass``];
* ``RemoveEpsLocal``, OpenFst ``Connect``, ``PushSpecial`` (push-special.cc);
* ``MinimizeAcceptorNoPush``, the den-graph minimization wrapper,
  ``SortOnTransitionCount`` and ``CreateDenominatorFst`` (chain-den-graph.cc);
* the initial probabilities and ``GetNormalizationFst`` of ``DenominatorGraph``.

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

__all__ = [
    "make_den_fst", "normalization_fst", "den_graph_initial_probs", "VFst",
    "push_special", "remove_eps_local", "add_self_loops", "get_h_transducer",
    "compose_inverse_context", "minimize_acceptor_no_push", "sort_on_transition_count",
    "K_DELTA", "std_sort", "arc_sort_ilabel",
]

INF = float("inf")
K_DELTA = float(np.float32(1.0) / np.float32(1024.0))  # fst::kDelta
_NO_LABEL = -1
_NO_PDF = -1


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

    def copy(self) -> "VFst":
        out = VFst()
        out.start = self.start
        out.final = list(self.final)
        out.arcs = [[list(a) for a in arcs] for arcs in self.arcs]
        return out

    # -- conversions ------------------------------------------------------------
    @classmethod
    def from_fst(cls, fst: Fst) -> "VFst":
        out = cls()
        out.start = int(fst.start)
        out.final = [float(x) for x in fst.final.tolist()]
        il = fst.arc_ilabel.tolist()
        ol = fst.arc_olabel.tolist()
        w = fst.arc_weight.tolist()
        d = fst.arc_dst.tolist()
        offs = fst.state_offsets.tolist()
        out.arcs = [[[il[k], ol[k], w[k], d[k]] for k in range(offs[s], offs[s + 1])]
                    for s in range(fst.num_states)]
        return out

    def to_fst(self) -> Fst:
        src, dst, il, ol, w = [], [], [], [], []
        for s, arcs in enumerate(self.arcs):
            for a in arcs:
                src.append(s)
                il.append(a[0])
                ol.append(a[1])
                w.append(a[2])
                dst.append(a[3])
        n = self.num_states
        return Fst(n, self.start if n else -1, np.asarray(self.final, dtype=np.float32),
                   np.asarray(src, dtype=np.int32), np.asarray(dst, dtype=np.int32),
                   np.asarray(il, dtype=np.int32), np.asarray(ol, dtype=np.int32),
                   np.asarray(w, dtype=np.float32))

    def to_kaldifst(self):
        return self.to_fst().to_kaldifst()

    @classmethod
    def from_kaldifst(cls, kfst) -> "VFst":
        return cls.from_fst(Fst.from_kaldifst(kfst))


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


def project(fst: VFst, input_side: bool = True) -> None:
    """OpenFst ``Project`` (in place)."""
    for arcs in fst.arcs:
        for a in arcs:
            if input_side:
                a[1] = a[0]
            else:
                a[0] = a[1]


def apply_probability_scale(scale: float, fst: VFst) -> None:
    """Kaldi ``ApplyProbabilityScale``: multiply arc and final costs by ``scale``."""
    sc = np.float32(scale)
    for s in range(fst.num_states):
        for a in fst.arcs[s]:
            a[2] = float(np.float32(a[2]) * sc)
        if fst.final[s] != INF:
            fst.final[s] = float(np.float32(fst.final[s]) * sc)


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
                            central_position: int, subsequential_symbol: Optional[int] = None
                            ) -> Tuple[VFst, List[Tuple[int, ...]]]:
    """Kaldi's context expansion as done in ``CreateDenominatorFst`` and
    ``ProtoSupervisionToSupervision``: optionally add the subsequential loop
    (right context), compose the inverse context FST on the left
    (``ComposeDeterministicOnDemandInverse``) and project on the input.

    Returns ``(fst with context-dependent-phone labels, ilabel_info)``."""
    phones = list(phones)
    if subsequential_symbol is None:
        subsequential_symbol = max(phones) + 1
    right = phone_fst.copy()
    if central_position != context_width - 1:
        add_subsequential_loop(subsequential_symbol, right)
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
    project(out, True)
    return out, left.ilabel_info


# ---------------------------------------------------------------------------------------
# H transducer
# ---------------------------------------------------------------------------------------

def _get_hmm_as_fst(phone_window, tree, trans_model, transition_scale: float, cache):
    N, P = tree.context_width, tree.central_position
    if len(phone_window) != N:
        raise ValueError("context size mismatch")
    phone = int(phone_window[P])
    if phone == 0:
        raise ValueError("phone == 0 in phone window")
    topo = trans_model.topo
    entry = topo.topology_for_phone(phone)
    pdfs = []
    for c in range(topo.num_pdf_classes(phone)):
        pdf = tree.compute(list(phone_window), c)
        if pdf is None:
            raise ValueError(f"tree could not map window {phone_window} pdf-class {c}")
        pdfs.append(int(pdf))
    key = (phone, tuple(pdfs))
    if key in cache:
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
    f = remove_eps_local(f)
    apply_probability_scale(transition_scale, f)
    cache[key] = f
    return f


def _is_initial_acyclic(f: VFst) -> bool:
    return not any(a[3] == f.start for arcs in f.arcs for a in arcs)


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


def get_h_transducer(ilabel_info: Sequence[Tuple[int, ...]], tree, trans_model,
                     transition_scale: float = 1.0) -> VFst:
    """Kaldi ``GetHTransducer`` (no disambiguation symbols): input
    transition-ids (without self-loops), output indexes into ``ilabel_info``."""
    if not ilabel_info or len(ilabel_info[0]) != 0:
        raise ValueError("ilabel_info[0] must be the empty (epsilon) window")
    cache: dict = {}
    fsts: List[Optional[VFst]] = [None] * len(ilabel_info)
    for j in range(1, len(ilabel_info)):
        win = ilabel_info[j]
        if len(win) == 1 and win[0] <= 0:
            raise NotImplementedError("disambiguation symbols are not supported")
        fsts[j] = _get_hmm_as_fst(win, tree, trans_model, transition_scale, cache)
    return make_loop_fst(fsts)


# ---------------------------------------------------------------------------------------
# AddSelfLoops (reorder = true)
# ---------------------------------------------------------------------------------------

def _make_preceding_input_symbols_same_class(fst: VFst, f) -> None:
    """Kaldi ``MakePrecedingInputSymbolsSameClass(start_is_epsilon=true, ...)``."""
    no_class = f(_NO_LABEL)
    eps_class = f(0)
    if fst.start < 0:
        return
    classes: Dict[int, int] = {fst.start: eps_class}
    bad = set()
    for s in range(fst.num_states):
        for a in fst.arcs[s]:
            c = classes.get(a[3], no_class)
            fc = f(a[0])
            if c == no_class:
                classes[a[3]] = fc
            elif c != fc:
                bad.add(a[3])
    if not bad:
        return
    to_change = [(s, k) for s in range(fst.num_states)
                 for k, a in enumerate(fst.arcs[s]) if a[0] != 0 and a[3] in bad]
    state_map: Dict[Tuple[int, int], int] = {}
    for s, k in to_change:
        a = fst.arcs[s][k]
        p = (a[3], f(a[0]))
        if p not in state_map:
            ns = fst.add_state()
            state_map[p] = ns
            fst.add_arc(ns, 0, 0, 0.0, a[3])
        a[3] = state_map[p]


def add_self_loops(trans_model, fst: VFst, self_loop_scale: float, reorder: bool = True,
                   check_no_self_loops: bool = True) -> None:
    """Kaldi ``AddSelfLoops`` with ``reorder=true`` (in place; no
    disambiguation symbols)."""
    if not reorder:
        raise NotImplementedError("chain models need reorder=true")
    if fst.start < 0:
        raise ValueError("empty FST")
    ntid = trans_model.num_transition_ids
    tid2state = trans_model.tid2state
    is_loop = trans_model.tid_is_self_loop

    def f(label: int) -> int:
        if label == _NO_LABEL:
            return -1
        if 1 <= label <= ntid:
            if check_no_self_loops and is_loop[label]:
                raise ValueError("AddSelfLoops: graph already has self-loops.")
            return int(tid2state[label])
        if label != 0:
            raise ValueError(f"invalid label {label} (disambiguation symbols unsupported)")
        return 0

    _make_preceding_input_symbols_same_class(fst, f)
    state_in = [-1] * fst.num_states
    for s in range(fst.num_states):
        for a in fst.arcs[s]:
            ts = f(a[0])
            if state_in[a[3]] == -1:
                state_in[a[3]] = ts
            elif state_in[a[3]] != ts:
                raise AssertionError("MakePrecedingInputSymbolsSame failed")
    if state_in[fst.start] not in (-1, 0):
        raise AssertionError("MakePrecedingInputSymbolsSame failed")
    scale = np.float32(self_loop_scale)
    for s in range(len(state_in)):
        ts = state_in[s]
        if ts > 0:
            log_prob = np.float32(trans_model.get_non_self_loop_log_prob(ts))
            w = float(-log_prob * scale)
            fst.final[s] = _times(fst.final[s], w)
            for a in fst.arcs[s]:
                a[2] = _times(a[2], w)
            tid = trans_model.self_loop_of(ts)
            if tid != 0:
                lp = np.float32(trans_model.get_transition_log_prob(tid))
                fst.add_arc(s, tid, 0, float(-lp * scale), s)


# ---------------------------------------------------------------------------------------
# RemoveEpsLocal
# ---------------------------------------------------------------------------------------

def remove_eps_local(fst: VFst) -> VFst:
    """Kaldi ``RemoveEpsLocal`` (tropical; returns the connected result)."""
    if fst.start < 0:
        return fst
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
        pos = 0
        while pos < len(fst.arcs[s]):
            arc = list(fst.arcs[s][pos])
            nxt = arc[3]
            if nxt != nc and nxt != s:
                if n_in[nxt] == 1 and n_out[nxt] > 1:
                    pattern1(s, pos, arc)
                elif n_out[nxt] == 1:
                    pattern2(s, pos, arc)
            pos += 1
    return connect(fst)


# ---------------------------------------------------------------------------------------
# PushSpecial
# ---------------------------------------------------------------------------------------

def push_special(fst: VFst, delta: float) -> None:
    """Kaldi ``PushSpecial`` (fstext/push-special.cc), in place: reweight so
    that every state has the same total outgoing probability (arcs + final),
    found by the power method on (P + 0.1 I) in double precision."""
    n = fst.num_states
    if n == 0:
        return
    init = fst.start
    delta = float(np.float32(delta))
    # pred lists in Kaldi's order: for s, its arcs then its final prob.
    pred: List[List[Tuple[int, float]]] = [[] for _ in range(n)]
    for s in range(n):
        for a in fst.arcs[s]:
            pred[a[3]].append((s, math.exp(-a[2])))
        fin = math.exp(-fst.final[s]) if fst.final[s] != INF else 0.0
        if fin != 0.0:
            pred[init].append((s, fin))
    ii, jj, pp = [], [], []
    for i in range(n):
        for j, p in pred[i]:
            ii.append(i)
            jj.append(j)
            pp.append(p)
    ii = np.asarray(ii, dtype=np.int64)
    jj = np.asarray(jj, dtype=np.int64)
    pp = np.asarray(pp, dtype=np.float64)
    occ = np.full(n, 1.0 / math.sqrt(n), dtype=np.float64)
    # for TestAccuracy: arcs in order, then the final term.
    t_src, t_dst, t_p = [], [], []
    for s in range(n):
        for a in fst.arcs[s]:
            t_src.append(s)
            t_dst.append(a[3])
            t_p.append(math.exp(-a[2]))
    fin_p = [math.exp(-f) if f != INF else 0.0 for f in fst.final]

    def test_accuracy(occ_l):
        min_sum = max_sum = 0.0
        k = 0
        for s in range(n):
            tot = 0.0
            while k < len(t_src) and t_src[k] == s:
                tot += t_p[k] * occ_l[t_dst[k]] / occ_l[s]
                k += 1
            tot += fin_p[s] * occ_l[init] / occ_l[s]
            if s == 0:
                min_sum = max_sum = tot
            else:
                min_sum = min(min_sum, tot)
                max_sum = max(max_sum, tot)
        return math.log(max_sum / min_sum)

    for it in range(2000):
        new_occ = 0.1 * occ
        np.add.at(new_occ, jj, occ[ii] * pp)
        sumsq = 0.0
        for v in (new_occ * new_occ).tolist():
            sumsq += v
        lam = math.sqrt(sumsq)
        occ = new_occ * (1.0 / lam)
        if it % 5 == 0 and it > 0 and test_accuracy(occ.tolist()) <= delta:
            break
    pot = [-math.log(x) for x in occ.tolist()]
    for s in range(n):
        for a in fst.arcs[s]:
            a[2] = _f32(a[2] + pot[a[3]] - pot[s])
        if fst.final[s] != INF:
            fst.final[s] = _times(fst.final[s], _f32(pot[init] - pot[s]))


# ---------------------------------------------------------------------------------------
# Den-graph creation
# ---------------------------------------------------------------------------------------

def minimize_acceptor_no_push(fst: VFst) -> VFst:
    """Kaldi ``MinimizeAcceptorNoPush``: quantize (delta = kDelta*10), encode
    labels+weights, unweighted acceptor minimization, decode."""
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


def _to_fst_arg(x) -> Fst:
    if isinstance(x, Fst):
        return x
    if isinstance(x, VFst):
        return x.to_fst()
    if hasattr(x, "write"):
        return Fst.from_kaldifst(x)
    return Fst.from_file(x)


def make_den_fst(tree, trans_model, phone_lm) -> Tuple[Fst, Fst]:
    """``chain-make-den-fst``: returns ``(den_fst, normalization_fst)`` for a
    ContextDependency ``tree``, TransitionModel ``trans_model`` and the phone
    LM (an :class:`Fst` acceptor over phones, e.g. from
    :func:`kbind.chain.phone_lm.estimate_phone_lm`)."""
    import kaldifst
    lm = VFst.from_fst(_to_fst_arg(phone_lm))
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
    f = _to_fst_arg(den_fst)
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
    import kaldifst
    f = _to_fst_arg(den_fst)
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

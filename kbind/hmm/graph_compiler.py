"""HMM-level graph building: Kaldi's H transducer, ``AddSelfLoops``,
``RemoveEpsLocal``, ``PushSpecial`` and the training-graph compiler of
``compile-train-graphs``.

Composition, determinization (``DeterminizeStar``), encoded minimization and
the context FST (``ComposeContext``) are done by kaldifst (OpenFst + Kaldi's
fstext); what kaldifst does not expose is implemented here on
:class:`kbind.io.fst.Fst` arrays, following Kaldi's code:

* :func:`make_h_transducer` = ``GetHTransducer`` (``hmm-utils.cc``): for each
  context window of the ilabel info, the HMM of the central phone (pdfs from
  the tree, arcs labelled with transition-ids, weights
  ``-transition_scale * log p`` with the self-loops left out and the
  probabilities renormalised without them), joined into a loop FST as
  ``MakeLoopFst`` does (shared start state where the HMM start has one arc,
  identical HMMs shared); disambiguation symbols and the context FST's
  pseudo-epsilon map to new input ids ``num_transition_ids + 1, ...``;
* :func:`add_self_loops` = ``AddSelfLoops`` with ``reorder=true``
  (``MakePrecedingInputSymbolsSameClass`` + self-loop and forward-probability
  scaling);
* :func:`remove_eps_local` = ``RemoveEpsLocal`` (``fstrmepslocal``);
* :func:`push_special` = ``PushSpecial`` (``fstpushspecial``);
* :func:`remove_input_symbols` = ``fstrmsymbols``.
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from kbind.io.fst import Fst

from .topology import NO_PDF
from .transition_model import TransitionModel
from .tree import ContextDependency

__all__ = ["make_h_transducer", "add_self_loops", "remove_eps_local", "push_special",
           "remove_input_symbols", "compose", "determinize_star", "minimize_encoded",
           "compose_context", "linear_acceptor", "TrainingGraphCompiler"]

_INF = float("inf")
_DELTA = 1.0 / 1024.0  # fst::kDelta


# -- kaldifst wrappers (Fst in, Fst out) ------------------------------------------------

def _k(fst):
    return fst.to_kaldifst() if isinstance(fst, Fst) else fst


def compose(a, b, connect: bool = True) -> Fst:
    """OpenFst ``Compose`` (the result of Kaldi's ``fsttablecompose`` up to
    state numbering). Sorts a's arcs by olabel first."""
    import kaldifst
    ka, kb = _k(a), _k(b)
    kaldifst.arcsort(ka, sort_type="olabel")
    return Fst.from_kaldifst(kaldifst.compose(ka, kb, connect=connect))


def determinize_star(fst, use_log: bool = True, delta: float = _DELTA) -> Fst:
    """Kaldi ``fstdeterminizestar`` (epsilon removal + determinization)."""
    import kaldifst
    k = _k(fst)
    if not isinstance(k, kaldifst.StdVectorFst):
        k = kaldifst.StdVectorFst(k)
    kaldifst.determinize_star(k, delta=delta, use_log=use_log)
    return Fst.from_kaldifst(k)


def minimize_encoded(fst, delta: float = _DELTA) -> Fst:
    """Kaldi ``fstminimizeencoded``."""
    import kaldifst
    k = _k(fst)
    kaldifst.minimize_encoded(k, delta=delta)
    return Fst.from_kaldifst(k)


def compose_context(fst, disambig_syms: Sequence[int], context_width: int,
                    central_position: int) -> Tuple[Fst, List[List[int]]]:
    """Kaldi ``fstcomposecontext`` (+ ``fstarcsort --sort_type=ilabel``):
    returns (CLG, ilabel_info)."""
    import kaldifst
    out, ilabels = kaldifst.compose_context(sorted(int(x) for x in disambig_syms),
                                            int(context_width), int(central_position),
                                            _k(fst))
    kaldifst.arcsort(out, sort_type="ilabel")
    return Fst.from_kaldifst(out), [list(x) for x in ilabels]


def linear_acceptor(labels: Sequence[int]) -> Fst:
    """``MakeLinearAcceptor``."""
    n = len(labels)
    final = np.full(n + 1, np.inf, np.float32)
    final[n] = 0.0
    idx = np.arange(n, dtype=np.int32)
    lab = np.asarray(labels, np.int32)
    return Fst(n + 1, 0, final, idx, idx + 1, lab, lab)


def remove_input_symbols(fst: Fst, syms: Iterable[int]) -> Fst:
    """``fstrmsymbols`` / ``RemoveSomeInputSymbols``: those ilabels become 0."""
    syms = np.asarray(sorted(set(int(s) for s in syms)), np.int32)
    il = fst.arc_ilabel.copy()
    il[np.isin(il, syms)] = 0
    return Fst(fst.num_states, fst.start, fst.final, fst.arc_src, fst.arc_dst, il,
               fst.arc_olabel, fst.arc_weight)


def _connect(fst: Fst) -> Fst:
    """OpenFst ``Connect``: keep accessible and coaccessible states (order kept)."""
    ns = fst.num_states
    if ns == 0 or fst.start < 0:
        return Fst()
    src, dst = fst.arc_src, fst.arc_dst
    acc = _reach(ns, [fst.start], src, dst)
    coacc = _reach(ns, np.nonzero(np.isfinite(fst.final))[0], dst, src)
    keep = acc & coacc
    if not keep[fst.start]:
        return Fst()
    if keep.all():
        return fst
    newid = np.cumsum(keep) - 1
    m = keep[src] & keep[dst]
    return Fst(int(keep.sum()), int(newid[fst.start]), fst.final[keep], newid[src[m]],
               newid[dst[m]], fst.arc_ilabel[m], fst.arc_olabel[m], fst.arc_weight[m])


def _reach(ns, seeds, src, dst) -> np.ndarray:
    order = np.argsort(src, kind="stable")
    s_sorted, d_sorted = src[order], dst[order]
    offs = np.searchsorted(s_sorted, np.arange(ns + 1))
    seen = np.zeros(ns, bool)
    stack = [int(s) for s in seeds]
    for s in stack:
        seen[s] = True
    while stack:
        s = stack.pop()
        for t in d_sorted[offs[s]:offs[s + 1]].tolist():
            if not seen[t]:
                seen[t] = True
                stack.append(t)
    return seen


# -- PushSpecial ----------------------------------------------------------------------

def push_special(fst: Fst, delta: float = _DELTA) -> Fst:
    """Kaldi ``PushSpecial`` (``fstpushspecial``): reweight so every state
    sums to the same value (power iteration on P + 0.1 I, final-probs as arcs
    back to the start state), path weights unchanged."""
    ns = fst.num_states
    if ns == 0:
        return fst
    s0 = fst.start
    fin = np.isfinite(fst.final)
    src = np.concatenate([fst.arc_src, np.nonzero(fin)[0]]).astype(np.int64)
    dst = np.concatenate([fst.arc_dst, np.full(int(fin.sum()), s0)]).astype(np.int64)
    p = np.exp(-np.concatenate([fst.arc_weight, fst.final[fin]]).astype(np.float64))
    occ = np.full(ns, 1.0 / math.sqrt(ns))

    def accuracy(occ):
        with np.errstate(divide="ignore", invalid="ignore"):
            sums = np.bincount(src, weights=p * occ[dst], minlength=ns) / occ
        return math.log(sums.max() / sums.min())

    for it in range(200):
        new = 0.1 * occ + np.bincount(src, weights=occ[dst] * p, minlength=ns)
        occ = new / math.sqrt(float(np.dot(new, new)))
        if it % 5 == 0 and it > 0 and accuracy(occ) <= delta:
            break
    with np.errstate(divide="ignore"):
        pot = -np.log(occ)
    w = (fst.arc_weight.astype(np.float64) + pot[fst.arc_dst] - pot[fst.arc_src])
    final = fst.final.astype(np.float64) + (pot[s0] - pot)
    final[~fin] = np.inf
    return Fst(ns, s0, final.astype(np.float32), fst.arc_src, fst.arc_dst, fst.arc_ilabel,
               fst.arc_olabel, w.astype(np.float32))


# -- RemoveEpsLocal -------------------------------------------------------------------

def remove_eps_local(fst: Fst) -> Fst:
    """Kaldi ``RemoveEpsLocal`` (tropical ``Plus``), then ``Connect``."""
    ns = fst.num_states
    if ns == 0 or fst.start < 0:
        return fst
    f32 = np.float32
    arcs: List[List[list]] = [[] for _ in range(ns + 1)]
    for s, d, i, o, w in zip(fst.arc_src.tolist(), fst.arc_dst.tolist(),
                             fst.arc_ilabel.tolist(), fst.arc_olabel.tolist(),
                             fst.arc_weight.tolist()):
        arcs[s].append([i, o, w, d])
    final = fst.final.astype(np.float64).tolist() + [_INF]
    dead = ns  # non_coacc_state_
    n_in = [0] * (ns + 1)
    n_out = [0] * (ns + 1)
    n_in[fst.start] += 1
    for s in range(ns):
        if final[s] != _INF:
            n_out[s] += 1
        for a in arcs[s]:
            n_in[a[3]] += 1
            n_out[s] += 1

    def times(a, b):
        return float(f32(a) + f32(b))

    def combine(a, b):
        if a[0] != 0 and b[0] != 0:
            return None
        if a[1] != 0 and b[1] != 0:
            return None
        return [a[0] if a[0] != 0 else b[0], a[1] if a[1] != 0 else b[1],
                times(a[2], b[2]), b[3]]

    def plus(a, b):
        return min(a, b)

    def reweight(s, pos, rw):
        arc = arcs[s][pos]
        arc[2] = times(arc[2], rw)
        t = arc[3]
        for na in arcs[t]:
            if na[3] != dead:
                na[2] = float(f32(na[2]) - f32(rw))
        if final[t] != _INF:
            final[t] = float(f32(final[t]) - f32(rw))

    def pattern1(s, pos, arc):
        t = arc[3]
        removed, kept = _INF, _INF
        to_add = []
        for na in arcs[t]:
            if na[3] == dead:
                continue
            c = combine(arc, na)
            if c is not None:
                removed = plus(removed, na[2])
                n_out[t] -= 1
                n_in[na[3]] -= 1
                na[3] = dead
                to_add.append(c)
            else:
                kept = plus(kept, na[2])
        if final[t] != _INF:
            if arc[0] == 0 and arc[1] == 0:
                removed = plus(removed, final[t])
                if final[s] == _INF:
                    n_out[s] += 1
                final[s] = min(final[s], times(arc[2], final[t]))
                n_out[t] -= 1
                final[t] = _INF
            else:
                kept = plus(kept, final[t])
        if removed != _INF:
            if kept == _INF:
                n_out[s] -= 1
                n_in[t] -= 1
                arc[3] = dead
            else:
                total = plus(removed, kept)
                reweight(s, pos, float(f32(kept) - f32(total)))
        for c in to_add:
            n_out[s] += 1
            n_in[c[3]] += 1
            arcs[s].append(c)

    def pattern2(s, pos, arc):
        t = arc[3]
        can_delete_next = n_in[t] == 1
        delete_arc = False
        if final[t] != _INF:
            if arc[0] == 0 and arc[1] == 0:
                if final[s] == _INF:
                    n_out[s] += 1
                final[s] = min(final[s], times(arc[2], final[t]))
                delete_arc = True
                if can_delete_next:
                    n_out[t] -= 1
                    final[t] = _INF
        else:
            na = next(a for a in arcs[t] if a[3] != dead)
            c = combine(arc, na)
            if c is not None:
                delete_arc = True
                if can_delete_next:
                    n_out[t] -= 1
                    n_in[na[3]] -= 1
                    na[3] = dead
                n_out[s] += 1
                n_in[c[3]] += 1
                arcs[s].append(c)
        if delete_arc:
            n_out[s] -= 1
            n_in[t] -= 1
            arc[3] = dead

    for s in range(ns):
        pos = 0
        while pos < len(arcs[s]):
            arc = arcs[s][pos]
            t = arc[3]
            if t != dead and t != s:
                if n_in[t] == 1 and n_out[t] > 1:
                    pattern1(s, pos, arc)
                elif n_out[t] == 1:
                    pattern2(s, pos, arc)
            pos += 1
    src, dst, il, ol, w = [], [], [], [], []
    for s in range(ns):
        for i, o, wt, d in arcs[s]:
            if d != dead:
                src.append(s)
                dst.append(d)
                il.append(i)
                ol.append(o)
                w.append(wt)
    return _connect(Fst(ns, fst.start, np.asarray(final[:ns], np.float32), src, dst, il,
                        ol, w))


# -- H transducer ---------------------------------------------------------------------

def make_h_transducer(ilabel_info: Sequence[Sequence[int]], tree: ContextDependency,
                      trans_model: TransitionModel, transition_scale: float = 1.0
                      ) -> Tuple[Fst, List[int]]:
    """Kaldi ``GetHTransducer`` / ``make-h-transducer`` (self-loops not
    included). Returns (Ha, disambig_tids): Ha's output labels are the indices
    into ``ilabel_info``; its input labels are transition-ids, or the new
    disambiguation ids ``num_transition_ids + 1, ...`` listed in
    ``disambig_tids`` (one per disambiguation symbol / pseudo-epsilon)."""
    if len(ilabel_info) < 1 or len(ilabel_info[0]) != 0:
        raise ValueError("ilabel_info[0] must be empty (epsilon)")
    tm = trans_model
    topo = tm.topo
    N, P = tree.context_width, tree.central_position
    scale = np.float32(transition_scale)
    src: List[int] = []
    dst: List[int] = []
    il: List[int] = []
    ol: List[int] = []
    wt: List[float] = []
    num_states = 1  # state 0 = loop state
    next_disambig = tm.num_transition_ids + 1
    disambig_out: List[int] = []
    cache: Dict[tuple, tuple] = {}  # HMM key -> first arc (ilabel, weight, dest)
    lp_cache: Dict[int, float] = {}

    def add(s, d, i, o, w):
        src.append(s)
        dst.append(d)
        il.append(i)
        ol.append(o)
        wt.append(w)

    def tid_cost(tid):
        c = lp_cache.get(tid)
        if c is None:
            lp = np.float32(tm.get_transition_log_prob_ignoring_self_loops(tid))
            c = float(np.float32(-lp) * scale)
            lp_cache[tid] = c
        return c

    for j in range(1, len(ilabel_info)):
        info = list(ilabel_info[j])
        if not info:
            raise ValueError(f"empty ilabel_info entry {j}")
        if info[0] < 0 or (info[0] == 0 and len(info) == 1):
            if len(info) != 1:
                raise ValueError("grammar-FST ilabel info is not supported")
            d = next_disambig
            next_disambig += 1
            disambig_out.append(d)
            # MakeTrivialAcceptor inserted by MakeLoopFst (shared start state).
            s1 = num_states
            num_states += 1
            add(0, s1, d, j, 0.0)
            add(s1, 0, 0, 0, 0.0)
            continue
        if len(info) != N:
            raise ValueError(f"context size mismatch: ilabel info has {len(info)}, "
                             f"tree expects {N}")
        phone = info[P]
        if phone == 0:
            raise ValueError("phone == 0 in the central position of a context window")
        entry = topo.topology_for_phone(phone)
        pdfs = []
        for c in range(topo.num_pdf_classes(phone)):
            pdf = tree.compute(info, c)
            if pdf is None:
                raise ValueError(f"tree gives no pdf for window {info} pdf-class {c}")
            pdfs.append(pdf)
        key = (phone, tuple(pdfs))
        hit = cache.get(key)
        if hit is not None:
            i0, w0, d0 = hit
            add(0, d0, i0, j, w0)
            continue
        # GetHmmAsFsa
        harcs = []  # (from, to, tid, cost)
        for h, st in enumerate(entry):
            if st.forward_pdf_class == NO_PDF:
                if st.transitions:
                    raise ValueError("non-emitting HMM states with transitions are not "
                                     "supported")
                continue
            ts = tm.tuple_to_transition_state(phone, h, pdfs[st.forward_pdf_class],
                                              pdfs[st.self_loop_pdf_class])
            for idx, (dest, _) in enumerate(st.transitions):
                if dest == h:
                    continue
                tid = tm.pair_to_transition_id(ts, idx)
                harcs.append((h, dest, tid, tid_cost(tid)))
        n = len(entry)
        start_in = any(b == 0 for _, b, _, _ in harcs)
        start_out = [a for a in harcs if a[0] == 0]
        share = (not start_in) and len(start_out) == 1 and n > 1
        smap = {}
        for h in range(n):
            if h == 0 and share:
                smap[h] = 0
            else:
                smap[h] = num_states
                num_states += 1
        if not share:
            add(0, smap[0], 0, j, 0.0)
            cache[key] = (0, 0.0, smap[0])
        for a, b, tid, c in harcs:
            o = j if (a == 0 and share) else 0
            add(smap[a], smap[b], tid, o, c)
            if a == 0 and share:
                cache[key] = (tid, c, smap[b])
        add(smap[n - 1], 0, 0, 0, 0.0)  # final state of the HMM -> loop state
    final = np.full(num_states, np.inf, np.float32)
    final[0] = 0.0
    return Fst(num_states, 0, final, src, dst, il, ol, wt), disambig_out


# -- AddSelfLoops ------------------------------------------------------------------

def add_self_loops(fst: Fst, trans_model: TransitionModel, self_loop_scale: float = 1.0,
                   reorder: bool = True, disambig_syms: Sequence[int] = (),
                   check_no_self_loops: bool = True) -> Fst:
    """Kaldi ``AddSelfLoops`` (``add-self-loops``) with ``reorder=true``:
    states are split so each has one transition-state on its incoming arcs;
    a state entered by transition-state ``s`` gets the self-loop of ``s``
    (weight ``-self_loop_scale * log p_loop``) and its arcs and final weight
    get ``-self_loop_scale * log(1 - p_loop)`` added."""
    if not reorder:
        raise NotImplementedError("add_self_loops: only reorder=True (the default of "
                                  "Kaldi's mkgraph.sh and compile-train-graphs)")
    tm = trans_model
    ntid = tm.num_transition_ids
    ns = fst.num_states
    il = fst.arc_ilabel
    is_tid = (il >= 1) & (il <= ntid)
    other = il[~is_tid & (il != 0)]
    if other.size:
        bad = np.setdiff1d(other, np.asarray(list(disambig_syms), np.int32))
        if bad.size and bad.min() < 1000000:
            raise ValueError(f"AddSelfLoops: label {int(bad[0])} is neither a transition-id "
                             "nor a disambiguation symbol")
    if check_no_self_loops and np.any(tm.tid_is_self_loop[il[is_tid]]):
        raise ValueError("AddSelfLoops: graph already has self-loops")
    cls = np.zeros(len(il), np.int64)
    cls[is_tid] = tm.tid2state[il[is_tid]]
    # MakePrecedingInputSymbolsSameClass(start_is_epsilon=true)
    ncls = int(tm.num_transition_states) + 1
    keys = fst.arc_dst.astype(np.int64) * ncls + cls
    if fst.start >= 0:
        keys_all = np.concatenate([keys, [fst.start * ncls]])
    else:
        keys_all = keys
    uniq = np.unique(keys_all)
    ust, ucls = uniq // ncls, uniq % ncls
    first = np.ones(len(uniq), bool)
    first[1:] = ust[1:] != ust[:-1]  # smallest class of each state keeps the state
    state_cls = np.full(ns, -1, np.int64)
    state_cls[ust[first]] = ucls[first]
    extra = ~first
    n_extra = int(extra.sum())
    new_ids = np.full(len(uniq), -1, np.int64)
    new_ids[first] = ust[first]
    new_ids[extra] = ns + np.arange(n_extra)
    copy_of = ust[extra]
    copy_cls = ucls[extra]
    # redirect arcs
    pos = np.searchsorted(uniq, keys)
    new_dst = new_ids[pos]
    src0, dst0 = fst.arc_src.astype(np.int64), new_dst
    w0 = fst.arc_weight
    # replicate the arcs of copied states
    offs = fst.state_offsets
    counts = (offs[copy_of + 1] - offs[copy_of]).astype(np.int64)
    rep_idx = (np.repeat(offs[copy_of] - np.cumsum(np.concatenate([[0], counts[:-1]])), counts)
               + np.arange(int(counts.sum()))).astype(np.int64) if n_extra else \
        np.zeros(0, np.int64)
    rep_src = np.repeat(ns + np.arange(n_extra), counts)
    src = np.concatenate([src0, rep_src])
    dst = np.concatenate([dst0, new_dst[rep_idx]])
    ilab = np.concatenate([il, il[rep_idx]])
    olab = np.concatenate([fst.arc_olabel, fst.arc_olabel[rep_idx]])
    w = np.concatenate([w0, w0[rep_idx]]).astype(np.float32)
    total = ns + n_extra
    final = np.concatenate([fst.final, fst.final[copy_of]]).astype(np.float32)
    scls = np.concatenate([state_cls, copy_cls])
    # scaling and self-loops
    sls = np.float32(self_loop_scale)
    nsl = np.asarray(tm.non_self_loop_log_probs, np.float32)
    has = scls > 0
    add_cost = np.zeros(total, np.float32)
    add_cost[has] = (-nsl[scls[has]]) * sls
    w = (w + add_cost[src]).astype(np.float32)
    final = np.where(np.isfinite(final), (final + add_cost).astype(np.float32), final)
    loop_states = np.nonzero(has)[0]
    loop_tids = np.asarray([tm.self_loop_of(int(s)) for s in scls[loop_states]], np.int64)
    m = loop_tids != 0
    loop_states, loop_tids = loop_states[m], loop_tids[m]
    lp = np.asarray(tm.log_probs, np.float32)
    loop_w = ((-lp[loop_tids]) * sls).astype(np.float32)
    src = np.concatenate([src, loop_states])
    dst = np.concatenate([dst, loop_states])
    ilab = np.concatenate([ilab, loop_tids])
    olab = np.concatenate([olab, np.zeros(len(loop_tids), np.int64)])
    w = np.concatenate([w, loop_w])
    return Fst(total, fst.start, final, src, dst, ilab, olab, w)


# -- training graphs -------------------------------------------------------------------

class TrainingGraphCompiler:
    """Kaldi's ``TrainingGraphCompiler`` (``compile-train-graphs``).

    lang: a :class:`kbind.hmm.lang.Lang` (its ``L.fst`` is used) or the
        lexicon FST itself (an :class:`Fst`, e.g. ``Fst.from_file('L.fst')``).
    disambig_phones: phone disambiguation symbols on L's input side (Kaldi
        ``--read-disambig-syms``; default none, since L.fst has none).
    Defaults as compile-train-graphs: ``transition_scale=1.0``,
    ``self_loop_scale=1.0``, ``reorder=True``, ``rm_eps=False``.
    """

    def __init__(self, lang, tree: ContextDependency, trans_model: TransitionModel,
                 transition_scale: float = 1.0, self_loop_scale: float = 1.0,
                 reorder: bool = True, rm_eps: bool = False,
                 disambig_phones: Optional[Sequence[int]] = None):
        L = lang if isinstance(lang, Fst) else lang.L
        self.tree = tree
        self.trans_model = trans_model
        self.transition_scale = float(transition_scale)
        self.self_loop_scale = float(self_loop_scale)
        self.reorder = reorder
        self.rm_eps = rm_eps
        self.disambig_phones = sorted(int(x) for x in (disambig_phones or []))
        import kaldifst
        self._L = L.to_kaldifst()
        kaldifst.arcsort(self._L, sort_type="olabel")

    def compile(self, word_ids: Sequence[int]) -> Fst:
        """The training graph of one transcript (word ids): input labels are
        transition-ids (self-loops included), output labels word ids."""
        import kaldifst
        acc = linear_acceptor(word_ids).to_kaldifst()
        lw = kaldifst.compose(self._L, acc)
        if lw.start < 0 or lw.num_states == 0:
            raise ValueError(f"empty composition of L with transcript {list(word_ids)} "
                             "(word not in the lexicon?)")
        cw, ilabels = kaldifst.compose_context(self.disambig_phones, self.tree.context_width,
                                               self.tree.central_position, lw)
        kaldifst.arcsort(cw, sort_type="ilabel")
        H, dis_h = make_h_transducer(ilabels, self.tree, self.trans_model,
                                     self.transition_scale)
        hk = H.to_kaldifst()
        kaldifst.arcsort(hk, sort_type="olabel")
        g = kaldifst.compose(hk, cw)
        if g.start < 0:
            raise ValueError("empty training graph")
        kaldifst.determinize_star(g, use_log=True)
        fst = Fst.from_kaldifst(g)
        if dis_h:
            fst = remove_input_symbols(fst, dis_h)
            if self.rm_eps:
                fst = remove_eps_local(fst)
        fst = minimize_encoded(fst)
        return add_self_loops(fst, self.trans_model, self.self_loop_scale, self.reorder,
                              disambig_syms=(), check_no_self_loops=True)

    def compile_many(self, transcripts: Iterable[Sequence[int]]) -> List[Fst]:
        return [self.compile(t) for t in transcripts]

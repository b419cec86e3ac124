"""Numerator (supervision) FST creation as Kaldi's chain egs creation does it.

Constrained / unconstrained supervision from phone alignments
(``chain-supervision.cc``):

* :func:`alignment_to_proto_supervision` -- ``AlignmentToProtoSupervision``;
* :func:`proto_to_supervision_fst` -- ``ProtoSupervisionToSupervision`` (context
  expansion, H with ``transition_scale=0``, self-loops with
  ``self_loop_scale=0``/``reorder=true``, time enforcement with the allowed
  phones, ``Connect``, projection, ``SortBreadthFirstSearch``);
* :func:`split_supervision` -- ``SupervisionSplitter::GetFrameRange``;
* :func:`make_unconstrained` -- ``ConvertSupervisionToUnconstrained``;
* :func:`add_weight_to_supervision` -- ``AddWeightToSupervisionFst`` (and its
  e2e variant);
* :func:`merge_supervision` -- ``MergeSupervision`` for the constrained kind.

Flat-start (e2e) supervision (``TrainingGraphCompiler`` +
``TrainingGraphToSupervisionE2e``): :func:`compile_training_graph`,
:func:`e2e_supervision` (from a phone sequence, with a one-state
phone:phone lexicon) and :func:`e2e_supervision_from_graph` (from any phone
acceptor, e.g. one with optional silence built from a lexicon).

All FSTs returned are :class:`kbind.io.fst.Fst` acceptors; supervision FSTs
after :func:`add_weight_to_supervision` have labels pdf-id + 1 and are what
``Supervision.from_fsts`` consumes.

Where Kaldi's functions return ``false`` (an utterance or chunk whose
supervision cannot be made, which the egs programs skip with a warning: an
empty supervision FST, an empty composition with the normalization FST, a
determinization that does not finish, an epsilon input label in an e2e
training graph) these raise :class:`SupervisionRejected`; every other error
(malformed input, Kaldi's asserts) is a plain ``ValueError``.
"""

from __future__ import annotations

import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple


from kbind.fstext import as_fst, as_vfst
from kbind.io.fst import Fst

from .den_fst import (INF, VFst, _kf_from, _times, add_self_loops, compose_inverse_context,
                      connect, get_h_transducer, has_input_epsilons, make_linear_acceptor,
                      project, remove_eps_local, rm_epsilon,
                      sort_breadth_first)

__all__ = [
    "ProtoSupervision", "SUPERVISION_MAX_STATES", "SupervisionRejected",
    "alignment_to_proto_supervision", "proto_to_supervision_fst", "split_supervision",
    "make_unconstrained", "add_weight_to_supervision", "merge_supervision",
    "compute_fst_state_times", "compile_training_graph", "e2e_supervision",
    "e2e_supervision_from_graph", "alignment_to_chunk_supervision", "compose_acceptors",
    "read_phone_ali", "read_phone_seqs",
]

SUPERVISION_MAX_STATES = 200000  # kSupervisionMaxStates


class SupervisionRejected(ValueError):
    """This utterance's (or chunk's) supervision cannot be made; Kaldi warns and
    skips it (see the module doc)."""


@dataclass
class ProtoSupervision:
    """Kaldi ``ProtoSupervision``: ``allowed_phones[t]`` (sorted, unique) for
    each output frame t, and the phone acceptor ``fst``."""
    allowed_phones: List[List[int]] = field(default_factory=list)
    fst: Optional[Fst] = None

    @property
    def num_frames(self) -> int:
        return len(self.allowed_phones)


# ---------------------------------------------------------------------------------------
# Proto-supervision
# ---------------------------------------------------------------------------------------

def alignment_to_proto_supervision(phone_ali: Sequence[Tuple[int, int]],
                                   frame_subsampling_factor: int = 3,
                                   left_tolerance: int = 5,
                                   right_tolerance: int = 5) -> ProtoSupervision:
    """Kaldi ``AlignmentToProtoSupervision``: ``phone_ali`` is a list of
    ``(phone, duration-in-input-frames)``. A phone spanning input frames
    ``[b, e)`` is allowed on output frames
    ``[ceil(max(0, b-left)/f), ceil(min(T, e+right)/f))``."""
    f = int(frame_subsampling_factor)
    lt, rt = int(left_tolerance), int(right_tolerance)
    if not (lt >= 0 and rt >= 0 and f > 0 and lt + rt + 1 >= f):
        raise ValueError("need left_tolerance + right_tolerance + 1 >= frame_subsampling_factor")
    if not phone_ali:
        raise ValueError("empty alignment")
    phones = [int(p) for p, _ in phone_ali]
    durs = [int(d) for _, d in phone_ali]
    num_frames = sum(durs)
    nsub = (num_frames + f - 1) // f
    if nsub == 0:
        raise ValueError("alignment has no frames")
    allowed: List[List[int]] = [[] for _ in range(nsub)]
    cur = 0
    for p, d in zip(phones, durs):
        if p <= 0 or d <= 0:
            raise ValueError(f"bad phone/duration {p}/{d}")
        t0 = max(0, cur - lt)
        t1 = min(num_frames, cur + d + rt)
        s0 = (t0 + f - 1) // f
        s1 = (t1 + f - 1) // f
        assert s1 > s0 and s1 <= nsub
        for t in range(s0, s1):
            allowed[t].append(p)
        cur += d
    for t in range(nsub):
        allowed[t] = sorted(set(allowed[t]))
    return ProtoSupervision(allowed, make_linear_acceptor(phones).to_fst())


def _time_enforce(tid_fst: VFst, trans_model, allowed: List[List[int]],
                  convert_to_pdfs: bool) -> VFst:
    """``ComposeDeterministicOnDemand(tid_fst, TimeEnforcerFst)`` (no Connect)."""
    tid2phone = trans_model.tid2phone
    tid2pdf = trans_model.tid2pdf
    allowed_sets = [set(a) for a in allowed]
    T = len(allowed)
    out = VFst()
    if tid_fst.start < 0:
        return out
    state_map: Dict[Tuple[int, int], int] = {}
    q: deque = deque()
    sp = (tid_fst.start, 0)
    out.start = out.add_state()
    state_map[sp] = out.start
    q.append(sp)
    while q:
        q1, q2 = pair = q.popleft()
        src = state_map[pair]
        fw = _times(tid_fst.final[q1], 0.0 if q2 == T else INF)
        if fw != INF:
            out.final[src] = fw
        for a in tid_fst.arcs[q1]:
            if a[1] == 0:
                n2 = q2
                arc2 = None
            else:
                if q2 == T:
                    continue
                tid = a[1]
                if int(tid2phone[tid]) not in allowed_sets[q2]:
                    continue
                olab = int(tid2pdf[tid]) + 1 if convert_to_pdfs else tid
                arc2 = (tid, olab, 0.0, q2 + 1)
                n2 = q2 + 1
            npair = (a[3], n2)
            ns = state_map.get(npair)
            if ns is None:
                ns = out.add_state()
                state_map[npair] = ns
                q.append(npair)
            if arc2 is None:
                out.add_arc(src, a[0], 0, a[2], ns)
            else:
                out.add_arc(src, a[0], arc2[1], _times(a[2], arc2[2]), ns)
    return out


def _phone_graph_to_tid_fst(phone_fst: VFst, tree, trans_model, transition_scale: float,
                            self_loop_scale: float, check_no_self_loops: bool = True) -> VFst:
    """Context expansion, H (TableCompose) and self-loops, projected on the
    input (transition-ids); as in ``ProtoSupervisionToSupervision``."""
    import kaldifst
    phones = trans_model.phones
    cfst, ilabel_info = compose_inverse_context(phone_fst, phones, tree.context_width,
                                                tree.central_position, phones[-1] + 1)
    h = get_h_transducer(ilabel_info, tree, trans_model, transition_scale)
    tid = VFst.from_kaldifst(kaldifst.compose(_kf_from(h), _kf_from(cfst)))
    add_self_loops(trans_model, tid, self_loop_scale, reorder=True,
                   check_no_self_loops=check_no_self_loops)
    project(tid, True)
    return tid


def proto_to_supervision_fst(proto: ProtoSupervision, tree, trans_model,
                             convert_to_pdfs: bool = True) -> Fst:
    """Kaldi ``ProtoSupervisionToSupervision``: the supervision FST of a whole
    utterance (labels pdf-id + 1, or transition-ids if not
    ``convert_to_pdfs``), states in BFS (time) order, one arc per output
    frame, weights 0."""
    phone_fst = as_vfst(proto.fst)
    tid = _phone_graph_to_tid_fst(phone_fst, tree, trans_model, 0.0, 0.0, True)
    if has_input_epsilons(tid):
        tid = rm_epsilon(tid)
    if tid.num_states == 0:
        raise ValueError("empty transition-id FST")
    sup = _time_enforce(tid, trans_model, proto.allowed_phones, convert_to_pdfs)
    sup = connect(sup)
    if convert_to_pdfs:
        project(sup, False)
    if sup.num_states == 0:
        raise SupervisionRejected("Supervision FST is empty (too many phones for too few frames?)")
    return sort_breadth_first(sup).to_fst()


# ---------------------------------------------------------------------------------------
# Splitting
# ---------------------------------------------------------------------------------------

def compute_fst_state_times(fst) -> Tuple[List[int], int]:
    """Kaldi ``ComputeFstStateTimes``: frame of each state of a BFS-sorted,
    epsilon-free supervision FST (start state 0) and the total length."""
    f = as_vfst(fst)
    if f.start != 0:
        raise ValueError("Expecting input FST start state to be zero")
    n = f.num_states
    times = [-1] * n
    times[0] = 0
    total = -1
    for s in range(n):
        nt = times[s] + 1
        if nt <= 0:
            raise ValueError("Input FST does not have required properties.")
        for a in f.arcs[s]:
            if a[0] == 0:
                raise ValueError("epsilon arc in supervision FST")
            if times[a[3]] == -1:
                times[a[3]] = nt
            elif times[a[3]] != nt:
                raise ValueError("Input FST does not have required properties.")
        if f.final[s] != INF:
            if total == -1:
                total = nt - 1
            elif total != nt - 1:
                raise ValueError("Input FST does not have required properties.")
    if any(times[i + 1] < times[i] for i in range(n - 1)) or total < 0:
        raise ValueError("Input FST does not have required properties.")
    return times, total


def split_supervision(sup_fst, start_frame: int, num_frames: int) -> Fst:
    """``SupervisionSplitter::GetFrameRange``: the FST for output frames
    ``[start_frame, start_frame + num_frames)`` of a whole-utterance
    supervision FST (a super-initial state with epsilon arcs into the states
    at ``start_frame``; arcs leaving the range go to a super-final state).
    The result still contains those epsilon arcs, as Kaldi's does."""
    f = as_vfst(sup_fst)
    frame, total = compute_fst_state_times(f)
    b, e = int(start_frame), int(start_frame) + int(num_frames)
    if not (num_frames > 0 and b >= 0 and e <= total):
        raise ValueError(f"bad frame range [{b}, {e}) for a supervision of {total} frames")
    import bisect
    bs = bisect.bisect_left(frame, b)
    es = bisect.bisect_left(frame, e, lo=bs)
    assert frame[bs] == b
    out = VFst()
    st = out.add_state()
    out.start = st
    for _ in range(bs, es):
        out.add_state()
    fin = out.add_state()
    out.final[fin] = 0.0
    for s in range(bs, es):
        os_ = s - bs + 1
        if frame[s] == b:
            out.add_arc(st, 0, 0, 0.0, os_)
        for a in f.arcs[s]:
            if a[3] >= es:
                out.add_arc(os_, a[0], a[1], a[2], fin)
            else:
                out.add_arc(os_, a[0], a[1], a[2], a[3] - bs + 1)
    return out.to_fst()


# ---------------------------------------------------------------------------------------
# Unconstrained
# ---------------------------------------------------------------------------------------

def make_unconstrained(sup_fst, trans_model) -> Fst:
    """``ConvertSupervisionToUnconstrained``: from a (split) transition-id
    supervision FST to the cyclic pdf-id+1 acceptor used as ``e2e_fsts``:
    drop olabels, turn self-loop transitions into epsilons except on arcs
    leaving the start state, DeterminizeStar + Minimize, AddSelfLoops
    (scale 0, reorder), map to pdf-id + 1, DeterminizeStar + Minimize +
    Connect."""
    import kaldifst
    f = rm_epsilon(as_vfst(sup_fst))
    ntid = trans_model.num_transition_ids
    is_loop = trans_model.tid_is_self_loop
    for s in range(f.num_states):
        for a in f.arcs[s]:
            a[1] = 0
            if not 0 < a[0] <= ntid:
                raise ValueError(f"label {a[0]} is not a transition-id")
            if is_loop[a[0]] and s != f.start:
                a[0] = 0
    k = _kf_from(f)
    if kaldifst.determinize_star(k):
        raise ValueError("partial FST when determinizing supervision")
    kaldifst.minimize(k)
    g = VFst.from_kaldifst(k)
    if g.num_states == 0:
        raise ValueError("Supervision FST became empty.")
    add_self_loops(trans_model, g, 0.0, reorder=True, check_no_self_loops=False)
    tid2pdf = trans_model.tid2pdf
    for arcs in g.arcs:
        for a in arcs:
            if a[0] != 0:
                a[0] = a[1] = int(tid2pdf[a[0]]) + 1
    k = _kf_from(g)
    if kaldifst.determinize_star(k):
        raise ValueError("partial FST when determinizing supervision")
    kaldifst.minimize(k)
    kaldifst.connect(k)
    out = Fst.from_kaldifst(k)
    if out.num_states == 0:
        raise ValueError("Supervision FST became empty.")
    return out


# ---------------------------------------------------------------------------------------
# Composition with the normalization FST
# ---------------------------------------------------------------------------------------

# Right-hand side index of compose_acceptors, per Fst object: the
# normalization FST is the same for every utterance of a run, and building its
# arc index (a Python dict per state) cost ~10 ms per call for the digits
# biphone graph (1894 states, 9162 arcs), more than the composition itself.
_COMPOSE_INDEX: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _fst_arrays(f: Fst):
    return (f.final, f.arc_src, f.arc_dst, f.arc_ilabel, f.arc_olabel, f.arc_weight)


def _compose_index(fst2):
    """(start, final costs, per state ``{ilabel: [arc, ...]}`` in arc order) of
    an epsilon-free ``fst2``. Cached for :class:`Fst` objects (weakly, keyed by
    the object; a cached entry is used only while the object still holds the
    same arrays, so assigning new arrays invalidates it -- modifying the arrays
    in place is not detected)."""
    cacheable = isinstance(fst2, Fst)
    if cacheable:
        hit = _COMPOSE_INDEX.get(fst2)
        if hit is not None and all(a is b for a, b in zip(hit[0], _fst_arrays(fst2))):
            return hit[1]
    b = as_vfst(fst2)
    index: List[Dict[int, List[list]]] = []
    for arcs in b.arcs:
        d: Dict[int, List[list]] = {}
        for arc in arcs:
            if arc[0] == 0:
                raise ValueError("compose_acceptors: epsilon in fst2")
            d.setdefault(arc[0], []).append(arc)
        index.append(d)
    out = (b.start, b.final, index)
    if cacheable:
        _COMPOSE_INDEX[fst2] = (_fst_arrays(fst2), out)
    return out


def compose_acceptors(fst1, fst2, connect_result: bool = True) -> Fst:
    """OpenFst ``Compose(fst1, fst2)`` for epsilon-free FSTs, with the state
    numbering and arc order OpenFst's ``ComposeFst`` produces when the left
    FST's label-sortedness is not known and ``fst2`` is input-label sorted
    (what happens in Kaldi's ``AddWeightToSupervisionFst``): states in
    discovery order, for each state the arcs of ``fst1`` in order, each
    matched against the arcs of ``fst2`` with that input label in their
    order; then ``Connect``. ``fst2``'s arc index is built once per
    :class:`Fst` object (see :func:`_compose_index`)."""
    a = as_vfst(fst1)
    out = VFst()
    b_start, b_final, index = _compose_index(fst2)
    if a.start < 0 or b_start < 0:
        return out.to_fst()
    state_map: Dict[Tuple[int, int], int] = {}
    tuples: List[Tuple[int, int]] = []

    def find(p):
        s = state_map.get(p)
        if s is None:
            s = len(tuples)
            state_map[p] = s
            tuples.append(p)
            out.add_state()
        return s

    out.start = find((a.start, b_start))
    s = 0
    while s < len(tuples):
        s1, s2 = tuples[s]
        f1, f2 = a.final[s1], b_final[s2]
        if f1 != INF and f2 != INF:
            out.final[s] = _times(f1, f2)
        d2 = index[s2]
        for arc1 in a.arcs[s1]:
            if arc1[1] == 0:
                raise ValueError("compose_acceptors: epsilon in fst1")
            for arc2 in d2.get(arc1[1], ()):
                ns = find((arc1[3], arc2[3]))
                out.arcs[s].append([arc1[0], arc2[1], _times(arc1[2], arc2[2]), ns])
        s += 1
    if connect_result:
        out = connect(out)
    return out.to_fst()


def _determinize_minimize(f: VFst) -> VFst:
    """Kaldi ``TryDeterminizeMinimize`` (tropical Determinize with a state
    threshold, then Minimize)."""
    import kaldifst
    if f.num_states >= SUPERVISION_MAX_STATES:
        raise SupervisionRejected("supervision FST too large to determinize")
    k = kaldifst.determinize(_kf_from(f), nstate=SUPERVISION_MAX_STATES)
    if k.num_states >= SUPERVISION_MAX_STATES - 1:
        raise SupervisionRejected("determinization stopped early")
    kaldifst.minimize(k)
    return VFst.from_kaldifst(k)


def add_weight_to_supervision(sup_fst, normalization_fst, e2e: bool = False) -> Fst:
    """``AddWeightToSupervisionFst``. Constrained (``e2e=False``): RmEpsilon,
    determinize + minimize, compose with the normalization FST, determinize +
    minimize, BFS-sort. e2e/unconstrained (``e2e=True``,
    ``AddWeightToSupervisionFstE2e``): RmEpsilon and compose only."""
    norm = as_fst(normalization_fst)
    f = rm_epsilon(as_vfst(sup_fst))
    if e2e:
        out = compose_acceptors(f.to_fst(), norm)
        if out.num_states == 0:
            raise SupervisionRejected("composition with the normalization FST is empty")
        return out
    f = _determinize_minimize(f)
    c = as_vfst(compose_acceptors(f.to_fst(), norm))
    if c.num_states == 0:
        raise SupervisionRejected("composition with the normalization FST is empty")
    c = _determinize_minimize(c)
    return sort_breadth_first(c).to_fst()


def merge_supervision(fsts: Sequence) -> Fst:
    """``MergeSupervision`` for constrained supervisions: concatenate (OpenFst
    ``Concat``, later sequences first into the result), RmEpsilon, BFS-sort."""
    fsts = [as_vfst(f) for f in fsts]
    if not fsts:
        raise ValueError("nothing to merge")
    out = fsts[-1]
    for src in reversed(fsts[:-1]):
        # fst::Concat(src, &out): out = src . out
        start2 = out.start
        n2 = out.num_states
        for s in range(src.num_states):
            ns = out.add_state()
            if src.final[s] != INF:
                out.add_arc(ns, 0, 0, src.final[s], start2)
            for a in src.arcs[s]:
                out.add_arc(ns, a[0], a[1], a[2], a[3] + n2)
        out.start = src.start + n2
    out = rm_epsilon(out)
    return sort_breadth_first(out).to_fst()


# ---------------------------------------------------------------------------------------
# Full pipeline for one chunk
# ---------------------------------------------------------------------------------------

def alignment_to_chunk_supervision(phone_ali: Sequence[Tuple[int, int]], start_frame: int,
                                   num_frames: int, tree, trans_model, normalization_fst,
                                   constrained: bool = True,
                                   frame_subsampling_factor: int = 3,
                                   left_tolerance: int = 5, right_tolerance: int = 5) -> Fst:
    """What ``chain-get-supervision`` + ``nnet3-chain-get-egs`` do for one
    chunk: proto-supervision, supervision FST (pdf labels if constrained,
    transition-ids otherwise), cut ``[start_frame, start_frame+num_frames)``
    (output frames), unconstrained conversion if not ``constrained``, and
    normalization. Returns the per-sequence numerator FST."""
    proto = alignment_to_proto_supervision(phone_ali, frame_subsampling_factor,
                                           left_tolerance, right_tolerance)
    sup = proto_to_supervision_fst(proto, tree, trans_model, convert_to_pdfs=constrained)
    part = split_supervision(sup, start_frame, num_frames)
    if constrained:
        return add_weight_to_supervision(part, normalization_fst, e2e=False)
    unc = make_unconstrained(part, trans_model)
    return add_weight_to_supervision(unc, normalization_fst, e2e=True)


# ---------------------------------------------------------------------------------------
# Flat-start (e2e)
# ---------------------------------------------------------------------------------------

def _one_state_lexicon(phones: Sequence[int]) -> VFst:
    lex = VFst()
    lex.start = lex.add_state()
    lex.final[0] = 0.0
    for p in phones:
        lex.add_arc(0, p, p, 0.0, 0)
    return lex


def compile_training_graph(phone_graph, tree, trans_model, transition_scale: float = 0.0,
                           self_loop_scale: float = 0.0, lexicon=None) -> Fst:
    """``TrainingGraphCompiler::CompileGraph`` for a graph over phones (an
    acceptor, or a transducer whose input side is phones): ``lexicon`` (a
    phone-to-word transducer; default: one state with phone:phone arcs)
    TableComposed with ``phone_graph``, context expansion, H (with
    ``transition_scale``), TableCompose, DeterminizeStar in the log semiring,
    encoded minimization, AddSelfLoops (``self_loop_scale``, reorder).
    The result has transition-ids as input labels."""
    import kaldifst
    g = as_vfst(phone_graph)
    phones = trans_model.phones
    lex = _one_state_lexicon(phones) if lexicon is None else as_vfst(lexicon)
    lk = _kf_from(lex)
    kaldifst.arcsort(lk, "olabel")
    p2w = VFst.from_kaldifst(kaldifst.compose(lk, _kf_from(g)))
    if p2w.start < 0:
        raise ValueError("empty phone-to-word FST")
    cfst, ilabel_info = _compose_context_keep_output(p2w, phones, tree)
    h = get_h_transducer(ilabel_info, tree, trans_model, transition_scale)
    t2w = kaldifst.compose(_kf_from(h), _kf_from(cfst))
    t2w = VFst.from_kaldifst(t2w)
    if t2w.start < 0:
        raise ValueError("empty training graph")
    k = _kf_from(t2w)
    kaldifst.determinize_star(k, use_log=True)
    kaldifst.minimize_encoded(k)
    tg = VFst.from_kaldifst(k)
    add_self_loops(trans_model, tg, self_loop_scale, reorder=True, check_no_self_loops=True)
    return tg.to_fst()


def _compose_context_keep_output(p2w: VFst, phones, tree):
    """Context expansion keeping the output (word) labels
    (``ComposeDeterministicOnDemandInverse`` without projection)."""
    from .den_fst import compose_inverse_context
    return compose_inverse_context(p2w, phones, tree.context_width, tree.central_position,
                                   keep_output_labels=True)


def training_graph_to_e2e_fst(training_graph, trans_model) -> Fst:
    """``TrainingGraphToSupervisionE2e``: RemoveEpsLocal, RmEpsilon, labels to
    pdf-id + 1 (an epsilon input label left over is an error)."""
    g = remove_eps_local(as_vfst(training_graph))
    g = rm_epsilon(g)
    tid2pdf = trans_model.tid2pdf
    for arcs in g.arcs:
        for a in arcs:
            if a[0] == 0:
                raise SupervisionRejected("Utterance rejected due to eps on input label")
            a[0] = a[1] = int(tid2pdf[a[0]]) + 1
    return g.to_fst()


def e2e_supervision_from_graph(phone_graph, num_frames: int, tree, trans_model,
                               normalization_fst, lexicon=None) -> Fst:
    """Flat-start numerator FST from a phone-level graph (an :class:`Fst`
    acceptor over phone ids, e.g. a transcript expanded through a lexicon
    with optional silence): training graph with transition-scale 0 and
    self-loop-scale 0, mapped to pdf-id + 1, composed with the
    normalization FST. ``num_frames`` is the sequence length T the graph will
    be used with (Kaldi stores it as frames_per_sequence)."""
    if num_frames <= 0:
        raise ValueError("num_frames must be positive")
    tg = compile_training_graph(phone_graph, tree, trans_model, 0.0, 0.0, lexicon)
    e2e = training_graph_to_e2e_fst(tg, trans_model)
    return add_weight_to_supervision(e2e, normalization_fst, e2e=True)


def e2e_supervision(phone_seq: Sequence[int], num_frames: int, tree, trans_model,
                    normalization_fst) -> Fst:
    """Flat-start numerator FST of a phone sequence (one-state phone:phone
    lexicon, no optional silence)."""
    return e2e_supervision_from_graph(make_linear_acceptor([int(p) for p in phone_seq]),
                                      num_frames, tree, trans_model, normalization_fst)


# ---------------------------------------------------------------------------------------
# Small readers for the fixture text formats
# ---------------------------------------------------------------------------------------

def read_phone_ali(path) -> Dict[str, List[Tuple[int, int]]]:
    """``utt p1 d1 ; p2 d2 ; ...`` lines -> {utt: [(phone, dur), ...]}."""
    out: Dict[str, List[Tuple[int, int]]] = {}
    with open(path) as fh:
        for line in fh:
            parts = line.split(None, 1)
            if not parts:
                continue
            items = []
            for chunk in parts[1].split(";"):
                toks = chunk.split()
                if toks:
                    items.append((int(toks[0]), int(toks[1])))
            out[parts[0]] = items
    return out


def read_phone_seqs(path) -> Dict[str, List[int]]:
    """``utt p1 p2 ...`` lines -> {utt: [phones]}."""
    out: Dict[str, List[int]] = {}
    with open(path) as fh:
        for line in fh:
            toks = line.split()
            if toks:
                out[toks[0]] = [int(t) for t in toks[1:]]
    return out

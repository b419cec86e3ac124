"""Kaldi's ``TransitionModel``: numbering of HMM transitions.

Structure (as in Kaldi):

* A *tuple* is ``(phone, hmm_state, forward_pdf, self_loop_pdf)``: an HMM
  state of a phone together with the pdf-ids it emits on its forward
  transitions and on its self-loop (equal for standard HMMs, different for
  chain topologies). The tuples are all the combinations the tree allows,
  sorted lexicographically.
* *Transition-states* are 1-based indices into the sorted tuple list
  (transition-state ``s`` is ``tuples[s-1]``).
* *Transition-ids* are 1-based and number the transitions out of each
  transition-state in order: transition-state 1 gets ids ``1..n1`` (``n1`` =
  number of transitions of its HMM state in the topology), transition-state 2
  the next ``n2`` ids, and so on. ``state2id[s]`` is the first id of state
  ``s`` and the *transition-index* of an id is ``tid - state2id[s]``, which is
  also the index of the transition in the topology's HMM state. Id 0 is unused.
* ``log_probs`` (float32, length ``num_transition_ids + 1``, element 0 unused)
  holds the log-probability of each transition; a fresh model has the log of
  the topology's probabilities.
* The pdf of a transition-id is the self-loop pdf for a self-loop
  (``dest == hmm_state``) and the forward pdf otherwise.

Binary format: ``<TransitionModel> `` + topology + ``<Triples> `` (standard:
count, then ``phone hmm_state pdf`` per tuple, int32) or ``<Tuples> `` (chain:
also the self-loop pdf) + ``</Triples> `` / ``</Tuples> `` + ``<LogProbs> ``
+ ``FV`` float vector + ``</LogProbs> </TransitionModel> ``. Text form has
the same tokens with newlines (see :meth:`TransitionModel.write`).

The numpy lookup tables (index = transition-id, entry 0 unused/-1):
``tid2pdf``, ``tid2phone``, ``tid2state`` (transition-state),
``tid2hmm_state``, ``tid2index``, ``tid2pdf_class``, ``tid_is_self_loop``,
``tid_is_final``, ``tid2dest`` (destination HMM state).
"""

from __future__ import annotations

from typing import BinaryIO, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from kbind.io.matrix import read_vector, write_vector
from kbind.io.stream import KaldiInput, KaldiObject, write_int32, write_token

from ._io import exp_f32, f32, log_f32
from .topology import NO_PDF, HmmTopology
from .tree import ContextDependency

__all__ = ["TransitionModel", "Tuple4"]

Tuple4 = Tuple[int, int, int, int]


class TransitionModel(KaldiObject):
    """Kaldi ``TransitionModel``.

    Parameters
    ----------
    topo: the HmmTopology.
    tuples: sorted ``(phone, hmm_state, forward_pdf, self_loop_pdf)`` tuples.
    log_probs: float32 log-probs indexed by transition-id (length
        ``num_transition_ids + 1``); None initialises them from the topology.
    """

    def __init__(self, topo: HmmTopology, tuples: Sequence[Tuple4],
                 log_probs: Optional[Sequence[float]] = None):
        self.topo = topo
        self.tuples: List[Tuple4] = [tuple(int(x) for x in t) for t in tuples]
        self._compute_derived()
        if log_probs is None:
            self._log_probs = self._initial_log_probs()
        else:
            lp = np.array(log_probs, dtype=np.float32)
            if lp.ndim != 1 or lp.shape[0] != self.num_transition_ids + 1:
                raise ValueError(f"log-probs have dimension {lp.shape}, expected "
                                 f"{self.num_transition_ids + 1} (num transition-ids + 1)")
            self._log_probs = lp
        self.check()
        self._compute_derived_of_probs()

    # -- construction (Kaldi's TransitionModel(ctx_dep, topo)) ------------------------------
    @classmethod
    def build(cls, topo: HmmTopology, tree: ContextDependency) -> "TransitionModel":
        """Kaldi ``TransitionModel(ctx_dep, hmm_topo)``: all tuples the tree
        allows, sorted; log-probs from the topology."""
        phones = topo.phones
        tuples: List[Tuple4] = []
        if topo.is_hmm:
            num_pdf_classes = [-1] * (max(phones) + 1)
            for p in phones:
                num_pdf_classes[p] = topo.num_pdf_classes(p)
            pdf_info = tree.get_pdf_info(phones, num_pdf_classes)
            to_states: Dict[Tuple[int, int], List[int]] = {}
            for p in phones:
                for j, st in enumerate(topo.topology_for_phone(p)):
                    if st.forward_pdf_class != NO_PDF:
                        to_states.setdefault((p, st.forward_pdf_class), []).append(j)
            for pdf, pairs in enumerate(pdf_info):
                for phone, pdf_class in pairs:
                    states = to_states.get((phone, pdf_class))
                    if not states:
                        raise ValueError(f"tree maps phone {phone} pdf-class {pdf_class} "
                                         "to a pdf but the topology has no such state")
                    for hmm_state in states:
                        tuples.append((phone, hmm_state, pdf, pdf))
        else:
            class_pairs: Dict[int, List[Tuple[int, int]]] = {}
            for p in phones:
                class_pairs[p] = [(st.forward_pdf_class, st.self_loop_pdf_class)
                                  for st in topo.topology_for_phone(p)
                                  if st.forward_pdf_class != NO_PDF]
            pdf_info = tree.get_pdf_info_pairs(phones, class_pairs)
            for p in phones:
                to_states2: Dict[Tuple[int, int], List[int]] = {}
                for j, st in enumerate(topo.topology_for_phone(p)):
                    if st.forward_pdf_class != NO_PDF:
                        to_states2.setdefault((st.forward_pdf_class, st.self_loop_pdf_class),
                                              []).append(j)
                for j, pair in enumerate(class_pairs[p]):
                    for hmm_state in to_states2[pair]:
                        for fpdf, spdf in pdf_info[p][j]:
                            tuples.append((p, hmm_state, fpdf, spdf))
        tuples.sort()
        return cls(topo, tuples)

    def _compute_derived(self) -> None:
        topo = self.topo
        T = len(self.tuples)
        state2id = np.zeros(T + 2, dtype=np.int64)
        cur = 1
        num_pdfs = 0
        self._tuple_states = []
        for s, (phone, hmm_state, fpdf, spdf) in enumerate(self.tuples, start=1):
            state2id[s] = cur
            try:
                entry = topo.topology_for_phone(phone)
            except KeyError:
                raise ValueError(f"transition-state {s}: phone {phone} is not in the topology")
            if not 0 <= hmm_state < len(entry):
                raise ValueError(f"transition-state {s}: phone {phone} has no HMM state "
                                 f"{hmm_state}")
            st = entry[hmm_state]
            self._tuple_states.append(st)
            num_pdfs = max(num_pdfs, 1 + fpdf, 1 + spdf)
            cur += len(st.transitions)
        state2id[T + 1] = cur
        if T > 0:
            state2id[0] = 0
        self.state2id = state2id
        self._num_pdfs = num_pdfs
        n = cur  # num transition-ids + 1
        tid2state = np.zeros(n, np.int32)
        tid2index = np.full(n, -1, np.int32)
        tid2phone = np.full(n, -1, np.int32)
        tid2hmm = np.full(n, -1, np.int32)
        tid2pdf = np.full(n, -1, np.int32)
        tid2pdf_class = np.full(n, -1, np.int32)
        tid2dest = np.full(n, -1, np.int32)
        loop = np.zeros(n, bool)
        final = np.zeros(n, bool)
        self_loop_of = np.zeros(T + 1, np.int32)
        for s, ((phone, hmm_state, fpdf, spdf), st) in enumerate(
                zip(self.tuples, self._tuple_states), start=1):
            entry_len = len(self.topo.topology_for_phone(phone))
            first = int(state2id[s])
            for idx, (dest, _) in enumerate(st.transitions):
                tid = first + idx
                tid2state[tid] = s
                tid2index[tid] = idx
                tid2phone[tid] = phone
                tid2hmm[tid] = hmm_state
                tid2dest[tid] = dest
                is_loop = dest == hmm_state
                loop[tid] = is_loop
                final[tid] = dest + 1 == entry_len
                if is_loop:
                    tid2pdf[tid] = spdf
                    tid2pdf_class[tid] = st.self_loop_pdf_class
                    if self_loop_of[s] == 0:
                        self_loop_of[s] = tid
                else:
                    tid2pdf[tid] = fpdf
                    tid2pdf_class[tid] = st.forward_pdf_class
        self.tid2state = tid2state
        self.tid2index = tid2index
        self.tid2phone = tid2phone
        self.tid2hmm_state = tid2hmm
        self.tid2pdf = tid2pdf
        self.tid2pdf_class = tid2pdf_class
        self.tid2dest = tid2dest
        self.tid_is_self_loop = loop
        self.tid_is_final = final
        self._self_loop_of = self_loop_of
        for arr in (tid2state, tid2index, tid2phone, tid2hmm, tid2pdf, tid2pdf_class,
                    tid2dest, loop, final, self_loop_of):
            arr.flags.writeable = False

    def _initial_log_probs(self) -> np.ndarray:
        lp = np.zeros(self.num_transition_ids + 1, np.float32)
        for tid in range(1, self.num_transition_ids + 1):
            s = int(self.tid2state[tid])
            prob = self._tuple_states[s - 1].transitions[int(self.tid2index[tid])][1]
            if prob <= 0.0:
                raise ValueError("TransitionModel: zero transition probability in the topology")
            lp[tid] = log_f32(prob)
        return lp

    def _compute_derived_of_probs(self) -> None:
        nsl = np.zeros(self.num_transition_states + 1, np.float32)
        for s in range(1, self.num_transition_states + 1):
            tid = int(self._self_loop_of[s])
            if tid == 0:
                nsl[s] = 0.0
            else:
                p = exp_f32(self._log_probs[tid])
                q = f32(1.0 - p)
                if q <= 0.0:
                    q = f32(1.0e-10)
                nsl[s] = log_f32(q)
        self._non_self_loop_log_probs = nsl

    def check(self) -> None:
        """Kaldi ``TransitionModel::Check``; raises ValueError."""
        if self.num_transition_ids == 0 or self.num_transition_states == 0:
            raise ValueError("TransitionModel: no transition-states or transition-ids")
        for i in range(len(self.tuples) - 1):
            if not self.tuples[i] < self.tuples[i + 1]:
                raise ValueError(f"TransitionModel: tuples are not sorted and unique at "
                                 f"transition-state {i + 1}: {self.tuples[i]} >= "
                                 f"{self.tuples[i + 1]}")
        lp = self._log_probs[1:]
        if not np.all(np.isfinite(lp)) or np.any(lp > 0.0):
            bad = int(np.nonzero(~(np.isfinite(lp) & (lp <= 0.0)))[0][0]) + 1
            raise ValueError(f"TransitionModel: log-prob of transition-id {bad} is "
                             f"{self._log_probs[bad]} (must be finite and <= 0)")

    # -- sizes ---------------------------------------------------------------------------
    @property
    def is_hmm(self) -> bool:
        return self.topo.is_hmm

    @property
    def num_pdfs(self) -> int:
        return self._num_pdfs

    @property
    def num_transition_ids(self) -> int:
        return int(self.state2id[len(self.tuples) + 1]) - 1

    @property
    def num_transition_states(self) -> int:
        return len(self.tuples)

    @property
    def num_phones(self) -> int:
        """The largest phone id in the model (Kaldi ``NumPhones``)."""
        return max((t[0] for t in self.tuples), default=0)

    @property
    def phones(self) -> List[int]:
        return list(self.topo.phones)

    @property
    def log_probs(self) -> np.ndarray:
        """float32 log-probs indexed by transition-id (entry 0 unused). Read-only
        view; use :meth:`set_log_probs` to change them."""
        v = self._log_probs.view()
        v.flags.writeable = False
        return v

    def set_log_probs(self, log_probs) -> None:
        lp = np.array(log_probs, dtype=np.float32)
        if lp.shape != (self.num_transition_ids + 1,):
            raise ValueError(f"log-probs must have shape ({self.num_transition_ids + 1},)")
        old = self._log_probs
        self._log_probs = lp
        try:
            self.check()
        except ValueError:
            self._log_probs = old
            raise
        self._compute_derived_of_probs()

    @property
    def non_self_loop_log_probs(self) -> np.ndarray:
        """float32, indexed by transition-state (entry 0 unused)."""
        v = self._non_self_loop_log_probs.view()
        v.flags.writeable = False
        return v

    # -- per transition-id queries ---------------------------------------------------------
    def _tid(self, tid: int) -> int:
        tid = int(tid)
        if not 1 <= tid <= self.num_transition_ids:
            raise ValueError(f"transition-id {tid} out of range [1, {self.num_transition_ids}]")
        return tid

    def _tstate(self, s: int) -> int:
        s = int(s)
        if not 1 <= s <= self.num_transition_states:
            raise ValueError(f"transition-state {s} out of range "
                             f"[1, {self.num_transition_states}]")
        return s

    def transition_id_to_pdf(self, tid: int) -> int:
        return int(self.tid2pdf[self._tid(tid)])

    def transition_id_to_pdf_class(self, tid: int) -> int:
        return int(self.tid2pdf_class[self._tid(tid)])

    def transition_id_to_phone(self, tid: int) -> int:
        return int(self.tid2phone[self._tid(tid)])

    def transition_id_to_hmm_state(self, tid: int) -> int:
        return int(self.tid2hmm_state[self._tid(tid)])

    def transition_id_to_transition_state(self, tid: int) -> int:
        return int(self.tid2state[self._tid(tid)])

    def transition_id_to_transition_index(self, tid: int) -> int:
        return int(self.tid2index[self._tid(tid)])

    def is_self_loop(self, tid: int) -> bool:
        return bool(self.tid_is_self_loop[self._tid(tid)])

    def is_final(self, tid: int) -> bool:
        """True if the transition goes to the final (non-emitting) state of the phone."""
        return bool(self.tid_is_final[self._tid(tid)])

    def get_transition_log_prob(self, tid: int) -> float:
        return float(self._log_probs[self._tid(tid)])

    def get_transition_prob(self, tid: int) -> float:
        return exp_f32(self._log_probs[self._tid(tid)])

    def get_transition_log_prob_ignoring_self_loops(self, tid: int) -> float:
        tid = self._tid(tid)
        return f32(np.float32(self._log_probs[tid])
                   - self._non_self_loop_log_probs[self.tid2state[tid]])

    # -- per transition-state queries ------------------------------------------------
    def self_loop_of(self, tstate: int) -> int:
        """The self-loop transition-id of a transition-state, or 0 if none."""
        return int(self._self_loop_of[self._tstate(tstate)])

    def get_non_self_loop_log_prob(self, tstate: int) -> float:
        """log(1 - self-loop prob) of a transition-state (0 without self-loop)."""
        return float(self._non_self_loop_log_probs[self._tstate(tstate)])

    def num_transition_indices(self, tstate: int) -> int:
        s = self._tstate(tstate)
        return int(self.state2id[s + 1] - self.state2id[s])

    def pair_to_transition_id(self, tstate: int, index: int) -> int:
        s = self._tstate(tstate)
        if not 0 <= index < self.num_transition_indices(s):
            raise ValueError(f"transition-index {index} out of range for transition-state {s}")
        return int(self.state2id[s]) + int(index)

    def transition_state_to_phone(self, tstate: int) -> int:
        return self.tuples[self._tstate(tstate) - 1][0]

    def transition_state_to_hmm_state(self, tstate: int) -> int:
        return self.tuples[self._tstate(tstate) - 1][1]

    def transition_state_to_forward_pdf(self, tstate: int) -> int:
        return self.tuples[self._tstate(tstate) - 1][2]

    def transition_state_to_self_loop_pdf(self, tstate: int) -> int:
        return self.tuples[self._tstate(tstate) - 1][3]

    def transition_state_to_forward_pdf_class(self, tstate: int) -> int:
        return self._tuple_states[self._tstate(tstate) - 1].forward_pdf_class

    def transition_state_to_self_loop_pdf_class(self, tstate: int) -> int:
        return self._tuple_states[self._tstate(tstate) - 1].self_loop_pdf_class

    def tuple_to_transition_state(self, phone: int, hmm_state: int, forward_pdf: int,
                                  self_loop_pdf: Optional[int] = None) -> int:
        """Kaldi ``TupleToTransitionState`` (``self_loop_pdf`` defaults to the
        forward pdf, i.e. ``TripleToTransitionState``)."""
        import bisect
        if self_loop_pdf is None:
            self_loop_pdf = forward_pdf
        t = (int(phone), int(hmm_state), int(forward_pdf), int(self_loop_pdf))
        i = bisect.bisect_left(self.tuples, t)
        if i == len(self.tuples) or self.tuples[i] != t:
            raise KeyError(f"tuple {t} not found (incompatible tree and model?)")
        return i + 1

    # -- misc -----------------------------------------------------------------------------
    def compatible(self, other: "TransitionModel") -> bool:
        """Kaldi ``Compatible``: same topology and tuples (log-probs may differ)."""
        return self.topo == other.topo and self.tuples == other.tuples

    def __eq__(self, other) -> bool:
        if not isinstance(other, TransitionModel):
            return NotImplemented
        return (self.compatible(other)
                and np.array_equal(self._log_probs.view(np.uint32),
                                   other._log_probs.view(np.uint32)))

    def __repr__(self) -> str:
        return (f"TransitionModel(num_phones={self.num_phones}, num_pdfs={self.num_pdfs}, "
                f"num_transition_states={self.num_transition_states}, "
                f"num_transition_ids={self.num_transition_ids}, is_hmm={self.is_hmm})")

    def show_transitions(self, phone_names: Union[Mapping[int, str], Sequence[str], str, "object"],
                         occs: Optional[Sequence[float]] = None) -> str:
        """The text Kaldi's ``show-transitions phones.txt final.mdl [occs]``
        prints (``TransitionModel::Print``). ``phone_names``: a dict id -> name,
        a list indexed by id, or the path of a ``phones.txt`` symbol table."""
        names = _phone_names(phone_names)
        is_hmm = self.is_hmm
        out = []
        for s in range(1, self.num_transition_states + 1):
            phone, hmm_state, fpdf, spdf = self.tuples[s - 1]
            if phone not in names:
                raise KeyError(f"no name for phone {phone}")
            head = f"Transition-state {s}: phone = {names[phone]} hmm-state = {hmm_state}"
            if is_hmm:
                head += f" pdf = {fpdf}\n"
            else:
                head += f" forward-pdf = {fpdf} self-loop-pdf = {spdf}\n"
            out.append(head)
            for idx in range(self.num_transition_indices(s)):
                tid = int(self.state2id[s]) + idx
                p = exp_f32(self._log_probs[tid])
                line = f" Transition-id = {tid} p = {_cfmt(p, 6)}"
                if occs is not None:
                    pdf = spdf if self.tid_is_self_loop[tid] else fpdf
                    line += f" count of pdf = {_cfmt(float(occs[pdf]), 6)}"
                if self.tid_is_self_loop[tid]:
                    line += " [self-loop]\n"
                else:
                    line += f" [{hmm_state} -> {int(self.tid2dest[tid])}]\n"
                out.append(line)
        return "".join(out)

    # -- I/O -------------------------------------------------------------------------------
    @classmethod
    def read(cls, inp: KaldiInput, binary: bool) -> "TransitionModel":
        """Kaldi ``TransitionModel::Read`` (``<Triples>`` or ``<Tuples>``)."""
        start = inp.offset
        inp.expect_token("<TransitionModel>")
        topo = HmmTopology.read(inp, binary)
        tok_start = inp.offset
        tok = inp.read_token("<Triples> or <Tuples>")
        if tok not in ("<Triples>", "<Tuples>"):
            raise inp.error(f"expected <Triples> or <Tuples>, got {tok!r}", offset=tok_start)
        size = inp.read_int32(binary, "number of tuples")
        if size < 0:
            raise inp.error(f"negative number of tuples {size}", offset=tok_start)
        tuples = []
        for _ in range(size):
            phone = inp.read_int32(binary, "tuple phone")
            hmm_state = inp.read_int32(binary, "tuple hmm-state")
            fpdf = inp.read_int32(binary, "tuple pdf")
            spdf = inp.read_int32(binary, "tuple self-loop pdf") if tok == "<Tuples>" else fpdf
            tuples.append((phone, hmm_state, fpdf, spdf))
        end_start = inp.offset
        end = inp.read_token("</Triples> or </Tuples>")
        if end not in ("</Triples>", "</Tuples>"):
            raise inp.error(f"expected </Triples> or </Tuples>, got {end!r}", offset=end_start)
        inp.expect_token("<LogProbs>")
        if binary:
            log_probs = read_vector(inp, True).astype(np.float32)
        else:
            log_probs = inp.read_text_float_vector("transition log-probs")
        inp.expect_token("</LogProbs>")
        inp.expect_final_token("</TransitionModel>")
        with inp.wrap_errors(start):
            return cls(topo, tuples, log_probs)

    def write(self, f: BinaryIO, binary: bool) -> None:
        """Kaldi ``TransitionModel::Write`` (without the ``\\0B`` marker)."""
        is_hmm = self.is_hmm
        write_token(f, "<TransitionModel>", binary)
        if not binary:
            f.write(b"\n")
        self.topo.write(f, binary)
        write_token(f, "<Triples>" if is_hmm else "<Tuples>", binary)
        write_int32(f, len(self.tuples), binary)
        if not binary:
            f.write(b"\n")
        for phone, hmm_state, fpdf, spdf in self.tuples:
            write_int32(f, phone, binary)
            write_int32(f, hmm_state, binary)
            write_int32(f, fpdf, binary)
            if not is_hmm:
                write_int32(f, spdf, binary)
            if not binary:
                f.write(b"\n")
        write_token(f, "</Triples>" if is_hmm else "</Tuples>", binary)
        if not binary:
            f.write(b"\n")
        write_token(f, "<LogProbs>", binary)
        if not binary:
            f.write(b"\n")
        write_vector(f, np.asarray(self._log_probs, dtype=np.float32), binary)
        write_token(f, "</LogProbs>", binary)
        if not binary:
            f.write(b"\n")
        write_token(f, "</TransitionModel>", binary)
        if not binary:
            f.write(b"\n")

    @classmethod
    def from_file(cls, path) -> "TransitionModel":
        """Read a transition model, or the transition model at the start of an
        acoustic model file (``final.mdl``: the AM follows and is ignored)."""
        return super().from_file(path)


def _cfmt(x: float, digits: int) -> str:
    """C++ ``ostream << x`` with the given precision (default 6)."""
    if x != x:
        return "nan"
    if x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def _phone_names(spec) -> Dict[int, str]:
    if isinstance(spec, Mapping):
        return {int(k): str(v) for k, v in spec.items()}
    if isinstance(spec, (str, bytes)) or hasattr(spec, "__fspath__"):
        names = {}
        with open(spec, "r", encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) == 2:
                    names[int(parts[1])] = parts[0]
        return names
    return {i: str(n) for i, n in enumerate(spec)}

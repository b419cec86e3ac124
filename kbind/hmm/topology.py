"""Kaldi's ``HmmTopology``: the HMM of each phone.

A topology is a list of *entries*; each entry is the HMM shared by a set of
phones. An entry is a list of :class:`HmmState`; state ``i`` has a forward
pdf-class, a self-loop pdf-class and a list of ``(dest_state, prob)``
transitions. The last state of every entry is the non-emitting final state
(no pdf-class, no transitions). ``phones`` is the sorted list of phones
covered and ``phone2idx[phone]`` the index of the phone's entry (-1 where a
phone id is not covered).

Standard (GMM-style) topologies have ``self_loop_pdf_class ==
forward_pdf_class`` for every state (``is_hmm`` is True); the 'chain'
topology of ``steps/nnet3/chain/gen_topo.py`` has a different pdf-class on the
self-loop (``is_hmm`` False). The distinction matters for serialisation:

* text (``<Topology> <TopologyEntry> <ForPhones> 1 2 </ForPhones> <State> 0
  <PdfClass> 0 <Transition> 0 0.75 ... </State> ... </TopologyEntry>
  </Topology>``), where chain states use ``<ForwardPdfClass> f
  <SelfLoopPdfClass> s`` instead of ``<PdfClass> c``;
* binary: ``<Topology> `` phones (int32 vector), phone2idx (int32 vector),
  then for chain topologies the marker int32 -1, the number of entries, and
  per entry the number of states and per state the forward pdf-class (plus the
  self-loop pdf-class for chain), the number of transitions and (int32 dest,
  float32 prob) pairs; then ``</Topology> ``.

Transition probabilities are float32 in Kaldi; they are stored here as Python
floats holding float32 values.

:meth:`HmmTopology.kaldi_3state` and :meth:`HmmTopology.chain_2state` build
the topologies of ``utils/gen_topo.pl`` and ``steps/nnet3/chain/gen_topo.py``;
:meth:`HmmTopology.to_lang_topo_text` prints a topology the way those scripts
print it (the ``lang/topo`` file), while :meth:`write` prints it as Kaldi's
``HmmTopology::Write`` does (with a space after every token).
"""

from __future__ import annotations

from typing import BinaryIO, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from kbind.io.stream import (KaldiInput, KaldiObject, format_float, write_float, write_int32,
                             write_int32_vector_raw, write_token)

from ._io import f32

__all__ = ["HmmState", "HmmTopology", "NO_PDF"]

NO_PDF = -1  # Kaldi kNoPdf


class HmmState:
    """One HMM state: pdf-classes and outgoing transitions ``[(dest, prob)]``.

    ``HmmState(c)`` has both pdf-classes equal to ``c`` (Kaldi ``<PdfClass>``);
    ``HmmState(f, s)`` is a chain state; ``HmmState()`` is non-emitting.
    """

    __slots__ = ("forward_pdf_class", "self_loop_pdf_class", "transitions")

    def __init__(self, forward_pdf_class: int = NO_PDF,
                 self_loop_pdf_class: Optional[int] = None,
                 transitions: Iterable[Tuple[int, float]] = ()):
        self.forward_pdf_class = int(forward_pdf_class)
        self.self_loop_pdf_class = (self.forward_pdf_class if self_loop_pdf_class is None
                                    else int(self_loop_pdf_class))
        self.transitions: List[Tuple[int, float]] = [(int(d), f32(p)) for d, p in transitions]

    @property
    def pdf_class(self) -> int:
        """The forward pdf-class (Kaldi's ``pdf_class`` of old topologies)."""
        return self.forward_pdf_class

    @property
    def is_emitting(self) -> bool:
        return self.forward_pdf_class != NO_PDF

    def __eq__(self, other) -> bool:
        if not isinstance(other, HmmState):
            return NotImplemented
        return (self.forward_pdf_class == other.forward_pdf_class
                and self.self_loop_pdf_class == other.self_loop_pdf_class
                and self.transitions == other.transitions)

    def __repr__(self) -> str:
        if self.forward_pdf_class == self.self_loop_pdf_class:
            pc = f"{self.forward_pdf_class}"
        else:
            pc = f"{self.forward_pdf_class}, {self.self_loop_pdf_class}"
        return f"HmmState({pc}, transitions={self.transitions})"


TopologyEntry = List[HmmState]


class HmmTopology(KaldiObject):
    """Kaldi ``HmmTopology``.

    Parameters
    ----------
    phones: sorted phone ids covered.
    phone2idx: for every phone id up to ``max(phones)``, the entry index or -1.
    entries: the topology entries (lists of :class:`HmmState`).
    check: run Kaldi's ``HmmTopology::Check`` (raises ValueError).
    """

    def __init__(self, phones: Sequence[int], phone2idx: Sequence[int],
                 entries: Sequence[Sequence[HmmState]], check: bool = True):
        self.phones: List[int] = [int(p) for p in phones]
        self.phone2idx: List[int] = [int(i) for i in phone2idx]
        self.entries: List[TopologyEntry] = [list(e) for e in entries]
        if check:
            self.check()

    # -- construction ----------------------------------------------------------
    @classmethod
    def from_entries(cls, entries: Sequence[Tuple[Sequence[int], Sequence[HmmState]]]
                     ) -> "HmmTopology":
        """Build from ``[(phones_of_entry, states), ...]`` as the text reader does."""
        phones: List[int] = []
        phone2idx: List[int] = []
        out_entries = []
        for idx, (entry_phones, states) in enumerate(entries):
            out_entries.append([HmmState(s.forward_pdf_class, s.self_loop_pdf_class,
                                         s.transitions) for s in states])
            for p in entry_phones:
                p = int(p)
                if p <= 0:
                    raise ValueError(f"phone ids must be positive, got {p}")
                if len(phone2idx) <= p:
                    phone2idx.extend([-1] * (p + 1 - len(phone2idx)))
                if phone2idx[p] != -1:
                    raise ValueError(f"phone {p} appears in multiple topology entries")
                phone2idx[p] = idx
                phones.append(p)
        phones.sort()
        return cls(phones, phone2idx, out_entries)

    @classmethod
    def kaldi_3state(cls, phones: Iterable[int], silence_phones: Iterable[int],
                     num_nonsil_states: int = 3, num_sil_states: int = 5) -> "HmmTopology":
        """The topology of ``utils/gen_topo.pl <nonsil> <sil> <nonsil-phones> <sil-phones>``.

        ``phones`` may be the non-silence phones or all phones (phones that are
        in ``silence_phones`` get the silence topology). Non-silence: a left-to-
        right HMM, each state with self-loop 0.75 and forward 0.25. Silence: state
        0 goes to states 0..S-2, the middle states go to 1..S-1 (all with
        probability 1/(S-1)), and state S-1 has self-loop 0.75, exit 0.25.
        """
        sil = sorted({int(p) for p in silence_phones})
        nonsil = sorted({int(p) for p in phones} - set(sil))
        if not 1 <= num_nonsil_states <= 100:
            raise ValueError(f"unexpected number of nonsilence-model states {num_nonsil_states}")
        if not 3 <= num_sil_states <= 100:
            raise ValueError(f"unexpected number of silence-model states {num_sil_states}")
        entries = []
        if nonsil:
            n = num_nonsil_states
            states = [HmmState(s, transitions=[(s, 0.75), (s + 1, 0.25)]) for s in range(n)]
            states.append(HmmState())
            entries.append((nonsil, states))
        if sil:
            n = num_sil_states
            transp = 1.0 / (n - 1)
            states = [HmmState(0, transitions=[(d, transp) for d in range(n - 1)])]
            for s in range(1, n - 1):
                states.append(HmmState(s, transitions=[(d, transp) for d in range(1, n)]))
            states.append(HmmState(n - 1, transitions=[(n - 1, 0.75), (n, 0.25)]))
            states.append(HmmState())
            entries.append((sil, states))
        if not entries:
            raise ValueError("no phones given")
        return cls.from_entries(entries)

    @classmethod
    def chain_2state(cls, phones: Iterable[int],
                     silence_phones: Iterable[int] = ()) -> "HmmTopology":
        """The topology of ``steps/nnet3/chain/gen_topo.py``: one entry for all
        phones, with one emitting state (forward pdf-class 0, self-loop pdf-class
        1, self-loop and exit probability 0.5 each) and the final state."""
        all_phones = sorted({int(p) for p in phones} | {int(p) for p in silence_phones})
        if not all_phones:
            raise ValueError("no phones given")
        states = [HmmState(0, 1, transitions=[(0, 0.5), (1, 0.5)]), HmmState()]
        return cls.from_entries([(all_phones, states)])

    # -- queries ----------------------------------------------------------------
    @property
    def is_hmm(self) -> bool:
        """True unless some state has a self-loop pdf-class different from its
        forward pdf-class (Kaldi ``IsHmm()``; False for chain topologies)."""
        for phone in self.phones:
            for s in self.topology_for_phone(phone):
                if s.forward_pdf_class != s.self_loop_pdf_class:
                    return False
        return True

    def topology_for_phone(self, phone: int) -> TopologyEntry:
        """The entry (list of HmmState) of ``phone``; KeyError if not covered."""
        phone = int(phone)
        if phone < 0 or phone >= len(self.phone2idx) or self.phone2idx[phone] == -1:
            raise KeyError(f"phone {phone} is not covered by the topology")
        return self.entries[self.phone2idx[phone]]

    def num_pdf_classes(self, phone: int) -> int:
        """1 + the largest pdf-class (forward or self-loop) of the phone's HMM."""
        m = 0
        for s in self.topology_for_phone(phone):
            m = max(m, s.forward_pdf_class, s.self_loop_pdf_class)
        return m + 1

    def phone_to_num_pdf_classes(self) -> List[int]:
        """Kaldi ``GetPhoneToNumPdfClasses``: list indexed by phone, -1 if absent."""
        out = [-1] * (self.phones[-1] + 1)
        for p in self.phones:
            out[p] = self.num_pdf_classes(p)
        return out

    def min_length(self, phone: int) -> int:
        """Minimum number of frames (emitting states visited) to traverse the
        phone's HMM (Kaldi ``MinLength``)."""
        entry = self.topology_for_phone(phone)
        big = 2 ** 31 - 1
        n = len(entry)
        ml = [big] * n
        ml[0] = 0 if entry[0].forward_pdf_class == -1 else 1
        changed = True
        while changed:
            changed = False
            for s in range(n):
                if ml[s] == big:
                    continue
                for dest, _ in entry[s].transitions:
                    cand = ml[s] + (0 if entry[dest].forward_pdf_class == -1 else 1)
                    if cand < ml[dest]:
                        ml[dest] = cand
                        changed = True
        return ml[-1]

    def shortest_phone_length(self) -> int:
        return min(self.min_length(p) for p in self.phones)

    def entry_phones(self, index: int) -> List[int]:
        """Phones that use entry ``index`` (ascending)."""
        return [p for p, i in enumerate(self.phone2idx) if i == index]

    def __eq__(self, other) -> bool:
        if not isinstance(other, HmmTopology):
            return NotImplemented
        return (self.phones == other.phones and self.phone2idx == other.phone2idx
                and self.entries == other.entries)

    def __repr__(self) -> str:
        return (f"HmmTopology(phones={self.phones}, num_entries={len(self.entries)}, "
                f"is_hmm={self.is_hmm})")

    # -- checking ---------------------------------------------------------------------
    def check(self) -> None:
        """Kaldi ``HmmTopology::Check``; raises ValueError."""
        if not self.entries or not self.phones or not self.phone2idx:
            raise ValueError("HmmTopology: empty object")
        if any(self.phones[i] >= self.phones[i + 1] for i in range(len(self.phones) - 1)):
            raise ValueError("HmmTopology: phones are not sorted and unique")
        seen = [False] * len(self.entries)
        for phone in self.phones:
            if phone < 0 or phone >= len(self.phone2idx) or \
                    not 0 <= self.phone2idx[phone] < len(self.entries):
                raise ValueError(f"HmmTopology: phone {phone} has no valid entry index")
            seen[self.phone2idx[phone]] = True
        for i, entry in enumerate(self.entries):
            if not seen[i]:
                raise ValueError(f"HmmTopology: entry {i} has no phones")
            n = len(entry)
            if n <= 1:
                raise ValueError(f"HmmTopology: entry {i} must have at least one emitting state")
            if entry[-1].transitions:
                raise ValueError(f"HmmTopology: last state of entry {i} must have no transitions")
            if entry[-1].forward_pdf_class != NO_PDF:
                raise ValueError(f"HmmTopology: last state of entry {i} must not be emitting")
            has_in = [False] * n
            pdf_classes = set()
            for j, st in enumerate(entry):
                if st.forward_pdf_class != NO_PDF:
                    pdf_classes.add(st.forward_pdf_class)
                    pdf_classes.add(st.self_loop_pdf_class)
                tot = 0.0
                dests = set()
                for dest, prob in st.transitions:
                    tot += prob
                    if not prob > 0.0:
                        raise ValueError(f"HmmTopology: entry {i} state {j}: transition "
                                         f"probability {prob} is not positive")
                    if dest == n - 1 and st.forward_pdf_class == NO_PDF:
                        raise ValueError(f"HmmTopology: entry {i} state {j} is non-emitting "
                                         "and has a transition to the final state")
                    if dest < 0 or dest >= n:
                        raise ValueError(f"HmmTopology: entry {i} state {j}: invalid "
                                         f"destination state {dest}")
                    if dest in dests:
                        raise ValueError(f"HmmTopology: entry {i} state {j}: duplicate "
                                         f"transition to {dest}")
                    if dest == j and st.self_loop_pdf_class == NO_PDF:
                        raise ValueError(f"HmmTopology: entry {i} state {j}: non-emitting "
                                         "states cannot have self-loops")
                    dests.add(dest)
                    has_in[dest] = True
                if j + 1 < n and not tot > 0.0:
                    raise ValueError(f"HmmTopology: entry {i} state {j}: non-final state "
                                     "must have transitions out")
            for j in range(1, n):
                if not has_in[j]:
                    raise ValueError(f"HmmTopology: entry {i} state {j} has no input transitions")
            pcs = sorted(pdf_classes)
            if not pcs or pcs[0] != 0 or pcs[-1] != len(pcs) - 1:
                raise ValueError(f"HmmTopology: entry {i}: pdf-classes must be contiguous "
                                 "and start from zero")

    # -- I/O ------------------------------------------------------------------------------
    @classmethod
    def read(cls, inp: KaldiInput, binary: bool) -> "HmmTopology":
        """Kaldi ``HmmTopology::Read`` (binary or the text format above)."""
        start = inp.offset
        inp.expect_token("<Topology>")
        if not binary:
            entries = []
            while True:
                tok_start = inp.offset
                tok = inp.read_token("<TopologyEntry> or </Topology>")
                if tok == "</Topology>":
                    break
                if tok != "<TopologyEntry>":
                    raise inp.error(f"reading HmmTopology: expected </Topology> or "
                                    f"<TopologyEntry>, got {tok!r}", offset=tok_start)
                inp.expect_token("<ForPhones>")
                entry_phones = []
                while True:
                    tok_start = inp.offset
                    s = inp.read_token("phone id or </ForPhones>")
                    if s == "</ForPhones>":
                        break
                    try:
                        entry_phones.append(int(s))
                    except ValueError:
                        raise inp.error(f"reading HmmTopology: expected integer phone id, "
                                        f"got {s!r}", offset=tok_start) from None
                states: List[HmmState] = []
                tok_start = inp.offset
                tok = inp.read_token("<State> or </TopologyEntry>")
                while tok != "</TopologyEntry>":
                    if tok != "<State>":
                        raise inp.error(f"reading HmmTopology: expected </TopologyEntry> or "
                                        f"<State>, got {tok!r}", offset=tok_start)
                    num_start = inp.offset
                    state = inp.read_int32(False, "state index")
                    if state != len(states):
                        raise inp.error(f"reading HmmTopology: states must be numbered in "
                                        f"order from zero: expected {len(states)}, got {state}",
                                        offset=num_start)
                    tok_start = inp.offset
                    tok = inp.read_token("token in <State>")
                    if tok == "<PdfClass>":
                        st = HmmState(inp.read_int32(False, "pdf-class"))
                        tok_start = inp.offset
                        tok = inp.read_token("token in <State>")
                        if tok == "<SelfLoopPdfClass>":
                            raise inp.error("pdf classes should be defined using <PdfClass> or "
                                            "a <ForwardPdfClass>/<SelfLoopPdfClass> pair",
                                            offset=tok_start)
                    elif tok == "<ForwardPdfClass>":
                        fwd = inp.read_int32(False, "forward pdf-class")
                        inp.expect_token("<SelfLoopPdfClass>")
                        slp = inp.read_int32(False, "self-loop pdf-class")
                        st = HmmState(fwd, slp)
                        tok_start = inp.offset
                        tok = inp.read_token("token in <State>")
                    else:
                        st = HmmState()
                    while tok == "<Transition>":
                        dest = inp.read_int32(False, "transition destination")
                        prob = inp.read_float(False, "transition probability")
                        st.transitions.append((dest, f32(prob)))
                        tok_start = inp.offset
                        tok = inp.read_token("token in <State>")
                    if tok == "<Final>":
                        raise inp.error("old-format topology (<Final>) is not supported",
                                        offset=tok_start)
                    if tok != "</State>":
                        raise inp.error(f"reading HmmTopology: expected </State>, got {tok!r}",
                                        offset=tok_start)
                    states.append(st)
                    tok_start = inp.offset
                    tok = inp.read_token("<State> or </TopologyEntry>")
                entries.append((entry_phones, states))
            with inp.wrap_errors(start):
                return cls.from_entries(entries)
        phones = inp.read_int32_vector_raw(True, "topology phones")
        phone2idx = inp.read_int32_vector_raw(True, "topology phone2idx")
        sz = inp.read_int32(True, "number of topology entries")
        is_hmm = True
        if sz == -1:
            is_hmm = False
            sz = inp.read_int32(True, "number of topology entries")
        if sz < 0:
            raise inp.error(f"negative number of topology entries {sz}")
        entries = []
        for _ in range(sz):
            n_states = inp.read_int32(True, "number of states")
            if n_states < 0:
                raise inp.error(f"negative number of states {n_states}")
            states = []
            for _ in range(n_states):
                fwd = inp.read_int32(True, "forward pdf-class")
                slp = fwd if is_hmm else inp.read_int32(True, "self-loop pdf-class")
                n_tr = inp.read_int32(True, "number of transitions")
                if n_tr < 0:
                    raise inp.error(f"negative number of transitions {n_tr}")
                trans = []
                for _ in range(n_tr):
                    dest = inp.read_int32(True, "transition destination")
                    prob = inp.read_float(True, "transition probability")
                    trans.append((dest, prob))
                states.append(HmmState(fwd, slp, trans))
            entries.append(states)
        inp.expect_final_token("</Topology>")
        with inp.wrap_errors(start):
            return cls(phones.tolist(), phone2idx.tolist(), entries)

    def write(self, f: BinaryIO, binary: bool) -> None:
        """Kaldi ``HmmTopology::Write`` (without the ``\\0B`` marker)."""
        is_hmm = self.is_hmm
        write_token(f, "<Topology>", binary)
        if not binary:
            out = ["\n"]
            for tokens in self._entry_lines(format_float):
                out.append("".join(t + " " for t in tokens) + "\n")
            f.write("".join(out).encode("ascii"))
        else:
            write_int32_vector_raw(f, self.phones, True)
            write_int32_vector_raw(f, self.phone2idx, True)
            if not is_hmm:
                write_int32(f, -1, True)
            write_int32(f, len(self.entries), True)
            for entry in self.entries:
                write_int32(f, len(entry), True)
                for st in entry:
                    write_int32(f, st.forward_pdf_class, True)
                    if not is_hmm:
                        write_int32(f, st.self_loop_pdf_class, True)
                    write_int32(f, len(st.transitions), True)
                    for dest, prob in st.transitions:
                        write_int32(f, dest, True)
                        write_float(f, prob, True)
        write_token(f, "</Topology>", binary)
        if not binary:
            f.write(b"\n")

    def to_lang_topo_text(self) -> str:
        """The topology as the ``lang/topo`` scripts print it (no space after the
        last token of a line): identical to the output of ``utils/gen_topo.pl``
        and ``steps/nnet3/chain/gen_topo.py`` for the topologies built by
        :meth:`kaldi_3state` / :meth:`chain_2state` (probabilities equal to 1/k
        are printed as perl prints them, others with the shortest decimal that
        reads back as the same float32)."""
        lines = ["<Topology>"]
        lines += [" ".join(tokens) for tokens in self._entry_lines(_short_float)]
        lines.append("</Topology>")
        return "\n".join(lines) + "\n"

    def _entry_lines(self, fmt: Callable[[float], str]) -> Iterator[List[str]]:
        """The tokens of each line of the text form between ``<Topology>`` and
        ``</Topology>`` (probabilities formatted with ``fmt``)."""
        is_hmm = self.is_hmm
        for i, entry in enumerate(self.entries):
            yield ["<TopologyEntry>"]
            yield ["<ForPhones>"]
            yield [str(p) for p in self.entry_phones(i)]
            yield ["</ForPhones>"]
            for j, st in enumerate(entry):
                parts = [f"<State> {j}"]
                if st.forward_pdf_class != NO_PDF:
                    if is_hmm:
                        parts.append(f"<PdfClass> {st.forward_pdf_class}")
                    else:
                        parts.append(f"<ForwardPdfClass> {st.forward_pdf_class} "
                                     f"<SelfLoopPdfClass> {st.self_loop_pdf_class}")
                for dest, prob in st.transitions:
                    parts.append(f"<Transition> {dest} {fmt(prob)}")
                parts.append("</State>")
                yield parts
            yield ["</TopologyEntry>"]


def _short_float(x: float) -> str:
    """A probability as the topology scripts print it: gen_topo.pl prints
    1/(S-1) with perl's default ``%.15g``; otherwise the shortest decimal that
    reads back as the same float32."""
    x32 = np.float32(x)
    for k in range(1, 101):
        if np.float32(1.0 / k) == x32:
            return f"{1.0 / k:.15g}"
    return np.format_float_positional(x32, trim="-")

"""Kaldi's phonetic-context decision tree: ``ContextDependency`` and ``EventMap``.

A ``ContextDependency`` maps a window of ``N`` phones (the *context width*;
the central phone is at position ``P``) plus a pdf-class to a pdf-id. The map
is an ``EventMap`` over an *event*: a set of ``(key, value)`` pairs where key
``-1`` (``PDF_CLASS_KEY``, Kaldi ``kPdfClass``) holds the pdf-class and key
``i`` (``0 <= i < N``) the phone at context position ``i`` (0 = no phone,
i.e. utterance boundary). Three node types:

* ``ConstantEventMap`` (``CE answer``): a leaf; the answer is the pdf-id.
* ``TableEventMap`` (``TE key size ( child_0 ... child_{size-1} )``): looks up
  the event's value for ``key`` and continues with ``table[value]``; a child
  may be ``NULL`` (no answer). The size is written as a uint32.
* ``SplitEventMap`` (``SE key [ yes-set ] { yes no }``): continues with
  ``yes`` if the value for ``key`` is in the sorted yes-set, else ``no``.

Serialisation is Kaldi's ``ContextDependency::Write``: ``ContextDependency
N P ToPdf <event-map> EndContextDependency`` with ``N`` and ``P`` int32. In
text mode the ``TE ... )`` and ``SE ... }`` constructs end with a newline
(Kaldi writes ``'\\n'`` after the closing token) and the yes-set is
``[ 1 2 3 ]\\n``.

Constructors:

* :meth:`ContextDependency.monophone`: Kaldi's ``MonophoneContextDependency``
  (``gmm-init-mono``): N=1, P=0, Kaldi's ``GetStubMap`` structure (a
  ``TE 0`` table over phones whose children are ``TE -1`` tables over
  pdf-classes), pdf-ids numbered phone by phone, pdf-class by pdf-class.
* :meth:`ContextDependency.left_biphone`: the full left-biphone tree of
  ``gmm-init-biphone`` (used by ``steps/nnet3/chain/e2e/prepare_e2e.sh
  --type biphone``): N=2, P=1; ``TE 1`` over the central phone, then ``TE 0``
  over the left phone (0 = none), then ``TE -1`` over the pdf-class (omitted
  when there is one pdf-class per phone, as Kaldi does). For central phone
  number ``i`` (0-based in the sorted phone list), left context index ``l``
  (0 = none, ``j+1`` = the j-th phone) and pdf-class ``c``, the pdf-id is
  ``(i * (num_phones + 1) + l) * num_pdf_classes + c``.
"""

from __future__ import annotations

from typing import (BinaryIO, Dict, Iterable, List, Mapping, Optional, Sequence, Set,
                    Tuple, Union)

from kbind.io.stream import (KaldiInput, KaldiObject, write_int32, write_int32_vector_raw,
                             write_token, write_uint32)

__all__ = ["EventMap", "ConstantEventMap", "TableEventMap", "SplitEventMap",
           "ContextDependency", "PDF_CLASS_KEY", "read_event_map", "write_event_map"]

PDF_CLASS_KEY = -1  # Kaldi kPdfClass
_MAX_DEPTH = 10000


class EventMap:
    """Base class of the tree nodes. ``event`` arguments are dicts key -> value."""

    def map(self, event: Mapping[int, int]) -> Optional[int]:
        """The answer for a fully specified event, or None (Kaldi ``Map``)."""
        raise NotImplementedError

    def multi_map(self, event: Mapping[int, int], out: List[int]) -> None:
        """Append every answer compatible with a partial event (Kaldi ``MultiMap``)."""
        raise NotImplementedError

    def children(self) -> List["EventMap"]:
        raise NotImplementedError

    def write(self, f: BinaryIO, binary: bool) -> None:
        raise NotImplementedError

    def max_result(self) -> Optional[int]:
        ans: List[int] = []
        self.multi_map({}, ans)
        return max(ans) if ans else None

    def to_dict(self) -> dict:
        """The structure as nested dicts, in the format of the fixtures'
        ``expected.json`` (``{"type": "TE", "key", "table"}`` etc.)."""
        raise NotImplementedError


class ConstantEventMap(EventMap):
    __slots__ = ("answer",)

    def __init__(self, answer: int):
        self.answer = int(answer)

    def map(self, event):
        return self.answer

    def multi_map(self, event, out):
        out.append(self.answer)

    def children(self):
        return []

    def write(self, f, binary):
        write_token(f, "CE", binary)
        write_int32(f, self.answer, binary)

    def to_dict(self):
        return {"type": "CE", "answer": self.answer}

    def __eq__(self, other):
        return isinstance(other, ConstantEventMap) and other.answer == self.answer

    def __repr__(self):
        return f"CE({self.answer})"


class TableEventMap(EventMap):
    __slots__ = ("key", "table")

    def __init__(self, key: int, table: Sequence[Optional[EventMap]]):
        self.key = int(key)
        self.table: List[Optional[EventMap]] = list(table)

    @classmethod
    def from_dict(cls, key: int, mapping: Mapping[int, Union[EventMap, int]]) -> "TableEventMap":
        """Kaldi's ``TableEventMap(key, std::map<value, EventMap*|answer>)``: a table
        of size max(value)+1 with NULL where a value is absent; int values become
        ConstantEventMaps."""
        if not mapping:
            return cls(key, [])
        if min(mapping) < 0:
            raise ValueError("TableEventMap values must be non-negative")
        table: List[Optional[EventMap]] = [None] * (max(mapping) + 1)
        for v, child in mapping.items():
            table[v] = ConstantEventMap(child) if isinstance(child, int) else child
        return cls(key, table)

    def map(self, event):
        value = event.get(self.key)
        if value is None or value < 0 or value >= len(self.table):
            return None
        child = self.table[value]
        return None if child is None else child.map(event)

    def multi_map(self, event, out):
        value = event.get(self.key)
        if value is not None:
            if 0 <= value < len(self.table) and self.table[value] is not None:
                self.table[value].multi_map(event, out)
        else:
            for child in self.table:
                if child is not None:
                    child.multi_map(event, out)

    def children(self):
        return [c for c in self.table if c is not None]

    def write(self, f, binary):
        write_token(f, "TE", binary)
        write_int32(f, self.key, binary)
        write_uint32(f, len(self.table), binary)
        write_token(f, "(", binary)
        for child in self.table:
            write_event_map(f, child, binary)
        write_token(f, ")", binary)
        if not binary:
            f.write(b"\n")

    def to_dict(self):
        return {"type": "TE", "key": self.key,
                "table": [None if c is None else c.to_dict() for c in self.table]}

    def __eq__(self, other):
        return (isinstance(other, TableEventMap) and other.key == self.key
                and other.table == self.table)

    def __repr__(self):
        return f"TE({self.key}, {self.table})"


class SplitEventMap(EventMap):
    __slots__ = ("key", "yes_set", "yes", "no", "_yes_lookup")

    def __init__(self, key: int, yes_set: Iterable[int], yes: EventMap, no: EventMap):
        if yes is None or no is None:
            raise ValueError("SplitEventMap children must not be NULL")
        self.key = int(key)
        self.yes_set: List[int] = sorted({int(v) for v in yes_set})
        self._yes_lookup: Set[int] = set(self.yes_set)
        self.yes = yes
        self.no = no

    def map(self, event):
        value = event.get(self.key)
        if value is None:
            return None
        return (self.yes if value in self._yes_lookup else self.no).map(event)

    def multi_map(self, event, out):
        value = event.get(self.key)
        if value is not None:
            (self.yes if value in self._yes_lookup else self.no).multi_map(event, out)
        else:
            self.yes.multi_map(event, out)
            self.no.multi_map(event, out)

    def children(self):
        return [self.yes, self.no]

    def write(self, f, binary):
        write_token(f, "SE", binary)
        write_int32(f, self.key, binary)
        write_int32_vector_raw(f, self.yes_set, binary)
        write_token(f, "{", binary)
        self.yes.write(f, binary)
        self.no.write(f, binary)
        write_token(f, "}", binary)
        if not binary:
            f.write(b"\n")

    def to_dict(self):
        return {"type": "SE", "key": self.key, "yes_set": list(self.yes_set),
                "yes": self.yes.to_dict(), "no": self.no.to_dict()}

    def __eq__(self, other):
        return (isinstance(other, SplitEventMap) and other.key == self.key
                and other.yes_set == self.yes_set and other.yes == self.yes
                and other.no == self.no)

    def __repr__(self):
        return f"SE({self.key}, {self.yes_set}, {self.yes!r}, {self.no!r})"


def write_event_map(f: BinaryIO, emap: Optional[EventMap], binary: bool) -> None:
    """Kaldi ``EventMap::Write`` (writes ``NULL`` for None)."""
    if emap is None:
        write_token(f, "NULL", binary)
    else:
        emap.write(f, binary)


def read_event_map(inp: KaldiInput, binary: bool, _depth: int = 0) -> Optional[EventMap]:
    """Kaldi ``EventMap::Read``: returns None for ``NULL``."""
    if _depth > _MAX_DEPTH:
        raise inp.error("event map nested too deeply (corrupted tree?)")
    start = inp.offset
    tok = inp.read_token("event-map type (NULL, CE, TE or SE)")
    if tok == "NULL":
        return None
    if tok == "CE":
        return ConstantEventMap(inp.read_int32(binary, "CE answer"))
    if tok == "TE":
        key = inp.read_int32(binary, "TE key")
        size = inp.read_uint32(binary, "TE size")
        inp.expect_token("(")
        table = []
        for _ in range(size):  # no pre-allocation: a bad size ends at EOF
            table.append(read_event_map(inp, binary, _depth + 1))
        inp.expect_token(")")
        return TableEventMap(key, table)
    if tok == "SE":
        key = inp.read_int32(binary, "SE key")
        yes_set = inp.read_int32_vector_raw(binary, "SE yes-set")
        inp.expect_token("{")
        yes = read_event_map(inp, binary, _depth + 1)
        no = read_event_map(inp, binary, _depth + 1)
        inp.expect_token("}")
        if yes is None or no is None:
            raise inp.error("SplitEventMap with NULL child", offset=start)
        return SplitEventMap(key, yes_set.tolist(), yes, no)
    raise inp.error(f"reading EventMap: unexpected token {tok!r}", offset=start)


class ContextDependency(KaldiObject):
    """Kaldi ``ContextDependency``: context width ``N``, central position ``P``
    and the ``to_pdf`` EventMap (None is allowed and written as ``NULL``)."""

    def __init__(self, N: int, P: int, to_pdf: Optional[EventMap]):
        self.N = int(N)
        self.P = int(P)
        self.to_pdf = to_pdf

    # -- queries ------------------------------------------------------------------
    @property
    def context_width(self) -> int:
        return self.N

    @property
    def central_position(self) -> int:
        return self.P

    @property
    def num_pdfs(self) -> int:
        """1 + the largest pdf-id the tree can return (Kaldi ``NumPdfs``)."""
        if self.to_pdf is None:
            return 0
        m = self.to_pdf.max_result()
        return 0 if m is None or m < 0 else m + 1

    def compute(self, phone_window: Sequence[int], pdf_class: int) -> Optional[int]:
        """Kaldi ``ContextDependency::Compute``: the pdf-id of ``pdf_class`` of the
        central phone of ``phone_window`` (length N, 0 = no phone), or None."""
        if len(phone_window) != self.N:
            raise ValueError(f"phone window has length {len(phone_window)}, "
                             f"expected context width {self.N}")
        if self.to_pdf is None:
            return None
        event = {PDF_CLASS_KEY: int(pdf_class)}
        for i, p in enumerate(phone_window):
            if p < 0:
                raise ValueError(f"negative phone {p} in phone window")
            event[i] = int(p)
        return self.to_pdf.map(event)

    def get_pdf_info(self, phones: Sequence[int], num_pdf_classes: Sequence[int]
                     ) -> List[List[Tuple[int, int]]]:
        """Kaldi ``GetPdfInfo`` (HMM version): for each pdf-id, the sorted list
        of (phone, pdf-class) pairs that can map to it. ``num_pdf_classes`` is
        indexed by phone."""
        pdf_info: List[List[Tuple[int, int]]] = [[] for _ in range(self.num_pdfs)]
        for phone in phones:
            for pos in range(num_pdf_classes[phone]):
                pdfs: List[int] = []
                if self.to_pdf is not None:
                    self.to_pdf.multi_map({self.P: phone, PDF_CLASS_KEY: pos}, pdfs)
                for pdf in sorted(set(pdfs)):
                    if not 0 <= pdf < len(pdf_info):
                        raise ValueError(f"tree returned invalid pdf {pdf}")
                    pdf_info[pdf].append((phone, pos))
        for lst in pdf_info:
            lst.sort()
        return pdf_info

    def get_pdf_info_pairs(self, phones: Sequence[int],
                           pdf_class_pairs: Mapping[int, Sequence[Tuple[int, int]]]
                           ) -> Dict[int, List[List[Tuple[int, int]]]]:
        """Kaldi ``GetPdfInfo`` (chain version): for each phone and each of its
        (forward pdf-class, self-loop pdf-class) pairs, the sorted list of
        possible (forward pdf, self-loop pdf) pairs."""
        out: Dict[int, List[List[Tuple[int, int]]]] = {}
        for phone in phones:
            lists = []
            for fwd_class, loop_class in pdf_class_pairs[phone]:
                window = [-1] * self.N
                window[self.P] = phone
                pairs: Set[Tuple[int, int]] = set()
                self._enumerate_pairs(phones, loop_class, fwd_class, window, pairs)
                lists.append(sorted(pairs))
            out[phone] = lists
        return out

    def _enumerate_pairs(self, phones, loop_class, fwd_class, window, pairs) -> None:
        def partial_event(pdf_class):
            ev = {i: p for i, p in enumerate(window) if p >= 0}
            ev[PDF_CLASS_KEY] = pdf_class
            return ev

        fwd: List[int] = []
        if self.to_pdf is not None:
            self.to_pdf.multi_map(partial_event(fwd_class), fwd)
        fwd = sorted(set(fwd))
        if loop_class < 0:
            for a in fwd:
                pairs.add((a, -1))
            return
        loop: List[int] = []
        if self.to_pdf is not None:
            self.to_pdf.multi_map(partial_event(loop_class), loop)
        loop = sorted(set(loop))
        if len(fwd) == 1 or len(loop) == 1:
            for a in fwd:
                for b in loop:
                    pairs.add((a, b))
            return
        position, min_dist = 0, self.N - 1
        for i in range(self.N):
            dist = abs(self.P - i)
            if window[i] == -1 and dist < min_dist:
                position, min_dist = i, dist
        if not min_dist < self.N or position == self.P:
            raise ValueError("cannot enumerate pdf pairs for this tree")
        new_window = list(window)
        new_window[position] = 0
        self._enumerate_pairs(phones, loop_class, fwd_class, new_window, pairs)
        for p in phones:
            new_window[position] = p
            self._enumerate_pairs(phones, loop_class, fwd_class, new_window, pairs)

    def __eq__(self, other) -> bool:
        return (isinstance(other, ContextDependency) and self.N == other.N
                and self.P == other.P and self.to_pdf == other.to_pdf)

    def __repr__(self) -> str:
        return f"ContextDependency(N={self.N}, P={self.P}, num_pdfs={self.num_pdfs})"

    # -- constructors ------------------------------------------------------------
    @classmethod
    def monophone(cls, phones: Sequence[int],
                  num_pdf_classes_per_phone: Union[int, Sequence[int], Mapping[int, int]],
                  phone_sets: Optional[Sequence[Sequence[int]]] = None
                  ) -> "ContextDependency":
        """Kaldi ``MonophoneContextDependency`` (or ``...Shared`` when
        ``phone_sets`` is given: phones in one set share their pdfs).

        ``num_pdf_classes_per_phone``: an int for all phones, a dict phone ->
        count, or a list indexed by phone (as Kaldi's ``phone2num_pdf_classes``,
        e.g. ``HmmTopology.phone_to_num_pdf_classes()``)."""
        counts = _per_phone_counts(phones, num_pdf_classes_per_phone, phone_sets)
        if phone_sets is None:
            sets = [[int(p)] for p in sorted(set(int(p) for p in phones))]
        else:
            sets = [sorted(int(p) for p in s) for s in phone_sets]
        num_leaves = [0]
        to_pdf = _get_stub_map(0, sets, counts, [False] * len(sets), num_leaves)
        return cls(1, 0, to_pdf)

    @classmethod
    def left_biphone(cls, phones: Sequence[int],
                     num_pdf_classes_per_phone: Union[int, Sequence[int], Mapping[int, int]],
                     phone_sets: Optional[Sequence[Sequence[int]]] = None
                     ) -> "ContextDependency":
        """The full left-biphone tree of Kaldi's ``gmm-init-biphone``
        (``BiphoneContextDependencyFull``): N=2, P=1, one pdf per (left phone or
        0 = none, phone, pdf-class). ``phone_sets`` (Kaldi ``--shared-phones``,
        ``phones/sets.int``) shares pdfs between the phones of a set."""
        if phone_sets is None:
            sets = [[int(p)] for p in sorted(set(int(p) for p in phones))]
        else:
            sets = [sorted(int(p) for p in s) for s in phone_sets]
        counts = _per_phone_counts(phones, num_pdf_classes_per_phone, phone_sets)
        seen: Set[int] = set()
        for s in sets:
            if not s or len(set(s)) != len(s) or seen & set(s):
                raise ValueError("phone sets must be non-empty and disjoint")
            seen |= set(s)
        cur = 0
        level1: Dict[int, EventMap] = {}
        for pset in sets:
            n = counts[pset[0]]
            if any(counts[p] != n for p in pset):
                raise ValueError(f"phones of set {pset} have different numbers of pdf-classes")
            if n == 1:
                # Kaldi: the left-context table maps directly to the pdf (no
                # pdf-class level); one subtree shared by the phones of the set.
                level2: Dict[int, Union[EventMap, int]] = {0: cur}
                cur += 1
                for lset in sets:
                    pdf = cur
                    cur += 1
                    for q in lset:
                        level2[q] = pdf
                for p in pset:
                    level1[p] = TableEventMap.from_dict(0, level2)
            else:
                base = cur
                for k, p in enumerate(pset):
                    level2 = {0: TableEventMap.from_dict(
                        PDF_CLASS_KEY, {c: cur + c for c in range(n)})}
                    cur += n
                    for lset in sets:
                        sub = {c: cur + c for c in range(n)}
                        cur += n
                        for q in lset:
                            level2[q] = TableEventMap.from_dict(PDF_CLASS_KEY, sub)
                    level1[p] = TableEventMap.from_dict(0, level2)
                    if k != len(pset) - 1:
                        cur = base
        return cls(2, 1, TableEventMap.from_dict(1, level1))

    # -- I/O -------------------------------------------------------------------------------
    @classmethod
    def read(cls, inp: KaldiInput, binary: bool) -> "ContextDependency":
        """Kaldi ``ContextDependency::Read`` (accepts the old ``ToLength`` map)."""
        inp.expect_token("ContextDependency")
        N = inp.read_int32(binary, "context width N")
        P = inp.read_int32(binary, "central position P")
        if N < 1 or not 0 <= P < N:
            raise inp.error(f"invalid context width {N} / central position {P}")
        start = inp.offset
        tok = inp.read_token("ToPdf")
        if tok == "ToLength":
            read_event_map(inp, binary)
            start = inp.offset
            tok = inp.read_token("ToPdf")
        if tok != "ToPdf":
            raise inp.error(f"got unexpected token {tok!r} reading ContextDependency",
                            offset=start)
        to_pdf = read_event_map(inp, binary)
        inp.expect_final_token("EndContextDependency")
        return cls(N, P, to_pdf)

    def write(self, f: BinaryIO, binary: bool) -> None:
        write_token(f, "ContextDependency", binary)
        write_int32(f, self.N, binary)
        write_int32(f, self.P, binary)
        write_token(f, "ToPdf", binary)
        write_event_map(f, self.to_pdf, binary)
        write_token(f, "EndContextDependency", binary)


def _per_phone_counts(phones, spec, phone_sets) -> Dict[int, int]:
    all_phones = {int(p) for p in phones}
    if phone_sets is not None:
        all_phones |= {int(p) for s in phone_sets for p in s}
    if isinstance(spec, int):
        counts = {p: spec for p in all_phones}
    elif isinstance(spec, Mapping):
        counts = {int(k): int(v) for k, v in spec.items()}
    else:
        seq = list(spec)
        counts = {p: int(seq[p]) for p in all_phones if p < len(seq)}
    for p in all_phones:
        if counts.get(p, 0) <= 0:
            raise ValueError(f"no (positive) number of pdf-classes for phone {p}")
    return counts


def _get_stub_map(P: int, phone_sets: List[List[int]], counts: Mapping[int, int],
                  share_roots: List[bool], num_leaves: List[int]) -> EventMap:
    """Kaldi ``GetStubMap`` (tree/build-tree-utils.cc)."""
    if not phone_sets:
        raise ValueError("no phones given")
    seen: Set[int] = set()
    for s in phone_sets:
        if not s or len(set(s)) != len(s) or seen & set(s):
            raise ValueError("phone sets must be non-empty, sorted and disjoint")
        seen |= set(s)
    max_set_size = max(len(s) for s in phone_sets)
    highest = max(max(s) for s in phone_sets)
    if len(phone_sets) == 1:
        if share_roots[0]:
            leaf = ConstantEventMap(num_leaves[0])
            num_leaves[0] += 1
            return leaf
        max_len = max(counts[p] for p in phone_sets[0])
        m = {}
        for c in range(max_len):
            m[c] = num_leaves[0]
            num_leaves[0] += 1
        return TableEventMap.from_dict(PDF_CLASS_KEY, m)
    if max_set_size == 1 and len(phone_sets) <= 2 * highest:
        m2: Dict[int, EventMap] = {}
        for s, share in zip(phone_sets, share_roots):
            m2[s[0]] = _get_stub_map(P, [s], counts, [share], num_leaves)
        return TableEventMap.from_dict(P, m2)
    half = len(phone_sets) // 2
    map1 = _get_stub_map(P, phone_sets[:half], counts, share_roots[:half], num_leaves)
    map2 = _get_stub_map(P, phone_sets[half:], counts, share_roots[half:], num_leaves)
    yes = sorted(p for s in phone_sets[:half] for p in s)
    return SplitEventMap(P, yes, map1, map2)

"""OpenFst FSTs (tropical semiring) as numpy arrays, in Kaldi's file formats.

What Kaldi writes (read in ``src/fstext/kaldi-fst-io-inl.h``,
``VectorFstTplHolder<Arc>::Write/Read`` and ``WriteFstKaldi``/``ReadFstKaldi``,
and ``src/lat/kaldi-lattice.cc`` for lattices):

* In a table, a **binary** FST entry is the plain OpenFst binary
  (``VectorFst::Write(os, FstWriteOptions())``): ``<key> `` is followed
  directly by the OpenFst header; there is **no** ``\\0B`` marker. The holder's
  ``Read`` peeks at the first byte: whitespace means text, anything else is
  handed to ``VectorFst::Read``. (Our readers also tolerate a ``\\0B`` marker
  before the header, which Kaldi itself would reject.)
* A **text** entry is ``\\n`` + OpenFst ``FstPrinter`` output with TAB field
  separators (``src dst ilabel olabel [weight]``, final ``state [weight]``,
  weights equal to One omitted, default C++ stream precision = 6 significant
  digits, ``Infinity`` for +inf) + ``\\n`` (an empty line ends the entry). The
  printer prints the start state first, then the other states in order; a
  state with no arcs that is not final is printed as ``s\\tInfinity``. The
  reader splits on tabs/spaces, stops at the first empty line and takes the
  source of the first line as the start state.

OpenFst binary layout (``fst.h`` ``FstHeader``; ``vector-fst.h``;
``const-fst.h``), all little-endian: int32 magic 2125659606; fst type and arc
type as int32 length + bytes; int32 version; int32 flags (1 = input symbols,
2 = output symbols, 4 = aligned); uint64 properties; int64 start; int64
num_states; int64 num_arcs; the symbol tables if flagged. VectorFst body
(version 2): per state the final weight, int64 arc count and the arcs
(int32 ilabel, int32 olabel, weight, int32 nextstate); ``num_arcs`` in the
header is 0. ConstFst body (version 2, or version 1 = aligned to 16 bytes of
the stream position before the states and before the arcs): ``num_states``
records (weight, uint32 pos, narcs, niepsilons, noepsilons), then all arcs.

Properties: a VectorFst is written with its *stored* properties (those known
from its history) | kExpanded | kMutable. An :class:`Fst` read from a file
keeps the header's properties and writes them back unchanged unless its
arrays were modified; otherwise (and for FSTs built in Python) the properties
are those OpenFst's incremental updates give when the FST is built with
AddState / SetStart / SetFinal / AddArc (``properties.h``), which is what
kaldifst writes for the same FST built that way. A ConstFst is written with
fully computed properties (``test-properties.h`` ``ComputeProperties``) |
kExpanded, as OpenFst does.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tempfile
from dataclasses import dataclass
from typing import BinaryIO, List, Optional, Tuple

import numpy as np

from ..arrays import checked_cast
from .errors import KaldiFormatError
from .stream import KaldiInput

__all__ = ["Fst", "FstHeader", "FST_MAGIC", "read_fst_header", "format_weight",
           "parse_weight", "compute_properties", "incremental_properties"]

FST_MAGIC = 2125659606
SYMBOL_TABLE_MAGIC = 2125658996
_INF = float("inf")
_WS = b" \t\n\r\v\f"

# -- property bits (OpenFst properties.h) ---------------------------------------
kExpanded = 0x1
kMutable = 0x2
kError = 0x4
kAcceptor = 0x10000
kNotAcceptor = 0x20000
kIDeterministic = 0x40000
kNonIDeterministic = 0x80000
kODeterministic = 0x100000
kNonODeterministic = 0x200000
kEpsilons = 0x400000
kNoEpsilons = 0x800000
kIEpsilons = 0x1000000
kNoIEpsilons = 0x2000000
kOEpsilons = 0x4000000
kNoOEpsilons = 0x8000000
kILabelSorted = 0x10000000
kNotILabelSorted = 0x20000000
kOLabelSorted = 0x40000000
kNotOLabelSorted = 0x80000000
kWeighted = 0x100000000
kUnweighted = 0x200000000
kCyclic = 0x400000000
kAcyclic = 0x800000000
kInitialCyclic = 0x1000000000
kInitialAcyclic = 0x2000000000
kTopSorted = 0x4000000000
kNotTopSorted = 0x8000000000
kAccessible = 0x10000000000
kNotAccessible = 0x20000000000
kCoAccessible = 0x40000000000
kNotCoAccessible = 0x80000000000
kString = 0x100000000000
kNotString = 0x200000000000
kWeightedCycles = 0x400000000000
kUnweightedCycles = 0x800000000000

kNullProperties = (kAcceptor | kIDeterministic | kODeterministic | kNoEpsilons | kNoIEpsilons
                   | kNoOEpsilons | kILabelSorted | kOLabelSorted | kUnweighted | kAcyclic
                   | kInitialAcyclic | kTopSorted | kAccessible | kCoAccessible | kString
                   | kUnweightedCycles)
kBinaryProperties = 0x7
kTrinaryProperties = 0x0000ffffffff0000
kPosTrinaryProperties = kTrinaryProperties & 0x5555555555555555
kNegTrinaryProperties = kTrinaryProperties & 0xaaaaaaaaaaaaaaaa
kCopyProperties = kTrinaryProperties | kError
kSetStartProperties = (kExpanded | kMutable | kError | kAcceptor | kNotAcceptor | kIDeterministic
                       | kNonIDeterministic | kODeterministic | kNonODeterministic | kEpsilons
                       | kNoEpsilons | kIEpsilons | kNoIEpsilons | kOEpsilons | kNoOEpsilons
                       | kILabelSorted | kNotILabelSorted | kOLabelSorted | kNotOLabelSorted
                       | kWeighted | kUnweighted | kCyclic | kAcyclic | kTopSorted | kNotTopSorted
                       | kCoAccessible | kNotCoAccessible | kWeightedCycles | kUnweightedCycles)
kSetFinalProperties = (kExpanded | kMutable | kError | kAcceptor | kNotAcceptor | kIDeterministic
                       | kNonIDeterministic | kODeterministic | kNonODeterministic | kEpsilons
                       | kNoEpsilons | kIEpsilons | kNoIEpsilons | kOEpsilons | kNoOEpsilons
                       | kILabelSorted | kNotILabelSorted | kOLabelSorted | kNotOLabelSorted
                       | kCyclic | kAcyclic | kInitialCyclic | kInitialAcyclic | kTopSorted
                       | kNotTopSorted | kAccessible | kNotAccessible | kWeightedCycles
                       | kUnweightedCycles)
kAddStateProperties = (kExpanded | kMutable | kError | kAcceptor | kNotAcceptor | kIDeterministic
                       | kNonIDeterministic | kODeterministic | kNonODeterministic | kEpsilons
                       | kNoEpsilons | kIEpsilons | kNoIEpsilons | kOEpsilons | kNoOEpsilons
                       | kILabelSorted | kNotILabelSorted | kOLabelSorted | kNotOLabelSorted
                       | kWeighted | kUnweighted | kCyclic | kAcyclic | kInitialCyclic
                       | kInitialAcyclic | kTopSorted | kNotTopSorted | kNotAccessible
                       | kNotCoAccessible | kNotString | kWeightedCycles | kUnweightedCycles)
kAddArcProperties = (kExpanded | kMutable | kError | kNotAcceptor | kNonIDeterministic
                     | kNonODeterministic | kEpsilons | kIEpsilons | kOEpsilons | kNotILabelSorted
                     | kNotOLabelSorted | kWeighted | kCyclic | kInitialCyclic | kNotTopSorted
                     | kAccessible | kCoAccessible | kWeightedCycles)
_VECTOR_STATIC = kExpanded | kMutable
_CONST_STATIC = kExpanded


def known_properties(props: int) -> int:
    """OpenFst ``KnownProperties``."""
    return (kBinaryProperties | (props & kTrinaryProperties)
            | ((props & kPosTrinaryProperties) << 1)
            | ((props & kNegTrinaryProperties) >> 1))


def incremental_properties(num_states: int, start: int, final_weighted: np.ndarray,
                           has_final: bool, arc_src: np.ndarray, arc_dst: np.ndarray,
                           arc_ilabel: np.ndarray, arc_olabel: np.ndarray,
                           arc_weighted: np.ndarray) -> int:
    """Properties OpenFst stores for a VectorFst built with ``AddState`` (all
    states), ``SetStart``, then ``SetFinal`` for final states and ``AddArc``
    for every arc (``properties.h``: AddStateProperties, SetStartProperties,
    SetFinalProperties, AddArcProperties), including kExpanded | kMutable.

    ``final_weighted``: bool per final state, weight not in {Zero, One};
    ``arc_weighted``: bool per arc, weight not in {Zero, One}. Arcs must be
    grouped by source state in arc order."""
    props = kNullProperties | _VECTOR_STATIC
    if num_states > 0:
        props &= kAddStateProperties
    if start >= 0:
        acyclic = props & kAcyclic
        props &= kSetStartProperties
        if acyclic:
            props |= kInitialAcyclic
    if has_final:
        if np.any(final_weighted):
            props |= kWeighted
            props &= ~kUnweighted
        props &= kSetFinalProperties | kWeighted | kUnweighted
    if len(arc_src):
        il = arc_ilabel
        ol = arc_olabel
        if np.any(il != ol):
            props = (props | kNotAcceptor) & ~kAcceptor
        if np.any(il == 0):
            props = (props | kIEpsilons) & ~kNoIEpsilons
            if np.any((il == 0) & (ol == 0)):
                props = (props | kEpsilons) & ~kNoEpsilons
        if np.any(ol == 0):
            props = (props | kOEpsilons) & ~kNoOEpsilons
        same = arc_src[1:] == arc_src[:-1]
        if np.any(same & (il[:-1] > il[1:])):
            props = (props | kNotILabelSorted) & ~kILabelSorted
        if np.any(same & (ol[:-1] > ol[1:])):
            props = (props | kNotOLabelSorted) & ~kOLabelSorted
        if np.any(arc_weighted):
            props = (props | kWeighted) & ~kUnweighted
        if np.any(arc_dst <= arc_src):
            props = (props | kNotTopSorted) & ~kTopSorted
        props &= (kAddArcProperties | kAcceptor | kNoEpsilons | kNoIEpsilons | kNoOEpsilons
                  | kILabelSorted | kOLabelSorted | kUnweighted | kTopSorted)
        if props & kTopSorted:
            props |= kAcyclic | kInitialAcyclic
    return props


def _scc(num_states: int, start: int, offsets: np.ndarray, dst: np.ndarray):
    """OpenFst's SccVisitor run by DfsVisit: returns (scc id per state,
    property bits for cyclic/initial-cyclic/accessible/coaccessible); the
    co-accessibility needs ``is_final`` set by the caller afterwards."""
    scc = np.full(num_states, -1, dtype=np.int64)
    access = np.zeros(num_states, dtype=bool)
    cyclic = False
    initial_cyclic = False
    if start < 0:
        return scc, access, cyclic, initial_cyclic
    offs = offsets.tolist()
    dsts = dst.tolist()
    dfnum_l = [-1] * num_states
    low_l = [0] * num_states
    onstack_l = [False] * num_states
    scc_l = [-1] * num_states
    color = [0] * num_states
    counter = 0
    nscc = 0
    stack: List[int] = []
    roots = [start] + [s for s in range(num_states) if s != start]
    for root in roots:
        if color[root]:
            continue
        # iterative DFS: frames of (state, next arc index)
        color[root] = 1
        dfnum_l[root] = low_l[root] = counter
        counter += 1
        stack.append(root)
        onstack_l[root] = True
        if root == start:
            access[root] = True
        frames = [[root, offs[root]]]
        while frames:
            frame = frames[-1]
            s, a = frame
            if a < offs[s + 1]:
                frame[1] = a + 1
                t = dsts[a]
                if color[t] == 0:
                    color[t] = 1
                    dfnum_l[t] = low_l[t] = counter
                    counter += 1
                    stack.append(t)
                    onstack_l[t] = True
                    access[t] = root == start
                    frames.append([t, offs[t]])
                elif color[t] == 1:
                    cyclic = True
                    if t == start:
                        initial_cyclic = True
                    if dfnum_l[t] < low_l[s]:
                        low_l[s] = dfnum_l[t]
                else:
                    if onstack_l[t] and dfnum_l[t] < low_l[s]:
                        low_l[s] = dfnum_l[t]
                continue
            color[s] = 2
            frames.pop()
            if dfnum_l[s] == low_l[s]:
                while True:
                    t = stack.pop()
                    onstack_l[t] = False
                    scc_l[t] = nscc
                    if t == s:
                        break
                nscc += 1
            if frames:
                p = frames[-1][0]
                if low_l[s] < low_l[p]:
                    low_l[p] = low_l[s]
    scc = np.asarray(scc_l, dtype=np.int64)
    return scc, access, cyclic, initial_cyclic


def compute_properties(num_states: int, start: int, final_is_final: np.ndarray,
                       final_weighted: np.ndarray, offsets: np.ndarray, arc_src: np.ndarray,
                       arc_dst: np.ndarray, arc_ilabel: np.ndarray, arc_olabel: np.ndarray,
                       arc_weighted: np.ndarray) -> int:
    """All trinary properties as OpenFst's ``ComputeProperties(fst,
    kCopyProperties)`` computes them (no binary bits)."""
    props = 0
    # DFS part (SccVisitor).
    props |= kAcyclic | kInitialAcyclic | kAccessible | kCoAccessible
    scc, access, cyclic, initial_cyclic = _scc(num_states, start, offsets, arc_dst)
    if start >= 0 and num_states > 0:
        if cyclic:
            props = (props | kCyclic) & ~kAcyclic
        if initial_cyclic:
            props = (props | kInitialCyclic) & ~kInitialAcyclic
        if not np.all(access):
            props = (props | kNotAccessible) & ~kAccessible
        # co-accessible: every state reaches a final state.
        coacc = final_is_final.astype(bool).copy()
        if len(arc_src):
            # reverse reachability from final states
            order = np.argsort(arc_dst, kind="stable")
            rsrc = arc_src[order]
            roffs = np.zeros(num_states + 1, dtype=np.int64)
            np.add.at(roffs, arc_dst + 1, 1)
            roffs = np.cumsum(roffs)
            todo = list(np.nonzero(coacc)[0])
            while todo:
                t = todo.pop()
                for p in rsrc[roffs[t]:roffs[t + 1]].tolist():
                    if not coacc[p]:
                        coacc[p] = True
                        todo.append(p)
        if not np.all(coacc):
            props = (props | kNotCoAccessible) & ~kCoAccessible
    # Arc/state iteration part.
    props |= (kAcceptor | kNoEpsilons | kNoIEpsilons | kNoOEpsilons | kILabelSorted
              | kOLabelSorted | kUnweighted | kTopSorted | kString | kIDeterministic
              | kODeterministic | kUnweightedCycles)
    il, ol, src, dst = arc_ilabel, arc_olabel, arc_src, arc_dst
    if len(src):
        def dup(labels):
            key = src.astype(np.int64) * (1 << 33) + (labels.astype(np.int64) + (1 << 31))
            return len(np.unique(key)) != len(key)
        if dup(il):
            props = (props | kNonIDeterministic) & ~kIDeterministic
        if dup(ol):
            props = (props | kNonODeterministic) & ~kODeterministic
        if np.any(il != ol):
            props = (props | kNotAcceptor) & ~kAcceptor
        if np.any((il == 0) & (ol == 0)):
            props = (props | kEpsilons) & ~kNoEpsilons
        if np.any(il == 0):
            props = (props | kIEpsilons) & ~kNoIEpsilons
        if np.any(ol == 0):
            props = (props | kOEpsilons) & ~kNoOEpsilons
        same = src[1:] == src[:-1]
        if np.any(same & (il[1:] < il[:-1])):
            props = (props | kNotILabelSorted) & ~kILabelSorted
        if np.any(same & (ol[1:] < ol[:-1])):
            props = (props | kNotOLabelSorted) & ~kOLabelSorted
        if np.any(arc_weighted):
            props = (props | kWeighted) & ~kUnweighted
            if np.any(arc_weighted & (scc[src] == scc[dst])):
                props = (props | kWeightedCycles) & ~kUnweightedCycles
        if np.any(dst <= src):
            props = (props | kNotTopSorted) & ~kTopSorted
        if np.any(dst != src + 1):
            props = (props | kNotString) & ~kString
    if num_states:
        fin = final_is_final.astype(bool)
        if np.any(fin & final_weighted):
            props = (props | kWeighted) & ~kUnweighted
        nfinal_before = np.cumsum(fin) - fin  # finals strictly before s
        narcs = np.diff(offsets)
        not_string = np.any(nfinal_before > 0) or np.any(~fin & (narcs != 1))
        if not_string:
            props = (props | kNotString) & ~kString
    if start != -1 and start != 0:
        props = (props | kNotString) & ~kString
    return props


# -- weights as text ----------------------------------------------------------------

def format_weight(x: float) -> str:
    """A float weight as OpenFst/Kaldi print it: C++ ``<<`` with the default
    precision (6 significant digits), ``Infinity``/``-Infinity``/``BadNumber``."""
    x = float(x)
    if x != x:
        return "BadNumber"
    if x == _INF:
        return "Infinity"
    if x == -_INF:
        return "-Infinity"
    return f"{x:.6g}"


def parse_weight(tok: str) -> float:
    """Inverse of :func:`format_weight` (also accepts inf/nan spellings)."""
    if tok == "Infinity":
        return _INF
    if tok == "-Infinity":
        return -_INF
    if tok == "BadNumber":
        return float("nan")
    low = tok.lower()
    if low in ("inf", "+inf", "infinity", "+infinity"):
        return _INF
    if low in ("-inf", "-infinity"):
        return -_INF
    if low in ("nan", "-nan", "+nan"):
        return float("nan")
    return float(tok)


# -- header ----------------------------------------------------------------------------

@dataclass
class FstHeader:
    fst_type: str = "vector"
    arc_type: str = "standard"
    version: int = 2
    flags: int = 0
    properties: int = 0
    start: int = -1
    num_states: int = 0
    num_arcs: int = 0
    isymbols: Optional[bytes] = None  # raw bytes of the symbol table
    osymbols: Optional[bytes] = None
    offset: int = 0  # byte offset of the magic number

    def to_bytes(self) -> bytes:
        out = [struct.pack("<i", FST_MAGIC), _pack_string(self.fst_type),
               _pack_string(self.arc_type),
               struct.pack("<iiQqqq", self.version, self.flags, self.properties & (2**64 - 1),
                           self.start, self.num_states, self.num_arcs)]
        if self.flags & 1 and self.isymbols is not None:
            out.append(self.isymbols)
        if self.flags & 2 and self.osymbols is not None:
            out.append(self.osymbols)
        return b"".join(out)


def _pack_string(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<i", len(b)) + b


def _read_i32(inp: KaldiInput, what: str) -> int:
    return struct.unpack("<i", inp.read(4, what))[0]


def _read_string(inp: KaldiInput, what: str, max_len: int = 1 << 16) -> bytes:
    start = inp.offset
    n = _read_i32(inp, f"length of {what}")
    if n < 0 or n > max_len:
        raise inp.error(f"bad length {n} of {what} in FST header", offset=start)
    return inp.read(n, what)


def _read_symbol_table(inp: KaldiInput, what: str) -> bytes:
    """Read an OpenFst binary SymbolTable; return its raw bytes."""
    start = inp.offset
    parts = []
    raw = inp.read(4, what)
    parts.append(raw)
    magic = struct.unpack("<i", raw)[0]
    if magic != SYMBOL_TABLE_MAGIC:
        raise inp.error(f"bad magic number {magic} of {what}", offset=start)
    n = inp.read(4, what)
    parts.append(n)
    ln = struct.unpack("<i", n)[0]
    if ln < 0:
        raise inp.error(f"bad name length in {what}", offset=start)
    parts.append(_read_chunked(inp, ln, what))
    parts.append(inp.read(8, what))  # available key
    sz = inp.read(8, what)
    parts.append(sz)
    size = struct.unpack("<q", sz)[0]
    if size < 0:
        raise inp.error(f"negative size {size} of {what}", offset=start)
    for _ in range(size):
        n = inp.read(4, what)
        ln = struct.unpack("<i", n)[0]
        if ln < 0:
            raise inp.error(f"bad symbol length in {what}", offset=inp.offset - 4)
        parts.append(n)
        parts.append(_read_chunked(inp, ln, what))
        parts.append(inp.read(8, what))
    return b"".join(parts)


def _read_chunked(inp: KaldiInput, n: int, what: str) -> bytes:
    """``inp.read(n)`` without allocating absurd sizes up front (corrupt counts)."""
    if n <= (1 << 24):
        return inp.read(n, what)
    parts = []
    left = n
    while left:
        k = min(left, 1 << 24)
        parts.append(inp.read(k, what))
        left -= k
    return b"".join(parts)


def read_fst_header(inp: KaldiInput) -> FstHeader:
    """OpenFst ``FstHeader::Read`` plus the symbol tables it announces."""
    hdr = FstHeader(offset=inp.offset)
    start = inp.offset
    raw = inp.read(4, "FST magic number")
    magic = struct.unpack("<i", raw)[0]
    if magic != FST_MAGIC:
        raise inp.error(f"bad FST header: magic number {magic} "
                        f"(0x{magic & 0xffffffff:08x}), expected {FST_MAGIC} (0x7eb2fdd6)",
                        offset=start)
    try:
        hdr.fst_type = _read_string(inp, "FST type").decode("ascii")
        hdr.arc_type = _read_string(inp, "arc type").decode("ascii")
    except UnicodeDecodeError:
        raise inp.error("non-ASCII FST or arc type in FST header", offset=start) from None
    hdr.version, hdr.flags = struct.unpack("<ii", inp.read(8, "FST header"))
    hdr.properties, hdr.start, hdr.num_states, hdr.num_arcs = struct.unpack(
        "<Qqqq", inp.read(32, "FST header"))
    if hdr.flags & 1:
        hdr.isymbols = _read_symbol_table(inp, "input symbol table")
    if hdr.flags & 2:
        hdr.osymbols = _read_symbol_table(inp, "output symbol table")
    return hdr


def _skip_marker(inp: KaldiInput) -> None:
    if inp.peek(2) == b"\0B":
        inp.read(2)


def _decide_binary(inp: KaldiInput, binary: Optional[bool], what: str) -> bool:
    """Kaldi holders: whitespace first -> text, else binary (\\0B tolerated)."""
    c = inp.peek(1)
    if not c:
        raise inp.error(f"end of file reading {what}")
    if binary is None:
        binary = c not in _WS
    if binary:
        _skip_marker(inp)
    return binary


def _read_text_lines(inp: KaldiInput, what: str) -> List[Tuple[int, List[str]]]:
    """Kaldi's text FST entry: skip spaces up to and including one newline,
    then lines until an empty line (consumed) or EOF. Returns (offset, fields)."""
    start = inp.offset
    while True:
        c = inp.peek(1)
        if c and c in b" \t\r\v\f":
            inp.read(1)
            continue
        break
    if inp.peek(1) == b"\n":
        inp.read(1)
    elif inp.peek(1):
        raise inp.error(f"reading {what}: expected a newline before the text form",
                        offset=start)
    lines = []
    while True:
        off = inp.offset
        line = _read_line(inp)
        if line is None:
            break
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise inp.error(f"non-ASCII data in text {what}", offset=off) from None
        cols = text.replace("\r", " ").replace("\t", " ").split()
        if not cols:
            break
        lines.append((off, cols))
    return lines


def _read_line(inp: KaldiInput) -> Optional[bytes]:
    """One line without its newline; None at EOF with nothing read."""
    parts = []
    while True:
        buf = inp.peek(256)
        if not buf:
            if not parts:
                return None
            return b"".join(parts)
        i = buf.find(b"\n")
        if i >= 0:
            parts.append(inp.read(i + 1)[:-1])
            return b"".join(parts)
        parts.append(inp.read(len(buf)))


class _BodyBuffer:
    """Reads the variable-length body of a VectorFst from a KaldiInput,
    fetching only bytes that must exist (lower bounds), so it never reads past
    the FST inside an archive."""

    def __init__(self, inp: KaldiInput, what: str):
        self.inp = inp
        self.what = what
        self.buf = b""
        self.pos = 0

    def offset(self) -> int:
        return self.inp.offset - (len(self.buf) - self.pos)

    def ensure(self, k: int, lower_bound: int) -> None:
        avail = len(self.buf) - self.pos
        if avail >= k:
            return
        want = max(k, lower_bound) - avail
        self.buf = self.buf[self.pos:] + _read_chunked(self.inp, want, self.what)
        self.pos = 0

    def take(self, k: int) -> bytes:
        b = self.buf[self.pos:self.pos + k]
        self.pos += k
        return b

    def exhausted(self) -> bool:
        """Nothing buffered and the stream at EOF (end of a body whose
        number of states is unknown)."""
        return self.pos >= len(self.buf) and self.inp.at_eof()


def read_vector_body_fixed(inp: KaldiInput, hdr: FstHeader, wdtype: np.dtype, what: str):
    """VectorFst body with fixed-size weights. Returns (finals array of
    wdtype per state, arc counts, structured arcs array with fields i, o, w, n,
    offset of body start)."""
    wsize = wdtype.itemsize
    state_dtype = np.dtype([("w", wdtype), ("n", "<i8")])
    arc_dtype = np.dtype([("i", "<i4"), ("o", "<i4"), ("w", wdtype), ("n", "<i4")])
    hsize = state_dtype.itemsize
    asize = arc_dtype.itemsize
    body = _BodyBuffer(inp, what)
    body_start = inp.offset
    ns = hdr.num_states
    finals: List[bytes] = []
    counts: List[int] = []
    arc_chunks: List[bytes] = []
    unpack_n = struct.Struct("<q").unpack_from
    s = 0
    unknown = ns == -1
    while unknown or s < ns:
        if unknown:
            if body.exhausted():
                break
            body.ensure(hsize, hsize)
        else:
            body.ensure(hsize, hsize * (ns - s))
        off = body.offset()
        rec = body.take(hsize)
        n = unpack_n(rec, wsize)[0]
        if n < 0:
            raise inp.error(f"negative arc count {n} for state {s} in {what}", offset=off)
        finals.append(rec[:wsize])
        counts.append(n)
        if n:
            body.ensure(asize * n, asize * n + (0 if unknown else hsize * (ns - s - 1)))
            arc_chunks.append(body.take(asize * n))
        s += 1
    # Give back nothing: the buffer can only hold bytes of this FST.
    if body.pos != len(body.buf):  # pragma: no cover - lower bounds are exact
        raise inp.error(f"internal error reading {what}")
    final_arr = np.frombuffer(b"".join(finals), dtype=wdtype).copy() if finals else \
        np.zeros((0,) + wdtype.shape, dtype=wdtype.base)
    arcs = np.frombuffer(b"".join(arc_chunks), dtype=arc_dtype)
    return final_arr, np.asarray(counts, dtype=np.int64), arcs, body_start


def write_vector_body_fixed(finals: np.ndarray, offsets: np.ndarray, ilabel, olabel, weight,
                            dst, wdtype: np.dtype) -> bytes:
    """Serialise a VectorFst body with fixed-size weights (vectorised)."""
    ns = len(offsets) - 1
    na = int(offsets[-1])
    state_dtype = np.dtype([("w", wdtype), ("n", "<i8")])
    arc_dtype = np.dtype([("i", "<i4"), ("o", "<i4"), ("w", wdtype), ("n", "<i4")])
    hsize, asize = state_dtype.itemsize, arc_dtype.itemsize
    total = hsize * ns + asize * na
    out = np.zeros(total, dtype=np.uint8)
    if ns:
        st = np.zeros(ns, dtype=state_dtype)
        st["w"] = finals
        st["n"] = np.diff(offsets)
        spos = hsize * np.arange(ns, dtype=np.int64) + asize * offsets[:-1].astype(np.int64)
        out[(spos[:, None] + np.arange(hsize)).ravel()] = st.view(np.uint8).reshape(ns, hsize).ravel()
        if na:
            ar = np.zeros(na, dtype=arc_dtype)
            ar["i"] = ilabel
            ar["o"] = olabel
            ar["w"] = weight
            ar["n"] = dst
            src = np.repeat(np.arange(ns, dtype=np.int64), np.diff(offsets))
            apos = hsize * (src + 1) + asize * np.arange(na, dtype=np.int64)
            out[(apos[:, None] + np.arange(asize)).ravel()] = ar.view(np.uint8).reshape(na, asize).ravel()
    return out.tobytes()


def _digest(*arrays) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        if isinstance(a, np.ndarray):
            h.update(str(a.dtype).encode())
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        else:
            h.update(repr(a).encode())
    return h.digest()


def _tmp_dir() -> Optional[str]:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


# -- shared by Fst, Lattice and CompactLattice ------------------------------------------

def _csr(counts) -> np.ndarray:
    """CSR offsets (int64, length len(counts) + 1) from per-item counts."""
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    if len(counts):
        out[1:] = np.cumsum(counts)
    return out


def _check_vector_header(inp: KaldiInput, hdr: FstHeader) -> None:
    """The VectorFst version and state count of a header."""
    if hdr.version < 2:
        raise inp.error(f"unsupported VectorFst version {hdr.version}", offset=hdr.offset)
    if hdr.num_states < -1:
        raise inp.error(f"bad number of states {hdr.num_states}", offset=hdr.offset)


def _check_start(inp: KaldiInput, hdr: FstHeader, ns: int) -> None:
    if not -1 <= hdr.start < ns:
        raise inp.error(f"start state {hdr.start} out of range (num_states {ns})",
                        offset=hdr.offset)


def _check_dst(inp: KaldiInput, hdr: FstHeader, src, dst, ns: int) -> None:
    if len(dst):
        bad = np.nonzero((dst < 0) | (dst >= ns))[0]
        if len(bad):
            a = int(bad[0])
            raise inp.error(f"arc {a} of state {int(src[a])} goes to state {int(dst[a])}, "
                            f"out of range (num_states {ns})", offset=hdr.offset)


def _parse_text_fst(lines, arc_cols: int, one, parse_w, is_zero):
    """Parse the lines of a text FST (from :func:`_read_text_lines`), Kaldi's
    ReadFstKaldi/LatticeReader rules: ``s`` or ``s w`` is a final state,
    ``src dst label... [w]`` (``arc_cols`` columns before the optional weight)
    an arc; the first line's source is the start state. ``one`` is the weight
    of an omitted column, ``parse_w`` parses a weight (ValueError if bad) and
    ``is_zero`` tests for Zero (not allowed on arcs).

    Returns ``((num_states, start, finals, src, dst, labels, weights), None)``
    with ``finals`` a dict state -> weight and ``labels`` one list per label
    column, or ``(None, (offset, line))`` for the first bad line."""
    src, dst, w = [], [], []
    labels: List[List[int]] = [[] for _ in range(arc_cols - 2)]
    finals = {}
    max_state = -1
    start = -1
    for n, (off, cols) in enumerate(lines):
        try:
            s = int(cols[0])
            if s < 0:
                raise ValueError
            if n == 0:
                start = s
            max_state = max(max_state, s)
            if len(cols) == 1:
                finals[s] = one
            elif len(cols) == 2:
                finals[s] = parse_w(cols[1])
            elif len(cols) in (arc_cols, arc_cols + 1):
                d = int(cols[1])
                if d < 0:
                    raise ValueError
                weight = one if len(cols) == arc_cols else parse_w(cols[arc_cols])
                if is_zero(weight):
                    raise ValueError
                arc_labels = [int(c) for c in cols[2:arc_cols]]
                src.append(s)
                dst.append(d)
                for col, v in zip(labels, arc_labels):
                    col.append(v)
                w.append(weight)
                max_state = max(max_state, d)
            else:
                raise ValueError
        except (ValueError, OverflowError):
            return None, (off, " ".join(cols))
    return (max_state + 1, start, finals, src, dst, labels, w), None


def _kaldifst_read(data: bytes, load, suffix: str, what: str):
    """``load(filename)`` (a kaldifst reader) on ``data`` in a temporary file."""
    with tempfile.NamedTemporaryFile(suffix=suffix, dir=_tmp_dir(), delete=False) as tf:
        tf.write(data)
        name = tf.name
    try:
        out = load(name)
    finally:
        os.unlink(name)
    if out is None:
        raise KaldiFormatError(f"kaldifst could not read the {what} we wrote")
    return out


def _kaldifst_write(kobj, load, suffix: str, what: str):
    """``load(filename)`` on what ``kobj.write(filename)`` writes to a temporary file."""
    with tempfile.NamedTemporaryFile(suffix=suffix, dir=_tmp_dir(), delete=False) as tf:
        name = tf.name
    try:
        if not kobj.write(name):
            raise KaldiFormatError(f"kaldifst failed to write the {what}")
        return load(name)
    finally:
        os.unlink(name)


class _FstBase:
    """What Fst, Lattice and CompactLattice share: arcs grouped by source
    state (``arc_src``, ``arc_dst``, ``arc_ilabel``, ``arc_olabel``, CSR
    ``state_offsets``), ``final`` (one weight per state), ``start``, the
    header's ``properties`` and symbol tables. Subclasses define
    ``_content()`` (start, then the arrays that make up the FST) and the
    weight tests ``_final_is_zero``/``_final_is_one``/``_arc_is_zero``/
    ``_arc_is_one`` (bool per state / arc), ``to_bytes()`` and ``to_text()``."""

    def _init_common(self, num_states, start, arc_src, arc_dst, arc_ilabel, arc_olabel):
        """Set start, arcs (stably sorted by source) and offsets; returns the
        sort order applied (None if the arcs were already grouped)."""
        self.start = int(start)
        src = checked_cast([] if arc_src is None else arc_src, np.int32, "arc_src")
        dst = checked_cast([] if arc_dst is None else arc_dst, np.int32, "arc_dst")
        il = checked_cast([] if arc_ilabel is None else arc_ilabel, np.int32, "arc_ilabel")
        ol = il.copy() if arc_olabel is None else checked_cast(arc_olabel, np.int32,
                                                               "arc_olabel")
        n = len(src)
        if not (len(dst) == len(il) == len(ol) == n):
            raise ValueError("arc arrays have different lengths")
        order = None
        if n and np.any(src[1:] < src[:-1]):
            order = np.argsort(src, kind="stable")
            src, dst, il, ol = src[order], dst[order], il[order], ol[order]
        if n and (src.min() < 0 or src.max() >= num_states or dst.min() < 0
                  or dst.max() >= num_states):
            raise ValueError("arc state id out of range")
        if not -1 <= self.start < num_states:
            raise ValueError(f"start state {self.start} out of range")
        self.arc_src, self.arc_dst, self.arc_ilabel, self.arc_olabel = (
            src.copy(), dst.copy(), il.copy(), ol.copy())
        self.state_offsets = _csr(np.bincount(src, minlength=num_states)[:num_states]
                                  if num_states else [])
        self.properties: Optional[int] = None
        self._props_digest: Optional[bytes] = None
        self.isymbols: Optional[bytes] = None
        self.osymbols: Optional[bytes] = None
        return order

    def _init_from_body(self, inp: KaldiInput, hdr: FstHeader, counts, il, ol, dst) -> None:
        """Set start, arcs, offsets and symbol tables from a binary body
        (``counts``: arcs per state), checking the start and arc targets."""
        ns = len(counts)
        _check_start(inp, hdr, ns)
        self.start = int(hdr.start)
        self.state_offsets = _csr(counts)
        self.arc_src = np.repeat(np.arange(ns, dtype=np.int32), counts)
        self.arc_dst = np.asarray(dst, dtype=np.int32).copy()
        self.arc_ilabel = np.asarray(il, dtype=np.int32).copy()
        self.arc_olabel = np.asarray(ol, dtype=np.int32).copy()
        _check_dst(inp, hdr, self.arc_src, self.arc_dst, ns)
        self.isymbols, self.osymbols = hdr.isymbols, hdr.osymbols

    def _keep_header_properties(self, hdr: FstHeader, keep: bool = True) -> None:
        """Remember the header's properties for the content just read (or
        forget them, ``keep=False``, when the FST was converted)."""
        if keep:
            self.properties = int(hdr.properties)
            self._props_digest = self._content_digest()
        else:
            self.properties = None
            self._props_digest = None

    @property
    def num_states(self) -> int:
        return len(self.final)

    @property
    def num_arcs(self) -> int:
        return len(self.arc_src)

    def _content_digest(self) -> bytes:
        return _digest(*self._content())

    def equal(self, other) -> bool:
        """Same states, start, finals and arcs (bit-exact weights)."""
        if not (self.num_states == other.num_states and self.start == other.start):
            return False
        return all(np.array_equal(a.view(np.uint32), b.view(np.uint32)) if a.dtype.kind == "f"
                   else np.array_equal(a, b)
                   for a, b in zip(self._content()[1:], other._content()[1:]))

    def _unchanged(self) -> bool:
        return self.properties is not None and self._props_digest == self._content_digest()

    def stored_properties(self) -> int:
        """The property bits OpenFst would hold for this FST: the header's if
        the FST is unchanged since it was read, else the incremental ones."""
        if self._unchanged():
            return int(self.properties)
        fin = ~self._final_is_zero()
        return incremental_properties(
            self.num_states, self.start, ~self._final_is_one()[fin], bool(np.any(fin)),
            self.arc_src, self.arc_dst, self.arc_ilabel, self.arc_olabel,
            ~(self._arc_is_zero() | self._arc_is_one()))

    def _header(self, fst_type: str, arc_type: str, props: int, num_arcs: int = 0) -> FstHeader:
        flags = (1 if self.isymbols is not None else 0) | (2 if self.osymbols is not None else 0)
        return FstHeader(fst_type, arc_type, 2, flags, props, self.start,
                         self.num_states, num_arcs, self.isymbols, self.osymbols)

    def _vector_bytes(self, arc_type: str, props: int, wdtype: np.dtype) -> bytes:
        """Header and body of a VectorFst with fixed-size weights."""
        return self._header("vector", arc_type, props).to_bytes() + write_vector_body_fixed(
            self.final, self.state_offsets, self.arc_ilabel, self.arc_olabel,
            self.arc_weight, self.arc_dst, wdtype)

    def write(self, f: BinaryIO, binary: bool = True) -> None:
        """What Kaldi's holder writes after ``<key> `` (a VectorFst in binary;
        ``\\n`` + text + ``\\n`` in text mode)."""
        if binary:
            f.write(self.to_bytes())
        else:
            f.write(b"\n" + self.to_text().encode("ascii") + b"\n")

    def _state_order(self) -> List[int]:
        """The FstPrinter order: the start state, then the others."""
        if self.start < 0:
            return []
        return [self.start] + [s for s in range(self.num_states) if s != self.start]

    def _print_text(self, labels: List[str], arc_text, final_text) -> str:
        """FstPrinter output with TAB separators: per state (start first) its
        arcs ``src dst labels[k] [weight]``, then ``s [weight]`` if the state
        is final or has no arcs. ``arc_text(k)``/``final_text(s)`` give the
        weight text, '' for One."""
        out: List[str] = []
        dst = self.arc_dst.tolist()
        offs = self.state_offsets.tolist()
        fin_zero = self._final_is_zero().tolist()
        for s in self._state_order():
            a, b = offs[s], offs[s + 1]
            for k in range(a, b):
                wt = arc_text(k)
                out.append(f"{s}\t{dst[k]}\t{labels[k]}\t{wt}\n" if wt
                           else f"{s}\t{dst[k]}\t{labels[k]}\n")
            if not fin_zero[s] or a == b:
                wt = final_text(s)
                out.append(f"{s}\t{wt}\n" if wt else f"{s}\n")
        return "".join(out)


# -- the FST class ---------------------------------------------------------------------

class Fst(_FstBase):
    """An OpenFst FST over the tropical (``standard``) or ``log`` semiring.

    Attributes (numpy arrays): ``final`` float32 cost per state (+inf = not
    final); arcs grouped by source state in arc order: ``arc_src``,
    ``arc_dst``, ``arc_ilabel``, ``arc_olabel`` (int32), ``arc_weight``
    (float32 cost); ``state_offsets`` (int64, CSR: arcs of state s are
    ``state_offsets[s]:state_offsets[s+1]``). ``start`` is -1 for an empty FST.
    ``fst_type`` ('vector' or 'const') and ``arc_type`` record what was read;
    ``properties`` the header's property bits (None when built in Python).
    """

    def __init__(self, num_states: int = 0, start: int = -1, final=None, arc_src=None,
                 arc_dst=None, arc_ilabel=None, arc_olabel=None, arc_weight=None,
                 arc_type: str = "standard", fst_type: str = "vector"):
        num_states = int(num_states)
        self.final = (np.full(num_states, _INF, dtype=np.float32) if final is None
                      else np.asarray(final, dtype=np.float32).copy())
        if self.final.shape != (num_states,):
            raise ValueError(f"final has shape {self.final.shape}, expected ({num_states},)")
        n = 0 if arc_src is None else len(np.asarray(arc_src))
        w = (np.zeros(n, dtype=np.float32) if arc_weight is None
             else np.asarray(arc_weight, dtype=np.float32))
        if len(w) != n:
            raise ValueError("arc arrays have different lengths")
        order = self._init_common(num_states, start, arc_src, arc_dst, arc_ilabel, arc_olabel)
        self.arc_weight = (w if order is None else w[order]).copy()
        self.arc_type = arc_type
        self.fst_type = fst_type
        self.version = 2

    # -- basic accessors ---------------------------------------------------------
    def arcs(self, s: int):
        """List of (dst, ilabel, olabel, weight) leaving state ``s``."""
        a, b = self.state_offsets[s], self.state_offsets[s + 1]
        return list(zip(self.arc_dst[a:b].tolist(), self.arc_ilabel[a:b].tolist(),
                        self.arc_olabel[a:b].tolist(), self.arc_weight[a:b].tolist()))

    def __repr__(self) -> str:
        return (f"Fst(num_states={self.num_states}, num_arcs={self.num_arcs}, "
                f"start={self.start}, arc_type={self.arc_type!r})")

    # -- properties ---------------------------------------------------------------
    def _content(self) -> tuple:
        return (self.start, self.final, self.state_offsets, self.arc_dst,
                self.arc_ilabel, self.arc_olabel, self.arc_weight)

    def _final_is_zero(self) -> np.ndarray:
        return self.final == _INF

    def _final_is_one(self) -> np.ndarray:
        return self.final == 0

    def _arc_is_zero(self) -> np.ndarray:
        return self.arc_weight == _INF

    def _arc_is_one(self) -> np.ndarray:
        return self.arc_weight == 0

    def _weighted(self, w: np.ndarray) -> np.ndarray:
        return ~((w == 0) | (w == _INF))

    def computed_properties(self) -> int:
        """All trinary properties, computed (OpenFst ``ComputeProperties``)."""
        return compute_properties(self.num_states, self.start, self.final != _INF,
                                  self._weighted(self.final), self.state_offsets,
                                  self.arc_src, self.arc_dst, self.arc_ilabel,
                                  self.arc_olabel, self._weighted(self.arc_weight))

    def _full_properties(self) -> int:
        stored = self.stored_properties()
        if (known_properties(stored) & kCopyProperties) == kCopyProperties:
            return stored
        return self.computed_properties() | (stored & kBinaryProperties)

    # -- binary I/O ------------------------------------------------------------------
    @classmethod
    def read(cls, inp: KaldiInput, binary: Optional[bool] = None) -> "Fst":
        """Read an FST as Kaldi's VectorFstHolder does (``binary=None``:
        decide from the first byte)."""
        binary = _decide_binary(inp, binary, "FST")
        if not binary:
            return cls._read_text(inp)
        return cls._read_binary(inp)

    @classmethod
    def _read_binary(cls, inp: KaldiInput) -> "Fst":
        hdr = read_fst_header(inp)
        if hdr.arc_type not in ("standard", "log"):
            raise inp.error(f"unsupported arc type {hdr.arc_type!r} for an FST "
                            f"(expected 'standard' or 'log')", offset=hdr.offset)
        if hdr.fst_type == "vector":
            _check_vector_header(inp, hdr)
            finals, counts, arcs, _ = read_vector_body_fixed(inp, hdr, np.dtype("<f4"), "FST")
            fst = cls._from_parts(hdr, finals, counts, arcs["i"], arcs["o"], arcs["w"],
                                  arcs["n"], inp)
        elif hdr.fst_type == "const":
            if hdr.version not in (1, 2):
                raise inp.error(f"unsupported ConstFst version {hdr.version}", offset=hdr.offset)
            if hdr.num_states < 0 or hdr.num_arcs < 0:
                raise inp.error(f"bad state/arc counts {hdr.num_states}/{hdr.num_arcs} "
                                f"in ConstFst header", offset=hdr.offset)
            aligned = hdr.version == 1
            if aligned:
                _align_input(inp)
            sdt = np.dtype([("w", "<f4"), ("pos", "<u4"), ("narcs", "<u4"),
                            ("nie", "<u4"), ("noe", "<u4")])
            st_off = inp.offset
            states = np.frombuffer(_read_chunked(inp, 20 * hdr.num_states, "ConstFst states"),
                                   dtype=sdt)
            if aligned:
                _align_input(inp)
            adt = np.dtype([("i", "<i4"), ("o", "<i4"), ("w", "<f4"), ("n", "<i4")])
            arcs = np.frombuffer(_read_chunked(inp, 16 * hdr.num_arcs, "ConstFst arcs"),
                                 dtype=adt)
            counts = states["narcs"].astype(np.int64)
            pos = states["pos"].astype(np.int64)
            expect = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else counts
            if not np.array_equal(pos, expect) or int(counts.sum()) != hdr.num_arcs:
                bad = int(np.argmax(pos != expect)) if not np.array_equal(pos, expect) else 0
                raise inp.error(f"ConstFst state {bad} has inconsistent arc position/count",
                                offset=st_off + 20 * bad)
            fst = cls._from_parts(hdr, states["w"], counts, arcs["i"], arcs["o"], arcs["w"],
                                  arcs["n"], inp)
        else:
            raise inp.error(f"unsupported FST type {hdr.fst_type!r} (expected 'vector' or "
                            f"'const')", offset=hdr.offset)
        return fst

    @classmethod
    def _from_parts(cls, hdr: FstHeader, finals, counts, il, ol, w, dst, inp) -> "Fst":
        fst = cls.__new__(cls)
        fst._init_from_body(inp, hdr, counts, il, ol, dst)
        fst.final = np.asarray(finals, dtype=np.float32).copy()
        fst.arc_weight = np.asarray(w, dtype=np.float32).copy()
        fst.arc_type = hdr.arc_type
        fst.fst_type = hdr.fst_type
        fst.version = hdr.version
        fst._keep_header_properties(hdr)
        return fst

    def to_bytes(self, fst_type: str = "vector") -> bytes:
        """The OpenFst binary (``vector``: VectorFst::Write; ``const``:
        ConstFst::Write, unaligned)."""
        if fst_type == "vector":
            props = (self.stored_properties() & kCopyProperties) | _VECTOR_STATIC
            if self.fst_type == "const" and self._unchanged():
                props = (int(self.properties) & kCopyProperties) | _VECTOR_STATIC
            return self._vector_bytes(self.arc_type, props, np.dtype("<f4"))
        if fst_type == "const":
            if self.fst_type == "const" and self._unchanged():
                props = int(self.properties)
            else:
                props = (self._full_properties() & kCopyProperties) | _CONST_STATIC
            hdr = self._header("const", self.arc_type, props, self.num_arcs)
            ns = self.num_states
            sdt = np.dtype([("w", "<f4"), ("pos", "<u4"), ("narcs", "<u4"),
                            ("nie", "<u4"), ("noe", "<u4")])
            st = np.zeros(ns, dtype=sdt)
            st["w"] = self.final
            st["pos"] = self.state_offsets[:-1]
            st["narcs"] = np.diff(self.state_offsets)
            st["nie"] = np.bincount(self.arc_src[self.arc_ilabel == 0], minlength=ns)[:ns] \
                if ns else 0
            st["noe"] = np.bincount(self.arc_src[self.arc_olabel == 0], minlength=ns)[:ns] \
                if ns else 0
            adt = np.dtype([("i", "<i4"), ("o", "<i4"), ("w", "<f4"), ("n", "<i4")])
            ar = np.zeros(self.num_arcs, dtype=adt)
            ar["i"], ar["o"], ar["w"], ar["n"] = (self.arc_ilabel, self.arc_olabel,
                                                  self.arc_weight, self.arc_dst)
            return hdr.to_bytes() + st.tobytes() + ar.tobytes()
        raise ValueError(f"unknown fst_type {fst_type!r}")

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<bytes>") -> "Fst":
        return cls._read_binary(KaldiInput(io.BytesIO(data), name))

    @classmethod
    def from_file(cls, path) -> "Fst":
        """A standalone OpenFst binary file (vector or const)."""
        with open(path, "rb") as fh:
            return cls._read_binary(KaldiInput(fh, str(path)))

    def to_file(self, path, fst_type: Optional[str] = None) -> None:
        """Write a standalone OpenFst binary (default: the type it was read as)."""
        data = self.to_bytes(fst_type or self.fst_type)
        with open(path, "wb") as fh:
            fh.write(data)

    # -- text ------------------------------------------------------------------------
    def to_text(self) -> str:
        """AT&T text as Kaldi's ``WriteFstKaldi`` (FstPrinter, TAB separators)
        prints it, without the leading/trailing newline of a table entry."""
        w = self.arc_weight.tolist()
        fin = self.final.tolist()
        return self._print_text(
            [f"{i}\t{o}" for i, o in zip(self.arc_ilabel.tolist(), self.arc_olabel.tolist())],
            lambda k: "" if w[k] == 0.0 else format_weight(w[k]),
            lambda s: "" if fin[s] == 0.0 else format_weight(fin[s]))

    @classmethod
    def from_text(cls, text: str, arc_type: str = "standard") -> "Fst":
        """Parse AT&T text (Kaldi's ReadFstKaldi rules; tabs or spaces)."""
        data = text.encode("ascii")
        # Skip leading blank lines, then parse up to the next blank line.
        stripped = data.lstrip(b" \t\r\n")
        inp = KaldiInput(io.BytesIO(b"\n" + stripped), "<text>")
        fst = cls._read_text(inp, arc_type=arc_type)
        while not inp.at_eof():
            off = inp.offset
            if inp.read(1) not in _WS:
                raise KaldiFormatError("unexpected text after the empty line ending the FST",
                                       filename="<text>", offset=off)
        return fst

    @classmethod
    def _read_text(cls, inp: KaldiInput, arc_type: str = "standard") -> "Fst":
        lines = _read_text_lines(inp, "FST")
        parsed, bad = _parse_text_fst(lines, 4, 0.0, parse_weight, lambda w: w == _INF)
        if bad is not None:
            raise inp.error(f"bad line in text FST: {bad[1]!r}", offset=bad[0])
        ns, start, finals, src, dst, (il, ol), w = parsed
        final = np.full(ns, _INF, dtype=np.float32)
        for s, v in finals.items():
            final[s] = v
        return cls(ns, start, final, src, dst, il, ol, w, arc_type=arc_type)

    # -- kaldifst ----------------------------------------------------------------------
    def to_kaldifst(self):
        """A ``kaldifst.StdVectorFst`` with the same states/arcs/properties
        (through the binary format in a temporary file)."""
        import kaldifst
        if self.arc_type != "standard":
            raise ValueError("kaldifst.StdVectorFst needs arc type 'standard'")
        return _kaldifst_read(self.to_bytes("vector"), kaldifst.StdVectorFst.read, ".fst", "FST")

    @classmethod
    def from_kaldifst(cls, kfst) -> "Fst":
        """From a kaldifst StdVectorFst / StdConstFst (or any object with a
        ``write(filename)`` method writing an OpenFst binary)."""
        return _kaldifst_write(kfst, cls.from_file, ".fst", "FST")


def _align_input(inp: KaldiInput, align: int = 16) -> None:
    """OpenFst ``AlignInput``: skip bytes until the stream position is a
    multiple of ``align``."""
    pad = (-inp.offset) % align
    if pad:
        inp.read(pad, "alignment padding")

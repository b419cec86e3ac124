"""Kaldi lattices (``Lattice`` and ``CompactLattice``) as numpy arrays.

Sources read (kaldi-asr/kaldi): ``src/lat/kaldi-lattice.cc``
(``LatticeHolder::Write/Read``, ``CompactLatticeHolder::Write/Read``,
``LatticeReader::ReadText``), ``src/fstext/lattice-weight.h``
(``LatticeWeightTpl``, ``CompactLatticeWeightTpl``: binary ``Write``, text
``operator<<``/``>>``, ``ScaleTupleWeight``), ``src/fstext/lattice-utils-inl.h``
(``ConvertLattice``, ``ScaleLattice``), ``src/fstext/factor-inl.h``
(``Factor``, ``DfsOrderVisitor``), OpenFst ``dfs-visit.h``/``topsort.h``.

What Kaldi writes in a table after ``<key> ``:

* binary: the plain OpenFst VectorFst binary (``t.Write(os,
  FstWriteOptions())``), **no** ``\\0B`` marker. Arc type ``lattice4``
  (weight = float32 graph cost, float32 acoustic cost) or
  ``compactlattice44`` (weight = the two float32 costs, int32 string length,
  that many int32 transition-ids). ``LatticeHolder::Read`` peeks at the first
  byte: whitespace -> text; byte 214 (0xd6, first byte of the OpenFst magic)
  -> binary; anything else (e.g. a ``\\0B`` marker) is an error in Kaldi. The
  fst type must be ``vector``. Arc types ``lattice4``, ``lattice8``,
  ``compactlattice44`` and ``compactlattice84`` are all accepted and
  converted (``ConvertLattice``) to the holder's type. Our readers do the
  same and additionally tolerate a ``\\0B`` marker.
* text: ``\\n``, the FstPrinter output (TAB separated; Lattice arcs
  ``src dst ilabel olabel g,a``; CompactLattice printed as an acceptor:
  ``src dst word g,a,t1_t2_t3``; finals ``s g,a`` / ``s g,a,tids``; weights
  equal to One omitted; 6 significant digits; ``Infinity``), then ``\\n``.
  The reader tries both layouts (Lattice and CompactLattice) and converts if
  the text was in the other one.

Conversions follow Kaldi's ``ConvertLattice``: CompactLattice -> Lattice
expands each string into a chain of new states (appended after the original
states, in state then arc order; the weight goes on the first arc; final
strings become chains ending in a new final state); Lattice -> CompactLattice
runs Kaldi's ``Factor`` (DFS preorder; states with exactly one incoming and
one outgoing arc, not initial/final and whose outgoing arc has no olabel are
merged into chains whose transition-ids form the string, weights multiplied
in float32) then OpenFst ``TopSort`` (reverse DFS postorder; skipped when the
result is cyclic).
"""

from __future__ import annotations

import io
import struct
from typing import List, NamedTuple, Optional, Tuple

import numpy as np

from .fst import (FstHeader, _BodyBuffer, _check_vector_header, _csr, _decide_binary,
                  _FstBase, _kaldifst_read, _kaldifst_write, _parse_text_fst,
                  _read_text_lines, _VECTOR_STATIC, format_weight, kCopyProperties,
                  parse_weight, read_fst_header, read_vector_body_fixed)
from .stream import KaldiInput

__all__ = ["Lattice", "CompactLattice", "BestPath", "lattice_scale", "scale_lattice",
           "acoustic_lattice_scale", "graph_lattice_scale"]

_INF = float("inf")
_F4 = np.dtype(("<f4", (2,)))
_F8 = np.dtype(("<f8", (2,)))


class BestPath(NamedTuple):
    """Result of :meth:`Lattice.best_path`."""
    words: List[int]          # non-epsilon output labels along the path
    alignment: List[int]      # non-epsilon input labels (transition-ids)
    graph_cost: float         # summed in float32 along the path, final last
    acoustic_cost: float
    states: List[int]         # visited states (start ... final)


def lattice_scale(lmwt: float = 1.0, acwt: float = 1.0) -> List[List[float]]:
    """Kaldi ``LatticeScale(lmwt, acwt)``: [[lmwt, 0], [0, acwt]]."""
    return [[float(lmwt), 0.0], [0.0, float(acwt)]]


def acoustic_lattice_scale(acwt: float) -> List[List[float]]:
    return lattice_scale(1.0, acwt)


def graph_lattice_scale(lmwt: float) -> List[List[float]]:
    return lattice_scale(lmwt, 1.0)


def _scale_weights(w: np.ndarray, scale) -> np.ndarray:
    """``ScaleTupleWeight`` on an (n, 2) float32 array (double arithmetic,
    rounded to float32; Zero, i.e. value1 == +inf, stays Zero)."""
    s = np.asarray(scale, dtype=np.float64)
    if s.shape != (2, 2):
        raise ValueError("scale must be 2x2")
    w64 = w.astype(np.float64)
    with np.errstate(invalid="ignore"):
        out = np.stack([s[0, 0] * w64[:, 0] + s[0, 1] * w64[:, 1],
                        s[1, 0] * w64[:, 0] + s[1, 1] * w64[:, 1]], axis=1).astype(np.float32)
    zero = w[:, 0] == np.float32(_INF)
    out[zero] = _INF
    return out


def _fmt_lw(g: float, a: float) -> str:
    return f"{format_weight(g)},{format_weight(a)}"


def _lw_text(g: float, a: float, string: Optional[List[int]] = None) -> str:
    """A (compact) lattice weight as printed: '' for One, ``g,a`` or
    ``g,a,t1_t2`` (``string`` given: a CompactLattice weight)."""
    if g == 0 and a == 0 and not string:
        return ""
    if string is None:
        return _fmt_lw(g, a)
    return f"{_fmt_lw(g, a)},{'_'.join(map(str, string))}"


def _parse_float_kaldi(tok: str) -> float:
    """LatticeWeightTpl::ReadFloatType: Infinity/-Infinity/BadNumber or strtod
    consuming the whole token."""
    if tok == "":
        raise ValueError("empty number")
    return parse_weight(tok)


def _parse_lattice_weight(tok: str) -> Tuple[float, float]:
    i = tok.find(",")
    if i < 0:
        raise ValueError(f"no ',' in lattice weight {tok!r}")
    return _parse_float_kaldi(tok[:i]), _parse_float_kaldi(tok[i + 1:])


def _parse_compact_weight(tok: str) -> Tuple[float, float, List[int]]:
    i = tok.rfind(",")
    if i < 0:
        raise ValueError(f"no ',' in compact lattice weight {tok!r}")
    g, a = _parse_lattice_weight(tok[:i])
    s = tok[i + 1:]
    ids: List[int] = []
    if s:
        for part in s.split("_"):
            v = int(part)
            if not -2**31 <= v < 2**31:
                raise ValueError("string element out of int32 range")
            ids.append(v)
    return g, a, ids


def _is_zero(w: np.ndarray) -> np.ndarray:
    return (w[:, 0] == np.float32(_INF)) & (w[:, 1] == np.float32(_INF))


def _is_one(w: np.ndarray) -> np.ndarray:
    return (w[:, 0] == 0) & (w[:, 1] == 0)


class _LatBase(_FstBase):
    """Shared parts of Lattice and CompactLattice (weights: (num, 2) float32
    arrays of graph and acoustic cost)."""

    ARC_TYPE = ""
    COMPACT = False  # True for CompactLattice

    @classmethod
    def _convert(cls, other):
        """``other`` (a lattice of the other type) converted to ``cls``."""
        raise NotImplementedError

    @classmethod
    def _other(cls):
        return Lattice if cls.COMPACT else CompactLattice

    @classmethod
    def read(cls, inp: KaldiInput, binary: Optional[bool] = None):
        """What Kaldi's (Compact)LatticeHolder reads after ``<key> ``
        (``binary=None``: decide from the first byte); a lattice of the other
        type (text layout or binary arc type) is converted (ConvertLattice)."""
        what = "CompactLattice" if cls.COMPACT else "Lattice"
        binary = _decide_binary(inp, binary, what)
        if not binary:
            lat, clat, err = _read_text_either(inp, want_compact=cls.COMPACT)
            mine, other = (clat, lat) if cls.COMPACT else (lat, clat)
            return mine if mine is not None else cls._convert(other)
        hdr = _read_lattice_header(inp, what)
        if hdr.arc_type.startswith("compact") == cls.COMPACT:
            return cls._read_body(inp, hdr)
        return cls._convert(cls._other()._read_body(inp, hdr))

    def to_bytes(self) -> bytes:
        raise NotImplementedError

    def _vector_props(self) -> int:
        return (self.stored_properties() & kCopyProperties) | _VECTOR_STATIC

    def to_kaldi_text(self) -> str:
        """The text form as Kaldi prints it (FstPrinter lines, no leading or
        trailing blank line)."""
        return self.to_text()

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<bytes>"):
        return cls.read(KaldiInput(io.BytesIO(data), name), True)

    @classmethod
    def from_file(cls, path):
        with open(path, "rb") as fh:
            return cls.read(KaldiInput(fh, str(path)), None)

    def to_file(self, path) -> None:
        with open(path, "wb") as fh:
            fh.write(self.to_bytes())

    @classmethod
    def from_text(cls, text: str):
        data = text.encode("ascii").lstrip(b" \t\r\n")
        return cls.read(KaldiInput(io.BytesIO(b"\n" + data), "<text>"), False)

    def copy(self):
        out = type(self).__new__(type(self))
        out.__dict__.update({k: (v.copy() if isinstance(v, np.ndarray) else v)
                             for k, v in self.__dict__.items()})
        return out

    def scale(self, scale):
        """Kaldi ``ScaleLattice(scale, &lat)`` on a copy (scale: 2x2)."""
        out = self.copy()
        out.arc_weight = _scale_weights(self.arc_weight, scale)
        fin = ~_is_zero(self.final)
        out.final = self.final.copy()
        out.final[fin] = _scale_weights(self.final[fin], scale)
        return out

    def scale_lattice(self, lmwt: float = 1.0, acwt: float = 1.0):
        """``ScaleLattice(LatticeScale(lmwt, acwt), &lat)`` on a copy."""
        return self.scale(lattice_scale(lmwt, acwt))


def _read_lattice_header(inp: KaldiInput, what: str) -> FstHeader:
    hdr = read_fst_header(inp)
    if hdr.fst_type != "vector":
        raise inp.error(f"reading {what}: unsupported FST type {hdr.fst_type!r} "
                        f"(Kaldi reads only 'vector')", offset=hdr.offset)
    _check_vector_header(inp, hdr)
    if hdr.arc_type not in ("lattice4", "lattice8", "compactlattice44", "compactlattice84"):
        raise inp.error(f"FST with arc type {hdr.arc_type!r} cannot be converted to {what}",
                        offset=hdr.offset)
    return hdr


# -- Lattice ------------------------------------------------------------------------------

class Lattice(_LatBase):
    """Kaldi ``Lattice``: arc type ``lattice4``; weights (graph_cost,
    acoustic_cost) float32 pairs; ilabel = transition-id, olabel = word.

    ``final``: (num_states, 2) float32, (+inf, +inf) = not final;
    ``arc_weight``: (num_arcs, 2) float32; arcs grouped by source state."""

    ARC_TYPE = "lattice4"

    @classmethod
    def _convert(cls, other: "CompactLattice") -> "Lattice":
        return other.to_lattice()

    def __init__(self, num_states: int = 0, start: int = -1, final=None, arc_src=None,
                 arc_dst=None, arc_ilabel=None, arc_olabel=None, arc_weight=None):
        num_states = int(num_states)
        self.final = (np.full((num_states, 2), _INF, dtype=np.float32) if final is None
                      else np.asarray(final, dtype=np.float32).reshape(num_states, 2).copy())
        order = self._init_common(num_states, start, arc_src, arc_dst, arc_ilabel, arc_olabel)
        n = len(self.arc_src)
        w = (np.zeros((n, 2), dtype=np.float32) if arc_weight is None
             else np.asarray(arc_weight, dtype=np.float32).reshape(n, 2))
        if order is not None:
            w = w[order]
        self.arc_weight = w.copy()

    def __repr__(self) -> str:
        return f"Lattice(num_states={self.num_states}, num_arcs={self.num_arcs}, start={self.start})"

    def _content(self) -> tuple:
        return (self.start, self.final, self.state_offsets, self.arc_dst,
                self.arc_ilabel, self.arc_olabel, self.arc_weight)

    def _final_is_zero(self):
        return _is_zero(self.final)

    def _final_is_one(self):
        return _is_one(self.final)

    def _arc_is_zero(self):
        return _is_zero(self.arc_weight)

    def _arc_is_one(self):
        return _is_one(self.arc_weight)

    def arcs(self, s: int):
        a, b = self.state_offsets[s], self.state_offsets[s + 1]
        return [(int(self.arc_dst[k]), int(self.arc_ilabel[k]), int(self.arc_olabel[k]),
                 (float(self.arc_weight[k, 0]), float(self.arc_weight[k, 1])))
                for k in range(a, b)]

    # -- binary -------------------------------------------------------------------
    @classmethod
    def _read_body(cls, inp: KaldiInput, hdr: FstHeader) -> "Lattice":
        wdt = _F4 if hdr.arc_type == "lattice4" else _F8
        finals, counts, arcs, _ = read_vector_body_fixed(inp, hdr, wdt, "Lattice")
        lat = cls.__new__(cls)
        lat._init_from_body(inp, hdr, counts, arcs["i"], arcs["o"], arcs["n"])
        lat.final = np.asarray(finals, dtype=np.float32).reshape(len(counts), 2).copy()
        lat.arc_weight = np.asarray(arcs["w"], dtype=np.float32).reshape(-1, 2).copy()
        lat._keep_header_properties(hdr, hdr.arc_type == "lattice4")
        return lat

    def to_bytes(self) -> bytes:
        return self._vector_bytes(self.ARC_TYPE, self._vector_props(), _F4)

    # -- text -----------------------------------------------------------------------
    def to_text(self) -> str:
        w = self.arc_weight.tolist()
        fin = self.final.tolist()
        return self._print_text(
            [f"{i}\t{o}" for i, o in zip(self.arc_ilabel.tolist(), self.arc_olabel.tolist())],
            lambda k: _lw_text(*w[k]), lambda s: _lw_text(*fin[s]))

    # -- operations --------------------------------------------------------------------
    def to_compact(self) -> "CompactLattice":
        """Kaldi ``ConvertLattice(lat, &clat)`` (invert = true)."""
        return _lattice_to_compact(self)

    def to_kaldifst(self):
        """A ``kaldifst.Lattice`` (through the binary format)."""
        import kaldifst
        return _kaldifst_read(self.to_bytes(), kaldifst.Lattice.read, ".lat", "lattice")

    @classmethod
    def from_kaldifst(cls, klat) -> "Lattice":
        return _kaldifst_write(klat, cls.from_file, ".lat", "lattice")

    def topological_order(self) -> Optional[List[int]]:
        """States in a topological order (Kahn), or None if cyclic."""
        ns = self.num_states
        indeg = np.bincount(self.arc_dst, minlength=ns)[:ns].tolist() if ns else []
        offs = self.state_offsets.tolist()
        dst = self.arc_dst.tolist()
        todo = [s for s in range(ns) if indeg[s] == 0]
        order = []
        while todo:
            s = todo.pop()
            order.append(s)
            for k in range(offs[s], offs[s + 1]):
                t = dst[k]
                indeg[t] -= 1
                if indeg[t] == 0:
                    todo.append(t)
        return order if len(order) == ns else None

    def best_path(self) -> Optional[BestPath]:
        """Shortest path in the tropical semiring over graph + acoustic cost
        (ties: lower graph cost, as Kaldi's LatticeWeight ``Compare``).
        The lattice must be acyclic. Returns None if no final state is
        reachable. Costs are accumulated in float32 along the path from the
        start (Kaldi's ``GetLinearSymbolSequence``), final weight last."""
        if self.start < 0:
            return None
        order = self.topological_order()
        if order is None:
            raise ValueError("best_path needs an acyclic lattice")
        ns = self.num_states
        offs = self.state_offsets.tolist()
        dst = self.arc_dst.tolist()
        w = self.arc_weight.astype(np.float64)
        tot = (w[:, 0] + w[:, 1]).tolist()
        gw = w[:, 0].tolist()
        dist: List[Optional[Tuple[float, float]]] = [None] * ns
        back = [-1] * ns
        dist[self.start] = (0.0, 0.0)
        for s in order:
            d = dist[s]
            if d is None:
                continue
            for k in range(offs[s], offs[s + 1]):
                if tot[k] == _INF:
                    continue
                cand = (d[0] + tot[k], d[1] + gw[k])
                t = dst[k]
                if dist[t] is None or cand < dist[t]:
                    dist[t] = cand
                    back[t] = k
        fin = self.final.astype(np.float64)
        best = None
        best_state = -1
        for s in range(ns):
            if dist[s] is None or (fin[s, 0] == _INF and fin[s, 1] == _INF):
                continue
            cand = (dist[s][0] + fin[s, 0] + fin[s, 1], dist[s][1] + fin[s, 0])
            if best is None or cand < best:
                best, best_state = cand, s
        if best is None:
            return None
        arcs = []
        s = best_state
        while back[s] >= 0 and len(arcs) <= self.num_arcs:
            k = back[s]
            arcs.append(k)
            s = int(self.arc_src[k])
        arcs.reverse()
        g = np.float32(0.0)
        a = np.float32(0.0)
        words, ali, states = [], [], [self.start]
        for k in arcs:
            g = np.float32(g + self.arc_weight[k, 0])
            a = np.float32(a + self.arc_weight[k, 1])
            if self.arc_ilabel[k] != 0:
                ali.append(int(self.arc_ilabel[k]))
            if self.arc_olabel[k] != 0:
                words.append(int(self.arc_olabel[k]))
            states.append(int(self.arc_dst[k]))
        g = np.float32(g + self.final[best_state, 0])
        a = np.float32(a + self.final[best_state, 1])
        return BestPath(words, ali, float(g), float(a), states)


# -- CompactLattice ------------------------------------------------------------------------

class CompactLattice(_LatBase):
    """Kaldi ``CompactLattice``: arc type ``compactlattice44``; an acceptor
    on words whose weights are (graph_cost, acoustic_cost, transition-id
    string).

    ``final`` (num_states, 2) float32 with ``final_strings`` given as CSR
    ``final_string_offsets`` (num_states+1) / ``final_string_data`` (int32);
    ``arc_weight`` (num_arcs, 2) with ``arc_string_offsets`` /
    ``arc_string_data``. ``arc_ilabel``/``arc_olabel`` are both kept (equal in
    lattices Kaldi writes)."""

    ARC_TYPE = "compactlattice44"
    COMPACT = True

    @classmethod
    def _convert(cls, other: Lattice) -> "CompactLattice":
        return other.to_compact()

    def __init__(self, num_states: int = 0, start: int = -1, final=None, final_strings=None,
                 arc_src=None, arc_dst=None, arc_ilabel=None, arc_olabel=None,
                 arc_weight=None, arc_strings=None):
        num_states = int(num_states)
        self.final = (np.full((num_states, 2), _INF, dtype=np.float32) if final is None
                      else np.asarray(final, dtype=np.float32).reshape(num_states, 2).copy())
        fs = [[] for _ in range(num_states)] if final_strings is None else \
            [list(x) for x in final_strings]
        if len(fs) != num_states:
            raise ValueError("final_strings must have one entry per state")
        self.final_string_offsets = _csr([len(x) for x in fs])
        self.final_string_data = np.asarray([v for x in fs for v in x], dtype=np.int32)
        order = self._init_common(num_states, start, arc_src, arc_dst, arc_ilabel, arc_olabel)
        n = len(self.arc_src)
        w = (np.zeros((n, 2), dtype=np.float32) if arc_weight is None
             else np.asarray(arc_weight, dtype=np.float32).reshape(n, 2))
        st = [[] for _ in range(n)] if arc_strings is None else [list(x) for x in arc_strings]
        if len(st) != n:
            raise ValueError("arc_strings must have one entry per arc")
        if order is not None:
            w = w[order]
            st = [st[i] for i in order.tolist()]
        self.arc_weight = w.copy()
        self.arc_string_offsets = _csr([len(x) for x in st])
        self.arc_string_data = np.asarray([v for x in st for v in x], dtype=np.int32)

    def __repr__(self) -> str:
        return (f"CompactLattice(num_states={self.num_states}, num_arcs={self.num_arcs}, "
                f"start={self.start})")

    def final_string(self, s: int) -> List[int]:
        return self.final_string_data[self.final_string_offsets[s]:
                                      self.final_string_offsets[s + 1]].tolist()

    def arc_string(self, k: int) -> List[int]:
        return self.arc_string_data[self.arc_string_offsets[k]:
                                    self.arc_string_offsets[k + 1]].tolist()

    def arcs(self, s: int):
        a, b = self.state_offsets[s], self.state_offsets[s + 1]
        return [(int(self.arc_dst[k]), int(self.arc_ilabel[k]), int(self.arc_olabel[k]),
                 (float(self.arc_weight[k, 0]), float(self.arc_weight[k, 1]),
                  self.arc_string(k))) for k in range(a, b)]

    def _content(self) -> tuple:
        return (self.start, self.final, self.final_string_offsets, self.final_string_data,
                self.state_offsets, self.arc_dst, self.arc_ilabel, self.arc_olabel,
                self.arc_weight, self.arc_string_offsets, self.arc_string_data)

    def _final_is_zero(self):
        return _is_zero(self.final) & (np.diff(self.final_string_offsets) == 0)

    def _final_is_one(self):
        return _is_one(self.final) & (np.diff(self.final_string_offsets) == 0)

    def _arc_is_zero(self):
        return _is_zero(self.arc_weight) & (np.diff(self.arc_string_offsets) == 0)

    def _arc_is_one(self):
        return _is_one(self.arc_weight) & (np.diff(self.arc_string_offsets) == 0)

    # -- binary ------------------------------------------------------------------------
    @classmethod
    def _read_body(cls, inp: KaldiInput, hdr: FstHeader) -> "CompactLattice":
        dbl = hdr.arc_type == "compactlattice84"
        wsz = 16 if dbl else 8
        wfmt = "<dd" if dbl else "<ff"
        smin = wsz + 4 + 8
        amin = 12 + wsz + 4
        body = _BodyBuffer(inp, "CompactLattice")
        ns = hdr.num_states
        unknown = ns == -1
        finals: List[Tuple[float, float]] = []
        fstr: List[List[int]] = []
        counts: List[int] = []
        a_il: List[int] = []
        a_ol: List[int] = []
        a_w: List[Tuple[float, float]] = []
        a_str: List[List[int]] = []
        a_dst: List[int] = []
        unpack_w = struct.Struct(wfmt).unpack_from
        unpack_i = struct.Struct("<i").unpack_from
        unpack_q = struct.Struct("<q").unpack_from
        s = 0

        def rest_states(k):
            return 0 if unknown else smin * max(ns - k, 0)

        def read_string(lb):
            body.ensure(4, 4 + lb)
            off = body.offset()
            n = unpack_i(body.take(4))[0]
            if n < 0:
                raise inp.error("negative string length in compact lattice weight", offset=off)
            body.ensure(4 * n, 4 * n + lb)
            return list(struct.unpack(f"<{n}i", body.take(4 * n))) if n else []

        while unknown or s < ns:
            if unknown and body.exhausted():
                break
            body.ensure(wsz, rest_states(s) or smin)
            finals.append(unpack_w(body.take(wsz)))
            fstr.append(read_string(8 + rest_states(s + 1)))
            body.ensure(8, 8 + rest_states(s + 1))
            off = body.offset()
            n = unpack_q(body.take(8))[0]
            if n < 0:
                raise inp.error(f"negative arc count {n} for state {s}", offset=off)
            counts.append(n)
            for k in range(n):
                lb = amin * (n - k - 1) + rest_states(s + 1)
                body.ensure(8 + wsz, amin + lb)
                il, ol = struct.unpack_from("<ii", body.take(8))
                a_w.append(unpack_w(body.take(wsz)))
                a_str.append(read_string(4 + lb))
                body.ensure(4, 4 + lb)
                a_dst.append(unpack_i(body.take(4))[0])
                a_il.append(il)
                a_ol.append(ol)
            s += 1
        c = cls.__new__(cls)
        c._init_from_body(inp, hdr, counts, a_il, a_ol, a_dst)
        c.final = np.asarray(finals, dtype=np.float32).reshape(len(counts), 2)
        c.final_string_offsets = _csr([len(x) for x in fstr])
        c.final_string_data = np.asarray([v for x in fstr for v in x], dtype=np.int32)
        c.arc_weight = np.asarray(a_w, dtype=np.float32).reshape(-1, 2)
        c.arc_string_offsets = _csr([len(x) for x in a_str])
        c.arc_string_data = np.asarray([v for x in a_str for v in x], dtype=np.int32)
        c._keep_header_properties(hdr, not dbl)
        return c

    def to_bytes(self) -> bytes:
        out = [self._header("vector", self.ARC_TYPE, self._vector_props()).to_bytes()]
        self.final.tolist()
        fo = self.final_string_offsets.tolist()
        fd = self.final_string_data
        offs = self.state_offsets.tolist()
        il, ol, dst = self.arc_ilabel.tolist(), self.arc_olabel.tolist(), self.arc_dst.tolist()
        w = self.arc_weight
        ao = self.arc_string_offsets.tolist()
        ad = self.arc_string_data
        np.float32
        for s in range(self.num_states):
            out.append(self.final[s].astype("<f4").tobytes())
            out.append(struct.pack("<i", fo[s + 1] - fo[s]))
            out.append(fd[fo[s]:fo[s + 1]].astype("<i4").tobytes())
            out.append(struct.pack("<q", offs[s + 1] - offs[s]))
            for k in range(offs[s], offs[s + 1]):
                out.append(struct.pack("<ii", il[k], ol[k]))
                out.append(w[k].astype("<f4").tobytes())
                out.append(struct.pack("<i", ao[k + 1] - ao[k]))
                out.append(ad[ao[k]:ao[k + 1]].astype("<i4").tobytes())
                out.append(struct.pack("<i", dst[k]))
        return b"".join(out)

    # -- text -------------------------------------------------------------------------
    def to_text(self) -> str:
        """Kaldi's CompactLatticeHolder text (acceptor: ``src dst word w``)."""
        w = self.arc_weight.tolist()
        fin = self.final.tolist()
        return self._print_text(
            [str(i) for i in self.arc_ilabel.tolist()],  # printed as an acceptor: ilabel only
            lambda k: _lw_text(*w[k], self.arc_string(k)),
            lambda s: _lw_text(*fin[s], self.final_string(s)))

    # -- operations --------------------------------------------------------------------
    def to_lattice(self) -> Lattice:
        """Kaldi ``ConvertLattice(clat, &lat)`` (invert = true)."""
        return _compact_to_lattice(self)

    def best_path(self) -> Optional[BestPath]:
        """Best path of the equivalent Lattice (see :meth:`Lattice.best_path`);
        ``states`` refers to the expanded Lattice's states."""
        return self.to_lattice().best_path()

    def to_kaldifst(self):
        """kaldifst has no CompactLattice type: returns the equivalent
        ``kaldifst.Lattice`` (ConvertLattice)."""
        return self.to_lattice().to_kaldifst()


def scale_lattice(lat, lmwt: float = 1.0, acwt: float = 1.0):
    """Kaldi ``ScaleLattice(LatticeScale(lmwt, acwt), &lat)`` (returns a copy)."""
    return lat.scale(lattice_scale(lmwt, acwt))


# -- text reading (both layouts, as LatticeReader::ReadText) -----------------------------

def _read_text_either(inp: KaldiInput, want_compact: bool):
    lines = _read_text_lines(inp, "lattice")
    lat, lat_err = _parse_lattice_lines(lines)
    clat, clat_err = _parse_compact_lines(lines)
    if lat is None and clat is None:
        off, msg = lat_err if not want_compact else clat_err
        raise inp.error(f"bad line in lattice text: {msg}", offset=off)
    return lat, clat, None


def _parse_lattice_lines(lines):
    parsed, bad = _parse_text_fst(lines, 4, (0.0, 0.0), _parse_lattice_weight,
                                  lambda w: w[0] == _INF and w[1] == _INF)
    if bad is not None:
        return None, bad
    ns, start, finals, src, dst, (il, ol), w = parsed
    final = np.full((ns, 2), _INF, dtype=np.float32)
    for s, v in finals.items():
        final[s] = v
    try:
        return Lattice(ns, start, final, src, dst, il, ol,
                       np.asarray(w, dtype=np.float32).reshape(-1, 2)), None
    except ValueError as e:  # pragma: no cover
        return None, (lines[0][0], str(e))


def _parse_compact_lines(lines):
    parsed, bad = _parse_text_fst(lines, 3, (0.0, 0.0, []), _parse_compact_weight,
                                  lambda w: w[0] == _INF and w[1] == _INF and not w[2])
    if bad is not None:
        return None, bad
    ns, start, finals, src, dst, (lab,), w = parsed
    final = np.full((ns, 2), _INF, dtype=np.float32)
    fstr = [[] for _ in range(ns)]
    for s, (g, a, st) in finals.items():
        final[s] = (g, a)
        fstr[s] = st
    return CompactLattice(ns, start, final, fstr, src, dst, lab, lab,
                          np.asarray([(g, a) for g, a, _ in w], dtype=np.float32).reshape(-1, 2),
                          [st for _, _, st in w]), None


# -- conversions --------------------------------------------------------------------------

def _compact_to_lattice(c: CompactLattice) -> Lattice:
    ns = c.num_states
    n_states = ns
    src, dst, il, ol, w = [], [], [], [], []
    final = [tuple(x) for x in c.final.tolist()]
    extra_final: List[Tuple[float, float]] = []
    offs = c.state_offsets.tolist()
    cw = c.arc_weight.tolist()
    cil, cdst = c.arc_ilabel.tolist(), c.arc_dst.tolist()
    fin_zero = c._final_is_zero().tolist()
    for s in range(ns):
        if not fin_zero[s]:
            fs = c.final_string(s)
            cur = s
            for k, t in enumerate(fs):
                nxt = n_states
                n_states += 1
                extra_final.append((_INF, _INF))
                # pre-swap: ilabel 0, olabel t; swapped -> ilabel t, olabel 0
                src.append(cur); dst.append(nxt); il.append(t); ol.append(0)
                w.append(tuple(c.final[s].tolist()) if k == 0 else (0.0, 0.0))
                cur = nxt
            if fs:
                if cur >= ns:
                    extra_final[cur - ns] = (0.0, 0.0)
                final[s] = (_INF, _INF) if cur != s else final[s]
            # final of s itself stays only if no string
        for k in range(offs[s], offs[s + 1]):
            st = c.arc_string(k)
            L = len(st)
            cur = s
            for n in range(L - 1):
                nxt = n_states
                n_states += 1
                extra_final.append((_INF, _INF))
                word = cil[k] if n == 0 else 0
                src.append(cur); dst.append(nxt); il.append(st[n]); ol.append(word)
                w.append(tuple(cw[k]) if n == 0 else (0.0, 0.0))
                cur = nxt
            word = cil[k] if L <= 1 else 0
            tid = st[L - 1] if L > 0 else 0
            src.append(cur); dst.append(cdst[k]); il.append(tid); ol.append(word)
            w.append(tuple(cw[k]) if L <= 1 else (0.0, 0.0))
    all_final = np.asarray(final + extra_final, dtype=np.float32).reshape(n_states, 2)
    return Lattice(n_states, c.start, all_final, src, dst, il, ol,
                   np.asarray(w, dtype=np.float32).reshape(-1, 2))


def _dfs(num_states: int, start: int, offs: List[int], dst: List[int]):
    """OpenFst DfsVisit over all states (roots: start, then 0, 1, ...).
    Returns (preorder, postorder, acyclic)."""
    color = [0] * num_states
    pre, post = [], []
    acyclic = True
    if start < 0:
        return pre, post, acyclic
    roots = [start] + list(range(num_states))
    for root in roots:
        if color[root]:
            continue
        color[root] = 1
        pre.append(root)
        frames = [[root, offs[root]]]
        while frames:
            fr = frames[-1]
            s, a = fr
            if a < offs[s + 1]:
                t = dst[a]
                if color[t] == 0:
                    color[t] = 1
                    pre.append(t)
                    frames.append([t, offs[t]])
                    # the parent's iterator advances when the child finishes
                    continue
                if color[t] == 1:
                    acyclic = False
                fr[1] = a + 1
                continue
            color[s] = 2
            post.append(s)
            frames.pop()
            if frames:
                frames[-1][1] += 1
    return pre, post, acyclic


def _lattice_to_compact(lat: Lattice) -> CompactLattice:
    """Kaldi ConvertLattice(Lattice -> CompactLattice, invert=true):
    Factor, TopSort, then copy with strings."""
    if lat.start < 0:
        return CompactLattice(0, -1)
    ns = lat.num_states
    offs = lat.state_offsets.tolist()
    dst = lat.arc_dst.tolist()
    il = lat.arc_ilabel.tolist()
    ol = lat.arc_olabel.tolist()
    wg = lat.arc_weight[:, 0]
    wa = lat.arc_weight[:, 1]
    order, _, _ = _dfs(ns, lat.start, offs, dst)
    # GetStateProperties
    kFinal, kInitial, kArcsIn, kMultIn, kArcsOut, kMultOut, kOl, kIl = (
        0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80)
    props = [0] * ns
    props[lat.start] |= kInitial
    fin_zero = _is_zero(lat.final).tolist()
    for s in range(ns):
        for k in range(offs[s], offs[s + 1]):
            if il[k] != 0:
                props[s] |= kIl
            if ol[k] != 0:
                props[s] |= kOl
            t = dst[k]
            if props[s] & kArcsOut:
                props[s] |= kMultOut
            props[s] |= kArcsOut
            if props[t] & kArcsIn:
                props[t] |= kMultIn
            props[t] |= kArcsIn
        if not fin_zero[s]:
            props[s] |= kFinal
    remove = [p in (kArcsIn | kArcsOut, kArcsIn | kArcsOut | kIl) for p in props]
    mapping = [-1] * ns
    n_new = 0
    f_src, f_dst, f_lab, f_ol, f_g, f_a = [], [], [], [], [], []
    f_final = {}
    symbols = {(): 0}
    sym_list: List[Tuple[int, ...]] = [()]
    for state in order:
        if remove[state]:
            continue
        if mapping[state] == -1:
            mapping[state] = n_new
            n_new += 1
        new_state = mapping[state]
        for k in range(offs[state], offs[state + 1]):
            seq = [] if il[k] == 0 else [il[k]]
            g = np.float32(wg[k])
            a = np.float32(wa[k])
            nxt = dst[k]
            guard = 0
            while remove[nxt]:
                k2 = offs[nxt]
                g = np.float32(g + wg[k2])
                a = np.float32(a + wa[k2])
                if il[k2] != 0:
                    seq.append(il[k2])
                nxt = dst[k2]
                guard += 1
                if guard > ns:
                    raise ValueError("cycle of chain states in lattice")
            if mapping[nxt] == -1:
                mapping[nxt] = n_new
                n_new += 1
            key = tuple(seq)
            lab = symbols.get(key)
            if lab is None:
                lab = symbols[key] = len(sym_list)
                sym_list.append(key)
            f_src.append(new_state); f_dst.append(mapping[nxt]); f_lab.append(lab)
            f_ol.append(ol[k]); f_g.append(g); f_a.append(a)
        if not fin_zero[state]:
            f_final[new_state] = tuple(lat.final[state].tolist())
    f_start = mapping[lat.start]
    # Arcs of ffst grouped by source (new states are processed in creation
    # order? not necessarily) -> build CSR preserving per-state arc order.
    m = len(f_src)
    by_state: List[List[int]] = [[] for _ in range(n_new)]
    for i in range(m):
        by_state[f_src[i]].append(i)
    foffs = [0]
    forder = []
    for s in range(n_new):
        forder.extend(by_state[s])
        foffs.append(len(forder))
    fdst = [f_dst[i] for i in forder]
    # TopSort (OpenFst): reverse DFS postorder, only if acyclic.
    _, post, acyclic = _dfs(n_new, f_start, foffs, fdst)
    if acyclic and len(post) == n_new:
        newid = [0] * n_new
        for i, s in enumerate(reversed(post)):
            newid[s] = i
    else:
        newid = list(range(n_new))
    out_src, out_dst, out_lab, out_w, out_str = [], [], [], [], []
    inv = [0] * n_new
    for s in range(n_new):
        inv[newid[s]] = s
    final = np.full((n_new, 2), _INF, dtype=np.float32)
    for s, v in f_final.items():
        final[newid[s]] = v
    for ns_ in range(n_new):
        s = inv[ns_]
        for j in range(foffs[s], foffs[s + 1]):
            i = forder[j]
            out_src.append(ns_)
            out_dst.append(newid[f_dst[i]])
            out_lab.append(f_ol[i])
            out_w.append((f_g[i], f_a[i]))
            out_str.append(list(sym_list[f_lab[i]]))
    return CompactLattice(n_new, newid[f_start], final, None, out_src, out_dst, out_lab,
                          out_lab, np.asarray(out_w, dtype=np.float32).reshape(-1, 2), out_str)

"""Tests for kbind.io.lattice: byte layouts derived from Kaldi/OpenFst source
(lattice-weight.h Write, vector-fst.h), kaldifst round trips, conversions
and best path checked by brute force."""

from __future__ import annotations

import io
import random
import struct

import numpy as np
import pytest

import kaldifst

from kbind.io.errors import KaldiFormatError
from kbind.io.lattice import CompactLattice, Lattice, lattice_scale, scale_lattice
from kbind.io.stream import KaldiInput
from .test_fst import check_byte_corruptions

INF = float("inf")
MAGIC = 2125659606


def _inp(data: bytes) -> KaldiInput:
    return KaldiInput(io.BytesIO(data), "<test>")


def _s(x: str) -> bytes:
    return struct.pack("<i", len(x)) + x.encode()


def _header(arc_type, props, start, ns) -> bytes:
    return (struct.pack("<i", MAGIC) + _s("vector") + _s(arc_type)
            + struct.pack("<iiQqqq", 2, 0, props, start, ns, 0))


# A small lattice described independently of the code under test:
# state -> (final (g, a) or None, [(dst, ilabel, olabel, (g, a))])
LAT = {
    0: (None, [(1, 11, 0, (0.5, 1.0)), (2, 12, 100, (1.0, 0.25))]),
    1: (None, [(3, 13, 200, (0.0, 2.0)), (2, 14, 0, (0.25, 0.0))]),
    2: (None, [(3, 15, 300, (2.0, 0.5)), (3, 16, 0, (0.0, 0.0))]),
    3: ((0.75, 0.125), [(4, 17, 0, (0.0, 0.5))]),
    4: ((0.0, 0.0), []),
}


def _lat_bytes(lat, props=0x3) -> bytes:
    out = [_header("lattice4", props, 0, len(lat))]
    for s in range(len(lat)):
        fin, arcs = lat[s]
        fg, fa = fin if fin is not None else (INF, INF)
        out.append(struct.pack("<ffq", fg, fa, len(arcs)))
        for dst, il, ol, (g, a) in arcs:
            out.append(struct.pack("<iiffi", il, ol, g, a, dst))
    return b"".join(out)


# CompactLattice: state -> (final (g, a, str) or None, [(dst, word, (g, a, str))])
CLAT = {
    0: (None, [(1, 5, (1.0, 2.0, [3, 4, 4])), (2, 6, (0.5, 0.5, [7]))]),
    1: ((0.25, 0.0, [9, 9]), [(2, 0, (0.0, 1.0, []))]),
    2: ((0.0, 0.0, []), []),
}


def _clat_bytes(clat, props=0x3) -> bytes:
    out = [_header("compactlattice44", props, 0, len(clat))]
    for s in range(len(clat)):
        fin, arcs = clat[s]
        fg, fa, fs = fin if fin is not None else (INF, INF, [])
        out.append(struct.pack("<ffi", fg, fa, len(fs)) + struct.pack(f"<{len(fs)}i", *fs))
        out.append(struct.pack("<q", len(arcs)))
        for dst, word, (g, a, st) in arcs:
            out.append(struct.pack("<iiffi", word, word, g, a, len(st))
                       + struct.pack(f"<{len(st)}i", *st) + struct.pack("<i", dst))
    return b"".join(out)


def _lat_from_dict(d) -> Lattice:
    ns = len(d)
    final = [d[s][0] if d[s][0] is not None else (INF, INF) for s in range(ns)]
    src, dst, il, ol, w = [], [], [], [], []
    for s in range(ns):
        for t, i, o, wt in d[s][1]:
            src.append(s); dst.append(t); il.append(i); ol.append(o); w.append(wt)
    return Lattice(ns, 0, final, src, dst, il, ol, w)


def _paths_lattice(lat: Lattice):
    """Brute force: all complete paths as (words, tids, g, a) with float64 sums."""
    out = []

    def rec(s, words, tids, g, a, depth):
        if depth > 100:
            raise RuntimeError("cycle")
        fg, fa = lat.final[s]
        if not (fg == INF and fa == INF):
            out.append((tuple(words), tuple(tids), g + float(fg), a + float(fa)))
        for k in range(lat.state_offsets[s], lat.state_offsets[s + 1]):
            w = lat.arc_weight[k]
            i, o = int(lat.arc_ilabel[k]), int(lat.arc_olabel[k])
            rec(int(lat.arc_dst[k]), words + ([o] if o else []), tids + ([i] if i else []),
                g + float(w[0]), a + float(w[1]), depth + 1)

    rec(lat.start, [], [], 0.0, 0.0, 0)
    return out


def _paths_compact(c: CompactLattice):
    out = []

    def rec(s, words, tids, g, a):
        fg, fa = c.final[s]
        fs = c.final_string(s)
        if not (fg == INF and fa == INF and not fs):
            out.append((tuple(words), tuple(tids + fs), g + float(fg), a + float(fa)))
        for k in range(c.state_offsets[s], c.state_offsets[s + 1]):
            w = c.arc_weight[k]
            o = int(c.arc_olabel[k])
            rec(int(c.arc_dst[k]), words + ([o] if o else []), tids + c.arc_string(k),
                g + float(w[0]), a + float(w[1]))

    rec(c.start, [], [], 0.0, 0.0)
    return out


def _same_paths(p1, p2):
    k1 = sorted((w, t, round(g, 5), round(a, 5)) for w, t, g, a in p1)
    k2 = sorted((w, t, round(g, 5), round(a, 5)) for w, t, g, a in p2)
    return k1 == k2


# -- binary layouts -----------------------------------------------------------------------

def test_lattice_binary_layout_from_source():
    data = _lat_bytes(LAT, props=0x123450003)
    lat = Lattice.from_bytes(data)
    assert lat.num_states == 5 and lat.start == 0 and lat.num_arcs == 7
    for s, (fin, arcs) in LAT.items():
        exp_fin = fin if fin is not None else (INF, INF)
        assert tuple(lat.final[s]) == tuple(np.float32(exp_fin))
        got = lat.arcs(s)
        assert [(d, i, o) for d, i, o, _ in got] == [(d, i, o) for d, i, o, _ in arcs]
        assert [w for *_, w in got] == [tuple(float(np.float32(x)) for x in w)
                                        for *_, w in arcs]
    assert lat.to_bytes() == data  # unchanged: stored properties kept


def test_compact_lattice_binary_layout_from_source():
    data = _clat_bytes(CLAT)
    c = CompactLattice.from_bytes(data)
    assert c.num_states == 3 and c.num_arcs == 3 and c.start == 0
    assert c.final_string(1) == [9, 9] and c.final_string(0) == []
    assert c.arc_string(0) == [3, 4, 4] and c.arc_string(1) == [7] and c.arc_string(2) == []
    assert list(c.arc_olabel) == [5, 6, 0] and list(c.arc_ilabel) == [5, 6, 0]
    assert tuple(c.final[1]) == (0.25, 0.0)
    assert c.to_bytes() == data


def test_binary_marker_and_archive_reading():
    data = _lat_bytes(LAT)
    cdata = _clat_bytes(CLAT)
    arch = b"a " + data + b"b \0B" + data + b"c " + cdata
    inp = _inp(arch)
    assert inp.read_token() == "a"
    l1 = Lattice.read(inp, None)
    assert inp.read_token() == "b"
    l2 = Lattice.read(inp, None)
    assert inp.read_token() == "c"
    c = CompactLattice.read(inp, None)
    assert inp.at_eof()
    assert l1.equal(l2) and c.to_bytes() == cdata


def test_holders_convert_between_types_like_kaldi():
    # LatticeHolder reading a compactlattice44 entry converts it, and vice versa
    cdata = _clat_bytes(CLAT)
    lat = Lattice.from_bytes(cdata)
    assert _same_paths(_paths_lattice(lat), _paths_compact(CompactLattice.from_bytes(cdata)))
    data = _lat_bytes(LAT)
    c = CompactLattice.from_bytes(data)
    assert _same_paths(_paths_compact(c), _paths_lattice(Lattice.from_bytes(data)))


def test_lattice8_is_read_as_float():
    out = [_header("lattice8", 3, 0, 2), struct.pack("<ddq", INF, INF, 1),
           struct.pack("<iiddi", 3, 4, 0.5, 1.5, 1), struct.pack("<ddq", 0.25, 0.0, 0)]
    lat = Lattice.from_bytes(b"".join(out))
    assert lat.arcs(0) == [(1, 3, 4, (0.5, 1.5))]
    assert tuple(lat.final[1]) == (0.25, 0.0)
    assert b"lattice4" in lat.to_bytes()


# -- kaldifst --------------------------------------------------------------------------------

def _kaldifst_lattice(d):
    k = kaldifst.Lattice()
    for _ in range(len(d)):
        k.add_state()
    k.start = 0
    for s in range(len(d)):
        fin, arcs = d[s]
        if fin is not None:
            k.set_final(s, kaldifst.LatticeWeight(*fin))
        for dst, il, ol, w in arcs:
            k.add_arc(s, kaldifst.LatticeArc(il, ol, kaldifst.LatticeWeight(*w), dst))
    return k


def test_kaldifst_lattice_round_trip(tmp_path):
    k = _kaldifst_lattice(LAT)
    path = tmp_path / "l.lat"
    k.write(str(path))
    ref = path.read_bytes()
    lat = Lattice.from_file(path)
    assert lat.to_bytes() == ref
    # built from arrays: incremental properties equal kaldifst's
    assert _lat_from_dict(LAT).to_bytes() == ref
    # our bytes -> kaldifst
    k2 = _lat_from_dict(LAT).to_kaldifst()
    assert k2.to_str(fst_field_separator="\t") == k.to_str(fst_field_separator="\t")
    back = Lattice.from_kaldifst(k2)
    assert back.equal(lat)


def test_text_matches_kaldifst_printer():
    k = _kaldifst_lattice(LAT)
    ours = _lat_from_dict(LAT).to_text()
    assert ours == k.to_str(fst_field_separator="\t")
    # six significant digits, Infinity for a dead non-final state
    lat = Lattice(3, 0, [(INF, INF), (1.0 / 3, 2.0 / 3), (INF, INF)], [0], [1], [7], [8],
                  [(123456.789, 1e-7)])
    assert lat.to_text() == "0\t1\t7\t8\t123457,1e-07\n1\t0.333333,0.666667\n2\tInfinity,Infinity\n"
    k3 = lat.to_kaldifst()
    assert lat.to_text() == k3.to_str(fst_field_separator="\t")


def test_text_round_trips_and_table_entries():
    lat = _lat_from_dict(LAT)
    f = io.BytesIO()
    f.write(b"k1 ")
    lat.write(f, binary=False)
    c = CompactLattice.from_bytes(_clat_bytes(CLAT))
    f.write(b"k2 ")
    c.write(f, binary=False)
    f.write(b"k3 ")
    CompactLattice(0, -1).write(f, binary=False)
    raw = f.getvalue()
    assert raw.startswith(b"k1 \n0\t1\t11\t0\t0.5,1\n")
    assert b"k2 \n0\t1\t5\t1,2,3_4_4\n0\t2\t6\t0.5,0.5,7\n1\t2\t0\t0,1,\n1\t0.25,0,9_9\n2\n\n" in raw
    assert raw.endswith(b"k3 \n\n")
    inp = _inp(raw)
    assert inp.read_token() == "k1"
    l2 = Lattice.read(inp, None)
    assert inp.read_token() == "k2"
    c2 = CompactLattice.read(inp, None)
    assert inp.read_token() == "k3"
    c3 = CompactLattice.read(inp, None)
    assert inp.at_eof()
    assert l2.equal(lat)  # all weights exactly representable in 6 digits
    assert c2.equal(c)
    assert c3.num_states == 0 and c3.start == -1
    # a compact text entry read by the Lattice reader is converted (and back)
    lat_from_c = Lattice.from_text(c.to_text())
    assert _same_paths(_paths_lattice(lat_from_c), _paths_compact(c))
    c_from_l = CompactLattice.from_text(lat.to_text())
    assert _same_paths(_paths_compact(c_from_l), _paths_lattice(lat))


# -- conversions ---------------------------------------------------------------------------

def test_compact_to_lattice_structure_by_hand():
    c = CompactLattice.from_bytes(_clat_bytes(CLAT))
    lat = c.to_lattice()
    # Kaldi's ConvertLattice: original states 0..2, then new states in order:
    # state 0 arc 0 string [3,4,4] -> states 3, 4; state 1 final string [9,9] -> 5, 6.
    assert lat.num_states == 7 and lat.start == 0
    assert lat.arcs(0) == [(3, 3, 5, (1.0, 2.0)), (2, 7, 6, (0.5, 0.5))]
    assert lat.arcs(3) == [(4, 4, 0, (0.0, 0.0))]
    assert lat.arcs(4) == [(1, 4, 0, (0.0, 0.0))]
    assert lat.arcs(1) == [(5, 9, 0, (0.25, 0.0)), (2, 0, 0, (0.0, 1.0))]
    assert lat.arcs(5) == [(6, 9, 0, (0.0, 0.0))]
    assert tuple(lat.final[6]) == (0.0, 0.0) and tuple(lat.final[1]) == (INF, INF)
    assert tuple(lat.final[2]) == (0.0, 0.0)


def test_lattice_to_compact_by_hand():
    # chain 0 -(1:5)-> 1 -(2:0)-> 2 -(3:0)-> 3(final); and 0 -(4:6)-> 3
    lat = Lattice(4, 0, [(INF, INF)] * 3 + [(0.5, 0.0)], [0, 0, 1, 2], [1, 3, 2, 3],
                  [1, 4, 2, 3], [5, 6, 0, 0], [(1, 0), (2, 2), (0, 1), (0.25, 0.25)])
    c = lat.to_compact()
    # states 1 and 2 (one arc in, one arc out, no olabel out) are merged away
    assert c.num_states == 2 and c.start == 0
    assert c.arcs(0) == [(1, 5, 5, (1.25, 1.25, [1, 2, 3])), (1, 6, 6, (2.0, 2.0, [4]))]
    assert tuple(c.final[1]) == (0.5, 0.0) and c.final_string(1) == []


def test_conversions_preserve_paths_random():
    rng = random.Random(3)
    for trial in range(30):
        ns = rng.randint(2, 8)
        src, dst, il, ol, w = [], [], [], [], []
        for s in range(ns - 1):
            for _ in range(rng.randint(1, 3)):
                src.append(s)
                dst.append(rng.randint(s + 1, ns - 1))
                il.append(rng.choice([0, rng.randint(1, 9)]))
                ol.append(rng.choice([0, 0, rng.randint(1, 5)]))
                w.append((rng.choice([0.0, 0.5, 1.25]), rng.choice([0.0, 0.25, 2.0])))
        final = [(INF, INF)] * ns
        final[ns - 1] = (0.0, 0.0)
        if rng.random() < 0.5:
            final[rng.randint(0, ns - 2)] = (0.5, 0.75)
        lat = Lattice(ns, 0, final, src, dst, il, ol, w)
        c = lat.to_compact()
        assert _same_paths(_paths_compact(c), _paths_lattice(lat)), trial
        back = c.to_lattice()
        assert _same_paths(_paths_lattice(back), _paths_lattice(lat)), trial
        # compact -> lattice -> compact is a fixed point for compacts Kaldi makes
        c2 = back.to_compact()
        assert _same_paths(_paths_compact(c2), _paths_compact(c))
        # top-sorted output (TopSort in ConvertLattice)
        assert np.all(c.arc_dst > c.arc_src)
        # binary and text round trips
        assert CompactLattice.from_bytes(c.to_bytes()).equal(c)
        assert Lattice.from_bytes(lat.to_bytes()).equal(lat)


# -- best path, scaling -------------------------------------------------------------------

def test_best_path_by_brute_force():
    lat = _lat_from_dict(LAT)
    paths = _paths_lattice(lat)
    # by hand, (g, a) of the 10 complete paths (arc 3->4 then final of 4 = One):
    # 0-1-3|f: (1.25, 3.125)   0-1-3-4: (0.5, 3.5)
    # 0-1-2-3(15)|f: (3.5, 1.625)  -4: (2.75, 2.0)
    # 0-1-2-3(16)|f: (1.5, 1.125)  -4: (0.75, 1.5)
    # 0-2-3(15)|f: (3.75, 0.875)   -4: (3.0, 1.25)
    # 0-2-3(16)|f: (1.75, 0.375)   -4: (1.0, 0.75)  <- best, total 1.75
    assert len(paths) == 10
    best = min(paths, key=lambda p: (p[2] + p[3], p[2]))
    assert best == ((100,), (12, 16, 17), 1.0, 0.75)
    bp = lat.best_path()
    assert bp.words == [100] and bp.alignment == [12, 16, 17]
    assert bp.graph_cost == 1.0 and bp.acoustic_cost == 0.75
    assert bp.states == [0, 2, 3, 4]
    # compact best path agrees
    cbp = lat.to_compact().best_path()
    assert cbp.words == [100] and cbp.alignment == [12, 16, 17]
    assert (cbp.graph_cost, cbp.acoustic_cost) == (1.0, 0.75)


def test_best_path_random_brute_force():
    rng = random.Random(11)
    for trial in range(40):
        ns = rng.randint(2, 7)
        src, dst, il, ol, w = [], [], [], [], []
        for s in range(ns - 1):
            for _ in range(rng.randint(1, 3)):
                src.append(s); dst.append(rng.randint(s + 1, ns - 1))
                il.append(rng.randint(0, 9)); ol.append(rng.randint(0, 4))
                w.append((rng.randint(0, 40) / 8.0, rng.randint(0, 40) / 8.0))
        final = [(INF, INF)] * ns
        final[ns - 1] = (rng.randint(0, 8) / 4.0, 0.0)
        lat = Lattice(ns, 0, final, src, dst, il, ol, w)
        paths = _paths_lattice(lat)
        bp = lat.best_path()
        if not paths:
            assert bp is None
            continue
        best_cost = min(g + a for _, _, g, a in paths)
        assert bp.graph_cost + bp.acoustic_cost == pytest.approx(best_cost)
        assert any(p[0] == tuple(bp.words) and p[1] == tuple(bp.alignment)
                   and p[2] + p[3] == pytest.approx(best_cost) for p in paths)


def test_best_path_empty_and_cyclic():
    assert Lattice(0, -1).best_path() is None
    assert Lattice(2, 0, [(INF, INF), (INF, INF)], [0], [1], [1], [1]).best_path() is None
    cyc = Lattice(2, 0, [(INF, INF), (0, 0)], [0, 1], [1, 0], [1, 2], [1, 2])
    with pytest.raises(ValueError):
        cyc.best_path()


def test_scale_lattice_matches_kaldifst():
    for lmwt, acwt in [(1.0, 0.1), (0.5, 12.0), (1.0, 1.0)]:
        k = _kaldifst_lattice(LAT)
        kaldifst.scale_lattice(lattice_scale(lmwt, acwt), k)
        ref = Lattice.from_kaldifst(k)
        ours = _lat_from_dict(LAT).scale_lattice(lmwt, acwt)
        assert np.array_equal(ours.arc_weight, ref.arc_weight)
        assert np.array_equal(ours.final, ref.final)
        assert np.array_equal(scale_lattice(_lat_from_dict(LAT), lmwt, acwt).final, ref.final)
    # general 2x2 scale, checked by the formula
    lat = _lat_from_dict(LAT)
    sc = [[0.5, 0.25], [2.0, 1.0]]
    out = lat.scale(sc)
    w = lat.arc_weight.astype(np.float64)
    assert np.allclose(out.arc_weight[:, 0], 0.5 * w[:, 0] + 0.25 * w[:, 1])
    assert np.allclose(out.arc_weight[:, 1], 2.0 * w[:, 0] + 1.0 * w[:, 1])
    assert np.all(out.final[:3] == INF)  # Zero stays Zero
    c = CompactLattice.from_bytes(_clat_bytes(CLAT)).scale_lattice(1.0, 0.5)
    assert tuple(c.arc_weight[0]) == (1.0, 1.0) and c.arc_string(0) == [3, 4, 4]


# -- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["lattice", "compact"])
def test_truncation_and_corruption(kind):
    data = _lat_bytes(LAT) if kind == "lattice" else _clat_bytes(CLAT)
    cls = Lattice if kind == "lattice" else CompactLattice
    for cut in range(len(data)):
        with pytest.raises(KaldiFormatError):
            cls.read(_inp(data[:cut]), True if cut == 0 else None)
    rnd = random.Random(7)
    check_byte_corruptions(lambda b: cls.read(_inp(b), True), data,
                           lambda: (0, 0xff, 0x80, rnd.randrange(256)))


def test_specific_lattice_errors():
    data = _lat_bytes(LAT)
    with pytest.raises(KaldiFormatError, match="cannot be converted"):
        Lattice.from_bytes(data.replace(b"lattice4", b"standard"))
    with pytest.raises(KaldiFormatError, match="magic"):
        Lattice.from_bytes(b"\x01" + data[1:])
    with pytest.raises(KaldiFormatError, match="FST type"):
        Lattice.from_bytes(data.replace(b"\x06\x00\x00\x00vector", b"\x05\x00\x00\x00const"))
    with pytest.raises(KaldiFormatError, match="bad line"):
        Lattice.read(_inp(b"\n0 1 2 3 4 5 6\n\n"), None)
    with pytest.raises(KaldiFormatError, match="bad line"):
        Lattice.read(_inp(b"\n0 1 2 3 Infinity,Infinity\n\n"), None)
    with pytest.raises(KaldiFormatError, match="bad line"):
        CompactLattice.read(_inp(b"\n0 1 2 0.5,1,3_x\n\n"), None)
    with pytest.raises(KaldiFormatError):
        Lattice.read(_inp(b""), None)

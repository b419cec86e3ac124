"""Tests for kbind.io.fst against Kaldi-written fixtures and kaldifst."""

from __future__ import annotations

import io
import json
import random
import struct

import numpy as np
import pytest

import kaldifst

from kbind.io.errors import KaldiFormatError
from kbind.io.fst import Fst
from kbind.io.stream import KaldiInput

CHAIN_CASES = ["medium_chain_S4_T34", "medium_den_S4_T34", "tiny_chain_S3_T15",
               "tiny_chain_e2e_S3_T15", "tiny_chain_unconstrained_S3_T15", "tiny_den_S4_T25"]


def _inp(data: bytes, name="<test>") -> KaldiInput:
    return KaldiInput(io.BytesIO(data), name)


def _kaldifst_arcs(kfst):
    """(start, finals dict, [(src, dst, il, ol, w)]) read through kaldifst's iterators."""
    arcs = []
    finals = {}
    for s in range(kfst.num_states):
        fw = kfst.final(s).value
        if fw != float("inf"):
            finals[s] = fw
        it = kaldifst.ArcIterator(kfst, s)
        while not it.done:
            a = it.value
            arcs.append((s, a.nextstate, a.ilabel, a.olabel, a.weight.value))
            it.next()
    return kfst.start, finals, arcs


def _our_arcs(fst: Fst):
    finals = {s: float(w) for s, w in enumerate(fst.final) if w != np.inf}
    arcs = list(zip(fst.arc_src.tolist(), fst.arc_dst.tolist(), fst.arc_ilabel.tolist(),
                    fst.arc_olabel.tolist(), fst.arc_weight.tolist()))
    return fst.start, finals, arcs


# -- toy.fst ------------------------------------------------------------------------------

def test_toy_matches_expected(kaldi_io_dir):
    exp = json.loads((kaldi_io_dir / "toy.fst.expected.json").read_text())
    fst = Fst.from_file(kaldi_io_dir / "toy.fst")
    assert fst.fst_type == exp["fst_type"] and fst.arc_type == exp["arc_type"]
    assert fst.start == exp["start"] and fst.num_states == exp["num_states"]
    for st in exp["states"]:
        s = st["id"]
        want_final = np.inf if st["final"] is None else st["final"]
        assert fst.final[s] == np.float32(want_final)
        got = fst.arcs(s)
        assert len(got) == len(st["arcs"])
        for (dst, il, ol, w), (eil, eol, ew, edst) in zip(got, st["arcs"]):
            assert (dst, il, ol) == (edst, eil, eol)
            assert np.float32(w) == np.float32(ew)
    assert fst.num_arcs == sum(len(st["arcs"]) for st in exp["states"])


def test_toy_byte_exact(kaldi_io_dir):
    data = (kaldi_io_dir / "toy.fst").read_bytes()
    fst = Fst.from_bytes(data)
    assert fst.to_bytes() == data
    out = io.BytesIO()
    fst.write(out, binary=True)
    assert out.getvalue() == data


def test_toy_rebuilt_properties_match_fixture(kaldi_io_dir):
    """Built from arrays (no stored properties), the incremental properties
    equal what Kaldi wrote for the hand-built toy FST."""
    data = (kaldi_io_dir / "toy.fst").read_bytes()
    f = Fst.from_bytes(data)
    g = Fst(f.num_states, f.start, f.final, f.arc_src, f.arc_dst, f.arc_ilabel,
            f.arc_olabel, f.arc_weight)
    assert g.properties is None
    assert g.to_bytes() == data


def test_toy_text_matches_fstprint(kaldi_io_dir):
    fst = Fst.from_file(kaldi_io_dir / "toy.fst")
    ref = Fst.from_text((kaldi_io_dir / "toy.fst.txt").read_text())
    assert ref.equal(fst)  # 9-digit text is an exact float32 round trip
    # our 6-digit text re-parses to the same structure and to 6-digit weights
    back = Fst.from_text(fst.to_text())
    assert back.num_states == fst.num_states and back.start == fst.start
    assert np.array_equal(back.arc_dst, fst.arc_dst)
    assert np.allclose(back.arc_weight, fst.arc_weight, rtol=1e-5)
    assert np.array_equal(np.isinf(back.final), np.isinf(fst.final))


def test_toy_table_entries_match_kaldifst_writer(kaldi_io_dir, tmp_path):
    """kaldifst's VectorFstWriter (Kaldi's table code) is the reference for
    the exact bytes after ``<key> `` in binary and text archives."""
    kf = kaldifst.StdVectorFst.read(str(kaldi_io_dir / "toy.fst"))
    empty = kaldifst.StdVectorFst()
    for wspec, binary in (("ark", True), ("ark,t", False)):
        path = tmp_path / f"x{int(binary)}.ark"
        w = kaldifst.VectorFstWriter(f"{wspec}:{path}")
        w.write("k1", kf)
        w.write("k2", empty)
        w.close()
        ref = path.read_bytes()
        ours = io.BytesIO()
        ours.write(b"k1 ")
        Fst.from_file(kaldi_io_dir / "toy.fst").write(ours, binary)
        ours.write(b"k2 ")
        Fst.from_kaldifst(empty).write(ours, binary)
        assert ours.getvalue() == ref
        # and read both entries back from the archive (binary=None: holder decides)
        inp = _inp(ref)
        assert inp.read_token() == "k1"
        a = Fst.read(inp, None)
        assert inp.read_token() == "k2"
        b = Fst.read(inp, None)
        assert inp.at_eof()
        assert b.num_states == 0 and b.start == -1
        toy = Fst.from_file(kaldi_io_dir / "toy.fst")
        if binary:
            assert a.equal(toy)
        else:
            assert np.array_equal(a.arc_ilabel, toy.arc_ilabel)
            assert np.allclose(a.arc_weight, toy.arc_weight, rtol=1e-5)


def test_binary_entry_with_marker_is_tolerated(kaldi_io_dir):
    data = (kaldi_io_dir / "toy.fst").read_bytes()
    for binary in (None, True):
        inp = _inp(b"\0B" + data + b"next ")
        fst = Fst.read(inp, binary)
        assert fst.to_bytes() == data
        assert inp.read_token() == "next"


def test_text_entry_stops_at_empty_line():
    text = b"\n0\t1\t3\t3\t0.5\n1\n\nkey2 \n0\n\n"
    inp = _inp(text)
    f = Fst.read(inp, None)
    assert f.num_states == 2 and f.start == 0 and f.final[1] == 0
    assert inp.read_token() == "key2"
    g = Fst.read(inp, False)
    assert g.num_states == 1 and g.final[0] == 0 and inp.at_eof()


# -- chain fixtures ---------------------------------------------------------------------

def _chain_fsts(root):
    out = []
    for case in CHAIN_CASES:
        d = root / case
        for p in sorted(d.glob("*.fst")):
            out.append(p)
    return out


def test_chain_fsts_byte_exact_and_text(kaldi_chain_dir):
    paths = _chain_fsts(kaldi_chain_dir)
    assert len(paths) >= 20
    n_txt = 0
    for p in paths:
        data = p.read_bytes()
        fst = Fst.from_bytes(data, str(p))
        assert fst.to_bytes() == data, p
        txt = p.with_name(p.name + ".txt")
        if txt.exists():
            n_txt += 1
            ref = Fst.from_text(txt.read_text())
            assert ref.start == fst.start
            assert ref.num_states <= fst.num_states
            assert np.array_equal(ref.arc_src, fst.arc_src)
            assert np.array_equal(ref.arc_dst, fst.arc_dst)
            assert np.array_equal(ref.arc_ilabel, fst.arc_ilabel)
            assert np.array_equal(ref.arc_olabel, fst.arc_olabel)
            assert np.array_equal(ref.arc_weight, fst.arc_weight)  # 9 digits: exact
            assert np.array_equal(ref.final, fst.final[:ref.num_states])
    assert n_txt >= 10


@pytest.mark.parametrize("case", ["medium_den_S4_T34", "tiny_den_S4_T25"])
def test_den_fst_matches_graph_internals(kaldi_chain_dir, case):
    d = kaldi_chain_dir / case
    meta = json.loads((d / "case.json").read_text())["graph"]
    fst = Fst.from_file(d / "den.fst")
    assert fst.num_states == meta["den_fst_states"]
    assert fst.num_arcs == meta["den_fst_arcs"]
    assert fst.start == meta["den_fst_start_state"]
    if "den_fst_final_states" in meta:
        assert int(np.sum(fst.final != np.inf)) == meta["den_fst_final_states"]
    gi = d / "graph_internals"
    fwd = np.load(gi / "forward_transitions.npy")
    A = fst.num_arcs
    assert np.array_equal(fwd[:, 0], fst.state_offsets[:-1])
    assert np.array_equal(fwd[:, 1], fst.state_offsets[1:])
    assert np.array_equal(fst.arc_ilabel, fst.arc_olabel)
    bwd = np.load(gi / "backward_transitions.npy")
    counts = np.bincount(fst.arc_dst, minlength=fst.num_states)
    assert np.array_equal(np.diff(bwd, axis=1)[:, 0], counts)
    assert bwd[0, 0] == A
    if not (gi / "transitions_pdf.npy").exists():
        return
    pdf = np.load(gi / "transitions_pdf.npy")
    hmm = np.load(gi / "transitions_hmm_state.npy")
    prob = np.load(gi / "transitions_prob.npy")
    assert np.array_equal(pdf[:A], fst.arc_ilabel - 1)
    assert np.array_equal(hmm[:A], fst.arc_dst)
    assert np.allclose(prob[:A], np.exp(-fst.arc_weight.astype(np.float64)), rtol=1e-6)
    # backward half: arcs entering each state, ordered by source then arc order
    order = np.lexsort((np.arange(A), fst.arc_src, fst.arc_dst))
    assert np.array_equal(hmm[A:], fst.arc_src[order])
    assert np.array_equal(pdf[A:], fst.arc_ilabel[order] - 1)


# -- kaldifst interoperability ------------------------------------------------------------

def test_kaldifst_reads_our_bytes_and_we_read_theirs(kaldi_chain_dir, kaldi_io_dir, tmp_path):
    for p in [kaldi_io_dir / "toy.fst", kaldi_chain_dir / "tiny_den_S4_T25" / "den.fst",
              kaldi_chain_dir / "tiny_chain_S3_T15" / "supervision.fst"]:
        fst = Fst.from_file(p)
        kf = fst.to_kaldifst()
        assert _kaldifst_arcs(kf) == _our_arcs(fst)
        # kaldifst-made FSTs (e.g. after an algorithm) read back identically
        det = kaldifst.determinize(kf) if kf.properties(0x40000, True) == 0 else kf
        back = Fst.from_kaldifst(det)
        assert _kaldifst_arcs(det) == _our_arcs(back)
        out = tmp_path / "k.fst"
        det.write(str(out))
        assert back.to_bytes() == out.read_bytes()


def test_const_fst_via_kaldifst(kaldi_io_dir, kaldi_chain_dir, tmp_path):
    for p in [kaldi_io_dir / "toy.fst", kaldi_chain_dir / "medium_den_S4_T34" / "den.fst",
              kaldi_chain_dir / "tiny_chain_e2e_S3_T15" / "sup_seq0.fst"]:
        kv = kaldifst.StdVectorFst.read(str(p))
        kc = kaldifst.StdConstFst(kv)
        cpath = tmp_path / "c.fst"
        kc.write(str(cpath))
        ref = cpath.read_bytes()
        c = Fst.from_file(cpath)
        assert c.fst_type == "const"
        v = Fst.from_file(p)
        assert _our_arcs(c) == _our_arcs(v)
        assert c.to_bytes("const") == ref
        # computed properties from a vector FST match OpenFst's ConstFst writer
        assert v.to_bytes("const") == ref
        # and kaldifst reads our const file
        ours = tmp_path / "ours.fst"
        v.to_file(ours, "const")
        kc2 = kaldifst.StdConstFst.read(str(ours))
        assert _kaldifst_arcs(kc2) == _our_arcs(v)


def _random_fst(rng, ns, na, with_eps=True):
    src = np.sort(rng.integers(0, ns, na)).astype(np.int32)
    dst = rng.integers(0, ns, na).astype(np.int32)
    lo = 0 if with_eps else 1
    il = rng.integers(lo, 50, na).astype(np.int32)
    ol = np.where(rng.random(na) < 0.5, il, rng.integers(lo, 50, na)).astype(np.int32)
    w = np.where(rng.random(na) < 0.2, 0.0, rng.normal(size=na)).astype(np.float32)
    final = np.where(rng.random(ns) < 0.3, rng.normal(size=ns), np.inf).astype(np.float32)
    final[rng.random(ns) < 0.1] = 0.0
    return ns, int(rng.integers(0, ns)), final, src, dst, il, ol, w


def test_incremental_properties_match_kaldifst_building(tmp_path):
    rng = np.random.default_rng(5)
    cases = [_random_fst(rng, 30, 80), _random_fst(rng, 5, 0)]
    # an acyclic, sorted, unweighted acceptor
    cases.append((4, 0, np.array([np.inf, np.inf, np.inf, 0], np.float32),
                  [0, 0, 1, 2], [1, 2, 3, 3], [1, 2, 3, 4], [1, 2, 3, 4], [0, 0, 0, 0]))
    for ns, start, final, src, dst, il, ol, w in cases:
        k = kaldifst.StdVectorFst()
        for _ in range(ns):
            k.add_state()
        k.start = start
        for s in range(ns):
            if final[s] != np.inf:
                k.set_final(s, float(final[s]))
        for a in range(len(src)):
            k.add_arc(int(src[a]), kaldifst.StdArc(int(il[a]), int(ol[a]), float(w[a]),
                                                    int(dst[a])))
        path = tmp_path / "b.fst"
        k.write(str(path))
        ours = Fst(ns, start, final, src, dst, il, ol, w)
        assert ours.to_bytes() == path.read_bytes()
        # ConstFst properties are fully computed: compare with OpenFst too
        kc = kaldifst.StdConstFst(k)
        kc.write(str(path))
        assert ours.to_bytes("const") == path.read_bytes()


def test_modified_fst_drops_stored_properties(kaldi_chain_dir):
    f = Fst.from_file(kaldi_chain_dir / "tiny_den_S4_T25" / "den.fst")
    stored = f.properties
    assert f.stored_properties() == stored
    f.arc_ilabel[0] = 0  # now has input epsilons: stored bits would be wrong
    props = f.stored_properties()
    assert props != stored
    assert props & 0x1000000  # kIEpsilons
    kf = f.to_kaldifst()
    assert kf.properties(0x1000000, False) == 0x1000000


def test_large_graph_kaldifst_conversion_is_fast(tmp_path):
    import time
    rng = np.random.default_rng(0)
    ns, start, final, src, dst, il, ol, w = _random_fst(rng, 20000, 100000)
    fst = Fst(ns, start, final, src, dst, il, ol, w)
    t = time.time()
    kf = fst.to_kaldifst()
    back = Fst.from_kaldifst(kf)
    data = fst.to_bytes()
    again = Fst.from_bytes(data)
    assert time.time() - t < 10.0
    assert back.equal(fst) and again.equal(fst)
    assert kf.num_states == ns


def test_from_arrays_sorts_arcs_stably():
    f = Fst(3, 0, [np.inf, np.inf, 0.0], [1, 0, 1, 0], [2, 1, 2, 2], [5, 1, 6, 2],
            [5, 1, 6, 2], [0.5, 0, 1, 2])
    assert f.arcs(0) == [(1, 1, 1, 0.0), (2, 2, 2, 2.0)]
    assert f.arcs(1) == [(2, 5, 5, 0.5), (2, 6, 6, 1.0)]
    assert list(f.state_offsets) == [0, 2, 4, 4]


# -- errors -------------------------------------------------------------------------------

def test_truncation_at_every_offset(kaldi_io_dir, kaldi_chain_dir):
    for data in [(kaldi_io_dir / "toy.fst").read_bytes(),
                 (kaldi_chain_dir / "tiny_chain_e2e_S3_T15" / "sup_seq2.fst").read_bytes(),
                 Fst.from_file(kaldi_io_dir / "toy.fst").to_bytes("const")]:
        for cut in range(len(data)):
            with pytest.raises(KaldiFormatError) as ei:
                Fst.read(_inp(data[:cut]), None if cut else True)
            assert ei.value.offset is not None or cut == 0


def check_byte_corruptions(read, blob: bytes, values) -> None:
    """Set each byte of ``blob`` in turn to each of ``values()``: ``read(bad)``
    may succeed or raise KaldiFormatError, nothing else."""
    for i in range(len(blob)):
        for val in values():
            bad = bytearray(blob)
            bad[i] = val
            try:
                read(bytes(bad))
            except KaldiFormatError:
                pass


def test_corruption_raises_only_format_errors(kaldi_io_dir):
    data = (kaldi_io_dir / "toy.fst").read_bytes()
    const = Fst.from_bytes(data).to_bytes("const")
    rnd = random.Random(1)
    for blob in (data, const):
        check_byte_corruptions(lambda b: Fst.read(_inp(b), True), blob,
                               lambda: (0x00, 0xff, 0x7f, rnd.randrange(256)))


def test_specific_errors(kaldi_io_dir):
    data = (kaldi_io_dir / "toy.fst").read_bytes()
    with pytest.raises(KaldiFormatError, match="magic"):
        Fst.from_bytes(b"\x00" + data[1:])
    bad = data.replace(b"\x06\x00\x00\x00vector", b"\x06\x00\x00\x00vectoz")
    with pytest.raises(KaldiFormatError, match="FST type"):
        Fst.from_bytes(bad)
    bad = data.replace(b"standard", b"standarx")
    with pytest.raises(KaldiFormatError, match="arc type"):
        Fst.from_bytes(bad)
    # log arcs are accepted and kept
    f = Fst.from_bytes(data.replace(b"\x08\x00\x00\x00standard", b"\x03\x00\x00\x00log"))
    assert f.arc_type == "log" and f.num_arcs == 7
    # start state out of range (header start field at offset 4+4+6+4+8+4+4+8)
    off = 4 + 4 + 6 + 4 + 8 + 4 + 4 + 8
    bad = bytearray(data)
    bad[off:off + 8] = struct.pack("<q", 6)
    with pytest.raises(KaldiFormatError, match="start state"):
        Fst.from_bytes(bytes(bad))
    # arc to a non-existent state: first arc's nextstate (state 0 header is 12 bytes)
    hdr_len = off + 24
    bad = bytearray(data)
    bad[hdr_len + 12 + 12:hdr_len + 12 + 16] = struct.pack("<i", 99)
    with pytest.raises(KaldiFormatError, match="out of range") as ei:
        Fst.from_bytes(bytes(bad), "x.fst")
    assert "x.fst" in str(ei.value)
    # negative arc count
    bad = bytearray(data)
    bad[hdr_len + 4:hdr_len + 12] = struct.pack("<q", -3)
    with pytest.raises(KaldiFormatError, match="negative arc count"):
        Fst.from_bytes(bytes(bad))
    with pytest.raises(KaldiFormatError):
        Fst.read(_inp(b""), None)
    with pytest.raises(KaldiFormatError, match="bad line"):
        Fst.read(_inp(b"\n0 1 2\n\n"), None)
    with pytest.raises(KaldiFormatError, match="bad line"):
        Fst.read(_inp(b"\n0 1 2 2 Infinity\n\n"), None)


def test_constructors_refuse_labels_and_states_that_int32_would_wrap():
    """An int64 array narrowed to int32 must not wrap (2**32 + 1 -> 1 would be a
    valid label); Fst and Lattice name the array and the entry."""
    from kbind.io.lattice import Lattice
    big = np.array([1, 2**32 + 1], dtype=np.int64)
    with pytest.raises(ValueError, match=r"arc_ilabel: entry 1 is 4294967297"):
        Fst(2, 0, [np.inf, 0.0], arc_src=[0, 0], arc_dst=[1, 1], arc_ilabel=big)
    with pytest.raises(ValueError, match="arc_olabel"):
        Fst(2, 0, [np.inf, 0.0], arc_src=[0, 0], arc_dst=[1, 1], arc_ilabel=[1, 2],
            arc_olabel=big)
    with pytest.raises(ValueError, match="arc_dst"):
        Lattice(2, 0, None, arc_src=[0, 0], arc_dst=big, arc_ilabel=[1, 2])
    ok = Fst(2, 0, [np.inf, 0.0], arc_src=[0, 0], arc_dst=[1, 1],
             arc_ilabel=np.array([1, 2**31 - 1], dtype=np.int64))
    assert ok.arc_ilabel.tolist() == [1, 2**31 - 1]

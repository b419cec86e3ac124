"""The decoder, the determinizer and the best-path search at the C boundary:
arrays that disagree in length or hold values that do not fit int32 are
refused before C runs, the decoder's C graph is its own copy (changing the
caller's arrays afterwards changes nothing), and the copy-out functions
check the capacities they are given."""

from __future__ import annotations

import copy
import itertools
import types

import numpy as np
import pytest
import torch

from kbind import _native
from kbind.compact_fst import CompactFst
from kbind.decode.decoder import DecoderOptions, LatticeDecoder
from kbind.decode.lattice_ops import determinize_lattice_pruned
from kbind.decode.scoring import lattice_best_paths
from kbind.io.fst import Fst

pytestmark = pytest.mark.skipif(not _native.available(), reason="native core not built")

INF = float("inf")
RAW = DecoderOptions(allow_partial=True, determinize_lattice=False)


def small_case(seed=0, ns=30, num_tids=10, num_pdfs=4, T=8):
    """A random HCLG-like graph (emitting arcs, epsilon arcs to higher states
    only, some words), its tid2pdf and log-likelihoods."""
    rng = np.random.default_rng(seed)
    src, dst, il, ol = [], [], [], []
    for s in range(ns):
        for _ in range(3):
            eps = rng.random() < 0.2 and s < ns - 1
            src.append(s)
            dst.append(int(rng.integers(s + 1, ns)) if eps else int(rng.integers(0, ns)))
            il.append(0 if eps else int(rng.integers(1, num_tids + 1)))
            ol.append(int(rng.integers(1, 6)) if rng.random() < 0.3 else 0)
    final = np.where(rng.random(ns) < 0.3, 0.5, INF).astype(np.float32)
    g = Fst(ns, 0, final, src, dst, il, ol, rng.uniform(0, 2, len(src)))
    tid2pdf = np.concatenate([[0], rng.integers(0, num_pdfs, num_tids)]).astype(np.int32)
    ll = torch.tensor(rng.normal(size=(T, num_pdfs)) * 2, dtype=torch.float32)
    return g, tid2pdf, ll


def graph_view(g, **replace):
    """An object with the Fst's arrays, some replaced (LatticeDecoder reads
    only these attributes)."""
    d = {k: getattr(g, k) for k in ("num_states", "start", "final", "arc_dst", "arc_ilabel",
                                    "arc_olabel", "arc_weight", "state_offsets")}
    d.update(replace)
    return types.SimpleNamespace(**d)


def test_decoder_graph_refuses_a_short_arc_array():
    g, tid2pdf, _ = small_case()
    with pytest.raises(ValueError, match=r"arc_ilabel: the C core uses \d+ entries"):
        LatticeDecoder(graph_view(g, arc_ilabel=g.arc_ilabel[:-1]), tid2pdf, RAW)
    with pytest.raises(ValueError, match="state_offsets: the C core uses 31 entries"):
        LatticeDecoder(graph_view(g, state_offsets=g.state_offsets[:-1]), tid2pdf, RAW)
    cf = CompactFst.from_fst(g)
    cf.arc_weight = cf.arc_weight[1:].clone()
    with pytest.raises(ValueError, match="arc_weight: the C core uses"):
        LatticeDecoder(cf, tid2pdf, RAW)


def test_decoder_refuses_values_that_would_wrap():
    g, tid2pdf, _ = small_case()
    il = g.arc_ilabel.astype(np.int64)
    il[3] += 2**32                                       # wraps to a valid transition-id
    with pytest.raises(ValueError, match=r"arc_ilabel: entry 3 is \d+, outside the range"):
        LatticeDecoder(graph_view(g, arc_ilabel=il), tid2pdf, RAW)
    t2p = tid2pdf.astype(np.int64)
    t2p[2] += 2**32
    with pytest.raises(ValueError, match=r"tid2pdf: entry 2"):
        LatticeDecoder(g, t2p, RAW)


@pytest.mark.parametrize("from_compact", [False, True])
def test_decoder_keeps_its_own_copy_of_the_graph(from_compact):
    """Arrays changed (even to nonsense) after the decoder was built do not
    reach the search: it decodes as before (it used to keep pointers into
    them and crash)."""
    g, tid2pdf, ll = small_case(1)
    src = CompactFst.from_fst(g) if from_compact else g
    dec = LatticeDecoder(src, tid2pdf, RAW)
    before = dec.decode(ll)
    dst = src.arc_dst
    offsets = src.out_offsets if from_compact else src.state_offsets
    src.arc_ilabel[0] = 10**6
    dst[:] = 10**6
    offsets[1] = 10**9
    src.arc_weight[:] = float("nan")
    after = dec.decode(ll)
    assert (after.words, after.alignment, after.cost) == (before.words, before.alignment,
                                                          before.cost)
    assert after.lattice.equal(before.lattice)


def decoded_lattice(seed=2):
    g, tid2pdf, ll = small_case(seed)
    return LatticeDecoder(g, tid2pdf, RAW).decode(ll).lattice


def test_determinize_refuses_a_short_arc_array():
    lat = decoded_lattice()
    lat.arc_olabel = lat.arc_olabel[:-1].copy()
    with pytest.raises(ValueError, match="arc_olabel: the C core uses"):
        determinize_lattice_pruned(lat, 8.0)
    lat = decoded_lattice()
    lat.arc_weight = lat.arc_weight[:-1].copy()
    with pytest.raises(ValueError, match="arc_weight: the C core uses"):
        determinize_lattice_pruned(lat, 8.0)


def test_determinize_refuses_values_that_would_wrap():
    lat = decoded_lattice()
    ol = lat.arc_olabel.astype(np.int64)
    ol[0] = 2**32 + 1
    lat.arc_olabel = ol
    with pytest.raises(ValueError, match="arc_olabel: entry 0 is 4294967297"):
        determinize_lattice_pruned(lat, 8.0)


def test_best_paths_refuse_a_short_arc_array_and_wrapping_values():
    lat = decoded_lattice()
    lat.arc_dst = lat.arc_dst[:-1].copy()
    with pytest.raises(ValueError, match=r"arc_dst: the C core uses \d+ entries, the tensor has"):
        lattice_best_paths(lat, [(10.0, 0.0)])
    lat = decoded_lattice()
    dst = lat.arc_dst.astype(np.int64)
    dst[1] += 2**32
    lat.arc_dst = dst
    with pytest.raises(ValueError, match="arc_dst: entry 1"):
        lattice_best_paths(lat, [(10.0, 0.0)])


def test_decode_result_copy_checks_capacities():
    """kb_decode_result_copy, called directly with buffers one entry too
    small, refuses instead of writing past them."""
    g, tid2pdf, ll = small_case(3)
    dec = LatticeDecoder(g, tid2pdf, RAW)
    P = _native.ptr
    T, D = ll.shape
    res, sizes = torch.zeros(1, dtype=torch.int64), torch.zeros(8, dtype=torch.int64)
    o = dec.opts
    _native.call("kb_decode_lattice_faster", dec._handle, P(ll, T * D, "ll"), T, D,
                 o.acoustic_scale, o.beam, o.max_active, o.min_active, o.lattice_beam,
                 o.prune_interval, o.beam_delta, o.hash_ratio, o.prune_scale, P(res, 1, "res"),
                 P(sizes, 8, "sizes"))
    h = int(res[0])
    try:
        nf, nw, ns, na = (int(v) for v in sizes[:4])
        assert nf == T and ns > 1 and na > 1
        NULL = _native.ffi.NULL

        def copy(cap_frames, cap_words, cap_states, cap_arcs, **buf):
            b = {k: P(v, v.numel(), k) for k, v in buf.items()}
            _native.call("kb_decode_result_copy", h, cap_frames, cap_words, cap_states, cap_arcs,
                         b.get("ali", NULL), NULL, NULL, b.get("src", NULL), NULL, NULL, NULL,
                         b.get("w", NULL), b.get("fin", NULL))

        E = _native.NativeError
        with pytest.raises(E, match=rf"alignment \(frames\): room for {T - 1}, the result has "
                                    rf"{T}"):
            copy(T - 1, nw, ns, na, ali=torch.empty(T - 1, dtype=torch.int32))
        with pytest.raises(E, match=rf"lat_src \(arcs\): room for {na - 1}"):
            copy(T, nw, ns, na - 1, src=torch.empty(na - 1, dtype=torch.int32))
        with pytest.raises(E, match=rf"lat_final \(states\): room for {ns - 1}"):
            copy(T, nw, ns - 1, na, fin=torch.empty(ns - 1, 2))
        copy(T, nw, ns - 1, na, ali=torch.empty(T, dtype=torch.int32))  # lat_final not asked
        w = torch.full((na, 2), -1.0)
        copy(T, nw, ns, na, w=w)
        assert torch.isfinite(w).all()
    finally:
        _native.call("kb_decode_result_free", h)


def test_latdet_result_copy_checks_capacities():
    lat = decoded_lattice(4)
    P = _native.ptr
    arr = _native.as_c_array
    ns, na = lat.num_states, lat.num_arcs
    fin, off = arr(lat.final, torch.float32, "f"), arr(lat.state_offsets, torch.int64, "o")
    dst, il = arr(lat.arc_dst, torch.int32, "d"), arr(lat.arc_ilabel, torch.int32, "i")
    ol, w = arr(lat.arc_olabel, torch.int32, "o"), arr(lat.arc_weight, torch.float32, "w")
    res, sizes = torch.zeros(1, dtype=torch.int64), torch.zeros(8, dtype=torch.int64)
    stats = torch.zeros(4, dtype=torch.float64)
    NULL = _native.ffi.NULL
    _native.call("kb_latdet_pruned", ns, na, lat.start, P(fin, 2 * ns, "f"), P(off, ns + 1, "o"),
                 P(dst, na, "d"), P(il, na, "i"), P(ol, na, "o"), P(w, 2 * na, "w"), NULL, 0,
                 8.0, 1e-5, 0, 0, 0, 0.5, P(res, 1, "r"), P(sizes, 8, "s"), P(stats, 4, "t"))
    h = int(res[0])
    try:
        n_s, n_a, fsl, asl = (int(v) for v in sizes[:4])
        assert n_s > 1 and n_a > 0 and asl > 0

        def copy(caps, **buf):
            b = {k: P(v, v.numel(), k) for k, v in buf.items()}
            _native.call("kb_latdet_result_copy", h, *caps, b.get("final", NULL),
                         b.get("fs_off", NULL), NULL, NULL, NULL, NULL, NULL,
                         b.get("as_off", NULL), b.get("as_data", NULL))

        E = _native.NativeError
        with pytest.raises(E, match=rf"final_string_offsets \(states\): room for {n_s - 1}"):
            copy((n_s - 1, n_a, fsl, asl), fs_off=torch.empty(n_s, dtype=torch.int64))
        with pytest.raises(E, match=rf"arc_string_offsets \(arcs\): room for {n_a - 1}"):
            copy((n_s, n_a - 1, fsl, asl), as_off=torch.empty(n_a, dtype=torch.int64))
        with pytest.raises(E, match=rf"arc_string_data: room for {asl - 1}, the result has "
                                    rf"{asl}"):
            copy((n_s, n_a, fsl, asl - 1), as_data=torch.empty(asl - 1, dtype=torch.int32))
        as_off = torch.full((n_a + 1,), -1, dtype=torch.int64)
        copy((n_s, n_a, fsl, asl), as_off=as_off)
        assert int(as_off[0]) == 0 and int(as_off[-1]) == asl
    finally:
        _native.call("kb_latdet_result_free", h)



def test_corrupted_values_are_refused_not_read_out_of_bounds():
    """Arrays of the right lengths whose values are wrong (offsets that
    decrease or overshoot, states and labels out of range): the decoder
    graph, the aligner, the determinizer and the best-path search refuse
    them (or, where a value is harmless, run). Run under AddressSanitizer
    (KBIND_SANITIZE=1 python cbridge/build_native.py) this also shows that
    nothing is read outside the arrays."""
    from kbind.align.aligner import AlignOptions, search
    from kbind.decode.decoder import DecodeFailure

    g, tid2pdf, ll = small_case(5)
    lat = decoded_lattice(5)
    outcomes = set()
    for field in ("arc_dst", "arc_ilabel", "arc_olabel", "state_offsets"):
        for src in (g, lat):
            n = getattr(src, field).size
            for k, value in itertools.product(
                    (0, n // 2, n - 1), (-1, -2**31, 2**31 - 1, src.num_states,
                                         src.num_states + 1, src.num_arcs + 1)):
                bad = copy.deepcopy(src)
                getattr(bad, field)[k] = value
                if src is g:
                    calls = (lambda: LatticeDecoder(bad, tid2pdf, RAW).decode(ll),
                             lambda: search(bad, tid2pdf, ll, AlignOptions(beam=50.0,
                                                                           retry_beam=0)))
                else:
                    calls = (lambda: determinize_lattice_pruned(bad, 8.0),
                             lambda: lattice_best_paths(bad, [(10.0, 0.0), (12.0, 0.5)]))
                for call in calls:
                    try:
                        call()
                        outcomes.add("ran")
                    except (ValueError, _native.NativeError, DecodeFailure):
                        outcomes.add("refused")
    assert outcomes == {"ran", "refused"}

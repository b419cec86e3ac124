"""The C boundary (kbind._native): every pointer is checked against the
number of entries the C function uses, narrowing casts refuse values they
would change, and the C entry points check the offsets they are given
against the lengths they are given (called directly, past the Python
wrappers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kbind import _native
from kbind.compact_fst import CompactFst

pytestmark = pytest.mark.skipif(not _native.available(), reason="native core not built")

INF = float("inf")


def test_ptr_needs_the_entry_count():
    t = torch.zeros(4, dtype=torch.int32)
    with pytest.raises(TypeError):
        _native.ptr(t)                                   # no size: refused
    with pytest.raises(ValueError, match=r"arc_ilabel: the C core uses 5 entries, the tensor "
                                         r"has 4"):
        _native.ptr(t, 5, "arc_ilabel")
    with pytest.raises(ValueError, match="lat_weight"):  # (n, 2): counts every entry
        _native.ptr(torch.zeros(3, 2), 3, "lat_weight")
    assert _native.ptr(t, 4, "x") != _native.ffi.NULL
    assert _native.ptr(None, 7, "x") == _native.ffi.NULL


def test_as_c_array_refuses_what_the_cast_would_change():
    a = _native.as_c_array
    with pytest.raises(ValueError, match=r"ilabel: entry 2 is 4294967297, outside the range of "
                                         r"int32"):
        a(np.array([1, 2, 2**32 + 1]), torch.int32, "ilabel")
    with pytest.raises(ValueError, match=r"dst: entry 0 is -2147483649"):
        a(torch.tensor([-2**31 - 1]), torch.int32, "dst")
    with pytest.raises(ValueError, match=r"offsets: entry 0 is 9\.2\d*e\+18"):
        a(np.array([2.0**63]), torch.int64, "offsets")    # 2**63 - 1 rounds up as a float
    with pytest.raises(ValueError, match=r"pdf: entry 1 is 2\.5, not a whole number"):
        a([1.0, 2.5], torch.int32, "pdf")
    with pytest.raises(ValueError, match=r"weight: entry \(1, 0\) is 1e\+39, beyond the range "
                                         r"of float32"):
        a(np.array([[1.0, 2.0], [1e39, 0.0]]), torch.float32, "weight")
    with pytest.raises(TypeError, match="expected numbers"):
        a(np.array(["1"]), torch.int32, "x")
    # what fits is kept as it is: extremes, inf / NaN floats (the C side
    # checks those), and an array of the right dtype is shared, not copied
    assert a(np.array([-2**31, 2**31 - 1]), torch.int32, "x").tolist() == [-2**31, 2**31 - 1]
    assert a(np.array([INF, 3e38]), torch.float32, "x").tolist() == [INF, np.float32(3e38)]
    shared = np.arange(3, dtype=np.int32)
    a(shared, torch.int32, "x")[0] = 7
    assert shared[0] == 7


def test_compact_fst_refuses_values_that_would_wrap():
    # 2**32 + 1 wraps to 1 in int32, inside the label range: it must not pass
    with pytest.raises(ValueError, match=r"ilabel: entry 1 is 4294967297"):
        CompactFst.from_arrays(2, 0, [INF, 0.0], src=[0, 0], dst=[1, 1],
                               ilabel=np.array([1, 2**32 + 1]), label_range=(1, 10))
    with pytest.raises(ValueError, match=r"dst: entry 0 is 4294967296"):
        CompactFst.from_arrays(2, 0, [INF, 0.0], src=[0], dst=np.array([2**32]), ilabel=[1])
    with pytest.raises(ValueError, match=r"num_states is 4294967298, outside the range of int32"):
        CompactFst.from_arrays(2**32 + 2, 0, [INF, 0.0], src=[0], dst=[1], ilabel=[1])


def _chain_fst():
    # 0 -> 1 -> 2 (final)
    return CompactFst.from_arrays(3, 0, [INF, INF, 0.0], src=[0, 1], dst=[1, 2], ilabel=[1, 1])


def test_connect_refuses_arrays_that_disagree():
    g = _chain_fst()
    g.arc_dst = g.arc_dst[:1].clone()                    # one entry short
    with pytest.raises(ValueError, match="arc_dst: the C core uses 2 entries"):
        g.connected_states()
    g = _chain_fst()
    g.in_arcs[0] = 10**9                                 # an index the C side would follow
    with pytest.raises(_native.NativeError, match=r"in_arcs\[0\] = 1000000000 out of range"):
        g.connected_states()
    g = _chain_fst()
    g.out_offsets[1] = 5
    with pytest.raises(_native.NativeError, match="out_offsets decrease at state 1"):
        g.connected_states()


def test_best_paths_checks_offsets_against_num_arcs():
    """kb_lattice_best_paths is given num_arcs: offsets that end elsewhere
    are refused before any arc is read."""
    P = _native.ptr
    offs = torch.tensor([0, 1, 3], dtype=torch.int64)    # claims 3 arcs
    dst = torch.tensor([1, 1], dtype=torch.int32)
    g = torch.zeros(2)
    fin = torch.tensor([INF, 0.0])
    one = torch.ones(1, dtype=torch.float64)
    best = torch.empty(1, dtype=torch.int32)
    back = torch.empty(2, dtype=torch.int64)
    with pytest.raises(_native.NativeError, match=r"arc offsets must run from 0 to the 2 arcs "
                                                  r"\(got 0 \.\. 3\)"):
        _native.call("kb_lattice_best_paths", 2, 2, 0, P(offs, 3, "offsets"), P(dst, 2, "dst"),
                     P(g, 2, "graph"), P(g, 2, "acoustic"), P(dst, 2, "olabel"),
                     P(fin, 2, "final_graph"), P(fin, 2, "final_acoustic"), 1,
                     P(one, 1, "ac_scale"), P(torch.zeros(1), 1, "wip"), P(best, 1, "best"),
                     P(back, 2, "back"))

"""The compact FST index built in C, checked against Kaldi's own arrays."""

import numpy as np
import pytest
import torch

import kaldifst

from kbind import _native
from kbind.compact_fst import CompactFst


def _arcs_via_kaldifst(path):
    """Arc arrays of an OpenFst file read by kaldifst (a second reader)."""
    fst = kaldifst.StdVectorFst.read(str(path))
    src, dst, ilab, olab, w = [], [], [], [], []
    final = []
    for s in range(fst.num_states):
        fw = fst.final(s).value
        final.append(fw)
        for arc in kaldifst.ArcIterator(fst, s):
            src.append(s)
            dst.append(arc.nextstate)
            ilab.append(arc.ilabel)
            olab.append(arc.olabel)
            w.append(arc.weight.value)
    return fst.num_states, fst.start, final, src, dst, ilab, olab, w


def test_index_matches_kaldi_den_graph_transitions(kaldi_chain_dir):
    case = kaldi_chain_dir / "medium_den_S4_T34"
    S, start, final, src, dst, ilab, olab, w = _arcs_via_kaldifst(case / "den.fst")
    g = CompactFst.from_arrays(S, start, final, src, dst, ilab, olab, w, label_range=(1, 80))
    fwd = np.load(case / "graph_internals" / "forward_transitions.npy")
    bwd = np.load(case / "graph_internals" / "backward_transitions.npy")
    A = len(src)
    assert g.num_arcs == A == 24719
    # Kaldi: arcs leaving h are transitions [fwd[h,0], fwd[h,1]) in FST arc order.
    np.testing.assert_array_equal(g.out_offsets[:-1].numpy(), fwd[:, 0])
    np.testing.assert_array_equal(g.out_offsets[1:].numpy(), fwd[:, 1])
    # Kaldi's backward half starts at A; ranges per destination state.
    np.testing.assert_array_equal(g.in_offsets[:-1].numpy(), bwd[:, 0] - A)
    np.testing.assert_array_equal(g.in_offsets[1:].numpy(), bwd[:, 1] - A)
    # Entering arcs: ordered by source state, then arc order.
    src_t = g.arc_src.long()
    for h in range(0, S, 97):
        arcs = g.arcs_entering(h)
        assert torch.all(g.arc_dst[arcs] == h)
        assert torch.all(arcs[1:] > arcs[:-1])
        assert torch.all(src_t[arcs][1:] >= src_t[arcs][:-1])


def test_unsorted_arcs_are_stably_sorted():
    g = CompactFst.from_arrays(3, 0, [np.inf, np.inf, 0.0], src=[1, 0, 0, 1],
                               dst=[2, 1, 2, 0], ilabel=[4, 1, 2, 3])
    assert g.arc_src.tolist() == [0, 0, 1, 1]
    assert g.arc_ilabel.tolist() == [1, 2, 4, 3]
    assert g.out_offsets.tolist() == [0, 2, 4, 4]
    assert g.arcs_entering(2).tolist() == [1, 2]
    assert g.arcs_entering(0).tolist() == [3]


@pytest.mark.parametrize("kwargs, message", [
    (dict(dst=[1, 5]), "destination state 5 out of range"),
    (dict(src=[0, -1]), "source state -1 out of range"),
    (dict(ilabel=[1, 9]), "input label 9 out of range [1, 4]"),
    (dict(olabel=[0, 1]), "output label 0 out of range"),
    (dict(weight=[0.0, float("nan")]), "weight is NaN"),
    (dict(start=3), "start state 3 out of range"),
])
def test_validation_errors_name_the_arc(kwargs, message):
    args = dict(num_states=2, start=0, final=[np.inf, 0.0], src=[0, 1], dst=[1, 1],
                ilabel=[1, 2], olabel=None, weight=None, label_range=(1, 4))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        CompactFst.from_arrays(**args)


def test_empty_fst():
    g = CompactFst.from_arrays(0, -1, [], [], [], [])
    assert g.num_arcs == 0 and g.out_offsets.tolist() == [0]


def test_connected_states():
    # 0 -> 1 -> 2 (final); 3 unreachable -> 2; 1 -> 4 (dead end)
    g = CompactFst.from_arrays(5, 0, [np.inf, np.inf, 0.0, np.inf, np.inf],
                               src=[0, 1, 1, 3], dst=[1, 2, 4, 2], ilabel=[1, 1, 1, 1])
    acc, coacc = g.connected_states()
    assert acc.tolist() == [True, True, True, False, True]
    assert coacc.tolist() == [True, True, True, True, False]


def test_native_reports_build():
    assert _native.available()
    assert _native.max_threads() >= 1
    with pytest.raises(TypeError):
        _native.ptr(np.zeros(3), 3, "x")
    with pytest.raises(ValueError, match="contiguous"):
        _native.ptr(torch.zeros(4, 4).t(), 16, "x")

"""DenominatorGraph: Kaldi's arrays and initial probabilities."""

import numpy as np
import pytest
import torch

from kbind.chain import DenominatorGraph
from kbind.io.fst import Fst

from . import one_thread, DEN_CASES, load_case


_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)

@pytest.mark.parametrize("case", DEN_CASES)
def test_initial_probs_match_kaldi(kaldi_chain_dir, case):
    d, cj, S, T, D = load_case(kaldi_chain_dir, case)
    g = DenominatorGraph.from_fst(d / "den.fst", D)
    ref = np.load(d / "graph_internals" / "initial_probs.npy")
    assert g.initial_probs.dtype == np.float32
    assert np.abs(g.initial_probs - ref).max() <= 1e-7
    assert np.linalg.norm(g.initial_probs - ref) / np.linalg.norm(ref) <= 1e-6
    # double-precision exp of the float costs reproduces Kaldi bit for bit
    np.testing.assert_array_equal(g.initial_probs, ref)
    assert g.num_states == cj["graph"]["den_fst_states"]
    assert g.num_arcs == cj["graph"]["den_fst_arcs"]
    assert g.start == cj["graph"]["den_fst_start_state"]


@pytest.mark.parametrize("case", DEN_CASES)
def test_transition_ranges_match_kaldi(kaldi_chain_dir, case):
    d, cj, S, T, D = load_case(kaldi_chain_dir, case)
    g = DenominatorGraph.from_fst(d / "den.fst", D)
    gi = d / "graph_internals"
    np.testing.assert_array_equal(g.forward_transitions, np.load(gi / "forward_transitions.npy"))
    np.testing.assert_array_equal(g.backward_transitions,
                                  np.load(gi / "backward_transitions.npy"))
    for name in ("prob", "pdf", "hmm_state"):
        f = gi / f"transitions_{name}.npy"
        if f.exists():
            np.testing.assert_array_equal(getattr(g, f"transitions_{name}"), np.load(f))


def test_from_fst_object_and_tensors(kaldi_chain_dir):
    d = kaldi_chain_dir / "tiny_den_S4_T25"
    fst = Fst.from_file(d / "den.fst")
    g1 = DenominatorGraph.from_fst(fst, 10)
    g2 = DenominatorGraph.from_fst(str(d / "den.fst"), 10)
    np.testing.assert_array_equal(g1.initial_probs, g2.initial_probs)
    t = g1.tensors()
    A, H, D = g1.num_arcs, g1.num_states, g1.num_pdfs
    # M[v, src] = sum of the probs of the arcs src -> dst_v with pdf_v
    M = t.M.to_dense()
    assert torch.equal(t.MT.to_dense(), M.t())
    dense = torch.zeros(H, D, H, dtype=torch.float64)      # [dst, pdf, src]
    dense.index_put_((torch.from_numpy(g1.arc_dst), torch.from_numpy(g1.arc_pdf),
                      torch.from_numpy(g1.arc_src)),
                     torch.from_numpy(g1.transitions_prob[:A]).double(), accumulate=True)
    assert torch.equal(dense[t.v_dst, t.v_pdf], M)
    assert int((dense.abs().sum(-1) > 0).sum()) == M.shape[0]   # no empty groups
    assert t.init.dtype == torch.float32
    g3 = g1.to("cpu")
    assert g3.tensors() is g1.tensors()
    assert g1.tensors(dtype=torch.float64).init.dtype == torch.float64


def test_label_mismatch_is_a_clear_error(kaldi_chain_dir):
    d = kaldi_chain_dir / "medium_den_S4_T34"
    with pytest.raises(ValueError, match=r"label 80 \(pdf-id 79\) but num_pdfs = 10"):
        DenominatorGraph.from_fst(d / "den.fst", 10)


def test_bad_graphs_rejected():
    with pytest.raises(ValueError, match="epsilon"):
        DenominatorGraph(2, 3, 0, [0, 1], [1, 0], [0, -1], [0.5, 0.5])
    with pytest.raises(ValueError, match="out of range"):
        DenominatorGraph(2, 3, 0, [0, 1], [1, 2], [0, 1], [0.5, 0.5])
    with pytest.raises(ValueError, match="start state"):
        DenominatorGraph(2, 3, 5, [0, 1], [1, 0], [0, 1], [0.5, 0.5])
    with pytest.raises(ValueError, match="NaN"):
        DenominatorGraph(2, 3, 0, [0, 1], [1, 0], [0, 1], [0.5, float("nan")])
    fst = Fst(2, 0, [np.inf, 0.0], [0, 1], [1, 0], [1, 2], [1, 3], [0.5, 0.5])
    with pytest.raises(ValueError, match="acceptor"):
        DenominatorGraph.from_fst(fst, 3)


def test_initial_probs_small_graph_by_hand():
    # 2 states: 0 -> 1 (p=.5), 0 -> 0 (p=.5), 1 -> 0 (p=1); start 0.
    g = DenominatorGraph(2, 2, 0, [0, 0, 1], [0, 1, 0], [0, 1, 0],
                         -np.log([0.5, 0.5, 1.0]).astype(np.float32))
    cur = np.array([1.0, 0.0])
    avg = np.zeros(2)
    P = np.array([[0.5, 0.5], [1.0, 0.0]])
    for _ in range(100):
        avg += cur / 100
        cur = cur @ P
        cur /= cur.sum()
    np.testing.assert_allclose(g.initial_probs, avg, rtol=1e-6)

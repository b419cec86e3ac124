"""Den FST / normalization FST creation.

Against Kaldi: ``chain-make-den-fst`` run on the same tree, transition model
and phone LM writes the same den.fst and normalization.fst up to the numbering
of the states (labels and float32 weights bit for bit: kbind minimizes through
kaldifst's OpenFst, which sorts arcs stably where Kaldi's does not, and so
numbers some states otherwise), for monophone, 3-state and left-biphone models
and LMs of several sizes; the normalization FST and initial
probabilities of the fixture graphs are bit-exact too. Also checked: the
structural invariants Kaldi's den.fst has, and that a den FST made here
assigns each pdf sequence the probability H o LM gives it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from kbind.chain.den_fst import (VFst, den_graph_initial_probs, make_den_fst,
                                 normalization_fst, push_special, remove_eps_local, std_sort)
from kbind.chain.phone_lm import estimate_phone_lm
from kbind.hmm import ContextDependency, HmmTopology, TransitionModel
from kbind.io import write_object
from kbind.io.fst import Fst

from ._kaldi import (assert_same_fst_up_to_numbering, random_phone_sequences,
                     write_phone_sequences)


def _arrays_equal(a: Fst, b: Fst) -> bool:
    return a.start == b.start and all(
        np.array_equal(x, y) for x, y in zip(a._content()[1:], b._content()[1:]))


@pytest.mark.parametrize("case", ["tiny_den_S4_T25", "medium_den_S4_T34"])
def test_initial_probs_and_normalization_fst(kaldi_chain_dir, case):
    d = kaldi_chain_dir / case
    den = Fst.from_file(d / "den.fst")
    init = den_graph_initial_probs(den)
    assert np.array_equal(init, np.load(d / "graph_internals" / "initial_probs.npy"))
    assert _arrays_equal(normalization_fst(den), Fst.from_file(d / "normalization.fst"))


def _structure(f: Fst, num_pdfs: int):
    assert np.all(f.arc_ilabel == f.arc_olabel)
    assert f.arc_ilabel.min() >= 1 and f.arc_ilabel.max() <= num_pdfs
    p = np.exp(-f.arc_weight.astype(np.float64))
    z = np.exp(-f.final.astype(np.float64))
    np.add.at(z, f.arc_src, p)
    assert z.max() / z.min() < 1.001  # push-special: all states sum to the same
    deg = (np.bincount(f.arc_src, minlength=f.num_states)
           + np.bincount(f.arc_dst, minlength=f.num_states))
    assert np.all(np.diff(deg) <= 0)  # SortOnTransitionCount


@pytest.fixture(scope="module")
def tiny_models(kaldi_chain_dir):
    d = kaldi_chain_dir / "tiny_chain_S3_T15"
    return (ContextDependency.from_file(d / "tree"), TransitionModel.from_file(d / "0.trans_mdl"))


def test_fixture_den_structure(kaldi_chain_dir):
    for case, D in [("tiny_den_S4_T25", 10), ("medium_den_S4_T34", 80)]:
        _structure(Fst.from_file(kaldi_chain_dir / case / "den.fst"), D)


def _den_logprob(f: Fst, labels) -> float:
    """log sum over den paths of the label sequence (start -> final)."""
    alpha = {f.start: 0.0}
    for lab in labels:
        nxt = {}
        for s, a in alpha.items():
            for d, il, _, w in f.arcs(s):
                if il == lab:
                    v = a - w
                    nxt[d] = np.logaddexp(nxt[d], v) if d in nxt else v
        alpha = nxt
    vals = [a - float(f.final[s]) for s, a in alpha.items() if np.isfinite(f.final[s])]
    return float(np.logaddexp.reduce(vals)) if vals else -np.inf


def test_make_den_fst_language(tiny_models):
    tree, tm = tiny_models
    rng = np.random.default_rng(3)
    seqs = [list(rng.integers(1, 6, size=rng.integers(4, 12))) for _ in range(25)]
    lm = estimate_phone_lm(seqs)
    den, norm = make_den_fst(tree, tm, lm)
    _structure(den, tm.num_pdfs)
    assert _arrays_equal(norm, normalization_fst(den))
    assert norm.num_states == den.num_states
    lm_v = VFst.from_fst(lm)

    def lm_logprob(phones):
        s, lp = lm_v.start, 0.0
        for p in phones:
            arc = [a for a in lm_v.arcs[s] if a[0] == p]
            if not arc:
                return -np.inf
            lp -= arc[0][2]
            s = arc[0][3]
        return lp - lm_v.final[s]

    # pdf of (phone p, class c) = 2(p-1)+c; label = pdf+1. Each phone of a
    # training sentence for 1 or 2 frames: first frame class 0, then class 1
    # (self-loop 0.5), leaving the phone 0.5.
    for seq in seqs[:8]:
        durs = rng.integers(1, 3, size=len(seq))
        labels = []
        for p, dur in zip(seq, durs):
            labels += [2 * (p - 1) + 1] + [2 * (p - 1) + 2] * (dur - 1)
        expect = lm_logprob(seq) + len(labels) * math.log(0.5)
        got = _den_logprob(den, labels)
        # MinimizeAcceptorNoPush quantizes weights to multiples of kDelta*10.
        assert got == pytest.approx(expect, abs=0.02 * len(labels) + 0.05)


def _models(kind, kaldi_io_dir, tmp_path):
    """(tree path, transition-model path, phones) for a den-graph case: Kaldi's
    fixture models, or models kbind builds and writes for Kaldi to read."""
    if kind == "chain_mono":      # 2-state chain topology, monophone tree (Kaldi's files)
        return kaldi_io_dir / "chain.tree", kaldi_io_dir / "chain.trans.mdl", 6
    if kind == "hmm3_mono":       # 3-state HMMs with trained transition probabilities
        return kaldi_io_dir / "tree", kaldi_io_dir / "trans.mdl", 6
    num_phones = {"chain_biphone": 6, "chain_mono40": 40}[kind]
    phones = list(range(1, num_phones + 1))
    tree = (ContextDependency.left_biphone(phones, 2) if kind == "chain_biphone"
            else ContextDependency.monophone(phones, 2))
    trans_model = TransitionModel.build(HmmTopology.chain_2state(phones), tree)
    write_object(str(tmp_path / "tree"), tree)
    write_object(str(tmp_path / "trans.mdl"), trans_model)
    return tmp_path / "tree", tmp_path / "trans.mdl", num_phones


@pytest.mark.parametrize("kind, lm_options", [
    ("chain_mono", (4, 3, 1000)),
    ("chain_mono", (3, 2, 5)),
    ("chain_mono", (2, 1, 0)),
    ("hmm3_mono", (3, 2, 10)),    # PushSpecial does not converge: Kaldi stops at 200 iterations
    ("chain_biphone", (4, 3, 50)),
    ("chain_mono40", (4, 3, 300)),
])
def test_den_and_normalization_fst_equal_kaldis(kaldi, kaldi_io_dir, tmp_path, kind,
                                                 lm_options):
    """``chain-make-den-fst`` on the same tree, transition model and phone LM
    writes the same den.fst and normalization.fst as :func:`make_den_fst`, up
    to the numbering of the states."""
    tree_path, model_path, num_phones = _models(kind, kaldi_io_dir, tmp_path)
    seqs = random_phone_sequences(num_phones, 60 if num_phones < 10 else 400, seed=len(kind))
    n, no_prune, extra = lm_options
    lm_path = tmp_path / "phone_lm.fst"
    kaldi("chain-est-phone-lm", f"--ngram-order={n}", f"--no-prune-ngram-order={no_prune}",
          f"--num-extra-lm-states={extra}", write_phone_sequences(tmp_path / "seqs.ark", seqs),
          lm_path)
    kaldi("chain-make-den-fst", tree_path, model_path, lm_path, tmp_path / "den.fst",
          tmp_path / "normalization.fst")
    den, norm = make_den_fst(ContextDependency.from_file(tree_path),
                             TransitionModel.from_file(model_path), Fst.from_file(lm_path))
    assert_same_fst_up_to_numbering(den, Fst.from_file(tmp_path / "den.fst"),
                                    f"{kind} den.fst")
    assert_same_fst_up_to_numbering(norm, Fst.from_file(tmp_path / "normalization.fst"),
                                    f"{kind} normalization.fst")


def test_push_special_keeps_path_weights():
    # the linear FST from push-special.cc's comment (all eigenvalues same modulus)
    f = VFst()
    for _ in range(4):
        f.add_state()
    f.start = 0
    f.add_arc(0, 3, 3, 0.0, 2)
    f.add_arc(1, 1, 4, 0.5, 3)
    f.add_arc(2, 0, 0, 0.5, 1)
    f.final[3] = 0.25
    g = f.copy()
    push_special(g, 1e-5)
    tot = lambda h: sum(a[2] for arcs in h.arcs for a in arcs) + h.final[3]
    assert tot(g) == pytest.approx(tot(f), abs=1e-5)
    sums = []
    for s in range(4):
        z = sum(math.exp(-a[2]) for a in g.arcs[s])
        z += math.exp(-g.final[s]) if np.isfinite(g.final[s]) else 0.0
        sums.append(z)
    assert max(sums) / min(sums) < 1.0001


def test_remove_eps_local_and_std_sort():
    f = VFst()
    for _ in range(3):
        f.add_state()
    f.start = 0
    f.add_arc(0, 0, 0, 0.5, 1)   # eps into a state with one arc out
    f.add_arc(1, 7, 7, 0.25, 2)
    f.final[2] = 0.0
    g = remove_eps_local(f)
    assert g.num_states == 2 and g.arcs[0] == [[7, 7, 0.75, 1]]
    a = [(k % 3, i) for i, k in enumerate(range(40))]
    b = list(a)
    std_sort(b, lambda x, y: x[0] < y[0])
    assert [x[0] for x in b] == sorted(x[0] for x in a)
    assert sorted(b) == sorted(a)

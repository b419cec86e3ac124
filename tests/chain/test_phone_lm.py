"""chain-est-phone-lm re-implementation: closed forms on tiny inputs, and the
same FST as Kaldi's ``chain-est-phone-lm`` on the same phone sequences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kbind.chain.phone_lm import PhoneLmEstimator, estimate_phone_lm, read_phone_sequences
from kbind.io.fst import Fst

from ._kaldi import assert_same_fst, random_phone_sequences, write_phone_sequences


def _lang(f):
    """{phone-sequence: cost} for an acyclic deterministic acceptor (small)."""
    out = {}
    todo = [(f.start, (), 0.0)]
    while todo:
        s, seq, c = todo.pop()
        if np.isfinite(f.final[s]):
            out[seq] = c + float(f.final[s])
        for d, il, ol, w in f.arcs(s):
            assert il == ol
            if len(seq) < 6:
                todo.append((d, seq + (il,), c + w))
    return out


def test_bigram_closed_form():
    seqs = [[1, 2, 3], [1, 2], [2, 3, 3, 1]]
    f = estimate_phone_lm(seqs, ngram_order=2, no_prune_ngram_order=2, num_extra_lm_states=0)
    # states in creation order: (0,), (1,), (2,), (3,)
    assert f.num_states == 4 and f.start == 0
    expect = {0: {1: 2 / 3, 2: 1 / 3}, 1: {2: 2 / 3}, 2: {3: 2 / 3}, 3: {1: 1 / 3, 3: 1 / 3}}
    finals = {0: None, 1: 1 / 3, 2: 1 / 3, 3: 1 / 3}
    for s in range(4):
        arcs = {il: (d, w) for d, il, ol, w in f.arcs(s)}
        assert set(arcs) == set(expect[s])
        for p, prob in expect[s].items():
            assert arcs[p][0] == p  # destination = history (p,)
            assert arcs[p][1] == np.float32(-np.float32(math.log(prob)))
        if finals[s] is None:
            assert np.isinf(f.final[s])
        else:
            assert f.final[s] == np.float32(-np.float32(math.log(finals[s])))
    # arcs sorted by label
    assert all(np.all(np.diff(f.arc_ilabel[f.arc_src == s]) > 0) for s in range(4))


def test_trigram_unpruned_probabilities():
    seqs = [[1, 1, 2], [1, 2, 2, 1], [2, 1]]
    f = estimate_phone_lm(seqs, ngram_order=3, no_prune_ngram_order=3, num_extra_lm_states=0)
    lang = _lang(f)
    # P(1 1 2) = P(1|0) P(1|0,1) P(2|1,1) P(</s>|1,2)
    # counts: h=(0,): 1:2, 2:1; h=(0,1): 1:1, 2:1; h=(1,1): 2:1; h=(1,2): </s>:1, 2:1;
    p = (2 / 3) * (1 / 2) * 1.0 * (1 / 2)
    assert lang[(1, 1, 2)] == pytest.approx(-math.log(p), abs=1e-5)
    for s in range(f.num_states):  # every state is a proper distribution
        tot = sum(math.exp(-w) for _, _, _, w in f.arcs(s))
        if np.isfinite(f.final[s]):
            tot += math.exp(-float(f.final[s]))
        assert tot == pytest.approx(1.0, abs=1e-6)


def test_full_backoff_equals_lower_order():
    rng = np.random.default_rng(5)
    seqs = [list(rng.integers(1, 5, size=rng.integers(3, 12))) for _ in range(40)]
    f4 = estimate_phone_lm(seqs, ngram_order=4, no_prune_ngram_order=3, num_extra_lm_states=0)
    f3 = estimate_phone_lm(seqs, ngram_order=3, no_prune_ngram_order=3, num_extra_lm_states=0)
    assert (f4.num_states, f4.num_arcs) == (f3.num_states, f3.num_arcs)
    # same model: compare state by state through label-matching from the start.
    m = {f4.start: f3.start}
    todo = [f4.start]
    while todo:
        s = todo.pop()
        t = m[s]
        a = {il: (d, w) for d, il, _, w in f4.arcs(s)}
        b = {il: (d, w) for d, il, _, w in f3.arcs(t)}
        assert set(a) == set(b)
        assert (np.isinf(f4.final[s]) and np.isinf(f3.final[t])) or f4.final[s] == f3.final[t]
        for il in a:
            assert a[il][1] == b[il][1]
            if a[il][0] not in m:
                m[a[il][0]] = b[il][0]
                todo.append(a[il][0])
            assert m[a[il][0]] == b[il][0]


def test_pruning_reaches_target_and_keeps_counts():
    rng = np.random.default_rng(7)
    seqs = [list(rng.integers(1, 6, size=rng.integers(5, 25))) for _ in range(60)]
    est = PhoneLmEstimator(4, 3, 1000)
    for s in seqs:
        est.add_counts(s)
    big = est.estimate()
    n_unpruned = big.num_states
    est2 = PhoneLmEstimator(4, 3, 10)
    for s in seqs:
        est2.add_counts(s)
    small = est2.estimate()
    assert small.num_states == est2.num_basic_lm_states + 10 < n_unpruned
    tot = sum(st.tot_count for st in est2.lm_states)
    assert tot == sum(len(s) + 1 for s in seqs)  # counts are moved, never lost
    for s in range(small.num_states):  # still normalized, no backoff arcs
        z = sum(math.exp(-w) for _, _, _, w in small.arcs(s))
        if np.isfinite(small.final[s]):
            z += math.exp(-float(small.final[s]))
        assert z == pytest.approx(1.0, abs=1e-5)
        assert np.all(small.arc_ilabel > 0)


def test_invalid_options():
    with pytest.raises(ValueError):
        PhoneLmEstimator(1, 1, 0)
    with pytest.raises(ValueError):
        PhoneLmEstimator(3, 4, 0)
    with pytest.raises(ValueError):
        estimate_phone_lm([[1, 0, 2]])


def test_read_phone_sequences(tmp_path):
    p = tmp_path / "phones.txt"
    p.write_text("u1 1 2 3\nu2 4 5\n")
    assert read_phone_sequences(str(p)) == [[1, 2, 3], [4, 5]]
    assert read_phone_sequences(f"ark,t:{p}") == [[1, 2, 3], [4, 5]]


@pytest.mark.parametrize("ngram_order, no_prune_ngram_order, num_extra_lm_states", [
    (4, 3, 1000),   # Kaldi's defaults: nothing to prune here
    (4, 3, 30),     # pruned
    (3, 2, 5),      # pruned hard
    (2, 1, 0),      # a bigram pruned to the unigram state
    (5, 2, 20),
    (4, 4, 0),      # nothing prunable
])
def test_phone_lm_equals_kaldis(kaldi, tmp_path, ngram_order, no_prune_ngram_order,
                                num_extra_lm_states):
    """Kaldi's ``chain-est-phone-lm`` on the same sequences writes the same FST:
    states, arcs in order, labels and float32 weights bit for bit."""
    seqs = random_phone_sequences(12, 150, seed=ngram_order * 100 + num_extra_lm_states)
    opts = [f"--ngram-order={ngram_order}", f"--no-prune-ngram-order={no_prune_ngram_order}",
            f"--num-extra-lm-states={num_extra_lm_states}"]
    kaldi("chain-est-phone-lm", *opts, write_phone_sequences(tmp_path / "seqs.ark", seqs),
          tmp_path / "phone_lm.fst")
    ours = estimate_phone_lm(seqs, ngram_order, no_prune_ngram_order, num_extra_lm_states)
    assert_same_fst(ours, Fst.from_file(tmp_path / "phone_lm.fst"), " ".join(opts))

"""WER and score.sh sweeps, against hand-counted errors and closed forms."""

import pytest

from kbind.decode.scoring import (WerStats, add_word_insertion_penalty, compute_wer,
                                  lattice_one_best, per_utt_details, read_text,
                                  score_lattices, write_text)
from kbind.io.lattice import CompactLattice

REFS = {"u1": "one two three", "u2": "four five", "u3": "six"}
HYPS = {"u1": "one too three four", "u2": "five", "u3": "six"}
# u1: 1 sub (two->too) + 1 ins (four); u2: 1 del (four); u3: correct.


def test_counts_and_kaldi_lines():
    s = compute_wer(REFS, HYPS)
    assert (s.insertions, s.deletions, s.substitutions, s.ref_words) == (1, 1, 1, 6)
    assert s.kaldi_line() == "%WER 50.00 [ 3 / 6, 1 ins, 1 del, 1 sub ]"
    assert s.ser_line() == "%SER 66.67 [ 2 / 3 ]"


def test_modes():
    hyps = {"u1": "one two three"}
    with pytest.raises(KeyError, match="u2"):
        compute_wer(REFS, hyps)
    present = compute_wer(REFS, hyps, mode="present")
    assert (present.errors, present.ref_words, present.missing) == (0, 3, ["u2", "u3"])
    everything = compute_wer(REFS, hyps, mode="all")
    assert (everything.deletions, everything.ref_words) == (3, 6)
    with pytest.raises(KeyError, match="no reference"):
        compute_wer({"u1": "a"}, {"u1": "a", "zz": "b"})


def test_empty_reference_edge_cases():
    assert compute_wer({"u": ""}, {"u": ""}).wer == 0.0
    assert compute_wer({"u": ""}, {"u": "x"}).wer == float("inf")


def test_per_utt_details():
    lines = per_utt_details(REFS, HYPS)
    assert lines[0].split() == ["u1", "ref", "one", "two", "three", "***"]
    assert lines[1].split() == ["u1", "hyp", "one", "too", "three", "four"]
    assert lines[2].split() == ["u1", "op", "C", "S", "C", "I"]
    assert lines[3] == "u1 #csid 2 1 1 0"
    assert lines[7] == "u2 #csid 1 0 0 1"


def test_text_files_round_trip(tmp_path):
    write_text(tmp_path / "text", {"b": ["x", "y"], "a": ["z"]})
    assert (tmp_path / "text").read_text() == "a z\nb x y\n"
    assert read_text(tmp_path / "text") == {"a": ["z"], "b": ["x", "y"]}


# Two competing paths (weights "graph,acoustic,tids"; acoustic unscaled):
#   A: word 1,      graph 0, acoustic 10
#   B: words 2 3,   graph 5, acoustic 2
# Cost with lmwt L and penalty p: A = 10/L + p, B = 5 + 2/L + 2p.
# A wins iff 8/L < 5 + p, i.e. L > 8 / (5 + p).
CLAT = ("0\t1\t1\t0,10,1_1\n1\t0,0,\n"
        "0\t2\t2\t5,1,2\n2\t3\t3\t0,1,3\n3\t0,0,\n")


def _lattice():
    return CompactLattice.from_text(CLAT)


@pytest.mark.parametrize("lmwt, wip, expected", [
    (1.0, 0.0, [2, 3]),   # 8/1 = 8 > 5
    (2.0, 0.0, [1]),      # 4 < 5
    (1.5, 0.0, [2, 3]),   # 5.33 > 5
    (1.5, 1.0, [1]),      # 5.33 < 6
])
def test_one_best_follows_lmwt_and_penalty(lmwt, wip, expected):
    assert lattice_one_best(_lattice(), lmwt, wip) == expected


def test_penalty_adds_to_word_arcs_only():
    lat = add_word_insertion_penalty(_lattice(), 0.5)
    assert lat.arc_weight[:, 0].tolist() == pytest.approx([0.5, 5.5, 0.5])
    assert _lattice().arc_weight[:, 0].tolist() == [0.0, 5.0, 0.0]  # copy, not in place


def test_sweep_picks_the_best_pair():
    words = {1: "yes", 2: "no", 3: "way"}
    res = score_lattices({"u": _lattice()}, {"u": ["no", "way"]}, words,
                         lmwts=[1, 2], wips=[0.0, 1.0])
    assert res.table[(1.0, 0.0)].errors == 0
    assert res.table[(2.0, 0.0)].errors == 2  # "yes" vs "no way": 1 sub + 1 del
    assert res.best == (1.0, 0.0)
    assert res.best_wer_line().startswith("%WER 0.00 [ 0 / 2, 0 ins, 0 del, 0 sub ]")
    assert isinstance(res.best_stats, WerStats)


@pytest.mark.parametrize("seed", range(20))
def test_best_paths_sweep_equals_one_at_a_time(seed):
    """The C sweep gives, for every (lmwt, wip), the words of the Python best path."""
    import numpy as np
    from kbind.decode.scoring import lattice_best_paths
    from tests.decode.test_lattice_ops import random_lattice
    rng = np.random.default_rng(seed)
    lat = random_lattice(rng, ns=int(rng.integers(2, 14)), num_words=4)
    settings = [(lm, wp) for lm in (0.5, 1.0, 3.0, 7.0, 13.0) for wp in (-1.0, 0.0, 0.5, 2.0)]
    got = lattice_best_paths(lat, settings)
    for (lm, wp), g in zip(settings, got):
        assert g == lattice_one_best(lat, lm, wp), (lm, wp)


def test_best_paths_sweep_edge_cases():
    import numpy as np
    from kbind._native import NativeError
    from kbind.decode.scoring import lattice_best_paths
    from kbind.io.lattice import Lattice
    inf = float("inf")
    # no final state reachable -> None for every setting
    lat = Lattice(2, 0, [[inf, inf], [inf, inf]], [0], [1], [1], [5], [[1.0, 1.0]])
    assert lattice_best_paths(lat, [(1.0, 0.0), (2.0, 1.0)]) == [None, None]
    # the start state final, no arcs: the empty path
    lat = Lattice(1, 0, [[0.0, 0.0]], [], [], [], [], np.zeros((0, 2), np.float32))
    assert lattice_best_paths(lat, [(1.0, 0.0)]) == [[]]
    cyc = Lattice(2, 0, [[inf, inf], [0.0, 0.0]], [0, 1], [1, 0], [1, 1], [0, 0],
                  [[1.0, 0.0], [1.0, 0.0]])
    with pytest.raises(NativeError, match="cycle"):
        lattice_best_paths(cyc, [(1.0, 0.0)])


@pytest.mark.parametrize("seed", range(20))
def test_best_paths_sweep_on_compact_lattices(seed):
    """On a CompactLattice the sweep searches the compact form directly; the
    words equal those of the expanded lattice's best path (random costs: no ties)."""
    import numpy as np
    from kbind.decode.lattice_ops import determinize_lattice
    from kbind.decode.scoring import lattice_best_paths
    from tests.decode.test_lattice_ops import random_lattice
    rng = np.random.default_rng(100 + seed)
    clat = determinize_lattice(random_lattice(rng, ns=int(rng.integers(3, 14)), num_words=4))
    settings = [(lm, wp) for lm in (0.5, 1.0, 3.0, 13.0) for wp in (0.0, 0.5, 2.0)]
    for (lm, wp), g in zip(settings, lattice_best_paths(clat, settings)):
        assert g == lattice_one_best(clat, lm, wp), (lm, wp)

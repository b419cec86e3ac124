"""kbind.fstext: the shared Kaldi fstext ports give the same result on
VFst and Fst inputs, and keep path weights."""

from __future__ import annotations

import numpy as np

from kbind.fstext import VFst, add_self_loops, connect, push_special, remove_eps_local
from kbind.io.fst import Fst


def _vfst(num_states, arcs, finals) -> VFst:
    """VFst with start 0, ``arcs`` = (src, ilabel, olabel, weight, dst), ``finals`` = {s: cost}."""
    f = VFst()
    f.final = [finals.get(s, float("inf")) for s in range(num_states)]
    f.arcs = [[] for _ in range(num_states)]
    f.start = 0
    for s, i, o, w, d in arcs:
        f.add_arc(s, i, o, w, d)
    return f


def _random_vfst(seed: int) -> VFst:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    f = VFst()
    for _ in range(n):
        f.add_state()
    f.start = 0
    for q in range(n):
        f.add_arc(q, 1 + q % 3, 1 + q % 3, float(np.float32(rng.uniform(0, 4))), (q + 1) % n)
    for _ in range(int(rng.integers(n, 3 * n))):
        lab = int(rng.integers(0, 4))
        f.add_arc(int(rng.integers(n)), lab, lab, float(np.float32(rng.uniform(0, 4))),
                  int(rng.integers(n)))
    f.final[n - 1] = 0.25
    return f


def test_conversions_roundtrip():
    for seed in range(5):
        v = _random_vfst(seed)
        w = VFst.from_fst(v.to_fst())
        assert (w.start, w.final, w.arcs) == (v.start, v.final, v.arcs)


def test_push_special_vfst_equals_fst():
    for seed in range(10):
        v = _random_vfst(seed)
        f = v.to_fst()
        push_special(v)
        g = push_special(f)
        assert np.array_equal(v.to_fst().arc_weight, g.arc_weight)
        assert np.array_equal(v.to_fst().final, g.final)
        p = np.exp(-g.arc_weight.astype(np.float64))
        z = np.exp(-g.final.astype(np.float64))
        np.add.at(z, g.arc_src, p)
        assert z.max() / z.min() < 1.01  # all states sum to the same


def test_remove_eps_local_does_not_touch_input_and_connects():
    v = _random_vfst(3)
    before = v.copy()
    r = remove_eps_local(v)
    assert (v.start, v.final, v.arcs) == (before.start, before.final, before.arcs)
    assert connect(r) is r  # already connected


def test_connect_drops_dead_states():
    # 2 is not coaccessible, 3 not accessible
    c = connect(_vfst(4, [(0, 1, 1, 0.5, 1), (0, 2, 2, 0.5, 2)], {1: 0.0}))
    assert c.num_states == 2 and c.arcs == [[[1, 1, 0.5, 1]], []]


class _TM:
    """Minimal transition model: tids 1..4; tstate 1 = tids (1 fwd, 2 loop),
    tstate 2 = tids (3 fwd, 4 loop)."""
    num_transition_ids = 4
    num_transition_states = 2
    tid2state = np.array([0, 1, 1, 2, 2])
    tid_is_self_loop = np.array([False, False, True, False, True])
    log_probs = np.log(np.array([1.0, 0.4, 0.6, 0.7, 0.3], np.float32))
    non_self_loop_log_probs = np.log(np.array([1.0, 0.4, 0.7], np.float32))

    def self_loop_of(self, s):
        return {1: 2, 2: 4}[s]


def test_add_self_loops_splits_state_with_epsilon_arc():
    # 0 -1-> 2, 1 -3-> 2, 0 -eps-> 1; state 2 entered by two transition-states
    v = _vfst(3, [(0, 1, 10, 0.0, 2), (0, 0, 0, 0.0, 1), (1, 3, 11, 0.0, 2)], {2: 0.0})
    f = add_self_loops(_TM(), v.to_fst(), 1.0)
    add_self_loops(_TM(), v, 1.0)
    assert np.array_equal(v.to_fst().arc_dst, f.arc_dst)
    assert v.num_states == 5  # two new states, each with an epsilon arc to 2
    assert v.arcs[3][0][:2] == [0, 0] and v.arcs[3][0][3] == 2
    assert v.arcs[4][0][:2] == [0, 0] and v.arcs[4][0][3] == 2
    loops = sorted((s, a[0]) for s in range(v.num_states) for a in v.arcs[s] if a[3] == s)
    assert loops == [(3, 2), (4, 4)]

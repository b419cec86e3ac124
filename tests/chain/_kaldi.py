"""Helpers for the tests that run Kaldi's chain programs on kbind's inputs."""

from __future__ import annotations

import numpy as np

from kbind.io import write_table
from kbind.io.fst import Fst


def random_phone_sequences(num_phones: int, num_seqs: int, seed: int):
    """Phone sequences from a sparse random bigram chain (each phone has a few
    likely successors), so that n-gram pruning has counts to choose between."""
    rng = np.random.default_rng(seed)
    successors = [rng.choice(num_phones, size=min(4, num_phones), replace=False) + 1
                  for _ in range(num_phones + 1)]
    seqs = []
    for _ in range(num_seqs):
        p, seq = 0, []
        for _ in range(int(rng.integers(2, 30))):
            p = int(rng.choice(successors[p])) if rng.random() < 0.9 else \
                int(rng.integers(1, num_phones + 1))
            seq.append(p)
        seqs.append(seq)
    return seqs


def write_phone_sequences(path, seqs) -> str:
    """An int-vector archive of the sequences (what ``chain-est-phone-lm`` reads);
    returns its rspecifier."""
    with write_table(f"ark:{path}") as w:
        for i, seq in enumerate(seqs):
            w.write(f"utt{i:04d}", np.asarray(seq, dtype=np.int32))
    return f"ark:{path}"


def assert_same_fst(ours: Fst, kaldis: Fst, what: str) -> None:
    """Same start, states, final weights and arcs in the same order, labels and
    float32 weights bit for bit; the message says where they first differ."""
    if ours.equal(kaldis):
        return
    msg = (f"{what}: kbind {ours.num_states} states / {ours.num_arcs} arcs (start "
           f"{ours.start}), Kaldi {kaldis.num_states} / {kaldis.num_arcs} (start {kaldis.start})")
    if (ours.num_states, ours.num_arcs) == (kaldis.num_states, kaldis.num_arcs):
        for name in ("src", "dst", "ilabel", "olabel", "weight"):
            a, b = getattr(ours, f"arc_{name}"), getattr(kaldis, f"arc_{name}")
            bad = np.flatnonzero(a != b)
            if bad.size:
                i = int(bad[0])
                msg += f"; first differing arc {i}: {name} {a[i]} vs {b[i]}"
                break
        else:
            bad = np.flatnonzero(ours.final.view(np.uint32) != kaldis.final.view(np.uint32))
            if bad.size:
                s = int(bad[0])
                msg += f"; final weight of state {s}: {ours.final[s]} vs {kaldis.final[s]}"
    raise AssertionError(msg)

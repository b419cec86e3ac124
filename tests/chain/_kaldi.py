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


def _bits(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w, dtype=np.float32).view(np.uint32)


def _refine(colour, arcs_out, arcs_in, labels, src, dst):
    """Split classes until stable: a state's new class is its class with the
    sorted labels, weights and classes of the other ends of its arcs, out and in."""
    num_colours = len(set(colour))
    while True:
        sigs = [(colour[s],
                 tuple(sorted((labels[0][a], labels[1][a], labels[2][a], colour[dst[a]])
                              for a in arcs_out[s])),
                 tuple(sorted((labels[0][a], labels[1][a], labels[2][a], colour[src[a]])
                              for a in arcs_in[s])))
                for s in range(len(colour))]
        ids: dict = {}
        colour = [ids.setdefault(sig, len(ids)) for sig in sigs]
        if len(ids) == num_colours:
            return colour
        num_colours = len(ids)


def assert_same_fst_up_to_numbering(ours: Fst, kaldis: Fst, what: str) -> None:
    """The same FST but for the numbering of its states (and the order of each
    state's arcs): a bijection between the states that maps start to start,
    final weights and every state's arcs (labels and float32 weights bit for
    bit) to the other's.

    The bijection is found as graph-isomorphism tools find one: refine both
    FSTs together (states split by start and final weight, then by the labels,
    weights and classes of their arcs' other ends, out and in, until stable);
    where a class still holds several states of each, pair the first two and
    refine again. The pairing is then checked arc by arc; fails naming what
    differs."""
    if (ours.num_states, ours.num_arcs) != (kaldis.num_states, kaldis.num_arcs):
        raise AssertionError(f"{what}: kbind {ours.num_states} states / {ours.num_arcs} arcs, "
                             f"Kaldi {kaldis.num_states} / {kaldis.num_arcs}")
    n = ours.num_states
    fsts = (ours, kaldis)
    # states 0..n-1 are ours, n..2n-1 Kaldi's
    final = np.concatenate([_bits(f.final) for f in fsts])
    src = np.concatenate([f.arc_src.astype(np.int64) + i * n for i, f in enumerate(fsts)])
    dst = np.concatenate([f.arc_dst.astype(np.int64) + i * n for i, f in enumerate(fsts)])
    labels = [np.concatenate([f.arc_ilabel for f in fsts]).tolist(),
              np.concatenate([f.arc_olabel for f in fsts]).tolist(),
              np.concatenate([_bits(f.arc_weight) for f in fsts]).tolist()]
    src, dst = src.tolist(), dst.tolist()
    arcs_out = [[] for _ in range(2 * n)]
    arcs_in = [[] for _ in range(2 * n)]
    for a in range(len(src)):
        arcs_out[src[a]].append(a)
        arcs_in[dst[a]].append(a)
    is_start = np.zeros(2 * n, dtype=np.uint32)
    is_start[[ours.start, n + kaldis.start]] = 1
    _, colour = np.unique(np.stack([final, is_start], 1), axis=0, return_inverse=True)
    colour = _refine(colour.reshape(-1).tolist(), arcs_out, arcs_in, labels, src, dst)
    while True:
        members: dict = {}
        for s, c in enumerate(colour):
            members.setdefault(c, []).append(s)
        for states in members.values():
            mine = [s for s in states if s < n]
            if len(mine) != len(states) - len(mine):
                raise AssertionError(
                    f"{what}: a class of {len(mine)} kbind and {len(states) - len(mine)} Kaldi "
                    f"states (kbind's {mine[:3]}, Kaldi's {[s - n for s in states if s >= n][:3]})")
        ambiguous = [st for st in members.values() if len(st) > 2]
        if not ambiguous:
            break
        states = min(ambiguous, key=len)      # individualize one pair, refine again
        new = max(colour) + 1
        colour[min(s for s in states if s < n)] = new
        colour[min(s for s in states if s >= n)] = new
        colour = _refine(colour, arcs_out, arcs_in, labels, src, dst)
    pair = {}
    for states in members.values():
        pair[states[0]] = states[1] - n
    for s, t in pair.items():
        mine = sorted((labels[0][a], labels[1][a], labels[2][a], pair[dst[a]])
                      for a in arcs_out[s])
        theirs = sorted((labels[0][a], labels[1][a], labels[2][a], dst[a] - n)
                        for a in arcs_out[n + t])
        if mine != theirs or final[s] != final[n + t]:
            raise AssertionError(f"{what}: kbind's state {s} and Kaldi's state {t} differ")
    if pair[ours.start] != kaldis.start:
        raise AssertionError(f"{what}: the start states differ")

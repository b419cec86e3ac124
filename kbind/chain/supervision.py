"""Chain supervision (numerator graphs), as Kaldi's ``chain::Supervision``.

A :class:`Supervision` holds one numerator FST per sequence, as Kaldi writes
them after normalization (composition with normalization.fst): epsilon-free
acceptors whose labels are pdf-id + 1. Two kinds, like Kaldi:

* ``"constrained"`` (Kaldi's ``fst``; alignment/lattice supervision split into
  chunks): acyclic, every successful path has exactly T arcs. Scored like
  ``NumeratorComputation`` (log space, double).
* ``"e2e"`` (Kaldi's ``e2e_fsts``; flat-start and "unconstrained" egs):
  any (cyclic) acceptor; a path must have exactly T arcs and end in a final
  state. Scored like ``GenericNumeratorComputation`` (log space, float).

Kaldi needs all sequences of a minibatch to have the same T and weight; here
each sequence keeps its own number of frames and weight (``merge`` checks only
that the kinds agree).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..arrays import checked_cast

__all__ = ["Supervision", "NumeratorFst", "NumeratorArrays"]


@dataclass
class NumeratorFst:
    """One sequence's numerator graph as arrays (arcs in FST order)."""
    num_states: int
    start: int
    final: np.ndarray      # float32 cost, +inf = not final
    src: np.ndarray        # int64
    dst: np.ndarray        # int64
    pdf: np.ndarray        # int64 (label - 1)
    cost: np.ndarray       # float32
    acyclic: bool
    length: Optional[int]  # number of frames every path has (acyclic only)

    @property
    def num_arcs(self) -> int:
        return int(self.src.size)


def _load_fst(f):
    from ..io.fst import Fst

    if isinstance(f, (str, os.PathLike)):
        path = os.fspath(f)
        if path.endswith(".txt"):
            with open(path) as fh:
                return Fst.from_text(fh.read())
        return Fst.from_file(path)
    return f


def _topo_levels(n: int, start: int, src: np.ndarray, dst: np.ndarray):
    """(acyclic, level per state or None): BFS levels from the start state, if
    the part reachable from it is acyclic and every arc goes from level k to
    k + 1 (Kaldi's ``ComputeFstStateTimes`` requirement)."""
    # Kahn's algorithm on the whole FST to detect cycles.
    indeg = np.bincount(dst, minlength=n)
    frontier = np.flatnonzero(indeg == 0)
    seen = 0
    while frontier.size:
        seen += frontier.size
        nxt = dst[np.isin(src, frontier)]
        np.subtract.at(indeg, nxt, 1)
        cand = np.unique(nxt)
        frontier = cand[indeg[cand] == 0]
    if seen < n:
        return False, None
    level = np.full(n, -1, dtype=np.int64)
    level[start] = 0
    frontier = np.array([start])
    k = 0
    while frontier.size:
        nxt = np.unique(dst[np.isin(src, frontier)])
        k += 1
        if np.any((level[nxt] >= 0) & (level[nxt] != k)):
            return True, None
        level[nxt] = k
        frontier = nxt
    return True, level


def _numerator_fst(fst, index: int) -> NumeratorFst:
    f = _load_fst(fst)
    n = int(f.num_states)
    start = int(f.start)
    what = f"numerator FST {index}"
    if n <= 0 or start < 0:
        raise ValueError(f"{what} is empty")
    src = np.asarray(f.arc_src, dtype=np.int64)
    dst = np.asarray(f.arc_dst, dtype=np.int64)
    il = np.asarray(f.arc_ilabel, dtype=np.int64)
    cost = np.asarray(f.arc_weight, dtype=np.float32)
    final = np.asarray(f.final, dtype=np.float32)
    if np.any(il <= 0):
        k = int(np.flatnonzero(il <= 0)[0])
        raise ValueError(f"{what}: arc {k} has label {int(il[k])}; numerator FSTs must be "
                         f"epsilon-free with labels pdf-id + 1 >= 1")
    if np.isnan(cost).any() or np.isnan(final).any():
        raise ValueError(f"{what} has NaN weights")
    if not np.any(final != np.inf):
        raise ValueError(f"{what} has no final state")
    acyclic, level = _topo_levels(n, start, src, dst)
    length = None
    if acyclic and level is not None:
        fin = np.flatnonzero((final != np.inf) & (level >= 0))
        lens = np.unique(level[fin])
        if lens.size == 1:
            length = int(lens[0])
    return NumeratorFst(n, start, final, src, dst, il - 1, cost, acyclic, length)


class Supervision:
    """Numerator graphs of a minibatch (one FST per sequence).

    Attributes: ``fsts`` (list of :class:`NumeratorFst`), ``kind``
    (``"constrained"`` or ``"e2e"``), ``frames`` (list of frames per sequence),
    ``weights`` (list of supervision weights per sequence).
    """

    def __init__(self, fsts: List[NumeratorFst], frames: List[int], weights: List[float],
                 kind: str):
        if kind not in ("constrained", "e2e"):
            raise ValueError(f"supervision kind must be 'constrained' or 'e2e', got {kind!r}")
        if not (len(fsts) == len(frames) == len(weights)):
            raise ValueError("fsts, frames and weights have different lengths")
        self.fsts = list(fsts)
        self.frames = [int(t) for t in frames]
        self.weights = [float(w) for w in weights]
        self.kind = kind
        self._cache: Dict[tuple, object] = {}

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_fsts(cls, fsts: Sequence, frames_per_sequence=None, weight: float = 1.0,
                  kind: Optional[str] = None) -> "Supervision":
        """From per-sequence numerator FSTs (paths, ``.txt`` AT&T files or
        :class:`kbind.io.fst.Fst`), labels pdf-id + 1, already normalized.

        ``frames_per_sequence``: int or one int per sequence (for acyclic FSTs
        it defaults to the FST's path length, and must agree with it).
        ``kind``: ``"constrained"`` / ``"e2e"``; default: constrained if every
        FST is acyclic, e2e if every FST is cyclic (a mix needs ``kind="e2e"``).
        ``weight``: Kaldi's supervision weight (float or one per sequence)."""
        fsts = [_numerator_fst(f, i) for i, f in enumerate(fsts)]
        S = len(fsts)
        if S == 0:
            raise ValueError("no numerator FSTs given")
        if frames_per_sequence is None:
            frames = []
            for i, f in enumerate(fsts):
                if f.length is None:
                    raise ValueError(f"numerator FST {i} is cyclic (or its paths have different "
                                     f"lengths): frames_per_sequence must be given")
                frames.append(f.length)
        elif np.ndim(frames_per_sequence) == 0:
            frames = [int(frames_per_sequence)] * S
        else:
            frames = [int(t) for t in frames_per_sequence]
            if len(frames) != S:
                raise ValueError(f"frames_per_sequence has {len(frames)} entries for {S} FSTs")
        if any(t < 1 for t in frames):
            raise ValueError("frames_per_sequence must be >= 1")
        weights = [float(weight)] * S if np.ndim(weight) == 0 else [float(w) for w in weight]
        if len(weights) != S:
            raise ValueError(f"weight has {len(weights)} entries for {S} FSTs")
        if kind is None:
            acyc = [f.acyclic for f in fsts]
            if all(acyc):
                kind = "constrained"
            elif not any(acyc):
                kind = "e2e"
            else:
                raise ValueError("some numerator FSTs are acyclic (constrained) and some cyclic "
                                 "(e2e/unconstrained); Kaldi cannot merge these; pass kind='e2e' "
                                 "to score all of them with the generic numerator")
        if kind == "constrained":
            for i, (f, t) in enumerate(zip(fsts, frames)):
                if not f.acyclic:
                    raise ValueError(f"numerator FST {i} is cyclic: constrained supervision must "
                                     f"be acyclic (use kind='e2e')")
                if f.length is None:
                    raise ValueError(f"numerator FST {i}: not all paths have the same length "
                                     f"(Kaldi's ComputeFstStateTimes requirement)")
                if f.length != t:
                    raise ValueError(f"numerator FST {i} has paths of {f.length} frames but "
                                     f"frames_per_sequence is {t}")
        return cls(fsts, frames, weights, kind)

    @classmethod
    def merge(cls, sups: Sequence["Supervision"]) -> "Supervision":
        """Concatenate supervisions (sequence order kept). Kinds must agree."""
        sups = list(sups)
        if not sups:
            raise ValueError("nothing to merge")
        kinds = {s.kind for s in sups}
        if len(kinds) != 1:
            raise ValueError(f"cannot merge supervisions of different kinds {sorted(kinds)}")
        fsts, frames, weights = [], [], []
        for s in sups:
            fsts += s.fsts
            frames += s.frames
            weights += s.weights
        return cls(fsts, frames, weights, sups[0].kind)

    # -- properties --------------------------------------------------------------------
    @property
    def num_sequences(self) -> int:
        return len(self.fsts)

    @property
    def frames_per_sequence(self) -> int:
        """The (common) number of frames; the maximum if they differ."""
        return max(self.frames)

    @property
    def weight(self) -> float:
        """The (common) supervision weight (ValueError if they differ)."""
        if len(set(self.weights)) != 1:
            raise ValueError("sequences have different supervision weights; use .weights")
        return self.weights[0]

    @property
    def e2e(self) -> bool:
        return self.kind == "e2e"

    def __len__(self) -> int:
        return self.num_sequences

    def __repr__(self) -> str:
        return (f"Supervision(kind={self.kind!r}, num_sequences={self.num_sequences}, "
                f"frames={self.frames if len(set(self.frames)) > 1 else self.frames[0]}, "
                f"weight={self.weights if len(set(self.weights)) > 1 else self.weights[0]})")

    # -- batched arrays for the numerator ---------------------------------------------------
    def arrays(self, num_pdfs: int, dtype: torch.dtype) -> "NumeratorArrays":
        """All sequences' graphs as concatenated numpy arrays (cached; see
        :class:`NumeratorArrays`), arc log-probs as scored in ``dtype``."""
        key = ("arrays", int(num_pdfs), dtype)
        a = self._cache.get(key)
        if a is None:
            a = NumeratorArrays(self, int(num_pdfs), dtype)
            self._cache[key] = a
        return a

    def batched(self, num_pdfs: int, device, dtype: torch.dtype):
        """All sequences' graphs as one block-diagonal graph of tensors (cached)."""
        key = (int(num_pdfs), str(device), dtype)
        b = self._cache.get(key)
        if b is None:
            b = _BatchedGraph(self.arrays(num_pdfs, dtype), torch.device(device), dtype)
            self._cache[key] = b
        return b


class NumeratorArrays:
    """The numerator graphs of a supervision as concatenated arrays, built
    with vectorised numpy (what the C kernel and the torch path read).

    Per sequence s: states ``state_offsets[s]:state_offsets[s+1]`` of the
    per-state arrays, arcs ``arc_offsets[s]:arc_offsets[s+1]`` of the per-arc
    arrays (FST order, i.e. sorted by source); ``src``/``dst``/``start`` are
    local state ids (int32), ``pdf`` int32; ``logprob`` = -cost (float64
    holding the value in the compute dtype), ``final`` = -final cost (-inf =
    not final), ``offsets`` (float64, per sequence) subtracted from log Z.

    e2e supervision (Kaldi's GenericNumeratorComputation): arcs leaving the
    start state get ``-(cost - off)``, ``off = max(0, max such cost)``, in
    float for float32 (Kaldi) -- when nothing re-enters the start state."""

    def __init__(self, sup: "Supervision", D: int, dtype: torch.dtype):
        fsts = sup.fsts
        S = len(fsts)
        nst = np.array([f.num_states for f in fsts], dtype=np.int64)
        narc = np.array([f.num_arcs for f in fsts], dtype=np.int64)
        self.state_offsets = np.concatenate([[0], np.cumsum(nst)]).astype(np.int64)
        self.arc_offsets = np.concatenate([[0], np.cumsum(narc)]).astype(np.int64)
        A = int(self.arc_offsets[-1])
        cat = np.concatenate
        pdf = cat([f.pdf for f in fsts]) if A else np.zeros(0, np.int64)
        if A and int(pdf.max()) >= D:
            k = int(np.argmax(pdf))
            b = int(np.searchsorted(self.arc_offsets, k, side="right") - 1)
            raise ValueError(f"numerator FST {b} has label {int(pdf[k]) + 1} (pdf-id "
                             f"{int(pdf[k])}) but the network output has {D} columns")
        src = cat([f.src for f in fsts]) if A else np.zeros(0, np.int64)
        dst = cat([f.dst for f in fsts]) if A else np.zeros(0, np.int64)
        cost = cat([f.cost for f in fsts]).astype(np.float32) if A else np.zeros(0, np.float32)
        start = np.array([f.start for f in fsts], dtype=np.int64)
        arc_seq = np.repeat(np.arange(S), narc)
        offsets = np.zeros(S, dtype=np.float64)
        if sup.kind == "e2e":
            seq_start = start[arc_seq]
            reenter = np.zeros(S, dtype=bool)
            reenter[arc_seq[dst == seq_start]] = True
            leave = (src == seq_start) & ~reenter[arc_seq]
            off = np.zeros(S, dtype=np.float32)
            np.maximum.at(off, arc_seq[leave], cost[leave])      # max(0, max cost)
            offsets = off.astype(np.float64)
            if dtype == torch.float32:       # Kaldi: float -(cost - off)
                lp = np.where(leave, -(cost - off[arc_seq]), -cost).astype(np.float64)
            else:
                c64 = cost.astype(np.float64)
                lp = np.where(leave, -(c64 - offsets[arc_seq]), -c64)
        else:
            lp = -cost.astype(np.float64)
        self.num_sequences = S
        self.num_pdfs = D
        self.start = checked_cast(start, np.int32, "start states")
        self.src = checked_cast(src, np.int32, "arc sources")
        self.dst = checked_cast(dst, np.int32, "arc destinations")
        self.pdf = checked_cast(pdf, np.int32, "arc pdf-ids")
        self.arc_seq = arc_seq
        self.logprob = lp
        self.final = -cat([f.final for f in fsts]).astype(np.float64)
        self.offsets = offsets
        self.frames = np.asarray(sup.frames, dtype=np.int64)


class _BatchedGraph:
    """A :class:`NumeratorArrays` as one block-diagonal graph of tensors."""

    def __init__(self, arr: NumeratorArrays, device: torch.device, dtype: torch.dtype):
        so = arr.state_offsets
        S = arr.num_sequences
        state_seq = np.repeat(np.arange(S), np.diff(so))
        o = so[arr.arc_seq]

        def L(a):
            return torch.as_tensor(np.asarray(a, dtype=np.int64), dtype=torch.long,
                                   device=device)

        def F(a):
            return torch.as_tensor(a, dtype=torch.float64).to(device, dtype)

        self.num_states = int(so[-1])
        self.num_seqs = S
        self.src, self.dst = L(arr.src + o), L(arr.dst + o)
        self.col = L(arr.arc_seq * arr.num_pdfs + arr.pdf)
        self.arc_seq = L(arr.arc_seq)
        self.start = L(arr.start + so[:-1])
        self.state_seq = L(state_seq)
        self.lp = F(arr.logprob)
        self.final = F(arr.final)
        self.offsets = F(arr.offsets)
        self.frames = torch.as_tensor(arr.frames, dtype=torch.long)

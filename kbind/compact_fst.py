"""The compact FST that kbind's C kernels share.

An FST becomes flat arrays (torch tensors, CPU, contiguous), arcs sorted by
source state in the FST's own arc order::

    arc_src, arc_dst, arc_ilabel, arc_olabel : int32 [A]
    arc_weight                                : float32 [A]  (tropical cost, -log p)
    final                                     : float32 [S]  (+inf = not final)
    out_offsets                               : int64 [S+1]  arcs leaving s are
                                                 out_offsets[s] .. out_offsets[s+1]-1
    in_offsets, in_arcs                       : int64 [S+1], [A]  arcs entering s are
                                                 in_arcs[in_offsets[s] .. in_offsets[s+1]-1],
                                                 ordered by source state then arc order

This is the layout of Kaldi's ``DenominatorGraph`` (forward and backward
transitions) generalised to any FST: forward passes walk ``out_offsets``,
backward passes walk ``in_offsets``/``in_arcs``. The index is built and
validated in C (:c:func:`kb_fst_index`): state ids, labels against the range
the caller expects (e.g. pdf-id+1 in [1, num_pdfs] for a den graph) and NaN
weights are checked once, so the kernels can trust the arrays. Values are
narrowed to int32 / float32 with :func:`kbind._native.as_c_array`, which
refuses what would wrap or overflow instead of passing a different number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from . import _native

__all__ = ["CompactFst"]


@dataclass
class CompactFst:
    num_states: int
    start: int
    final: torch.Tensor
    arc_src: torch.Tensor
    arc_dst: torch.Tensor
    arc_ilabel: torch.Tensor
    arc_olabel: torch.Tensor
    arc_weight: torch.Tensor
    out_offsets: torch.Tensor
    in_offsets: torch.Tensor
    in_arcs: torch.Tensor

    @property
    def num_arcs(self) -> int:
        return int(self.arc_src.numel())

    @classmethod
    def from_arrays(cls, num_states: int, start: int, final, src, dst, ilabel,
                    olabel=None, weight=None, label_range: Optional[tuple] = None
                    ) -> "CompactFst":
        """Build and validate from arc arrays (any order: a stable sort by
        source keeps each state's arc order).

        ``label_range=(lo, hi)``: inclusive range every input (and output)
        label must lie in; default: any non-negative int32.
        Raises ValueError naming the offending arc, or the array and entry
        whose value does not fit int32 / float32.
        """
        # checked before it sizes the offsets below
        num_states = int(_native.as_c_array(num_states, torch.int32, "num_states"))
        src = _native.as_c_array(np.asarray(src).reshape(-1), torch.int64, "src").numpy()
        n = src.size
        for name, arr in (("dst", dst), ("ilabel", ilabel), ("olabel", olabel),
                          ("weight", weight)):
            if arr is not None and np.asarray(arr).size != n:
                raise ValueError(f"arc array {name} has {np.asarray(arr).size} entries, "
                                 f"src has {n}")
        final = _native.as_c_array(np.asarray(final).reshape(-1), torch.float32, "final")
        if final.numel() != num_states:
            raise ValueError(f"final has {final.numel()} entries for {num_states} states")
        if torch.isnan(final).any():
            s = int(torch.nonzero(torch.isnan(final))[0])
            raise ValueError(f"final cost of state {s} is NaN")
        order = np.argsort(src, kind="stable") if n and np.any(np.diff(src) < 0) else None

        def arranged(a, dtype, name):
            a = np.asarray(a).reshape(-1)
            return _native.as_c_array(a[order] if order is not None else a, dtype, name)

        lo, hi = label_range if label_range is not None else (0, np.iinfo(np.int32).max)
        fst = cls(
            num_states=num_states, start=int(start), final=final,
            arc_src=arranged(src, torch.int32, "src"),
            arc_dst=arranged(dst, torch.int32, "dst"),
            arc_ilabel=arranged(ilabel, torch.int32, "ilabel"),
            arc_olabel=arranged(ilabel if olabel is None else olabel, torch.int32, "olabel"),
            arc_weight=arranged(np.zeros(n, np.float32) if weight is None else weight,
                                torch.float32, "weight"),
            out_offsets=torch.zeros(num_states + 1, dtype=torch.int64),
            in_offsets=torch.zeros(num_states + 1, dtype=torch.int64),
            in_arcs=torch.zeros(n, dtype=torch.int64),
        )
        P, S, A = _native.ptr, num_states, n
        try:
            _native.call("kb_fst_index", S, A, fst.start, P(fst.arc_src, A, "src"),
                         P(fst.arc_dst, A, "dst"), P(fst.arc_ilabel, A, "ilabel"),
                         P(fst.arc_olabel, A, "olabel"), P(fst.arc_weight, A, "weight"),
                         int(lo), int(hi),
                         P(fst.out_offsets, S + 1, "out_offsets"),
                         P(fst.in_offsets, S + 1, "in_offsets"), P(fst.in_arcs, A, "in_arcs"))
        except _native.NativeError as e:
            raise ValueError(f"invalid FST: {e}") from None
        return fst

    @classmethod
    def from_fst(cls, fst, label_range: Optional[tuple] = None) -> "CompactFst":
        """From a :class:`kbind.io.fst.Fst` (or anything with its arrays)."""
        return cls.from_arrays(fst.num_states, fst.start, fst.final, fst.arc_src,
                               fst.arc_dst, fst.arc_ilabel, fst.arc_olabel, fst.arc_weight,
                               label_range=label_range)

    def connected_states(self):
        """(accessible, coaccessible) boolean tensors over the states."""
        S, A, P = self.num_states, self.num_arcs, _native.ptr
        acc = torch.zeros(S, dtype=torch.uint8)
        coacc = torch.zeros(S, dtype=torch.uint8)
        _native.call("kb_fst_connect", S, A, self.start, P(self.final, S, "final"),
                     P(self.arc_dst, A, "arc_dst"), P(self.arc_src, A, "arc_src"),
                     P(self.out_offsets, S + 1, "out_offsets"),
                     P(self.in_offsets, S + 1, "in_offsets"), P(self.in_arcs, A, "in_arcs"),
                     P(acc, S, "accessible"), P(coacc, S, "coaccessible"))
        return acc.bool(), coacc.bool()

    def arcs_leaving(self, state: int) -> torch.Tensor:
        """Positions (into the arc arrays) of the arcs leaving ``state``."""
        return torch.arange(int(self.out_offsets[state]), int(self.out_offsets[state + 1]))

    def arcs_entering(self, state: int) -> torch.Tensor:
        """Positions of the arcs entering ``state`` (source, then arc order)."""
        return self.in_arcs[int(self.in_offsets[state]):int(self.in_offsets[state + 1])]

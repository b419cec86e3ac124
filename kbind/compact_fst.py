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
weights are checked once, so the kernels can trust the arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from . import _native

__all__ = ["CompactFst"]


def _i32(x) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(np.asarray(x), dtype=np.int32))


def _f32(x) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(np.asarray(x), dtype=np.float32))


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
        Raises ValueError naming the offending arc.
        """
        src = np.asarray(src, dtype=np.int64)
        n = src.size
        for name, arr in (("dst", dst), ("ilabel", ilabel), ("olabel", olabel),
                          ("weight", weight)):
            if arr is not None and np.asarray(arr).size != n:
                raise ValueError(f"arc array {name} has {np.asarray(arr).size} entries, "
                                 f"src has {n}")
        final = np.asarray(final, dtype=np.float32).reshape(-1)
        if final.size != num_states:
            raise ValueError(f"final has {final.size} entries for {num_states} states")
        if np.isnan(final).any():
            s = int(np.flatnonzero(np.isnan(final))[0])
            raise ValueError(f"final cost of state {s} is NaN")
        order = np.argsort(src, kind="stable") if n and np.any(np.diff(src) < 0) else None

        def arranged(a, conv, default):
            a = np.asarray(a) if a is not None else default
            return conv(a[order] if order is not None else a)

        lo, hi = label_range if label_range is not None else (0, np.iinfo(np.int32).max)
        fst = cls(
            num_states=int(num_states), start=int(start), final=_f32(final),
            arc_src=arranged(src, _i32, None),
            arc_dst=arranged(dst, _i32, None),
            arc_ilabel=arranged(ilabel, _i32, None),
            arc_olabel=arranged(olabel, _i32, np.asarray(ilabel)),
            arc_weight=arranged(weight, _f32, np.zeros(n, dtype=np.float32)),
            out_offsets=torch.zeros(int(num_states) + 1, dtype=torch.int64),
            in_offsets=torch.zeros(int(num_states) + 1, dtype=torch.int64),
            in_arcs=torch.zeros(n, dtype=torch.int64),
        )
        try:
            _native.call("kb_fst_index", fst.num_states, n, fst.start,
                         _native.ptr(fst.arc_src), _native.ptr(fst.arc_dst),
                         _native.ptr(fst.arc_ilabel), _native.ptr(fst.arc_olabel),
                         _native.ptr(fst.arc_weight), int(lo), int(hi),
                         _native.ptr(fst.out_offsets), _native.ptr(fst.in_offsets),
                         _native.ptr(fst.in_arcs))
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
        acc = torch.zeros(self.num_states, dtype=torch.uint8)
        coacc = torch.zeros(self.num_states, dtype=torch.uint8)
        _native.call("kb_fst_connect", self.num_states, self.start, _native.ptr(self.final),
                     _native.ptr(self.arc_dst), _native.ptr(self.arc_src),
                     _native.ptr(self.out_offsets), _native.ptr(self.in_offsets),
                     _native.ptr(self.in_arcs), _native.ptr(acc), _native.ptr(coacc))
        return acc.bool(), coacc.bool()

    def arcs_leaving(self, state: int) -> torch.Tensor:
        """Positions (into the arc arrays) of the arcs leaving ``state``."""
        return torch.arange(int(self.out_offsets[state]), int(self.out_offsets[state + 1]))

    def arcs_entering(self, state: int) -> torch.Tensor:
        """Positions of the arcs entering ``state`` (source, then arc order)."""
        return self.in_arcs[int(self.in_offsets[state]):int(self.in_offsets[state + 1])]

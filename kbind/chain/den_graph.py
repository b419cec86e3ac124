"""Kaldi's chain denominator graph (``DenominatorGraph``, ``chain-den-graph.cc``).

A den.fst (epsilon-free acceptor, labels = pdf-id + 1) becomes, as in Kaldi:

* ``transitions``: ``2*A`` entries ``(transition_prob = exp(-cost), pdf_id =
  ilabel - 1, hmm_state)``; the first half holds, for each state in order, the
  arcs *leaving* it in FST arc order (``hmm_state`` = destination); the second
  half, for each state, the arcs *entering* it ordered by source state and then
  arc order (``hmm_state`` = source).
* ``forward_transitions[h] = [begin, end)`` (first half) and
  ``backward_transitions[h]`` (second half, offsets include ``A``).
* ``initial_probs``: Kaldi's ``SetInitialProbs`` -- 100 iterations of HMM
  propagation from the start state in double, averaged, stored as float32.

The FST's own final costs are used only for the initial probs (every state is
final with probability one in the forward-backward).

Pure numpy/torch: no dependency on the C core.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Dict, Tuple, Union

import numpy as np
import torch

from ..arrays import checked_cast

__all__ = ["DenominatorGraph", "compute_initial_probs"]


def compute_initial_probs(num_states: int, start: int, final, src, dst, cost,
                          num_iters: int = 100) -> np.ndarray:
    """Kaldi's ``DenominatorGraph::SetInitialProbs`` (double, returns float32).

    ``final``/``cost``: tropical costs (``+inf`` = not final / zero prob)."""
    final = np.asarray(final, dtype=np.float32)
    cost = np.asarray(cost, dtype=np.float32)
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    # Kaldi: exp(-weight.Value()) evaluated in double (this reproduces Kaldi's
    # stored initial probs bit for bit).
    final_prob = np.exp(-final.astype(np.float64))
    arc_prob = np.exp(-cost.astype(np.float64))
    tot = final_prob + np.bincount(src, weights=arc_prob, minlength=num_states)
    if not (np.all(tot > 0.0) and np.all(tot < 100.0)):
        bad = int(np.flatnonzero(~((tot > 0.0) & (tot < 100.0)))[0])
        raise ValueError(f"den graph state {bad} has total outgoing probability "
                         f"{tot[bad]!r} (final + arcs); Kaldi requires 0 < total < 100")
    normalizing_factor = 1.0 / tot
    cur = np.zeros(num_states, dtype=np.float64)
    cur[start] = 1.0
    avg = np.zeros(num_states, dtype=np.float64)
    w = normalizing_factor[src] * arc_prob
    for _ in range(num_iters):
        avg += cur * (1.0 / num_iters)
        nxt = np.bincount(dst, weights=cur[src] * w, minlength=num_states)
        cur = nxt * (1.0 / nxt.sum())
    return avg.astype(np.float32)


@dataclass
class _GraphTensors:
    """Tensors of a den graph on one device, for the kernels.

    Arcs are grouped into "virtual destinations" ``v = (dst, pdf)`` (for a
    chain den graph about two per state): every arc into ``v`` consumes the
    same output ``x[pdf_v]``, so one frame of the forward recursion is a sparse
    product ``u = M alpha'`` (``M[v, src] = sum of p_a`` over arcs ``a`` from
    ``src`` into ``v``) followed by ``alpha(dst_v) += x[pdf_v] u[v]``.
    """
    M: torch.Tensor        # (V, H) CSR, float64
    MT: torch.Tensor       # (H, V) CSR, float64 (the transpose)
    v_dst: torch.Tensor    # (V,) long
    v_pdf: torch.Tensor    # (V,) long
    init: torch.Tensor     # (H,) initial probs (float32 values, in the requested dtype)


def _csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, shape, device):
    """CSR tensor (float64) from COO triplets; duplicates summed."""
    nr, nc = shape
    key = rows.astype(np.int64) * nc + cols
    order = np.argsort(key, kind="stable")
    key, vals = key[order], vals[order]
    uk, start = np.unique(key, return_index=True)
    v = np.add.reduceat(vals, start) if vals.size else vals
    r, c = uk // nc, uk % nc
    crow = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=nr))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(
            torch.as_tensor(crow, dtype=torch.long), torch.as_tensor(c, dtype=torch.long),
            torch.as_tensor(v, dtype=torch.float64), size=(nr, nc)).to(device)


class DenominatorGraph:
    """The denominator graph of Kaldi's chain objective.

    Build with :meth:`from_fst` (a den.fst path or a :class:`kbind.io.fst.Fst`).
    numpy attributes (Kaldi's layout, compare with ``graph_internals``):
    ``num_states``, ``num_pdfs``, ``num_arcs``, ``start``, ``initial_probs``
    (float32 [H]), ``forward_transitions``/``backward_transitions`` (int32
    [H, 2]), ``transitions_prob`` (float32 [2A]), ``transitions_pdf`` and
    ``transitions_hmm_state`` (int32 [2A]).
    """

    def __init__(self, num_states: int, num_pdfs: int, start: int, src, dst, pdf, cost,
                 final=None, device: Union[str, torch.device] = "cpu"):
        num_states = int(num_states)
        num_pdfs = int(num_pdfs)
        src = np.asarray(src, dtype=np.int64).reshape(-1)
        dst = np.asarray(dst, dtype=np.int64).reshape(-1)
        pdf = np.asarray(pdf, dtype=np.int64).reshape(-1)
        cost = np.asarray(cost, dtype=np.float32).reshape(-1)
        A = src.size
        if not (dst.size == pdf.size == cost.size == A):
            raise ValueError("den graph arc arrays have different lengths")
        if num_states <= 0:
            raise ValueError("den graph has no states")
        if num_pdfs <= 0:
            raise ValueError(f"num_pdfs must be positive, got {num_pdfs}")
        if not (0 <= start < num_states):
            raise ValueError(f"den graph start state {start} out of range [0, {num_states})")
        if A == 0:
            raise ValueError("den graph has no arcs")
        for name, arr in (("source", src), ("destination", dst)):
            bad = np.flatnonzero((arr < 0) | (arr >= num_states))
            if bad.size:
                raise ValueError(f"den graph arc {int(bad[0])}: {name} state {int(arr[bad[0]])} "
                                 f"out of range [0, {num_states})")
        if np.any(pdf < 0):
            k = int(np.flatnonzero(pdf < 0)[0])
            raise ValueError(f"den graph arc {k} has label {int(pdf[k]) + 1}: epsilon (0) or "
                             f"negative labels are not allowed (labels must be pdf-id + 1)")
        if np.any(pdf >= num_pdfs):
            k = int(np.argmax(pdf))
            raise ValueError(
                f"den graph arc {k} has label {int(pdf[k]) + 1} (pdf-id {int(pdf[k])}) but "
                f"num_pdfs = {num_pdfs}: labels must be pdf-id + 1 in [1, {num_pdfs}]; the den "
                f"graph does not match the network output dimension")
        if np.isnan(cost).any():
            k = int(np.flatnonzero(np.isnan(cost))[0])
            raise ValueError(f"den graph arc {k} has a NaN weight")
        if final is None:
            final = np.full(num_states, np.inf, dtype=np.float32)
        final = np.asarray(final, dtype=np.float32).reshape(-1)
        if final.size != num_states:
            raise ValueError(f"final has {final.size} entries for {num_states} states")
        if np.isnan(final).any():
            raise ValueError("den graph has a NaN final weight")

        # Kaldi's order: forward half = arcs grouped by source (stable = FST order).
        order_f = np.argsort(src, kind="stable")
        src, dst, pdf, cost = src[order_f], dst[order_f], pdf[order_f], cost[order_f]
        # backward half: grouped by destination, then by source, then arc order,
        # i.e. a stable sort of the forward half by destination.
        order_b = np.argsort(dst, kind="stable")
        # Kaldi's BaseFloat transition_prob = exp(-cost), correctly rounded.
        prob = np.exp(-cost.astype(np.float64)).astype(np.float32)

        out_deg = np.bincount(src, minlength=num_states)
        in_deg = np.bincount(dst, minlength=num_states)
        out_off = np.concatenate([[0], np.cumsum(out_deg)])
        in_off = np.concatenate([[0], np.cumsum(in_deg)]) + A

        self.num_states = num_states
        self.num_pdfs = num_pdfs
        self.num_arcs = A
        self.start = int(start)
        self.final = final
        self.arc_src, self.arc_dst, self.arc_pdf, self.arc_cost = src, dst, pdf, cost
        self.backward_order = order_b
        self.forward_transitions = checked_cast(np.stack([out_off[:-1], out_off[1:]], 1),
                                                np.int32, "forward transitions")
        self.backward_transitions = checked_cast(np.stack([in_off[:-1], in_off[1:]], 1),
                                                 np.int32, "backward transitions")
        self.transitions_prob = np.concatenate([prob, prob[order_b]]).astype(np.float32)
        self.transitions_pdf = checked_cast(np.concatenate([pdf, pdf[order_b]]), np.int32,
                                            "transition pdf-ids")
        self.transitions_hmm_state = checked_cast(np.concatenate([dst, src[order_b]]),
                                                  np.int32, "transition states")
        self.initial_probs = compute_initial_probs(num_states, start, final, src, dst, cost)
        self.device = torch.device(device)
        self._cache: Dict[Tuple[str, torch.dtype], _GraphTensors] = {}

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_fst(cls, path_or_fst, num_pdfs: int,
                 device: Union[str, torch.device] = "cpu") -> "DenominatorGraph":
        """From a Kaldi den.fst file (binary OpenFst, or AT&T text if the path
        ends in ``.txt``) or an :class:`kbind.io.fst.Fst`.

        Raises ValueError if a label is not a pdf-id + 1 in ``[1, num_pdfs]``
        (e.g. a den.fst made for another tree than the network's output)."""
        from ..io.fst import Fst

        if isinstance(path_or_fst, (str, os.PathLike)):
            path = os.fspath(path_or_fst)
            if path.endswith(".txt"):
                with open(path) as fh:
                    fst = Fst.from_text(fh.read())
            else:
                fst = Fst.from_file(path)
        else:
            fst = path_or_fst
        ilabel = np.asarray(fst.arc_ilabel, dtype=np.int64)
        olabel = np.asarray(fst.arc_olabel, dtype=np.int64)
        if ilabel.size and not np.array_equal(ilabel, olabel):
            k = int(np.flatnonzero(ilabel != olabel)[0])
            raise ValueError(f"den graph must be an acceptor: arc {k} has ilabel "
                             f"{int(ilabel[k])} != olabel {int(olabel[k])}")
        if int(fst.start) < 0:
            raise ValueError("den graph FST is empty (no start state)")
        return cls(fst.num_states, num_pdfs, int(fst.start), fst.arc_src, fst.arc_dst,
                   ilabel - 1, fst.arc_weight, final=fst.final, device=device)

    # -- tensors ----------------------------------------------------------------------
    def to(self, device) -> "DenominatorGraph":
        """A graph whose default device is ``device`` (tensors are made lazily
        and cached; the numpy arrays are shared)."""
        new = object.__new__(DenominatorGraph)
        new.__dict__.update(self.__dict__)
        new.device = torch.device(device)
        new._cache = self._cache  # shared cache keyed by device
        new.tensors(new.device)
        return new

    def tensors(self, device=None, dtype: torch.dtype = torch.float32) -> _GraphTensors:
        """Kernel tensors on ``device`` (default: the graph's) with value dtype
        ``dtype`` (float32 = Kaldi's values; float64 = the same values widened)."""
        device = torch.device(device) if device is not None else self.device
        key = (str(device), dtype)
        t = self._cache.get(key)
        if t is None:
            base = self._virtual()
            H, V = self.num_states, base["V"]
            prob = self.transitions_prob[:self.num_arcs].astype(np.float64)
            vid, src = base["vid"], self.arc_src
            t = _GraphTensors(
                M=_csr(vid, src, prob, (V, H), device),
                MT=_csr(src, vid, prob, (H, V), device),
                v_dst=torch.as_tensor(base["v_dst"], dtype=torch.long, device=device),
                v_pdf=torch.as_tensor(base["v_pdf"], dtype=torch.long, device=device),
                init=torch.as_tensor(self.initial_probs, device=device).to(dtype))
            self._cache[key] = t
        return t

    def _virtual(self):
        v = self.__dict__.get("_virtual_cache")
        if v is None:
            D = self.num_pdfs
            key = self.arc_dst * D + self.arc_pdf
            uniq, vid = np.unique(key, return_inverse=True)
            v = dict(V=int(uniq.size), vid=vid.astype(np.int64), v_dst=uniq // D,
                     v_pdf=uniq % D)
            self._virtual_cache = v
        return v

    def __repr__(self) -> str:
        return (f"DenominatorGraph(num_states={self.num_states}, num_arcs={self.num_arcs}, "
                f"num_pdfs={self.num_pdfs}, start={self.start})")

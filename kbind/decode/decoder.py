"""Lattice-generating decoding over an HCLG (Kaldi's ``latgen-faster``).

The search runs in C (``cbridge/decoder.c``, :c:func:`kb_decode_lattice_faster`):
Kaldi's ``LatticeFasterDecoder`` with its beam / max-active / min-active
cutoffs (``GetCutoff``, adaptive beam with ``beam_delta``), epsilon closure,
periodic lattice pruning (``PruneActiveTokens`` every ``prune_interval``
frames with delta ``lattice_beam * prune_scale``) and ``FinalizeDecoding``
(final-probs used when any state is final, else every last-frame state
counts as final with cost 0). The raw lattice is Kaldi's ``GetRawLattice``
followed by ``fst::Connect``; the best path is the raw lattice's shortest
path (``GetBestPath`` + ``GetLinearSymbolSequence``).

Acoustic scale and costs -- what ``latgen-faster`` writes, and what we return:

* the decodable gives ``acoustic_scale * loglike[t, tid2pdf[tid]]``
  (float * float, ``DecodableMatrixScaledMapped``), so inside the decoder
  and in ``GetRawLattice`` the acoustic cost of an arc is the SCALED
  ``-acoustic_scale * loglike``; pruning (``beam``, ``lattice_beam``) and
  determinization work on these scaled costs;
* before writing, ``DecodeUtteranceLatticeFaster`` applies
  ``ScaleLattice(AcousticLatticeScale(1.0 / acoustic_scale))`` (double
  arithmetic, rounded to float), to the compact lattice after
  determinization or to the raw lattice when ``--determinize-lattice=false``:
  the lattices in the archive hold UNSCALED acoustic costs (``-loglike``)
  and lattice tools take ``--acoustic-scale`` again. :class:`DecodeResult`'s
  ``lattice`` and ``compact_lattice`` are exactly that (unscaled);
* the best path's ``graph_cost`` / ``acoustic_cost_scaled`` are the decoder's
  (float sums along the path; ``likelihood = -(graph_cost +
  acoustic_cost_scaled)`` is what Kaldi logs as the utterance's log-like),
  ``acoustic_cost`` is the unscaled one (same 1/acoustic_scale rounding as
  the lattice).

Determinization: latgen-faster's ``DeterminizeLatticePhonePrunedWrapper``
at ``lattice_beam`` on the raw lattice with scaled costs, in C
(:func:`kbind.decode.lattice_ops.determinize_lattice_pruned`), with the
phone pass when the decoder was given a TransitionModel (a bare ``tid2pdf``
table has no phones: word-level pass only).

Parallel decoding: cffi releases the GIL around every C call (API mode, the
default for all functions), so :meth:`LatticeDecoder.decode_batch` runs
utterances on a thread pool sharing one read-only C graph; search and
determinization run in C, only building the lattice objects holds the GIL.
The C graph is a copy of the HCLG's arrays: changing them after building the
decoder does not change (or break) it.

Errors: bad input -- NaN or +inf log-likelihoods (a diverged model), too few
columns, a malformed graph -- raises ValueError; :class:`DecodeFailure` is
only what latgen-faster counts as a failed utterance (no surviving token,
zero frames, no final state reached with ``allow_partial=False``).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .. import _native
from ..compact_fst import CompactFst
from ..io.lattice import CompactLattice, Lattice, acoustic_lattice_scale

__all__ = ["DecoderOptions", "DecodeResult", "DecodeFailure", "LatticeDecoder",
           "write_lattices"]


class DecodeFailure(RuntimeError):
    """No lattice for an utterance whose input is valid (no surviving token,
    zero frames, or no final state reached with ``allow_partial=False``), as
    latgen-faster's warnings. Bad input raises ValueError instead."""


@dataclass
class DecoderOptions:
    """``LatticeFasterDecoderConfig`` plus the decodable's acoustic scale.

    Defaults: the values of Kaldi's decoding scripts (``steps/decode.sh``
    passes ``--beam 13 --max-active 7000 --lattice-beam`` and
    ``--acoustic-scale 0.1``); the others are LatticeFasterDecoderConfig's.
    """
    beam: float = 13.0
    lattice_beam: float = 8.0
    max_active: int = 7000
    min_active: int = 200
    acoustic_scale: float = 0.1
    prune_interval: int = 25
    determinize_lattice: bool = True
    beam_delta: float = 0.5
    hash_ratio: float = 2.0
    prune_scale: float = 0.1
    allow_partial: bool = False

    def check(self) -> None:
        if not (self.beam > 0 and self.lattice_beam > 0 and self.max_active > 1
                and 0 <= self.min_active <= self.max_active and self.prune_interval > 0
                and self.beam_delta > 0 and self.hash_ratio >= 1.0
                and 0 < self.prune_scale < 1):
            raise ValueError(f"invalid decoder options: {self}")
        if not (self.acoustic_scale > 0):
            raise ValueError("acoustic_scale must be > 0")


@dataclass
class DecodeResult:
    words: List[int]
    alignment: List[int]
    graph_cost: float
    acoustic_cost: float            # unscaled (-sum loglike), see module docstring
    acoustic_cost_scaled: float     # as the decoder holds it
    num_frames: int
    reached_final: bool
    final_relative_cost: float
    lattice: Lattice                # raw state-level lattice, unscaled acoustic costs
    compact_lattice: Optional[CompactLattice] = None  # determinized, unscaled

    @property
    def cost(self) -> float:
        """The decoder's objective: graph_cost + acoustic_scale * acoustic."""
        return float(np.float32(self.graph_cost) + np.float32(self.acoustic_cost_scaled))

    @property
    def likelihood(self) -> float:
        """What Kaldi logs as the utterance's log-like (``-(w1 + w2)``)."""
        return -self.cost


def _tid2pdf_tensor(trans_model_or_tid2pdf) -> torch.Tensor:
    t2p = getattr(trans_model_or_tid2pdf, "tid2pdf", trans_model_or_tid2pdf)
    arr = _native.as_c_array(np.asarray(t2p).reshape(-1), torch.int32, "tid2pdf").clone()
    if arr.numel() < 1:
        raise ValueError("tid2pdf must have an entry for transition-id 0 (unused)")
    if arr.numel() > 1 and int(arr[1:].min()) < 0:
        tid = int(torch.nonzero(arr[1:] < 0)[0]) + 1
        raise ValueError(f"transition-id {tid} has no pdf-id ({int(arr[tid])})")
    arr[0] = 0
    return arr


def _utterance_error(e: Exception, index: int, key) -> Exception:
    """``e`` again (same type) with the utterance named in front."""
    where = f"utterance {index}" + ("" if key is None else f" ({key})")
    return type(e)(f"{where}: {e}")


class LatticeDecoder:
    """Decoder over one HCLG (``Fst`` or ``CompactFst``) for one transition
    model (or a ``tid2pdf`` table, index 0 unused).

    The C graph handle is created once (from a copy of the graph's arrays)
    and shared by all threads of :meth:`decode_batch`; it is freed by
    :meth:`close` (or ``with``, or garbage collection); ``close`` waits for
    searches running in other threads, and later ones raise RuntimeError.
    Graph arrays are
    narrowed to int32 / float32 checked (ValueError for a value that does
    not fit) and must agree in length (ValueError naming the array)."""

    def __init__(self, hclg, trans_model_or_tid2pdf, opts: Optional[DecoderOptions] = None):
        self.opts = opts or DecoderOptions()
        self.opts.check()
        self.tid2pdf = _tid2pdf_tensor(trans_model_or_tid2pdf)
        from .lattice_ops import phone_start_map
        # tid -> phone it starts, for the phone pass of determinization (None
        # for a bare tid2pdf table)
        self._phone_map = (phone_start_map(trans_model_or_tid2pdf)
                           if hasattr(trans_model_or_tid2pdf, "tid2phone") else None)
        self.num_tids = int(self.tid2pdf.numel()) - 1
        self.num_pdfs = int(self.tid2pdf[1:].max()) + 1 if self.num_tids else 0
        self.num_states, self.start = int(hclg.num_states), int(hclg.start)
        if self.start < 0 or self.num_states == 0:
            raise ValueError("the decoding graph is empty")
        offsets = hclg.out_offsets if isinstance(hclg, CompactFst) else hclg.state_offsets
        arr = _native.as_c_array
        final = arr(hclg.final, torch.float32, "final")
        dst = arr(hclg.arc_dst, torch.int32, "arc_dst")
        ilabel = arr(hclg.arc_ilabel, torch.int32, "arc_ilabel")
        olabel = arr(hclg.arc_olabel, torch.int32, "arc_olabel")
        weight = arr(hclg.arc_weight, torch.float32, "arc_weight")
        offsets = arr(offsets, torch.int64, "state_offsets")
        S, P = self.num_states, _native.ptr
        offsets_p = P(offsets, S + 1, "state_offsets")
        A = int(offsets[-1])  # the arcs as the offsets count them: every arc array has A
        h = torch.zeros(1, dtype=torch.int64)
        self._handle, self._in_flight, self._searches = 0, 0, threading.Condition()
        try:
            _native.call("kb_decoder_graph_new", S, A, self.start, P(final, S, "final"),
                         P(dst, A, "arc_dst"), P(ilabel, A, "arc_ilabel"),
                         P(olabel, A, "arc_olabel"), P(weight, A, "arc_weight"),
                         offsets_p, P(self.tid2pdf, self.num_tids + 1, "tid2pdf"), self.num_tids,
                         P(h, 1, "handle"))
        except _native.NativeError as e:
            raise ValueError(f"invalid decoding graph: {e}") from None
        self._handle = int(h[0])

    # -- lifetime -----------------------------------------------------------------
    def close(self) -> None:
        searches = getattr(self, "_searches", None)
        if searches is None:          # __init__ failed before the handle existed
            return
        with searches:
            h, self._handle = self._handle, 0
            while self._in_flight:    # the C graph is in use by another thread's search
                searches.wait()
        if h and _native.available():
            _native.call("kb_decoder_graph_free", h)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- decoding -------------------------------------------------------------------
    def _loglikes(self, loglikes) -> torch.Tensor:
        x = _native.as_c_array(loglikes, torch.float32, "loglikes")
        if x.dim() != 2:
            raise ValueError(f"loglikes must be (T, D), got shape {tuple(x.shape)}")
        if x.shape[1] < self.num_pdfs:
            raise ValueError(f"loglikes have {x.shape[1]} columns but the transition model "
                             f"has {self.num_pdfs} pdfs")
        return x

    def decode_raw(self, loglikes):
        """The C search only: (alignment, words, graph_cost, scaled acoustic
        cost, final_relative_cost, reached_final, raw Lattice with SCALED
        acoustic costs). Errors as :meth:`decode`."""
        x = self._loglikes(loglikes)
        T, D = (int(v) for v in x.shape)
        o, P = self.opts, _native.ptr
        res = torch.zeros(1, dtype=torch.int64)
        sizes = torch.zeros(8, dtype=torch.int64)
        with self._searches:
            if not self._handle:
                raise RuntimeError("decoder is closed")
            graph = self._handle
            self._in_flight += 1
        try:
            _native.call("kb_decode_lattice_faster", graph, P(x, T * D, "loglikes"), T, D,
                         float(o.acoustic_scale), float(o.beam), int(o.max_active),
                         int(o.min_active), float(o.lattice_beam), int(o.prune_interval),
                         float(o.beam_delta), float(o.hash_ratio), float(o.prune_scale),
                         P(res, 1, "result"), P(sizes, 8, "sizes"))
        except _native.NativeError as e:
            if e.code == _native.KB_ENOPATH:
                raise DecodeFailure(str(e)) from None
            if e.code == _native.KB_ENOMEM:
                raise MemoryError(f"decoding: {e}") from None
            raise ValueError(str(e)) from None
        finally:
            with self._searches:
                self._in_flight -= 1
                self._searches.notify_all()
        handle = int(res[0])
        try:
            T, nw, ns, na, reached = (int(v) for v in sizes[:5])
            ali = torch.empty(T, dtype=torch.int32)
            words = torch.empty(nw, dtype=torch.int32)
            costs = torch.empty(3, dtype=torch.float32)
            src = torch.empty(na, dtype=torch.int32)
            dst = torch.empty(na, dtype=torch.int32)
            il = torch.empty(na, dtype=torch.int32)
            ol = torch.empty(na, dtype=torch.int32)
            w = torch.empty((na, 2), dtype=torch.float32)
            fin = torch.empty((ns, 2), dtype=torch.float32)
            _native.call("kb_decode_result_copy", handle, T, nw, ns, na, P(ali, T, "alignment"),
                         P(words, nw, "words"), P(costs, 3, "costs"), P(src, na, "lat_src"),
                         P(dst, na, "lat_dst"), P(il, na, "lat_ilabel"),
                         P(ol, na, "lat_olabel"), P(w, 2 * na, "lat_weight"),
                         P(fin, 2 * ns, "lat_final"))
        finally:
            _native.call("kb_decode_result_free", handle)
        lat = Lattice(ns, 0, fin.numpy(), src.numpy(), dst.numpy(), il.numpy(), ol.numpy(),
                      w.numpy())
        c = costs.tolist()
        return (ali.tolist(), words.tolist(), c[0], c[1], c[2], bool(reached), lat)

    def decode(self, loglikes) -> DecodeResult:
        """Decode one utterance (``loglikes``: (T, num_pdfs) tensor of
        log-likelihoods, column = pdf-id). Raises :class:`DecodeFailure` as
        latgen-faster fails an utterance (no surviving token, zero frames,
        no final state reached without ``allow_partial``), ValueError on bad
        input (NaN or +inf log-likelihoods, too few columns, not (T, D)) and
        MemoryError when the C core runs out of memory."""
        o = self.opts
        ali, words, g, a_scaled, frc, reached, lat = self.decode_raw(loglikes)
        if not reached and not o.allow_partial:
            raise DecodeFailure("no final state reached (allow_partial=False)")
        inv = acoustic_lattice_scale(1.0 / float(np.float32(o.acoustic_scale)))
        clat = None
        if o.determinize_lattice:
            from .lattice_ops import determinize_lattice_pruned
            clat = determinize_lattice_pruned(lat, o.lattice_beam,
                                              trans_model=self._phone_map).scale(inv)
        lat_out = lat.scale(inv)
        a_unscaled = float(np.float32(np.float64(a_scaled) * inv[1][1]))
        return DecodeResult(words=words, alignment=ali, graph_cost=g, acoustic_cost=a_unscaled,
                            acoustic_cost_scaled=a_scaled, num_frames=len(ali),
                            reached_final=reached, final_relative_cost=frc, lattice=lat_out,
                            compact_lattice=clat)

    def decode_batch(self, utterances: Union[Sequence, Mapping], num_workers: int = 1,
                     on_error: str = "raise") -> List[Optional[DecodeResult]]:
        """Decode several utterances on ``num_workers`` threads (the C search
        runs without the GIL); results in input order.

        ``utterances``: log-likelihood matrices, ``(key, loglikes)`` pairs
        (``key`` a str), or a dict ``{key: loglikes}`` (results in its
        order). ``on_error``: ``"raise"`` (the first failure raises) or
        ``"none"`` (an utterance that fails to decode, :class:`DecodeFailure`,
        gives None, as latgen-faster counts it and goes on). Bad input
        (ValueError: NaN or +inf log-likelihoods from a diverged model, too
        few columns) raises in both modes. An error raised has the type
        :meth:`decode` gave it and a message that starts with the utterance:
        ``utterance 3 (utt-key): ...``.

        >>> results = decoder.decode_batch({"utt1": ll1, "utt2": ll2}, num_workers=4)
        """
        if on_error not in ("raise", "none"):
            raise ValueError("on_error must be 'raise' or 'none'")
        if isinstance(utterances, Mapping):
            items = list(utterances.items())
        else:
            items = [u if isinstance(u, tuple) and len(u) == 2 and isinstance(u[0], str)
                     else (None, u) for u in utterances]

        def one(index):
            key, x = items[index]
            try:
                return self.decode(x)
            except DecodeFailure as e:
                if on_error == "none":
                    return None
                raise _utterance_error(e, index, key) from e
            except (ValueError, TypeError, MemoryError) as e:
                raise _utterance_error(e, index, key) from e

        if num_workers <= 1 or len(items) <= 1:
            return [one(i) for i in range(len(items))]
        with ThreadPoolExecutor(max_workers=num_workers) as ex:
            return list(ex.map(one, range(len(items))))


def write_lattices(wspecifier: str, results: Union[dict, Iterable[Tuple[str, DecodeResult]]],
                   compact: Optional[bool] = None) -> None:
    """Write the lattices of ``results`` ({key: DecodeResult} or (key,
    result) pairs; None results are skipped) as Kaldi does: the compact
    (determinized) lattice with kind ``compact_lattice`` when present (or
    ``compact=True``), else the raw lattice with kind ``lattice``."""
    from ..io import write_table
    pairs = list(results.items()) if isinstance(results, dict) else list(results)
    pairs = [(k, r) for k, r in pairs if r is not None]
    if compact is None:
        compact = bool(pairs) and all(r.compact_lattice is not None for _, r in pairs)
    kind = "compact_lattice" if compact else "lattice"
    with write_table(wspecifier, kind) as w:
        for k, r in pairs:
            if compact:
                if r.compact_lattice is None:
                    raise ValueError(f"{k}: no compact lattice (determinize_lattice=False)")
                w.write(k, r.compact_lattice)
            else:
                w.write(k, r.lattice)

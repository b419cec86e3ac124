"""Alignment conversions: Kaldi's ``ali-to-pdf``, ``ali-to-phones`` and
``SplitToPhones``.

An alignment is a sequence of transition-ids, one per frame. Kaldi
alignments are normally *reordered*: within an HMM state the forward
transition comes first and the self-loops after it (``fwd loop loop``);
non-reordered alignments have the self-loops first (``loop loop fwd``).
:func:`split_to_phones` detects which (Kaldi ``IsReordered``) and splits the
sequence into phones: a phone ends at a transition into the final state of its
HMM (``is_final``), extended, for reordered alignments, over the self-loops
that follow it.
"""

from __future__ import annotations

from typing import List

import numpy as np

from .transition_model import TransitionModel

__all__ = ["ali_to_pdf", "ali_to_phones", "split_to_phones", "is_reordered"]


def _as_ali(tm: TransitionModel, ali) -> np.ndarray:
    arr = np.asarray(ali)
    if arr.ndim != 1:
        raise ValueError(f"alignment must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"alignment must hold integer transition-ids, got {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size:
        bad = np.nonzero((arr < 1) | (arr > tm.num_transition_ids))[0]
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"alignment position {i}: transition-id {int(arr[i])} out of "
                             f"range [1, {tm.num_transition_ids}]")
    return arr


def ali_to_pdf(tm: TransitionModel, ali) -> np.ndarray:
    """Kaldi ``ali-to-pdf``: the 0-based pdf-id of every frame (int32)."""
    arr = _as_ali(tm, ali)
    return tm.tid2pdf[arr].astype(np.int32)


def is_reordered(tm: TransitionModel, ali) -> bool:
    """Kaldi ``IsReordered``: True if self-loops come after the forward
    transition of each HMM state."""
    arr = _as_ali(tm, ali)
    if arr.size == 0:
        return False
    ts = tm.tid2state[arr]
    loop = tm.tid_is_self_loop[arr]
    change = np.nonzero(ts[:-1] != ts[1:])[0]
    for i in change.tolist():
        if loop[i] and loop[i + 1]:
            raise ValueError(f"alignment position {i}: two consecutive self-loops of "
                             "different transition-states (invalid alignment)")
        if loop[i]:
            return True
        if loop[i + 1]:
            return False
    if loop[0]:
        return False
    if loop[-1]:
        return True
    return False


def split_to_phones(tm: TransitionModel, ali, strict: bool = True) -> List[np.ndarray]:
    """Kaldi ``SplitToPhones``: the alignment cut into per-phone pieces.

    With ``strict`` (default) an inconsistent alignment (a phone that does not
    end in its final state, a phone change inside an HMM, a phone that does
    not start in HMM state 0) raises ValueError naming the frame position;
    with ``strict=False`` the pieces Kaldi would produce are returned anyway
    (Kaldi's ``ali-to-phones`` ignores the error flag).
    """
    arr = _as_ali(tm, ali)
    if arr.size == 0:
        return []
    ends = _phone_ends(tm, arr, strict)
    return np.split(arr.astype(np.int32), ends[:-1])


def _phone_ends(tm: TransitionModel, arr: np.ndarray, strict: bool) -> np.ndarray:
    """End positions (exclusive) of the phones of a non-empty alignment."""
    reordered = is_reordered(tm, arr)
    ends = _ends_fast(tm, arr, reordered)
    if ends is None:
        ends = _ends_loop(tm, arr, reordered, strict)
    return ends


def _ends_fast(tm: TransitionModel, arr: np.ndarray, reordered: bool):
    """Vectorised SplitToPhones for consistent alignments: the phone end
    positions, or None if the alignment needs the exact (error-reporting) loop."""
    n = arr.size
    final = tm.tid_is_final[arr]
    fin = np.nonzero(final)[0]
    if fin.size == 0:
        return None
    ts = tm.tid2state[arr]
    if reordered:
        loop = tm.tid_is_self_loop[arr]
        idx = np.where(loop, n, np.arange(n))
        next_nonloop = np.minimum.accumulate(idx[::-1])[::-1]
        nxt = np.append(next_nonloop, n)
        ends = nxt[fin + 1]
        # the self-loops absorbed after each final transition must belong to
        # its transition-state: ts constant over [fin, ends)
        mark = np.zeros(n + 1, np.int64)
        np.add.at(mark, fin + 1, 1)
        np.add.at(mark, ends, -1)
        inside = np.cumsum(mark[:n]) > 0  # absorbed positions
        if inside.any():
            pos = np.nonzero(inside)[0]
            if np.any(ts[pos] != ts[pos - 1]):
                return None
    else:
        ends = fin + 1
    if ends[-1] != n:
        return None
    phone = tm.tid2phone[arr]
    change = np.nonzero(phone[:-1] != phone[1:])[0] + 1  # first frame of a new phone
    if not np.all(np.isin(change, ends)):
        return None
    starts = np.concatenate(([0], ends[:-1]))
    if np.any(starts >= ends):
        return None
    first_emitting = _first_state_emitting(tm)
    hs = tm.tid2hmm_state[arr[starts]]
    if np.any(first_emitting[phone[starts]] & (hs != 0)):
        return None
    return ends


def _first_state_emitting(tm: TransitionModel) -> np.ndarray:
    cached = getattr(tm, "_first_state_emitting", None)
    if cached is None:
        cached = np.zeros(max(tm.topo.phones) + 1, bool)
        for p in tm.topo.phones:
            cached[p] = tm.topo.topology_for_phone(p)[0].forward_pdf_class != -1
        tm._first_state_emitting = cached
    return cached


def _ends_loop(tm: TransitionModel, arr: np.ndarray, reordered: bool,
               strict: bool) -> np.ndarray:
    """Line-by-line port of Kaldi's SplitToPhonesInternal."""
    n = int(arr.size)
    ts = tm.tid2state[arr].tolist()
    final = tm.tid_is_final[arr].tolist()
    loop = tm.tid_is_self_loop[arr].tolist()
    phone = tm.tid2phone[arr].tolist()
    ends: List[int] = []
    errors: List[str] = []
    i = 0
    while i < n:
        if final[i]:
            if reordered:
                while i + 1 < n and loop[i + 1]:
                    if ts[i] != ts[i + 1]:
                        raise ValueError(
                            f"alignment position {i + 1}: self-loop of transition-state "
                            f"{ts[i + 1]} follows transition-state {ts[i]} (invalid "
                            "reordered alignment)")
                    i += 1
            ends.append(i + 1)
        elif i + 1 == n:
            errors.append(f"alignment position {i}: alignment ends inside phone {phone[i]} "
                          f"(transition-id {int(arr[i])} does not reach the final state)")
            ends.append(i + 1)
        elif ts[i] != ts[i + 1] and phone[i] != phone[i + 1]:
            errors.append(f"alignment position {i + 1}: phone changes from {phone[i]} to "
                          f"{phone[i + 1]} without reaching the final state of {phone[i]}")
            ends.append(i + 1)
        i += 1
    cur = 0
    hmm_state = tm.tid2hmm_state[arr]
    for e in ends:
        p = phone[cur]
        if tm.topo.topology_for_phone(p)[0].forward_pdf_class != -1 and hmm_state[cur] != 0:
            errors.append(f"alignment position {cur}: phone {p} starts in HMM state "
                          f"{int(hmm_state[cur])}, not 0")
        cur = e
    if errors and strict:
        raise ValueError("inconsistent alignment: " + "; ".join(errors[:3])
                         + (f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""))
    return np.asarray(ends, dtype=np.int64)


def ali_to_phones(tm: TransitionModel, ali, per_frame: bool = False,
                  write_lengths: bool = False, strict: bool = True):
    """Kaldi ``ali-to-phones``.

    Returns the phone sequence (int32 array); with ``per_frame`` the phone of
    every frame; with ``write_lengths`` a list of ``(phone, num_frames)``
    pairs (``ali-to-phones --write-lengths``).
    """
    if per_frame and write_lengths:
        raise ValueError("per_frame and write_lengths cannot both be set")
    arr = _as_ali(tm, ali)
    if arr.size == 0:
        return [] if write_lengths else np.zeros(0, np.int32)
    ends = _phone_ends(tm, arr, strict)
    starts = np.concatenate(([0], ends[:-1]))
    phones = tm.tid2phone[arr[starts]].astype(np.int32)
    lengths = ends - starts
    if write_lengths:
        return list(zip(phones.tolist(), lengths.tolist()))
    if per_frame:
        return np.repeat(phones, lengths).astype(np.int32)
    return phones

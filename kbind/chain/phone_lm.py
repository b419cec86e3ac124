"""Phone language model estimation as Kaldi's ``chain-est-phone-lm``
(``LanguageModelEstimator`` in chain/language-model.cc).

Unsmoothed n-gram counts with "hard backoff" pruning: LM states are keyed by
their exact history; states with history length >= ``no_prune_ngram_order``
have a backoff state (history minus the leftmost phone). Pruning merges
states into their backoff state in order of least log-likelihood loss
(four passes with intermediate targets, a max-priority queue of
``(float change, state index)`` exactly like ``std::priority_queue``,
stale entries re-queued), until ``#basic states + num_extra_lm_states``
states remain. The FST has one state per LM state with non-zero count (in
creation order), arcs ``phone:phone`` with cost ``-log(c/N)`` to the most
specific existing state of ``history + [phone]``, final cost from the
end-of-sentence count, then ``Connect`` and arc-sorting.
"""

from __future__ import annotations

import heapq
import math
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np

from kbind.io.fst import Fst

__all__ = ["PhoneLmEstimator", "estimate_phone_lm", "read_phone_sequences"]


def _approx_equal(a: np.float32, b: np.float32, rel: float = 0.001) -> bool:
    """Kaldi ``ApproxEqual(float, float)``."""
    if a == b:
        return True
    diff = np.float32(abs(np.float32(a) - np.float32(b)))
    if not np.isfinite(diff):
        return False
    return bool(diff <= np.float32(rel) * (np.float32(abs(a)) + np.float32(abs(b))))


class _LmState:
    __slots__ = ("history", "phone_to_count", "tot_count", "tot_count_with_parents",
                 "backoff_lmstate_index", "fst_state", "backoff_allowed")

    def __init__(self, history: Tuple[int, ...]):
        self.history = history
        self.phone_to_count: Dict[int, int] = {}
        self.tot_count = 0
        self.tot_count_with_parents = 0
        self.backoff_lmstate_index = -1
        self.fst_state = -1
        self.backoff_allowed = False

    def add_count(self, phone: int, count: int) -> None:
        self.phone_to_count[phone] = self.phone_to_count.get(phone, 0) + count
        self.tot_count += count

    def add(self, other: "_LmState") -> None:
        for p in sorted(other.phone_to_count):
            self.add_count(p, other.phone_to_count[p])

    def clear(self) -> None:
        self.phone_to_count = {}
        self.tot_count = 0
        self.tot_count_with_parents = 0
        self.backoff_allowed = False

    def log_like(self) -> np.float32:
        ans = 0.0
        tot = 0
        for p in sorted(self.phone_to_count):
            c = self.phone_to_count[p]
            tot += c
            ans += math.log(c * 1.0 / self.tot_count) * c
        assert tot == self.tot_count
        return np.float32(ans)


class PhoneLmEstimator:
    """Kaldi ``LanguageModelEstimator``: call :meth:`add_counts` per sentence,
    then :meth:`estimate`."""

    def __init__(self, ngram_order: int = 4, no_prune_ngram_order: int = 3,
                 num_extra_lm_states: int = 1000):
        if ngram_order < 2:
            raise ValueError("--ngram-order must be >= 2")
        if ngram_order < no_prune_ngram_order:
            raise ValueError("need ngram_order >= no_prune_ngram_order")
        self.ngram_order = int(ngram_order)
        self.no_prune_ngram_order = int(no_prune_ngram_order)
        self.num_extra_lm_states = int(num_extra_lm_states)
        self.lm_states: List[_LmState] = []
        self.hist_to_index: Dict[Tuple[int, ...], int] = {}
        self.num_active_lm_states = 0
        self.num_basic_lm_states = 0
        self._queue: List[Tuple[float, int]] = []  # heap of (-change, -index)

    # -- counting ------------------------------------------------------------------
    def add_counts(self, sentence: Sequence[int]) -> None:
        history: List[int] = [0]
        for p in sentence:
            p = int(p)
            if p == 0:
                raise ValueError("phone 0 is not allowed in the phone sequences")
            self._increment_count(tuple(history), p)
            history.append(p)
            if len(history) >= self.ngram_order:
                del history[0]
        self._increment_count(tuple(history), 0)

    def _increment_count(self, history: Tuple[int, ...], phone: int) -> None:
        idx = self._find_or_create(history)
        st = self.lm_states[idx]
        if st.tot_count == 0:
            self.num_active_lm_states += 1
        st.add_count(phone, 1)

    def _find_or_create(self, hist: Tuple[int, ...]) -> int:
        idx = self.hist_to_index.get(hist)
        if idx is not None:
            return idx
        ans = len(self.lm_states)
        self.lm_states.append(_LmState(hist))
        self.hist_to_index[hist] = ans
        if len(hist) >= self.no_prune_ngram_order:
            b = self._find_or_create(hist[1:])
            self.lm_states[ans].backoff_lmstate_index = b
        return ans

    def _find_nonzero(self, hist: Tuple[int, ...]) -> int:
        while True:
            idx = self.hist_to_index.get(hist, -1)
            if idx == -1 or self.lm_states[idx].tot_count == 0:
                if not hist:
                    raise RuntimeError("Error looking up LM state index for history")
                hist = hist[1:]
            else:
                return idx

    # -- pruning -------------------------------------------------------------------
    def _set_parent_counts(self) -> None:
        for l in range(len(self.lm_states)):
            c = self.lm_states[l].tot_count
            it = l
            while it != -1:
                self.lm_states[it].tot_count_with_parents += c
                it = self.lm_states[it].backoff_lmstate_index

    def _check_active_states(self) -> int:
        active = sum(1 for st in self.lm_states if st.tot_count != 0)
        assert active == self.num_active_lm_states
        return sum(1 for st in self.lm_states
                   if len(st.history) == self.no_prune_ngram_order - 1)

    def _backoff_allowed(self, l: int) -> bool:
        st = self.lm_states[l]
        if len(st.history) < self.no_prune_ngram_order:
            return False
        if st.tot_count != st.tot_count_with_parents:
            return False
        if st.tot_count == 0:
            return False
        if len(st.history) == self.ngram_order - 1:
            return True
        for p in st.phone_to_count:
            if p != 0:
                nl = self.hist_to_index.get(st.history + (p,), -1)
                if nl != -1 and self.lm_states[nl].tot_count_with_parents != 0:
                    return False
        return True

    def _backoff_like_change(self, l: int) -> np.float32:
        st = self.lm_states[l]
        assert st.backoff_allowed and st.backoff_lmstate_index >= 0
        b = self.lm_states[st.backoff_lmstate_index]
        assert st.tot_count != 0
        if b.tot_count == 0:
            return np.float32(-1.0e-15 * st.tot_count)
        sum_state = _LmState(b.history)
        sum_state.add(b)
        sum_state.add(st)
        change = np.float32(np.float32(sum_state.log_like() - st.log_like()) - b.log_like())
        assert change < 0.1
        if change > 0.0:
            change = np.float32(0.0)
        return change

    def _push(self, change: np.float32, l: int) -> None:
        heapq.heappush(self._queue, (-float(change), -l))

    def _initialize_queue(self) -> None:
        self._queue = []
        for l in range(len(self.lm_states)):
            st = self.lm_states[l]
            st.backoff_allowed = self._backoff_allowed(l)
            if st.backoff_allowed:
                self._push(self._backoff_like_change(l), l)

    def _back_off_state(self, l: int) -> None:
        st = self.lm_states[l]
        assert st.backoff_allowed and st.backoff_lmstate_index >= 0 and st.tot_count > 0
        bi = st.backoff_lmstate_index
        b = self.lm_states[bi]
        had_allowed = b.backoff_allowed
        if b.tot_count != 0:
            self.num_active_lm_states -= 1
        b.add(st)
        st.clear()
        b.backoff_allowed = self._backoff_allowed(bi)
        if not had_allowed and b.backoff_allowed:
            self._push(self._backoff_like_change(bi), bi)

    def _do_backoff(self) -> None:
        initial = self.num_active_lm_states
        target = self.num_basic_lm_states + self.num_extra_lm_states
        num_targets = 4
        targets = []
        for t in range(num_targets):
            num = (target - initial) * (t + 1)
            targets.append(initial + int(num / num_targets))  # C++ truncation
        assert targets[-1] == target
        for t in range(num_targets):
            self._initialize_queue()
            this_target = targets[t]
            while self.num_active_lm_states > this_target and self._queue:
                negc, negl = heapq.heappop(self._queue)
                change = np.float32(-negc)
                l = -negl
                recomputed = self._backoff_like_change(l)
                if not _approx_equal(change, recomputed):
                    self._push(recomputed, l)
                else:
                    self._back_off_state(l)

    # -- output --------------------------------------------------------------------
    def estimate(self) -> Fst:
        self._set_parent_counts()
        self.num_basic_lm_states = self._check_active_states()
        self._do_backoff()
        self._check_active_states()
        k = 0
        for st in self.lm_states:
            if st.tot_count != 0:
                st.fst_state = k
                k += 1
        assert k == self.num_active_lm_states
        return self._output_to_fst(k)

    def _output_to_fst(self, num_states: int) -> Fst:
        from .den_fst import VFst, arc_sort_ilabel, connect
        f = VFst()
        for _ in range(num_states):
            f.add_state()
        init = self._find_nonzero((0,))
        f.start = self.lm_states[init].fst_state
        for st in self.lm_states:
            if st.fst_state == -1:
                continue
            n = st.tot_count
            for p in sorted(st.phone_to_count):
                c = st.phone_to_count[p]
                logprob = np.float32(math.log(c * 1.0 / n))
                cost = float(-logprob)
                if p == 0:
                    f.final[st.fst_state] = cost
                else:
                    dest = self._find_nonzero(st.history + (p,))
                    ds = self.lm_states[dest].fst_state
                    assert ds != -1
                    f.add_arc(st.fst_state, p, p, cost, ds)
        g = connect(f)
        if g.num_states != num_states:
            raise RuntimeError("Connect removed states of the phone LM")
        arc_sort_ilabel(g)
        return g.to_fst()


def estimate_phone_lm(phone_seqs: Iterable[Sequence[int]], ngram_order: int = 4,
                      no_prune_ngram_order: int = 3, num_extra_lm_states: int = 1000) -> Fst:
    """``chain-est-phone-lm``: the phone LM FST (tropical acceptor over phone
    ids) estimated on ``phone_seqs`` (iterable of phone-id sequences)."""
    est = PhoneLmEstimator(ngram_order, no_prune_ngram_order, num_extra_lm_states)
    for seq in phone_seqs:
        est.add_counts([int(p) for p in seq])
    return est.estimate()


def read_phone_sequences(rspecifier_or_path: str) -> List[List[int]]:
    """Phone sequences from a Kaldi int-vector table (``ark:...``/``scp:...``,
    text or binary, read with :func:`kbind.io.table.read_table`) or, for a
    plain path, a text file with ``utt p1 p2 ...`` lines."""
    spec = str(rspecifier_or_path)
    if spec.split(":", 1)[0].split(",")[0] in ("ark", "scp") and ":" in spec:
        from kbind.io.table import read_table
        return [[int(x) for x in v] for _, v in read_table(spec, "int32_vector")]
    out = []
    with open(spec) as fh:
        for line in fh:
            toks = line.split()
            if toks:
                out.append([int(t) for t in toks[1:]])
    return out

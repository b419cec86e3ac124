"""Forced alignment with the current model: Kaldi's ``compile-train-graphs``
followed by ``align-compiled-mapped`` / ``nnet3-align-compiled``
(``AlignUtteranceWrapper``), with the Viterbi search in C
(:c:func:`kb_align_compiled`, ``cbridge/align.c``).

Scales -- what ends up on the graph, as in Kaldi:

* ``compile-train-graphs`` builds the graph with ``transition_scale = 0``
  and ``self_loop_scale = 0`` (it overrides TrainingGraphCompilerOptions'
  defaults "since we will generally add the transition probs in the
  alignment phase"): the graph carries only the lexicon's costs (silence
  and pronunciation probabilities). :meth:`ForcedAligner.compile` does the
  same through :class:`kbind.hmm.graph_compiler.TrainingGraphCompiler`.
* The aligner then applies ``AddTransitionProbs(trans_model, {},
  transition_scale, self_loop_scale)`` to every arc with a transition-id:
  ``weight += -s(tid)`` (float32), where ``s(tid)`` is Kaldi's
  ``GetScaledTransitionLogProb``: ``transition_scale * log p(tid)`` when the
  two scales are equal; otherwise ``self_loop_scale * log p(tid)`` for a
  self-loop and ``self_loop_scale * log(1 - p_loop(state)) +
  transition_scale * (log p(tid) - log(1 - p_loop(state)))`` for a forward
  transition (all float32, as Kaldi computes them). With the defaults (1.0,
  0.1) a forward transition costs ``-(log p - 0.9 log(1 - p_loop))`` and a
  self-loop ``-0.1 log p_loop``: the same total as a graph built with
  ``--transition-scale=1.0 --self-loop-scale=0.1`` directly (AddSelfLoops
  puts ``self_loop_scale * log(1 - p_loop)`` on the forward arcs).
  Graphs already carrying transition probabilities (e.g. made with
  non-zero scales) would get them twice: pass graphs from
  ``compile-train-graphs`` or :meth:`ForcedAligner.compile`.
* The acoustic cost of frame t on a transition-id is
  ``-(acoustic_scale * loglikes[t, pdf(tid)])`` (``DecodableMatrixScaledMapped``);
  ``loglikes`` are what the model gives for decoding (log-likelihoods or
  prior-normalised log-posteriors, or chain outputs with
  ``acoustic_scale=1.0``).
* ``careful`` applies ``ModifyGraphForCarefulAlignment`` (the graph
  concatenated with a copy of itself without final-probs: a "blind alley"
  after the final states, so that a search that eats the transcript too
  early fails instead of giving a bad alignment).

The reported ``loglike`` is Kaldi's logged ``-(graph + acoustic) /
acoustic_scale`` of the best path (float32; summed in double, so it may
differ from Kaldi's float sum in the last bits).

Threads: cffi releases the GIL around the C call, so :meth:`align_many`
aligns utterances in parallel on a thread pool.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .. import _native
from ..hmm.graph_compiler import TrainingGraphCompiler
from ..hmm.lang import Lang
from ..hmm.transition_model import TransitionModel
from ..hmm.tree import ContextDependency
from ..io.fst import Fst

__all__ = ["AlignOptions", "AlignResult", "AlignGraph", "ForcedAligner", "search",
           "MonophoneGraphCompiler",
           "scaled_transition_costs", "add_transition_probs", "careful_graph",
           "min_frames_needed"]

log = logging.getLogger("kbind.align")

INT32_MAX = 2 ** 31 - 1


@dataclass
class AlignOptions:
    """Kaldi's ``AlignConfig`` (beam, retry_beam, careful) plus the scales of
    ``align-compiled-mapped``. Defaults: Kaldi's alignment scripts
    (``steps/nnet3/align.sh``: ``--beam 10 --retry-beam 40``,
    ``--transition-scale 1.0 --self-loop-scale 0.1``); acoustic scale 1.0 as
    for chain models (GMM and CE scripts pass 0.1).

    ``max_active``, ``min_active``, ``beam_delta``, ``hash_ratio``:
    FasterDecoderOptions, which Kaldi's aligners leave at these defaults.
    """
    beam: float = 10.0
    retry_beam: float = 40.0
    careful: bool = False
    acoustic_scale: float = 1.0
    transition_scale: float = 1.0
    self_loop_scale: float = 0.1
    max_active: int = INT32_MAX
    min_active: int = 20
    beam_delta: float = 0.5
    hash_ratio: float = 2.0

    def check(self) -> None:
        if not (self.beam > 0) or not (self.retry_beam == 0 or self.retry_beam > self.beam):
            raise ValueError(f"beams do not make sense: beam {self.beam}, retry_beam "
                             f"{self.retry_beam} (need beam > 0 and retry_beam 0 or > beam)")
        if not (self.acoustic_scale > 0 and np.isfinite(self.acoustic_scale)):
            raise ValueError(f"acoustic_scale must be > 0, got {self.acoustic_scale}")
        if not (np.isfinite(self.transition_scale) and np.isfinite(self.self_loop_scale)):
            raise ValueError("transition_scale and self_loop_scale must be finite")
        if not (1 < self.max_active <= INT32_MAX and 0 <= self.min_active < self.max_active
                and self.hash_ratio >= 1 and self.beam_delta >= 0):
            raise ValueError(f"invalid FasterDecoder options in {self}")


@dataclass
class AlignResult:
    key: str
    alignment: Optional[np.ndarray]   # int32 transition-ids, one per frame; None on failure
    loglike: float                    # -(graph + acoustic) / acoustic_scale of the best path
    retried: bool
    error: Optional[str]              # why it failed; None on success
    num_frames: int = 0
    words: Optional[np.ndarray] = None  # int32 word ids on the best path
    graph_cost: float = 0.0           # graph cost of the best path (incl. final cost)
    acoustic_cost: float = 0.0        # scaled acoustic cost (acoustic_scale * -loglikes)

    @property
    def ok(self) -> bool:
        return self.alignment is not None


@dataclass
class AlignGraph:
    """A training graph ready for :meth:`ForcedAligner.align`: transition
    probabilities added at ``transition_scale`` / ``self_loop_scale`` and,
    if ``careful``, Kaldi's careful-alignment modification applied. ``fst``
    is the graph the search runs on; ``num_states`` / ``start`` as in it."""
    fst: Fst
    transition_scale: float
    self_loop_scale: float
    careful: bool
    words: Optional[Tuple[int, ...]] = None  # the transcript it was compiled from
    _arrays: Optional[tuple] = field(default=None, repr=False, compare=False)

    @property
    def num_states(self) -> int:
        return self.fst.num_states

    @property
    def start(self) -> int:
        return self.fst.start

    def arrays(self):
        """(final, out_offsets, dst, ilabel, olabel, weight) as contiguous
        CPU tensors sharing the Fst's memory when it has the C dtypes
        (values that do not fit them raise ValueError)."""
        if self._arrays is None:
            f, t = self.fst, _native.as_c_array
            self._arrays = (t(f.final, torch.float32, "final"),
                            t(f.state_offsets, torch.int64, "state_offsets"),
                            t(f.arc_dst, torch.int32, "arc_dst"),
                            t(f.arc_ilabel, torch.int32, "arc_ilabel"),
                            t(f.arc_olabel, torch.int32, "arc_olabel"),
                            t(f.arc_weight, torch.float32, "arc_weight"))
        return self._arrays

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_arrays"] = None
        return d


# -- graph preparation (Kaldi's AddTransitionProbs, ModifyGraphForCarefulAlignment) ------

def scaled_transition_costs(tm: TransitionModel, transition_scale: float,
                            self_loop_scale: float) -> np.ndarray:
    """``-GetScaledTransitionLogProb(tid)`` for every transition-id (float32,
    entry 0 = 0): the cost ``AddTransitionProbs`` adds to an arc."""
    lp = np.asarray(tm.log_probs, np.float32)
    ts, sls = np.float32(transition_scale), np.float32(self_loop_scale)
    if ts == sls:
        scaled = lp * ts
    else:
        nsl = np.asarray(tm.non_self_loop_log_probs, np.float32)[tm.tid2state]
        fwd = sls * nsl + ts * (lp - nsl)
        scaled = np.where(tm.tid_is_self_loop, sls * lp, fwd).astype(np.float32)
    out = (-scaled).astype(np.float32)
    out[0] = 0.0
    return out


def add_transition_probs(fst: Fst, tm: TransitionModel, transition_scale: float,
                         self_loop_scale: float) -> Fst:
    """Kaldi ``AddTransitionProbs`` with no disambiguation symbols: a new Fst
    whose arcs with a transition-id get ``-GetScaledTransitionLogProb``
    added to their weight (float32). Other nonzero input labels are an
    error, as in Kaldi."""
    il = fst.arc_ilabel
    bad = np.nonzero((il < 0) | (il > tm.num_transition_ids))[0]
    if bad.size:
        a = int(bad[0])
        raise ValueError(f"AddTransitionProbs: invalid symbol {int(il[a])} on the graph's "
                         f"input side (arc {a} from state {int(fst.arc_src[a])}; transition-ids "
                         f"are 1..{tm.num_transition_ids})")
    cost = scaled_transition_costs(tm, transition_scale, self_loop_scale)
    w = (fst.arc_weight.astype(np.float32) + cost[il]).astype(np.float32)
    return Fst(fst.num_states, fst.start, fst.final, fst.arc_src, fst.arc_dst, il,
               fst.arc_olabel, w)


def careful_graph(fst: Fst) -> Fst:
    """Kaldi ``ModifyGraphForCarefulAlignment``: ``Concat(fst, rhs)`` where
    rhs is a copy of fst without final-probs, entered through a new state
    ``pre_initial`` (final with cost 0, epsilon arc to the copy's start).
    States 0..N-1 keep their arcs and lose their final-probs, each former
    final state getting an epsilon arc (cost = its final cost) to
    pre_initial = 2N (appended after its arcs, as OpenFst's Concat adds it);
    N..2N-1 are the copy."""
    n = fst.num_states
    if n == 0 or fst.start < 0:
        return fst
    fin = np.nonzero(np.isfinite(fst.final))[0].astype(np.int32)
    pre = 2 * n
    src = np.concatenate([fst.arc_src, fin, fst.arc_src + n, [pre]]).astype(np.int32)
    dst = np.concatenate([fst.arc_dst, np.full(fin.size, pre), fst.arc_dst + n,
                          [fst.start + n]]).astype(np.int32)
    il = np.concatenate([fst.arc_ilabel, np.zeros(fin.size), fst.arc_ilabel, [0]])
    ol = np.concatenate([fst.arc_olabel, np.zeros(fin.size), fst.arc_olabel, [0]])
    w = np.concatenate([fst.arc_weight, fst.final[fin], fst.arc_weight, [0.0]])
    final = np.full(2 * n + 1, np.inf, np.float32)
    final[pre] = 0.0
    # Fst sorts arcs stably by source: a state's epsilon arc follows its own arcs
    return Fst(2 * n + 1, fst.start, final, src, dst, il.astype(np.int32),
               ol.astype(np.int32), w.astype(np.float32))


def min_frames_needed(fst: Fst) -> Optional[int]:
    """Fewest emitting (nonzero-ilabel) arcs on any path from the start to a
    final state (0-1 BFS), or None if no final state is reachable."""
    n = fst.num_states
    if n == 0 or fst.start < 0:
        return None
    dist = np.full(n, np.iinfo(np.int64).max, np.int64)
    dist[fst.start] = 0
    off, dst, il = fst.state_offsets, fst.arc_dst, fst.arc_ilabel
    dq = deque([fst.start])
    while dq:
        s = dq.popleft()
        d = dist[s]
        for k in range(int(off[s]), int(off[s + 1])):
            t = int(dst[k])
            nd = d + (1 if il[k] != 0 else 0)
            if nd < dist[t]:
                dist[t] = nd
                if il[k] == 0:
                    dq.appendleft(t)
                else:
                    dq.append(t)
    fin = np.isfinite(fst.final) & (dist < np.iinfo(np.int64).max)
    if not fin.any():
        return None
    return int(dist[fin].min())


def search(graph: Union[AlignGraph, Fst], tid2pdf, loglikes: torch.Tensor,
           opts: AlignOptions):
    """The C search (:c:func:`kb_align_compiled`) on a graph used as given
    (no transition probabilities added). ``tid2pdf``: int32 array / tensor
    indexed by transition-id (entry 0 unused; its length - 1 is the number
    of transition-ids); ``loglikes``: (T, D) float32 CPU tensor.

    Returns ``(ok, retried, alignment, words, costs)``: ``ok`` False when no
    final state was reached (then alignment and words are None; when ``ok``
    neither is); costs = (graph cost, scaled acoustic cost, log-likelihood).
    Raises ValueError when an array does not have the graph's length or a
    value does not fit int32 / float32, and
    :class:`kbind._native.NativeError` on other bad input."""
    g = graph if isinstance(graph, AlignGraph) else AlignGraph(graph, 0.0, 0.0, False)
    t2p = _native.as_c_array(tid2pdf, torch.int32, "tid2pdf")
    x = _native.as_c_array(loglikes, torch.float32, "loglikes")
    if x.dim() != 2:
        raise ValueError(f"loglikes must be (T, D), got shape {tuple(x.shape)}")
    T, D = (int(v) for v in x.shape)
    final, off, dst, il, ol, w = g.arrays()
    S, num_tids, p = g.num_states, int(t2p.numel()) - 1, _native.ptr
    off_p = p(off, S + 1, "state_offsets")
    A = int(off[-1])  # the arcs as the offsets count them: every arc array has A

    def run(cap):
        ali = torch.empty(T, dtype=torch.int32)
        words = torch.empty(cap, dtype=torch.int32)
        info = torch.zeros(3, dtype=torch.int32)
        costs = torch.zeros(3, dtype=torch.float32)
        _native.call("kb_align_compiled", S, A, g.start, p(final, S, "final"), off_p,
                     p(dst, A, "arc_dst"), p(il, A, "arc_ilabel"), p(ol, A, "arc_olabel"),
                     p(w, A, "arc_weight"), p(t2p, num_tids + 1, "tid2pdf"), num_tids,
                     p(x, T * D, "loglikes"), T, D, float(opts.acoustic_scale),
                     float(opts.beam), float(opts.retry_beam), int(opts.max_active),
                     int(opts.min_active), float(opts.beam_delta), float(opts.hash_ratio),
                     p(ali, T, "alignment"), p(words, cap, "words"), cap, p(info, 3, "info"),
                     p(costs, 3, "costs"))
        return ali, words, info, costs

    # a word usually takes at least one frame; words on epsilon arcs can make
    # more, and then the search runs again with room for all of them (it is
    # deterministic: same path, same words)
    ali, words, info, costs = run(max(16, T + 1))
    if info[0] and int(info[2]) > words.numel():
        ali, words, info, costs = run(int(info[2]))
    retried = bool(info[1])
    if not info[0]:
        return False, retried, None, None, costs.numpy()
    return True, retried, ali.numpy(), words[:int(info[2])].numpy(), costs.numpy()


class MonophoneGraphCompiler:
    """``compile-train-graphs`` for trees without phonetic context
    (``context_width == 1``, monophone trees such as flat-start chain and
    mono0 trees), with the H transducer built once.

    With N = 1 the context FST only renames each phone to its context
    window ``[p]``, so ``H o C o (L o W)`` equals ``H' o (L o W)`` where H'
    is ``GetHTransducer`` over the windows ``ilabel_info[p] = [p]`` for every
    phone id (``[-d]`` for disambiguation phones): one H for all utterances,
    and no context composition. The graphs are the same FSTs as
    :class:`kbind.hmm.graph_compiler.TrainingGraphCompiler` gives, bit for
    bit (checked in the tests), at about half the cost. Only used when L has
    no disambiguation symbols on its input side (L.fst, as
    compile-train-graphs is given it).
    """

    def __init__(self, lang: Lang, tree: ContextDependency, trans_model: TransitionModel,
                 transition_scale: float = 0.0, self_loop_scale: float = 0.0):
        import kaldifst

        from ..hmm.graph_compiler import make_h_transducer
        if tree.context_width != 1:
            raise ValueError("MonophoneGraphCompiler needs a tree with context width 1")
        dis = set(lang.disambig_phones)
        if np.isin(lang.L.arc_ilabel, sorted(dis)).any():
            raise ValueError("L has disambiguation symbols on its input side")
        # window [p] for each phone of the model; anything else in phones.txt
        # (#0, #1, ...) gets a disambiguation window, as in Kaldi's ilabel_info
        real = set(int(p) for p in trans_model.phones) - dis
        max_phone = max(i for _s, i in lang.phones.items())
        info = [[]] + [([p] if p in real else [-p]) for p in range(1, max_phone + 1)]
        H, self._dis_h = make_h_transducer(info, tree, trans_model, transition_scale)
        self._H = H.to_kaldifst()
        kaldifst.arcsort(self._H, sort_type="olabel")
        self._L = lang.L.to_kaldifst()
        kaldifst.arcsort(self._L, sort_type="olabel")
        self.trans_model = trans_model
        self.self_loop_scale = float(self_loop_scale)

    def compile(self, word_ids: Sequence[int]) -> Fst:
        import kaldifst

        from ..hmm.graph_compiler import add_self_loops
        lw = kaldifst.compose(self._L, kaldifst.make_linear_acceptor([int(w) for w in word_ids]))
        if lw.start < 0 or lw.num_states == 0:
            raise ValueError(f"empty composition of L with transcript {list(word_ids)} "
                             "(word not in the lexicon?)")
        g = kaldifst.compose(self._H, lw)
        if g.start < 0:
            raise ValueError("empty training graph")
        kaldifst.determinize_star(g, use_log=True)
        kaldifst.minimize_encoded(g)
        fst = Fst.from_kaldifst(g)
        if self._dis_h and np.isin(fst.arc_ilabel, self._dis_h).any():
            raise ValueError(f"transcript {list(word_ids)}: L produced a phone that is not in "
                             "the transition model")
        return add_self_loops(fst, self.trans_model, self.self_loop_scale, True,
                              disambig_syms=(), check_no_self_loops=True)


# -- the aligner -------------------------------------------------------------------------

TranscriptT = Union[Sequence[str], Sequence[int], np.ndarray]


class ForcedAligner:
    """Forced alignment of utterances to their transcripts.

    trans_model, tree: the model's :class:`TransitionModel` and
        :class:`ContextDependency` (paths are read);
    lang: a :class:`kbind.hmm.lang.Lang` or its directory (its ``L.fst``
        and ``words.txt``; transcripts given as words map OOVs to the lang's
        ``oov.txt`` word, as ``sym2int.pl --map-oov``);
    opts: :class:`AlignOptions`.
    graph_cache: keep up to this many compiled graphs (by transcript; 0 =
        none): realigning the same utterances re-uses them.

    Picklable (for worker processes): the graph compiler is rebuilt on use.
    """

    def __init__(self, trans_model, tree, lang, opts: AlignOptions = AlignOptions(),
                 graph_cache: int = 0):
        if not isinstance(trans_model, TransitionModel):
            trans_model = TransitionModel.from_file(str(trans_model))
        if not isinstance(tree, ContextDependency):
            tree = ContextDependency.from_file(str(tree))
        if not isinstance(lang, Lang):
            lang = Lang.load(lang)
        opts.check()
        self.trans_model = trans_model
        self.tree = tree
        self.lang = lang
        self.opts = opts
        self.graph_cache = int(graph_cache)
        self._cache: "OrderedDict[Tuple[int, ...], AlignGraph]" = OrderedDict()
        self._lock = threading.Lock()
        self._compiler: Optional[TrainingGraphCompiler] = None
        tid2pdf = _native.as_c_array(trans_model.tid2pdf, torch.int32, "tid2pdf").clone()
        tid2pdf[0] = 0
        self._tid2pdf = tid2pdf

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_compiler"] = None
        d["_lock"] = None
        return d

    def __setstate__(self, d):
        self.__dict__.update(d)
        self._lock = threading.Lock()

    @property
    def num_pdfs(self) -> int:
        return self.trans_model.num_pdfs

    @property
    def compiler(self):
        """``compile-train-graphs``' compiler (transition and self-loop scales
        0; L.fst, tree and transition model kept between utterances): a
        :class:`MonophoneGraphCompiler` (H built once) for trees without
        context, else :class:`TrainingGraphCompiler`."""
        with self._lock:
            if self._compiler is None:
                try:
                    self._compiler = MonophoneGraphCompiler(self.lang, self.tree,
                                                            self.trans_model)
                except ValueError:
                    self._compiler = TrainingGraphCompiler(
                        self.lang, self.tree, self.trans_model, transition_scale=0.0,
                        self_loop_scale=0.0, disambig_phones=self.lang.disambig_phones)
            return self._compiler

    def word_ids(self, transcript: TranscriptT) -> Tuple[int, ...]:
        items = list(transcript)
        if items and all(isinstance(w, str) for w in items):
            return tuple(self.lang.word_ids(items))
        try:
            return tuple(int(w) for w in items)
        except (TypeError, ValueError):
            raise TypeError("transcript must be a list of words (str) or of word ids (int)") \
                from None

    def compile(self, transcript: TranscriptT) -> AlignGraph:
        """The training graph of a transcript (words or word ids), as
        ``compile-train-graphs`` makes it, prepared for :meth:`align`."""
        ids = self.word_ids(transcript)
        if self.graph_cache:
            with self._lock:
                g = self._cache.get(ids)
                if g is not None:
                    self._cache.move_to_end(ids)
                    return g
        g = self.prepare(self.compiler.compile(ids))
        g.words = ids
        if self.graph_cache:
            with self._lock:
                self._cache[ids] = g
                while len(self._cache) > self.graph_cache:
                    self._cache.popitem(last=False)
        return g

    def prepare(self, fst: Fst) -> AlignGraph:
        """A graph from ``compile-train-graphs`` (no transition probabilities)
        with transition probabilities added at the options' scales and, if
        ``careful``, the careful-alignment modification."""
        if isinstance(fst, AlignGraph):
            return fst
        o = self.opts
        g = add_transition_probs(fst, self.trans_model, o.transition_scale, o.self_loop_scale)
        if o.careful:
            g = careful_graph(g)
        return AlignGraph(g, o.transition_scale, o.self_loop_scale, o.careful)

    def _loglikes(self, key: str, loglikes) -> torch.Tensor:
        x = loglikes
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"utterance {key}: loglikes must be a torch tensor or numpy array")
        if x.dim() != 2:
            raise ValueError(f"utterance {key}: loglikes must be (frames, pdfs), got shape "
                             f"{tuple(x.shape)}")
        if x.shape[1] < self.num_pdfs:
            raise ValueError(f"utterance {key}: loglikes have {x.shape[1]} columns but the "
                             f"transition model has {self.num_pdfs} pdfs")
        try:
            return _native.as_c_array(x, torch.float32, "loglikes")
        except ValueError as e:
            raise ValueError(f"utterance {key}: {e}") from None

    def align(self, key: str, graph: Union[AlignGraph, Fst, TranscriptT],
              loglikes) -> AlignResult:
        """Align one utterance to a graph (:meth:`compile`'s, or a raw Fst
        from ``compile-train-graphs``) or to a transcript (words or word ids;
        compiled here, and a transcript that gives no graph -- a word
        missing from the lexicon without an OOV word -- is a failure, as
        compile-train-graphs' "Empty decoding graph").
        Failure to align (no final state reached with
        the beam or retry beam, an empty graph, zero frames) gives an
        AlignResult with ``alignment=None`` and ``error`` set, and a warning;
        bad input (NaN / +inf loglikes, a graph with labels out of range,
        wrong shapes) raises ValueError naming the utterance."""
        o = self.opts
        if not isinstance(graph, (AlignGraph, Fst)):
            try:
                graph = self.compile(graph)
            except (KeyError, ValueError) as e:
                return self._fail(key, len(loglikes), f"no training graph for the transcript: {e}",
                                  False)
        g = self.prepare(graph)
        if (g.transition_scale, g.self_loop_scale, g.careful) != (
                o.transition_scale, o.self_loop_scale, o.careful):
            raise ValueError(f"utterance {key}: graph prepared with other scales / careful "
                             "setting than this aligner's options")
        x = self._loglikes(key, loglikes)
        T = int(x.shape[0])
        if g.num_states == 0 or g.start < 0:
            return self._fail(key, T, "empty training graph", False)
        if T == 0:
            return self._fail(key, T, "zero-length utterance", False)
        try:
            ok, retried, ali, words, costs = search(g, self._tid2pdf, x, o)
        except (_native.NativeError, ValueError) as e:
            raise ValueError(f"utterance {key}: {e}") from None
        if retried:
            log.info("retried utterance %s with beam %g", key, o.retry_beam)
        if not ok:
            need = min_frames_needed(g.fst)
            if need is None:
                why = "no final state is reachable in the training graph"
            elif need > T:
                why = (f"too few frames: {T} frames, the transcript needs at least {need} "
                       "(one per HMM state)")
            else:
                why = (f"no final state reached with beam {o.beam:g}"
                       + (f" or retry beam {o.retry_beam:g}" if o.retry_beam else ""))
            return self._fail(key, T, why, retried)
        return AlignResult(key, ali, float(costs[2]), retried, None, T, words,
                           float(costs[0]), float(costs[1]))

    @staticmethod
    def _fail(key: str, T: int, why: str, retried: bool) -> AlignResult:
        log.warning("could not align utterance %s (%d frames): %s; skipped", key, T, why)
        return AlignResult(key, None, float("nan"), retried, why, T)

    def align_many(self, items: Iterable[Tuple[str, Union[AlignGraph, Fst], object]],
                   num_threads: int = 1) -> List[AlignResult]:
        """Align ``(key, graph, loglikes)`` items (in order) on ``num_threads``
        threads; the C search releases the GIL. Failures are in the results
        (``alignment is None``), each also logged as a warning."""
        items = list(items)
        if num_threads <= 1 or len(items) <= 1:
            return [self.align(k, g, x) for k, g, x in items]
        with ThreadPoolExecutor(max_workers=int(num_threads)) as ex:
            return list(ex.map(lambda it: self.align(*it), items))

    def summary(self, results: Sequence[AlignResult]) -> dict:
        """Kaldi's end-of-job log line as a dict: done, failed, retried,
        frames and log-likelihood per frame of the aligned utterances."""
        ok = [r for r in results if r.ok]
        frames = sum(r.num_frames for r in ok)
        tot = float(sum(np.float64(r.loglike) for r in ok))
        return {"done": len(ok), "failed": len(results) - len(ok),
                "retried": sum(r.retried for r in results), "frames": frames,
                "loglike_per_frame": tot / frames if frames else float("nan")}

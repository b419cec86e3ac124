"""HMM-level graph building and the training-graph compiler of
``compile-train-graphs``.

Composition, determinization (``DeterminizeStar``), encoded minimization and
the context FST (``ComposeContext``) are done by kaldifst (OpenFst + Kaldi's
fstext). What kaldifst does not expose is ported once in :mod:`kbind.fstext`
(shared with :mod:`kbind.chain.den_fst`); the functions here are thin
wrappers taking and returning :class:`kbind.io.fst.Fst`:

* :func:`make_h_transducer` = ``GetHTransducer`` (``hmm-utils.cc``,
  ``make-h-transducer``): ``GetHmmAsFsa`` for each context window of the
  ilabel info (self-loops left out, probabilities renormalised without them,
  costs scaled by ``transition_scale``), joined by ``MakeLoopFst``;
  disambiguation symbols and the context FST's pseudo-epsilon map to new
  input ids ``num_transition_ids + 1, ...``
  (:func:`kbind.fstext.get_h_transducer`);
* :func:`add_self_loops` = ``AddSelfLoops`` with ``reorder=true``
  (``MakePrecedingInputSymbolsSameClass`` + self-loop and forward-probability
  scaling; :func:`kbind.fstext.add_self_loops`);
* :func:`remove_eps_local` = ``RemoveEpsLocal`` (``fstrmepslocal``;
  :func:`kbind.fstext.remove_eps_local`);
* :func:`push_special` = ``PushSpecial`` (``fstpushspecial``;
  :func:`kbind.fstext.push_special`);
* :func:`remove_input_symbols` = ``fstrmsymbols`` (here).
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from kbind import fstext as _fx
from kbind.io.fst import Fst

from .transition_model import TransitionModel
from .tree import ContextDependency

__all__ = ["make_h_transducer", "add_self_loops", "remove_eps_local", "push_special",
           "remove_input_symbols", "compose", "determinize_star", "minimize_encoded",
           "compose_context", "linear_acceptor", "TrainingGraphCompiler"]

_DELTA = _fx.K_DELTA  # fst::kDelta (float32 1/1024, == 1.0 / 1024.0)


# -- kaldifst wrappers (Fst in, Fst out) ------------------------------------------------

def _k(fst):
    return fst.to_kaldifst() if isinstance(fst, Fst) else fst


def compose(a, b, connect: bool = True) -> Fst:
    """OpenFst ``Compose`` (the result of Kaldi's ``fsttablecompose`` up to
    state numbering). Sorts a's arcs by olabel first."""
    import kaldifst
    ka, kb = _k(a), _k(b)
    kaldifst.arcsort(ka, sort_type="olabel")
    return Fst.from_kaldifst(kaldifst.compose(ka, kb, connect=connect))


def determinize_star(fst, use_log: bool = True, delta: float = _DELTA) -> Fst:
    """Kaldi ``fstdeterminizestar`` (epsilon removal + determinization)."""
    import kaldifst
    k = _k(fst)
    if not isinstance(k, kaldifst.StdVectorFst):
        k = kaldifst.StdVectorFst(k)
    kaldifst.determinize_star(k, delta=delta, use_log=use_log)
    return Fst.from_kaldifst(k)


def minimize_encoded(fst, delta: float = _DELTA) -> Fst:
    """Kaldi ``fstminimizeencoded``."""
    import kaldifst
    k = _k(fst)
    kaldifst.minimize_encoded(k, delta=delta)
    return Fst.from_kaldifst(k)


def compose_context(fst, disambig_syms: Sequence[int], context_width: int,
                    central_position: int) -> Tuple[Fst, List[List[int]]]:
    """Kaldi ``fstcomposecontext`` (+ ``fstarcsort --sort_type=ilabel``):
    returns (CLG, ilabel_info)."""
    import kaldifst
    out, ilabels = kaldifst.compose_context(sorted(int(x) for x in disambig_syms),
                                            int(context_width), int(central_position),
                                            _k(fst))
    kaldifst.arcsort(out, sort_type="ilabel")
    return Fst.from_kaldifst(out), [list(x) for x in ilabels]


def linear_acceptor(labels: Sequence[int]) -> Fst:
    """``MakeLinearAcceptor``."""
    n = len(labels)
    final = np.full(n + 1, np.inf, np.float32)
    final[n] = 0.0
    idx = np.arange(n, dtype=np.int32)
    lab = np.asarray(labels, np.int32)
    return Fst(n + 1, 0, final, idx, idx + 1, lab, lab)


def remove_input_symbols(fst: Fst, syms: Iterable[int]) -> Fst:
    """``fstrmsymbols`` / ``RemoveSomeInputSymbols``: those ilabels become 0."""
    syms = np.asarray(sorted(set(int(s) for s in syms)), np.int32)
    il = fst.arc_ilabel.copy()
    il[np.isin(il, syms)] = 0
    return Fst(fst.num_states, fst.start, fst.final, fst.arc_src, fst.arc_dst, il,
               fst.arc_olabel, fst.arc_weight)


def push_special(fst: Fst, delta: float = _DELTA) -> Fst:
    """Kaldi ``PushSpecial`` (``fstpushspecial``): reweight so every state
    sums to the same value (power iteration on P + 0.1 I, final-probs as arcs
    back to the start state), path weights unchanged
    (:func:`kbind.fstext.push_special`)."""
    return _fx.push_special(fst, delta)


def remove_eps_local(fst: Fst) -> Fst:
    """Kaldi ``RemoveEpsLocal`` (tropical ``Plus``), then ``Connect``
    (:func:`kbind.fstext.remove_eps_local`)."""
    if fst.num_states == 0 or fst.start < 0:
        return fst
    return _fx.remove_eps_local(_fx.VFst.from_fst(fst), inplace=True).to_fst()


def make_h_transducer(ilabel_info: Sequence[Sequence[int]], tree: ContextDependency,
                      trans_model: TransitionModel, transition_scale: float = 1.0
                      ) -> Tuple[Fst, List[int]]:
    """Kaldi ``GetHTransducer`` / ``make-h-transducer`` (self-loops not
    included). Returns (Ha, disambig_tids): Ha's output labels are the indices
    into ``ilabel_info``; its input labels are transition-ids, or the new
    disambiguation ids ``num_transition_ids + 1, ...`` listed in
    ``disambig_tids`` (one per disambiguation symbol / pseudo-epsilon)
    (:func:`kbind.fstext.get_h_transducer`)."""
    disambig: List[int] = []
    h = _fx.get_h_transducer(ilabel_info, tree, trans_model, transition_scale, disambig)
    return h.to_fst(), disambig


def add_self_loops(fst: Fst, trans_model: TransitionModel, self_loop_scale: float = 1.0,
                   reorder: bool = True, disambig_syms: Sequence[int] = (),
                   check_no_self_loops: bool = True) -> Fst:
    """Kaldi ``AddSelfLoops`` (``add-self-loops``) with ``reorder=true``:
    states are split so each has one transition-state on its incoming arcs
    (new states with an epsilon arc to the old one); a state entered by
    transition-state ``s`` gets the self-loop of ``s`` (weight
    ``-self_loop_scale * log p_loop``) and its arcs and final weight get
    ``-self_loop_scale * log(1 - p_loop)`` added
    (:func:`kbind.fstext.add_self_loops`)."""
    return _fx.add_self_loops(trans_model, fst, self_loop_scale, reorder=reorder,
                              check_no_self_loops=check_no_self_loops,
                              disambig_syms=disambig_syms)


# -- training graphs -------------------------------------------------------------------

class TrainingGraphCompiler:
    """Kaldi's ``TrainingGraphCompiler`` (``compile-train-graphs``).

    lang: a :class:`kbind.hmm.lang.Lang` (its ``L.fst`` is used) or the
        lexicon FST itself (an :class:`Fst`, e.g. ``Fst.from_file('L.fst')``).
    disambig_phones: phone disambiguation symbols on L's input side (Kaldi
        ``--read-disambig-syms``; default none, since L.fst has none).
    Defaults as compile-train-graphs: ``transition_scale=1.0``,
    ``self_loop_scale=1.0``, ``reorder=True``, ``rm_eps=False``.
    """

    def __init__(self, lang, tree: ContextDependency, trans_model: TransitionModel,
                 transition_scale: float = 1.0, self_loop_scale: float = 1.0,
                 reorder: bool = True, rm_eps: bool = False,
                 disambig_phones: Optional[Sequence[int]] = None):
        L = lang if isinstance(lang, Fst) else lang.L
        self.tree = tree
        self.trans_model = trans_model
        self.transition_scale = float(transition_scale)
        self.self_loop_scale = float(self_loop_scale)
        self.reorder = reorder
        self.rm_eps = rm_eps
        self.disambig_phones = sorted(int(x) for x in (disambig_phones or []))
        import kaldifst
        self._L = L.to_kaldifst()
        kaldifst.arcsort(self._L, sort_type="olabel")

    def compile(self, word_ids: Sequence[int]) -> Fst:
        """The training graph of one transcript (word ids): input labels are
        transition-ids (self-loops included), output labels word ids."""
        import kaldifst
        acc = linear_acceptor(word_ids).to_kaldifst()
        lw = kaldifst.compose(self._L, acc)
        if lw.start < 0 or lw.num_states == 0:
            raise ValueError(f"empty composition of L with transcript {list(word_ids)} "
                             "(word not in the lexicon?)")
        cw, ilabels = kaldifst.compose_context(self.disambig_phones, self.tree.context_width,
                                               self.tree.central_position, lw)
        kaldifst.arcsort(cw, sort_type="ilabel")
        H, dis_h = make_h_transducer(ilabels, self.tree, self.trans_model,
                                     self.transition_scale)
        hk = H.to_kaldifst()
        kaldifst.arcsort(hk, sort_type="olabel")
        g = kaldifst.compose(hk, cw)
        if g.start < 0:
            raise ValueError("empty training graph")
        kaldifst.determinize_star(g, use_log=True)
        fst = Fst.from_kaldifst(g)
        if dis_h:
            fst = remove_input_symbols(fst, dis_h)
            if self.rm_eps:
                fst = remove_eps_local(fst)
        fst = minimize_encoded(fst)
        return add_self_loops(fst, self.trans_model, self.self_loop_scale, self.reorder,
                              disambig_syms=(), check_no_self_loops=True)

    def compile_many(self, transcripts: Iterable[Sequence[int]]) -> List[Fst]:
        return [self.compile(t) for t in transcripts]

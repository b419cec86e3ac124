"""Decoding graphs: the language model G and HCLG (``utils/mkgraph.sh``).

* :func:`estimate_arpa`: an interpolated Witten-Bell n-gram LM written as a
  backoff ARPA file (kaldilm only converts ARPA to FST; it has no estimator);
* :func:`arpa_to_g`: Kaldi's ``arpa2fst --disambig-symbol=#0
  --read-symbol-table=words.txt`` (through ``kaldilm.arpa2fst``, which wraps
  Kaldi's own code);
* :func:`digit_loop_g`: a grammar of digit strings;
* :func:`make_hclg`: the steps of ``utils/mkgraph.sh``::

    LG    = fsttablecompose L_disambig G | fstdeterminizestar --use-log=true
            | fstminimizeencoded | fstpushspecial
    CLG   = fstcomposecontext --context-size=N --central-position=P
            --read-disambig-syms=phones/disambig.int LG | fstarcsort
    Ha    = make-h-transducer --transition-scale ilabels tree final.mdl
    HCLGa = fsttablecompose Ha CLG | fstdeterminizestar --use-log=true
            | fstrmsymbols disambig_tid.int | fstrmepslocal | fstminimizeencoded
    HCLG  = add-self-loops --self-loop-scale --reorder=true final.mdl HCLGa
            | fstconvert --fst_type=const

  Composition, determinization, minimization and the context FST run in
  kaldifst; PushSpecial, make-h-transducer, RemoveEpsLocal and AddSelfLoops
  are Python ports (:mod:`kbind.hmm.graph_compiler`).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from kbind.hmm.graph_compiler import (add_self_loops, compose, compose_context,
                                      determinize_star, make_h_transducer, minimize_encoded,
                                      push_special, remove_eps_local, remove_input_symbols)
from kbind.hmm.lang import Lang, SymbolTable, arcsort
from kbind.hmm.transition_model import TransitionModel
from kbind.hmm.tree import ContextDependency
from kbind.io.fst import Fst

__all__ = ["estimate_arpa", "arpa_to_g", "digit_loop_g", "make_hclg", "compose_hclg",
           "write_graph_dir", "DIGIT_WORDS"]

DIGIT_WORDS = ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven",
               "eight", "nine")


# -- ARPA estimation ----------------------------------------------------------------

def estimate_arpa(text_lines: Iterable[Union[str, Sequence[str]]], order: int = 3,
                  out_arpa=None, vocab: Optional[Iterable[str]] = None,
                  unk: Optional[str] = None) -> str:
    """Estimate an interpolated Witten-Bell n-gram LM and return (and write to
    ``out_arpa`` if given) it in backoff ARPA format.

    Each line is a sentence (string or word list); ``<s>``/``</s>`` are added.
    ``vocab`` (e.g. the lexicon's words) adds zero-count words, which get
    unigram mass from the uniform base distribution over the vocabulary (the
    words, ``</s>``; not ``<s>``). Words outside ``vocab`` are mapped to
    ``unk`` if given (else kept).
    """
    if order < 1:
        raise ValueError("order must be >= 1")
    vocab_set = set(vocab) if vocab is not None else None
    counts: List[Dict[tuple, int]] = [defaultdict(int) for _ in range(order + 1)]
    for line in text_lines:
        words = line.split() if isinstance(line, str) else list(line)
        if vocab_set is not None and unk is not None:
            words = [w if w in vocab_set else unk for w in words]
        sent = ["<s>"] + words + ["</s>"]
        for n in range(1, order + 1):
            for i in range(max(1, n - 1), len(sent)):  # never predict <s>
                counts[n][tuple(sent[i - n + 1:i + 1])] += 1
    vocabulary = {g[0] for g in counts[1]}
    if vocab_set is not None:
        vocabulary |= vocab_set
    vocabulary |= {"</s>"}
    vocabulary.discard("<s>")
    V = len(vocabulary)
    # per-history statistics
    hist_total: List[Dict[tuple, int]] = [defaultdict(int) for _ in range(order + 1)]
    hist_types: List[Dict[tuple, int]] = [defaultdict(int) for _ in range(order + 1)]
    for n in range(1, order + 1):
        for g, c in counts[n].items():
            hist_total[n][g[:-1]] += c
            hist_types[n][g[:-1]] += 1
    prob: List[Dict[tuple, float]] = [dict() for _ in range(order + 1)]
    bow: List[Dict[tuple, float]] = [dict() for _ in range(order + 1)]
    N1, T1 = hist_total[1][()], hist_types[1][()]
    for w in vocabulary:
        prob[1][(w,)] = (counts[1].get((w,), 0) + T1 / V) / (N1 + T1)

    def p_backoff(w, h):
        """P(w|h) from the backoff tables already built (orders <= len(h)+1)."""
        g = h + (w,)
        if g in prob[len(g)]:
            return prob[len(g)][g]
        return bow[len(h)].get(h, 1.0) * p_backoff(w, h[1:])

    for n in range(2, order + 1):
        for g, c in counts[n].items():
            h = g[:-1]
            ch, th = hist_total[n][h], hist_types[n][h]
            prob[n][g] = (c + th * p_backoff(g[-1], h[1:])) / (ch + th)
        # backoff weights of the histories of order n-1
        seen: Dict[tuple, List[str]] = defaultdict(list)
        for g in counts[n]:
            seen[g[:-1]].append(g[-1])
        for h, ws in seen.items():
            num = 1.0 - sum(prob[n][h + (w,)] for w in ws)
            den = 1.0 - sum(p_backoff(w, h[1:]) for w in ws)
            bow[n - 1][h] = max(num, 1e-12) / max(den, 1e-12)
    lines = ["", "\\data\\"]
    grams = []
    for n in range(1, order + 1):
        if n == 1:
            g1 = sorted(prob[1]) + [("<s>",)]
            grams.append(sorted(set(g1)))
        else:
            grams.append(sorted(prob[n]))
        lines.append(f"ngram {n}={len(grams[-1])}")
    for n in range(1, order + 1):
        lines += ["", f"\\{n}-grams:"]
        for g in grams[n - 1]:
            lp = -99.0 if g == ("<s>",) else math.log10(prob[n][g])
            s = f"{lp:.7g}\t{' '.join(g)}"
            if n < order and g in bow[n]:
                s += f"\t{math.log10(bow[n][g]):.7g}"
            lines.append(s)
    lines += ["", "\\end\\", ""]
    text = "\n".join(lines)
    if out_arpa is not None:
        Path(out_arpa).write_text(text)
    return text


def arpa_to_g(arpa_path, words_txt, disambig_symbol: str = "#0",
              bos_symbol: str = "<s>", eos_symbol: str = "</s>") -> Fst:
    """Kaldi ``arpa2fst --disambig-symbol=#0 --read-symbol-table=words.txt``
    (n-grams with words not in the table are skipped with a warning)."""
    import kaldilm
    if isinstance(words_txt, Lang):
        words_txt = words_txt.dir / "words.txt"
    with tempfile.TemporaryDirectory() as td:
        out = os.path.join(td, "G.fst")
        kaldilm.arpa2fst(str(arpa_path), out, bos_symbol=bos_symbol,
                         disambig_symbol=disambig_symbol, eos_symbol=eos_symbol,
                         read_symbol_table=str(words_txt), max_arpa_warnings=0)
        return Fst.from_file(out)


def _word_table(words) -> SymbolTable:
    if isinstance(words, SymbolTable):
        return words
    if isinstance(words, Lang):
        return words.words
    return SymbolTable.read(words)


def digit_loop_g(words, digits: Optional[Sequence[str]] = None,
                 end_prob: Optional[float] = None, min_digits: int = 1) -> Fst:
    """A grammar accepting any sequence of at least ``min_digits`` digit words
    (``digits``: default the words of :data:`DIGIT_WORDS` present in
    ``words``, a words.txt path, SymbolTable or Lang).

    Uniform probabilities: after ``min_digits`` digits the FST is in a loop
    state where each digit has probability ``(1 - end_prob) / n`` and ending
    has ``end_prob`` (default ``1 / (n + 1)``); before that each digit has
    ``1 / n``. No epsilons, ilabel-sorted."""
    table = _word_table(words)
    if digits is None:
        digits = [w for w in DIGIT_WORDS if w in table]
    ids = sorted(table[w] for w in digits)
    n = len(ids)
    if n == 0:
        raise ValueError("no digit words in the word table")
    if end_prob is None:
        end_prob = 1.0 / (n + 1)
    if not 0.0 < end_prob < 1.0:
        raise ValueError("end_prob must be in (0, 1)")
    ns = min_digits + 1
    src, dst, lab, w = [], [], [], []
    for s in range(ns):
        cost = -math.log(1.0 / n) if s < min_digits else -math.log((1.0 - end_prob) / n)
        for i in ids:
            src.append(s)
            dst.append(min(s + 1, ns - 1))
            lab.append(i)
            w.append(cost)
    final = np.full(ns, np.inf, np.float32)
    final[ns - 1] = -math.log(end_prob)
    return Fst(ns, 0, final, src, dst, lab, lab, w)


# -- HCLG -----------------------------------------------------------------------------

def _load(x, loader):
    return loader(x) if isinstance(x, (str, os.PathLike)) else x


def compose_hclg(lang, G, tree, trans_model, self_loop_scale: float = 0.1,
                 transition_scale: float = 1.0, timings: Optional[dict] = None
                 ) -> Tuple[Fst, List[int], List[List[int]]]:
    """The mkgraph.sh pipeline; returns (HCLG, disambig_tids, ilabel_info)."""
    import time
    lang = _load(lang, Lang.load)
    G = _load(G, Fst.from_file)
    tree = _load(tree, ContextDependency.from_file)
    trans_model = _load(trans_model, TransitionModel.from_file)
    tt = timings if timings is not None else {}
    t0 = time.time()

    def lap(name):
        nonlocal t0
        t = time.time()
        tt[name] = t - t0
        t0 = t

    if G.num_states == 0:
        raise ValueError("G is empty")
    LG = compose(lang.L_disambig, arcsort(G, "ilabel"))
    if LG.num_states == 0:
        raise ValueError("L o G is empty (do G's words match the lang's words.txt?)")
    LG = determinize_star(LG, use_log=True)
    LG = minimize_encoded(LG)
    LG = push_special(LG)
    lap("LG")
    CLG, ilabels = compose_context(LG, lang.disambig_phones, tree.context_width,
                                   tree.central_position)
    lap("CLG")
    Ha, disambig_tids = make_h_transducer(ilabels, tree, trans_model, transition_scale)
    lap("Ha")
    HCLGa = compose(Ha, CLG)
    HCLGa = determinize_star(HCLGa, use_log=True)
    HCLGa = remove_input_symbols(HCLGa, disambig_tids)
    HCLGa = remove_eps_local(HCLGa)
    HCLGa = minimize_encoded(HCLGa)
    lap("HCLGa")
    HCLG = add_self_loops(HCLGa, trans_model, self_loop_scale, reorder=True)
    HCLG.fst_type = "const"
    lap("HCLG")
    return HCLG, disambig_tids, ilabels


def make_hclg(lang, G, tree, trans_model, self_loop_scale: float = 0.1,
              transition_scale: float = 1.0, graph_dir=None) -> Fst:
    """HCLG as ``utils/mkgraph.sh`` (``self_loop_scale=1.0`` for chain
    models, as ``mkgraph.sh --self-loop-scale 1.0``). ``lang`` is a
    :class:`Lang` or a lang dir (ours or Kaldi's), ``G`` an Fst or path,
    ``tree``/``trans_model`` objects or paths (a ``final.mdl`` whose first
    object is the TransitionModel). With ``graph_dir``, writes the Kaldi
    graph dir (:func:`write_graph_dir`)."""
    lang = _load(lang, Lang.load)
    trans_model = _load(trans_model, TransitionModel.from_file)
    HCLG, dis, _ = compose_hclg(lang, G, tree, trans_model, self_loop_scale,
                                transition_scale)
    if graph_dir is not None:
        write_graph_dir(graph_dir, lang, HCLG, trans_model, dis)
    return HCLG


def write_graph_dir(graph_dir, lang: Lang, HCLG: Fst, trans_model: TransitionModel,
                    disambig_tids: Sequence[int]) -> None:
    """Write ``HCLG.fst`` (ConstFst), ``words.txt``, ``phones.txt``,
    ``phones/`` (copied from the lang), ``disambig_tid.int`` and ``num_pdfs``."""
    d = Path(graph_dir)
    d.mkdir(parents=True, exist_ok=True)
    HCLG.to_file(d / "HCLG.fst", fst_type="const")
    shutil.copyfile(lang.dir / "words.txt", d / "words.txt")
    shutil.copyfile(lang.dir / "phones.txt", d / "phones.txt")
    if (d / "phones").exists():
        shutil.rmtree(d / "phones")
    if (lang.dir / "phones").is_dir():
        shutil.copytree(lang.dir / "phones", d / "phones")
    (d / "disambig_tid.int").write_text("".join(f"{t}\n" for t in disambig_tids))
    (d / "num_pdfs").write_text(f"{trans_model.num_pdfs}\n")

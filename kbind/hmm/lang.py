"""Kaldi ``lang`` directories: :func:`prepare_lang` (``utils/prepare_lang.sh``)
and :class:`Lang` (reads any Kaldi lang dir, ours or one made by Kaldi).

:func:`prepare_lang` follows ``utils/prepare_lang.sh`` (default options:
``--position-dependent-phones true --sil-prob 0.5
--num-extra-phone-disambig-syms 1 --share-silence-phones false``):

* position-dependent phones: every pronunciation gets ``_B``/``_I``/``_E``
  suffixes (``_S`` for one-phone words); silence phones exist in the
  unsuffixed form (optional silence between words) and all four suffixed
  forms; non-silence phones only in the suffixed forms;
* ``phones.txt`` = ``<eps>``, ``phones/silence.txt``, ``phones/nonsilence.txt``,
  ``phones/disambig.txt`` numbered from 0;
* ``words.txt`` = ``<eps> 0``, the lexicon's words sorted in C (byte) order,
  then ``#0``, ``<s>``, ``</s>``;
* disambiguation symbols as ``utils/add_lex_disambig.pl``: a pronunciation
  that is a proper prefix of another one or appears more than once gets
  ``#1``, ``#2``, ... (counted per pronunciation); ``phones/disambig.txt`` is
  ``#0 .. #(max+1)`` (one extra phone disambiguation symbol, used after the
  optional silence in ``L_disambig.fst``);
* ``L.fst`` / ``L_disambig.fst`` as ``utils/lang/make_lexicon_fst.py`` with
  silence (start state 0, loop state 1, silence state 2, then one state per
  non-final phone of each word; costs ``-log(1-sil_prob)`` / ``-log(sil_prob)``),
  ``fstaddselfloops`` of ``#0:#0`` on ``L_disambig`` and ``fstarcsort
  --sort_type=olabel``;
* ``phones/*.{txt,int,csl}``, ``roots``, ``sets``, ``extra_questions``,
  ``word_boundary``, ``wdisambig*``, ``align_lexicon``, ``oov.{txt,int}`` and
  ``topo`` (``utils/gen_topo.pl 3 5`` or the chain 1-state topology of
  ``steps/nnet3/chain/gen_topo.py`` with ``topology="chain"``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from kbind.io.fst import Fst

from .lexicon import Lexicon
from .topology import HmmTopology

__all__ = ["SymbolTable", "Lang", "prepare_lang", "add_lex_disambig", "make_lexicon_fst",
           "write_dict_dir", "read_dict_dir"]


class SymbolTable:
    """An OpenFst text symbol table (``name id`` lines), e.g. ``words.txt``."""

    def __init__(self, pairs: Iterable[Tuple[str, int]] = ()):
        self._id: Dict[str, int] = {}
        self._name: Dict[int, str] = {}
        for name, i in pairs:
            self.add(name, i)

    def add(self, name: str, i: Optional[int] = None) -> int:
        if i is None:
            i = max(self._name, default=-1) + 1
        i = int(i)
        if name in self._id and self._id[name] != i:
            raise ValueError(f"symbol {name!r} has two ids")
        self._id[name] = i
        self._name.setdefault(i, name)
        return i

    @classmethod
    def read(cls, path) -> "SymbolTable":
        t = cls()
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                f = line.split()
                if not f:
                    continue
                if len(f) != 2:
                    raise ValueError(f"{path}:{n}: bad symbol-table line {line!r}")
                t.add(f[0], int(f[1]))
        return t

    def write(self, path) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            for name, i in self.items():
                fh.write(f"{name} {i}\n")

    def items(self) -> List[Tuple[str, int]]:
        return sorted(self._id.items(), key=lambda x: (x[1], x[0]))

    def id(self, name: str) -> int:
        return self._id[name]

    def name(self, i: int) -> str:
        return self._name[int(i)]

    def get(self, name: str, default=None):
        return self._id.get(name, default)

    def ids(self, names: Iterable[str]) -> List[int]:
        return [self._id[n] for n in names]

    def names(self, ids: Iterable[int]) -> List[str]:
        return [self._name[int(i)] for i in ids]

    def __getitem__(self, name: str) -> int:
        return self._id[name]

    def __contains__(self, name) -> bool:
        return name in self._id

    def __len__(self) -> int:
        return len(self._id)

    @property
    def max_id(self) -> int:
        return max(self._name, default=-1)

    def __repr__(self) -> str:
        return f"SymbolTable({len(self)} symbols)"


# -- dict dir (the input of prepare_lang.sh) -------------------------------------------

def write_dict_dir(lexicon: Lexicon, dict_dir, silence_phones: Sequence[str] = ("SIL",),
                   optional_silence: str = "SIL",
                   extra_questions: Optional[Sequence[Sequence[str]]] = None) -> None:
    """Write a Kaldi dict dir (``lexicon.txt`` or ``lexiconp.txt`` when some
    probability is not 1, ``silence_phones.txt``, ``nonsilence_phones.txt``
    (sorted), ``optional_silence.txt``, ``extra_questions.txt`` (default: one
    line with the silence phones, as the LibriSpeech recipe))."""
    d = Path(dict_dir)
    d.mkdir(parents=True, exist_ok=True)
    sil = list(dict.fromkeys(silence_phones))
    used = set(lexicon.phones)
    sil += [p for p in ("SPN",) if p in used and p not in sil]
    nonsil = [p for p in lexicon.phones if p not in sil]
    if any(p != 1.0 for _, p, _ in lexicon.entries):
        lexicon.write(d / "lexiconp.txt", with_probs=True)
        if (d / "lexicon.txt").exists():
            (d / "lexicon.txt").unlink()
    else:
        lexicon.write(d / "lexicon.txt")
    (d / "silence_phones.txt").write_text("".join(p + "\n" for p in sil))
    (d / "nonsilence_phones.txt").write_text("".join(p + "\n" for p in nonsil))
    (d / "optional_silence.txt").write_text(optional_silence + "\n")
    if extra_questions is None:
        extra_questions = [sil]
    (d / "extra_questions.txt").write_text("".join(" ".join(q) + " \n" for q in extra_questions))


def read_dict_dir(dict_dir):
    """(lexicon, silence_phone_lines, nonsilence_phone_lines, optional_silence,
    extra_question_lines) of a Kaldi dict dir (lexiconp.txt preferred)."""
    d = Path(dict_dir)
    if (d / "lexiconp.txt").exists():
        lex = Lexicon.read(d / "lexiconp.txt", with_probs=True)
    else:
        lex = Lexicon.read(d / "lexicon.txt", with_probs=False)

    def lines(name):
        p = d / name
        if not p.exists():
            return []
        return [ln.split() for ln in p.read_text().splitlines() if ln.split()]

    sil = lines("silence_phones.txt")
    nonsil = lines("nonsilence_phones.txt")
    opt = lines("optional_silence.txt")
    if not sil or not opt:
        raise ValueError(f"{d}: silence_phones.txt and optional_silence.txt are required")
    return lex, sil, nonsil, opt[0][0], lines("extra_questions.txt")


# -- helpers of prepare_lang -------------------------------------------------------

def _position_dependent(lexicon: Lexicon) -> Lexicon:
    out = Lexicon()
    for w, p, ph in lexicon.entries:
        if len(ph) == 1:
            out.add(w, p, (ph[0] + "_S",))
        else:
            out.add(w, p, (ph[0] + "_B",) + tuple(x + "_I" for x in ph[1:-1])
                    + (ph[-1] + "_E",))
    return out


def add_lex_disambig(lexicon: Lexicon, first_allowed: int = 1) -> Tuple[Lexicon, int]:
    """``utils/add_lex_disambig.pl``: returns the lexicon with ``#n`` appended
    to pronunciations that are a proper prefix of another pronunciation or that
    occur more than once, and the largest ``n`` used (0 if none)."""
    count: Dict[Tuple[str, ...], int] = {}
    prefixes = set()
    for _, _, ph in lexicon.entries:
        count[ph] = count.get(ph, 0) + 1
        for k in range(1, len(ph)):
            prefixes.add(ph[:k])
    last: Dict[Tuple[str, ...], int] = {}
    max_disambig = 0
    out = Lexicon()
    for w, p, ph in lexicon.entries:
        if ph in prefixes or count[ph] > 1:
            cur = last.get(ph, first_allowed - 1) + 1
            last[ph] = cur
            max_disambig = max(max_disambig, cur)
            ph = ph + (f"#{cur}",)
        out.add(w, p, ph)
    return out, max_disambig


def make_lexicon_fst(lexicon: Lexicon, phones: SymbolTable, words: SymbolTable,
                     sil_prob: float = 0.5, sil_phone: Optional[str] = "SIL",
                     sil_disambig: Optional[str] = None) -> Fst:
    """``utils/lang/make_lexicon_fst.py`` (+ ``fstcompile``, same state
    numbering). ``sil_prob == 0``: the no-silence lexicon (one loop state)."""
    src: List[int] = []
    dst: List[int] = []
    il: List[int] = []
    ol: List[int] = []
    wt: List[float] = []

    def arc(s, d, p, w, c):
        src.append(s)
        dst.append(d)
        il.append(0 if p is None else phones[p])
        ol.append(0 if w is None else words[w])
        wt.append(c)

    if sil_prob > 0.0:
        if not sil_prob < 1.0:
            raise ValueError("sil_prob must be in [0, 1)")
        sil_cost = -math.log(sil_prob)
        no_sil_cost = -math.log(1.0 - sil_prob)
        start, loop, sil_state, nxt = 0, 1, 2, 3
        arc(start, loop, None, None, no_sil_cost)
        arc(start, sil_state, None, None, sil_cost)
        if sil_disambig is None:
            arc(sil_state, loop, sil_phone, None, 0.0)
        else:
            sd = nxt
            nxt += 1
            arc(sil_state, sd, sil_phone, None, 0.0)
            arc(sd, loop, sil_disambig, None, 0.0)
        for w, prob, pron in lexicon.entries:
            pron_cost = -math.log(prob)
            cur = loop
            for i in range(len(pron) - 1):
                arc(cur, nxt, pron[i], w if i == 0 else None, pron_cost if i == 0 else 0.0)
                cur = nxt
                nxt += 1
            i = len(pron) - 1
            last = pron[i] if i >= 0 else None
            arc(cur, loop, last, w if i <= 0 else None,
                no_sil_cost + (pron_cost if i <= 0 else 0.0))
            arc(cur, sil_state, last, w if i <= 0 else None,
                sil_cost + (pron_cost if i <= 0 else 0.0))
        final_state = loop
    else:
        loop, nxt = 0, 1
        for w, prob, pron in lexicon.entries:
            cost = -math.log(prob)
            cur = loop
            for i in range(len(pron) - 1):
                arc(cur, nxt, pron[i], w if i == 0 else None, cost if i == 0 else 0.0)
                cur = nxt
                nxt += 1
            i = len(pron) - 1
            arc(cur, loop, pron[i] if i >= 0 else None, w if i <= 0 else None,
                cost if i <= 0 else 0.0)
        start = final_state = loop
    final = np.full(nxt, np.inf, np.float32)
    final[final_state] = 0.0
    return Fst(nxt, start, final, src, dst, il, ol, wt)


def _add_disambig_self_loops(fst: Fst, isyms: Sequence[int], osyms: Sequence[int]) -> Fst:
    """Kaldi ``fstaddselfloops``: ``isym:osym`` loops on every final state and
    every state with a non-epsilon output label on an arc leaving it."""
    ns = fst.num_states
    need = np.isfinite(fst.final)
    need[fst.arc_src[fst.arc_olabel != 0]] = True
    states = np.nonzero(need)[0].astype(np.int32)
    k = len(isyms)
    src = np.concatenate([fst.arc_src, np.repeat(states, k)])
    dst = np.concatenate([fst.arc_dst, np.repeat(states, k)])
    il = np.concatenate([fst.arc_ilabel, np.tile(np.asarray(isyms, np.int32), len(states))])
    ol = np.concatenate([fst.arc_olabel, np.tile(np.asarray(osyms, np.int32), len(states))])
    w = np.concatenate([fst.arc_weight, np.zeros(len(states) * k, np.float32)])
    return Fst(ns, fst.start, fst.final, src, dst, il, ol, w)


def arcsort(fst: Fst, sort_type: str = "ilabel") -> Fst:
    """``fstarcsort``: arcs of each state sorted (stably) by ilabel or olabel
    (ties by the other label, as OpenFst's ILabelCompare/OLabelCompare)."""
    if sort_type == "ilabel":
        order = np.lexsort((fst.arc_olabel, fst.arc_ilabel, fst.arc_src))
    elif sort_type == "olabel":
        order = np.lexsort((fst.arc_ilabel, fst.arc_olabel, fst.arc_src))
    else:
        raise ValueError(f"sort_type must be 'ilabel' or 'olabel', got {sort_type!r}")
    return Fst(fst.num_states, fst.start, fst.final, fst.arc_src[order], fst.arc_dst[order],
               fst.arc_ilabel[order], fst.arc_olabel[order], fst.arc_weight[order])


# -- prepare_lang ----------------------------------------------------------------

def _write_lines(path: Path, lines: Iterable[str]) -> None:
    path.write_text("".join(ln + "\n" for ln in lines))


def prepare_lang(source: Union[Lexicon, str, os.PathLike], lang_dir,
                 oov_word: str = "<unk>", *, position_dependent_phones: bool = True,
                 sil_prob: float = 0.5, topology: str = "hmm",
                 num_nonsil_states: int = 3, num_sil_states: int = 5,
                 silence_phones: Optional[Sequence[str]] = None,
                 optional_silence: str = "SIL", oov_phone: str = "SPN",
                 extra_questions: Optional[Sequence[Sequence[str]]] = None,
                 dict_dir=None) -> "Lang":
    """Build a Kaldi lang dir as ``utils/prepare_lang.sh <dict> <oov> <tmp> <lang>``.

    source: a :class:`Lexicon` or a Kaldi dict dir (lexicon.txt/lexiconp.txt,
        silence_phones.txt, nonsilence_phones.txt, optional_silence.txt,
        extra_questions.txt).
    oov_word: the word that OOVs are mapped to (``oov.txt``). With a Lexicon
        source that lacks it, the entry ``oov_word oov_phone`` is added
        (``<unk> SPN``); a dict dir must contain it, as in Kaldi.
    silence_phones: (Lexicon source) default ``SIL`` plus ``SPN`` if used.
    topology: ``"hmm"`` (``utils/gen_topo.pl`` 3/5 states) or ``"chain"``.
    dict_dir: (Lexicon source) where to also write the dict dir.
    """
    if topology not in ("hmm", "chain"):
        raise ValueError(f"topology must be 'hmm' or 'chain', got {topology!r}")
    if isinstance(source, Lexicon):
        lex = Lexicon(source.entries)
        if oov_word not in lex:
            lex.add(oov_word, (oov_phone,))
        sil = list(silence_phones) if silence_phones is not None else [optional_silence]
        for p in (optional_silence, oov_phone):
            if p in lex.phones and p not in sil:
                sil.append(p)
        if optional_silence not in sil:
            sil.insert(0, optional_silence)
        if dict_dir is not None:
            write_dict_dir(lex, dict_dir, sil, optional_silence, extra_questions)
        sil_lines = [[p] for p in sil]
        nonsil_lines = [[p] for p in lex.phones if p not in sil]
        eq_lines = [list(q) for q in extra_questions] if extra_questions is not None else [sil]
    else:
        lex, sil_lines, nonsil_lines, optional_silence, eq_lines = read_dict_dir(source)
        if oov_word not in lex:
            raise ValueError(f"the OOV word {oov_word!r} is not in the lexicon of {source}")
    for w in ("<s>", "</s>", "<eps>", "#0"):
        if w in lex:
            raise ValueError(f"{w} must not be in the lexicon")
    sil_set = {p for ln in sil_lines for p in ln}
    nonsil_set = {p for ln in nonsil_lines for p in ln}
    if sil_set & nonsil_set:
        raise ValueError(f"phones both silence and non-silence: {sorted(sil_set & nonsil_set)}")
    missing = set(lex.phones) - sil_set - nonsil_set
    if missing:
        raise ValueError(f"lexicon phones not in (non)silence_phones.txt: {sorted(missing)}")
    if optional_silence not in sil_set:
        raise ValueError(f"optional silence {optional_silence} is not a silence phone")

    d = Path(lang_dir)
    (d / "phones").mkdir(parents=True, exist_ok=True)
    pos = position_dependent_phones
    sil_map = {p: ([p, p + "_B", p + "_E", p + "_I", p + "_S"] if pos else [p]) for p in sil_set}
    nonsil_map = {p: ([p + "_B", p + "_E", p + "_I", p + "_S"] if pos else [p])
                  for p in nonsil_set}
    pmap = {**sil_map, **nonsil_map}

    def apply_map(line):
        return [x for p in line for x in pmap[p]]

    silence = [x for ln in sil_lines for x in apply_map(ln)]
    nonsilence = [x for ln in nonsil_lines for x in apply_map(ln)]

    lexp = _position_dependent(lex) if pos else Lexicon(lex.entries)
    lexp_disambig, ndisambig = add_lex_disambig(lexp)
    ndisambig += 1  # --num-extra-phone-disambig-syms 1
    disambig = [f"#{n}" for n in range(ndisambig + 1)]

    phones = SymbolTable((s, i) for i, s in enumerate(["<eps>"] + silence + nonsilence + disambig))
    wordlist = sorted(set(lex.words), key=lambda w: w.encode("utf-8"))
    words = SymbolTable((s, i) for i, s in enumerate(
        ["<eps>"] + wordlist + ["#0", "<s>", "</s>"]))
    phones.write(d / "phones.txt")
    words.write(d / "words.txt")

    P = d / "phones"
    _write_lines(P / "silence.txt", silence)
    _write_lines(P / "nonsilence.txt", nonsilence)
    _write_lines(P / "optional_silence.txt", [optional_silence])
    _write_lines(P / "disambig.txt", disambig)
    _write_lines(P / "context_indep.txt", silence)
    sets = [apply_map(ln) for ln in sil_lines + nonsil_lines]
    _write_lines(P / "sets.txt", [" ".join(s) for s in sets])
    _write_lines(P / "roots.txt", ["shared split " + " ".join(s) for s in sets])
    eq = [" ".join(apply_map(ln)) for ln in eq_lines]
    if pos:
        nonsil_base = [p for ln in nonsil_lines for p in ln]
        sil_base = [p for ln in sil_lines for p in ln]
        for suf in ("_B", "_E", "_I", "_S"):
            eq.append("".join(f"{p}{suf} " for p in nonsil_base))
        for suf in ("", "_B", "_E", "_I", "_S"):
            eq.append("".join(f"{p}{suf} " for p in sil_base))
    (P / "extra_questions.txt").write_text("".join(q + "\n" for q in eq))
    if pos:
        wb = []
        for p in silence + nonsilence:
            kind = {"_I": "internal", "_B": "begin", "_S": "singleton", "_E": "end"}.get(
                p[-2:], "nonword")
            wb.append((p, kind))
        _write_lines(P / "word_boundary.txt", [f"{p} {k}" for p, k in wb])
        _write_lines(P / "word_boundary.int", [f"{phones[p]} {k}" for p, k in wb])
    elif (P / "word_boundary.txt").exists():
        (P / "word_boundary.txt").unlink()
        (P / "word_boundary.int").unlink()
    _write_lines(P / "wdisambig.txt", ["#0"])
    _write_lines(P / "wdisambig_phones.int", [str(phones["#0"])])
    _write_lines(P / "wdisambig_words.int", [str(words["#0"])])
    (d / "oov.txt").write_text(oov_word + "\n")
    (d / "oov.int").write_text(f"{words[oov_word]}\n")
    for name, lst in (("silence", silence), ("nonsilence", nonsilence),
                      ("optional_silence", [optional_silence]), ("disambig", disambig),
                      ("context_indep", silence)):
        ids = [phones[x] for x in lst]
        _write_lines(P / f"{name}.int", [str(i) for i in ids])
        (P / f"{name}.csl").write_text(":".join(str(i) for i in ids) + "\n")
    _write_lines(P / "sets.int", [" ".join(str(phones[x]) for x in s) for s in sets])
    _write_lines(P / "roots.int", ["shared split " + " ".join(str(phones[x]) for x in s)
                                   for s in sets])
    _write_lines(P / "extra_questions.int",
                 [" ".join(str(phones[x]) for x in q.split()) for q in eq])
    align = sorted({f"{w} {w} {' '.join(ph)}" for w, _, ph in lexp.entries}
                   | {f"<eps> <eps> {optional_silence}"}, key=lambda s: s.encode("utf-8"))
    _write_lines(P / "align_lexicon.txt", align)
    _write_lines(P / "align_lexicon.int", [
        " ".join([str(words[f[0]]) if f[0] != "<eps>" else "0",
                  str(words[f[1]]) if f[1] != "<eps>" else "0"]
                 + [str(phones[x]) for x in f[2:]]) for f in (a.split() for a in align)])

    silphones = [phones[x] for x in silence]
    nonsilphones = [phones[x] for x in nonsilence]
    if topology == "hmm":
        topo = HmmTopology.kaldi_3state(nonsilphones, silphones, num_nonsil_states,
                                        num_sil_states)
    else:
        topo = HmmTopology.chain_2state(nonsilphones, silphones)
    (d / "topo").write_text(topo.to_lang_topo_text())

    if sil_prob > 0:
        L = make_lexicon_fst(lexp, phones, words, sil_prob, optional_silence)
        Ld = make_lexicon_fst(lexp_disambig, phones, words, sil_prob, optional_silence,
                              sil_disambig=f"#{ndisambig}")
    else:
        L = make_lexicon_fst(lexp, phones, words, 0.0)
        Ld = make_lexicon_fst(lexp_disambig, phones, words, 0.0)
    L = arcsort(L, "olabel")
    Ld = arcsort(_add_disambig_self_loops(Ld, [phones["#0"]], [words["#0"]]), "olabel")
    L.to_file(d / "L.fst")
    Ld.to_file(d / "L_disambig.fst")
    return Lang.load(d)


# -- Lang ------------------------------------------------------------------------------

def _read_ints(path: Path) -> List[int]:
    if not path.exists():
        return []
    return [int(x) for x in path.read_text().split()]


class Lang:
    """A Kaldi lang dir (ours or Kaldi's), read with :meth:`load`.

    Attributes: ``dir``, ``phones`` / ``words`` (:class:`SymbolTable`),
    ``silence_phones``, ``nonsilence_phones``, ``context_indep``,
    ``disambig_phones`` (ids of ``#0 #1 ...``), ``optional_silence`` (id or
    None), ``wdisambig_phones``, ``wdisambig_words``, ``oov_word``/``oov_id``,
    ``sets``/``roots`` (lists of id lists; roots as (shared, split, ids)),
    ``word_boundary`` (phone id -> kind, empty if absent), ``topo``
    (:class:`HmmTopology`), ``L`` and ``L_disambig`` (:class:`Fst`, loaded on
    first use), ``position_dependent``.
    """

    def __init__(self, lang_dir):
        self.dir = Path(lang_dir)
        d, P = self.dir, self.dir / "phones"
        self.phones = SymbolTable.read(d / "phones.txt")
        self.words = SymbolTable.read(d / "words.txt")
        self.silence_phones = _read_ints(P / "silence.int")
        self.nonsilence_phones = _read_ints(P / "nonsilence.int")
        self.context_indep = _read_ints(P / "context_indep.int")
        self.disambig_phones = _read_ints(P / "disambig.int")
        if not self.disambig_phones:
            self.disambig_phones = [i for s, i in self.phones.items() if s.startswith("#")]
        opt = _read_ints(P / "optional_silence.int")
        self.optional_silence = opt[0] if opt else None
        self.wdisambig_phones = _read_ints(P / "wdisambig_phones.int") or (
            [self.phones["#0"]] if "#0" in self.phones else [])
        self.wdisambig_words = _read_ints(P / "wdisambig_words.int") or (
            [self.words["#0"]] if "#0" in self.words else [])
        self.oov_word = (d / "oov.txt").read_text().split()[0] if (d / "oov.txt").exists() \
            else None
        self.oov_id = self.words.get(self.oov_word) if self.oov_word else None
        self.sets = [[int(x) for x in ln.split()] for ln in
                     (P / "sets.int").read_text().splitlines() if ln.split()] \
            if (P / "sets.int").exists() else []
        self.roots = []
        if (P / "roots.int").exists():
            for ln in (P / "roots.int").read_text().splitlines():
                f = ln.split()
                if f:
                    self.roots.append((f[0], f[1], [int(x) for x in f[2:]]))
        self.word_boundary: Dict[int, str] = {}
        if (P / "word_boundary.int").exists():
            for ln in (P / "word_boundary.int").read_text().splitlines():
                f = ln.split()
                if f:
                    self.word_boundary[int(f[0])] = f[1]
        self.position_dependent = bool(self.word_boundary)
        self.topo = HmmTopology.from_file(d / "topo")
        self._L: Optional[Fst] = None
        self._Ld: Optional[Fst] = None

    @classmethod
    def load(cls, lang_dir) -> "Lang":
        return cls(lang_dir)

    @property
    def L(self) -> Fst:
        if self._L is None:
            self._L = Fst.from_file(self.dir / "L.fst")
        return self._L

    @property
    def L_disambig(self) -> Fst:
        if self._Ld is None:
            self._Ld = Fst.from_file(self.dir / "L_disambig.fst")
        return self._Ld

    @property
    def real_phones(self) -> List[int]:
        """All phone ids except ``<eps>`` and disambiguation symbols."""
        dis = set(self.disambig_phones)
        return [i for s, i in self.phones.items() if i != 0 and i not in dis
                and not s.startswith("#")]

    def word_ids(self, words: Iterable[str], map_oov: bool = True) -> List[int]:
        """``utils/sym2int.pl --map-oov <oov>``: word strings to ids."""
        out = []
        for w in words:
            i = self.words.get(w)
            if i is None:
                if not map_oov or self.oov_id is None:
                    raise KeyError(f"word {w!r} not in {self.dir / 'words.txt'}")
                i = self.oov_id
            out.append(i)
        return out

    def __repr__(self) -> str:
        return (f"Lang({str(self.dir)!r}, {len(self.real_phones)} phones, "
                f"{len(self.words)} words)")

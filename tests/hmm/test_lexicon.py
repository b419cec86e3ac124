"""CMU lexicon lookup, stress removal, OOV handling, lexicon(p).txt I/O."""

import pytest

from kbind.hmm.lexicon import Lexicon, OOVError, cmudict_pronunciations, strip_stress


def test_strip_stress():
    assert strip_stress("AH0") == "AH" and strip_stress("AH1") == "AH"
    assert strip_stress("IY2") == "IY" and strip_stress("SIL") == "SIL"


def test_cmu_lookup():
    assert cmudict_pronunciations("Hello") == [("HH", "AH", "L", "OW")]
    assert cmudict_pronunciations("hello", all_prons=True) == [
        ("HH", "AH", "L", "OW"), ("HH", "EH", "L", "OW")]
    assert cmudict_pronunciations("hello", keep_stress=True) == [("HH", "AH0", "L", "OW1")]
    lex = Lexicon.from_cmudict(["read", "a", "Read"], all_prons=True)
    assert lex.words == ["read", "a", "Read"]
    assert lex.prons("read") == [("R", "EH", "D"), ("R", "IY", "D")]
    assert Lexicon.from_cmudict(["read"]).prons("read") == [("R", "EH", "D")]


def test_oov_error_lists_words():
    with pytest.raises(OOVError) as e:
        Lexicon.from_cmudict(["hello", "qzxv", "world", "blorptastic"])
    assert e.value.words == ["qzxv", "blorptastic"]
    assert "qzxv" in str(e.value) and "blorptastic" in str(e.value)


def test_unk_mapping():
    lex = Lexicon.from_cmudict(["hello", "qzxv"], oov_word="<unk>", silence_word="!SIL")
    assert lex.entries[0] == ("!SIL", 1.0, ("SIL",))
    assert lex.prons("<unk>") == [("SPN",)]
    assert "qzxv" not in lex and lex.oov_words == ["qzxv"]


def test_read_write(tmp_path):
    lex = Lexicon([("a", ("AH",)), ("b", 0.5, ("B", "IY")), ("b", 0.5, ("B", "EY"))])
    lex.write(tmp_path / "lexicon.txt")
    lex.write(tmp_path / "lexiconp.txt", with_probs=True)
    assert (tmp_path / "lexicon.txt").read_text() == "a AH\nb B IY\nb B EY\n"
    assert (tmp_path / "lexiconp.txt").read_text() == "a 1.0 AH\nb 0.5 B IY\nb 0.5 B EY\n"
    assert Lexicon.read(tmp_path / "lexiconp.txt") == lex
    assert Lexicon.read(tmp_path / "lexicon.txt").prons("b") == [("B", "IY"), ("B", "EY")]

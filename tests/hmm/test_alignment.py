"""ali-to-pdf / ali-to-phones / SplitToPhones against Kaldi's outputs."""

from __future__ import annotations

import kaldiio
import numpy as np
import pytest

from kbind.hmm import (TransitionModel, ali_to_pdf, ali_to_phones, is_reordered,
                       split_to_phones)

from ._common import load_json


@pytest.fixture(scope="module")
def tm(kaldi_io_dir):
    return TransitionModel.from_file(kaldi_io_dir / "trans.mdl")


@pytest.fixture(scope="module")
def expected(kaldi_io_dir):
    return load_json(kaldi_io_dir / "ali.expected.json")


@pytest.fixture(scope="module")
def alis(kaldi_io_dir):
    with open(kaldi_io_dir / "ali.ark", "rb") as fh:
        return {k: np.asarray(v) for k, v in kaldiio.load_ark(fh)}


def test_fixture_ark_matches_json(alis, expected):
    assert list(alis) == expected["keys"]
    for k in expected["keys"]:
        assert alis[k].tolist() == expected["values"][k]


def test_ali_to_pdf(tm, alis, expected):
    for k in expected["keys"]:
        pdfs = ali_to_pdf(tm, alis[k])
        assert pdfs.dtype == np.int32
        assert pdfs.tolist() == expected["pdfs"][k]


def test_ali_to_phones(tm, alis, expected):
    for k in expected["keys"]:
        phones = ali_to_phones(tm, alis[k])
        assert phones.dtype == np.int32
        assert phones.tolist() == expected["phones"][k]


def test_ali_to_phones_write_lengths(tm, alis, expected):
    for k in expected["keys"]:
        pairs = ali_to_phones(tm, alis[k], write_lengths=True)
        assert [list(p) for p in pairs] == expected["phone_lengths"][k]


def test_ali_to_phones_per_frame(tm, alis, expected):
    for k in expected["keys"]:
        per_frame = ali_to_phones(tm, alis[k], per_frame=True)
        want = [ph for ph, n in expected["phone_lengths"][k] for _ in range(n)]
        assert per_frame.tolist() == want
        assert len(per_frame) == len(expected["values"][k])


def test_phones_follow_transcripts(expected):
    """Independent check of the fixture logic: SIL + lexicon phones + SIL."""
    for k in expected["keys"]:
        want = [1]
        for w in expected["transcripts"][k]:
            want += expected["lexicon"][str(w)]
        want.append(1)
        assert expected["phones"][k] == want


def test_split_to_phones(tm, alis, expected):
    for k in expected["keys"]:
        ali = alis[k]
        assert is_reordered(tm, ali)
        pieces = split_to_phones(tm, ali)
        assert np.concatenate(pieces).tolist() == ali.tolist()
        assert [len(p) for p in pieces] == [n for _, n in expected["phone_lengths"][k]]
        for piece in pieces:
            assert tm.transition_id_to_hmm_state(piece[0]) == 0


def test_non_reordered_alignment(tm, alis, expected):
    """Un-reorder (self-loops before the forward transition of each state): the
    phone boundaries stay the same."""
    for k in expected["keys"]:
        ali = alis[k].tolist()
        out, i = [], 0
        while i < len(ali):
            j = i + 1
            while j < len(ali) and tm.is_self_loop(ali[j]) and \
                    tm.transition_id_to_transition_state(ali[j]) == \
                    tm.transition_id_to_transition_state(ali[i]):
                j += 1
            out += ali[i + 1:j] + [ali[i]]
            i = j
        assert not is_reordered(tm, out) or out == ali
        pairs = ali_to_phones(tm, out, write_lengths=True)
        assert [list(p) for p in pairs] == expected["phone_lengths"][k]


def test_empty_alignment(tm):
    assert ali_to_phones(tm, []).tolist() == []
    assert ali_to_phones(tm, [], write_lengths=True) == []
    assert ali_to_pdf(tm, np.zeros(0, np.int32)).tolist() == []
    assert split_to_phones(tm, []) == []


def test_truncated_alignment_raises_with_position(tm, alis):
    ali = alis["spk2-utt1"]
    with pytest.raises(ValueError, match=r"position 28"):
        split_to_phones(tm, ali[:29])  # ends inside a phone
    # Kaldi's ali-to-phones ignores the error: strict=False gives its output
    pieces = split_to_phones(tm, ali[:29], strict=False)
    assert sum(len(p) for p in pieces) == 29


def test_phone_change_without_final_raises(tm, alis):
    ali = alis["spk2-utt1"].tolist()
    # SIL = frames 0..8: [4, 1, 1, 13, 15, 8, 5, 18, 17]; 18 enters the final
    # state. Drop 18 and its self-loop 17: the phone changes at frame 7.
    assert ali[7:9] == [18, 17] and tm.is_final(18)
    bad = ali[:7] + ali[9:]
    with pytest.raises(ValueError, match=r"position 7: phone changes from 1 to 2"):
        ali_to_phones(tm, bad)


def test_phone_not_starting_in_state_zero_raises(tm, alis):
    ali = alis["spk2-utt1"].tolist()
    with pytest.raises(ValueError, match=r"position 0: phone 1 starts in HMM state"):
        split_to_phones(tm, ali[3:])  # starts with tid 13 (SIL hmm-state 3)


def test_bad_transition_ids(tm):
    with pytest.raises(ValueError, match="position 1"):
        ali_to_pdf(tm, [1, 0, 2])
    with pytest.raises(ValueError, match="position 2"):
        ali_to_phones(tm, [1, 2, tm.num_transition_ids + 1])
    with pytest.raises(ValueError):
        ali_to_phones(tm, [1, 2], per_frame=True, write_lengths=True)


def test_chain_model_alignment(kaldi_io_dir):
    tm = TransitionModel.from_file(kaldi_io_dir / "chain.trans.mdl")
    # phone 2 (AA): forward tid 4 then self-loops 3 (reordered); phone 3: 6, 5
    ali = [4, 3, 3, 6, 5, 2]
    assert ali_to_phones(tm, ali, write_lengths=True) == [(2, 3), (3, 2), (1, 1)]
    assert ali_to_pdf(tm, ali).tolist() == [2, 3, 3, 4, 5, 0]


def test_fast_path_agrees_with_kaldi_loop(tm, alis):
    """The vectorised splitter equals the line-by-line port of Kaldi's
    SplitToPhonesInternal on random valid and corrupted alignments."""
    from kbind.hmm.alignment import _ends_fast, _ends_loop

    pieces = [p for a in alis.values() for p in split_to_phones(tm, a)]

    def unreorder(ali):
        out, i = [], 0
        while i < len(ali):
            j = i + 1
            while j < len(ali) and tm.is_self_loop(ali[j]) and \
                    tm.tid2state[ali[j]] == tm.tid2state[ali[i]]:
                j += 1
            out += ali[i + 1:j] + [ali[i]]
            i = j
        return out

    rng = np.random.default_rng(1234)
    n_fast = n_err = 0
    for _ in range(1500):
        a = np.concatenate([pieces[i] for i in rng.integers(0, len(pieces), rng.integers(1, 5))])
        a = a.tolist()
        if rng.random() < 0.5:
            a = unreorder(a)
        a = np.array(a, np.int64)
        r = rng.random()
        if r < 0.3:
            a[rng.integers(0, len(a))] = rng.integers(1, tm.num_transition_ids + 1)
        elif r < 0.5 and len(a) > 1:
            a = np.delete(a, rng.integers(0, len(a)))
        elif r < 0.6:
            a = a[rng.integers(0, len(a)):]
        try:
            ro = is_reordered(tm, a)
        except ValueError:
            continue
        fast = _ends_fast(tm, a, ro)
        try:
            slow = _ends_loop(tm, a, ro, True)
        except ValueError:
            assert fast is None
            n_err += 1
            continue
        assert fast is not None
        assert fast.tolist() == slow.tolist()
        n_fast += 1
    assert n_fast > 500 and n_err > 200

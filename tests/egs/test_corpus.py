"""egs/digits/local/corpus.py: synthetic multi-voice corpus (text, voices, splits, data dirs)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from kbind.data import DataDir, kaldi_sorted, validate_data_dir

REPO = Path(__file__).resolve().parents[2]
CORPUS_PY = REPO / "egs" / "digits" / "local" / "corpus.py"


def _load_corpus():
    name = "digits_local_corpus"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, CORPUS_PY)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod          # before exec: pool workers unpickle by module name
    spec.loader.exec_module(mod)
    return mod


corpus = _load_corpus()


def _fake_voices():
    V = corpus.Voice
    vs = []
    for lang in ("en-us", "en-gb", "en-gb-x-rp"):
        for var, g in (("m1", "m"), ("m3", "m"), ("f2", "f"), ("f3", "f"), ("klatt", "m")):
            vs.append(V("espeak", f"{lang}+{var}", g, f"{corpus._tag(lang)}-{var}"))
    for n, g in (("awb", "m"), ("kal16", "m"), ("rms", "m"), ("slt", "f")):
        vs.append(V("flite", n, g, n))
    vs.append(V("festival", "kal_diphone", "m", "kal"))
    vs.append(V("festival", "ked_diphone", "m", "ked"))
    vs.append(V("pico", "en-US", "f", "enus"))
    vs.append(V("pico", "en-GB", "f", "engb"))
    return vs


# ---------------------------------------------------------------------------
# text

def test_phrases_reproducible_and_in_cmudict():
    a = corpus.make_phrases(0)
    assert a == corpus.make_phrases(0)
    assert a != corpus.make_phrases(1)
    assert len(a) == len(set(a)) == corpus.NUM_PHRASES
    cmu = corpus.cmu_words()
    vocab = {w for p in a for w in p.split()}
    assert 150 <= len(vocab) <= 600
    for p in a:
        assert 3 <= len(p.split()) <= 8, p
        assert p == p.lower() and all(w.isalpha() for w in p.split()), p
        assert all(w in cmu for w in p.split()), p


def test_every_slot_word_in_cmudict():
    cmu = corpus.cmu_words()
    slots = corpus.load_slots()
    missing = [w for items in slots.values() for it in items for w in it.split() if w not in cmu]
    assert not missing
    with pytest.raises(ValueError, match="CMU"):
        corpus.check_words(["call xqzzyv now"])


def test_digit_strings():
    import random
    rng = random.Random(0)
    lengths = set()
    allowed = set(corpus.DIGIT_WORDS) | {"oh"}
    seen = set()
    for _ in range(2000):
        s = corpus.digit_string(rng).split()
        lengths.add(len(s))
        seen.update(s)
        assert set(s) <= allowed
    assert lengths == set(range(1, 8))
    assert seen == allowed


# ---------------------------------------------------------------------------
# planning (no TTS needed)

def test_plan_deterministic_and_splits_disjoint(tmp_path):
    voices = _fake_voices()
    p1 = corpus.plan_corpus(voices, "default", 0, tmp_path)
    p2 = corpus.plan_corpus(voices, "default", 0, tmp_path)
    assert [(u.utt, u.text, u.rate, u.gain_db) for s in corpus.SPLITS for u in p1[s]] == \
           [(u.utt, u.text, u.rate, u.gain_db) for s in corpus.SPLITS for u in p2[s]]
    p3 = corpus.plan_corpus(voices, "default", 1, tmp_path)
    assert [u.text for u in p1["train"]] != [u.text for u in p3["train"]]

    spk = {s: {u.spk for u in p1[s]} for s in corpus.SPLITS}
    vox = {s: {u.voice for u in p1[s]} for s in corpus.SPLITS}
    assert not spk["train"] & spk["test"] and not spk["train"] & spk["dev"] and not spk["dev"] & spk["test"]
    assert not vox["train"] & vox["test"]                      # test voices held out
    assert vox["dev"] <= vox["train"]                          # dev: seen voices, new settings
    pitches = {s: {u.pitch for u in p1[s]} for s in corpus.SPLITS}
    assert not pitches["train"] & pitches["dev"] and not pitches["train"] & pitches["test"]
    assert len(p1["dev"]) >= 300 and len(p1["test"]) >= 300
    assert {u.voice.engine for u in p1["test"]} == {"espeak", "flite", "festival", "pico"}
    assert {u.voice.engine for u in p1["train"]} == {"espeak", "flite", "festival", "pico"}
    # speaker-id prefixes: sorting utterances groups speakers, in speaker order
    for s in corpus.SPLITS:
        utts = kaldi_sorted(u.utt for u in p1[s])
        u2s = {u.utt: u.spk for u in p1[s]}
        order = [u2s[u] for u in utts]
        groups = [k for i, k in enumerate(order) if i == 0 or order[i - 1] != k]
        assert groups == kaldi_sorted(set(order))
        assert all(u.utt.startswith(u.spk + "-") for u in p1[s])
    # the train text covers every dev/test word (LM estimated on train text)
    words = {s: {w for u in p1[s] for w in u.text.split()} for s in corpus.SPLITS}
    assert words["dev"] | words["test"] <= words["train"]


def test_too_few_voices_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(corpus, "_espeak_candidates", lambda: [])
    monkeypatch.setattr(corpus, "_flite_candidates", lambda: [])
    monkeypatch.setattr(corpus, "_festival_candidates", lambda: [])
    monkeypatch.setattr(corpus, "_pico_candidates", lambda: [])
    with pytest.raises(RuntimeError, match="at least 4"):
        corpus.find_voices()


# ---------------------------------------------------------------------------
# a real tiny corpus

def _any_engine() -> bool:
    return any(shutil.which(x) for x in ("espeak-ng", "flite", "text2wave")) or corpus._pico_backend() is not None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    if not _any_engine():
        pytest.skip("no TTS engine installed (espeak-ng, flite, festival, pico)")
    out = tmp_path_factory.mktemp("digits") / "data"
    info = corpus.build_corpus(out, size="tiny", seed=0, jobs=2)
    return out, info


def test_tiny_corpus_data_dirs(tiny):
    import soundfile
    out, info = tiny
    assert not info["cached"]
    spk_by_split = {}
    for split in corpus.SPLITS:
        d = out / split
        validate_data_dir(d, no_feats=True)
        for f in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur", "spk2gender"):
            assert (d / f).is_file(), f
            keys = [l.split()[0] for l in (d / f).read_text().splitlines()]
            assert keys == kaldi_sorted(keys)
        dd = DataDir.load(d)
        n_spk, n_per = corpus.SIZES["tiny"][split]
        assert len(dd) == n_spk * n_per
        spk_by_split[split] = set(dd.speakers)
        for utt, path in dd.wav_scp.items():
            assert Path(path).is_absolute() and Path(path).is_file()
            x, sr = soundfile.read(path, dtype="int16", always_2d=True)
            assert sr == 16000 and x.shape[1] == 1
            assert soundfile.info(path).subtype == "PCM_16"
            x = x[:, 0].astype(np.float64) / 32768
            assert np.sqrt(np.mean(x ** 2)) > 0.01, f"{utt} is (nearly) silent"
            assert abs(dd.utt2dur[utt] - len(x) / sr) < 1e-3
            assert dd.text[utt] and dd.text[utt] == dd.text[utt].lower()
        assert set(dd.spk2gender.values()) <= {"m", "f"}
    assert not spk_by_split["train"] & spk_by_split["test"]
    voice_of = lambda spk: spk.rsplit("-p", 1)[0]  # noqa: E731
    assert not {voice_of(s) for s in spk_by_split["train"]} & {voice_of(s) for s in spk_by_split["test"]}

    lm = (out / "local" / "lm_train_text").read_text().splitlines()
    assert len(lm) == len(DataDir.load(out / "train"))
    vocab = (out / "local" / "vocab.txt").read_text().split()
    assert vocab == kaldi_sorted(set(vocab))
    cmu = corpus.cmu_words()
    assert all(w in cmu for w in vocab)
    meta = json.loads((out / "corpus_info.json").read_text())
    assert set(meta["splits"]) == set(corpus.SPLITS)
    assert meta["splits"]["train"]["hours"] > 0


def test_tiny_corpus_cache_and_resume(tiny, capsys):
    out, info = tiny
    again = corpus.build_corpus(out, size="tiny", seed=0, jobs=2)
    assert again["cached"]
    assert "nothing to do" in capsys.readouterr().err
    # a killed run: marker missing, one wav missing -> only that one is redone
    wavs = sorted((out / "wav").rglob("*.wav"))
    mtimes = {p: p.stat().st_mtime_ns for p in wavs}
    (out / corpus.MARKER).unlink()
    wavs[0].unlink()
    res = corpus.build_corpus(out, size="tiny", seed=0, jobs=1)
    assert not res["cached"]
    assert "resuming" in capsys.readouterr().err
    assert wavs[0].is_file()
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items() if p != wavs[0])
    validate_data_dir(out / "train", no_feats=True)

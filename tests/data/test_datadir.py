"""kbind.data.datadir: loading, writing, subsetting and validation."""

from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import pytest

import kbind.data.datadir as dd
from kbind.data.datadir import (
    DataDir,
    DataDirError,
    Segment,
    kaldi_sorted,
    spk2utt_to_utt2spk,
    utt2spk_to_spk2utt,
    validate_data_dir,
)
from kbind.io.errors import KaldiFormatError


BASE = {
    "wav.scp": "recA /data/a.wav\nrecB sox /data/b.flac -t wav - |\n",
    "segments": "spk1-u1 recA 0.00 1.50\nspk1-u2 recA 1.50 3.25 0\nspk2-u1 recB 0 2.5\n",
    "text": "spk1-u1 hello world\nspk1-u2 good  bye\nspk2-u1 yes\n",
    "utt2spk": "spk1-u1 spk1\nspk1-u2 spk1\nspk2-u1 spk2\n",
    "spk2utt": "spk1 spk1-u1 spk1-u2\nspk2 spk2-u1\n",
    "feats.scp": "spk1-u1 /f/raw.ark:10\nspk1-u2 /f/raw.ark:2000\nspk2-u1 /f/raw.ark:4000\n",
    "cmvn.scp": "spk1 /f/cmvn.ark:5\nspk2 /f/cmvn.ark:100\n",
    "utt2dur": "spk1-u1 1.5\nspk1-u2 1.75\nspk2-u1 2.5\n",
    "utt2num_frames": "spk1-u1 148\nspk1-u2 173\nspk2-u1 248\n",
    "spk2gender": "spk1 m\nspk2 f\n",
    "reco2file_and_channel": "recA a A\nrecB b B\n",
}


def make_dir(root: Path, name="d", **changes) -> Path:
    d = root / name
    d.mkdir()
    for fname, content in {**BASE, **changes}.items():
        if content is not None:
            (d / fname).write_bytes(
                content.encode() if isinstance(content, str) else content)
    return d


def errors_of(path, **kw):
    with pytest.raises(DataDirError) as e:
        validate_data_dir(path, **kw)
    return e.value


# ---------------------------------------------------------------------------

def test_load_plain_typed_data(tmp_path):
    d = DataDir.load(make_dir(tmp_path))
    assert d.utterances == ["spk1-u1", "spk1-u2", "spk2-u1"]
    assert d.speakers == ["spk1", "spk2"] and d.recordings == ["recA", "recB"]
    assert d.wav_scp["recB"] == "sox /data/b.flac -t wav - |"
    assert d.segments["spk1-u2"] == Segment("recA", 1.5, 3.25, 0)
    assert d.segments["spk1-u1"].channel is None
    assert d.text["spk1-u2"] == "good bye"
    assert d.spk2utt == {"spk1": ["spk1-u1", "spk1-u2"], "spk2": ["spk2-u1"]}
    assert d.utt2dur["spk1-u2"] == 1.75 and d.utt2num_frames["spk2-u1"] == 248
    assert d.spk2gender == {"spk1": "m", "spk2": "f"}
    assert d.reco2file_and_channel["recB"] == ("b", "B")
    assert d.cmvn_scp["spk2"] == "/f/cmvn.ark:100"
    assert len(d) == 3 and "utterances=3" in repr(d)


def test_write_sorts_in_c_order_and_round_trips(tmp_path):
    # C order: uppercase before lowercase, '-' (0x2d) before '_' (0x5f), bytes for UTF-8
    keys = ["b_1", "b-1", "B", "a", "é", "z"]
    assert kaldi_sorted(keys) == ["B", "a", "b-1", "b_1", "z", "é"]
    utt2spk = {k: "s" + k for k in keys}
    d = DataDir(utt2spk=utt2spk, text={k: "w " + k for k in keys},
                wav_scp={k: f"/w/{k}.wav" for k in keys},
                utt2dur={k: 0.1 + i for i, k in enumerate(keys)})
    out = d.write(tmp_path / "w")
    lines = (out / "utt2spk").read_text(encoding="utf-8").splitlines()
    assert [l.split()[0] for l in lines] == ["B", "a", "b-1", "b_1", "z", "é"]
    assert (out / "spk2utt").read_text(encoding="utf-8").startswith("sB B\nsa a\n")
    assert not (out / "segments").exists()
    assert validate_data_dir(out, no_feats=True).ok
    back = DataDir.load(out)
    assert back.utt2spk == utt2spk and back.utt2dur == d.utt2dur and back.text == d.text
    # full base dir round trip
    d0 = DataDir.load(make_dir(tmp_path))
    d1 = DataDir.load(d0.write(tmp_path / "copy"))
    for f in ("wav_scp", "segments", "text", "utt2spk", "spk2utt", "feats_scp", "cmvn_scp",
              "utt2dur", "utt2num_frames", "spk2gender", "reco2file_and_channel"):
        assert getattr(d1, f) == getattr(d0, f), f
    validate_data_dir(tmp_path / "copy")


def test_utt2spk_spk2utt_conversions():
    u2s = {"b2": "b", "a1": "a", "b1": "b"}
    s2u = utt2spk_to_spk2utt(u2s)
    assert s2u == {"a": ["a1"], "b": ["b1", "b2"]} and list(s2u) == ["a", "b"]
    assert spk2utt_to_utt2spk(s2u) == {"a1": "a", "b1": "b", "b2": "b"}
    with pytest.raises(ValueError, match="a1"):
        spk2utt_to_utt2spk({"a": ["a1"], "b": ["a1"]})


def test_load_derives_spk2utt_and_raises_on_malformed(tmp_path):
    d = DataDir.load(make_dir(tmp_path, "nospk2utt", spk2utt=None))
    assert d.spk2utt == {"spk1": ["spk1-u1", "spk1-u2"], "spk2": ["spk2-u1"]}
    bad = make_dir(tmp_path, "bad", utt2spk="spk1-u1 spk1\nspk1-u2\nspk2-u1 spk2\n")
    with pytest.raises(KaldiFormatError) as e:
        DataDir.load(bad)
    assert e.value.line == 2 and e.value.filename.endswith("utt2spk") and "line 2" in str(e.value)
    bad = make_dir(tmp_path, "bad2", segments="spk1-u1 recA 0 x\n")
    with pytest.raises(KaldiFormatError, match="not a number"):
        DataDir.load(bad)


def test_subset(tmp_path):
    d = DataDir.load(make_dir(tmp_path))
    s = d.subset(["spk2-u1"])
    assert s.utterances == ["spk2-u1"] and list(s.wav_scp) == ["recB"]
    assert s.spk2utt == {"spk2": ["spk2-u1"]} and list(s.cmvn_scp) == ["spk2"]
    assert list(s.spk2gender) == ["spk2"] and list(s.reco2file_and_channel) == ["recB"]
    s.write(tmp_path / "sub")
    validate_data_dir(tmp_path / "sub")
    with pytest.raises(KeyError, match="nope"):
        d.subset(["nope"])
    assert d.subset(["nope", "spk1-u1"], strict=False).utterances == ["spk1-u1"]
    c = d.copy()
    c.text["spk1-u1"] = "changed"
    assert d.text["spk1-u1"] == "hello world"


# ---------------------------------------------------------------------------
# validation: one test per kind of error; every message names file and line

def test_valid_dir_passes(tmp_path):
    res = validate_data_dir(make_dir(tmp_path))
    assert res.ok and not res.warnings and "Successfully" in str(res)


def _one(err: DataDirError, fname: str, line, text: str):
    hits = [i for i in err.issues if Path(i.filename).name == fname and i.line == line
            and text in i.message]
    assert hits, "\n".join(map(str, err.issues))
    return hits[0]


def test_not_sorted(tmp_path):
    p = make_dir(tmp_path, utt2spk="spk1-u2 spk1\nspk1-u1 spk1\nspk2-u1 spk2\n")
    e = errors_of(p)
    _one(e, "utt2spk", 2, "not in sorted order")
    assert "utt2spk" in str(e) and "line 2" in str(e)


def test_duplicated_key(tmp_path):
    p = make_dir(tmp_path, text="spk1-u1 a\nspk1-u1 b\nspk1-u2 c\nspk2-u1 d\n")
    _one(errors_of(p), "text", 2, "duplicated key 'spk1-u1' (first at line 1)")


def test_utt_missing_from_text_feats_segments(tmp_path):
    p = make_dir(tmp_path, text="spk1-u1 a\nspk2-u1 d\n",
                 **{"feats.scp": "spk1-u1 x\nspk1-u2 y\n", "segments": "spk1-u1 recA 0 1\nspk1-u2 recA 1 2\nspk2-u1 recB 0 2\nspk3-u1 recB 2 3\n"})
    e = errors_of(p)
    _one(e, "utt2spk", 2, "'spk1-u2' is in utt2spk but not in text")
    _one(e, "utt2spk", 3, "'spk2-u1' is in utt2spk but not in feats.scp")
    _one(e, "segments", 4, "'spk3-u1' is in segments but not in utt2spk")


def test_spk2utt_inconsistent(tmp_path):
    e = errors_of(make_dir(tmp_path, spk2utt="spk1 spk1-u1\nspk2 spk2-u1 spk1-u2\n"))
    _one(e, "spk2utt", 1, "do not seem to match")
    _one(e, "spk2utt", 2, "do not seem to match")


def test_empty_transcript(tmp_path):
    e = errors_of(make_dir(tmp_path, text="spk1-u1 hello\nspk1-u2\nspk2-u1 yes\n"))
    _one(e, "text", 2, "empty transcript")
    assert validate_data_dir(make_dir(tmp_path, "nt", text="spk1-u1 hello\nspk1-u2\nspk2-u1 yes\n"),
                             no_text=True).ok


def test_bad_segments(tmp_path):
    seg = "spk1-u1 recA 1.5 1.5\nspk1-u2 recA 2.0 1.0\nspk2-u1 recC 0 2.5\n"
    e = errors_of(make_dir(tmp_path, segments=seg))
    _one(e, "segments", 1, "end time 1.5 <= start time 1.5")
    _one(e, "segments", 2, "end time 1.0 <= start time 2.0")
    _one(e, "segments", 3, "recording 'recC' is not in wav.scp")
    _one(e, "wav.scp", 2, "recording 'recB' is not used by any segment")


def test_keys_with_whitespace_and_format_problems(tmp_path):
    e = errors_of(make_dir(tmp_path, utt2spk=" spk1-u1 spk1\nspk1-u2 spk1\n\nspk2-u1 spk2 extra\n"))
    _one(e, "utt2spk", 1, "starts with whitespace")
    _one(e, "utt2spk", 3, "empty line")
    _one(e, "utt2spk", 4, "wrong format")
    e = errors_of(make_dir(tmp_path, "crlf", text="spk1-u1 a\r\nspk1-u2 b\nspk2-u1 c"))
    _one(e, "text", 1, "carriage return")
    _one(e, "text", 3, "invalid newline")
    e = errors_of(make_dir(tmp_path, "utf", text=b"spk1-u1 a\nspk1-u2 \xff\nspk2-u1 c\n"))
    _one(e, "text", 2, "invalid UTF-8")
    # only space and tab separate fields (as in Kaldi): a no-break space
    # stays inside the key and is reported
    e = errors_of(make_dir(tmp_path, "nbsp", text="spk1-u1\ta b\nspk1-u2\u00a0x c\nspk2-u1 c\n"))
    _one(e, "text", 2, "whitespace or non-printable character U+00A0")
    assert DataDir.load(make_dir(tmp_path, "tab", text="spk1-u1\ta\t b\n")).text == {"spk1-u1": "a b"}


def test_speaker_level_files(tmp_path):
    e = errors_of(make_dir(tmp_path, spk2gender="spk1 x\nspk3 f\n",
                           **{"cmvn.scp": "spk1 a\n"}))
    _one(e, "spk2gender", 1, "gender must be 'm' or 'f'")
    _one(e, "spk2gender", 2, "'spk3' is in spk2gender but not in spk2utt")
    _one(e, "spk2utt", 2, "'spk2' is in spk2utt but not in cmvn.scp")


def test_utt2dur_and_reco2file_and_channel(tmp_path):
    e = errors_of(make_dir(tmp_path, utt2dur="spk1-u1 1.5\nspk1-u2 -1\nspk2-u1 abc\n",
                           reco2file_and_channel="recA a 1\nrecB b C\n"))
    _one(e, "utt2dur", 2, "positive")
    _one(e, "utt2dur", 3, "not a number")
    _one(e, "reco2file_and_channel", 2, "bad channel 'C'")
    res = validate_data_dir(make_dir(tmp_path, "ok1", reco2file_and_channel="recA a 1\nrecB b A\n"))
    assert res.ok and res.warnings and res.warnings[0].line == 1


def test_missing_files_and_no_flags(tmp_path):
    p = make_dir(tmp_path, **{"feats.scp": None, "cmvn.scp": None})
    _one(errors_of(p), "feats.scp", None, "no such file")
    assert validate_data_dir(p, no_feats=True).ok
    p = make_dir(tmp_path, "nospk", spk2utt=None)
    _one(errors_of(p), "spk2utt", None, "no such file")
    # without segments wav.scp is keyed by utterance
    p = make_dir(tmp_path, "noseg", segments=None, reco2file_and_channel=None,
                 **{"wav.scp": "spk1-u1 a.wav\nspk2-u1 b.wav\n"})
    e = errors_of(p)
    _one(e, "utt2spk", 2, "'spk1-u2' is in utt2spk but not in wav.scp")
    assert validate_data_dir(p, no_wav=True).ok
    res = validate_data_dir(p, raise_on_error=False)
    assert not res.ok and len(res.errors) == 1


# ---------------------------------------------------------------------------
# features through scp files (written and read with kaldiio here)

def _write_feats(d: Path):
    feats = {u: np.random.default_rng(i).standard_normal((5 + i, 3)).astype(np.float32)
             for i, u in enumerate(["spk1-u1", "spk1-u2", "spk2-u1"])}
    with kaldiio.WriteHelper(f"ark,scp:{d}/raw.ark,{d}/feats.scp") as w:
        for u, m in feats.items():
            w(u, m)
    return feats


def test_feats_scp_written_with_kaldiio(tmp_path):
    d = make_dir(tmp_path, **{"feats.scp": None})
    feats = _write_feats(d)
    validate_data_dir(d)
    dd_ = DataDir.load(d)
    for u, m in feats.items():
        np.testing.assert_array_equal(kaldiio.load_mat(dd_.feats_scp[u]), m)


def test_load_feats_and_cmvn_through_kbind_io(tmp_path):
    from kbind.data.cmvn import compute_cmvn_stats_for_datadir, compute_cmvn_stats
    d = make_dir(tmp_path, **{"feats.scp": None, "cmvn.scp": None})
    feats = _write_feats(d)
    data = DataDir.load(d)
    stats = compute_cmvn_stats_for_datadir(data)
    with kaldiio.WriteHelper(f"ark,scp:{d}/cmvn.ark,{d}/cmvn.scp") as w:
        for spk, s in stats.items():
            w(spk, s)
    data = DataDir.load(d)
    for u, m in feats.items():
        np.testing.assert_array_equal(np.asarray(data.load_feats(u)), m)
    np.testing.assert_allclose(np.asarray(data.load_cmvn("spk2")), compute_cmvn_stats(feats["spk2-u1"]))
    assert [u for u, _ in data.iter_feats()] == list(feats)
    sub = data.subset(["spk1-u2"])
    np.testing.assert_array_equal(np.asarray(sub.load_feats("spk1-u2")), feats["spk1-u2"])

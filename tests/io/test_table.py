"""Tables: specifiers, archives, script files, pipes, random access, errors."""

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest

from kbind.io import (KaldiFormatError, KaldiIOError, RandomAccessTable, read_object,
                      read_table, write_table)
from kbind.io.specifier import parse_rspecifier, parse_wspecifier


def _ali_expected(kaldi_io_dir):
    return json.loads((kaldi_io_dir / "ali.expected.json").read_text())


@pytest.mark.parametrize("spec", ["ark:{d}/ali.ark", "ark:{d}/ali.txt.ark",
                                  "ark:gunzip -c {d}/ali.1.gz |", "scp:{scp}",
                                  "ark,s,cs:{d}/ali.ark", "ark,o:{d}/ali.ark"])
def test_alignment_tables(kaldi_io_dir, scp_copy, spec):
    exp = _ali_expected(kaldi_io_dir)
    spec = spec.format(d=kaldi_io_dir, scp=scp_copy("ali.scp"))
    got = list(read_table(spec, kind="int32_vector"))
    assert [k for k, _ in got] == exp["keys"]
    for k, v in got:
        assert v.dtype == np.int32
        assert v.tolist() == exp["values"][k]


def test_alignment_auto_kind(kaldi_io_dir):
    exp = _ali_expected(kaldi_io_dir)
    got = dict(read_table(f"ark:{kaldi_io_dir}/ali.ark"))
    assert {k: got[k].tolist() for k in exp["keys"]} == exp["values"]


@pytest.mark.parametrize("spec_fmt, src", [("ark:{}", "ali.ark"), ("ark,t:{}", "ali.txt.ark")])
def test_alignment_written_bytes_equal_kaldis(kaldi_io_dir, tmp_path, spec_fmt, src):
    out = tmp_path / "a.ark"
    with write_table(spec_fmt.format(out)) as w:
        for key, ali in read_table(f"ark:{kaldi_io_dir}/ali.ark", kind="ali"):
            w.write(key, ali)
    assert out.read_bytes() == (kaldi_io_dir / src).read_bytes()


def test_gzip_pipe_write_matches_kaldi(kaldi_io_dir, tmp_path):
    out = tmp_path / "ali.1.gz"
    with write_table(f"ark:| gzip -c -n > {out}") as w:
        for key, ali in read_table(f"ark:{kaldi_io_dir}/ali.ark"):
            w.write(key, ali)
    assert gzip.decompress(out.read_bytes()) == (kaldi_io_dir / "ali.ark").read_bytes()


@pytest.mark.parametrize("name", ["feats_mfcc13", "feats_fbank40", "feats_mfcc13.txt",
                                  "cmat_speech_fbank40", "cmat_2byte_auto_mfcc13"])
def test_scp_random_access(kaldi_io_dir, scp_copy, name):
    npz = np.load(kaldi_io_dir / f"{name}.expected.npz")
    table = RandomAccessTable(f"scp:{scp_copy(name + '.scp')}", kind="matrix")
    assert sorted(table.keys()) == sorted(npz.files)
    for key in reversed(npz.files):
        assert key in table
        got = table[key]
        exp = npz[key]
        assert got.size == exp.size
        np.testing.assert_array_equal(got.reshape(exp.shape) if exp.size == 0 else got, exp)
    assert "nope" not in table
    with pytest.raises(KeyError, match="key 'nope' not found"):
        table["nope"]


def test_ark_scp_write_offsets_equal_kaldis(kaldi_io_dir, tmp_path):
    ark, scp = tmp_path / "f.ark", tmp_path / "f.scp"
    with write_table(f"ark,scp:{ark},{scp}") as w:
        for key, mat in read_table(f"ark:{kaldi_io_dir}/feats_fbank40.ark"):
            w.write(key, mat)
    assert ark.read_bytes() == (kaldi_io_dir / "feats_fbank40.ark").read_bytes()
    ours = [ln.split() for ln in scp.read_text().splitlines()]
    kaldis = [ln.split() for ln in (kaldi_io_dir / "feats_fbank40.scp").read_text().splitlines()]
    assert [(k, p.rsplit(":", 1)[1]) for k, p in ours] == \
        [(k, p.rsplit(":", 1)[1]) for k, p in kaldis]
    assert all(p.rsplit(":", 1)[0] == str(ark) for _, p in ours)


def test_random_access_archive_and_pipe(kaldi_io_dir):
    for spec in (f"ark:{kaldi_io_dir}/feats_mfcc13.ark", f"ark:cat {kaldi_io_dir}/feats_mfcc13.ark |"):
        t = RandomAccessTable(spec)
        assert t["spk2-utt1"].shape == (5, 13)
        assert "spk1-utt2" in t and "x" not in t


def test_scp_matrix_ranges(kaldi_io_dir, tmp_path):
    full = RandomAccessTable(f"ark:{kaldi_io_dir}/feats_fbank40.ark")["spk1-utt1"]
    offset = [ln.split()[1].rsplit(":", 1)[1]
              for ln in (kaldi_io_dir / "feats_fbank40.scp").read_text().splitlines()][0]
    scp = tmp_path / "r.scp"
    scp.write_text(f"a {kaldi_io_dir}/feats_fbank40.ark:{offset}[2:5]\n"
                   f"b {kaldi_io_dir}/feats_fbank40.ark:{offset}[0:1,3:4]\n")
    got = dict(read_table(f"scp:{scp}"))
    np.testing.assert_array_equal(got["a"], full[2:6])
    np.testing.assert_array_equal(got["b"], full[0:2, 3:5])


def test_stdin_and_stdout(kaldi_io_dir, tmp_path):
    code = ("import sys; from kbind.io import read_table, write_table\n"
            "w = write_table('ark,t:-')\n"
            "[w.write(k, v) for k, v in read_table('ark:-')]\n"
            "w.close()\n")
    out = subprocess.run([sys.executable, "-c", code],
                         input=(kaldi_io_dir / "ali.ark").read_bytes(), capture_output=True,
                         check=True).stdout
    assert out == (kaldi_io_dir / "ali.txt.ark").read_bytes()


def test_single_object_with_offset(kaldi_io_dir):
    line = (kaldi_io_dir / "feats_mfcc13.scp").read_text().splitlines()[2]
    key, rx = line.split()
    got = read_object(rx.replace("FIXTURE_DIR", str(kaldi_io_dir)))
    np.testing.assert_array_equal(got, np.load(kaldi_io_dir / "feats_mfcc13.expected.npz")[key])


def test_specifier_parsing():
    r = parse_rspecifier("ark,s,cs,p:foo.ark")
    assert (r.kind, r.sorted, r.called_sorted, r.permissive, r.rxfilename) == \
        ("ark", True, True, True, "foo.ark")
    w = parse_wspecifier("ark,scp,t,f:a.ark,a.scp")
    assert (w.ark_wxfilename, w.scp_wxfilename, w.binary, w.flush) == ("a.ark", "a.scp", False, True)
    assert parse_wspecifier("ark:| gzip -c > x.gz").ark_wxfilename == "| gzip -c > x.gz"
    for bad in ("foo.ark", "ark,scp:x.ark", "ark,zz:x", "ark,scp:a.ark"):
        with pytest.raises(ValueError):
            (parse_wspecifier if "scp:" in bad else parse_rspecifier)(bad)
    with pytest.raises(ValueError, match="exactly one of ark or scp"):
        parse_rspecifier("ark,scp:x")


def test_bad_keys_rejected(tmp_path):
    with write_table(f"ark:{tmp_path / 'x.ark'}") as w:
        for bad in ("", "a b", "a\tb"):
            with pytest.raises(ValueError, match="invalid table key"):
                w.write(bad, np.zeros(2, np.int32))


def test_scp_only_writer_uses_scp_targets(tmp_path):
    scp = tmp_path / "t.scp"
    scp.write_text(f"u1 {tmp_path / 'u1.vec'}\nu2 {tmp_path / 'u2.vec'}\n")
    with write_table(f"scp:{scp}") as w:
        w.write("u1", np.array([1.0, 2.0], np.float32))
        with pytest.raises(KeyError):
            w.write("u9", np.array([1.0], np.float32))
    np.testing.assert_array_equal(read_object(str(tmp_path / "u1.vec")), [1.0, 2.0])
    with write_table(f"scp,p:{scp}") as w:
        w.write("u9", np.array([1.0], np.float32))  # permissive: skipped


# -- bad input ------------------------------------------------------------------------

def test_truncated_archive_names_file_key_offset(kaldi_io_dir):
    meta = {m["file"]: m for m in json.loads((kaldi_io_dir / "malformed.expected.json").read_text())}
    path = kaldi_io_dir / "bad_truncated.ark"
    seen = []
    with pytest.raises(KaldiFormatError) as ei:
        for key, _ in read_table(f"ark:{path}"):
            seen.append(key)
    assert seen == meta["bad_truncated.ark"]["keys_output_before_failure"]
    e = ei.value
    assert e.filename == str(path) and e.key == "spk2-utt1"
    assert e.offset is not None and 686 <= e.offset <= path.stat().st_size
    assert "spk2-utt1" in str(e) and str(path) in str(e) and "end of file" in str(e)


def test_ragged_text_matrix(kaldi_io_dir):
    path = kaldi_io_dir / "bad_ragged.txt.ark"
    with pytest.raises(KaldiFormatError, match=r"inconsistent #cols: 13 vs. 12 \(processing row 1\)") as ei:
        list(read_table(f"ark:{path}"))
    assert ei.value.key == "spk1-utt1" and ei.value.offset == 10  # Kaldi: "position at start is 10"


def test_permissive_archive_stops_at_error(kaldi_io_dir):
    keys = [k for k, _ in read_table(f"ark,p:{kaldi_io_dir}/bad_truncated.ark")]
    assert keys == ["spk1-utt1", "spk1-utt2"]


def test_wrong_type_token(tmp_path):
    p = tmp_path / "x.ark"
    p.write_bytes(b"utt1 \0BXM \x04\x01\x00\x00\x00")
    with pytest.raises(KaldiFormatError, match="expected matrix token") as ei:
        list(read_table(f"ark:{p}", kind="matrix"))
    assert ei.value.key == "utt1" and ei.value.offset == 7


def test_scp_offset_past_end(tmp_path, kaldi_io_dir):
    scp = tmp_path / "x.scp"
    scp.write_text(f"u {kaldi_io_dir}/ali.ark:99999\n")
    with pytest.raises(KaldiFormatError, match="past the end") as ei:
        list(read_table(f"scp:{scp}"))
    assert ei.value.offset == 99999 and ei.value.key == "u"
    assert list(read_table(f"scp,p:{scp}")) == []


def test_scp_missing_file_and_bad_line(tmp_path):
    scp = tmp_path / "x.scp"
    scp.write_text("u /nonexistent/file.ark:5\n")
    with pytest.raises(KaldiIOError, match="nonexistent"):
        list(read_table(f"scp:{scp}"))
    scp.write_text("good a.ark:1\nlonely\n")
    with pytest.raises(KaldiFormatError, match="line 2"):
        list(read_table(f"scp:{scp}"))


def test_failing_pipe_raises_with_command(tmp_path):
    with pytest.raises(KaldiIOError, match="exit status"):
        list(read_table("ark:sh -c 'exit 3' |"))


def test_corrupt_gzip_names_the_command(tmp_path, kaldi_io_dir):
    data = (kaldi_io_dir / "ali.1.gz").read_bytes()
    bad = tmp_path / "bad.gz"
    bad.write_bytes(data[:40] + b"\xff" * 10 + data[50:])
    with pytest.raises((KaldiIOError, KaldiFormatError)) as ei:
        list(read_table(f"ark:gunzip -c {bad} |"))
    assert "gunzip" in str(ei.value)


def test_writer_keeps_entries_written_before_a_failure(tmp_path):
    ark = tmp_path / "x.ark"
    with pytest.raises(TypeError):
        with write_table(f"ark:{ark}") as w:
            w.write("a", np.ones((2, 2), np.float32))
            w.write("b", object())
    assert [k for k, _ in read_table(f"ark:{ark}")] == ["a"]


def test_missing_file_raises_ioerror(tmp_path):
    with pytest.raises(KaldiIOError, match="cannot open"):
        list(read_table(f"ark:{tmp_path}/none.ark"))


def test_auto_kind_tells_text_fst_lattice_and_compact_lattice(tmp_path):
    from kbind.io.fst import Fst
    from kbind.io.lattice import CompactLattice, Lattice

    ark = tmp_path / "x.ark"
    ark.write_text("f \n0\t1\t3\t3\t0.5\n1\n\n"
                   "l \n0\t1\t7\t3\t1.5,2.5\n1\t0.25,0\n\n"
                   "c \n0\t1\t3\t1.5,2.5,7_7_8\n1\t0,0,9\n\n")
    got = dict(read_table(f"ark:{ark}"))
    assert isinstance(got["f"], Fst)
    assert isinstance(got["l"], Lattice)
    assert isinstance(got["c"], CompactLattice)
    assert got["c"].final_string(1) == [9]
    assert got["l"].arc_weight.tolist() == [[1.5, 2.5]]

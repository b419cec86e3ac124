"""Kaldi alignment dirs and ali archives (kbind.align.alidir), checked
against alignments written by Kaldi (shared/fixtures/kaldi-io: ali.1.gz and
Kaldi's own ali-to-phones / ali-to-pdf outputs in ali.expected.json) and
against kaldiio as an independent reader of what we write."""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pytest

from kbind.align import AlignmentDir, AlignOptions, ForcedAligner, read_alignments, \
    write_alignments
from kbind.hmm import ali_to_pdf, ali_to_phones
from kbind.io import KaldiFormatError, KaldiIOError, read_table
from tests.align.test_aligner import oracle_loglikes, random_alignment
from tests.hmm.test_graph_compiler import models, toy_lang

FAKE_AM = b"<Nnet3> fake acoustic model bytes that must not be read \x00\x01\x02"


@pytest.fixture
def ali_dir(tmp_path, kaldi_io_dir):
    """A Kaldi-style alignment dir from the fixtures: final.mdl = the
    transition model followed by an acoustic-model blob, tree, ali.1.gz,
    num_jobs."""
    d = tmp_path / "tri1_ali"
    d.mkdir()
    (d / "final.mdl").write_bytes((kaldi_io_dir / "trans.mdl").read_bytes() + FAKE_AM)
    shutil.copy(kaldi_io_dir / "tree", d / "tree")
    shutil.copy(kaldi_io_dir / "ali.1.gz", d / "ali.1.gz")
    (d / "num_jobs").write_text("1\n")
    return d


def expected(kaldi_io_dir):
    return json.loads((kaldi_io_dir / "ali.expected.json").read_text())


def test_load_kaldi_alignment_dir(ali_dir, kaldi_io_dir):
    exp = expected(kaldi_io_dir)
    ad = AlignmentDir.load(ali_dir)
    assert ad.num_jobs == 1 and ad.tree is not None
    assert ad.trans_model.num_transition_ids == 48 and ad.trans_model.num_pdfs == 20
    assert list(ad.alignments) == exp["keys"]
    for k in exp["keys"]:
        assert ad.alignments[k].dtype == np.int32
        assert ad.alignments[k].tolist() == exp["values"][k]
    pdfs = ad.pdf_alignments()
    phones = ad.phone_alignments(per_frame=False)
    lengths = ad.phone_alignments(write_lengths=True)
    per_frame = ad.phone_alignments()
    for k in exp["keys"]:  # Kaldi's ali-to-pdf / ali-to-phones outputs
        assert pdfs[k].tolist() == exp["pdfs"][k]
        assert phones[k].tolist() == exp["phones"][k]
        assert [list(x) for x in lengths[k]] == exp["phone_lengths"][k]
        assert per_frame[k].tolist() == [p for p, n in exp["phone_lengths"][k] for _ in range(n)]


def test_load_without_num_jobs_and_multi_job(ali_dir, kaldi_io_dir, tmp_path):
    exp = expected(kaldi_io_dir)
    ad = AlignmentDir.load(ali_dir)
    out = tmp_path / "split"
    ad.write(out, num_jobs=2, model_bytes=FAKE_AM)
    assert (out / "ali.2.gz").exists()
    (out / "num_jobs").unlink()  # found from the ali.N.gz files
    back = AlignmentDir.load(out)
    assert back.num_jobs == 2
    assert {k: v.tolist() for k, v in back.alignments.items()} == exp["values"]


def test_load_errors(ali_dir, kaldi_io_dir):
    (ali_dir / "num_jobs").write_text("2\n")
    with pytest.raises(FileNotFoundError, match=r"ali\.2\.gz"):
        AlignmentDir.load(ali_dir)
    (ali_dir / "num_jobs").write_text("two\n")
    with pytest.raises(ValueError, match="num_jobs"):
        AlignmentDir.load(ali_dir)
    (ali_dir / "num_jobs").write_text("1\n")
    # truncated archive: the error names the file
    data = gzip.decompress((ali_dir / "ali.1.gz").read_bytes())
    (ali_dir / "ali.1.gz").write_bytes(gzip.compress(data[:-7]))
    with pytest.raises((KaldiFormatError, KaldiIOError), match=r"ali\.1\.gz|gunzip"):
        AlignmentDir.load(ali_dir)
    # a transition-id the model does not have: names file, key and frame
    write_alignments(f"ark:| gzip -c > {ali_dir / 'ali.1.gz'}",
                     [("uttA", np.array([1, 2, 3], np.int32)),
                      ("uttB", np.array([1, 49], np.int32))])
    with pytest.raises(ValueError, match=r"ali\.1\.gz: key uttB, frame 1: transition-id 49"):
        AlignmentDir.load(ali_dir)
    (ali_dir / "final.mdl").write_bytes(b"\0B<Nnet3> not a transition model")
    with pytest.raises(KaldiFormatError, match="final.mdl"):
        AlignmentDir.load(ali_dir)
    (ali_dir / "final.mdl").unlink()
    with pytest.raises(FileNotFoundError, match="final.mdl"):
        AlignmentDir.load(ali_dir)


def test_round_trip_aligned_utterances(tmp_path):
    """Align, write as ali.1.gz, read back with kbind.io and with kaldiio,
    convert with ali_to_pdf / ali_to_phones."""
    kaldiio = pytest.importorskip("kaldiio")
    lang = toy_lang(tmp_path, words=[("x", ("AA",)), ("y", ("B", "IY"))])
    tree, tm = models(lang, seed=1)
    al = ForcedAligner(tm, tree, lang, AlignOptions())
    rng = np.random.default_rng(4)
    items, truth = [], {}
    for k, words in enumerate([["x"], ["y", "x"], ["x", "y", "y"]]):
        ali = random_alignment(al.compiler.compile(al.word_ids(words)), rng, 20 + 8 * k)
        truth[f"utt{k}"] = ali
        items.append((f"utt{k}", al.compile(words), oracle_loglikes(tm, ali, rng, margin=8.0)))
    res = al.align_many(items, num_threads=2)
    assert all(r.ok for r in res)
    path = tmp_path / "ali.1.gz"
    assert write_alignments(f"ark:| gzip -c > {path}", res) == 3
    back = dict(read_alignments(path))
    also = dict(read_table(f"ark:gunzip -c {path} |", kind="int32_vector"))
    with kaldiio.ReadHelper(f"ark:gunzip -c {path} |") as reader:
        theirs = {k: np.asarray(v) for k, v in reader}
    for r in res:
        assert back[r.key].tolist() == r.alignment.tolist() == also[r.key].tolist()
        assert theirs[r.key].tolist() == r.alignment.tolist()
        pdf = ali_to_pdf(tm, back[r.key])
        assert np.array_equal(pdf, tm.tid2pdf[truth[r.key]])
        lens = ali_to_phones(tm, back[r.key], write_lengths=True)
        assert sum(n for _p, n in lens) == r.num_frames
    # an alignment dir made of them loads
    d = tmp_path / "exp_ali"
    d.mkdir()
    (d / "final.mdl").write_bytes(tm.to_bytes(True) + FAKE_AM)
    tree.to_file(str(d / "tree"))
    shutil.copy(path, d / "ali.1.gz")
    ad = AlignmentDir.load(d)
    assert sorted(ad.alignments) == ["utt0", "utt1", "utt2"]
    # text archives too
    write_alignments(f"ark,t:{tmp_path}/ali.txt", {r.key: r.alignment for r in res})
    line = (tmp_path / "ali.txt").read_text().splitlines()[0].split()
    assert line[0] == "utt0" and [int(x) for x in line[1:]] == res[0].alignment.tolist()

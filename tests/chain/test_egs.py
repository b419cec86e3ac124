"""On-the-fly chain egs: chunking, context, padding, frame shifts, merging."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch

from kbind.chain import Supervision
from kbind.chain.egs import (AlignmentSupervisions, ChainEgs, E2eSupervisions, EgsConfig,
                             FeatureSource, MinibatchRule, allowed_lengths,
                             extract_with_padding, feature_offset_for_shift,
                             parse_chunk_widths, split_utterance)
from kbind.chain.den_fst import make_linear_acceptor
from kbind.chain.supervision import _numerator_fst
from tests.train import FIXTURES, make_data_dir

LC, RC = 7, 4


class _DummySup:
    """Chunk supervision stand-in: a linear graph of ``num_frames`` arcs."""
    whole_utterances = False
    kind = "constrained"

    def __init__(self, lengths):
        self.lengths = lengths
        self.calls = []

    def has(self, utt):
        return utt in self.lengths

    def num_frames(self, utt):
        return self.lengths[utt]

    def get(self, utt, start, num_frames):
        self.calls.append((utt, start, num_frames))
        return _numerator_fst(make_linear_acceptor([1] * num_frames).to_fst(), 0)


class _DummyE2e(_DummySup):
    whole_utterances = True
    kind = "e2e"

    def get(self, utt, start=0, num_frames=None):
        self.calls.append((utt, start, num_frames))
        f = make_linear_acceptor([1, 2])
        f.add_arc(1, 2, 2, 0.0, 1)          # a self-loop: cyclic like e2e graphs
        return _numerator_fst(f.to_fst(), 0)


LENGTHS = {"a-1": 400, "a-2": 151, "b-1": 99, "b-2": 260, "b-3": 330, "c-1": 120}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("egs") / "train", LENGTHS)


def test_parse_chunk_widths():
    assert parse_chunk_widths("150,110,100", 3) == [150, 111, 102]
    assert parse_chunk_widths(140, 3) == [141]
    assert parse_chunk_widths("150,150", 1) == [150]
    with pytest.raises(ValueError):
        parse_chunk_widths("", 3)


def test_minibatch_rule():
    r = MinibatchRule("128=64,32/300=32,16")
    assert r.sizes(100) == [64, 32]
    assert r.sizes(128) == [64, 32]
    assert r.sizes(200) == [32, 16]
    assert r.sizes(5000) == [32, 16]
    assert MinibatchRule("128,64").sizes(10 ** 6) == [128, 64]
    assert MinibatchRule("1:4").sizes(1) == [4, 3, 2, 1]


def test_frame_shift_offsets():
    # Kaldi: input shifted by s, supervision by the nearest multiple of 3
    assert [feature_offset_for_shift(s, 3) for s in range(3)] == [0, -1, 1]
    assert feature_offset_for_shift(0, 1) == 0


def test_extract_with_padding():
    x = np.arange(5, dtype=np.float32)[:, None]
    assert extract_with_padding(x, -2, 7)[:, 0].tolist() == [0, 0, 0, 1, 2, 3, 4, 4, 4]
    assert extract_with_padding(x, 1, 3)[:, 0].tolist() == [1, 2]


def test_allowed_lengths():
    a = allowed_lengths([100, 151, 400], 3, 1.1)
    assert a[0] == 102 and a[-1] >= 400
    assert all(x % 3 == 0 for x in a)
    assert all(b > a_ for a_, b in zip(a, a[1:]))
    assert all(b <= a_ * 1.1 + 3 for a_, b in zip(a, a[1:]))


@pytest.mark.parametrize("n", [99, 100, 102, 150, 151, 260, 330, 400, 1000])
def test_split_utterance(n):
    widths = parse_chunk_widths("150,110,100", 3)
    for seed in range(5):
        chunks = split_utterance(n, widths, 3, random.Random(seed))
        if n < 102:
            assert chunks == []
            continue
        assert chunks
        for s, w in chunks:
            assert w in widths and s % 3 == 0 and 0 <= s and s + w <= n
        covered = sum(w for _, w in chunks)
        assert abs(covered - n) <= widths[0]       # about the utterance's length
    # deterministic
    assert split_utterance(400, widths, 3, random.Random(1)) == \
        split_utterance(400, widths, 3, random.Random(1))


def test_chunk_egs_context_and_frames(data):
    sup = _DummySup(LENGTHS)
    cfg = EgsConfig(chunk_width="150,110,100", cmvn="none", minibatch_size="2",
                    frame_shift=True)
    egs = ChainEgs(FeatureSource(data, "none"), sup, LC, RC, cfg, fss=3, seed=3)
    feats = FeatureSource(data, "none")
    seen_offsets = set()
    for epoch in range(3):
        plan = egs.batches(epoch)
        assert plan and plan == egs.batches(epoch)       # deterministic
        ds = egs.dataset(epoch)
        assert len(ds) == len(plan)
        for i, batch in enumerate(plan):
            assert len({c.width for c in batch}) == 1       # one chunk width per minibatch
            x, s, lengths = ds[i]
            w = batch[0].width
            assert x.shape == (len(batch), LC + w + RC, 5)
            assert isinstance(s, Supervision) and s.frames == [w // 3] * len(batch)
            assert lengths.tolist() == [w // 3] * len(batch)
            for b, c in enumerate(batch):
                n = LENGTHS[c.utt]
                assert c.start % 3 == 0 and c.start + w <= n
                seen_offsets.add(c.offset)
                want = np.clip(np.arange(c.start + c.offset - LC, c.start + c.offset + w + RC),
                               0, n - 1)
                assert x[b, :, 0].numpy().tolist() == want.astype(np.float32).tolist()
                np.testing.assert_array_equal(x[b, :, 1:].numpy(),
                                              feats(c.utt)[want, 1:])
    assert seen_offsets == {-1, 0, 1}
    # utterances shorter than the smallest chunk are skipped; others are covered
    utts = {c.utt for c in egs.chunks(0)}
    assert "b-1" not in utts and {"a-1", "b-3", "b-2", "a-2", "c-1"} <= utts
    assert egs.batches(0) != egs.batches(1)


def test_no_frame_shift(data):
    cfg = EgsConfig(chunk_width="150", cmvn="none", minibatch_size="1", frame_shift=False)
    egs = ChainEgs(FeatureSource(data, "none"), _DummySup(LENGTHS), LC, RC, cfg, seed=0)
    assert {c.offset for c in egs.chunks(0)} == {0}
    # sizes of the supervision requested: output frames from start/3
    ds = egs.dataset(0)
    for i in range(len(ds)):
        ds[i]
    for (utt, start, num), c in zip(egs.sup.calls, [b[0] for b in ds.plan]):
        assert (utt, start, num) == (c.utt, c.start // 3, 50)


def test_minibatch_sizes_and_leftovers(data):
    lengths = {f"s{i // 4}-{i}": 151 for i in range(11)}
    d = make_data_dir(data.parent / "mb", lengths)
    cfg = EgsConfig(chunk_width="150", cmvn="none", minibatch_size="4,2", frame_shift=False)
    egs = ChainEgs(FeatureSource(d, "none"), _DummySup(lengths), LC, RC, cfg)
    sizes = sorted(len(b) for b in egs.batches(0))
    assert sizes == [2, 4, 4]              # 11 egs: 4 + 4 + 2, one dropped
    cfg.max_frames_per_minibatch = 3 * (LC + 150 + RC)
    egs = ChainEgs(FeatureSource(d, "none"), _DummySup(lengths), LC, RC, cfg)
    assert sorted(len(b) for b in egs.batches(0)) == [2, 3, 3, 3]


def test_cmvn_speaker_mean(data):
    raw = FeatureSource(data, "none")
    spk = FeatureSource(data, "speaker")
    utts = [u for u in LENGTHS if u.startswith("b-")]
    total = sum(spk(u).sum(0) for u in utts)
    count = sum(LENGTHS[u] for u in utts)
    np.testing.assert_allclose(total / count, 0.0, atol=1e-3)      # speaker mean removed
    np.testing.assert_allclose(spk("b-1").std(0), raw("b-1").std(0), rtol=1e-5)  # no var norm
    utt = FeatureSource(data, "utterance", norm_vars=True)
    np.testing.assert_allclose(utt("a-1").std(0), 1.0, rtol=1e-3)


@pytest.mark.parametrize("mode", ["similar", "allowed_lengths"])
def test_e2e_whole_utterances(data, mode):
    sup = _DummyE2e(LENGTHS)
    # allowed lengths: one bucket per utterance here, so leftovers need size 1
    mb = "3" if mode == "similar" else "3,1"
    cfg = EgsConfig(cmvn="none", minibatch_size=mb, e2e_batching=mode, frame_shift=True)
    egs = ChainEgs(FeatureSource(data, "none"), sup, LC, RC, cfg, seed=1)
    plan = egs.batches(0)
    assert sum(len(b) for b in plan) == 6        # every utterance
    any_unequal = False
    for i, batch in enumerate(plan):
        x, s, lengths = egs.collate(batch)
        assert s.kind == "e2e"
        wmax = max(c.width for c in batch)
        assert x.shape[1] == LC + wmax + RC
        for b, c in enumerate(batch):
            n = LENGTHS[c.utt]
            assert c.start == 0
            if mode == "allowed_lengths":
                assert c.width == c.bucket >= n and c.width % 3 == 0
                assert c.width in egs.allowed
            else:
                assert c.width == n
            assert lengths[b] == -(-c.width // 3)
            # whole utterance with context; edges repeat; padding at the end repeats
            want = np.clip(np.arange(c.offset - LC, c.offset + c.width + RC), 0, n - 1)
            got = x[b, :LC + c.width + RC, 0].numpy()
            assert got.tolist() == want.astype(np.float32).tolist()
            assert (x[b, LC + c.width + RC:, 0] == got[-1]).all()
        if mode == "allowed_lengths":
            assert len({c.width for c in batch}) == 1          # Kaldi: equal lengths
        else:
            any_unequal |= len(set(lengths.tolist())) > 1
    if mode == "similar":
        assert any_unequal                                     # kbind: unequal lengths


def test_alignment_supervision_matches_kaldi():
    """Chunks cut from the fixture's alignments give Kaldi's numerator."""
    from kbind.chain import numerator_logprob
    from kbind.chain.supervision_maker import read_phone_ali
    from kbind.hmm import ContextDependency, TransitionModel
    from kbind.io.fst import Fst
    d = FIXTURES / "tiny_chain_S3_T15"
    tree = ContextDependency.from_file(str(d / "tree"))
    tm = TransitionModel.from_file(str(d / "0.trans_mdl"))
    norm = Fst.from_file(str(d / "normalization.fst"))
    sup = AlignmentSupervisions(read_phone_ali(d / "phone_ali.txt"), tree, tm, norm)
    chunks = [ln.split() for ln in (d / "chunks.txt").read_text().splitlines()]
    ours = Supervision([sup.get(u, int(s), 15) for u, s in chunks], [15] * 3, [1.0] * 3,
                       "constrained")
    kaldi = Supervision.from_fsts([d / f"sup_seq{i}.fst" for i in range(3)])
    y = torch.from_numpy(np.load(d / "nnet_output.npy")).reshape(15, 3, 10).transpose(0, 1)
    torch.testing.assert_close(numerator_logprob(ours, y), numerator_logprob(kaldi, y))


def _tiny_models():
    from kbind.hmm import ContextDependency, TransitionModel
    from kbind.io.fst import Fst
    d = FIXTURES / "tiny_chain_S3_T15"
    return (ContextDependency.from_file(str(d / "tree")),
            TransitionModel.from_file(str(d / "0.trans_mdl")),
            Fst.from_file(str(d / "normalization.fst")))


def test_rejected_supervision_skips_only_that_eg(tmp_path, caplog):
    """Kaldi skips an eg whose supervision cannot be made (here nine phones in
    three output frames: "Supervision FST is empty"), with a warning naming it;
    the rest of the minibatch is trained."""
    from kbind.chain.supervision_maker import SupervisionRejected
    tree, tm, norm = _tiny_models()
    ali = {"ok-1": [(1, 9), (2, 12), (3, 9)],
           "bad-1": [(p, 1) for p in [1, 2, 3, 4, 5, 1, 2, 3, 4]] + [(5, 21)]}
    d = make_data_dir(tmp_path / "data", {u: 30 for u in ali})
    sup = AlignmentSupervisions(ali, tree, tm, norm)
    with pytest.raises(SupervisionRejected, match="too many phones"):
        sup.get("bad-1", 0, 10)
    egs = ChainEgs(FeatureSource(d, "none"), sup, LC, RC,
                   EgsConfig(chunk_width="30", cmvn="none", minibatch_size="2",
                             frame_shift=False))
    (batch,) = egs.batches(0)
    with caplog.at_level(logging.WARNING, logger="kbind.chain.egs"):
        x, s, lengths = egs.collate(batch)
    assert x.shape[0] == 1 and lengths.tolist() == [10]
    assert any("bad-1" in r.getMessage() and "too many phones" in r.getMessage()
               for r in caplog.records)


def test_corrupt_numerator_graph_is_an_error(tmp_path):
    """A corrupt fst.ark entry is not an eg to skip: it raises, naming the file,
    the key and the byte offset, instead of dropping the utterance from every
    epoch."""
    from kbind.chain.supervision_maker import (add_weight_to_supervision,
                                               training_graph_to_e2e_fst)
    from kbind.io import KaldiFormatError, RandomAccessTable
    from tests.train import make_chain_dir, sample_phone_ali_from_den, write_e2e_graphs
    tree, tm, norm = _tiny_models()
    chain = make_chain_dir(tmp_path / "chain")
    ali = sample_phone_ali_from_den(chain, ["a-1", "a-2", "b-1"], seed=2)
    d = make_data_dir(tmp_path / "data", {u: sum(n for _, n in a) for u, a in ali.items()})
    write_e2e_graphs(chain, {u: [p for p, _ in a] for u, a in ali.items()})
    entries = dict(ln.split() for ln in (chain / "fst.scp").read_text().splitlines())
    offset = int(entries["a-2"].rsplit(":", 1)[1])
    ark = bytearray((chain / "fst.ark").read_bytes())
    ark[offset + 20:offset + 40] = b"\xff" * 20          # inside the FST header
    (chain / "fst.ark").write_bytes(bytes(ark))
    table = RandomAccessTable(f"scp:{chain}/fst.scp", kind="fst")
    sup = E2eSupervisions(lambda u: add_weight_to_supervision(
        training_graph_to_e2e_fst(table[u], tm), norm, e2e=True))
    egs = ChainEgs(FeatureSource(d, "none"), sup, LC, RC,
                   EgsConfig(cmvn="none", minibatch_size="3", frame_shift=False))
    (batch,) = egs.batches(0)
    with pytest.raises(KaldiFormatError, match=rf"fst\.ark, key 'a-2', byte offset {offset}"):
        egs.collate(batch)

"""CE frame egs: chunk contents, label placement, context, tolerance, errors."""

from __future__ import annotations

import numpy as np
import pytest

from kbind.data.frame_egs import IGNORE, FrameEgs, FrameEgsConfig
from kbind.nn import BLSTM, TDNN, BlstmConfig, TdnnConfig


class Feats:
    """A FeatureSource stand-in: frame j of utterance u is [u_index, j]."""

    def __init__(self, lengths):
        self.lengths = lengths
        self.utterances = sorted(lengths)

    def __call__(self, u):
        n = self.lengths[u]
        return np.stack([np.full(n, self.utterances.index(u)), np.arange(n)], 1).astype(
            np.float32)

    def num_frames(self, u):
        return self.lengths[u]

    @property
    def dim(self):
        return 2


def labels_for(lengths, fss):
    rng = np.random.default_rng(0)
    return {u: rng.integers(0, 7, -(-n // fss)) for u, n in lengths.items()}


@pytest.mark.parametrize("fss,lc,rc,el,er", [(1, 0, 0, 0, 0), (1, 2, 3, 0, 0),
                                             (3, 0, 0, 6, 3), (3, 4, 5, 3, 0)])
def test_chunk_features_and_labels(fss, lc, rc, el, er):
    lengths = {"a": 47, "b": 95, "c": 20, "d": 130}
    feats = Feats(lengths)
    labels = labels_for(lengths, fss)
    cfg = FrameEgsConfig(chunk_width="30,24", extra_left_context=el, extra_right_context=er,
                         minibatch_size=3)
    egs = FrameEgs(feats, labels, lc, rc, cfg, fss, seed=1, num_pdfs=7)
    seen = 0
    for batch in egs.batches(0):
        x, y, lengths_in = egs.collate(batch)
        t_max = max(c.width for c in batch)
        assert x.shape[1] == lc + el + t_max + er + rc
        assert y.shape[1] == -(-(el + t_max + er) // fss)
        for b, c in enumerate(batch):
            n = lengths[c.utt]
            # input rows: utterance frames start - lc - el ... clipped at the edges
            for j in range(lc + el + c.width + er + rc):
                assert x[b, j, 1] == min(max(c.start - lc - el + j, 0), n - 1)
            assert lengths_in[b] == lc + el + c.width + er + rc
            # output k is input time start - el + k*fss; trained iff inside the chunk
            for k in range(y.shape[1]):
                t = c.start - el + k * fss
                if c.start <= t < c.start + c.width:
                    assert y[b, k] == labels[c.utt][t // fss]
                    seen += 1
                else:
                    assert y[b, k] == IGNORE
    assert seen > 0


def test_short_utterance_is_one_chunk():
    egs = FrameEgs(Feats({"a": 10}), {"a": np.zeros(10, dtype=int)}, 0, 0,
                   FrameEgsConfig(chunk_width="50"), 1)
    (batch,) = egs.batches(0)
    assert [(c.start, c.width) for c in batch] == [(0, 10)]


def test_length_tolerance():
    feats = Feats({"a": 30})
    egs = FrameEgs(feats, {"a": np.arange(9) % 3}, 0, 0, FrameEgsConfig(), 3)
    lab = egs.utterance_labels("a")                 # 10 output frames, 9 labels
    assert lab.tolist() == (np.arange(9) % 3).tolist() + [IGNORE]
    egs = FrameEgs(feats, {"a": np.zeros(5, dtype=int)}, 0, 0, FrameEgsConfig(), 3)
    with pytest.raises(ValueError, match="utterance a: 5 alignment frames.*10 output"):
        egs.utterance_labels("a")


def test_bad_config_and_pdf_range():
    with pytest.raises(ValueError, match="extra_left_context=2 must be"):
        FrameEgs(Feats({"a": 30}), {"a": np.zeros(10)}, 0, 0,
                 FrameEgsConfig(extra_left_context=2), 3)
    egs = FrameEgs(Feats({"a": 30}), {"a": np.full(30, 9)}, 0, 0, FrameEgsConfig(), 1,
                   num_pdfs=5)
    with pytest.raises(ValueError, match="utterance a: pdf-id 9 out of range for 5"):
        egs.utterance_labels("a")


@pytest.mark.parametrize("kind", ["tdnn", "blstm"])
def test_model_output_matches_label_frames(kind):
    """The egs' label length is what the model produces for the egs' input."""
    lengths = {"a": 61, "b": 100}
    if kind == "tdnn":
        model = TDNN(2, 7, TdnnConfig(dim=8, splices=[(-1, 0, 1), (-3, 0, 3)],
                                      frame_subsampling_factor=3))
        el = er = 0
    else:
        model = BLSTM(2, 7, BlstmConfig(hidden_dim=4, num_layers=1,
                                        frame_subsampling_factor=3))
        el, er = 6, 3
    egs = FrameEgs(Feats(lengths), labels_for(lengths, 3), model.left_context,
                   model.right_context, FrameEgsConfig(chunk_width="30", extra_left_context=el,
                                                       extra_right_context=er), 3)
    for batch in egs.batches(0):
        x, y, lens = egs.collate(batch)
        out = model(x, lens).output if kind == "blstm" else model(x).output
        assert out.shape[1] == y.shape[1]

"""AcousticModel (save / load, priors) and whole-utterance log-likelihoods."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kbind.decode.acoustic import AcousticModel, build_model, compute_loglikes
from kbind.nn import TdnnConfig
from kbind.train.priors import LabelPriors


class Feats:
    def __init__(self, lengths, dim=5, seed=0):
        rng = np.random.default_rng(seed)
        self.data = {u: rng.normal(size=(n, dim)).astype(np.float32) for u, n in lengths.items()}
        self.utterances = sorted(lengths)

    def __call__(self, u):
        return self.data[u]

    def num_frames(self, u):
        return self.data[u].shape[0]


def models():
    torch.manual_seed(0)
    tdnn = build_model("tdnn", 5, 7, TdnnConfig(dim=8, splices=[(-2, 0, 2), (-3, 0, 3)],
                                                 frame_subsampling_factor=3))
    blstm = build_model("blstm", 5, 7, {"hidden_dim": 6, "num_layers": 2,
                                        "frame_subsampling_factor": 3})
    return {"tdnn": tdnn, "blstm": blstm}


@pytest.mark.parametrize("kind", ["tdnn", "blstm"])
def test_batched_equals_one_at_a_time(kind):
    """Padding utterances of different lengths into one batch changes nothing:
    compared with each utterance run alone, edges padded as nnet3-compute does."""
    from kbind.chain.egs import extract_with_padding
    model = models()[kind].eval()
    feats = Feats({"a": 31, "b": 45, "c": 44, "d": 9, "e": 60})
    got = compute_loglikes(model, feats, max_frames_per_batch=10000)
    lc, rc = model.left_context, model.right_context
    for u in feats.utterances:
        x = torch.from_numpy(extract_with_padding(feats(u), -lc, feats.num_frames(u) + rc))
        alone = model(x[None]).output[0]
        assert got[u].shape == (-(-feats.num_frames(u) // 3), 7)
        torch.testing.assert_close(got[u], alone, atol=2e-5, rtol=1e-4)


def test_priors_and_round_trip(tmp_path):
    model = models()["blstm"]
    pri = LabelPriors(np.array([5, 1, 0, 3, 3, 2, 9], dtype=float))
    am = AcousticModel(model, "blstm", pri, prior_scale=0.7)
    am.save(tmp_path / "final.pt")
    back = AcousticModel.load(tmp_path)
    assert back.model_type == "blstm" and back.prior_scale == 0.7
    feats = Feats({"a": 12})
    ll = compute_loglikes(back, feats)["a"]
    logits = model.eval()(torch.from_numpy(feats("a"))[None]).output[0]
    p = (np.array([5, 1, 0, 3, 3, 2, 9]) + 1.0) / 30.0
    expect = torch.log_softmax(logits, -1) - 0.7 * torch.log(torch.tensor(p, dtype=torch.float32))
    torch.testing.assert_close(ll, expect, atol=1e-5, rtol=1e-5)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        AcousticModel.load(tmp_path)
    torch.save({"x": 1}, tmp_path / "final.pt")
    with pytest.raises(ValueError, match="not a kbind model file"):
        AcousticModel.load(tmp_path / "final.pt")
    with pytest.raises(ValueError, match="unknown model type 'lstm'"):
        build_model("lstm", 5, 7)

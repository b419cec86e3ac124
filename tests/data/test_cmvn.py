"""kbind.data.cmvn against closed forms and kaldi-native-fbank."""

from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np
import pytest
import torch

from kbind.data.cmvn import (
    CmvnStats,
    apply_cmvn,
    apply_cmvn_per_speaker,
    apply_cmvn_per_utterance,
    compute_cmvn_stats,
    compute_cmvn_stats_per_speaker,
    compute_global_cmvn_stats,
)


def _feats(n, d=5, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)) * np.arange(1, d + 1) + 10 * np.arange(d)).astype(np.float32)


def test_stats_closed_form_and_knf():
    x = _feats(50)
    s = compute_cmvn_stats(x)
    assert s.shape == (2, 6) and s.dtype == np.float64
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(s[0, :5], x64.sum(0), rtol=1e-12)
    np.testing.assert_allclose(s[1, :5], (x64 ** 2).sum(0), rtol=1e-12)
    assert s[0, 5] == 50 and s[1, 5] == 0
    np.testing.assert_allclose(s, knf.compute_cmvn_stats(x), rtol=1e-12)
    acc = knf.CmvnAccumulator(5)
    acc.accumulate(x[:20])
    acc.accumulate(x[20:])
    mine = CmvnStats().accumulate(x[:20]).accumulate(torch.from_numpy(x[20:]))
    np.testing.assert_allclose(mine.stats, np.array(acc.stats), rtol=1e-12)
    np.testing.assert_allclose(mine.stats, s, rtol=1e-12)
    assert mine.count == 50


def test_weighted_stats():
    x = _feats(10)
    w = np.linspace(0.1, 1.0, 10)
    s = compute_cmvn_stats(x, weights=w)
    np.testing.assert_allclose(s[0, :5], w @ x.astype(np.float64))
    np.testing.assert_allclose(s[0, 5], w.sum())


@pytest.mark.parametrize("norm_vars", [False, True])
def test_apply_matches_closed_form_and_knf(norm_vars):
    x = _feats(40, seed=1)
    s = compute_cmvn_stats(x)
    y = apply_cmvn(x, s, norm_vars=norm_vars)
    assert y.dtype == np.float32
    mean = x.astype(np.float64).mean(0)
    expected = x - mean
    if norm_vars:
        expected = expected / x.astype(np.float64).std(0)
    np.testing.assert_allclose(y, expected, atol=1e-4)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-4)
    if norm_vars:
        np.testing.assert_allclose(y.std(0), 1, atol=1e-4)
    ref = knf.apply_cmvn(s, knf.CmvnOptions(norm_vars=norm_vars), x)
    np.testing.assert_allclose(y, ref, atol=2e-5)
    # torch in -> torch out
    yt = apply_cmvn(torch.from_numpy(x), s, norm_vars=norm_vars)
    assert isinstance(yt, torch.Tensor) and np.allclose(yt.numpy(), y, atol=1e-6)
    # reverse undoes it
    back = apply_cmvn(y, s, norm_vars=norm_vars, reverse=True)
    np.testing.assert_allclose(back, x, atol=1e-3)
    ref_back = knf.apply_cmvn(s, knf.CmvnOptions(norm_vars=norm_vars, reverse=True), y)
    np.testing.assert_allclose(back, ref_back, atol=1e-4)


def test_apply_errors_and_variance_floor():
    x = _feats(4)
    s = compute_cmvn_stats(x)
    with pytest.raises(ValueError, match="Insufficient stats.*count = 0.5"):
        apply_cmvn(x, _scaled(s, 0.5))
    with pytest.raises(ValueError, match="Dim mismatch"):
        apply_cmvn(x[:, :3], s)
    with pytest.raises(ValueError, match="no variance stats"):
        apply_cmvn(x, s[:1], norm_vars=True)
    # 1-row (mean only) stats are fine without norm_vars
    np.testing.assert_allclose(apply_cmvn(x, s[:1]), apply_cmvn(x, s))
    # constant dimension: variance 0 is floored at 1e-20 with a warning
    c = x.copy()
    c[:, 2] = 3.0
    with pytest.warns(UserWarning, match="Flooring cepstral variance"):
        y = apply_cmvn(c, compute_cmvn_stats(c), norm_vars=True)
    assert np.all(np.isfinite(y)) and np.all(y[:, 2] == 0)


def _scaled(s, count):
    t = s.copy()
    t[0, -1] = count
    return t


def test_speaker_and_global_helpers():
    feats = {"a1": _feats(10, seed=1), "a2": _feats(7, seed=2), "b1": _feats(12, seed=3)}
    spk2utt = {"spkA": ["a1", "a2"], "spkB": ["b1", "missing"]}
    with pytest.warns(UserWarning, match="missing"):
        per_spk = compute_cmvn_stats_per_speaker(feats, spk2utt)
    assert list(per_spk) == ["spkA", "spkB"]
    np.testing.assert_allclose(per_spk["spkA"],
                               compute_cmvn_stats(np.concatenate([feats["a1"], feats["a2"]])))
    glob = compute_global_cmvn_stats(feats)
    np.testing.assert_allclose(glob, per_spk["spkA"] + per_spk["spkB"])
    assert glob[0, -1] == 29
    utt2spk = {"a1": "spkA", "a2": "spkA", "b1": "spkB"}
    normed = apply_cmvn_per_speaker(feats, per_spk, utt2spk)
    both = np.concatenate([normed["a1"], normed["a2"]])
    np.testing.assert_allclose(both.mean(0), 0, atol=1e-4)
    per_utt = apply_cmvn_per_utterance(feats, norm_vars=True)
    np.testing.assert_allclose(per_utt["b1"].std(0), 1, atol=1e-4)
    with pytest.raises(KeyError, match="spkC"):
        apply_cmvn_per_speaker({"c": feats["a1"]}, per_spk, {"c": "spkC"})

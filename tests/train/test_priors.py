"""Label priors: counts, Kaldi's counts file, smoothed log-priors, loglikes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kbind.train.priors import LabelPriors, pdf_counts, read_counts, write_counts


def test_counts_and_file_round_trip(tmp_path):
    alis = [np.array([0, 0, 2, 3]), np.array([3, 3, -1, 0])]
    c = pdf_counts(alis, 5)
    expect = np.zeros(5)
    for a in alis:
        for p in a:
            if p >= 0:
                expect[p] += 1
    assert c.tolist() == expect.tolist()
    write_counts(tmp_path / "c", c)
    assert (tmp_path / "c").read_text() == "[ 3 0 1 3 0 ]\n"
    assert read_counts(tmp_path / "c").tolist() == expect.tolist()
    (tmp_path / "bad").write_text("3 0 1")
    with pytest.raises(ValueError, match="bad: not a Kaldi text vector"):
        read_counts(tmp_path / "bad")
    with pytest.raises(ValueError, match="pdf-id 7 out of range"):
        pdf_counts([np.array([7])], 5)


def test_loglikes_subtract_smoothed_log_prior():
    counts = np.array([3.0, 0.0, 1.0, 6.0])
    pri = LabelPriors(counts, smoothing=1.0)
    logits = torch.randn(2, 5, 4)
    p = (counts + 1) / (counts + 1).sum()
    expect = torch.log_softmax(logits, -1) - 0.5 * torch.log(torch.tensor(p, dtype=torch.float32))
    torch.testing.assert_close(pri.loglikes(logits, prior_scale=0.5), expect)
    # Kaldi's plain estimate, floored
    raw = LabelPriors(counts, smoothing=0.0)
    assert float(raw.log_priors[1]) == pytest.approx(np.log(1e-20), rel=1e-6)
    assert LabelPriors.from_state_dict(pri.state_dict()).log_priors.tolist() == \
        pri.log_priors.tolist()
    with pytest.raises(ValueError, match="logits have 3 outputs"):
        pri.loglikes(torch.zeros(1, 3))
    with pytest.raises(ValueError):
        LabelPriors(np.array([1.0, np.nan]))

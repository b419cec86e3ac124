"""Kaldi's learning-rate schedule against hand computations."""

from __future__ import annotations

import math

import pytest

from kbind.nn import dropout_proportion
from kbind.train import LearningRateSchedule, get_learning_rate


def test_get_learning_rate_hand():
    # 10 iterations of 3 jobs, 2e-3 -> 2e-4
    i0, f0 = 2e-3, 2e-4
    assert get_learning_rate(0, 3, 10, 0, 30, i0, f0) == pytest.approx(3 * 2e-3)
    # half way through the archives: geometric mean of initial and final
    assert get_learning_rate(5, 3, 10, 15, 30, i0, f0) == pytest.approx(
        3 * math.sqrt(2e-3 * 2e-4))
    # 12 of 30 archives: 2e-3 * 0.1 ** 0.4
    assert get_learning_rate(4, 3, 10, 12, 30, i0, f0) == pytest.approx(3 * 2e-3 * 0.1 ** 0.4)
    # last iteration: the final rate exactly
    assert get_learning_rate(9, 3, 10, 27, 30, i0, f0) == 3 * 2e-4


def test_schedule_object():
    s = LearningRateSchedule(1e-3, 1e-4, num_iters=5, num_jobs=2)
    assert s.num_archives_to_process == 10
    assert s.learning_rate(0) == pytest.approx(2e-3)
    assert s.learning_rate(1) == pytest.approx(2 * 1e-3 * 0.1 ** 0.2)
    assert s.learning_rate(4) == pytest.approx(2e-4)
    rates = [s.learning_rate(i) for i in range(5)]
    assert all(b < a for a, b in zip(rates, rates[1:]))
    assert s.data_fraction(0) == 0.0 and s.data_fraction(2) == pytest.approx(0.4)
    # the dropout schedule is evaluated at that fraction
    assert dropout_proportion("0,0@0.20,0.5@0.50,0", s.data_fraction(2)) == pytest.approx(
        0.5 * (0.4 - 0.2) / 0.3)
    with pytest.raises(ValueError):
        LearningRateSchedule(1e-3, 1e-4, num_iters=0)

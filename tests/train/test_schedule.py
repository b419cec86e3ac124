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


def test_num_jobs_grow_as_kaldi():
    # Kaldi's get_current_num_jobs (num_jobs_step 1): 3 -> 16 jobs over 20 iterations
    s = LearningRateSchedule(2.5e-4, 2.5e-5, num_iters=20, num_jobs=3, num_jobs_final=16)
    expected = [int(0.5 + 3 + 13 * i / 20) for i in range(20)]
    assert [s.jobs(i) for i in range(20)] == expected
    assert expected[0] == 3 and expected[-1] == 15      # Kaldi never reaches 16 exactly
    total = sum(expected)
    assert s.num_archives_to_process == total
    done = sum(expected[:7])
    assert s.archives_processed(7) == done
    # lr of iteration 7 by hand: jobs * initial * (final/initial) ** (done/total)
    assert s.learning_rate(7) == pytest.approx(expected[7] * 2.5e-4 * 0.1 ** (done / total))
    assert s.learning_rate(19) == pytest.approx(15 * 2.5e-5)
    assert s.l2_regularize_factor(7) == pytest.approx(1 / expected[7])
    assert s.data_fraction(7) == pytest.approx(done / total)
    # constant jobs: num_jobs_final 0 means "as num_jobs"
    c = LearningRateSchedule(1e-3, 1e-4, num_iters=5, num_jobs=2)
    assert [c.jobs(i) for i in range(5)] == [2] * 5
    with pytest.raises(ValueError):
        LearningRateSchedule(1e-3, 1e-4, num_iters=5, num_jobs_final=-1)

"""kbind.arrays: checked narrowing and the fast finiteness test."""

import numpy as np
import pytest
import torch

from kbind.arrays import checked_cast, has_nonfinite


def test_has_nonfinite_finds_inf_and_nan_and_is_not_fooled_by_an_overflowing_sum():
    big = torch.full((4, 4), 3e38)                   # finite, but its float32 sum is inf
    inf = torch.zeros(3, 5)
    inf[2, 1] = float("inf")
    nan = torch.zeros(7)
    nan[6] = float("nan")
    cancel = torch.tensor([float("inf"), float("-inf")])   # sum NaN
    assert has_nonfinite([torch.randn(10, 3), big, inf, nan, cancel]) == \
        [False, False, True, True, True]
    assert has_nonfinite([]) == []
    assert has_nonfinite([torch.zeros(0)]) == [False]


def test_checked_cast_refuses_what_narrowing_would_change():
    with pytest.raises(ValueError, match=r"labels: entry 2 is 4294967297"):
        checked_cast(np.array([1, 2, 2**32 + 1]), np.int32, "labels")
    with pytest.raises(ValueError, match="not a whole number"):
        checked_cast([1.5], np.int32, "states")
    with pytest.raises(ValueError, match="float32"):
        checked_cast(np.array([1e39]), np.float32, "weights")
    a = np.arange(5, dtype=np.int32)
    assert checked_cast(a, np.int32, "a") is a or np.shares_memory(checked_cast(a, np.int32,
                                                                                "a"), a)
    assert checked_cast(np.array([np.inf, 1e30]), np.float32, "w").tolist() == \
        [np.inf, np.float32(1e30)]

"""Array helpers: checked dtype conversion, and a fast test for inf and NaN.

Checked conversion, for every place kbind narrows an array.

numpy's ``astype`` (and ``np.asarray(x, dtype=...)`` on an array) wraps an
int64 that does not fit int32 and turns a float64 beyond float32's range into
inf without a word, so a label of ``2**32 + 1`` would become ``1`` and pass
every later check. :func:`checked_cast` refuses such values and names the
entry; the FST, lattice, supervision and den-graph constructors and the C
boundary (:func:`kbind._native.as_c_array`) all narrow through it.

Finiteness. ``torch.isfinite(t).all()`` costs several times a sum of ``t`` on
the CPU (27 ms against 0.8 ms for 4.3M floats, torch 2.13, one thread), which
made NG-SGD's per-layer check double its overhead. :func:`has_nonfinite` sums
each tensor (an inf or NaN entry makes the sum inf or NaN) and checks entry by
entry only a tensor whose sum is not finite (a non-finite entry, or finite
entries whose sum overflows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Sequence

import numpy as np

if TYPE_CHECKING:   # kbind.io narrows through this module and does not need torch
    import torch

__all__ = ["checked_cast", "has_nonfinite"]


def _refuse(a: np.ndarray, bad: np.ndarray, what: str, why: str) -> None:
    """Raise ValueError naming the first entry of ``a`` where ``bad`` holds."""
    if a.ndim == 0:
        raise ValueError(f"{what} is {a}, {why}")
    i = tuple(int(v) for v in np.argwhere(bad)[0])
    raise ValueError(f"{what}: entry {i[0] if len(i) == 1 else i} is {a[i]}, {why}")


def checked_cast(x, dtype, what: str) -> np.ndarray:
    """``x`` (array-like) as a C-contiguous numpy array of ``dtype``, sharing
    memory when it already is one.

    Conversions that would change a value raise ValueError naming ``what``
    and the entry: an integer that does not fit ``dtype`` (int64 -> int32
    would wrap), a float that is not a whole number (or not finite) for an
    integer ``dtype``, a finite float64 beyond float32's range for float32
    (it would become inf). Rounding float64 to float32 is allowed."""
    target = np.dtype(dtype)
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{what}: expected numbers, got an array of {a.dtype}")
    if a.size and target.kind in "iu":
        info = np.iinfo(target)
        if a.dtype.kind == "f":
            bad = ~np.isfinite(a) | (a != np.trunc(a))
            if bad.any():
                _refuse(a, bad, what, "not a whole number")
            # info.max + 1 (a power of 2) is exact as a float, info.max may not be
            bad = (a < info.min) | (a >= info.max + 1)
        elif a.dtype.kind in "iu" and (np.iinfo(a.dtype).min < info.min or
                                       np.iinfo(a.dtype).max > info.max):
            bad = (a < info.min) | (a > info.max)
        else:
            bad = None
        if bad is not None and bad.any():
            _refuse(a, bad, what, f"outside the range of {target} [{info.min}, {info.max}]")
    elif a.size and target == np.float32 and a.dtype.kind == "f" and a.dtype.itemsize > 4:
        bad = np.isfinite(a) & (np.abs(a) > np.finfo(np.float32).max)
        if bad.any():
            _refuse(a, bad, what, "beyond the range of float32 (it would become inf)")
    return np.asarray(a, dtype=target, order="C")


def has_nonfinite(tensors: Sequence[torch.Tensor]) -> List[bool]:
    """For each tensor, whether it has an inf or NaN entry (one device sync for
    all of them, and one more per tensor whose sum is not finite)."""
    import torch
    if not tensors:
        return []
    device = tensors[0].device
    sums = torch.stack([t.detach().sum().float().to(device) for t in tensors])
    suspect = (~torch.isfinite(sums)).tolist()
    return [s and not bool(torch.isfinite(t).all()) for s, t in zip(suspect, tensors)]

r"""Cepstral mean and variance normalisation as Kaldi does it.

Statistics (``compute-cmvn-stats``, ``AccCmvnStats``) are a (2, D+1) float64
matrix::

    [ sum_t w_t x_t(0) ... sum_t w_t x_t(D-1)   sum_t w_t ]
    [ sum_t w_t x_t(0)^2 ... sum_t w_t x_t(D-1)^2   0      ]

accumulated in double precision (weights default to 1, so the last column of
row 0 is the frame count).  Stats of several utterances add up, which gives
per-speaker (``--spk2utt``) and global statistics.

Application (``apply-cmvn``, ``ApplyCmvn``) with ``c`` the count,
``mu = S / c``:

* means only: ``x <- x - mu``;
* with ``norm_vars``: ``var = Q / c - mu^2`` floored at 1e-20 (with a
  warning), ``scale = 1 / sqrt(var)``, ``x <- x * scale - mu * scale``.

It is an error if ``c < 1`` ("Insufficient stats ...") or if variance
normalisation is requested from 1-row (mean-only) stats.  ``reverse=True``
is ``ApplyCmvnReverse``: ``x <- x * sqrt(var) + mu`` (``sqrt(var)`` only if
``norm_vars``).  As in Kaldi the offsets/scales are computed in double and
rounded to float32 before being applied to the float32 features.
"""

from __future__ import annotations

import warnings
from typing import Dict, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import torch

__all__ = [
    "CmvnStats",
    "compute_cmvn_stats",
    "accumulate_cmvn_stats",
    "apply_cmvn",
    "compute_cmvn_stats_per_speaker",
    "compute_global_cmvn_stats",
    "apply_cmvn_per_utterance",
    "apply_cmvn_per_speaker",
    "compute_cmvn_stats_for_datadir",
    "apply_cmvn_for_datadir",
]

Feats = Union[np.ndarray, torch.Tensor]


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def compute_cmvn_stats(feats: Feats, weights: Optional[Sequence[float]] = None) -> np.ndarray:
    """Stats of one feature matrix (num_frames, dim) -> (2, dim+1) float64."""
    x = _np(feats)
    if x.ndim != 2:
        raise ValueError(f"expected a (num_frames, dim) matrix, got shape {x.shape}")
    stats = np.zeros((2, x.shape[1] + 1), dtype=np.float64)
    accumulate_cmvn_stats(stats, x, weights)
    return stats


def accumulate_cmvn_stats(stats: np.ndarray, feats: Feats,
                          weights: Optional[Sequence[float]] = None) -> np.ndarray:
    """Add the stats of ``feats`` to ``stats`` (in place) and return it."""
    x = _np(feats).astype(np.float64)
    dim = stats.shape[1] - 1
    if x.ndim != 2 or x.shape[1] != dim or stats.shape[0] != 2:
        raise ValueError(f"dimension mismatch: stats {stats.shape[0]}x{stats.shape[1]}, "
                         f"feats {'x'.join(map(str, x.shape))}")
    if weights is None:
        stats[0, :dim] += x.sum(0)
        stats[1, :dim] += (x * x).sum(0)
        stats[0, dim] += x.shape[0]
    else:
        w = np.asarray(_np(weights), dtype=np.float64).reshape(-1)
        if w.shape[0] != x.shape[0]:
            raise ValueError(f"weights have {w.shape[0]} entries for {x.shape[0]} frames")
        stats[0, :dim] += w @ x
        stats[1, :dim] += w @ (x * x)
        stats[0, dim] += w.sum()
    return stats


class CmvnStats:
    """Incremental accumulator (e.g. over the utterances of one speaker)."""

    def __init__(self, dim: Optional[int] = None):
        self.stats = None if dim is None else np.zeros((2, dim + 1))

    def accumulate(self, feats: Feats, weights=None) -> "CmvnStats":
        x = _np(feats)
        if self.stats is None:
            self.stats = np.zeros((2, x.shape[1] + 1))
        accumulate_cmvn_stats(self.stats, x, weights)
        return self

    @property
    def count(self) -> float:
        return 0.0 if self.stats is None else float(self.stats[0, -1])


def _norm_rows(stats: np.ndarray, dim: int, norm_vars: bool, reverse: bool):
    """float32 (offset, scale) so that x' = x * scale + offset."""
    stats = np.asarray(stats, dtype=np.float64)
    if stats.ndim != 2 or stats.shape[0] > 2 or stats.shape[0] < 1 or stats.shape[1] - 1 != dim:
        raise ValueError(f"Dim mismatch: cmvn {stats.shape[0]}x{stats.shape[1]}, "
                         f"feats dim {dim}")
    if stats.shape[0] == 1 and norm_vars:
        raise ValueError("You requested variance normalization but no variance "
                         "stats are supplied.")
    count = float(stats[0, dim])
    if count < 1.0:
        raise ValueError(f"Insufficient stats for cepstral mean and variance "
                         f"normalization: count = {count}")
    mean = stats[0, :dim] / count
    if not norm_vars:
        if reverse:
            return mean.astype(np.float32), None
        alpha = np.float32(-1.0 / count)
        return (np.float64(alpha) * stats[0, :dim]).astype(np.float32), None
    var = stats[1, :dim] / count - mean * mean
    floor = 1.0e-20
    low = var < floor
    if np.any(low):
        warnings.warn(f"Flooring cepstral variance from {var[low].min()} to {floor}")
        var = np.where(low, floor, var)
    if reverse:
        return mean.astype(np.float32), np.sqrt(var).astype(np.float32)
    scale = 1.0 / np.sqrt(var)
    if not np.all(np.isfinite(scale)) or np.any(1.0 / scale == 0.0):
        raise ValueError("NaN or infinity in cepstral mean/variance computation")
    offset = -(mean * scale)
    return offset.astype(np.float32), scale.astype(np.float32)


def apply_cmvn(feats: Feats, stats: np.ndarray, norm_vars: bool = False,
               reverse: bool = False) -> Feats:
    """Kaldi's ``ApplyCmvn`` (``reverse``: ``ApplyCmvnReverse``).

    Returns a new float32 matrix of the same kind (numpy or torch, same
    device) as ``feats``.
    """
    dim = feats.shape[1] if feats.ndim == 2 else -1
    if feats.ndim != 2:
        raise ValueError(f"expected a (num_frames, dim) matrix, got shape {tuple(feats.shape)}")
    offset, scale = _norm_rows(_np(stats), dim, norm_vars, reverse)
    if isinstance(feats, torch.Tensor):
        x = feats.to(torch.float32)
        if scale is not None:
            x = x * torch.from_numpy(scale).to(x.device)
        return x + torch.from_numpy(offset).to(x.device)
    x = np.asarray(feats, dtype=np.float32)
    if scale is not None:
        x = x * scale
    return x + offset


# ---------------------------------------------------------------------------
# per-utterance / per-speaker / global helpers

def compute_cmvn_stats_per_speaker(feats: Mapping[str, Feats],
                                   spk2utt: Mapping[str, Sequence[str]],
                                   ) -> Dict[str, np.ndarray]:
    """``compute-cmvn-stats --spk2utt``: summed stats per speaker.

    Utterances without features are skipped with a warning (as Kaldi);
    a speaker with no features at all is left out.
    """
    out: Dict[str, np.ndarray] = {}
    for spk in sorted(spk2utt, key=lambda s: s.encode()):
        acc = CmvnStats()
        for utt in spk2utt[spk]:
            if utt not in feats:
                warnings.warn(f"No features for utterance {utt} (speaker {spk})")
                continue
            acc.accumulate(feats[utt])
        if acc.stats is None:
            warnings.warn(f"No stats accumulated for speaker {spk}")
            continue
        out[spk] = acc.stats
    return out


def compute_global_cmvn_stats(feats: Union[Mapping[str, Feats], Iterable[Feats]]) -> np.ndarray:
    """Stats summed over all matrices (values of a mapping, or an iterable)."""
    items = feats.values() if isinstance(feats, Mapping) else feats
    acc = CmvnStats()
    for f in items:
        acc.accumulate(f)
    if acc.stats is None:
        raise ValueError("no features to accumulate CMVN stats from")
    return acc.stats


def apply_cmvn_per_utterance(feats: Mapping[str, Feats], norm_vars: bool = False
                             ) -> Dict[str, Feats]:
    """Per-utterance CMVN (stats of each utterance applied to itself)."""
    return {u: apply_cmvn(f, compute_cmvn_stats(f), norm_vars) for u, f in feats.items()}


def apply_cmvn_per_speaker(feats: Mapping[str, Feats], cmvn: Mapping[str, np.ndarray],
                           utt2spk: Mapping[str, str], norm_vars: bool = False
                           ) -> Dict[str, Feats]:
    """``apply-cmvn --utt2spk``: each utterance with its speaker's stats."""
    out = {}
    for utt, f in feats.items():
        if utt not in utt2spk:
            raise KeyError(f"utterance '{utt}' not in utt2spk")
        spk = utt2spk[utt]
        if spk not in cmvn:
            raise KeyError(f"no CMVN stats for speaker '{spk}' (utterance '{utt}')")
        out[utt] = apply_cmvn(f, cmvn[spk], norm_vars)
    return out


def compute_cmvn_stats_for_datadir(datadir) -> Dict[str, np.ndarray]:
    """Per-speaker stats of a data dir (``steps/compute_cmvn_stats.sh``),
    reading ``feats.scp`` through :mod:`kbind.io`."""
    feats = {utt: datadir.load_feats(utt) for utt in datadir.feats_scp}
    return compute_cmvn_stats_per_speaker(feats, datadir.spk2utt)


def apply_cmvn_for_datadir(datadir, utt: str, norm_vars: bool = False) -> np.ndarray:
    """Features of ``utt`` normalised with its speaker's stats from
    ``cmvn.scp`` (``apply-cmvn --utt2spk=ark:utt2spk scp:cmvn.scp``)."""
    spk = datadir.utt2spk[utt]
    return apply_cmvn(_np(datadir.load_feats(utt)), _np(datadir.load_cmvn(spk)), norm_vars)

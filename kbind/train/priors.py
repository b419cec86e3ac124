"""Label priors for hybrid decoding: ``log p(x|s) = log p(s|x) - log p(s) + const``.

Kaldi's nnet3 recipes count pdfs in the training alignments
(``ali-to-pdf | analyze-counts`` -> ``ali_train_pdf.counts``, a text vector
``[ c0 c1 ... ]``) and ``nnet3-am-copy --set-priors`` / decoding subtract
``log(counts / sum)``. Pdfs that never occur would get a prior of 0 and an
unbounded boost; Kaldi's trees are built from the data so every pdf occurs, but
a full (biphone) flat-start tree has many unseen pdfs, so the counts here are
add-``smoothing`` smoothed (``smoothing=0`` gives Kaldi's plain estimate with a
floor of ``1e-20``, as ``AmNnetSimple`` floors priors).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Union

import numpy as np
import torch

__all__ = ["pdf_counts", "write_counts", "read_counts", "LabelPriors"]


def pdf_counts(pdf_alignments: Iterable[np.ndarray], num_pdfs: int) -> np.ndarray:
    """Occurrences of each pdf-id (``analyze-counts --binary=false``)."""
    c = np.zeros(num_pdfs, dtype=np.float64)
    for a in pdf_alignments:
        a = np.asarray(a).reshape(-1)
        a = a[a >= 0]
        if a.size and a.max() >= num_pdfs:
            raise ValueError(f"pdf-id {int(a.max())} out of range for {num_pdfs} pdfs")
        c += np.bincount(a, minlength=num_pdfs)
    return c


def write_counts(path: Union[str, Path], counts: np.ndarray) -> None:
    """Kaldi text vector, as ``ali_train_pdf.counts``."""
    Path(path).write_text("[ " + " ".join(str(int(round(x))) for x in counts) + " ]\n")


def read_counts(path: Union[str, Path]) -> np.ndarray:
    text = Path(path).read_text().strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise ValueError(f"{path}: not a Kaldi text vector ('[ c0 c1 ... ]')")
    try:
        return np.array([float(x) for x in text[1:-1].split()], dtype=np.float64)
    except ValueError as e:
        raise ValueError(f"{path}: bad count ({e})") from None


class LabelPriors:
    """``log_priors`` (D,) from pdf counts; :meth:`loglikes` turns logits into
    scaled log-likelihoods ``log_softmax(logits) - prior_scale * log_priors``."""

    def __init__(self, counts: np.ndarray, smoothing: float = 1.0, floor: float = 1e-20):
        counts = np.asarray(counts, dtype=np.float64)
        if counts.ndim != 1 or counts.size == 0 or (counts < 0).any() or \
                not np.isfinite(counts).all():
            raise ValueError("pdf counts must be a non-empty vector of finite counts >= 0")
        c = counts + smoothing
        if c.sum() <= 0:
            raise ValueError("pdf counts are all zero")
        p = np.maximum(c / c.sum(), floor)
        self.counts = counts
        self.smoothing = smoothing
        self.log_priors = torch.from_numpy(np.log(p)).to(torch.float32)

    @property
    def num_pdfs(self) -> int:
        return int(self.log_priors.numel())

    def loglikes(self, logits: torch.Tensor, prior_scale: float = 1.0) -> torch.Tensor:
        if logits.shape[-1] != self.num_pdfs:
            raise ValueError(f"logits have {logits.shape[-1]} outputs, the priors "
                             f"{self.num_pdfs}")
        lp = self.log_priors.to(logits.device, logits.dtype)
        return torch.log_softmax(logits, dim=-1) - prior_scale * lp

    def state_dict(self) -> dict:
        return {"counts": self.counts.tolist(), "smoothing": self.smoothing}

    @classmethod
    def from_state_dict(cls, d: dict) -> "LabelPriors":
        return cls(np.asarray(d["counts"], dtype=np.float64), d.get("smoothing", 1.0))

    def entropy(self) -> float:
        p = np.exp(self.log_priors.double().numpy())
        return float(-(p * np.log(p)).sum() / math.log(2))

"""Frame-level training examples for cross-entropy training, made on the fly.

Kaldi's ``nnet3-get-egs`` (frame labels from pdf alignments) without the
archives: chunks are cut from the features in memory for every epoch,
deterministically from ``(seed, epoch)``.

Labels
    Per utterance, one pdf-id per *output* frame of the model: for a model
    with frame-subsampling factor ``fss`` (a chain-style TDNN-F, or a BLSTM
    stacking ``fss`` frames) an utterance of ``T`` input frames has
    ``ceil(T / fss)`` labels, as alignments made with
    ``--frame-subsampling-factor fss`` have. A length mismatch up to
    ``length_tolerance`` output frames is absorbed (missing labels are
    ignored, extra ones dropped), as ``nnet3-get-egs --length-tolerance``;
    a larger one raises an error naming the utterance.

Chunks
    ``chunk_width="150,110"`` input frames per chunk (rounded up to a
    multiple of ``fss``), covering each utterance as the chain egs do
    (:func:`kbind.chain.egs.split_utterance`). An utterance shorter than every
    width becomes one chunk of its own length (CE needs no fixed length).

Context
    Each chunk carries the model's own ``left_context`` / ``right_context``
    (consumed by a TDNN's convolutions) plus ``extra_left_context`` /
    ``extra_right_context`` input frames whose *outputs* are computed but not
    trained (Kaldi's ``--chunk-left-context`` / ``--chunk-right-context``,
    40 / 40 in its BLSTM recipes). Beyond the utterance edges the first / last
    frame is repeated. The extra context must be a multiple of ``fss``.

Minibatches
    ``minibatch_size`` chunks; chunks of one minibatch are padded to the
    longest by repeating their last frame (the features are collated by
    :func:`kbind.chain.egs.collate_features`, as the chain egs' are) and the
    labels of padded, extra-context and unlabelled frames are ``-1``
    (``ignore_index``).
    ``collate`` returns ``(feats (B, T_in, F), labels (B, T_out), lengths
    (B,))`` where ``lengths`` are valid input frames per chunk and ``T_out``
    is the model's output length for ``T_in``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import List, Mapping, NamedTuple, Optional, Sequence

import numpy as np
import torch

from kbind.chain.egs import FeatureSource, collate_features, parse_chunk_widths, \
    split_utterance

__all__ = ["FrameEgsConfig", "FrameChunk", "FrameEgs", "IGNORE"]

log = logging.getLogger(__name__)

IGNORE = -1
"""Label of frames that are not trained (``ignore_index`` of the loss)."""


@dataclass
class FrameEgsConfig:
    chunk_width: str = "150"          # input frames per chunk (a list: principal first)
    extra_left_context: int = 0       # input frames of context whose outputs are not trained
    extra_right_context: int = 0
    minibatch_size: int = 64
    cmvn: str = "speaker"             # speaker | utterance | none
    norm_vars: bool = False
    shuffle: bool = True
    length_tolerance: int = 2         # output frames of label/feature length mismatch allowed


class FrameChunk(NamedTuple):
    utt: str
    start: int      # first input frame of the chunk (a multiple of fss)
    width: int      # input frames


class FrameEgs:
    """CE egs of a set of utterances (see the module doc).

    ``labels``: utt -> int array of pdf-ids at the model's output rate (or a
    mapping computed lazily, e.g. alignments made on the fly)."""

    def __init__(self, features: FeatureSource, labels: Mapping[str, np.ndarray],
                 model_left_context: int, model_right_context: int, cfg: FrameEgsConfig,
                 fss: int = 1, seed: int = 0, utterances: Optional[Sequence[str]] = None,
                 num_pdfs: Optional[int] = None):
        if fss < 1:
            raise ValueError("frame subsampling factor must be >= 1")
        for name in ("extra_left_context", "extra_right_context"):
            v = getattr(cfg, name)
            if v < 0 or v % fss:
                raise ValueError(f"{name}={v} must be a non-negative multiple of the frame "
                                 f"subsampling factor {fss}")
        if cfg.minibatch_size < 1:
            raise ValueError("minibatch_size must be >= 1")
        self.features = features
        self.labels = labels
        self.cfg = cfg
        self.fss = fss
        self.seed = seed
        self.num_pdfs = num_pdfs
        self.model_left, self.model_right = model_left_context, model_right_context
        self.left = model_left_context + cfg.extra_left_context
        self.right = model_right_context + cfg.extra_right_context
        self.widths = parse_chunk_widths(cfg.chunk_width, fss)
        utts = list(utterances) if utterances is not None else list(features.utterances)
        self.utterances = [u for u in utts if u in labels]
        missing = len(utts) - len(self.utterances)
        if missing:
            log.warning("%d of %d utterances have no alignment and are not used",
                        missing, len(utts))

    # -- planning --------------------------------------------------------------------------
    def chunks(self, epoch: int) -> List[FrameChunk]:
        rng = random.Random(self.seed * 1000003 + epoch)
        out: List[FrameChunk] = []
        for u in self.utterances:
            n = self.features.num_frames(u)
            parts = split_utterance(n, self.widths, self.fss, rng)
            if not parts and n > 0:
                parts = [(0, n)]
            out.extend(FrameChunk(u, s, w) for s, w in parts)
        if self.cfg.shuffle:
            rng.shuffle(out)
        return out

    def batches(self, epoch: int) -> List[List[FrameChunk]]:
        ch = self.chunks(epoch)
        mb = self.cfg.minibatch_size
        return [ch[i:i + mb] for i in range(0, len(ch), mb)]

    # -- labels ------------------------------------------------------------------------------
    def utterance_labels(self, utt: str, labels: Optional[Mapping[str, np.ndarray]] = None
                         ) -> np.ndarray:
        """The utterance's labels (from ``labels``, default the egs' own), fitted to
        ``ceil(T / fss)`` output frames."""
        lab = np.asarray((self.labels if labels is None else labels)[utt]).reshape(-1)
        n_out = -(-self.features.num_frames(utt) // self.fss)
        if lab.size != n_out:
            if abs(lab.size - n_out) > self.cfg.length_tolerance:
                raise ValueError(f"utterance {utt}: {lab.size} alignment frames but the "
                                 f"features give {n_out} output frames (frame subsampling "
                                 f"factor {self.fss}; tolerance {self.cfg.length_tolerance})")
            fit = np.full(n_out, IGNORE, dtype=np.int64)
            m = min(n_out, lab.size)
            fit[:m] = lab[:m]
            lab = fit
        if self.num_pdfs is not None and lab.size and \
                (lab.max() >= self.num_pdfs or lab.min() < IGNORE):
            raise ValueError(f"utterance {utt}: pdf-id {int(lab.max())} out of range for "
                             f"{self.num_pdfs} pdfs")
        return lab

    # -- collation ---------------------------------------------------------------------------
    def collate(self, chunks: Sequence[FrameChunk],
                labels: Optional[Mapping[str, np.ndarray]] = None):
        """``labels``: where the chunks' labels come from (default the egs' own;
        labels made on the fly are passed here)."""
        feats = collate_features(chunks, self.features, self.left, self.right)
        fss = self.fss
        t_max = max(c.width for c in chunks)
        el = self.cfg.extra_left_context
        er = self.cfg.extra_right_context
        # output frames: the extra context's and the chunk's (model context is consumed)
        n_out = -(-(el + t_max + er) // fss)
        lab_rows, lengths = [], []
        for c in chunks:
            lab = self.utterance_labels(c.utt, labels)
            y = np.full(n_out, IGNORE, dtype=np.int64)
            o0 = el // fss                       # first trained output frame
            s0 = c.start // fss
            k = -(-c.width // fss)
            seg = lab[s0:s0 + k]
            y[o0:o0 + seg.size] = seg
            lab_rows.append(y)
            lengths.append(self.left + c.width + self.right)
        return feats, torch.from_numpy(np.stack(lab_rows)), torch.tensor(lengths)

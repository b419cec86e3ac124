"""Chain training examples ("egs") made on the fly from a Kaldi data dir.

Kaldi writes egs to disk once (``steps/nnet3/chain/get_egs.sh``,
``nnet3-chain-get-egs``, ``nnet3-chain-e2e-get-egs``) and shuffles / merges /
frame-shifts them while training. Here the same egs are cut from the
features in memory for every epoch, deterministically from ``(seed, epoch)``:

Features
    ``feats.scp`` with CMVN applied as ``apply-cmvn``: per speaker from
    ``cmvn.scp`` (``cmvn="speaker"``, mean only unless ``norm_vars``),
    per utterance (``"utterance"``) or none. Loaded once and cached.

Chunks (alignment supervision, regular chain)
    ``chunk_width="150,110,100"``: Kaldi's ``--frames-per-eg`` list, each
    rounded up to a multiple of the frame-subsampling factor ``fss``
    (``RoundUpNumFrames``: 110 -> 111, 100 -> 102); the first is the
    principal width. Each utterance is covered by chunks (Kaldi's
    ``UtteranceSplitter``, simplified: the count and widths are those whose
    total is closest to the utterance length, preferring the principal width;
    the order of the widths and the gaps / overlaps between chunks are drawn
    at random each epoch; chunk starts are multiples of ``fss``). Utterances
    shorter than the smallest width are skipped, as in Kaldi. Supervision of a
    chunk: :func:`kbind.chain.supervision_maker.alignment_to_chunk_supervision`
    steps (the utterance's supervision FST is built once and cached, then
    split and normalised per chunk), constrained by default, unconstrained
    with ``constrained=False``. Kaldi's per-frame ``deriv_weights`` for
    overlapping chunks are not produced (the TDNN-F recipes train with
    ``--apply-deriv-weights false``).

Whole utterances (flat-start / e2e)
    Kaldi's e2e recipes use whole utterances whose lengths were
    speed-perturbed to a set of *allowed lengths* (a geometric series with
    factor 1.1, multiples of ``fss``; ``utils/data/get_allowed_lengths.py``)
    so every minibatch has one length (Kaldi cannot merge sequences of
    different lengths). ``e2e_batching`` chooses between:

    * ``"allowed_lengths"`` (Kaldi's layout): each utterance is padded, by
      repeating its last frame, to the smallest allowed length that holds
      it, and minibatches hold utterances of the same allowed length (equal
      ``T``). Padding replaces Kaldi's speed perturbation; the numerator
      graph's optional final silence absorbs the padded frames.
    * ``"similar"`` (default; kbind's loss takes unequal lengths): the same
      buckets, but each sequence keeps its true length; the batch is padded to
      its longest member and ``lengths`` gives every sequence's output frames.

Context and padding
    Every eg carries ``left_context`` / ``right_context`` input frames
    (the model's, plus ``extra_left_context`` / ``extra_right_context``)
    on each side of its chunk; beyond the utterance edges the first / last
    frame is repeated (Kaldi's ``ExtractRowRangeWithPadding``). An eg of
    ``w`` frames has ``T_in = left + w + right`` input and ``ceil(w / fss)``
    output frames (the TDNN/TDNN-F time convention of :mod:`kbind.nn.tdnn`).

Frame shifts
    Kaldi's frame-shift augmentation (``nnet3-chain-copy-egs --frame-shift=s``
    with ``s`` in ``0..fss-1`` per archive and epoch) shifts the input by ``s``
    frames and the supervision by the nearest multiple of ``fss``; the net
    effect is that the features move by ``d = fss*round(s/fss) - s`` frames
    (0, -1, +1 for fss = 3) relative to the supervision. With
    ``frame_shift=True`` each eg of an epoch gets a random ``s`` (Kaldi's
    per-archive choice, drawn per eg here).

Minibatches
    ``minibatch_size`` is Kaldi's ``--num-chunk-per-minibatch`` /
    ``nnet3-chain-merge-egs --minibatch-size`` rule: ``"64"``, ``"128,64"``
    or ``"128=64,32/300=32,16"`` (for egs of size up to 128 input frames use
    64, then 32 for the leftovers at the end of the epoch; up to 300 use 32,
    then 16; larger egs use the last rule). The first size of a rule is the
    normal minibatch size, the others are the sizes allowed for the last
    minibatches of an epoch; leftovers that fit none are dropped (Kaldi
    discards them too). ``max_frames_per_minibatch > 0`` instead caps the
    input frames (``B * T_in``) per minibatch. Only egs of the same chunk
    width (chunks) or bucket (whole utterances) are merged.

Use::

    egs = ChainEgs.from_data_dir("data/train", sup_provider, model.left_context,
                                 model.right_context, EgsConfig(chunk_width="150,110,100"))
    ds = egs.dataset(epoch=0)                 # a torch Dataset of minibatches
    feats, supervision, lengths = ds[0]       # (B, T_in, F), Supervision, (B,)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False)

``len(ds)`` minibatches per epoch, always the same for a given seed and
epoch, so ``(epoch, minibatch index)`` is a complete data position for
resuming.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from .supervision import NumeratorFst, Supervision, _numerator_fst

__all__ = ["EgsConfig", "Chunk", "ChainEgs", "ChainEgsDataset", "FeatureSource",
           "E2eSupervisions", "AlignmentSupervisions", "parse_chunk_widths",
           "MinibatchRule", "split_utterance", "allowed_lengths", "extract_with_padding",
           "feature_offset_for_shift", "collate_features", "collate_chunks"]

log = logging.getLogger(__name__)


@dataclass
class EgsConfig:
    """How egs are cut and merged (Kaldi option names in brackets)."""
    chunk_width: str = "150,110,100"      # [--frames-per-eg] input frames; first = principal
    extra_left_context: int = 0           # [--chunk-left-context]
    extra_right_context: int = 0          # [--chunk-right-context]
    frame_shift: bool = True              # frame-shift augmentation per epoch
    cmvn: str = "speaker"                 # speaker | utterance | none
    norm_vars: bool = False               # apply-cmvn --norm-vars
    minibatch_size: str = "64"            # [--num-chunk-per-minibatch], e.g. 128=64,32/300=32,16
    max_frames_per_minibatch: int = 0     # > 0: minibatch by input frames instead of count
    e2e_batching: str = "similar"         # similar | allowed_lengths (whole-utterance egs)
    allowed_length_factor: float = 1.1    # get_allowed_lengths.py --factor
    left_tolerance: int = 5               # chain-get-supervision tolerances (input frames)
    right_tolerance: int = 5
    constrained: bool = True              # False: unconstrained (e2e-style) chunk supervision
    shuffle: bool = True


# ---------------------------------------------------------------------------------------
# Small pieces
# ---------------------------------------------------------------------------------------

def parse_chunk_widths(spec, fss: int) -> List[int]:
    """``"150,110,100"`` -> ``[150, 111, 102]`` (fss 3): Kaldi's
    ``RoundUpNumFrames``, principal width first, duplicates removed."""
    if isinstance(spec, int):
        spec = str(spec)
    widths = []
    for tok in str(spec).split(","):
        tok = tok.strip()
        if not tok:
            continue
        w = int(tok)
        if w <= 0:
            raise ValueError(f"chunk widths must be positive, got {spec!r}")
        w = -(-w // fss) * fss
        if w not in widths:
            widths.append(w)
    if not widths:
        raise ValueError(f"no chunk widths in {spec!r}")
    return widths


class MinibatchRule:
    """Kaldi's ``ExampleMergingConfig`` minibatch-size rule.

    ``"64"``, ``"128,64"``, ``"128=64,32/300=32,16"``. :meth:`sizes` gives
    the minibatch sizes (largest first) for egs of a given size (input frames):
    the rule with the smallest eg size >= it, else the largest rule."""

    def __init__(self, spec: str):
        self.spec = str(spec)
        rules: List[Tuple[int, List[int]]] = []
        for part in self.spec.split("/"):
            part = part.strip()
            if not part:
                continue
            if "=" in part:
                size, sizes = part.split("=", 1)
                eg_size = int(size)
            else:
                eg_size, sizes = 0, part
            vals = set()
            for x in sizes.split(","):
                x = x.strip()
                if ":" in x:          # a range "lo:hi" allows every size in it
                    lo, hi = (int(v) for v in x.split(":", 1))
                    vals.update(range(lo, hi + 1))
                elif x:
                    vals.add(int(x))
            vals = sorted(vals, reverse=True)
            if not vals or vals[-1] <= 0:
                raise ValueError(f"bad minibatch size rule {spec!r}")
            rules.append((eg_size, vals))
        if not rules:
            raise ValueError(f"bad minibatch size rule {spec!r}")
        if len(rules) > 1 and any(e == 0 for e, _ in rules):
            raise ValueError(f"minibatch rule {spec!r}: with several rules each needs 'size='")
        self.rules = sorted(rules)

    def sizes(self, eg_size: int) -> List[int]:
        for size, vals in self.rules:
            if size >= eg_size or size == 0:
                return vals
        return self.rules[-1][1]

    def __repr__(self) -> str:
        return f"MinibatchRule({self.spec!r})"


def feature_offset_for_shift(shift: int, fss: int) -> int:
    """Net feature offset of Kaldi's ``--frame-shift=shift``: the input moves
    by ``shift``, the supervision by the nearest multiple of ``fss``."""
    return fss * int(math.floor(0.5 + shift / fss)) - shift


def extract_with_padding(feats: np.ndarray, begin: int, end: int) -> np.ndarray:
    """Rows ``begin .. end-1`` of ``feats``; rows outside the matrix repeat
    the first / last row (Kaldi's ``ExtractRowRangeWithPadding``)."""
    n = feats.shape[0]
    if n == 0:
        raise ValueError("empty feature matrix")
    if 0 <= begin and end <= n:
        return feats[begin:end]
    idx = np.clip(np.arange(begin, end), 0, n - 1)
    return feats[idx]


def allowed_lengths(lengths: Sequence[int], fss: int, factor: float = 1.1) -> List[int]:
    """A geometric series of lengths (input frames, multiples of ``fss``)
    from the shortest to at least the longest of ``lengths``, each about
    ``factor`` times the previous (``utils/data/get_allowed_lengths.py``)."""
    if not lengths:
        return []
    if factor <= 1.0:
        raise ValueError("allowed_length_factor must be > 1")
    lo, hi = min(lengths), max(lengths)
    out = [-(-lo // fss) * fss]
    while out[-1] < hi:
        nxt = -(-int(math.ceil(out[-1] * factor)) // fss) * fss
        out.append(max(nxt, out[-1] + fss))
    return out


def split_utterance(num_frames: int, widths: Sequence[int], fss: int,
                    rng: random.Random) -> List[Tuple[int, int]]:
    """Chunks ``(start, width)`` covering an utterance of ``num_frames``
    input frames (simplified ``UtteranceSplitter``, see the module doc).
    Starts are multiples of ``fss`` and every chunk lies inside the
    utterance. Empty if the utterance is shorter than every width."""
    if num_frames < min(widths):
        return []
    principal = widths[0]
    best = None
    kmax = max(1, num_frames // min(widths))
    for k in range(1, kmax + 1):
        # k chunks: all principal, or k-1 principal and one alternative
        options = [[principal] * k] + [[principal] * (k - 1) + [w] for w in widths[1:]]
        for sizes in options:
            total = sum(sizes)
            if total > num_frames and k == 1:
                continue          # a single chunk must fit
            if total - num_frames > (k - 1) * min(sizes) // 2:
                continue          # too much overlap
            cost = (abs(num_frames - total), 0 if all(s == principal for s in sizes) else 1)
            if best is None or cost < best[0]:
                best = (cost, sizes)
    if best is None:
        return []
    sizes = list(best[1])
    rng.shuffle(sizes)
    k = len(sizes)
    slack = num_frames - sum(sizes)
    starts = []
    if slack >= 0:
        # split the unused frames at random into k + 1 gaps
        cuts = sorted(rng.randint(0, slack) for _ in range(k))
        gaps = [cuts[0]] + [cuts[i] - cuts[i - 1] for i in range(1, k)]
        pos = 0
        for g, w in zip(gaps, sizes):
            pos += g
            starts.append(pos)
            pos += w
    else:
        over = -slack
        cuts = sorted(rng.randint(0, over) for _ in range(k - 1))
        parts = [cuts[0]] + [cuts[i] - cuts[i - 1] for i in range(1, k - 1)] + [over - cuts[-1]]
        pos = 0
        for i, w in enumerate(sizes):
            starts.append(pos)
            if i < k - 1:
                pos += w - parts[i]
    out = []
    for s, w in zip(starts, sizes):
        s = (s // fss) * fss
        s = max(0, min(s, ((num_frames - w) // fss) * fss))
        out.append((s, w))
    return out


# ---------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------

class FeatureSource:
    """Features of a data dir with CMVN applied, cached in memory.

    ``cmvn``: ``"speaker"`` (``cmvn.scp`` + ``utt2spk``), ``"utterance"``
    or ``"none"``; ``norm_vars`` as ``apply-cmvn --norm-vars``."""

    def __init__(self, data_dir, cmvn: str = "speaker", norm_vars: bool = False,
                 utterances: Optional[Sequence[str]] = None):
        from kbind.data import DataDir
        if cmvn not in ("speaker", "utterance", "none"):
            raise ValueError(f"cmvn must be speaker, utterance or none, got {cmvn!r}")
        self.data = data_dir if isinstance(data_dir, DataDir) else DataDir.load(data_dir)
        if not self.data.feats_scp:
            raise ValueError(f"{self.data.path}: no feats.scp")
        if cmvn == "speaker" and not self.data.cmvn_scp:
            raise ValueError(f"{self.data.path}: no cmvn.scp (use cmvn=utterance or none)")
        self.cmvn = cmvn
        self.norm_vars = norm_vars
        utts = list(utterances) if utterances is not None else list(self.data.feats_scp)
        self.utterances = [u for u in utts if u in self.data.feats_scp]
        self._cache: Dict[str, np.ndarray] = {}
        self._num_frames: Dict[str, int] = {}
        for u in self.utterances:
            n = self.data.utt2num_frames.get(u)
            if n is not None:
                self._num_frames[u] = int(n)

    def __call__(self, utt: str) -> np.ndarray:
        x = self._cache.get(utt)
        if x is None:
            from kbind.data.cmvn import apply_cmvn, compute_cmvn_stats
            f = np.asarray(self.data.load_feats(utt), dtype=np.float32)
            if self.cmvn == "speaker":
                f = apply_cmvn(f, np.asarray(self.data.load_cmvn(self.data.utt2spk[utt])),
                               self.norm_vars)
            elif self.cmvn == "utterance":
                f = apply_cmvn(f, compute_cmvn_stats(f), self.norm_vars)
            x = np.ascontiguousarray(f, dtype=np.float32)
            self._cache[utt] = x
            self._num_frames[utt] = x.shape[0]
        return x

    def num_frames(self, utt: str) -> int:
        n = self._num_frames.get(utt)
        if n is None:
            n = self(utt).shape[0]
        return n

    @property
    def dim(self) -> int:
        return int(self(self.utterances[0]).shape[1])

    def preload(self) -> None:
        for u in self.utterances:
            self(u)


# ---------------------------------------------------------------------------------------
# Supervision providers
# ---------------------------------------------------------------------------------------

class E2eSupervisions:
    """Whole-utterance (flat-start) numerator graphs.

    ``graphs``: utt -> numerator FST (labels pdf-id + 1, normalised,
    e.g. from :func:`kbind.chain.supervision_maker.e2e_supervision_from_graph`),
    or a callable ``utt -> Fst`` (built on first use and cached).
    ``share_key``: optional ``utt -> key`` (e.g. the transcript): utterances
    with equal keys share one graph (the graph does not depend on the length)."""

    kind = "e2e"
    whole_utterances = True

    def __init__(self, graphs, share_key: Optional[Callable[[str], str]] = None):
        self._graphs = graphs
        self._key = share_key
        self._cache: Dict[str, NumeratorFst] = {}

    def has(self, utt: str) -> bool:
        if callable(self._graphs) and not isinstance(self._graphs, Mapping):
            return True
        return utt in self._graphs

    def get(self, utt: str, start: int = 0, num_frames: Optional[int] = None) -> NumeratorFst:
        key = utt if self._key is None else self._key(utt)
        f = self._cache.get(key)
        if f is None:
            g = self._graphs(utt) if (callable(self._graphs)
                                      and not isinstance(self._graphs, Mapping)) \
                else self._graphs[utt]
            f = _numerator_fst(g, 0)
            self._cache[key] = f
        return f


class AlignmentSupervisions:
    """Chunk supervision from phone alignments (regular chain training).

    ``phone_ali``: utt -> ``[(phone, num_input_frames), ...]`` (``ali-to-phones
    --write-lengths``). The utterance's supervision FST is made once
    (``chain-get-supervision``), then each chunk is cut out
    (``SupervisionSplitter``), made unconstrained if asked, and normalised
    (``AddWeightToSupervisionFst``)."""

    whole_utterances = False

    def __init__(self, phone_ali: Mapping[str, Sequence[Tuple[int, int]]], tree, trans_model,
                 normalization_fst, fss: int = 3, left_tolerance: int = 5,
                 right_tolerance: int = 5, constrained: bool = True):
        self.phone_ali = phone_ali
        self.tree, self.trans_model, self.norm = tree, trans_model, normalization_fst
        self.fss, self.lt, self.rt = fss, left_tolerance, right_tolerance
        self.constrained = constrained
        self.kind = "constrained" if constrained else "e2e"
        self._utt: Dict[str, object] = {}

    def has(self, utt: str) -> bool:
        return utt in self.phone_ali

    def num_frames(self, utt: str) -> int:
        return sum(int(d) for _, d in self.phone_ali[utt])

    def get(self, utt: str, start: int, num_frames: int) -> NumeratorFst:
        """Supervision of output frames ``[start, start + num_frames)``."""
        from .supervision_maker import (add_weight_to_supervision, alignment_to_proto_supervision,
                                        make_unconstrained, proto_to_supervision_fst,
                                        split_supervision)
        sup = self._utt.get(utt)
        if sup is None:
            proto = alignment_to_proto_supervision(self.phone_ali[utt], self.fss, self.lt, self.rt)
            sup = proto_to_supervision_fst(proto, self.tree, self.trans_model,
                                           convert_to_pdfs=self.constrained)
            self._utt[utt] = sup
        part = split_supervision(sup, start, num_frames)
        if self.constrained:
            f = add_weight_to_supervision(part, self.norm, e2e=False)
        else:
            f = add_weight_to_supervision(make_unconstrained(part, self.trans_model), self.norm,
                                          e2e=True)
        return _numerator_fst(f, 0)


# ---------------------------------------------------------------------------------------
# Egs
# ---------------------------------------------------------------------------------------

class Chunk(NamedTuple):
    """One eg: input frames ``[start + offset - left, start + offset + width + right)``
    of ``utt`` (edge-padded), supervision of output frames
    ``[start / fss, start / fss + num_out)``."""
    utt: str
    start: int          # first input frame of the chunk (multiple of fss)
    width: int          # chunk input frames (the bucket length for padded e2e egs)
    num_out: int        # output frames with supervision
    offset: int         # feature offset from the frame shift (0, -1, +1)
    bucket: int         # merge key (chunk width or allowed length)


class ChainEgs:
    """Chunked (or whole-utterance) chain egs of one data dir (see module doc)."""

    def __init__(self, features: FeatureSource, supervisions, left_context: int,
                 right_context: int, config: Optional[EgsConfig] = None, fss: int = 3,
                 seed: int = 0, utterances: Optional[Sequence[str]] = None):
        self.cfg = config or EgsConfig()
        if self.cfg.e2e_batching not in ("similar", "allowed_lengths"):
            raise ValueError(f"e2e_batching must be similar or allowed_lengths, got "
                             f"{self.cfg.e2e_batching!r}")
        self.features = features
        self.sup = supervisions
        self.fss = int(fss)
        self.left = int(left_context) + int(self.cfg.extra_left_context)
        self.right = int(right_context) + int(self.cfg.extra_right_context)
        self.seed = int(seed)
        self.rule = MinibatchRule(self.cfg.minibatch_size)
        utts = list(utterances) if utterances is not None else list(features.utterances)
        missing = [u for u in utts if not supervisions.has(u)]
        if missing:
            log.warning("%d of %d utterances have no supervision and are skipped (e.g. %s)",
                        len(missing), len(utts), missing[0])
        self.utterances = [u for u in utts if supervisions.has(u)]
        if not self.utterances:
            raise ValueError("no utterances with both features and supervision")
        self.whole = bool(getattr(supervisions, "whole_utterances", False))
        self.widths = parse_chunk_widths(self.cfg.chunk_width, self.fss)
        if self.whole:
            lens = [features.num_frames(u) for u in self.utterances]
            self.allowed = allowed_lengths(lens, self.fss, self.cfg.allowed_length_factor)
        else:
            self.allowed = []
            for u in self.utterances:
                n_ali, n_feat = self.sup.num_frames(u), features.num_frames(u)
                if abs(n_ali - n_feat) > 2:
                    raise ValueError(f"{u}: alignment has {n_ali} frames, features {n_feat}")

    @classmethod
    def from_data_dir(cls, data_dir, supervisions, left_context: int, right_context: int,
                      config: Optional[EgsConfig] = None, fss: int = 3, seed: int = 0,
                      utterances: Optional[Sequence[str]] = None) -> "ChainEgs":
        config = config or EgsConfig()
        feats = FeatureSource(data_dir, config.cmvn, config.norm_vars, utterances)
        return cls(feats, supervisions, left_context, right_context, config, fss, seed)

    @property
    def feat_dim(self) -> int:
        return self.features.dim

    def _rng(self, epoch: int) -> random.Random:
        return random.Random(f"kbind-egs:{self.seed}:{epoch}")

    # -- the egs of an epoch -------------------------------------------------------------
    def chunks(self, epoch: int) -> List[Chunk]:
        """Every eg of the epoch (before merging), in a deterministic order."""
        rng = self._rng(epoch)
        fss = self.fss
        out: List[Chunk] = []
        for u in self.utterances:
            n = self.features.num_frames(u)
            if self.whole:
                shift = rng.randrange(fss) if self.cfg.frame_shift else 0
                bucket = next(a for a in self.allowed if a >= n)
                if self.cfg.e2e_batching == "allowed_lengths":
                    width = bucket
                else:
                    width = n
                out.append(Chunk(u, 0, width, -(-width // fss),
                                 feature_offset_for_shift(shift, fss), bucket))
            else:
                n = min(n, self.sup.num_frames(u))
                for start, w in split_utterance(n, self.widths, fss, rng):
                    shift = rng.randrange(fss) if self.cfg.frame_shift else 0
                    out.append(Chunk(u, start, w, w // fss,
                                     feature_offset_for_shift(shift, fss), w))
        return out

    def batches(self, epoch: int) -> List[List[Chunk]]:
        """The epoch's minibatches: egs of one bucket merged by the
        minibatch rule (or frame budget), shuffled (deterministic)."""
        rng = self._rng(epoch)
        rng.random()  # decorrelate from chunks()
        chunks = self.chunks(epoch)
        if self.whole and self.cfg.e2e_batching == "similar":
            out = self._similar_batches(chunks, rng)
        else:
            if self.cfg.shuffle:
                rng.shuffle(chunks)
            queues: Dict[int, List[Chunk]] = {}
            out = []
            for c in chunks:
                q = queues.setdefault(c.bucket, [])
                q.append(c)
                if len(q) >= self._batch_size(c.bucket):
                    out.append(q)
                    queues[c.bucket] = []
            for bucket in sorted(queues):
                out.extend(self._flush(queues[bucket], bucket))
        if self.cfg.shuffle:
            rng.shuffle(out)
        return out

    def _similar_batches(self, chunks: List[Chunk], rng: random.Random) -> List[List[Chunk]]:
        """Whole utterances sorted by length (random order within a bucket)
        and cut into consecutive minibatches; lengths differ within a batch."""
        keyed = [(c.bucket, rng.random() if self.cfg.shuffle else 0.0, i, c)
                 for i, c in enumerate(chunks)]
        keyed.sort()
        order = [c for *_, c in keyed]
        out: List[List[Chunk]] = []
        cur: List[Chunk] = []
        for c in order:
            if cur and len(cur) + 1 > self._batch_size(max(c.width, cur[-1].width)):
                out.append(cur)
                cur = []
            cur.append(c)
        if cur:
            if len(cur) >= self._batch_size(cur[-1].width) or \
                    self.cfg.max_frames_per_minibatch > 0:
                out.append(cur)
            else:
                out.extend(self._flush(cur, cur[-1].width))
        return out

    def _eg_size(self, bucket: int) -> int:
        return self.left + bucket + self.right

    def _batch_size(self, bucket: int) -> int:
        if self.cfg.max_frames_per_minibatch > 0:
            return max(1, self.cfg.max_frames_per_minibatch // self._eg_size(bucket))
        return self.rule.sizes(self._eg_size(bucket))[0]

    def _flush(self, q: List[Chunk], bucket: int) -> List[List[Chunk]]:
        if self.cfg.max_frames_per_minibatch > 0:
            return [q] if q else []
        out = []
        sizes = self.rule.sizes(self._eg_size(bucket))
        i = 0
        while i < len(q):
            fit = [s for s in sizes if s <= len(q) - i]
            if not fit:
                break
            out.append(q[i:i + fit[0]])
            i += fit[0]
        if i < len(q):
            log.debug("dropping %d leftover egs of size %d", len(q) - i, bucket)
        return out

    def dataset(self, epoch: int) -> "ChainEgsDataset":
        return ChainEgsDataset(self, epoch)

    def collate(self, chunks: Sequence[Chunk]):
        return collate_chunks(chunks, self.features, self.sup, self.left, self.right, self.fss)


def collate_features(spans: Sequence[Tuple[str, int, int]],
                     features: Callable[[str], np.ndarray], left: int,
                     right: int) -> torch.Tensor:
    """The input of a minibatch, ``(B, left + max width + right, F)`` float32.

    ``spans``: per eg ``(utt, first frame, width)``; its rows are the
    utterance's frames ``[first - left, first + width + right)``, edge-padded
    (:func:`extract_with_padding`); egs narrower than the widest are padded at
    the end by repeating their last row. Every trainer's egs (chain
    supervision, CE labels) are collated through here; each attaches its
    labels to the rows."""
    if not spans:
        raise ValueError("empty minibatch")
    t_max = max(width for _, _, width in spans)
    rows = []
    for utt, first, width in spans:
        x = extract_with_padding(features(utt), first - left, first + width + right)
        if width < t_max:
            x = np.concatenate([x, np.repeat(x[-1:], t_max - width, axis=0)])
        rows.append(x)
    return torch.from_numpy(np.stack(rows).astype(np.float32, copy=False))


def collate_chunks(chunks: Sequence[Chunk], features: Callable[[str], np.ndarray], sup,
                   left: int, right: int, fss: int):
    """``(feats (B, T_in, F) float32, Supervision, lengths (B,) int64)``.

    Sequences shorter than the longest are padded at the end by repeating
    their last frame; ``lengths`` are the output frames with supervision.
    An eg whose supervision cannot be made
    (:class:`kbind.chain.supervision_maker.SupervisionRejected`) is skipped with
    a warning, as Kaldi's egs programs skip it; any other error (a corrupt
    graph, with its file, key and offset) is raised."""
    from .supervision_maker import SupervisionRejected
    if not chunks:
        raise ValueError("empty minibatch")
    kept, fsts = [], []
    for c in chunks:
        try:
            fst = sup.get(c.utt, c.start // fss, c.num_out)
        except SupervisionRejected as e:
            log.warning("%s (frames %d..%d): no supervision (%s); eg skipped", c.utt,
                        c.start, c.start + c.width, e)
            continue
        kept.append(c)
        fsts.append(fst)
    if not fsts:
        raise ValueError("no eg of the minibatch has a supervision")
    feats = collate_features([(c.utt, c.start + c.offset, c.width) for c in kept], features,
                             left, right)
    frames = [c.num_out for c in kept]
    supervision = Supervision(fsts, frames, [1.0] * len(fsts), sup.kind)
    return feats, supervision, torch.tensor(frames, dtype=torch.long)


class ChainEgsDataset(torch.utils.data.Dataset):
    """Map-style dataset: item ``i`` is minibatch ``i`` of the epoch, collated.

    Use with ``DataLoader(ds, batch_size=None)`` (or index it directly);
    ``ds.subset(k)`` starts at minibatch ``k`` (resuming)."""

    def __init__(self, egs: ChainEgs, epoch: int, start: int = 0):
        self.egs = egs
        self.epoch = epoch
        self.plan = egs.batches(epoch)
        self.start = start

    def __len__(self) -> int:
        return len(self.plan) - self.start

    def __getitem__(self, i: int):
        return self.egs.collate(self.plan[self.start + i])

    def subset(self, start: int) -> "ChainEgsDataset":
        ds = ChainEgsDataset.__new__(ChainEgsDataset)
        ds.egs, ds.epoch, ds.plan, ds.start = self.egs, self.epoch, self.plan, start
        return ds

    def num_frames(self) -> int:
        """Output frames with supervision over the epoch."""
        return sum(c.num_out for b in self.plan for c in b)

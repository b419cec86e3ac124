"""Feature extraction for a whole data dir, as Kaldi's steps/make_fbank.sh
(or make_mfcc.sh) followed by steps/compute_cmvn_stats.sh.

Writes ``<feats_dir>/raw_<kind>_<name>.{ark,scp}`` (optionally compressed,
as Kaldi's ``--compress=true`` default), ``feats.scp``, ``utt2num_frames``
and per-speaker ``cmvn.scp`` into the data dir, then validates it.
Utterances whose audio cannot be read are reported and left out of
feats.scp (Kaldi warns and goes on); if none can be read it is an error.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Union

import numpy as np

from ..io import CompressionMethod, write_table
from ..io import compress as compress_matrix
from .audio import AudioError, SegmentError, load_utterance
from .cmvn import compute_cmvn_stats
from .datadir import DataDir, validate_data_dir
from .features import FbankOptions, FeatureExtractor, MfccOptions

__all__ = ["make_features"]

log = logging.getLogger(__name__)


def make_features(data_dir, feats_dir=None, opts: Union[FbankOptions, MfccOptions, None] = None,
                  compress: bool = True, num_workers: int = 2,
                  progress: bool = False) -> DataDir:
    """Compute features and CMVN stats for every utterance of ``data_dir``.

    Returns the reloaded :class:`DataDir`. Threads run the torch feature
    code (which releases the GIL) over utterances; output order is sorted.
    """
    data_dir = Path(data_dir)
    feats_dir = Path(feats_dir) if feats_dir is not None else data_dir / "data"
    feats_dir.mkdir(parents=True, exist_ok=True)
    d = DataDir.load(data_dir)
    extractor = FeatureExtractor(opts or FbankOptions(), allow_resample=True)
    name = data_dir.name
    kind = extractor.kind
    ark = (feats_dir / f"raw_{kind}_{name}.ark").resolve()
    scp = (feats_dir / f"raw_{kind}_{name}.scp").resolve()

    def compute(utt):
        try:
            wave, sr = load_utterance(d, utt)
            return utt, extractor(wave, sample_rate=sr)
        except (AudioError, SegmentError, OSError) as e:
            return utt, e

    utts = d.utterances
    failed = []
    num_frames = {}
    spk_stats = {}
    it = utts
    if progress:
        from tqdm import tqdm
        it = tqdm(utts, desc=f"{kind} {name}", unit="utt")
    with ThreadPoolExecutor(max(1, num_workers)) as pool, \
            write_table(f"ark,scp:{ark},{scp}") as w:
        for utt, feats in pool.map(compute, it):
            if isinstance(feats, Exception):
                log.warning("%s: cannot compute features for %s: %s", data_dir, utt, feats)
                failed.append(utt)
                continue
            feats = feats.numpy()
            if feats.shape[0] == 0:
                log.warning("%s: %s is shorter than one frame; left out", data_dir, utt)
                failed.append(utt)
                continue
            if compress:
                # Store compressed, and take CMVN stats from what readers
                # will get back, as compute-cmvn-stats on feats.scp does.
                feats = compress_matrix(feats, CompressionMethod.SPEECH_FEATURE)
                w.write(utt, feats)
                feats = feats.to_numpy()
            else:
                w.write(utt, feats)
            num_frames[utt] = feats.shape[0]
            spk = d.utt2spk[utt]
            st = compute_cmvn_stats(feats)
            spk_stats[spk] = st if spk not in spk_stats else spk_stats[spk] + st
    if not num_frames:
        raise RuntimeError(f"{data_dir}: no utterance could be read ({len(failed)} failed)")
    cmvn_ark = (feats_dir / f"cmvn_{name}.ark").resolve()
    cmvn_scp = (feats_dir / f"cmvn_{name}.scp").resolve()
    with write_table(f"ark,scp:{cmvn_ark},{cmvn_scp}") as w:
        for spk in sorted(spk_stats, key=lambda s: s.encode()):
            w.write(spk, np.asarray(spk_stats[spk], dtype=np.float64))
    _copy_scp(scp, data_dir / "feats.scp")
    _copy_scp(cmvn_scp, data_dir / "cmvn.scp")
    with open(data_dir / "utt2num_frames", "w") as f:
        for utt in sorted(num_frames, key=lambda s: s.encode()):
            f.write(f"{utt} {num_frames[utt]}\n")
    if failed:
        log.warning("%s: %d of %d utterances failed; they are left out of feats.scp",
                    data_dir, len(failed), len(utts))
        keep = [u for u in utts if u in num_frames]
        d = DataDir.load(data_dir).subset(keep)
        d.write(data_dir)
    validate_data_dir(data_dir)
    return DataDir.load(data_dir)


def _copy_scp(src: Path, dst: Path) -> None:
    lines = Path(src).read_text().splitlines()
    lines.sort(key=lambda ln: ln.split(" ", 1)[0].encode())
    Path(dst).write_text("".join(ln + "\n" for ln in lines))

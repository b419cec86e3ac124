"""Kaldi data directories, audio loading, fbank/MFCC features and CMVN.

* :mod:`kbind.data.datadir` -- :class:`DataDir`, :func:`validate_data_dir`;
* :mod:`kbind.data.audio` -- :func:`load_audio`, :func:`load_utterance`,
  :func:`resample`;
* :mod:`kbind.data.features` -- Kaldi-exact :func:`compute_fbank` and
  :func:`compute_mfcc` in torch, :class:`FeatureExtractor`;
* :mod:`kbind.data.cmvn` -- :func:`compute_cmvn_stats`, :func:`apply_cmvn`.
"""

from kbind.data.audio import (
    AudioError,
    SegmentError,
    load_audio,
    load_utterance,
    resample,
    resampled_length,
)
from kbind.data.cmvn import (
    CmvnStats,
    accumulate_cmvn_stats,
    apply_cmvn,
    apply_cmvn_for_datadir,
    apply_cmvn_per_speaker,
    apply_cmvn_per_utterance,
    compute_cmvn_stats,
    compute_cmvn_stats_for_datadir,
    compute_cmvn_stats_per_speaker,
    compute_global_cmvn_stats,
)
from kbind.data.datadir import (
    DataDir,
    DataDirError,
    Segment,
    ValidationIssue,
    ValidationResult,
    kaldi_sorted,
    spk2utt_to_utt2spk,
    utt2spk_to_spk2utt,
    validate_data_dir,
)
from kbind.data.features import (
    FbankOptions,
    FeatureExtractor,
    FrameOptions,
    MelOptions,
    MfccOptions,
    compute_fbank,
    compute_mfcc,
    num_frames,
)

__all__ = [
    # datadir
    "DataDir",
    "DataDirError",
    "Segment",
    "ValidationIssue",
    "ValidationResult",
    "kaldi_sorted",
    "spk2utt_to_utt2spk",
    "utt2spk_to_spk2utt",
    "validate_data_dir",
    # audio
    "AudioError",
    "SegmentError",
    "load_audio",
    "load_utterance",
    "resample",
    "resampled_length",
    # features
    "FbankOptions",
    "FeatureExtractor",
    "FrameOptions",
    "MelOptions",
    "MfccOptions",
    "compute_fbank",
    "compute_mfcc",
    "num_frames",
    # cmvn
    "CmvnStats",
    "accumulate_cmvn_stats",
    "apply_cmvn",
    "apply_cmvn_for_datadir",
    "apply_cmvn_per_speaker",
    "apply_cmvn_per_utterance",
    "compute_cmvn_stats",
    "compute_cmvn_stats_for_datadir",
    "compute_cmvn_stats_per_speaker",
    "compute_global_cmvn_stats",
]

r"""Audio loading for Kaldi data directories.

``wav.scp`` values are Kaldi rxfilenames: a plain path, a command whose
standard output is a WAV file (the value ends with ``|``, e.g. ``sox in.flac
-t wav - |`` or ``cat a.wav |``), or ``archive.ark:OFFSET`` (a WAV object
inside a Kaldi wave archive written by ``wav-copy``).  Files are decoded with
soundfile (WAV, FLAC, ...).  WAV headers written to a pipe (sox, ffmpeg) have
unknown sizes (0 or 0xFFFFFFFF); those sizes are repaired before decoding.

Scale
-----
Kaldi computes features on int16-scale samples: ``WaveData`` holds the
integer PCM values as floats.  soundfile returns values in [-1, 1) (the PCM
value divided by 32768), so by default (``kaldi_scale=True``) samples are
multiplied by 32768, which gives back the int16 values exactly.

Segments
--------
:func:`load_audio` with a segment ``(start, end[, channel])`` (seconds)
reproduces ``extract-segments``: ``start_samp = int(start * samp_freq)`` and
``end_samp = int(end * samp_freq)`` are *truncated* (not rounded), ``end ==
-1`` means the end of the recording; a start at or beyond the end of the
recording is an error; an end beyond it is truncated when it overshoots by
less than ``max_overshoot`` (0.5 s) and an error otherwise; segments not
longer than ``min_segment_length`` (0.1 s) are an error (Kaldi skips them
with a warning, so those utterances have no features).  The channel is
0-based as in extract-segments' code; multi-channel audio without a channel
is an error for segments.

Resampling
----------
:func:`resample` is band-limited interpolation with a Hann-windowed sinc
(the "sinc_interp_hann" method of torchaudio / Julius O. Smith's
resample): with ``g = gcd(orig, new)``, the rates are reduced to ``o =
orig/g`` and ``n = new/g``, the cutoff is ``rolloff * min(o, n) / 2`` (in
reduced-rate units, ``rolloff = 0.99``), and the kernel is
``sinc(pi * f_c * t) * cos(pi t / (2 W))^2`` for ``|t| <= W`` zero crossings
(``W = lowpass_filter_width = 6``), computed in float64.  It is implemented
as a strided ``conv1d`` with ``n`` polyphase filters, so it runs on GPU.
The output has ``floor(N * new / orig + 0.5)`` samples (N * new / orig
rounded half up).
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import subprocess
import warnings
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np
import torch

__all__ = [
    "AudioError",
    "SegmentError",
    "read_audio_bytes",
    "load_audio",
    "load_utterance",
    "resample",
    "resampled_length",
    "segment_to_samples",
]


class AudioError(OSError):
    """Audio could not be read (missing file, failing pipe, undecodable)."""


class SegmentError(ValueError):
    """A segment that extract-segments would reject (skip)."""


def _is_pipe(entry: str) -> bool:
    return entry.rstrip().endswith("|")


def _run_pipe(command: str) -> bytes:
    cmd = command.rstrip()[:-1].strip()
    try:
        proc = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, check=False)
    except OSError as exc:  # pragma: no cover - shell missing
        raise AudioError(f"could not run command '{cmd}': {exc}") from exc
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace").strip()
        raise AudioError(f"command '{cmd}' failed with exit status "
                         f"{proc.returncode}; stderr: {stderr or '(empty)'}")
    if not proc.stdout:
        stderr = proc.stderr.decode("utf-8", "replace").strip()
        raise AudioError(f"command '{cmd}' produced no output; stderr: "
                         f"{stderr or '(empty)'}")
    return proc.stdout


def _read_riff_at(path: str, offset: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        head = f.read(8)
        if len(head) < 8 or head[:4] != b"RIFF":
            raise AudioError(f"{path}:{offset}: no RIFF header at byte offset {offset}")
        size = struct.unpack("<I", head[4:8])[0]
        return head + f.read(size)


def _fix_streamed_wav(data: bytes) -> bytes:
    """Repair the RIFF/data sizes of a WAV written to a non-seekable stream."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return data
    buf = bytearray(data)
    total = len(buf)
    riff_size = struct.unpack_from("<I", buf, 4)[0]
    if riff_size + 8 != total:
        struct.pack_into("<I", buf, 4, total - 8)
    pos = 12
    block_align = 1
    while pos + 8 <= total:
        cid = bytes(buf[pos:pos + 4])
        size = struct.unpack_from("<I", buf, pos + 4)[0]
        if cid == b"fmt " and pos + 8 + 14 <= total:
            block_align = max(1, struct.unpack_from("<H", buf, pos + 8 + 12)[0])
        if cid == b"data":
            avail = total - pos - 8
            if size == 0 or size > avail:
                size = avail - avail % block_align
                struct.pack_into("<I", buf, pos + 4, size)
            break
        pos += 8 + size + (size & 1)
    return bytes(buf)


def read_audio_bytes(entry: str) -> Tuple[Union[str, io.BytesIO], str]:
    """Resolve a wav.scp value to something soundfile can open.

    Returns ``(path_or_buffer, description)``.
    """
    entry = entry.strip()
    if _is_pipe(entry):
        return io.BytesIO(_fix_streamed_wav(_run_pipe(entry))), entry
    if entry == "-":
        import sys
        return io.BytesIO(_fix_streamed_wav(sys.stdin.buffer.read())), "stdin"
    if not os.path.exists(entry):
        m = re.match(r"^(.*):(\d+)$", entry)
        if m and os.path.exists(m.group(1)):
            return io.BytesIO(_read_riff_at(m.group(1), int(m.group(2)))), entry
        raise AudioError(f"audio file not found: '{entry}'")
    return entry, entry


def _decode(entry: str) -> Tuple[np.ndarray, int]:
    import soundfile as sf
    src, desc = read_audio_bytes(entry)
    try:
        data, sr = sf.read(src, dtype="float64", always_2d=True)
    except Exception as exc:  # soundfile raises RuntimeError / LibsndfileError
        raise AudioError(f"could not decode audio from '{desc}': {exc}") from exc
    return data.T, int(sr)  # (channels, samples)


def segment_to_samples(start: float, end: float, sample_rate: float, num_samples: int,
                       *, min_segment_length: float = 0.1,
                       max_overshoot: float = 0.5, name: str = "") -> Tuple[int, int]:
    """extract-segments' conversion of (start, end) seconds to sample indices."""
    what = f"segment '{name}'" if name else "segment"
    sr = float(np.float32(sample_rate))
    if start < 0 or (end != -1.0 and end <= 0) or (start >= end and end > 0):
        raise SegmentError(f"invalid {what}: start {start}, end {end}")
    start_samp = int(start * sr)
    end_samp = int(end * sr) if end != -1 else num_samples
    if start_samp >= num_samples:
        raise SegmentError(f"{what}: start sample {start_samp} out of range "
                           f"(recording has {num_samples} samples)")
    if end_samp > num_samples:
        if end_samp >= num_samples + int(float(np.float32(max_overshoot)) * sr):
            raise SegmentError(f"{what}: end sample {end_samp} too far out of "
                               f"range (recording has {num_samples} samples)")
        end_samp = num_samples
    if end_samp <= start_samp + int(float(np.float32(min_segment_length)) * sr):
        raise SegmentError(f"{what} too short ({end_samp - start_samp} samples "
                           f"<= min_segment_length {min_segment_length}s); "
                           f"Kaldi's extract-segments would skip it")
    return start_samp, end_samp


def load_audio(source: str, segment=None, target_sample_rate: Optional[int] = None, *,
               channel: Optional[int] = None, kaldi_scale: bool = True,
               min_segment_length: float = 0.1, max_overshoot: float = 0.5,
               ) -> Tuple[torch.Tensor, int]:
    """Load audio from a path or wav.scp value.

    Parameters
    ----------
    source: a file path, ``"command |"`` or ``"archive.ark:offset"``.
    segment: ``None``, ``(start, end)``, ``(start, end, channel)`` in seconds,
        or an object with ``start``, ``end`` and ``channel`` attributes
        (:class:`kbind.data.datadir.Segment`); see the module docstring.
    target_sample_rate: resample to this rate if it differs.
    channel: 0-based channel to return.  ``None``: mono audio comes back as
        a 1-D tensor, multi-channel audio as (channels, samples).
    kaldi_scale: multiply by 32768 (int16 scale, what Kaldi features expect).

    Returns ``(samples, sample_rate)`` with float32 samples.
    """
    data, sr = _decode(source)
    num_chan, num_samp = data.shape
    if segment is not None:
        if isinstance(segment, (tuple, list)):
            start, end = float(segment[0]), float(segment[1])
            seg_chan = segment[2] if len(segment) > 2 else None
            name = ""
        else:
            start, end = float(segment.start), float(segment.end)
            seg_chan = getattr(segment, "channel", None)
            name = getattr(segment, "name", "") or ""
        if seg_chan is not None:
            if channel is not None and channel != seg_chan:
                raise ValueError(f"channel {channel} conflicts with segment channel {seg_chan}")
            channel = int(seg_chan)
        if channel is None:
            if num_chan == 1:
                channel = 0
            else:
                raise SegmentError(
                    f"'{source}' has {num_chan} channels: the segments file must "
                    f"specify the channel (5th field)")
        s, e = segment_to_samples(start, end, sr, num_samp,
                                  min_segment_length=min_segment_length,
                                  max_overshoot=max_overshoot, name=name)
        data = data[:, s:e]
    if channel is not None:
        if channel < 0 or channel >= num_chan:
            raise ValueError(f"invalid channel {channel} for '{source}' with "
                             f"{num_chan} channel(s)")
        data = data[channel]
    elif num_chan == 1:
        data = data[0]
    if kaldi_scale:
        data = data * 32768.0
    out = torch.from_numpy(np.ascontiguousarray(data))
    if target_sample_rate is not None and int(target_sample_rate) != sr:
        out = resample(out, sr, int(target_sample_rate))
        sr = int(target_sample_rate)
    return out.to(torch.float32), sr


def load_utterance(datadir, utt: str, target_sample_rate: Optional[int] = None, *,
                   kaldi_scale: bool = True, min_segment_length: float = 0.1,
                   max_overshoot: float = 0.5) -> Tuple[torch.Tensor, int]:
    """Load the audio of utterance ``utt`` of a :class:`~kbind.data.DataDir`.

    With a ``segments`` file the segment is cut from its recording as
    ``extract-segments`` does; without one ``wav.scp`` is keyed by
    utterance.  A multi-channel recording without segments gives channel 0
    with a warning (as compute-fbank-feats with the default ``--channel=-1``).
    """
    if datadir.segments:
        if utt not in datadir.segments:
            raise KeyError(f"utterance '{utt}' not in segments of {datadir.path}")
        seg = datadir.segments[utt]
        if seg.recording not in datadir.wav_scp:
            raise KeyError(f"recording '{seg.recording}' of utterance '{utt}' "
                           f"not in wav.scp of {datadir.path}")
        entry = datadir.wav_scp[seg.recording]
        return load_audio(entry, _NamedSegment(utt, seg.start, seg.end, seg.channel),
                          target_sample_rate, kaldi_scale=kaldi_scale,
                          min_segment_length=min_segment_length,
                          max_overshoot=max_overshoot)
    if utt not in datadir.wav_scp:
        raise KeyError(f"utterance '{utt}' not in wav.scp of {datadir.path}")
    wav, sr = load_audio(datadir.wav_scp[utt], None, target_sample_rate,
                         kaldi_scale=kaldi_scale)
    if wav.dim() == 2:
        warnings.warn(f"Channel not specified but you have data with "
                      f"{wav.shape[0]} channels; defaulting to zero (utterance {utt})")
        wav = wav[0]
    return wav, sr


@dataclass
class _NamedSegment:
    name: str
    start: float
    end: float
    channel: Optional[int]


# ---------------------------------------------------------------------------
# resampling

def resampled_length(num_samples: int, orig_freq: int, new_freq: int) -> int:
    """``floor(num_samples * new / orig + 0.5)`` computed exactly."""
    return (2 * num_samples * new_freq + orig_freq) // (2 * orig_freq)


def _sinc_kernel(orig: int, new: int, width_zc: int, rolloff: float,
                 dtype: torch.dtype, device) -> Tuple[torch.Tensor, int]:
    base_freq = min(orig, new) * rolloff
    width = int(math.ceil(width_zc * orig / base_freq))
    idx = torch.arange(-width, width + orig, dtype=torch.float64) / orig
    t = torch.arange(0, -new, -1, dtype=torch.float64)[:, None] / new + idx[None, :]
    t = t * base_freq
    t = t.clamp(-width_zc, width_zc)
    window = torch.cos(t * math.pi / width_zc / 2) ** 2
    t = t * math.pi
    scale = base_freq / orig
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / torch.where(t == 0, torch.ones_like(t), t))
    kernels = sinc * window * scale
    return kernels[:, None, :].to(dtype=dtype, device=device), width


def resample(waveform, orig_freq: int, new_freq: int, *,
             lowpass_filter_width: int = 6, rolloff: float = 0.99) -> torch.Tensor:
    """Resample along the last dimension (see the module docstring)."""
    x = waveform if isinstance(waveform, torch.Tensor) else torch.as_tensor(np.asarray(waveform))
    orig_freq, new_freq = int(orig_freq), int(new_freq)
    if orig_freq <= 0 or new_freq <= 0:
        raise ValueError(f"sample rates must be positive: {orig_freq}, {new_freq}")
    if orig_freq == new_freq:
        return x.clone()
    if x.shape[-1] == 0:
        return x.new_zeros(x.shape, dtype=x.dtype if x.is_floating_point() else torch.float32)
    g = math.gcd(orig_freq, new_freq)
    orig, new = orig_freq // g, new_freq // g
    shape = x.shape
    n = shape[-1]
    out_len = resampled_length(n, orig_freq, new_freq)
    in_dtype = x.dtype if x.is_floating_point() else torch.float32
    work = torch.float64 if x.device.type == "cpu" else torch.float32
    flat = x.reshape(-1, 1, n).to(work)
    kernel, width = _sinc_kernel(orig, new, lowpass_filter_width, rolloff, work, x.device)
    padded = torch.nn.functional.pad(flat, (width, width + orig))
    y = torch.nn.functional.conv1d(padded, kernel, stride=orig)  # (B, new, frames)
    y = y.transpose(1, 2).reshape(flat.shape[0], -1)[:, :out_len]
    return y.reshape(shape[:-1] + (out_len,)).to(in_dtype)

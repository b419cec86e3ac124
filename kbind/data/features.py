r"""Kaldi-compatible filterbank (fbank) and MFCC features as torch ops.

The code reproduces ``compute-fbank-feats`` / ``compute-mfcc-feats``
(``src/feat/feature-window.cc``, ``mel-computations.cc``, ``feature-fbank.cc``,
``feature-mfcc.cc``) step by step; everything is written with torch tensor
operations so that the same code runs on CPU and GPU and processes many
utterances in one batch (all frames of all utterances go through one FFT and
one matrix product).  The internal computation is float64 by default (Kaldi
itself uses float32; float64 makes us agree with Kaldi / kaldi-native-fbank
to about 1e-5 on log-mel values); the result is float32.

Waveform scale
--------------
Kaldi computes features on samples on the int16 scale (a full-scale sine has
amplitude 32767), not on [-1, 1).  :func:`kbind.data.audio.load_audio` returns
samples on that scale by default.

Framing (``FrameOptions``)
--------------------------
``window_size = int(samp_freq * 0.001 * frame_length_ms)`` samples (400 at
16 kHz), ``window_shift = int(samp_freq * 0.001 * frame_shift_ms)`` (160).
With ``snip_edges=True`` frame ``t`` covers samples
``[t*shift, t*shift + size)`` and the number of frames is
``0`` if ``N < size`` else ``1 + (N - size) // shift``.  With
``snip_edges=False`` the number of frames is ``(N + shift // 2) // shift``
and frame ``t`` starts at ``t*shift + shift//2 - size//2`` (frames are
centred on ``t*shift + shift/2``); samples outside ``[0, N)`` are taken by
reflecting about the edges as Kaldi's ``ExtractWindow``: index ``i < 0`` maps
to ``-i - 1`` and ``i >= N`` to ``2N - 1 - i``, repeatedly (a half-sample
symmetric extension with period ``2N``).

Per-frame processing (``ProcessWindow``), in this order:

1. dither: ``x += dither * N(0, 1)`` (only if ``dither != 0``; here the
   default is 0 and a ``torch.Generator`` can be passed for reproducibility);
2. DC removal: ``x -= mean(x)`` (``remove_dc_offset``);
3. raw log-energy ``log(max(sum x^2, FLT_EPSILON))`` if it is needed
   (``use_energy`` and ``raw_energy``);
4. pre-emphasis, right to left: ``x[i] -= c * x[i-1]`` for ``i > 0`` and
   ``x[0] -= c * x[0]``;
5. window: with ``a = 2 pi / (L - 1)``:
   hanning ``0.5 - 0.5 cos(a i)``; hamming ``0.54 - 0.46 cos(a i)``;
   povey ``(0.5 - 0.5 cos(a i))^0.85``; sine ``sin(a i / 2)``; rectangular 1;
   blackman ``b - 0.5 cos(a i) + (0.5 - b) cos(2 a i)``;
6. zero padding to ``padded_window_size`` (next power of two if
   ``round_to_power_of_two``, e.g. 512).

Spectrum and mel banks
----------------------
Power spectrum ``|FFT(x)|^2`` (``use_power``; magnitude otherwise) of the
padded frame, bins ``k = 0 .. P/2``.  Kaldi's mel scale is
``mel(f) = 1127 ln(1 + f / 700)``.  ``num_bins`` triangles have edges equally
spaced in mel between ``mel(low_freq)`` and ``mel(high_freq)`` (``high_freq
<= 0`` means ``nyquist + high_freq``); bin ``m`` has left/centre/right edges
``mel_low + (m, m+1, m+2) * delta`` with ``delta = (mel_high - mel_low) /
(num_bins + 1)``.  FFT bin ``k < P/2`` (the Nyquist bin is never used) with
frequency ``k * samp_freq / P`` gets weight ``(mel - left)/(centre - left)``
on the rising and ``(right - mel)/(right - centre)`` on the falling side,
strictly inside ``(left, right)``; the triangles are therefore triangular in
the *mel* domain.  With VTLN (``vtln_warp != 1``) the edges are warped with
Kaldi's piecewise-linear ``VtlnWarpFreq``.  ``htk_mode`` reproduces HTK's
bug of zeroing the first weight of the first bin.  Kaldi computes the bank
in float32 with ``logf``/``expf``; we mirror that exactly (``_mel_banks_np``
calls the C library's ``logf``), so the weights equal knf's bit for bit.

Accuracy: against kaldi-native-fbank (float32 throughout) the log-mel and
MFCC values agree to < 1e-4 absolute; the exception is mel bins whose energy
is ~1e-7 of the frame's peak (e.g. the lowest of 80 bins after
pre-emphasis), where the float32 FFT's relative error ``~2 eps32
sqrt(P_max / P)`` reaches a few 1e-4 -- there float64 is the more accurate
value.

Fbank: ``log(max(mel_energy, FLT_EPSILON))`` (if ``use_log_fbank``), with
the log-energy prepended (or appended when ``htk_compat``) if ``use_energy``.

MFCC: ``c = D log(max(mel_energy, FLT_EPSILON))`` where ``D`` are the first
``num_ceps`` rows of Kaldi's ``ComputeDctMatrix`` (N = num_bins):
``D[0, n] = sqrt(1/N)``, ``D[k, n] = sqrt(2/N) cos(pi/N (n + 0.5) k)``; then
liftering ``c_i *= 1 + 0.5 L sin(pi i / L)`` (``cepstral_lifter = L``,
skipped if 0).  If ``use_energy`` the log-energy replaces ``c_0``.  With
``htk_compat`` the first coefficient is moved to the end (multiplied by
``sqrt(2)`` if it is C0 rather than energy).  Energies below
``log(energy_floor)`` are floored when ``energy_floor > 0``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = [
    "FLT_EPSILON",
    "FrameOptions",
    "MelOptions",
    "FbankOptions",
    "MfccOptions",
    "num_frames",
    "first_sample_of_frame",
    "feature_window_function",
    "mel_banks",
    "dct_matrix",
    "lifter_coeffs",
    "extract_frames",
    "compute_fbank",
    "compute_mfcc",
    "FeatureExtractor",
]

FLT_EPSILON = float(np.finfo(np.float32).eps)  # 1.1920929e-07

WINDOW_TYPES = ("hamming", "hanning", "povey", "rectangular", "sine", "blackman")

Waveform = Union[torch.Tensor, np.ndarray, Sequence[float]]


def _f32(x: float) -> float:
    """Round to float32 (Kaldi stores all options as ``BaseFloat``)."""
    return float(np.float32(x))


@dataclass
class FrameOptions:
    """Kaldi's ``FrameExtractionOptions``.

    ``dither`` defaults to 0 here (Kaldi's default is 1.0, knf's 3e-5); pass a
    ``torch.Generator`` to the compute functions for reproducible dithering.
    ``max_feature_vectors`` only matters for Kaldi's online feature
    pipeline; it is kept for option compatibility and ignored.
    """

    samp_freq: float = 16000.0
    frame_shift_ms: float = 10.0
    frame_length_ms: float = 25.0
    dither: float = 0.0
    preemph_coeff: float = 0.97
    remove_dc_offset: bool = True
    window_type: str = "povey"
    round_to_power_of_two: bool = True
    blackman_coeff: float = 0.42
    snip_edges: bool = True
    max_feature_vectors: int = -1

    def window_shift(self) -> int:
        return int(_f32(self.samp_freq) * 0.001 * _f32(self.frame_shift_ms))

    def window_size(self) -> int:
        return int(_f32(self.samp_freq) * 0.001 * _f32(self.frame_length_ms))

    def padded_window_size(self) -> int:
        size = self.window_size()
        if not self.round_to_power_of_two:
            return size
        return 1 << max(0, (size - 1).bit_length())

    def validate(self) -> None:
        if self.window_type not in WINDOW_TYPES:
            raise ValueError(f"Invalid window type {self.window_type!r}; "
                             f"expected one of {WINDOW_TYPES}")
        if self.window_size() < 2:
            raise ValueError(f"frame_length_ms={self.frame_length_ms} at "
                             f"samp_freq={self.samp_freq} gives a window of "
                             f"{self.window_size()} samples (< 2)")
        if self.window_shift() < 1:
            raise ValueError(f"frame_shift_ms={self.frame_shift_ms} at "
                             f"samp_freq={self.samp_freq} gives a shift of "
                             f"{self.window_shift()} samples (< 1)")
        if self.window_size() > self.padded_window_size():
            raise ValueError("padded window smaller than window")


@dataclass
class MelOptions:
    """Kaldi's ``MelBanksOptions`` (plus ``vtln_warp``, the default warp
    factor; Kaldi passes it separately, e.g. ``compute-fbank-feats
    --vtln-warp``)."""

    num_bins: int = 23
    low_freq: float = 20.0
    high_freq: float = 0.0
    vtln_low: float = 100.0
    vtln_high: float = -500.0
    vtln_warp: float = 1.0
    debug_mel: bool = False
    htk_mode: bool = False


@dataclass
class FbankOptions:
    """Kaldi's ``FbankOptions``."""

    frame_opts: FrameOptions = field(default_factory=FrameOptions)
    mel_opts: MelOptions = field(default_factory=MelOptions)
    use_energy: bool = False
    energy_floor: float = 0.0
    raw_energy: bool = True
    htk_compat: bool = False
    use_log_fbank: bool = True
    use_power: bool = True

    def dim(self) -> int:
        return self.mel_opts.num_bins + (1 if self.use_energy else 0)


@dataclass
class MfccOptions:
    """Kaldi's ``MfccOptions``."""

    frame_opts: FrameOptions = field(default_factory=FrameOptions)
    mel_opts: MelOptions = field(default_factory=MelOptions)
    num_ceps: int = 13
    use_energy: bool = True
    energy_floor: float = 0.0
    raw_energy: bool = True
    cepstral_lifter: float = 22.0
    htk_compat: bool = False

    def dim(self) -> int:
        return self.num_ceps


# ---------------------------------------------------------------------------
# framing

def num_frames(num_samples: int, opts: FrameOptions, flush: bool = True) -> int:
    """Kaldi's ``NumFrames(num_samples, opts, flush)``."""
    shift = opts.window_shift()
    length = opts.window_size()
    num_samples = int(num_samples)
    if opts.snip_edges:
        if num_samples < length:
            return 0
        return 1 + (num_samples - length) // shift
    n = (num_samples + shift // 2) // shift
    if flush:
        return n
    # Online case (not flushing): only frames whose end is within the data.
    end_sample_of_last_frame = first_sample_of_frame(n - 1, opts) + length
    while n > 0 and end_sample_of_last_frame > num_samples:
        n -= 1
        end_sample_of_last_frame -= shift
    return n


def first_sample_of_frame(frame: int, opts: FrameOptions) -> int:
    """Kaldi's ``FirstSampleOfFrame``."""
    shift = opts.window_shift()
    if opts.snip_edges:
        return frame * shift
    midpoint = frame * shift + shift // 2
    return midpoint - opts.window_size() // 2


def _frame_indices(num_samples: int, opts: FrameOptions,
                   device: torch.device) -> torch.Tensor:
    """(num_frames, window_size) int64 sample indices, edges reflected."""
    n = num_frames(num_samples, opts)
    length = opts.window_size()
    shift = opts.window_shift()
    offset = 0 if opts.snip_edges else shift // 2 - length // 2
    starts = torch.arange(n, device=device, dtype=torch.int64) * shift + offset
    idx = starts[:, None] + torch.arange(length, device=device,
                                         dtype=torch.int64)[None, :]
    if not opts.snip_edges and n > 0:
        # Kaldi's repeated reflection == symmetric extension of period 2N.
        period = 2 * num_samples
        idx = torch.remainder(idx, period)
        idx = torch.where(idx >= num_samples, period - 1 - idx, idx)
    return idx


def extract_frames(waveform: torch.Tensor, opts: FrameOptions) -> torch.Tensor:
    """Raw frames (num_frames, window_size) of a 1-D waveform (no processing)."""
    waveform = _as_tensor(waveform)
    if waveform.dim() != 1:
        raise ValueError(f"expected a 1-D waveform, got shape {tuple(waveform.shape)}")
    idx = _frame_indices(waveform.shape[0], opts, waveform.device)
    return waveform[idx]


# ---------------------------------------------------------------------------
# constant matrices (cached, float64 numpy; moved to torch on use)

def feature_window_function(opts: FrameOptions) -> np.ndarray:
    """Kaldi's ``FeatureWindowFunction`` (float64, length window_size)."""
    return _window_cached(opts.window_type, opts.window_size(),
                          _f32(opts.blackman_coeff)).copy()


@functools.lru_cache(maxsize=64)
def _window_cached(window_type: str, length: int, blackman_coeff: float) -> np.ndarray:
    i = np.arange(length, dtype=np.float64)
    a = 2.0 * math.pi / (length - 1)
    if window_type == "hanning":
        w = 0.5 - 0.5 * np.cos(a * i)
    elif window_type == "sine":
        w = np.sin(0.5 * a * i)
    elif window_type == "hamming":
        w = 0.54 - 0.46 * np.cos(a * i)
    elif window_type == "povey":
        w = np.power(0.5 - 0.5 * np.cos(a * i), 0.85)
    elif window_type == "rectangular":
        w = np.ones(length)
    elif window_type == "blackman":
        w = blackman_coeff - 0.5 * np.cos(a * i) + (0.5 - blackman_coeff) * np.cos(2 * a * i)
    else:
        raise ValueError(f"Invalid window type {window_type!r}")
    # Kaldi stores the window as float.
    return w.astype(np.float32).astype(np.float64)


def _load_libm():
    """glibc's logf/expf, so that the float32 mel scale rounds exactly as in
    Kaldi (numpy's SIMD float32 log differs from logf by an ulp at times)."""
    try:
        import ctypes
        import ctypes.util
        name = ctypes.util.find_library("m")
        if name is None:
            return None
        lib = ctypes.CDLL(name)
        for fn in ("logf", "expf"):
            getattr(lib, fn).restype = ctypes.c_float
            getattr(lib, fn).argtypes = [ctypes.c_float]
        return lib
    except (OSError, AttributeError):  # pragma: no cover - no libm
        return None


_LIBM = _load_libm()


def _f32_unary(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if _LIBM is None:  # pragma: no cover
        return getattr(np, name[:-1])(x).astype(np.float32)
    fn = getattr(_LIBM, name)
    flat = [fn(float(v)) for v in x.reshape(-1)]
    return np.array(flat, dtype=np.float32).reshape(x.shape)


def _mel_scale(freq):
    """Kaldi's ``MelScale``: ``1127.0f * logf(1.0f + freq / 700.0f)`` in float."""
    f = np.asarray(freq, dtype=np.float32)
    return np.float32(1127.0) * _f32_unary("logf", np.float32(1.0) + f / np.float32(700.0))


def _inverse_mel_scale(mel):
    """Kaldi's ``InverseMelScale``: ``700.0f * (expf(mel / 1127.0f) - 1.0f)``."""
    m = np.asarray(mel, dtype=np.float32)
    return np.float32(700.0) * (_f32_unary("expf", m / np.float32(1127.0)) - np.float32(1.0))


def _vtln_warp_freq(vtln_low: float, vtln_high: float, low_freq: float,
                    high_freq: float, warp: float, freq: np.ndarray) -> np.ndarray:
    """Kaldi's ``MelBanks::VtlnWarpFreq`` (piecewise linear)."""
    freq = np.asarray(freq, dtype=np.float64)
    one = 1.0
    l = vtln_low * max(one, warp)
    h = vtln_high * min(one, warp)
    scale = 1.0 / warp
    fl = scale * l
    fh = scale * h
    if not (l > low_freq and h < high_freq):
        raise ValueError(f"VTLN: bad cutoffs l={l} h={h} for band "
                         f"[{low_freq}, {high_freq}] and warp {warp}")
    scale_left = (fl - low_freq) / (l - low_freq)
    scale_right = (high_freq - fh) / (high_freq - h)
    out = np.where(freq < l, low_freq + scale_left * (freq - low_freq),
                   np.where(freq < h, scale * freq,
                            high_freq + scale_right * (freq - high_freq)))
    out = np.where((freq < low_freq) | (freq > high_freq), freq, out)
    return out


def mel_banks(mel_opts: MelOptions, frame_opts: FrameOptions,
              vtln_warp: Optional[float] = None) -> np.ndarray:
    """Kaldi's ``MelBanks`` as a dense (num_bins, padded_size // 2) matrix."""
    warp = mel_opts.vtln_warp if vtln_warp is None else vtln_warp
    return _mel_banks_np(
        int(mel_opts.num_bins), _f32(mel_opts.low_freq), _f32(mel_opts.high_freq),
        _f32(mel_opts.vtln_low), _f32(mel_opts.vtln_high), _f32(warp),
        bool(mel_opts.htk_mode), _f32(frame_opts.samp_freq),
        frame_opts.padded_window_size()).copy()


@functools.lru_cache(maxsize=64)
def _mel_banks_np(num_bins: int, low_freq: float, high_freq_opt: float,
                  vtln_low: float, vtln_high: float, vtln_warp: float,
                  htk_mode: bool, sample_freq: float, padded: int) -> np.ndarray:
    if num_bins < 3:
        raise ValueError(f"Must have at least 3 mel bins, got {num_bins}")
    f32 = np.float32
    num_fft_bins = padded // 2
    nyquist = 0.5 * sample_freq
    high_freq = high_freq_opt if high_freq_opt > 0.0 else nyquist + high_freq_opt
    if (low_freq < 0.0 or low_freq >= nyquist or high_freq <= 0.0
            or high_freq > nyquist or high_freq <= low_freq):
        raise ValueError(f"Bad values in options: low-freq {low_freq} and "
                         f"high-freq {high_freq} vs. nyquist {nyquist}")
    fft_bin_width = f32(sample_freq) / f32(padded)
    mel_low = _mel_scale(low_freq)
    mel_high = _mel_scale(high_freq)
    delta = (mel_high - mel_low) / f32(num_bins + 1)
    if vtln_high < 0.0:
        vtln_high = vtln_high + nyquist
    if vtln_warp != 1.0 and (vtln_low < 0.0 or vtln_low <= low_freq
                             or vtln_low >= high_freq or vtln_high <= 0.0
                             or vtln_high >= high_freq or vtln_high <= vtln_low):
        raise ValueError(f"Bad values in options: vtln-low {vtln_low} and "
                         f"vtln-high {vtln_high}, versus low-freq {low_freq} "
                         f"and high-freq {high_freq}")
    b = np.arange(num_bins, dtype=np.float32)
    left = (mel_low + b * delta).astype(np.float32)
    center = (mel_low + (b + f32(1)) * delta).astype(np.float32)
    right = (mel_low + (b + f32(2)) * delta).astype(np.float32)
    if vtln_warp != 1.0:
        def warp_mel(m):
            freq = _inverse_mel_scale(m).astype(np.float64)
            return _mel_scale(_vtln_warp_freq(vtln_low, vtln_high, low_freq,
                                              high_freq, vtln_warp, freq))
        left, center, right = warp_mel(left), warp_mel(center), warp_mel(right)
    freqs = fft_bin_width * np.arange(num_fft_bins, dtype=np.float32)
    mel = _mel_scale(freqs)[None, :]
    left, center, right = left[:, None], center[:, None], right[:, None]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    w = np.where(mel <= center, up, down)
    w = np.where((mel > left) & (mel < right), w, f32(0)).astype(np.float32)
    if htk_mode and mel_low != 0.0:
        nz = np.nonzero(w[0])[0]
        if nz.size:
            w[0, nz[0]] = 0.0
    return w.astype(np.float64)


def dct_matrix(num_ceps: int, num_bins: int) -> np.ndarray:
    """First ``num_ceps`` rows of Kaldi's ``ComputeDctMatrix`` (N=num_bins)."""
    n = np.arange(num_bins, dtype=np.float64)
    k = np.arange(num_ceps, dtype=np.float64)[:, None]
    m = math.sqrt(2.0 / num_bins) * np.cos(math.pi / num_bins * (n + 0.5) * k)
    m[0, :] = math.sqrt(1.0 / num_bins)
    return m.astype(np.float32).astype(np.float64)


def lifter_coeffs(num_ceps: int, cepstral_lifter: float) -> np.ndarray:
    """Kaldi's ``ComputeLifterCoeffs``: ``1 + 0.5 L sin(pi i / L)``."""
    i = np.arange(num_ceps, dtype=np.float64)
    q = float(cepstral_lifter)
    c = 1.0 + 0.5 * q * np.sin(math.pi * i / q)
    return c.astype(np.float32).astype(np.float64)


# ---------------------------------------------------------------------------
# compute

def _as_tensor(x: Waveform) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    return torch.as_tensor(np.asarray(x))


def _check_sample_rate(sample_rate: Optional[float], opts: FrameOptions) -> None:
    if sample_rate is not None and float(sample_rate) != float(opts.samp_freq):
        raise ValueError(f"Sample frequency mismatch: the options say "
                         f"{opts.samp_freq} but the waveform has {sample_rate} "
                         f"(resample it with kbind.data.audio.resample)")


def _windowed_frames(waves: List[torch.Tensor], fo: FrameOptions, need_raw_energy: bool,
                     generator: Optional[torch.Generator], dtype: torch.dtype,
                     device: torch.device) -> Tuple[torch.Tensor, Optional[torch.Tensor], List[int]]:
    counts, frames = [], []
    for w in waves:
        w = w.to(device=device, dtype=dtype)
        idx = _frame_indices(w.shape[0], fo, device)
        counts.append(idx.shape[0])
        frames.append(w[idx] if idx.shape[0] else
                      torch.zeros(0, fo.window_size(), dtype=dtype, device=device))
    x = torch.cat(frames, 0) if frames else torch.zeros(0, fo.window_size(),
                                                        dtype=dtype, device=device)
    if fo.dither != 0.0 and x.numel():
        gdev = generator.device if generator is not None else device
        noise = torch.randn(x.shape, generator=generator, dtype=dtype, device=gdev)
        x = x + fo.dither * noise.to(device)
    if fo.remove_dc_offset:
        x = x - x.mean(dim=1, keepdim=True)
    raw = None
    if need_raw_energy:
        raw = torch.log(torch.clamp((x * x).sum(1), min=FLT_EPSILON))
    if fo.preemph_coeff != 0.0:
        c = _f32(fo.preemph_coeff)
        x = torch.cat([x[:, :1] * (1.0 - c), x[:, 1:] - c * x[:, :-1]], dim=1)
    win = torch.as_tensor(feature_window_function(fo), dtype=dtype, device=device)
    x = x * win
    pad = fo.padded_window_size() - fo.window_size()
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    return x, raw, counts


def _log_energy(x: torch.Tensor, raw: Optional[torch.Tensor], use_energy: bool,
                raw_energy: bool, energy_floor: float) -> Optional[torch.Tensor]:
    if not use_energy:
        return None
    if raw_energy:
        e = raw
    else:
        e = torch.log(torch.clamp((x * x).sum(1), min=FLT_EPSILON))
    if energy_floor > 0.0:
        e = torch.clamp(e, min=math.log(_f32(energy_floor)))
    return e


def _mel_energies(x: torch.Tensor, fo: FrameOptions, mo: MelOptions,
                  use_power: bool, vtln_warp: Optional[float]) -> torch.Tensor:
    banks = torch.as_tensor(mel_banks(mo, fo, vtln_warp), dtype=x.dtype, device=x.device)
    if x.shape[0] == 0:  # some FFT backends reject empty batches
        return x.new_zeros(0, banks.shape[0])
    spec = torch.fft.rfft(x, dim=1)
    power = spec.real ** 2 + spec.imag ** 2
    if not use_power:
        power = power.sqrt()
    return power[:, :banks.shape[1]] @ banks.T


def _normalize_input(waveform) -> Tuple[List[torch.Tensor], str]:
    if isinstance(waveform, (list, tuple)) and len(waveform) and not np.isscalar(waveform[0]):
        return [_as_tensor(w) for w in waveform], "list"
    t = _as_tensor(waveform)
    if t.dim() == 1:
        return [t], "single"
    if t.dim() == 2:
        return list(t.unbind(0)), "batch"
    raise ValueError(f"waveform must be 1-D, 2-D (batch, samples) or a list of "
                     f"1-D tensors; got shape {tuple(t.shape)}")


def _finish(feats: torch.Tensor, counts: List[int], kind: str):
    if kind == "single":
        return feats
    parts = list(torch.split(feats, counts, 0))
    if kind == "batch":
        return torch.stack(parts, 0)
    return parts


def _pick_device(waves: List[torch.Tensor], device) -> torch.device:
    if device is not None:
        return torch.device(device)
    return waves[0].device if waves else torch.device("cpu")


def compute_fbank(waveform, opts: Optional[FbankOptions] = None, *,
                  vtln_warp: Optional[float] = None,
                  generator: Optional[torch.Generator] = None,
                  sample_rate: Optional[float] = None,
                  dtype: torch.dtype = torch.float64,
                  device=None):
    """Kaldi ``compute-fbank-feats`` on int16-scale samples.

    ``waveform``: 1-D tensor/array -> (num_frames, dim) float32 tensor;
    2-D (batch, samples) -> (batch, num_frames, dim); list of 1-D tensors of
    different lengths -> list of (num_frames_i, dim) (computed in one batch).
    ``dtype`` is the internal precision (float64 matches Kaldi to ~1e-5).
    """
    opts = opts or FbankOptions()
    fo, mo = opts.frame_opts, opts.mel_opts
    fo.validate()
    _check_sample_rate(sample_rate, fo)
    waves, kind = _normalize_input(waveform)
    dev = _pick_device(waves, device)
    need_raw = opts.use_energy and opts.raw_energy
    x, raw, counts = _windowed_frames(waves, fo, need_raw, generator, dtype, dev)
    energy = _log_energy(x, raw, opts.use_energy, opts.raw_energy, opts.energy_floor)
    mel = _mel_energies(x, fo, mo, opts.use_power, vtln_warp)
    if opts.use_log_fbank:
        mel = torch.log(torch.clamp(mel, min=FLT_EPSILON))
    if energy is not None:
        e = energy[:, None]
        mel = torch.cat([mel, e], 1) if opts.htk_compat else torch.cat([e, mel], 1)
    return _finish(mel.to(torch.float32), counts, kind)


def compute_mfcc(waveform, opts: Optional[MfccOptions] = None, *,
                 vtln_warp: Optional[float] = None,
                 generator: Optional[torch.Generator] = None,
                 sample_rate: Optional[float] = None,
                 dtype: torch.dtype = torch.float64,
                 device=None):
    """Kaldi ``compute-mfcc-feats``; input/output conventions as
    :func:`compute_fbank`."""
    opts = opts or MfccOptions()
    fo, mo = opts.frame_opts, opts.mel_opts
    fo.validate()
    if opts.num_ceps > mo.num_bins:
        raise ValueError(f"num-ceps cannot be larger than num-mel-bins. It should "
                         f"be smaller or equal. You provided num-ceps: "
                         f"{opts.num_ceps} and num-mel-bins: {mo.num_bins}")
    _check_sample_rate(sample_rate, fo)
    waves, kind = _normalize_input(waveform)
    dev = _pick_device(waves, device)
    need_raw = opts.use_energy and opts.raw_energy
    x, raw, counts = _windowed_frames(waves, fo, need_raw, generator, dtype, dev)
    energy = _log_energy(x, raw, opts.use_energy, opts.raw_energy, opts.energy_floor)
    mel = _mel_energies(x, fo, mo, True, vtln_warp)
    logmel = torch.log(torch.clamp(mel, min=FLT_EPSILON))
    dct = torch.as_tensor(dct_matrix(opts.num_ceps, mo.num_bins), dtype=dtype, device=dev)
    c = logmel @ dct.T
    if opts.cepstral_lifter != 0.0:
        lif = torch.as_tensor(lifter_coeffs(opts.num_ceps, opts.cepstral_lifter),
                              dtype=dtype, device=dev)
        c = c * lif
    if energy is not None:
        c = torch.cat([energy[:, None], c[:, 1:]], 1)
    if opts.htk_compat:
        first = c[:, :1]
        if not opts.use_energy:
            first = first * math.sqrt(2.0)
        c = torch.cat([c[:, 1:], first], 1)
    return _finish(c.to(torch.float32), counts, kind)


class FeatureExtractor:
    """On-the-fly feature computation for data loaders.

    ``FeatureExtractor(FbankOptions(...))`` or ``FeatureExtractor(MfccOptions())``;
    ``extractor(waveform)`` returns float32 features (same input conventions
    as :func:`compute_fbank`).  If ``allow_resample`` is true, a waveform
    given with a different ``sample_rate`` is resampled to ``samp_freq``
    with :func:`kbind.data.audio.resample` first (else that is an error, as
    in Kaldi without ``--allow-downsample``).
    """

    def __init__(self, opts: Union[FbankOptions, MfccOptions], *, device=None,
                 dtype: torch.dtype = torch.float64,
                 generator: Optional[torch.Generator] = None,
                 allow_resample: bool = False):
        if isinstance(opts, FbankOptions):
            self.kind = "fbank"
            self._fn = compute_fbank
        elif isinstance(opts, MfccOptions):
            self.kind = "mfcc"
            self._fn = compute_mfcc
        else:
            raise TypeError(f"expected FbankOptions or MfccOptions, got {type(opts).__name__}")
        opts.frame_opts.validate()
        self.opts = opts
        self.device = device
        self.dtype = dtype
        self.generator = generator
        self.allow_resample = allow_resample

    @property
    def dim(self) -> int:
        return self.opts.dim()

    @property
    def sample_rate(self) -> float:
        return self.opts.frame_opts.samp_freq

    @property
    def frame_shift_seconds(self) -> float:
        fo = self.opts.frame_opts
        return fo.window_shift() / fo.samp_freq

    def num_frames(self, num_samples: int) -> int:
        return num_frames(num_samples, self.opts.frame_opts)

    def __call__(self, waveform, sample_rate: Optional[float] = None,
                 vtln_warp: Optional[float] = None):
        if sample_rate is not None and float(sample_rate) != float(self.sample_rate):
            if not self.allow_resample:
                _check_sample_rate(sample_rate, self.opts.frame_opts)
            from kbind.data.audio import resample
            waves, kind = _normalize_input(waveform)
            waves = [resample(w, int(sample_rate), int(self.sample_rate)) for w in waves]
            waveform = waves[0] if kind == "single" else (
                torch.stack(waves) if kind == "batch" else waves)
        return self._fn(waveform, self.opts, vtln_warp=vtln_warp,
                        generator=self.generator, dtype=self.dtype, device=self.device)

    def __repr__(self) -> str:
        return f"FeatureExtractor({self.opts!r})"

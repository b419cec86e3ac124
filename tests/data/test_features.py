"""kbind.data.features against kaldi-native-fbank and Kaldi's formulas."""

from __future__ import annotations

import math

import kaldi_native_fbank as knf
import numpy as np
import pytest
import torch

from kbind.data.features import (
    FLT_EPSILON,
    FbankOptions,
    FeatureExtractor,
    FrameOptions,
    MelOptions,
    MfccOptions,
    compute_fbank,
    compute_mfcc,
    dct_matrix,
    extract_frames,
    feature_window_function,
    first_sample_of_frame,
    lifter_coeffs,
    mel_banks,
    num_frames,
)


TOL = 1e-4


# ---------------------------------------------------------------------------
# helpers

def _knf_frame_opts(ko, fo: FrameOptions):
    ko.samp_freq = fo.samp_freq
    ko.frame_shift_ms = fo.frame_shift_ms
    ko.frame_length_ms = fo.frame_length_ms
    ko.dither = fo.dither
    ko.preemph_coeff = fo.preemph_coeff
    ko.remove_dc_offset = fo.remove_dc_offset
    ko.window_type = fo.window_type
    ko.round_to_power_of_two = fo.round_to_power_of_two
    ko.blackman_coeff = fo.blackman_coeff
    ko.snip_edges = fo.snip_edges


def _knf_mel_opts(km, mo: MelOptions):
    km.num_bins = mo.num_bins
    km.low_freq = mo.low_freq
    km.high_freq = mo.high_freq
    km.vtln_low = mo.vtln_low
    km.vtln_high = mo.vtln_high
    km.debug_mel = mo.debug_mel
    km.htk_mode = mo.htk_mode


def knf_fbank_opts(o: FbankOptions):
    k = knf.FbankOptions()
    _knf_frame_opts(k.frame_opts, o.frame_opts)
    _knf_mel_opts(k.mel_opts, o.mel_opts)
    for name in ("use_energy", "energy_floor", "raw_energy", "htk_compat",
                 "use_log_fbank", "use_power"):
        setattr(k, name, getattr(o, name))
    return k


def knf_mfcc_opts(o: MfccOptions):
    k = knf.MfccOptions()
    _knf_frame_opts(k.frame_opts, o.frame_opts)
    _knf_mel_opts(k.mel_opts, o.mel_opts)
    for name in ("num_ceps", "use_energy", "energy_floor", "raw_energy",
                 "cepstral_lifter", "htk_compat"):
        setattr(k, name, getattr(o, name))
    return k


def run_knf(cls, kopts, wave: np.ndarray, sr: float) -> np.ndarray:
    comp = cls(kopts)
    comp.accept_waveform(sr, wave.astype(np.float32))
    comp.input_finished()
    n = comp.num_frames_ready
    return np.array([comp.get_frame(i) for i in range(n)],
                    dtype=np.float32).reshape(n, comp.dim)


def make_wave(n: int, sr: int, seed: int = 0) -> np.ndarray:
    """Speech-like test signal on the int16 scale: noise plus two tones."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    x = (2000 * rng.standard_normal(n) + 8000 * np.sin(2 * np.pi * 440 * t)
         + 3000 * np.sin(2 * np.pi * 1730 * t + 0.3) + 150)
    return np.round(np.clip(x, -32768, 32767)).astype(np.float32)


def compare(ours: torch.Tensor, ref: np.ndarray) -> float:
    assert ours.dtype == torch.float32
    assert tuple(ours.shape) == ref.shape, (tuple(ours.shape), ref.shape)
    if ref.size == 0:
        return 0.0
    return float(np.abs(ours.numpy() - ref).max())


LENGTHS = [0, 1, 37, 199, 200, 399, 400, 401, 1000, 4321]


# ---------------------------------------------------------------------------
# frame counts

@pytest.mark.parametrize("snip", [True, False])
def test_num_frames_by_hand(snip):
    fo = FrameOptions(snip_edges=snip)   # 16 kHz: size 400, shift 160
    assert fo.window_size() == 400 and fo.window_shift() == 160
    assert fo.padded_window_size() == 512
    if snip:
        # 0 if N < 400 else 1 + (N - 400) // 160
        cases = {0: 0, 1: 0, 399: 0, 400: 1, 559: 1, 560: 2, 16000: 98}
    else:
        # (N + 80) // 160
        cases = {0: 0, 1: 0, 79: 0, 80: 1, 239: 1, 240: 2, 16000: 100}
    for n, expected in cases.items():
        assert num_frames(n, fo) == expected, n
    fo8 = FrameOptions(samp_freq=8000, snip_edges=snip)  # size 200, shift 80
    assert fo8.window_size() == 200 and fo8.padded_window_size() == 256
    assert num_frames(8000, fo8) == (98 if snip else 100)


def test_first_sample_and_reflection_by_hand():
    fo = FrameOptions(samp_freq=1000, frame_length_ms=5, frame_shift_ms=2, snip_edges=False)
    # size 5, shift 2: frame t starts at 2t + 1 - 2 = 2t - 1
    assert first_sample_of_frame(0, fo) == -1
    assert first_sample_of_frame(3, fo) == 5
    wave = torch.arange(6, dtype=torch.float64)  # N=6 -> (6 + 1) // 2 = 3 frames
    frames = extract_frames(wave, fo)
    assert frames.shape == (3, 5)
    # index -1 reflects to 0; index 6 -> 5, 7 -> 4
    assert frames[0].tolist() == [0, 0, 1, 2, 3]
    assert frames[2].tolist() == [3, 4, 5, 5, 4]
    # a 2-sample wave reflected many times: 0 1 1 0 0 1 1 0 ...
    fo2 = FrameOptions(samp_freq=1000, frame_length_ms=7, frame_shift_ms=4, snip_edges=False)
    frames = extract_frames(torch.tensor([0.0, 1.0]), fo2)   # (2 + 2) // 4 = 1 frame
    assert frames.shape == (1, 7)
    # starts at 0*4 + 2 - 3 = -1
    assert frames[0].tolist() == [0, 0, 1, 1, 0, 0, 1]


@pytest.mark.parametrize("sr", [8000, 16000])
@pytest.mark.parametrize("snip", [True, False])
def test_frame_counts_match_knf(sr, snip):
    o = FbankOptions(frame_opts=FrameOptions(samp_freq=sr, snip_edges=snip))
    ko = knf_fbank_opts(o)
    for n in LENGTHS + [sr, sr + 1, 3 * sr // 2 + 77]:
        ref = run_knf(knf.OnlineFbank, ko, make_wave(n, sr, n), sr)
        assert ref.shape[0] == num_frames(n, o.frame_opts), n
        feats = compute_fbank(torch.from_numpy(make_wave(n, sr, n)), o)
        assert feats.shape == (ref.shape[0], 23)


# ---------------------------------------------------------------------------
# fbank

FBANK_CASES = [
    dict(),
    dict(num_bins=40),
    dict(num_bins=40, use_energy=True),
    dict(use_energy=True, raw_energy=False),
    dict(use_energy=True, htk_compat=True),
    dict(use_energy=True, energy_floor=1e12),
    dict(use_log_fbank=False),
    dict(use_power=False),
    dict(window_type="hamming"),
    dict(window_type="hanning"),
    dict(window_type="rectangular", remove_dc_offset=False),
    dict(window_type="blackman", blackman_coeff=0.40),
    dict(window_type="sine"),
    dict(preemph_coeff=0.0),
    dict(round_to_power_of_two=False),
    dict(frame_length_ms=20, frame_shift_ms=7.5),
    dict(low_freq=64, high_freq=-400, num_bins=30),
    dict(low_freq=0, high_freq=3800, num_bins=25),
    dict(htk_mode=True),
]


def _fbank_opts(sr, snip, case):
    c = dict(case)
    fo_keys = {"window_type", "remove_dc_offset", "blackman_coeff", "preemph_coeff",
               "round_to_power_of_two", "frame_length_ms", "frame_shift_ms"}
    mo_keys = {"num_bins", "low_freq", "high_freq", "htk_mode"}
    fo = FrameOptions(samp_freq=sr, snip_edges=snip,
                      **{k: c.pop(k) for k in list(c) if k in fo_keys})
    mo = MelOptions(**{k: c.pop(k) for k in list(c) if k in mo_keys})
    return fo, mo, c


@pytest.mark.parametrize("case", FBANK_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
@pytest.mark.parametrize("sr,snip", [(16000, True), (8000, False)])
def test_fbank_matches_knf(case, sr, snip):
    fo, mo, rest = _fbank_opts(sr, snip, case)
    o = FbankOptions(frame_opts=fo, mel_opts=mo, **rest)
    ko = knf_fbank_opts(o)
    waves = [make_wave(n, sr, n) for n in (0, 150, 401, 3 * sr // 10 + 11)]
    # one batched call over utterances of different lengths
    ours = compute_fbank([torch.from_numpy(w) for w in waves], o)
    for w, feats in zip(waves, ours):
        ref = run_knf(knf.OnlineFbank, ko, w, sr)
        err = compare(feats, ref)
        if not o.use_log_fbank:   # linear energies ~1e10: compare relatively
            err = float(np.abs(feats.numpy() / np.maximum(ref, 1) - (ref > 1)).max()) if ref.size else 0
        assert err < TOL, (len(w), err)
        assert feats.shape[1] == o.dim()


# ---------------------------------------------------------------------------
# mfcc

MFCC_CASES = [
    dict(),
    dict(num_bins=40, num_ceps=40, cepstral_lifter=0.0),
    dict(num_bins=40, num_ceps=20),
    dict(use_energy=False),
    dict(use_energy=False, htk_compat=True),
    dict(htk_compat=True),
    dict(raw_energy=False),
    dict(energy_floor=1e12),
    dict(cepstral_lifter=0.0, window_type="hamming"),
    dict(low_freq=40, high_freq=-200),
    dict(frame_length_ms=32, frame_shift_ms=12, round_to_power_of_two=False),
]


@pytest.mark.parametrize("case", MFCC_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
@pytest.mark.parametrize("sr,snip", [(16000, False), (8000, True)])
def test_mfcc_matches_knf(case, sr, snip):
    fo, mo, rest = _fbank_opts(sr, snip, case)
    o = MfccOptions(frame_opts=fo, mel_opts=mo, **rest)
    ko = knf_mfcc_opts(o)
    waves = [make_wave(n, sr, n) for n in (0, 1, 150, 401, sr + 77)]
    ours = compute_mfcc([torch.from_numpy(w) for w in waves], o)
    for w, feats in zip(waves, ours):
        ref = run_knf(knf.OnlineMfcc, ko, w, sr)
        compare(feats, ref)
        # 1e-4 absolute, plus float32 rounding of large liftered cepstra
        # (|c| up to ~70, where Kaldi's/knf's float32 sums carry ~1e-4 noise)
        tol = TOL + 2e-6 * np.abs(ref)
        assert (np.abs(feats.numpy() - ref) <= tol).all(), len(w)


def test_zero_signal_and_epsilon_floor():
    o = FbankOptions(use_energy=True)
    feats = compute_fbank(torch.zeros(1600), o)
    assert torch.allclose(feats, torch.full_like(feats, math.log(FLT_EPSILON)))
    ref = run_knf(knf.OnlineFbank, knf_fbank_opts(o), np.zeros(1600, np.float32), 16000)
    assert compare(feats, ref) < TOL
    m = MfccOptions()
    ref = run_knf(knf.OnlineMfcc, knf_mfcc_opts(m), np.zeros(1600, np.float32), 16000)
    assert compare(compute_mfcc(torch.zeros(1600), m), ref) < TOL


# ---------------------------------------------------------------------------
# building blocks against knf and closed forms

@pytest.mark.parametrize("wt", ["povey", "hamming", "hanning", "rectangular", "blackman", "sine"])
def test_window_matches_knf(wt):
    fo = FrameOptions(window_type=wt)
    ko = knf.FrameExtractionOptions()
    _knf_frame_opts(ko, fo)
    ref = np.array(knf.FeatureWindowFunction(ko).window if hasattr(
        knf.FeatureWindowFunction(ko), "window") else [])
    ours = feature_window_function(fo)
    if ref.size:
        np.testing.assert_allclose(ours, ref, atol=1e-6)
    if wt == "povey":
        i = np.arange(400)
        np.testing.assert_allclose(ours, (0.5 - 0.5 * np.cos(2 * np.pi * i / 399)) ** 0.85, atol=1e-6)


@pytest.mark.parametrize("warp", [1.0, 0.88, 1.12])
def test_mel_banks_match_knf_including_vtln(warp):
    fo = FrameOptions()
    mo = MelOptions(num_bins=23, vtln_low=100, vtln_high=-500)
    ko = knf.FrameExtractionOptions()
    _knf_frame_opts(ko, fo)
    km = knf.MelBanksOptions()
    _knf_mel_opts(km, mo)
    ref = np.array(knf.MelBanks(km, ko, warp).get_matrix())
    ours = mel_banks(mo, fo, warp)
    assert ours.shape == (23, 256)
    # knf also lists the Nyquist bin, which Kaldi's banks never use
    assert ref.shape[0] == 23 and ref.shape[1] in (256, 257)
    assert not ref[:, 256:].any()
    np.testing.assert_allclose(ours, ref[:, :256], atol=1e-5)


def test_vtln_warp_changes_features_consistently():
    o = FbankOptions()
    w = torch.from_numpy(make_wave(4000, 16000))
    base = compute_fbank(w, o)
    warped = compute_fbank(w, o, vtln_warp=0.9)
    assert warped.shape == base.shape and not torch.allclose(warped, base)
    o2 = FbankOptions(mel_opts=MelOptions(vtln_warp=0.9))
    assert torch.equal(compute_fbank(w, o2), warped)


def test_dct_and_lifter_closed_form():
    d = dct_matrix(13, 23)
    np.testing.assert_allclose(d[0], np.sqrt(1 / 23), rtol=1e-6)
    np.testing.assert_allclose(d[5, 7], np.sqrt(2 / 23) * np.cos(np.pi / 23 * 7.5 * 5), rtol=1e-6)
    full = dct_matrix(23, 23)
    np.testing.assert_allclose(full @ full.T, np.eye(23), atol=1e-5)  # orthonormal
    lif = lifter_coeffs(13, 22)
    assert lif[0] == 1.0
    np.testing.assert_allclose(lif[11], 1 + 11 * np.sin(np.pi * 11 / 22), rtol=1e-6)


def test_preemphasis_and_energy_by_hand():
    # rectangular window, no DC removal: frame energy == sum x^2 of raw samples
    fo = FrameOptions(samp_freq=1000, frame_length_ms=8, frame_shift_ms=8,
                      window_type="rectangular", remove_dc_offset=False, preemph_coeff=0.0)
    o = FbankOptions(frame_opts=fo, mel_opts=MelOptions(num_bins=3, low_freq=0), use_energy=True)
    x = torch.tensor([1.0, 2, 3, 4, 5, 6, 7, 8, 2, 2, 2, 2, 2, 2, 2, 2])
    feats = compute_fbank(x, o)
    assert feats.shape == (2, 4)
    np.testing.assert_allclose(feats[:, 0].numpy(), [math.log(204.0), math.log(32.0)], rtol=1e-6)
    # raw_energy=False with preemphasis: energy of x[0]*(1-c), x[i]-c*x[i-1]
    fo.preemph_coeff = 0.5
    o.raw_energy = False
    feats = compute_fbank(x[:8], o)
    pre = np.array([0.5, 1.5, 2, 2.5, 3, 3.5, 4, 4.5])
    np.testing.assert_allclose(feats[0, 0].item(), math.log((pre ** 2).sum()), rtol=1e-6)


# ---------------------------------------------------------------------------
# batching, dither, extractor

def test_batch_shapes_and_consistency():
    o = FbankOptions(mel_opts=MelOptions(num_bins=40))
    w = torch.from_numpy(np.stack([make_wave(3200, 16000, s) for s in range(3)]))
    batch = compute_fbank(w, o)
    assert batch.shape == (3, 18, 40)
    for i in range(3):
        assert torch.allclose(batch[i], compute_fbank(w[i], o), atol=1e-5)
    assert compute_fbank(w[0].numpy(), o).shape == (18, 40)  # numpy input
    f32 = compute_fbank(w[0], o, dtype=torch.float32)
    assert torch.allclose(f32, batch[0], atol=1e-3)


def test_dither_uses_generator():
    fo = FrameOptions(dither=1.0)
    o = FbankOptions(frame_opts=fo)
    w = torch.zeros(1600)
    a = compute_fbank(w, o, generator=torch.Generator().manual_seed(3))
    b = compute_fbank(w, o, generator=torch.Generator().manual_seed(3))
    c = compute_fbank(w, o, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a > math.log(FLT_EPSILON) + 1).all()


def test_feature_extractor():
    ex = FeatureExtractor(MfccOptions(frame_opts=FrameOptions(samp_freq=8000)))
    assert ex.dim == 13 and ex.frame_shift_seconds == pytest.approx(0.01)
    w = torch.from_numpy(make_wave(8000, 8000))
    feats = ex(w)
    assert feats.shape == (ex.num_frames(8000), 13) == (98, 13)
    with pytest.raises(ValueError, match="Sample frequency mismatch"):
        ex(w, sample_rate=16000)
    ex2 = FeatureExtractor(FbankOptions(frame_opts=FrameOptions(samp_freq=8000)), allow_resample=True)
    w16 = torch.from_numpy(make_wave(16000, 16000))
    assert ex2(w16, sample_rate=16000).shape == (98, 23)
    with pytest.raises(TypeError):
        FeatureExtractor(FrameOptions())


def test_option_errors():
    with pytest.raises(ValueError, match="num-ceps"):
        compute_mfcc(torch.zeros(800), MfccOptions(num_ceps=30))
    with pytest.raises(ValueError, match="window type"):
        compute_fbank(torch.zeros(800), FbankOptions(frame_opts=FrameOptions(window_type="kaiser")))
    with pytest.raises(ValueError, match="high-freq"):
        compute_fbank(torch.zeros(800), FbankOptions(mel_opts=MelOptions(high_freq=9000)))
    with pytest.raises(ValueError, match="Sample frequency mismatch"):
        compute_fbank(torch.zeros(800), FbankOptions(), sample_rate=8000)


def test_max_abs_difference_report():
    """Overall agreement with knf on one longer utterance (printed for -s)."""
    w = make_wave(16000 * 2 + 123, 16000, 11)
    o = FbankOptions(mel_opts=MelOptions(num_bins=40), use_energy=True)
    e1 = compare(compute_fbank(torch.from_numpy(w), o), run_knf(knf.OnlineFbank, knf_fbank_opts(o), w, 16000))
    m = MfccOptions()
    e2 = compare(compute_mfcc(torch.from_numpy(w), m), run_knf(knf.OnlineMfcc, knf_mfcc_opts(m), w, 16000))
    print(f"max |fbank - knf| = {e1:.3g}, max |mfcc - knf| = {e2:.3g}")
    assert e1 < TOL and e2 < TOL


def test_80_bins_within_float32_noise_of_knf():
    """With 80 bins the lowest triangles hold one or two FFT bins; after
    pre-emphasis their energy can be 1e-7 of the frame's peak, where
    kaldi's/knf's float32 FFT has a relative error of about
    2 eps32 sqrt(P_max / P).  There we only ask for agreement within that
    noise (our float64 result is the more accurate one); elsewhere 1e-4."""
    w = make_wave(16000 * 2 + 123, 16000, 11)
    o = FbankOptions(mel_opts=MelOptions(num_bins=80))
    ours = compute_fbank(torch.from_numpy(w), o).numpy()
    ref = run_knf(knf.OnlineFbank, knf_fbank_opts(o), w, 16000)
    assert ours.shape == ref.shape
    rel = np.exp((ours.max(1, keepdims=True) - ours) / 2)   # sqrt(P_max / P)
    tol = TOL + 8 * FLT_EPSILON * rel
    assert (np.abs(ours - ref) <= tol).all()
    well = rel < 100
    assert np.abs(ours - ref)[well].max() < TOL

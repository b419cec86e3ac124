"""kbind.data.audio: reading, pipes, segments, channels, resampling."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile as sf
import torch

from kbind.data.audio import (
    AudioError,
    SegmentError,
    load_audio,
    load_utterance,
    resample,
    resampled_length,
    segment_to_samples,
)
from kbind.data.datadir import DataDir, Segment


def _pcm(n, seed=0, channels=1):
    rng = np.random.default_rng(seed)
    x = rng.integers(-20000, 20000, size=(n, channels), dtype=np.int16)
    return x[:, 0] if channels == 1 else x


@pytest.fixture
def wav16(tmp_path):
    x = _pcm(16000)
    path = tmp_path / "a.wav"
    sf.write(path, x, 16000, subtype="PCM_16")
    return path, x


def test_wav_and_flac_int16_scale(tmp_path, wav16):
    path, x = wav16
    y, sr = load_audio(str(path))
    assert sr == 16000 and y.dtype == torch.float32 and y.shape == (16000,)
    assert np.array_equal(y.numpy(), x.astype(np.float32))   # exact int16 values
    flac = tmp_path / "a.flac"
    sf.write(flac, x, 16000, subtype="PCM_16")
    y2, _ = load_audio(str(flac))
    assert torch.equal(y, y2)
    y3, _ = load_audio(str(path), kaldi_scale=False)
    assert torch.allclose(y3 * 32768, y)


def test_pipe_and_streamed_header(tmp_path, wav16):
    path, x = wav16
    y, sr = load_audio(f"cat {path} |")
    assert sr == 16000 and np.array_equal(y.numpy(), x.astype(np.float32))
    # a WAV written to a pipe: unknown (0xFFFFFFFF) RIFF and data sizes
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 4, 0xFFFFFFFF)
    pos = data.index(b"data")
    struct.pack_into("<I", data, pos + 4, 0xFFFFFFFF)
    streamed = tmp_path / "streamed.bin"
    streamed.write_bytes(bytes(data))
    y2, _ = load_audio(f"cat {streamed} |")
    assert torch.equal(y, y2)


def test_failing_pipe_names_command(tmp_path):
    cmd = f"cat {tmp_path}/does-not-exist.wav"
    with pytest.raises(AudioError) as e:
        load_audio(cmd + " |")
    msg = str(e.value)
    assert cmd in msg and "exit status 1" in msg and "No such file" in msg
    with pytest.raises(AudioError, match="exit status 3"):
        load_audio("sh -c 'echo oops >&2; exit 3' |")
    with pytest.raises(AudioError, match="not found"):
        load_audio(str(tmp_path / "missing.wav"))


def test_wav_in_archive_offset(tmp_path, wav16):
    path, x = wav16
    blob = path.read_bytes()
    ark = tmp_path / "wav.ark"
    ark.write_bytes(b"utt1 " + blob + b"utt2 " + blob)
    y, sr = load_audio(f"{ark}:{5 + len(blob) + 5}")
    assert np.array_equal(y.numpy(), x.astype(np.float32))


def test_segments_truncate_like_extract_segments():
    # int(start * samp_freq), not round
    assert segment_to_samples(0.12345, 0.5, 16000, 16000) == (1975, 8000)
    assert segment_to_samples(0.0, -1, 16000, 12345) == (0, 12345)
    # small overshoot is truncated, a large one is an error
    assert segment_to_samples(0.5, 1.2, 16000, 16000) == (8000, 16000)
    with pytest.raises(SegmentError, match="too far"):
        segment_to_samples(0.5, 1.6, 16000, 16000)
    with pytest.raises(SegmentError, match="out of range"):
        segment_to_samples(1.0, 1.5, 16000, 16000)
    with pytest.raises(SegmentError, match="too short"):
        segment_to_samples(0.2, 0.3, 16000, 16000)   # 1600 <= 0.1 s
    with pytest.raises(SegmentError, match="invalid"):
        segment_to_samples(0.5, 0.4, 16000, 16000)


def test_segment_and_channels(tmp_path):
    x = _pcm(8000, seed=1, channels=2)
    path = tmp_path / "stereo.wav"
    sf.write(path, x, 8000, subtype="PCM_16")
    both, sr = load_audio(str(path))
    assert both.shape == (2, 8000) and sr == 8000
    ch1, _ = load_audio(str(path), segment=(0.25, 0.75, 1))
    assert np.array_equal(ch1.numpy(), x[2000:6000, 1].astype(np.float32))
    with pytest.raises(SegmentError, match="channel"):
        load_audio(str(path), segment=(0.25, 0.75))
    with pytest.raises(ValueError, match="invalid channel"):
        load_audio(str(path), channel=2)


def test_load_utterance_with_segments(tmp_path, wav16):
    path, x = wav16
    d = DataDir(path=tmp_path, wav_scp={"rec1": f"cat {path} |"},
                segments={"u1": Segment("rec1", 0.1, 0.35), "u2": Segment("rec1", 0.5, -1)},
                utt2spk={"u1": "s", "u2": "s"})
    y, sr = load_utterance(d, "u1")
    assert np.array_equal(y.numpy(), x[1600:5600].astype(np.float32))
    y, _ = load_utterance(d, "u2")
    assert y.shape == (8000,)
    y8, sr8 = load_utterance(d, "u1", target_sample_rate=8000)
    assert sr8 == 8000 and y8.shape == (2000,)
    with pytest.raises(KeyError):
        load_utterance(d, "nope")
    d2 = DataDir(path=tmp_path, wav_scp={"u1": str(path)}, utt2spk={"u1": "s"})
    assert load_utterance(d2, "u1")[0].shape == (16000,)


def _peak_freq(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * sr / len(x)


@pytest.mark.parametrize("orig,new,n", [(8000, 16000, 8000), (16000, 8000, 16001),
                                        (16000, 8000, 16000), (44100, 16000, 22050),
                                        (16000, 22050, 7777)])
def test_resample_keeps_frequency_and_length(orig, new, n):
    f0 = 1000.0
    t = np.arange(n) / orig
    x = torch.from_numpy(np.sin(2 * np.pi * f0 * t))
    y = resample(x, orig, new)
    assert y.shape == (resampled_length(n, orig, new),)
    assert y.shape[0] == int(np.floor(n * new / orig + 0.5))
    assert abs(_peak_freq(y.numpy(), new) - f0) <= new / y.shape[0]
    # away from the edges the output is the band-limited interpolation
    ty = np.arange(y.shape[0]) / new
    mid = slice(y.shape[0] // 4, 3 * y.shape[0] // 4)
    np.testing.assert_allclose(y.numpy()[mid], np.sin(2 * np.pi * f0 * ty)[mid], atol=2e-3)


def test_resample_removes_aliases_and_batches():
    # 6 kHz tone is above the 4 kHz Nyquist of 8 kHz: it must be filtered out
    n = 16000
    t = np.arange(n) / 16000
    x = torch.from_numpy(np.sin(2 * np.pi * 6000 * t) + np.sin(2 * np.pi * 500 * t))
    y = resample(x, 16000, 8000).numpy()
    spec = np.abs(np.fft.rfft(y[1000:-1000]))
    freqs = np.fft.rfftfreq(len(y) - 2000, 1 / 8000)
    assert spec[np.abs(freqs - 2000) < 50].max() < 1e-2 * spec.max()   # alias at 2 kHz
    batch = torch.stack([x, 2 * x]).float()
    yb = resample(batch, 16000, 8000)
    assert yb.shape == (2, 8000) and yb.dtype == torch.float32
    assert torch.allclose(yb[1], 2 * yb[0], atol=1e-4)
    assert resample(torch.zeros(0), 8000, 16000).shape == (0,)

"""Foundation demo (what ``make run`` runs until the digits recipe lands).

Builds a small Kaldi data dir from generated audio (harmonic "vowels" with
pitch glides and noise, 3 speakers, 16 kHz; one recording read through a
shell pipe and one through ``segments``), validates it as Kaldi's
validate_data_dir.sh would, computes fbank features on the fly, writes them
as a compressed ``ark,scp`` with per-speaker CMVN stats, reads everything
back through the scp, applies CMVN, and checks the frame counts against
Kaldi's formula. Everything goes to ``exp/demo_io`` (or ``--out``).

    python scripts/demo_io.py [--out exp/demo_io]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from kbind.data import (DataDir, FbankOptions, FeatureExtractor, Segment, apply_cmvn,
                        compute_cmvn_stats, load_utterance, validate_data_dir)
from kbind.io import CompressionMethod, RandomAccessTable, read_table, write_table


def synth(rng, seconds: float, f0: float, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    glide = f0 * (1 + 0.2 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(glide) / sr
    wave = sum(np.sin(k * phase) / k for k in range(1, 8))
    wave *= 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    wave += 0.05 * rng.normal(size=t.size)
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="exp/demo_io")
    args = ap.parse_args(argv)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    (out / "wav").mkdir(parents=True)
    rng = np.random.default_rng(0)

    d = DataDir()
    for s, f0 in enumerate((110.0, 180.0, 240.0)):
        spk = f"spk{s + 1}"
        for u in range(3):
            utt = f"{spk}-utt{u + 1}"
            path = out / "wav" / f"{utt}.wav"
            sf.write(path, synth(rng, 1.0 + 0.5 * u, f0 * (1 + 0.1 * u)), 16000,
                     subtype="PCM_16")
            d.wav_scp[utt] = f"cat {path} |" if u == 0 else str(path)
            d.text[utt] = "demo"
            d.utt2spk[utt] = spk
    # One long recording cut into two utterances through segments.
    long_path = out / "wav" / "rec-long.wav"
    sf.write(long_path, synth(rng, 3.0, 150.0), 16000, subtype="PCM_16")
    seg_d = DataDir(wav_scp={"rec-long": str(long_path)},
                    segments={"spk4-a": Segment("rec-long", 0.0, 1.4),
                              "spk4-b": Segment("rec-long", 1.5, 2.9)},
                    text={"spk4-a": "demo", "spk4-b": "demo"},
                    utt2spk={"spk4-a": "spk4", "spk4-b": "spk4"})
    data = out / "data"
    d.write(data / "train")
    seg_d.write(data / "long")
    for name in ("train", "long"):
        res = validate_data_dir(data / name, no_feats=True)
        print(f"validate_data_dir {data / name}: {len(res.errors)} errors, "
              f"{len(res.warnings)} warnings")

    extractor = FeatureExtractor(FbankOptions())
    total_frames = 0
    for name in ("train", "long"):
        dd = DataDir.load(data / name)
        ark, scp = data / name / "feats.ark", data / name / "feats.scp"
        with write_table(f"ark,scp:{ark},{scp}",
                         compression=CompressionMethod.SPEECH_FEATURE) as w:
            for utt in dd.utterances:
                wave, sr = load_utterance(dd, utt)
                feats = extractor(wave, sample_rate=sr)
                assert feats.shape[0] == extractor.num_frames(wave.numel())
                w.write(utt, feats)
                total_frames += feats.shape[0]
        feats = dict(read_table(f"scp:{scp}"))
        with write_table(f"ark,scp:{data / name}/cmvn.ark,{data / name}/cmvn.scp") as w:
            for spk, utts in DataDir.load(data / name).spk2utt.items():
                w.write(spk, compute_cmvn_stats(np.concatenate([feats[u] for u in utts])))
        res = validate_data_dir(data / name)
        print(f"{name}: {len(feats)} utterances, feats.scp + cmvn.scp written, "
              f"validate_data_dir: {len(res.errors)} errors")
        cmvn = RandomAccessTable(f"scp:{data / name}/cmvn.scp")
        utt = next(iter(feats))
        normed = apply_cmvn(feats[utt], cmvn[dd.utt2spk[utt]])
        print(f"  {utt}: {feats[utt].shape[0]} frames x {feats[utt].shape[1]} fbank, "
              f"mean after per-speaker CMVN {float(np.abs(np.asarray(normed).mean())):.3f}")
    print(f"Demo done: {total_frames} frames of fbank computed, written, read back. "
          "The digits recipe (training, decoding, WER) arrives with issue #3.")


if __name__ == "__main__":
    main()

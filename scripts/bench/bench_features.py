"""Feature extraction speed: kbind's torch fbank/MFCC vs kaldi-native-fbank and
Kaldi's compute-fbank-feats.

Computes 80-bin fbank and 13-dim MFCC (16 kHz, 25 ms / 10 ms, no dither) on
``--seconds`` of noise-like 16-bit audio split into 10 s utterances, on one CPU
thread, and reports the real-time factor (processing time / audio time;
lower is faster) for kbind in float64 (the default, Kaldi-exact to ~1e-5)
and float32, for kaldi-native-fbank (C++, float32, called from Python), and for
Kaldi's ``compute-fbank-feats`` (``$KALDI_ROOT``, else ``../shared/kaldi``) on
the same samples as wav files: the process's wall time, reading the files
included, best of two runs. ``kaldi_fbank80_max_abs_diff`` is the largest
difference between Kaldi's and kbind's features of the first utterance.

    python scripts/bench/bench_features.py [--seconds 300] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _kaldi  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--quick", action="store_true", help="20 s of audio")
    args = ap.parse_args(argv)
    seconds = 20.0 if args.quick else args.seconds

    from kbind.data import FbankOptions, MfccOptions, compute_fbank, compute_mfcc

    torch.set_num_threads(1)
    sr = 16000
    n_utt = max(1, int(seconds // 10))
    rng = np.random.default_rng(0)
    samples = [np.clip(np.round(rng.normal(size=10 * sr) * 3000), -32768, 32767).astype(np.int16)
               for _ in range(n_utt)]           # 16-bit, as the wav files Kaldi reads
    waves = [torch.from_numpy(x.astype(np.float32)) for x in samples]
    total = n_utt * 10.0
    fb = FbankOptions()
    fb.mel_opts.num_bins = 80
    mf = MfccOptions()
    res = {"audio_seconds": total}

    def timeit(fn):
        fn(waves[:2])
        t0 = time.perf_counter()
        fn(waves)
        return round((time.perf_counter() - t0) / total, 5)

    res["kbind_fbank80_f64_rtf"] = timeit(lambda ws: [compute_fbank(w, fb) for w in ws])
    res["kbind_fbank80_f32_rtf"] = timeit(
        lambda ws: [compute_fbank(w, fb, dtype=torch.float32) for w in ws])
    res["kbind_fbank80_f32_batched_rtf"] = timeit(
        lambda ws: compute_fbank(torch.stack(ws), fb, dtype=torch.float32))
    res["kbind_mfcc13_f64_rtf"] = timeit(lambda ws: [compute_mfcc(w, mf) for w in ws])
    try:
        import kaldi_native_fbank as knf

        def knf_fbank(ws):
            for w in ws:
                o = knf.FbankOptions()
                o.frame_opts.dither = 0
                o.mel_opts.num_bins = 80
                f = knf.OnlineFbank(o)
                f.accept_waveform(sr, w.tolist())
                f.input_finished()
                np.stack([f.get_frame(i) for i in range(f.num_frames_ready)])

        res["knf_fbank80_rtf"] = timeit(knf_fbank)
    except ImportError:
        res["knf_fbank80_rtf"] = None
    res.update(kaldi_fbank(samples, sr, total, compute_fbank(waves[0], fb)))
    print(json.dumps(res, indent=2))
    return res


def kaldi_fbank(samples, sr: int, total: float, first_feats: torch.Tensor) -> dict:
    """Kaldi's compute-fbank-feats with kbind's options on the same samples."""
    why = _kaldi.unavailable()
    if why:
        return {"kaldi_fbank80_rtf": None, "kaldi_skipped": why}
    import soundfile

    from kbind.io import read_table
    opts = ["--num-mel-bins=80", "--dither=0"]
    with tempfile.TemporaryDirectory() as tmp:
        scp = Path(tmp) / "wav.scp"
        with open(scp, "w") as f:
            for i, x in enumerate(samples):
                path = Path(tmp) / f"utt{i:04d}.wav"
                soundfile.write(path, x, sr, subtype="PCM_16")
                f.write(f"utt{i:04d} {path}\n")
        prog = _kaldi.program("compute-fbank-feats")
        best = min(_kaldi.run([prog, *opts, f"scp:{scp}", "ark:/dev/null"])[0]
                   for _ in range(2))
        first = Path(tmp) / "first.scp"
        first.write_text(scp.read_text().splitlines()[0] + "\n")
        _kaldi.run([prog, *opts, f"scp:{first}", f"ark:{tmp}/first.ark"])
        (_, theirs), = read_table(f"ark:{tmp}/first.ark")
    diff = float(np.abs(theirs - first_feats.numpy()).max())
    return {"kaldi_fbank80_rtf": round(best / total, 5), "kaldi_fbank80_max_abs_diff": diff}


if __name__ == "__main__":
    main()

"""Feature extraction speed: kbind's torch fbank/MFCC vs kaldi-native-fbank.

Computes 80-bin fbank and 13-dim MFCC (16 kHz, 25 ms / 10 ms) on
``--seconds`` of noise-like audio split into 10 s utterances, on one CPU
thread, and reports the real-time factor (processing time / audio time;
lower is faster) for kbind in float64 (the default, Kaldi-exact to ~1e-5)
and float32, and for kaldi-native-fbank (C++, float32).

    python scripts/bench/bench_features.py [--seconds 300]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=300.0)
    args = ap.parse_args(argv)

    from kbind.data import FbankOptions, MfccOptions, compute_fbank, compute_mfcc

    torch.set_num_threads(1)
    sr = 16000
    n_utt = max(1, int(args.seconds // 10))
    rng = np.random.default_rng(0)
    waves = [torch.from_numpy((rng.normal(size=10 * sr) * 3000).astype(np.float32))
             for _ in range(n_utt)]
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
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()

"""Decoding speed: real-time factor of the lattice-faster search (C) at two
beams and pruned lattice determinization time per utterance (C,
``kb_latdet_pruned``: word-level pass, and with the phone pass first as
latgen-faster does), with raw lattice sizes.

Without ``--graph`` it builds a synthetic HCLG of realistic shape: a word
loop over ``--words`` words, each a random sequence of 2-6 phones of 3 HMM
states with self-loops (transition-ids 2*pdf+1 self-loop, 2*pdf+2 forward,
``--pdfs`` pdfs), unigram costs on word entry; and synthetic
log-likelihoods from a random word sequence (the true pdf 25 nats above
Gaussian noise of std 6), 10 ms frames. ``--confusable BOOST`` draws
log-likelihoods that make several pdfs close (noise std 2, the true pdf
only BOOST nats above it; 6 is moderately confusable, 5 hard, 3 extreme):
the stress case for determinization. For the synthetic graph the phone of
a transition-id is known (pdf // 3; the forward tid into a phone's first
HMM state starts it). With ``--graph HCLG.fst --model final.mdl
--loglikes RSPECIFIER`` it decodes real data.

    python scripts/bench/bench_decode.py [--words 2000] [--utts 6] [--frames 300]
        [--beams 13,8] [--threads 2] [--confusable 6] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def synthetic_graph(num_words: int, num_pdfs: int, seed: int = 0):
    from kbind.io.fst import Fst
    rng = np.random.default_rng(seed)
    num_phones = max(1, num_pdfs // 3)
    src, dst, il, ol, w = [], [], [], [], []
    ns = 1  # state 0: the word loop
    lex = []
    for word in range(1, num_words + 1):
        phones = rng.integers(0, num_phones, int(rng.integers(2, 7)))
        pdfs = [3 * p + k for p in phones for k in range(3)]
        lex.append(pdfs)
        first = ns
        states = list(range(ns, ns + len(pdfs)))
        ns += len(pdfs)
        # entry: emit the first pdf's forward tid, output the word
        src.append(0); dst.append(first); il.append(2 * pdfs[0] + 2); ol.append(word)
        w.append(float(rng.uniform(3, 9)))
        for j, s in enumerate(states):
            pdf = pdfs[j]
            src.append(s); dst.append(s); il.append(2 * pdf + 1); ol.append(0); w.append(0.69)
            if j + 1 < len(states):
                src.append(s); dst.append(states[j + 1]); il.append(2 * pdfs[j + 1] + 2)
                ol.append(0); w.append(0.69)
            else:
                src.append(s); dst.append(0); il.append(0); ol.append(0); w.append(0.69)
    final = np.full(ns, np.inf, dtype=np.float32)
    final[0] = 0.0
    g = Fst(ns, 0, final, src, dst, il, ol, w)
    tid2pdf = np.zeros(2 * num_pdfs + 1, dtype=np.int32)
    tid2pdf[1::2] = np.arange(num_pdfs)
    tid2pdf[2::2] = np.arange(num_pdfs)
    return g, tid2pdf, lex


def synthetic_phone_map(num_pdfs: int) -> np.ndarray:
    """tid -> phone started (0: none) for :func:`synthetic_graph`."""
    pm = np.zeros(2 * num_pdfs + 1, dtype=np.int32)
    first = np.arange(0, num_pdfs, 3)
    pm[2 * first + 2] = first // 3 + 1
    return pm


def synthetic_loglikes(lex, num_pdfs: int, frames: int, rng,
                       confusable: float = 0.0) -> torch.Tensor:
    ali = []
    while len(ali) < frames:
        for pdf in lex[int(rng.integers(0, len(lex)))]:
            ali += [pdf] * int(rng.integers(1, 5))
    ali = np.asarray(ali[:frames])
    if confusable > 0:  # several pdfs close to the right one
        ll = rng.normal(size=(frames, num_pdfs)).astype(np.float32) * 2.0 - 10.0
        ll[np.arange(frames), ali] += confusable
        return torch.from_numpy(ll)
    # roughly the spread of a DNN's log(posterior / prior): the right pdf
    # ~25 nats above the bulk, noise with std 6
    ll = rng.normal(size=(frames, num_pdfs)).astype(np.float32) * 6.0 - 30.0
    ll[np.arange(frames), ali] += 25.0
    return torch.from_numpy(ll)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graph", default=None, help="HCLG.fst (default: synthetic)")
    ap.add_argument("--model", default=None, help="transition model (with --graph)")
    ap.add_argument("--loglikes", default=None, help="rspecifier of (T, num_pdfs) matrices")
    ap.add_argument("--words", type=int, default=2000)
    ap.add_argument("--pdfs", type=int, default=600)
    ap.add_argument("--utts", type=int, default=6)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--beams", default="13,8")
    ap.add_argument("--lattice-beam", type=float, default=8.0)
    ap.add_argument("--max-active", type=int, default=7000)
    ap.add_argument("--acoustic-scale", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--confusable", type=float, default=0.0,
                    help="confusable log-likelihoods, the right pdf this many nats up")
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true", help="200 words, 2 utterances of 100 frames")
    args = ap.parse_args(argv)
    if args.quick:
        args.words, args.utts, args.frames = 200, 2, 100

    from kbind.decode.decoder import DecoderOptions, LatticeDecoder
    from kbind.decode.lattice_ops import determinize_lattice_pruned, phone_start_map

    rng = np.random.default_rng(1)
    if args.graph:
        from kbind.io.fst import Fst
        g = Fst.from_file(args.graph)
        if not args.model:
            raise SystemExit("--graph needs --model")
        from kbind.hmm.transition_model import TransitionModel
        tm = TransitionModel.from_file(args.model)
        tid2pdf, phone_map = tm.tid2pdf, phone_start_map(tm)
        if not args.loglikes:
            raise SystemExit("--graph needs --loglikes")
        from kbind.io import read_table
        lls = [torch.from_numpy(np.asarray(m, dtype=np.float32))
               for _, m in read_table(args.loglikes, "matrix")][:args.utts]
    else:
        g, tid2pdf, lex = synthetic_graph(args.words, args.pdfs)
        phone_map = synthetic_phone_map(args.pdfs)
        lls = [synthetic_loglikes(lex, args.pdfs, args.frames, rng, args.confusable)
               for _ in range(args.utts)]
    frames = sum(int(x.shape[0]) for x in lls)
    out = {"graph_states": int(g.num_states), "graph_arcs": int(g.num_arcs),
           "utts": len(lls), "frames": frames, "threads": torch.get_num_threads()}
    for beam in [float(b) for b in args.beams.split(",")]:
        opts = DecoderOptions(beam=beam, lattice_beam=args.lattice_beam,
                              max_active=args.max_active, acoustic_scale=args.acoustic_scale,
                              allow_partial=True, determinize_lattice=False)
        dec = LatticeDecoder(g, tid2pdf, opts)
        dec.decode_raw(lls[0])  # warm-up
        t0 = time.perf_counter()
        raws = [dec.decode_raw(x) for x in lls]
        search = time.perf_counter() - t0
        per_utt = []
        det = {"word": 0.0, "phone": 0.0}
        for r in raws:
            lat = r[-1]
            row = {"raw_states": int(lat.num_states), "raw_arcs": int(lat.num_arcs)}
            for mode, pm in (("word", None), ("phone", phone_map)):
                t0 = time.perf_counter()
                clat, info = determinize_lattice_pruned(lat, args.lattice_beam, trans_model=pm,
                                                        return_info=True)
                dt = time.perf_counter() - t0
                det[mode] += dt
                row[f"det_{mode}_s"] = round(dt, 4)
                row[f"det_{mode}_out"] = f"{clat.num_states}s/{clat.num_arcs}a"
                row[f"det_{mode}_retries"] = info.retries
                row[f"det_{mode}_complete"] = info.complete
            per_utt.append(row)
        t0 = time.perf_counter()
        dec.decode_batch(lls, num_workers=args.threads)  # search only (no determinization)
        par = time.perf_counter() - t0
        res = {
            "search_rtf": search / (frames * 0.01),
            "search_s_per_utt": search / len(lls),
            "determinize_word_s_per_utt": det["word"] / len(lls),
            "determinize_phone_s_per_utt": det["phone"] / len(lls),
            "lattice_states_per_utt": float(np.mean([r[-1].num_states for r in raws])),
            "lattice_arcs_per_utt": float(np.mean([r[-1].num_arcs for r in raws])),
            f"batch_{args.threads}_threads_speedup": search / par if par > 0 else None,
            "per_utt": per_utt,
        }
        out[f"beam_{beam:g}"] = res
        dec.close()
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return out


if __name__ == "__main__":
    main()

"""Forced-alignment speed on the digits corpus (needs `make run` first).

Two sources of log-likelihoods, each aligned to the transcripts of a data
set with kbind.align.ForcedAligner (beam 10, retry beam 40):

* ``chain``: the flat-start TDNN-F chain model of stage 7
  (exp/chain/tdnnf_e2e/final.pt), outputs at frame subsampling factor 3,
  aligned with the chain tree / transition model (exp/chain/e2e_tree) and
  data/lang_chain; scales as for chain models (acoustic 1.0, transition 1.0,
  self-loop 1.0);
* ``oracle``: the oracle log-likelihoods of stage 5 (margin 5 nats, noise 1)
  on the monophone 3-state model (exp/mono0) and data/lang; scales as
  Kaldi's alignment scripts (acoustic 0.1, transition 1.0, self-loop 0.1).

Reports the per-utterance graph compilation time (compile-train-graphs:
L, context, H, determinize, minimize, self-loops, then transition
probabilities) and the alignment speed in frames per second (frames of the
model output; for the chain model also 10 ms input frames) on 1 and 2
threads, best of --repeat runs (wall clock), and frames per CPU-second on
one thread (unaffected by other processes on a busy machine).

The reference is Kaldi's ``align-compiled-mapped`` (``$KALDI_ROOT``, else
``../shared/kaldi``) on the same input: the same graphs (as compile-train-graphs
writes them, before transition probabilities), log-likelihoods and options,
from archives. Its figures are per CPU-second of the process (reading the
archives and adding the transition probabilities included), and the share of
utterances whose alignment equals kbind's.

    python scripts/bench/bench_align.py [--exp egs/digits/exp] [--data egs/digits/data]
        [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _kaldi  # noqa: E402


def _best(fn, repeat):
    """Best wall time and best CPU time (all threads) of ``repeat`` runs."""
    best = best_cpu = float("inf")
    out = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu, out


def _kaldi_align(name, aligner, model_path, utts, texts, loglikes, results) -> dict:
    """Kaldi's align-compiled-mapped on the same graphs, log-likelihoods and options."""
    why = _kaldi.unavailable()
    if why:
        return {f"{name}_kaldi_skipped": why}
    from kbind.io import read_table, write_table
    o = aligner.opts
    with tempfile.TemporaryDirectory() as tmp:
        with write_table(f"ark:{tmp}/graphs.ark") as w:
            for u in utts:
                w.write(u, aligner.compiler.compile(aligner.word_ids(texts[u])))
        with write_table(f"ark:{tmp}/loglikes.ark") as w:
            for u in utts:
                w.write(u, loglikes[u].numpy())
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        _kaldi.run([_kaldi.program("align-compiled-mapped"), f"--beam={o.beam}",
                    f"--retry-beam={o.retry_beam}", f"--acoustic-scale={o.acoustic_scale}",
                    f"--transition-scale={o.transition_scale}",
                    f"--self-loop-scale={o.self_loop_scale}", model_path,
                    f"ark:{tmp}/graphs.ark", f"ark:{tmp}/loglikes.ark", f"ark:{tmp}/ali.ark"])
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        theirs = dict(read_table(f"ark:{tmp}/ali.ark", kind="int32_vector"))
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    frames = sum(int(loglikes[u].shape[0]) for u in utts)
    ours = {r.key: r.alignment for r in results}
    same = sum(1 for u in utts if u in theirs and ours.get(u) is not None
               and np.array_equal(theirs[u], ours[u]))
    return {f"{name}_kaldi_fps_per_cpu_second": round(frames / cpu),
            f"{name}_kaldi_same_alignment_share": round(same / len(utts), 4)}


def _bench(name, aligner, texts, loglikes, repeat, model_path, subsampling=1):
    utts = [u for u in sorted(loglikes) if u in texts]
    aligner.compile(texts[utts[0]])  # warm up (loads L.fst etc.)
    t0 = time.perf_counter()
    graphs = {u: aligner.compile(texts[u]) for u in utts}
    t_compile = time.perf_counter() - t0
    items = [(u, graphs[u], loglikes[u]) for u in utts]
    frames = sum(int(loglikes[u].shape[0]) for u in utts)
    res = {}
    for threads in (1, 2):
        dt, cpu, results = _best(lambda: aligner.align_many(items, num_threads=threads),
                                 repeat)
        res[f"{name}_fps_{threads}thread"] = round(frames / dt)
        if threads == 1:  # per CPU-second: what one core does, whatever the load
            res[f"{name}_fps_per_cpu_second"] = round(frames / cpu)
        if subsampling > 1:
            res[f"{name}_input_fps_{threads}thread"] = round(frames * subsampling / dt)
    s = aligner.summary(results)
    res.update({
        f"{name}_utterances": len(utts),
        f"{name}_frames": frames,
        f"{name}_compile_ms_per_utt": round(1000 * t_compile / len(utts), 2),
        f"{name}_graph_states_avg": round(float(np.mean([g.num_states for g in graphs.values()])),
                                          1),
        f"{name}_failed": s["failed"],
        f"{name}_retried": s["retried"],
        f"{name}_loglike_per_frame": round(s["loglike_per_frame"], 4),
    })
    res.update(_kaldi_align(name, aligner, model_path, utts, texts, loglikes, results))
    return res


def chain_case(exp, data, split, repeat):
    from kbind.align import AlignOptions, ForcedAligner
    from kbind.decode.scoring import read_text
    sys.path.insert(0, str(ROOT / "trainers"))
    sys.path.insert(0, str(ROOT / "egs/digits/local"))
    from chain import compute_loglikes
    from train_lfmmi import load_model

    mdir, tdir = exp / "chain" / "tdnnf_e2e", exp / "chain" / "e2e_tree"
    model = load_model(mdir)
    cmvn = "speaker"
    cfg = mdir / "config.yaml"
    if cfg.exists():
        import yaml
        cmvn = (yaml.safe_load(cfg.read_text()).get("egs") or {}).get("cmvn", cmvn)
    t0 = time.perf_counter()
    loglikes = compute_loglikes(model, data / split, cmvn)
    t_nnet = time.perf_counter() - t0
    al = ForcedAligner(tdir / "0.trans_mdl", tdir / "tree", data / "lang_chain",
                       AlignOptions(acoustic_scale=1.0, transition_scale=1.0,
                                    self_loop_scale=1.0))
    res = _bench("chain", al, read_text(data / split / "text"), loglikes, repeat,
                 tdir / "0.trans_mdl", 3)
    res["chain_nnet_seconds"] = round(t_nnet, 1)
    return res


def oracle_case(exp, data, split, repeat):
    from kbind.align import AlignOptions, ForcedAligner
    from kbind.data import DataDir
    from kbind.decode.scoring import read_text
    sys.path.insert(0, str(ROOT / "egs/digits/local"))
    from oracle import cheapest_path_tids, oracle_loglikes, oracle_pdfs

    mono = exp / "mono0"
    al = ForcedAligner(mono / "final.trans_mdl", mono / "tree", data / "lang",
                       AlignOptions(acoustic_scale=0.1))
    texts = read_text(data / split / "text")
    dd = DataDir.load(data / split)
    rng = np.random.default_rng(0)
    loglikes = {}
    for u, words in texts.items():
        raw = al.compiler.compile(al.word_ids(words))
        pdfs = oracle_pdfs(cheapest_path_tids(raw), al.trans_model, dd.utt2num_frames[u])
        if pdfs is not None:
            loglikes[u] = torch.from_numpy(oracle_loglikes(pdfs, al.num_pdfs, 5.0, 1.0, rng))
    return _bench("oracle", al, texts, loglikes, repeat, mono / "final.trans_mdl")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exp", default=str(ROOT / "egs/digits/exp"))
    ap.add_argument("--data", default=str(ROOT / "egs/digits/data"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--sources", default="chain,oracle")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one run each")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeat = 1
    exp, data = Path(args.exp), Path(args.data)
    torch.set_num_threads(1)
    out = {}
    for src in args.sources.split(","):
        if src == "chain":
            if not (exp / "chain" / "tdnnf_e2e" / "final.pt").exists():
                print(f"no chain model in {exp}/chain/tdnnf_e2e: run `make run` first")
                out["chain_skipped"] = "no chain model (run `make run` first)"
                continue
            out.update(chain_case(exp, data, args.split, args.repeat))
        elif src == "oracle":
            if not (exp / "mono0" / "tree").exists():
                print(f"no monophone model in {exp}/mono0: run `make run` first")
                out["oracle_skipped"] = "no mono0 model (run `make run` first)"
                continue
            out.update(oracle_case(exp, data, args.split, args.repeat))
        else:
            raise SystemExit(f"unknown source {src!r}")
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()

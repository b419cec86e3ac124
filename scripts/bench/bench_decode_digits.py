"""Decoding speed on the digits test set (needs `make run` stages 0-4 first).

Decodes the test set of egs/digits with the monophone HCLG and the oracle
log-likelihoods of egs/digits/run.py (margin 5 nats, noise 1), on ONE
thread, at two beams, and reports the real-time factor (decode time /
audio time, 10 ms frames) of the search alone and of search + lattice
determinisation, and the lattice generation time per utterance.

The reference is Kaldi's ``latgen-faster-mapped`` (``$KALDI_ROOT``, else
``../shared/kaldi``) on the same graph, transition model, log-likelihoods (from
an archive) and options, with ``--determinize-lattice`` false and true: the
real-time factor it logs itself (its timer starts after the graph is read).

    python scripts/bench/bench_decode_digits.py [--exp egs/digits/exp] [--data egs/digits/data]
        [--quick]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _kaldi  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exp", default=str(ROOT / "egs/digits/exp"))
    ap.add_argument("--data", default=str(ROOT / "egs/digits/data"))
    ap.add_argument("--beams", default="13,8")
    ap.add_argument("--max-utts", type=int, default=300)
    ap.add_argument("--quick", action="store_true", help="20 utterances")
    args = ap.parse_args(argv)
    if args.quick:
        args.max_utts = 20
    exp = Path(args.exp) / "mono0"
    if not (exp / "graph" / "HCLG.fst").exists():
        print(f"no digits graph in {exp}: run `make run` (or egs/digits/run.py --stop_stage 4) first")
        return {"skipped": "digits graph not built (run `make run` first)"}
    sys.path.insert(0, str(ROOT / "egs/digits/local"))
    from oracle import cheapest_path_tids, oracle_loglikes, oracle_pdfs

    from kbind.data import DataDir
    from kbind.decode import DecoderOptions, LatticeDecoder
    from kbind.hmm import TransitionModel
    from kbind.io import RandomAccessTable
    from kbind.io.fst import Fst

    torch.set_num_threads(1)
    tm = TransitionModel.from_file(str(exp / "final.trans_mdl"))
    graphs = RandomAccessTable(f"scp:{exp}/fsts.test.scp", kind="fst")
    test = DataDir.load(Path(args.data) / "test")
    rng = np.random.default_rng(0)
    lls = []
    for utt in test.utterances[:args.max_utts]:
        pdfs = oracle_pdfs(cheapest_path_tids(graphs[utt]), tm, test.utt2num_frames[utt])
        if pdfs is not None:
            lls.append(torch.from_numpy(oracle_loglikes(pdfs, tm.num_pdfs, 5.0, 1.0, rng)))
    hclg = Fst.from_file(str(exp / "graph" / "HCLG.fst"))
    frames = sum(x.shape[0] for x in lls)
    audio_s = frames / 100.0
    res = {"utterances": len(lls), "audio_seconds": round(audio_s, 1),
           "hclg_states": hclg.num_states, "hclg_arcs": hclg.num_arcs}
    for beam in [float(b) for b in args.beams.split(",")]:
        for det in (False, True):
            opts = DecoderOptions(beam=beam, lattice_beam=8.0, determinize_lattice=det)
            with LatticeDecoder(hclg, tm, opts) as dec:
                t0 = time.perf_counter()
                out = [dec.decode(x) for x in lls]
                dt = time.perf_counter() - t0
            tag = f"beam{beam:g}_" + ("search+determinize" if det else "search")
            res[f"{tag}_rtf"] = round(dt / audio_s, 4)
            res[f"{tag}_ms_per_utt"] = round(1000 * dt / len(lls), 1)
            if det:
                res[f"beam{beam:g}_mean_clat_arcs"] = round(float(np.mean(
                    [r.compact_lattice.num_arcs for r in out])), 1)
            else:
                res[f"beam{beam:g}_mean_raw_lattice_arcs"] = round(float(np.mean(
                    [r.lattice.num_arcs for r in out])), 1)
    res.update(kaldi_decode(exp, lls, [float(b) for b in args.beams.split(",")]))
    print(json.dumps(res, indent=2))
    return res


def kaldi_decode(exp: Path, lls, beams) -> dict:
    """Kaldi's latgen-faster-mapped with the options kbind's decoder used."""
    why = _kaldi.unavailable()
    if why:
        return {"kaldi_skipped": why}
    from kbind.decode import DecoderOptions
    from kbind.io import write_table
    o = DecoderOptions()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        with write_table(f"ark:{tmp}/loglikes.ark") as w:
            for i, x in enumerate(lls):
                w.write(f"utt{i:04d}", x.numpy())
        for beam in beams:
            for det in (False, True):
                _, r = _kaldi.run([
                    _kaldi.program("latgen-faster-mapped"), f"--beam={beam}",
                    f"--lattice-beam={o.lattice_beam}", f"--max-active={o.max_active}",
                    f"--min-active={o.min_active}", f"--acoustic-scale={o.acoustic_scale}",
                    f"--prune-interval={o.prune_interval}", f"--beam-delta={o.beam_delta}",
                    f"--hash-ratio={o.hash_ratio}",  # prune_scale: not an option; Kaldi's 0.1
                    f"--determinize-lattice={str(det).lower()}", exp / "final.trans_mdl",
                    exp / "graph" / "HCLG.fst", f"ark:{tmp}/loglikes.ark", "ark:/dev/null"])
                rtf = re.search(r"real-time factor assuming 100 frames/sec is ([0-9.eE+-]+)",
                                r.stderr)
                tag = f"beam{beam:g}_" + ("search+determinize" if det else "search")
                out[f"kaldi_{tag}_rtf"] = round(float(rtf.group(1)), 4)
    return out


if __name__ == "__main__":
    main()

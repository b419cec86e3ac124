"""Benchmark of the chain numerator forward-backward (issue 4): C vs torch.

``main(argv) -> dict`` builds flat-start (e2e) numerator graphs the way the
digits recipe's biphone setup does, with kbind's own pipeline: a chain 2-state
topology on 40 phones, the full left-biphone tree (41 x 40 x 2 = 3280 pdfs, as
egs/digits with ``--chain_prep.tree_type biphone``), a transition model, a
4-gram phone LM on the
sequences' random phone sequences and 400 more, den.fst + normalization.fst, and
one ``e2e_supervision`` per sequence (random phone sequence of about one
phone per 3.5 output frames, silence at both ends, composed with the
normalization FST). Then, for S = 64 sequences and D = 3280, numerator
forward + backward (``numerator_forward_backward``: log Z and the (S, T, D)
posteriors) with ``impl="c"`` and ``impl="torch"`` on 1 and 2 threads, for

* ``eq``: all sequences T = 100 frames (the trainer's "similar" batching);
* ``mixed``: T uniform in [50, 150] in one batch (padded to 150).

Times are the minimum (and median) wall time over ``--reps`` runs (torch:
``reps - 1``), with the supervision's arrays cached (``prep`` reports building them for a fresh
Supervision, which the trainer pays once per minibatch). Also reported: graph
sizes (states/arcs per sequence), the C forward alone, the time to allocate and
zero an (S, T, D) float32 tensor (the floor for any kernel returning dense
posteriors: on a fresh buffer it is page faults) and the C/torch agreement.

Usage: ``python scripts/bench/bench_chain_num.py [--reps N] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def build_graphs(S: int, lengths, num_phones: int = 40, seed: int = 0):
    """(fsts, num_pdfs): e2e numerator FSTs for random phone sequences."""
    from kbind.chain.den_fst import make_den_fst
    from kbind.chain.phone_lm import estimate_phone_lm
    from kbind.chain.supervision_maker import e2e_supervision
    from kbind.hmm import ContextDependency, TransitionModel
    from kbind.hmm.topology import HmmTopology

    rng = np.random.default_rng(seed)
    phones = list(range(1, num_phones + 1))
    topo = HmmTopology.chain_2state(phones)
    tree = ContextDependency.left_biphone(phones, 2)
    tm = TransitionModel.build(topo, tree)

    def phone_seq(T):
        n = max(1, int(round(T / 3.5)) - 2)
        return [1] + [int(p) for p in rng.integers(2, num_phones + 1, n)] + [1]

    seqs = [phone_seq(T) for T in lengths]
    # the LM is estimated on the "training transcripts" (these plus more), as the recipe
    lm = estimate_phone_lm(seqs + [phone_seq(int(rng.integers(50, 151))) for _ in range(400)],
                           4, 3, 2000)
    _, norm = make_den_fst(tree, tm, lm)
    fsts = [e2e_supervision(q, T, tree, tm, norm) for q, T in zip(seqs, lengths)]
    return fsts, tm.num_pdfs


def _time(fn, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts), statistics.median(ts)


def main(argv=None) -> dict:
    from kbind.chain import Supervision, numerator_forward_backward

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="S = 16, one rep, torch on 1 thread")
    ap.add_argument("--sequences", type=int, default=64)
    args = ap.parse_args(argv)
    S = 16 if args.quick else args.sequences
    reps = 1 if args.quick else args.reps
    res = {"S": S, "T": 100}
    rng = np.random.default_rng(1)
    cases = {"eq": [100] * S, "mixed": sorted(int(t) for t in rng.integers(50, 151, S))}
    t0 = time.perf_counter()
    fsts_all, D = build_graphs(S * 2, cases["eq"] + cases["mixed"])
    res["graph_build_s"] = round(time.perf_counter() - t0, 2)
    res["num_pdfs"] = D
    nthreads0 = torch.get_num_threads()
    try:
        for ci, (name, lengths) in enumerate(cases.items()):
            fsts = fsts_all[ci * S:(ci + 1) * S]
            T = max(lengths)
            res[f"{name}_states_per_seq"] = round(float(np.mean([f.num_states for f in fsts])), 1)
            res[f"{name}_arcs_per_seq"] = round(float(np.mean([f.num_arcs for f in fsts])), 1)
            t0 = time.perf_counter()
            sup = Supervision.from_fsts(fsts, lengths)
            res[f"{name}_from_fsts_ms"] = round(1e3 * (time.perf_counter() - t0), 2)
            t0 = time.perf_counter()
            sup.arrays(D, torch.float32)
            res[f"{name}_prep_arrays_ms"] = round(1e3 * (time.perf_counter() - t0), 2)
            y = torch.randn(S, T, D, generator=torch.Generator().manual_seed(0))
            out = {}
            for nt in (1, 2):
                torch.set_num_threads(nt)
                for impl in ("c", "torch"):
                    if impl == "torch" and args.quick and nt == 2:
                        continue
                    if nt == 1:      # warm-up (builds the cached arrays), kept for checks
                        out[impl] = numerator_forward_backward(sup, y, impl=impl)
                    tmin, tmed = _time(lambda: numerator_forward_backward(sup, y, impl=impl),
                                       reps if impl == "c" else max(1, reps - 1))
                    res[f"{name}_{impl}_{nt}t_ms"] = round(1e3 * tmin, 1)
                    res[f"{name}_{impl}_{nt}t_median_ms"] = round(1e3 * tmed, 1)
                    print(f"{name} {impl} {nt}t: {1e3 * tmin:.1f} ms (median {1e3 * tmed:.1f})",
                          flush=True)
            # forward only (C), and allocating + zeroing an (S, T, D) float32 tensor:
            # the floor of any dense-posterior API (page faults of a fresh buffer)
            torch.set_num_threads(1)
            tmin, _ = _time(lambda: numerator_forward_backward(sup, y, impl="c",
                                                               compute_posteriors=False), reps)
            res[f"{name}_c_1t_forward_only_ms"] = round(1e3 * tmin, 1)
            tmin, _ = _time(lambda: torch.empty(S, T, D).zero_(), reps)
            res[f"{name}_alloc_zero_STD_ms"] = round(1e3 * tmin, 1)
            res[f"{name}_speedup_1t"] = round(res[f"{name}_torch_1t_ms"] /
                                              res[f"{name}_c_1t_ms"], 1)
            a, b = out["c"], out["torch"]
            res[f"{name}_max_rel_logprob_diff"] = float(
                ((a.logprob - b.logprob).abs() / b.logprob.abs()).max())
            res[f"{name}_max_abs_post_diff"] = float((a.posteriors - b.posteriors).abs().max())
    finally:
        torch.set_num_threads(nthreads0)
    return res


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=2))

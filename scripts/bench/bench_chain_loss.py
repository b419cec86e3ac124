"""Benchmark of ``kbind.chain.ChainLoss`` forward + backward (issue 4).

``main(argv) -> dict`` builds, with kbind's own pipeline, the graphs of the
digits flat-start recipe: a chain 2-state topology on 40 phones, a tree
(``biphone``: the full left-biphone tree, 41 x 40 x 2 = 3280 pdfs, as
egs/digits with ``--chain_prep.tree_type biphone``; ``mono``: 80 pdfs), a
transition model, a 4-gram phone LM on random phone sequences, den.fst +
normalization.fst, and one e2e numerator FST per sequence (``e2e_supervision``:
random phone sequence, about one phone per 3.5 output frames, silence at both
ends). Then, for B = 32 sequences of T = 62 output frames (one digits
minibatch) and random outputs y ~ N(0, 2^2) (and a log-softmax xent output),
it times with one torch thread, as the digits trainer runs:

* ``loss_fwd`` / ``loss_bwd``: ``ChainLoss(den, l2_regularize=5e-5,
  xent_regularize=0.1)`` (the trainer's settings; out-of-range penalty on)
  forward, and backward to y and the xent output;
* ``den``: ``denominator_forward_backward`` (log Z and posteriors, C kernel);
* ``num``: ``numerator_forward_backward`` (e2e, float, C kernel);
* ``rest``: loss_fwd - den - num, what ChainLoss itself adds (gradient
  assembly, l2, xent objective, checks);
* ``alloc_zero``: allocating and zeroing one (B, T, D) float32 tensor (the
  price of one fresh full-size pass, for scale).

Times are the minimum and median over ``--reps`` runs.

Usage: ``python scripts/bench/bench_chain_loss.py [--reps N] [--quick]
[--trees biphone,mono]``.
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


def build_case(tree_type: str, B: int, T: int, num_phones: int = 40, seed: int = 0):
    """(den_graph, supervision, num_pdfs) for B sequences of T output frames."""
    from kbind.chain import DenominatorGraph, Supervision
    from kbind.chain.den_fst import make_den_fst
    from kbind.chain.phone_lm import estimate_phone_lm
    from kbind.chain.supervision_maker import e2e_supervision
    from kbind.hmm import ContextDependency, TransitionModel
    from kbind.hmm.topology import HmmTopology

    rng = np.random.default_rng(seed)
    phones = list(range(1, num_phones + 1))
    topo = HmmTopology.chain_2state(phones)
    if tree_type == "biphone":
        tree = ContextDependency.left_biphone(phones, 2)
    elif tree_type == "mono":
        tree = ContextDependency.monophone(phones, 2)
    else:
        raise ValueError(f"tree type must be biphone or mono, got {tree_type!r}")
    tm = TransitionModel.build(topo, tree)

    def phone_seq(n_frames):
        n = max(1, int(round(n_frames / 3.5)) - 2)
        return [1] + [int(p) for p in rng.integers(2, num_phones + 1, n)] + [1]

    seqs = [phone_seq(T) for _ in range(B)]
    lm = estimate_phone_lm(seqs + [phone_seq(int(rng.integers(30, 100))) for _ in range(400)],
                           4, 3, 2000)
    den_fst, norm = make_den_fst(tree, tm, lm)
    fsts = [e2e_supervision(q, T, tree, tm, norm) for q in seqs]
    D = tm.num_pdfs
    return DenominatorGraph.from_fst(den_fst, D), Supervision.from_fsts(fsts, T), D


def _ms(fn, reps):
    """(min, median) wall time of ``fn()`` in ms, rounded to 0.1."""
    ts = [0.0] * reps
    for i in range(reps):
        t0 = time.perf_counter()
        fn()
        ts[i] = 1e3 * (time.perf_counter() - t0)
    return round(min(ts), 1), round(statistics.median(ts), 1)


def bench_tree(tree_type: str, B: int, T: int, reps: int) -> dict:
    from kbind.chain import ChainLoss
    from kbind.chain.denominator import denominator_forward_backward
    from kbind.chain.numerator import numerator_forward_backward

    res = {}
    t0 = time.perf_counter()
    g, sup, D = build_case(tree_type, B, T)
    res["build_s"] = round(time.perf_counter() - t0, 1)
    res["num_pdfs"] = D
    res["den_states"] = g.num_states
    gen = torch.Generator().manual_seed(0)
    y0 = 2.0 * torch.randn(B, T, D, generator=gen)
    x0 = torch.log_softmax(torch.randn(B, T, D, generator=gen), dim=-1)
    loss_fn = ChainLoss(g, l2_regularize=5e-5, xent_regularize=0.1, seed=0)

    fwd, bwd = [], []

    def step():
        y = y0.clone().requires_grad_(True)
        x = x0.clone().requires_grad_(True)
        t1 = time.perf_counter()
        loss = loss_fn(y, sup, xent_output=x)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        fwd.append(t2 - t1)
        bwd.append(t3 - t2)
        assert loss_fn.last_stats.ok

    step()                                   # warm-up: cached supervision arrays
    fwd.clear()
    bwd.clear()
    for _ in range(reps):
        step()
    res["loss_fwd_ms"] = round(1e3 * min(fwd), 1)
    res["loss_fwd_median_ms"] = round(1e3 * statistics.median(fwd), 1)
    res["loss_bwd_ms"] = round(1e3 * min(bwd), 1)
    res["loss_bwd_median_ms"] = round(1e3 * statistics.median(bwd), 1)
    tot = [a + b for a, b in zip(fwd, bwd)]
    res["loss_fwd_bwd_ms"] = round(1e3 * min(tot), 1)
    res["loss_fwd_bwd_median_ms"] = round(1e3 * statistics.median(tot), 1)
    res["den_ms"], res["den_median_ms"] = _ms(
        lambda: denominator_forward_backward(g, y0, leaky_hmm_coefficient=0.1), reps)
    res["num_ms"], res["num_median_ms"] = _ms(lambda: numerator_forward_backward(sup, y0), reps)
    res["rest_ms"] = round(res["loss_fwd_ms"] - res["den_ms"] - res["num_ms"], 1)
    res["rest_median_ms"] = round(res["loss_fwd_median_ms"] - res["den_median_ms"]
                                  - res["num_median_ms"], 1)
    res["alloc_zero_BTD_ms"] = _ms(lambda: torch.empty(B, T, D).zero_(), reps)[0]
    return res


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="two reps")
    ap.add_argument("--trees", default="biphone,mono")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--frames", type=int, default=62)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    reps = 2 if args.quick else args.reps
    nthreads0 = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    res = {"B": args.batch, "T": args.frames, "threads": args.threads}
    try:
        for tree in args.trees.split(","):
            r = bench_tree(tree, args.batch, args.frames, reps)
            D = r["num_pdfs"]
            print(f"D={D} ({tree}): loss fwd {r['loss_fwd_ms']} ms (den {r['den_ms']}, num "
                  f"{r['num_ms']}, rest {r['rest_ms']}), bwd {r['loss_bwd_ms']} ms; fwd+bwd "
                  f"{r['loss_fwd_bwd_ms']} ms (median {r['loss_fwd_bwd_median_ms']}); one "
                  f"(B,T,D) alloc+zero {r['alloc_zero_BTD_ms']} ms", flush=True)
            for k, v in r.items():
                res[f"D{D}_{k}"] = v
    finally:
        torch.set_num_threads(nthreads0)
    return res


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=2))

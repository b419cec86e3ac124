"""CE training throughput of a BLSTM (pykaldi2's 3x512) on the digits corpus.

Needs the digits recipe up to its chain model and alignment (``make run``, or
``egs/digits/run.py --stop_stage 10``). Minibatches of 64 chunks x 80 labels
(240 input frames stacked 3 to a step, the chain frame rate of the alignments)
plus 30 / 15 frames of extra context; Adam; one torch thread for training.

Three ways, the same model and minibatches, reported as iRTF (hours of audio
trained on per hour, 100 frames per second of chunk audio):

* ``pure``: forward + backward + update on minibatches already in memory (the
  limit);
* ``static``: labels from the Kaldi alignment dir, minibatches cut from the
  features as training goes (:class:`kbind.data.frame_egs.FrameEgs`);
* ``on_the_fly``: labels made as training goes by one worker process aligning
  with the flat-start chain model (:class:`kbind.data.align_loader.OnTheFlyAligner`),
  on the second core.

    python scripts/bench/bench_ce.py [--batches 4] [--hidden 512 --layers 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exp", default=str(ROOT / "egs/digits/exp"))
    ap.add_argument("--data", default=str(ROOT / "egs/digits/data"))
    ap.add_argument("--batches", type=int, default=4, help="timed minibatches per mode")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--chunks", type=int, default=64)
    ap.add_argument("--labels", type=int, default=80, help="labels (output frames) per chunk")
    ap.add_argument("--quick", action="store_true",
                    help="one timed minibatch of 8 chunks, a 1x64 BLSTM")
    args = ap.parse_args(argv)
    if args.quick:
        args.batches, args.chunks, args.hidden, args.layers = 1, 8, 64, 1
    exp, data = Path(args.exp), Path(args.data)
    chain_dir, tree_dir = exp / "chain" / "tdnnf_e2e", exp / "chain" / "e2e_tree"
    ali_dir = exp / "ce" / "ali_chain"
    if not (chain_dir / "final.pt").exists() or not (ali_dir / "ali.1.gz").exists():
        print(f"no digits chain model / alignments under {exp}: run `make run` first")
        return {"skipped": "digits chain model and alignments not built (run `make run` first)"}
    sys.path.insert(0, str(ROOT / "trainers"))
    from train_ce import ce_loss

    from kbind.align import AlignmentDir
    from kbind.chain.egs import FeatureSource
    from kbind.data.align_loader import AlignerSpec, OnTheFlyAligner, OnTheFlyConfig
    from kbind.data.frame_egs import FrameEgs, FrameEgsConfig
    from kbind.decode.acoustic import AcousticModel
    from kbind.nn import BLSTM, BlstmConfig

    torch.set_num_threads(1)
    torch.manual_seed(0)
    ali = AlignmentDir.load(ali_dir)
    labels = ali.pdf_alignments()
    feats = FeatureSource(data / "train", "speaker")
    feats.preload()
    fss = 3
    ecfg = FrameEgsConfig(chunk_width=str(args.labels * fss), extra_left_context=30,
                          extra_right_context=15, minibatch_size=args.chunks)
    egs = FrameEgs(feats, labels, 0, 0, ecfg, fss, seed=0, num_pdfs=ali.trans_model.num_pdfs)
    model = BLSTM(feats.dim, ali.trans_model.num_pdfs,
                  BlstmConfig(hidden_dim=args.hidden, num_layers=args.layers,
                              frame_subsampling_factor=fss))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    plan = [b for b in egs.batches(0) if len(b) == args.chunks]
    need = args.batches + 1
    if len(plan) < need:
        return {"skipped": f"only {len(plan)} full minibatches"}
    plan = plan[:need]

    def step(batch):
        """One update; returns the seconds of audio its labels cover."""
        x, y, lens = batch
        loss, _, _, n = ce_loss(model, x, y, lens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return n * fss / 100.0

    res = {"model": f"BLSTM {args.layers}x{args.hidden}, {args.chunks}x{args.labels} labels "
                    f"(x{fss} frames stacked)", "load": os.getloadavg()[0]}

    # pure: collated up front
    batches = [egs.collate(b) for b in plan]
    step(batches[0])
    t0 = time.perf_counter()
    audio = sum(step(b) for b in batches[1:])
    t_pure = time.perf_counter() - t0
    res["pure_s_per_minibatch"] = round(t_pure / args.batches, 2)
    res["pure_irtf"] = round(audio / t_pure, 1)

    # static labels, minibatches made as training goes
    t0 = time.perf_counter()
    audio = sum(step(egs.collate(b)) for b in plan[1:])
    t_static = time.perf_counter() - t0
    res["static_irtf"] = round(audio / t_static, 1)
    res["static_overhead_pct"] = round(100 * (res["pure_irtf"] / res["static_irtf"] - 1), 1)

    # on the fly: one worker aligning with the chain model
    am = AcousticModel.load(chain_dir)
    spec = AlignerSpec(str(data / "train"), str(data / "lang_chain"), str(tree_dir / "tree"),
                       str(tree_dir / "0.trans_mdl"), "speaker", False,
                       dict(acoustic_scale=1.0, self_loop_scale=1.0, transition_scale=1.0))
    with OnTheFlyAligner(spec, am, OnTheFlyConfig(num_workers=1, group_size=1,
                                                  prefetch=2)) as otf:
        it = otf.batches(egs, epoch=0)
        first = next(it)[1]          # worker start-up and the first group: not timed
        step(first)
        otf.stats["wait_s"] = 0.0
        t0 = time.perf_counter()
        n, audio = 0, 0.0
        for _, b in it:
            audio += step(b)
            n += 1
            if n == args.batches:
                break
        t_otf = time.perf_counter() - t0
        st = dict(otf.stats)
    res["on_the_fly_irtf"] = round(audio / t_otf, 1)
    res["on_the_fly_overhead_pct"] = round(100 * (res["pure_irtf"] / res["on_the_fly_irtf"]
                                                  - 1), 1)
    res["trainer_wait_s"] = round(st["wait_s"], 2)
    if st["align_s"] > 0:
        res["worker_frames_per_s"] = round(st["frames"] / st["align_s"])
    for k in ("pure_irtf", "static_irtf", "on_the_fly_irtf"):
        print(f"{k}: {res[k]}")
    print(res)
    return res


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""LF-MMI ("chain") training of a TDNN-F, as Kaldi's ``steps/nnet3/chain/train.py``
(regular chain) and ``steps/nnet3/chain/e2e/train_e2e.py`` (flat-start).

    python trainers/train_lfmmi.py --train_data data/train --chain_dir exp/chain/e2e_tree \\
        --dir exp/chain/tdnnf_e2e [--config conf.yaml] [--num_epochs 6] [--optim.momentum 0.5]

The script reads top to bottom: config -> data (egs) -> model -> den graph ->
loss -> optimizer -> loop. The config (:class:`TrainConfig`) comes from
defaults, ``--config file.yaml`` and ``--key value`` overrides (nested as
``--optim.initial_effective_lrate 2e-3``), and is saved as ``<dir>/config.yaml``.

Graph dir (``--chain_dir``), as Kaldi's tree/chain dirs:

* ``tree``, ``0.trans_mdl``, ``den.fst``, ``normalization.fst`` (always);
* flat-start (``--supervision e2e``): ``fst.scp`` -- each training
  utterance's training graph (``compile-train-graphs`` with
  ``--transition-scale 0 --self-loop-scale 0``, the ``fst.JOB.gz`` of
  ``prepare_e2e.sh``); each is turned into its numerator graph
  (``TrainingGraphToSupervisionE2e`` + normalization FST) on first use;
* regular chain (``--supervision alignment``): alignments ``ali.*.gz``
  (transition-ids, e.g. from ``steps/align_fmllr.sh``; ``--ali_dir``, default
  the chain dir) converted to phones with ``ali-to-phones --write-lengths``
  semantics using the model they were made with (``--ali_model``, default
  ``<ali_dir>/final.mdl``, else the chain dir's ``0.trans_mdl``), or a
  ``phone_ali.txt`` (``utt p1 d1 ; p2 d2 ; ...``) already at phone level.
  Chunks of ``--egs.chunk_width`` get ``chain-get-supervision`` /
  ``nnet3-chain-get-egs`` supervision (constrained; ``--egs.constrained false``
  for unconstrained). A Kaldi chain dir made by ``steps/nnet3/chain/build_tree.sh``
  + ``train.py``'s den-graph stage can be passed as it is.

Per step (``NnetChainTrainer::TrainInternal``): forward; chain objective +
xent regulariser (:class:`kbind.chain.ChainLoss`, output l2 ``5e-5``, xent
``--model.xent_regularize`` ``0.1``, which also gives the xent output layer its
learning-rate factor ``0.5/0.1``, as Kaldi's recipes pass one variable to both);
backward, in which every affine/linear layer's weight gradient is Kaldi's
natural gradient (NG-SGD, :mod:`kbind.nn.natural_gradient`: input and
output derivative preconditioned by ``OnlineNaturalGradient``, as Kaldi's
TDNN-F recipes; ``--model.natural_gradient false`` gives plain SGD); then
:func:`kbind.train.update_after_backward`, the step every kbind trainer takes
after backward: parameter L2 (``2 * S * l2 / num_jobs``, not preconditioned),
optimizer step under per-component and global max-change (an update with a
non-finite change is dropped, with a warning), batch-norm stats x0.8,
semi-orthogonal constraint (each constrained layer with probability 1/4). No
other gradient clipping.

Learning rate: Kaldi's ``get_learning_rate`` per iteration (an iteration =
``--minibatches_per_iter`` minibatches, Kaldi's "archive" per job): the
effective rate decays exponentially from ``initial_effective_lrate`` to
``final_effective_lrate`` over the run and is multiplied by ``num_jobs``
(kbind trains one model; ``num_jobs`` .. ``num_jobs_final`` only reproduce
Kaldi's per-job rates and L2 factors); see :mod:`kbind.train.schedule`. The
dropout schedule is evaluated at the fraction of data processed. The
optimizer is SGD (with optional momentum; Kaldi: ``lr*(1-momentum)`` per
step; with NG-SGD this is Kaldi's update) or Adam (on the NG directions if
NG-SGD is on). The NG preconditioners' state is part of the model's
``state_dict``, so checkpoints resume exactly.

Logs: ``<dir>/log/train.log`` with Kaldi's lines per iteration (average
objective per ``print_interval`` minibatches, overall, and ``compute_prob`` on
held-out ("valid") and training ("train") diagnostic utterances), the kbind
library's warnings (an update not applied, an eg skipped; max-change lines at
debug level), ``<dir>/metrics.jsonl`` (+ TensorBoard under ``<dir>/tensorboard``
if installed), ``<dir>/progress.json`` (objf per epoch). The held-out
utterances are drawn by :func:`kbind.train.split_held_out` from all the
utterances with features: with the same seed, the ones ``train_ce.py`` holds
out. Checkpoints ``<dir>/ckpt-<step>.pt`` (atomic) are written every
``checkpoint_interval`` iterations; a rerun resumes from the latest one and
continues exactly as if uninterrupted (a checkpoint of a run with another
number of iterations is an error). ``<dir>/final.pt`` holds the model (and
config) at the end.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from kbind.chain import ChainLoss, DenominatorGraph  # noqa: E402
from kbind.chain.egs import (AlignmentSupervisions, ChainEgs, E2eSupervisions,  # noqa: E402
                             EgsConfig, FeatureSource)
from kbind.config import parse_config, save_config  # noqa: E402
from kbind.nn import TDNNF, TdnnfConfig  # noqa: E402
from kbind.train import (MetricsWriter, ObjfAccumulator, OptimConfig,  # noqa: E402
                         capture_rng_state, evaluating, locate_step, log_compute_prob,
                         log_to_file, make_optimizer, progress_bar, resume_training,
                         save_training_checkpoint, seed_all, split_held_out, start_iteration,
                         update_after_backward)

log = logging.getLogger("train_lfmmi")


# ---------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------

@dataclass
class LossConfig:
    leaky_hmm_coefficient: float = 0.1     # recipes 0.1
    l2_regularize: float = 5e-5            # chain output l2 (Kaldi's recipes)
    # the xent regulariser's weight is model.xent_regularize: the same number sets
    # the xent output's learning-rate factor 0.5 / xent_regularize
    out_of_range_regularize: float = 0.01


@dataclass
class TrainConfig:
    """LF-MMI training (see the module docstring)."""
    dir: str = "exp/chain/tdnnf"
    train_data: str = "data/train"
    chain_dir: str = "exp/chain/e2e_tree"
    supervision: str = "e2e"               # e2e (flat-start) | alignment (regular chain)
    ali_dir: str = ""                      # alignments (default: chain_dir)
    ali_model: str = ""                    # model of the alignments (default <ali_dir>/final.mdl)
    num_valid_utts: int = 100              # held out of training (Kaldi's valid_diagnostic)
    num_train_diagnostic_utts: int = 100   # training subset for train diagnostics
    num_epochs: int = 4
    minibatches_per_iter: int = 50         # one "archive" per iteration
    print_interval: int = 10
    diagnostic_interval: int = 1           # compute_prob every N iterations (and at the end)
    checkpoint_interval: int = 1           # iterations
    keep_checkpoints: int = 2
    resume: bool = True
    max_steps: int = -1                    # stop after this many minibatches in total (tests)
    seed: int = 0
    num_threads: int = 0                   # torch threads (0: torch's default)
    loss_num_threads: int = 1              # threads inside the chain loss (0: as the model);
    # the denominator's sparse (CSR) products get much slower with several OpenMP
    # threads on a loaded machine (50x measured with 2 threads on 2 busy cores)
    device: str = "cpu"
    progress: bool = True                  # tqdm progress bar
    tensorboard: bool = True
    model: TdnnfConfig = field(default_factory=TdnnfConfig)
    egs: EgsConfig = field(default_factory=lambda: EgsConfig(minibatch_size="64"))
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        initial_effective_lrate=1e-3, final_effective_lrate=1e-4))


# ---------------------------------------------------------------------------------------
# Graph dir / supervision
# ---------------------------------------------------------------------------------------

@dataclass
class ChainGraphs:
    tree: object
    trans_model: object
    den_graph: DenominatorGraph
    normalization_fst: object


def load_chain_dir(chain_dir) -> ChainGraphs:
    from kbind.hmm import ContextDependency, TransitionModel
    from kbind.io.fst import Fst
    d = Path(chain_dir)
    for name in ("tree", "0.trans_mdl", "den.fst", "normalization.fst"):
        if not (d / name).exists():
            raise FileNotFoundError(f"{d / name} is missing (a chain graph dir needs tree, "
                                    f"0.trans_mdl, den.fst and normalization.fst)")
    tree = ContextDependency.from_file(str(d / "tree"))
    tm = TransitionModel.from_file(str(d / "0.trans_mdl"))
    den = DenominatorGraph.from_fst(str(d / "den.fst"), tm.num_pdfs)
    norm = Fst.from_file(str(d / "normalization.fst"))
    return ChainGraphs(tree, tm, den, norm)


def read_phone_alignments(ali_dir, ali_model: str = "", fallback_model=None
                          ) -> Dict[str, List[Tuple[int, int]]]:
    """``utt -> [(phone, frames), ...]`` from ``ali.*.gz`` (converted with the
    alignment model) or ``phone_ali.txt``."""
    from kbind.chain.supervision_maker import read_phone_ali
    from kbind.hmm import TransitionModel
    from kbind.hmm.alignment import ali_to_phones
    from kbind.io import read_table
    d = Path(ali_dir)
    files = sorted(glob.glob(str(d / "ali.*.gz")),
                   key=lambda p: int(Path(p).name.split(".")[1])
                   if Path(p).name.split(".")[1].isdigit() else 0)
    if not files:
        if (d / "phone_ali.txt").exists():
            return read_phone_ali(d / "phone_ali.txt")
        raise FileNotFoundError(f"no ali.*.gz or phone_ali.txt in {d}")
    if ali_model:
        tm = TransitionModel.from_file(ali_model)
    elif (d / "final.mdl").exists():
        tm = TransitionModel.from_file(str(d / "final.mdl"))
    elif fallback_model is not None:
        tm = fallback_model
    else:
        raise FileNotFoundError(f"no model to convert {d}/ali.*.gz to phones (--ali_model)")
    out = {}
    for f in files:
        for utt, ali in read_table(f"ark:gunzip -c {f} |", "int32_vector"):
            out[utt] = [(int(p), int(n)) for p, n in ali_to_phones(tm, np.asarray(ali),
                                                                   write_lengths=True)]
    return out


def e2e_supervisions(chain_dir, graphs: ChainGraphs, data_dir=None) -> E2eSupervisions:
    """Numerator graphs from the training graphs in ``<chain_dir>/fst.scp``
    (utterances with the same transcript in ``<data_dir>/text`` share one)."""
    from kbind.chain.supervision_maker import add_weight_to_supervision, training_graph_to_e2e_fst
    from kbind.io import RandomAccessTable
    scp = Path(chain_dir) / "fst.scp"
    if not scp.exists():
        raise FileNotFoundError(f"{scp} is missing (flat-start training graphs)")
    table = RandomAccessTable(f"scp:{scp}", kind="fst")
    keys = {ln.split(None, 1)[0] for ln in scp.read_text().splitlines() if ln.strip()}

    class _Graphs(dict):
        def __contains__(self, utt):
            return utt in keys

        def __getitem__(self, utt):
            g = training_graph_to_e2e_fst(table[utt], graphs.trans_model)
            return add_weight_to_supervision(g, graphs.normalization_fst, e2e=True)

    share = None
    if data_dir is not None and (Path(data_dir) / "text").exists():
        text = {}
        for ln in (Path(data_dir) / "text").read_text().splitlines():
            f = ln.split(None, 1)
            if f:
                text[f[0]] = " ".join(f[1].split()) if len(f) > 1 else ""
        share = (lambda u: "text:" + text[u] if u in text else "utt:" + u)
    return E2eSupervisions(_Graphs(), share_key=share)


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------

class _Threads:
    """``with _Threads(n):`` run with ``n`` torch threads (0: unchanged)."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        self.old = torch.get_num_threads()
        if self.n > 0 and self.n != self.old:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        if torch.get_num_threads() != self.old:
            torch.set_num_threads(self.old)


def compute_prob(model, loss_fn: ChainLoss, egs: ChainEgs, device,
                 loss_threads: int = 0) -> ObjfAccumulator:
    """``nnet3-chain-compute-prob``: test-mode batch norm and dropout, no derivatives."""
    acc = ObjfAccumulator()
    max_abs = 0.0
    with evaluating(model):
        for batch in egs.batches(0):
            feats, sup, lengths = egs.collate(batch)
            out = model(feats.to(device))
            max_abs = max(max_abs, float(out.output.detach().abs().max()))
            with _Threads(loss_threads):
                loss_fn(out.output, sup, out.output_xent, lengths)
            acc.add(loss_fn.last_stats)
    if acc.weight > 0 and acc.objf_per_frame > 0:
        # As in Kaldi, the denominator clamps outputs to [-30, 30] and the
        # numerator does not, so outputs beyond that range can make num - den
        # positive; in test mode this points at batch-norm statistics that
        # lag a fast-moving model.
        log.warning("objective %.4f per frame is positive: nnet outputs reach |y| = %.1f, "
                    "beyond the denominator's clamp of 30 (test-mode batchnorm lagging the "
                    "model?)", acc.objf_per_frame, max_abs)
    return acc


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.dir = Path(cfg.dir)
        self.device = torch.device(cfg.device)

    # -- setup: data, model, graph, loss, optimizer ---------------------------------------
    def setup(self) -> None:
        cfg = self.cfg
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        seed_all(cfg.seed)

        # den graph and supervision
        self.graphs = load_chain_dir(cfg.chain_dir)
        num_pdfs = self.graphs.trans_model.num_pdfs
        fss = cfg.model.frame_subsampling_factor
        if cfg.supervision == "e2e":
            sup = e2e_supervisions(cfg.chain_dir, self.graphs, cfg.train_data)
        elif cfg.supervision == "alignment":
            ali = read_phone_alignments(cfg.ali_dir or cfg.chain_dir, cfg.ali_model,
                                        self.graphs.trans_model)
            sup = AlignmentSupervisions(ali, self.graphs.tree, self.graphs.trans_model,
                                        self.graphs.normalization_fst, fss,
                                        cfg.egs.left_tolerance, cfg.egs.right_tolerance,
                                        cfg.egs.constrained)
        else:
            raise ValueError(f"supervision must be e2e or alignment, got {cfg.supervision!r}")

        # data: held-out valid utterances, a training diagnostic subset
        feats = FeatureSource(cfg.train_data, cfg.egs.cmvn, cfg.egs.norm_vars)
        split = split_held_out(feats.utterances, cfg.num_valid_utts,
                               cfg.num_train_diagnostic_utts, cfg.seed, sup.has)
        valid, train, diag = split.valid, split.train, split.train_diagnostic

        # model
        self.model = TDNNF(feats.dim, num_pdfs, cfg.model).to(self.device)
        if self.model.frame_subsampling_factor != fss:
            raise ValueError("model frame_subsampling_factor mismatch")
        lc, rc = self.model.left_context, self.model.right_context
        self.egs = ChainEgs(feats, sup, lc, rc, cfg.egs, fss, cfg.seed, train)
        # diagnostics: no frame shift, no shuffling, any minibatch size up to the
        # training one (nnet3-chain-merge-egs --minibatch-size=1:64)
        big = max(max(v) for _, v in self.egs.rule.rules)
        diag_cfg = dataclasses.replace(cfg.egs, frame_shift=False, shuffle=False,
                                       minibatch_size=f"1:{big}")
        self.valid_egs = ChainEgs(feats, sup, lc, rc, diag_cfg, fss, cfg.seed, valid) \
            if valid else None
        self.diag_egs = ChainEgs(feats, sup, lc, rc, diag_cfg, fss, cfg.seed, diag) \
            if diag else None

        # loss (its out-of-range draw has its own generator, checkpointed)
        self.loss_rng = random.Random(cfg.seed + 1)
        self.orth_rng = random.Random(cfg.seed + 2)
        self.loss_fn = ChainLoss(self.graphs.den_graph.to(self.device),
                                 cfg.loss.leaky_hmm_coefficient, cfg.loss.l2_regularize,
                                 cfg.model.xent_regularize, cfg.loss.out_of_range_regularize,
                                 rng=self.loss_rng)
        self.optimizer = make_optimizer(self.model, cfg.optim)

        # the minibatch stream: epochs concatenated, iterations of a fixed size
        self.epoch_sizes = [len(self.egs.batches(e)) for e in range(cfg.num_epochs)]
        self.total_steps = sum(self.epoch_sizes)
        if self.total_steps == 0:
            raise ValueError("no minibatches: too few utterances for the minibatch size")
        self.num_iters = max(1, math.ceil(self.total_steps / cfg.minibatches_per_iter))
        self.schedule = cfg.optim.schedule(self.num_iters)
        nparams = sum(p.numel() for p in self.model.parameters())
        log.info("model: TDNN-F, %d parameters, context %d/%d, %d pdfs; feat dim %d; "
                 "natural gradient %s", nparams, lc, rc, num_pdfs, feats.dim,
                 "on" if cfg.model.natural_gradient else "off")
        log.info("den graph: %s", self.graphs.den_graph)
        log.info("data: %d training, %d valid, %d train-diagnostic utterances; %d epochs x ~%d "
                 "minibatches = %d iterations of %d", len(train), len(valid), len(diag),
                 cfg.num_epochs, self.epoch_sizes[0], self.num_iters, cfg.minibatches_per_iter)

    # -- checkpoints ---------------------------------------------------------------------
    def save(self, step: int, acc: ObjfAccumulator, progress: dict) -> None:
        save_training_checkpoint(self.dir, step, self.epoch_sizes, self.cfg.keep_checkpoints,
                                 model=self.model, optimizer=self.optimizer,
                                 num_iters=self.num_iters,
                                 rng=capture_rng_state(loss=self.loss_rng, orth=self.orth_rng),
                                 extra={"acc": acc.__dict__.copy(), "progress": progress})

    def restore(self) -> Tuple[int, ObjfAccumulator, dict]:
        acc = ObjfAccumulator()
        ck = resume_training(self.dir, model=self.model, optimizer=self.optimizer,
                             num_iters=self.num_iters, map_location=self.device,
                             loss=self.loss_rng, orth=self.orth_rng) if self.cfg.resume else None
        if ck is None:
            return 0, acc, {"epochs": []}
        acc.__dict__.update(ck["extra"]["acc"])
        return int(ck["position"]["step"]), acc, ck["extra"]["progress"]

    # -- the loop ------------------------------------------------------------------------
    def diagnostics(self, it: int, writer: MetricsWriter) -> Dict[str, dict]:
        out = {}
        for name, egs in (("valid", self.valid_egs), ("train", self.diag_egs)):
            if egs is None:
                continue
            acc = compute_prob(self.model, self.loss_fn, egs, self.device,
                               self.cfg.loss_num_threads)
            log_compute_prob(log, writer, name, it, acc.compute_prob_lines(), acc.as_dict())
            out[name] = acc.as_dict()
        return out

    def train(self) -> dict:
        cfg = self.cfg
        self.dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.dir / "config.yaml")
        self.setup()
        step, acc, progress = self.restore()
        writer = MetricsWriter(self.dir, use_tensorboard=cfg.tensorboard)
        end = self.total_steps if cfg.max_steps < 0 else min(self.total_steps, cfg.max_steps)
        bar = progress_bar(cfg.progress, self.total_steps, step)
        epoch_acc = ObjfAccumulator()
        epoch_acc.__dict__.update(progress.get("epoch_acc", {}))
        interval_acc = ObjfAccumulator()
        dataset, ds_epoch = None, -1
        t_start = time.time()
        self.model.train()
        while step < end:
            it = step // cfg.minibatches_per_iter
            epoch, index = locate_step(step, self.epoch_sizes)
            if step % cfg.minibatches_per_iter == 0 or dataset is None:
                lr = start_iteration(self.model, self.optimizer, self.schedule, it, cfg.optim)
                log.info("iteration %d/%d (epoch %d): learning rate %.6g", it, self.num_iters,
                         epoch, lr)
                writer.scalar("lr", lr, it)
            if ds_epoch != epoch:
                dataset, ds_epoch = self.egs.dataset(epoch), epoch
            feats, sup, lengths = dataset[index]

            # forward, objective, backward
            out = self.model(feats.to(self.device))
            with _Threads(cfg.loss_num_threads):
                loss = self.loss_fn(out.output, sup, out.output_xent, lengths)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            stats = self.loss_fn.last_stats
            update_after_backward(self.model, self.optimizer, cfg.optim, sup.num_sequences,
                                  self.schedule.l2_regularize_factor(it), self.orth_rng)

            for a in (acc, epoch_acc, interval_acc):
                a.add(stats)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(objf=f"{acc.objf_per_frame:.4f}", it=it, ep=epoch)
            step += 1
            mb = step - it * cfg.minibatches_per_iter   # minibatches done in this iteration
            if mb % cfg.print_interval == 0:
                for line in interval_acc.train_lines(mb - interval_acc.num_minibatches, mb - 1):
                    log.info("[train.%d] %s", it, line)
                interval_acc.reset()

            iter_done = (mb == cfg.minibatches_per_iter or step == self.total_steps)
            epoch_done = index + 1 == self.epoch_sizes[epoch]
            if iter_done:
                if interval_acc.num_minibatches:
                    for line in interval_acc.train_lines(mb - interval_acc.num_minibatches,
                                                         mb - 1):
                        log.info("[train.%d] %s", it, line)
                    interval_acc.reset()
                for line in acc.train_lines(overall=True):
                    log.info("[train.%d] %s", it, line)
                writer.scalars(acc.as_dict(), it, prefix="train_minibatch/")
                if it % cfg.diagnostic_interval == 0 or step == self.total_steps:
                    self.diagnostics(it, writer)
                acc.reset()
            if epoch_done:
                rec = {"epoch": epoch, "train_objf": epoch_acc.objf_per_frame,
                       "train_xent": epoch_acc.xent_per_frame, "frames": epoch_acc.weight,
                       "seconds": round(time.time() - t_start, 1)}
                for name, egs in (("valid", self.valid_egs),):
                    if egs is not None:
                        v = compute_prob(self.model, self.loss_fn, egs, self.device,
                                         cfg.loss_num_threads)
                        rec["valid_objf"], rec["valid_xent"] = v.objf_per_frame, v.xent_per_frame
                progress["epochs"].append(rec)
                log.info("epoch %d: train objf %.4f (xent %.4f), valid objf %.4f (xent %.4f)",
                         epoch, rec["train_objf"], rec["train_xent"],
                         rec.get("valid_objf", float("nan")), rec.get("valid_xent", float("nan")))
                writer.scalars({k: v for k, v in rec.items() if isinstance(v, float)}, epoch,
                               prefix="epoch/")
                epoch_acc.reset()
            progress["epoch_acc"] = epoch_acc.__dict__.copy()
            if (iter_done and (it + 1) % cfg.checkpoint_interval == 0) or step == end:
                self.save(step, acc, progress)
                writer.flush()
        if bar is not None:
            bar.close()
        writer.close()
        if step == self.total_steps:
            torch.save({"model": self.model.state_dict(), "config": dataclasses.asdict(cfg),
                        "feat_dim": self.model.feat_dim, "num_pdfs": self.model.num_pdfs},
                       self.dir / "final.pt")
            (self.dir / "progress.json").write_text(json.dumps(progress["epochs"], indent=2))
        return progress


def load_model(exp_dir, device="cpu") -> TDNNF:
    """The trained model of ``<exp_dir>/final.pt`` in eval mode."""
    from kbind.config import _from_dict
    obj = torch.load(str(Path(exp_dir) / "final.pt"), map_location=device, weights_only=False)
    mcfg = _from_dict(TdnnfConfig, obj["config"]["model"])
    model = TDNNF(obj["feat_dim"], obj["num_pdfs"], mcfg)
    model.load_state_dict(obj["model"])
    return model.eval()


def main(argv=None) -> int:
    cfg = parse_config(TrainConfig, argv, __doc__)
    with log_to_file("train_lfmmi", Path(cfg.dir, "log", "train.log")):
        Trainer(cfg).train()
    return 0


if __name__ == "__main__":
    sys.exit(main())

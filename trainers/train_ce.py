#!/usr/bin/env python3
"""Frame cross-entropy training on alignments (Kaldi's ``steps/nnet3/train_dnn.py`` /
``train_rnn.py``, pykaldi2's CE trainer), with alignments from a Kaldi alignment dir
or made on the fly by a kbind model.

    # a Kaldi alignment dir (final.mdl, tree, ali.*.gz, num_jobs), e.g. exp/tri3_ali
    python trainers/train_ce.py --train_data data/train --ali_dir exp/tri3_ali \\
        --dir exp/ce/blstm [--model.type blstm] [--num_epochs 4] [--config conf.yaml]

    # alignments made on the fly by a model (a flat-start chain model here),
    # realigned by the model being trained every 200 minibatches
    python trainers/train_ce.py --train_data data/train --dir exp/ce/blstm_otf \\
        --align.model exp/chain/tdnnf_e2e --align.lang data/lang_chain \\
        --align.tree_dir exp/chain/e2e_tree --align.refresh_every 200

Labels. ``--ali_dir``: the transition-id alignments are converted to pdf-ids
with the dir's transition model (``ali-to-pdf``); the dir's ``tree`` and
transition model are copied into ``--dir`` (the model's pdfs are theirs). With
``--align.model``, :class:`kbind.data.align_loader.OnTheFlyAligner` workers
align each epoch's utterances with a frozen copy of that model, a little ahead
of training; ``--align.refresh_every N`` replaces the copy by the model being
trained (with priors from the labels seen so far) every N minibatches
(``0``: never). The frame rate of the labels is the model's output rate
(``frame_subsampling_factor``; 3 for alignments made with a chain model).

Model (``--model.type``): ``blstm`` (default; 3x512 as pykaldi2 unless
configured; chunks with extra left/right context whose outputs are not trained,
Kaldi's ``--chunk-left-context/--chunk-right-context``), ``tdnn`` or ``tdnnf``
(context from the architecture, the ``output`` head trained with CE; no chain
xent head: ``xent_regularize`` must be 0).

Per step (Kaldi's ``NnetTrainer::TrainInternal``): forward; Kaldi's
cross-entropy objective, ``sum log p(label)`` over the labelled frames
(summed, as Kaldi's, so its learning rates and L2 constants mean the same;
logs report it per frame); backward; then
:func:`kbind.train.update_after_backward`, the step every kbind trainer
takes: parameter L2 (``2 * S * l2 / num_jobs``, S chunks per minibatch),
optimizer step (SGD with Kaldi's momentum convention, or Adam) under
per-component and global max-change (an update with a non-finite change is
dropped, with a warning), batch-norm stats x0.8, semi-orthogonal constraint
(TDNN-F). Kaldi's learning-rate schedule per iteration
(:mod:`kbind.train.schedule`) and dropout schedule (TDNN-F). Optimizer
defaults are ``train_rnn.py``'s (SGD, momentum 0.5, effective learning rate
3e-4 -> 3e-5, max-param-change 2); ``train_dnn.py``'s momentum is 0.
Diagnostics: ``compute_prob`` lines with objective (log-probability per
frame) and frame accuracy on held-out ("valid") and training ("train")
utterances, per iteration and epoch, in ``<dir>/log/train.log`` (with the
kbind library's warnings), ``metrics.jsonl`` and TensorBoard. The held-out
utterances are drawn by :func:`kbind.train.split_held_out` from all the
utterances with features (with the same seed, the ones ``train_lfmmi.py``
holds out), those without labels then left out. Throughput is logged as iRTF
(hours of audio per hour of training, 100 input frames per second).

Outputs: ``<dir>/final.pt`` (:class:`kbind.decode.acoustic.AcousticModel`:
network, config and label priors for decoding), ``ali_train_pdf.counts``
(Kaldi text vector), ``tree`` and ``final.trans_mdl``, ``progress.json``;
checkpoints ``ckpt-<step>.pt`` (atomic) to resume from exactly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from kbind.chain.egs import FeatureSource  # noqa: E402
from kbind.config import parse_config, save_config  # noqa: E402
from kbind.data.frame_egs import IGNORE, FrameEgs, FrameEgsConfig  # noqa: E402
from kbind.decode.acoustic import AcousticModel, build_model, network_output  # noqa: E402
from kbind.nn import BlstmConfig, TdnnConfig, TdnnfConfig  # noqa: E402
from kbind.train import (MetricsWriter, OptimConfig, capture_rng_state,  # noqa: E402
                         evaluating, locate_step, log_compute_prob, log_to_file,
                         make_optimizer, progress_bar, resume_training,
                         save_training_checkpoint, seed_all, split_held_out, start_iteration,
                         update_after_backward)
from kbind.train.priors import LabelPriors, pdf_counts, write_counts  # noqa: E402

log = logging.getLogger("train_ce")


# ---------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------

@dataclass
class CeModelConfig:
    type: str = "blstm"                   # blstm | tdnn | tdnnf
    blstm: BlstmConfig = field(default_factory=BlstmConfig)
    # CE trains the 'output' head only: no chain xent head (xent_regularize 0)
    tdnn: TdnnConfig = field(default_factory=lambda: TdnnConfig(frame_subsampling_factor=1,
                                                                xent_regularize=0.0))
    tdnnf: TdnnfConfig = field(default_factory=lambda: TdnnfConfig(xent_regularize=0.0))

    def chosen(self):
        if self.type not in ("blstm", "tdnn", "tdnnf"):
            raise ValueError(f"model.type must be blstm, tdnn or tdnnf, got {self.type!r}")
        cfg = getattr(self, self.type)
        if getattr(cfg, "xent_regularize", 0.0) != 0.0:
            raise ValueError(f"model.{self.type}.xent_regularize must be 0 for CE training (it "
                             "adds the chain models' xent head, which CE does not train)")
        return cfg


@dataclass
class OnTheFlyAlignConfig:
    model: str = ""                       # model dir/file to align with ("" = use --ali_dir)
    lang: str = ""                        # lang dir of the training graphs
    tree_dir: str = ""                    # tree + transition model (0.trans_mdl or final.mdl)
    refresh_every: int = 0                # minibatches; 0 = keep aligning with --align.model
    num_workers: int = 1
    group_size: int = 4                   # minibatches per alignment request
    prefetch: int = 2
    beam: float = 10.0
    retry_beam: float = 40.0
    careful: bool = False
    acoustic_scale: float = 1.0           # 1.0 for chain models; 0.1 for CE models
    transition_scale: float = 1.0
    self_loop_scale: float = 1.0          # 1.0 for chain models; 0.1 for CE models
    # once the model being trained aligns (refresh_every > 0): Kaldi's CE scales
    refreshed_acoustic_scale: float = 0.1
    refreshed_self_loop_scale: float = 0.1


@dataclass
class CeTrainConfig:
    """CE training (see the module docstring)."""
    dir: str = "exp/ce/blstm"
    train_data: str = "data/train"
    ali_dir: str = ""                     # Kaldi alignment dir
    num_valid_utts: int = 100
    num_train_diagnostic_utts: int = 100
    num_epochs: int = 4
    minibatches_per_iter: int = 50
    print_interval: int = 10
    diagnostic_interval: int = 1
    checkpoint_interval: int = 1
    keep_checkpoints: int = 2
    resume: bool = True
    max_steps: int = -1
    seed: int = 0
    num_threads: int = 0
    device: str = "cpu"
    progress: bool = True
    tensorboard: bool = True
    prior_smoothing: float = 1.0          # add-k smoothing of the pdf counts
    model: CeModelConfig = field(default_factory=CeModelConfig)
    egs: FrameEgsConfig = field(default_factory=lambda: FrameEgsConfig(
        chunk_width="80", extra_left_context=0, extra_right_context=0, minibatch_size=64))
    # Kaldi's train_rnn.py (the BLSTM default; train_dnn.py's momentum is 0)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        momentum=0.5, initial_effective_lrate=3e-4, final_effective_lrate=3e-5,
        max_param_change=2.0))
    align: OnTheFlyAlignConfig = field(default_factory=OnTheFlyAlignConfig)


# ---------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------

def trans_model_file(tree_dir) -> Path:
    """The transition model of a tree / chain / alignment dir: ``0.trans_mdl``,
    ``final.mdl`` or ``final.trans_mdl``, the first that exists."""
    td = Path(tree_dir)
    for p in (td / "0.trans_mdl", td / "final.mdl", td / "final.trans_mdl"):
        if p.exists():
            return p
    raise FileNotFoundError(f"{td}: no transition model (0.trans_mdl, final.mdl or "
                            "final.trans_mdl)")


def load_alignment_dir(ali_dir):
    """``(trans_model, tree, {utt: pdf labels})`` of a Kaldi alignment dir."""
    from kbind.align import AlignmentDir
    d = AlignmentDir.load(ali_dir)
    return d.trans_model, d.tree, d.pdf_alignments()


def frame_accuracy(logits: torch.Tensor, labels: torch.Tensor):
    mask = labels != IGNORE
    n = int(mask.sum())
    if n == 0:
        return 0, 0
    return int((logits.argmax(-1)[mask] == labels[mask]).sum()), n


class CeStats:
    """Objective (log-probability per frame) and frame accuracy, summed."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.logprob = 0.0
        self.correct = 0
        self.frames = 0
        self.minibatches = 0

    def add(self, logprob_sum: float, correct: int, frames: int):
        self.logprob += logprob_sum
        self.correct += correct
        self.frames += frames
        self.minibatches += 1

    @property
    def objf(self) -> float:
        return self.logprob / self.frames if self.frames else float("nan")

    @property
    def accuracy(self) -> float:
        return self.correct / self.frames if self.frames else float("nan")

    def line(self) -> str:
        return (f"Overall log-probability for 'output' is {self.objf:.4f} per frame, over "
                f"{self.frames} frames; accuracy {self.accuracy:.4f}")

    def as_dict(self) -> Dict[str, float]:
        return {"objf": self.objf, "accuracy": self.accuracy, "frames": float(self.frames)}


def ce_loss(model, feats, labels, lengths):
    """``(loss, logprob sum, correct, frames)``: the loss is Kaldi's CE objective
    negated, ``-sum log p(label)`` over the labelled frames (summed, not
    averaged, so Kaldi's learning rates and L2 constants apply)."""
    logits = network_output(model, feats, lengths)
    if logits.shape[1] != labels.shape[1]:
        raise ValueError(f"model gives {logits.shape[1]} output frames for "
                         f"{feats.shape[1]} input frames, labels have {labels.shape[1]} "
                         "(frame subsampling factor of the model vs the egs?)")
    lp = torch.log_softmax(logits.float(), dim=-1)
    mask = labels != IGNORE
    n = int(mask.sum())
    picked = lp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)[mask]
    total = picked.sum()
    correct, _ = frame_accuracy(logits.detach(), labels)
    return -total, float(total.detach()), correct, n


def compute_prob(model, egs: FrameEgs, batches, device) -> CeStats:
    """``nnet3-compute-prob``: test-mode batch norm and dropout, no derivatives."""
    st = CeStats()
    with evaluating(model):
        for b in batches:
            feats, labels, lengths = egs.collate(b)
            _, lp, c, n = ce_loss(model, feats.to(device), labels.to(device), lengths)
            st.add(lp, c, n)
    return st


# ---------------------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------------------

class CeTrainer:
    def __init__(self, cfg: CeTrainConfig):
        self.cfg = cfg
        self.dir = Path(cfg.dir)
        self.device = torch.device(cfg.device)
        self.otf = None

    # -- setup -----------------------------------------------------------------------------
    def _labels(self):
        cfg = self.cfg
        from kbind.hmm import ContextDependency, TransitionModel
        if cfg.ali_dir and cfg.align.model:
            raise ValueError("give either --ali_dir or --align.model, not both")
        if cfg.ali_dir:
            tm, tree, labels = load_alignment_dir(cfg.ali_dir)
            return tm, tree, labels
        if not cfg.align.model:
            raise ValueError("no labels: give --ali_dir (a Kaldi alignment dir) or "
                             "--align.model (+ --align.lang, --align.tree_dir)")
        a = cfg.align
        if not a.lang or not a.tree_dir:
            raise ValueError("--align.model needs --align.lang and --align.tree_dir")
        self.trans_model_file = trans_model_file(a.tree_dir)
        return (TransitionModel.from_file(str(self.trans_model_file)),
                ContextDependency.from_file(str(Path(a.tree_dir) / "tree")), None)

    def setup(self) -> None:
        cfg = self.cfg
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        seed_all(cfg.seed)
        self.trans_model, self.tree, labels = self._labels()
        num_pdfs = self.trans_model.num_pdfs
        feats = FeatureSource(cfg.train_data, cfg.egs.cmvn, cfg.egs.norm_vars)
        self.features = feats
        if labels is not None and not any(u in labels for u in feats.utterances):
            raise ValueError(f"no utterance of {cfg.train_data} has an alignment in "
                             f"{cfg.ali_dir}")
        split = split_held_out(feats.utterances, cfg.num_valid_utts,
                               cfg.num_train_diagnostic_utts, cfg.seed,
                               None if labels is None else labels.__contains__)
        self.train_utts, self.valid_utts = split.train, split.valid
        self.diag_utts = split.train_diagnostic

        mcfg = cfg.model.chosen()
        self.model = build_model(cfg.model.type, feats.dim, num_pdfs, mcfg).to(self.device)
        fss = self.model.frame_subsampling_factor
        lc, rc = self.model.left_context, self.model.right_context
        self.labels: Dict[str, np.ndarray] = labels if labels is not None else {}
        # on the fly, labels come with the minibatches (FrameEgs.collate(chunks, labels))
        self.egs = FrameEgs(feats, labels if labels is not None else
                            dict.fromkeys(self.train_utts),
                            lc, rc, cfg.egs, fss, cfg.seed, self.train_utts, num_pdfs)
        self._diag_egs: Dict[str, FrameEgs] = {}
        self.optimizer = make_optimizer(self.model, cfg.optim)
        self.orth_rng = random.Random(cfg.seed + 2)     # the orthonormal constraint's draws
        self.epoch_sizes = [len(self.egs.batches(e)) for e in range(cfg.num_epochs)]
        self.total_steps = sum(self.epoch_sizes)
        if self.total_steps == 0:
            raise ValueError("no minibatches: no utterance long enough")
        self.num_iters = max(1, math.ceil(self.total_steps / cfg.minibatches_per_iter))
        self.schedule = cfg.optim.schedule(self.num_iters)
        nparams = sum(p.numel() for p in self.model.parameters())
        log.info("model: %s, %d parameters, context %d/%d (+ extra %d/%d), frame subsampling "
                 "%d, %d pdfs; feat dim %d", cfg.model.type, nparams, lc, rc,
                 cfg.egs.extra_left_context, cfg.egs.extra_right_context, fss, num_pdfs,
                 feats.dim)
        log.info("data: %d training, %d valid utterances; %d epochs x ~%d minibatches of %d "
                 "chunks = %d iterations of %d", len(self.train_utts), len(self.valid_utts),
                 cfg.num_epochs, self.epoch_sizes[0], cfg.egs.minibatch_size, self.num_iters,
                 cfg.minibatches_per_iter)

    def _start_otf(self) -> None:
        """Workers aligning with --align.model; labels of valid/diag utts made once."""
        from kbind.data.align_loader import AlignerSpec, OnTheFlyAligner, OnTheFlyConfig
        a = self.cfg.align
        td = Path(a.tree_dir)
        tmf = self.trans_model_file
        opts = dict(beam=a.beam, retry_beam=a.retry_beam, careful=a.careful,
                    acoustic_scale=a.acoustic_scale, transition_scale=a.transition_scale,
                    self_loop_scale=a.self_loop_scale)
        self.align_spec = AlignerSpec(self.cfg.train_data, a.lang, str(td / "tree"), str(tmf),
                                      self.cfg.egs.cmvn, self.cfg.egs.norm_vars, opts)
        am = AcousticModel.load(a.model)
        if am.num_pdfs != self.trans_model.num_pdfs:
            raise ValueError(f"--align.model has {am.num_pdfs} outputs, the transition model "
                             f"of {a.tree_dir} {self.trans_model.num_pdfs} pdfs")
        self.otf = OnTheFlyAligner(self.align_spec, am, OnTheFlyConfig(
            num_workers=a.num_workers, group_size=a.group_size, prefetch=a.prefetch))
        # diagnostics need fixed labels: align them once, in-process, with the source model
        from kbind.align import AlignOptions, ForcedAligner
        from kbind.decode.acoustic import compute_loglikes
        from kbind.hmm.alignment import ali_to_pdf
        from kbind.hmm.lang import Lang
        aligner = ForcedAligner(self.trans_model, self.tree, Lang.load(a.lang),
                                AlignOptions(**opts))
        utts = sorted(set(self.valid_utts) | set(self.diag_utts))
        ll = compute_loglikes(am, self.features, utts)
        text = self.features.data.text
        items = [(u, aligner.compile(text[u].split()), ll[u]) for u in utts if u in text]
        for r in aligner.align_many(items):
            if r.alignment is not None:
                self.labels[r.key] = np.asarray(ali_to_pdf(self.trans_model, r.alignment),
                                                dtype=np.int64)

    def all_labels(self) -> Dict[str, np.ndarray]:
        """Every label sequence known: the alignment dir's, or those made on the fly."""
        if self.otf is None:
            return {u: self.labels[u] for u in self.train_utts if u in self.labels}
        return dict(self.otf.labels)

    def _current_am(self) -> AcousticModel:
        counts = pdf_counts(self.all_labels().values(), self.trans_model.num_pdfs)
        return AcousticModel(self.model, self.cfg.model.type,
                             LabelPriors(counts, self.cfg.prior_smoothing))

    # -- checkpoints -----------------------------------------------------------------------
    def save(self, step: int, progress: dict) -> None:
        save_training_checkpoint(self.dir, step, self.epoch_sizes, self.cfg.keep_checkpoints,
                                 model=self.model, optimizer=self.optimizer,
                                 num_iters=self.num_iters,
                                 rng=capture_rng_state(orth=self.orth_rng),
                                 extra={"progress": progress})

    def restore(self):
        ck = resume_training(self.dir, model=self.model, optimizer=self.optimizer,
                             num_iters=self.num_iters, map_location=self.device,
                             orth=self.orth_rng) if self.cfg.resume else None
        if ck is None:
            return 0, {"epochs": []}
        return int(ck["position"]["step"]), ck["extra"]["progress"]

    # -- loop ------------------------------------------------------------------------------
    def _epoch_batches(self, epoch: int, start: int):
        if self.otf is None:
            plan = self.egs.batches(epoch)
            for i in range(start, len(plan)):
                yield i, self.egs.collate(plan[i])
            return
        for i, batch in self.otf.batches(self.egs, epoch, start):
            yield i, batch

    def diag_egs(self, name: str) -> FrameEgs:
        """Egs of the valid / train-diagnostic utterances (fixed labels, no shuffling)."""
        if name not in self._diag_egs:
            utts = self.valid_utts if name == "valid" else self.diag_utts
            m = self.model
            self._diag_egs[name] = FrameEgs(
                self.features, self.labels, m.left_context, m.right_context,
                dataclasses.replace(self.cfg.egs, shuffle=False), m.frame_subsampling_factor,
                self.cfg.seed, utts, self.trans_model.num_pdfs)
        return self._diag_egs[name]

    def diagnostics(self, tag, writer: MetricsWriter) -> Dict[str, dict]:
        out = {}
        for name in ("valid", "train"):
            egs = self.diag_egs(name)
            batches = egs.batches(0)
            if not batches:
                continue
            st = compute_prob(self.model, egs, batches, self.device)
            log_compute_prob(log, writer, name, tag, [st.line()], st.as_dict())
            out[name] = st.as_dict()
        return out

    def train(self) -> dict:
        cfg = self.cfg
        self.dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.dir / "config.yaml")
        self.setup()
        step, progress = self.restore()
        if cfg.align.model:
            self._start_otf()
            if 0 < cfg.align.refresh_every <= step:   # resumed past the first refresh
                self._refresh()
        writer = MetricsWriter(self.dir, use_tensorboard=cfg.tensorboard)
        end = self.total_steps if cfg.max_steps < 0 else min(self.total_steps, cfg.max_steps)
        bar = progress_bar(cfg.progress, self.total_steps, step)
        interval, epoch_st = CeStats(), CeStats()
        t_train, in_frames = 0.0, 0
        first = True
        self.model.train()
        try:
            while step < end:
                epoch, index = locate_step(step, self.epoch_sizes)
                epoch_start = step - index
                epoch_end = epoch_start + self.epoch_sizes[epoch]
                for i, (feats, labels, lengths) in self._epoch_batches(epoch, index):
                    s = epoch_start + i
                    if s >= end:
                        break
                    it = s // cfg.minibatches_per_iter
                    if s % cfg.minibatches_per_iter == 0 or first:
                        lr = start_iteration(self.model, self.optimizer, self.schedule, it,
                                             cfg.optim)
                        writer.scalar("lr", lr, it)
                        first = False
                    step = s + 1
                    t0 = time.time()
                    loss, lp, correct, n = ce_loss(self.model, feats.to(self.device),
                                                   labels.to(self.device), lengths)
                    if n > 0:
                        self.optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        update_after_backward(self.model, self.optimizer, cfg.optim,
                                              labels.shape[0],
                                              self.schedule.l2_regularize_factor(it),
                                              self.orth_rng)
                        interval.add(lp, correct, n)
                        epoch_st.add(lp, correct, n)
                    t_train += time.time() - t0
                    in_frames += int(lengths.sum())
                    if bar is not None:
                        bar.update(step - bar.n)
                        bar.set_postfix(objf=f"{interval.objf:.3f}",
                                        acc=f"{interval.accuracy:.3f}", ep=epoch)
                    if self.otf is not None and cfg.align.refresh_every > 0 and \
                            step % cfg.align.refresh_every == 0:
                        self._refresh()
                    done_iter = step % cfg.minibatches_per_iter == 0 or step == self.total_steps
                    if interval.minibatches and (step % cfg.print_interval == 0 or done_iter):
                        log.info("[train.%d] minibatches %d: %s", it, step, interval.line())
                        writer.scalars(interval.as_dict(), step, prefix="train_minibatch/")
                        interval.reset()
                    if done_iter:
                        if it % cfg.diagnostic_interval == 0:
                            self.diagnostics(it, writer)
                        if (it + 1) % cfg.checkpoint_interval == 0 and step < epoch_end:
                            self.save(step, progress)
                            writer.flush()
                else:
                    # the epoch is done (minibatches whose chunks all failed to align
                    # were skipped, so ``step`` may stop short of the epoch's end)
                    step = epoch_end
                    rec = {"epoch": epoch, "train_objf": epoch_st.objf,
                           "train_accuracy": epoch_st.accuracy,
                           "irtf": round(in_frames / 100.0 / t_train, 1) if t_train else None}
                    d = self.diagnostics(f"epoch{epoch}", writer)
                    if "valid" in d:
                        rec["valid_objf"] = d["valid"]["objf"]
                        rec["valid_accuracy"] = d["valid"]["accuracy"]
                    if self.otf is not None:
                        rec["align"] = dict(self.otf.stats)
                    progress["epochs"].append(rec)
                    log.info("epoch %d: train objf %.4f accuracy %.4f; valid objf %.4f "
                             "accuracy %.4f; training iRTF %s", epoch, rec["train_objf"],
                             rec["train_accuracy"], rec.get("valid_objf", float("nan")),
                             rec.get("valid_accuracy", float("nan")), rec["irtf"])
                    writer.scalars({k: v for k, v in rec.items() if isinstance(v, float)},
                                   epoch, prefix="epoch/")
                    epoch_st.reset()
                    self.save(step, progress)
                    writer.flush()
                    continue
                break
        finally:
            if bar is not None:
                bar.close()
            writer.close()
            if self.otf is not None:
                self.otf.close()
        if step >= self.total_steps:
            self.finish(progress)
        return progress

    def _refresh(self) -> None:
        """Realign with the model being trained from now on (CE scales, priors from
        the labels seen so far)."""
        import copy
        am = self._current_am()
        am = AcousticModel(copy.deepcopy(self.model).eval(), am.model_type, am.priors)
        a = self.cfg.align
        self.otf.refresh(am, dict(self.align_spec.options,
                                  acoustic_scale=a.refreshed_acoustic_scale,
                                  self_loop_scale=a.refreshed_self_loop_scale))
        log.info("on-the-fly alignment now uses the model being trained")

    def finish(self, progress: dict) -> None:
        counts = pdf_counts(self.all_labels().values(), self.trans_model.num_pdfs)
        write_counts(self.dir / "ali_train_pdf.counts", counts)
        am = AcousticModel(self.model, self.cfg.model.type,
                           LabelPriors(counts, self.cfg.prior_smoothing))
        am.save(self.dir / "final.pt")
        self.tree.to_file(str(self.dir / "tree"))
        self.trans_model.to_file(str(self.dir / "final.trans_mdl"))
        (self.dir / "progress.json").write_text(json.dumps(progress["epochs"], indent=2))
        log.info("wrote %s (with label priors from %d frames)", self.dir / "final.pt",
                 int(counts.sum()))


def main(argv=None) -> int:
    cfg = parse_config(CeTrainConfig, argv, __doc__)
    with log_to_file("train_ce", Path(cfg.dir, "log", "train.log")):
        CeTrainer(cfg).train()
    return 0


if __name__ == "__main__":
    sys.exit(main())

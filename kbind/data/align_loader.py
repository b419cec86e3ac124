"""Frame labels made on the fly by forced alignment with a model, in worker processes.

pykaldi2 realigns with the model being trained; Kaldi realigns between
stages. :class:`OnTheFlyAligner` does both: worker processes hold a *frozen
copy* of an acoustic model (:class:`kbind.decode.acoustic.AcousticModel`),
compute its log-likelihoods for the utterances the trainer will need next and
align them with :class:`kbind.align.ForcedAligner` (C Viterbi, beam / retry
beam) against each utterance's training graph. The trainer publishes a new
copy with :meth:`OnTheFlyAligner.refresh` (every N steps); workers pick it up
before their next utterance group.

Flow. The epoch's minibatch plan (which chunk of which utterance) depends on
utterance lengths only, so it is made first
(:meth:`kbind.data.frame_egs.FrameEgs.batches`); the plan is cut into groups
of ``group_size`` minibatches and the utterances of each group are sent to
the workers ``prefetch`` groups ahead of the one being trained on, so the
trainer waits only when alignment is slower than training. An utterance is
aligned once per epoch (by the model current when its first group was sent).
Utterances that fail to align (no final state within the retry beam) are
reported with their key and reason, and their chunks are left out of the
minibatch, never given wrong labels.

Resuming restarts the current epoch's pipeline at the minibatch it stopped at;
alignments are then made by the restored model, so a resumed run matches an
uninterrupted one only up to the alignments of that epoch.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import time
from dataclasses import dataclass, field
from typing import Dict, Iterator, Optional, Set

import numpy as np
import torch

from .frame_egs import FrameEgs

__all__ = ["OnTheFlyConfig", "OnTheFlyAligner", "AlignerSpec"]

log = logging.getLogger(__name__)


@dataclass
class OnTheFlyConfig:
    num_workers: int = 1          # alignment processes
    group_size: int = 4           # minibatches per alignment request
    prefetch: int = 2             # groups in flight ahead of training
    worker_threads: int = 1       # torch threads per worker
    timeout: float = 600.0        # seconds to wait for a group before giving up


@dataclass
class AlignerSpec:
    """What a worker needs to rebuild the aligner and features (picklable)."""
    data_dir: str
    lang_dir: str
    tree: str                     # tree file
    trans_model: str              # transition model file (or a final.mdl)
    cmvn: str = "speaker"
    norm_vars: bool = False
    options: dict = field(default_factory=dict)   # kbind.align.AlignOptions fields


_GRAPH_CACHE = 100000   # training graphs a worker keeps (distinct transcripts)


def _to_wire(state: dict) -> dict:
    """An AcousticModel state with numpy arrays instead of tensors (pickled by value)."""
    out = dict(state)
    out["model"] = {k: v.detach().cpu().numpy().copy() for k, v in state["model"].items()}
    return out


def _from_wire(state: dict) -> dict:
    out = dict(state)
    out["model"] = {k: torch.from_numpy(v) for k, v in state["model"].items()}
    return out


def _worker_main(spec: AlignerSpec, ctl, tasks, results, threads: int) -> None:
    torch.set_num_threads(max(1, threads))
    from kbind.align import AlignOptions, ForcedAligner
    from kbind.chain.egs import FeatureSource
    from kbind.decode.acoustic import AcousticModel, compute_loglikes
    from kbind.hmm import ContextDependency, TransitionModel
    from kbind.hmm.lang import Lang
    from kbind.hmm.alignment import ali_to_pdf

    try:
        feats = FeatureSource(spec.data_dir, spec.cmvn, spec.norm_vars)
        tm = TransitionModel.from_file(spec.trans_model)
        tree = ContextDependency.from_file(spec.tree)
        lang = Lang.load(spec.lang_dir)
        # graphs cached by transcript, for as long as the options stay
        aligner = ForcedAligner(tm, tree, lang, AlignOptions(**spec.options),
                                graph_cache=_GRAPH_CACHE)
        text = feats.data.text
    except Exception as e:  # report set-up failures instead of hanging the trainer
        results.put(("error", None, f"{type(e).__name__}: {e}"))
        return
    am, version = None, -1
    while True:
        task = tasks.get()
        if task is None:
            return
        gid, utts = task
        try:
            # the newest model published so far (block for the first one)
            latest = ctl.get() if am is None else None
            while True:
                try:
                    latest = ctl.get_nowait()
                except queue.Empty:
                    break
            if latest is not None:
                version, st, options = latest
                am = AcousticModel.from_state(_from_wire(st))
                if options is not None:       # new scales: new aligner, graphs recompiled
                    aligner = ForcedAligner(tm, tree, lang, AlignOptions(**options),
                                            graph_cache=_GRAPH_CACHE)
            t0 = time.time()
            ll = compute_loglikes(am, feats, utts)
            t_nnet = time.time() - t0
            out = {}
            for u in utts:
                if u not in text:
                    out[u] = (None, "no transcript")
                    continue
                r = aligner.align(u, aligner.compile(text[u].split()), ll[u])
                if r.alignment is None:
                    out[u] = (None, r.error or "alignment failed")
                else:
                    out[u] = (np.asarray(ali_to_pdf(tm, r.alignment), dtype=np.int64), None)
            results.put(("ok", gid, {"labels": out, "version": version, "nnet_s": t_nnet,
                                     "total_s": time.time() - t0,
                                     "frames": sum(int(x.shape[0]) for x in ll.values())}))
        except Exception as e:
            results.put(("error", gid, f"{type(e).__name__}: {e}"))


class OnTheFlyAligner:
    """Labels for :class:`FrameEgs` made by worker processes (see the module doc).

    ``am``: the :class:`kbind.decode.acoustic.AcousticModel` to align with
    first; :meth:`refresh` replaces it (e.g. by the model being trained, with
    priors). Use as a context manager, or call :meth:`close`."""

    def __init__(self, spec: AlignerSpec, am, cfg: OnTheFlyConfig = OnTheFlyConfig()):
        if cfg.num_workers < 1 or cfg.group_size < 1 or cfg.prefetch < 1:
            raise ValueError("OnTheFlyConfig: num_workers, group_size and prefetch must be >= 1")
        self.spec, self.cfg = spec, cfg
        ctx = mp.get_context("spawn")
        self._tasks = ctx.Queue()
        self._results = ctx.Queue()
        self._ctl = [ctx.Queue() for _ in range(cfg.num_workers)]
        self._procs = [ctx.Process(target=_worker_main,
                                   args=(spec, q, self._tasks, self._results,
                                         cfg.worker_threads), daemon=True)
                       for q in self._ctl]
        for p in self._procs:
            p.start()
        self.version = -1
        self.refresh(am)
        self.stats = {"groups": 0, "frames": 0, "align_s": 0.0, "wait_s": 0.0, "failed": 0}
        self.failed: Dict[str, str] = {}
        self.labels: Dict[str, np.ndarray] = {}   # the latest labels of every utterance

    def refresh(self, am, options: Optional[dict] = None) -> None:
        """Workers align with a copy of ``am`` (any architecture, with or without
        priors) from their next utterance group on; ``options`` (AlignOptions
        fields) replace the alignment options, e.g. the CE scales when a chain
        model is replaced by a CE model."""
        self.version += 1
        wire = _to_wire(am.state())
        for q in self._ctl:
            q.put((self.version, wire, options))

    # -- one epoch -------------------------------------------------------------------------
    def batches(self, egs: FrameEgs, epoch: int, start: int = 0) -> Iterator:
        """Yield ``(index, (feats, labels, lengths))`` for minibatches ``start..`` of
        the epoch, labels from the workers; minibatches whose chunks all failed
        to align are skipped (their index is not yielded)."""
        plan = egs.batches(epoch)
        g = self.cfg.group_size
        groups = [list(range(i, min(i + g, len(plan)))) for i in range(start, len(plan), g)]
        labels: Dict[str, Optional[np.ndarray]] = {}
        requested: Set[str] = set()
        sent = 0

        def send(k: int) -> None:
            utts = sorted({c.utt for b in groups[k] for c in plan[b]} - requested)
            requested.update(utts)
            if utts:
                self._tasks.put((k, utts))

        for k in range(len(groups)):
            while sent < len(groups) and sent < k + self.cfg.prefetch:
                send(sent)
                sent += 1
            # wait until every utterance this group needs has labels
            need = {c.utt for b in groups[k] for c in plan[b]}
            t0 = time.time()
            while not need.issubset(labels.keys()):
                self._receive(labels)
            self.stats["wait_s"] += time.time() - t0
            for b in groups[k]:
                chunks = [c for c in plan[b] if labels.get(c.utt) is not None]
                if not chunks:
                    continue
                yield b, egs.collate(chunks, labels)

    def _receive(self, labels) -> None:
        try:
            kind, gid, payload = self._results.get(timeout=self.cfg.timeout)
        except queue.Empty:
            dead = [p.pid for p in self._procs if not p.is_alive()]
            raise RuntimeError(f"on-the-fly alignment: no result in {self.cfg.timeout:.0f} s"
                               + (f" (workers {dead} died)" if dead else "")) from None
        if kind == "error":
            raise RuntimeError(f"on-the-fly alignment worker failed"
                               f"{'' if gid is None else f' on group {gid}'}: {payload}")
        for u, (lab, err) in payload["labels"].items():
            labels[u] = lab
            if lab is not None:
                self.labels[u] = lab
            else:
                self.failed[u] = err
                self.stats["failed"] += 1
                log.warning("utterance %s: alignment failed (%s); its chunks are skipped", u, err)
        self.stats["groups"] += 1
        self.stats["frames"] += payload["frames"]
        self.stats["align_s"] += payload["total_s"]

    def close(self) -> None:
        for _ in self._procs:
            try:
                self._tasks.put(None)
            except (ValueError, OSError):
                pass
        for p in self._procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
        self._procs = []
        # The workers are gone, so whatever is still buffered in a queue (model
        # refreshes a worker never read, unread tasks) can never be delivered:
        # without this, the feeder thread stays blocked on a full pipe and the
        # process hangs at exit, when multiprocessing joins it.
        for q in (self._tasks, self._results, *self._ctl):
            q.cancel_join_thread()
            q.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

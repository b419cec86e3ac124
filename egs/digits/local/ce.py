"""egs/digits cross-entropy stages: align with a model, train a BLSTM with CE,
decode with priors, realign with the CE model, train again.

* :func:`align_data_dir` -- ``steps/nnet3/align.sh``: training graphs from the
  transcripts (``compile-train-graphs``), the model's log-likelihoods, Viterbi
  forced alignment (``align-compiled-mapped``, beam / retry beam), written as a
  Kaldi alignment dir (``ali.JOB.gz``, ``final.mdl`` = the transition model,
  ``tree``, ``num_jobs``) that Kaldi's ``ali-to-pdf`` / ``ali-to-phones`` read
  and that ``trainers/train_ce.py --ali_dir`` (or a Kaldi recipe) takes.
  Scales as Kaldi's: a chain model aligns with acoustic, transition and
  self-loop scales 1.0 at the chain frame rate (``--frame-subsampling-factor
  3``); a CE model with 0.1 / 1.0 / 0.1.
* the CE graph is ``chain.make_chain_graph(..., self_loop_scale=0.1)``: HCLG
  on the chain tree with ``mkgraph.sh --self-loop-scale 0.1``, as for any
  non-chain model.

The CE models are low-frame-rate BLSTMs (three input frames stacked per LSTM
step) so that they share the chain tree, transition model and frame rate of
the alignments the flat-start chain model makes.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("digits.ce")


@dataclass
class CeAlignConfig:
    beam: float = 10.0
    retry_beam: float = 40.0
    careful: bool = False
    num_jobs: int = 2               # ali.JOB.gz files (and threads)


def align_data_dir(am, data_dir, lang_dir, tree_dir, out_dir, cfg: CeAlignConfig,
                   acoustic_scale: float, self_loop_scale: float,
                   transition_scale: float = 1.0, cmvn: str = "speaker") -> dict:
    """Align every utterance of ``data_dir`` with ``am`` (an AcousticModel); write a
    Kaldi alignment dir. Returns a summary (utterances, failed, frames/s)."""
    from kbind.align import AlignOptions, ForcedAligner, write_alignments
    from kbind.chain.egs import FeatureSource
    from kbind.decode.acoustic import compute_loglikes
    from kbind.hmm import ContextDependency, TransitionModel
    from kbind.hmm.lang import Lang
    from train_ce import trans_model_file   # trainers/ is on sys.path (run.py)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tree_dir = Path(tree_dir)
    tm_file = trans_model_file(tree_dir)
    tm = TransitionModel.from_file(str(tm_file))
    tree = ContextDependency.from_file(str(tree_dir / "tree"))
    opts = AlignOptions(beam=cfg.beam, retry_beam=cfg.retry_beam, careful=cfg.careful,
                        acoustic_scale=acoustic_scale, transition_scale=transition_scale,
                        self_loop_scale=self_loop_scale)
    aligner = ForcedAligner(tm, tree, Lang.load(lang_dir), opts)
    feats = FeatureSource(data_dir, cmvn)
    t0 = time.time()
    loglikes = compute_loglikes(am, feats)
    t_nnet = time.time() - t0
    text = feats.data.text
    t0 = time.time()
    graphs = {u: aligner.compile(text[u].split()) for u in sorted(loglikes) if u in text}
    t_compile = time.time() - t0
    utts = sorted(graphs)
    t0 = time.time()
    results = aligner.align_many([(u, graphs[u], loglikes[u]) for u in utts],
                                 num_threads=cfg.num_jobs)
    t_align = time.time() - t0
    failed = [r.key for r in results if r.alignment is None]
    for r in results:
        if r.alignment is None:
            log.warning("%s: alignment failed (%s)", r.key, r.error)
    n = max(1, cfg.num_jobs)
    for j in range(n):
        part = [r for i, r in enumerate(results) if i % n == j]
        write_alignments(f"ark:|gzip -c > {out / f'ali.{j + 1}.gz'}", part)
    (out / "num_jobs").write_text(f"{n}\n")
    shutil.copy(tm_file, out / "final.mdl")
    shutil.copy(tree_dir / "tree", out / "tree")
    frames = sum(int(loglikes[u].shape[0]) for u in utts)
    summary = {"utterances": len(utts), "failed": len(failed),
               "retried": sum(1 for r in results if r.retried),
               "frames": frames, "nnet_seconds": round(t_nnet, 1),
               "compile_seconds": round(t_compile, 2), "align_seconds": round(t_align, 2),
               "align_frames_per_second": round(frames / max(t_align, 1e-9)),
               "avg_loglike_per_frame": sum(r.loglike for r in results if r.alignment
                                            is not None) / max(1, frames)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("aligned %d utterances (%d failed, %d retried) into %s: %d frames/s",
             len(utts), len(failed), summary["retried"], out,
             summary["align_frames_per_second"])
    return summary


def ce_decode_config(chain_decode_cfg, acwt: float = 0.3):
    """Decoding of a CE model: Kaldi's nnet3 scripts use --acwt 0.1 at 10 ms; the
    models here run at the chain frame rate (30 ms), so each frame stands for three
    and the acoustic weight is three times Kaldi's (0.3). The lattices are scaled
    by --post-decode-acwt 3.0 so that score.sh's LM-weight sweep (7..17) centres on
    that weight, as the chain recipes scale by 10 for their --acwt 1.0."""
    import dataclasses
    return dataclasses.replace(chain_decode_cfg, acoustic_scale=acwt,
                               post_decode_acwt=10.0 * acwt, beam=13.0)

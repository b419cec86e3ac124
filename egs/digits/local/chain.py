"""The chain (LF-MMI) stages of egs/digits: flat-start TDNN-F training.

What Kaldi's flat-start recipe (``local/chain/e2e/run_tdnn_flatstart.sh``)
does, without a GMM system:

* :func:`prepare_e2e` -- ``steps/nnet3/chain/e2e/prepare_e2e.sh --type biphone
  --shared-phones true``: the full left-biphone tree on ``data/lang_chain``
  (``ContextDependency.left_biphone`` with ``phones/sets.int`` shared; or
  ``--type mono``, a monophone tree, with ``tree_type="mono"``),
  ``0.trans_mdl``, each training utterance's training graph
  (``compile-train-graphs --transition-scale 0 --self-loop-scale 0`` with
  ``L.fst``, so optional silence between words is in the graph) as
  ``fst.{ark,scp}``; the phone LM from the transcripts
  (``steps/nnet3/chain/e2e/text_to_phones.py --between-silprob 0.1`` piped
  into ``chain-est-phone-lm --num-extra-lm-states 2000``); ``den.fst`` and
  ``normalization.fst`` (``chain-make-den-fst``).
* training: ``trainers/train_lfmmi.py`` with ``supervision=e2e``.
* :func:`make_chain_graph` -- ``data/lang_chain_test`` (lang_chain + G.fst) and
  ``utils/mkgraph.sh --self-loop-scale 1.0``.
* :func:`decode_chain` -- ``steps/nnet3/decode.sh --acwt 1.0 --post-decode-acwt
  10.0``: decode with acoustic scale 1.0, multiply the lattices' acoustic
  costs by 10 so the usual LM-weight sweep (7..17) applies, score.

``text_to_phones.py`` differences: Kaldi's script reads
``phones/align_lexicon.txt`` into a dict, so a word with several
pronunciations gets its *last* one; here the first is used (the recipe's
lexicon lists its preferred pronunciation first). Its random silence
insertion uses an explicit seed here.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import torch

log = logging.getLogger("digits.chain")


@dataclass
class ChainDecodeConfig:
    beam: float = 15.0               # steps/nnet3/decode.sh defaults
    lattice_beam: float = 8.0
    max_active: int = 7000
    min_active: int = 200
    acoustic_scale: float = 1.0      # --acwt 1.0
    post_decode_acwt: float = 10.0   # --post-decode-acwt 10.0
    num_workers: int = 2
    lmwt_min: int = 7
    lmwt_max: int = 17
    word_ins_penalty: List[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])
    sets: List[str] = field(default_factory=lambda: ["dev", "test"])


@dataclass
class ChainPrepConfig:
    tree_type: str = "mono"          # prepare_e2e.sh --type: mono | biphone (full left-biphone)
    edge_silprob: float = 0.8        # text_to_phones.py
    between_silprob: float = 0.1     # run_tdnn_flatstart.sh passes 0.1
    ngram_order: int = 4             # chain-est-phone-lm
    no_prune_ngram_order: int = 3
    num_extra_lm_states: int = 2000  # run_tdnn_flatstart.sh


# ---------------------------------------------------------------------------------------
# Flat-start preparation
# ---------------------------------------------------------------------------------------

def first_pronunciations(lang_dir) -> Dict[str, List[str]]:
    """word -> first pronunciation of ``phones/align_lexicon.txt``."""
    lex: Dict[str, List[str]] = {}
    for line in Path(lang_dir, "phones", "align_lexicon.txt").read_text().splitlines():
        f = line.split()
        if len(f) >= 3:
            lex.setdefault(f[0], f[2:])
    return lex


def text_to_phones(texts: Dict[str, List[str]], lang_dir, edge_silprob: float = 0.8,
                   between_silprob: float = 0.1, seed: int = 0) -> Dict[str, List[str]]:
    """``steps/nnet3/chain/e2e/text_to_phones.py``: each transcript as phones
    (first pronunciation of each word, OOVs as the OOV word's) with the
    optional silence inserted at random: at the start and end with
    ``edge_silprob``, between words with ``between_silprob``."""
    lex = first_pronunciations(lang_dir)
    sil = Path(lang_dir, "phones", "optional_silence.txt").read_text().split()[0]
    oov = Path(lang_dir, "oov.txt").read_text().split()[0]
    rng = random.Random(seed)
    out = {}
    for utt, words in texts.items():
        phones: List[str] = []
        if rng.random() < edge_silprob:
            phones.append(sil)
        for i, w in enumerate(words):
            phones += lex.get(w, lex[oov])
            p = between_silprob if i < len(words) - 1 else edge_silprob
            if rng.random() < p:
                phones.append(sil)
        out[utt] = phones
    return out


def prepare_e2e(data_dir, lang_dir, out_dir, cfg: ChainPrepConfig, seed: int = 0) -> dict:
    """Tree, transition model, phone LM, den/normalization FSTs and training
    graphs for flat-start chain training (see the module doc)."""
    from kbind.chain.den_fst import make_den_fst
    from kbind.chain.phone_lm import estimate_phone_lm
    from kbind.decode.scoring import read_text
    from kbind.hmm import ContextDependency, TransitionModel
    from kbind.hmm.graph_compiler import TrainingGraphCompiler
    from kbind.hmm.lang import Lang
    from kbind.io import write_table

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lang = Lang.load(lang_dir)
    topo = lang.topo
    t0 = time.time()
    if cfg.tree_type == "biphone":
        tree = ContextDependency.left_biphone(topo.phones, topo.phone_to_num_pdf_classes(),
                                              phone_sets=lang.sets)
    elif cfg.tree_type == "mono":
        tree = ContextDependency.monophone(topo.phones, topo.phone_to_num_pdf_classes(),
                                           phone_sets=lang.sets)
    else:
        raise ValueError(f"tree_type must be biphone or mono, got {cfg.tree_type!r}")
    tm = TransitionModel.build(topo, tree)
    tree.to_file(str(out / "tree"))
    tm.to_file(str(out / "0.trans_mdl"))
    log.info("%s tree: %d pdfs, %d transition-ids (%.1f s)", cfg.tree_type, tm.num_pdfs,
             tm.num_transition_ids, time.time() - t0)

    texts = read_text(Path(data_dir) / "text")
    phone_texts = text_to_phones(texts, lang_dir, cfg.edge_silprob, cfg.between_silprob, seed)
    with open(out / "phone_text.txt", "w") as f:
        for utt, ph in phone_texts.items():
            f.write(f"{utt} {' '.join(ph)}\n")
    seqs = [[lang.phones[p] for p in ph] for ph in phone_texts.values()]
    t0 = time.time()
    lm = estimate_phone_lm(seqs, cfg.ngram_order, cfg.no_prune_ngram_order,
                           cfg.num_extra_lm_states)
    lm.to_file(str(out / "phone_lm.fst"))
    den, norm = make_den_fst(tree, tm, lm)
    den.to_file(str(out / "den.fst"))
    norm.to_file(str(out / "normalization.fst"))
    log.info("phone LM: %d states, %d arcs; den.fst: %d states, %d arcs (%.1f s)",
             lm.num_states, lm.num_arcs, den.num_states, den.num_arcs, time.time() - t0)

    t0 = time.time()
    compiler = TrainingGraphCompiler(lang, tree, tm, transition_scale=0.0, self_loop_scale=0.0)
    failed = 0
    with write_table(f"ark,scp:{out}/fst.ark,{out}/fst.scp", kind="fst") as w:
        for utt, words in texts.items():
            try:
                w.write(utt, compiler.compile(lang.word_ids(words)))
            except ValueError as e:
                failed += 1
                log.warning("%s: no training graph (%s)", utt, e)
    log.info("training graphs for %d utterances (%d failed, %.1f s)", len(texts) - failed,
             failed, time.time() - t0)
    info = {"num_pdfs": tm.num_pdfs, "den_states": den.num_states, "den_arcs": den.num_arcs,
            "lm_states": lm.num_states, "utterances": len(texts) - failed}
    (out / "info.json").write_text(json.dumps(info, indent=2))
    return info


# ---------------------------------------------------------------------------------------
# Graph, decoding
# ---------------------------------------------------------------------------------------

def make_chain_graph(data_dir, tree_dir, graph_dir, self_loop_scale: float = 1.0) -> None:
    """``data/lang_chain_test`` (lang_chain + lang_test's G.fst) and HCLG with
    ``--self-loop-scale 1.0`` (chain models; 0.1 for CE models on the chain tree)."""
    from kbind.decode import make_hclg
    from kbind.hmm import ContextDependency, TransitionModel
    from kbind.hmm.lang import Lang
    from kbind.io.fst import Fst

    data = Path(data_dir)
    lang_test = data / "lang_chain_test"
    if lang_test.exists():
        shutil.rmtree(lang_test)
    shutil.copytree(data / "lang_chain", lang_test)
    shutil.copy(data / "lang_test" / "G.fst", lang_test / "G.fst")
    lang = Lang.load(lang_test)
    tree = ContextDependency.from_file(str(Path(tree_dir) / "tree"))
    tm = TransitionModel.from_file(str(Path(tree_dir) / "0.trans_mdl"))
    G = Fst.from_file(str(lang_test / "G.fst"))
    t0 = time.time()
    hclg = make_hclg(lang, G, tree, tm, self_loop_scale=self_loop_scale,
                     graph_dir=str(graph_dir))
    log.info("HCLG (self-loop-scale %g): %d states, %d arcs (%.1f s)", self_loop_scale,
             hclg.num_states, hclg.num_arcs, time.time() - t0)


def compute_loglikes(model, data_dir, cmvn: str = "speaker", norm_vars: bool = False,
                     max_frames_per_batch: int = 20000) -> Dict[str, torch.Tensor]:
    """Log-likelihoods of every utterance of ``data_dir``: the chain output of a
    chain model, or ``log_softmax - log prior`` of an
    :class:`kbind.decode.acoustic.AcousticModel` with priors (whole utterances
    with the model's context, edges padded by repetition)."""
    from kbind.chain.egs import FeatureSource
    from kbind.decode.acoustic import compute_loglikes as _compute
    return _compute(model, FeatureSource(data_dir, cmvn, norm_vars),
                    max_frames_per_batch=max_frames_per_batch)


def decode_chain(model, data_dir, graph_dir, tree_dir, decode_dir, cfg: ChainDecodeConfig,
                 cmvn: str = "speaker") -> dict:
    """Decode one data dir and score it (see the module doc)."""
    from kbind.decode import DecoderOptions, LatticeDecoder
    from kbind.decode.scoring import read_text, score_decode_dir
    from kbind.hmm import TransitionModel
    from kbind.io.fst import Fst

    out = Path(decode_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    loglikes = compute_loglikes(model, data_dir, cmvn)
    t_nnet = time.time() - t0
    tm = TransitionModel.from_file(str(Path(tree_dir) / "0.trans_mdl"))
    hclg = Fst.from_file(str(Path(graph_dir) / "HCLG.fst"))
    opts = DecoderOptions(beam=cfg.beam, lattice_beam=cfg.lattice_beam,
                          max_active=cfg.max_active, min_active=cfg.min_active,
                          acoustic_scale=cfg.acoustic_scale, determinize_lattice=True)
    utts = sorted(loglikes)
    t0 = time.time()
    with LatticeDecoder(hclg, tm, opts) as decoder:
        results = decoder.decode_batch({u: loglikes[u] for u in utts},
                                       num_workers=cfg.num_workers, on_error="none")
    t_dec = time.time() - t0
    # --post-decode-acwt: lattice-scale --acoustic-scale=10 on the (unscaled) lattices
    lattices = {u: r.compact_lattice.scale_lattice(1.0, cfg.post_decode_acwt)
                for u, r in zip(utts, results) if r is not None}
    from kbind.hmm.lang import SymbolTable
    words = {i: w for w, i in SymbolTable.read(Path(graph_dir) / "words.txt").items()}
    refs = read_text(Path(data_dir) / "text")
    res = score_decode_dir(out, lattices, refs, words,
                           lmwts=range(cfg.lmwt_min, cfg.lmwt_max + 1), wips=cfg.word_ins_penalty)
    best = res.best_wer_line()
    net = getattr(model, "model", model)
    frames = sum(int(x.shape[0]) for x in loglikes.values()) * net.frame_subsampling_factor
    summary = {"utterances": len(utts), "failed": len(utts) - len(lattices),
               "nnet_seconds": round(t_nnet, 1), "decode_seconds": round(t_dec, 1),
               "rtf": round((t_nnet + t_dec) / (frames / 100.0), 4), "best_wer": best,
               "best_wer_value": res.best_stats.wer}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary

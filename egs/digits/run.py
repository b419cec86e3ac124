#!/usr/bin/env python3
"""egs/digits: the default kbind recipe, end to end on a corpus made here.

Stages (``--stage N --stop_stage M`` to run a part; finished stages are
skipped when their outputs exist, ``--force true`` redoes them):

 0  corpus     synthesise the multi-voice digits/phrases corpus (local/make_corpus.py)
               as Kaldi data dirs data/{train,dev,test}
 1  features   fbank + per-speaker CMVN stats for every split (steps/make_fbank.sh)
 2  lang       CMU-dict lexicon, data/lang (3-state HMM topology) and data/lang_chain
               (chain 2-state topology), as utils/prepare_lang.sh
 3  lm         trigram ARPA from the training transcripts, G.fst (data/lang_test)
 4  graphs     monophone tree + transition model (exp/mono0), HCLG (exp/mono0/graph),
               training graphs for the test set (exp/mono0/fsts.test.{ark,scp})
 5  oracle     decode the test set with an oracle acoustic model (log-likelihoods that
               favour one path of each utterance's training graph) and score it: a WER near
               0 shows lexicon, graphs, decoder, lattices and scoring work end to end
 6  chain_prep flat-start chain prep (steps/nnet3/chain/e2e/prepare_e2e.sh): tree on
               data/lang_chain (monophone by default; --chain_prep.tree_type biphone for the
               full left-biphone tree of Kaldi's flat-start recipes, slower to train here),
               0.trans_mdl, training graphs, phone LM from the transcripts, den.fst +
               normalization.fst (exp/chain/e2e_tree)
 7  chain_train TDNN-F LF-MMI from scratch on whole utterances (trainers/train_lfmmi.py,
               exp/chain/tdnnf_e2e; resumes from its last checkpoint if interrupted)
 8  chain_graph data/lang_chain_test (+ G.fst) and HCLG with self-loop-scale 1.0
               (exp/chain/tdnnf_e2e/graph)
 9  chain_decode decode dev and test (--acwt 1.0 --post-decode-acwt 10.0), score with the
               LM-weight / insertion-penalty sweep, print the WERs
10  ce_align   align the training set with the flat-start chain model (steps/nnet3/align.sh:
               compile-train-graphs + align-compiled-mapped in C) into a Kaldi alignment dir
               (exp/ce/ali_chain)
11  ce_train   BLSTM with frame cross-entropy on those alignments (trainers/train_ce.py,
               exp/ce/blstm1; low frame rate: 3 frames stacked per step, chain tree)
12  ce_graph   HCLG for CE models (self-loop-scale 0.1, exp/ce/graph)
13  ce_decode  decode dev and test with blstm1 (log-posteriors minus log-priors, --acwt 0.1)
14  ce_realign realign the training set with blstm1 (exp/ce/ali_blstm1)
15  ce_train2  train a new BLSTM on the realignments (exp/ce/blstm2)
16  ce_decode2 decode dev and test with blstm2, print the WERs
17  chain_biphone stages 6-9 again with Kaldi's flat-start tree, the full left-biphone
               tree (exp/biphone/chain), and its WERs

Every artefact is a Kaldi file a Kaldi user could use in place of ours (and
the other way round). The config is saved as exp/config.yaml.

    python egs/digits/run.py [--corpus_size default|tiny|full] [--stage 0] [--help]
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "local"))

from kbind.config import parse_config, save_config  # noqa: E402
from kbind.data import FbankOptions, DataDir  # noqa: E402
from kbind.data.make_feats import make_features  # noqa: E402
from kbind.decode import DecoderOptions, LatticeDecoder, estimate_arpa, arpa_to_g, make_hclg  # noqa: E402
from kbind.decode.scoring import read_text, score_decode_dir  # noqa: E402
from kbind.hmm import ContextDependency, TransitionModel  # noqa: E402
from kbind.hmm.graph_compiler import TrainingGraphCompiler  # noqa: E402
from kbind.hmm.lang import Lang, prepare_lang  # noqa: E402
from kbind.hmm.lexicon import Lexicon  # noqa: E402
from kbind.io import RandomAccessTable, write_table  # noqa: E402
from kbind.io.fst import Fst  # noqa: E402
from kbind.chain.egs import EgsConfig  # noqa: E402
from kbind.nn import TdnnfConfig  # noqa: E402

sys.path.insert(0, str(HERE.parent.parent / "trainers"))
from train_lfmmi import TrainConfig, Trainer, load_model  # noqa: E402
from chain import ChainDecodeConfig, ChainPrepConfig  # noqa: E402
from ce import CeAlignConfig  # noqa: E402
from train_ce import CeModelConfig, CeTrainConfig  # noqa: E402
from kbind.data.frame_egs import FrameEgsConfig  # noqa: E402
from kbind.nn import BlstmConfig  # noqa: E402
from kbind.train import OptimConfig  # noqa: E402

log = logging.getLogger("digits")


@dataclass
class DecodeConfig:
    beam: float = 13.0             # Kaldi's latgen-faster defaults
    lattice_beam: float = 8.0
    max_active: int = 7000
    min_active: int = 200
    acoustic_scale: float = 0.1
    num_workers: int = 2           # utterances decoded in parallel
    determinize: bool = True       # lattice-determinize-pruned (else score raw lattices)
    lmwt_min: int = 7              # score.sh sweep
    lmwt_max: int = 17
    word_ins_penalty: list = field(default_factory=lambda: [0.0, 0.5, 1.0])


@dataclass
class RunConfig:
    """The digits recipe (see the module docstring for the stages)."""
    data: str = str(HERE / "data")
    exp: str = str(HERE / "exp")
    corpus_size: str = "default"   # tiny | default | full
    seed: int = 0
    jobs: int = 2                  # parallel processes/threads
    stage: int = 0
    stop_stage: int = 17
    force: bool = False
    lm_order: int = 3
    position_dependent_phones: bool = True
    oracle_margin: float = 5.0     # nats by which the oracle favours its path's pdf
    oracle_noise: float = 1.0      # std of Gaussian noise on every log-likelihood
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    chain_prep: ChainPrepConfig = field(default_factory=ChainPrepConfig)
    chain: TrainConfig = field(default_factory=lambda: chain_train_defaults())
    chain_decode: ChainDecodeConfig = field(default_factory=ChainDecodeConfig)
    ce_align: CeAlignConfig = field(default_factory=CeAlignConfig)
    ce: CeTrainConfig = field(default_factory=lambda: ce_train_defaults())


def chain_train_defaults() -> TrainConfig:
    """The digits TDNN-F, sized so the whole default run fits in 30 min on 2 CPU
    cores (training measured 6.6 min: 6 epochs of ~60 minibatches of 32
    utterances). ``num_threads=1``: on 2 busy shared cores one torch thread was
    5x faster than two (OpenMP oversubscription). dir/train_data/chain_dir are
    filled in from --data/--exp."""
    return TrainConfig(
        dir="", train_data="", chain_dir="", supervision="e2e",
        num_epochs=6, minibatches_per_iter=30, num_valid_utts=100,
        num_train_diagnostic_utts=100, diagnostic_interval=2, num_threads=1,
        model=TdnnfConfig(dim=256, bottleneck_dim=64, time_strides=[1, 1, 0, 3, 3, 3],
                          prefinal_dim=128, prefinal_big_dim=256),
        egs=EgsConfig(minibatch_size="32", e2e_batching="similar"),
        optim=OptimConfig(initial_effective_lrate=2e-3, final_effective_lrate=2e-4,
                          momentum=0.0))


def ce_train_defaults() -> CeTrainConfig:
    """The digits BLSTM: 2 bidirectional layers of 128 cells on 3 stacked frames
    (the chain frame rate), chunks of 150 input frames (50 labels) with 30 / 15
    frames of extra context, Adam, 3 epochs (sized for the 30-minute run on 2
    CPU cores; pykaldi2's 3x512 is the trainer's default).
    The CE objective is Kaldi's, summed over frames; Adam's steps do not depend
    on its scale (but for its epsilon), so these rates, and how often max-change
    acts on them, are what they were with a per-frame mean. SGD would take the trainer's defaults,
    Kaldi's train_rnn.py rates.
    dir/train_data/ali_dir come from --exp/--data."""
    return CeTrainConfig(
        dir="", train_data="", ali_dir="", num_epochs=3, minibatches_per_iter=30,
        num_valid_utts=100, num_train_diagnostic_utts=100, diagnostic_interval=4,
        num_threads=1,
        model=CeModelConfig(type="blstm", blstm=BlstmConfig(
            hidden_dim=128, num_layers=2, frame_subsampling_factor=3, dropout=0.1)),
        egs=FrameEgsConfig(chunk_width="150", extra_left_context=30, extra_right_context=15,
                           minibatch_size=32),
        optim=OptimConfig(optimizer="adam", initial_effective_lrate=2e-3,
                          final_effective_lrate=2e-4, max_param_change=2.0))


def stage_corpus(cfg: RunConfig) -> None:
    import make_corpus
    rc = make_corpus.main(["--out", cfg.data, "--size", cfg.corpus_size, "--seed",
                           str(cfg.seed), "--jobs", str(cfg.jobs)])
    if rc:
        raise SystemExit(f"corpus generation failed (exit {rc})")


def stage_features(cfg: RunConfig) -> None:
    for split in ("train", "dev", "test"):
        d = Path(cfg.data) / split
        if (d / "feats.scp").exists() and not cfg.force:
            log.info("features for %s exist", d)
            continue
        t0 = time.time()
        out = make_features(d, Path(cfg.data) / "fbank", FbankOptions(),
                            num_workers=cfg.jobs)
        log.info("fbank %s: %d utterances in %.1f s", split, len(out.utterances),
                 time.time() - t0)


def _vocab(cfg: RunConfig):
    return Path(cfg.data, "local", "vocab.txt").read_text().split()


def stage_lang(cfg: RunConfig) -> None:
    lex = Lexicon.from_cmudict(_vocab(cfg))
    dict_dir = Path(cfg.data) / "local" / "dict"
    for name, topo in (("lang", "hmm"), ("lang_chain", "chain")):
        prepare_lang(lex, Path(cfg.data) / name, oov_word="<unk>",
                     position_dependent_phones=cfg.position_dependent_phones,
                     topology=topo, dict_dir=dict_dir)
    log.info("lang dirs: %d words, %d phones", len(lex.words), len(lex.phones))


def stage_lm(cfg: RunConfig) -> None:
    lm_dir = Path(cfg.data) / "local" / "lm"
    lm_dir.mkdir(parents=True, exist_ok=True)
    text = Path(cfg.data, "local", "lm_train_text").read_text().splitlines()
    arpa = lm_dir / f"lm_{cfg.lm_order}gram.arpa"
    estimate_arpa(text, order=cfg.lm_order, out_arpa=str(arpa), vocab=_vocab(cfg))
    lang_test = Path(cfg.data) / "lang_test"
    _copy_dir(Path(cfg.data) / "lang", lang_test)
    G = arpa_to_g(str(arpa), str(lang_test / "words.txt"))
    G.to_file(str(lang_test / "G.fst"))
    log.info("G.fst: %d states, %d arcs", G.num_states, G.num_arcs)


def _copy_dir(src: Path, dst: Path) -> None:
    import shutil
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)


def _mono_model(cfg: RunConfig):
    lang = Lang.load(Path(cfg.data) / "lang_test")
    topo = lang.topo
    phones = topo.phones
    tree = ContextDependency.monophone(phones, topo.phone_to_num_pdf_classes(),
                                       phone_sets=lang.sets)
    tm = TransitionModel.build(topo, tree)
    return lang, tree, tm


def stage_graphs(cfg: RunConfig) -> None:
    exp = Path(cfg.exp) / "mono0"
    exp.mkdir(parents=True, exist_ok=True)
    lang, tree, tm = _mono_model(cfg)
    tree.to_file(str(exp / "tree"))
    tm.to_file(str(exp / "final.trans_mdl"))
    t0 = time.time()
    G = Fst.from_file(str(Path(cfg.data) / "lang_test" / "G.fst"))
    hclg = make_hclg(lang, G, tree, tm, self_loop_scale=0.1, graph_dir=str(exp / "graph"))
    log.info("HCLG: %d states, %d arcs (%.1f s)", hclg.num_states, hclg.num_arcs,
             time.time() - t0)
    compiler = TrainingGraphCompiler(lang, tree, tm)
    texts = read_text(Path(cfg.data) / "test" / "text")
    t0 = time.time()
    with write_table(f"ark,scp:{exp}/fsts.test.ark,{exp}/fsts.test.scp") as w:
        for utt, words in texts.items():
            w.write(utt, compiler.compile(lang.word_ids(words)))
    log.info("training graphs for %d test utterances (%.1f s)", len(texts), time.time() - t0)


def stage_oracle(cfg: RunConfig) -> dict:
    from oracle import cheapest_path_tids, oracle_loglikes, oracle_pdfs

    exp = Path(cfg.exp) / "mono0"
    out = exp / "decode_oracle_test"
    out.mkdir(parents=True, exist_ok=True)
    tm = TransitionModel.from_file(str(exp / "final.trans_mdl"))
    graphs = RandomAccessTable(f"scp:{exp}/fsts.test.scp", kind="fst")
    test = DataDir.load(Path(cfg.data) / "test")
    rng = np.random.default_rng(cfg.seed)
    utts, loglikes, skipped = [], [], []
    for utt in test.utterances:
        T = test.utt2num_frames[utt]
        pdfs = oracle_pdfs(cheapest_path_tids(graphs[utt]), tm, T)
        if pdfs is None:
            skipped.append(utt)
            continue
        utts.append(utt)
        loglikes.append(oracle_loglikes(pdfs, tm.num_pdfs, cfg.oracle_margin,
                                        cfg.oracle_noise, rng))
    if skipped:
        log.warning("oracle: %d utterances shorter than their path were skipped", len(skipped))
    d = cfg.decode
    opts = DecoderOptions(beam=d.beam, lattice_beam=d.lattice_beam, max_active=d.max_active,
                          min_active=d.min_active, acoustic_scale=d.acoustic_scale,
                          determinize_lattice=d.determinize)
    hclg = Fst.from_file(str(exp / "graph" / "HCLG.fst"))
    t0 = time.time()
    import torch
    with LatticeDecoder(hclg, tm, opts) as decoder:
        results = decoder.decode_batch(
            [(u, torch.from_numpy(x)) for u, x in zip(utts, loglikes)],
            num_workers=d.num_workers, on_error="none")
    dt = time.time() - t0
    frames = sum(len(x) for x in loglikes)
    lattices = {u: (r.compact_lattice if d.determinize else r.lattice.to_compact())
                for u, r in zip(utts, results) if r is not None}
    words = {i: w for w, i in Lang.load(Path(cfg.data) / "lang_test").words.items()}
    refs = read_text(Path(cfg.data) / "test" / "text")
    res = score_decode_dir(out, lattices, refs, words, lmwts=range(d.lmwt_min, d.lmwt_max + 1),
                           wips=d.word_ins_penalty)
    best = res.best_wer_line()
    summary = {"utterances": len(utts), "failed": len(utts) - len(lattices),
               "decode_seconds": round(dt, 1), "frames": frames,
               "rtf": round(dt / (frames / 100.0), 4), "best_wer": best}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _tree_dir(cfg: RunConfig) -> Path:
    return Path(cfg.exp) / "chain" / "e2e_tree"


def _chain_dir(cfg: RunConfig) -> Path:
    return Path(cfg.exp) / "chain" / "tdnnf_e2e"


def stage_chain_prep(cfg: RunConfig) -> dict:
    import chain
    info = _tree_dir(cfg) / "info.json"
    if info.exists() and (_tree_dir(cfg) / "fst.scp").exists() and not cfg.force:
        log.info("%s exists", _tree_dir(cfg))
        return json.loads(info.read_text())
    return chain.prepare_e2e(Path(cfg.data) / "train", Path(cfg.data) / "lang_chain",
                             _tree_dir(cfg), cfg.chain_prep, seed=cfg.seed)


def _train_config(cfg: RunConfig) -> TrainConfig:
    import dataclasses
    t = cfg.chain
    return dataclasses.replace(t, dir=t.dir or str(_chain_dir(cfg)),
                               train_data=t.train_data or str(Path(cfg.data) / "train"),
                               chain_dir=t.chain_dir or str(_tree_dir(cfg)),
                               seed=cfg.seed if t.seed == 0 else t.seed)


def stage_chain_train(cfg: RunConfig) -> dict:
    from kbind.train.logging import log_to_file
    tcfg = _train_config(cfg)
    with log_to_file("train_lfmmi", Path(tcfg.dir, "log", "train.log")):
        return Trainer(tcfg).train()


def stage_chain_graph(cfg: RunConfig) -> None:
    import chain
    if (_chain_dir(cfg) / "graph" / "HCLG.fst").exists() and not cfg.force:
        log.info("%s exists", _chain_dir(cfg) / "graph" / "HCLG.fst")
        return
    chain.make_chain_graph(cfg.data, _tree_dir(cfg), _chain_dir(cfg) / "graph")


def stage_chain_decode(cfg: RunConfig) -> dict:
    import chain
    tcfg = _train_config(cfg)
    model = load_model(tcfg.dir)
    if tcfg.num_threads > 0:
        import torch
        torch.set_num_threads(tcfg.num_threads)
    out = {}
    for split in cfg.chain_decode.sets:
        res = chain.decode_chain(model, Path(cfg.data) / split, _chain_dir(cfg) / "graph",
                                 _tree_dir(cfg), _chain_dir(cfg) / f"decode_{split}",
                                 cfg.chain_decode, cmvn=tcfg.egs.cmvn)
        log.info("decode %s: %s (nnet %.1f s, search %.1f s, RTF %.3f)", split,
                 res["best_wer"], res["nnet_seconds"], res["decode_seconds"], res["rtf"])
        out[split] = res
    return out


def _ce_dir(cfg: RunConfig) -> Path:
    return Path(cfg.exp) / "ce"


def _ce_align(cfg: RunConfig, am, out: Path, acoustic_scale: float,
              self_loop_scale: float) -> dict:
    import ce
    if (out / "summary.json").exists() and not cfg.force:
        log.info("%s exists", out)
        return json.loads((out / "summary.json").read_text())
    if cfg.chain.num_threads > 0:
        import torch
        torch.set_num_threads(cfg.chain.num_threads)
    return ce.align_data_dir(am, Path(cfg.data) / "train", Path(cfg.data) / "lang_chain",
                             _tree_dir(cfg), out, cfg.ce_align, acoustic_scale,
                             self_loop_scale, cmvn=cfg.chain.egs.cmvn)


def stage_ce_align(cfg: RunConfig) -> dict:
    from kbind.decode.acoustic import AcousticModel
    am = AcousticModel.load(_chain_dir(cfg))
    return _ce_align(cfg, am, _ce_dir(cfg) / "ali_chain", 1.0, 1.0)


def _ce_train(cfg: RunConfig, ali: str, name: str) -> dict:
    import dataclasses
    from train_ce import CeTrainer
    from kbind.train.logging import log_to_file
    tcfg = dataclasses.replace(cfg.ce, dir=str(_ce_dir(cfg) / name),
                               train_data=cfg.ce.train_data or str(Path(cfg.data) / "train"),
                               ali_dir=str(_ce_dir(cfg) / ali),
                               seed=cfg.seed if cfg.ce.seed == 0 else cfg.ce.seed)
    if (Path(tcfg.dir) / "final.pt").exists() and not cfg.force:
        log.info("%s exists", Path(tcfg.dir) / "final.pt")
        p = Path(tcfg.dir) / "progress.json"
        return {"epochs": json.loads(p.read_text()) if p.exists() else []}
    with log_to_file("train_ce", Path(tcfg.dir, "log", "train.log")):
        return CeTrainer(tcfg).train()


def stage_ce_train(cfg: RunConfig) -> dict:
    return _ce_train(cfg, "ali_chain", "blstm1")


def stage_ce_graph(cfg: RunConfig) -> None:
    import chain
    g = _ce_dir(cfg) / "graph"
    if (g / "HCLG.fst").exists() and not cfg.force:
        log.info("%s exists", g / "HCLG.fst")
        return
    chain.make_chain_graph(cfg.data, _tree_dir(cfg), g, self_loop_scale=0.1)


def _ce_decode(cfg: RunConfig, name: str) -> dict:
    import ce
    import chain
    import torch
    from kbind.decode.acoustic import AcousticModel
    am = AcousticModel.load(_ce_dir(cfg) / name)
    if cfg.ce.num_threads > 0:
        torch.set_num_threads(cfg.ce.num_threads)
    dcfg = ce.ce_decode_config(cfg.chain_decode)
    out = {}
    for split in dcfg.sets:
        res = chain.decode_chain(am, Path(cfg.data) / split, _ce_dir(cfg) / "graph",
                                 _tree_dir(cfg), _ce_dir(cfg) / name / f"decode_{split}",
                                 dcfg, cmvn=cfg.ce.egs.cmvn)
        log.info("decode %s with %s: %s (RTF %.3f)", split, name, res["best_wer"], res["rtf"])
        out[split] = res
    return out


def stage_ce_decode(cfg: RunConfig) -> dict:
    return _ce_decode(cfg, "blstm1")


def stage_ce_realign(cfg: RunConfig) -> dict:
    from kbind.decode.acoustic import AcousticModel
    am = AcousticModel.load(_ce_dir(cfg) / "blstm1")
    # CE scales (Kaldi: acoustic 0.1 at 10 ms; x3 at the 30 ms chain frame rate)
    return _ce_align(cfg, am, _ce_dir(cfg) / "ali_blstm1", 0.3, 0.1)


def stage_ce_train2(cfg: RunConfig) -> dict:
    return _ce_train(cfg, "ali_blstm1", "blstm2")


def stage_ce_decode2(cfg: RunConfig) -> dict:
    return _ce_decode(cfg, "blstm2")


def stage_chain_biphone(cfg: RunConfig) -> dict:
    """Stages 6-9 with ``--chain_prep.tree_type biphone`` under ``<exp>/biphone``."""
    import dataclasses
    bcfg = dataclasses.replace(cfg, exp=str(Path(cfg.exp) / "biphone"),
                               chain_prep=dataclasses.replace(cfg.chain_prep,
                                                              tree_type="biphone"))
    Path(bcfg.exp).mkdir(parents=True, exist_ok=True)
    info = stage_chain_prep(bcfg)
    progress = stage_chain_train(bcfg)
    stage_chain_graph(bcfg)
    return {"num_pdfs": info.get("num_pdfs"), "train": progress,
            "decode": stage_chain_decode(bcfg)}


STAGES = [("corpus", stage_corpus), ("features", stage_features), ("lang", stage_lang),
          ("lm", stage_lm), ("graphs", stage_graphs), ("oracle", stage_oracle),
          ("chain_prep", stage_chain_prep), ("chain_train", stage_chain_train),
          ("chain_graph", stage_chain_graph), ("chain_decode", stage_chain_decode),
          ("ce_align", stage_ce_align), ("ce_train", stage_ce_train),
          ("ce_graph", stage_ce_graph), ("ce_decode", stage_ce_decode),
          ("ce_realign", stage_ce_realign), ("ce_train2", stage_ce_train2),
          ("ce_decode2", stage_ce_decode2), ("chain_biphone", stage_chain_biphone)]


def main(argv=None) -> int:
    cfg = parse_config(RunConfig, argv, __doc__)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    Path(cfg.exp).mkdir(parents=True, exist_ok=True)
    save_config(cfg, Path(cfg.exp) / "config.yaml")
    t_all = time.time()
    timings = {}
    for i, (name, fn) in enumerate(STAGES):
        if not cfg.stage <= i <= cfg.stop_stage:
            continue
        t0 = time.time()
        log.info("stage %d: %s", i, name)
        result = fn(cfg)
        log.info("stage %d (%s) done in %.1f s", i, name, time.time() - t0)
        timings[name] = round(time.time() - t0, 1)
        if name == "oracle":
            print(f"digits test, oracle acoustic model, {result['utterances']} utterances, "
                  f"decoding RTF {result['rtf']}:")
            print(result["best_wer"])
        if name == "chain_train" and result:
            for rec in result.get("epochs", []):
                print(f"chain epoch {rec['epoch']}: train objf {rec['train_objf']:.4f} "
                      f"(xent {rec['train_xent']:.3f}), valid objf "
                      f"{rec.get('valid_objf', float('nan')):.4f} "
                      f"(xent {rec.get('valid_xent', float('nan')):.3f})")
        if name == "chain_decode":
            for split, res in result.items():
                print(f"digits {split}, chain TDNN-F (flat-start), {res['utterances']} "
                      f"utterances, RTF {res['rtf']}:")
                print(res["best_wer"])
        if name == "chain_biphone":
            for split, res in result["decode"].items():
                print(f"digits {split}, chain TDNN-F (flat-start, full biphone tree, "
                      f"{result['num_pdfs']} pdfs), {res['utterances']} utterances, "
                      f"RTF {res['rtf']}:")
                print(res["best_wer"])
        if name in ("ce_align", "ce_realign"):
            print(f"{name}: {result['utterances']} utterances aligned ({result['failed']} "
                  f"failed, {result['retried']} retried), "
                  f"{result['align_frames_per_second']} frames/s")
        if name in ("ce_train", "ce_train2") and result:
            for rec in result.get("epochs", []):
                print(f"{name} epoch {rec['epoch']}: train objf {rec['train_objf']:.4f} "
                      f"accuracy {rec['train_accuracy']:.3f}, valid objf "
                      f"{rec.get('valid_objf', float('nan')):.4f} accuracy "
                      f"{rec.get('valid_accuracy', float('nan')):.3f}")
        if name in ("ce_decode", "ce_decode2"):
            model = "blstm1 (chain alignments)" if name == "ce_decode" else \
                "blstm2 (realigned by blstm1)"
            for split, res in result.items():
                print(f"digits {split}, CE BLSTM {model}, {res['utterances']} utterances, "
                      f"RTF {res['rtf']}:")
                print(res["best_wer"])
    log.info("all stages done in %.1f s", time.time() - t_all)
    if timings:
        timings["total"] = round(time.time() - t_all, 1)
        log.info("stage times (s): %s", json.dumps(timings))
        (Path(cfg.exp) / "stage_times.json").write_text(json.dumps(timings, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

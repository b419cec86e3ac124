"""trainers/train_ce.py on a synthetic task whose labels are recoverable from the
features: CE learns them from a Kaldi alignment dir, resumes exactly, writes
priors that are the label counts, and the on-the-fly aligner (worker processes)
reproduces the in-process alignment of the same model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kbind.align import AlignmentDir, AlignOptions, ForcedAligner
from kbind.hmm import ali_to_pdf
from kbind.io import write_table
from tests.hmm.test_graph_compiler import models, toy_lang

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "trainers"))
import train_ce  # noqa: E402


def make_task(tmp_path, num_utts=40, seed=0):
    """Lang (x: AA, y: B IY; chain topology), monophone tree, a data dir whose
    features are a noisy one-hot of each frame's pdf under a random path of the
    utterance's training graph, and that path as a Kaldi alignment dir."""
    rng = np.random.default_rng(seed)
    lang = toy_lang(tmp_path, "chain")
    tree, tm = models(lang)
    D = tm.num_pdfs
    aligner = ForcedAligner(tm, tree, lang, AlignOptions(acoustic_scale=1.0,
                                                         self_loop_scale=1.0))
    data = tmp_path / "data"
    data.mkdir()
    feats, text, alis = {}, {}, {}
    for i in range(num_utts):
        utt = f"u{i:03d}"
        words = [["x", "y"][k] for k in rng.integers(0, 2, rng.integers(1, 4))]
        T = int(rng.integers(25, 50))
        # a random path: align random peaky scores (data generation only)
        g = aligner.compile(words)
        r = aligner.align(utt, g, torch.from_numpy(rng.normal(0, 3, (T, D)).astype(np.float32)))
        assert r.ok
        pdf = ali_to_pdf(tm, r.alignment)
        x = rng.normal(0, 0.3, (T, D + 2)).astype(np.float32)
        x[np.arange(T), pdf] += 1.5
        feats[utt], text[utt], alis[utt] = x, " ".join(words), r.alignment
    with write_table(f"ark,scp:{data}/feats.ark,{data}/feats.scp", "matrix") as w:
        for u in sorted(feats):
            w.write(u, feats[u])
    (data / "text").write_text("".join(f"{u} {text[u]}\n" for u in sorted(text)))
    (data / "utt2spk").write_text("".join(f"{u} {u}\n" for u in sorted(text)))
    (data / "spk2utt").write_text("".join(f"{u} {u}\n" for u in sorted(text)))
    ali_dir = tmp_path / "ali"
    AlignmentDir(ali_dir, tm, tree, alis, 2).write(ali_dir, 2)
    tree_dir = tmp_path / "tree_dir"
    tree_dir.mkdir()
    tree.to_file(str(tree_dir / "tree"))
    tm.to_file(str(tree_dir / "0.trans_mdl"))
    return dict(lang=lang, tree=tree, tm=tm, data=data, ali_dir=ali_dir, alis=alis,
                tree_dir=tree_dir)


def cfg_for(task, out, **kw):
    args = ["--train_data", str(task["data"]), "--dir", str(out), "--model.type", "tdnn",
            "--egs.chunk_width", "20", "--egs.minibatch_size", "8", "--egs.cmvn", "none",
            "--num_valid_utts", "8", "--num_train_diagnostic_utts", "8",
            "--minibatches_per_iter", "3", "--progress", "false", "--tensorboard", "false",
            "--optim.optimizer", "adam", "--optim.initial_effective_lrate", "0.01",
            "--optim.final_effective_lrate", "0.003", "--num_threads", "1"]
    for k, v in kw.items():
        args += [f"--{k}", str(v)]
    from kbind.config import parse_config
    cfg = parse_config(train_ce.CeTrainConfig, args)
    cfg.model.tdnn = _tdnn()
    return cfg


def _tdnn(**kw):
    from kbind.nn import TdnnConfig
    return TdnnConfig(dim=32, splices=[(-1, 0, 1), (-1, 0, 1)], frame_subsampling_factor=1,
                      xent_regularize=0.0, **kw)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return make_task(tmp_path_factory.mktemp("ce"))


@pytest.fixture(scope="module")
def trained(task, tmp_path_factory):
    out = tmp_path_factory.mktemp("ce_run") / "exp"
    cfg = cfg_for(task, out, ali_dir=task["ali_dir"], num_epochs=4)
    progress = train_ce.CeTrainer(cfg).train()
    return out, progress


def test_learns_labels_and_writes_priors(task, trained):
    out, progress = trained
    # chance is about 1 / num_pdfs; the features carry the label
    assert progress["epochs"][-1]["valid_accuracy"] > 0.9
    assert progress["epochs"][-1]["valid_objf"] > progress["epochs"][0]["valid_objf"] - 1e-6 \
        or progress["epochs"][0]["valid_accuracy"] > 0.9
    from kbind.decode.acoustic import AcousticModel
    from kbind.train.priors import read_counts
    am = AcousticModel.load(out)
    tm = task["tm"]
    # priors: counts of the training utterances' pdfs (recounted here from the alignments)
    trainer = train_ce.CeTrainer(cfg_for(task, out / "x", ali_dir=task["ali_dir"]))
    trainer.setup()
    expect = np.zeros(tm.num_pdfs)
    for u in trainer.train_utts:
        for p in ali_to_pdf(tm, task["alis"][u]):
            expect[p] += 1
    assert read_counts(out / "ali_train_pdf.counts").tolist() == expect.tolist()
    assert am.priors.counts.tolist() == expect.tolist()
    assert (out / "tree").exists() and (out / "final.trans_mdl").exists()


def test_resume_is_exact(task, tmp_path):
    full = train_ce.CeTrainer(cfg_for(task, tmp_path / "full", ali_dir=task["ali_dir"],
                                      num_epochs=2))
    full.train()
    part = tmp_path / "part"
    train_ce.CeTrainer(cfg_for(task, part, ali_dir=task["ali_dir"], num_epochs=2,
                               max_steps=4)).train()
    assert not (part / "final.pt").exists()
    resumed = train_ce.CeTrainer(cfg_for(task, part, ali_dir=task["ali_dir"], num_epochs=2))
    resumed.train()
    a = torch.load(tmp_path / "full" / "final.pt", weights_only=False)["model"]
    b = torch.load(part / "final.pt", weights_only=False)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_missing_labels_source_is_an_error(task, tmp_path):
    with pytest.raises(ValueError, match="no labels"):
        train_ce.CeTrainer(cfg_for(task, tmp_path / "x")).setup()


def test_on_the_fly_alignment_matches_in_process(task, trained, tmp_path):
    """Workers aligning with the trained model give the labels the in-process
    aligner gives with the same model, and those match the true path closely."""
    from kbind.chain.egs import FeatureSource
    from kbind.data.align_loader import AlignerSpec, OnTheFlyAligner, OnTheFlyConfig
    from kbind.data.frame_egs import FrameEgs, FrameEgsConfig
    from kbind.decode.acoustic import AcousticModel, compute_loglikes
    out, _ = trained
    am = AcousticModel.load(out)
    opts = dict(acoustic_scale=0.1, self_loop_scale=0.1, beam=10.0, retry_beam=40.0)
    spec = AlignerSpec(str(task["data"]), str(task["lang"].dir), str(task["tree_dir"] / "tree"),
                       str(task["tree_dir"] / "0.trans_mdl"), "none", False, opts)
    feats = FeatureSource(task["data"], "none")
    m = am.model
    egs = FrameEgs(feats, {u: None for u in feats.utterances}, m.left_context,
                   m.right_context, FrameEgsConfig(chunk_width="20", minibatch_size=8,
                                                   cmvn="none"), 1)
    with OnTheFlyAligner(spec, am, OnTheFlyConfig(num_workers=2, group_size=1,
                                                  prefetch=2)) as otf:
        n = sum(1 for _ in otf.batches(egs, epoch=0))
        assert n == len(egs.batches(0))
        got = dict(otf.labels)
    aligner = ForcedAligner(task["tm"], task["tree"], task["lang"], AlignOptions(**opts))
    ll = compute_loglikes(am, feats)
    text = feats.data.text
    agree = total = 0
    for u in feats.utterances:
        r = aligner.align(u, aligner.compile(text[u].split()), ll[u])
        expect = ali_to_pdf(task["tm"], r.alignment)
        assert got[u].tolist() == list(expect), u
        truth = ali_to_pdf(task["tm"], task["alis"][u])
        agree += int((np.asarray(expect) == truth).sum())
        total += len(truth)
    assert agree / total > 0.9


def test_on_the_fly_training_with_refresh(task, trained, tmp_path):
    out, _ = trained
    cfg = cfg_for(task, tmp_path / "otf", num_epochs=1, **{
        "align.model": out, "align.lang": task["lang"].dir, "align.tree_dir": task["tree_dir"],
        "align.refresh_every": 2, "align.num_workers": 1, "align.group_size": 1,
        "align.acoustic_scale": 0.1, "align.self_loop_scale": 0.1})
    progress = train_ce.CeTrainer(cfg).train()
    rec = progress["epochs"][-1]
    assert rec["align"]["groups"] > 0 and rec["align"]["failed"] == 0
    assert rec["valid_accuracy"] > 0.5
    assert (tmp_path / "otf" / "final.pt").exists()


_EXIT_SCRIPT = r"""
import sys
from kbind.data.align_loader import AlignerSpec, OnTheFlyAligner, OnTheFlyConfig
from kbind.decode.acoustic import AcousticModel


def main():
    out, data, lang, tree_dir = sys.argv[1:5]
    am = AcousticModel.load(out)
    opts = dict(acoustic_scale=0.1, self_loop_scale=0.1, beam=10.0, retry_beam=40.0)
    spec = AlignerSpec(data, lang, tree_dir + "/tree", tree_dir + "/0.trans_mdl", "none",
                       False, opts)
    otf = OnTheFlyAligner(spec, am, OnTheFlyConfig(num_workers=1, group_size=1, prefetch=1))
    for _ in range(40):   # model refreshes the worker never reads: more than a pipe holds
        otf.refresh(am)
    otf.close()
    print("closed", flush=True)


if __name__ == "__main__":
    main()
"""


def test_on_the_fly_aligner_process_exits_after_close(task, trained, tmp_path):
    """Refreshes a worker never read stay buffered in their queue; close() must
    not leave the process hanging at exit on them (it did: multiprocessing
    joined a feeder thread blocked on a full pipe)."""
    import os
    import subprocess

    out, _ = trained
    script = tmp_path / "otf_exit.py"
    script.write_text(_EXIT_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, str(script), str(out), str(task["data"]),
                        str(task["lang"].dir), str(task["tree_dir"])],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "closed" in r.stdout


class _Logits(torch.nn.Module):
    """A "network" whose output is a fixed logits tensor (for the objective alone)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(logits)

    def forward(self, x):
        from kbind.nn import ChainModelOutput
        return ChainModelOutput(self.logits, None)


def test_ce_objective_is_summed_over_frames():
    """Kaldi's CE objective is the sum of log p(label) over frames (its derivative
    w.r.t. the log-softmax output is the one-hot supervision): the gradient of the
    loss w.r.t. each labelled frame's logits is softmax - one-hot, not divided by
    the number of frames; unlabelled frames get none."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, generator=g)
    labels = torch.tensor([[1, 3, train_ce.IGNORE], [0, train_ce.IGNORE, 2]])
    net = _Logits(logits.clone())
    loss, logprob, correct, n = train_ce.ce_loss(net, torch.zeros(2, 3, 1), labels,
                                                 torch.tensor([3, 3]))
    loss.backward()
    expect = torch.softmax(logits, -1)
    lp = torch.log_softmax(logits, -1)
    total = 0.0
    for b in range(2):
        for t in range(3):
            if labels[b, t] == train_ce.IGNORE:
                expect[b, t] = 0.0
            else:
                expect[b, t, labels[b, t]] -= 1.0
                total += float(lp[b, t, labels[b, t]])
    torch.testing.assert_close(net.logits.grad, expect)
    assert n == 4 and logprob == pytest.approx(total) and loss.item() == pytest.approx(-total)


def test_ce_step_is_kaldis(task, tmp_path):
    """One CE step equals the hand-made Kaldi step on the first minibatch: SGD on
    the summed objective plus parameter L2 ``2 S l2 params`` (S = chunks in the
    minibatch), then batch-norm stats x0.8."""
    import copy
    cfg = cfg_for(task, tmp_path / "exp", ali_dir=task["ali_dir"], max_steps=1,
                  **{"optim.optimizer": "sgd", "optim.momentum": 0.0,
                     "optim.max_param_change": 0.0, "optim.initial_effective_lrate": 1e-3})
    cfg.model.tdnn = _tdnn(l2_regularize=0.01, output_l2_regularize=0.005, max_change=0.0,
                           output_max_change=0.0, natural_gradient=False)
    ref = train_ce.CeTrainer(cfg)
    ref.setup()
    model = copy.deepcopy(ref.model).train()
    feats, labels, lengths = ref.egs.collate(ref.egs.batches(0)[0])
    S = feats.shape[0]
    loss, *_ = train_ce.ce_loss(model, feats, labels, lengths)
    loss.backward()
    lr = ref.schedule.learning_rate(0)
    expect = {}
    for name, p in model.named_parameters():
        owner = model.get_submodule(name.rsplit(".", 1)[0])
        l2 = float(getattr(owner, "l2_regularize", 0.0))
        expect[name] = (p - lr * (p.grad + 2 * S * l2 * p)).detach()
    assert any(float(getattr(m, "l2_regularize", 0.0)) > 0 for m in model.modules())
    for name, buf in model.named_buffers():
        if name.endswith(("count", "stats_sum", "stats_sumsq")):
            expect[name] = 0.8 * buf
    trainer = train_ce.CeTrainer(cfg)
    trainer.train()
    got = trainer.model.state_dict()
    for name, want in expect.items():
        torch.testing.assert_close(got[name].to(want.dtype), want, rtol=1e-5, atol=1e-7,
                                   msg=name)


def _orthonormal_deviation(model):
    """Largest ``tr(P P^T) rows / tr(P)^2 - 1`` (``P = M M^T``, the eigenvalue
    spread of kbind.nn.orthonormal; 0 for a scaled semi-orthogonal M) over the
    constrained layers."""
    worst = 0.0
    for m in model.modules():
        if getattr(m, "orthonormal_constraint", 0.0):
            w = m.weight.detach().double()
            P = w @ w.t() if w.shape[0] <= w.shape[1] else w.t() @ w
            worst = max(worst, float((P * P).sum() * P.shape[0] / torch.trace(P) ** 2) - 1)
    return worst


def test_ce_tdnnf_keeps_its_semi_orthogonal_constraint(task, tmp_path):
    from kbind.nn import TdnnfConfig
    dev = {}
    for on in (True, False):
        cfg = cfg_for(task, tmp_path / str(on), ali_dir=task["ali_dir"], num_epochs=12,
                      **{"model.type": "tdnnf", "optim.orthonormal_constraint": on})
        cfg.model.tdnnf = TdnnfConfig(dim=16, bottleneck_dim=4, time_strides=[1, 0, 1],
                                      prefinal_dim=8, prefinal_big_dim=16,
                                      frame_subsampling_factor=1, xent_regularize=0.0)
        tr = train_ce.CeTrainer(cfg)
        tr.train()
        dev[on] = _orthonormal_deviation(tr.model)
    assert dev[True] < 0.02 and dev[False] > 0.1, dev


def test_ce_rejects_an_xent_head(task, tmp_path):
    cfg = cfg_for(task, tmp_path / "x", ali_dir=task["ali_dir"])
    cfg.model.tdnn = _tdnn()
    cfg.model.tdnn.xent_regularize = 0.1
    with pytest.raises(ValueError, match="xent_regularize"):
        train_ce.CeTrainer(cfg).setup()

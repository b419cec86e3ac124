"""trainers/train_lfmmi.py on tiny random data with Kaldi's tiny den graph
(5 phones, 10 pdfs): a 2-step smoke test for flat-start and alignment
supervision, a Kaldi chain dir with ``ali.1.gz``, and exact resumption."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kbind.chain.egs import EgsConfig
from kbind.nn import TdnnfConfig
from tests.train import (make_chain_dir, make_data_dir, sample_phone_ali_from_den,
                         write_e2e_graphs,
                         write_kaldi_alignments, write_phone_ali)

REPO = Path(__file__).resolve().parents[2]


def _trainer_module():
    spec = importlib.util.spec_from_file_location("train_lfmmi",
                                                  REPO / "trainers" / "train_lfmmi.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("train_lfmmi", mod)
    spec.loader.exec_module(mod)
    return mod


tl = _trainer_module()


def _setup(tmp_path, supervision="alignment", kaldi_ali=False, n_utts=12):
    chain = make_chain_dir(tmp_path / "chain")
    lengths = {f"spk{i % 3}-u{i:02d}": 0 for i in range(n_utts)}
    ali = sample_phone_ali_from_den(chain, sorted(lengths), seed=1)
    for u, items in ali.items():
        lengths[u] = sum(d for _, d in items)
    data = make_data_dir(tmp_path / "data", lengths, dim=6, ramp=False)
    if supervision == "e2e":
        write_e2e_graphs(chain, {u: [p for p, _ in items] for u, items in ali.items()})
    elif kaldi_ali:
        write_kaldi_alignments(chain, ali)
    else:
        write_phone_ali(chain / "phone_ali.txt", ali)
    return data, chain, ali


def _config(tmp_path, data, chain, supervision, **kw):
    cfg = tl.TrainConfig(
        dir=str(tmp_path / "exp"), train_data=str(data), chain_dir=str(chain),
        supervision=supervision, num_valid_utts=2, num_train_diagnostic_utts=2, num_epochs=2,
        minibatches_per_iter=2, print_interval=1, progress=False, tensorboard=False,
        num_threads=1,
        model=TdnnfConfig(dim=16, bottleneck_dim=4, time_strides=[1, 0, 3], prefinal_dim=8,
                          prefinal_big_dim=16),
        egs=EgsConfig(chunk_width="30,21", minibatch_size="3", cmvn="speaker"),
        optim=tl.OptimConfig(initial_effective_lrate=1e-2, final_effective_lrate=1e-3,
                             momentum=0.5, dropout_schedule="0,0.2@0.5,0"))
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("supervision,kaldi_ali", [("alignment", False), ("alignment", True),
                                                   ("e2e", False)])
def test_two_step_smoke(tmp_path, supervision, kaldi_ali):
    data, chain, _ = _setup(tmp_path, supervision, kaldi_ali)
    cfg = _config(tmp_path, data, chain, supervision, max_steps=2)
    tr = tl.Trainer(cfg)
    tr.setup()
    before = _params(tr.model)
    tr2 = tl.Trainer(cfg)
    tr2.train()
    after = _params(tr2.model)
    assert any(not torch.equal(before[k], after[k]) for k in before)   # it learned something
    assert all(torch.isfinite(v).all() for v in after.values())
    ckpt = sorted((tmp_path / "exp").glob("ckpt-*.pt"))
    assert [p.name for p in ckpt] == ["ckpt-2.pt"]
    lines = (tmp_path / "exp" / "metrics.jsonl").read_text().splitlines()
    assert lines and all("tag" in json.loads(ln) for ln in lines)
    assert (tmp_path / "exp" / "config.yaml").exists()


def test_kaldi_alignments_to_phones(tmp_path):
    _, chain, ali = _setup(tmp_path, "alignment", kaldi_ali=True)
    got = tl.read_phone_alignments(chain, fallback_model=tl.load_chain_dir(chain).trans_model)
    assert got == ali


def test_full_run_and_objf_improves(tmp_path):
    data, chain, _ = _setup(tmp_path, "alignment", n_utts=15)
    cfg = _config(tmp_path, data, chain, "alignment", num_epochs=4)
    progress = tl.Trainer(cfg).train()
    epochs = progress["epochs"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2, 3]
    assert all(np.isfinite(e["train_objf"]) and np.isfinite(e["valid_objf"]) for e in epochs)
    assert epochs[-1]["train_objf"] > epochs[0]["train_objf"]
    assert (tmp_path / "exp" / "final.pt").exists()
    log = (tmp_path / "exp" / "progress.json").read_text()
    assert "valid_objf" in log
    model = tl.load_model(tmp_path / "exp")
    assert not model.training


@pytest.mark.parametrize("stop_at", [3, 4])
def test_resume_is_exact(tmp_path, stop_at):
    """Train N steps; vs. train k, stop, resume, train N-k: identical parameters."""
    data, chain, _ = _setup(tmp_path, "alignment")
    n = 7
    a = _config(tmp_path / "a", data, chain, "alignment", max_steps=n)
    ta = tl.Trainer(a)
    ta.train()
    b = _config(tmp_path / "b", data, chain, "alignment", max_steps=stop_at)
    tl.Trainer(b).train()
    b.max_steps = n
    tb = tl.Trainer(b)
    tb.train()
    pa, pb = _params(ta.model), _params(tb.model)
    assert pa.keys() == pb.keys()
    assert any(k.endswith("preconditioner_in.W") for k in pa)     # NG state resumed too
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k
    sa, sb = ta.optimizer.state_dict()["state"], tb.optimizer.state_dict()["state"]
    for k in sa:
        assert torch.equal(sa[k]["momentum_buffer"], sb[k]["momentum_buffer"])


@pytest.mark.parametrize("natural_gradient", [True, False])
def test_natural_gradient_switch(tmp_path, natural_gradient):
    """NG-SGD is the default; --model.natural_gradient false trains with plain gradients."""
    assert tl.TrainConfig().model.natural_gradient is True
    data, chain, _ = _setup(tmp_path, "alignment")
    cfg = _config(tmp_path, data, chain, "alignment", max_steps=3)
    cfg.model.natural_gradient = natural_gradient
    tr = tl.Trainer(cfg)
    tr.train()
    counters = [int(m.t) for m in tr.model.modules() if type(m).__name__ == "OnlineNaturalGradient"]
    assert counters
    # 3 minibatches: every preconditioner was called 3 times, or never
    assert set(counters) == ({3} if natural_gradient else {0})
    ck = torch.load(sorted((tmp_path / "exp").glob("ckpt-*.pt"))[-1], weights_only=False)
    ts = [int(v) for k, v in ck["model"].items() if k.endswith("preconditioner_out.t")]
    assert set(ts) == ({3} if natural_gradient else {0})


def test_xent_regularize_is_one_key(tmp_path):
    """The xent regulariser's weight in the loss and the xent output's learning-rate
    factor 0.5 / xent_regularize come from the one key --model.xent_regularize."""
    from kbind.config import ConfigError, parse_config
    data, chain, _ = _setup(tmp_path, "alignment")
    args = ["--dir", str(tmp_path / "exp"), "--train_data", str(data), "--chain_dir",
            str(chain), "--supervision", "alignment", "--num_valid_utts", "2",
            "--egs.chunk_width", "30,21", "--egs.minibatch_size", "3",
            "--model.xent_regularize", "0.25"]
    tr = tl.Trainer(parse_config(tl.TrainConfig, args))
    tr.setup()
    assert tr.loss_fn.xent_regularize == 0.25
    (group,) = [g for g in tr.optimizer.param_groups if g["name"] == "output_xent.affine"]
    assert group["learning_rate_factor"] == pytest.approx(0.5 / 0.25)
    with pytest.raises(ConfigError):
        parse_config(tl.TrainConfig, args + ["--loss.xent_regularize", "0.1"])

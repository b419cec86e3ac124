"""The held-out (valid) and train-diagnostic utterances (one draw for every
trainer) and the compute_prob mode."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from kbind.train.diagnostics import evaluating, split_held_out
from tests.train import (make_chain_dir, make_data_dir, sample_phone_ali_from_den,
                         write_kaldi_alignments, write_phone_ali)
from tests.train.test_train_lfmmi import _config, tl

REPO = Path(__file__).resolve().parents[2]
UTTS = [f"spk{i % 3}-u{i:02d}" for i in range(30)]


def test_split_depends_on_the_set_and_seed_only():
    a = split_held_out(UTTS, 4, 3, seed=5)
    assert a == split_held_out(reversed(UTTS), 4, 3, seed=5)
    assert len(a.valid) == 4 and not set(a.valid) & set(a.train)
    assert sorted(a.valid + a.train) == sorted(UTTS)
    assert len(a.train_diagnostic) == 3 and set(a.train_diagnostic) <= set(a.train)
    assert split_held_out(UTTS, 4, 3, seed=6).valid != a.valid
    assert len(split_held_out(UTTS, 100, 3, seed=5).valid) == 6      # a fifth at most


def test_utterances_without_labels_do_not_move_the_draw():
    a = split_held_out(UTTS, 6, 3, seed=1)
    drop = {a.valid[0], a.train[0]}
    b = split_held_out(UTTS, 6, 3, seed=1, usable=lambda u: u not in drop)
    assert b.valid == [u for u in a.valid if u not in drop]
    assert b.train == [u for u in a.train if u not in drop]


def test_ce_and_lfmmi_hold_out_the_same_utterances(tmp_path):
    """Same data dir and seed: the CE trainer (whose alignment dir lacks some
    utterances, as after failed alignments) and the LF-MMI trainer hold out the
    same utterances."""
    pytest.importorskip("kaldi_decoder")
    sys.path.insert(0, str(REPO / "trainers"))
    import train_ce
    from kbind.config import parse_config
    from kbind.nn import TdnnConfig
    chain = make_chain_dir(tmp_path / "chain")
    ali = sample_phone_ali_from_den(chain, UTTS, seed=1)
    data = make_data_dir(tmp_path / "data", {u: sum(d for _, d in ali[u]) for u in UTTS}, dim=6)
    write_phone_ali(chain / "phone_ali.txt", ali)
    ali_dir = tmp_path / "ali"
    ali_dir.mkdir()
    for name in ("tree", "0.trans_mdl"):
        shutil.copy(chain / name, ali_dir / name)
    shutil.copy(chain / "0.trans_mdl", ali_dir / "final.mdl")
    missing = set(UTTS[::4])
    write_kaldi_alignments(ali_dir, {u: a for u, a in ali.items() if u not in missing})

    lfmmi = tl.Trainer(_config(tmp_path / "lfmmi", data, chain, "alignment",
                               num_valid_utts=5, num_train_diagnostic_utts=3))
    lfmmi.setup()
    cfg = parse_config(train_ce.CeTrainConfig, [
        "--train_data", str(data), "--ali_dir", str(ali_dir), "--dir", str(tmp_path / "ce"),
        "--model.type", "tdnn", "--num_valid_utts", "5", "--num_train_diagnostic_utts", "3",
        "--egs.chunk_width", "20"])
    cfg.model.tdnn = TdnnConfig(dim=8, splices=[[0]], frame_subsampling_factor=1,
                                xent_regularize=0.0)
    ce = train_ce.CeTrainer(cfg)
    ce.setup()
    valid, train = lfmmi.valid_egs.utterances, lfmmi.egs.utterances
    assert len(valid) == 5
    assert ce.valid_utts == [u for u in valid if u not in missing]
    assert ce.train_utts == [u for u in train if u not in missing]


def test_evaluating_restores_the_mode_it_found():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    for training in (True, False):
        model.train(training)
        with pytest.raises(RuntimeError), evaluating(model):
            assert not model.training and not torch.is_grad_enabled()
            raise RuntimeError
        assert model.training == training and torch.is_grad_enabled()

"""Atomic checkpoints and RNG capture."""

from __future__ import annotations

import random

import numpy as np
import torch

from kbind.train import (atomic_save, capture_rng_state, latest_checkpoint, load_checkpoint,
                         restore_rng_state, save_checkpoint)


def test_atomic_save_leaves_no_temp(tmp_path):
    atomic_save({"a": 1}, tmp_path / "x.pt")
    atomic_save({"a": 2}, tmp_path / "x.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]
    assert torch.load(tmp_path / "x.pt")["a"] == 2


def test_failed_save_keeps_old_file(tmp_path):
    atomic_save({"a": 1}, tmp_path / "x.pt")

    class Bad:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    try:
        atomic_save({"a": Bad()}, tmp_path / "x.pt")
    except RuntimeError:
        pass
    assert torch.load(tmp_path / "x.pt")["a"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def test_rng_roundtrip():
    r = random.Random(5)
    st = capture_rng_state(mine=r)
    a = (random.random(), np.random.rand(), torch.rand(1).item(), r.random())
    random.seed(99), np.random.seed(99), torch.manual_seed(99), r.seed(99)
    restore_rng_state(st, mine=r)
    b = (random.random(), np.random.rand(), torch.rand(1).item(), r.random())
    assert a == b


def test_checkpoint_contents(tmp_path):
    m = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    m(torch.ones(1, 3)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "ckpt-7.pt", model=m, optimizer=opt,
                    position={"step": 7, "epoch": 1, "index": 2})
    save_checkpoint(tmp_path / "ckpt-12.pt", model=m, optimizer=opt, position={"step": 12})
    assert latest_checkpoint(tmp_path).name == "ckpt-12.pt"
    ck = load_checkpoint(tmp_path / "ckpt-7.pt")
    assert ck["position"] == {"step": 7, "epoch": 1, "index": 2}
    m2 = torch.nn.Linear(3, 2)
    m2.load_state_dict(ck["model"])
    assert torch.equal(m2.weight, m.weight)
    opt2 = torch.optim.SGD(m2.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(ck["optimizer"])
    assert torch.equal(opt2.state[m2.weight]["momentum_buffer"],
                       opt.state[m.weight]["momentum_buffer"])
    assert latest_checkpoint(tmp_path / "none") is None

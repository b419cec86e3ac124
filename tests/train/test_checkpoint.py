"""Atomic checkpoints and RNG capture."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from kbind.train import (atomic_save, capture_rng_state, latest_checkpoint, load_checkpoint,
                         locate_step, restore_rng_state, resume_training, save_checkpoint,
                         save_training_checkpoint)


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


def test_locate_step():
    sizes = [3, 2, 4]
    got = [locate_step(s, sizes) for s in range(10)]
    assert got == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (2, 3),
                   (3, 0)]


def test_training_checkpoints_prune_and_resume(tmp_path):
    """The newest ``keep`` by step number stay; resuming loads the highest one
    (model, optimizer, named generators) and refuses a run of another length."""
    m = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    r = random.Random(3)
    saved = {}
    for step in (2, 10, 4, 7):
        m(torch.ones(1, 3)).sum().backward()
        opt.step()
        save_training_checkpoint(tmp_path, step, [5, 5], keep=2, model=m, optimizer=opt,
                                 num_iters=4, rng=capture_rng_state(mine=r),
                                 extra={"step": step})
        saved[step] = (m.weight.detach().clone(),
                       opt.state[m.weight]["momentum_buffer"].clone(), r.random())
    (tmp_path / "ckpt-x.pt").write_text("not a checkpoint")
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.pt")) == ["ckpt-10.pt", "ckpt-7.pt",
                                                                   "ckpt-x.pt"]
    assert load_checkpoint(tmp_path / "ckpt-7.pt")["position"] == {"step": 7, "epoch": 1,
                                                                    "index": 2}
    m2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.SGD(m2.parameters(), lr=0.1, momentum=0.9)
    r2 = random.Random(99)
    ck = resume_training(tmp_path, model=m2, optimizer=opt2, num_iters=4, mine=r2)
    assert ck["extra"] == {"step": 10} and ck["position"] == {"step": 10, "epoch": 2,
                                                              "index": 0}
    weight, momentum, draw = saved[10]
    assert torch.equal(m2.weight, weight)
    assert torch.equal(opt2.state[m2.weight]["momentum_buffer"], momentum)
    assert r2.random() == draw
    assert resume_training(tmp_path / "none", model=m2, optimizer=opt2, num_iters=4) is None
    with pytest.raises(ValueError, match="run of 4 iterations, this one has 5"):
        resume_training(tmp_path, model=m2, optimizer=opt2, num_iters=5)

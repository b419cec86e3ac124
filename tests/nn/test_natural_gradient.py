"""NaturalGradientLinear / NG-SGD TDNN layers: Kaldi's
NaturalGradientAffineComponent fixture, the plain path, TDNN splicing,
checkpoints, switching, and DDP (gloo, 2 processes)."""

from __future__ import annotations

import copy
import json
import os
import socket

import numpy as np
import pytest
import torch

from kbind.nn import (TDNNF, NaturalGradientLinear, TdnnAffine, TdnnfConfig, kaldi_ng_ranks,
                      set_natural_gradient)
from kbind.optim import OnlineNaturalGradient


def _rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def test_kaldi_natural_gradient_affine_component(kaldi_chain_dir):
    case = kaldi_chain_dir / "ngaffine_N64_I40_O100"
    meta = json.loads((case / "case.json").read_text())
    o = meta["options"]
    load = lambda n: np.load(case / f"{n}.npy")  # noqa: E731
    x, g = load("in_value"), load("out_deriv")
    K, N, I = x.shape
    O = g.shape[2]
    layer = NaturalGradientLinear(I, O, rank_in=o["rank_in"], rank_out=o["rank_out"],
                                  update_period=o["update_period"],
                                  num_samples_history=o["num_samples_history"],
                                  alpha_in=o["alpha"], alpha_out=o["alpha"])
    # the two stand-alone preconditioners of the fixture
    pin = OnlineNaturalGradient(o["rank_in"], o["update_period"], o["num_samples_history"],
                                o["alpha"])
    pout = OnlineNaturalGradient(o["rank_out"], o["update_period"], o["num_samples_history"],
                                 o["alpha"])
    in_p, out_p = load("in_preconditioned"), load("out_preconditioned")
    in_s, out_s = load("in_scale"), load("out_scale")
    lin, bias = load("linear_delta"), load("bias_delta")
    for k in range(K):
        xk, gk = torch.from_numpy(x[k]), torch.from_numpy(g[k])
        xin = torch.cat([xk, torch.ones(N, 1)], 1)
        xh, si = pin.precondition_directions(xin)
        gh, so = pout.precondition_directions(gk)
        assert _rel(xh.numpy() * float(si), in_p[k] * in_s[k]) <= 1e-4
        assert _rel(gh.numpy() * float(so), out_p[k] * out_s[k]) <= 1e-4
        assert float(si) == pytest.approx(in_s[k], rel=1e-4)
        assert float(so) == pytest.approx(out_s[k], rel=1e-4)
        # the layer: Kaldi's derivative g is d objf / dy; a minimised loss has -g
        layer.zero_grad()
        (-(layer(xk) * gk).sum()).backward()
        # learning rate 1: Kaldi's delta = -grad
        assert _rel(-layer.weight.grad.numpy(), lin[k]) <= 1e-4, k
        assert _rel(-layer.bias.grad.numpy(), bias[k]) <= 1e-4, k
        assert float(layer.preconditioner_in.rho) == float(pin.rho)


def test_kaldi_default_ranks():
    assert kaldi_ng_ranks(40, 100) == (20, 50)
    assert kaldi_ng_ranks(3072, 160) == (20, 80)
    assert kaldi_ng_ranks(5, 3) == (3, 2)
    # TDNN-F factors at Kaldi's 1536/160: preconditioned dims incl. the ones column
    lin = TdnnAffine(1536, 160, (-1, 0), bias=False)
    aff = TdnnAffine(160, 1536, (0, 1))
    assert (lin.preconditioner_in.dim, lin.preconditioner_in.rank) == (3072, 20)
    assert (lin.preconditioner_out.dim, lin.preconditioner_out.rank) == (160, 80)
    assert (aff.preconditioner_in.dim, aff.preconditioner_in.rank) == (321, 20)
    assert (aff.preconditioner_out.dim, aff.preconditioner_out.rank) == (1536, 80)
    assert lin.preconditioner_in.update_period == 4
    # rank >= dim is clipped to dim - 1 (Kaldi warns)
    assert NaturalGradientLinear(1, 2).preconditioner_out.rank == 1


def test_plain_path_when_off_eval_or_no_grad():
    torch.manual_seed(0)
    layer = NaturalGradientLinear(6, 4)
    ref = torch.nn.Linear(6, 4)
    ref.load_state_dict({"weight": layer.weight.detach(), "bias": layer.bias.detach()})
    x = torch.randn(10, 6)
    layer.natural_gradient = False
    layer(x).square().sum().backward()
    ref(x).square().sum().backward()
    assert torch.equal(layer.weight.grad, ref.weight.grad)
    assert torch.equal(layer.bias.grad, ref.bias.grad)
    assert int(layer.preconditioner_in.t) == 0
    layer.natural_gradient = True
    layer.eval()
    layer.zero_grad()
    layer(x).square().sum().backward()
    assert torch.equal(layer.weight.grad, ref.weight.grad)
    assert int(layer.preconditioner_in.t) == 0


def test_input_gradient_is_plain_and_state_only_moves_when_weights_need_it():
    torch.manual_seed(1)
    layer = NaturalGradientLinear(7, 5)
    x = torch.randn(3, 4, 7, requires_grad=True)     # leading dims are rows
    y = layer(x)
    gy = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, gy, retain_graph=True)
    torch.testing.assert_close(gx, gy @ layer.weight.detach())
    assert int(layer.preconditioner_in.t) == 0      # weights not asked for
    y.backward(gy)
    assert int(layer.preconditioner_in.t) == int(layer.preconditioner_out.t) == 1
    torch.testing.assert_close(x.grad, gx)
    # the weight gradient is the preconditioned one of the flattened rows
    pin, pout = OnlineNaturalGradient(4, 4, dim=8), OnlineNaturalGradient(3, 4, dim=5)
    X = torch.cat([x.detach().reshape(12, 7), torch.ones(12, 1)], 1)
    xh, si = pin.precondition_directions(X)
    gh, so = pout.precondition_directions(gy.reshape(12, 5))
    torch.testing.assert_close(layer.weight.grad, si * so * gh.t() @ xh[:, :7])
    torch.testing.assert_close(layer.bias.grad, si * so * gh.t() @ xh[:, 7])


def test_no_bias_linear_component():
    torch.manual_seed(2)
    layer = NaturalGradientLinear(6, 3, bias=False)
    assert layer.preconditioner_in.dim == 6
    x, gy = torch.randn(20, 6), torch.randn(20, 3)
    layer(x).backward(gy)
    pin, pout = OnlineNaturalGradient(3, 4), OnlineNaturalGradient(2, 4)
    xh, si = pin.precondition_directions(x)
    gh, so = pout.precondition_directions(gy)
    torch.testing.assert_close(layer.weight.grad, si * so * gh.t() @ xh)


def test_tdnn_affine_preconditions_the_spliced_input():
    torch.manual_seed(3)
    layer = TdnnAffine(4, 5, (-1, 0, 2))
    x = torch.randn(2, 9, 4)
    y = layer(x)                                     # outputs at t = 1..6
    gy = torch.randn_like(y)
    y.backward(gy)
    spliced = torch.cat([x[:, 0:6], x[:, 1:7], x[:, 3:9]], -1).reshape(-1, 12)
    pin = OnlineNaturalGradient(*kaldi_ng_ranks(12, 5)[:1], update_period=4)
    pout = OnlineNaturalGradient(kaldi_ng_ranks(12, 5)[1], update_period=4)
    xh, si = pin.precondition_directions(torch.cat([spliced, torch.ones(12, 1)], 1))
    gh, so = pout.precondition_directions(gy.reshape(-1, 5))
    torch.testing.assert_close(layer.weight.grad, si * so * gh.t() @ xh[:, :12])
    torch.testing.assert_close(layer.bias.grad, si * so * gh.t() @ xh[:, 12])


def _tiny_tdnnf(ng=True):
    torch.manual_seed(4)
    model = TDNNF(6, 7, TdnnfConfig(dim=12, bottleneck_dim=4, time_strides=[1, 3],
                                    prefinal_dim=6, prefinal_big_dim=12, natural_gradient=ng))
    with torch.no_grad():       # Kaldi zero-initialises the output layers: no gradient yet
        for head in (model.output, model.output_xent):
            head.affine.weight.normal_(0.0, 0.3)
    return model


def _train_steps(model, opt, batches):
    for x in batches:
        out = model(x)
        loss = out.output.square().sum() - out.output_xent.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_tdnnf_checkpoint_resumes_exactly():
    torch.manual_seed(5)
    batches = [torch.randn(3, 30, 6) for _ in range(16)]
    a = _tiny_tdnnf()
    oa = torch.optim.SGD(a.parameters(), lr=1e-2)
    _train_steps(a, oa, batches[:7])
    ckpt = copy.deepcopy({"model": a.state_dict(), "opt": oa.state_dict()})
    assert any(k.endswith("preconditioner_in.W") for k in ckpt["model"])
    b = _tiny_tdnnf()
    b.load_state_dict(ckpt["model"])
    ob = torch.optim.SGD(b.parameters(), lr=1e-2)
    ob.load_state_dict(ckpt["opt"])
    _train_steps(a, oa, batches[7:])
    _train_steps(b, ob, batches[7:])
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_model_without_ng_state_loads_and_switching_by_pattern():
    plain = _tiny_tdnnf(ng=False)
    sd = {k: v for k, v in plain.state_dict().items() if "preconditioner" not in k}
    model = _tiny_tdnnf(ng=True)
    model.load_state_dict(sd)                        # e.g. a model saved before NG state
    assert all(not m.initialized for m in model.modules()
               if isinstance(m, OnlineNaturalGradient))
    n_all = set_natural_gradient(model, False)
    assert n_all == sum(isinstance(m, NaturalGradientLinear) for m in model.modules())
    assert set_natural_gradient(model, True, "layers.*.linear") == 2
    on = [n for n, m in model.named_modules()
          if isinstance(m, NaturalGradientLinear) and m.natural_gradient]
    assert on == ["layers.1.linear", "layers.2.linear"]


def test_ng_changes_the_update_of_a_tdnnf():
    torch.manual_seed(6)
    x = torch.randn(3, 30, 6)
    grads = []
    for ng in (False, True):
        model = _tiny_tdnnf(ng)
        out = model(x)
        (out.output.square().sum()).backward()
        grads.append(model.layers[1].linear.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])
    # NG keeps the norm of each side's direction: |s ĝᵀ x̂| is of the same order
    ratio = float(grads[1].norm() / grads[0].norm())
    assert 0.05 < ratio < 20


# ---------------------------------------------------------------------------------------
# DDP with gloo, 2 processes
# ---------------------------------------------------------------------------------------

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out_dir):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        net = torch.nn.Sequential(NaturalGradientLinear(8, 6), torch.nn.Tanh(),
                                  NaturalGradientLinear(6, 5))
        ddp = DDP(net)                               # broadcast_buffers=True
        gen = torch.Generator().manual_seed(100 + rank)
        records = []
        for step in range(6):
            x = torch.randn(16 + 4 * rank, 8, generator=gen)
            ddp.zero_grad()
            # what this rank's preconditioners look like when used (after DDP's broadcast):
            # a plain replica computes the local NG gradient from the same state
            out = ddp(x)
            at_forward = torch.cat([b.double().reshape(-1) for n, b in net.named_buffers()
                                    if n.endswith(("W", "d", "rho"))])
            replica = copy.deepcopy(net)
            replica.zero_grad()
            replica(x).square().sum().backward()
            out.square().sum().backward()
            local = torch.cat([p.grad.reshape(-1) for p in replica.parameters()])
            mean_local = local.clone()
            dist.all_reduce(mean_local)
            mean_local /= world
            synced = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
            state = torch.cat([b.double().reshape(-1) for n, b in net.named_buffers()
                               if n.endswith(("W", "d", "rho"))])
            records.append((synced, mean_local, state, at_forward))
            with torch.no_grad():
                for p in net.parameters():
                    p -= 0.01 * p.grad
        torch.save(records, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ddp_gloo_preconditions_before_the_all_reduce(tmp_path):
    import torch.distributed as dist
    import torch.multiprocessing as mp
    assert dist.is_available() and dist.is_gloo_available(), "torch.distributed with gloo"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    for step, ((g0, m0, s0, f0), (g1, m1, s1, f1)) in enumerate(zip(r0, r1)):
        # broadcast_buffers: at each forward every rank holds rank 0's NG state
        assert torch.equal(f0, f1)
        # DDP's gradient = mean over ranks of each rank's own NG gradient
        torch.testing.assert_close(g0, m0, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(g1, m1, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(g0, g1, rtol=0, atol=0)
        if step > 0:
            # after each rank's own update, the states differ again (different data)
            assert not torch.equal(s0, s1)

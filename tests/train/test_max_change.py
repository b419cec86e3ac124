"""Max-change (UpdateNnetWithMaxChange) and L2 against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from kbind.train import MaxChangeStep, add_l2_to_grads, apply_max_change


def test_no_limit_active():
    d = [[torch.tensor([0.3, 0.4])], [torch.tensor([0.1])]]
    st = apply_max_change(d, [0.75, 1.5], 2.0)
    assert st.num_limited == 0 and st.global_factor == 1.0
    assert d[0][0].tolist() == pytest.approx([0.3, 0.4])
    assert st.norm == pytest.approx(math.sqrt(0.25 + 0.01))


def test_per_component_then_global():
    # component 0: norm 5 (two tensors 3 and 4) > 0.75 -> f0 = 0.15
    # component 1: norm 2, max-change 1.5 -> f1 = 0.75
    # component 2: norm 1.8, max-change 0 (none) -> f2 = 1
    d = [[torch.tensor([3.0]), torch.tensor([4.0])], [torch.tensor([2.0, 0.0])],
         [torch.tensor([0.0, 1.8])]]
    st = apply_max_change(d, [0.75, 1.5, 0.0], 2.0, names=["a", "b", "c"])
    assert st.num_limited == 2 and st.min_factor == pytest.approx(0.15)
    assert st.min_factor_name == "a"
    n = math.sqrt(0.75 ** 2 + 1.5 ** 2 + 1.8 ** 2)          # 2.4589...
    assert st.norm == pytest.approx(n)
    g = 2.0 / n
    assert st.global_factor == pytest.approx(g)
    assert d[0][0].item() == pytest.approx(3.0 * 0.15 * g)
    assert d[0][1].item() == pytest.approx(4.0 * 0.15 * g)
    assert d[1][0][0].item() == pytest.approx(2.0 * 0.75 * g)
    assert d[2][0][1].item() == pytest.approx(1.8 * g)
    # resulting global norm is exactly max_param_change
    tot = math.sqrt(sum(float((t ** 2).sum()) for c in d for t in c))
    assert tot == pytest.approx(2.0)
    assert any("Global max-change factor" in ln for ln in st.kaldi_lines(2.0))


def test_scale_argument():
    # Kaldi's scale (1 - momentum) enters the norm test and the update
    d = [[torch.tensor([1.0])]]
    st = apply_max_change(d, [0.75], 0.0, scale=0.5)
    assert st.num_limited == 0 and d[0][0].item() == pytest.approx(0.5)
    d = [[torch.tensor([2.0])]]
    apply_max_change(d, [0.75], 0.0, scale=0.5)
    assert d[0][0].item() == pytest.approx(0.75)


def test_infinite_norm_skips_update():
    d = [[torch.tensor([float("inf"), 1.0])]]
    st = apply_max_change(d, [0.0], 2.0)
    assert st.skipped and d[0][0].tolist() == [0.0, 0.0]


def test_max_change_step_with_sgd():
    a = torch.nn.Parameter(torch.zeros(2))
    b = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 1.0, "max_change": 0.5, "name": "a"},
                           {"params": [b], "lr": 1.0, "max_change": 0.0, "name": "b"}], lr=1.0)
    a.grad = torch.tensor([-3.0, -4.0])          # SGD delta (3, 4), norm 5 -> f = 0.1
    b.grad = torch.tensor([0.5])                 # delta -0.5
    st = MaxChangeStep(opt, max_param_change=0.0)()
    assert a.tolist() == pytest.approx([0.3, 0.4])
    assert b.item() == pytest.approx(0.5)
    assert st.num_limited == 1


def test_l2_to_grads():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    q = torch.nn.Parameter(torch.tensor([1.0]))
    groups = [{"params": [p], "l2_regularize": 0.01}, {"params": [q], "l2_regularize": 0.0}]
    add_l2_to_grads(groups, num_sequences=64, l2_regularize_factor=0.5)
    # Kaldi: delta += -2 * S * l2_factor * lr * l2 * params; as a gradient: 2*64*0.5*0.01 = 0.64
    assert p.grad.tolist() == pytest.approx([0.64, -1.28])
    assert q.grad is None


def test_global_limit_alone_and_nan_slips_through():
    # no per-component limits; global norm sqrt(1.2² + 1.6²) = 2 -> limit 1.0 halves it
    d = [[torch.tensor([1.2])], [torch.tensor([1.6])]]
    st = apply_max_change(d, [0.0, 0.0], 1.0)
    assert st.norm == pytest.approx(2.0) and st.global_factor == pytest.approx(0.5)
    assert [d[0][0].item(), d[1][0].item()] == pytest.approx([0.6, 0.8])
    # Kaldi: a NaN norm fails the "n > max_param_change" test and is applied as is
    d = [[torch.tensor([float("nan"), 1.0])]]
    st = apply_max_change(d, [0.75], 2.0)
    assert not st.skipped and st.global_factor == 1.0
    assert math.isnan(d[0][0][0].item())

"""The shared per-iteration settings and update after backward (Kaldi's
``TrainInternal``), against the same steps done by hand."""

from __future__ import annotations

import copy
import logging
import random

import pytest
import torch

from kbind.nn import TDNNF, TdnnfConfig, apply_orthonormal_constraints
from kbind.nn.layers import KaldiBatchNorm
from kbind.train import (OptimConfig, make_optimizer, start_iteration,
                         update_after_backward)

S = 3


def _model():
    torch.manual_seed(0)
    return TDNNF(4, 5, TdnnfConfig(dim=8, bottleneck_dim=4, time_strides=[1, 0],
                                   prefinal_dim=6, prefinal_big_dim=8, natural_gradient=False,
                                   xent_regularize=0.0))


def _backward(model):
    torch.manual_seed(1)
    x = torch.randn(S, model.left_context + 6 + model.right_context, 4)
    model.zero_grad(set_to_none=True)
    model(x).output.pow(2).sum().backward()


def _bn_counts(model):
    return [float(m.count) for m in model.modules() if isinstance(m, KaldiBatchNorm)]


def test_update_after_backward_is_kaldis_order():
    """L2 ``2 S f l2 params`` on the gradient, the SGD step (Kaldi's momentum
    convention), batch-norm stats x0.8, then the constraint's 1-in-4 draws."""
    cfg = OptimConfig(momentum=0.5, initial_effective_lrate=1e-4, max_param_change=0.0)
    model = _model()
    opt = make_optimizer(model, cfg)
    lr = start_iteration(model, opt, cfg.schedule(1), 0, cfg)
    _backward(model)
    counts = _bn_counts(model)
    expect = copy.deepcopy(model)
    for (name, p), q in zip(model.named_parameters(), expect.parameters()):
        l2 = float(getattr(model.get_submodule(name.rsplit(".", 1)[0]), "l2_regularize", 0.0))
        with torch.no_grad():
            q -= lr * (1 - 0.5) * (p.grad + 2 * S * 0.5 * l2 * p)
    apply_orthonormal_constraints(expect, 0, rng=random.Random(7))
    stats = update_after_backward(model, opt, cfg, S, 0.5, random.Random(7))
    assert not stats.skipped and stats.num_limited == 0
    assert any(float(getattr(m, "l2_regularize", 0.0)) > 0 for m in model.modules())
    for (name, p), q in zip(model.named_parameters(), expect.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7, msg=name)
    assert counts and _bn_counts(model) == pytest.approx([0.8 * c for c in counts])


def test_failed_update_warns_and_still_scales_batchnorm(caplog):
    cfg = OptimConfig(initial_effective_lrate=1e-3, orthonormal_constraint=False)
    model = _model()
    opt = make_optimizer(model, cfg)
    _backward(model)
    model.output.affine.weight.grad[0, 0] = float("inf")
    before = [p.detach().clone() for p in model.parameters()]
    counts = _bn_counts(model)
    with caplog.at_level(logging.WARNING, logger="kbind"):
        stats = update_after_backward(model, opt, cfg, S, 1.0, random.Random(0))
    assert stats.skipped and stats.nonfinite_component == "output.affine"
    assert any("will not apply" in r.getMessage() for r in caplog.records)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert _bn_counts(model) == pytest.approx([0.8 * c for c in counts])


def test_dropout_schedule_needs_dropout_components():
    cfg = OptimConfig(dropout_schedule="0,0.5,0")
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="no dropout components"):
        start_iteration(model, make_optimizer(model, cfg), cfg.schedule(2), 0, cfg)
    tdnnf = _model()
    opt = make_optimizer(tdnnf, cfg)
    start_iteration(tdnnf, opt, cfg.schedule(2), 1, cfg)     # half the data: 0.5
    assert {m.proportion for m in tdnnf.modules() if hasattr(m, "proportion")} == {0.5}

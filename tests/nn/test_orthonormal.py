"""Semi-orthogonal constraint: one step against numpy, convergence, cadence."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from kbind.nn import (TDNNF, TdnnAffine, TdnnfConfig, apply_orthonormal_constraints,
                      constrain_orthonormal_)


def _kaldi_step_np(M: np.ndarray, scale):
    """ConstrainOrthonormalInternal written out in numpy (rows <= cols)."""
    P = M @ M.T
    nu = 0.125
    if scale is None:
        tr_p, tr_pp = np.trace(P), np.trace(P @ P.T)
        scale = np.sqrt(tr_pp / tr_p)
        ratio = tr_pp * P.shape[0] / tr_p ** 2
        if ratio > 1.02:
            nu *= 0.5
            if ratio > 1.1:
                nu *= 0.5
    return M - 4 * nu / scale ** 2 * (P - scale ** 2 * np.eye(P.shape[0])) @ M


def _ratio(M):
    P = M @ M.T
    return np.trace(P @ P) * P.shape[0] / np.trace(P) ** 2


def _near_orthogonal(rows, cols, noise, seed):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((cols, rows)))
    return 0.7 * q.T + noise * rng.standard_normal((rows, cols))


@pytest.mark.parametrize("M, band", [
    (_near_orthogonal(6, 15, 0.005, 0), (1.0, 1.02)),   # full speed
    (_near_orthogonal(6, 15, 0.08, 1), (1.02, 1.1)),    # halved
    (np.random.default_rng(2).standard_normal((6, 9)), (1.1, 99)),  # quartered
])
def test_one_floating_step_equals_closed_form(M, band):
    assert band[0] < _ratio(M) <= band[1]
    w = torch.tensor(M)
    alpha = constrain_orthonormal_(w)
    expected = _kaldi_step_np(M, None)
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-12, atol=1e-14)
    P = M @ M.T
    assert alpha == pytest.approx(np.sqrt(np.trace(P @ P) / np.trace(P)))


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_one_fixed_step_equals_closed_form(scale):
    M = _near_orthogonal(5, 12, 0.05, 3) * (scale / 0.7)
    w = torch.tensor(M)
    assert constrain_orthonormal_(w, scale=scale) == scale
    np.testing.assert_allclose(w.numpy(), _kaldi_step_np(M, scale), rtol=1e-12, atol=1e-14)


def test_tall_matrix_is_constrained_through_its_transpose():
    M = np.random.default_rng(4).standard_normal((12, 5)) * 0.3
    w = torch.tensor(M)
    constrain_orthonormal_(w)
    np.testing.assert_allclose(w.numpy(), _kaldi_step_np(M.T, None).T, rtol=1e-12, atol=1e-14)


def test_repeated_floating_steps_reach_the_fixed_point():
    torch.manual_seed(5)
    w = torch.randn(16, 48, dtype=torch.float64) / np.sqrt(48)
    for _ in range(60):
        alpha = constrain_orthonormal_(w)
    P = (w @ w.t()).numpy()
    alpha2 = np.trace(P @ P) / np.trace(P)
    assert alpha == pytest.approx(np.sqrt(alpha2), rel=1e-8)
    np.testing.assert_allclose(P, alpha2 * np.eye(16), atol=1e-8 * alpha2)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_repeated_fixed_steps_reach_scale_squared_identity(scale):
    torch.manual_seed(6)
    w = torch.randn(10, 30, dtype=torch.float64) * (scale / np.sqrt(30)) * 0.5
    w += torch.tensor(_near_orthogonal(10, 30, 0.0, 7)) * scale / 0.7
    for _ in range(40):
        constrain_orthonormal_(w, scale=scale)
    np.testing.assert_allclose((w @ w.t()).numpy(), scale ** 2 * np.eye(10), atol=1e-10)


def test_zero_matrix_is_skipped_and_bad_scale_rejected():
    w = torch.zeros(3, 4)
    assert constrain_orthonormal_(w) is None
    assert torch.equal(w, torch.zeros(3, 4))
    with pytest.raises(ValueError):
        constrain_orthonormal_(torch.ones(2, 3), scale=0.0)


def _small_model():
    return TDNNF(10, 7, TdnnfConfig(dim=16, bottleneck_dim=4, time_strides=[1, 3],
                                    prefinal_dim=8, prefinal_big_dim=16))


def test_apply_constraints_only_to_marked_layers_deterministic_cadence():
    model = _small_model()
    constrained = {'layers.1.linear', 'layers.2.linear', 'prefinal_l',
                   'prefinal_chain.linear', 'prefinal_xent.linear'}
    before = {n: p.clone() for n, p in model.named_parameters()}
    assert apply_orthonormal_constraints(model, step=1) == []
    done = apply_orthonormal_constraints(model, step=4)
    assert set(done) == constrained
    for name, p in model.named_parameters():
        module = name.rsplit('.', 1)[0]
        assert torch.equal(p, before[name]) == (module not in constrained), name


def test_apply_constraints_random_cadence_is_one_in_four():
    model = torch.nn.Sequential(*[TdnnAffine(8, 4, bias=False, orthonormal_constraint=-1.0)
                                  for _ in range(4)])
    rng = random.Random(0)
    calls = sum(len(apply_orthonormal_constraints(model, step, rng)) for step in range(500))
    assert abs(calls / 2000 - 0.25) < 0.03


@pytest.mark.parametrize("rows,cols,alpha", [(8, 20, 1.0), (8, 20, 0.37), (20, 8, 2.5)])
def test_fixed_point_is_left_unchanged(rows, cols, alpha):
    """M Mᵀ = α² I (or Mᵀ M for a tall M) is the fixed point of both variants."""
    rng = np.random.default_rng(rows * cols)
    q = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))[0]
    M = alpha * (q.T if rows <= cols else q)
    for scale in (None, alpha):
        w = torch.tensor(M)
        got = constrain_orthonormal_(w, scale=scale)
        assert got == pytest.approx(alpha, rel=1e-12)
        np.testing.assert_allclose(w.numpy(), M, rtol=0, atol=1e-14)


def test_float32_tdnnf_bottleneck_converges_to_its_fixed_point():
    """Kaldi's cadence (1/4 per call) on a float32 1536x160-shaped factor
    (here 96 x 2·256): P = M Mᵀ ends at α² I with α² = tr(P²)/tr(P)."""
    layer = TdnnAffine(256, 96, (-1, 0), bias=False, orthonormal_constraint=-1.0)
    rng = random.Random(3)
    for step in range(400):
        apply_orthonormal_constraints(layer, step, rng)
    P = (layer.weight @ layer.weight.t()).detach().double().numpy()
    alpha2 = np.trace(P @ P) / np.trace(P)
    np.testing.assert_allclose(P, alpha2 * np.eye(96), atol=2e-5 * alpha2)

"""Kaldi nnet3 layers: batch norm, dropout, TDNN / TDNN-F splicing, schedules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kbind.nn import (GeneralDropout, KaldiBatchNorm, PrefinalLayer, TdnnAffine, TdnnfLayer,
                      TdnnLayer, TDNNF, TdnnfConfig, component_param_groups, dropout_proportion,
                      dropout_proportions, parse_dropout_schedule, scale_batchnorm_stats,
                      set_dropout_proportions)


def _naive_batchnorm(z: np.ndarray, target_rms=1.0, eps=1e-3) -> np.ndarray:
    rows = z.reshape(-1, z.shape[-1])
    mean = rows.mean(0)
    var = np.maximum(0.0, (rows ** 2).mean(0) - mean ** 2)
    return (z - mean) * target_rms / np.sqrt(var + eps)


# ---------------------------------------------------------------- batch norm

@pytest.mark.parametrize("target_rms", [1.0, 0.5])
def test_batchnorm_train_mode_closed_form(target_rms):
    torch.manual_seed(0)
    x = (torch.randn(4, 30, 6, dtype=torch.float64) * torch.tensor([0.01, 0.1, 1, 3, 10, 0.03],
                                                                   dtype=torch.float64)
         + torch.arange(6, dtype=torch.float64))
    bn = KaldiBatchNorm(6, target_rms=target_rms).double().train()
    y = bn(x).reshape(-1, 6)
    rows = x.reshape(-1, 6)
    var = rows.var(0, unbiased=False)
    torch.testing.assert_close(y.mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-12,
                               rtol=0)
    expected_rms = target_rms * torch.sqrt(var / (var + 1e-3))
    torch.testing.assert_close(y.pow(2).mean(0).sqrt(), expected_rms, rtol=1e-10, atol=0)


def test_batchnorm_backward_is_kaldis_formula():
    torch.manual_seed(1)
    rms = 0.7
    x = torch.randn(3, 11, 5, dtype=torch.float64, requires_grad=True)
    bn = KaldiBatchNorm(5, target_rms=rms).double().train()
    y = bn(x)
    dy = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, dy)
    # Kaldi: x' = scale (y' - mean(y')) - y mean(y * y') scale / rms^2 (per column)
    Y, DY = y.detach().reshape(-1, 5), dy.reshape(-1, 5)
    rows = x.detach().reshape(-1, 5)
    var = (rows ** 2).mean(0) - rows.mean(0) ** 2
    scale = rms / torch.sqrt(var + 1e-3)
    expected = scale * (DY - DY.mean(0)) - Y * (Y * DY).mean(0) * scale / rms ** 2
    torch.testing.assert_close(dx.reshape(-1, 5), expected, rtol=1e-10, atol=1e-12)


def test_batchnorm_stats_and_test_mode():
    torch.manual_seed(2)
    bn = KaldiBatchNorm(4, epsilon=1e-3).double().train()
    x1 = torch.randn(2, 10, 4, dtype=torch.float64) * 2 + 1
    x2 = torch.randn(3, 7, 4, dtype=torch.float64) - 3
    bn(x1)
    assert bn.count.item() == 20
    scale_batchnorm_stats(bn, 0.8)
    bn(x2)
    r1, r2 = x1.reshape(-1, 4), x2.reshape(-1, 4)
    count = 0.8 * 20 + 21
    total = 0.8 * r1.sum(0) + r2.sum(0)
    total_sq = 0.8 * (r1 ** 2).sum(0) + (r2 ** 2).sum(0)
    assert bn.count.item() == pytest.approx(count)
    torch.testing.assert_close(bn.stats_sum, total)
    torch.testing.assert_close(bn.stats_sumsq, total_sq)

    bn.eval()
    x3 = torch.randn(1, 5, 4, dtype=torch.float64)
    mean = total / count
    var = total_sq / count - mean ** 2
    torch.testing.assert_close(bn(x3), (x3 - mean) / torch.sqrt(var + 1e-3))
    assert bn.count.item() == pytest.approx(count)     # eval does not accumulate

    scale_batchnorm_stats(bn, 0.0)
    assert bn.count.item() == 0
    # no stats: zero mean, unit variance rather than Kaldi's random ones
    torch.testing.assert_close(bn(x3), x3 / np.sqrt(1 + 1e-3))


# ---------------------------------------------------------------- dropout

def test_continuous_dropout_mask_per_sequence_and_dim():
    torch.manual_seed(3)
    p = 0.3
    drop = GeneralDropout(16, p).train()
    x = torch.ones(5, 20, 16)
    y = drop(x)
    assert torch.equal(y, y[:, :1].expand_as(y))          # shared over time
    assert y.min() >= 1 - 2 * p and y.max() <= 1 + 2 * p
    assert y[:, 0].std() > 0.05                            # differs over sequences, dims
    drop.eval()
    assert torch.equal(drop(x), x)
    drop.train()
    drop.proportion = 0.0
    assert torch.equal(drop(x), x)


def test_bernoulli_dropout_rescales():
    torch.manual_seed(4)
    drop = GeneralDropout(8, 0.25, continuous=False).train()
    y = drop(torch.ones(1000, 3, 8, dtype=torch.float64))
    assert set(torch.unique(y).tolist()) <= {0.0, 1 / 0.75}
    assert abs((y == 0).float().mean().item() - 0.25) < 0.02


# ---------------------------------------------------------------- splicing

def _splice_np(x: np.ndarray, out_times, in_times, offsets) -> np.ndarray:
    pos = {t: j for j, t in enumerate(in_times)}
    return np.stack([np.concatenate([x[:, pos[t + o]] for o in offsets], axis=-1)
                     for t in out_times], axis=1)


def test_tdnn_affine_matches_explicit_splicing():
    torch.manual_seed(5)
    layer = TdnnAffine(7, 5, (-2, 0, 3)).double()
    x = torch.randn(2, 20, 7, dtype=torch.float64)
    y = layer(x)
    assert y.shape == (2, 15, 5)
    spliced = _splice_np(x.numpy(), range(2, 17), range(20), (-2, 0, 3))
    expected = spliced @ layer.weight.detach().numpy().T + layer.bias.detach().numpy()
    np.testing.assert_allclose(y.detach().numpy(), expected, rtol=1e-12)
    # explicit, irregular output times
    out_times = (2, 3, 7, 12, 13)
    y2 = layer(x, tuple(range(20)), out_times)
    expected2 = (_splice_np(x.numpy(), out_times, range(20), (-2, 0, 3))
                 @ layer.weight.detach().numpy().T + layer.bias.detach().numpy())
    np.testing.assert_allclose(y2.detach().numpy(), expected2, rtol=1e-12)
    with pytest.raises(ValueError, match="t=-1"):
        layer(x, tuple(range(20)), (1,))


def test_tdnn_affine_init_and_params():
    layer = TdnnAffine(100, 300, (-1, 0, 1))
    assert layer.weight.shape == (300, 300)
    assert abs(layer.weight.std().item() - 1 / np.sqrt(300)) < 0.01
    assert abs(layer.bias.std().item() - 1.0) < 0.15


def _naive_tdnnf(x, layer, s, out_times, in_times):
    W1 = layer.linear.weight.detach().numpy()
    W2 = layer.affine.weight.detach().numpy()
    b = layer.affine.bias.detach().numpy()
    pos = {t: j for j, t in enumerate(in_times)}
    dim = x.shape[-1]
    bott = W1.shape[0]
    outs = []
    for t in out_times:
        if s == 0:
            h_t = x[:, pos[t]] @ W1.T
            z = h_t @ W2.T + b
        else:
            h_t = x[:, pos[t - s]] @ W1[:, :dim].T + x[:, pos[t]] @ W1[:, dim:].T
            h_ts = x[:, pos[t]] @ W1[:, :dim].T + x[:, pos[t + s]] @ W1[:, dim:].T
            z = h_t @ W2[:, :bott].T + h_ts @ W2[:, bott:].T + b
        outs.append(z)
    z = np.maximum(np.stack(outs, axis=1), 0.0)
    bypass = np.stack([x[:, pos[t]] for t in out_times], axis=1)
    return _naive_batchnorm(z) + layer.bypass_scale * bypass


@pytest.mark.parametrize("s", [0, 1, 3])
def test_tdnnf_layer_matches_naive(s):
    torch.manual_seed(6 + s)
    layer = TdnnfLayer(12, 4, s, bypass_scale=0.66, dropout=0.0).double().train()
    if s == 0:
        assert layer.linear.weight.shape == (4, 12) and layer.affine.weight.shape == (12, 4)
    else:
        assert layer.linear.weight.shape == (4, 24) and layer.affine.weight.shape == (12, 8)
    assert layer.linear.bias is None and layer.linear.orthonormal_constraint == -1.0
    x = torch.randn(3, 25, 12, dtype=torch.float64)
    y = layer(x)
    assert y.shape == (3, 25 - 2 * s, 12)
    expected = _naive_tdnnf(x.numpy(), layer, s, range(s, 25 - s), range(25))
    np.testing.assert_allclose(y.detach().numpy(), expected, rtol=1e-9, atol=1e-10)
    # only every third output frame (batch-norm statistics over those frames only)
    out_times = tuple(range(s, 25 - s, 3))
    y3 = layer(x, tuple(range(25)), out_times)
    expected3 = _naive_tdnnf(x.numpy(), layer, s, out_times, range(25))
    np.testing.assert_allclose(y3.detach().numpy(), expected3, rtol=1e-9, atol=1e-10)


def test_tdnn_layer_and_prefinal_match_naive():
    torch.manual_seed(9)
    x = torch.randn(2, 9, 6, dtype=torch.float64)
    layer = TdnnLayer(6, 10, (-1, 0, 1)).double().train()
    z = (_splice_np(x.numpy(), range(1, 8), range(9), (-1, 0, 1))
         @ layer.affine.weight.detach().numpy().T + layer.affine.bias.detach().numpy())
    np.testing.assert_allclose(layer(x).detach().numpy(), _naive_batchnorm(np.maximum(z, 0)),
                               rtol=1e-9, atol=1e-10)

    pre = PrefinalLayer(6, 16, 4).double().train()
    a = np.maximum(x.numpy() @ pre.affine.weight.detach().numpy().T
                   + pre.affine.bias.detach().numpy(), 0)
    expected = _naive_batchnorm(_naive_batchnorm(a) @ pre.linear.weight.detach().numpy().T)
    np.testing.assert_allclose(pre(x).detach().numpy(), expected, rtol=1e-9, atol=1e-10)
    assert pre.linear.orthonormal_constraint == -1.0 and pre.linear.bias is None


# ---------------------------------------------------------------- dropout schedule

def test_parse_dropout_schedule_kaldi_examples():
    # steps/libs/nnet3/train/common.py _self_test(), points in increasing order
    assert parse_dropout_schedule('*=0.0,0.5,0.0 lstm.*=0.0,0.3@0.75,0.0') == [
        ('*', [(0.0, 0.0), (0.5, 0.5), (1.0, 0.0)]),
        ('lstm.*', [(0.0, 0.0), (0.75, 0.3), (1.0, 0.0)])]
    assert parse_dropout_schedule('0.0,0.3,0.0') == [('*', [(0.0, 0.0), (0.5, 0.3), (1.0, 0.0)])]
    assert parse_dropout_schedule('0,0@0.20,0.5@0.50,0') == [
        ('*', [(0.0, 0.0), (0.2, 0.0), (0.5, 0.5), (1.0, 0.0)])]
    for bad in ['0.5', '0,0.3@0.6,0.2@0.4,0', '0,1.5,0', 'a=b=0,0', '0,x,0']:
        with pytest.raises(ValueError):
            parse_dropout_schedule(bad)


@pytest.mark.parametrize("fraction, expected", [
    (0.75, [('*', 0.25), ('lstm.*', 0.3)]),
    (0.5, [('*', 0.5), ('lstm.*', 0.2)]),
    (0.25, [('*', 0.25), ('lstm.*', 0.1)]),
])
def test_dropout_proportions_kaldi_self_test(fraction, expected):
    got = dropout_proportions('*=0.0,0.5,0.0 lstm.*=0.0,0.3@0.75,0.0', fraction)
    assert [p for p, _ in got] == [p for p, _ in expected]
    assert [v for _, v in got] == pytest.approx([v for _, v in expected])


@pytest.mark.parametrize("fraction, expected", [
    (0.0, 0.0), (0.1, 0.0), (0.2, 0.0), (0.35, 0.25), (0.5, 0.5), (0.6, 0.4), (0.75, 0.25),
    (1.0, 0.0)])
def test_dropout_proportion_recipe_schedule(fraction, expected):
    assert dropout_proportion('0,0@0.20,0.5@0.50,0', fraction) == pytest.approx(expected)
    assert dropout_proportion('0.0,0.5,0.0', 0.25) == pytest.approx(0.25)


def test_dropout_proportion_step_at_repeated_fraction():
    # Kaldi takes the later point at a repeated data fraction
    schedule = '0,0.5@0.5,0.2@0.5,0'
    assert dropout_proportion(schedule, 0.25) == pytest.approx(0.25)
    assert dropout_proportion(schedule, 0.5) == pytest.approx(0.2)
    assert dropout_proportion(schedule, 0.75) == pytest.approx(0.1)


def test_set_dropout_proportions_by_pattern():
    model = TDNNF(10, 7, TdnnfConfig(dim=16, bottleneck_dim=4, time_strides=[1, 3],
                                     prefinal_dim=8, prefinal_big_dim=16))
    n = set_dropout_proportions(model, [('*', 0.2), ('layers.2.*', 0.1)])
    assert n == 2
    assert model.layers[1].dropout.proportion == 0.2
    assert model.layers[2].dropout.proportion == 0.1


def test_component_param_groups_carry_kaldi_constants():
    model = TDNNF(10, 7, TdnnfConfig(dim=16, bottleneck_dim=4, time_strides=[1],
                                     prefinal_dim=8, prefinal_big_dim=16, xent_regularize=0.1))
    groups = {g['name']: g for g in component_param_groups(model)}
    assert groups['output_xent.affine']['learning_rate_factor'] == pytest.approx(5.0)
    assert groups['output.affine']['learning_rate_factor'] == 1.0
    assert groups['output.affine']['max_change'] == 1.5
    assert groups['layers.1.linear']['max_change'] == 0.75
    assert groups['layers.1.linear']['l2_regularize'] == 0.03
    n_params = sum(p.numel() for g in groups.values() for p in g['params'])
    assert n_params == sum(p.numel() for p in model.parameters())

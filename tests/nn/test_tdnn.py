"""TDNN / TDNN-F models: context, frame subsampling, receptive field, heads."""

from __future__ import annotations

import math

import pytest
import torch

from kbind.nn import TDNN, TDNNF, KaldiBatchNorm, TdnnConfig, TdnnfConfig

FEAT = 13
PDFS = 11


def _tiny_tdnnf(**kw):
    cfg = dict(dim=24, bottleneck_dim=6, prefinal_dim=8, prefinal_big_dim=16)
    cfg.update(kw)
    return TDNNF(FEAT, PDFS, TdnnfConfig(**cfg))


# hand sums: input splice + one stride per tdnnf layer (both sides)
@pytest.mark.parametrize("make, left, right", [
    (lambda: _tiny_tdnnf(), 1 + 1 + 1 + 0 + 3 + 3 + 3, 12),
    (lambda: _tiny_tdnnf(time_strides=[1, 1, 1, 0] + [3] * 8), 28, 28),
    (lambda: _tiny_tdnnf(time_strides=[3, 3], input_offsets=[-2, 0, 2]), 8, 8),
    (lambda: _tiny_tdnnf(time_strides=[0], input_offsets=[-2, -1, 0]), 2, 0),
    (lambda: TDNN(FEAT, PDFS, TdnnConfig(dim=16)), 3 + 9, 12),
    (lambda: TDNN(FEAT, PDFS, TdnnConfig(dim=16, splices=[[-2, -1, 0, 1, 2], [0], [-3, 0, 3]])),
     5, 5),
    (lambda: TDNN(FEAT, PDFS, TdnnConfig(dim=16, splices=[[-1, 0], [0, 2], [-3, 0]])), 4, 2),
])
def test_context_is_the_sum_of_offsets(make, left, right):
    model = make()
    assert (model.left_context, model.right_context) == (left, right)


def test_presets():
    default = TdnnfConfig()
    assert (default.dim, default.bottleneck_dim, default.time_strides) == (
        256, 64, [1, 1, 0, 3, 3, 3])
    kaldi = TdnnfConfig.kaldi()
    assert (kaldi.dim, kaldi.bottleneck_dim, kaldi.prefinal_dim, kaldi.prefinal_big_dim) == (
        1024, 128, 192, 1024)
    assert kaldi.time_strides == [1, 1, 1, 0] + [3] * 8      # tdnnf2..tdnnf13
    model = TDNNF(40, 100)
    assert (model.left_context, model.right_context, model.frame_subsampling_factor) == (
        12, 12, 3)
    assert len(model.layers) == 7


@pytest.mark.parametrize("chunk_width", [150, 110, 100, 140, 160, 1])
def test_output_frames_for_kaldi_chunk_widths(chunk_width):
    model = _tiny_tdnnf()
    t_in = model.left_context + model.right_context + chunk_width
    expected = math.ceil(chunk_width / 3)
    # Kaldi rounds chunk widths up to a multiple of 3 (RoundUpNumFrames): 110 -> 111
    assert expected == (3 * math.ceil(chunk_width / 3)) // 3
    assert model.output_frames(t_in) == expected
    if chunk_width % 3 == 0:
        assert expected == chunk_width // 3
    out = model(torch.randn(2, t_in, FEAT))
    assert out.output.shape == (2, expected, PDFS)
    assert out.output_xent.shape == (2, expected, PDFS)


def test_150_frames_give_50_outputs_and_short_input_fails():
    model = _tiny_tdnnf()
    assert model.output_frames(model.left_context + model.right_context + 150) == 50
    assert model.output_times(model.left_context + model.right_context + 7) == (0, 3, 6)
    with pytest.raises(ValueError, match="no output"):
        model(torch.randn(1, model.left_context + model.right_context, FEAT))
    with pytest.raises(ValueError, match="expects"):
        model(torch.randn(1, 40, FEAT + 1))


def _randomize_outputs(model):
    with torch.no_grad():
        for head in (model.output, model.output_xent):
            head.affine.weight.normal_()
            head.affine.bias.normal_()


@pytest.mark.parametrize("make", [
    lambda: _tiny_tdnnf(),
    lambda: _tiny_tdnnf(time_strides=[1, 0, 3, 3], input_offsets=[-2, 0, 1]),
    lambda: TDNN(FEAT, PDFS, TdnnConfig(dim=16, splices=[[-1, 0], [-1, 0, 1], [0, 3], [-3, 0]])),
])
def test_receptive_field_equals_context(make):
    torch.manual_seed(0)
    model = make().double()
    _randomize_outputs(model)
    left, right = model.left_context, model.right_context
    t_in = left + right + 30
    model.train()
    model(torch.randn(4, t_in, FEAT, dtype=torch.float64))   # batch-norm stats
    model.eval()   # in training, batch-norm statistics couple every frame to every output
    x = torch.randn(1, t_in, FEAT, dtype=torch.float64, requires_grad=True)
    out = model(x)
    for i in range(out.output.shape[1]):
        for head in (out.output, out.output_xent):
            (grad,) = torch.autograd.grad(head[0, i].sum(), x, retain_graph=True)
            used = (grad[0].abs().sum(-1) > 0).nonzero().flatten().tolist()
            assert used == list(range(3 * i, 3 * i + left + right + 1)), i


def test_subsampled_computation_equals_full_rate_network():
    """Computing only the needed frames equals running every layer at every frame
    (eval mode, where a frame's output does not depend on which others are computed)."""
    torch.manual_seed(1)
    model = _tiny_tdnnf(time_strides=[1, 1, 0, 3, 3]).double()
    _randomize_outputs(model)
    t_in = model.left_context + model.right_context + 20
    model.train()
    model(torch.randn(3, t_in, FEAT, dtype=torch.float64))
    model.eval()
    x = torch.randn(2, t_in, FEAT, dtype=torch.float64)
    h = x
    for layer in model.layers:          # "valid" convolution at every frame
        h = layer(h)
    full = model._heads(h)
    sub = model(x)
    assert full.output.shape[1] == 20
    torch.testing.assert_close(sub.output, full.output[:, ::3])
    torch.testing.assert_close(sub.output_xent, full.output_xent[:, ::3])


def test_batchnorm_statistics_use_exactly_kaldis_frames():
    # default strides 1,1,0,3,3,3 with a 150-frame chunk, context 12: walking back
    # from outputs t = 0,3,..,147 (50 frames): tdnnf7 52 inputs at stride 3, tdnnf6 54,
    # tdnnf5 56 and tdnnf4 (s=0) the same 56, tdnnf3 (s=1) needs t=-10..157 (168),
    # tdnnf2 t=-11..158 (170), tdnn1 reads t=-12..159.
    model = _tiny_tdnnf()
    batch = 2
    model.train()
    model(torch.randn(batch, 12 + 150 + 12, FEAT))
    counts = [int(m.count.item()) for m in model.layers.modules()
              if isinstance(m, KaldiBatchNorm)]
    assert counts == [batch * n for n in (170, 168, 56, 56, 54, 52, 50)]
    assert int(model.prefinal_chain.batchnorm2.count.item()) == batch * 50


def test_heads_and_training_mode():
    torch.manual_seed(2)
    model = _tiny_tdnnf(xent_regularize=0.25)
    assert model.output_xent.affine.learning_rate_factor == pytest.approx(2.0)
    assert torch.count_nonzero(model.output.affine.weight) == 0    # Kaldi zero-init
    _randomize_outputs(model)
    out = model(torch.randn(3, model.left_context + model.right_context + 30, FEAT))
    torch.testing.assert_close(out.output_xent.logsumexp(-1), torch.zeros(3, 10))
    (out.output.sum() + out.output_xent.sum()).backward()
    assert all(p.grad is not None for p in model.parameters())
    no_xent = _tiny_tdnnf(xent_regularize=0.0)
    assert no_xent.output_xent is None
    assert no_xent(torch.randn(1, 40, FEAT)).output_xent is None


def test_tdnn_frame_level_model():
    model = TDNN(FEAT, PDFS, TdnnConfig(dim=16, frame_subsampling_factor=1, xent_regularize=0))
    out = model(torch.randn(2, model.left_context + model.right_context + 17, FEAT))
    assert out.output.shape == (2, 17, PDFS) and out.output_xent is None

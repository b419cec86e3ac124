"""BLSTM acoustic model: shapes, lengths, carried state across chunks."""

from __future__ import annotations

import pytest
import torch

from kbind.nn import BLSTM, BlstmConfig

FEAT = 7
PDFS = 9


def test_default_is_three_bidirectional_layers_of_512():
    model = BLSTM(40, 100)
    assert len(model.lstms) == 3
    assert all(l.bidirectional and l.hidden_size == 512 for l in model.lstms)
    assert (model.left_context, model.right_context, model.frame_subsampling_factor) == (0, 0, 1)


@pytest.mark.parametrize("proj_dim", [0, 6])
def test_shapes_and_state(proj_dim):
    model = BLSTM(FEAT, PDFS, BlstmConfig(hidden_dim=10, num_layers=2, proj_dim=proj_dim))
    out, state = model(torch.randn(3, 12, FEAT), torch.tensor([12, 5, 9]))
    assert out.shape == (3, 12, PDFS)
    assert model.output_frames(12) == 12
    assert len(state) == 2
    width = proj_dim or 10
    assert state[0][0].shape == (3, width) and state[0][1].shape == (3, 10)


def test_carried_state_unidirectional_equals_whole():
    torch.manual_seed(0)
    model = BLSTM(FEAT, PDFS, BlstmConfig(hidden_dim=8, num_layers=3, bidirectional=False,
                                          proj_dim=5)).double().eval()
    x = torch.randn(2, 20, FEAT, dtype=torch.float64)
    whole, whole_state = model(x)
    first, state = model(x[:, :8])
    second, last_state = model(x[:, 8:], state=state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)
    for (h, c), (h2, c2) in zip(last_state, whole_state):
        torch.testing.assert_close(h, h2)
        torch.testing.assert_close(c, c2)
    cut, _ = model(x[:, 8:])      # context-free cut: differs
    assert not torch.allclose(cut, second)


def test_carried_state_bidirectional_forward_direction_equals_whole():
    torch.manual_seed(1)
    model = BLSTM(FEAT, PDFS, BlstmConfig(hidden_dim=8, num_layers=1)).double().eval()
    x = torch.randn(2, 20, FEAT, dtype=torch.float64)
    whole, _ = model.encode(x)
    first, state = model.encode(x[:, :11])
    second, _ = model.encode(x[:, 11:], state=state)
    halves = torch.cat([first, second], 1)
    torch.testing.assert_close(halves[..., :8], whole[..., :8])     # forward direction
    # backward direction restarts at the chunk end (context-free cut on the right)
    torch.testing.assert_close(second[..., 8:], model.encode(x[:, 11:])[0][..., 8:])
    assert not torch.allclose(first[..., 8:], whole[:, :11, 8:])


def test_lengths_take_state_at_last_valid_frame():
    torch.manual_seed(2)
    model = BLSTM(FEAT, PDFS, BlstmConfig(hidden_dim=8, num_layers=2)).double().eval()
    x = torch.randn(3, 10, FEAT, dtype=torch.float64)
    lengths = torch.tensor([10, 4, 7])
    out, state = model(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, alone_state = model(x[b:b + 1, :n])
        torch.testing.assert_close(out[b:b + 1, :n], alone)
        for (h, c), (h1, c1) in zip(state, alone_state):
            torch.testing.assert_close(h[b:b + 1], h1)
            torch.testing.assert_close(c[b:b + 1], c1)


def test_training_backward_with_dropout():
    model = BLSTM(FEAT, PDFS, BlstmConfig(hidden_dim=8, num_layers=2, dropout=0.2)).train()
    out, _ = model(torch.randn(2, 6, FEAT), torch.tensor([6, 3]))
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError):
        model(torch.randn(2, 6, FEAT), state=[(torch.zeros(2, 8), torch.zeros(2, 8))])


def test_frame_stacking_equals_manual_reshape():
    """fss=3: the LSTMs see frames 3t..3t+2 concatenated; the last group repeats
    the sequence's own last frame (checked against a model fed the stacked input)."""
    torch.manual_seed(2)
    cfg = BlstmConfig(hidden_dim=6, num_layers=2, frame_subsampling_factor=3)
    model = BLSTM(FEAT, PDFS, cfg).double().eval()
    ref = BLSTM(3 * FEAT, PDFS, BlstmConfig(hidden_dim=6, num_layers=2)).double().eval()
    ref.load_state_dict(model.state_dict())
    x = torch.randn(2, 10, FEAT, dtype=torch.float64)
    lengths = torch.tensor([10, 7])
    out, _ = model(x, lengths)
    assert out.shape == (2, 4, PDFS) and model.output_frames(10) == 4
    stacked = []
    for b, n in enumerate(lengths.tolist()):
        idx = [min(i, n - 1) for i in range(12)]
        stacked.append(x[b, idx].reshape(4, 3 * FEAT))
    expect, _ = ref(torch.stack(stacked), torch.tensor([4, 3]))
    torch.testing.assert_close(out[0], expect[0])
    torch.testing.assert_close(out[1, :3], expect[1, :3])

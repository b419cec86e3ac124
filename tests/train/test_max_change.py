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


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
@pytest.mark.parametrize("max_change", [0.0, 0.75])
def test_nonfinite_norm_fails_the_update(bad, max_change):
    # Kaldi's UpdateNnetWithMaxChange returns false for an infinite change; here
    # any non-finite component norm fails it (with a per-component limit Kaldi's
    # factor 0.75 / inf = 0 would give 0 * inf = NaN), and the deltas are zeroed
    d = [[torch.tensor([bad, 1.0])], [torch.tensor([0.5])]]
    st = apply_max_change(d, [max_change, 0.0], 2.0, names=["a", "b"])
    assert st.skipped and st.nonfinite_component == "a"
    assert d[0][0].tolist() == [0.0, 0.0] and d[1][0].tolist() == [0.0]
    assert any("will not apply" in ln for ln in st.kaldi_lines(2.0))


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


def test_global_limit_alone():
    # no per-component limits; global norm sqrt(1.2² + 1.6²) = 2 -> limit 1.0 halves it
    d = [[torch.tensor([1.2])], [torch.tensor([1.6])]]
    st = apply_max_change(d, [0.0, 0.0], 1.0)
    assert st.norm == pytest.approx(2.0) and st.global_factor == pytest.approx(0.5)
    assert [d[0][0].item(), d[1][0].item()] == pytest.approx([0.6, 0.8])


def _model_and_optimizer(kind):
    """Two components (max-change 0.75 and none), SGD with Kaldi's momentum or Adam."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    groups = [{"params": list(model[0].parameters()), "max_change": 0.75, "name": "0"},
              {"params": list(model[1].parameters()), "max_change": 0.0, "name": "1"}]
    if kind == "sgd":
        opt = torch.optim.SGD(groups, lr=0.05, momentum=0.5)
    else:
        opt = torch.optim.Adam(groups, lr=0.05)
    return model, opt


def _backward(model, seed, bad=None):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(5, 3, generator=g), torch.randn(5, 2, generator=g)
    model.zero_grad(set_to_none=True)
    ((model(x) - y) ** 2).sum().backward()
    if bad is not None:
        model[0].weight.grad[1, 2] = bad


def _state(model, opt):
    """Parameters and optimizer state (momentum buffers, Adam moments and steps)."""
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {i: {k: v.clone() for k, v in st.items()}
             for i, st in opt.state_dict()["state"].items()})


def _assert_same(a, b):
    assert a[0].keys() == b[0].keys() and a[1].keys() == b[1].keys()
    for k in a[0]:
        assert torch.equal(a[0][k], b[0][k]), k
    for i in a[1]:
        assert a[1][i].keys() == b[1][i].keys()
        for k in a[1][i]:
            assert torch.equal(a[1][i][k], b[1][i][k]), (i, k)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_nonfinite_gradient_drops_the_update_whole(kind, bad):
    """A failed update leaves parameters and optimizer state bit for bit as they
    were, and the next step is the one an optimizer that never saw it takes."""
    model, opt = _model_and_optimizer(kind)
    twin, twin_opt = _model_and_optimizer(kind)
    for m, o in ((model, opt), (twin, twin_opt)):
        _backward(m, 1)
        MaxChangeStep(o, max_param_change=2.0)()
    before = _state(model, opt)
    _backward(model, 2, bad=bad)
    st = MaxChangeStep(opt, max_param_change=2.0)()
    assert st.skipped and st.nonfinite_component == "0"
    _assert_same(_state(model, opt), before)
    for m, o in ((model, opt), (twin, twin_opt)):
        _backward(m, 3)
        assert not MaxChangeStep(o, max_param_change=2.0)().skipped
    _assert_same(_state(model, opt), _state(twin, twin_opt))


def test_step_that_overflows_is_dropped_and_its_state_restored():
    """Finite gradients whose momentum overflows float32: the non-finite delta
    fails the update and the momentum buffer is the one from before the step."""
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [p], "max_change": 0.75, "name": "p"}], lr=1.0,
                          momentum=0.9)
    p.grad = torch.tensor([3e38, 1.0])
    assert not MaxChangeStep(opt, max_param_change=2.0)().skipped
    before = (p.detach().clone(), opt.state[p]["momentum_buffer"].clone())
    p.grad = torch.tensor([3e38, 1.0])          # 0.9 * 3e38 + 3e38 overflows to inf
    st = MaxChangeStep(opt, max_param_change=2.0)()
    assert st.skipped
    assert torch.equal(p.detach(), before[0])
    assert torch.equal(opt.state[p]["momentum_buffer"], before[1])


def _ng_model():
    from kbind.nn import NaturalGradientLinear
    torch.manual_seed(0)
    model = torch.nn.Sequential(NaturalGradientLinear(6, 8, max_change=0.75), torch.nn.ReLU(),
                                NaturalGradientLinear(8, 5, max_change=0.75))
    from kbind.nn import component_param_groups
    opt = torch.optim.SGD(component_param_groups(model), lr=0.01, momentum=0.5)
    return model, opt


def _ng_backward(model, seed, bad=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(20, 6, generator=g)
    out = model(x)
    grad = torch.randn(out.shape, generator=g)
    if bad is not None:
        grad[3, 1] = bad
    model.zero_grad(set_to_none=True)
    out.backward(grad)


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_nonfinite_gradient_through_natural_gradient_layers(bad):
    """With NG-SGD (the default) a non-finite output derivative reaches the
    update as a non-finite gradient, with the preconditioners' state untouched,
    and is dropped whole: the next step is the one of a twin that never saw it."""
    model, opt = _ng_model()
    twin, twin_opt = _ng_model()
    for step in range(3):
        for m, o in ((model, opt), (twin, twin_opt)):
            _ng_backward(m, step)
            MaxChangeStep(o, max_param_change=2.0)()
    before = _state(model, opt)
    _ng_backward(model, 10, bad=bad)
    assert MaxChangeStep(opt, max_param_change=2.0)().skipped
    _assert_same(_state(model, opt), before)          # preconditioner buffers included
    for m, o in ((model, opt), (twin, twin_opt)):
        _ng_backward(m, 11)
        assert not MaxChangeStep(o, max_param_change=2.0)().skipped
    _assert_same(_state(model, opt), _state(twin, twin_opt))

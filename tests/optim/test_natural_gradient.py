"""OnlineNaturalGradient against Kaldi's fixture (``ngsgd_128x64_rank20``), a
float64 numpy transcription of the spec's step list (section 5.4), and the
spec's edge cases (section 8.3, item 10)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from kbind.optim import EPSILON, OnlineNaturalGradient
from kbind.optim import natural_gradient as ngmod
from tests.conftest import requires_gpu


# ---------------------------------------------------------------------------------------
# An independent float64 numpy transcription of lfmmi-spec.md 5.3-5.6
# ---------------------------------------------------------------------------------------

class RefNG:
    def __init__(self, rank, update_period, nsh=2000.0, alpha=4.0):
        self.rank, self.period, self.nsh, self.alpha = rank, update_period, nsh, alpha
        self.t, self.W, self.d, self.rho = 0, None, None, None

    def init_default(self, D):
        self.rank = min(self.rank, D - 1)
        R = self.rank
        self.rho, self.d = 1e-10, np.full(R, 1e-10)
        W = np.zeros((R, D))
        for r in range(R):
            cols = list(range(r, D, R))
            W[r, cols] = 1.0
            W[r, cols[0]] = 1.1
            W[r] /= np.linalg.norm(W[r])
        self.W = W * np.sqrt(1.0 / (2.0 + (D + R) * self.alpha / D))

    def precondition(self, X):
        N, D = X.shape
        if self.t == 0:
            tmp = RefNG(self.rank, self.period, self.nsh, self.alpha)
            tmp.init_default(D)
            tmp.t = 1
            for _ in range(1 if N <= tmp.rank else 3):
                tmp.precondition(X.copy())
            self.rank, self.W, self.d, self.rho = tmp.rank, tmp.W, tmp.d, tmp.rho
        tr0 = (X * X).sum()
        upd = self.t <= 10 or (self.t - 10) % self.period == 0
        Xh = self.step(X, tr0) if upd else X - (X @ self.W.T) @ self.W
        self.t += 1
        return Xh, (1.0 if tr0 <= 0 else np.sqrt(tr0 / (Xh * Xh).sum()))

    def step(self, X, tr0):
        N, D = X.shape
        R, a, W, rho, d = self.rank, self.alpha, self.W, self.rho, self.d
        eta = min(0.9, 1 - np.exp(-N / self.nsh))
        H = X @ W.T
        J = H.T @ X
        K, L = J @ J.T, H.T @ H
        ise = 1 / np.sqrt(1 / ((rho * (1 + a) + a * d.sum() / D) / d + 1))
        en, e1, dr = eta / N, 1 - eta, d + rho
        iLi = ise[:, None] * L * ise[None, :]
        Z = en ** 2 * ise[:, None] * K * ise[None, :] + en * e1 * (iLi * dr + dr[:, None] * iLi)
        Z += np.diag(e1 ** 2 * dr ** 2)
        zs = max(1.0, np.trace(Z))
        c, U = np.linalg.eigh(Z / zs)
        c, U = c[::-1] * zs, U[:, ::-1]
        reorth = c[0] > 1e6 * c[-1] or np.any(c < (rho * e1) ** 2)
        sc = np.sqrt(np.maximum(c, (rho * e1) ** 2))
        rho1 = (en * tr0 + e1 * (D * rho + d.sum()) - sc.sum()) / (D - R)
        fl = max(1e-10, 5e-4 * sc.max())
        rho1, d1 = max(rho1, fl), np.maximum(sc - rho1, fl)
        se1 = np.sqrt(1 / ((rho1 * (1 + a) + a * d1.sum() / D) / d1 + 1))
        W1 = ((en * se1 / sc)[:, None] * U.T * ise[None, :]) @ (J + (e1 / en * dr)[:, None] * W)
        if reorth:
            O = W1 @ W1.T / np.outer(se1, se1)
            if np.abs(O - np.eye(R)).max() > 1e-3:
                Ci = np.linalg.inv(np.linalg.cholesky(O))
                W1 = (se1[:, None] * Ci / se1[None, :]) @ W1
        Xh = X - H @ W
        self.W, self.d, self.rho = W1, d1, rho1
        return Xh


def _rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def _data(seed, K, N, D, decay=6.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((D, D)))[0]
    M = (3 * np.exp(-np.arange(D) / decay) + 0.1)[:, None] * Q.T
    return [(rng.standard_normal((N, D)) @ M + 0.5 * rng.standard_normal((1, D))).astype(dtype)
            for _ in range(K)]


# ---------------------------------------------------------------------------------------
# Kaldi fixture
# ---------------------------------------------------------------------------------------

def test_kaldi_fixture_128x64_rank20(kaldi_chain_dir):
    """Every call: X̂·scale, scale, ρ, d (sorted), WᵀW within 1e-4 of Kaldi."""
    case = kaldi_chain_dir / "ngsgd_128x64_rank20"
    meta = json.loads((case / "case.json").read_text())
    opts = meta["options"]
    X = np.load(case / "X.npy")
    X_hat, scales = np.load(case / "X_hat.npy"), np.load(case / "scales.npy")
    rho, d, WtW = np.load(case / "rho.npy"), np.load(case / "d.npy"), np.load(case / "WtW.npy")
    ng = OnlineNaturalGradient(rank=opts["rank"], update_period=opts["update_period"],
                               num_samples_history=opts["num_samples_history"],
                               alpha=opts["alpha"])
    assert X.dtype == np.float32
    prev_W = None
    for k, call in enumerate(meta["calls"]):
        assert int(ng.t) == call["t_before"]
        xh, s = ng.precondition_directions(torch.from_numpy(X[k]))
        assert xh.dtype == torch.float32
        assert _rel(xh.numpy() * float(s), X_hat[k] * scales[k]) <= 1e-4, k
        assert abs(float(s) - scales[k]) <= 1e-4 * scales[k], k
        assert abs(float(ng.rho) - rho[k]) <= 1e-4 * rho[k], k
        assert _rel(np.sort(ng.d.numpy())[::-1], d[k]) <= 1e-4, k
        W = ng.W.double().numpy()
        assert np.linalg.norm(W.T @ W - WtW[k]) <= 1e-4 * np.linalg.norm(WtW[k]), k
        if not call["updated"]:
            assert np.array_equal(W, prev_W)          # call 11: the stale W is kept
        prev_W = W


# ---------------------------------------------------------------------------------------
# float64 reference
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("N,D,rank,period,K", [
    (256, 50, 10, 4, 20),      # the spec's validation setting
    (8, 30, 12, 1, 6),         # N <= rank: one initialisation pass
    (64, 6, 40, 2, 14),        # rank >= D: clipped to D - 1
    (300, 20, 5, 3, 16),       # N > D: L = W Jᵀ
])
def test_matches_float64_reference(N, D, rank, period, K):
    data = _data(N * 7 + D, K, N, D)
    ref = RefNG(rank, period)
    ng = OnlineNaturalGradient(rank=rank, update_period=period)
    for X in data:
        xh_ref, s_ref = ref.precondition(X.copy())
        xh, s = ng.precondition_directions(torch.from_numpy(X))
        assert ng.rank == ref.rank
        assert _rel(xh.numpy(), xh_ref) <= 1e-8
        assert float(s) == pytest.approx(s_ref, rel=1e-9)
        assert float(ng.rho) == pytest.approx(ref.rho, rel=1e-8)
        assert _rel(ng.d.numpy(), ref.d) <= 1e-8
        W = ng.W.numpy()
        assert _rel(W.T @ W, ref.W.T @ ref.W) <= 1e-8


def test_scaled_output_keeps_the_norm_and_input_is_untouched():
    ng = OnlineNaturalGradient(rank=5, update_period=4)
    for X in _data(3, 15, 40, 12, dtype=np.float32):
        x = torch.from_numpy(X)
        keep = x.clone()
        xh, s = ng.precondition_directions(x)
        assert torch.equal(x, keep)
        assert float((s * xh).norm()) == pytest.approx(float(x.norm()), rel=1e-5)


def test_update_schedule_and_first_call_uses_the_data_four_times():
    ng = OnlineNaturalGradient(rank=4, update_period=3)
    data = _data(5, 20, 32, 10)
    states = []
    for X in data:
        ng.precondition_directions(torch.from_numpy(X))
        states.append(ng.W.clone())
    updated = [not torch.equal(a, b) for a, b in zip(states, states[1:])]  # calls 1..19
    # t = 1..10 update, then t = 13, 16, 19 (t - 10 divisible by 3)
    assert updated == [t <= 10 or (t - 10) % 3 == 0 for t in range(1, 20)]
    # Kaldi's Init: three passes on a fresh state, then the real (updating) pass
    X0 = torch.from_numpy(data[0])
    W, d, rho = ngmod._init_default(10, 4, 4.0, torch.float64, "cpu")
    for _ in range(4):
        _, _, (W, d, rho) = ngmod._step(X0, (X0 * X0).sum(), W, d, rho, True, ng.eta(32), 4.0,
                                        None)
    fresh = OnlineNaturalGradient(rank=4, update_period=3)
    fresh.precondition_directions(X0)
    assert torch.equal(fresh.W, W) and torch.equal(fresh.d, d)
    assert int(fresh.t) == 1


def test_eta():
    ng = OnlineNaturalGradient()
    assert ng.eta(3200) == pytest.approx(1 - np.exp(-1.6))
    assert ng.eta(10 ** 6) == 0.9
    assert OnlineNaturalGradient(num_minibatches_history=5.0).eta(100) == 0.2
    with pytest.raises(ValueError):
        OnlineNaturalGradient(num_minibatches_history=1.0)


# ---------------------------------------------------------------------------------------
# Edge cases (spec 8.3 item 10)
# ---------------------------------------------------------------------------------------

def test_dim_one_and_empty_are_no_ops():
    ng = OnlineNaturalGradient(rank=3)
    x = torch.randn(7, 1)
    xh, s = ng.precondition_directions(x)
    assert xh is x and float(s) == 1.0 and int(ng.t) == 0
    xh, s = ng.precondition_directions(torch.zeros(0, 5))
    assert xh.shape == (0, 5) and float(s) == 1.0 and int(ng.t) == 0


def test_all_zero_input_floors_rho_and_d():
    ng = OnlineNaturalGradient(rank=3, update_period=4)
    X = torch.zeros(16, 8, dtype=torch.float64)
    xh, s = ng.precondition_directions(X)
    assert float(s) == 1.0 and torch.equal(xh, X)
    # floors: max(ε, δ·max √c) = ε here (√c ≈ 2(1−η)ε)
    assert float(ng.rho) == pytest.approx(EPSILON, rel=1e-6)
    np.testing.assert_allclose(ng.d.numpy(), EPSILON, rtol=1e-6)


def test_underflowing_input_gives_a_finite_scale():
    # |X| ~ 1e-23: X*X underflows in float32, tr0 may be a denormal while ‖X̂‖² is 0
    ng = OnlineNaturalGradient(rank=2, update_period=4)
    gen = torch.Generator().manual_seed(0)
    hit = 0
    for k in range(16):
        X = torch.zeros(54, 4)
        X[:3] = torch.randn(3, 4, generator=gen) * 1e-23
        xh, s = ng.precondition_directions(X)
        hit += float((X * X).sum()) > 0 and float((xh * xh).sum()) == 0
        assert torch.isfinite(s) and torch.isfinite(xh).all() and torch.isfinite(ng.W).all()
    assert hit          # the case that made Kaldi's formula divide by zero occurred


def _orthonormality_error(W, d, rho, alpha):
    D = W.shape[1]
    beta = rho * (1 + alpha) + alpha * d.sum() / D
    se = np.sqrt(1 / (beta / d + 1))
    R = W / se[:, None]
    return np.abs(R @ R.T - np.eye(len(d))).max()


def test_reorthogonalization_cholesky_path():
    # rank-deficient data: most eigenvalues of Z are floored -> re-orthogonalization
    rng = np.random.default_rng(1)
    B = rng.standard_normal((3, 20))
    ng = OnlineNaturalGradient(rank=8, update_period=1)
    calls = []
    orig = ngmod._reorthogonalize

    def spy(*a, **k):
        calls.append(1)
        return orig(*a, **k)

    def no_gram_schmidt(*a, **k):
        raise AssertionError("Gram-Schmidt fallback used")

    orig_gs = ngmod._orthogonalize_rows
    ngmod._reorthogonalize, ngmod._orthogonalize_rows = spy, no_gram_schmidt
    try:
        for _ in range(5):
            X = rng.standard_normal((50, 3)) @ B
            ng.precondition_directions(torch.from_numpy(X))
            assert _orthonormality_error(ng.W.numpy(), ng.d.numpy(), float(ng.rho), 4.0) < 1e-6
    finally:
        ngmod._reorthogonalize, ngmod._orthogonalize_rows = orig, orig_gs
    assert calls


def test_reorthogonalization_gram_schmidt_fallback_is_seeded():
    # W1 with a zero row: the Cholesky fails -> Gram-Schmidt with a random row
    rng = np.random.default_rng(2)
    W1 = torch.from_numpy(rng.standard_normal((4, 9)))
    W1[2] = 0.0
    se1 = torch.tensor([0.3, 0.25, 0.2, 0.1], dtype=torch.float64)
    outs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(5)
        outs.append(ngmod._reorthogonalize(W1.clone(), se1, 1 / se1, g))
    assert torch.equal(outs[0], outs[1])
    R = (outs[0] / se1[:, None]).numpy()
    np.testing.assert_allclose(R @ R.T, np.eye(4), atol=1e-12)
    # the non-degenerate rows keep their direction (Gram-Schmidt order)
    r0 = W1[0].numpy() / np.linalg.norm(W1[0].numpy())
    np.testing.assert_allclose(R[0], r0, atol=1e-12)


def test_freeze_keeps_the_estimate_but_counts():
    data = _data(7, 14, 32, 10)
    ng = OnlineNaturalGradient(rank=4)
    for X in data[:12]:
        ng.precondition_directions(torch.from_numpy(X))
    W, d, rho = ng.W.clone(), ng.d.clone(), ng.rho.clone()
    ng.freeze(True)
    X = torch.from_numpy(data[12])
    xh, _ = ng.precondition_directions(X)
    assert torch.equal(ng.W, W) and torch.equal(ng.d, d) and torch.equal(ng.rho, rho)
    assert int(ng.t) == 13
    torch.testing.assert_close(xh, X - (X @ W.t()) @ W, rtol=0, atol=1e-12)
    ng.freeze(False)
    ng.precondition_directions(torch.from_numpy(data[13]))
    assert not torch.equal(ng.W, W)


def test_state_dict_restores_exactly():
    data = [torch.from_numpy(x) for x in _data(11, 30, 48, 16, dtype=np.float32)]
    a = OnlineNaturalGradient(rank=6, update_period=4)
    for X in data[:9]:
        a.precondition_directions(X)
    saved = copy.deepcopy(a.state_dict())
    b = OnlineNaturalGradient(rank=6, update_period=4)           # dim unknown yet
    b.load_state_dict(saved)
    assert b.dim == 16 and int(b.t) == 9
    for X in data[9:]:
        xa, sa = a.precondition_directions(X)
        xb, sb = b.precondition_directions(X)
        assert torch.equal(xa, xb) and torch.equal(sa, sb)
    assert torch.equal(a.W, b.W) and torch.equal(a.d, b.d) and int(a.t) == int(b.t) == 30
    # a state dict without NG state (Kaldi's model files) loads as "not initialised"
    c = OnlineNaturalGradient(rank=6, dim=16)
    c.load_state_dict({}, strict=True)
    assert not c.initialized
    with pytest.raises(RuntimeError):
        OnlineNaturalGradient(rank=6, dim=17).load_state_dict(saved)
    # the state of one that never ran (dimension unknown) loads as "not initialised"
    c.load_state_dict(OnlineNaturalGradient(rank=6).state_dict())
    assert not c.initialized and c.dim == 16


def test_wrong_dimension_is_rejected():
    ng = OnlineNaturalGradient(rank=2, dim=5)
    with pytest.raises(ValueError, match="5"):
        ng.precondition_directions(torch.randn(4, 6))


@requires_gpu
def test_cuda_matches_cpu():
    data = [torch.from_numpy(x) for x in _data(13, 16, 256, 64, dtype=np.float32)]
    a = OnlineNaturalGradient(rank=20, update_period=4)
    b = OnlineNaturalGradient(rank=20, update_period=4).cuda()
    for X in data:
        xa, sa = a.precondition_directions(X)
        xb, sb = b.precondition_directions(X.cuda())
        assert xb.is_cuda and sb.is_cuda
        assert _rel(xb.cpu().numpy() * float(sb), xa.numpy() * float(sa)) <= 1e-4


def test_factored_output_equals_the_explicit_one():
    data = [torch.from_numpy(x) for x in _data(17, 16, 40, 12, dtype=np.float32)]
    a = OnlineNaturalGradient(rank=5, update_period=3)
    b = OnlineNaturalGradient(rank=5, update_period=3)
    for X in data:
        xh, sa = a.precondition_directions(X)
        H, W, sb = b.precondition_factored(X)
        torch.testing.assert_close(X - H @ W, xh, rtol=0, atol=1e-6 * float(X.abs().max()))
        assert float(sb) == pytest.approx(float(sa), rel=1e-5)
        assert torch.equal(a.W, b.W) and torch.equal(a.d, b.d)
    # heavy cancellation (X in the estimated subspace) falls back to the explicit X̂
    B = torch.randn(2, 12, dtype=torch.float64)
    c = OnlineNaturalGradient(rank=4, update_period=1)
    d = OnlineNaturalGradient(rank=4, update_period=1)
    for _ in range(12):
        X = torch.randn(40, 2, dtype=torch.float64) @ B
        xh, sc = c.precondition_directions(X)
        _, _, sd = d.precondition_factored(X)
        assert float(sd) == pytest.approx(float(sc), rel=1e-9)

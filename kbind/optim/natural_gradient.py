"""Kaldi's online natural-gradient preconditioner (``OnlineNaturalGradient``).

Povey, Zhang & Khudanpur, "Parallel training of DNNs with natural gradient
and parameter averaging" (ICLR workshop 2015); Kaldi's
``nnet3/natural-gradient-online.{h,cc}``. Spec: ``lfmmi-spec.md`` section 5.

For a stream of matrices ``X_t`` (``N x D``; rows are the vectors whose
uncentred scatter is modelled: a layer's inputs, or its output derivatives)
the object keeps a low-rank-plus-identity Fisher estimate
``F_t = R_tᵀ D_t R_t + ρ_t I`` (``R_t``: ``rank`` orthonormal rows) and returns
``X̂_t = X_t − X_t W_tᵀ W_t`` with ``W_t = E_t^{1/2} R_t``, which equals
``β_t X_t (F_t + (α/D) tr(F_t) I)⁻¹`` (Woodbury), plus a ``scale`` such
that ``scale · X̂_t`` has the Frobenius norm of ``X_t``. Kaldi returns ``X̂``
unscaled and multiplies its learning rate by ``scale``; so does this class.

Exactly Kaldi's algorithm: the first call initialises from its own minibatch
(three passes over it, one if ``N <= rank``, on a fresh state, before the
real call; so the first minibatch is used four times); the estimate is
updated on calls ``t <= 10`` and then every ``update_period`` calls; the
forgetting factor ``η = min(0.9, 1 − exp(−N / num_samples_history))`` (or
``1 / num_minibatches_history``); the floors ``ε = 1e-10`` and
``δ · max √c`` (``δ = 5e-4``); re-orthogonalisation of ``R_{t+1}`` when ``Z``
is ill-conditioned (``c_max > 1e6 c_min``) or an eigenvalue was floored:
Cholesky (``C⁻¹``, lower triangular) if ``max |O − I| > 1e-3``, Gram-Schmidt
if the Cholesky fails or ``max(C⁻¹) >= 100``.

Precision. The ``N``-sized products (``H = X Wᵀ``, ``J = Hᵀ X``, ``X̂``,
``W_{t+1} = A B``) run in the dtype and on the device of ``X`` (float32 like
Kaldi's ``BaseFloat``). The ``R x R`` work (``Z_t``, its eigendecomposition,
``ρ``, ``d``, the re-orthogonalisation's Cholesky) runs on the CPU in float64;
Kaldi builds ``Z_t`` in double and does the rest in float, so this is at
least as accurate. The state ``d``, ``ρ`` is float64, ``W`` has the dtype of
``X``. On a GPU an updating call copies a few ``R x R`` matrices to the host
and back (one synchronisation, as Kaldi's own CUDA code); a non-updating call
(3 of 4 after the first 10) stays on the device without synchronising.

Randomness. The only random step is the Gram-Schmidt fallback, which draws a
random direction for a row that became exactly zero. Its generator is seeded
from ``seed`` and the call counter ``t``, so a restored state replays it
exactly.

State. The object is an ``nn.Module`` whose buffers ``W``, ``d``, ``rho``,
``t`` are the whole state: ``state_dict()`` / ``load_state_dict()`` save and
restore it exactly (``t == 0``: not initialised yet), ``.to(device)`` moves
it. Buffers are updated in place, never re-bound, so wrappers that hold
references to them (``DistributedDataParallel``'s buffer broadcast) see the
updates. Kaldi does not store this state in model files (every training job
re-initialises from its first minibatch); a state dict without these keys
therefore loads as "not initialised" instead of failing.

Example::

    ng = OnlineNaturalGradient(rank=20, update_period=4)
    for X in minibatches:                  # (N, D) tensors
        X_hat, scale = ng.precondition_directions(X)
        step = lr * scale * X_hat          # what Kaldi adds
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn

__all__ = ["OnlineNaturalGradient", "EPSILON", "DELTA", "NUM_INITIAL_UPDATES"]

EPSILON = 1e-10
"""Kaldi's ``epsilon_``: absolute floor on ``ρ`` and ``d`` (not configurable)."""
DELTA = 5e-4
"""Kaldi's ``delta_``: relative floor, times ``max √c`` (the header says 1e-5; code 5e-4)."""
NUM_INITIAL_UPDATES = 10
"""Calls ``t <= 10`` always update the Fisher estimate."""
_CONDITION_THRESHOLD = 1e6
_ORTHONORMAL_TOLERANCE = 1e-3
_CHOLESKY_INVERSE_BOUND = 100.0


class OnlineNaturalGradient(nn.Module):
    """Kaldi's ``OnlineNaturalGradient`` (see the module docstring).

    Args:
        rank: rank ``R`` of the Fisher estimate's non-identity part; clipped
            to ``D - 1`` when the dimension is known (Kaldi warns and clips).
        update_period: after the first 10 calls, update the estimate every
            this many calls (Kaldi's components use 4).
        num_samples_history: sets the forgetting factor
            ``η = min(0.9, 1 − exp(−N / num_samples_history))``.
        alpha: smoothing toward the identity (``α``, 4).
        dim: ``D``, if known: the state is allocated now (needed before
            wrapping the owner in ``DistributedDataParallel``); else on the
            first call.
        num_minibatches_history: if ``> 0`` (must then be ``> 1``),
            ``η = 1 / num_minibatches_history`` instead.
        seed: seeds the Gram-Schmidt fallback's random directions.
    """

    W: torch.Tensor
    d: torch.Tensor
    rho: torch.Tensor
    t: torch.Tensor

    def __init__(self, rank: int = 40, update_period: int = 1,
                 num_samples_history: float = 2000.0, alpha: float = 4.0,
                 dim: Optional[int] = None, num_minibatches_history: float = 0.0,
                 seed: int = 0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"OnlineNaturalGradient: rank must be >= 1, got {rank}")
        if update_period < 1:
            raise ValueError(f"OnlineNaturalGradient: update_period must be >= 1, got "
                             f"{update_period}")
        if not 0.0 < num_samples_history <= 1e6:
            raise ValueError(f"OnlineNaturalGradient: num_samples_history must be in (0, 1e6], "
                             f"got {num_samples_history}")
        if not (num_minibatches_history == 0.0 or 1.0 < num_minibatches_history < 1e6):
            raise ValueError(f"OnlineNaturalGradient: num_minibatches_history must be 0 or in "
                             f"(1, 1e6), got {num_minibatches_history}")
        if alpha < 0:
            raise ValueError(f"OnlineNaturalGradient: alpha must be >= 0, got {alpha}")
        self.requested_rank = int(rank)
        self.update_period = int(update_period)
        self.num_samples_history = float(num_samples_history)
        self.num_minibatches_history = float(num_minibatches_history)
        self.alpha = float(alpha)
        self.seed = int(seed)
        self.frozen = False
        self.dim: Optional[int] = None
        self._t_host: Optional[int] = 0      # host copy of t (no device sync per call)
        self.register_buffer("W", torch.zeros(0, 0))
        self.register_buffer("d", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("rho", torch.zeros((), dtype=torch.float64))
        self.register_buffer("t", torch.zeros((), dtype=torch.int64))
        if dim is not None:
            self._allocate(int(dim), torch.get_default_dtype(), torch.device("cpu"))

    # -- bookkeeping --------------------------------------------------------------------
    @property
    def rank(self) -> int:
        """The rank in use: ``min(rank, D - 1)`` once ``D`` is known."""
        if self.dim is None:
            return self.requested_rank
        return min(self.requested_rank, self.dim - 1)

    def extra_repr(self) -> str:
        return (f"rank={self.rank}, update_period={self.update_period}, "
                f"num_samples_history={self.num_samples_history}, alpha={self.alpha}, "
                f"dim={self.dim}")

    def _allocate(self, dim: int, dtype: torch.dtype, device: torch.device) -> None:
        if dim < 1:
            raise ValueError(f"OnlineNaturalGradient: dimension must be >= 1, got {dim}")
        self.dim = dim
        R = self.rank
        self.W = torch.zeros(R, dim, dtype=dtype, device=device)
        self.d = torch.zeros(R, dtype=torch.float64, device=device)
        self.rho = torch.zeros((), dtype=torch.float64, device=device)
        self.t = torch.zeros((), dtype=torch.int64, device=device)
        self._t_host = 0

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        names = ("W", "d", "rho", "t")
        present = [prefix + n in state_dict for n in names]
        if not any(present):
            # Saved without NG state (Kaldi never stores it): start uninitialised.
            self.t.zero_()
            self._t_host = 0
            return
        W = state_dict.get(prefix + "W")
        if W is not None and W.numel() == 0 and self.W.numel() > 0:
            # saved before its first call (dimension still unknown): not initialised
            self.reset()
            return
        if W is not None and W.dim() == 2 and tuple(W.shape) != tuple(self.W.shape):
            if self.dim is not None and W.numel() > 0 and W.shape[1] != self.dim:
                error_msgs.append(f"{prefix}W: state for dimension {W.shape[1]}, "
                                  f"this preconditioner has dimension {self.dim}")
                return
            if W.numel() > 0:
                self.dim = int(W.shape[1])
                self.W = self.W.new_zeros(W.shape)
                self.d = self.d.new_zeros(W.shape[0])
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        self._t_host = None

    def _counter(self) -> int:
        if self._t_host is None:
            self._t_host = int(self.t)
        return self._t_host

    @property
    def initialized(self) -> bool:
        return self._counter() > 0

    def reset(self) -> None:
        """Forget the estimate: the next call initialises from its minibatch
        (what every Kaldi training job does at its start)."""
        self.t.zero_()
        self._t_host = 0

    def freeze(self, frozen: bool = True) -> None:
        """Kaldi's ``Freeze``: while frozen the estimate is not updated (the
        counter still advances; an uninitialised object still initialises)."""
        self.frozen = bool(frozen)

    def eta(self, num_rows: int) -> float:
        """The forgetting factor ``η(N)``."""
        if self.num_minibatches_history > 0.0:
            return 1.0 / self.num_minibatches_history
        return min(0.9, 1.0 - math.exp(-num_rows / self.num_samples_history))

    def _updating(self, t: int) -> bool:
        return not self.frozen and (t <= NUM_INITIAL_UPDATES or
                                    (t - NUM_INITIAL_UPDATES) % self.update_period == 0)

    # -- the algorithm ------------------------------------------------------------------
    @torch.no_grad()
    def precondition_directions(self, X: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Kaldi's ``PreconditionDirections``: ``(X̂, scale)``.

        Args:
            X: ``(N, D)`` floating matrix (not modified).

        Returns:
            ``X̂`` (new tensor, unscaled) and ``scale``, a 0-dim tensor on
            ``X``'s device with ``‖scale · X̂‖_F = ‖X‖_F`` (1 if ``X`` or ``X̂``
            is zero).
            The state advances by one call. ``D == 1`` and ``N == 0`` are
            no-ops (``X`` returned, scale 1, state untouched).
        """
        out = self._call(X, factored=False)
        return (X, out[1]) if out[0] is None else out

    @torch.no_grad()
    def precondition_factored(self, X: torch.Tensor
                              ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor],
                                         torch.Tensor]:
        """The same call as :meth:`precondition_directions`, with ``X̂`` left
        factored: returns ``(H, W, scale)`` with ``X̂ = X − H W`` (``H`` is
        ``N x R``, ``W`` the ``R x D`` basis before this call's update).

        For callers that only need products with ``X̂`` (a layer's weight
        gradient ``ĝᵀ X̂ = ĝᵀ X − (ĝᵀ H) W``), which saves the ``N x D x R``
        product that forms ``X̂``. ``‖X̂‖²`` for the scale is
        ``‖X‖² − 2 tr(HᵀH) + tr(HᵀH W Wᵀ)`` (float64 from the ``R x R`` parts),
        or, when that cancels to under 1e-3 of ``‖X‖²``, from ``X̂`` formed
        explicitly. State and counter advance exactly as in
        :meth:`precondition_directions`. ``(None, None, 1)`` for the no-op
        cases (``D == 1``, ``N == 0``: ``X̂ = X``).
        """
        return self._call(X, factored=True)

    def _call(self, X: torch.Tensor, factored: bool):
        if X.dim() != 2 or not X.is_floating_point():
            raise ValueError(f"precondition_directions: expected a 2-D floating tensor, got "
                             f"{tuple(X.shape)} {X.dtype}")
        N, D = X.shape
        one = torch.ones((), dtype=X.dtype, device=X.device)
        if D == 1 or N == 0:
            return (None, None, one) if factored else (None, one)
        if self.dim is None or self.W.numel() == 0:
            if self.dim is not None and self.dim != D:
                raise ValueError(f"precondition_directions: X has {D} columns, the "
                                 f"preconditioner was made for {self.dim}")
            self._allocate(D, X.dtype, X.device)
        elif D != self.dim:
            raise ValueError(f"precondition_directions: X has {D} columns, the preconditioner "
                             f"was made for {self.dim}")
        if self.W.device != X.device or self.W.dtype != X.dtype:
            self.W.data = self.W.data.to(device=X.device, dtype=X.dtype)
        t = self._counter()
        if t == 0:
            self._init(X)
        tr0 = _sumsq(X)
        updating = self._updating(t)
        W_old = self.W.clone() if (factored and updating) else self.W
        X_hat, H = self._internal(X, tr0, updating, t, factored)
        if factored:
            final = _factored_sumsq(X, H, W_old, tr0)
        else:
            final = _sumsq(X_hat)
        # Kaldi: 1 if tr0 <= 0. Also 1 if X̂ underflowed to 0 (|X| ~ 1e-23 in float32),
        # where Kaldi's sqrt(tr0 / 0) would turn the update into inf/NaN.
        scale = torch.where((tr0 > 0) & (final > 0), torch.sqrt(tr0 / final), one).to(X.dtype)
        self.t += 1
        self._t_host = t + 1
        if factored:
            return H, W_old, scale
        return X_hat, scale

    def _init(self, X0: torch.Tensor) -> None:
        """Kaldi's ``Init``: ``InitDefault`` and 3 (or 1) passes over ``X0`` on a
        copy (counter 1, 2, 3: always updating); this object's counter stays 0."""
        N, D = X0.shape
        R = self.rank
        W, d, rho = _init_default(D, R, self.alpha, X0.dtype, X0.device)
        iters = 1 if N <= R else 3
        for i in range(iters):
            _, _, state = _step(X0, _sumsq(X0), W, d, rho, True, self.eta(N), self.alpha,
                                self._generator(i + 1), want_hat=False)
            W, d, rho = state
        self.W.copy_(W)
        self.d.copy_(d.to(self.d.device))
        self.rho.copy_(rho.to(self.rho.device))

    def _generator(self, t: int) -> torch.Generator:
        g = torch.Generator()
        g.manual_seed((self.seed * 1_000_003 + 7919 * t + 1) % (2 ** 63))
        return g

    def _internal(self, X, tr0, updating: bool, t: int, factored: bool = False):
        X_hat, H, state = _step(X, tr0, self.W, self.d, self.rho, updating,
                                self.eta(X.shape[0]), self.alpha,
                                self._generator(t + 1) if updating else None,
                                want_hat=not factored)
        if state is not None:
            W1, d1, rho1 = state
            self.W.copy_(W1)
            self.d.copy_(d1.to(self.d.device))
            self.rho.copy_(rho1.to(self.rho.device))
        return X_hat, H


def _sumsq(X: torch.Tensor) -> torch.Tensor:
    """``‖X‖²_F`` without an ``N x D`` temporary (Kaldi's ``TraceMatMat(X, X, kTrans)``)."""
    return torch.linalg.vector_norm(X).square()


def _factored_sumsq(X: torch.Tensor, H: torch.Tensor, W: torch.Tensor,
                    tr0: torch.Tensor) -> torch.Tensor:
    """``‖X − H W‖²`` with ``H = X Wᵀ``: ``‖X‖² − 2 tr(HᵀH) + tr(HᵀH W Wᵀ)``."""
    small = torch.cat([(H.t() @ H).reshape(-1), (W @ W.t()).reshape(-1)]).double()
    R = H.shape[1]
    HtH, WWt = small[:R * R].view(R, R), small[R * R:].view(R, R)
    tr0d = tr0.double()
    final = tr0d - 2.0 * torch.trace(HtH) + torch.sum(HtH * WWt)
    if not bool(final > 1e-3 * tr0d):       # heavy cancellation (or zero): form X̂
        return _sumsq(torch.addmm(X, H, W, alpha=-1.0))
    return final.to(X.dtype)


def _init_orthonormal_special(R: int, D: int) -> torch.Tensor:
    """Kaldi's ``InitOrthonormalSpecial``: row r has entries at columns r, r+R,
    r+2R, ...: 1.1 at the first, 1 elsewhere, normalised (float64, CPU)."""
    M = torch.zeros(R, D, dtype=torch.float64)
    for r in range(R):
        cols = list(range(r, D, R))
        norm = 1.0 / math.sqrt(1.1 * 1.1 + len(cols) - 1)
        M[r, cols] = norm
        M[r, cols[0]] = 1.1 * norm
    return M


def _init_default(D: int, R: int, alpha: float, dtype, device):
    """``InitDefault``: ``ρ = ε``, ``d = ε``, ``W = sqrt(1/(2 + (D+R)α/D)) R_0``."""
    E = 1.0 / (2.0 + (D + R) * alpha / D)
    W = (_init_orthonormal_special(R, D) * math.sqrt(E)).to(dtype=dtype, device=device)
    d = torch.full((R,), EPSILON, dtype=torch.float64)
    rho = torch.tensor(EPSILON, dtype=torch.float64)
    return W, d, rho


def _compute_et(d: torch.Tensor, beta: float):
    """``e_i = 1 / (β / d_i + 1)``, ``√e``, ``1/√e`` (float64)."""
    e = 1.0 / (beta / d + 1.0)
    se = torch.sqrt(e)
    return e, se, 1.0 / se


def _orthogonalize_rows(M: torch.Tensor, gen: Optional[torch.Generator]) -> None:
    """Kaldi's ``MatrixBase::OrthogonalizeRows`` (Gram-Schmidt, float64, in place)."""
    R = M.shape[0]
    for i in range(R):
        counter = 0
        while True:
            start = float(M[i] @ M[i])
            if not math.isfinite(start) or start == 0.0:
                M[i] = torch.randn(M.shape[1], dtype=M.dtype, generator=gen)
                counter += 1
                if counter > 100:
                    raise FloatingPointError("OnlineNaturalGradient: loop while "
                                             "orthogonalizing rows")
                continue
            if i > 0:
                for j in range(i):
                    M[i] -= float(M[i] @ M[j]) * M[j]
            end = float(M[i] @ M[i])
            if end <= 0.01 * start:
                if end == 0.0:
                    M[i] = torch.randn(M.shape[1], dtype=M.dtype, generator=gen)
                counter += 1
                if counter > 100:
                    raise FloatingPointError("OnlineNaturalGradient: loop while "
                                             "orthogonalizing rows")
            else:
                M[i] /= math.sqrt(end)
                break


def _step(X: torch.Tensor, tr0: torch.Tensor, W: torch.Tensor, d: torch.Tensor,
          rho: torch.Tensor, updating: bool, eta: float, alpha: float,
          gen: Optional[torch.Generator], want_hat: bool = True):
    """``PreconditionDirectionsInternal``: ``(X̂ or None, H, (W1, d1, ρ1) or None)``.

    ``X̂ = X − H W`` uses the old ``W`` (formed only if ``want_hat``); the new
    state is returned, not stored.
    """
    N, D = X.shape
    R = W.shape[0]
    H = X @ W.t()                                               # N x R
    if not updating:
        return (torch.addmm(X, H, W, alpha=-1.0) if want_hat else None), H, None
    J = H.t() @ X                                               # R x D
    if N > D:
        L = W @ J.t()                                           # = Hᵀ H
    else:
        L = H.t() @ H
    K = J @ J.t()
    X_hat = torch.addmm(X, H, W, alpha=-1.0) if want_hat else None
    # R x R work on the CPU in float64 (one device -> host copy)
    small = torch.cat([K.reshape(-1), L.reshape(-1), tr0.reshape(1)]).to("cpu", torch.float64)
    K64 = small[:R * R].view(R, R)
    L64 = small[R * R:2 * R * R].view(R, R)
    trXX = float(small[-1])
    d = d.to("cpu", torch.float64)
    rho = float(rho)
    K64 = 0.5 * (K64 + K64.t())
    L64 = 0.5 * (L64 + L64.t())

    beta = rho * (1.0 + alpha) + alpha * float(d.sum()) / D
    e, se, ise = _compute_et(d, beta)
    etaN = eta / N
    eta1 = 1.0 - eta
    drho = d + rho
    iLi = ise[:, None] * L64 * ise[None, :]
    Z = (etaN * etaN) * (ise[:, None] * K64 * ise[None, :]) \
        + (etaN * eta1) * (iLi * drho[None, :] + drho[:, None] * iLi)
    Z += torch.diag(eta1 * eta1 * drho * drho)
    zs = max(1.0, float(torch.trace(Z)))
    c, U = torch.linalg.eigh(Z / zs)
    c = c.flip(0) * zs                                          # descending
    U = U.flip(1)
    must_reorth = bool(c[0] > _CONDITION_THRESHOLD * c[-1])
    c_floor = (rho * eta1) ** 2
    if bool((c < c_floor).any()):
        must_reorth = True
        c = c.clamp_min(c_floor)
    sqrt_c = torch.sqrt(c)
    rho1 = (etaN * trXX + eta1 * (D * rho + float(d.sum())) - float(sqrt_c.sum())) / (D - R)
    d1 = sqrt_c - rho1
    floor_val = max(EPSILON, DELTA * float(sqrt_c.max()))
    rho1 = max(rho1, floor_val)
    d1 = d1.clamp_min(floor_val)
    beta1 = rho1 * (1.0 + alpha) + alpha * float(d1.sum()) / D
    if not beta1 > 0:
        raise FloatingPointError(f"OnlineNaturalGradient: beta_t1 = {beta1} (non-finite input?)")
    e1, se1, ise1 = _compute_et(d1, beta1)
    # B = J + diag((1−η)/(η/N) (d+ρ)) W;  A = diag((η/N) √e1 / √c) Uᵀ diag(1/√e)
    w_coeff = (eta1 / etaN) * drho
    A = (etaN * se1 / sqrt_c)[:, None] * U.t() * ise[None, :]
    dev, dt = X.device, X.dtype
    B = torch.addcmul(J, w_coeff.to(device=dev, dtype=dt)[:, None], W)
    W1 = A.to(device=dev, dtype=dt) @ B
    if must_reorth:
        W1 = _reorthogonalize(W1, se1, ise1, gen)
    return X_hat, H, (W1, d1, torch.tensor(rho1, dtype=torch.float64))


def _reorthogonalize(W1: torch.Tensor, se1: torch.Tensor, ise1: torch.Tensor,
                     gen: Optional[torch.Generator]) -> torch.Tensor:
    """``ReorthogonalizeRt1``: make ``R_{t+1} = E^{-1/2} W_{t+1}`` orthonormal again."""
    R = W1.shape[0]
    O = (W1 @ W1.t()).to("cpu", torch.float64)
    O = ise1[:, None] * O * ise1[None, :]
    eye = torch.eye(R, dtype=torch.float64)
    if float((O - eye).abs().max()) <= _ORTHONORMAL_TOLERANCE:
        return W1
    C_inv = None
    try:
        C, info = torch.linalg.cholesky_ex(0.5 * (O + O.t()))
        if int(info) == 0:
            C_inv = torch.linalg.solve_triangular(C, eye, upper=False)
            if not bool(torch.isfinite(C_inv).all()) or \
                    not float(C_inv.max()) < _CHOLESKY_INVERSE_BOUND:
                C_inv = None
    except RuntimeError:
        C_inv = None
    if C_inv is None:
        M = W1.to("cpu", torch.float64).clone()
        _orthogonalize_rows(M, gen)
        return (se1[:, None] * M).to(device=W1.device, dtype=W1.dtype)
    # (E^{1/2} C⁻¹ E^{-1/2}) W1, lower triangular (diagonal factors cancel)
    T = se1[:, None] * C_inv * ise1[None, :]
    return T.to(device=W1.device, dtype=W1.dtype) @ W1

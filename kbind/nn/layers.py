"""Kaldi nnet3 building blocks for TDNN / TDNN-F acoustic models.

Tensors are batch-first ``(B, T, D)``. Layers that look at other frames
(:class:`TdnnAffine`, :class:`TdnnLayer`, :class:`TdnnfLayer`) work, like
nnet3, on explicit *time indexes*: ``forward(x, in_times, out_times)`` takes
``x[:, j]`` to be the frame at time ``in_times[j]`` and returns the frames at
``out_times`` only. A model asks for its outputs at ``t = 0, 3, 6, …`` and
walks back through the layers (``input_times(out_times)``), so every layer
is computed exactly at the frames Kaldi computes: a layer with time stride 3
only at multiples of 3, and the last stride-1 layer only where the next
layer reads it. This matters for numbers, not just speed: batch-norm
statistics are taken over exactly those frames. Called without times, a
layer does a "valid" convolution: input frames ``0..T-1``, output at every
time whose inputs all exist.

TDNN (Kaldi ``TdnnComponent``): ``y(t) = W [x(t+o₁); …; x(t+o_k)] + b`` with
``W`` stored as ``(out, k·in)``, offset-major like Kaldi's linear params.
Init: ``W ~ N(0, 1/(in·k))``, ``b ~ N(0, 1)`` (``InitFromConfig``).

TDNN-F layer (xconfig ``tdnnf-layer``, stride ``s``)::

    h(t) = W₁ [x(t−s); x(t)]                 linear, no bias, semi-orthogonal
    z(t) = W₂ [h(t); h(t+s)] + b             affine
    y(t) = dropout(batchnorm(relu(z(t)))) + bypass_scale · x(t)

``s = 0`` uses the single offset 0 in both (a factorised 1×1 layer). Its
context is ``s`` on each side.

Batch norm (Kaldi ``BatchNormComponent``, no γ/β): in training,
``μ = mean(x)``, ``var = max(0, mean(x²) − μ²)`` over all frames of the
minibatch, ``y = (x − μ) · target_rms · (var + ε)^(−1/2)`` (ε = 1e-3). Each
training forward adds ``count += N``, ``sum += Σx``, ``sumsq += Σx²`` (double
precision); the trainer multiplies the stats by 0.8 after each minibatch
(:func:`scale_batchnorm_stats`, Kaldi's ``batchnorm_stats_scale``). In eval
mode (Kaldi's test mode) ``μ = sum/count``, ``var = max(0, sumsq/count − μ²)``
and the same formula is used. Kaldi also zeroes the stats at the start of
each training job (``zero_component_stats``); with the 0.8 decay that only
changes the weight of minibatches ~5 or more back, which is negligible.

Continuous dropout (``GeneralDropoutComponent continuous=true``, what
``dropout-per-dim-continuous`` selects): one mask per sequence and dimension,
shared over time, ``m = 1 − 2p + 4p·U(0,1)`` ∈ [1−2p, 1+2p]. Non-continuous:
``m = 1[U ≥ p] / (1 − p)``. Identity in eval mode and when ``p = 0``.

Dropout schedules follow ``steps/libs/nnet3/train/common.py``: the option
``'0,0@0.20,0.5@0.50,0'`` is a piecewise-linear proportion over the fraction
of training data seen (first value at 0, last at 1, a middle value without
``@`` sits at 0.5); ``'pat1=sched1 pat2=sched2'`` gives per-component
schedules, applied in order to module names matching the glob pattern.

Every affine/linear component (:class:`TdnnAffine`) is trained with Kaldi's
NG-SGD unless built with ``natural_gradient=False``
(:mod:`kbind.nn.natural_gradient`). Not modelled: ReLU self-repair (a
random derivative tweak, off in parity tests). Per-component training
constants (``learning_rate_factor``, ``max_change``, ``l2_regularize``) are
attributes of the modules that own parameters; :func:`component_param_groups`
turns them into optimizer parameter groups.
"""

from __future__ import annotations

import fnmatch
import functools
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .natural_gradient import NaturalGradientLinear

__all__ = [
    "KaldiBatchNorm", "GeneralDropout", "TdnnAffine", "TdnnLayer", "TdnnfLayer",
    "PrefinalLayer", "OutputLayer", "scale_batchnorm_stats", "component_param_groups",
    "parse_dropout_schedule", "dropout_proportions", "dropout_proportion",
    "set_dropout_proportions", "Times",
]

Times = Tuple[int, ...]
"""Sorted, distinct frame times (Kaldi's ``t`` index) of the rows of a tensor."""


def _union_times(times: Sequence[int], offsets: Sequence[int]) -> Times:
    return tuple(sorted({t + o for t in times for o in offsets}))


@functools.lru_cache(maxsize=1024)
def _tap_selector(in_times: Times, out_times: Times, offset: int
                  ) -> Union[slice, np.ndarray]:
    """Positions in ``in_times`` of ``out_times + offset``: a slice if regular."""
    src = np.asarray(in_times, dtype=np.int64)
    want = np.asarray(out_times, dtype=np.int64) + offset
    pos = np.searchsorted(src, want)
    ok = (pos < len(src))
    ok[ok] = src[pos[ok]] == want[ok]
    if not ok.all():
        missing = int(want[~ok][0])
        raise ValueError(f"TDNN splicing needs the input frame at t={missing}, which is not in "
                         f"the input times [{in_times[0]}..{in_times[-1]}] "
                         f"(offset {offset}); give more context")
    if len(pos) == 1:
        return slice(int(pos[0]), int(pos[0]) + 1)
    steps = np.diff(pos)
    if (steps == steps[0]).all() and steps[0] > 0:
        return slice(int(pos[0]), int(pos[-1]) + 1, int(steps[0]))
    return pos


@functools.lru_cache(maxsize=1024)
def _tap_index(in_times: Times, out_times: Times, offset: int, device: torch.device
               ) -> Union[slice, torch.Tensor]:
    sel = _tap_selector(in_times, out_times, offset)
    if isinstance(sel, slice):
        return sel
    return torch.from_numpy(sel).to(device)


def _select(x: torch.Tensor, index: Union[slice, torch.Tensor]) -> torch.Tensor:
    if isinstance(index, slice):
        if index.start == 0 and index.stop == x.shape[1] and index.step in (None, 1):
            return x
        return x[:, index]
    return x.index_select(1, index)


def _valid_times(num_frames: int, left: int, right: int) -> Tuple[Times, Times]:
    """Times for a layer called without times: input 0..T-1, every computable output."""
    if num_frames - left - right <= 0:
        raise ValueError(f"{num_frames} input frames are too few for context "
                         f"(left {left}, right {right})")
    return tuple(range(num_frames)), tuple(range(left, num_frames - right))


class KaldiBatchNorm(nn.Module):
    """Kaldi's ``BatchNormComponent``: batch norm without γ/β (see module docstring).

    Args:
        dim: feature dimension (last axis).
        target_rms: rms of the output (Kaldi ``target-rms``, default 1).
        epsilon: added to the variance (Kaldi default 1e-3).

    Buffers ``count``, ``stats_sum``, ``stats_sumsq`` (float64) are Kaldi's
    ``count_``, ``stats_sum_``, ``stats_sumsq_``.
    """

    def __init__(self, dim: int, target_rms: float = 1.0, epsilon: float = 1e-3):
        super().__init__()
        if target_rms <= 0 or epsilon <= 0:
            raise ValueError("KaldiBatchNorm: target_rms and epsilon must be positive")
        self.dim = dim
        self.target_rms = float(target_rms)
        self.epsilon = float(epsilon)
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("stats_sum", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("stats_sumsq", torch.zeros(dim, dtype=torch.float64))

    def extra_repr(self) -> str:
        return f"{self.dim}, target_rms={self.target_rms}, epsilon={self.epsilon}"

    def scale_stats(self, factor: float) -> None:
        """Multiply the stored statistics by ``factor`` (0 resets them)."""
        if factor == 0:
            self.count.zero_()
            self.stats_sum.zero_()
            self.stats_sumsq.zero_()
        else:
            self.count.mul_(factor)
            self.stats_sum.mul_(factor)
            self.stats_sumsq.mul_(factor)

    def test_mode_scale_offset(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(scale, offset)`` with ``y = x·scale + offset`` in eval mode (float64)."""
        # Without stats Kaldi invents random ones (with a warning); zero mean and
        # unit variance keep a fresh model usable and deterministic.
        has_stats = self.count > 0
        count = torch.where(has_stats, self.count, torch.ones_like(self.count))
        mean = torch.where(has_stats, self.stats_sum / count, torch.zeros_like(self.stats_sum))
        var = torch.where(has_stats, (self.stats_sumsq / count - mean * mean).clamp_min(0.0),
                          torch.ones_like(self.stats_sum))
        scale = (var + self.epsilon).rsqrt() * self.target_rms
        return scale, -mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"KaldiBatchNorm({self.dim}) got input of dim {x.shape[-1]}")
        if not self.training:
            scale, offset = self.test_mode_scale_offset()
            return torch.addcmul(offset.to(x.dtype), x, scale.to(x.dtype))
        rows = x.reshape(-1, self.dim)
        if rows.shape[0] == 0:
            return x
        mean = rows.mean(0)
        mean_sq = (rows * rows).mean(0)
        var = (mean_sq - mean * mean).clamp_min(0.0)
        scale = (var + self.epsilon).rsqrt() * self.target_rms
        with torch.no_grad():
            n = rows.shape[0]
            self.count += n
            self.stats_sum += mean.detach().double() * n
            self.stats_sumsq += mean_sq.detach().double() * n
        return (x - mean) * scale


class GeneralDropout(nn.Module):
    """Kaldi's ``GeneralDropoutComponent`` with ``time-period=0``.

    One mask row per sequence, shared over all frames. ``continuous=True``:
    scales uniform on ``[1−2p, 1+2p]``; else Bernoulli keep with ``1/(1−p)``.
    ``proportion`` is meant to be changed during training
    (:func:`set_dropout_proportions`).
    """

    def __init__(self, dim: int, proportion: float = 0.0, continuous: bool = True):
        super().__init__()
        self.dim = dim
        self.proportion = float(proportion)
        self.continuous = continuous

    def extra_repr(self) -> str:
        return f"{self.dim}, proportion={self.proportion}, continuous={self.continuous}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.proportion
        if not self.training or p == 0.0:
            return x
        if not 0.0 <= p <= (0.5 if self.continuous else 1.0 - 1e-6):
            raise ValueError(f"GeneralDropout: invalid dropout proportion {p}")
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
        u = torch.rand(shape, dtype=x.dtype, device=x.device)
        if self.continuous:
            mask = u.mul_(4.0 * p).add_(1.0 - 2.0 * p)
        else:
            mask = (u >= p).to(x.dtype).div_(1.0 - p)
        return x * mask


class TdnnAffine(NaturalGradientLinear):
    """Kaldi's ``TdnnComponent``: an affine map of frames spliced at time offsets.

    With ``time_offsets=(0,)`` it is a per-frame Linear/Affine component.
    Trained with NG-SGD by default, as Kaldi's ``TdnnComponent``
    (``use-natural-gradient=true``): the spliced input ``[x(t+o₁) | … | x(t+o_k)]``
    (plus a ones column if there is a bias) and the output derivative are
    preconditioned (:class:`kbind.nn.NaturalGradientLinear`), with
    ``rank_in = min(20, (k·input_dim + 1) // 2)``, ``rank_out =
    min(80, (output_dim + 1) // 2)``, update period 4.

    Args:
        input_dim: per-frame input dim.
        output_dim: output dim.
        time_offsets: sorted distinct offsets, e.g. ``(-1, 0, 1)``.
        bias: whether there is a bias (Kaldi ``use-bias``).
        orthonormal_constraint: 0 none, ``< 0`` floating scale, ``> 0`` fixed
            (used by :func:`kbind.nn.apply_orthonormal_constraints`).
        param_stddev: weight init stddev, default ``1/sqrt(input_dim·#offsets)``.
        bias_stddev: bias init stddev (Kaldi 1.0).
        learning_rate_factor, max_change, l2_regularize: Kaldi's per-component
            training constants, read by :func:`component_param_groups`.
        natural_gradient: NG-SGD on (Kaldi's default) or off (plain gradient).

    ``weight`` is ``(output_dim, #offsets·input_dim)``, offset-major.
    """

    def __init__(self, input_dim: int, output_dim: int, time_offsets: Sequence[int] = (0,),
                 bias: bool = True, orthonormal_constraint: float = 0.0,
                 param_stddev: Optional[float] = None, bias_stddev: float = 1.0,
                 learning_rate_factor: float = 1.0, max_change: float = 0.75,
                 l2_regularize: float = 0.0, natural_gradient: bool = True):
        offsets = tuple(int(o) for o in time_offsets)
        if not offsets or list(offsets) != sorted(set(offsets)):
            raise ValueError(f"TdnnAffine: time_offsets must be sorted and distinct, "
                             f"got {time_offsets}")
        if param_stddev is None:
            param_stddev = 1.0 / math.sqrt(input_dim * len(offsets))
        super().__init__(len(offsets) * input_dim, output_dim, bias=bias,
                         natural_gradient=natural_gradient, param_stddev=param_stddev,
                         bias_stddev=bias_stddev, learning_rate_factor=learning_rate_factor,
                         max_change=max_change, l2_regularize=l2_regularize,
                         orthonormal_constraint=orthonormal_constraint)
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.time_offsets = offsets

    def extra_repr(self) -> str:
        return (f"{self.input_dim}, {self.output_dim}, time_offsets={self.time_offsets}, "
                f"bias={self.bias is not None}, "
                f"orthonormal_constraint={self.orthonormal_constraint}, "
                f"natural_gradient={self.natural_gradient}")

    @property
    def context(self) -> Tuple[int, int]:
        """``(left, right)`` frames of context."""
        return max(0, -self.time_offsets[0]), max(0, self.time_offsets[-1])

    def input_times(self, out_times: Times) -> Times:
        """The input times needed to compute ``out_times``."""
        return _union_times(out_times, self.time_offsets)

    def forward(self, x: torch.Tensor, in_times: Optional[Times] = None,
                out_times: Optional[Times] = None) -> torch.Tensor:
        if in_times is None:
            in_times, out_times = _valid_times(x.shape[1], *self.context)
        taps = [_select(x, _tap_index(in_times, out_times, o, x.device))
                for o in self.time_offsets]
        spliced = taps[0] if len(taps) == 1 else torch.cat(taps, dim=-1)
        return self.linear(spliced)


class TdnnLayer(nn.Module):
    """Kaldi's ``relu-batchnorm[-dropout]-layer`` over spliced frames.

    affine(time_offsets) → ReLU → batch norm → dropout (if ``dropout`` is not
    ``None``; continuous, per sequence).
    """

    def __init__(self, input_dim: int, dim: int, time_offsets: Sequence[int] = (-1, 0, 1),
                 dropout: Optional[float] = None, target_rms: float = 1.0,
                 max_change: float = 0.75, l2_regularize: float = 0.0,
                 natural_gradient: bool = True):
        super().__init__()
        self.affine = TdnnAffine(input_dim, dim, time_offsets, max_change=max_change,
                                 l2_regularize=l2_regularize, natural_gradient=natural_gradient)
        self.batchnorm = KaldiBatchNorm(dim, target_rms=target_rms)
        self.dropout = GeneralDropout(dim, dropout) if dropout is not None else None

    @property
    def context(self) -> Tuple[int, int]:
        return self.affine.context

    def input_times(self, out_times: Times) -> Times:
        return self.affine.input_times(out_times)

    def forward(self, x: torch.Tensor, in_times: Optional[Times] = None,
                out_times: Optional[Times] = None) -> torch.Tensor:
        y = self.batchnorm(torch.relu(self.affine(x, in_times, out_times)))
        return self.dropout(y) if self.dropout is not None else y


class TdnnfLayer(nn.Module):
    """Kaldi's ``tdnnf-layer`` (``context=default``); see the module docstring.

    Args:
        dim: input and output dim (the bypass needs them equal).
        bottleneck_dim: dim of the semi-orthogonal factor.
        time_stride: ``s``; offsets ``(−s, 0)`` then ``(0, s)``; 0 means 1×1.
        bypass_scale: weight of the input added to the output (0.66).
        dropout: initial continuous-dropout proportion, ``None`` for no
            dropout component (Kaldi's ``dropout-proportion=-1``).
    """

    def __init__(self, dim: int, bottleneck_dim: int, time_stride: int,
                 bypass_scale: float = 0.66, dropout: Optional[float] = 0.0,
                 max_change: float = 0.75, l2_regularize: float = 0.0,
                 natural_gradient: bool = True):
        super().__init__()
        if time_stride < 0:
            raise ValueError(f"TdnnfLayer: time_stride must be >= 0, got {time_stride}")
        s = int(time_stride)
        self.time_stride = s
        self.bypass_scale = float(bypass_scale)
        self.linear = TdnnAffine(dim, bottleneck_dim, (-s, 0) if s else (0,), bias=False,
                                 orthonormal_constraint=-1.0, max_change=max_change,
                                 l2_regularize=l2_regularize, natural_gradient=natural_gradient)
        self.affine = TdnnAffine(bottleneck_dim, dim, (0, s) if s else (0,),
                                 max_change=max_change, l2_regularize=l2_regularize,
                                 natural_gradient=natural_gradient)
        self.batchnorm = KaldiBatchNorm(dim)
        self.dropout = GeneralDropout(dim, dropout) if dropout is not None else None

    @property
    def context(self) -> Tuple[int, int]:
        return self.time_stride, self.time_stride

    def input_times(self, out_times: Times) -> Times:
        bottleneck_times = self.affine.input_times(out_times)
        return tuple(sorted(set(self.linear.input_times(bottleneck_times)) | set(out_times)))

    def forward(self, x: torch.Tensor, in_times: Optional[Times] = None,
                out_times: Optional[Times] = None) -> torch.Tensor:
        if in_times is None:
            in_times, out_times = _valid_times(x.shape[1], *self.context)
        bottleneck_times = self.affine.input_times(out_times)
        h = self.linear(x, in_times, bottleneck_times)
        y = self.batchnorm(torch.relu(self.affine(h, bottleneck_times, out_times)))
        if self.dropout is not None:
            y = self.dropout(y)
        bypass = _select(x, _tap_index(in_times, out_times, 0, x.device))
        return y + self.bypass_scale * bypass


class PrefinalLayer(nn.Module):
    """Kaldi's ``prefinal-layer``: affine → ReLU → BN → linear (semi-orthogonal) → BN."""

    def __init__(self, input_dim: int, big_dim: int, small_dim: int,
                 max_change: float = 0.75, l2_regularize: float = 0.0,
                 natural_gradient: bool = True):
        super().__init__()
        self.affine = TdnnAffine(input_dim, big_dim, max_change=max_change,
                                 l2_regularize=l2_regularize, natural_gradient=natural_gradient)
        self.batchnorm1 = KaldiBatchNorm(big_dim)
        self.linear = TdnnAffine(big_dim, small_dim, bias=False, orthonormal_constraint=-1.0,
                                 max_change=max_change, l2_regularize=l2_regularize,
                                 natural_gradient=natural_gradient)
        self.batchnorm2 = KaldiBatchNorm(small_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.batchnorm2(self.linear(self.batchnorm1(torch.relu(self.affine(x)))))


class OutputLayer(nn.Module):
    """Kaldi's ``output-layer``: a zero-initialised affine, optionally log-softmax.

    ``include_log_softmax=False`` for the chain output; ``True`` (with
    ``learning_rate_factor = 0.5 / xent_regularize``) for the xent output.
    """

    def __init__(self, input_dim: int, num_pdfs: int, include_log_softmax: bool,
                 learning_rate_factor: float = 1.0, max_change: float = 1.5,
                 l2_regularize: float = 0.0, natural_gradient: bool = True):
        super().__init__()
        self.include_log_softmax = include_log_softmax
        self.affine = TdnnAffine(input_dim, num_pdfs, param_stddev=0.0, bias_stddev=0.0,
                                 learning_rate_factor=learning_rate_factor,
                                 max_change=max_change, l2_regularize=l2_regularize,
                                 natural_gradient=natural_gradient)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine(x)
        return torch.log_softmax(y, dim=-1) if self.include_log_softmax else y


def scale_batchnorm_stats(model: nn.Module, factor: float = 0.8) -> None:
    """Kaldi's ``ScaleBatchnormStats``: scale every :class:`KaldiBatchNorm`'s stats.

    Call once per minibatch after the update (factor 0.8, the trainer's
    ``batchnorm_stats_scale``); ``factor=0`` resets them (then training-mode
    forwards without updates recompute them, like Kaldi's ``RecomputeStats``).
    """
    if not 0.0 <= factor <= 1.0:
        raise ValueError(f"scale_batchnorm_stats: factor must be in [0, 1], got {factor}")
    for module in model.modules():
        if isinstance(module, KaldiBatchNorm):
            module.scale_stats(factor)


def component_param_groups(model: nn.Module) -> List[dict]:
    """One optimizer parameter group per module that owns parameters.

    Each group is ``{"name", "params", "learning_rate_factor", "max_change",
    "l2_regularize"}``, the last three read from the module's attributes
    (defaults 1.0, 0.0 = off, 0.0, Kaldi's component defaults). A trainer
    sets ``group["lr"] = lr * group["learning_rate_factor"]`` and applies
    per-component max-change and L2 with the other two.
    """
    groups = []
    for name, module in model.named_modules():
        params = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if params:
            groups.append({
                "name": name,
                "params": params,
                "learning_rate_factor": float(getattr(module, "learning_rate_factor", 1.0)),
                "max_change": float(getattr(module, "max_change", 0.0)),
                "l2_regularize": float(getattr(module, "l2_regularize", 0.0)),
            })
    return groups


def _parse_one_schedule(text: str) -> List[Tuple[float, float]]:
    parts = text.strip().split(",")
    if len(parts) < 2:
        raise ValueError(f"dropout schedule {text!r} must give at least the start and end "
                         "proportions")
    try:
        points = [(0.0, float(parts[0]))]
        for part in parts[1:-1]:
            value_at = part.split("@")
            if len(value_at) == 1:
                proportion, fraction = float(value_at[0]), 0.5
            elif len(value_at) == 2:
                proportion, fraction = float(value_at[0]), float(value_at[1])
            else:
                raise ValueError(f"bad element {part!r}")
            if fraction < points[-1][0] or fraction > 1.0:
                raise ValueError(f"data fractions must be increasing and <= 1 at {part!r}")
            points.append((fraction, proportion))
        points.append((1.0, float(parts[-1])))
    except ValueError as err:
        raise ValueError(f"unable to parse dropout schedule {text!r}: {err}") from None
    for fraction, proportion in points:
        if not (0.0 <= fraction <= 1.0 and 0.0 <= proportion <= 1.0):
            raise ValueError(f"dropout schedule {text!r}: values must lie in [0, 1]")
    return points


def parse_dropout_schedule(option: str) -> List[Tuple[str, List[Tuple[float, float]]]]:
    """Parse ``--trainer.dropout-schedule`` (Kaldi's ``_parse_dropout_option``).

    Returns ``[(pattern, [(data_fraction, proportion), …]), …]`` with the
    points in increasing order of data fraction (Kaldi keeps them reversed);
    a schedule without ``pattern=`` gets the pattern ``'*'``.

    Example::

        >>> parse_dropout_schedule('0,0@0.20,0.5@0.50,0')
        [('*', [(0.0, 0.0), (0.2, 0.0), (0.5, 0.5), (1.0, 0.0)])]
    """
    schedules = []
    for component in option.strip().split():
        parts = component.split("=")
        if len(parts) == 1:
            schedules.append(("*", _parse_one_schedule(parts[0])))
        elif len(parts) == 2:
            schedules.append((parts[0], _parse_one_schedule(parts[1])))
        else:
            raise ValueError(f"dropout schedule must look like 'pattern1=func1 pattern2=func2'; "
                             f"got {component!r} in {option!r}")
    return schedules


def _proportion_at(points: List[Tuple[float, float]], data_fraction: float) -> float:
    # Kaldi's _get_component_dropout, on the increasing list: the lower end is
    # the *last* point whose fraction is <= data_fraction.
    if data_fraction == 0:
        return points[0][1]
    lower = max(i for i, (f, _) in enumerate(points) if f <= data_fraction)
    if lower == len(points) - 1:
        return points[-1][1]
    (f0, p0), (f1, p1) = points[lower], points[lower + 1]
    if f1 == f0:
        return p0
    return (data_fraction - f0) * (p1 - p0) / (f1 - f0) + p0


def dropout_proportions(option: str, data_fraction: float) -> List[Tuple[str, float]]:
    """Kaldi's ``_get_dropout_proportions``: ``[(pattern, proportion), …]``.

    Args:
        option: the schedule string, e.g. ``'*=0.0,0.5,0.0 lstm.*=0.0,0.3@0.75,0.0'``.
        data_fraction: fraction of the training data seen so far, in [0, 1]
            (train.py uses archives processed / archives to process).
    """
    if not 0.0 <= data_fraction <= 1.0:
        raise ValueError(f"data_fraction must be in [0, 1], got {data_fraction}")
    return [(pattern, _proportion_at(points, data_fraction))
            for pattern, points in parse_dropout_schedule(option)]


def dropout_proportion(option: str, data_fraction: float) -> float:
    """The proportion of a single-pattern schedule at ``data_fraction``."""
    proportions = dropout_proportions(option, data_fraction)
    if len(proportions) != 1:
        raise ValueError(f"dropout schedule {option!r} has {len(proportions)} patterns; "
                         "use dropout_proportions()")
    return proportions[0][1]


def set_dropout_proportions(model: nn.Module, proportions: List[Tuple[str, float]]) -> int:
    """Kaldi's ``set-dropout-proportion name=PATTERN``, applied in order.

    Each :class:`GeneralDropout` whose module name (as in
    ``model.named_modules()``, e.g. ``tdnnf.3.dropout``) matches the glob
    pattern gets the proportion; later patterns override earlier ones.
    Returns the number of dropout modules in the model.
    """
    dropouts: Dict[str, GeneralDropout] = {
        name: m for name, m in model.named_modules() if isinstance(m, GeneralDropout)}
    for pattern, proportion in proportions:
        for name, module in dropouts.items():
            if fnmatch.fnmatchcase(name, pattern):
                module.proportion = float(proportion)
    return len(dropouts)
